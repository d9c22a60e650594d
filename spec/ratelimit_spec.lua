-- converse.ratelimit: the option, the local limiter and its 429 pauses; no I/O.
local ratelimit = require "converse.ratelimit"
local helper    = require "helper"

describe("converse.ratelimit", function()
  it("reads per_second, per_minute and limit + window", function()
    assert.are.same({ 3, 1 }, { ratelimit.spec { per_second = 3 } })
    assert.are.same({ 60, 60 }, { ratelimit.spec { per_minute = 60 } })
    assert.are.same({ 5, 2.5 }, { ratelimit.spec { limit = 5, window = 2.5 } })
    assert.is_nil(ratelimit.spec(nil))
    for _, bad in ipairs { {}, { per_second = 0 }, { per_second = 1.5 }, { limit = 2, window = 0 }, "3/s" } do
      assert.are.equal("usage", helper.raises(function() ratelimit.spec(bad) end).kind)
    end
  end)

  it("lets `limit` requests start per endpoint in any window, with a margin", function()
    local lim = ratelimit.new { per_second = 2 }
    assert.are.equal(0, lim:take("/a", 100))
    assert.are.equal(0, lim:take("/a", 100.1))
    local w = lim:take("/a", 100.2)
    assert.is_true(w > 0.8 and w < 0.9)              -- 1 s * 1.02 + 0.01 after the first
    assert.are.equal(0, lim:take("/b", 100.2))       -- another endpoint has its own window
  end)

  it("pauses an endpoint after a 429, with or without a rate limit", function()
    local lim = ratelimit.new()
    assert.are.equal(0, lim:take("/a", 10))
    lim:pause("/a", 2, 10)
    local w, paused = lim:take("/a", 11)
    assert.are.equal(1, w)
    assert.is_true(paused)
    assert.are.equal(0, lim:take("/b", 11))
    assert.are.equal(0, lim:take("/a", 12))
  end)

  it("refuses a shared limiter it cannot build", function()
    assert.are.equal("usage", helper.raises(function()
      ratelimit.new({ per_second = 1, shared = "" }, {})
    end).kind)
    assert.are.equal("usage", helper.raises(function()   -- a dict name needs nginx
      ratelimit.new({ per_second = 1, shared = "my_dict" }, {})
    end).kind)
  end)
end)
