--- Enrichment helpers the vendors' documents invite: AgentX conversations
-- joined with their messages (transcripts), Converz calls found by their
-- telephony id (`vendor_call_id`), and the write-back as one columnar
-- update (`converz:update_calls`, where a null leaves a value unchanged).
-- @module converse.sync.enrich
local converse = require "converse"
local errors   = require "converse.errors"
local stime    = require "converse.time"

local type, ipairs, pairs, tostring, tonumber = type, ipairs, pairs, tostring, tonumber
local sort, min = table.sort, math.min
local usage = errors.usage

local M = {}

M.WIDEN = 86400          -- messages arrive after a conversation's start
M.BATCH = 100            -- vendor_call_id values per Converz request

local function time_opt(v, name)
  local t, why = stime.parse(v)
  if not t then usage(name .. ": " .. tostring(why)) end
  return t
end

--- Transcripts of the AgentX conversations that started in [start_time, end_time).
-- Two passes, not one request per conversation: the conversations of the
-- window, then the messages of [start_time, end_time + widen) grouped by
-- conversation (a conversation's messages arrive after its start, so the
-- message window is widened; messages of conversations outside the window
-- are left out).
-- @param ax an AgentX object (`converse.agentx{...}`)
-- @tparam table opts `start_time`, `end_time` (UTC dates or unix seconds),
--   `widen` (duration, default "1d"), `per_page`
-- @treturn table array of `{ id =, conversation =, messages =, transcript = }`, by start time
-- @usage for _, t in ipairs(enrich.transcripts(ax, { start_time = "2025-07-01", end_time = "2025-07-02" })) do
--   print(t.id, t.transcript) end
function M.transcripts(ax, opts)
  errors.check(opts, "table", "transcripts options")
  local t0, t1 = time_opt(opts.start_time, "start_time"), time_opt(opts.end_time, "end_time")
  if t1 <= t0 then usage("end_time must be after start_time") end
  local widen = M.WIDEN
  if opts.widen ~= nil then
    local why
    widen, why = stime.duration(opts.widen)
    if not widen then usage("widen: " .. tostring(why)) end
  end
  local out, by_id = {}, {}
  for c in ax:conversations { start_time = t0, end_time = t1, per_page = opts.per_page } do
    local t = { id = c._id, conversation = c, messages = {} }
    out[#out + 1] = t
    by_id[c._id] = t
  end
  if #out > 0 then
    for m in ax:messages { start_time = t0, end_time = t1 + widen, per_page = opts.per_page } do
      local t = by_id[m.conversationId]
      if t then t.messages[#t.messages + 1] = m end
    end
  end
  for _, t in ipairs(out) do t.transcript = ax:transcript(t.messages) end
  sort(out, function(a, b)
    local sa, sb = tonumber(a.conversation.startTime) or 0, tonumber(b.conversation.startTime) or 0
    if sa ~= sb then return sa < sb end
    return tostring(a.id) < tostring(b.id)
  end)
  return out
end

--- Converz calls by their `vendor_call_id`, a batch of ids per request.
-- @param cz a Converz object (`converse.converz{...}`)
-- @tparam table ids array of vendor_call_id values (duplicates are fine)
-- @tparam[opt] table opts `columns` (only these, plus call_id and vendor_call_id),
--   `batch` (ids per request, default 100), and any /calls filter
-- @treturn table vendor_call_id -> call
function M.calls_by_vendor_id(cz, ids, opts)
  errors.check(ids, "table", "ids")
  opts = opts or {}
  local batch = opts.batch or M.BATCH
  local unique, seen = {}, {}
  for _, id in ipairs(ids) do
    if type(id) == "string" and id ~= "" and not seen[id] then seen[id] = true; unique[#unique + 1] = id end
  end
  local found = {}
  for first = 1, #unique, batch do
    local q = {}
    for k, v in pairs(opts) do if k ~= "batch" then q[k] = v end end
    if q.columns then
      local cols = { "call_id", "vendor_call_id" }
      for _, c in ipairs(q.columns) do
        if c ~= "call_id" and c ~= "vendor_call_id" then cols[#cols + 1] = c end
      end
      q.columns = cols
    end
    local part = {}
    for i = first, min(#unique, first + batch - 1) do part[#part + 1] = unique[i] end
    q.vendor_call_id = part
    for call in cz:calls(q) do found[call.vendor_call_id] = call end
  end
  return found
end

--- Columns for `converz:update_calls` from matches: `{ call_id = {...}, [column] = {...} }`.
-- Only the calls with a value are listed; everything else stays unchanged.
-- @tparam table pairs_ array of `{ call, value }`
-- @tparam string column the attribute to set
-- @treturn table columnar update (arrays)
function M.columns(pairs_, column)
  if type(column) ~= "string" or column == "" or column == "call_id" then
    usage("columns: the attribute name must be a string other than call_id")
  end
  local ids, values = converse.array {}, converse.array {}
  for _, p in ipairs(pairs_) do
    local call, value = p[1], p[2]
    if type(call) == "table" and call.call_id ~= nil and value ~= nil then
      ids[#ids + 1] = call.call_id
      values[#values + 1] = value
    end
  end
  return { call_id = ids, [column] = values }
end

return M
