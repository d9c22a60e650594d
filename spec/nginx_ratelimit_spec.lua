-- converse.ratelimit.ngx, the limiter shared by nginx workers, outside nginx:
-- its sliding window and pauses against an in-memory lua_shared_dict (the
-- few dict methods it uses), on every Lua. The real dict, with two workers
-- sending together, is spec/nginx_spec.lua's.
local converse = require "converse"
local core     = require "converse.core"
local helper   = require "helper"

-- A lua_shared_dict's add/get/set/delete, with exptime against a clock we drive.
local function fake_dict(clock)
  local data, expires = {}, {}
  local d = { locked = false }
  local function live(k)
    if expires[k] and expires[k] <= clock() then data[k], expires[k] = nil, nil end
    return data[k]
  end
  function d:get(k) return live(k) end                 -- luacheck: ignore 212
  function d:set(k, v, exptime)                         -- luacheck: ignore 212
    data[k], expires[k] = v, exptime and exptime > 0 and clock() + exptime or nil
    return true
  end
  function d:add(k, v, exptime)
    if self.locked and k:sub(1, 2) == "l:" then return false, "exists" end
    if live(k) ~= nil then return false, "exists" end
    return self:set(k, v, exptime)
  end
  function d:delete(k) data[k], expires[k] = nil, nil end  -- luacheck: ignore 212
  d.data = data
  return d
end

describe("converse.ratelimit.ngx (the limiter shared by nginx workers)", function()
  local saved_ngx, real_now, shared, dict, t, sleeps

  -- a fake nginx, and a clock we drive (the limiter reads core.now when loaded)
  before_each(function()
    saved_ngx, real_now = rawget(_G, "ngx"), core.now
    t, sleeps = 1000, 0
    dict = fake_dict(function() return t end)
    rawset(_G, "ngx", { shared = { rate = dict }, sleep = function() sleeps = sleeps + 1 end })
    core.now = function() return t end
    package.loaded["converse.ratelimit.ngx"] = nil
    shared = require "converse.ratelimit.ngx"
  end)
  after_each(function()
    rawset(_G, "ngx", saved_ngx)
    core.now = real_now
    package.loaded["converse.ratelimit.ngx"] = nil
  end)

  local function limiter(limit, window, secret)
    return shared.new(limit, window, "rate", { secret = secret or "key" })
  end

  it("lets N requests start in a window and makes the next wait for the oldest", function()
    local lim = limiter(3, 1)
    for _ = 1, 3 do assert.are.equal(0, lim:take("/a")) end
    local w = lim:take("/a")
    assert.is_true(w > 1.0 and w <= 1.03, w)          -- window 1 s + 2% + 10 ms
    t = t + 0.5
    assert.is_true(lim:take("/a") > 0.5)
    t = t + 0.6                                       -- all three left the window
    for _ = 1, 3 do assert.are.equal(0, lim:take("/a")) end
    assert.is_true(lim:take("/a") > 1.0)
  end)

  it("slides: each start waits for the one N starts before it", function()
    local lim = limiter(3, 1)
    for _, at in ipairs { 0, 0.4, 0.8 } do
      t = 1000 + at
      assert.are.equal(0, lim:take("/s"))
    end
    t = 1001.05
    assert.are.equal(0, lim:take("/s"))              -- 1000 left the window
    t = 1001.1
    local w = lim:take("/s")                          -- 1000.4 has not
    assert.is_true(math.abs(w - (1000.4 + 1.03 - 1001.1)) < 1e-9, w)
    t = 1001.45
    assert.are.equal(0, lim:take("/s"))
  end)

  it("counts per endpoint and per key, and shares both between limiter objects", function()
    local a, b, other = limiter(2, 1), limiter(2, 1), limiter(2, 1, "another key")
    assert.are.equal(0, a:take("/x"))
    assert.are.equal(0, b:take("/x"))
    assert.is_true(a:take("/x") > 0)                   -- two workers, one budget
    assert.are.equal(0, a:take("/y"))
    assert.are.equal(0, other:take("/x"))
    for k in pairs(dict.data) do
      assert.is_nil(k:find("key", 1, true), "the key is stored only as a fingerprint: " .. k)
    end
  end)

  it("holds a 429 pause for every limiter of the key", function()
    local a, b = limiter(10, 1), limiter(10, 1)
    a:pause("/x", 2)
    local w, paused = b:take("/x")
    assert.are.equal(2, w)
    assert.is_true(paused)
    b:pause("/x", 1)                                   -- a shorter pause never shortens it
    assert.are.equal(2, (a:take("/x")))
    t = t + 2
    assert.are.equal(0, a:take("/x"))
  end)

  it("waits a little when another worker holds the lock, then asks again", function()
    local lim = limiter(3, 1)
    dict.locked = true
    assert.are.equal(0.001, lim:take("/x"))
    assert.are.equal(shared.NAPS, sleeps)
    dict.locked = false
    assert.are.equal(0, lim:take("/x"))
  end)

  it("is a usage error without the dict, and outside nginx", function()
    local err = helper.raises(function() shared.new(3, 1, "nope", {}) end)
    assert.are.equal("usage", err.kind)
    assert.matches("lua_shared_dict \"nope\"", err.message)
    rawset(_G, "ngx", saved_ngx)
    err = helper.raises(function()
      converse.client { base_url = "http://127.0.0.1:1", rate_limit = { per_second = 3, shared = "rate" } }
    end)
    assert.are.equal("usage", err.kind)
    assert.matches("needs nginx", err.message)
  end)
end)
