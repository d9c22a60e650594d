--- Sources: what a sync job reads.
--
-- A source is a table with
--   `name`, `key` (the primary-key field), `open(position, window, raw) -> pager`,
--   `windowed` (time-filtered in [start, stop) windows), `time(record) -> unix seconds`
--   (windowed sources), `window_size`, `lookback` (defaults for the job),
--   `columns` (documented fields, for csv and sqlite column order),
--   `fingerprint` (what the state must match: vendor, stream and query),
--   `client` (its converse.client, for retry and rate-limit events).
-- `open` starts a pager *after* `position` (a pager position, see
-- converse.pager) inside `window` ({start=, stop=} unix seconds).
--
-- The vendor streams' metadata (id field, time field, how a window becomes
-- query parameters) lives here, in `M.STREAMS`, not in the vendor modules.
-- @module converse.sync.streams
local core   = require "converse.core"
local errors = require "converse.errors"
local record = require "converse.sync.record"
local stime  = require "converse.time"

local type, pairs, ipairs, tostring, getmetatable, pcall, require =
  type, pairs, ipairs, tostring, getmetatable, pcall, require
local concat, sort = table.concat, table.sort
local usage = errors.usage

local M = {}

local DAY = 86400

-- Converz windows: `after`/`before` filter start_time inclusively with
-- second precision, so [start, stop) is after=start, before=stop-1.
local function converz_window(q, start, stop)
  q.after, q.before = stime.format(start), stime.format(stop - 1)
end
-- AgentX windows are half-open already: start_time <= t < end_time.
local function agentx_window(q, start, stop)
  q.start_time, q.end_time = start, stop
end

local function field_time(name)
  return function(rec)
    local v = rec[name]
    if type(v) == "number" then return v end
    if type(v) == "string" then return (stime.parse(v)) end
    return nil
  end
end

