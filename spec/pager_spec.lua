-- converse.client:paginate against the local mock: page, cursor and none
-- styles, prefetch and concurrency, retries in the middle of a page, the
-- rate limiter, repeated pages and cursors, releasing connections.
local converse = require "converse"
local helper   = require "helper"
local raises, entries = helper.raises, helper.entries
local core     = require "converse.core"

local KEY = "k-123"
local CALLS = 250

describe("converse.client", function()
  local mock

  setup(function()
    mock = helper.start_mock { calls = CALLS, contacts = 95, conversations = 130,
                               agentx_rate = 1000 }
  end)
  teardown(function() mock:stop() end)
  before_each(function() mock:fresh() end)   -- forget prefetches a test abandoned

  local function cz(opts)
    local o = { base_url = mock.url .. "/converz/api/v1",
                auth = { header = "X-API-Key", value = KEY },
                backoff = { base = 0.01, cap = 0.05 } }
    for k, v in pairs(opts or {}) do o[k] = v end
    return converse.client(o)
  end

  local function calls_pager(api, page_size, extra)
    local o = { style = "page", size_param = "n_per_page", page_size = page_size }
    for k, v in pairs(extra or {}) do o[k] = v end
    return api:paginate("/calls", o)
  end

  local function ids(list, field)
    local out = {}
    for i, r in ipairs(list) do out[i] = tostring(r[field or "call_id"]) end
    return out
  end

  describe(":paginate style page", function()
    it("yields every record once, in order, and stops on a short last page", function()
      local all = calls_pager(cz(), 100):collect()
      assert.are.equal(CALLS, #all)
      local seen = {}
      for _, id in ipairs(ids(all)) do
        assert.is_nil(seen[id])
        seen[id] = true
      end
      local whole = cz():get("/calls", { query = { n_per_page = CALLS } })
      assert.are.same(ids(whole), ids(all))
    end)

    it("stops on an empty page", function()
      local n = 0
      for _ in calls_pager(cz(), 50) do n = n + 1 end
      assert.are.equal(CALLS, n)
      local pages = {}
      for _, e in ipairs(entries(mock, "/converz/api/v1/calls")) do
        pages[#pages + 1] = tonumber(e.query:match("page=(%d+)"))
      end
      assert.is_true(#pages >= 6)     -- 5 full pages, then the empty one
    end)

    it("stops after total_pages and fetches pages concurrently", function()
      local api = converse.client { base_url = mock.url .. "/converseiq/public/v1",
                                    auth = { header = "x-api-key", value = KEY } }
      local p = api:paginate("/contact", { records = "data", total_pages = "pages",
                                           size_param = "limit", page_size = 10,
                                           concurrency = 4 })
      local all = p:collect()
      assert.are.equal(95, #all)
      assert.are.equal(10, #entries(mock, "/converseiq/public/v1/contact"))
    end)

    it("hands out pages with their envelope", function()
      local api = converse.client { base_url = mock.url .. "/converseiq/public/v1",
                                    auth = { header = "x-api-key", value = KEY } }
      local numbers, total = {}, 0
      for page in api:paginate("/contact", { records = "data", total_pages = "pages",
                                             page_size = 40 }):pages() do
        numbers[#numbers + 1] = page.number
        total = total + #page.records
        assert.are.equal(95, page.body.total)
        assert.is_nil(page.body.data)
      end
      assert.are.same({ 1, 2, 3 }, numbers)
      assert.are.equal(95, total)
    end)

    it("raises when the server repeats a page", function()
      mock:control { type = "repeat_page", path = "/converz/api/v1/calls", forever = true }
      local n = 0
      local err = raises(function()
        for _ in calls_pager(cz(), 20) do n = n + 1 end
      end)
      assert.are.equal("REPEATED_PAGE", err.code)
      assert.are.equal(20, n)
    end)

    it("never ends silently on a failed page", function()
      mock:control { type = "status", status = 404, path = "/converz/api/v1/calls", skip = 1,
                     times = 5 }
      local n = 0
      local err = raises(function()
        for _ in calls_pager(cz(), 100, { concurrency = 1 }) do n = n + 1 end
      end)
      assert.are.equal(404, err.status)
      assert.are.equal(100, n)
    end)

    it("retries a failed page and loses nothing", function()
      mock:control { type = "status", status = 503, path = "/converz/api/v1/calls", skip = 1 }
      assert.are.equal(CALLS, #calls_pager(cz(), 100):collect())
    end)

    it("re-fetches a page cut mid-body and skips what was already yielded", function()
      local expected = ids(calls_pager(cz(), 100):collect())
      mock:reset()
      mock:control { type = "drop", bytes = 20000, path = "/converz/api/v1/calls", skip = 1 }
      local got = ids(calls_pager(cz(), 100):collect())
      assert.are.same(expected, got)
    end)

    it("raises a json error for a malformed page, with no silent end", function()
      mock:control { type = "invalid_utf8", path = "/converz/api/v1/calls" }
      local err = raises(function() calls_pager(cz(), 10):collect() end)
      assert.are.equal("json", err.kind)
      assert.are.equal("GET", err.method)
      assert.matches("/converz/api/v1/calls%?", err.url)
      assert.are.equal(200, err.status)
    end)
  end)

  describe(":paginate style cursor", function()
    local function ax()
      return converse.client { base_url = mock.url .. "/agentx",
                               auth = { header = "x-api-key", value = KEY } }
    end
    local Q = { start_time = 0, end_time = 4102444800, bot_name = "r3-218210", per_page = 40 }

    it("follows the cursor until it is null", function()
      local p = ax():paginate("/conversations/export/v1/conversations",
        { style = "cursor", records = "data", query = Q })
      local all = p:collect()
      assert.are.equal(130, #all)
      local log = entries(mock, "/agentx/conversations/export/v1/conversations")
      assert.are.equal(4, #log)
      assert.is_nil(log[1].query:find("cursor="))
      assert.is_not_nil(log[2].query:find("cursor="))
    end)

    it("raises when the server repeats a cursor", function()
      mock:control { type = "repeat_cursor", path = "/agentx/conversations", forever = true }
      local err = raises(function()
        ax():paginate("/conversations/export/v1/conversations",
          { style = "cursor", records = "data", query = Q }):collect()
      end)
      assert.are.equal("REPEATED_CURSOR", err.code)
    end)
  end)

  describe(":paginate style none", function()
    it("yields the records of a single response", function()
      local all = cz():paginate("/reps", { style = "none", query = { n_per_page = 7 } }):collect()
      assert.are.equal(7, #all)
    end)
  end)

  describe("rate limits and concurrency", function()
    it("never exceeds the rate limit with pages in flight", function()
      local api = converse.client { base_url = mock.url .. "/converseiq/public/v1",
                                    auth = { header = "x-api-key", value = KEY },
                                    rate_limit = { per_second = 4 } }
      api:paginate("/contact", { records = "data", total_pages = "pages", page_size = 10,
                                 concurrency = 4 }):collect()
      local log = entries(mock, "/converseiq/public/v1/contact")
      assert.are.equal(10, #log)
      for i = 5, #log do
        assert.is_true(log[i].time - log[i - 4].time >= 0.98,
          ("requests %d and %d only %.3f s apart"):format(i - 4, i, log[i].time - log[i - 4].time))
      end
    end)

    it("is faster with concurrency when each request has latency", function()
      local api = converse.client { base_url = mock.url .. "/converseiq/public/v1",
                                    auth = { header = "x-api-key", value = KEY } }
      local function run(c)
        mock:control { type = "latency", delay = 0.1, path = "/converseiq/public/v1/contact",
                       forever = true }
        local t0 = core.now()
        assert.are.equal(95, #api:paginate("/contact", { records = "data", total_pages = "pages",
          page_size = 10, concurrency = c }):collect())
        mock:reset()
        return core.now() - t0
      end
      local seq, par = run(1), run(5)
      assert.is_true(par * 2 < seq, ("sequential %.2f s, concurrent %.2f s"):format(seq, par))
    end)
  end)

  describe("releasing connections", function()
    it("closes its transfers when the loop breaks (pager() form)", function()
      local p = calls_pager(cz(), 10)
      for _ in p() do break end
      if _VERSION == "Lua 5.4" then assert.is_true(p.closed) end
      p:close()
      assert.is_true(p.closed)
    end)

    it("is closed after a complete iteration and can be closed twice", function()
      local p = calls_pager(cz(), 100)
      p:collect()
      assert.is_true(p.closed)
      p:close()
    end)

    it("survives abandoned pagers being collected", function()
      for _ = 1, 5 do
        local p = calls_pager(cz(), 10)
        p:each()()                  -- one record, then drop it
      end
      collectgarbage()
      collectgarbage()
      assert.are.equal(CALLS, #calls_pager(cz(), 100):collect())
    end)
  end)

  describe("bad arguments", function()
    it("raises usage errors", function()
      local api = cz()
      assert.are.equal("usage", raises(function() api:paginate(1) end).kind)
      assert.are.equal("usage", raises(function() api:paginate("/x", { style = "zip" }) end).kind)
      assert.are.equal("usage", raises(function() api:paginate("/x", { concurrency = 0 }) end).kind)
      assert.are.equal("usage", raises(function()
        api:paginate("/x", { query = { a = print } }):collect()
      end).kind)
    end)
  end)

  describe("servers that lie about pages", function()
    it("does not take pages that only start alike (heartbeat first records) for repeats", function()
      local srv = helper.hostile [[
        return function(req)
          local p = tonumber(req.target:match("[?&]page=(%d+)"))
          local n = p <= 4 and 4 or 2
          return response(200, json_array(n, function(i)
            if i == 1 then return '{"event":"heartbeat"}' end
            return ('{"id":%d}'):format(p * 10 + i)
          end))
        end]]
      local all = converse.client { base_url = srv.url }
        :paginate("/", { page_size = 4, concurrency = 2 }):collect()
      srv:stop()
      assert.are.equal(4 * 4 + 2, #all)
    end)

    it("raises REPEATED_PAGE before a repeated page is handed out", function()
      local srv = helper.hostile [[
        return function() return response(200, json_array(3, function(i)
          return '{"id":' .. i .. '}' end)) end]]
      local seen = 0
      local err = raises(function()
        for _ in converse.client { base_url = srv.url }:paginate("/", { page_size = 3 }) do
          seen = seen + 1
        end
      end)
      srv:stop()
      assert.are.equal("REPEATED_PAGE", err.code)
      assert.are.equal(3, seen)
    end)

    for _, lie in ipairs { "9223372036854775807", "1e19", "1e300", "1e400", "2.7", "-3", '"many"' } do
      it("raises BAD_PAGE_COUNT for a page count of " .. lie .. ", never stops silently", function()
        local srv = helper.hostile(([[
          return function(req)
            return response(200, '{"data":[{"id":1},{"id":2}],"pages":%s}')
          end]]):format(lie))
        local err = raises(function()
          converse.client { base_url = srv.url }:paginate("/", {
            records = "data", total_pages = "pages", page_size = 2 }):collect()
        end)
        srv:stop()
        assert.are.equal("BAD_PAGE_COUNT", err.code)
        assert.are.equal("http", err.kind)
      end)
    end

    it("reads on through short pages up to the announced count", function()
      local srv = helper.hostile [[
        return function(req)
          local p = tonumber(req.target:match("[?&]page=(%d+)"))
          local n = ({ 3, 1, 3 })[p] or 0
          return response(200, ('{"data":%s,"pages":3}'):format(json_array(n, function(i)
            return ('{"id":%d}'):format(p * 10 + i) end)))
        end]]
      local all = converse.client { base_url = srv.url }:paginate("/", {
        records = "data", total_pages = "pages", page_size = 3 }):collect()
      srv:stop()
      assert.are.equal(7, #all)
    end)

    it("raises PAGE_COUNT_MISMATCH for an empty page before the announced end", function()
      local srv = helper.hostile [[
        return function(req)
          local p = tonumber(req.target:match("[?&]page=(%d+)"))
          local data = p == 1 and '[{"id":1},{"id":2}]' or "[]"
          return response(200, '{"data":' .. data .. ',"pages":5}')
        end]]
      local err = raises(function()
        converse.client { base_url = srv.url }:paginate("/", {
          records = "data", total_pages = "pages", page_size = 2, concurrency = 1 }):collect()
      end)
      srv:stop()
      assert.are.equal("PAGE_COUNT_MISMATCH", err.code)
    end)
  end)

  describe("resuming", function()
    it("gives the position after each page; a new pager resumes there, nothing re-read", function()
      local positions, first = {}, {}
      for page in calls_pager(cz(), 100):pages() do
        positions[#positions + 1] = page.position
        for _, r in ipairs(page.records) do first[#first + 1] = tostring(r.call_id) end
      end
      assert.are.equal(3, #positions)
      assert.are.equal(2, positions[1].page)
      assert.is_true(positions[3].done)
      local rest = ids(calls_pager(cz(), 100, { resume = positions[1] }):collect())
      assert.are.same({ (table.unpack or unpack)(first, 101) }, rest)
      assert.are.equal(0, #calls_pager(cz(), 100, { resume = positions[3] }):collect())
    end)

    it("resumes a cursor pager with the cursor of the next page, not the one that fetched it", function()
      local api = converse.client { base_url = mock.url .. "/agentx",
                                    auth = { header = "x-api-key", value = KEY } }
      local Q = { start_time = 0, end_time = 4102444800, bot_name = "r3-218210", per_page = 40 }
      local function pager(resume)
        return api:paginate("/conversations/export/v1/conversations",
          { style = "cursor", records = "data", query = Q, resume = resume })
      end
      local p = pager()
      local page = p:pages()()
      assert.are.equal(40, #page.records)
      assert.are.same(page.position, p:position())
      p:close()
      local pos = page.position
      assert.is_string(pos.cursor)
      assert.are_not.equal(page.cursor, pos.cursor)
      local rest = pager(pos):collect()
      assert.are.equal(130 - 40, #rest)
      local all = pager():collect()
      assert.are.equal(all[41]._id, rest[1]._id)
    end)

    it("refuses a position taken from another query", function()
      local pos = calls_pager(cz(), 100):pages()().position
      local err = raises(function() calls_pager(cz(), 50, { resume = pos }) end)
      assert.are.equal("usage", err.kind)
      assert.matches("another query", err.message)
    end)
  end)

  it("ends with INTERRUPTED when a trapped SIGINT cuts a rate-limit wait for the next page", function()
    local child = helper.spawn([[
      local core = require "converse.core"
      local converse = require "converse"
      core.trap_signals()
      local api = converse.client { base_url = ..., rate_limit = { per_second = 1 },
                                    auth = { header = "X-API-Key", value = "k-123" } }
      local p = api:paginate("/calls", { size_param = "n_per_page", page_size = 10 })
      local ok, err = pcall(function() for _ in p do end end)
      local closed = pcall(p.close, p)             -- what a sync does next
      print("RESULT", ok, converse.is_error(err), err.code, closed, tostring(err))
    ]], mock.url .. "/converz/api/v1")
    require("socket").sleep(1.5)
    os.execute("kill -INT " .. child.pid)
    assert.matches("RESULT\tfalse\ttrue\tINTERRUPTED\ttrue", child:wait())
  end)

  describe("a pager is iterated once", function()
    it("raises a usage error when iterated again after its end", function()
      local p = calls_pager(cz(), 100)
      assert.are.equal(CALLS, #p:collect())
      local err = raises(function() for _ in p do end end)
      assert.are.equal("usage", err.kind)
    end)

    it("raises a usage error when iterated after close() or a break", function()
      local p = calls_pager(cz(), 10)
      for _ in p:each() do break end
      p:close()
      assert.are.equal("usage", raises(function() for _ in p do end end).kind)
      if _VERSION == "Lua 5.4" then
        local q = calls_pager(cz(), 10)
        for _ in q() do break end                   -- the to-be-closed value closes it
        assert.are.equal("usage", raises(function() for _ in q do end end).kind)
      end
    end)
  end)

  describe("events", function()
    it("reports requests, responses, pages, retries and rate-limit waits", function()
      mock:control { type = "status", status = 503, path = "/converz/api/v1/calls", times = 1 }
      local seen = {}
      local api = cz { on_event = function(ev) seen[#seen + 1] = ev end,
                       rate_limit = { per_second = 1000 } }
      calls_pager(api, 100, { concurrency = 1 }):collect()
      local kinds = {}
      for _, ev in ipairs(seen) do kinds[ev.type] = (kinds[ev.type] or 0) + 1 end
      assert.are.equal(3, kinds.page)
      assert.are.equal(1, kinds.retry)
      assert.is_true(kinds.request >= 4)
      for _, ev in ipairs(seen) do
        if ev.type == "retry" then
          assert.are.equal(503, ev.status)
          assert.is_number(ev.wait)
        end
        if ev.url then assert.is_nil(ev.url:find(KEY, 1, true)) end
      end
    end)

    it("writes log lines through log.write at the chosen level, and nothing by default", function()
      mock:control { type = "status", status = 503, path = "/converz/api/v1/calls", times = 1 }
      local lines = {}
      calls_pager(cz { log = { level = "warn", write = function(l) lines[#lines + 1] = l end } },
        100):collect()
      assert.are.equal(1, #lines)
      assert.matches("^converse: retry GET", lines[1])
      assert.are.equal("usage", raises(function() cz { log = "loud" } end).kind)
    end)
  end)
end)
