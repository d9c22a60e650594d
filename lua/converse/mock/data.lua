--- Deterministic data generation for the mock: a seeded PRNG (Park–Miller,
-- exact in both integer and double arithmetic, so Lua 5.4 and LuaJIT produce
-- the same data) and generators for realistic names, ids, timestamps and
-- free text with unicode, emoji and characters that need JSON escapes.
-- @module converse.mock.data
local floor, format, date, concat = math.floor, string.format, os.date, table.concat
local setmetatable, tonumber = setmetatable, tonumber
local lower, gsub = string.lower, string.gsub

local M = {}
local mt = { __index = M }

local MOD, MUL = 2147483647, 16807

--- A new generator.
-- @tparam number seed any integer; equal seeds give equal sequences
-- @treturn table rng
function M.rng(seed)
  local s = floor(seed or 1) % MOD
  if s <= 0 then s = s + 1234567 end
  local self = setmetatable({ s = s }, mt)
  for _ = 1, 3 do self:next() end
  return self
end

--- Next raw value in [1, 2^31 - 2].
-- @treturn number
function M:next()
  local s = (self.s * MUL) % MOD
  self.s = s
  return s
end

--- Uniform float in [0, 1).
-- @treturn number
function M:float() return (self:next() - 1) / (MOD - 1) end

--- Uniform integer in [a, b].
-- @tparam number a
-- @tparam number b
-- @treturn number
function M:int(a, b) return a + floor(self:float() * (b - a + 1)) end

