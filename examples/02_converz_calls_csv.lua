-- 2. Converz calls with their summaries to CSV, for a dashboard.
-- Only the columns the dashboard shows (Converz `columns`), in that order;
-- RFC 4180 quoting (summaries hold commas, quotes and line breaks). The
-- file is an append-only log: a later run appends the new calls, plus the
-- calls of the lookback whose summary changed (the unchanged ones are
-- recognised and skipped).
--   CONVERZ_KEY, CONVERZ_URL (default: the mock), SINCE, UNTIL, OUT
local converse = require "converse"
local sync     = require "converse.sync"

local MOCK = os.getenv("CONVERSE_MOCK") or "http://127.0.0.1:8080"
local OUT = os.getenv("OUT") or "build/examples"
os.execute(("mkdir -p '%s'"):format(OUT))

local cz = converse.converz {
  base_url = os.getenv("CONVERZ_URL") or MOCK .. "/converz/api/v1",
  api_key  = os.getenv("CONVERZ_KEY") or "demo-key",
}

local COLUMNS = { "call_id", "start_time", "rep_name", "campaign", "duration", "sentiment", "resolved", "summary" }
local summary = sync.run {
  source = sync.stream(cz, "calls", { columns = COLUMNS }),
  sink = sync.csv(OUT .. "/calls.csv", { columns = COLUMNS }),
  since = os.getenv("SINCE") or "2025-01-01", ["until"] = os.getenv("UNTIL"),
  window = "7d", lookback = "2d",
}
print(("%d calls written (%d unchanged skipped) to %s/calls.csv"):format(summary.records,
  summary.duplicates, OUT))
