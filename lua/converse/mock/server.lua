--- The mock's socket loop: non-blocking luasocket, one coroutine per
-- connection, `socket.select` to wait. HTTP/1.1 keep-alive, Content-Length or
-- chunked request bodies, `Expect: 100-continue`, Content-Length or chunked
-- responses, and the transport-level faults a handler can ask for
-- (`res.delay`, `res.drop_after`, `res.trickle`, `res.chunked`, `res.close`).
--
-- The handler is a plain function `handler(req) -> res` (see
-- `converse.mock.app`); it never sees a socket.
-- @module converse.mock.server
local socket = require "socket"
local http   = require "converse.mock.http"

local type, pairs, ipairs, tonumber, tostring, setmetatable, pcall =
      type, pairs, ipairs, tonumber, tostring, setmetatable, pcall
local find, sub, lower, format = string.find, string.sub, string.lower, string.format
local concat = table.concat
local gettime, select = socket.gettime, socket.select
local cocreate, resume, yield, costatus = coroutine.create, coroutine.resume,
      coroutine.yield, coroutine.status

local M = {}
local mt = { __index = M }

local READ_SIZE   = 65536
local WRITE_BLOCK = 262144          -- coalesce body parts into writes of this size
local MAX_HEAD    = 65536

--- Create a listening server.
-- @tparam table opts `host` (default "127.0.0.1"), `port` (0 = any free port),
--   `handler` (function(req) -> res), `on_error` (function(msg), optional)
-- @treturn table server
-- @treturn[2] string error
function M.new(opts)
  local host = opts.host or "127.0.0.1"
  local sock = socket.tcp()
  sock:setoption("reuseaddr", true)
  local ok, err = sock:bind(host, opts.port or 0)
  if not ok then sock:close(); return nil, "bind " .. host .. ": " .. tostring(err) end
  ok, err = sock:listen(512)
  if not ok then sock:close(); return nil, "listen: " .. tostring(err) end
  sock:settimeout(0)
  local _, port = sock:getsockname()
  return setmetatable({
    sock = sock, host = host, port = tonumber(port),
    handler = opts.handler, on_error = opts.on_error,
    conns = {},            -- sock -> conn
    sleepers = {},         -- conn -> wake time
    next_conn = 0, closed = false,
  }, mt)
end

-- Socket I/O as seen from inside a connection coroutine ----------------------

local function wait(conn, how) conn.wait = how; yield() end

local function read(conn)
  local sock = conn.sock
  while true do
    local data, err, partial = sock:receive(READ_SIZE)
    if data then return data end
    if partial and partial ~= "" then return partial end
    if err ~= "timeout" then return nil, err end
    wait(conn, "r")
  end
end

local function write(conn, data)
  local sock, i, n = conn.sock, 1, #data
  while i <= n do
    local last, err, partial = sock:send(data, i)
    if last then return true end
    if err ~= "timeout" then return nil, err end
    i = partial + 1
    if i <= n then wait(conn, "w") end
  end
  return true
end

local function sleep(self, conn, seconds)
  if seconds and seconds > 0 then
    self.sleepers[conn] = gettime() + seconds
    wait(conn, "sleep")
  end
end

