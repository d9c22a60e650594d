-- converse.mock: the Converz Data API (seed 000).
local helper = require "helper"

local KEY = { ["X-API-Key"] = "k" }
local BASE = "/converz/api/v1"

describe("converse.mock converz", function()
  local mock
  setup(function() mock = helper.start_mock{ calls = 120, reps = 12 } end)
  teardown(function() mock:stop() end)
  before_each(function() mock:reset() end)

  local function get(path) return mock:get(BASE .. path, KEY) end

  describe("GET /calls", function()
    it("returns a bare JSON array of rows, 10 by default", function()
      local r = get("/calls")
      assert.equal(200, r.status)
      assert.matches("^%[{", r.body)
      assert.equal(10, #r.json)
      assert.is_string(r.json[1].summary)
    end)

    it("writes call ids above 2^53 with every digit", function()
      local r = get("/calls?n_per_page=3")
      assert.truthy(r.body:find('"call_id":9007199254740993,', 1, true))
      assert.truthy(r.body:find('"call_id":9007199254740995,', 1, true))
    end)

    it("pages with page and n_per_page and ends with an empty page", function()
      local all = {}
      for page = 1, 4 do
        local rows = get("/calls?n_per_page=50&page=" .. page).json
        for _, row in ipairs(rows) do all[#all + 1] = row end
        if page == 3 then assert.equal(20, #rows) end
        if page == 4 then assert.equal(0, #rows) end
      end
      assert.equal(120, #all)
    end)

    it("rejects n_per_page above 1,000,000 and bad pages", function()
      assert.equal(400, get("/calls?n_per_page=1000001").status)
      assert.equal(400, get("/calls?n_per_page=0").status)
      assert.equal(400, get("/calls?page=0").status)
      assert.equal(400, get("/calls?page=abc").status)
    end)

    it("filters on repeated rep_id values", function()
      local rows = get("/calls?n_per_page=1000").json
      local a, b = rows[1].rep_id, nil
      for _, row in ipairs(rows) do if row.rep_id ~= a then b = row.rep_id; break end end
      local got = get("/calls?n_per_page=1000&rep_id=" .. a .. "&rep_id=" .. b).json
      assert.is_true(#got > 0)
      for _, row in ipairs(got) do assert.is_true(row.rep_id == a or row.rep_id == b) end
    end)

    it("filters on vendor, campaign, department and vendor_call_id", function()
      for _, row in ipairs(get("/calls?n_per_page=1000&vendor=Aircall&department=Sales").json) do
        assert.equal("Aircall", row.vendor)
        assert.equal("Sales", row.department)
      end
      local first = get("/calls?n_per_page=1").json[1]
      local got = get("/calls?vendor_call_id=" .. first.vendor_call_id).json
      assert.equal(1, #got)
      assert.equal(first.vendor_call_id, got[1].vendor_call_id)
      local c = get("/calls?n_per_page=1000&campaign=Upsell%20%F0%9F%9A%80").json
      for _, row in ipairs(c) do assert.equal("Upsell 🚀", row.campaign) end
    end)

    it("filters on start_date/end_date and after/before", function()
      local got = get("/calls?n_per_page=1000&start_date=2025-01-10&end_date=2025-01-20").json
      assert.is_true(#got > 0)
      for _, row in ipairs(got) do assert.is_true(row.date >= "2025-01-10" and row.date <= "2025-01-20") end
      got = get("/calls?n_per_page=1000&after=2025-02-01%2012:00&before=2025-02-03").json
      assert.is_true(#got > 0)
      for _, row in ipairs(got) do
        assert.is_true(row.start_time >= "2025-02-01 12:00:00" and row.start_time <= "2025-02-03 23:59:59")
      end
      assert.equal(400, get("/calls?start_date=yesterday").status)
    end)

    it("returns only the requested columns", function()
      local r = get("/calls?n_per_page=2&columns=call_id,summary")
      assert.matches('^%[{"call_id":9007199254740993,"summary":"[^}]*"},', r.body)
      local row = r.json[1]
      assert.is_nil(row.rep_id)
    end)

    it("adds a requested metric column", function()
      local row = get("/calls?n_per_page=1&metric=talk_ratio").json[1]
      assert.is_number(row.talk_ratio)
    end)

    it("generates the same data for the same seed", function()
      local a = get("/calls?n_per_page=5").body
      local other = helper.start_mock{ calls = 120, reps = 12 }
      local b = other:get(BASE .. "/calls?n_per_page=5", KEY).body
      other:stop()
      assert.equal(a, b)
    end)
  end)

  describe("POST /calls", function()
    local ID1, ID2 = "9007199254740993", "9007199254740994"
    local function post(body) return mock:request("POST", BASE .. "/calls", body, KEY) end
    local function row(i) return get("/calls?n_per_page=1&page=" .. i).json[1] end

    it("updates rows (row form) and sets fields missing from a row to null", function()
      local r = post('[{"call_id":' .. ID1 .. ',"campaign":"A"},{"call_id":' .. ID2 .. ',"subcampaign":"B1"}]')
      assert.equal(200, r.status)
      assert.equal(2, r.json.updated)
      local one, two = row(1), row(2)
      assert.equal("A", one.campaign)
      assert.equal(helper.json.null, one.subcampaign)
      assert.equal(helper.json.null, two.campaign)
      assert.equal("B1", two.subcampaign)
    end)

    it("leaves values unchanged for null entries in columnar form", function()
      local before = row(2).campaign
      local r = post('{"call_id":[' .. ID1 .. ',' .. ID2 .. '],"campaign":["A",null],"subcampaign":[null,"B1"]}')
      assert.equal(200, r.status)
      local one, two = row(1), row(2)
      assert.equal("A", one.campaign)
      assert.equal(before, two.campaign)
      assert.equal("B1", two.subcampaign)
    end)

    it("adds new columns (metrics) visible in later GETs", function()
      post('{"call_id":[' .. ID1 .. '],"nps":[9]}')
      assert.equal(9, row(1).nps)
      assert.equal(helper.json.null, row(2).nps)
    end)

    it("reports ids it does not know", function()
      local r = post('[{"call_id":1,"campaign":"A"}]')
      assert.equal(0, r.json.updated)
      assert.equal(1, #r.json.not_found)
    end)

    it("rejects bodies that are not rows or columns", function()
      assert.equal(400, post('"x"').status)
      assert.equal(400, post('{"call_id":[1,2],"campaign":["A"]}').status)
      assert.equal(400, post('[{"campaign":"A"}]').status)
      assert.equal(400, post('not json').status)
    end)

    it("rejects more than 100,000 rows", function()
      local ids = {}
      for i = 1, 100001 do ids[i] = i end
      local r = post('{"call_id":[' .. table.concat(ids, ",") .. ']}')
      assert.equal(413, r.status)
      assert.matches("100000", r.json.detail)
    end)

    it("is undone by /_reset", function()
      post('[{"call_id":' .. ID1 .. ',"campaign":"ZZZ"}]')
      mock:reset()
      assert.are_not.equal("ZZZ", row(1).campaign)
    end)
  end)

  describe("/reps", function()
    it("lists reps with paging", function()
      local r = get("/reps?n_per_page=5")
      assert.equal(5, #r.json)
      assert.is_string(r.json[1].rep_id)
      assert.equal(2, #get("/reps?n_per_page=5&page=3").json)
    end)

    it("updates reps by rep_id", function()
      local rep = get("/reps?n_per_page=1").json[1]
      local r = mock:request("POST", BASE .. "/reps", { rep_id = { rep.rep_id }, team = { "Z" } }, KEY)
      assert.equal(1, r.json.updated)
      assert.equal("Z", get("/reps?n_per_page=1").json[1].team)
    end)
  end)

  describe("GET /report", function()
    it("aggregates counts and mean duration by group_by", function()
      local rows = get("/report?group_by=vendor").json
      local n = 0
      for _, g in ipairs(rows) do
        assert.is_string(g.vendor)
        assert.is_number(g.mean_duration)
        n = n + g.n_calls
      end
      assert.equal(120, n)
    end)

    it("applies the /calls filters and an optional metric", function()
      local rows = get("/report?group_by=department&vendor=Aircall&metric=score").json
      for _, g in ipairs(rows) do assert.is_not_nil(g.mean_score) end
      assert.equal(400, get("/report?group_by=nonsense").status)
    end)
  end)
end)
