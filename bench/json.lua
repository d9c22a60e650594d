-- JSON decode benchmark (SPEC §4, issue 12), one run, each case in its own
-- process so that its peak RSS (VmHWM) is its own:
--   the floor: the same tables built by bench/floor.c with no parsing
--   cjson.decode of the whole body
--   converse.json.decode of the whole body
--   the streaming decoder fed 64 KiB chunks, rows discarded as they come
-- Every case reads r.call_id of each row, as a consumer would.
--
--   lua5.4 bench/json.lua [--rows 200000]
-- The body is generated once, deterministically, into build/bench/
-- (bench/common.lua).
package.path = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/?.lua;" .. package.path
local common = require "common"
local ROOT, FLAVOUR, hwm_kb = common.ROOT, common.FLAVOUR, common.hwm_kb

local clock = os.clock

-- ---- child: one measured case --------------------------------------------------
if arg[1] == "--case" then
  local case, path = arg[2], arg[3]
  local f = assert(io.open(path, "rb"))
  local body = (case == "cjson" or case == "converse") and f:read("a") or nil
  local base = hwm_kb()
  local t0, rows = clock(), 0
  local sink
  if case == "floor" then
    -- untimed: decode once onto a tape; timed: build the same tables again
    local tape = require("bench.floor").tape()
    local dec = require("converse").json.decoder()
    while true do
      local chunk = f:read(65536)
      if chunk then dec:feed(chunk) else dec:finish() end
      for r in dec.next, dec do tape:add(r) end
      if not chunk then break end
    end
    dec:close()
    dec = nil -- luacheck: ignore
    collectgarbage()
    collectgarbage()
    base = hwm_kb()
    t0 = clock()
    for r in tape:rows() do                   -- tape stays referenced: a local of this chunk
      sink = r.call_id
      rows = rows + 1
    end
  elseif case == "cjson" then
    local all = require("cjson").decode(body)
    for i = 1, #all do sink = all[i].call_id end
    rows = #all
  elseif case == "converse" then
    local all = require("converse").json.decode(body)
    for i = 1, #all do sink = all[i].call_id end
    rows = #all
  else
    -- only the decoder's time counts: reading the file is not decoding
    local dec = require("converse").json.decoder()
    local spent = 0
    while true do
      local chunk = f:read(65536)
      local t1 = clock()
      if not chunk then dec:finish() end
      if chunk then dec:feed(chunk) end
      while true do
        local r = dec:next()
        if r == nil then break end
        sink = r.call_id
        rows = rows + 1
      end
      spent = spent + (clock() - t1)
      if not chunk then break end
    end
    t0 = clock() - spent
  end
  local secs = clock() - t0
  assert(sink ~= nil)
  f:close()
  io.write(("%.4f %d %d %d\n"):format(secs, rows, hwm_kb(), base))
  os.exit(0)
end

-- ---- parent --------------------------------------------------------------------
-- The floor and the streaming decoder run in pairs, back to back, in turn
-- first (--runs pairs, 7 by default): the ratio is the median of the pairs'
-- ratios, so that the machine's speed, which drifts on a shared host, is
-- the same on both sides of each ratio (the issue's own method: "medians
-- of 5 paired runs"; here 7). The whole-body cases are references, best of 2.
local rows, runs = 200000, 7
for i = 1, #arg do
  if arg[i] == "--rows" then rows = tonumber(arg[i + 1]) end
  if arg[i] == "--runs" then runs = tonumber(arg[i + 1]) end
end
local path, size = common.reference_body(rows)

local LUA = rawget(_G, "jit") and "luajit" or "lua5.4"
local function once(case)
  local p = io.popen(("%s %s/bench/json.lua --case %s %s"):format(LUA, ROOT, case, path))
  local out = p:read("a")
  p:close()
  local secs, n, kb, base = out:match("([%d.]+) (%d+) (%d+) (%d+)")
  assert(secs, "case " .. case .. " failed: " .. out)
  assert(tonumber(n) == rows, case .. " decoded " .. n .. " rows")
  return { secs = tonumber(secs), kb = tonumber(kb), base = tonumber(base) }
end
local function best(list)
  local b
  for _, r in ipairs(list) do if not b or r.secs < b.secs then b = r end end
  return b
end

print(("JSON decode — %s, %d rows, %.1f MB (CPU time; floor and stream: %d paired runs,"
  .. " median ratio; load %s)"):format(FLAVOUR, rows, size / 1e6, runs, common.load()))
local floors, streams, ratios = {}, {}, {}
for i = 1, runs do
  local f, s
  if i % 2 == 1 then f = once("floor"); s = once("stream")
  else s = once("stream"); f = once("floor") end
  floors[i], streams[i], ratios[i] = f, s, s.secs / f.secs
end
local floor, st = best(floors), best(streams)
local cj = best { once("cjson"), once("cjson") }
local whole = best { once("converse"), once("converse") }
local function line(name, r, ratio)
  print(("  %-34s %7.3f s %8.1f MB/s %7.0f MB peak RSS  %5.2fx floor %5.2fx cjson")
    :format(name, r.secs, size / 1e6 / r.secs, r.kb / 1024, ratio or r.secs / floor.secs,
            cj.secs / r.secs))
end
local ratio = common.median(ratios)
line("floor (bench/floor.c, no parsing)", floor)
line("cjson.decode (whole body)", cj)
line("converse.json.decode (whole body)", whole)
line("streaming decoder, 64 KiB chunks", st, ratio)
print(("  streaming decoder / floor: %.2fx, median of %d pairs (%s); best / best %.2fx")
  :format(ratio, runs, common.list(ratios), st.secs / floor.secs))
print("  (issue 12 target: 1.35x on Lua 5.4, 1.15x on LuaJIT. Times are the best runs;"
  .. " whole-body cases include")
print(("  the body itself in their RSS: %.0f MB; the floor's RSS is its tape)")
  :format(size / 1048576))
