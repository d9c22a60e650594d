-- The sans-I/O policy (src/policy.c): retry decisions, server delays,
-- backoff and the rate limiter, table-driven, no server, no socket.
local core = require "converse.core"

describe("converse.core policy", function()
  describe("retry_decision", function()
    local base = { attempts = 1, retries = 5, elapsed = 0, budget = 300, idempotent = true,
                   random = 0.5, base = 1, cap = 30, now = 1e9 }
    local function decide(t)
      local d = {}
      for k, v in pairs(base) do d[k] = v end
      for k, v in pairs(t) do d[k] = v end
      return core.retry_decision(d)
    end

    local cases = {
      { "a 503 is retried after backoff",          { status = 503 },                  "retry", 0.5 },
      { "a timeout is retried",                     { kind = "timeout" },              "retry", 0.5 },
      { "a network error is retried",               { kind = "network" },              "retry", 0.5 },
      { "backoff doubles per attempt",              { kind = "network", attempts = 3 }, "retry", 2 },
      { "backoff is capped",                        { kind = "network", attempts = 30, retries = 50 }, "retry", 15 },
      { "a 404 is not retried", { status = 404 }, "raise", "not_retryable", false },
      { "a json error is not retried", { kind = "json" }, "raise", "not_retryable", false },
      { "a permanent failure is not retried", { kind = "network", permanent = true }, "raise", "permanent", false },
      { "a POST is not retried", { status = 503, idempotent = false }, "raise", "not_idempotent", false },
      { "retries = N allows N retries",             { status = 500, attempts = 5 },    "retry", 8 },
      { "after N retries it gives up",              { status = 500, attempts = 6 },    "raise", "attempts", true },
      { "retries = 0 makes one attempt",            { status = 500, retries = 0 },     "raise", "attempts", true },
      { "the budget ends retrying",                 { status = 500, elapsed = 300 },   "raise", "budget", true },
      { "Retry-After seconds are honoured",         { status = 429, retry_after = "7" }, "retry", 7 },
      { "Retry-After as an HTTP date",              { status = 429, now = 1700000000,
                                                      retry_after = "Tue, 14 Nov 2023 22:13:40 GMT" }, "retry", 20 },
      { "a delay beyond the budget raises at once", { status = 429, retry_after = "400" }, "raise", "delay", true },
      { "a huge Retry-After is clamped, not overflowed",
        { status = 429, retry_after = "9300000000000000", budget = math.huge }, "retry", 86400 },
      { "X-RateLimit-Reset when remaining is 0",    { status = 429, reset = "3", remaining = "0" }, "retry", 3 },
      { "X-RateLimit-Reset as unix time",           { status = 429, reset = tostring(1e9 + 4), remaining = "0" },
                                                    "retry", 4 },
      { "an unparsable Retry-After falls back to backoff", { status = 503, retry_after = "soon" }, "retry", 0.5 },
    }
    for _, c in ipairs(cases) do
      it(c[1], function()
        local action, x, retryable = decide(c[2])
        assert.are.equal(c[3], action)
        if type(c[4]) == "number" then assert.is_near(c[4], x, 1e-9) else assert.are.equal(c[4], x) end
        if c[5] ~= nil then assert.are.equal(c[5], retryable) end
      end)
    end
  end)

  describe("retry_after and reset_after", function()
    it("clamp every wait to [0, 1 day]", function()
      assert.are.equal(86400, core.retry_after("99999999999999999999"))
      assert.are.equal(0, core.retry_after("Thu, 01 Jan 1970 00:00:00 GMT", 1e9))
      assert.is_nil(core.retry_after("-5"))
      assert.are.equal(86400, core.reset_after("1e300", 0))
      assert.is_nil(core.reset_after("nan"))
    end)
  end)

  describe("limiter", function()
    it("allows `limit` starts in any window and says how long to wait", function()
      local lim = core.limiter(2, 1)
      assert.are.equal(0, lim:take(10))
      assert.are.equal(0, lim:take(10.1))
      assert.is_near(0.9, lim:take(10.1), 1e-9)
      assert.are.equal(0, lim:take(11.0))
    end)

    it("pauses until a time after a 429", function()
      local lim = core.limiter(5, 1)
      lim:pause_until(20)
      assert.is_near(2, lim:take(18), 1e-9)
      assert.are.equal(0, lim:take(20))
    end)

    it("rejects a limit below 1 or a window of 0", function()
      assert.are.equal("usage", select(2, pcall(core.limiter, 0, 1)).kind)
      assert.are.equal("usage", select(2, pcall(core.limiter, 1, 0)).kind)
    end)
  end)
end)
