-- The PostgreSQL work queue (converse.sync.queue) and one worker in this
-- process (converse.sync.queue.worker), against a throwaway cluster: plans
-- are idempotent, claims skip locked rows, leases run on PostgreSQL's clock
-- and are fenced, failed partitions come back on a re-run, a run completes
-- and moves the bookmark. The multi-process behaviour (4 workers, kill -9,
-- server restarts) is in spec/scale_spec.lua. Runs on every Lua.
local helper   = require "helper"
local converse = require "converse"
local sync     = require "converse.sync"
local queue    = require "converse.sync.queue"
local worker   = require "converse.sync.queue.worker"
local status   = require "converse.sync.queue.status"
local pg       = require "converse.sync.queue.pg"

local have_driver = pcall(require, "luasql.postgres")
local DAY = 86400
local T0 = sync.time.parse("2025-01-01")

describe("converse.sync.queue", function()
  local server, why, conninfo, mock
  setup(function()
    if have_driver then server, why = helper.postgres() end
    if server then conninfo = server:database("queue_spec") end
    mock = helper.start_mock { conversations = 100, days = 10, agentx_rate = 0 }
  end)
  teardown(function() mock:stop() end)

  local function need()
    assert(have_driver, "lua-sql-postgres is not installed (scripts/deps.sh installs it)")
    assert(server, "no PostgreSQL: " .. tostring(why))
  end

  local n = 0
  local function fresh(prefix)
    n = n + 1
    return (prefix or "job") .. n
  end

  -- A spec for plan(): `days` daily windows from T0.
  local function spec(name, days)
    return {
      name = name, fingerprint = "fp", vendor = "agentx", stream = "conversations", key_id = "kid", window = DAY,
      windows = function(bookmark)
        local from = bookmark and bookmark - DAY or T0
        local to = T0 + days * DAY
        local list = {}
        for t = from, to - 1, DAY do list[#list + 1] = { t, t + DAY } end
        return list, from, to
      end,
    }
  end

  describe(":plan", function()
    it("is idempotent: a second plan joins the run in progress", function()
      need()
      local q = queue.open(conninfo)
      local name = fresh()
      local a = q:plan(spec(name, 5))
      local b = q:plan(spec(name, 5))
      assert.are.equal(1, a.run)
      assert.are.equal(5, a.partitions)
      assert.is_false(a.joined)
      assert.are.equal(a.id, b.id)
      assert.are.equal(1, b.run)
      assert.is_true(b.joined)
      assert.are.equal(5, q:counts(b).total)
      q:close()
    end)

    it("plans the next run from the bookmark once the run is complete", function()
      need()
      local q = queue.open(conninfo)
      local job = q:plan(spec(fresh(), 3))
      for _ = 1, 3 do
        local p = q:claim(job, "w", 10)
        q:save(p, { version = 1, last_run = { records = 1, pages = 1 } })
      end
      local complete, bookmark = q:complete(job)
      assert.is_true(complete)
      assert.are.equal(T0 + 3 * DAY, bookmark)
      local late = spec(job.name, 3)                              -- a worker that started with the others
      late.grace = 60
      local joined = q:plan(late)
      assert.are.same({ 1, true, 0 }, { joined.run, joined.joined, joined.partitions })
      local again = q:plan(spec(job.name, 3))                     -- the next night's command
      assert.are.equal(2, again.run)
      assert.are.equal(T0 + 2 * DAY, again.from)               -- bookmark minus the lookback
      assert.are.equal(1, again.partitions)
      q:close()
    end)
  end)

  describe(":claim", function()
    it("skips a partition another transaction holds (FOR UPDATE SKIP LOCKED)", function()
      need()
      local q = queue.open(conninfo)
      local job = q:plan(spec(fresh(), 3))
      local other = pg.connect(conninfo)
      other:exec("BEGIN")
      other:exec(("SELECT id FROM converse_partitions WHERE job_id = %d AND seq = 1 FOR UPDATE"):format(job.id))
      local p = q:claim(job, "w1", 10)
      assert.are.equal(2, p.seq)                                  -- not the locked one, no waiting
      other:exec("ROLLBACK")
      other:close()
      assert.are.equal(1, q:claim(job, "w2", 10).seq)
      q:close()
    end)

    it("takes over a partition whose lease ran out; the old owner's checkpoint is refused", function()
      need()
      local q = queue.open(conninfo)
      local job = q:plan(spec(fresh(), 1))
      local mine = q:claim(job, "dead", 0.5)
      assert.is_nil(q:claim(job, "alive", 1))                    -- leased
      require("socket").sleep(0.6)
      local theirs = q:claim(job, "alive", 5)
      assert.are.equal(mine.id, theirs.id)
      assert.are.equal(2, theirs.attempts)
      local err = helper.raises(function()
        q:save(mine, { version = 1, run = { records = 1, pages = 1 } })
      end)
      assert.are.equal("LEASE_LOST", err.code)
      assert.is_false(q:renew(mine))
      assert.is_true(q:renew(theirs))
      q:close()
    end)

    it("runs leases on PostgreSQL's clock and renews them", function()
      need()
      local q = queue.open(conninfo)
      local job = q:plan(spec(fresh(), 1))
      local p = q:claim(job, "w", 30)
      local left = tonumber(server:psql(("SELECT extract(epoch FROM lease_expires - now()) FROM "
        .. "converse_partitions WHERE id = %d"):format(p.id)))
      assert.is_true(left > 25 and left <= 30, tostring(left))
      p.lease = 100
      assert.is_true(q:renew(p))
      left = tonumber(server:psql(("SELECT extract(epoch FROM lease_expires - now()) FROM "
        .. "converse_partitions WHERE id = %d"):format(p.id)))
      assert.is_true(left > 95, tostring(left))
      q:close()
    end)

    it("gives a worker its own running partition back first (after a reconnect)", function()
      need()
      local q = queue.open(conninfo)
      local job = q:plan(spec(fresh(), 3))
      q:claim(job, "a", 30)
      local p2 = q:claim(job, "b", 30)
      assert.are.equal(p2.id, q:claim(job, "b", 30).id)
      q:close()
    end)

    it("releases (pending, position kept) and fails; a re-run makes failed partitions pending", function()
      need()
      local q = queue.open(conninfo)
      local job = q:plan(spec(fresh(), 2))
      local a = q:claim(job, "w", 30)
      q:save(a, { version = 1, run = { records = 3, pages = 1, position = { cursor = "c1" } } })
      assert.is_true(q:release(a))
      local b = q:claim(job, "w", 30)
      assert.are.equal(a.id, b.id)
      assert.is_true(b.resumed)
      assert.are.same({ cursor = "c1" }, q:load(b).run.position)
      assert.is_true(q:fail(b, "boom"))
      local c = q:counts(job)
      assert.are.same({ 1, 1, "boom" }, { c.pending, c.failed, c.error })
      local rerun = spec(job.name, 2)
      rerun.reset_failed = true
      local again = q:plan(rerun)
      assert.is_true(again.joined)
      assert.are.equal(2, q:counts(again).pending)
      q:close()
    end)
  end)

  describe("worker", function()
    before_each(function() mock:fresh() end)

    local function agentx(extra)
      local o = { base_url = mock.url .. "/agentx", api_key = "k", bot_name = "b", rate_limit = false }
      for k, v in pairs(extra or {}) do o[k] = v end
      return converse.agentx(o)
    end

    local function run(tbl, extra)
      local opts = { queue = "postgres:" .. conninfo, source = sync.stream(agentx(), "messages",
                       { per_page = 7 }),
                     sink = sync.postgres(conninfo, { table = tbl }), name = tbl,
                     since = "2025-01-01", ["until"] = "2025-01-11", lease = 5 }
      for k, v in pairs(extra or {}) do opts[k] = v end
      return sync.run(opts)
    end

    local function expected_messages()
      local all = agentx():messages({ start_time = "2025-01-01", end_time = "2025-01-11" }):collect()
      return #all
    end

    it("plans daily partitions and syncs every record exactly once", function()
      need()
      local tbl = fresh("m")
      local events = {}
      local s = run(tbl, { on_event = function(ev) events[ev.type] = (events[ev.type] or 0) + 1 end })
      assert.are.equal("complete", s.status)
      assert.are.equal(10, s.partitions)
      assert.are.equal(sync.time.parse("2025-01-11"), s.bookmark)
      local want = expected_messages()
      assert.are.equal(want, s.records)
      assert.are.equal(want .. "|" .. want, server:psql("SELECT count(*), count(DISTINCT _id) FROM " .. tbl))
      assert.are.equal(10, events.claim)
      assert.are.equal(1, events.run_complete)
      -- the partition checkpoints went into the sink's transactions
      assert.are.equal("10|10", server:psql(("SELECT count(*), count(*) FILTER (WHERE status = 'done') "
        .. "FROM converse_partitions p JOIN converse_jobs j ON j.id = p.job_id WHERE j.name = '%s'"):format(tbl)))
      local r = status.report(queue.open(conninfo), tbl)
      assert.are.same({ 0, 0, 10, 0, want }, { r.pending, r.running, r.done, r.failed, r.records })
      assert.matches("^pending 0\nrunning 0\ndone 10\nfailed 0\n", status.text(r))
    end)

    it("resumes a partition from its checkpoint on a re-run, and fails partitions without losing others", function()
      need()
      local tbl = fresh("m")
      local pages = 0
      local sink = sync.postgres(conninfo, { table = tbl })
      local write = sink.write
      sink.write = function(self, batch, st)
        if batch and batch.n > 0 then
          pages = pages + 1
          if pages == 2 then error(converse.errors.new { kind = "io", code = "BOOM", message = "disk on fire" }, 0) end
        end
        return write(self, batch, st)
      end
      local err = helper.raises(function() run(tbl, { sink = sink }) end)
      assert.are.equal("failed", err.sync.status)
      assert.are.equal("PARTITIONS_FAILED", err.code)
      assert.are.equal(1, err.sync.failed)
      assert.are.equal(9, err.sync.partitions)
      mock:fresh()
      local s = run(tbl)                                         -- the re-run: one partition left
      assert.are.equal("complete", s.status)
      assert.are.equal(1, s.partitions)
      assert.are.equal(1, s.resumed_partitions)
      local first = 0                                            -- its first page was not read again
      for _, e in ipairs(helper.entries(mock, "/agentx")) do
        if not helper.query_of(e).cursor then first = first + 1 end
      end
      assert.are.equal(0, first)
      local want = expected_messages()
      assert.are.equal(want .. "|" .. want, server:psql("SELECT count(*), count(DISTINCT _id) FROM " .. tbl))
    end)

    it("waits for partitions leased by another worker, then takes them over when the lease runs out", function()
      need()
      local tbl = fresh("m")
      local q = queue.open(conninfo)
      local w = worker.new { queue = q, source = sync.stream(agentx(), "messages", { per_page = 7 }),
                             sink = sync.postgres(conninfo, { table = tbl }), name = tbl,
                             since = "2025-01-01", ["until"] = "2025-01-03", lease = 5 }
      local job = w:plan_only()
      local held = q:claim(job, "a-dead-worker", 0.8)           -- never renewed
      local idle, claims = 0, {}
      w.on_event = function(ev)
        if ev.type == "idle" then idle = idle + 1 end
        if ev.type == "claim" then claims[#claims + 1] = ev.partition end
      end
      local t0 = require("converse.core").now()
      local s = w:run()
      assert.are.equal("complete", s.status)
      assert.is_true(idle > 0)
      assert.are.equal(held.id, claims[#claims])
      assert.is_true(require("converse.core").now() - t0 >= 0.5)
      q:close()
    end)

    it("shares the sink's connection and transaction when the queue is on the same database", function()
      need()
      local tbl = fresh("m")
      local w = worker.new { queue = conninfo, source = sync.stream(agentx(), "messages"),
                             sink = sync.postgres(conninfo, { table = tbl }), name = tbl,
                             since = "2025-01-01", ["until"] = "2025-01-02" }
      assert.are.equal("complete", w:run().status)
      assert.is_true(w.shared_tx)
      local other = worker.new { queue = conninfo, source = sync.stream(agentx(), "messages"),
                                 sink = sync.postgres(conninfo .. " application_name=sink", { table = tbl }),
                                 name = tbl .. "b", since = "2025-01-01", ["until"] = "2025-01-02" }
      assert.are.equal("complete", other:run().status)
      assert.is_false(other.shared_tx)
    end)

    it("rolls a page back when its checkpoint is refused (the lease was lost)", function()
      need()
      local tbl = fresh("m")
      local sink = sync.postgres(conninfo, { table = tbl })
      sink:open { key = "id" }
      sink.state_writer = function()
        error(queue.error("lease lost", "LEASE_LOST"), 0)
      end
      local err = helper.raises(function()
        sink:write({ records = { '{"id":"a"}' }, raws = { '{"id":"a"}' }, n = 1 }, { version = 1 })
      end)
      assert.are.equal("LEASE_LOST", err.code)
      sink:close()
      assert.are.equal("", server:psql(("SELECT to_regclass('%s')"):format(tbl)))
    end)

    it("refuses an append-only sink and a state option", function()
      need()
      local err = helper.raises(function()
        worker.new { queue = conninfo, source = sync.stream(agentx(), "messages"), sink = sync.ndjson("x") }
      end)
      assert.are.equal("usage", err.kind)
      assert.matches("upserts by id", err.message)
      err = helper.raises(function()
        worker.new { queue = conninfo, source = sync.stream(agentx(), "messages"),
                     sink = sync.postgres(conninfo), state = "x.json" }
      end)
      assert.matches("drop state", err.message)
    end)

    it("stops resumable (partial) when PostgreSQL stays away longer than fail_after", function()
      need()
      local err = helper.raises(function()
        sync.run { queue = "host=127.0.0.1 port=" .. helper.free_port() .. " user=postgres connect_timeout=1",
                   source = sync.stream(agentx(), "messages"), sink = sync.postgres(conninfo),
                   since = "2025-01-01", ["until"] = "2025-01-02", fail_after = 0.5 }
      end)
      assert.are.equal("PG_UNAVAILABLE", err.code)
      assert.are.equal("partial", err.sync.status)
    end)
  end)
end)
