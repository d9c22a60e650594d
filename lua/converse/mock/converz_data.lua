--- Converz data: deterministic reps and calls, and a fast call-row renderer.
-- Every call row is a pure function of (seed, i), so the store keeps only its
-- rendered JSON and the columns it filters on; the full row is regenerated
-- when a POST changes it or a `columns=` request needs it.
-- @module converse.mock.converz_data
local json = require "converse.mock.json"
local data = require "converse.mock.data"

local floor, format, concat = math.floor, string.format, table.concat
local quote, null = json.quote, json.null

local M = {}

M.CALL_COLUMNS = { "call_id", "vendor_call_id", "rep_id", "rep_name", "vendor", "campaign",
  "subcampaign", "department", "date", "start_time", "end_time", "duration", "direction",
  "language", "sentiment", "score", "resolved", "tags", "summary", "customer_phone" }
M.REP_COLUMNS = { "rep_id", "name", "email", "department", "team", "active", "hire_date",
  "manager", "tags" }
--- Columns the call store keeps for every row (filters and /report groups).
M.KEPT = { "call_id", "rep_id", "vendor", "campaign", "subcampaign", "department", "date", "start_time",
  "vendor_call_id", "duration", "resolved", "direction", "language" }

M.VENDORS = { "Five9", "Genesys", "Talkdesk", "Aircall", "RingCentral" }
M.CAMPAIGNS = { "Spring Sale", "Retention Q3", "Onboarding", "Win-back", "Upsell 🚀" }
M.SUBCAMPAIGNS = { "A", "B", "Control", "Email follow-up", "VIP" }
M.DEPARTMENTS = { "Sales", "Support", "Billing", "Retention" }
local LANGS = { "en", "nl", "de", "fr", "es", "ja" }
local TAGS = { "callback", "escalated", "vip", "refund", "churn-risk", "upsell" }
local OPENERS, TOPICS = data.OPENERS, data.TOPICS   -- shared with the other vendors
local OUTCOMES = {
  "Agent explained the options and the customer agreed to upgrade; a confirmation e-mail was sent.",
  "Issue resolved on the call ✅ after checking the account history and recent orders.",
  "Escalated to tier 2; ticket ID follows. Customer asked to be kept informed by SMS.",
  "Customer will call back tomorrow.\nNo further action needed until then.",
  "Refund issued\tand confirmation e-mailed; customer thanked the agent for the quick help.",
  "Agent could not verify identity; call ended 🚫 and the customer was asked to use the app.",
  "Customer was happy 😊 and rated the call 5/5, mentioning the agent by name.",
  "Offered a 10% discount – customer declined and asked for a written quote instead.",
}

-- Strings of `list` and their JSON literals (without the surrounding quotes).
local function escaped(list)
  local out = {}
  for i, s in ipairs(list) do out[i] = quote(s):sub(2, -2) end
  return out
end
local E_OPENERS, E_TOPICS, E_OUTCOMES = escaped(OPENERS), escaped(TOPICS), escaped(OUTCOMES)

local MOD, MUL = 2147483647, 16807
local S = 1
local function rnd() S = (S * MUL) % MOD; return S end
local function int(a, b) return a + rnd() % (b - a + 1) end
local function chance(p) return (rnd() - 1) / (MOD - 1) < p end
local function seed_row(seed, i)
  S = (seed * 1000003 + i * 7919 + 12345) % MOD
  if S == 0 then S = 1 end
  rnd(); rnd()
end

