-- Instructions, not seconds (issue 12): the floor and the streaming decoder
-- of bench/json.lua on the same 20,000 rows under valgrind's callgrind,
-- counting only their timed parts (the floor's row iterator; the decoder's
-- feed/next/finish). Instruction counts do not move with the machine's
-- load, so this ratio is the stable companion of bench/json.lua's times,
-- which on a shared host swing by tens of percent between runs (the
-- counts themselves vary by a few percent: Lua seeds its string hashes at
-- random, and the heap's addresses differ; each is the median of 3). Cache
-- misses and mispredicted branches cost time but no instructions: the time
-- ratio is the higher one.
--
--   lua5.4 bench/instr.lua [--rows 20000]        (needs valgrind)
-- Note: valgrind counts each byte of a `rep movsb` copy as an instruction;
-- glibc copies the decoder's 64 KiB input chunks that way: about one
-- instruction per input byte (11 M of the decoder's count) that takes no
-- such time. They are counted.
package.path = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/?.lua;" .. package.path
local common = require "common"
local ROOT, FLAVOUR = common.ROOT, common.FLAVOUR

local rows = 20000
for i = 1, #arg do if arg[i] == "--rows" then rows = tonumber(arg[i + 1]) end end
local path = common.reference_body(rows)
local LUA = rawget(_G, "jit") and "luajit" or "lua5.4"

local TOGGLE = {
  floor = "--toggle-collect=rows_next",
  stream = "--toggle-collect=dec_next --toggle-collect=dec_feed --toggle-collect=dec_finish",
}
local function count(case)
  local cmd = ("cd %q && valgrind --tool=callgrind --callgrind-out-file=/dev/null %s %s"
    .. " bench/json.lua --case %s %s 2>&1"):format(ROOT, TOGGLE[case], LUA, case, path)
  local p = io.popen(cmd)
  local out = p:read("a")
  p:close()
  local n = out:match("Collected : (%d+)")
  assert(n, "callgrind failed for " .. case .. ":\n" .. out)
  return tonumber(n)
end

local function median3(case)
  local t = { count(case), count(case), count(case) }
  table.sort(t)
  return t[2]
end

local floor, stream = median3("floor"), median3("stream")
print(("Instructions (callgrind) — %s, %d rows, timed parts only"):format(FLAVOUR, rows))
print(("  floor (bench/floor.c)               %6.1f M  %6.0f a row"):format(floor / 1e6, floor / rows))
print(("  streaming decoder, 64 KiB chunks    %6.1f M  %6.0f a row  %5.2fx floor")
  :format(stream / 1e6, stream / rows, stream / floor))
