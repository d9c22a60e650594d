--- The nginx transport: ngx_lua cosockets behind the transport contract
-- (converse.transport), so that a client inside OpenResty never blocks its
-- worker. Chosen automatically inside nginx; `transport = "nginx"` asks for it.
--
-- A transfer is one HTTP/1.1 exchange on one `ngx.socket.tcp` cosocket.
-- `request()` spawns a light thread (`ngx.thread.spawn`) that connects
-- (keep-alive pool, TLS) and sends the request, then ends; so the pages a
-- pager asks for ahead are all under way at once, and the server's time
-- for them overlaps. Whoever reads the transfer (`headers`, `next`,
-- `body`) reads the socket itself, when the response asks for bytes;
-- meanwhile a response waits in the kernel's socket buffer. No thread ever
-- waits for a response, so a pager abandoned without close() never holds
-- its request open (nginx waits for a request's light threads).
--
-- The bytes go into `core.http_response` (src/http_response.c): the framing
-- parser (src/http.c), gzip/deflate and back-pressure (src/body.c) and the
-- streaming decoder, all in C, sans I/O, each call bounded (64 KiB parsed,
-- 1 MiB inflated, one record decoded). Reading stops while the decoder
-- holds 256 KiB. Every `SLICE` seconds of work the transport yields to
-- nginx's event loop for one turn (see `turn`), so the worker keeps serving
-- other requests while a 1,000,000-row page is decoded.
--
-- A connection goes back to the pool (`setkeepalive`; pool name: scheme,
-- host, port, SNI name and verification) only when the parser read the
-- response completely and it may carry another request; else it is
-- closed. A pooled connection the server closed meanwhile is replaced
-- (twice at most) before anything of the response arrived, as libcurl does.
-- Certificates are verified unless `insecure`, against nginx's
-- `lua_ssl_trusted_certificate` (there is no per-client `ca_file` here).
-- Host names need nginx's `resolver`. See docs/nginx.md.
-- @module converse.transport.nginx
-- luacheck: globals ngx
local core      = require "converse.core"
local errors    = require "converse.errors"
local query     = require "converse.query"
local transport = require "converse.transport"
local semaphore = require "ngx.semaphore"

local ngx = ngx
local tcp, spawn, kill, sleep = ngx.socket.tcp, ngx.thread.spawn, ngx.thread.kill, ngx.sleep
local timer_at, new_semaphore = ngx.timer.at, semaphore.new
local exiting = ngx.worker.exiting
local now, response = core.now, core.http_response
local setmetatable, type, tostring, pcall, ipairs, pairs = setmetatable, type, tostring, pcall, ipairs, pairs
local min, max, huge = math.min, math.max, math.huge
local format, running = string.format, coroutine.running

local M = {
  CHUNK = 65536,        -- bytes asked of one socket read
  SLICE = 0.005,        -- seconds of work between two turns of nginx's event loop
  NAP = 0.001,          -- the longest a turn waits: the shortest sleep nginx has
  POOL_SIZE = 32,       -- idle connections kept per pool
  IDLE = 60,            -- seconds an idle pooled connection is kept
  ERROR_BODY_SECS = 5,  -- an error body may take this long after its head
  STALE_RETRIES = 2,    -- fresh connections tried when a pooled one was closed
}

local MAX_WAIT = 86400

-- ---- turns of the event loop -------------------------------------------------

local slice_start = now()

-- One turn of the event loop: whatever waits (requests, timers, sockets)
-- runs, then we go on. ngx.sleep(0) would be that turn, but Debian's ngx_lua
-- lacks OpenResty's delayed-events patch (it logs a warning each time), and
-- ngx.sleep(NAP) waits a millisecond or more even when nothing else waits:
-- a tenth of a large page's time. So a timer of 0 s posts a semaphore the
-- transport waits on: timers of 0 s run on the loop's next pass, after the
-- events that were ready. Without a timer (lua_max_pending_timers reached,
-- the worker exiting) the turn is the sleep. The wait is bounded by NAP,
-- what a turn cost before (nginx's clock is in milliseconds: that wait may
-- also end at once, before the timer ran; no harm). A timer that has not
-- run by the next turn was dropped (the worker runs lua_max_running_timers
-- timers already: nginx says so with an alert): the turns of the next
-- second are sleeps, so such a worker logs one alert a second, not one a
-- turn.
local sleep_until, unposted = 0, nil

local function post(_, sem) sem:post() end

local function turn()
  if unposted then
    if unposted:count() <= 0 then sleep_until = now() + 1 end
    unposted = nil
  end
  if now() >= sleep_until then
    local sem = new_semaphore()
    if sem and timer_at(0, post, sem) then
      if not sem:wait(M.NAP) then unposted = sem end
      return
    end
  end
  sleep(M.NAP)
end

-- Give nginx a turn once this worker has been busy for SLICE seconds.
local function breathe()
  local t = now()
  if t - slice_start >= M.SLICE then
    turn()
    slice_start = now()
  end
end

-- After an operation that may have waited: if it did, nginx had its turn.
local function waited(t0)
  local t = now()
  if t - t0 > 0.0005 then slice_start = t end
end

M.breathe = breathe

-- ---- requests ----------------------------------------------------------------

local BODY_METHODS = { POST = true, PUT = true, PATCH = true }

-- The URL's parts and the request target ("/path?query").
local function parse(url)
  local u = type(url) == "string" and query.parse_url(url)
  if not u or (u.scheme ~= "http" and u.scheme ~= "https") then
    errors.usage("url must be an absolute http:// or https:// URL")
  end
  local rest = url:match("^%a[%w+.-]*://[^/?#]*(.*)$")
  if rest == "" or rest:sub(1, 1) == "?" then rest = "/" .. rest end
  local default = (u.scheme == "https" and 443 or 80) == u.port
  u.authority = default and u.host or (u.host .. ":" .. u.port)
  u.name = u.host:match("^%[(.*)%]$") or u.host           -- for connect, SNI and checks
  return u, rest
end

-- The request's bytes, as a table for sock:send.
local function request_bytes(tr, method, u, path, headers, body)
  if not method:match("^[%w!#$%%&'*+.^_`|~-]+$") or path:find("[%s%c]") then
    errors.usage("method and url must not contain spaces or control characters")
  end
  local out, have = { method, " ", path, " HTTP/1.1\r\n" }, {}
  for _, line in ipairs(headers or {}) do
    if type(line) ~= "string" or line:find("[\r\n%z]") then
      errors.usage("header lines must be strings without line breaks")
    end
    have[(line:match("^([^:]*)") or ""):lower()] = true
  end
  local function add(line) out[#out + 1] = line out[#out + 1] = "\r\n" end
  if not have.host then add("Host: " .. u.authority) end
  if not have["user-agent"] and tr.user_agent then add("User-Agent: " .. tr.user_agent) end
  if not have["accept-encoding"] then add("Accept-Encoding: gzip, deflate") end
  for _, line in ipairs(headers or {}) do add(line) end
  if body then add("Content-Length: " .. #body)
  elseif BODY_METHODS[method] then add("Content-Length: 0") end
  out[#out + 1] = "\r\n"
  if body then out[#out + 1] = body end
  return out
end

-- ---- Transfer ----------------------------------------------------------------

local Transfer = {}
Transfer.__index = Transfer

function Transfer:_fail(kind, message, permanent)
  if not self.failed then
    self.failed, self.kind, self.msg, self.permanent = true, kind, message, permanent or false
  end
  return nil
end

-- Seconds the next operation may take: its own limit within the total.
function Transfer:_budget(limit)
  return min(limit, self.deadline - now())
end

function Transfer:_where()
  return self.u.authority
end

-- A timeout: the total deadline's when it passed, else the operation's.
function Transfer:_timed_out(message, limit, option)
  if self.deadline - now() <= 0.001 then
    return self:_fail("timeout", format("request to %s timed out after %.3g s (timeout)",
                                        self:_where(), self.tr.timeout))
  end
  return self:_fail("timeout", format(message .. " (%s)", self:_where(), limit, option))
end

-- One socket read into the response. true; "stale" (a pooled connection
-- the server had closed: nothing arrived); "cap" (`cap` seconds passed:
-- no failure); nil after a failure (recorded).
function Transfer:_read(cap)
  local limit = self.tr.read_timeout
  local secs = self:_budget(limit)
  local capped = cap ~= nil and cap < secs
  if capped then secs = cap end
  if secs <= 0 then
    if capped then return "cap" end
    return self:_timed_out("no data from %s for %.3g s", limit, "low_speed_time")
  end
  local sock = self.sock
  sock:settimeout(max(1, secs * 1000))
  local t0 = now()
  local data, err = sock:receiveany(M.CHUNK)
  waited(t0)
  if data then
    self.got = self.got + #data
    self.r:feed(data)
    return true
  end
  if self.got == 0 and self.reused and (err == "closed" or err:find("reset", 1, true)) then
    return "stale"
  end
  if err == "closed" then
    self.r:eof()
    return true
  end
  if err == "timeout" then
    if capped then return "cap" end
    return self:_timed_out("no data from %s for %.3g s", limit, "low_speed_time")
  end
  return self:_fail("network", format("reading from %s failed: %s", self:_where(), err))
end

-- TLS failures that trying again cannot mend: verification.
local function tls_failure(err)
  local code = tonumber(tostring(err):match("^(%d+):"))
  return code ~= nil or tostring(err):find("host mismatch", 1, true) ~= nil
end

function Transfer:_connect()
  local tr, u = self.tr, self.u
  local sock = tcp()
  self.sock, self.got, self.reused = sock, 0, false
  local csecs, rsecs = self:_budget(tr.connect_timeout), self:_budget(tr.read_timeout)
  if csecs <= 0 then
    return self:_timed_out("connecting to %s timed out after %.3g s", tr.connect_timeout, "connect_timeout")
  end
  sock:settimeouts(max(1, csecs * 1000), max(1, rsecs * 1000), max(1, rsecs * 1000))
  local t0 = now()
  local ok, err = sock:connect(u.name, u.port, { pool = self.pool })
  waited(t0)
  if not ok then
    if err == "timeout" then
      return self:_timed_out("connecting to %s timed out after %.3g s", tr.connect_timeout, "connect_timeout")
    end
    return self:_fail("network", format("cannot connect to %s: %s", self:_where(), tostring(err)),
                      tostring(err):find("no resolver", 1, true) ~= nil)
  end
  self.reused = (sock:getreusedtimes() or 0) > 0
  if not self.reused then self.connects = self.connects + 1 end
  if u.scheme == "https" and not self.reused then
    t0 = now()
    local done, herr = sock:sslhandshake(false, u.name, not tr.insecure)
    waited(t0)
    if not done then
      if herr == "timeout" then
        return self:_timed_out("TLS handshake with %s timed out after %.3g s", tr.read_timeout, "low_speed_time")
      end
      local hint = tls_failure(herr) and " (nginx trusts the certificates of lua_ssl_trusted_certificate"
        .. " only; see lua_ssl_verify_depth too)" or ""
      return self:_fail("network", format("TLS handshake with %s failed: certificate check: %s%s",
                                          self:_where(), tostring(herr), hint), tls_failure(herr))
    end
    self.fresh_tls = not tr.insecure
  end
  return true
end

function Transfer:_send()
  local t0 = now()
  local ok, err = self.sock:send(self.bytes)
  waited(t0)
  if ok then
    self.fresh_tls = false
    return true
  end
  if self.reused and err ~= "timeout" then return "stale" end
  if self.fresh_tls and err == "closed" then
    -- ngx_lua before lua-nginx-module#2506 (Debian 12 has 0.10.23) loses a
    -- failed certificate check when the handshake completes at once (a
    -- fast server): sslhandshake says yes, nginx has closed the connection
    return self:_fail("network", format("TLS handshake with %s failed: certificate check failed "
      .. "(nginx trusts the certificates of lua_ssl_trusted_certificate only; see its error log)",
      self:_where()), true)
  end
  if err == "timeout" then
    return self:_timed_out("sending the request to %s timed out after %.3g s", self.tr.read_timeout,
                           "low_speed_time")
  end
  return self:_fail("network", format("sending the request to %s failed: %s", self:_where(), err))
end

-- Connect and send; a pooled connection the server closed meanwhile is
-- replaced by a fresh one (STALE_RETRIES times at most).
function Transfer:_exchange()
  while true do
    if not self:_connect() then return end
    local st = self:_send()
    if st ~= "stale" then return st end
    if not self:_stale() then return end
  end
end

-- The pooled connection was dead: another, if allowed. true | nil (failed).
function Transfer:_stale()
  self.sock:close()
  self.stale = self.stale + 1
  if self.stale > M.STALE_RETRIES then
    return self:_fail("network", format("the connection to %s closed before the response",
                                        self:_where()))
  end
  return true
end

-- The light thread of a transfer: connect and send, then end.
local function run(t)
  local ok, err = pcall(t._exchange, t)
  if not ok then t:_fail("network", "converse: " .. tostring(err)) end
  t.busy = false
  if t.closed then t:_release() end           -- closed while we were sending
  t.sem:post(1)
end

-- Get bytes the response asked for: wait for the thread's connect and
-- send, then read the socket. Returns "cap" when `cap` seconds passed.
function Transfer:_more(cap)
  if self.busy then
    local left = min(self.deadline - now() + 1, 60, cap or 60)
    if left <= 0 then return "cap" end
    self.sem:wait(max(0.001, left))
    slice_start = now()
    return true
  end
  if self.r:wants() then
    local st = self:_read(cap)
    if st == "stale" then                      -- the pooled connection was dead: again
      if self:_stale() then self:_exchange() end
      return true
    end
    if st == true then breathe() end           -- a fast server never makes us wait
    return st
  end
  self.stalls = self.stalls + 1             -- bounded work is pending in the C core
  if self.stalls > 1000 then return self:_fail("network", "the response stalled") end
  breathe()
  return true
end

local function check(t)
  if t.closed then errors.usage("transfer is closed") end
  return t.r
end

--- Wait for the final response head (1xx skipped).
-- @return status, headers | nil, kind, message, permanent
function Transfer:headers()
  local r = check(self)
  while true do
    local status, headers, msg, permanent = r:head()
    if status then
      self.head_time = self.head_time or now()
      return status, headers
    end
    if status == nil then return nil, headers, msg, permanent end
    if self.failed then return nil, self.kind, self.msg, self.permanent end
    self:_more()
  end
end

--- The next record of a 2xx body (see the contract).
function Transfer:next(skip)
  local r = check(self)
  while true do
    local rec, kind, msg, permanent = r:next(skip)
    if rec ~= false then
      self.stalls = 0
      breathe()
      return rec, kind, msg, permanent
    end
    if self.failed then return nil, self.kind, self.msg, self.permanent end
    self:_more()
  end
end

--- The body as text: a 2xx body without decoder, or the first
-- max_error_body bytes of an error body (given ERROR_BODY_SECS at most).
function Transfer:body()
  local r = check(self)
  local status, kind, msg, permanent = self:headers()
  if not status then return nil, kind, msg, permanent end
  local until_ = (status < 200 or status >= 300) and self.head_time + M.ERROR_BODY_SECS or nil
  while true do
    local late = until_ and now() >= until_
    local text
    text, kind, msg, permanent = r:text(late)
    if text ~= false then return text, kind, msg, permanent end
    if self.failed then return nil, self.kind, self.msg, self.permanent end
    if self:_more(until_ and until_ - now()) == "cap" then return r:text(true) end
  end
end

function Transfer:envelope()
  return check(self):envelope()
end

function Transfer:done()
  local r = check(self)
  local state = r:state()
  return self.failed or state == "done" or state == "failed"
end

function Transfer:info()
  local info = check(self):info()
  info.connects = self.connects
  info.reused = self.reused
  info.time = now() - self.started
  return info
end

-- Give the socket back: to the pool when the response was read completely.
function Transfer:_release()
  local sock = self.sock
  self.sock = nil
  if sock then
    local ok = not self.failed and self.r:complete()
      and sock:setkeepalive(self.tr.idle * 1000, M.POOL_SIZE)
    if not ok then sock:close() end
  end
  self.r:close()
end

--- Release the connection (kept alive only when the response was read
-- completely). Safe to call twice.
function Transfer:close()
  if self.closed then return end
  self.closed = true
  self.tr.transfers[self] = nil
  if self.busy and self.parent == running() and kill(self.thread) then
    self.busy = false
  end
  if not self.busy then self:_release() end   -- else the thread releases it when it ends
end

Transfer.__close = Transfer.close

function Transfer:__tostring()
  return format("converse.NginxTransfer (%s %s://%s%s, %s)", self.method, self.u.scheme,
                self.u.authority, errors.redact_url(self.path), self.closed and "closed"
                or self.failed and "failed" or self.r:state())
end

-- ---- Transport -----------------------------------------------------------------

local Transport = {}
Transport.__index = Transport

--- Start one request (see the contract); raises only usage errors.
function Transport:request(spec)
  transport.check_phase()
  if not self.open then errors.usage("transport is closed") end
  if type(spec) ~= "table" then errors.usage("request spec table expected") end
  local method = spec.method or "GET"
  local u, path = parse(spec.url)
  local t = setmetatable({
    tr = self, method = method, u = u, path = path,
    bytes = request_bytes(self, method, u, path, spec.headers, spec.body),
    r = response { method = method, decoder = spec.decoder, max_body = spec.max_body,
                   max_error_body = spec.max_error_body },
    pool = format("converse|%s|%s|%d|%s|%s", u.scheme, u.name, u.port, u.name,
                  self.insecure and "noverify" or "verify"),
    started = now(), sem = semaphore.new(), busy = true, connects = 0, got = 0, stalls = 0, stale = 0,
  }, Transfer)
  t.deadline = self.timeout > 0 and t.started + self.timeout or huge
  self.transfers[t] = true
  t.parent = running()
  t.thread = spawn(run, t)
  return t
end

--- Let every transfer progress for that long; false when nginx is shutting
-- the worker down (a long Retry-After must not hold a reload).
function Transport:wait(seconds)      -- luacheck: ignore 212 (self)
  transport.check_phase()                            -- a wait needs ngx.sleep
  if not (seconds > 0) then return true end          -- luacheck: ignore 581 (NaN too)
  local deadline = now() + min(seconds, MAX_WAIT)
  while true do
    local left = deadline - now()
    if left <= 0 then break end
    if exiting() then return false end
    sleep(max(min(left, 1), M.NAP))
  end
  slice_start = now()
  return true
end

--- End every transfer of this transport and refuse new ones. Safe twice.
function Transport:close()
  if not self.open then return end
  self.open = false
  for t in pairs(self.transfers) do pcall(t.close, t) end
end

function Transport:__tostring()
  return "converse.NginxTransport (" .. (self.open and "open" or "closed") .. ")"
end

local function seconds(v, dflt)
  if v == nil then return dflt end
  if not (v > 0) then return MAX_WAIT end             -- luacheck: ignore 581 (0: no limit)
  return v
end

--- A transport for a client (see converse.transport.new).
-- @tparam table opts `timeout` (total, seconds), `connect_timeout`,
--   `low_speed_time` (the longest wait for a byte), `insecure`, `user_agent`
function M.new(opts)
  opts = opts or {}
  if opts.ca_file ~= nil then
    errors.usage("ca_file is not available inside nginx: add the certificate to nginx's "
      .. "lua_ssl_trusted_certificate (see docs/nginx.md)")
  end
  return setmetatable({
    timeout = opts.timeout and opts.timeout > 0 and opts.timeout or 0,
    connect_timeout = seconds(opts.connect_timeout, 10),
    read_timeout = seconds(opts.low_speed_time, 60),
    insecure = opts.insecure and true or false,
    user_agent = opts.user_agent,
    idle = M.IDLE,
    transfers = setmetatable({}, { __mode = "k" }),
    open = true,
  }, Transport)
end

return M