--- A random element of `list`.
-- @tparam table list
-- @return element
function M:pick(list) return list[self:int(1, #list)] end

--- True with probability `p`.
-- @tparam number p
-- @treturn boolean
function M:chance(p) return self:float() < p end

--- `n` lower-case hex digits.
-- @tparam number n
-- @treturn string
function M:hex(n)
  local out = {}
  for _ = 1, n, 4 do out[#out + 1] = format("%04x", self:int(0, 65535)) end
  local s = concat(out)
  return s:sub(1, n)
end

--- A version-4 style UUID.
-- @treturn string
function M:uuid()
  local h = self:hex(32)
  return format("%s-%s-4%s-%s%s-%s", h:sub(1, 8), h:sub(9, 12), h:sub(14, 16),
                ({ "8", "9", "a", "b" })[self:int(1, 4)], h:sub(18, 20), h:sub(21, 32))
end

M.FIRST = { "Kees", "Cas", "Kris", "Anna", "José", "Zoë", "Søren", "Łukasz", "Ayşe", "Mei",
            "Olivia", "Noah", "Liam", "Emma", "Sofía", "Mateo", "Yuki", "Priya", "Omar",
            "Fatima", "Chloé", "Björn", "Niamh", "Tomás", "Ingrid", "Dmitri", "Amara",
            "Lucas", "Hannah", "Raúl", "Ava", "Jin", "Leila", "Finn", "Maja", "Théo" }
M.LAST = { "de Vries", "Jansen", "O'Brien", "García", "Müller", "Nguyen", "Smith", "Kowalski",
           "Yılmaz", "Tanaka", "Rossi", "Dubois", "Andersson", "Okafor", "Silva", "Patel",
           "Cohen", "Ivanova", "MacLeod", "van den Berg", "Schröder", "Haddad", "Kim", "Brown" }
M.CITIES = { "Amsterdam", "Sydney", "Melbourne", "São Paulo", "Zürich", "Kraków", "Osaka",
             "Toronto", "Dublin", "Cape Town", "Reykjavík", "Austin" }
M.COMPANIES = { "Acme Pty Ltd", "Globex", "Initech", "Umbrella & Co", "Stark \"Industries\"",
                "Wayne Enterprises", "Hooli", "Vandelay Imports", "Soylent Corp", "Tyrell" }

--- A person's name (may contain non-ASCII letters and apostrophes).
-- @treturn string
function M:name() return self:pick(M.FIRST) .. " " .. self:pick(M.LAST) end

--- ASCII slug of a string ("Zoë O'Brien" -> "zoe.obrien").
-- @tparam string s
-- @treturn string
function M.slug(s)
  s = gsub(s, "[\128-\255]+", function(c)
    local map = { ["ë"] = "e", ["é"] = "e", ["ø"] = "o", ["Ł"] = "l", ["ş"] = "s", ["í"] = "i",
                  ["ü"] = "u", ["ö"] = "o", ["ı"] = "i", ["á"] = "a", ["ú"] = "u", ["ó"] = "o" }
    return map[c] or ""
  end)
  s = lower(s)
  s = gsub(s, "[^%w]+", ".")
  return s
end

M.OPENERS = {
  "Customer called about", "Caller asked for help with", "Client wanted to discuss",
  "Follow-up regarding", "Inbound enquiry on", "Customer complained about",
}
M.TOPICS = {
  "the \"Premium\" plan pricing 💳", "a late delivery 📦", "resetting their password 🔑",
  "a double charge on invoice #4471", "upgrading to fibre — 100 Mbit/s", "cancelling the contract 😞",
  "the C:\\Billing\\Export path not working", "a refund of €49.99", "delivery to Zürich 🇨🇭",
  "the mobile app crashing on iOS 17", "changing the billing address", "a warranty claim 🛠️",
  "the 日本語 support line", "porting a number", "a damaged parcel (photo attached)",
}
local OPENERS, TOPICS = M.OPENERS, M.TOPICS
local OUTCOMES = {
  "Agent explained the options and the customer agreed to upgrade.",
  "Issue resolved on the call ✅.",
  "Escalated to tier 2; ticket ID follows.",
  "Customer will call back tomorrow.\nNo further action needed.",
  "Refund issued\tand confirmation e-mailed.",
  "Agent could not verify identity; call ended 🚫.",
  "Customer was happy 😊 and rated the call 5/5.",
  "Offered a 10% discount – customer declined.",
}

--- A conversation summary: 1–3 sentences with unicode, emoji, quotes,
-- backslashes, newlines and tabs.
-- @treturn string
function M:summary()
  local parts = { self:pick(OPENERS) .. " " .. self:pick(TOPICS) .. "." }
  parts[#parts + 1] = self:pick(OUTCOMES)
  if self:chance(0.6) then
    parts[#parts + 1] = "Next step: " .. self:pick(TOPICS) .. " (ref " .. self:hex(6) .. ")."
  end
  return concat(parts, " ")
end

local CHAT_LINES = {
  "Hi, I need help with my order 📦", "Can you check my invoice?", "Thanks, that works!",
  "It still says \"pending\"", "My camera is offline", "How do I reset my password?",
  "Est-ce que vous parlez français ?", "¿Tienen envío a México?", "ok 👍",
  "The path is C:\\Users\\me", "Line one\nLine two", "",
}

--- A short chat line (may be empty, contain emoji, quotes, escapes).
-- @treturn string
function M:chat_line() return self:pick(CHAT_LINES) end

--- UTC "YYYY-MM-DD HH:MM:SS".
-- @tparam number t unix seconds
-- @treturn string
function M.datetime(t) return date("!%Y-%m-%d %H:%M:%S", floor(t)) end

--- UTC ISO-8601 "YYYY-MM-DDTHH:MM:SSZ".
-- @tparam number t unix seconds
-- @treturn string
function M.iso(t) return date("!%Y-%m-%dT%H:%M:%SZ", floor(t)) end

--- Unix seconds of a UTC "YYYY-MM-DD[ HH:MM[:SS]]" (or a number string).
-- @tparam string s
-- @treturn number|nil
function M.parse_time(s)
  if s == nil then return nil end
  local n = tonumber(s)
  if n then return n end
  local y, mo, d, rest = s:match("^(%d%d%d%d)%-(%d%d)%-(%d%d)(.*)$")
  if not y then return nil end
  local h, mi, sec = rest:match("^[ T](%d%d):(%d%d):?(%d*)")
  y, mo, d = tonumber(y), tonumber(mo), tonumber(d)
  -- days from civil (Howard Hinnant), exact in integer or double arithmetic
  local yy = mo <= 2 and y - 1 or y
  local era = floor(yy / 400)
  local yoe = yy - era * 400
  local mp = (mo + 9) % 12
  local doy = floor((153 * mp + 2) / 5) + d - 1
  local doe = yoe * 365 + floor(yoe / 4) - floor(yoe / 100) + doy
  local days = era * 146097 + doe - 719468
  return days * 86400 + (tonumber(h) or 0) * 3600 + (tonumber(mi) or 0) * 60 + (tonumber(sec) or 0)
end

return M
