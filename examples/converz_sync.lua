-- Converz: pull last quarter's calls per rep and tag the long ones.
--   CONVERZ_KEY, CONVERZ_URL (default: the local mock, `converse mock --port 8080`)
local converse = require "converse"

local cz = converse.converz {
  base_url = os.getenv("CONVERZ_URL") or "http://127.0.0.1:8080/converz/api/v1",
  api_key  = os.getenv("CONVERZ_KEY") or "demo-key",
}

-- Who is who: rep_id -> name.
local names = {}
for rep in cz:reps() do names[rep.rep_id] = rep.name end

-- Stream the calls (pages of 1000 rows), only the columns we need.
local per_rep, long = {}, {}
local pager = cz:calls {
  start_date = "2025-01-01", end_date = "2025-03-31",
  columns = { "call_id", "rep_id", "duration", "campaign" },
}
for call in pager do
  local r = per_rep[call.rep_id] or { calls = 0, seconds = 0 }
  per_rep[call.rep_id] = r
  r.calls = r.calls + 1
  r.seconds = r.seconds + (tonumber(call.duration) or 0)
  if (tonumber(call.duration) or 0) > 2400 then
    long[#long + 1] = { call_id = call.call_id, subcampaign = "long-call review" }
  end
end

local ids = {}
for id in pairs(per_rep) do ids[#ids + 1] = id end
table.sort(ids, function(a, b) return per_rep[a].calls > per_rep[b].calls end)
print(("%-12s %-24s %6s %9s"):format("rep_id", "name", "calls", "avg (s)"))
for i = 1, math.min(5, #ids) do
  local id, r = ids[i], per_rep[ids[i]]
  print(("%-12s %-24s %6d %9.1f"):format(id, tostring(names[id] or "?"), r.calls, r.seconds / r.calls))
end

-- Write back: rows become columns, split at 100,000 rows per request.
local res = cz:update_calls(long)
print(("tagged %d long calls in %d request(s)"):format(res.rows, res.requests))

-- Aggregates straight from /report.
for _, g in ipairs(cz:report { group_by = "vendor" }) do
  print(("%-12s %5d calls, resolved %.0f%%"):format(g.vendor, g.n_calls, 100 * g.resolved_rate))
end
