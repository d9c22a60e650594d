--- The behaviour both transports must show, written once and run twice:
-- standalone under busted with libcurl (spec/nginx_transport_spec.lua)
-- and inside a real nginx with cosockets (the same spec asks nginx's
-- /run?case=NAME, served by spec/support/nginx_runner.lua). A case is
-- `{ name, fn(ctx) }` asserting with luassert; `ctx` gives what differs:
--   ctx.transport        "curl" | "nginx"
--   ctx.mock, ctx.other  { url, control(t), log(), reset(), fresh() } (two mocks)
--   ctx.sink_url         accepts connections and never reads (send timeouts)
--   ctx.blackhole_url    a full accept queue: connects hang (connect timeouts)
--   ctx.hostile_url      spec/support/hostile_server.lua: 1xx heads, trailers, closes
--   ctx.sleep(s), ctx.rss_kb() (this process's resident set)
--   ctx.sanitized        under ASan or valgrind (resident sets mean nothing there)
-- @module nginx_cases
local assert   = require "luassert"
local converse = require "converse"
local core     = require "converse.core"
local json     = require "converse.mock.json"

local M = {}

local KEY = "sekret-key-123"
local CASES = {}

local function case(name, fn) CASES[#CASES + 1] = { name = name, fn = fn } end

-- A client of the mock's Converz API (or `path` under the mock).
local function client(ctx, opts, path)
  local o = { base_url = ctx.mock.url .. (path or "/converz/api/v1"),
              auth = { header = "X-API-Key", value = KEY }, backoff = { base = 0.01, cap = 0.05 },
              transport = ctx.transport }
  for k, v in pairs(opts or {}) do o[k] = v end
  return converse.client(o)
end

local function iq(ctx, opts)
  local o = { auth = { header = "x-api-key", value = KEY } }
  for k, v in pairs(opts or {}) do o[k] = v end
  return client(ctx, o, "/converseiq/public/v1")
end

local function raises(f)
  local ok, err = pcall(f)
  assert.is_false(ok, "expected an error")
  assert.is_true(converse.is_error(err), "expected an error object, got " .. tostring(err))
  return err
end

local function entries(mock, prefix)
  local out = {}
  for _, e in ipairs(mock.log()) do
    if e.path:sub(1, #prefix) == prefix then out[#out + 1] = e end
  end
  return out
end

local function ids(list)
  local out = {}
  for i, r in ipairs(list) do out[i] = tostring(r.call_id) end
  return out
end

local function calls_pager(api, page_size, extra)
  local o = { style = "page", size_param = "n_per_page", page_size = page_size }
  for k, v in pairs(extra or {}) do o[k] = v end
  return api:paginate("/calls", o)
end

-- ---- requests and bodies -------------------------------------------------------

case("decodes a body and returns status, headers and the HTTP version", function(ctx)
  local body, res = client(ctx):get("/reps", { query = { n_per_page = 5 } })
  assert.are.equal(5, #body)
  assert.are.equal(200, res.status)
  assert.matches("json", res.headers["content-type"])
  assert.are.equal("1.1", res.http_version)
  local e = entries(ctx.mock, "/converz/api/v1/reps")[1]
  assert.are.equal(KEY, e.headers["x-api-key"])
  assert.matches("^converse/", e.headers["user-agent"])
  assert.are.equal("gzip, deflate", e.headers["accept-encoding"])
end)

case("keeps integers above 2^53 exact", function(ctx)
  local body = client(ctx):get("/calls", { query = { n_per_page = 2 } })
  if math.type then
    assert.are.equal("integer", math.type(body[1].call_id))
    assert.are.equal(9007199254740993, body[1].call_id)
  else
    assert.are.equal("9007199254740993", body[1].call_id)
  end
end)

case("decodes gzip and chunked bodies", function(ctx)
  ctx.mock.control { { type = "gzip", path = "/converz/api/v1/reps" },
                     { type = "chunked", path = "/converz/api/v1/calls" } }
  local api = client(ctx)
  local body, res = api:get("/reps", { query = { n_per_page = 3 } })
  assert.are.equal(3, #body)
  assert.are.equal("gzip", res.headers["content-encoding"])
  local calls
  calls, res = api:get("/calls", { query = { n_per_page = 40 } })
  assert.are.equal(40, #calls)
  assert.are.equal("chunked", res.headers["transfer-encoding"])
end)

case("returns raw text and nil for an empty body", function(ctx)
  local text = client(ctx):get("/reps", { query = { n_per_page = 1 }, raw = true })
  assert.matches("^%[{", text)
  local api = iq(ctx)
  local created = api:post("/contact", { name = "Eve", email = "eve@example.com" })
  local id = created.id or (created.data and created.data.id)
  local body, res = api:delete("/contact/" .. id)
  assert.is_nil(body)
  assert.are.equal(200, res.status)
end)

case("sends JSON bodies with POST and PUT, and DELETE", function(ctx)
  local api = iq(ctx)
  local created, res = api:post("/contact", { name = "Ada", email = "ada@example.com" })
  assert.is_true(res.status == 200 or res.status == 201)
  local id = created.id or (created.data and created.data.id)
  api:put("/contact/" .. id, { city = "London" })
  local got = api:get("/contact/" .. id)
  assert.are.equal("London", (got.data or got).city)
  api:delete("/contact/" .. id)
  assert.are.equal(404, raises(function() api:get("/contact/" .. id) end).status)
  local posted = entries(ctx.mock, "/converseiq/public/v1/contact")
  assert.are.equal("POST", posted[1].method)
  assert.are.equal("application/json", posted[1].headers["content-type"])
  assert.are.equal("Ada", json.decode(posted[1].body).name)
end)

case("skips 1xx heads and never lets trailers change the status", function(ctx)
  local api = converse.client { base_url = ctx.hostile_url, transport = ctx.transport, retries = 0 }
  local body, res = api:get("/informational")
  assert.are.same({ 1, 2, 3 }, body)
  assert.are.equal(200, res.status)
  assert.is_nil(res.headers["x-early"])
  local n = 0
  for _ in api:paginate("/trailers", { style = "none" }) do n = n + 1 end
  assert.are.equal(500, n)
  body, res = api:get("/trailers")
  assert.are.equal(200, res.status)
  assert.are.equal(500, #body)
end)

case("refuses an endless head, an encoding it did not ask for, and stops an endless error body",
  function(ctx)
  local api = converse.client { base_url = ctx.hostile_url, transport = ctx.transport, retries = 3,
                                backoff = { base = 0.01, cap = 0.01 } }
  local err = raises(function() api:get("/longhead") end)
  assert.are.equal("network", err.kind)
  assert.matches("head", err.message)
  assert.are.equal(1, err.attempts)
  err = raises(function() api:get("/zstd") end)
  assert.are.equal("network", err.kind)
  assert.matches("Content%-Encoding", err.message)
  assert.are.equal(1, err.attempts)
  local t0 = core.now()
  err = raises(function() converse.client { base_url = ctx.hostile_url, transport = ctx.transport,
                                            retries = 0 }:get("/endless-error") end)
  assert.are.equal("http", err.kind)
  assert.are.equal(500, err.status)
  assert.matches("^the server is on fire", err.message)
  assert.is_true(core.now() - t0 < 5)
end)

-- ---- connections ------------------------------------------------------------------

case("goes on after the server closed a kept-alive connection", function(ctx)
  local events = {}
  local api = converse.client { base_url = ctx.hostile_url, transport = ctx.transport, retries = 0,
                                on_event = function(ev) events[#events + 1] = ev.type end }
  for i = 1, 3 do
    local body = api:get("/closing")
    assert.are.equal("number", type(body[1]), "request " .. i)
  end
  for _, t in ipairs(events) do assert.are_not.equal("retry", t) end
end)

case("reuses one connection for consecutive requests", function(ctx)
  local api = client(ctx)
  for _ = 1, 5 do api:get("/reps", { query = { n_per_page = 1 } }) end
  local conns = {}
  for _, e in ipairs(entries(ctx.mock, "/converz")) do conns[e.conn] = true end
  local n = 0
  for _ in pairs(conns) do n = n + 1 end
  assert.are.equal(1, n)
end)

case("does not reuse a connection after a partial read", function(ctx)
  local api = client(ctx)
  api:get("/reps", { query = { n_per_page = 1 } })
  -- 13 MB: more than either transport reads ahead (the decoder's 4 MiB, socket buffers)
  local p = api:paginate("/calls", { style = "none", query = { n_per_page = 20000 } })
  local n = 0
  for _ in p do n = n + 1 if n == 5 then break end end
  p:close()
  api:get("/reps", { query = { n_per_page = 1 } })
  api:get("/reps", { query = { n_per_page = 1 } })
  local log = entries(ctx.mock, "/converz")
  assert.are.equal(4, #log)
  assert.are.equal(log[1].conn, log[2].conn)      -- the pager took the pooled connection
  assert.are_not.equal(log[2].conn, log[3].conn)  -- which was not given back half-read
  assert.are.equal(log[3].conn, log[4].conn)
end)

-- ---- errors and retries ------------------------------------------------------------

case("raises error objects for 401, 404 and {error:{code,message}}, without retrying", function(ctx)
  local api = converse.client { base_url = ctx.mock.url .. "/converz/api/v1", transport = ctx.transport }
  local err = raises(function() api:get("/reps") end)
  assert.are.equal("auth", err.kind)
  assert.are.equal(401, err.status)
  assert.are.equal(1, err.attempts)
  err = raises(function() client(ctx):get("/nothing-here") end)
  assert.are.equal(404, err.status)
  assert.is_false(err.retryable)
  ctx.mock.control { type = "status", status = 422, path = "/converz/api/v1/reps",
                     body = { error = { code = "VALIDATION_ERROR", message = "bad field" } } }
  err = raises(function() client(ctx):get("/reps") end)
  assert.are.equal("VALIDATION_ERROR", err.code)
  assert.are.equal("bad field", err.message)
  assert.are.equal(1, #entries(ctx.mock, "/converz/api/v1/nothing-here"))
end)

case("retries 500, 502, 503 and 504 and succeeds", function(ctx)
  for _, status in ipairs { 500, 502, 503, 504 } do
    ctx.mock.fresh()
    ctx.mock.control { type = "status", status = status, path = "/converz/api/v1/reps", times = 2 }
    assert.are.equal(2, #client(ctx):get("/reps", { query = { n_per_page = 2 } }))
    assert.are.equal(3, #entries(ctx.mock, "/converz/api/v1/reps"))
  end
end)

case("gives up after `retries` retries with a retryable error", function(ctx)
  ctx.mock.control { type = "status", status = 500, path = "/converz/api/v1/reps", times = 10 }
  local err = raises(function() client(ctx, { retries = 2 }):get("/reps") end)
  assert.are.equal(500, err.status)
  assert.are.equal(3, err.attempts)
  assert.is_true(err.retryable)
  assert.are.equal(3, #entries(ctx.mock, "/converz/api/v1/reps"))
end)

case("does not retry a POST unless told it is idempotent", function(ctx)
  ctx.mock.control { type = "status", status = 503, method = "POST", path = "/converz/api/v1/reps", times = 2 }
  local err = raises(function() client(ctx):post("/reps", { rep_id = { "x" } }) end)
  assert.are.equal(1, err.attempts)
  local _, res = client(ctx):post("/reps", { rep_id = { "kees500" }, team = { "A" } }, { idempotent = true })
  assert.are.equal(200, res.status)
end)

case("retries a connection dropped before the head and a body cut half-way", function(ctx)
  ctx.mock.control { { type = "drop", before_head = true, path = "/converz/api/v1/reps" },
                     { type = "drop", bytes = 100, path = "/converz/api/v1/calls" } }
  assert.are.equal(2, #client(ctx):get("/reps", { query = { n_per_page = 2 } }))
  assert.are.equal(20, #client(ctx):get("/calls", { query = { n_per_page = 20 } }))
end)

case("reports a network error when nothing listens", function(ctx)
  local api = converse.client { base_url = "http://127.0.0.1:1/x", retries = 1, transport = ctx.transport,
                                backoff = { base = 0.01, cap = 0.01 } }
  local err = raises(function() api:get("/y") end)
  assert.are.equal("network", err.kind)
  assert.are.equal(2, err.attempts)
  assert.is_true(err.retryable)
end)

case("raises a json error naming the request for a malformed body", function(ctx)
  ctx.mock.control { type = "truncate", path = "/converz/api/v1/reps", bytes = 30 }
  local err = raises(function() client(ctx):get("/reps", { query = { n_per_page = 5 } }) end)
  assert.are.equal("json", err.kind)
  assert.are.equal("GET", err.method)
  assert.matches("/reps%?n_per_page=5", err.url)
end)

case("honours Retry-After in seconds and as an HTTP date", function(ctx)
  ctx.mock.control { type = "rate_limit", path = "/converz/api/v1/reps", retry_after = 1 }
  local t0 = core.now()
  assert.are.equal(1, #client(ctx):get("/reps", { query = { n_per_page = 1 } }))
  assert.is_true(core.now() - t0 >= 0.95)
  ctx.mock.control { type = "rate_limit", path = "/converz/api/v1/reps", retry_after = "date", seconds = 1 }
  t0 = core.now()
  client(ctx):get("/reps", { query = { n_per_page = 1 } })
  local waited = core.now() - t0
  assert.is_true(waited >= 0.01 and waited < 3, "waited " .. waited)
end)

case("pauses the whole endpoint after a 429", function(ctx)
  ctx.mock.control { type = "rate_limit", path = "/converz/api/v1/reps", retry_after = 1 }
  local api = client(ctx)
  api:get("/reps", { query = { n_per_page = 1 } })
  api:get("/reps", { query = { n_per_page = 1 } })
  local log = entries(ctx.mock, "/converz/api/v1/reps")
  assert.are.equal(3, #log)
  assert.are.equal(429, log[1].status)
  assert.is_true(log[2].time - log[1].time >= 0.95)
end)

case("raises rate_limited when 429 persists", function(ctx)
  ctx.mock.control { type = "rate_limit", path = "/converz/api/v1/reps", retry_after = 0, times = 9 }
  local err = raises(function() client(ctx, { retries = 1 }):get("/reps") end)
  assert.are.equal("rate_limited", err.kind)
  assert.are.equal(2, err.attempts)
end)

case("never exceeds the rate limit with pages in flight", function(ctx)
  local api = iq(ctx, { rate_limit = { limit = 4, window = 0.5 } })
  api:paginate("/contact", { records = "data", total_pages = "pages", page_size = 10,
                             concurrency = 4 }):collect()
  local log = entries(ctx.mock, "/converseiq/public/v1/contact")
  assert.are.equal(10, #log)
  for i = 5, #log do
    assert.is_true(log[i].time - log[i - 4].time >= 0.49,
      ("requests %d and %d only %.3f s apart"):format(i - 4, i, log[i].time - log[i - 4].time))
  end
end)

-- ---- redirects -------------------------------------------------------------------

case("follows a redirect on the same origin with the key, never to another origin", function(ctx)
  ctx.mock.control { type = "redirect", status = 307, path = "/converz/api/v1/reps",
                     location = ctx.mock.url .. "/converz/api/v1/reps?n_per_page=2" }
  assert.are.equal(2, #client(ctx):get("/reps"))
  local log = entries(ctx.mock, "/converz/api/v1/reps")
  assert.are.equal(KEY, log[#log].headers["x-api-key"])
  ctx.other.reset()
  ctx.mock.control { type = "redirect", path = "/converz/api/v1/reps", to = ctx.other.url }
  local err = raises(function() client(ctx):get("/reps") end)
  assert.are.equal("auth", err.kind)           -- the other server wants a key
  local seen = ctx.other.log()
  assert.is_true(#seen >= 1)
  for _, e in ipairs(seen) do
    assert.is_nil(e.headers["x-api-key"])
    assert.is_nil(e.headers["authorization"])
  end
end)

-- ---- timeouts ----------------------------------------------------------------------

case("times out a request over its total deadline", function(ctx)
  ctx.mock.control { type = "latency", delay = 2, path = "/converz/api/v1/reps" }
  local t0 = core.now()
  local err = raises(function() client(ctx, { timeout = 0.3, retries = 0 }):get("/reps") end)
  assert.are.equal("timeout", err.kind)
  assert.is_true(core.now() - t0 < 1.5)
end)

case("times out a body that stalls (low_speed_time)", function(ctx)
  ctx.mock.control { type = "slow", bytes = 1, interval = 3, path = "/converz/api/v1/reps" }
  local t0 = core.now()
  local err = raises(function()
    client(ctx, { low_speed_time = 1, retries = 0 }):get("/reps", { query = { n_per_page = 50 } })
  end)
  assert.are.equal("timeout", err.kind)
  assert.is_true(core.now() - t0 < 3)
end)

case("times out a connect that hangs (connect_timeout)", function(ctx)
  local api = converse.client { base_url = ctx.blackhole_url, connect_timeout = 0.3, retries = 0,
                                transport = ctx.transport }
  local t0 = core.now()
  local err = raises(function() api:get("/x") end)
  assert.are.equal("timeout", err.kind)
  assert.is_true(core.now() - t0 < 1.5)
end)

case("times out a request body nobody reads (send)", function(ctx)
  local api = converse.client { base_url = ctx.sink_url, low_speed_time = 1, retries = 0,
                                transport = ctx.transport }
  local t0 = core.now()
  local err = raises(function() api:post("/x", ("x"):rep(64 * 1024 * 1024)) end)
  assert.are.equal("timeout", err.kind)
  assert.is_true(core.now() - t0 < 5)
end)

-- ---- paging ----------------------------------------------------------------------------

case("re-fetches a page cut mid-body: nothing lost, nothing repeated", function(ctx)
  local expected = ids(calls_pager(client(ctx), 100, { max_pages = 4 }):collect())
  ctx.mock.fresh()
  ctx.mock.control { type = "drop", bytes = 20000, path = "/converz/api/v1/calls", skip = 1 }
  local got = ids(calls_pager(client(ctx), 100, { max_pages = 4 }):collect())
  assert.are.equal(400, #got)
  assert.are.same(expected, got)
  assert.are.equal(#expected, #got)
end)

case("fetches pages concurrently", function(ctx)
  local api = iq(ctx)
  local function run(c)
    ctx.mock.control { type = "latency", delay = 0.1, path = "/converseiq/public/v1/contact", forever = true }
    local t0 = core.now()
    assert.are.equal(95, #api:paginate("/contact", { records = "data", total_pages = "pages",
      page_size = 10, concurrency = c }):collect())
    ctx.mock.fresh()
    return core.now() - t0
  end
  local seq, par = run(1), run(5)
  assert.is_true(par * 2 < seq, ("sequential %.2f s, concurrent %.2f s"):format(seq, par))
end)

-- Buffering the body would grow the process by more than its 40 MB (and
-- its records by far more). Garbage is collected before each sample, so
-- that what is measured is what the transport holds, not the garbage the
-- collector lets pile up (which differs between Lua versions).
case("streams a 40 MB page in bounded memory", function(ctx)
  local api = client(ctx)
  collectgarbage()
  local base = ctx.rss_kb()
  local peak, n = base, 0
  for _ in api:paginate("/calls", { style = "none", query = { n_per_page = 60000 } }) do
    n = n + 1
    if n % 2000 == 0 then
      collectgarbage()
      local kb = ctx.rss_kb()
      if kb > peak then peak = kb end
    end
  end
  assert.are.equal(60000, n)
  if ctx.sanitized then return end           -- ASan's quarantine and valgrind hold freed memory
  local grown = (peak - base) / 1024
  assert.is_true(grown < 32, ("resident set grew by %.1f MB"):format(grown))
end)

-- ---- secrets --------------------------------------------------------------------------

case("never shows the key in an error, whatever the server echoes", function(ctx)
  ctx.mock.control { type = "status", status = 400, path = "/converz/api/v1/reps",
                     body = { message = "key " .. KEY .. " rejected", code = KEY:upper() } }
  local err = raises(function() client(ctx):get("/reps", { query = { api_key = KEY } }) end)
  for k, v in pairs(err) do
    if type(v) == "string" then
      assert.is_nil(v:lower():find(KEY:lower(), 1, true), k .. " leaks the key")
    end
  end
  assert.is_nil(tostring(err):find(KEY, 1, true))
  assert.matches("400", tostring(err))
end)

M.cases = CASES
M.by_name = {}
for _, c in ipairs(CASES) do M.by_name[c.name] = c end

-- ---- contexts -----------------------------------------------------------------------

--- Mock control functions over `http(method, url, body) -> { status, json }`.
function M.mock(url, http, sleep)
  local m = { url = url }
  function m.control(t)
    local res = http("POST", url .. "/_control", json.encode(t))
    if res.status ~= 200 then error("mock control failed: " .. tostring(res.body), 2) end
    return res.json
  end
  function m.log() return http("GET", url .. "/_log").json end
  function m.reset() return http("POST", url .. "/_reset").json end
  function m.fresh()
    m.reset()
    sleep(0.03)
    http("DELETE", url .. "/_log")
  end
  return m
end

--- The resident set of this process, in KiB.
function M.rss_kb()
  local f = io.open("/proc/self/status")
  local s = f and f:read("*a") or ""
  if f then f:close() end
  return tonumber(s:match("VmRSS:%s*(%d+)")) or 0
end

return M
