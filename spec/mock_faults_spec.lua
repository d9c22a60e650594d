-- converse.mock: every fault the control API can arm.
local helper = require "helper"
local socket = require "socket"

local KEY = { ["X-API-Key"] = "k" }
local CALLS = "/converz/api/v1/calls"
local AX = "/agentx/conversations/export/v1/conversations?start_time=0&end_time=2000000000&bot_name=b&per_page=5"

describe("converse.mock faults", function()
  local mock
  setup(function() mock = helper.start_mock{ calls = 60, conversations = 20, agentx_rate = 0 } end)
  teardown(function() mock:stop() end)
  before_each(function() mock:reset() end)

  for _, status in ipairs({ 500, 502, 503, 504 }) do
    it("answers " .. status .. " for the next matching request only", function()
      mock:control{ type = "status", status = status, method = "GET", path = CALLS }
      assert.equal(status, mock:get(CALLS, KEY).status)
      assert.equal(200, mock:get(CALLS, KEY).status)
    end)
  end

  it("matches by method and path prefix, and honours times and skip", function()
    mock:control{ type = "status", status = 503, method = "POST", path = "/converz", times = 2, skip = 1 }
    assert.equal(200, mock:get(CALLS, KEY).status)                          -- GET does not match
    local body = '[{"rep_id":"nobody"}]'
    assert.equal(200, mock:request("POST", "/converz/api/v1/reps", body, KEY).status)   -- skipped
    assert.equal(503, mock:request("POST", "/converz/api/v1/reps", body, KEY).status)
    assert.equal(503, mock:request("POST", "/converz/api/v1/reps", body, KEY).status)
    assert.equal(200, mock:request("POST", "/converz/api/v1/reps", body, KEY).status)
    local log = mock:log()
    assert.same({ "status" }, log[4].faults)
  end)

  it("keeps a fault armed forever with forever = true", function()
    mock:control{ type = "status", status = 500, path = CALLS, forever = true }
    for _ = 1, 3 do assert.equal(500, mock:get(CALLS, KEY).status) end
  end)

  it("answers 429 with Retry-After in seconds", function()
    mock:control{ type = "rate_limit", path = CALLS, retry_after = 3 }
    local r = mock:get(CALLS, KEY)
    assert.equal(429, r.status)
    assert.equal("3", r.headers["retry-after"])
  end)

  it("answers 429 with Retry-After as an HTTP date", function()
    mock:control{ type = "rate_limit", path = CALLS, retry_after = "date", seconds = 2 }
    local r = mock:get(CALLS, KEY)
    assert.equal(429, r.status)
    assert.matches("^%a%a%a, %d%d %a%a%a %d%d%d%d %d%d:%d%d:%d%d GMT$", r.headers["retry-after"])
  end)

  it("drops the connection after K bytes of the body", function()
    mock:control{ type = "drop", path = CALLS, bytes = 100 }
    local r = mock:get(CALLS .. "?n_per_page=20", KEY)
    assert.equal(200, r.status)
    assert.matches("closed after 100 of %d+ bytes", r.error)
    assert.equal(100, #r.body)
  end)

  it("drops the connection before any response", function()
    mock:control{ type = "drop", path = CALLS, before_head = true }
    local r = mock:get(CALLS, KEY)
    assert.is_nil(r.status)
    assert.matches("no response head", r.error)
  end)

  it("truncates the JSON with a matching Content-Length", function()
    mock:control{ type = "truncate", path = CALLS, bytes = 50 }
    local r = mock:get(CALLS .. "?n_per_page=5", KEY)
    assert.equal(200, r.status)
    assert.equal("50", r.headers["content-length"])
    assert.is_nil(r.error)
    assert.is_nil(r.json)
  end)

  it("injects invalid UTF-8 inside a string", function()
    mock:control{ type = "invalid_utf8", path = CALLS }
    local r = mock:get(CALLS .. "?n_per_page=2", KEY)
    assert.truthy(r.body:find("\255\254", 1, true))
    assert.is_table(r.json)              -- still well-formed JSON syntax
  end)

  it("serves deeply nested JSON", function()
    mock:control{ type = "deep_nesting", path = CALLS, depth = 5000 }
    local r = mock:get(CALLS, KEY)
    assert.equal(string.rep("[", 5000) .. string.rep("]", 5000), r.body)
  end)

  it("repeats the cursor (agentx) so a page repeats forever", function()
    mock:control{ type = "repeat_cursor", path = "/agentx", forever = true }
    local first = mock:get(AX, KEY).json
    assert.is_string(first.cursor)
    local second = mock:get(AX .. "&cursor=" .. first.cursor, KEY).json
    assert.equal(first.cursor, second.cursor)
    assert.same(first.data, second.data)
  end)

  it("repeats the first page for page-number APIs", function()
    mock:control{ type = "repeat_page", path = CALLS, times = 2 }
    local p2 = mock:get(CALLS .. "?page=2&n_per_page=5", KEY).json
    local p3 = mock:get(CALLS .. "?page=3&n_per_page=5", KEY).json
    local p1 = mock:get(CALLS .. "?page=1&n_per_page=5", KEY).json
    assert.same(p1, p2)
    assert.same(p1, p3)
    assert.are_not.same(p1, mock:get(CALLS .. "?page=2&n_per_page=5", KEY).json)
  end)

  it("redirects (302/307) to another host and port", function()
    local other = helper.start_mock{ calls = 5 }
    mock:control{ type = "redirect", status = 307, path = CALLS, to = other.url }
    local r = mock:get(CALLS .. "?n_per_page=1", KEY)
    assert.equal(307, r.status)
    assert.equal(other.url .. CALLS .. "?n_per_page=1", r.headers.location)
    mock:control{ type = "redirect", path = CALLS, location = "http://localhost:1/x" }
    r = mock:get(CALLS, KEY)
    assert.equal(302, r.status)
    assert.equal("http://localhost:1/x", r.headers.location)
    other:stop()
  end)

  it("trickles a slow body", function()
    mock:control{ type = "slow", path = CALLS, bytes = 64, interval = "20ms" }
    local t0 = socket.gettime()
    local r = mock:get(CALLS .. "?n_per_page=2", KEY)     -- ~1.3 KB -> ~20 writes
    assert.equal(200, r.status)
    assert.is_table(r.json)
    assert.is_true(socket.gettime() - t0 >= 0.3)
  end)

  it("adds latency to matching requests", function()
    mock:control{ type = "latency", path = CALLS, delay = "200ms" }
    local t0 = socket.gettime()
    mock:get(CALLS, KEY)
    assert.is_true(socket.gettime() - t0 >= 0.2)
  end)

  it("switches a response to chunked encoding", function()
    mock:control{ type = "chunked", path = CALLS }
    local r = mock:get(CALLS .. "?n_per_page=3", KEY)
    assert.is_true(r.chunked)
    assert.equal(3, #r.json)
  end)

  it("closes the connection after the response", function()
    mock:control{ type = "close", path = CALLS }
    local c = helper.connection(mock.url)
    local r = c:request("GET", CALLS, nil, KEY)
    assert.equal("close", r.headers.connection)
    c:close()
  end)
end)
