--- One rate budget per API key for every process on every machine, in Redis
-- (`rate_limit = { per_second = 3, shared = "redis://host:6379" }`).
--
-- The rule is the local limiter's (converse.ratelimit): at most N requests
-- in *any* window of the given length, plus the same small margin, per
-- endpoint -- a sliding log rather than GCRA or a token bucket, which can let
-- N + 1 through in one window. It runs as one Lua script in Redis, atomic,
-- with Redis's clock (`TIME`), so the machines' clocks do not matter. A 429
-- pauses the endpoint for every process (a second script).
--
-- Keys are `converse:rl:{<sha256 of the API key, 32 hex>:<endpoint>}:log`
-- and `...:pause`: the key itself never reaches Redis. Both expire shortly
-- after the window.
--
-- When Redis cannot be reached the limiter fails closed: it keeps asking
-- (the request waits, in interruptible slices) for `fail_after` seconds
-- (default 10, long enough for a restart), then raises a retryable
-- `network` error with code `RATE_LIMIT_UNAVAILABLE`, never "unlimited".
--
-- A Redis that restarted without persistence has forgotten the requests of
-- the last window, and would let a full budget through again at once (the
-- limit exceeded, for up to one window). So on every new connection the
-- limiter reads Redis's `uptime_in_seconds` (INFO server); while Redis has
-- been up for less than one window, no request is counted or let through:
-- every process, old or new, waits until the forgotten window is over.
-- (A FLUSHALL, an eviction of our keys or a failover to a lagging replica
-- lose the log too and are not detected: run Redis with `noeviction`.)
-- @module converse.ratelimit.redis
local core   = require "converse.core"
local errors = require "converse.errors"
local redis  = require "converse.redis"

local type, setmetatable, tostring, tonumber, floor = type, setmetatable, tostring, tonumber, math.floor

local M = {}

local TAKE = [[
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local pause = tonumber(redis.call('GET', KEYS[2]) or '0')
if pause > now then return { pause - now, 1 } end
local limit, window = tonumber(ARGV[1]), tonumber(ARGV[2])
if limit <= 0 then return { 0, 0 } end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000) + 1000)
  return { 0, 0 }
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return { tonumber(oldest[2]) + window - now, 0 }
]]

local PAUSE = [[
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local until_ = now + tonumber(ARGV[1])
if until_ > tonumber(redis.call('GET', KEYS[1]) or '0') then
  redis.call('SET', KEYS[1], until_, 'PX', math.ceil(tonumber(ARGV[1]) / 1000) + 1000)
end
return 0
]]

M.TAKE, M.PAUSE = TAKE, PAUSE

local Shared = {}
Shared.__index = Shared

local counter = 0

-- A connection, or nil and the reason (the caller decides how long to wait).
function Shared:_conn()
  if self.conn then return self.conn end
  local c, err = redis.connect(self.url, self.timeout)
  if not c then return nil, err end
  if c.fresh ~= false then self:_check_uptime(c) end
  self.conn = c
  return c
end

-- A Redis up for less than one window may have lost that window's log:
-- hold every request until the window is over (see the module comment).
function Shared:_check_uptime(c)
  local info = c:call("INFO", "server")
  local up = type(info) == "string" and tonumber(info:match("uptime_in_seconds:(%d+)"))
  if not up then return end                         -- INFO refused or renamed: nothing to go on
  -- Redis computes the uptime from whole seconds (the clock's second at
  -- start and now): it may be up to one second more than the truth
  local window, up_at_least = self.window_us / 1e6, up - 1
  if up_at_least < window then
    local hold = core.now() + (window - up_at_least)
    if not self.hold_until or hold > self.hold_until then self.hold_until = hold end
  end
end

function Shared:_eval(script, keys, args)
  local c, err = self:_conn()
  local res, server
  if c then
    res, err, server = redis.eval(c, script, keys, args)
    if res ~= nil then
      c:release()
      if self.nginx then self.conn = nil end   -- cosockets live in one request: pool it
      self.down_since = nil
      return res
    end
    if server then                              -- Redis answered with an error: not transient
      errors.raise("usage", "shared rate limit: Redis refused the script: " .. tostring(err))
    end
    c:close()
    self.conn = nil
  end
  return nil, err
end

-- Redis is unreachable: wait and ask again until fail_after, then raise.
function Shared:_down(err)
  local now = core.now()
  self.down_since = self.down_since or now
  if now - self.down_since < self.fail_after then return 0.2 end
  self.down_since = nil
  errors.raise("network", ("shared rate limit unreachable at %s: %s"):format(self.shown, tostring(err)),
               { code = "RATE_LIMIT_UNAVAILABLE", retryable = true })
end

function Shared:_keys(endpoint)
  local base = "converse:rl:{" .. self.key_id .. ":" .. endpoint .. "}"
  return { base .. ":log", base .. ":pause" }
end

function Shared:take(endpoint)
  if not self.conn then                      -- connect first: a new connection may set a hold
    local c, err = self:_conn()
    if not c then return self:_down(err) end
  end
  local hold = self.hold_until
  if hold then
    local left = hold - core.now()
    if left > 0 then
      if self.nginx then self.conn:release() self.conn = nil end
      return left, false
    end
    self.hold_until = nil
  end
  counter = counter + 1
  local keys = self:_keys(endpoint)
  local res, err = self:_eval(TAKE, keys,
    { self.limit or 0, self.window_us, self.id .. ":" .. counter })
  if not res then return self:_down(err) end
  local wait = tonumber(res[1]) / 1e6
  return wait > 0 and wait or 0, res[2] == 1
end

function Shared:pause(endpoint, seconds)
  local keys = self:_keys(endpoint)
  local res, err = self:_eval(PAUSE, { keys[2] }, { floor(seconds * 1e6) })
  if not res then
    -- the server's delay is still honoured here even if Redis is down
    self.local_pauses = self.local_pauses or require("converse.ratelimit").new_local()
    self.local_pauses:pause(endpoint, seconds, core.now())
    return nil, err
  end
end

--- A limiter shared through Redis.
-- @param limit requests per window (nil: only 429 pauses are shared)
-- @param window seconds
-- @tparam string url redis://[:password@]host[:port][/db]
-- @tparam table ctx `{ secret = API key }` (hashed, never sent), `fail_after`, `timeout`
function M.new(limit, window, url, ctx)
  local u, err = redis.parse_url(url)
  if not u then errors.usage("rate_limit.shared: " .. err) end
  local secret = ctx and ctx.secret
  local self = setmetatable({
    url = u, shown = errors.redact_url(url), limit = limit,
    window_us = floor(((window or 1) * 1.02 + 0.01) * 1e6),
    key_id = secret and core.sha256(secret):sub(1, 32) or "anonymous",
    id = core.fingerprint(tostring({}) .. tostring(core.now())),
    fail_after = ctx and tonumber(ctx.fail_after) or 10,
    timeout = ctx and tonumber(ctx.timeout) or 2,
    nginx = require("converse.transport").ngx_phase() ~= nil,
  }, Shared)
  return self
end

return M
