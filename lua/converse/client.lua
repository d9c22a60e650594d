--- Generic REST client for any JSON API (SPEC §2 "Generic client").
-- Requests go through the C transport (libcurl multi handle, keep-alive,
-- gzip, HTTP/2); bodies are decoded as they arrive. Retries, backoff and the
-- rate limiter use the sans-I/O decisions of the C core (`policy.c`).
-- @module converse.client
local core   = require "converse.core"
local errors = require "converse.errors"
local query  = require "converse.query"

local type, pairs, ipairs, tostring = type, pairs, ipairs, tostring
local setmetatable, random, min = setmetatable, math.random, math.min
local now, backoff, retryable = core.now, core.backoff, core.retryable
local encode, decode, decoder = core.json_encode, core.json_decode, core.decoder

local M = {}
local Client = {}
Client.__index = Client
M.Client = Client

local IDEMPOTENT = { GET = true, HEAD = true, PUT = true, DELETE = true, OPTIONS = true }
local MAX_REDIRECTS = 5
local HTTP_VERSIONS = { [1] = "1.0", [2] = "1.1", [3] = "2", [30] = "3" }   -- CURL_HTTP_VERSION_*

local OPTION_TYPES = {
  base_url = "string", auth = "table", headers = "table", timeout = "number",
  connect_timeout = "number", low_speed_time = "number", retries = "number",
  retry_budget = "number", backoff = "table", rate_limit = "table",
  user_agent = "string", ca_file = "string", insecure = "boolean",
  max_body = "number", max_depth = "number", big_integers = "string",
  verbose = "boolean",
}

local function check_options(opts)
  if type(opts) ~= "table" then errors.usage("options table expected") end
  for k, v in pairs(opts) do
    local want = OPTION_TYPES[k]
    if want and type(v) ~= want then
      errors.usage(("option '%s': %s expected, got %s"):format(k, want, type(v)))
    end
  end
end

-- { per_second = n } | { per_minute = n } | { limit = n, window = s } -> limit, window
local function rate_spec(rl)
  if rl == nil then return nil end
  local limit, window
  if rl.per_second then limit, window = rl.per_second, 1
  elseif rl.per_minute then limit, window = rl.per_minute, 60
  elseif rl.limit and rl.window then limit, window = rl.limit, rl.window
  else errors.usage("rate_limit needs per_second, per_minute or limit + window") end
  if type(limit) ~= "number" or limit < 1 or limit % 1 ~= 0 then
    errors.usage("rate_limit: a whole number of requests >= 1 expected")
  end
  return limit, window
end

