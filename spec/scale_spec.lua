-- Past one machine (SPEC §7, issue 11): worker processes sharing one sync
-- job through the PostgreSQL queue and one rate budget per API key in
-- Redis, against real servers started here (helper.postgres, a
-- redis-server, the mock). Several processes, kill -9, server restarts.
--
-- These specs start many processes and wait on leases and rate limits
-- (about 25 s), and `make test` runs the suite on five Luas in under 10
-- minutes: they run under Lua 5.4 only, or under the Luas listed in
-- CONVERSE_SCALE_LUAS (`CONVERSE_SCALE_LUAS="lua5.4 luajit" make test`;
-- they pass under LuaJIT too). The code under test is the same Lua
-- everywhere, and the single-process queue and sink specs
-- (spec/queue_spec.lua, spec/postgres_sink_spec.lua) run on every version.
local helper   = require "helper"
local cli      = require "support.cli"
local socket   = require "socket"
local converse = require "converse"

local LUA = os.getenv("CONVERSE_LUA") or "lua5.4"
local RUN = false
for l in (os.getenv("CONVERSE_SCALE_LUAS") or "lua5.4"):gmatch("%S+") do RUN = RUN or l == LUA end
local have_driver = pcall(require, "luasql.postgres")

local describe = RUN and describe
  or function(name) pending(name .. " (runs under " .. (os.getenv("CONVERSE_SCALE_LUAS") or "lua5.4") .. ")") end

-- A worker process: converse.sync.run with a queue, for each stream in
-- turn; prints one line per job: "stream status records partitions".
local WORKER = [[
  local converse = require "converse"
  local sync = require "converse.sync"
  local url, conninfo, redis, rate, lease, streams, per_page, days, latency = ...
  local rl = false
  if tonumber(rate) > 0 then rl = { per_second = tonumber(rate), shared = redis ~= "" and redis or nil } end
  local ax = converse.agentx { base_url = url .. "/agentx", api_key = "tenant-key-1", bot_name = "b",
                               rate_limit = rl, retries = 8,
                               headers = latency ~= "" and { ["X-Mock-Latency"] = latency } or nil }
  for stream in streams:gmatch("[^,]+") do
    local ok, s = pcall(sync.run, {
      queue = conninfo, source = sync.stream(ax, stream, { per_page = tonumber(per_page) }),
      sink = sync.postgres(conninfo), since = "2025-01-01", ["until"] = 1735689600 + tonumber(days) * 86400,
      lease = tonumber(lease), fail_after = 30, trap_signals = true,
    })
    if not ok then s = s.sync or { status = tostring(s) } end
    print(stream, s.status, s.records, s.partitions, s.error and tostring(s.error) or "")
    io.stdout:flush()
    if s.status ~= "complete" then os.exit(3) end
  end
]]

