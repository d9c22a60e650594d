-- 1. Nightly load of AgentX conversations and messages into SQLite, resumable.
-- Run it every night (cron): the first run reads from SINCE, later runs
-- from the bookmark minus a day (conversations keep changing after they
-- start); a run stopped anywhere -- Ctrl-C, kill -9, a network failure --
-- is continued by the next one, every record exactly once in the tables.
--   AGENTX_KEY, AGENTX_BOT, AGENTX_URL (default: the mock, CONVERSE_MOCK or
--   http://127.0.0.1:8080), SINCE (first run), UNTIL (default: now), OUT (directory)
local converse = require "converse"
local sync     = require "converse.sync"

local MOCK = os.getenv("CONVERSE_MOCK") or "http://127.0.0.1:8080"
local OUT = os.getenv("OUT") or "build/examples"
os.execute(("mkdir -p '%s'"):format(OUT))

local ax = converse.agentx {
  base_url = os.getenv("AGENTX_URL") or MOCK .. "/agentx",
  api_key  = os.getenv("AGENTX_KEY") or "demo-key",
  bot_name = os.getenv("AGENTX_BOT") or "r3-218210",
}

local db = OUT .. "/agentx.db"
for _, stream in ipairs { "conversations", "messages" } do
  local ok, res = pcall(sync.run, {
    source = sync.stream(ax, stream, { per_page = 1000 }),
    sink = sync.sqlite(db, { table = stream }),
    since = os.getenv("SINCE") or "2025-01-01", ["until"] = os.getenv("UNTIL"),
    window = "30d", lookback = "1d",
    trap_signals = true,          -- Ctrl-C: the page is finished or dropped, the checkpoint written
  })
  if not ok then
    local s = type(res) == "table" and res.sync
    io.stderr:write(("%s stopped (%s): %s\n"):format(stream, s and s.status or "error", tostring(res)))
    if s and s.resume then io.stderr:write("  the next run resumes at " .. s.resume .. "\n") end
    os.exit(s and s.status == "interrupted" and 130 or s and s.status == "partial" and 3 or 1)
  end
  print(("%-14s %5d records in %3d pages%s; bookmark %s"):format(stream, res.records, res.pages,
    res.resumed and " (resumed)" or "", sync.time.format(res.bookmark)))
end
print("state and tables in " .. db)