--- Generate the reps.
-- @tparam number seed
-- @tparam number n
-- @treturn table list of rep rows
function M.reps(seed, n)
  local rng = data.rng(seed * 7 + 1)
  local reps = {}
  for i = 1, n do
    local name = rng:name()
    local tags = json.array()
    for _ = 1, rng:int(0, 2) do tags[#tags + 1] = rng:pick(TAGS) end
    reps[i] = {
      rep_id = data.slug(name:match("^(%S+)")) .. (499 + i), name = name,
      email = data.slug(name) .. "@example.com",
      department = M.DEPARTMENTS[(i - 1) % #M.DEPARTMENTS + 1],
      team = "Team " .. string.char(65 + (i - 1) % 5),
      active = not rng:chance(0.1),
      hire_date = data.datetime(1577836800 + rng:int(0, 1800) * 86400):sub(1, 10),
      manager = rng:chance(0.3) and null or ("Manager " .. rng:pick(data.LAST)),
      tags = tags,
    }
  end
  return reps
end

--- The decimal text of call i's id: 9007199254740993 + i - 1 (exact on LuaJIT too).
-- @tparam number i
-- @treturn string
function M.call_id(i)
  local lo = 254740993 + i - 1
  if lo < 1e9 then return "9007199" .. format("%09d", lo) end
  return format("%.0f", 9007199254740993 + i - 1)      -- only on 5.3+ with integers
end

local day_cache = {}
local function stamp(t)
  local day = floor(t / 86400)
  local d = day_cache[day]
  if not d then d = data.datetime(day * 86400):sub(1, 10); day_cache[day] = d end
  local s = t - day * 86400
  return d, format("%s %02d:%02d:%02d", d, floor(s / 3600), floor(s / 60) % 60, s % 60)
end

--- Generate call i (a full row) and, on request, its JSON text.
-- @tparam table ctx `{ seed, n, reps, t0, span }`
-- @tparam number i 1-based
-- @tparam boolean want_json also render the row
-- @treturn table row
-- @treturn string|nil JSON text
function M.call(ctx, i, want_json)
  seed_row(ctx.seed, i)
  local reps = ctx.reps
  local rep = reps[int(1, #reps)]
  local start = ctx.t0 + floor((i - 1) * ctx.span / ctx.n) + int(0, 59)
  local duration = int(15, 3600)
  local ntags = int(0, 3)
  local tags = json.array()
  for k = 1, ntags do tags[k] = TAGS[int(1, #TAGS)] end
  local uuid = format("%08x-%04x-4%03x-%x%03x-%06x%06x", rnd(), rnd() % 65536, rnd() % 4096,
                      8 + rnd() % 4, rnd() % 4096, rnd() % 16777216, rnd() % 16777216)
  local date, st = stamp(start)
  local _, et = stamp(start + duration)
  local vendor, campaign = int(1, #M.VENDORS), int(1, #M.CAMPAIGNS)
  local sub = chance(0.2) and 0 or int(1, #M.SUBCAMPAIGNS)
  local inbound, lang = chance(0.7), int(1, #LANGS)
  local sentiment = chance(0.1) and null or floor(rnd() % 2001 - 1000) / 1000
  local score = chance(0.15) and null or int(0, 100)
  local resolved = chance(0.65)
  local o, t1, oc = int(1, #OPENERS), int(1, #TOPICS), int(1, #OUTCOMES)
  local t2 = chance(0.6) and int(1, #TOPICS) or 0
  local ref = format("%06x", rnd() % 16777216)
  local phone = chance(0.2) and null or format("+61 4%02d %03d %03d", int(0, 99), int(0, 999), int(0, 999))
  local summary = OPENERS[o] .. " " .. TOPICS[t1] .. ". " .. OUTCOMES[oc]
  if t2 > 0 then summary = summary .. " Next step: " .. TOPICS[t2] .. " (ref " .. ref .. ")." end
  local row = {
    call_id = M.call_id(i), vendor_call_id = uuid, rep_id = rep.rep_id, rep_name = rep.name,
    vendor = M.VENDORS[vendor], campaign = M.CAMPAIGNS[campaign],
    subcampaign = sub == 0 and null or M.SUBCAMPAIGNS[sub], department = rep.department,
    date = date, start_time = st, end_time = et, duration = duration,
    direction = inbound and "inbound" or "outbound", language = LANGS[lang],
    sentiment = sentiment, score = score, resolved = resolved, tags = tags,
    summary = summary, customer_phone = phone,
  }
  if not want_json then return row end
  local q = ctx.quoted
  local tj = "[]"
  if ntags > 0 then
    local parts = {}
    for k = 1, ntags do parts[k] = q[tags[k]] end
    tj = "[" .. concat(parts, ",") .. "]"
  end
  local sj = E_OPENERS[o] .. " " .. E_TOPICS[t1] .. ". " .. E_OUTCOMES[oc]
  if t2 > 0 then sj = sj .. " Next step: " .. E_TOPICS[t2] .. " (ref " .. ref .. ")." end
  local text = concat({
    '{"call_id":', row.call_id, ',"vendor_call_id":"', uuid, '","rep_id":', q[rep.rep_id],
    ',"rep_name":', q[rep.name], ',"vendor":', q[row.vendor], ',"campaign":', q[row.campaign],
    ',"subcampaign":', sub == 0 and "null" or q[row.subcampaign],
    ',"department":', q[rep.department], ',"date":"', date, '","start_time":"', st,
    '","end_time":"', et, '","duration":', format("%d", duration),
    ',"direction":"', row.direction, '","language":"', row.language,
    '","sentiment":', sentiment == null and "null" or json.number(sentiment),
    ',"score":', score == null and "null" or format("%d", score),
    ',"resolved":', resolved and "true" or "false", ',"tags":', tj,
    ',"summary":"', sj, '","customer_phone":', phone == null and "null" or '"' .. phone .. '"', "}",
  })
  return row, text
end

--- Build the generation context (quoted-string cache included).
-- @tparam table opts `seed`, `calls`, `start_date`, `days`
-- @tparam table reps
-- @treturn table ctx
function M.context(opts, reps)
  local quoted = setmetatable({}, { __index = function(t, s)
    local v = quote(s); t[s] = v; return v
  end })
  return { seed = opts.seed or 1, n = opts.calls or 1000, reps = reps, quoted = quoted,
           t0 = data.parse_time(opts.start_date or "2025-01-01"),
           span = (opts.days or 90) * 86400 }
end

return M
