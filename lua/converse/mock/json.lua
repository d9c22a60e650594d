--- A small, independent JSON codec for the mock server.
-- The mock is the oracle the library's C codec is tested against, so it does
-- not reuse that codec: a bug there must not hide itself by appearing on both
-- sides. Integers are written with all their digits (never through cjson),
-- `json.raw(text)` splices pre-rendered JSON (big ids on LuaJIT, cached rows),
-- and `json.ordered(t, keys)` fixes the key order of an object.
-- Decoding keeps integer literals exact: Lua integers on 5.3+, and on LuaJIT
-- the decimal text for integers beyond 2^53.
-- @module converse.mock.json
local type, pairs, next, tostring, tonumber, setmetatable, getmetatable =
      type, pairs, next, tostring, tonumber, setmetatable, getmetatable
local format, byte, char, sub, find, gsub = string.format, string.byte, string.char,
      string.sub, string.find, string.gsub
local concat, sort, floor, huge = table.concat, table.sort, math.floor, math.huge
local mtype = math.type

local M = {}

-- The null sentinel: the same lightuserdata as converse.null / cjson.null
-- when one of them is available, so values compare equal across codecs.
do
  local ok, core = pcall(require, "converse.core")
  if ok and core.null ~= nil then M.null = core.null
  else
    local okc, cjson = pcall(require, "cjson")
    M.null = okc and cjson.null or setmetatable({}, { __tostring = function() return "null" end })
  end
end
local null = M.null

local ARRAY = { __name = "converse.mock.json.array" }
local RAW = { __name = "converse.mock.json.raw" }
local ORDERED = {}   -- weak map table -> key list
setmetatable(ORDERED, { __mode = "k" })
M.array_mt = ARRAY

--- Mark a table as an array (so `{}` encodes as `[]`).
-- @tparam[opt] table t
-- @treturn table
function M.array(t) return setmetatable(t or {}, ARRAY) end

--- Wrap pre-rendered JSON text so the encoder copies it verbatim.
-- @tparam string text valid JSON
-- @treturn table
function M.raw(text) return setmetatable({ text }, RAW) end

--- Fix the key order of an object (keys not listed follow, sorted).
-- @tparam table t
-- @tparam {string,...} keys
-- @treturn table t
function M.ordered(t, keys) ORDERED[t] = keys; return t end

local ESC = {
  ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f",
  ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t",
}
for i = 0, 31 do
  local c = char(i)
  if not ESC[c] then ESC[c] = format("\\u%04x", i) end
end
ESC["\127"] = "\\u007f"

--- Encode a string as a JSON string literal (UTF-8 passes through).
-- @tparam string s
-- @treturn string
local function quote(s)
  if find(s, '[%c"\\]') then s = gsub(s, '[%c"\\]', ESC) end
  return '"' .. s .. '"'
end
M.quote = quote

--- Encode a number the way the library expects (integers exact).
-- @tparam number n
-- @treturn string
local function number(n)
  if mtype and mtype(n) == "integer" then return format("%d", n) end
  if n ~= n or n == huge or n == -huge then error("json: cannot encode NaN or Inf", 0) end
  if floor(n) == n and n > -2^53 and n < 2^53 then return format("%.0f", n) end
  local s = format("%.14g", n)
  if tonumber(s) ~= n then s = format("%.17g", n) end
  return s
end
M.number = number

local encode_value

