-- The postgres sink (converse.sync.sinks.postgres) against a throwaway
-- PostgreSQL cluster started by the helper: table and column types from
-- the records, upserts, exact numbers, widening, rows and checkpoint in one
-- transaction, `_converse_state`, a whole sync from the mock. Runs on every
-- Lua (LuaSQL for PostgreSQL exists for 5.1-5.4; LuaJIT uses 5.1's).
local helper   = require "helper"
local converse = require "converse"
local sync     = require "converse.sync"
local pg       = require "converse.sync.queue.pg"

local have_driver = pcall(require, "luasql.postgres")

describe("converse.sync.postgres", function()
  local server, why, conninfo
  setup(function()
    if have_driver then server, why = helper.postgres() end
    if server then conninfo = server:database("sink_spec") end
  end)

  local function need()
    assert(have_driver, "lua-sql-postgres is not installed (scripts/deps.sh installs it)")
    assert(server, "no PostgreSQL: " .. tostring(why))
  end

  local n = 0
  local function fresh_table()
    n = n + 1
    return "t" .. n
  end

  local function page(texts)
    return { records = texts, raws = texts, n = #texts }
  end

  describe("the table", function()
    it("is created from the records: id first, then documented fields, then the rest sorted", function()
      need()
      local tbl = fresh_table()
      local sink = sync.postgres(conninfo, { table = tbl })
      sink:open { key = "id", columns = { "id", "name", "when" } }
      sink:write(page { '{"zeta":1,"id":"a","name":"x","nested":{"k":[1,2]},"flag":true,"when":null}' })
      sink:close()
      assert.are.equal("id|text\nname|text\nwhen|jsonb\nflag|boolean\nnested|jsonb\nzeta|numeric",
        server:psql(("SELECT attname || '|' || format_type(atttypid, atttypmod) FROM pg_attribute "
          .. "WHERE attrelid = '%s'::regclass AND attnum > 0 ORDER BY attnum"):format(tbl)))
      assert.are.equal("a|x||t|{\"k\": [1, 2]}|1", server:psql("SELECT * FROM " .. tbl))
      assert.matches("PRIMARY KEY %(id%)", server:psql(("SELECT pg_get_constraintdef(oid) FROM pg_constraint "
        .. "WHERE conrelid = '%s'::regclass"):format(tbl)))
    end)

    it("writes through a postgres:// URI given as the whole location", function()
      need()
      local tbl = fresh_table()
      local s = assert(sync.parse_sink(("postgres://postgres@127.0.0.1:%d/sink_spec#%s")
        :format(server.port, tbl)))
      local sink = sync.postgres(s.conninfo, { table = s.table })
      sink:open { key = "id" }
      sink:write(page { '{"id":"u1"}' })
      sink:close()
      assert.are.equal("u1", server:psql("SELECT id FROM " .. tbl))
    end)

    it("keeps numbers exact: integers beyond int64, 1e400, decimals", function()
      need()
      local tbl = fresh_table()
      local sink = sync.postgres(conninfo, { table = tbl })
      sink:open { key = "id" }
      sink:write(page { '{"id":9007199254740993,"big":123456789012345678901234567890,"huge":1e400,"d":0.1}' })
      sink:close()
      assert.are.equal("9007199254740993|123456789012345678901234567890|t|0.1",
        server:psql("SELECT id, big, huge = 1e400::numeric, d FROM " .. tbl))
    end)

    it("upserts by id: a record read again replaces its row, absent fields NULL", function()
      need()
      local tbl = fresh_table()
      local sink = sync.postgres(conninfo, { table = tbl })
      sink:open { key = "id" }
      sink:write(page { '{"id":"a","v":1,"w":"old"}', '{"id":"b","v":2,"w":"keep"}' })
      sink:write(page { '{"id":"a","v":10}' })
      sink:close()
      assert.are.equal("a|10|\nb|2|keep", server:psql("SELECT id, v, w FROM " .. tbl .. " ORDER BY id"))
    end)

    it("takes the last of a record given twice in one page", function()
      need()
      local tbl = fresh_table()
      local sink = sync.postgres(conninfo, { table = tbl })
      sink:open { key = "id" }
      sink:write(page { '{"id":"a","v":1}', '{"id":"b","v":2}', '{"id":"a","v":3}' })
      sink:close()
      assert.are.equal("a|3\nb|2", server:psql("SELECT id, v FROM " .. tbl .. " ORDER BY id"))
    end)

    it("adds a column for a new field and widens a column to jsonb for a value that does not fit", function()
      need()
      local tbl = fresh_table()
      local sink = sync.postgres(conninfo, { table = tbl })
      sink:open { key = "id" }
      sink:write(page { '{"id":"a","v":1}' })
      sink:write(page { '{"id":"b","v":"two","extra":[1]}' })
      sink:close()
      assert.are.equal("v|jsonb\nextra|jsonb", server:psql(("SELECT attname || '|' || format_type(atttypid, "
        .. "atttypmod) FROM pg_attribute WHERE attrelid = '%s'::regclass AND attnum > 1 ORDER BY attnum"):format(tbl)))
      assert.are.equal('a|1|\nb|"two"|[1]', server:psql("SELECT id, v, extra FROM " .. tbl .. " ORDER BY id"))
    end)

    it("works from decoded tables too (no raw texts)", function()
      need()
      local tbl = fresh_table()
      local sink = sync.postgres(conninfo, { table = tbl })
      sink:open { key = "id" }
      sink:write({ records = { { id = 7, tags = converse.array {}, o = { b = 1, a = 2 }, s = "é'\"" } }, n = 1 })
      sink:close()
      assert.are.equal([[7|[]|{"a": 2, "b": 1}|é'"]], server:psql("SELECT id, tags, o, s FROM " .. tbl))
    end)

    it("refuses a record without the id field, and a NUL byte, without writing anything", function()
      need()
      local tbl = fresh_table()
      local sink = sync.postgres(conninfo, { table = tbl })
      sink:open { key = "id" }
      sink:write(page { '{"id":"a"}' })
      local err = helper.raises(function() sink:write(page { '{"id":"b"}', '{"name":"no id"}' }) end)
      assert.are.equal("io", err.kind)
      assert.are.equal("POSTGRES", err.code)
      err = helper.raises(function() sink:write(page { '{"id":"c","s":"\\u0000"}' }) end)
      assert.are.equal("POSTGRES", err.code)
      sink:close()
      assert.are.equal("a", server:psql("SELECT string_agg(id, ',') FROM " .. tbl))
    end)
  end)

  describe("with a job", function()
    local mock
    setup(function() mock = helper.start_mock { conversations = 60, days = 10, agentx_rate = 0 } end)
    teardown(function() mock:stop() end)

    local function agentx()
      return converse.agentx { base_url = mock.url .. "/agentx", api_key = "k", bot_name = "b", rate_limit = false }
    end

    it("syncs a stream; rows and checkpoint commit together; a re-run continues from the bookmark", function()
      need()
      local tbl = fresh_table()
      local job = { source = sync.stream(agentx(), "conversations", { per_page = 4 }),
                    sink = sync.postgres(conninfo, { table = tbl }),
                    since = "2025-01-01", ["until"] = "2025-01-11", lookback = "1d" }
      local s = sync.run(job)
      assert.are.equal("complete", s.status)
      assert.are.equal(60, s.records)
      assert.are.equal("60|60", server:psql("SELECT count(*), count(DISTINCT _id) FROM " .. tbl))
      local st = converse.json.decode(server:psql(
        "SELECT state FROM _converse_state WHERE job = 'agentx/conversations'"))
      assert.are.equal(sync.time.parse("2025-01-11"), tonumber(st.bookmark))
      assert.is_nil(st.run)
      job.source = sync.stream(agentx(), "conversations", { per_page = 4 })
      job.sink = sync.postgres(conninfo, { table = tbl })
      s = sync.run(job)
      assert.are.equal(6, s.records)                         -- the lookback day again
      assert.are.equal("60", server:psql("SELECT count(*) FROM " .. tbl))
      server:psql("DELETE FROM _converse_state")
    end)

    it("keeps table and checkpoint in step when a page fails: the re-run reads that page again", function()
      need()
      local tbl = fresh_table()
      local calls = 0
      local sink = sync.postgres(conninfo, { table = tbl })
      local write = sink.write
      sink.write = function(self, batch, st)
        if batch and batch.n > 0 then
          calls = calls + 1
          if calls == 3 then batch.raws[batch.n] = '{"no":"id"}' end    -- the page's upsert fails
        end
        return write(self, batch, st)
      end
      local opts = { source = sync.stream(agentx(), "messages", { per_page = 10 }), sink = sink,
                     since = "2025-01-01", ["until"] = "2025-01-03", name = "m" }
      local err = helper.raises(function() sync.run(opts) end)
      assert.are.equal("failed", err.sync.status)
      assert.are.equal("20", server:psql("SELECT count(*) FROM " .. tbl))
      local st = converse.json.decode(server:psql("SELECT state FROM _converse_state WHERE job = 'm'"))
      assert.are.equal(20, tonumber(st.run.records))
      opts.source = sync.stream(agentx(), "messages", { per_page = 10 })
      opts.sink = sync.postgres(conninfo, { table = tbl })
      local s = sync.run(opts)
      assert.is_true(s.resumed)
      local want = server:psql("SELECT count(*) FROM " .. tbl)
      assert.are.equal(tostring(20 + s.records), want)
      assert.are.equal(want, server:psql("SELECT count(DISTINCT _id) FROM " .. tbl))
    end)

    it("refuses a second run of the same job on the same database (LOCKED)", function()
      need()
      local first = sync.postgres(conninfo, { table = "locked" })
      first:open { key = "_id" }
      local store = first:store("agentx/locked")
      store.load()
      local err = helper.raises(function()
        sync.run { source = sync.stream(agentx(), "conversations"), name = "agentx/locked",
                   sink = sync.postgres(conninfo .. " application_name=second", { table = "locked" }),
                   since = "2025-01-01", ["until"] = "2025-01-02" }
      end)
      assert.are.equal("LOCKED", err.code)
      first:close()
    end)
  end)

  describe("connections", function()
    it("stops resumable (retryable PG_UNAVAILABLE) when PostgreSQL cannot be reached", function()
      need()
      local sink = sync.postgres("host=127.0.0.1 port=" .. helper.free_port() .. " user=x password=s3cret-pw",
        { table = "x" })
      sink:open { key = "id" }
      local err = helper.raises(function() sink:write(page { '{"id":1}' }) end)
      assert.are.equal("PG_UNAVAILABLE", err.code)
      assert.is_true(err.retryable)
      assert.are.equal("partial", sync.status_of(err))
      assert.is_nil(tostring(err):find("s3cret-pw", 1, true))
      sink:close()
    end)

    it("reconnects after a server restart between transactions", function()
      need()
      local c = pg.connect(conninfo)
      assert.are.equal("1", c:row("SELECT 1 AS one").one)
      server:restart("fast")
      local err = helper.raises(function() c:exec("SELECT 1") end)
      assert.are.equal("PG_UNAVAILABLE", err.code)
      assert.are.equal("1", c:row("SELECT 1 AS one").one)
      c:close()
    end)

    it("never replaces a connection lost inside a transaction", function()
      need()
      local c = pg.connect(conninfo)
      local err = helper.raises(function()
        c:tx(function()
          c:exec("SELECT 1")
          server:restart("immediate")
          c:exec("SELECT 2")
        end)
      end)
      assert.are.equal("PG_UNAVAILABLE", err.code)
      assert.is_false(c.in_tx)
      c:close()
    end)
  end)

  describe("parse_sink", function()
    it("reads postgres:CONNINFO[#TABLE]", function()
      local s = assert(sync.parse_sink("postgres:host=db dbname=x#calls", "default"))
      assert.are.equal("postgres", s.kind)
      assert.are.equal("host=db dbname=x", s.conninfo)
      assert.are.equal("calls", s.table)
      s = assert(sync.parse_sink("postgres:postgresql://u@db/x", "messages"))
      assert.are.equal("postgresql://u@db/x", s.conninfo)
      assert.are.equal("messages", s.table)
      s = assert(sync.parse_sink("postgres:dbname=x#raw.calls"))
      assert.are.equal("raw.calls", s.table)
    end)

    it("refuses an empty conninfo or table, and hides passwords in messages", function()
      for _, spec in ipairs { "postgres:", "postgres:  #t", "postgres:dbname=x#", "postgres:dbname=x#a.b.c",
                              "postgres:dbname=x#_converse_state" } do
        local s, msg = sync.parse_sink(spec)
        assert.is_nil(s, spec)
        assert.is_string(msg)
      end
      local _, msg = sync.parse_sink("postgres:password=hunter22 dbname=x#")
      assert.is_nil(msg:find("hunter22", 1, true))
      assert.are.equal("host=h password=REDACTED", pg.redact("host=h password=hunter22"))
      assert.are.equal("postgresql://u:REDACTED@h/db", pg.redact("postgresql://u:pw@h/db"))
      assert.are.equal("//u:REDACTED@h/db", pg.redact("//u:pw@h/db"))
    end)

    it("takes a postgres:// or postgresql:// URI whole (with or without #TABLE)", function()
      assert.are.same({ "postgres://u:pw@h:5/db", "t" }, { pg.parse_spec("postgres://u:pw@h:5/db#t") })
      assert.are.same({ "postgresql://h/db?sslmode=require" },
                      { pg.parse_spec("postgresql://h/db?sslmode=require") })
      assert.are.same({ "dbname=x", "t" }, { pg.parse_spec("postgres:dbname=x#t") })
      assert.are.same({ "postgresql://h/db" }, { pg.parse_spec("postgres:postgresql://h/db") })
    end)

    it("adds connection defaults without overriding the user's", function()
      assert.matches("connect_timeout=3 keepalives=1", pg.with_defaults("dbname=x connect_timeout=3"))
      assert.is_nil(pg.with_defaults("dbname=x connect_timeout=3"):find("connect_timeout=10", 1, true))
      assert.matches("^postgresql://h/db%?sslmode=require&connect_timeout=10&",
        pg.with_defaults("postgresql://h/db?sslmode=require"))
    end)
  end)
end)
