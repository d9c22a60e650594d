-- 5. Converra insights and step failures rolled up into a small report.
-- Agents and their conversations are synced into SQLite (a re-run
-- refreshes them); the report joins them with each agent's insights and
-- failing steps and is written as Markdown.
--   CONVERRA_KEY, CONVERRA_PLAN, CONVERRA_URL (default: the mock), OUT
local converse = require "converse"
local sync     = require "converse.sync"
local driver   = require "luasql.sqlite3"

local MOCK = os.getenv("CONVERSE_MOCK") or "http://127.0.0.1:8080"
local OUT = os.getenv("OUT") or "build/examples"
os.execute(("mkdir -p '%s'"):format(OUT))

local cr = converse.converra {
  base_url = os.getenv("CONVERRA_URL") or MOCK .. "/converra/api/v1",
  api_key  = os.getenv("CONVERRA_KEY") or "demo-key",
  plan     = os.getenv("CONVERRA_PLAN") or "pro",
}

local path = OUT .. "/converra.db"
for _, stream in ipairs { "agents", "conversations" } do
  sync.run { source = sync.stream(cr, stream), sink = sync.sqlite(path, { table = stream }) }
end

local env = driver.sqlite3()
local db = assert(env:connect(path))
local function rows(q)
  local cur = assert(db:execute(q))
  local out, r = {}, cur:fetch({}, "a")
  while r do out[#out + 1] = r; r = cur:fetch({}, "a") end
  cur:close()
  return out
end

local lines = { "# Converra agents", "",
  "| agent | status | conversations | resolved | escalated | deflection | worst step |",
  "|---|---|---:|---:|---:|---:|---|" }
for _, a in ipairs(rows([[SELECT a.id, a.name, a.status, count(c.id) AS n,
    sum(c.outcome = 'resolved') AS resolved, sum(c.outcome = 'escalated') AS escalated
  FROM agents a LEFT JOIN conversations c ON c.agentId = a.id GROUP BY a.id ORDER BY a.name]])) do
  local ins = cr:agent_insights(a.id)
  local worst
  for _, s in ipairs(cr:step_failures(a.id).steps or {}) do
    if not worst or s.failures > worst.failures then worst = s end
  end
  lines[#lines + 1] = ("| %s | %s | %d | %d | %d | %.0f%% | %s |"):format(a.name, a.status, tonumber(a.n),
    tonumber(a.resolved) or 0, tonumber(a.escalated) or 0,
    100 * (ins.businessImpact and ins.businessImpact.deflectionRate or 0),
    worst and (worst.step .. " (" .. worst.failures .. ")") or "-")
end
db:close()
env:close()
local report = table.concat(lines, "\n") .. "\n"
local f = assert(io.open(OUT .. "/converra_report.md", "w"))
f:write(report)
f:close()
io.stdout:write(report)
