--- The life cycle of one HTTP request, shared by the client and the pager:
-- throttle → start → await the head (redirects, retries) → read → raise.
--
-- Everything here works on a client (its configuration and its mutable
-- state: its limiter, secrets and transport) and a request
-- spec `req` = { method=, url=, endpoint=, body=, headers=, idempotent=,
-- raw=, decoder_opts= | decoder= (one the caller reuses) }, with `st` = { attempts=, started=, status=,
-- headers= } carrying the count of attempts across calls (a page fetched
-- again after a mid-body failure keeps counting). Decisions (retry or not,
-- how long to wait) come from the sans-I/O policy in the C core.
-- Events (`client.on_event`, `client.log`) are reported from here.
-- @module converse.request
local core   = require "converse.core"
local errors = require "converse.errors"
local query  = require "converse.query"

local type, tostring, ipairs, error, pcall, random = type, tostring, ipairs, error, pcall, math.random
local format = string.format
local now, decision, time = core.now, core.retry_decision, os.time
local decoder = core.decoder
local EMPTY = core.EMPTY

local M = {}

M.IDEMPOTENT = { GET = true, HEAD = true, PUT = true, DELETE = true, OPTIONS = true }
local MAX_REDIRECTS = 5
local HTTP_VERSIONS = { [1] = "1.0", [2] = "1.1", [3] = "2", [30] = "3" }   -- CURL_HTTP_VERSION_*

-- ---- events ---------------------------------------------------------------

local LEVELS = { debug = 1, info = 2, warn = 3, error = 4 }
M.LEVELS = LEVELS
local EVENT_LEVEL = { request = "debug", response = "debug", page = "debug",
                      rate_limit = "info", retry = "warn" }

