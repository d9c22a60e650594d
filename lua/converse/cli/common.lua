--- What the commands of bin/converse share: argument parsing with
-- lua-argparse and its errors as one line, API keys from the environment,
-- vendor objects from the command line's options, `--param k=v` lists.
-- @module converse.cli.common
local argparse = require "argparse"
local errors   = require "converse.errors"

local type, tostring, tonumber, pcall, ipairs, pairs = type, tostring, tonumber, pcall, ipairs, pairs
local setmetatable, getmetatable = setmetatable, getmetatable
local io = io

local M = {}

--- API keys: the environment variable of each vendor.
M.KEY_ENV = { converz = "CONVERZ_KEY", agentx = "AGENTX_KEY", deepconverse = "AGENTX_KEY",
              converseiq = "CONVERSEIQ_KEY", converra = "CONVERRA_KEY" }
M.VENDORS = { "converz", "agentx", "converseiq", "converra" }

--- Exit statuses (SPEC §5).
M.EXIT = { ok = 0, error = 1, usage = 2, partial = 3, interrupted = 130 }

--- A usage problem found by a command: raised, caught by `run`, exit 2.
local Usage = {}
Usage.__index = Usage
Usage.__tostring = function(u) return u.message end

function M.usage(message) error(setmetatable({ message = message }, Usage), 0) end
function M.is_usage(v) return getmetatable(v) == Usage end

--- A library error message without the "file.lua:12: " position that
-- usage errors carry (the user typed options, not Lua).
function M.plain(message)
  message = tostring(message)
  local stripped = message:gsub("^[^%s:]+:%d+: ", ""):gsub("^%[string [^%]]*%]:%d+: ", "")
  return stripped
end

--- One line for an error: an error object's text without its "converse: "
-- prefix (the command names itself), a usage error without a position.
function M.message(err)
  if errors.is(err) and err.kind == "usage" then return M.plain(err.message) end
  return (M.plain(tostring(err)):gsub("^converse: ", ""))
end

--- A new argparse parser for `converse NAME`.
function M.parser(name, description, epilog)
  local p = argparse(name, description, epilog)
  p:help_max_width(100)
  return p
end

-- argparse's "…\nDid you mean '--out'?" as one line.
local function one_line(msg)
  msg = tostring(msg)
  local main, tip = msg:match("^(.-)\nDid you mean (.-)%?$")
  if main then return main .. " (did you mean " .. tip .. "?)" end
  return (msg:gsub("\n", " "))
end

--- Parse arguments; a bad command line raises a usage problem.
function M.parse(parser, args)
  local ok, result = parser:pparse(args)
  if not ok then M.usage(one_line(result)) end
  return result
end

--- Run a command body: usage problems -> message on stderr + exit 2.
-- @tparam string prog "converse sync"
-- @tparam function body returns an exit status
function M.run(prog, body)
  local ok, rc = pcall(body)
  if ok then return rc or 0 end
  if M.is_usage(rc) then
    io.stderr:write(prog, ": ", rc.message, "\n", "Try '", prog, " --help'.\n")
    return M.EXIT.usage
  end
  if errors.is(rc) and rc.kind == "usage" then
    io.stderr:write(prog, ": ", M.message(rc), "\n")
    return M.EXIT.usage
  end
  io.stderr:write(prog, ": ", M.message(rc), "\n")
  return M.EXIT.error
end

--- The API key of a vendor, from its environment variable only.
function M.key(vendor)
  local env = M.KEY_ENV[vendor]
  local key = os.getenv(env)
  if not key or key == "" then
    M.usage(("set the API key in the environment variable %s (keys are never taken from the "
      .. "command line)"):format(env))
  end
  return key
end

--- Check a vendor name; the usage problem lists the valid ones.
function M.check_vendor(name)
  if not M.KEY_ENV[name] then
    M.usage(("unknown vendor '%s': use %s"):format(tostring(name), table.concat(M.VENDORS, ", ")))
  end
  return name == "deepconverse" and "agentx" or name
end

-- The closest name of a list (edit distance <= 2), for "did you mean".
function M.closest(word, list)
  local best, bestd
  for _, cand in ipairs(list) do
    local a, b = word, cand
    local prev = {}
    for j = 0, #b do prev[j] = j end
    for i = 1, #a do
      local cur = { [0] = i }
      for j = 1, #b do
        local cost = a:sub(i, i) == b:sub(j, j) and 0 or 1
        cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
      end
      prev = cur
    end
    local d = prev[#b]
    if d <= 2 and (not bestd or d < bestd) then best, bestd = cand, d end
  end
  return best
end

--- Options shared by the vendor commands (base URL, domain, bot, plan, params).
function M.vendor_options(p)
  p:option("--base-url", "API base URL (default: the vendor's; converz: use --domain)"):argname("URL")
  p:option("--domain", "converz: https://D.converz.co/api/v1"):argname("D")
  p:option("--bot-name", "agentx: the bot name or id"):argname("B")
  p:option("--plan", "converra: free | pro | enterprise (sets the default rate limit)"):argname("P")
  p:option("--param", "A query parameter k=v (repeat a key for several values)")
   :argname("k=v"):count("*")
end

-- "123" -> 123 (page sizes and the like are numbers); other text stays text.
local function param_value(v)
  if v:match("^%-?[1-9]%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?$") or v == "0" then
    return math.tointeger and math.tointeger(tonumber(v)) or tonumber(v)
  end
  return v
end

--- `--param k=v` list -> query table (repeated keys -> arrays).
function M.params(list)
  local q = {}
  for _, kv in ipairs(list or {}) do
    local k, v = kv:match("^([^=]+)=(.*)$")
    if not k then M.usage(("--param takes key=value, got '%s'"):format(kv)) end
    v = param_value(v)
    local cur = q[k]
    if cur == nil then q[k] = v
    elseif type(cur) == "table" then cur[#cur + 1] = v
    else q[k] = { cur, v } end
  end
  return q
end

--- Build the vendor object from the parsed options.
-- @tparam string vendor
-- @tparam table a parsed arguments (base_url, domain, bot_name, plan)
-- @tparam[opt] table extra more constructor options (on_event ...)
function M.vendor(vendor, a, extra)
  if a.domain and vendor ~= "converz" then M.usage("--domain is for converz only") end
  if a.bot_name and vendor ~= "agentx" then M.usage("--bot-name is for agentx only") end
  if a.plan and vendor ~= "converra" then M.usage("--plan is for converra only") end
  if a.plan and a.plan ~= "free" and a.plan ~= "pro" and a.plan ~= "enterprise" then
    M.usage(("--plan must be free, pro or enterprise, not '%s'"):format(a.plan))
  end
  if a.domain and not a.domain:match("^[%w%-]+$") then
    M.usage(("--domain must be a subdomain name such as acme, not '%s'"):format(a.domain))
  end
  if vendor == "converz" and not a.base_url and not a.domain then
    M.usage("converz needs --domain D (https://D.converz.co/api/v1) or --base-url URL")
  end
  local base = a.base_url
  if base and not (base:match("^https?://[^/%s]+") and not base:find("[%s#]")) then
    M.usage(("--base-url must be an http:// or https:// URL, not '%s'"):format(base))
  end
  local opts = { api_key = M.key(vendor), base_url = base, domain = a.domain, bot_name = a.bot_name,
                 plan = a.plan }
  for k, v in pairs(extra or {}) do opts[k] = v end
  local ok, api = pcall(require("converse")[vendor], opts)
  if not ok then
    if errors.is(api) and api.kind == "usage" then M.usage(M.plain(api.message)) end
    error(api, 0)
  end
  return api
end

return M
