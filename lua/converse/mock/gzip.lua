--- gzip without a compression library: a valid gzip member whose deflate
-- stream uses stored (uncompressed) blocks, plus a table-driven CRC-32.
-- Clients decode it like any gzip body; it only does not get smaller.
-- Bit operations come from LuaJIT's `bit` or from Lua 5.3+ operators
-- (compiled with `load` so this file parses under both).
-- @module converse.mock.gzip
local char, byte, sub, concat, floor = string.char, string.byte, string.sub, table.concat, math.floor

local M = {}

local crc_update
if _G.bit then                                   -- LuaJIT
  local bit = require "bit"
  local bxor, band, rshift = bit.bxor, bit.band, bit.rshift
  local T = {}
  for i = 0, 255 do
    local c = i
    for _ = 1, 8 do
      if band(c, 1) == 1 then c = bxor(0xEDB88320, rshift(c, 1)) else c = rshift(c, 1) end
    end
    T[i] = c
  end
  crc_update = function(crc, s)
    crc = bit.bnot(crc)
    for i = 1, #s do crc = bxor(rshift(crc, 8), T[band(bxor(crc, byte(s, i)), 0xFF)]) end
    crc = bit.bnot(crc)
    if crc < 0 then crc = crc + 4294967296 end
    return crc
  end
else
  crc_update = load([[
    local byte = string.byte
    local T = {}
    for i = 0, 255 do
      local c = i
      for _ = 1, 8 do
        if c & 1 == 1 then c = 0xEDB88320 ~ (c >> 1) else c = c >> 1 end
      end
      T[i] = c
    end
    return function(crc, s)
      crc = crc ~ 0xFFFFFFFF
      for i = 1, #s do crc = (crc >> 8) ~ T[(crc ~ byte(s, i)) & 0xFF] end
      return crc ~ 0xFFFFFFFF
    end
  ]])()
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
