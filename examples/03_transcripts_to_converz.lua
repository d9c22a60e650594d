-- 3. AgentX transcripts matched to Converz calls and written back as a
-- Converz attribute. A voice bot's conversation carries the telephony call
-- id in its metadata (`vendor_call_id`); the Converz call with that
-- vendor_call_id gets the bot's transcript in a `bot_transcript` column,
-- in one columnar update (calls without a match are left untouched).
--   AGENTX_KEY, CONVERZ_KEY, AGENTX_URL, CONVERZ_URL, SINCE, UNTIL
local converse = require "converse"
local enrich   = require("converse.sync").enrich

local MOCK = os.getenv("CONVERSE_MOCK") or "http://127.0.0.1:8080"
local ax = converse.agentx {
  base_url = os.getenv("AGENTX_URL") or MOCK .. "/agentx",
  api_key  = os.getenv("AGENTX_KEY") or "demo-key",
  bot_name = os.getenv("AGENTX_BOT") or "r3-218210",
}
local cz = converse.converz {
  base_url = os.getenv("CONVERZ_URL") or MOCK .. "/converz/api/v1",
  api_key  = os.getenv("CONVERZ_KEY") or "demo-key",
}

-- Conversations of the window with their messages (one pass each; the
-- message window is widened by a day: messages come after the start).
local transcripts = enrich.transcripts(ax, { start_time = os.getenv("SINCE") or "2025-01-01",
                                             end_time = os.getenv("UNTIL") or "2025-02-01" })

-- The Converz calls with those telephony ids, 100 ids a request.
local function telephony_id(t)
  local meta = t.conversation.metadata
  return type(meta) == "table" and type(meta.vendor_call_id) == "string" and meta.vendor_call_id or nil
end
local ids = {}
for _, t in ipairs(transcripts) do ids[#ids + 1] = telephony_id(t) end
local calls = enrich.calls_by_vendor_id(cz, ids, { columns = { "rep_name" } })

-- Write back: { call_id = {...}, bot_transcript = {...} }, columnar.
local matches = {}
for _, t in ipairs(transcripts) do
  local call = calls[telephony_id(t) or ""]
  if call and t.transcript ~= "" then matches[#matches + 1] = { call, t.transcript } end
end
local res = cz:update_calls(enrich.columns(matches, "bot_transcript"))
print(("%d conversations, %d with a telephony id, %d matched Converz calls; %d rows updated in %d request(s)")
  :format(#transcripts, #ids, #matches, res.rows, res.requests))
if matches[1] then
  local call, text = matches[1][1], matches[1][2]
  print(("call %s (%s):\n%s"):format(tostring(call.call_id), call.rep_name, text))
end
