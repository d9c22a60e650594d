-- AgentX (DeepConverse): export a week of conversations with transcripts.
--   AGENTX_KEY, AGENTX_BOT, AGENTX_URL (default: the local mock on port 8080)
local converse = require "converse"

local ax = converse.agentx {
  base_url = os.getenv("AGENTX_URL") or "http://127.0.0.1:8080/agentx",
  api_key  = os.getenv("AGENTX_KEY") or "demo-key",
  bot_name = os.getenv("AGENTX_BOT") or "r3-218210",
  -- the default rate limit (3 requests/second per endpoint) is kept
}

local window = { start_time = "2025-01-01", end_time = "2025-01-15 12:00" }   -- UTC

-- One pass over the messages of the window, grouped by conversation
-- (cheaper than one messages request per conversation).
local by_conv = {}
for m in ax:messages(window) do
  local list = by_conv[m.conversationId] or {}
  by_conv[m.conversationId] = list
  list[#list + 1] = m
end

local n, shown = 0, 0
for conv in ax:conversations(window) do
  n = n + 1
  if shown < 3 then
    shown = shown + 1
    print(("== %s  %s  %s  tags: %s"):format(conv._id, os.date("!%Y-%m-%d %H:%M", conv.startTime),
      conv.locale, table.concat(conv.tags, ", ")))
    print(ax:transcript(by_conv[conv._id] or {}))
  end
end
print(("%d conversations between %s and %s"):format(n, window.start_time, window.end_time))

-- A single conversation's transcript by id (fetches its messages).
local first = next(by_conv)
if first then
  print("== transcript(" .. first .. ")")
  print(ax:transcript(first, window))
end
