--- gzip without a compression library: a valid gzip member whose deflate
-- stream uses stored (uncompressed) blocks, plus a table-driven CRC-32.
-- Clients decode it like any gzip body; it only does not get smaller.
-- Bit operations come from LuaJIT's `bit`, Lua 5.2's `bit32`, Lua 5.3+
-- operators (compiled with `load` so this file parses everywhere), or, on
-- plain Lua 5.1, arithmetic (slow, but the mock is a test server there).
-- @module converse.mock.gzip
local char, byte, sub, concat, floor = string.char, string.byte, string.sub, table.concat, math.floor

local M = {}

-- The CRC-32 table and update function, given xor, and, shift-right on
-- unsigned 32-bit values.
local function make_crc(bxor, band, rshift)
  local T = {}
  for i = 0, 255 do
    local c = i
    for _ = 1, 8 do
      if band(c, 1) == 1 then c = bxor(0xEDB88320, rshift(c, 1)) else c = rshift(c, 1) end
    end
    T[i] = c
  end
  return function(crc, s)
    crc = bxor(crc, 0xFFFFFFFF)
    for i = 1, #s do crc = bxor(rshift(crc, 8), T[band(bxor(crc, byte(s, i)), 0xFF)]) end
    crc = bxor(crc, 0xFFFFFFFF)
    if crc < 0 then crc = crc + 4294967296 end      -- LuaJIT's bit ops are signed
    return crc
  end
end

-- xor of unsigned 32-bit numbers with arithmetic only (plain Lua 5.1).
local function arith_xor(a, b)
  local r, p = 0, 1
  for _ = 1, 32 do
    local x, y = a % 2, b % 2
    if x ~= y then r = r + p end
    a, b, p = (a - x) / 2, (b - y) / 2, p * 2
  end
  return r
end

local crc_update
if _G.bit then                                   -- LuaJIT
  local bit = require "bit"
  crc_update = make_crc(bit.bxor, bit.band, bit.rshift)
elseif _G.bit32 then                             -- Lua 5.2
  crc_update = make_crc(bit32.bxor, bit32.band, bit32.rshift)
elseif _VERSION == "Lua 5.1" then
  crc_update = make_crc(arith_xor, function(a, m) return a % (m + 1) end,
                        function(a, n) return floor(a / 2 ^ n) end)
else
  crc_update = load([[
    local make_crc = ...
    return make_crc(function(a, b) return a ~ b end, function(a, b) return a & b end,
                    function(a, n) return a >> n end)
  ]])(make_crc)
end

--- CRC-32 (IEEE) of a string.
-- @tparam string s
-- @treturn number
function M.crc32(s) return crc_update(0, s) end

local function le32(n)
  n = n % 4294967296
  return char(n % 256, floor(n / 256) % 256, floor(n / 65536) % 256, floor(n / 16777216) % 256)
end

--- gzip-encode a string (stored deflate blocks).
-- @tparam string s
-- @treturn string
function M.encode(s)
  local out = { "\31\139\8\0\0\0\0\0\0\255" }
  local n = #s
  local pos = 1
  repeat
    local len = n - pos + 1
    if len > 65535 then len = 65535 end
    local final = (pos + len > n) and 1 or 0
    out[#out + 1] = char(final, len % 256, floor(len / 256), (65535 - len) % 256,
                         floor((65535 - len) / 256))
    out[#out + 1] = sub(s, pos, pos + len - 1)
    pos = pos + len
  until pos > n
  out[#out + 1] = le32(M.crc32(s))
  out[#out + 1] = le32(n)
  return concat(out)
end

return M
