-- Sync benchmark (issue 10): `converse sync converz calls --to sqlite:` of
-- the mock's Converz calls against the hand-written script (page loop +
-- cjson + one INSERT per row in one transaction per page,
-- bench/sync_naive.lua). Rows/s and peak RSS, one run.
--
--   lua5.4 bench/sync.lua [--rows 200000]        (make bench-sync)
--
-- The mock runs under LuaJIT (warm, no gzip). Each case runs in its own
-- process so that its peak RSS (VmHWM) is its own; curl's memory, a child
-- of the naive script, is not counted. Must: converse 2x the naive rows/s,
-- peak RSS under 64 MB.
package.path = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/?.lua;" .. package.path
local common = require "common"
local ROOT, FLAVOUR, hwm_kb = common.ROOT, common.FLAVOUR, common.hwm_kb
local LUA = os.getenv("CONVERSE_LUA") or FLAVOUR

local function now() return require("converse.core").now() end

-- ---- child: one measured case ---------------------------------------------------
if arg[1] == "--child" then
  local case, base, db = arg[2], arg[3], arg[4]
  local t0 = now()
  local n
  if case == "naive" then
    n = require("sync_naive").run(base, db, 1000)
  else
    local rc = require("converse.cli").main { "sync", "converz", "calls", "--to", "sqlite:" .. db,
                                              "--base-url", base, "--no-progress" }
    assert(rc == 0, "converse sync failed")
    n = tonumber(arg[5])
  end
  local secs = now() - t0
  io.stdout:write(("%.3f %d %d\n"):format(secs, hwm_kb(), n))
  os.exit(0)
end

-- ---- parent ------------------------------------------------------------------------
local rows = 200000
for i = 1, #arg do if arg[i] == "--rows" then rows = tonumber(arg[i + 1]) end end
local helper = require "helper"
local mock = helper.start_mock { calls = rows, max_lifetime = 3600, gzip = "never", interpreter = "luajit" }
local base = mock.url .. "/converz/api/v1"
helper.http("GET", base .. "/calls?n_per_page=5000&page=1", nil, { ["X-API-Key"] = "warm" })

local dir = os.tmpname()
os.remove(dir)
os.execute("mkdir -p " .. dir)

local function case(name)
  local db = dir .. "/" .. name .. ".db"
  local cmd = ("cd %s && CONVERZ_KEY=bench CONVERSE_BUILD=build/%s %s bench/sync.lua --child %s %s %s %d 2>/dev/null")
    :format(ROOT, FLAVOUR, LUA, name, base, db, rows)
  local p = io.popen(cmd)
  local out = p:read("*a")
  p:close()
  local secs, kb, done = out:match("([%d.]+) (%d+) (%d+)")
  assert(secs, name .. " failed: " .. out)
  local env = require("luasql.sqlite3").sqlite3()
  local conn = env:connect(db)
  local cur = conn:execute("SELECT count(*), count(DISTINCT call_id) FROM calls")
  local _, distinct = cur:fetch()
  cur:close() conn:close() env:close()
  return tonumber(secs), tonumber(kb), tonumber(done), tonumber(distinct)
end

print(("sync of %d Converz calls into SQLite, %s (mock under LuaJIT, no gzip)"):format(rows, LUA))
local ns, nkb, nn, nd = case("naive")
local cs, ckb, cn, cd = case("converse")
mock:stop()
os.execute("rm -rf " .. dir)
print(("  %-52s %7.2f s %9.0f rows/s %6.1f MB"):format("naive: curl + cjson + INSERT per row, page txn", ns,
  nn / ns, nkb / 1024))
print(("  %-52s %7.2f s %9.0f rows/s %6.1f MB"):format("converse sync converz calls --to sqlite:", cs,
  cn / cs, ckb / 1024))
local ratio = ns / cs
print(("  converse / naive: %.2fx rows/s (must 2x); peak RSS %.1f MB (must < 64 MB); rows %d, distinct %d")
  :format(ratio, ckb / 1024, cn, cd))
if nd ~= rows then
  print(("  (the naive table holds %d distinct rows of %d: cjson rounds the ids beyond 2^53)"):format(nd, rows))
end
local ok = ratio >= 2 and ckb < 64 * 1024 and cn == rows and cd == rows and nn == rows
print(ok and "  PASS" or "  FAIL")
os.exit(ok and 0 or 1)
