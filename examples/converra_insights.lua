-- Converra: a per-agent report of insights and failing steps.
--   CONVERRA_KEY, CONVERRA_PLAN (free|pro|enterprise), CONVERRA_URL
--   (default: the local mock on port 8080)
local converse = require "converse"

local cr = converse.converra {
  base_url = os.getenv("CONVERRA_URL") or "http://127.0.0.1:8080/converra/api/v1",
  api_key  = os.getenv("CONVERRA_KEY") or "demo-key",
  plan     = os.getenv("CONVERRA_PLAN") or "free",     -- sets the default rate limit
}

local account = cr:account()
print(("%s (%s plan)"):format(account.name, account.plan))

for agent in cr:agents() do
  local ins = cr:agent_insights(agent.id)
  local steps = cr:step_failures(agent.id).steps or {}
  local worst = steps[1]
  for _, s in ipairs(steps) do if s.failures > worst.failures then worst = s end end
  local n = #cr:conversations { agentId = agent.id }:collect()
  print(("%-22s %-8s %3d conversations, deflection %.0f%%, worst step: %s"):format(
    agent.name, agent.status, n, 100 * (ins.businessImpact and ins.businessImpact.deflectionRate or 0),
    worst and (worst.step .. " (" .. worst.failures .. ")") or "-"))
end

-- Optimizations: what is running, what could be applied.
for o in cr:optimizations() do
  print(("optimization %s for %s: %s%s"):format(o.id, o.agentId, o.status,
    o.winner ~= converse.null and (", winner " .. o.winner) or ""))
end

-- Errors carry the vendor's code.
local ok, err = pcall(cr.agent, cr, "agt_does_not_exist")
if not ok then print(("lookup failed: %s %s (%s)"):format(err.status, err.code, err.message)) end

local u = cr:usage()
print(("usage: %d conversations, %d optimizations, %d requests/minute allowed"):format(
  u.conversations, u.optimizations, u.rateLimit.requestsPerMinute))
