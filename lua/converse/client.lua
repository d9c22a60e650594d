--- Generic REST client for any JSON API (SPEC §2 "Generic client").
-- A client is configuration plus the state its requests share: the
-- transport (libcurl standalone, cosockets inside nginx; see
-- converse.transport for the contract), the rate limiter (with 429 pauses) and
-- the secrets scrubbed from errors. The life cycle of a request (throttle,
-- start, redirects, retries, reading) lives in converse.request, which the
-- pager uses too.
-- @module converse.client
local core      = require "converse.core"
local errors    = require "converse.errors"
local query     = require "converse.query"
local ratelimit = require "converse.ratelimit"
local request   = require "converse.request"
local transport = require "converse.transport"

local type, pairs, ipairs, tostring, setmetatable = type, pairs, ipairs, tostring, setmetatable
local encode = core.json_encode

local M = {}
local Client = {}
Client.__index = Client
M.Client = Client

--- Default limits: a record of a page (16 MiB keeps a paging process
-- under 64 MB whatever the server sends), and a body read whole (`get`,
-- `raw`), which is held in memory anyway.
M.MAX_RECORD = 16 * 1024 * 1024
M.MAX_BODY = 256 * 1024 * 1024

local OPTION_TYPES = {
  base_url = "string", auth = "table", headers = "table", timeout = "number",
  connect_timeout = "number", low_speed_time = "number", retries = "number",
  retry_budget = "number", backoff = "table", rate_limit = "table",
  user_agent = "string", ca_file = "string", insecure = "boolean",
  max_body = "number", max_error_body = "number", max_depth = "number",
  max_record = "number", max_envelope = "number", big_integers = "string",
  verbose = "boolean", on_event = "function",
}

local function check_options(opts)
  errors.check(opts, "table", "options")
  for k, v in pairs(opts) do
    local want = OPTION_TYPES[k]
    if want and type(v) ~= want then
      errors.usage(("option '%s': %s expected, got %s"):format(k, want, type(v)))
    end
  end
  for _, k in ipairs { "retries", "retry_budget", "timeout", "connect_timeout", "low_speed_time" } do
    local v = opts[k]
    if v ~= nil and not (v >= 0) then   -- luacheck: ignore 581 (NaN too)
      errors.usage(("option '%s' must be >= 0"):format(k))
    end
  end
  if opts.retries ~= nil and opts.retries % 1 ~= 0 then
    errors.usage("option 'retries' must be a whole number")
  end
end