local function encode_table(t, out, n, depth)
  if depth > 1000 then error("json: nesting too deep", 0) end
  local mt = getmetatable(t)
  if mt == RAW then n = n + 1; out[n] = t[1]; return n end
  local len = #t
  local is_array = mt == ARRAY or len > 0
  if not is_array and mt ~= nil and mt.__name == "converse.array" then is_array = true end
  if is_array and mt ~= ARRAY and next(t) ~= nil then
    local count = 0
    for _ in pairs(t) do count = count + 1 end
    if count ~= len then is_array = false end
  end
  if is_array then
    n = n + 1; out[n] = "["
    for i = 1, len do
      if i > 1 then n = n + 1; out[n] = "," end
      n = encode_value(t[i], out, n, depth + 1)
    end
    n = n + 1; out[n] = "]"
    return n
  end
  local keys, seen = {}, {}
  local order = ORDERED[t]
  if order then
    for i = 1, #order do
      local k = order[i]
      if t[k] ~= nil and not seen[k] then keys[#keys + 1] = k; seen[k] = true end
    end
  end
  local rest = {}
  for k in pairs(t) do
    if type(k) ~= "string" then
      if type(k) == "number" then k = tostring(k) else error("json: bad key type " .. type(k), 0) end
    end
    if not seen[k] then rest[#rest + 1] = k end
  end
  sort(rest)
  for i = 1, #rest do keys[#keys + 1] = rest[i] end
  n = n + 1; out[n] = "{"
  for i = 1, #keys do
    local k = keys[i]
    if i > 1 then n = n + 1; out[n] = "," end
    n = n + 1; out[n] = quote(k)
    n = n + 1; out[n] = ":"
    local v = t[k]
    if v == nil then v = t[tonumber(k)] end
    n = encode_value(v, out, n, depth + 1)
  end
  n = n + 1; out[n] = "}"
  return n
end

encode_value = function(v, out, n, depth)
  local tv = type(v)
  local s
  if tv == "string" then s = quote(v)
  elseif tv == "number" then s = number(v)
  elseif tv == "boolean" then s = v and "true" or "false"
  elseif v == nil or v == null then s = "null"
  elseif tv == "table" then return encode_table(v, out, n, depth)
  else error("json: cannot encode " .. tv, 0) end
  n = n + 1; out[n] = s
  return n
end

--- Encode a Lua value as JSON text.
-- @param v value (tables, strings, numbers, booleans, `json.null`)
-- @treturn string
function M.encode(v)
  local out = {}
  local n = encode_value(v, out, 0, 0)
  return concat(out, "", 1, n)
end

---------------------------------------------------------------------------
-- Decoder: recursive descent over string.find; errors are strings
-- "json: <what> at byte <n>".

local function utf8_char(c)
  if c < 0x80 then return char(c)
  elseif c < 0x800 then return char(0xC0 + floor(c / 64), 0x80 + c % 64)
  elseif c < 0x10000 then
    return char(0xE0 + floor(c / 4096), 0x80 + floor(c / 64) % 64, 0x80 + c % 64)
  end
  return char(0xF0 + floor(c / 262144), 0x80 + floor(c / 4096) % 64,
              0x80 + floor(c / 64) % 64, 0x80 + c % 64)
end

local SIMPLE = { ['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b", f = "\f",
                 n = "\n", r = "\r", t = "\t" }
local MAX_SAFE = 2^53

local function fail(what, pos) error(format("json: %s at byte %d", what, pos), 0) end

local decode_value

local function skip(s, pos)
  local _, e = find(s, "^[ \t\r\n]*", pos)
  return e + 1
end

local function decode_string(s, pos)          -- pos at the opening quote
  local i = pos + 1
  local e = find(s, '["\\]', i)
  if not e then fail("unterminated string", pos) end
  if byte(s, e) == 34 then return sub(s, i, e - 1), e + 1 end
  local parts, n = {}, 0
  while true do
    e = find(s, '["\\]', i)
    if not e then fail("unterminated string", pos) end
    n = n + 1; parts[n] = sub(s, i, e - 1)
    if byte(s, e) == 34 then return concat(parts), e + 1 end
    local c = sub(s, e + 1, e + 1)
    if c == "u" then
      local hex = sub(s, e + 2, e + 5)
      local cp = find(hex, "^%x%x%x%x$") and tonumber(hex, 16)
      if not cp then fail("bad \\u escape", e) end
      i = e + 6
      if cp >= 0xD800 and cp <= 0xDBFF and sub(s, i, i + 1) == "\\u" then
        local lo = tonumber(sub(s, i + 2, i + 5), 16)
        if lo and lo >= 0xDC00 and lo <= 0xDFFF then
          cp = 0x10000 + (cp - 0xD800) * 1024 + (lo - 0xDC00)
          i = i + 6
        end
      end
      n = n + 1; parts[n] = utf8_char(cp)
    else
      local r = SIMPLE[c]
      if not r then fail("bad escape", e) end
      n = n + 1; parts[n] = r
      i = e + 2
    end
  end
end

local function decode_number(s, pos)
  local _, e, int = find(s, "^(-?%d+)", pos)
  if not e then fail("unexpected character", pos) end
  local _, e2 = find(s, "^%.%d+", e + 1)
  local _, e3 = find(s, "^[eE][-+]?%d+", (e2 or e) + 1)
  if not e2 and not e3 then
    local v = tonumber(int)
    if mtype then
      local iv = math.tointeger(v)
      if iv then return iv, e + 1 end
      return v, e + 1
    end
    if v >= MAX_SAFE or v <= -MAX_SAFE then return int, e + 1 end
    return v, e + 1
  end
  local last = e3 or e2
  return tonumber(sub(s, pos, last)) + 0.0, last + 1
end

decode_value = function(s, pos, depth)
  pos = skip(s, pos)
  local c = byte(s, pos)
  if c == 34 then return decode_string(s, pos)
  elseif c == 123 then                                   -- {
    if depth > 1000 then fail("nesting too deep", pos) end
    local t = {}
    pos = skip(s, pos + 1)
    if byte(s, pos) == 125 then return t, pos + 1 end
    while true do
      pos = skip(s, pos)
      if byte(s, pos) ~= 34 then fail("expected key", pos) end
      local k
      k, pos = decode_string(s, pos)
      pos = skip(s, pos)
      if byte(s, pos) ~= 58 then fail("expected ':'", pos) end
      local v
      v, pos = decode_value(s, pos + 1, depth + 1)
      t[k] = v
      pos = skip(s, pos)
      c = byte(s, pos)
      if c == 125 then return t, pos + 1 end
      if c ~= 44 then fail("expected ',' or '}'", pos) end
      pos = pos + 1
    end
  elseif c == 91 then                                    -- [
    if depth > 1000 then fail("nesting too deep", pos) end
    local t, n = setmetatable({}, ARRAY), 0
    pos = skip(s, pos + 1)
    if byte(s, pos) == 93 then return t, pos + 1 end
    while true do
      local v
      v, pos = decode_value(s, pos, depth + 1)
      n = n + 1; t[n] = v
      pos = skip(s, pos)
      c = byte(s, pos)
      if c == 93 then return t, pos + 1 end
      if c ~= 44 then fail("expected ',' or ']'", pos) end
      pos = pos + 1
    end
  elseif c == 116 and sub(s, pos, pos + 3) == "true" then return true, pos + 4
  elseif c == 102 and sub(s, pos, pos + 4) == "false" then return false, pos + 5
  elseif c == 110 and sub(s, pos, pos + 3) == "null" then return null, pos + 4
  elseif c == nil then fail("unexpected end", pos)
  end
  return decode_number(s, pos)
end

--- Decode JSON text.
-- @tparam string s
-- @return value, or nil and an error message
function M.decode(s)
  if type(s) ~= "string" then return nil, "json: expected a string" end
  local ok, v, pos = pcall(decode_value, s, 1, 0)
  if not ok then return nil, v end
  pos = skip(s, pos)
  if pos <= #s then return nil, format("json: trailing data at byte %d", pos) end
  return v
end

--- True if `t` was decoded from a JSON array (or marked with `json.array`).
-- @tparam table t
-- @treturn boolean
function M.is_array(t)
  local mt = getmetatable(t)
  return mt == ARRAY or (mt ~= nil and mt.__name == "converse.array")
end

return M
