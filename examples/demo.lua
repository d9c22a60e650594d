-- The converse demo: one short sync script against every vendor API of the
-- local mock (scripts/demo.sh starts it). Run against the real vendors by
-- changing the base URLs and keys.
--   lua5.4 examples/demo.lua http://127.0.0.1:PORT
local converse = require "converse"

local MOCK = arg[1] or os.getenv("CONVERSE_MOCK") or "http://127.0.0.1:8080"
local now = require("converse.core").now
os.execute("mkdir -p build/demo")

local function step(title, f)
  local t0 = now()
  local summary = f()
  print(("%-58s %7.2f s"):format(title .. ": " .. summary, now() - t0))
end

-- 1. Converz: stream every call of July into NDJSON, without holding the body.
local cz = converse.converz { base_url = MOCK .. "/converz/api/v1", api_key = "demo-key" }
step("converz  calls -> build/demo/calls.ndjson", function()
  local out = assert(io.open("build/demo/calls.ndjson", "w"))
  local n, biggest = 0, 0
  for call in cz:calls { n_per_page = 2000 } do
    out:write(converse.json.encode(call), "\n")
    n = n + 1
    if type(call.call_id) == "number" and call.call_id > biggest then biggest = call.call_id end
  end
  out:close()
  return ("%d calls, largest id %s"):format(n, biggest)
end)

-- 2. Converz: tag the first 100 calls, safely (rows become columns).
step("converz  update_calls", function()
  local rows = {}
  for call in cz:calls { n_per_page = 100 } do
    rows[#rows + 1] = { call_id = call.call_id, campaign = "demo" }
    if #rows == 100 then break end
  end
  local r = cz:update_calls(rows)
  return ("%d rows in %d request"):format(r.rows, r.requests)
end)

-- 3. AgentX: conversations of the window, and one transcript.
local ax = converse.agentx { base_url = MOCK .. "/agentx", api_key = "demo-key",
                             bot_name = "r3-218210" }
step("agentx   conversations + a transcript", function()
  local convs = ax:conversations { start_time = "2025-01-01", end_time = "2026-01-01",
                                   per_page = 50 }:collect()
  local text = convs[1] and ax:transcript(convs[1]._id, { start_time = "2025-01-01",
                                                           end_time = "2026-01-01" }) or ""
  return ("%d conversations, transcript of %d lines"):format(#convs,
    select(2, text:gsub("\n", "")) + (text ~= "" and 1 or 0))
end)

-- 4. ConverseIQ: every contact, pages fetched concurrently.
local iq = converse.converseiq { base_url = MOCK .. "/converseiq/public/v1", api_key = "demo-key" }
step("converseiq contacts (concurrent pages)", function()
  local n = 0
  for _ in iq:contacts { limit = 10 } do n = n + 1 end
  return ("%d contacts"):format(n)
end)

-- 5. Converra: agents and their insights; errors are objects.
local cr = converse.converra { base_url = MOCK .. "/converra/api/v1", api_key = "demo-key",
                               plan = "pro" }
step("converra agents + insights", function()
  local agents = cr:agents():collect()
  for _, a in ipairs(agents) do cr:agent_insights(a.id) end
  local ok, err = pcall(cr.agent, cr, "no-such-agent")
  return ("%d agents; missing agent -> %s"):format(#agents,
    ok and "found?" or (err.kind .. " " .. tostring(err.status)))
end)
