-- converse.client against the local mock: requests, retries, redirects,
-- timeouts, keep-alive, gzip and the error objects.
local converse = require "converse"
local helper   = require "helper"
local raises, entries = helper.raises, helper.entries
local core     = require "converse.core"

local KEY = "sekret-key-123"

describe("converse.client", function()
  local mock

  setup(function() mock = helper.start_mock { calls = 300, reps = 12, contacts = 30 } end)
  teardown(function() mock:stop() end)
  before_each(function() mock:fresh() end)   -- forget prefetches a test abandoned

  local function client(opts)
    local o = {
      base_url = mock.url .. "/converz/api/v1",
      auth = { header = "X-API-Key", value = KEY },
      backoff = { base = 0.01, cap = 0.05 },
    }
    for k, v in pairs(opts or {}) do o[k] = v end
    return converse.client(o)
  end

  describe(".client", function()
    it("blames bad options on the caller with a usage error", function()
      local err = raises(function() converse.client { base_url = 42 } end)
      assert.are.equal("usage", err.kind)
      err = raises(function() converse.client { base_url = "ftp://x" } end)
      assert.are.equal("usage", err.kind)
      err = raises(function() converse.client { base_url = "http://x", auth = { nope = 1 } } end)
      assert.are.equal("usage", err.kind)
      err = raises(function() converse.client { base_url = "http://x", rate_limit = {} } end)
      assert.are.equal("usage", err.kind)
      err = raises(function()
        converse.client { base_url = "http://x", headers = { ["X-A"] = "1\r\nX-Evil: 2" } }
      end)
      assert.are.equal("usage", err.kind)
      err = raises(function()
        converse.client { base_url = "http://x", auth = { bearer = "t\nX: y" } }
      end)
      assert.are.equal("usage", err.kind)
      err = raises(function() converse.client { base_url = "http://x", headers = { ["a b"] = 1 } } end)
      assert.are.equal("usage", err.kind)
    end)
  end)

  describe(":get", function()
    it("sends extra headers on every request", function()
      client { headers = { ["X-Team"] = "ops" } }:get("/reps", { query = { n_per_page = 1 } })
      assert.are.equal("ops", entries(mock, "/converz/api/v1/reps")[1].headers["x-team"])
    end)

    it("decodes the body and returns status and headers", function()
      local body, res = client():get("/reps", { query = { n_per_page = 5 } })
      assert.are.equal(5, #body)
      assert.are.equal(200, res.status)
      assert.matches("json", res.headers["content-type"])
    end)

    it("sends the key, repeated array parameters and percent-encoded values", function()
      client():get("/calls", { query = { rep_id = { "a b", "c&d" }, n_per_page = 1 } })
      local e = entries(mock, "/converz/api/v1/calls")[1]
      assert.are.equal(KEY, e.headers["x-api-key"])
      assert.are.equal("n_per_page=1&rep_id=a%20b&rep_id=c%26d", e.query)
    end)

    it("keeps integers above 2^53 exact", function()
      local body = client():get("/calls", { query = { n_per_page = 2 } })
      if math.type then
        assert.are.equal("integer", math.type(body[1].call_id))
        assert.is_true(body[1].call_id > 9007199254740992)
      else
        assert.are.equal("string", type(body[1].call_id))
      end
    end)

    it("reuses one connection for consecutive requests", function()
      local api = client()
      for _ = 1, 5 do api:get("/reps", { query = { n_per_page = 1 } }) end
      local conns = {}
      for _, e in ipairs(entries(mock, "/converz")) do conns[e.conn] = true end
      local n = 0
      for _ in pairs(conns) do n = n + 1 end
      assert.are.equal(1, n)
    end)

    it("decodes gzip-compressed bodies", function()
      mock:control { type = "gzip", path = "/converz/api/v1/reps" }
      local body, res = client():get("/reps", { query = { n_per_page = 3 } })
      assert.are.equal(3, #body)
      assert.are.equal("gzip", res.headers["content-encoding"])
    end)

    it("raises a json error naming the request for a malformed body", function()
      mock:control { type = "truncate", path = "/converz/api/v1/reps", bytes = 30 }
      local err = raises(function() client():get("/reps", { query = { n_per_page = 5 } }) end)
      assert.are.equal("json", err.kind)
      assert.are.equal("GET", err.method)
      assert.matches("/reps%?n_per_page=5", err.url)
      assert.matches("end of input", err.message)
    end)

    it("returns raw text on request", function()
      local text = client():get("/reps", { query = { n_per_page = 1 }, raw = true })
      assert.is_string(text)
      assert.matches("^%[", text)
    end)
  end)

  describe("errors", function()
    it("raises an auth error for a missing key, without retrying", function()
      local api = converse.client { base_url = mock.url .. "/converz/api/v1" }
      local err = raises(function() api:get("/reps") end)
      assert.are.equal("auth", err.kind)
      assert.are.equal(401, err.status)
      assert.are.equal(1, err.attempts)
      assert.is_false(err.retryable)
      assert.are.equal("GET", err.method)
    end)

    it("does not retry a 404", function()
      local err = raises(function() client():get("/nothing-here") end)
      assert.are.equal("http", err.kind)
      assert.are.equal(404, err.status)
      assert.are.equal(1, err.attempts)
      assert.are.equal(1, #entries(mock, "/converz/api/v1/nothing-here"))
    end)

    it("maps {error:{code,message}} onto the error object", function()
      mock:control { type = "status", status = 422, path = "/converz/api/v1/reps",
                     body = { error = { code = "VALIDATION_ERROR", message = "bad field" } } }
      local err = raises(function() client():get("/reps") end)
      assert.are.equal("VALIDATION_ERROR", err.code)
      assert.are.equal("bad field", err.message)
    end)

    it("never shows the key in tostring, url or message", function()
      mock:control { type = "status", status = 400, path = "/converz/api/v1/reps",
                     body = { message = "key " .. KEY .. " rejected" } }
      local err = raises(function() client():get("/reps", { query = { api_key = KEY } }) end)
      local s = tostring(err)
      assert.is_nil(s:find(KEY, 1, true))
      assert.is_nil(err.url:find(KEY, 1, true))
      assert.is_nil(err.message:find(KEY, 1, true))
      assert.is_nil(s:find("\n"))
      assert.matches("400", s)
    end)
  end)

  describe("retries", function()
    for _, status in ipairs { 500, 502, 503, 504, 408 } do
      it("retries a " .. status .. " and succeeds", function()
        mock:control { type = "status", status = status, path = "/converz/api/v1/reps", times = 2 }
        local body = client():get("/reps", { query = { n_per_page = 2 } })
        assert.are.equal(2, #body)
        assert.are.equal(3, #entries(mock, "/converz/api/v1/reps"))
      end)
    end

    it("gives up after `retries` retries (retries + 1 attempts) with a retryable error", function()
      mock:control { type = "status", status = 500, path = "/converz/api/v1/reps", times = 10 }
      local err = raises(function() client { retries = 3 }:get("/reps") end)
      assert.are.equal(500, err.status)
      assert.are.equal(4, err.attempts)
      assert.is_true(err.retryable)
      assert.are.equal(4, #entries(mock, "/converz/api/v1/reps"))
    end)

    it("makes one attempt with retries = 0 and two with retries = 1", function()
      mock:control { type = "status", status = 500, path = "/converz/api/v1/reps", times = 10 }
      assert.are.equal(1, raises(function() client { retries = 0 }:get("/reps") end).attempts)
      assert.are.equal(1, #entries(mock, "/converz/api/v1/reps"))
      mock:fresh()
      mock:control { type = "status", status = 500, path = "/converz/api/v1/reps", times = 10 }
      assert.are.equal(2, raises(function() client { retries = 1 }:get("/reps") end).attempts)
      assert.are.equal(2, #entries(mock, "/converz/api/v1/reps"))
    end)

    it("does not retry a POST", function()
      mock:control { type = "status", status = 503, method = "POST", path = "/converz/api/v1/reps" }
      local err = raises(function() client():post("/reps", { rep_id = { "x" } }) end)
      assert.are.equal(503, err.status)
      assert.are.equal(1, err.attempts)
      assert.is_false(err.retryable)
    end)

    it("retries a POST the caller marks idempotent", function()
      mock:control { type = "status", status = 503, method = "POST", path = "/converz/api/v1/reps" }
      local body, res = client():post("/reps", { rep_id = { "kees500" }, team = { "A" } },
        { idempotent = true })
      assert.are.equal(200, res.status)
      assert.is_not_nil(body)
    end)

    it("honours Retry-After in seconds", function()
      mock:control { type = "rate_limit", path = "/converz/api/v1/reps", retry_after = 1 }
      local t0 = core.now()
      local body = client():get("/reps", { query = { n_per_page = 1 } })
      assert.are.equal(1, #body)
      assert.is_true(core.now() - t0 >= 0.95)
    end)

    it("honours Retry-After as an HTTP date", function()
      mock:control { type = "rate_limit", path = "/converz/api/v1/reps",
                     retry_after = "date", seconds = 2 }
      local t0 = core.now()
      client():get("/reps", { query = { n_per_page = 1 } })
      local waited = core.now() - t0
      assert.is_true(waited >= 0.9, "waited " .. waited)
      assert.is_true(waited < 4, "waited " .. waited)
    end)

    it("honours X-RateLimit-Reset on a 429 without Retry-After", function()
      mock:control { type = "status", status = 429, path = "/converz/api/v1/reps",
                     headers = { ["X-RateLimit-Remaining"] = "0", ["X-RateLimit-Reset"] = "1" } }
      local t0 = core.now()
      assert.are.equal(1, #client():get("/reps", { query = { n_per_page = 1 } }))
      assert.is_true(core.now() - t0 >= 0.95)
    end)

    it("pauses the whole endpoint after a 429", function()
      mock:control { type = "rate_limit", path = "/converz/api/v1/reps", retry_after = 1 }
      local api = client()
      local t0 = core.now()
      api:get("/reps", { query = { n_per_page = 1 } })
      api:get("/reps", { query = { n_per_page = 1 } })
      local log = entries(mock, "/converz/api/v1/reps")
      assert.are.equal(3, #log)
      assert.is_true(log[2].time - log[1].time >= 0.95)
      assert.is_true(core.now() - t0 < 3)
    end)

    it("raises rate_limited when 429 persists", function()
      mock:control { type = "rate_limit", path = "/converz/api/v1/reps", retry_after = 0, times = 9 }
      local err = raises(function() client { retries = 1 }:get("/reps") end)
      assert.are.equal("rate_limited", err.kind)
      assert.are.equal(429, err.status)
      assert.are.equal(2, err.attempts)
    end)

    it("retries a connection dropped before the response", function()
      mock:control { type = "drop", before_head = true, path = "/converz/api/v1/reps" }
      local body = client():get("/reps", { query = { n_per_page = 2 } })
      assert.are.equal(2, #body)
    end)

    it("retries a body cut half-way", function()
      mock:control { type = "drop", bytes = 100, path = "/converz/api/v1/calls" }
      local body = client():get("/calls", { query = { n_per_page = 20 } })
      assert.are.equal(20, #body)
    end)

    it("reports a network error when nothing listens", function()
      local api = converse.client { base_url = "http://127.0.0.1:1/x", retries = 1,
                                    backoff = { base = 0.01, cap = 0.01 } }
      local err = raises(function() api:get("/y") end)
      assert.are.equal("network", err.kind)
      assert.are.equal(2, err.attempts)
      assert.is_true(err.retryable)
    end)
  end)

  describe("timeouts", function()
    it("aborts a request over its deadline", function()
      mock:control { type = "latency", delay = 3, path = "/converz/api/v1/reps", times = 5 }
      local t0 = core.now()
      local err = raises(function() client { timeout = 0.5, retries = 0 }:get("/reps") end)
      assert.are.equal("timeout", err.kind)
      assert.is_true(core.now() - t0 < 2.5)
    end)

    it("aborts a body that stalls (low-speed limit)", function()
      mock:control { type = "slow", bytes = 1, interval = 3, path = "/converz/api/v1/reps" }
      local err = raises(function()
        client { low_speed_time = 1, retries = 0 }:get("/reps", { query = { n_per_page = 50 } })
      end)
      assert.are.equal("timeout", err.kind)
    end)
  end)

  describe("redirects", function()
    local other
    setup(function() other = helper.start_mock {} end)
    teardown(function() other:stop() end)

    it("follows a redirect on the same origin and keeps the key", function()
      mock:control { type = "redirect", status = 307, path = "/converz/api/v1/reps",
                     location = mock.url .. "/converz/api/v1/reps?n_per_page=2" }
      local body = client():get("/reps")
      assert.are.equal(2, #body)
      local log = entries(mock, "/converz/api/v1/reps")
      assert.are.equal(KEY, log[#log].headers["x-api-key"])
    end)

    it("never sends the key to another host or port", function()
      other:reset()
      mock:control { type = "redirect", path = "/converz/api/v1/reps", to = other.url }
      local err = raises(function() client():get("/reps") end)
      assert.are.equal("auth", err.kind)         -- the other server wants a key
      local seen = other:log()
      assert.is_true(#seen >= 1)
      for _, e in ipairs(seen) do
        assert.is_nil(e.headers["x-api-key"])
        assert.is_nil(e.headers["authorization"])
      end
    end)
  end)

  describe("write methods", function()
    local function iq()
      return converse.client {
        base_url = mock.url .. "/converseiq/public/v1",
        auth = { header = "x-api-key", value = KEY },
      }
    end

    it("posts, puts and deletes JSON bodies", function()
      local api = iq()
      local created, res = api:post("/contact", { name = "Ada", email = "ada@example.com" })
      assert.is_true(res.status == 200 or res.status == 201)
      local id = created.id or created._id or (created.data and created.data.id)
      assert.is_not_nil(id)
      local updated = api:put("/contact/" .. id, { city = "London" })
      assert.is_not_nil(updated)
      local got = api:get("/contact/" .. id)
      local c = got.data or got
      assert.are.equal("London", c.city)
      api:delete("/contact/" .. id)
      local err = raises(function() api:get("/contact/" .. id) end)
      assert.are.equal(404, err.status)
      local posted = entries(mock, "/converseiq/public/v1/contact")
      assert.are.equal("POST", posted[1].method)
      assert.are.equal("application/json", posted[1].headers["content-type"])
    end)
  end)

  describe(":close", function()
    it("releases the connections and refuses further use", function()
      local api = client()
      api:get("/reps", { query = { n_per_page = 1 } })
      api:close()
      api:close()
      local err = raises(function() api:get("/reps") end)
      assert.are.equal("usage", err.kind)
    end)
  end)
end)
