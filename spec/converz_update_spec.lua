-- converse.converz bulk updates (POST /calls, POST /reps): rows become the
-- columnar form (a field missing from a row is null: "left unchanged"),
-- columnar input passes through, keys are checked before any request,
-- 100,000 rows at most per request, and the POST is retried on a 503.
local converse = require "converse"
local helper   = require "helper"
local raises = helper.raises

local KEY = "cz-key-2"
local PREFIX = "/converz/api/v1"
local ID1, ID2 = "9007199254740994", "9007199254740995"

local function posts(mock)
  local out = {}
  for _, e in ipairs(mock:log()) do if e.method == "POST" then out[#out + 1] = e end end
  return out
end

describe("converse.converz updates", function()
  local mock

  setup(function() mock = helper.start_mock { calls = 30, reps = 5, api_key = KEY } end)
  teardown(function() mock:stop() end)
  before_each(function() mock:fresh() end)

  local function cz()
    return converse.converz { base_url = mock.url .. PREFIX, api_key = KEY,
                              backoff = { base = 0.01, cap = 0.05 } }
  end

  local function usage(f, pattern)
    local err = raises(f)
    assert.are.equal("usage", err.kind)
    if pattern then assert.matches(pattern, err.message) end
    assert.matches("converz_update_spec%.lua:%d+:", err.message)
    assert.are.same({}, mock:log())
  end

  it("converts rows to columns, a missing field becoming null", function()
    local r = cz():update_calls { { call_id = ID1, campaign = "A" }, { call_id = ID2, subcampaign = "B1" } }
    assert.are.same({ requests = 1, rows = 2 }, r)
    local p = posts(mock)
    assert.are.equal(1, #p)
    assert.are.equal(PREFIX .. "/calls", p[1].path)
    assert.are.equal(KEY, p[1].headers["x-api-key"])
    assert.matches("application/json", p[1].headers["content-type"], 1, true)
    local body = helper.json.decode(p[1].body)
    assert.are.same({ ID1, ID2 }, { tostring(body.call_id[1]), tostring(body.call_id[2]) })
    assert.are.equal("A", body.campaign[1])
    assert.are.equal(helper.json.null, body.campaign[2])
    assert.are.equal(helper.json.null, body.subcampaign[1])
    assert.are.equal("B1", body.subcampaign[2])
    assert.is_truthy(p[1].body:find('"campaign":["A",null]', 1, true))
  end)

  it("applies the update (seen by a later GET /calls)", function()
    local c = cz()
    c:update_calls { { call_id = ID2, campaign = "Zeta" } }
    local hits = c:calls { campaign = "Zeta" }:collect()
    assert.are.equal(1, #hits)
    assert.are.equal(ID2, tostring(hits[1].call_id))
  end)

  it("passes columnar input through", function()
    local cols = { call_id = { ID1, ID2 }, campaign = { "A", converse.null } }
    assert.are.same({ requests = 1, rows = 2 }, cz():update_calls(cols))
    local body = helper.json.decode(posts(mock)[1].body)
    assert.are.same({ "A", helper.json.null }, body.campaign)
    assert.are.same({ ID1, ID2 }, { tostring(body.call_id[1]), tostring(body.call_id[2]) })
  end)

  it("update_reps posts to /reps keyed by rep_id", function()
    local c = cz()
    local reps = c:reps():collect()
    mock:reset()
    local r = c:update_reps { { rep_id = reps[1].rep_id, team = "Night" }, { rep_id = reps[2].rep_id } }
    assert.are.same({ requests = 1, rows = 2 }, r)
    local p = posts(mock)
    assert.are.equal(PREFIX .. "/reps", p[1].path)
    local body = helper.json.decode(p[1].body)
    assert.are.same({ reps[1].rep_id, reps[2].rep_id }, body.rep_id)
    assert.are.same({ "Night", helper.json.null }, body.team)
    local again = c:reps():collect()
    assert.are.equal("Night", again[1].team)
  end)

  it("checks keys and shapes before any request", function()
    local c = cz()
    usage(function() c:update_calls { { call_id = ID1 }, { campaign = "x" } } end, "row 2 has no call_id")
    usage(function() c:update_calls { { call_id = converse.null } } end, "call_id")
    usage(function() c:update_reps { { call_id = ID1 } } end, "rep_id")
    usage(function() c:update_calls { campaign = { "x" } } end, "call_id")
    usage(function() c:update_calls { call_id = { ID1, ID2 }, campaign = { "x" } } end, "campaign")
    usage(function() c:update_calls { call_id = { ID1, converse.null } } end, "null")
    usage(function() c:update_calls { "not a row" } end, "row 1")
    usage(function() c:update_calls "rows" end)
    usage(function() c:update_calls() end)
  end)

  it("splits at 100,000 rows per request", function()
    local n = 100001
    local ids, camp = {}, {}
    for i = 1, n do ids[i] = i; camp[i] = converse.null end
    camp[n] = "last"
    local r = cz():update_calls { call_id = ids, campaign = camp }
    assert.are.same({ requests = 2, rows = n }, r)
    local p = posts(mock)
    assert.are.equal(2, #p)
    assert.is_true(p[1].body_size > 100000 * 6)
    local tail = helper.json.decode(p[2].body)
    assert.are.same({ n }, tail.call_id)
    assert.are.same({ "last" }, tail.campaign)
  end)

  it("splits rows the same way", function()
    local rows = {}
    for i = 1, 100001 do rows[i] = { call_id = i } end
    assert.are.same({ requests = 2, rows = 100001 }, cz():update_calls(rows))
    assert.are.equal(2, #posts(mock))
  end)

  it("sends nothing for an empty update", function()
    assert.are.same({ requests = 0, rows = 0 }, cz():update_calls {})
    assert.are.same({}, mock:log())
  end)

  it("retries the POST on a 503 (the update is idempotent)", function()
    mock:control { type = "status", status = 503, method = "POST", path = PREFIX .. "/calls" }
    local r = cz():update_calls { { call_id = ID1, campaign = "A" } }
    assert.are.same({ requests = 1, rows = 1 }, r)
    local p = posts(mock)
    assert.are.equal(2, #p)
    assert.are.equal(p[1].body, p[2].body)
  end)

  it("raises an http error when the server refuses", function()
    mock:control { type = "status", status = 400, method = "POST", path = PREFIX .. "/calls",
                   body = { detail = "bad column" } }
    local err = raises(function() cz():update_calls { { call_id = ID1, x = 1 } } end)
    assert.are.equal("http", err.kind)
    assert.are.equal(400, err.status)
    assert.are.equal("bad column", err.message)
    assert.are.equal(1, #posts(mock))
  end)
end)