--- Create a client.
-- @tparam table opts see SPEC §2 (`base_url`, `auth`, `headers`, `timeout`,
--   `connect_timeout`, `retries`, `rate_limit`, `user_agent`, `ca_file`, `insecure`)
--   plus `retries` (retries after the first attempt, default 5),
--   `retry_budget` (seconds, default 300), `backoff = {base=0.5, cap=30}`,
--   `low_speed_time` (seconds without a byte before giving up, default 60),
--   `transport` ("curl", "nginx" or a transport object; default by environment),
--   `on_event` (function(event)), `log` ("info" or { level=, write= }),
--   `max_body`, `max_error_body`, `max_depth`, `max_record`, `max_envelope`,
--   `big_integers` (decoder options).
-- @treturn Client
-- @usage local api = converse.client{ base_url = "https://api.example.com/v1",
--   auth = { bearer = os.getenv("TOKEN") } }
function M.new(opts)
  check_options(opts)
  local base = opts.base_url
  local u = base and query.parse_url(base)
  if not u or (u.scheme ~= "http" and u.scheme ~= "https") or base:find("[%s%c#]") then
    errors.usage("base_url must be an http:// or https:// URL (no spaces or fragment)")
  end
  local self = setmetatable({
    base_url = base:gsub("/+$", ""),
    origin = u.origin,
    retries = opts.retries or 5,
    retry_budget = opts.retry_budget or 300,
    backoff_base = opts.backoff and opts.backoff.base or 0.5,
    backoff_cap = opts.backoff and opts.backoff.cap or 30,
    decoder_opts = { max_depth = opts.max_depth, max_body = opts.max_body,
                     max_record = opts.max_record or M.MAX_RECORD,
                     max_envelope = opts.max_envelope, big_integers = opts.big_integers },
    max_body = opts.max_body or M.MAX_BODY,
    max_error_body = opts.max_error_body or 64 * 1024,
    headers = {},          -- "Name: value" lines sent everywhere
    secret_headers = {},   -- sent only to the configured origin
    secrets = {},          -- values scrubbed from every error
    on_event = opts.on_event,
    log = request.logger(opts.log),
    max_record_given = opts.max_record ~= nil,
  }, Client)
  local auth = opts.auth
  if auth then
    if auth.bearer then
      self.secret_headers[1] = "Authorization: Bearer " .. tostring(auth.bearer)
      self.secrets[1] = tostring(auth.bearer)
    elseif auth.header and auth.value then
      self.secret_headers[1] = tostring(auth.header) .. ": " .. tostring(auth.value)
      self.secrets[1] = tostring(auth.value)
    else
      errors.usage("auth must be { header = name, value = key } or { bearer = token }")
    end
  end
  self.limiter = ratelimit.new(opts.rate_limit, { secret = self.secrets[1] })
  self.headers[#self.headers + 1] = "Accept: application/json"
  for k, v in pairs(opts.headers or {}) do
    if type(k) ~= "string" then errors.usage("headers: names must be HTTP tokens") end
    self.headers[#self.headers + 1] = k .. ": " .. tostring(v)
  end
  for _, line in ipairs(self.headers) do request.check_header_line(line) end
  for _, line in ipairs(self.secret_headers) do
    if line:find("[%z\r\n]") or not line:match("^[%w!#$%%&'*+.^_`|~-]+:") then
      errors.usage("auth: the header name must be a token and the value have no line breaks")
    end
  end
  self.transport = transport.new {
    transport = opts.transport,
    timeout = opts.timeout or 300,
    connect_timeout = opts.connect_timeout or 10,
    low_speed_time = opts.low_speed_time or 60,
    ca_file = opts.ca_file, insecure = opts.insecure, verbose = opts.verbose,
    user_agent = opts.user_agent or ("converse/" .. core.VERSION),
  }
  return self
end

--- Build the request spec for a method, a path and request options.
function Client:_request_spec(method, path, opts)
  local url = query.build(self.base_url, path, opts.query)
  local body = opts.body
  if body ~= nil and type(body) ~= "string" then body = encode(body) end
  local d = self.decoder_opts
  return {
    method = method, url = url, endpoint = query.endpoint(url), body = body,
    idempotent = opts.idempotent, raw = opts.raw, headers = opts.headers,
    decoder_opts = { whole = true, max_depth = d.max_depth, max_body = d.max_body,
                     max_record = self.max_record_given and d.max_record or self.max_body,
                     big_integers = d.big_integers },
  }
end

--- Send a request and decode the response body.
-- @tparam string method an HTTP method (token)
-- @tparam string path relative to base_url (or an absolute URL on the same origin)
-- @tparam[opt] table opts `query`, `body` (table: JSON-encoded; string: sent as is),
--   `headers` (array of "Name: value"), `idempotent` (retry a POST/PATCH), `raw` (return text)
-- @return body (decoded JSON, raw text with `raw`, or nil for an empty body), res `{status=, headers=}`
function Client:request(method, path, opts)
  errors.check(method, "string", "method")
  errors.check(path, "string", "path")
  opts = opts or {}
  errors.check(opts, "table", "options")
  return request.run(self, self:_request_spec(method:upper(), path, opts))
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
  errors.check(path, "string", "path")
  return require("converse.pager").new(self, path, opts or {})
end

--- Release the client's connections now (also done by the garbage collector).
function Client:close()
  self.transport:close()
end

return M