-- One readable line for an event (the `log` option's output).
local function describe(ev)
  local t = ev.type
  if t == "request" then
    return format("%s %s (attempt %d)", ev.method, ev.url, ev.attempt)
  elseif t == "response" then
    return format("%s %s -> %s", ev.method, ev.url, tostring(ev.status))
  elseif t == "retry" then
    return format("retry %s %s in %.2f s after %s (attempt %d)", ev.method, ev.url, ev.wait,
                  ev.reason, ev.attempt)
  elseif t == "rate_limit" then
    return format("rate limit: waiting %.2f s for %s%s", ev.wait, ev.endpoint,
                  ev.paused and " (paused by the server)" or "")
  elseif t == "page" then
    return format("page %s: %d records", tostring(ev.number or ev.cursor or 1), ev.records)
  end
  return t
end
M.describe = describe

--- The `log` option: a level name ("debug", "info", "warn", "error"; lines
-- go to stderr) or { level =, write = function(line) }; nil or false: none.
-- @return { level = n, write = f } or nil
function M.logger(opt)
  if opt == nil or opt == false then return nil end
  local level, write = opt, nil
  if type(opt) == "table" then level, write = opt.level or "info", opt.write end
  if not LEVELS[level] then
    errors.usage("log: level must be \"debug\", \"info\", \"warn\" or \"error\"")
  end
  if write ~= nil and type(write) ~= "function" then errors.usage("log.write must be a function") end
  return { level = LEVELS[level], write = write or function(line) io.stderr:write(line, "\n") end }
end

--- Report an event to the client's `on_event` callback and `log`.
-- Events: request {method, url, attempt}; response {method, url, status};
-- retry {method, url, attempt, wait, reason, status, kind};
-- rate_limit {endpoint, wait, paused}; page {number, cursor, records, url}.
-- URLs are redacted. A callback's error is not allowed to break a request.
function M.emit(client, ev)
  if client.on_event then pcall(client.on_event, ev) end
  local log = client.log
  if log and LEVELS[EVENT_LEVEL[ev.type] or "debug"] >= log.level then
    pcall(log.write, "converse: " .. describe(ev))
  end
end

-- ---- errors -----------------------------------------------------------------

--- A new error object with every secret of the client scrubbed out.
function M.error(client, kind, message, fields)
  fields = fields or {}
  fields.kind, fields.message = kind, message
  return errors.new(fields, client.secrets)
end

--- Say which request an error raised while reading its body belongs to;
-- turns Lua's own "not enough memory" into the out-of-memory error object.
function M.annotate(client, err, req, st)
  if type(err) == "string" and err:find("not enough memory", 1, true) then
    err = errors.new { kind = "json", code = "OUT_OF_MEMORY", message = "out of memory (" .. err .. ")" }
  end
  if errors.is(err) then
    if err.url == nil then
      err.method, err.url = req.method, errors.redact_url(req.url)
      err.status, err.attempts = st.status, st.attempts
    end
    errors.scrub(err, client.secrets)
  end
  return err
end

local function interrupted(client, req, st)
  local sig = core.signal() or "a signal"
  return M.error(client, "network", "interrupted by " .. sig, {
    code = "INTERRUPTED", method = req.method, url = req.url, attempts = st.attempts })
end

-- ---- waiting ---------------------------------------------------------------

-- Wait on the transport; raise the interruption error if a signal cut it short.
local function wait(client, seconds, req, st)
  if seconds > 0 and client.transport:wait(seconds) == false then
    error(interrupted(client, req, st), 0)
  end
end

-- Wait until the client's limiter lets one more request to the endpoint
-- start (a 429 pause, then the rate limit; see converse.ratelimit).
-- One event per wait: the first answer says how long (the limiter may be
-- asked again a few times for sub-millisecond remainders).
local function throttle(client, req, st)
  local endpoint, told = req.endpoint, false
  while true do
    local w, paused = client.limiter:take(endpoint, now())
    if w <= 0 then return end
    if not told then
      M.emit(client, { type = "rate_limit", endpoint = endpoint, wait = w, paused = paused or false })
      told = true
    end
    wait(client, w, req, st)
  end
end

-- ---- the life cycle -------------------------------------------------------------

-- "Name: value" with a token name and no line breaks or NUL anywhere.
local function check_header_line(line)
  if type(line) ~= "string" or not line:match("^[%w!#$%%&'*+.^_`|~-]+:") or line:find("[%z\r\n]") then
    errors.usage("headers: each must be a \"Name: value\" string without line breaks, got "
      .. format("%q", tostring(line)))
  end
end
M.check_header_line = check_header_line

--- Check a request spec's method, URL and per-request header lines.
function M.check(req)
  if type(req.method) ~= "string" or not req.method:match("^[%w!#$%%&'*+.^_`|~-]+$") then
    errors.usage("method must be an HTTP token such as GET, got " .. format("%q", tostring(req.method)))
  end
  if req.url:find("[%s%c]") then
    errors.usage("URL must not contain spaces or control characters (percent-encode them)")
  end
  if req.headers ~= nil then
    errors.check(req.headers, "table", "headers")
    for _, line in ipairs(req.headers) do check_header_line(line) end
  end
end

--- Start one request once the rate limiter allows it.
-- @treturn transfer
function M.start(client, req, st)
  if core.signal() then error(interrupted(client, req, st), 0) end
  throttle(client, req, st)
  local origin = (query.parse_url(req.url) or {}).origin
  local lines = {}
  for i = 1, #client.headers do lines[i] = client.headers[i] end
  if origin == client.origin then          -- credentials never leave the configured origin
    for i = 1, #client.secret_headers do lines[#lines + 1] = client.secret_headers[i] end
  end
  if req.body then lines[#lines + 1] = "Content-Type: application/json" end
  if req.headers then for i = 1, #req.headers do lines[#lines + 1] = req.headers[i] end end
  if client.on_event or client.log then    -- no event (nor redacted URL) when nobody listens
    M.emit(client, { type = "request", method = req.method, url = errors.redact_url(req.url),
                     attempt = (st.attempts or 0) + 1 })
  end
  local dec = req.decoder                 -- a decoder its owner reuses (pagers do)
  if dec then dec:reset() elseif not req.raw then dec = decoder(req.decoder_opts or client.decoder_opts) end
  return client.transport:request {
    method = req.method, url = (req.url:gsub("#.*$", "")), headers = lines, body = req.body,
    decoder = dec, keep_decoder = req.decoder ~= nil,
    max_body = req.raw and client.max_body or nil, max_error_body = client.max_error_body,
  }
end

--- Decide on a failed attempt: raise `err`, or wait and start the request
-- again. `headers` are the failed response's (Retry-After ...);
-- `permanent`: the transport says trying again cannot help.
-- @treturn transfer the new attempt
function M.retry(client, err, req, st, headers, permanent)
  headers = headers or {}
  local elapsed = now() - st.started
  local action, x, retryable = decision {
    status = err.status, kind = err.kind, permanent = permanent,
    idempotent = req.idempotent or M.IDEMPOTENT[req.method] or false,
    attempts = st.attempts, retries = client.retries, elapsed = elapsed,
    budget = client.retry_budget, now = time(),
    retry_after = headers["retry-after"],
    reset = headers["x-ratelimit-reset"] or headers["ratelimit-reset"],
    remaining = headers["x-ratelimit-remaining"] or headers["ratelimit-remaining"],
    base = client.backoff_base, cap = client.backoff_cap, random = random(),
  }
  err.headers = nil
  if action == "raise" then
    err.retryable = retryable
    if retryable and (x == "delay" or x == "budget") then
      err.message = err.message .. (x == "delay" and " (the server's delay outlasts the retry budget)"
                                                  or " (retry budget spent)")
    end
    error(err, 0)
  end
  err.retryable = true
  M.emit(client, { type = "retry", method = req.method, url = errors.redact_url(req.url),
                   attempt = st.attempts, wait = x, reason = err.status and ("HTTP " .. err.status)
                   or err.kind, status = err.status, kind = err.kind })
  if err.status == 429 then                 -- start() waits for it, with every other request
    client.limiter:pause(req.endpoint, x, now())
  else
    wait(client, x, req, st)
  end
  return M.start(client, req, st)
end

-- An error object from a non-2xx response, with the vendor's code/message.
local function http_error(client, status, headers, body, req)
  local code, message
  local ok, doc = pcall(core.json_decode, body)
  if ok and type(doc) == "table" then
    local e = doc.error
    if type(e) == "table" then
      code, message = e.code, e.message
    elseif type(e) == "string" then
      code, message = doc.code, doc.message or e
    else
      code, message = doc.code, doc.message or doc.detail or doc.error_description
    end
  end
  if type(code) ~= "string" and type(code) ~= "number" then code = nil end
  if type(message) ~= "string" then
    message = body:gsub("%s+", " "):sub(1, 200)
    if message == "" or message == " " then message = "HTTP " .. status end
  end
  local kind = (status == 401 or status == 403) and "auth"
    or status == 429 and "rate_limited" or "http"
  return M.error(client, kind, message, {
    status = status, code = code and tostring(code), method = req.method, url = req.url,
    headers = headers,
  })
end

-- A transport failure triple as an error object (or the interruption).
local function failure(client, kind, msg, req, st)
  if kind == "interrupted" then return interrupted(client, req, st) end
  return M.error(client, kind, msg, { method = req.method, url = req.url, attempts = st.attempts })
end
M.failure = failure

--- Wait for the response head of a started request, following redirects
-- and retrying failures; raise when it gives up.
-- @treturn transfer one with a 2xx status (st.status, st.headers set)
function M.await(client, t, req, st)
  st.attempts = st.attempts or 0
  st.started = st.started or now()
  local redirects = 0
  while true do
    local status, headers, msg, permanent = t:headers()
    local err
    if not status then
      if headers == "interrupted" then t:close() error(interrupted(client, req, st), 0) end
      err = failure(client, headers, msg, req, st)
    elseif status >= 300 and status < 400 and headers.location then
      t:close()
      redirects = redirects + 1
      if redirects > MAX_REDIRECTS then
        st.attempts = st.attempts + 1
        error(M.error(client, "http", "too many redirects", {
          status = status, method = req.method, url = req.url, attempts = st.attempts }), 0)
      end
      req.url = query.resolve(req.url, headers.location)
      M.check(req)
      if status == 303 then req.method, req.body = "GET", nil end
      M.emit(client, { type = "response", method = req.method, url = errors.redact_url(req.url),
                       status = status })
    elseif status >= 200 and status < 300 then
      st.attempts = st.attempts + 1
      st.status, st.headers = status, headers
      if client.on_event or client.log then
        M.emit(client, { type = "response", method = req.method, url = errors.redact_url(req.url),
                         status = status })
      end
      return t
    else
      local body = t:body() or ""
      err = http_error(client, status, headers, body, req)
      M.emit(client, { type = "response", method = req.method, url = errors.redact_url(req.url),
                       status = status })
    end
    if err then
      t:close()
      st.attempts = st.attempts + 1
      err.attempts = st.attempts
      t = M.retry(client, err, req, st, err.headers, permanent)
    else
      t = M.start(client, req, st)
    end
  end
end

--- The whole request: start, await, read the body (again after a failure
-- half-way, by the retry rules). Raises error objects.
-- @return body (decoded, text with req.raw, nil when empty), res {status, headers, http_version}
function M.run(client, req)
  M.check(req)
  local st = {}
  local t = M.await(client, M.start(client, req, st), req, st)
  while true do
    local value, kind, msg, permanent
    if req.raw then
      value, kind, msg, permanent = t:body()
    else
      local ok
      ok, value, kind, msg, permanent = pcall(t.next, t)
      if not ok then
        t:close()
        error(M.annotate(client, value, req, st), 0)
      end
      if value == EMPTY then value = nil end
    end
    if value ~= nil or kind == nil then
      local info = t:info()
      local res = { status = st.status, headers = st.headers,
                    http_version = HTTP_VERSIONS[info.http_version] or info.http_version }
      t:close()
      return value, res
    end
    t:close()
    if kind == "interrupted" then error(interrupted(client, req, st), 0) end
    local err = failure(client, kind, msg, req, st)
    t = M.await(client, M.retry(client, err, req, st, nil, permanent), req, st)
  end
end

return M
