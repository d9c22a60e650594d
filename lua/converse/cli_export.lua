--- `converse export`: every record of a vendor method as NDJSON.
--   converse export VENDOR METHOD [ID...] [--base-url URL] [--param k=v ...]
--                   [--bot-name B] [--plan P] [--out FILE]
-- The API key is read from the environment (CONVERZ_KEY, AGENTX_KEY,
-- CONVERSEIQ_KEY, CONVERRA_KEY, or --key-env NAME), never from the command
-- line where `ps` would show it.
-- @module converse.cli_export
local converse = require "converse"

local unpack = table.unpack or unpack   -- luacheck: ignore

local M = {}

M.USAGE = [[
usage: converse export VENDOR METHOD [ID...] [options]
  VENDOR     converz | agentx | deepconverse | converseiq | converra
  METHOD     a method of that vendor (calls, conversations, contacts, agents ...)
  ID         path arguments of the method (e.g. a chat id for chat_messages)
options:
  --base-url URL     API base URL (default: the vendor's; for converz use --domain)
  --domain D         converz: https://D.converz.co/api/v1
  --param k=v        query parameter (repeat a key for several values)
  --bot-name B       agentx: the bot
  --plan P           converra: free | pro | enterprise
  --key-env NAME     environment variable holding the API key
  --out FILE         write there instead of standard output
]]

local KEY_ENV = { converz = "CONVERZ_KEY", agentx = "AGENTX_KEY", deepconverse = "AGENTX_KEY",
                  converseiq = "CONVERSEIQ_KEY", converra = "CONVERRA_KEY" }

local function parse(args)
  local o = { params = {}, ids = {} }
  local i = 1
  while i <= #args do
    local a = args[i]
    local flag = a:match("^%-%-([%w-]+)$")
    if flag then
      local v = args[i + 1]
      if v == nil then return nil, "--" .. flag .. " needs a value" end
      if flag == "param" then
        local k, val = v:match("^([^=]+)=(.*)$")
        if not k then return nil, "--param takes key=value" end
        val = val:match("^%-?%d+$") and math.tointeger and math.tointeger(tonumber(val))
          or (val:match("^%-?%d+$") and tonumber(val)) or val
        local cur = o.params[k]
        if cur == nil then o.params[k] = val
        elseif type(cur) == "table" then cur[#cur + 1] = val
        else o.params[k] = { cur, val } end
      else
        o[flag:gsub("%-", "_")] = v
      end
      i = i + 2
    elseif not o.vendor then o.vendor, i = a, i + 1
    elseif not o.method then o.method, i = a, i + 1
    else o.ids[#o.ids + 1], i = a, i + 1 end
  end
  if not o.vendor or not o.method then return nil, "VENDOR and METHOD are required" end
  if not KEY_ENV[o.vendor] then return nil, "unknown vendor '" .. o.vendor .. "'" end
  return o
end

--- Run the command; returns the exit status.
function M.main(args)
  if args[1] == "--help" or args[1] == "-h" then io.stdout:write(M.USAGE) return 0 end
  local o, perr = parse(args)
  if not o then
    io.stderr:write("converse export: ", perr, "\n", M.USAGE)
    return 2
  end
  local env = o.key_env or KEY_ENV[o.vendor]
  local key = os.getenv(env)
  if not key or key == "" then
    io.stderr:write("converse export: set the API key in $", env, "\n")
    return 2
  end
  local out = io.stdout
  local ok, err = pcall(function()
    local api = converse[o.vendor] { api_key = key, base_url = o.base_url, domain = o.domain,
                                     bot_name = o.bot_name, plan = o.plan }
    local f = api[o.method]
    if type(f) ~= "function" or o.method:sub(1, 1) == "_" then
      error(converse.errors.new { kind = "usage", message = "no method '" .. o.method .. "'" }, 0)
    end
    local call = { unpack(o.ids) }
    if next(o.params) then call[#call + 1] = o.params end
    local result = f(api, unpack(call))
    if o.out then out = assert(io.open(o.out, "w")) end
    local n = 0
    if getmetatable(result) and result.each then
      for record in result:each() do
        out:write(converse.json.encode(record), "\n")
        n = n + 1
      end
    else
      out:write(converse.json.encode(result), "\n")
      n = 1
    end
    if o.out then out:close() end
    io.stderr:write(("converse export: %d record%s\n"):format(n, n == 1 and "" or "s"))
  end)
  if not ok then
    io.stderr:write("converse export: ", tostring(err), "\n")
    return 1
  end
  return 0
end

return M
