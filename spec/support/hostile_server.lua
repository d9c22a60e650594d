-- A raw-socket HTTP server that does whatever a spec script tells it to:
-- lie about framing, stall, send endless bodies, echo secrets, drop the
-- connection at any byte. Run by spec/helper.lua (helper.hostile) as a
-- child process:  lua hostile_server.lua HOST SCRIPT LOG
-- SCRIPT is a Lua file returning `function(req, n, conn)`: called for the
-- n-th request with req = { method, path, target, version, headers (lower
-- case), head (raw text), body }; it returns the raw response bytes to send
-- (a string), or uses conn:send(s) / conn:sleep(s) itself and returns nil.
-- Returning a second value "keep" keeps the connection open for another
-- request; otherwise it is closed. Each request is appended to LOG as one
-- line of `%q`-quoted head text. Binds HOST (127.0.0.1 or 127.0.0.2) on a
-- free port and prints "PORT PID" on the first line; exits when its parent
-- process does, or after 300 s.
local socket = require "socket"

local host, script, logfile = ...

-- Helpers for scripts (globals in the script's environment).
-- response(status, body [, headers]): HTTP/1.1 text, Content-Length added
-- unless headers frame the body; chunk(s): one chunk of a chunked body.
function response(status, body, headers)         -- luacheck: ignore
  local lines = { ("HTTP/1.1 %d X"):format(status) }
  local framed = false
  for k, v in pairs(headers or {}) do
    lines[#lines + 1] = k .. ": " .. v
    local lk = k:lower()
    if lk == "content-length" or lk == "transfer-encoding" then framed = true end
  end
  if not framed then lines[#lines + 1] = "Content-Length: " .. #body end
  return table.concat(lines, "\r\n") .. "\r\n\r\n" .. body
end
function chunk(s) return ("%x\r\n%s\r\n"):format(#s, s) end   -- luacheck: ignore
json_array = function(n, f)                        -- luacheck: ignore
  local t = {}
  for i = 1, n do t[i] = f(i) end
  return "[" .. table.concat(t, ",") .. "]"
end

local handle = assert(dofile(script))

local function self_stat()
  local f = io.open("/proc/self/stat", "r")
  local s = f and f:read("*l") or ""
  if f then f:close() end
  return tonumber(s:match("^(%d+)")), tonumber(s:match("%) %S+ (%d+)"))
end

local pid, ppid = self_stat()
local srv = assert(socket.bind(host, 0))
local _, port = srv:getsockname()
io.stdout:write(port, " ", tostring(pid), "\n")
io.stdout:flush()

local conn_mt = {}
conn_mt.__index = conn_mt
function conn_mt:send(s)
  if self.dead then return nil end
  self.sock:settimeout(10)
  local i = 1
  while i <= #s do
    local last, err, partial = self.sock:send(s, i)
    if not last then
      if err == "timeout" and partial and partial >= i then i = partial + 1
      else self.dead = true return nil end
    else i = last + 1 end
  end
  return true
end
function conn_mt.sleep(_, s) socket.sleep(s) end
function conn_mt:close() self.dead = true self.sock:close() end

local function read_request(c)
  c.sock:settimeout(10)
  local lines = {}
  while true do
    local line, err = c.sock:receive("*l")
    if not line then return nil, err end
    if line == "" then break end
    lines[#lines + 1] = line
  end
  local method, target, version = (lines[1] or ""):match("^(%S+) (%S+) (HTTP/%d%.%d)$")
  local req = { method = method, target = target, version = version, headers = {},
                head = table.concat(lines, "\r\n") }
  req.path = target and target:match("^[^?]*")
  for i = 2, #lines do
    local k, v = lines[i]:match("^([^:]+):%s*(.-)%s*$")
    if k then req.headers[k:lower()] = v end
  end
  local n = tonumber(req.headers["content-length"] or 0) or 0
  req.body = n > 0 and c.sock:receive(n) or ""
  return req
end

local deadline = socket.gettime() + 300
local count = 0
srv:settimeout(0.2)
while socket.gettime() < deadline do
  local sock = srv:accept()
  if sock then
    local c = setmetatable({ sock = sock }, conn_mt)
    while not c.dead do
      local req = read_request(c)
      if not req then break end
      count = count + 1
      local f = io.open(logfile, "a")
      f:write(("%q"):format(req.head):gsub("\\\n", "\\n"), "\n")
      f:close()
      local ok, out, keep = pcall(handle, req, count, c)
      if not ok then io.stderr:write("hostile_server: ", tostring(out), "\n") end
      if ok and type(out) == "string" then c:send(out) end
      if keep ~= "keep" then break end
    end
    if not c.dead then c.sock:close() end
  else
    local _, now_ppid = self_stat()
    if now_ppid ~= ppid then break end
  end
end