--- Vendor streams: vendor -> stream -> metadata.
-- `key` primary key; `query` default parameters (Converz pages of 2000
-- rows: a page is one transaction and one checkpoint); `time` the field the window filters on; `window`
-- sets a window's query parameters; `window_params` are the parameters the
-- job owns (refused in the user's query); `lookback` default (records of a
-- window still change after it is read: AgentX messages arrive after a
-- conversation's start, Converz summaries and analytics after a call).
M.STREAMS = {
  converz = {
    calls = { key = "call_id", time = "start_time", window = converz_window, query = { n_per_page = 2000 },
              window_params = { "after", "before" }, lookback = DAY, window_size = DAY,
              columns = { "call_id", "vendor_call_id", "rep_id", "rep_name", "vendor", "campaign",
                          "subcampaign", "department", "date", "start_time", "end_time", "duration",
                          "direction", "language", "sentiment", "score", "resolved", "tags", "summary",
                          "customer_phone" } },
    reps  = { key = "rep_id", query = { n_per_page = 2000 },
              columns = { "rep_id", "name", "email", "department", "team", "active",
                                          "hire_date", "manager", "tags" } },
  },
  agentx = {
    conversations = { key = "_id", time = "startTime", window = agentx_window,
                      window_params = { "start_time", "end_time" }, lookback = DAY, window_size = DAY,
                      columns = { "_id", "startTime", "locale", "metadata", "tags", "userMessageCount",
                                  "lastActionAt" } },
    messages = { key = "_id", time = "time", window = agentx_window,
                 window_params = { "start_time", "end_time" }, lookback = DAY, window_size = DAY,
                 columns = { "_id", "time", "type", "conversationId", "userActionType", "userInput",
                             "outMsg" } },
  },
  converseiq = {
    contacts = { key = "id", columns = { "id", "name", "email", "phone", "ip", "origin", "description",
                                         "country", "zip_code", "city", "state", "address", "company",
                                         "lang", "created_at", "updated_at" } },
    chats = { key = "id", columns = { "id", "title", "channel", "channel_type", "contact", "agent", "bot",
                                      "status", "created_at", "updated_at", "last_message_at" } },
    team = { key = "id", columns = { "id", "name", "email", "role", "status", "created_at" } },
  },
  converra = {
    agents = { key = "id" },
    conversations = { key = "id" },
  },
}
M.STREAMS.deepconverse = M.STREAMS.agentx

--- The vendors, in the order of the command line's help.
M.VENDORS = { "converz", "agentx", "converseiq", "converra" }

--- The stream names of a vendor, sorted.
function M.names(vendor)
  local list = {}
  for name in pairs(M.STREAMS[vendor] or {}) do list[#list + 1] = name end
  sort(list)
  return list
end

local MODULES = { converz = "converse.converz", agentx = "converse.agentx",
                  converseiq = "converse.converseiq", converra = "converse.converra" }

--- Which vendor a vendor object belongs to ("converz" ...), or nil.
function M.vendor_of(api)
  if type(api) ~= "table" then return nil end
  local mt = getmetatable(api)
  for name, mod in pairs(MODULES) do
    local ok, m = pcall(require, mod)
    if ok and m.class == mt then return name end
  end
  return nil
end

local function copy(t)
  local c = {}
  for k, v in pairs(t or {}) do c[k] = v end
  return c
end

--- A vendor stream as a source.
-- @param api a vendor object (`converse.converz{...}`, `converse.agentx{...}` ...)
-- @tparam string stream "calls", "conversations", "contacts" ...
-- @tparam[opt] table query extra query parameters of the list method
--   (not the window's own: `after`/`before`, `start_time`/`end_time`)
-- @usage sync.stream(ax, "messages", { per_page = 1000 })
function M.stream(api, stream, query)
  local vendor = M.vendor_of(api)
  if not vendor then
    usage("sync.stream: a vendor object expected (converse.converz{...}, converse.agentx{...}, "
      .. "converse.converseiq{...} or converse.converra{...})")
  end
  local meta = M.STREAMS[vendor][stream]
  if not meta then
    usage(("sync.stream: %s has no stream %q (streams: %s)"):format(vendor, tostring(stream),
      concat(M.names(vendor), ", ")))
  end
  if query ~= nil then errors.check(query, "table", "query") end
  local q0 = copy(meta.query)                  -- the stream's defaults (a page is a checkpoint)
  for k, v in pairs(query or {}) do q0[k] = v end
  for _, p in ipairs(meta.window_params or {}) do
    if q0[p] ~= nil then
      usage(("sync.stream: %s is set by the job's windows (use since/until)"):format(p))
    end
  end
  for _, p in ipairs { "page", "cursor" } do
    if q0[p] ~= nil then usage(("sync.stream: %s is set by the job's checkpoints"):format(p)) end
  end
  local method = api[stream]
  return {
    name = vendor .. "/" .. stream, vendor = vendor, stream = stream, key = meta.key,
    windowed = meta.window ~= nil, time = meta.time and field_time(meta.time),
    window_size = meta.window_size, lookback = meta.lookback, columns = meta.columns,
    fingerprint = core.fingerprint(vendor .. "\n" .. stream .. "\n" .. core.json_encode(q0, { sort_keys = true })),
    client = api.client,
    open = function(position, window, raw)
      local q = copy(q0)
      if window then meta.window(q, window.start, window.stop) end
      if position then
        if position.page ~= nil then q.page = position.page
        elseif position.cursor ~= nil then q.cursor = position.cursor end
      end
      return method(api, q, { raw = raw or false })
    end,
  }
end

--- A source from your own resumable pager factory.
-- @tparam table opts `name`, `key` (id field), `pager = function(resume, window) -> pager`
--   (pass `resume` to `paginate{ resume = resume }`; `window` is {start, stop} or nil),
--   and for time-windowed sources `time = function(record) -> unix seconds` (or a field name),
--   `window_size`, `lookback`; optional `columns`, `client`, `fingerprint`
-- @usage sync.source{ name = "things", key = "id",
--   pager = function(resume) return api:paginate("/things", { resume = resume }) end }
function M.source(opts)
  errors.check(opts, "table", "source options")
  if type(opts.pager) ~= "function" then usage("sync.source: pager (a function) is required") end
  if type(opts.key) ~= "string" then usage("sync.source: key (the id field) is required") end
  local time = opts.time
  if type(time) == "string" then time = field_time(time) end
  if time ~= nil and type(time) ~= "function" then usage("sync.source: time must be a function or a field") end
  local windowed = opts.windowed
  if windowed == nil then windowed = time ~= nil end
  if windowed and not time then usage("sync.source: a windowed source needs time") end
  local factory = opts.pager
  return {
    name = opts.name or "source", key = opts.key, windowed = windowed, time = time,
    window_size = opts.window_size and stime.duration(opts.window_size) or nil,
    lookback = opts.lookback and stime.duration(opts.lookback) or nil,
    columns = opts.columns, client = opts.client, fingerprint = opts.fingerprint,
    stream = opts.table,
    open = function(position, window, raw)
      local pager = factory(position, window)
      if raw then record.raw(pager) end
      return pager
    end,
  }
end

return M