-- Read one request; returns req, or nil when the peer closed (or it was bad).
local function read_request(_, conn)
  local buf = conn.buf
  local e = find(buf, "\r\n\r\n", 1, true)
  while not e do
    if #buf > MAX_HEAD then
      write(conn, "HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\n" ..
                  "Content-Length: 0\r\n\r\n")
      return nil
    end
    local data = read(conn)
    if not data then return nil end
    buf = buf .. data
    e = find(buf, "\r\n\r\n", 1, true)
  end
  local req, err = http.parse_head(sub(buf, 1, e - 1))
  buf = sub(buf, e + 4)
  if not req then
    local body = '{"error":"' .. err .. '"}'
    write(conn, "HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Type: application/json\r\n" ..
                "Content-Length: " .. #body .. "\r\n\r\n" .. body)
    return nil
  end
  local h = req.headers
  local te = h["transfer-encoding"]
  local chunked = te and find(lower(te), "chunked", 1, true)
  local length = tonumber(h["content-length"] or "0") or 0
  if h.expect and lower(h.expect) == "100-continue" and (chunked or #buf < length) then
    write(conn, "HTTP/1.1 100 Continue\r\n\r\n")
  end
  if chunked then
    while true do
      local body, pos = http.dechunk(buf, 1)
      if body then req.body = body; buf = sub(buf, pos); break end
      if pos then return nil end
      local data = read(conn)
      if not data then return nil end
      buf = buf .. data
    end
  elseif length > 0 then
    local parts, have = { buf }, #buf
    while have < length do
      local data = read(conn)
      if not data then return nil end
      parts[#parts + 1] = data
      have = have + #data
    end
    buf = concat(parts)
    req.body = sub(buf, 1, length)
    buf = sub(buf, length + 1)
  else
    req.body = ""
  end
  conn.buf = buf
  return req
end

-- Send a response, honouring the transport-level fault fields.
local function send_response(self, conn, req, res)
  local status = res.status or 200
  local headers = http.header_list(res.headers)
  local body = res.body or ""
  local parts = type(body) == "table" and body or { body }
  local length = 0
  for i = 1, #parts do length = length + #parts[i] end
  if status == 204 or status == 304 then parts, length = {}, 0 end
  if req.method == "HEAD" then parts = {} end       -- Content-Length still tells the GET length
  local close = res.close or req.close
  local chunked = res.chunked
  local out = {}
  for i = 1, #headers do out[i] = headers[i] end
  if not http.get_header(headers, "Date") then
    out[#out + 1] = { "Date", http.http_date(gettime()) }
  end
  out[#out + 1] = { "Server", "converse-mock" }
  if chunked then out[#out + 1] = { "Transfer-Encoding", "chunked" }
  elseif not http.get_header(headers, "Content-Length") then
    out[#out + 1] = { "Content-Length", tostring(length) }
  end
  if close then out[#out + 1] = { "Connection", "close" } end
  if res.drop_before_head then return nil end
  local head = http.render_head(status, out)
  local drop = res.drop_after
  local trickle = res.trickle
  -- Body bytes are gathered into blocks; `budget` counts body bytes still allowed.
  local budget = drop or math.huge
  local block, bn, blen = { head }, 1, 0
  if trickle then                       -- the head goes at once, the body trickles
    if not write(conn, head) then return nil end
    block, bn = {}, 0
  end
  local function flush(last)
    if bn == 0 then return true end
    local data = concat(block, "", 1, bn)
    bn, blen = 0, 0
    if trickle then
      local size = trickle.bytes or 1
      for i = 1, #data, size do
        if not write(conn, sub(data, i, i + size - 1)) then return nil end
        if not (last and i + size > #data) then sleep(self, conn, trickle.interval or 0.01) end
      end
      return true
    end
    return write(conn, data)
  end
  for i = 1, #parts do
    local p = parts[i]
    if budget <= 0 then break end
    if #p > budget then p = sub(p, 1, budget) end
    budget = budget - #p
    if chunked and #p > 0 then
      bn = bn + 1; block[bn] = format("%x\r\n", #p)
      bn = bn + 1; block[bn] = p
      bn = bn + 1; block[bn] = "\r\n"
    else
      bn = bn + 1; block[bn] = p
    end
    blen = blen + #p
    if blen >= WRITE_BLOCK then
      if not flush(false) then return nil end
    end
  end
  if drop then
    flush(true)
    return nil
  end
  if chunked then bn = bn + 1; block[bn] = "0\r\n\r\n" end
  if not flush(true) then return nil end
  return not close
end

local function serve(self, conn)
  while not self.closed do
    local req = read_request(self, conn)
    if not req then return end
    req.conn = conn.id
    req.time = gettime()
    local v = req.headers.connection and lower(req.headers.connection) or ""
    req.close = (req.version == "1.0" and not find(v, "keep-alive", 1, true))
                or find(v, "close", 1, true) ~= nil
    local ok, res = pcall(self.handler, req)
    if not ok then
      if self.on_error then self.on_error(tostring(res)) end
      res = { status = 500, headers = { { "Content-Type", "application/json" } },
              body = '{"error":"mock handler failed"}' }
    end
    if res.delay and res.delay > 0 then sleep(self, conn, res.delay) end
    if not send_response(self, conn, req, res) then return end
  end
end

local function close_conn(self, conn)
  if conn.closed then return end
  conn.closed = true
  conn.sock:close()
  self.conns[conn.sock] = nil
  self.sleepers[conn] = nil
end

local function run_conn(self, conn)
  conn.wait = nil
  local ok, err = resume(conn.co)
  if not ok and self.on_error then self.on_error("connection " .. conn.id .. ": " .. tostring(err)) end
  if costatus(conn.co) == "dead" then close_conn(self, conn) end
end

local function accept(self)
  while true do
    local client = self.sock:accept()
    if not client then return end
    client:settimeout(0)
    client:setoption("tcp-nodelay", true)
    self.next_conn = self.next_conn + 1
    local conn = { sock = client, id = self.next_conn, buf = "" }
    conn.co = cocreate(function() serve(self, conn) end)
    self.conns[client] = conn
    run_conn(self, conn)
  end
end

--- Run one iteration of the loop: wait at most `timeout` seconds for activity
-- and serve what is ready.
-- @tparam[opt=1] number timeout seconds
function M:step(timeout)
  if self.closed then return end
  timeout = timeout or 1
  local now = gettime()
  for _, t in pairs(self.sleepers) do
    if t - now < timeout then timeout = t - now end
  end
  if timeout < 0 then timeout = 0 end
  local recvt, sendt = { self.sock }, {}
  for s, conn in pairs(self.conns) do
    if conn.wait == "r" then recvt[#recvt + 1] = s
    elseif conn.wait == "w" then sendt[#sendt + 1] = s end
  end
  local r, w = select(recvt, sendt, timeout)
  for _, s in ipairs(r) do
    if s == self.sock then accept(self)
    else
      local conn = self.conns[s]
      if conn and conn.wait == "r" then run_conn(self, conn) end
    end
  end
  for _, s in ipairs(w) do
    local conn = self.conns[s]
    if conn and conn.wait == "w" then run_conn(self, conn) end
  end
  now = gettime()
  for conn, t in pairs(self.sleepers) do
    if t <= now then
      self.sleepers[conn] = nil
      if not conn.closed then run_conn(self, conn) end
    end
  end
end

--- Serve until `stop()` is called or `tick()` returns false.
-- @tparam[opt] function tick called about every `interval` seconds
-- @tparam[opt=0.5] number interval
function M:run(tick, interval)
  interval = interval or 0.5
  local next_tick = gettime() + interval
  while not self.closed do
    self:step(interval)
    if tick and gettime() >= next_tick then
      next_tick = gettime() + interval
      if tick() == false then break end
    end
  end
  self:stop()
end

--- Number of open client connections.
-- @treturn number
function M:connections()
  local n = 0
  for _ in pairs(self.conns) do n = n + 1 end
  return n
end

--- Close the listening socket and every connection. Safe to call twice.
function M:stop()
  if self.closed then return end
  self.closed = true
  for _, conn in pairs(self.conns) do
    conn.closed = true
    conn.sock:close()
  end
  self.conns, self.sleepers = {}, {}
  self.sock:close()
end

return M
