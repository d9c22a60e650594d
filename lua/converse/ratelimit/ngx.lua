--- A rate limiter shared by every worker of one nginx, through a
-- `lua_shared_dict`: `rate_limit = { per_second = 3, shared = "dict_name" }`.
--
-- The same rule as the local limiter (converse.ratelimit): at most N
-- requests start in any window of the given length (plus 2% + 10 ms of
-- margin), per endpoint and per API key, now counted across all workers.
-- The dict keeps, per (key, endpoint), a ring of the last N start times
-- and a 429 pause; `take` and `pause` change them under a lock taken with
-- `dict:add` (atomic across workers; it expires after LOCK_TTL should a
-- worker die holding it) and never yield while holding it. Times come
-- from CLOCK_MONOTONIC (core.now), one clock for every process of the
-- machine. The API key is stored only as a fingerprint.
--
--   http { lua_shared_dict converse_rate 1m; ... }
--   converse.client{ ..., rate_limit = { per_second = 3, shared = "converse_rate" } }
--
-- Size the dict for your endpoints: each (key, endpoint) costs about N + 3
-- small entries; an entry the dict evicts when full lets extra requests
-- through. Without `shared`, each worker has its own limiter (so N workers
-- together may start N times the limit).
-- @module converse.ratelimit.ngx
local core   = require "converse.core"
local errors = require "converse.errors"

local setmetatable, type, rawget, tostring, pcall = setmetatable, type, rawget, tostring, pcall
local now, fingerprint = core.now, core.fingerprint

local M = {}

M.LOCK_TTL = 0.5      -- seconds a lock of a dead worker lives on
M.SPIN = 100          -- tries of the lock before a short sleep
M.NAPS = 200          -- short sleeps before giving the wait back to the caller

local Shared = {}
Shared.__index = Shared

function Shared:_lock(key)
  local dict, lock = self.dict, "l:" .. key
  local sleep = rawget(_G, "ngx").sleep
  for _ = 1, M.NAPS do
    for _ = 1, M.SPIN do
      if dict:add(lock, true, M.LOCK_TTL) then return true end
    end
    -- held by another worker for long: let it run (where this phase may sleep)
    if not pcall(sleep, 0.001) then return false end
  end
  return false
end

function Shared:_unlock(key)
  self.dict:delete("l:" .. key)
end

local function slot(key, i) return "t:" .. key .. ":" .. i end

--- 0 when a request to `endpoint` may start now (it is counted), else the
-- seconds to wait and, for a 429 pause, true.
function Shared:take(endpoint)
  local key, dict, limit = self.prefix .. endpoint, self.dict, self.limit
  if not self:_lock(key) then return 0.001 end
  local t = now()
  local wait, paused = 0, false
  local pause = dict:get("p:" .. key)
  if pause and pause > t then
    wait, paused = pause - t, true
  else
    local n = dict:get("n:" .. key) or 0      -- start times in the ring
    local head = dict:get("h:" .. key) or 0   -- the oldest
    if n < limit then
      dict:set(slot(key, (head + n) % limit), t, self.ttl)
      dict:set("n:" .. key, n + 1)
    else
      local oldest = dict:get(slot(key, head))
      if oldest and t - oldest < self.window then
        wait = oldest + self.window - t
      else
        dict:set(slot(key, head), t, self.ttl)
        dict:set("h:" .. key, (head + 1) % limit)
      end
    end
  end
  self:_unlock(key)
  return wait, paused
end

--- The server answered 429: no request to `endpoint` starts for `seconds`.
function Shared:pause(endpoint, seconds)
  local key, dict = self.prefix .. endpoint, self.dict
  local locked = self:_lock(key)
  local until_ = now() + seconds
  local cur = dict:get("p:" .. key)
  if not cur or cur < until_ then dict:set("p:" .. key, until_, seconds + 1) end
  if locked then self:_unlock(key) end
end

function Shared:__tostring()
  return ("converse.SharedLimiter (%d per %.3g s)"):format(self.limit, self.window)
end

--- The limiter of `rate_limit = { ..., shared = name }` inside nginx.
-- @tparam number limit requests per window
-- @tparam number window seconds
-- @tparam string name the lua_shared_dict
-- @tparam table ctx `{ secret = the API key }` (only its fingerprint is kept)
function M.new(limit, window, name, ctx)
  local ngx = rawget(_G, "ngx")
  if type(ngx) ~= "table" or type(ngx.shared) ~= "table" then
    errors.usage(("rate_limit.shared = %q names a lua_shared_dict: that needs nginx (ngx_lua); "
      .. "outside nginx use a redis:// URL"):format(tostring(name)))
  end
  local dict = ngx.shared[name]
  if not dict then
    errors.usage(("rate_limit.shared: there is no lua_shared_dict %q in nginx.conf"):format(name))
  end
  local w = window * 1.02 + 0.01            -- the server counts arrivals, we count departures
  return setmetatable({
    dict = dict, limit = limit, window = w, ttl = w * 2 + 1,
    prefix = fingerprint("converse rate " .. (ctx and ctx.secret or "")) .. ":" .. limit .. "/"
      .. window .. ":",
  }, Shared)
end

return M
