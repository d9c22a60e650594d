--- Shared spec infrastructure.
--   helper.start_mock(opts) -> mock  (child process `bin/converse mock --port 0 ...`)
--   helper.http(method, url, body, headers) -> res  (raw luasocket request)
--   helper.connection(url) -> conn  (keep-alive connection: conn:request(...))
--   helper.json                     (the mock's independent JSON codec)
-- The mock runs as a child process of the interpreter under test
-- (env CONVERSE_LUA, default lua5.4; CONVERSE_BUILD, default build/lua5.4),
-- bound to 127.0.0.1. It exits when `mock:stop()` asks it to, when its parent
-- (busted) exits, or after `max_lifetime` seconds, so no process outlives a run.
local socket = require "socket"
local json   = require "converse.mock.json"
local mhttp  = require "converse.mock.http"

local helper = {}
helper.json = json

local ROOT = (debug.getinfo(1, "S").source:match("^@(.*)/spec/[^/]*$")) or "."
helper.ROOT = ROOT

local function shell_quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

---------------------------------------------------------------------------
-- Raw HTTP client (luasocket, blocking, with a timeout)

local function parse_url(url)
  local host, port, path = url:match("^http://([^:/]+):?(%d*)(.*)$")
  if not host then error("helper: bad url " .. tostring(url), 3) end
  return host, tonumber(port) or 80, path ~= "" and path or "/"
end

-- Read one response from `sock`; `buf` holds bytes already read.
local function read_response(sock, buf, method, timeout)
  buf = buf or ""
  local deadline = socket.gettime() + (timeout or 10)
  local function more()     -- whatever bytes arrive next (never waits for a full block)
    sock:settimeout(0)
    while true do
      local data, err, partial = sock:receive(65536)
      data = data or partial
      if data and data ~= "" then buf = buf .. data; return true end
      if err ~= "timeout" then return nil, err end
      local left = deadline - socket.gettime()
      if left <= 0 then return nil, "timeout" end
      socket.select({ sock }, nil, left)
    end
  end
  local e = buf:find("\r\n\r\n", 1, true)
  while not e do
    local ok, err = more()
    if not ok then return nil, "no response head (" .. tostring(err) .. ")", buf end
    e = buf:find("\r\n\r\n", 1, true)
  end
  local head = buf:sub(1, e - 1)
  buf = buf:sub(e + 4)
  local status = tonumber(head:match("^HTTP/%d%.%d (%d%d%d)"))
  local headers = {}
  for line in head:gmatch("\r\n([^\r\n]+)") do
    local k, v = line:match("^([^:]+):%s*(.-)%s*$")
    if k then headers[k:lower()] = v end
  end
  if status and status < 200 then return read_response(sock, buf, method, timeout) end
  local res = { status = status, headers = headers, head = head }
  local body
  if method == "HEAD" or status == 204 or status == 304 then body = ""
  elseif headers["transfer-encoding"] and headers["transfer-encoding"]:lower():find("chunked") then
    while true do
      local b, pos = mhttp.dechunk(buf, 1)
      if b then body = b; buf = buf:sub(pos); break end
      local ok, err = more()
      if not ok then res.error = "closed in chunked body: " .. tostring(err); body = buf; buf = ""; break end
    end
    res.chunked = true
  elseif headers["content-length"] then
    local n = tonumber(headers["content-length"])
    while #buf < n do
      local ok, err = more()
      if not ok then res.error = "closed after " .. #buf .. " of " .. n .. " bytes: " .. tostring(err); break end
    end
    body = buf:sub(1, n)
    buf = buf:sub(n + 1)
  else
    while more() do end
    body = buf; buf = ""
  end
  res.body = body
  local ct = headers["content-type"] or ""
  if ct:find("json", 1, true) and not headers["content-encoding"] then
    res.json = json.decode(body)
  end
  return res, nil, buf
end

local function render_request(method, host, port, path, body, headers, keep_alive)
  headers = headers or {}
  if type(body) == "table" then
    body = json.encode(body)
    if not headers["Content-Type"] then headers["Content-Type"] = "application/json" end
  end
  local lines = { method .. " " .. path .. " HTTP/1.1", "Host: " .. host .. ":" .. port }
  if not keep_alive then lines[#lines + 1] = "Connection: close" end
  for k, v in pairs(headers) do lines[#lines + 1] = k .. ": " .. v end
  if body then lines[#lines + 1] = "Content-Length: " .. #body end
  return table.concat(lines, "\r\n") .. "\r\n\r\n" .. (body or "")
end

--- One HTTP request on a fresh connection (`Connection: close`).
-- @tparam string method
-- @tparam string url "http://127.0.0.1:PORT/path?query"
-- @param[opt] body string, or a table encoded as JSON
-- @tparam[opt] table headers name -> value
-- @treturn table `{ status, headers (lower-case), body, json (decoded when JSON), error }`
function helper.http(method, url, body, headers, timeout)
  local host, port, path = parse_url(url)
  local sock = socket.tcp()
  sock:settimeout(timeout or 10)
  local ok, err = sock:connect(host, port)
  if not ok then sock:close(); return { error = "connect: " .. tostring(err) } end
  sock:send(render_request(method, host, port, path, body, headers, false))
  local res, rerr = read_response(sock, "", method, timeout)
  sock:close()
  return res or { error = rerr }
end

local Conn = {}
Conn.__index = Conn

--- A keep-alive connection for several requests.
-- @tparam string url base URL (scheme, host, port)
-- @treturn table conn with `:request(method, path, body, headers)` and `:close()`
function helper.connection(url, timeout)
  local host, port = parse_url(url)
  local sock = socket.tcp()
  sock:settimeout(timeout or 10)
  assert(sock:connect(host, port))
  return setmetatable({ sock = sock, host = host, port = port, buf = "", timeout = timeout }, Conn)
end

--- Send a request without reading the response (pipelining / concurrency tests).
function Conn:send(method, path, body, headers)
  self.method = method
  self.sock:settimeout(self.timeout or 10)
  return self.sock:send(render_request(method, self.host, self.port, path, body, headers, true))
end

--- Read the next response.
function Conn:receive()
  local res, err, rest = read_response(self.sock, self.buf, self.method, self.timeout)
  self.buf = rest or ""
  return res or { error = err }
end

--- Send a request and read its response.
function Conn:request(method, path, body, headers)
  self:send(method, path, body, headers)
  return self:receive()
end

function Conn:close() self.sock:close() end

---------------------------------------------------------------------------
-- The mock as a child process

local Mock = {}
Mock.__index = Mock

local function flag(k) return "--" .. k:gsub("_", "-") end

--- Start `bin/converse mock --port 0` as a child process.
-- @tparam[opt] table opts any `converse mock` option by its Lua name
--   (`calls = 100`, `api_key = "k"`, `converra_plan = "pro"`, `latency = "20ms"` ...);
--   `max_lifetime` defaults to 300 seconds
-- @treturn table mock: `url`, `port`, `:control(t)`, `:log()`, `:reset()`, `:stop()`,
--   `:get(path, headers)`, `:request(method, path, body, headers)`
function helper.start_mock(opts)
  local o = {}
  for k, v in pairs(opts or {}) do o[k] = v end
  opts = o
  -- `interpreter` (not a mock option): run the mock under another Lua;
  -- CONVERSE_MOCK_LUA picks it for a whole run (scripts/test.sh serves the
  -- 5.1-5.3 runs from a 5.4 mock: the mock is a fixture there, and its
  -- pure-Lua gzip is slow without bit operations)
  local lua = opts.interpreter or os.getenv("CONVERSE_MOCK_LUA") or os.getenv("CONVERSE_LUA")
    or "lua5.4"
  local build = opts.interpreter and ("build/" .. opts.interpreter)
    or (os.getenv("CONVERSE_MOCK_LUA") and "build/" .. os.getenv("CONVERSE_MOCK_LUA"))
    or os.getenv("CONVERSE_BUILD") or "build/lua5.4"
  opts.interpreter = nil
  local args = { "--port", "0", "--host", "127.0.0.1", "--watch-parent" }
  if opts.max_lifetime == nil then opts.max_lifetime = 300 end
  local keys = {}
  for k in pairs(opts) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do
    local v = opts[k]
    if v == true then args[#args + 1] = flag(k)
    elseif v == false then if k == "warm" then args[#args + 1] = "--no-warm" end
    else args[#args + 1] = flag(k); args[#args + 1] = tostring(v) end
  end
  local errfile = os.tmpname()
  local quoted = {}
  for i, a in ipairs(args) do quoted[i] = shell_quote(a) end
  local cmd = string.format("cd %s && exec env CONVERSE_BUILD=%s %s bin/converse mock %s 2>%s",
    shell_quote(ROOT), shell_quote(build), shell_quote(lua), table.concat(quoted, " "),
    shell_quote(errfile))
  local proc = assert(io.popen(cmd, "r"))
  local url = proc:read("*l")
  if not url or not url:match("^http://") then
    proc:close()
    local f = io.open(errfile, "r")
    local text = f and f:read("*a") or ""
    if f then f:close() end
    os.remove(errfile)
    error("helper.start_mock: mock did not start: " .. tostring(url) .. "\n" .. text, 2)
  end
  local self = setmetatable({ url = url, port = tonumber(url:match(":(%d+)$")), proc = proc,
                              errfile = errfile, opts = opts }, Mock)
  local info = helper.http("GET", url .. "/_info")
  self.pid = info.json and info.json.pid
  return self
end

--- Arm faults or change settings (`POST /_control`); raises on a 4xx.
-- @tparam table t a fault `{type=..., path=..., ...}`, a list of faults, or settings
-- @treturn table decoded response
function Mock:control(t)
  local res = helper.http("POST", self.url .. "/_control", t)
  if res.status ~= 200 then error("mock control failed: " .. tostring(res.body), 2) end
  return res.json
end

--- The request log (`GET /_log`), decoded.
-- @treturn table array of entries
function Mock:log()
  return helper.http("GET", self.url .. "/_log").json
end

--- Clear faults, log and state (`POST /_reset`).
function Mock:reset()
  return helper.http("POST", self.url .. "/_reset").json
end

--- Reset, then forget requests that arrive late: a prefetch the previous
-- test abandoned may still land, and each test should see only its own.
function Mock:fresh()
  self:reset()
  socket.sleep(0.03)
  helper.http("DELETE", self.url .. "/_log")
end

--- A request to the mock (path relative to its URL).
function Mock:request(method, path, body, headers)
  return helper.http(method, self.url .. path, body, headers)
end

function Mock:get(path, headers) return self:request("GET", path, nil, headers) end

--- Stop the child process and wait for it to exit.
function Mock:stop()
  if not self.proc then return end
  local res = helper.http("POST", self.url .. "/_shutdown", nil, nil, 3)
  if res.status ~= 200 and self.pid then os.execute("kill " .. tonumber(self.pid) .. " 2>/dev/null") end
  self.proc:close()
  self.proc = nil
  os.remove(self.errfile)
end

Mock.__gc = Mock.stop

---------------------------------------------------------------------------
-- A hostile server (spec/support/hostile_server.lua) as a child process

local Hostile = {}
Hostile.__index = Hostile

--- Start a raw-socket server that runs `script` for each request.
-- @tparam string script Lua source of a chunk returning `function(req, n, conn)`
--   (see spec/support/hostile_server.lua, which also gives scripts
--   `response(status, body, headers)`, `chunk(s)` and `json_array(n, f)`)
-- @tparam[opt] string host "127.0.0.1" (default) or another loopback address
-- @treturn table server: `url`, `port`, `:requests()` (raw heads), `:stop()`
function helper.hostile(script, host)
  host = host or "127.0.0.1"
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p " .. shell_quote(dir)))
  local f = assert(io.open(dir .. "/script.lua", "w"))
  f:write(script)
  f:close()
  local lua = os.getenv("CONVERSE_MOCK_LUA") or "lua5.4"
  local cmd = ("exec %s %s %s %s %s 2>>%s"):format(shell_quote(lua),
    shell_quote(ROOT .. "/spec/support/hostile_server.lua"), shell_quote(host),
    shell_quote(dir .. "/script.lua"), shell_quote(dir .. "/log"), shell_quote(dir .. "/stderr"))
  local proc = assert(io.popen(cmd, "r"))
  local line = proc:read("*l")
  local port, pid = (line or ""):match("^(%d+) (%d+)$")
  if not port then
    proc:close()
    error("helper.hostile: server did not start: " .. tostring(line), 2)
  end
  return setmetatable({ url = "http://" .. host .. ":" .. port, port = tonumber(port),
                        pid = tonumber(pid), proc = proc, dir = dir }, Hostile)
end

--- The heads of the requests received so far, in order.
function Hostile:requests()
  local out = {}
  local f = io.open(self.dir .. "/log", "r")
  if not f then return out end
  local loadstring = loadstring or load   -- luacheck: ignore 113 (5.1)
  for line in f:lines() do out[#out + 1] = loadstring("return " .. line)() end
  f:close()
  return out
end

--- What the server wrote on stderr (script errors).
function Hostile:stderr()
  local f = io.open(self.dir .. "/stderr", "r")
  local s = f and f:read("*a") or ""
  if f then f:close() end
  return s
end

function Hostile:stop()
  if not self.proc then return end
  os.execute("kill " .. self.pid .. " 2>/dev/null")
  self.proc:close()
  self.proc = nil
  os.execute("rm -rf " .. shell_quote(self.dir))
end

Hostile.__gc = Hostile.stop

---------------------------------------------------------------------------
-- Lua child processes (the interpreter and build under test)

local Child = {}
Child.__index = Child

--- Run a chunk of Lua in a child process of the interpreter under test, with
-- the repository's paths set; `...` become its arguments. Returns at once.
-- `code` may be preceded by an options table: `{ memory_kb = n }` runs the
-- child under `ulimit -v n` (out-of-memory cases).
-- @treturn table child: `pid`, `:wait()` -> its stdout and stderr
function helper.spawn(code, ...)
  local opts = {}
  if type(code) == "table" then
    opts = code
    return helper.spawn_with(opts, ...)
  end
  return helper.spawn_with(opts, code, ...)
end

function helper.spawn_with(opts, code, ...)
  local lua = os.getenv("CONVERSE_LUA") or "lua5.4"
  local build = os.getenv("CONVERSE_BUILD") or "build/lua5.4"
  local file = os.tmpname()
  local f = assert(io.open(file, "w"))
  f:write(("package.path = %q .. package.path\npackage.cpath = %q .. package.cpath\n")
    :format(ROOT .. "/lua/?.lua;" .. ROOT .. "/lua/?/init.lua;" .. ROOT .. "/spec/?.lua;",
            ROOT .. "/" .. build .. "/?.so;"), code)
  f:close()
  local args = {}
  for i, a in ipairs { ... } do args[i] = shell_quote(a) end
  local limit = opts.memory_kb and ("ulimit -v %d; "):format(opts.memory_kb) or ""
  local p = io.popen(("(%sexec %s %s %s) 2>&1 & echo $!; wait")
    :format(limit, lua, file, table.concat(args, " ")))
  return setmetatable({ pid = assert(tonumber(p:read("*l"))), proc = p, file = file }, Child)
end

function Child:wait()
  local out = self.proc:read("*a")
  self.proc:close()
  os.remove(self.file)
  return out
end

--- Run a chunk in a child process and wait for it (see spawn).
function helper.child(...) return helper.spawn(...):wait() end

---------------------------------------------------------------------------
-- Throwaway servers: redis-server on a free port under a temp dir

local Proc = {}
Proc.__index = Proc

function Proc:stop()
  if not self.pid then return end
  os.execute("kill " .. self.pid .. " 2>/dev/null")
  for _ = 1, 100 do                          -- until it is gone
    if not io.open("/proc/" .. self.pid .. "/stat") then break end
    socket.sleep(0.02)
  end
  self.pid = nil
  if self.dir then os.execute("rm -rf " .. shell_quote(self.dir)) end
end
Proc.__gc = Proc.stop

local function wait_port(port, seconds)
  local deadline = socket.gettime() + (seconds or 10)
  while socket.gettime() < deadline do
    local c = socket.tcp()
    c:settimeout(0.1)
    local ok = c:connect("127.0.0.1", port)
    c:close()
    if ok then return true end
    socket.sleep(0.02)
  end
  return false
end

--- Start redis-server on 127.0.0.1 and a free port (nothing persisted).
-- @treturn table server: `url` (redis://127.0.0.1:PORT), `port`, `:stop()`, `:restart()`,
--   `:cli(args)` (redis-cli output); nil and a reason when redis-server is missing
function helper.start_redis(port)
  if not os.execute("command -v redis-server >/dev/null 2>&1") then
    return nil, "redis-server not installed"
  end
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p " .. shell_quote(dir)))
  local pid
  -- A free port can be taken by someone else before redis binds it: start,
  -- then make sure *our* process answers PING there; else try another port.
  for _ = 1, 5 do
    local try = port or helper.free_port()
    local p = io.popen(("redis-server --bind 127.0.0.1 --port %d --save '' --appendonly no "
      .. "--dir %s --logfile %s/log >/dev/null 2>&1 & echo $!"):format(try, shell_quote(dir), dir))
    pid = tonumber(p:read("*l"))
    p:close()
    local ok = wait_port(try)
    local alive = io.open("/proc/" .. pid .. "/stat")
    if alive then alive:close() end
    if ok and alive then
      local f = io.popen(("redis-cli -p %d ping 2>/dev/null"):format(try))
      ok = f:read("*a"):find("PONG", 1, true)
      f:close()
    end
    if ok and alive then port = try break end
    os.execute("kill " .. pid .. " 2>/dev/null")
    pid = nil
    if port then break end                   -- a fixed port that is busy: give up
  end
  if not pid then return nil, "redis-server did not start" end
  local self = setmetatable({ pid = pid, port = port, dir = dir,
                              url = "redis://127.0.0.1:" .. port }, Proc)
  function self.cli(_, args)
    local f = io.popen(("redis-cli -p %d %s"):format(port, args))
    local out = f:read("*a")
    f:close()
    return out
  end
  return self
end

---------------------------------------------------------------------------
-- Assertions shared by the specs

--- Call f, expect it to raise a converse error object, return the object.
function helper.raises(f)
  local ok, err = pcall(f)
  assert(not ok, "expected an error")
  assert(require("converse").is_error(err), "expected an error object, got " .. tostring(err))
  return err
end

--- Like raises, for a "json" error whose message matches pattern.
function helper.raises_json(f, pattern)
  local err = helper.raises(f)
  assert(err.kind == "json", "expected a json error, got " .. tostring(err))
  if pattern then assert(err.message:find(pattern), err.message .. " ~ " .. pattern) end
  return err
end

--- The decoded query of a mock log entry; repeated parameters become arrays.
function helper.query_of(entry)
  local q = {}
  for k, v in (entry.query or ""):gmatch("([^&=]+)=([^&]*)") do
    v = v:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end)
    local cur = q[k]
    if cur == nil then q[k] = v
    elseif type(cur) == "table" then cur[#cur + 1] = v
    else q[k] = { cur, v } end
  end
  return q
end

--- The mock log entries whose path starts with prefix.
function helper.entries(mock, prefix)
  local out = {}
  for _, e in ipairs(mock:log()) do
    if e.path:sub(1, #prefix) == prefix then out[#out + 1] = e end
  end
  return out
end

---------------------------------------------------------------------------
-- nginx over TLS (self-signed certificate for 127.0.0.1), for TLS specs

local Nginx = {}
Nginx.__index = Nginx

local function free_port()
  local s = assert(socket.bind("127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  return tonumber(port)
end
helper.free_port = free_port

--- Start nginx on 127.0.0.1 with TLS (and HTTP/2) serving `body` as JSON at /data.
-- @treturn table server: `url` (https://127.0.0.1:PORT), `cert` (PEM file), `:stop()`;
--   nil and a reason when nginx or openssl is missing
function helper.start_tls_server(body)
  if not os.execute("command -v nginx >/dev/null 2>&1 && command -v openssl >/dev/null 2>&1") then
    return nil, "nginx or openssl not installed"
  end
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p " .. dir .. "/tmp"))
  local ok = os.execute(("openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 "
    .. "-addext subjectAltName=IP:127.0.0.1 -keyout %s/key.pem -out %s/cert.pem >/dev/null 2>&1")
    :format(dir, dir))
  if not ok then return nil, "openssl could not make a certificate" end
  local port = free_port()
  local conf = ([[
daemon on;
pid %s/nginx.pid;
error_log %s/error.log;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path %s/tmp; proxy_temp_path %s/tmp; fastcgi_temp_path %s/tmp;
  uwsgi_temp_path %s/tmp; scgi_temp_path %s/tmp;
  server {
    listen 127.0.0.1:%d ssl http2;
    ssl_certificate %s/cert.pem;
    ssl_certificate_key %s/key.pem;
    location /data { default_type application/json; return 200 '%s'; }
  }
}
]]):format(dir, dir, dir, dir, dir, dir, dir, port, dir, dir, body)
  local f = assert(io.open(dir .. "/nginx.conf", "w"))
  f:write(conf)
  f:close()
  if not os.execute(("nginx -p %s -c %s/nginx.conf >/dev/null 2>&1"):format(dir, dir)) then
    return nil, "nginx did not start"
  end
  for _ = 1, 100 do                          -- wait until it accepts connections
    local c = socket.tcp()
    c:settimeout(0.1)
    if c:connect("127.0.0.1", port) then c:close() break end
    c:close()
    socket.sleep(0.02)
  end
  return setmetatable({ url = "https://127.0.0.1:" .. port, cert = dir .. "/cert.pem",
                        dir = dir }, Nginx)
end

function Nginx:stop()
  if not self.dir then return end
  local f = io.open(self.dir .. "/nginx.pid")
  local pid = f and tonumber(f:read("*a"))
  if f then f:close() end
  if pid then
    os.execute("kill " .. pid .. " 2>/dev/null")
    for _ = 1, 100 do                        -- until the master and its worker are gone
      if not io.open("/proc/" .. pid .. "/stat") then break end
      socket.sleep(0.02)
    end
  end
  os.execute("rm -rf " .. self.dir)
  self.dir = nil
end

---------------------------------------------------------------------------
-- A throwaway PostgreSQL cluster: initdb into a temp dir (as the postgres
-- user when we run as root: initdb refuses root), the server on 127.0.0.1
-- and a free port with its socket under the temp dir, stopped by PID. A
-- watchdog shell stops it and removes the directory if this process dies
-- first, so nothing outlives the run.

local Postgres = {}
Postgres.__index = Postgres

local function pg_bindir()
  local p = io.popen("ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1")
  local dir = p:read("*l")
  p:close()
  if dir and dir ~= "" then return dir end
  p = io.popen("pg_config --bindir 2>/dev/null")
  dir = p:read("*l")
  p:close()
  return dir ~= "" and dir or nil
end

local function my_pid()
  local f = io.open("/proc/self/stat")
  local s = f and f:read("*l")
  if f then f:close() end
  return s and tonumber(s:match("^(%d+)"))
end

-- PostgreSQL's programs run without our LD_PRELOAD: under `make asan` the
-- sanitizer runtimes are preloaded for converse's core, and `postgres -V`
-- (run by initdb) hangs with them.
local NO_PRELOAD = "env -u LD_PRELOAD "

local function as_owner(self, cmd)
  if self.user then cmd = ("runuser -u %s -- %s"):format(self.user, cmd) end
  return NO_PRELOAD .. cmd
end

function Postgres:start_server()
  local opts = ("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off "
    .. "-c full_page_writes=off -c max_connections=200 -c shared_buffers=16MB")
    :format(self.port, self.dir .. "/sock")
  local cmd = as_owner(self, ("%s/pg_ctl -D %s -l %s -w -t 60 -s -o %s start"):format(self.bin,
    shell_quote(self.dir .. "/data"), shell_quote(self.dir .. "/log"), shell_quote(opts)))
  if not os.execute(cmd .. " >/dev/null 2>&1") then return false end
  local f = io.open(self.dir .. "/data/postmaster.pid")
  self.pid = f and tonumber(f:read("*l"))
  if f then f:close() end
  return self.pid ~= nil
end

--- Start a PostgreSQL cluster of its own.
-- @treturn table server: `conninfo` (libpq key=value), `port`, `pid`, `dir`,
--   `:psql(sql)` (output of psql -At), `:stop()`, `:restart([mode])`, `:kill([mode])`,
--   `:start()`; or nil and a reason when PostgreSQL is not installed
function helper.start_postgres()
  local bin = pg_bindir()
  if not bin or not io.open(bin .. "/initdb") then return nil, "PostgreSQL (initdb) not installed" end
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p " .. shell_quote(dir .. "/sock")))
  local self = setmetatable({ bin = bin, dir = dir }, Postgres)
  local idp = io.popen("id -u")
  local uid = idp:read("*l")
  idp:close()
  if uid == "0" then
    self.user = "postgres"
    os.execute(("chown -R postgres %s && chmod 700 %s"):format(shell_quote(dir), shell_quote(dir)))
  end
  if not os.execute(as_owner(self, ("%s/initdb -D %s -A trust -U postgres -E UTF8 --locale=C --no-sync")
      :format(bin, shell_quote(dir .. "/data"))) .. " >/dev/null 2>&1") then
    os.execute("rm -rf " .. shell_quote(dir))
    return nil, "initdb failed"
  end
  for _ = 1, 5 do
    self.port = free_port()
    if self:start_server() then break end
    self.pid = nil
  end
  if not self.pid then
    os.execute("rm -rf " .. shell_quote(dir))
    return nil, "PostgreSQL did not start"
  end
  self.conninfo = ("host=127.0.0.1 port=%d user=postgres dbname=postgres"):format(self.port)
  local parent = my_pid()
  if parent then                       -- the watchdog: nothing outlives this process
    os.execute(("( while kill -0 %d 2>/dev/null && [ -d %s ]; do sleep 1; done; "
      .. "[ -f %s/data/postmaster.pid ] && kill -INT $(head -n 1 %s/data/postmaster.pid) 2>/dev/null; "
      .. "sleep 2; rm -rf %s ) >/dev/null 2>&1 &"):format(parent, shell_quote(dir), shell_quote(dir),
      shell_quote(dir), shell_quote(dir)))
  end
  return self
end

local shared_pg

--- The suite's PostgreSQL cluster: started at the first call, shared by
-- every spec file of this busted run (an initdb costs seconds), stopped
-- when the process ends (finalizer, and the watchdog). Give each spec its
-- own database with `:database(name)`.
-- @return server (see start_postgres), or nil and a reason
function helper.postgres()
  if shared_pg and shared_pg.dir then return shared_pg end
  local server, why = helper.start_postgres()
  if not server then return nil, why end
  shared_pg = server
  local sentinel = setmetatable({}, { __gc = function() server:stop() end })
  helper._pg_sentinel = sentinel
  return server
end

--- A fresh, empty database on this server (dropped first if it exists).
-- @treturn string its conninfo
function Postgres:database(name)
  self:psql(("DROP DATABASE IF EXISTS %s WITH (FORCE)"):format(name), "postgres")
  local out = self:psql(("CREATE DATABASE %s"):format(name), "postgres")
  assert(out == "", out)
  self.db = name
  return ("host=127.0.0.1 port=%d user=postgres dbname=%s"):format(self.port, name)
end

--- Run SQL with psql in `db` (default: the last `database()`, else postgres);
-- its output (-At: unaligned, tuples only).
function Postgres:psql(sql, db)
  local f = io.popen((NO_PRELOAD .. "psql -h 127.0.0.1 -p %d -U postgres -d %s -qAt -v ON_ERROR_STOP=1 -c %s 2>&1")
    :format(self.port, db or self.db or "postgres", shell_quote(sql)))
  local out = f:read("*a")
  f:close()
  return (out:gsub("\n$", ""))
end

-- Signal the postmaster and wait until it is gone. mode: "fast" (SIGINT,
-- the default), "immediate" (SIGQUIT: like a crash, recovery at the next
-- start), "smart" (SIGTERM).
function Postgres:kill(mode)
  if not self.pid then return end
  local sig = ({ fast = "INT", immediate = "QUIT", smart = "TERM" })[mode or "fast"]
  os.execute(("kill -%s %d 2>/dev/null"):format(sig, self.pid))
  for _ = 1, 1500 do
    -- gone, or a zombie (our container's init may reap orphans late): its
    -- sockets and files are closed either way
    local f = io.open("/proc/" .. self.pid .. "/stat")
    local st = f and f:read("*l")
    if f then f:close() end
    if not st or st:match("^%d+ %b() (%a)") == "Z" then break end
    socket.sleep(0.02)
  end
  self.pid = nil
end

--- Start it again on the same port (after kill).
function Postgres:start()
  for _ = 1, 50 do
    if self:start_server() then return true end
    socket.sleep(0.1)
  end
  error("helper: PostgreSQL did not start again")
end

function Postgres:restart(mode)
  self:kill(mode)
  return self:start()
end

function Postgres:stop()
  if not self.dir then return end
  self:kill("fast")
  os.execute("rm -rf " .. shell_quote(self.dir))
  self.dir = nil
end
Postgres.__gc = Postgres.stop

return helper
