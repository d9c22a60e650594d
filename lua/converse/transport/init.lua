--- The transport contract, and the choice of a transport.
--
-- A transport moves bytes; nothing else. Which page comes next, whether to
-- retry, how long to wait, whether a redirect may carry credentials and how
-- fast requests may start are decided above it (converse.request and the
-- sans-I/O state machines of the C core). If a table implements the
-- methods below, the client, the pager and every vendor work on it
-- unchanged (as luasocket's io.h puts it for its buffer layer).
--
-- Two implementations ship:
--   "curl"   converse.core.transport (src/transport.c): libcurl's multi
--            interface; connection reuse, HTTP/2, TLS. Standalone Lua.
--   "nginx"  converse.transport.nginx: ngx.socket.tcp cosockets, inside
--            OpenResty; never blocks the worker.
--
-- ## transport:request(spec) -> transfer
-- Starts one HTTP request and returns at once. `spec`:
--   method          "GET", "POST" ... (an HTTP token, checked by the caller)
--   url             absolute http:// or https:// URL (checked: no spaces,
--                   no control characters; fragment-free)
--   headers         array of "Name: value" lines (checked: no CR, LF, NUL)
--   body            request body (string) or nil
--   decoder         a converse.Decoder: 2xx bodies are fed into it as they
--                   arrive; nil keeps a 2xx body as text (up to max_body)
--   keep_decoder    the caller reuses the decoder (and resets it): the
--                   transfer must not free its buffers when it closes
--   max_body        bytes of a text body kept before the transfer fails
--   max_error_body  bytes read of a non-2xx body; the rest is not awaited
-- Raises only usage errors (bad spec) and out-of-memory errors.
--
-- ## transport:wait(seconds) -> true | false
-- Lets every transfer progress for that long (clamped to [0, 1 day]);
-- false when a trapped signal cut the wait short.
--
-- ## transport:close()
-- Ends every transfer and releases connections. Safe to call twice.
--
-- ## The transfer
-- Failures come back as a triple `nil, kind, message, permanent` where
-- kind is "network", "timeout" or "interrupted" (a trapped SIGINT/SIGTERM)
-- and permanent says trying again cannot help (a bad certificate, a
-- malformed URL). JSON errors in a body are raised by the decoder as error
-- objects (kind "json").
--   transfer:headers()  -> status, headers | nil, kind, message, permanent
--       waits for the final response head (1xx skipped); header names are
--       lower case, repeated headers joined with ", "; trailers never
--       change the status or the headers.
--   transfer:next(skip) -> record | true (skip) | nil (no more records)
--                          | core.EMPTY (a 2xx with an empty body)
--                          | nil, kind, message, permanent
--       the next record of a 2xx body (decoder given). Records already
--       decoded are handed out before a transport failure is reported.
--   transfer:body()     -> text | nil, kind, message, permanent
--       the whole body as text: a 2xx body without decoder, or the first
--       max_error_body bytes of a non-2xx body.
--   transfer:envelope() -> table of the fields around the records
--   transfer:done()     -> true once every byte arrived (or it failed)
--   transfer:info()     -> { status, bytes, count, connects, local_port,
--                            time, http_version, done, reused }
--   transfer:close()    -> releases the connection (kept alive only when
--                          the response was read completely). Safe twice.
-- @module converse.transport
local core   = require "converse.core"
local errors = require "converse.errors"

local type, rawget = type, rawget

local M = {}

M.EMPTY = core.EMPTY

-- Phases of ngx_lua where cosockets exist.
local COSOCKET_PHASES = {
  rewrite = true, server_rewrite = true, access = true, content = true, timer = true,
  ssl_cert = true, ssl_session_fetch = true, ssl_client_hello = true, preread = true,
}

--- The ngx_lua phase we run in, or nil outside nginx.
function M.ngx_phase()
  local ngx = rawget(_G, "ngx")
  if type(ngx) ~= "table" or type(ngx.get_phase) ~= "function" then return nil end
  return ngx.get_phase()
end

local function curl(opts)
  return core.transport {
    timeout = opts.timeout, connect_timeout = opts.connect_timeout,
    low_speed_time = opts.low_speed_time, ca_file = opts.ca_file,
    insecure = opts.insecure, verbose = opts.verbose, user_agent = opts.user_agent,
  }
end

--- Raise the usage error for an nginx phase without cosockets (the nginx
-- transport calls this when a request starts, so a client may be built in
-- init_by_lua and used later from a handler or a timer).
function M.check_phase()
  local phase = M.ngx_phase()
  if phase and not COSOCKET_PHASES[phase] then
    errors.usage(("nginx has no cosockets in the %s phase: run the request from a timer "
      .. "(ngx.timer.at(0, function() ... end)) or a rewrite, access or content handler")
      :format(phase))
  end
end

local function nginx(opts)
  if not M.ngx_phase() then
    errors.usage("transport \"nginx\" needs OpenResty/ngx_lua (no ngx here)")
  end
  return require("converse.transport.nginx").new(opts)
end

--- Make the transport a client asks for.
-- `opts.transport`: "curl", "nginx", a transport object, or nil: nginx
-- cosockets inside nginx, libcurl everywhere else. Inside nginx, "curl" is
-- an explicit opt-in (it blocks the worker while a request runs).
-- @tparam table opts the client's options (timeouts, TLS, user agent)
-- @return a transport
function M.new(opts)
  local t = opts.transport
  if type(t) == "table" or type(t) == "userdata" then
    if type(t.request) ~= "function" then
      errors.usage("transport object must have request, wait and close methods")
    end
    return t
  end
  if t == "curl" then return curl(opts) end
  if t == "nginx" then return nginx(opts) end
  if t ~= nil then errors.usage("transport must be \"curl\", \"nginx\" or a transport object") end
  if M.ngx_phase() then return nginx(opts) end
  return curl(opts)
end

return M
