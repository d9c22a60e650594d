--- Mock of the AgentX Support (formerly DeepConverse) Export API (seeds 001,
-- 004), mounted at `/agentx`: `GET /conversations/export/v1/conversations`
-- and `/messages`. Required `start_time`, `end_time` (unix seconds, window
-- [start_time, end_time)), `bot_name`; `per_page` 1..1000 (default 100);
-- opaque `cursor` until it is null; body `{"data":[...],"cursor":...}` with
-- the cursor after the data. Rate limit: `agentx_rate` requests (default 3)
-- per `agentx_window` seconds (default 1) per endpoint and key: 429 +
-- Retry-After beyond it.
-- @module converse.mock.agentx
local json = require "converse.mock.json"
local data = require "converse.mock.data"
local cz   = require "converse.mock.converz_data"
local util = require "converse.mock.util"

local type, tostring, tonumber, ipairs, setmetatable = type, tostring, tonumber, ipairs, setmetatable
local format, char, byte, gsub, match = string.format, string.char, string.byte, string.gsub,
      string.match
local concat, floor, ceil, sort = table.concat, math.floor, math.ceil, table.sort
local quote, null, ordered = json.quote, json.null, json.ordered

local M = {}
local mt = { __index = M }

M.prefix = "/agentx"
M.auth = { header = "x-api-key" }
M.MAX_PER_PAGE = 1000
M.DEFAULT_PER_PAGE = 100
local BASE = "/conversations/export/v1/"

local function err(status, msg, headers) return util.json(status, { message = msg }, headers) end

local QUESTIONS = { "my camera is offline", "Tell me about Comfort Headphones", "where is my order?",
  "¿Dónde está mi pedido?", "reset password", "I was charged twice 😡", "talk to a human",
  "Does it work with \"Alexa\"?", "refund", "Wie lange dauert der Versand?" }
local BOT_TEXT = { "Hello 👋 I am a virtual assistant. How can I help you?",
  "Here are the details for Comfort Headphones:\n\n💲 Price: $89.99\n📦 In Stock: Yes",
  "Did that answer your question?", "Let me connect you with an agent…",
  "Please check the path Settings\\Devices\\Camera.", "Your order #A-1029 ships tomorrow 🚚",
  "Sorry, I didn't get that." }
local TAGS = { "guideInteraction", "resolved", "informed", "liveChat", "escalated" }
local LOCALES = { "en_us", "en_gb", "de_de", "es_es", "fr_fr" }