--- Create a client.
-- @tparam table opts see SPEC §2 (`base_url`, `auth`, `headers`, `timeout`,
--   `connect_timeout`, `retries`, `rate_limit`, `user_agent`, `ca_file`, `insecure`)
--   plus `retry_budget` (seconds, default 300), `backoff = {base=0.5, cap=30}`,
--   `low_speed_time` (seconds without a byte before giving up, default 60),
--   `max_body`, `max_depth`, `big_integers` (decoder options).
-- @treturn Client
-- @usage local api = converse.client{ base_url = "https://api.example.com/v1",
--   auth = { bearer = os.getenv("TOKEN") } }
function M.new(opts)
  check_options(opts)
  local base = opts.base_url
  local u = base and query.parse_url(base)
  if not u or (u.scheme ~= "http" and u.scheme ~= "https") then
    errors.usage("base_url must be an http:// or https:// URL")
  end
  local self = setmetatable({
    base_url = base:gsub("/+$", ""),
    origin = u.origin,
    retries = opts.retries or 5,
    retry_budget = opts.retry_budget or 300,
    backoff_base = opts.backoff and opts.backoff.base or 0.5,
    backoff_cap = opts.backoff and opts.backoff.cap or 30,
    decoder_opts = { max_depth = opts.max_depth, max_body = opts.max_body,
                     big_integers = opts.big_integers },
    max_body = opts.max_body or 256 * 1024 * 1024,
    headers = {},          -- "Name: value" lines sent everywhere
    secret_headers = {},   -- sent only to the configured origin
    secrets = {},          -- values scrubbed from every message
    limiters = {},
    paused = {},           -- endpoint -> monotonic time before which nothing starts
  }, Client)
  self.rate_limit, self.rate_window = rate_spec(opts.rate_limit)
  local auth = opts.auth
  if auth then
    if auth.bearer then
      self.secret_headers[1] = "Authorization: Bearer " .. tostring(auth.bearer)
      self.secrets[1] = tostring(auth.bearer)
    elseif auth.header and auth.value then
      self.secret_headers[1] = auth.header .. ": " .. tostring(auth.value)
      self.secrets[1] = tostring(auth.value)
    else
      errors.usage("auth must be { header = name, value = key } or { bearer = token }")
    end
  end
  self.headers[#self.headers + 1] = "Accept: application/json"
  for k, v in pairs(opts.headers or {}) do
    if type(k) ~= "string" or not k:match("^[%w!#$%%&'*+.^_`|~-]+$") then
      errors.usage("headers: names must be HTTP tokens")
    end
    self.headers[#self.headers + 1] = k .. ": " .. tostring(v)
  end
  for _, line in ipairs(self.headers) do            -- no header injection
    if line:find("[\r\n]") then errors.usage("headers must not contain line breaks") end
  end
  for _, line in ipairs(self.secret_headers) do
    if line:find("[\r\n]") then errors.usage("auth values must not contain line breaks") end
  end
  self.transport = core.transport {
    timeout = opts.timeout or 300,
    connect_timeout = opts.connect_timeout or 10,
    low_speed_time = opts.low_speed_time or 60,
    ca_file = opts.ca_file, insecure = opts.insecure, verbose = opts.verbose,
    user_agent = opts.user_agent or ("converse/" .. core.VERSION),
  }
  return self
end

-- Remove every secret value from a string.
function Client:_scrub(s)
  s = tostring(s)
  for _, secret in ipairs(self.secrets) do
    if #secret > 0 then
      s = s:gsub(secret:gsub("%W", "%%%0"), "REDACTED")
    end
  end
  return s
end

function Client:_error(kind, message, fields)
  fields = fields or {}
  fields.kind, fields.message = kind, self:_scrub(message)
  if fields.url then fields.url = self:_scrub(fields.url) end
  return errors.new(fields)
end

-- Say which request an error raised while decoding its body belongs to.
function Client:_annotate(err, req, st)
  if errors.is(err) and err.url == nil then
    err.method, err.url = req.method, self:_scrub(errors.redact_url(req.url))
    err.status, err.attempts = st.status, st.attempts
  end
  return err
end

-- Wait (letting other transfers progress) until the endpoint's limiter
-- lets one more request start.
function Client:_throttle(endpoint)
  local paused = self.paused[endpoint]
  if paused then                          -- a 429 paused the whole endpoint
    local wait = paused - now()
    if wait > 0 then self.transport:wait(wait) end
    self.paused[endpoint] = nil
  end
  if not self.rate_limit then return end
  local lim = self.limiters[endpoint]
  if not lim then
    -- 2% and 10 ms of margin: the server counts arrivals, we count departures
    lim = core.limiter(self.rate_limit, self.rate_window * 1.02 + 0.01)
    self.limiters[endpoint] = lim
  end
  while true do
    local wait = lim:take(now())
    if wait <= 0 then return end
    self.transport:wait(wait)
  end
end

-- After a 429: no request to this endpoint starts before the server's delay.
function Client:_pause(endpoint, seconds)
  local until_ = now() + seconds
  if (self.paused[endpoint] or 0) < until_ then self.paused[endpoint] = until_ end
  local lim = self.limiters[endpoint]
  if lim then lim:pause_until(until_) end
end

-- An error object from a non-2xx response, with the vendor's code/message.
function Client:_http_error(status, headers, body, req)
  local code, message
  local ok, doc = pcall(decode, body)
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
  return self:_error(kind, message, {
    status = status, code = code and tostring(code), method = req.method, url = req.url,
    headers = headers,
  })
end

-- Seconds the server asked us to wait, if it did.
local function server_delay(headers)
  if not headers then return nil end
  local d = core.retry_after(headers["retry-after"])
  if d then return d end
  local reset = headers["x-ratelimit-reset"] or headers["ratelimit-reset"]
  if reset and (headers["x-ratelimit-remaining"] == "0" or headers["ratelimit-remaining"] == "0"
                or headers["retry-after"] == nil) then
    return core.reset_after(reset)
  end
  return nil
end

--- Start one request (after the rate limiter allows it).
-- req: { method=, url=, endpoint=, body=, decoder_opts= | raw=true }
function Client:_start(req)
  self:_throttle(req.endpoint)
  local dec
  if not req.raw then dec = decoder(req.decoder_opts or self.decoder_opts) end
  local origin = (query.parse_url(req.url) or {}).origin
  local lines = {}
  for i = 1, #self.headers do lines[i] = self.headers[i] end
  if origin == self.origin then          -- credentials never leave the configured origin
    for i = 1, #self.secret_headers do lines[#lines + 1] = self.secret_headers[i] end
  end
  if req.body then lines[#lines + 1] = "Content-Type: application/json" end
  if req.headers then for i = 1, #req.headers do lines[#lines + 1] = req.headers[i] end end
  return self.transport:request {
    method = req.method, url = req.url, headers = lines, body = req.body,
    decoder = dec, max_body = req.raw and self.max_body or nil,
  }
end

--- Wait for the response headers of a started request, following redirects
-- and retrying failures by the rules of SPEC §3; raise when it gives up.
-- `st` carries attempts across calls (a page re-fetched after a mid-body
-- failure keeps counting). Returns a transfer with a 2xx status.
function Client:_await(t, req, st)
  st.attempts = st.attempts or 0
  st.started = st.started or now()
  local redirects = 0
  while true do
    local status, headers, msg, permanent = t:headers()
    local err
    if not status then
      err = self:_error(headers, msg, { method = req.method, url = req.url })
    elseif status >= 300 and status < 400 and headers.location then
      t:close()
      redirects = redirects + 1
      if redirects > MAX_REDIRECTS then
        st.attempts = st.attempts + 1
        err = self:_error("http", "too many redirects", {
          status = status, method = req.method, url = req.url, attempts = st.attempts })
        error(err, 0)
      end
      req.url = query.resolve(req.url, headers.location)
      if status == 303 then req.method, req.body = "GET", nil end
    elseif status >= 200 and status < 300 then
      st.attempts = st.attempts + 1
      st.status, st.headers = status, headers
      return t
    else
      local body = t:body() or ""
      err = self:_http_error(status, headers, body, req)
    end
    if err then
      t:close()
      st.attempts = st.attempts + 1
      err.attempts = st.attempts
      t = self:_retry_or_raise(err, req, st, err.headers, permanent)
    else
      t = self:_start(req)
    end
  end
end

--- Decide on a failure: raise it, or wait and start the request again.
-- `permanent`: the transport says trying again cannot help (bad certificate ...).
function Client:_retry_or_raise(err, req, st, headers, permanent)
  local can = not permanent and retryable(err.status, err.kind)
    and (req.idempotent or IDEMPOTENT[req.method])
  err.retryable = can and true or false
  err.headers = nil
  if not can or st.attempts >= self.retries or now() - st.started >= self.retry_budget then
    error(err, 0)
  end
  local delay = server_delay(headers)
  if not delay then
    delay = backoff(st.attempts, self.backoff_base, self.backoff_cap, random())
  end
  delay = min(delay, self.retry_budget - (now() - st.started))
  if err.status == 429 then
    self:_pause(req.endpoint, delay)      -- _start waits for it, with every other request
  elseif delay > 0 then
    self.transport:wait(delay)
  end
  return self:_start(req)
end


function Client:_request_spec(method, path, opts)
  local url = query.build(self.base_url, path, opts.query)
  local body = opts.body
  if body ~= nil and type(body) ~= "string" then body = encode(body) end
  return {
    method = method, url = url, endpoint = query.endpoint(url), body = body,
    idempotent = opts.idempotent, raw = opts.raw, headers = opts.headers,
    decoder_opts = { whole = true, max_depth = self.decoder_opts.max_depth,
                     max_body = self.decoder_opts.max_body,
                     big_integers = self.decoder_opts.big_integers },
  }
end

--- Send a request and decode the response body.
-- @tparam string method
-- @tparam string path relative to base_url (or an absolute URL on the same origin)
-- @tparam[opt] table opts `query`, `body` (table: JSON-encoded; string: sent as is),
--   `headers` (array of "Name: value"), `idempotent` (retry a POST/PATCH), `raw` (return text)
-- @return body (decoded JSON, raw text with `raw`, or nil for an empty body), res `{status=, headers=}`
function Client:request(method, path, opts)
  if type(method) ~= "string" then errors.usage("method must be a string") end
  if type(path) ~= "string" then errors.usage("path must be a string") end
  opts = opts or {}
  if type(opts) ~= "table" then errors.usage("options must be a table") end
  local req = self:_request_spec(method:upper(), path, opts)
  local st = {}
  local t = self:_await(self:_start(req), req, st)
  while true do
    local value, kind, msg, permanent
    if req.raw then
      value, kind, msg, permanent = t:body()
    else
      local ok
      ok, value, kind, msg, permanent = pcall(t.next, t)
      if not ok then
        t:close()
        error(self:_annotate(value, req, st), 0)
      end
      if value == nil and kind == "empty" then kind = nil end
    end
    if value ~= nil or kind == nil then
      local res = { status = st.status, headers = st.headers,
                    http_version = HTTP_VERSIONS[t:info().http_version] }
      t:close()
      return value, res
    end
    t:close()
    local err = self:_error(kind, msg, { method = req.method, url = req.url, attempts = st.attempts })
    t = self:_await(self:_retry_or_raise(err, req, st, nil, permanent), req, st)
  end
end

function Client:get(path, opts)     return self:request("GET", path, opts) end
function Client:delete(path, opts)  return self:request("DELETE", path, opts) end

local function with_body(method)
  return function(self, path, body, opts)
    local o = {}
    for k, v in pairs(opts or {}) do o[k] = v end
    o.body = body
    return self:request(method, path, o)
  end
end
--- POST a JSON body. @function Client:post
Client.post  = with_body("POST")
--- PUT a JSON body. @function Client:put
Client.put   = with_body("PUT")
--- PATCH a JSON body. @function Client:patch
Client.patch = with_body("PATCH")

--- A pager over a paginated endpoint (see converse.pager).
function Client:paginate(path, opts)
  if type(path) ~= "string" then errors.usage("path must be a string") end
  return require("converse.pager").new(self, path, opts or {})
end

--- Release the client's connections now (also done by the garbage collector).
function Client:close()
  self.transport:close()
end

return M
