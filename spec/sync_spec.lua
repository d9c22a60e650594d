-- converse.sync from Lua against the mock: windows, checkpoints, resume,
-- lookback and its dedupe, the sinks (ndjson, csv, sqlite, function),
-- state files, events and outcomes.
local helper   = require "helper"
local cli      = require "support.cli"
local converse = require "converse"
local sync     = require "converse.sync"
local stime    = require "converse.time"
local csv      = require "converse.sync.sinks.csv"
local core     = require "converse.core"

local json = converse.json
local SINCE, UNTIL = "2025-01-01", "2025-04-01"

local function lines(path)
  local out = {}
  local f = io.open(path, "rb")
  if not f then return out end
  local text = f:read("*a")
  f:close()
  for l in text:gmatch("([^\n]*)\n") do out[#out + 1] = l end
  return out, text
end

-- RFC 4180 rows (quoted fields may hold commas, quotes and line breaks).
local function parse_csv(text)
  local rows, row, i, n = {}, {}, 1, #text
  while i <= n do
    local c = text:sub(i, i)
    local value
    if c == '"' then
      local parts = {}
      i = i + 1
      while true do
        local j = assert(text:find('"', i, true), "unterminated quote")
        parts[#parts + 1] = text:sub(i, j - 1)
        if text:sub(j + 1, j + 1) == '"' then parts[#parts + 1] = '"'; i = j + 2
        else i = j + 1 break end
      end
      value = table.concat(parts)
    else
      local j = text:find("[,\r]", i) or n + 1
      value = text:sub(i, j - 1)
      i = j
    end
    row[#row + 1] = value
    local sep = text:sub(i, i)
    if sep == "," then i = i + 1
    else
      assert(text:sub(i, i + 1) == "\r\n", "a record ends with CRLF")
      rows[#rows + 1] = row
      row, i = {}, i + 2
    end
  end
  return rows
end

local function sqlite_rows(path, sql)
  local env = require("luasql.sqlite3").sqlite3()
  local conn = assert(env:connect(path))
  local cur = assert(conn:execute(sql))
  local out = {}
  local row = cur:fetch({}, "a")
  while row do out[#out + 1] = row; row = cur:fetch({}, "a") end
  cur:close() conn:close() env:close()
  return out
end

describe("converse.sync", function()
  local mock, dir, cz, ax, iq
  setup(function()
    mock = helper.start_mock { calls = 300, conversations = 40, contacts = 30, agentx_rate = 0,
                              gzip = "never" }       -- the pure-Lua gzip is slow on Lua 5.1
    cz = converse.converz { base_url = mock.url .. "/converz/api/v1", api_key = "k" }
    ax = converse.agentx { base_url = mock.url .. "/agentx", api_key = "k", bot_name = "b", rate_limit = false }
    iq = converse.converseiq { base_url = mock.url .. "/converseiq/public/v1", api_key = "k" }
  end)
  teardown(function() mock:stop() cli.cleanup() end)
  before_each(function() mock:fresh() dir = cli.tmpdir() end)

  describe("time", function()
    it("parses UTC dates and unix seconds, and refuses impossible dates", function()
      assert.are.equal(1735689600, stime.parse("2025-01-01"))
      assert.are.equal(1735732805, stime.parse("2025-01-01 12:00:05"))
      assert.are.equal(1709164800, stime.parse("2024-02-29"))
      assert.are.equal(1735689600, stime.parse("1735689600"))
      for _, bad in ipairs { "2025-02-30", "2025-13-45", "2023-02-29", "2025-01-01 24:00", "yesterday" } do
        local t, why = stime.parse(bad)
        assert.is_nil(t, bad)
        assert.is_string(why)
      end
      assert.matches("February 2025 has 28 days", select(2, stime.parse("2025-02-30")))
      assert.are.equal("2025-01-01 00:00:00", stime.format(1735689600))
    end)

    it("parses durations", function()
      assert.are.same({ 30, 900, 21600, 86400, 0 },
        { stime.duration("30s"), stime.duration("15m"), stime.duration("6h"), stime.duration("1d"),
          stime.duration("0") })
      assert.is_nil(stime.duration("1x"))
      assert.is_nil(stime.duration("-1d"))
    end)
  end)

  describe("windows and the bookmark", function()
    it("reads a time-filtered stream in [start, stop) windows: every record once", function()
      local events = {}
      local s = sync.run {
        source = sync.stream(cz, "calls", { n_per_page = 50 }), sink = sync.sqlite(dir .. "/a.db"),
        since = SINCE, ["until"] = UNTIL, window = "30d",
        on_event = function(ev) events[#events + 1] = ev end,
      }
      assert.are.equal("complete", s.status)
      assert.are.equal(300, s.records)
      assert.are.equal(stime.parse(UNTIL), s.bookmark)
      local rows = sqlite_rows(dir .. "/a.db", "SELECT count(*) AS n, count(DISTINCT call_id) AS d FROM calls")
      assert.are.equal(300, tonumber(rows[1].n))
      assert.are.equal(300, tonumber(rows[1].d))
      -- windows are aligned to the window size and half-open
      local wins = {}
      for _, ev in ipairs(events) do if ev.type == "window" then wins[#wins + 1] = ev end end
      assert.are.equal(stime.parse(SINCE), wins[1].start)
      assert.are.equal(0, wins[1].stop % (30 * 86400))
      for i = 2, #wins do assert.are.equal(wins[i - 1].stop, wins[i].start) end
      assert.are.equal(stime.parse(UNTIL), wins[#wins].stop)
      -- the Converz windows become after/before, inclusive, one second apart
      local q = helper.query_of(helper.entries(mock, "/converz/api/v1/calls")[1])
      assert.are.equal("2025-01-01 00:00:00", q.after)
      assert.are.equal(stime.format(wins[1].stop - 1), q.before)
    end)

    it("never moves the bookmark past now minus the skew margin", function()
      local now = stime.parse("2025-02-01")
      local job = sync.job { source = sync.stream(cz, "calls"), sink = sync.sqlite(dir .. "/a.db"),
                             since = SINCE, skew = "10m", clock = function() return now end }
      local s = job:run()
      assert.are.equal(now - 600, s.bookmark)
    end)

    it("a later run starts at the bookmark minus the lookback, and stays at or after since", function()
      local src = sync.stream(cz, "calls", { n_per_page = 100 })
      sync.run { source = src, sink = sync.sqlite(dir .. "/a.db"), since = SINCE, ["until"] = UNTIL,
                 window = "30d", lookback = "2d" }
      local starts = {}
      sync.run { source = src, sink = sync.sqlite(dir .. "/a.db"), since = SINCE, ["until"] = UNTIL,
                 window = "30d", lookback = "2d",
                 on_event = function(ev) if ev.type == "window" then starts[#starts + 1] = ev.start end end }
      assert.are.equal(stime.parse(UNTIL) - 2 * 86400, starts[1])
    end)
  end)

  describe("lookback", function()
    it("picks up a record updated after the first run; unchanged overlap records are dropped", function()
      local src = sync.stream(cz, "calls", { n_per_page = 100 })
      local function run(sink)
        return sync.run { source = src, sink = sink, since = SINCE, ["until"] = UNTIL, window = "30d",
                          lookback = "3d" }
      end
      local first = run(sync.ndjson(dir .. "/a.ndjson"))
      run(sync.sqlite(dir .. "/a.db"))
      assert.are.equal(300, first.records)
      -- the newest call changes (its summary arrives late)
      local newest
      for c in cz:calls { n_per_page = 1000 } do newest = c end
      cz:update_calls { { call_id = newest.call_id, summary = "late summary" } }
      local second = run(sync.ndjson(dir .. "/a.ndjson"))
      assert.are.equal(1, second.records)                 -- only the changed one is appended
      assert.is_true(second.duplicates > 0)               -- the rest of the overlap is dropped
      local got = lines(dir .. "/a.ndjson")
      assert.are.equal(301, #got)
      assert.are.equal("late summary", json.decode(got[301]).summary)
      run(sync.sqlite(dir .. "/a.db"))
      local rows = sqlite_rows(dir .. "/a.db", ("SELECT summary FROM calls WHERE CAST(call_id AS TEXT) = '%s'")
        :format(tostring(newest.call_id)))
      assert.are.equal("late summary", rows[1].summary)
      -- a third run finds nothing new
      assert.are.equal(0, run(sync.ndjson(dir .. "/a.ndjson")).records)
      mock:reset()
    end)
  end)

  describe("resume", function()
    it("continues after a failure from the page after the last checkpoint", function()
      -- the 4th request onwards fails; retries are off, so the run stops there
      local cz1 = converse.converz { base_url = mock.url .. "/converz/api/v1", api_key = "k", retries = 0 }
      mock:control { type = "status", status = 503, path = "/converz/api/v1/calls", skip = 3, forever = true }
      local function job(sink)
        return sync.job { source = sync.stream(cz1, "calls", { n_per_page = 20 }), sink = sink,
                          since = SINCE, ["until"] = UNTIL, window = "30d" }
      end
      for _, sink in ipairs { sync.ndjson(dir .. "/a.ndjson"), sync.sqlite(dir .. "/a.db") } do
        mock:control { action = "clear_faults" }
        mock:control { type = "status", status = 503, path = "/converz/api/v1/calls", skip = 3, forever = true }
        local err = helper.raises(function() job(sink):run() end)
        assert.are.equal("partial", err.sync.status)       -- retryable: stopped early, resumable
        assert.are.equal(503, err.status)
        assert.is_true(err.sync.pages >= 1 and err.sync.pages <= 3)
        assert.matches("^window %[2025%-0%d%-%d%d, 2025%-0%d%-%d%d%) at ", err.sync.resume)
        mock:control { action = "clear_faults" }
        local s = job(sink):run()
        assert.is_true(s.resumed)
        assert.are.equal(300, err.sync.records + s.records)
      end
      local got = lines(dir .. "/a.ndjson")
      local seen = {}
      for _, l in ipairs(got) do
        local id = tostring(json.decode(l).call_id)
        assert.is_nil(seen[id], "repeated " .. id)
        seen[id] = true
      end
      assert.are.equal(300, #got)
      local rows = sqlite_rows(dir .. "/a.db", "SELECT count(*) AS n FROM calls")
      assert.are.equal(300, tonumber(rows[1].n))
    end)

    it("resumes a page-number stream (ConverseIQ contacts) by page", function()
      local iq1 = converse.converseiq { base_url = mock.url .. "/converseiq/public/v1", api_key = "k", retries = 0,
                                         concurrency = 1 }
      mock:control { type = "status", status = 500, path = "/converseiq/public/v1/contact", skip = 2 }
      local function job() return sync.job { source = sync.stream(iq1, "contacts", { limit = 5 }),
                                             sink = sync.csv(dir .. "/c.csv") } end
      local err = helper.raises(function() job():run() end)
      assert.are.equal(2, err.sync.pages)
      assert.are.equal("page 3", err.sync.resume)
      local s = job():run()
      assert.are.equal(20, s.records)
      local rows = parse_csv(cli.read(dir .. "/c.csv"))
      assert.are.equal(31, #rows)                         -- header + 30 contacts
      local ids = {}
      for i = 2, #rows do
        assert.is_nil(ids[rows[i][1]])
        ids[rows[i][1]] = true
      end
      local q = helper.query_of(helper.entries(mock, "/converseiq/public/v1/contact")[4])
      assert.are.equal("3", q.page)
    end)

    it("cuts an output file back to its checkpoint before appending", function()
      local function run()
        return sync.run { source = sync.stream(iq, "team"), sink = sync.ndjson(dir .. "/t.ndjson") }
      end
      run()
      local _, before = lines(dir .. "/t.ndjson")
      local f = io.open(dir .. "/t.ndjson", "ab")
      f:write('{"id":"partial wr')                        -- what a killed run may leave
      f:close()
      run()
      local _, after = lines(dir .. "/t.ndjson")
      assert.are.equal(before .. before, after)           -- a full refresh appends; the tail is gone
    end)

    it("refuses a file without state, a file shorter than its checkpoint and a changed query", function()
      local f = io.open(dir .. "/x.ndjson", "wb")
      f:write("{}\n")
      f:close()
      local err = helper.raises(function()
        sync.run { source = sync.stream(iq, "team"), sink = sync.ndjson(dir .. "/x.ndjson") }
      end)
      assert.are.equal("NO_STATE", err.code)
      sync.run { source = sync.stream(iq, "team"), sink = sync.ndjson(dir .. "/t.ndjson") }
      io.open(dir .. "/t.ndjson", "wb"):close()
      err = helper.raises(function()
        sync.run { source = sync.stream(iq, "team"), sink = sync.ndjson(dir .. "/t.ndjson") }
      end)
      assert.are.equal("SHORT", err.code)
      sync.run { source = sync.stream(iq, "team"), sink = sync.sqlite(dir .. "/a.db") }
      err = helper.raises(function()
        sync.run { source = sync.stream(iq, "team", { limit = 2 }), sink = sync.sqlite(dir .. "/a.db") }
      end)
      assert.are.equal("usage", err.kind)
      assert.matches("another query", err.message)
    end)
  end)

  describe("the sqlite sink", function()
    it("keeps every digit, types and nested values, and the checkpoint in _converse_state", function()
      sync.run { source = sync.stream(cz, "calls", { n_per_page = 100 }), sink = sync.sqlite(dir .. "/a.db#c"),
                 since = SINCE, ["until"] = UNTIL, window = "30d" }
      -- `#c` is not a table spec in Lua: the table defaults to the stream
      sync.run { source = sync.stream(cz, "calls", { n_per_page = 100 }),
                 sink = sync.sqlite(dir .. "/b.db", { table = "calls_t" }), since = SINCE, ["until"] = UNTIL,
                 window = "30d" }
      local rows = sqlite_rows(dir .. "/b.db", "SELECT CAST(call_id AS TEXT) AS id, typeof(call_id) AS t, "
        .. "tags, resolved, typeof(duration) AS dt FROM calls_t ORDER BY call_id LIMIT 2")
      assert.are.equal("9007199254740993", rows[1].id)
      assert.are.equal("9007199254740994", rows[2].id)
      if math.type then assert.are.equal("integer", rows[1].t) end
      assert.are.equal("integer", rows[1].dt)
      assert.is_table(json.decode(rows[2].tags))
      assert.is_truthy(rows[1].resolved == "0" or rows[1].resolved == "1" or rows[1].resolved == 0
                       or rows[1].resolved == 1)
      local st = sqlite_rows(dir .. "/b.db", "SELECT job, state FROM _converse_state")
      assert.are.equal(1, #st)
      local doc = json.decode(st[1].state)
      assert.are.equal(sync.STATE_VERSION, doc.version)
      assert.are.equal(stime.parse(UNTIL), doc.bookmark)
    end)

    it("adds a column for a field that appears later, and replaces rows whole", function()
      local function run()
        return sync.run { source = sync.stream(cz, "calls"), sink = sync.sqlite(dir .. "/a.db"),
                          since = SINCE, ["until"] = UNTIL, window = "30d", lookback = "2d" }
      end
      run()
      local last
      for c in cz:calls { n_per_page = 1000 } do last = c end
      -- Converz adds a column (null for every other call) and the call changes
      cz:update_calls { { call_id = last.call_id, crm_stage = "won", campaign = "Retention Q3" } }
      run()
      local id = tostring(last.call_id)
      local rows = sqlite_rows(dir .. "/a.db", ("SELECT crm_stage, campaign, (SELECT count(*) FROM calls) AS n, "
        .. "(SELECT count(crm_stage) FROM calls) AS staged FROM calls WHERE CAST(call_id AS TEXT) = '%s'"):format(id))
      assert.are.equal("won", rows[1].crm_stage)
      assert.are.equal("Retention Q3", rows[1].campaign)
      assert.are.equal(300, tonumber(rows[1].n))
      assert.are.equal(1, tonumber(rows[1].staged))
      mock:reset()
    end)
  end)

  describe("the sqlite sink with raw JSON texts", function()
    it("takes every field out of the text, finds new fields, refuses a record without id", function()
      local sqlite = require "converse.sync.sinks.sqlite"
      local sink = sqlite.new(dir .. "/r.db", { table = "things" })
      sink:open { key = "id", columns = { "id", "name" } }
      local function write(texts)
        sink:write({ records = texts, n = #texts })
      end
      write { '{"id":"a","name":"O\'Brien","n":9007199254740993,"ok":true,"tags":["x"],"m":{"k":1}}',
              '{"id":"b","name":null}' }
      write { '{"id":"b","name":"B","late":1.5}' }                 -- a new field, and an upsert
      local rows = sqlite_rows(dir .. "/r.db", "SELECT id, name, CAST(n AS TEXT) AS n, typeof(n) AS nt, ok, "
        .. "tags, m, late FROM things ORDER BY id")
      assert.are.equal(2, #rows)
      assert.are.equal("O'Brien", rows[1].name)
      assert.are.equal("9007199254740993", rows[1].n)
      assert.are.equal("integer", rows[1].nt)
      assert.are.equal(1, tonumber(rows[1].ok))
      assert.are.equal('["x"]', rows[1].tags)
      assert.are.equal('{"k":1}', rows[1].m)
      assert.are.equal("B", rows[2].name)
      assert.are.equal(1.5, tonumber(rows[2].late))
      local cols = sqlite_rows(dir .. "/r.db", "PRAGMA table_info(things)")
      local names = {}
      for i, c in ipairs(cols) do names[i] = c.name end
      assert.are.same({ "id", "name", "m", "n", "ok", "tags", "late" }, names)
      local err = helper.raises(function() write { '{"name":"no id"}' } end)
      assert.are.equal("SQLITE", err.code)
      assert.matches("NOT NULL", err.message)
      sink:close()
    end)
  end)

  describe("the csv sink", function()
    it("quotes by RFC 4180 and keeps null apart from the empty string", function()
      assert.are.equal('plain', csv.field("plain"))
      assert.are.equal('"a,b"', csv.field("a,b"))
      assert.are.equal('"say ""hi"""', csv.field('say "hi"'))
      assert.are.equal('"line1\nline2"', csv.field("line1\nline2"))
      assert.are.equal('"cr\r"', csv.field("cr\r"))
      assert.are.equal('""', csv.field(""))
      assert.are.equal('', csv.field(converse.null))
      assert.are.equal('', csv.field(nil))
      assert.are.equal('true', csv.field(true))
      assert.are.equal('42', csv.field(42))
      assert.are.equal('0.5', csv.field(0.5))
      assert.are.equal('"{""a"":[1,2],""b"":{}}"', csv.field({ a = converse.array { 1, 2 }, b = {} }))
      assert.are.equal('[]', csv.field(converse.array {}))
      assert.are.equal("a,\"b,c\",\r\n", csv.line({ "a", "b,c", converse.null }, 3))
    end)

    it("writes a stable header and identical bytes for identical data", function()
      local function run(path)
        return sync.run { source = sync.stream(cz, "calls", { n_per_page = 100 }), sink = sync.csv(path),
                          since = SINCE, ["until"] = UNTIL, window = "30d" }
      end
      run(dir .. "/a.csv")
      run(dir .. "/b.csv")
      local a, atext = lines(dir .. "/a.csv")
      local _, btext = lines(dir .. "/b.csv")
      assert.are.equal(atext, btext)
      assert.are.equal("call_id,vendor_call_id,rep_id,rep_name,vendor,campaign,subcampaign,department,date,"
        .. "start_time,end_time,duration,direction,language,sentiment,score,resolved,tags,summary,"
        .. "customer_phone\r", a[1])
      assert.matches("^9007199254740993,", a[2])
      -- ndjson too
      for _, p in ipairs { "/a.ndjson", "/b.ndjson" } do
        sync.run { source = sync.stream(cz, "calls", { n_per_page = 100 }), sink = sync.ndjson(dir .. p),
                   since = SINCE, ["until"] = UNTIL, window = "30d" }
      end
      assert.are.equal(select(2, lines(dir .. "/a.ndjson")), select(2, lines(dir .. "/b.ndjson")))
    end)

    it("refuses a field without a column unless told to drop it", function()
      local function src()
        return sync.source { name = "t", key = "id", pager = function(resume)
          return iq.client:paginate("/team", { records = "data", resume = resume })
        end }
      end
      local s = sync.run { source = src(), sink = sync.csv(dir .. "/a.csv", { columns = { "id", "name" } }) }
      assert.are.equal(5, s.records)
      local got = lines(dir .. "/a.csv")
      assert.are.equal("id,name\r", got[1])
      local err = helper.raises(function()
        sync.run { source = sync.stream(cz, "calls", { metric = "m" }), sink = sync.csv(dir .. "/b.csv"),
                   since = SINCE, ["until"] = "2025-01-02" }
        cz:update_calls { { call_id = 9007199254740993, brand_new = "x" } }
        sync.run { source = sync.stream(cz, "calls", { metric = "m" }), sink = sync.csv(dir .. "/b.csv"),
                   since = SINCE, ["until"] = "2025-01-03", lookback = "2d" }
      end)
      assert.are.equal("CSV_COLUMNS", err.code)
      assert.matches("brand_new", err.message)
      mock:reset()
    end)
  end)

  describe("sources", function()
    it("reads AgentX conversations and messages with their ids", function()
      for _, stream in ipairs { "conversations", "messages" } do
        sync.run { source = sync.stream(ax, stream, { per_page = 25 }), sink = sync.sqlite(dir .. "/ax.db"),
                   since = SINCE, ["until"] = UNTIL, window = "30d" }
      end
      local convs = ax:conversations { start_time = SINCE, end_time = UNTIL }:collect()
      local msgs = ax:messages { start_time = SINCE, end_time = UNTIL }:collect()
      local c = sqlite_rows(dir .. "/ax.db", "SELECT count(DISTINCT _id) AS n FROM conversations")
      local m = sqlite_rows(dir .. "/ax.db", "SELECT count(DISTINCT _id) AS n FROM messages")
      assert.are.equal(#convs, tonumber(c[1].n))
      assert.are.equal(#msgs, tonumber(m[1].n))
      local q = helper.query_of(helper.entries(mock, "/agentx")[1])
      assert.are.equal(tostring(stime.parse(SINCE)), q.start_time)
    end)

    it("refuses window and position parameters, and unknown streams", function()
      assert.are.equal("usage", helper.raises(function() sync.stream(cz, "calls", { after = "x" }) end).kind)
      assert.are.equal("usage", helper.raises(function() sync.stream(ax, "messages", { cursor = "x" }) end).kind)
      local err = helper.raises(function() sync.stream(cz, "cals") end)
      assert.matches("calls, reps", err.message)
      assert.are.equal("usage", helper.raises(function() sync.stream({}, "calls") end).kind)
    end)

    it("a custom source resumes through paginate{ resume = }", function()
      local got = {}
      local src = sync.source { name = "contacts", key = "id", pager = function(resume)
        return iq.client:paginate("/contact", { records = "data", page_size = 10, total_pages = "pages",
                                                resume = resume })
      end }
      local s = sync.run { source = src, state = dir .. "/st.json",
                           sink = sync.sink(function(records, batch)
                             assert.are.equal("id", batch.key)
                             for _, r in ipairs(records) do got[#got + 1] = r.id end
                           end) }
      assert.are.equal(30, s.records)
      assert.are.equal(30, #got)
      local st = json.decode(cli.read(dir .. "/st.json"))
      assert.are.equal(1, st.version)
      assert.is_nil(st.run)                                 -- complete: nothing pending
    end)
  end)

  describe("the function sink", function()
    it("needs a state, and gets the page again when it raised", function()
      assert.are.equal("usage", helper.raises(function()
        sync.job { source = sync.stream(iq, "contacts"), sink = sync.sink(function() end) }
      end).kind)
      local calls, fail = 0, true
      local function run()
        return sync.run { source = sync.stream(iq, "contacts", { limit = 10 }), state = dir .. "/s.json",
                          sink = sync.sink(function(records)
                            calls = calls + 1
                            if calls == 2 and fail then error("warehouse unavailable") end
                            assert.are.equal(10, #records)
                          end) }
      end
      local ok, err = pcall(run)
      assert.is_false(ok)
      assert.matches("warehouse unavailable", tostring(err))
      fail = false
      local s = run()
      assert.are.equal(20, s.records)                     -- pages 2 and 3
      assert.is_true(s.resumed)
    end)
  end)

  describe("enrich", function()
    local enrich = sync.enrich

    it("joins AgentX conversations with their messages in two passes", function()
      local list = enrich.transcripts(ax, { start_time = SINCE, end_time = "2025-01-20", per_page = 1000 })
      assert.is_true(#list > 3)
      for i, t in ipairs(list) do
        assert.are.equal(t.id, t.conversation._id)
        assert.is_true(#t.messages >= 2)
        for _, m in ipairs(t.messages) do assert.are.equal(t.id, m.conversationId) end
        assert.are.equal(ax:transcript(t.messages), t.transcript)
        if i > 1 then assert.is_true(t.conversation.startTime >= list[i - 1].conversation.startTime) end
      end
      local msgs = helper.entries(mock, "/agentx/conversations/export/v1/messages")
      assert.are.equal(1, #msgs)                                  -- not one request per conversation
      local q = helper.query_of(msgs[1])
      assert.are.equal(tostring(stime.parse("2025-01-21")), q.end_time)   -- widened by a day
      assert.are.equal("usage", helper.raises(function()
        enrich.transcripts(ax, { start_time = "2025-02-30", end_time = "2025-03-01" })
      end).kind)
    end)

    it("finds Converz calls by vendor_call_id in batches and builds the columnar write-back", function()
      local some = {}
      for c in cz:calls { n_per_page = 5 } do some[#some + 1] = c if #some == 5 then break end end
      local ids = { some[1].vendor_call_id, some[2].vendor_call_id, some[1].vendor_call_id, "nope" }
      mock:fresh()
      local found = enrich.calls_by_vendor_id(cz, ids, { batch = 1, columns = { "summary" } })
      assert.are.equal(tostring(some[2].call_id), tostring(found[some[2].vendor_call_id].call_id))
      assert.are.equal(some[1].summary, found[some[1].vendor_call_id].summary)
      assert.is_nil(found.nope)
      local firsts = 0                                            -- one batch of ids a request
      for _, e in ipairs(helper.entries(mock, "/converz/api/v1/calls")) do
        if helper.query_of(e).page == "1" then firsts = firsts + 1 end
      end
      assert.are.equal(3, firsts)
      local cols = enrich.columns({ { found[some[1].vendor_call_id], "a" }, { nil, "b" },
                                    { found[some[2].vendor_call_id], "c" } }, "note")
      assert.are.same({ "a", "c" }, cols.note)
      assert.are.equal(2, #cols.call_id)
      assert.are.equal("[]", json.encode(enrich.columns({}, "note").note))
    end)
  end)

  describe("outcomes and events", function()
    it("stops early but resumable when the rate budget runs out", function()
      mock:control { type = "rate_limit", path = "/converseiq", retry_after = 3600, forever = true }
      local err = helper.raises(function()
        sync.run { source = sync.stream(iq, "team"), sink = sync.sqlite(dir .. "/a.db") }
      end)
      assert.are.equal("rate_limited", err.kind)
      assert.is_true(err.retryable)
      assert.are.equal("partial", err.sync.status)
      assert.are.equal("partial", sync.status_of(err))
      mock:control { action = "clear_faults" }
      assert.are.equal("complete", sync.run { source = sync.stream(iq, "team"),
                                             sink = sync.sqlite(dir .. "/a.db") }.status)
    end)

    it("stops at the next page boundary on a pending signal, checkpoint written", function()
      local n = 0
      local job = sync.job {
        source = sync.stream(iq, "contacts", { limit = 5 }), sink = sync.sqlite(dir .. "/a.db"),
        on_event = function(ev)
          if ev.type == "checkpoint" then
            n = n + 1
            if n == 2 then core.raise_signal("SIGTERM") end
          end
        end,
        trap_signals = true,
      }
      local err = helper.raises(function() job:run() end)
      core.clear_signal()
      assert.are.equal("INTERRUPTED", err.code)
      assert.are.equal("interrupted", err.sync.status)
      assert.are.equal(2, err.sync.pages)
      assert.are.equal("page 3", err.sync.resume)
      local s = job:run()
      assert.are.equal(20, s.records)
      local rows = sqlite_rows(dir .. "/a.db", "SELECT count(*) AS n FROM contacts")
      assert.are.equal(30, tonumber(rows[1].n))
    end)

    it("reports retries, pages and checkpoints to on_event and log; nothing printed by default", function()
      mock:control { type = "status", status = 503, path = "/converseiq/public/v1/team" }
      local cl = converse.converseiq { base_url = mock.url .. "/converseiq/public/v1", api_key = "k",
                                       backoff = { base = 0.01, cap = 0.01 } }
      local seen, logged = {}, {}
      local s = sync.run { source = sync.stream(cl, "team"), sink = sync.sqlite(dir .. "/a.db"),
                           on_event = function(ev) seen[ev.type] = (seen[ev.type] or 0) + 1 end,
                           log = { level = "info", write = function(l) logged[#logged + 1] = l end } }
      assert.are.equal(1, s.retries)
      assert.are.equal(1, seen.retry)
      assert.is_truthy(seen.request and seen.page and seen.checkpoint and seen.start and seen.done)
      assert.are.equal(3, #logged)
      assert.are.equal("converse sync: converseiq/team: starting", logged[1])
      assert.matches("^converse sync: converseiq/team: retry GET .*/team%?limit=100&page=1 in 0%.0%d s "
        .. "after HTTP 503 %(attempt 1%)$", logged[2])
      assert.are.equal("converse sync: converseiq/team: complete", logged[3])
    end)
  end)
end)
