-- Inside nginx: 200,000 Converz rows (about 130 MB of JSON) from a local
-- server (the mock, under LuaJIT), one worker, all figures from one run.
--
--   luajit bench/nginx.lua [--rows 200000] [--runs 3]      (make bench-nginx)
--
-- Cases, each in a fresh nginx so that the worker's peak RSS is its own:
--   naive resty    read the whole body from a cosocket, then cjson.decode
--   converse       the cosocket transport: bytes decoded as they arrive
-- and beside them converse standalone with libcurl (bench/paging.lua's
-- case, LuaJIT). Time is wall time of the request inside the worker, best
-- of `runs`; RSS growth = the worker's VmHWM after the case minus its
-- VmRSS before it (modules loaded, a one-row request made).
package.path = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/?.lua;" .. package.path
local common = require "common"
local ROOT = common.ROOT
package.path = ROOT .. "/spec/?.lua;" .. package.path

local helper = require "helper"
local nginx  = require "support.nginx"

local rows, runs = 200000, 3
for i = 1, #arg do
  if arg[i] == "--rows" then rows = tonumber(arg[i + 1]) end
  if arg[i] == "--runs" then runs = tonumber(arg[i + 1]) end
end

-- The handlers, run inside nginx (this file is also require'd there as
-- "nginx_bench" through a generated module: see `handler` below).
local HANDLER = [=[
local cjson = require "cjson"
local converse = require "converse"
local core = require "converse.core"
local cfg = require "nginx_spec_config"

local function status(field)
  local f = io.open("/proc/self/status")
  local s = f:read("*a")
  f:close()
  return tonumber(s:match(field .. ":%s*(%d+)"))
end

local KEY = "bench"
local PATH = "/converz/api/v1/calls"

local function naive(n)
  local host, port = cfg.mock:match("^http://([^:]+):(%d+)$")
  local sock = ngx.socket.tcp()
  sock:settimeout(60000)
  assert(sock:connect(host, tonumber(port)))
  assert(sock:send("GET " .. PATH .. "?n_per_page=" .. n .. "&page=1 HTTP/1.1\r\nHost: " .. host
    .. "\r\nX-API-Key: " .. KEY .. "\r\n\r\n"))
  local head = assert(sock:receiveuntil("\r\n\r\n")())
  local length = tonumber(head:lower():match("content%-length:%s*(%d+)"))
  local body = assert(sock:receive(length))
  sock:setkeepalive()
  return #cjson.decode(body)
end

local function converse_(n)
  local api = converse.client { base_url = cfg.mock .. "/converz/api/v1",
                                auth = { header = "X-API-Key", value = KEY } }
  local count = 0
  for _ in api:paginate("/calls", { style = "page", size_param = "n_per_page", page_size = n,
                                    max_pages = 1 }) do
    count = count + 1
  end
  return count
end

local CASES = { naive = naive, converse = converse_ }

return function()
  local f = CASES[ngx.var.arg_case]
  f(1)                                     -- code loaded, connections made
  collectgarbage()
  local before = status("VmRSS")
  local t0 = core.now()
  local n = f(tonumber(ngx.var.arg_rows))
  local secs = core.now() - t0
  ngx.say(string.format("%.4f %d %d %d", secs, n, before, status("VmHWM")))
end
]=]

local function run_case(mock, case)
  local best
  for _ = 1, runs do
    local srv = assert(nginx.start {
      workers = 1, config = { mock = mock.url },
      main = "worker_rlimit_core 0;",
      http = "lua_socket_log_errors off;",
      server = ("location /bench { content_by_lua_block { require('nginx_bench')() } }"),
    })
    local f = assert(io.open(srv.prefix .. "/lua/nginx_bench.lua", "w"))
    f:write(HANDLER)
    f:close()
    local res = srv:get(("/bench?case=%s&rows=%d"):format(case, rows), 600)
    srv:stop()
    local secs, n, before, hwm = (res.body or ""):match("([%d.]+) (%d+) (%d+) (%d+)")
    if not secs then error(case .. " failed: " .. tostring(res.body or res.error)) end
    secs, n = tonumber(secs), tonumber(n)
    assert(n == rows, case .. " returned " .. n .. " rows")
    local grown = (tonumber(hwm) - tonumber(before)) / 1024
    if not best or secs < best.secs then best = { secs = secs, grown = grown, hwm = tonumber(hwm) / 1024 } end
  end
  return best
end

assert(nginx.available())
print(("converse inside nginx benchmark — %d rows, one worker, %s"):format(rows, os.date("!%Y-%m-%d")))
local mock = helper.start_mock { calls = rows, max_lifetime = 3600, gzip = "never", interpreter = "luajit" }
local one = ("%s/converz/api/v1/calls?n_per_page=%d&page=1"):format(mock.url, rows)
os.execute(("curl -s -o /dev/null -H 'X-API-Key: bench' '%s'"):format(one))     -- warm the mock
local size = tonumber(io.popen(("curl -s -H 'X-API-Key: bench' '%s' | wc -c"):format(one)):read("*a"))
print(("reference page: %d rows, %.1f MB"):format(rows, size / 1e6))

local naive = run_case(mock, "naive")
local conv = run_case(mock, "converse")
local p = io.popen(("cd %q && CONVERSE_LUA=luajit luajit bench/paging.lua --case converse '%s' %d %d")
  :format(ROOT, one, rows, rows))
local out = p:read("*a")
p:close()
local c_secs, _, c_kb = out:match("([%d.]+) (%d+) (%d+)")
mock:stop()

print(("\n%-48s %9s %22s %8s"):format("", "time", "worker RSS growth", "ratio"))
print(("  %-46s %7.3f s %14.1f MB peak %6.2fx"):format("naive resty: cosocket body + cjson.decode",
  naive.secs, naive.grown, 1))
print(("  %-46s %7.3f s %14.1f MB peak %6.2fx"):format("converse, cosocket transport (streaming)",
  conv.secs, conv.grown, naive.secs / conv.secs))
print(("  %-46s %7.3f s %11.1f MB peak RSS"):format("converse standalone, libcurl (LuaJIT)",
  tonumber(c_secs), tonumber(c_kb) / 1024))
print(("\n  converse vs naive resty: %.2fx faster (must 2x); worker RSS growth %.1f MB (must < 32 MB)")
  :format(naive.secs / conv.secs, conv.grown))