local function gen(self)
  local o = self.opts
  local rng = data.rng((o.seed or 1) * 13 + 5)
  local n = o.conversations or 200
  local t0 = data.parse_time(o.start_date or "2025-01-01")
  local span = (o.days or 90) * 86400
  local convs, msgs = {}, {}
  -- A voice bot's conversation i carries the telephony id of Converz call i
  -- (custom metadata), so the two vendors' records can be matched.
  local calls = cz.context(o, cz.reps(o.seed or 1, o.reps or 50))
  for i = 1, n do
    local id = rng:hex(32)
    local start = t0 + floor((i - 1) * span / n) + rng:int(0, 30)
    local locale = rng:pick(LOCALES)
    local question = rng:pick(QUESTIONS)
    local tags = json.array()
    for _ = 1, rng:int(0, 2) do tags[#tags + 1] = rng:pick(TAGS) end
    local t = start + 0.0
    local list, lines, users = {}, {}, 0
    for k = 1, rng:int(2, 8) do
      t = t + rng:int(1, 30) + rng:int(0, 999) / 1000
      local m
      local kind = k % 2 == 0 and "UserInput" or (rng:chance(0.7) and "Question" or "BotMessage")
      if kind == "UserInput" then
        local text = k == 2 and question or rng:chat_line()
        users = users + 1
        lines[#lines + 1] = "User:\t" .. text
        m = ordered({ _id = rng:uuid(), time = floor(t), type = kind, userActionType =
          rng:chance(0.8) and "text" or "quickReply", userInput = text, conversationId = id },
          { "_id", "time", "type", "userActionType", "userInput", "conversationId" })
      else
        local steps = json.array()
        for _ = 1, rng:int(1, 2) do
          local text = rng:pick(BOT_TEXT)
          steps[#steps + 1] = { text = text }
          lines[#lines + 1] = "Bot:\t" .. text
        end
        local out = ordered({ steps = steps }, { "steps", "options" })
        if kind == "Question" and rng:chance(0.5) then
          out.options = json.array({ { txt = "Yes" }, { txt = "No" } })
        end
        m = ordered({ _id = rng:hex(32), time = t, type = kind, outMsg = out, conversationId = id },
          { "_id", "time", "type", "outMsg", "conversationId" })
      end
      m.json = nil
      list[#list + 1] = { time = m.time, text = json.encode(m), conv = id }
    end
    local last = t + rng:int(1, 300)
    local conv = ordered({
      _id = id, startTime = start, locale = locale,
      metadata = ordered({ locale = locale,
        browser_visitorType = rng:chance(0.5) and "repeat" or "new",
        browser_screenResolution = rng:pick({ "1728x1117", "1920x1080", "390x844" }),
        browser_localTime = (start + 30) * 1000 + rng:int(0, 999),
        draft = rng:chance(0.3), question = question,
        transcript = concat(lines, "\n"), guideNodeCount = rng:int(0, 9),
        custom_empty = rng:chance(0.2) and json.array() or null,
        vendor_call_id = i <= calls.n and cz.call(calls, i, false).vendor_call_id or nil },
        { "locale", "browser_visitorType", "browser_screenResolution", "browser_localTime",
          "draft", "question", "transcript", "guideNodeCount", "custom_empty", "vendor_call_id" }),
      tags = tags, userMessageCount = users,
      lastActionAt = data.iso(last):sub(1, 19) .. format(".%06d", rng:int(0, 999999)),
    }, { "_id", "startTime", "locale", "metadata", "tags", "userMessageCount", "lastActionAt" })
    convs[i] = { time = start, text = json.encode(conv), id = id, messages = list }
    for _, m in ipairs(list) do msgs[#msgs + 1] = m end
  end
  sort(msgs, function(a, b) return a.time < b.time end)
  self.convs, self.msgs, self.by_id = convs, msgs, {}
  for _, c in ipairs(convs) do self.by_id[c.id] = c.messages end
end

--- Create the AgentX state.
-- @tparam table opts `seed`, `conversations` (200), `start_date`, `days`,
--   `agentx_rate` (3; 0 disables), `agentx_window` (1 second)
-- @treturn table vendor
function M.new(opts)
  local self = setmetatable({ opts = opts, hits = {} }, mt)
  gen(self)
  self.dirty = false
  return self
end

--- Forget rate-limit history (data is read-only).
function M:reset() self.hits = {} end

--- Sliding-window rate limit per endpoint and key.
-- @treturn table|nil 429 response
function M:limit(req, path, now)
  local rate = self.opts.agentx_rate
  if rate == nil then rate = 3 end
  if rate <= 0 then return nil end
  local window = self.opts.agentx_window or 1
  local key = (req.api_key or "") .. " " .. path
  local list = self.hits[key] or {}
  local keep = {}
  for _, t in ipairs(list) do if now - t < window then keep[#keep + 1] = t end end
  self.hits[key] = keep
  if #keep >= rate then
    local wait = ceil(keep[1] + window - now)
    if wait < 1 then wait = 1 end
    return err(429, "Too Many Requests", { { "Retry-After", tostring(wait) } })
  end
  keep[#keep + 1] = now
  return nil
end

-- Cursors: hex of "ax1|<index>" (opaque to clients).
local function make_cursor(index)
  return (gsub("ax1|" .. index, ".", function(c) return format("%02x", byte(c)) end))
end
local function read_cursor(s)
  if not match(s, "^%x+$") or #s % 2 == 1 then return nil end
  local text = gsub(s, "%x%x", function(h) return char(tonumber(h, 16)) end)
  return tonumber(match(text, "^ax1|(%d+)$"))
end

-- First index in `list` (sorted by .time) with time >= t.
local function lower_bound(list, t)
  local lo, hi = 1, #list + 1
  while lo < hi do
    local mid = floor((lo + hi) / 2)
    if list[mid].time < t then lo = mid + 1 else hi = mid end
  end
  return lo
end

local function export(_, req, list)
  local a = req.args
  for _, name in ipairs({ "start_time", "end_time", "bot_name" }) do
    if a[name] == nil or a[name] == "" then return err(400, name .. " is required") end
  end
  local t0, t1 = tonumber(a.start_time), tonumber(a.end_time)
  if not t0 or not t1 then return err(400, "start_time and end_time must be unix timestamps") end
  local per = util.int_arg(a, "per_page", M.DEFAULT_PER_PAGE)
  if not per or per < 1 or per > M.MAX_PER_PAGE then
    return err(400, "per_page must be between 1 and " .. M.MAX_PER_PAGE)
  end
  local from = lower_bound(list, t0)
  if a.cursor and a.cursor ~= "" then
    local i = read_cursor(a.cursor)
    if not i then return err(400, "invalid cursor") end
    from = i
  end
  local parts, n, i = {}, 0, from
  while i <= #list and n < per do
    local item = list[i]
    if item.time >= t1 then break end
    if item.time >= t0 then n = n + 1; parts[n] = item.text end
    i = i + 1
  end
  local more = i <= #list and list[i].time < t1
  local cursor = more and make_cursor(i) or nil
  if req.repeat_cursor then
    if type(req.repeat_cursor) == "string" then cursor = req.repeat_cursor
    else cursor = (a.cursor and a.cursor ~= "") and a.cursor or make_cursor(from) end
  end
  return util.raw(200, { '{"data":[', concat(parts, ","), '],"cursor":',
                         cursor and quote(cursor) or "null", "}" })
end

--- Handle a request under the prefix.
-- @tparam table req
-- @tparam string path relative to the prefix
-- @treturn table|nil response
function M:handle(req, path)
  if path == BASE .. "conversations" or path == BASE .. "conversations/" then
    if req.method ~= "GET" and req.method ~= "HEAD" then return err(405, "Method Not Allowed") end
    return export(self, req, self.convs)
  elseif path == BASE .. "messages" or path == BASE .. "messages/" then
    if req.method ~= "GET" and req.method ~= "HEAD" then return err(405, "Method Not Allowed") end
    local cid = req.args.conversation_id
    local list = self.msgs
    if cid and cid ~= "" then list = self.by_id[cid] or {} end
    return export(self, req, list)
  end
  return nil, "not_found"
end

--- 404 in the vendor's shape.
function M.not_found(what) return err(what == "method" and 405 or 404, what == "method" and
  "Method Not Allowed" or "Not Found") end

--- The vendor's 401 response.
-- @treturn table
function M.unauthorized() return err(401, "Unauthorized") end

return M
