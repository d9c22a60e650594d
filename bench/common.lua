-- Shared by the benchmarks: paths to this checkout's Lua modules and build,
-- and the peak RSS of the running process.
local M = {}

M.ROOT = (arg[0]:match("^(.*)/bench/[^/]*$")) or "."
M.FLAVOUR = rawget(_G, "jit") and "luajit" or "lua5.4"
package.path = M.ROOT .. "/lua/?.lua;" .. M.ROOT .. "/lua/?/init.lua;" .. M.ROOT .. "/spec/?.lua;"
  .. package.path
package.cpath = M.ROOT .. "/build/" .. M.FLAVOUR .. "/?.so;" .. package.cpath

--- Peak resident set size of this process, in KiB (VmHWM).
function M.hwm_kb()
  local f = io.open("/proc/self/status")
  local s = f and f:read("a") or ""
  if f then f:close() end
  return tonumber(s:match("VmHWM:%s*(%d+)")) or 0
end

-- ---- body generation ---------------------------------------------------------
local WORDS = { "customer", "called", "about", "a", "delayed", "refund", "agent", "confirmed",
  "the", "order", "camera", "offline", "escalated", "résumé", "naïve", "café", "—", "😀",
  "\"quoted\"", "tab\there", "line\nbreak", "ok", "invoice", "shipping", "Grüße", "日本" }
local CAMPAIGNS = { "Retention", "Onboarding", "Billing", "Support", "Upsell" }

local function generate(path, rows)
  local json = require("converse").json
  local seed = 12345
  local function rnd(n)           -- deterministic LCG, same on every Lua
    seed = (seed * 1103515245 + 12345) % 2147483648
    return seed % n
  end
  local f = assert(io.open(path, "wb"))
  f:write("[")
  for i = 1, rows do
    local words, len = {}, 0
    while len < 150 + rnd(150) do
      local w = WORDS[rnd(#WORDS) + 1]
      words[#words + 1] = w
      len = len + #w + 1
    end
    local row = {
      call_id = 9007199254740993 + i,
      rep_id = "rep" .. (500 + rnd(80)),
      vendor = "vendor-" .. rnd(6),
      campaign = CAMPAIGNS[rnd(#CAMPAIGNS) + 1],
      start_time = ("2025-07-%02d %02d:%02d:%02d"):format(1 + rnd(28), rnd(24), rnd(60), rnd(60)),
      duration = rnd(360000) / 100,
      sentiment = rnd(2000) / 1000 - 1,
      resolved = rnd(2) == 1,
      summary = table.concat(words, " "),
      tags = json.array { "t" .. rnd(9), "t" .. rnd(9) },
      metrics = { talk_ratio = rnd(100) / 100, silence = rnd(600), holds = rnd(4) },
      subcampaign = rnd(3) == 0 and json.null or ("sub" .. rnd(10)),
      department = rnd(5) == 0 and json.null or "dept" .. rnd(4),
      vendor_call_id = ("%08x-%04x-4%03x-a%03x-%012x"):format(rnd(2^31), rnd(65536), rnd(4096),
        rnd(4096), rnd(2^31)),
    }
    if i > 1 then f:write(",") end
    f:write(json.encode(row))
  end
  f:write("]")
  f:close()
end

--- The reference body of `rows` rows (a bare JSON array), generated once,
-- deterministically, into build/bench/: its path and size in bytes.
function M.reference_body(rows)
  os.execute("mkdir -p " .. M.ROOT .. "/build/bench")
  local path = ("%s/build/bench/calls-%d.json"):format(M.ROOT, rows)
  local fh = io.open(path, "rb")
  if not fh then generate(path, rows) fh = assert(io.open(path, "rb")) end
  local size = fh:seek("end")
  fh:close()
  return path, size
end

--- "1.23 0.98 0.77": the load averages, to print beside wall-clock figures.
function M.load()
  local f = io.open("/proc/loadavg")
  local s = f and f:read("l") or "?"
  if f then f:close() end
  return s:match("^(%S+ %S+ %S+)") or s
end

--- The median of a list of numbers.
function M.median(list)
  local t = {}
  for i, v in ipairs(list) do t[i] = v end
  table.sort(t)
  local n = #t
  return n % 2 == 1 and t[(n + 1) / 2] or (t[n / 2] + t[n / 2 + 1]) / 2
end

--- "1.31 1.40 1.52": ratios as printed beside their median.
function M.list(list)
  local t = {}
  for i, v in ipairs(list) do t[i] = ("%.2f"):format(v) end
  return table.concat(t, " ")
end

return M
