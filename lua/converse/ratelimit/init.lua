--- Rate limiters: the contract, the local implementation, and the choice.
--
-- A client has one limiter; it serves every endpoint (URL path) of the
-- client. The request life cycle (converse.request) asks it before each
-- request and tells it about 429s:
--
--   limiter:take(endpoint, now) -> 0 | seconds [, paused]
--       0: a request to `endpoint` may start now, and it is counted;
--       else wait that long and ask again (`paused` = true when the wait is
--       a 429 pause rather than the budget). `now` is core.now() (monotonic
--       seconds); a shared limiter may use its own clock instead.
--   limiter:pause(endpoint, seconds, now)
--       the server answered 429: no request to `endpoint` starts before
--       `now + seconds`.
--
-- Implementations:
--   local   (here) a sliding window per endpoint in this process: at most N
--           requests in any window, plus a small margin (core.limiter), and
--           the pauses. Without a rate limit it only keeps the pauses.
--   shared = "dict_name"        all workers of one nginx, through a
--           lua_shared_dict (converse.ratelimit.ngx)
--   shared = "redis://host:port" every process on every machine, per API
--           key, through Redis (converse.ratelimit.redis)
-- @module converse.ratelimit
local core   = require "converse.core"
local errors = require "converse.errors"

local type, setmetatable, pcall, require = type, setmetatable, pcall, require

local M = {}

--- Read a rate_limit option: `{ per_second = n }`, `{ per_minute = n }` or
-- `{ limit = n, window = seconds }`, each with an optional `shared`.
-- @return limit, window (nil, nil for no option)
function M.spec(rl)
  if rl == nil then return nil end
  errors.check(rl, "table", "rate_limit")
  local limit, window
  if rl.per_second then limit, window = rl.per_second, 1
  elseif rl.per_minute then limit, window = rl.per_minute, 60
  elseif rl.limit and rl.window then limit, window = rl.limit, rl.window
  else errors.usage("rate_limit needs per_second, per_minute or limit + window") end
  if type(limit) ~= "number" or limit < 1 or limit % 1 ~= 0 then
    errors.usage("rate_limit: a whole number of requests >= 1 expected")
  end
  if type(window) ~= "number" or not (window > 0) then   -- luacheck: ignore 581 (NaN too)
    errors.usage("rate_limit: the window must be a positive number of seconds")
  end
  return limit, window
end

-- ---- the local limiter -----------------------------------------------------

local Local = {}
Local.__index = Local

function Local:take(endpoint, now)
  local paused = self.paused[endpoint]
  if paused then
    if paused > now then return paused - now, true end
    self.paused[endpoint] = nil
  end
  if not self.limit then return 0 end
  local lim = self.windows[endpoint]
  if not lim then
    -- 2% and 10 ms of margin: the server counts arrivals, we count departures
    lim = core.limiter(self.limit, self.window * 1.02 + 0.01)
    self.windows[endpoint] = lim
  end
  return lim:take(now)
end

function Local:pause(endpoint, seconds, now)
  local until_ = now + seconds
  if (self.paused[endpoint] or 0) < until_ then self.paused[endpoint] = until_ end
end

--- A limiter in this process only.
function M.new_local(limit, window)
  return setmetatable({ limit = limit, window = window, windows = {}, paused = {} }, Local)
end

--- The limiter a client's `rate_limit` option asks for.
-- @tparam[opt] table rl the option (nil: pauses only)
-- @tparam table ctx `{ secret = the API key (hashed by shared limiters, never stored) }`
function M.new(rl, ctx)
  local limit, window = M.spec(rl)
  local shared = rl and rl.shared
  if shared == nil then return M.new_local(limit, window) end
  if type(shared) ~= "string" or shared == "" then
    errors.usage("rate_limit.shared must be a lua_shared_dict name or a redis:// URL")
  end
  local name = shared:match("^redis://") and "converse.ratelimit.redis" or "converse.ratelimit.ngx"
  local ok, impl = pcall(require, name)
  if not ok then
    errors.usage(("rate_limit.shared = %q needs %s, which is not available: %s")
      :format(shared, name, tostring(impl)))
  end
  return impl.new(limit, window, shared, ctx)
end

return M
