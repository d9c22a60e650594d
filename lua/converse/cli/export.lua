--- `converse export`: a one-off dump of a vendor read method.
--   converse export VENDOR METHOD [ID...] [--base-url URL] [--domain D]
--                   [--bot-name B] [--plan P] [--param k=v ...] [--out FILE]
-- List methods write one JSON object per line (streamed: any size fits in
-- memory), other read methods their response body. Records are not
-- altered: each is written as its exact JSON text when the decoder gives
-- it (raw mode), bodies as received. Write methods (create_*, update_*,
-- delete_* ...) are refused: they belong in Lua code. `--out FILE` is
-- written to FILE.part and renamed when complete, so FILE never holds a
-- partial dump; SIGINT/SIGTERM stop at a record boundary (exit 130).
-- @module converse.cli.export
local converse = require "converse"
local core     = require "converse.core"
local query    = require "converse.query"
local common   = require "converse.cli.common"
local record   = require "converse.sync.record"

local type, pairs, ipairs, tostring, pcall = type, pairs, ipairs, tostring, pcall
local concat, sort = table.concat, table.sort
local unpack = table.unpack or unpack   -- luacheck: ignore

local M = {}
local PROG = "converse export"

local READ = { GET = true, LIST = true }

local function parser()
  local p = common.parser(PROG, "Write every record of a vendor read method as NDJSON (list methods) "
    .. "or its response body (other read methods).",
    "The API key comes from the environment only: CONVERZ_KEY, AGENTX_KEY, CONVERSEIQ_KEY, "
    .. "CONVERRA_KEY.\nWrite methods (create_*, update_*, delete_* ...) are not exported: use the Lua API.")
  p:usage("Usage: converse export VENDOR METHOD [ID ...] [--base-url URL] [--domain D] [--bot-name B]\n"
    .. "                       [--plan P] [--param k=v ...] [--out FILE]")
  p:argument("vendor", "converz | agentx | converseiq | converra")
  p:argument("method", "A read method of the vendor (calls, conversations, contacts, agents ...)")
  p:argument("ids", "Path arguments of the method (e.g. a chat id for chat_messages)"):args("*")
  common.vendor_options(p)
  p:option("--out", "Write to FILE (via FILE.part, renamed when complete) instead of stdout")
   :argname("FILE")
  return p
end

--- The read methods of a vendor class, sorted.
function M.read_methods(class)
  local list = {}
  for name, ep in pairs(class.endpoints) do
    if READ[ep[1]] then list[#list + 1] = name end
  end
  sort(list)
  return list
end

-- The endpoint of `name`, or a usage problem that says why not.
local function endpoint(vendor, class, name)
  local ep = class.endpoints[name]
  local reads = M.read_methods(class)
  if ep and READ[ep[1]] then return ep end
  if ep or (type(class[name]) == "function" and name:match("^update_")) then
    local what = ep and (ep[1] .. " " .. ep[2]) or "it writes"
    common.usage(("%s changes data (%s): export only reads. Call it from Lua: "
      .. "converse.%s{...}:%s(...)"):format(name, what, vendor, name))
  end
  local near = common.closest(name, reads)
  common.usage(("%s has no read method '%s'%s; read methods: %s"):format(vendor, name,
    near and (" (did you mean '" .. near .. "'?)") or "", concat(reads, ", ")))
end

-- Path parameters of an endpoint, in order.
local function path_params(path)
  local list = {}
  for p in path:gmatch("{([%w_]+)}") do list[#list + 1] = p end
  return list
end

local function open_out(path)
  if not path then return io.stdout end
  local f, err = io.open(path .. ".part", "wb")
  if not f then common.usage("--out: cannot write " .. tostring(err)) end
  return f
end

local function write(out, s)
  local ok, err = out:write(s)
  if not ok then error(require("converse.sync.state").io_error("cannot write: " .. tostring(err)), 0) end
end

function M.main(args)
  return common.run(PROG, function()
    local a = common.parse(parser(), args)
    local vendor = common.check_vendor(a.vendor)
    local class = require("converse." .. vendor).class
    local ep = endpoint(vendor, class, a.method)
    local params = path_params(ep[2])
    local ids = a.ids or {}
    local extra_arg = ep[3] and ep[3].query_arg
    if #ids < #params or (#ids > #params and not (extra_arg and #ids == #params + 1)) then
      local want = {}
      for i, p in ipairs(params) do want[i] = p:upper() end
      if extra_arg then want[#want + 1] = "[" .. extra_arg:upper() .. "]" end
      common.usage(("%s takes %s"):format(a.method,
        #want == 0 and "no ids" or (#want .. " argument" .. (#want == 1 and "" or "s") .. ": "
          .. PROG .. " " .. vendor .. " " .. a.method .. " " .. concat(want, " "))))
    end
    local q = common.params(a.param)
    local api = common.vendor(vendor, a)
    core.trap_signals()
    local out = open_out(a.out)
    local n = 0
    local ok, err = pcall(function()
      if ep[1] == "LIST" then
        local call = { unpack(ids) }
        call[#call + 1] = q
        call[#call + 1] = { raw = true }             -- records byte for byte
        local pager = api[a.method](api, unpack(call))
        for item in pager:each() do
          write(out, record.text(item) .. "\n")
          n = n + 1
          if n % 256 == 0 and core.signal() then
            pager:close()
            error(converse.errors.new { kind = "network", code = "INTERRUPTED",
                                        message = "interrupted by " .. core.signal() }, 0)
          end
        end
      else
        local i = 0
        local path = ep[2]:gsub("{([%w_]+)}", function()
          i = i + 1
          return query.escape(tostring(ids[i]))
        end)
        local body = api:request("GET", path, { query = next(q) and q or nil, raw = true })
        if body and body:find("%S") then
          write(out, (body:gsub("%s+$", "")) .. "\n")
          n = 1
        end
      end
    end)
    if out == io.stdout then out:flush() else out:close() end
    if not ok then
      local status = require("converse.sync.job").status_of(err)
      local where = a.out and ("; the " .. n .. " complete records so far are in " .. a.out .. ".part") or ""
      if status == "interrupted" then
        io.stderr:write(PROG, ": ", err.message, " after ", n, " records", where, "\n")
        return common.EXIT.interrupted
      end
      io.stderr:write(PROG, ": ", common.message(err), where, "\n")
      return status == "partial" and common.EXIT.partial or common.EXIT.error
    end
    if a.out then
      local renamed, rerr = os.rename(a.out .. ".part", a.out)
      if not renamed then
        io.stderr:write(PROG, ": cannot rename ", a.out, ".part: ", tostring(rerr), "\n")
        return common.EXIT.error
      end
    end
    io.stderr:write(("%s: %d record%s\n"):format(PROG, n, n == 1 and "" or "s"))
    return common.EXIT.ok
  end)
end

return M