local function lines(out)
  local t = {}
  for stream, status in out:gmatch("(%a+)\t(%a+)\t") do t[#t + 1] = stream .. " " .. status end
  return t
end

-- The most requests one API key sent to one endpoint in one second, and the 429s.
local function busiest(mock)
  local most, limited = 0, 0
  for _, c in ipairs(mock:get("/_counts").json) do
    if c.requests > most then most = c.requests end
    limited = limited + c.limited
  end
  return most, limited
end

local function alive(pid)
  local f = io.open("/proc/" .. pid .. "/stat")
  local st = f and f:read("*l")
  if f then f:close() end
  return st ~= nil and st:match("^%d+ %b() (%a)") ~= "Z"
end

local function wait_for(f, seconds, what)
  local deadline = socket.gettime() + seconds
  while socket.gettime() < deadline do
    local v = f()
    if v then return v end
    socket.sleep(0.05)
  end
  error("timed out waiting for " .. what, 2)
end

describe("past one machine: workers on a PostgreSQL queue with a Redis rate budget", function()
  local pgs, conninfo, redis

  setup(function()
    assert(have_driver, "lua-sql-postgres is not installed (scripts/deps.sh installs it)")
    pgs = assert(helper.postgres())
    -- early, and the first spec does not use it: a Redis up for less than a window holds requests
    redis = assert(helper.start_redis())
  end)
  teardown(function() if redis then redis:stop() end end)
  before_each(function() conninfo = pgs:database("scale_spec") end)
  after_each(function() cli.cleanup() end)

  -- Every record of the mock's stream over [2025-01-01, + days), by a client of another key.
  local function expected(mock, stream, days)
    local ax = converse.agentx { base_url = mock.url .. "/agentx", api_key = "oracle", bot_name = "b",
                                 rate_limit = false }
    return #ax[stream](ax, { start_time = 1735689600, end_time = 1735689600 + days * 86400 }):collect()
  end

  local function exact(tbl, n)
    assert.are.equal(n .. "|" .. n, pgs:psql(("SELECT count(*), count(DISTINCT _id) FROM %s"):format(tbl)))
  end

  it("kill -9 a worker in the middle of a partition, twice: the partitions are taken over and resumed",
    function()
      local mock = helper.start_mock { conversations = 60, days = 6, agentx_rate = 0 }
      local kids, by_pid = {}, {}
      for i = 1, 3 do
        kids[i] = helper.spawn(WORKER, mock.url, conninfo, "", 0, 1, "messages", 3, 6, "40ms")
        by_pid[kids[i].pid] = kids[i]
      end
      local killed = {}
      for round = 1, 2 do
        -- a partition with committed pages, still running, held by a live worker we have not killed
        local victim = wait_for(function()
          local rows = pgs:psql("SELECT id, lease_owner FROM converse_partitions WHERE status = 'running' "
            .. "AND pages >= 2 ORDER BY id")
          for id, owner in rows:gmatch("(%d+)|([^\n]+)") do
            local pid = tonumber(owner:match(":(%d+):"))
            if pid and by_pid[pid] and not killed[pid] and alive(pid) then return { id = id, pid = pid } end
          end
        end, 30, "a partition in progress (round " .. round .. ")")
        os.execute("kill -9 " .. victim.pid)
        killed[victim.pid] = victim.id
      end
      local survivor
      for _, k in ipairs(kids) do
        if not killed[k.pid] then survivor = k end
      end
      local out = survivor:wait()
      for _, k in ipairs(kids) do if killed[k.pid] then k:wait() end end
      assert.matches("messages\tcomplete", out)
      local n = expected(mock, "messages", 6)
      exact("messages", n)
      for _, id in pairs(killed) do
        local row = pgs:psql(("SELECT status, attempts, window_start FROM converse_partitions WHERE id = %s")
          :format(id))
        local status, attempts, start = row:match("^(%a+)|(%d+)|(%d+)$")
        assert.are.equal("done", status)
        assert.is_true(tonumber(attempts) >= 2)
        -- taken over at its checkpoint: the window's first page (no cursor) was read once
        local first = 0
        for _, e in ipairs(helper.entries(mock, "/agentx/conversations/export/v1/messages")) do
          local q = helper.query_of(e)
          if q.start_time == start and not q.cursor and e.headers["x-api-key"] == "tenant-key-1" then
            first = first + 1
          end
        end
        assert.are.equal(1, first)
      end
      mock:stop()
    end)

  it("4 workers sync 60 daily windows of conversations and messages: never above the limit, each record once",
    function()
      local RATE = 40
      local mock = helper.start_mock { conversations = 240, days = 60, agentx_rate = RATE }
      local kids = {}
      for i = 1, 4 do
        kids[i] = helper.spawn(WORKER, mock.url, conninfo, redis.url, RATE, 10,
          i % 2 == 1 and "conversations,messages" or "messages,conversations", 12, 60, "")
      end
      local outs = {}
      for i = 1, 4 do outs[i] = kids[i]:wait() end
      local most, limited = busiest(mock)
      local n_conv, n_msg = expected(mock, "conversations", 60), expected(mock, "messages", 60)
      mock:stop()
      for i = 1, 4 do
        assert.are.same({ "conversations complete", "messages complete" }, (function()
          local t = lines(outs[i])
          table.sort(t)
          return t
        end)(), outs[i])
      end
      assert.is_true(most <= RATE, ("%d requests in one second for a limit of %d"):format(most, RATE))
      assert.are.equal(0, limited)
      exact("conversations", n_conv)
      exact("messages", n_msg)
      assert.are.equal("120|120", pgs:psql("SELECT count(*), count(*) FILTER (WHERE status = 'done') "
        .. "FROM converse_partitions"))
      -- the work was shared: more than one worker did partitions of each job
      assert.is_true(tonumber(pgs:psql("SELECT min(n) FROM (SELECT job_id, count(DISTINCT lease_owner) AS n "
        .. "FROM converse_partitions GROUP BY job_id) t")) >= 2)
    end)

  describe("the command line", function()
    local mock
    setup(function() mock = helper.start_mock { conversations = 60, days = 10, agentx_rate = 0 } end)
    teardown(function() mock:stop() end)

    local function args(extra, per_page)
      local a = { "sync", "agentx", "messages", "--to", "postgres:" .. conninfo, "--queue", "postgres:" .. conninfo,
                  "--base-url", mock.url .. "/agentx", "--bot-name", "b", "--since", "2025-01-01",
                  "--until", "2025-01-06", "--param", "per_page=" .. (per_page or 5) }
      for _, v in ipairs(extra or {}) do a[#a + 1] = v end
      return a
    end

    it("converse sync --workers 3 --shared-rate, then converse status (text and --json)", function()
      local rc, out, err = cli.run({ AGENTX_KEY = "k" }, args({ "--workers", "3", "--shared-rate", redis.url,
                                                                 "--json" }, 1000))
      assert.are.equal(0, rc, err)
      local s = converse.json.decode(out)
      assert.are.equal("complete", s.status)
      assert.are.equal(3, s.workers)
      assert.are.equal(5, s.partitions)
      assert.are.same({ done = 5, failed = 0, pending = 0, running = 0, total = 5 }, s.queue)
      assert.matches("agentx/messages complete: run 1, 3 workers: ", err)
      exact("messages", s.records)
      assert.is_true(tonumber(pgs:psql("SELECT count(DISTINCT lease_owner) FROM converse_partitions")) >= 2)
      rc, out = cli.run({}, { "status", "--queue", "postgres:" .. conninfo })
      assert.are.equal(0, rc)
      assert.matches("^pending 0\nrunning 0\ndone 5\nfailed 0\nrecords " .. s.records, out)
      assert.matches("job agentx/messages: run 1 complete", out)
      rc, out = cli.run({}, { "status", "--queue", "postgres:" .. conninfo, "--json" })
      assert.are.equal(0, rc)
      assert.matches('^{"pending":0,"running":0,"done":5,"failed":0,', out)
      assert.are.equal(s.records, converse.json.decode(out).records)
    end)

    it("stops every worker on a SIGTERM to the parent (exit 130); a re-run completes", function()
      local proc = cli.spawn({ AGENTX_KEY = "k" }, args({ "--workers", "2", "--lease", "30s" }, 10))
      wait_for(function()
        return (tonumber(pgs:psql("SELECT count(*) FROM converse_partitions WHERE status = 'done'")) or 0) >= 1
      end, 30, "a partition done")
      local owners = pgs:psql("SELECT DISTINCT lease_owner FROM converse_partitions WHERE lease_owner IS NOT NULL")
      local t0 = socket.gettime()
      proc:signal("TERM")
      local rc = proc:wait(10)
      assert.are.equal(130, rc)
      assert.is_true(socket.gettime() - t0 < 3)
      for pid in owners:gmatch(":(%d+):") do assert.is_false(alive(tonumber(pid)), "worker " .. pid) end
      assert.are.equal("0", pgs:psql("SELECT count(*) FROM converse_partitions WHERE status = 'running'"))
      assert.matches("interrupted", proc:stderr())
      local rc2, out, err = cli.run({ AGENTX_KEY = "k" }, args({ "--workers", "2", "--json" }, 10))
      assert.are.equal(0, rc2, err)
      local s = converse.json.decode(out)
      assert.are.same({ 1, true }, { s.run, s.resumed })        -- the same run, continued
      exact("messages", expected(mock, "messages", 5))
    end)

    it("refuses what cannot be shared (exit 2)", function()
      for _, extra in ipairs {
        { "--workers", "2", "--state", "x.json" },
        { "--shared-rate", "http://x" },
        { "--lease", "0s" },
      } do
        local rc, _, err = cli.run({ AGENTX_KEY = "k" }, args(extra))
        assert.are.equal(2, rc, err)
      end
      local rc, _, err = cli.run({ AGENTX_KEY = "k" }, { "sync", "agentx", "messages", "--to", "ndjson:x",
                                                         "--queue", "postgres:" .. conninfo })
      assert.are.equal(2, rc)
      assert.matches("the sink must be postgres", err)
    end)
  end)

  it("rides out a Redis restart and a PostgreSQL restart: nothing lost or repeated, the limit kept", function()
    local RATE = 20
    local mock = helper.start_mock { conversations = 60, days = 12, agentx_rate = RATE }
    local kids = {}
    for i = 1, 3 do
      kids[i] = helper.spawn(WORKER, mock.url, conninfo, redis.url, RATE, 3, "messages", 5, 12, "20ms")
    end
    wait_for(function()
      return (tonumber(pgs:psql("SELECT count(*) FROM converse_partitions WHERE status = 'done'")) or 0) >= 3
    end, 30, "a few partitions done")
    local old, port = redis, redis.port                 -- Redis: killed, an empty one on the same port
    os.execute("kill -9 " .. old.pid)
    wait_for(function()
      local c = socket.tcp()
      c:settimeout(0.05)
      local up = c:connect("127.0.0.1", port)
      c:close()
      return not up
    end, 5, "the Redis port to be free")
    redis = assert(helper.start_redis(port))
    os.execute("rm -rf '" .. old.dir .. "'")              -- its pid is gone already
    old.pid, old.dir = nil, nil
    socket.sleep(1)
    pgs:restart("immediate")                            -- PostgreSQL: crash-like stop, recovery, same port
    local statuses = {}
    for i = 1, 3 do statuses[i] = kids[i]:wait() end
    local finished = false
    for i = 1, 3 do if statuses[i]:find("messages\tcomplete") then finished = true end end
    if not finished then                               -- all stopped resumable: a re-run finishes
      assert.matches("messages\tcomplete", helper.child(WORKER, mock.url, conninfo, redis.url, RATE, 3,
        "messages", 5, 12, ""))
    end
    local most, limited = busiest(mock)
    exact("messages", expected(mock, "messages", 12))
    mock:stop()
    assert.is_true(most <= RATE, ("%d requests in one second for a limit of %d"):format(most, RATE))
    assert.are.equal(0, limited)
  end)
end)
