-- `converse sync` as people run it: a child process against the mock.
-- Usage errors, the --json summary, progress only on terminals, exit
-- statuses, kill -9 at random points, SIGINT/SIGTERM while waiting.
local helper   = require "helper"
local cli      = require "support.cli"
local socket   = require "socket"
local converse = require "converse"

local json = converse.json
local run, spawn = cli.run, cli.spawn
local unpack = table.unpack or unpack   -- luacheck: ignore
local KEYS = { CONVERZ_KEY = "k", AGENTX_KEY = "k", CONVERSEIQ_KEY = "k", CONVERRA_KEY = "k" }

local function args(list, extra)
  local out = {}
  for _, a in ipairs(list) do out[#out + 1] = a end
  for _, a in ipairs(extra or {}) do out[#out + 1] = a end
  return out
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

local function ndjson_ids(path)
  local ids, n, text = {}, 0, cli.read(path) or ""
  assert.is_true(text == "" or text:sub(-1) == "\n", "the file ends with a whole line")
  for line in text:gmatch("([^\n]*)\n") do
    local id = tostring(json.decode(line).call_id)
    assert.is_nil(ids[id], "repeated line for " .. id)
    ids[id] = true
    n = n + 1
  end
  return ids, n
end

local function assert_clean(err)
  assert.is_nil(err:find("%.lua:%d"), err)
  assert.is_nil(err:find("bin/converse:%d"), err)
  assert.is_nil(err:find("converse sync: converse", 1, true), err)
end

describe("converse sync (command line)", function()
  local mock, dir
  setup(function() mock = helper.start_mock { calls = 200, contacts = 30, agentx_rate = 0, gzip = "never" } end)
  teardown(function() mock:stop() end)
  before_each(function() mock:fresh() dir = cli.tmpdir() end)
  after_each(function() cli.cleanup() end)

  local function calls(sink, extra)
    return args({ "sync", "converz", "calls", "--to", sink, "--base-url", mock.url .. "/converz/api/v1",
                  "--since", "2025-01-01", "--until", "2025-04-01", "--window", "30d",
                  "--param", "n_per_page=20" }, extra)
  end

  describe("usage errors (exit 2, the option named)", function()
    local CASES = {
      { { "--since", "2025-02-30" }, "%-%-since: \"2025%-02%-30\" is not a date: February 2025 has 28 days" },
      { { "--until", "2025-13-45" }, "%-%-until: \"2025%-13%-45\" is not a date: there is no month 13" },
      { { "--since", "2025-01-01 25:00" }, "%-%-since: .* is not a time of day" },
      { { "--window", "5x" }, "%-%-window: \"5x\" is not a duration" },
      { { "--lookback", "1y" }, "%-%-lookback: \"1y\" is not a duration" },
      { { "--ot", "x" }, "unknown option '%-%-ot' %(did you mean '%-%-to'%?%)" },
      { { "--since", "2025-03-01", "--until", "2025-02-01" }, "%-%-until must be after %-%-since" },
      { { "--param", "nokey" }, "%-%-param takes key=value, got 'nokey'" },
      { { "--bot-name", "b" }, "%-%-bot%-name is for agentx only" },
      { { "--plan", "pro" }, "%-%-plan is for converra only" },
      { { "--progress", "--no-progress" },
        "option '%-%-no%-progress' can not be used together with option '%-%-progress'" },
      { { "--param", "after=2025-01-01" }, "%-%-param after: the windows set it: use %-%-since and %-%-until" },
      { { "--param", "page=3" }, "%-%-param page: the checkpoints set it" },
    }
    for _, case in ipairs(CASES) do
      it(table.concat(case[1], " "), function()
        local rc, out, err = run(KEYS, { "sync", "converz", "calls", "--to", "sqlite:" .. dir .. "/a.db",
                                         "--domain", "acme", unpack(case[1]) })
        assert.are.equal(2, rc, err)
        assert.are.equal("", out)
        assert.matches("^converse sync: " .. case[2], err)
        assert_clean(err)
      end)
    end

    it("names vendors, streams and sinks", function()
      local rc, _, err = run(KEYS, { "sync", "converz", "cals", "--to", "ndjson:x" })
      assert.are.equal(2, rc)
      assert.matches("converz has no stream 'cals' %(did you mean 'calls'%?%); streams: calls, reps", err)
      rc, _, err = run(KEYS, { "sync", "nope", "calls", "--to", "ndjson:x" })
      assert.are.equal(2, rc)
      assert.matches("unknown vendor 'nope'", err)
      rc, _, err = run(KEYS, { "sync", "converz", "calls", "--domain", "acme" })
      assert.are.equal(2, rc)
      assert.matches("%-%-to SINK is required", err)
      for _, sink in ipairs { "parquet:x", "sqlite:", "sqlite:a.db#", "x.ndjson" } do
        rc, _, err = run(KEYS, { "sync", "converz", "calls", "--domain", "acme", "--to", sink })
        assert.are.equal(2, rc, sink)
        assert.matches("^converse sync: %-%-to: ", err)
      end
      rc, _, err = run(KEYS, { "sync", "converseiq", "contacts", "--to", "ndjson:x", "--since", "2025-01-01" })
      assert.are.equal(2, rc)
      assert.matches("converseiq contacts is read from the start every run", err)
      rc, _, err = run(KEYS, { "sync", "converz", "calls", "--to", "ndjson:x" })
      assert.are.equal(2, rc)
      assert.matches("converz needs %-%-domain", err)
    end)

    it("takes keys from the environment only", function()
      local rc, _, err = run({ CONVERZ_KEY = "" }, calls("sqlite:" .. dir .. "/a.db"))
      assert.are.equal(2, rc)
      assert.matches("CONVERZ_KEY", err)
      assert.are.same({}, mock:log())
    end)
  end)

  describe("a run", function()
    it("prints a JSON summary on stdout and no progress when stderr is not a terminal", function()
      local rc, out, err = run(KEYS, calls("sqlite:" .. dir .. "/a.db", { "--json" }))
      assert.are.equal(0, rc, err)
      local s = json.decode(out)
      assert.are.equal("complete", s.status)
      assert.are.equal(200, s.records)
      assert.is_true(s.pages >= 10)
      assert.are.equal(0, s.retries)
      assert.is_false(s.resumed)
      assert.are.equal("2025-04-01 00:00:00", s.bookmark)
      assert.is_number(s.elapsed_s)
      assert.are.equal(1, select(2, out:gsub("\n", "")))
      assert.is_nil(err:find("\r", 1, true))
      assert.matches("^converse sync: converz/calls complete: 200 records, %d+ pages in [%d.]+ s; "
        .. "bookmark 2025%-04%-01 00:00:00 %(state: .*a%.db %(table _converse_state%)%)\n$", err)
      -- --progress forces the line even without a terminal
      rc, out, err = run(KEYS, calls("sqlite:" .. dir .. "/b.db", { "--progress" }))
      assert.are.equal(0, rc)
      assert.are.equal("", out)
      assert.matches("\rconverz/calls | 200 records | ", err)
    end)

    it("gives identical output bytes for identical data", function()
      for _, f in ipairs { "a", "b" } do
        assert.are.equal(0, (run(KEYS, calls("csv:" .. dir .. "/" .. f .. ".csv"))))
        assert.are.equal(0, (run(KEYS, calls("ndjson:" .. dir .. "/" .. f .. ".ndjson"))))
      end
      assert.are.equal(cli.read(dir .. "/a.csv"), cli.read(dir .. "/b.csv"))
      assert.are.equal(cli.read(dir .. "/a.ndjson"), cli.read(dir .. "/b.ndjson"))
      assert.are.equal(200, select(2, ndjson_ids(dir .. "/a.ndjson")))
    end)

    it("exits 3 when the rate budget runs out, and a re-run completes", function()
      mock:control { type = "rate_limit", path = "/converz/api/v1/calls", skip = 3, retry_after = 3600,
                     forever = true }
      local rc, out, err = run(KEYS, calls("ndjson:" .. dir .. "/a.ndjson", { "--json" }))
      assert.are.equal(3, rc, err)
      assert.are.equal("partial", json.decode(out).status)
      assert.matches("stopped early, resumable: rate_limited error 429", err)
      assert.matches("a re%-run resumes at window %[", err)
      mock:control { action = "clear_faults" }
      rc, out = run(KEYS, calls("ndjson:" .. dir .. "/a.ndjson", { "--json" }))
      assert.are.equal(0, rc)
      assert.is_true(json.decode(out).resumed)
      assert.are.equal(200, select(2, ndjson_ids(dir .. "/a.ndjson")))
    end)

    it("keeps the state where --state says, and never prints the key", function()
      mock:control { type = "status", status = 401, path = "/converz/api/v1/calls", skip = 3, forever = true,
                     body = { detail = "Invalid or missing API key" } }
      local env = { CONVERZ_KEY = "secret-key-4711" }
      local rc, out, err = run(env, calls("sqlite:" .. dir .. "/a.db", { "--state", dir .. "/st.json", "--json" }))
      assert.are.equal(1, rc)
      assert.matches("auth error 401", err)
      assert.is_nil((out .. err):find("secret-key-4711", 1, true))
      local st = json.decode(cli.read(dir .. "/st.json"))
      assert.are.equal("converz/calls", st.job)
      assert.is_table(st.run)
      assert.are.equal(0, #sqlite_rows(dir .. "/a.db", "SELECT * FROM _converse_state"))
      mock:control { action = "clear_faults" }
      rc = run(env, calls("sqlite:" .. dir .. "/a.db", { "--state", dir .. "/st.json" }))
      assert.are.equal(0, rc)
      assert.are.equal(200, tonumber(sqlite_rows(dir .. "/a.db", "SELECT count(*) AS n FROM calls")[1].n))
    end)

    it("--queue says at once that PostgreSQL is unreachable, without its password", function()
      local port = helper.free_port()
      local uri = ("postgres://sync:hunter22@127.0.0.1:%d/sync"):format(port)
      local p = spawn(KEYS, calls("postgres:" .. uri .. "#calls", { "--queue", uri }))
      local deadline = socket.gettime() + 10
      while not p:stderr():find("unavailable", 1, true) and socket.gettime() < deadline do
        socket.sleep(0.05)
      end
      p:signal("TERM")
      assert.are.equal(130, p:wait(10))
      local err = p:stderr()
      assert.matches("converse sync: PostgreSQL unavailable, trying again for up to 60 s: cannot connect", err)
      assert.matches("sync:REDACTED@127%.0%.0%.1", err)
      assert.is_nil(err:find("hunter22", 1, true), err)
      assert_clean(err)
    end)

    it("exits 1 on an error that retrying cannot mend, keeping the checkpoint", function()
      mock:control { type = "status", status = 404, path = "/converz/api/v1/calls", skip = 4, forever = true }
      local rc, _, err = run(KEYS, calls("sqlite:" .. dir .. "/a.db"))
      assert.are.equal(1, rc)
      assert.matches("converz/calls failed: http error 404.*; checkpoint kept; a re%-run resumes at", err)
      mock:control { action = "clear_faults" }
      rc = run(KEYS, calls("sqlite:" .. dir .. "/a.db"))
      assert.are.equal(0, rc)
      assert.are.equal(200, tonumber(sqlite_rows(dir .. "/a.db", "SELECT count(*) AS n FROM calls")[1].n))
    end)
  end)
end)

describe("converse sync under kill -9 and signals", function()
  local mock, dir
  setup(function()
    mock = helper.start_mock { calls = 200, latency = "50ms", agentx_rate = 0, gzip = "never" }
  end)
  teardown(function() mock:stop() end)
  before_each(function() mock:fresh() dir = cli.tmpdir() end)
  after_each(function() cli.cleanup() end)

  local function calls(sink, extra)
    return args({ "sync", "converz", "calls", "--to", sink, "--base-url", mock.url .. "/converz/api/v1",
                  "--since", "2025-01-01", "--until", "2025-04-01", "--window", "30d",
                  "--param", "n_per_page=5" }, extra)
  end

  -- Every call of the mock: id text -> record.
  local function truth()
    local cz = converse.converz { base_url = mock.url .. "/converz/api/v1", api_key = "k" }
    local t, n = {}, 0
    for c in cz:calls { n_per_page = 1000 } do t[tostring(c.call_id)] = c; n = n + 1 end
    return t, n
  end

  -- Kill the child once while it is inside a page write (`inside()` tells;
  -- the sink pauses half-way for this spec), then 5 times at random points,
  -- then run it to completion.
  local function kill_repeatedly(sink, inside)
    local p = spawn({ CONVERZ_KEY = "k", CONVERSE_SYNC_WRITE_DELAY = "0.5" }, calls(sink))
    local deadline = socket.gettime() + 30               -- a loaded CI machine starts slowly
    while not inside() and socket.gettime() < deadline and not p:wait(0) do socket.sleep(0.005) end
    assert.is_true(inside(), "caught the child inside a page write; " .. p:stderr())
    p:signal("KILL")
    assert.are.equal(137, p:wait(10))
    math.randomseed(os.time())
    -- 0.3 s per page request: a kill at 0.15-0.40 s always lands mid-run,
    -- however fast the machine (7 pages; each run gets at most one page further)
    mock:control { type = "latency", delay = 0.3, path = "/converz/api/v1/calls", forever = true }
    local kills = 0
    for _ = 1, 5 do
      p = spawn(KEYS, calls(sink))
      socket.sleep(0.15 + math.random() * 0.25)
      p:signal("KILL")
      local rc = p:wait(10)
      assert.are.equal(137, rc, p:stderr())
      kills = kills + 1
    end
    assert.are.equal(5, kills, "5 kills mid-run")
    mock:reset()
    local rc, _, err = run(KEYS, calls(sink))
    assert.are.equal(0, rc, err)
  end

  it("SQLite: every record exactly once, newest content", function()
    local db = dir .. "/a.db"
    kill_repeatedly("sqlite:" .. db, function()
      return cli.read(db .. "-journal") ~= nil                   -- a write transaction is open
    end)
    local want, n = truth()
    local rows = sqlite_rows(db, "SELECT CAST(call_id AS TEXT) AS id, summary, duration, tags FROM calls")
    assert.are.equal(n, #rows)
    for _, r in ipairs(rows) do
      local c = want[r.id]
      assert.is_table(c, "unknown row " .. r.id)
      assert.are.equal(c.summary, r.summary)
      assert.are.equal(c.duration, tonumber(r.duration))
      assert.are.same(c.tags, json.decode(r.tags))
      want[r.id] = nil
    end
    assert.is_nil(next(want))
    -- a record updated later is picked up by the lookback, still once
    local cz = converse.converz { base_url = mock.url .. "/converz/api/v1", api_key = "k" }
    local last
    for c in cz:calls { n_per_page = 1000 } do last = c end
    cz:update_calls { { call_id = last.call_id, summary = "newer" } }
    assert.are.equal(0, (run(KEYS, calls("sqlite:" .. db, { "--lookback", "3d" }))))
    rows = sqlite_rows(db, ("SELECT summary, (SELECT count(*) FROM calls) AS n FROM calls "
      .. "WHERE CAST(call_id AS TEXT) = '%s'"):format(tostring(last.call_id)))
    assert.are.equal("newer", rows[1].summary)
    assert.are.equal(n, tonumber(rows[1].n))
    mock:reset()
  end)

  it("ndjson: no partial or repeated line", function()
    local path = dir .. "/a.ndjson"
    local function state_offset()
      local st = cli.read(path .. ".state.json")
      return st and json.decode(st).sink and json.decode(st).sink.offset or 0
    end
    kill_repeatedly("ndjson:" .. path, function()
      local text = cli.read(path) or ""
      return #text > state_offset() and text:sub(-1) ~= "\n"     -- half a page on disk
    end)
    local want, n = truth()
    local ids, lines = ndjson_ids(path)
    assert.are.equal(n, lines)
    for id in pairs(ids) do assert.is_table(want[id], id) end
  end)

  -- The time from a signal to the child's exit.
  local function interrupt(p, sig, blocked)
    local deadline = socket.gettime() + 15
    while not blocked() and socket.gettime() < deadline do socket.sleep(0.02) end
    assert.is_true(blocked(), "the child is waiting")
    socket.sleep(0.2)
    local t0 = socket.gettime()
    p:signal(sig)
    local rc = p:wait(25)
    return rc, socket.gettime() - t0
  end

  local function requests() return #helper.entries(mock, "/converz/api/v1/calls") end

  it("SIGINT during a 20 s response: exit 130 within 1 s, checkpoint written, re-run completes", function()
    mock:control { type = "latency", delay = "20s", path = "/converz/api/v1/calls", skip = 4 }
    local sink = "ndjson:" .. dir .. "/a.ndjson"
    local p = spawn(KEYS, calls(sink))
    local rc, took = interrupt(p, "INT", function() return requests() >= 5 end)
    assert.are.equal(130, rc, p:stderr())
    assert.is_true(took < 1, ("exited %.2f s after SIGINT"):format(took))
    assert.matches("interrupted %(SIGINT%) after %d+ pages: checkpoint written; a re%-run resumes at window",
      p:stderr())
    local st = json.decode(cli.read(dir .. "/a.ndjson.state.json"))
    assert.is_table(st.run)
    rc = run(KEYS, calls(sink))
    assert.are.equal(0, rc)
    assert.are.equal(200, select(2, ndjson_ids(dir .. "/a.ndjson")))
  end)

  it("a second signal during a page write changes nothing: whole lines, checkpoint at the end", function()
    local path = dir .. "/a.ndjson"
    local p = spawn({ CONVERZ_KEY = "k", CONVERSE_SYNC_WRITE_DELAY = "0.5" }, calls("ndjson:" .. path))
    local function inside()
      local text = cli.read(path) or ""
      return #text > 0 and text:sub(-1) ~= "\n"
    end
    local deadline = socket.gettime() + 30               -- a loaded CI machine starts slowly
    while not inside() and socket.gettime() < deadline and not p:wait(0) do socket.sleep(0.005) end
    assert.is_true(inside(), "caught the child inside a page write; " .. p:stderr())
    p:signal("TERM")
    p:signal("TERM")
    assert.are.equal(130, p:wait(5), p:stderr())
    local text = cli.read(path)
    assert.are.equal("\n", text:sub(-1))
    assert.are.equal(#text, json.decode(cli.read(path .. ".state.json")).sink.offset)
    local _, n = ndjson_ids(path)
    assert.are.equal(5, n)                                       -- the one page, whole
    assert.are.equal(0, (run(KEYS, calls("ndjson:" .. path))))
    assert.are.equal(200, select(2, ndjson_ids(path)))
  end)

  it("converse export stops at a record boundary on SIGINT, leaving FILE.part", function()
    mock:control { type = "latency", delay = "20s", path = "/converz/api/v1/calls", skip = 2 }
    local out = dir .. "/calls.ndjson"
    local p = spawn(KEYS, { "export", "converz", "calls", "--base-url", mock.url .. "/converz/api/v1",
                            "--param", "n_per_page=5", "--out", out })
    local rc, took = interrupt(p, "INT", function() return requests() >= 3 end)
    assert.are.equal(130, rc, p:stderr())
    assert.is_true(took < 1, ("exited %.2f s after SIGINT"):format(took))
    assert.matches("interrupted by SIGINT after %d+ records; the %d+ complete records so far are in", p:stderr())
    assert.is_nil(cli.read(out))
    local part = cli.read(out .. ".part")
    assert.are.equal("\n", part:sub(-1))
    for line in part:gmatch("[^\n]+") do assert.is_table(json.decode(line)) end
  end)

  it("SIGTERM during a 20 s Retry-After: exit 130 within 1 s, checkpoint written, re-run completes", function()
    mock:control { type = "rate_limit", retry_after = 20, path = "/converz/api/v1/calls", skip = 4 }
    local db = dir .. "/a.db"
    local p = spawn(KEYS, calls("sqlite:" .. db, { "--json" }))
    local rc, took = interrupt(p, "TERM", function() return requests() >= 5 end)
    assert.are.equal(130, rc, p:stderr())
    assert.is_true(took < 1, ("exited %.2f s after SIGTERM"):format(took))
    local s = json.decode(p:stdout())
    assert.are.equal("interrupted", s.status)
    assert.is_string(s.resume)
    rc = run(KEYS, calls("sqlite:" .. db))
    assert.are.equal(0, rc)
    assert.are.equal(200, tonumber(sqlite_rows(db, "SELECT count(*) AS n FROM calls")[1].n))
  end)
end)
