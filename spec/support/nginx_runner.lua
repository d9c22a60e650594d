--- Inside nginx, for the specs: run one case of spec/support/nginx_cases.lua
-- (or one of the nginx-only checks) and answer JSON `{ ok =, err = }`.
--   location /run { content_by_lua_block { require("nginx_runner").run() } }
-- GET /run?case=NAME. Configuration (mock URLs, socket URLs) comes from
-- `nginx_spec_config`, written by spec/support/nginx.lua.
-- @module nginx_runner
-- luacheck: globals ngx
local cases  = require "nginx_cases"
local json   = require "converse.mock.json"
local config = require "nginx_spec_config"

local M = {}

--- A small HTTP/1.1 client on a cosocket (Connection: close), for the
-- mock's control API: { status, body, json }.
function M.http(method, url, body)
  local host, port, path = url:match("^http://([^:/]+):(%d+)(.*)$")
  local sock = ngx.socket.tcp()
  sock:settimeout(10000)
  assert(sock:connect(host, tonumber(port)))
  local req = { method, " ", path == "" and "/" or path, " HTTP/1.1\r\nHost: ", host, ":", port,
                "\r\nConnection: close\r\n" }
  if body then req[#req + 1] = "Content-Type: application/json\r\nContent-Length: " .. #body .. "\r\n" end
  req[#req + 1] = "\r\n"
  if body then req[#req + 1] = body end
  assert(sock:send(req))
  local parts = {}
  while true do
    local data, err = sock:receiveany(65536)
    if not data then
      if err == "closed" then break end
      error("mock control: " .. err)
    end
    parts[#parts + 1] = data
  end
  sock:close()
  local raw = table.concat(parts)
  local head, rest = raw:match("^(.-)\r\n\r\n(.*)$")
  local lower = head:lower()
  local length = tonumber(lower:match("\r\ncontent%-length:%s*(%d+)"))
  if length then rest = rest:sub(1, length) end
  local res = { status = tonumber(head:match("^HTTP/%d%.%d (%d+)")), body = rest }
  if lower:find("\r\ncontent%-type:%s*application/json") then res.json = json.decode(rest) end
  return res
end

local function sleep(s) ngx.sleep(s) end

--- The context the cases run with inside nginx.
function M.context()
  return {
    transport = "nginx",
    mock = cases.mock(config.mock, M.http, sleep),
    other = cases.mock(config.other, M.http, sleep),
    sink_url = config.sink_url,
    blackhole_url = config.blackhole_url,
    hostile_url = config.hostile_url,
    sleep = sleep,
    rss_kb = cases.rss_kb,
  }
end

local function message(err)
  if type(err) == "table" and err.message then return tostring(err.message) end
  return tostring(err)
end

--- content_by_lua: run the case named by ?case=.
function M.run()
  local name = ngx.var.arg_case and ngx.unescape_uri(ngx.var.arg_case)
  local c = cases.by_name[name or ""]
  local out
  if not c then
    out = { ok = false, err = "no case " .. tostring(name) }
  else
    local ctx = M.context()
    ctx.mock.fresh()
    local ok, err = xpcall(c.fn, function(e) return message(e) .. "\n" .. debug.traceback() end, ctx)
    out = { ok = ok, err = not ok and err or nil }
  end
  ngx.header["Content-Type"] = "application/json"
  ngx.say(json.encode(out))
end

return M
