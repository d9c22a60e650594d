-- End-to-end paging benchmark (SPEC §4), all figures from one run.
--
--   lua5.4 bench/paging.lua [--rows 200000] [--quick]
--
-- Starts the mock (bin/converse mock) with the reference data, then runs each
-- case in its own process so that peak RSS (VmHWM) is that case's alone:
--   curl -o /dev/null               transport limit
--   curl + cjson.decode             the naive Lua client
--   python3 urllib + json.loads     the naive Python script
--   converse, one page of all rows  streaming decode while the body arrives
--   converse, pages of 1,000        prefetch hides the next request
--   peak RSS for pages of 10k, 100k, 1M rows
--   20 ms latency per request, 100 pages: concurrency 1 vs 8 (and the rate limit)
package.path = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/?.lua;" .. package.path
local common = require "common"
local ROOT, FLAVOUR, hwm_kb = common.ROOT, common.FLAVOUR, common.hwm_kb
local LUA = os.getenv("CONVERSE_LUA") or FLAVOUR

local function now()
  return require("converse.core").now()
end

-- ---- child: one measured case ------------------------------------------------
local CASES = {}

function CASES.curl_cjson(url)
  local cjson = require "cjson"
  local t0 = now()
  local p = io.popen("curl -s -H 'X-API-Key: bench' '" .. url .. "'")
  local body = p:read("a")
  p:close()
  local rows = cjson.decode(body)
  return now() - t0, #rows
end

function CASES.converse(url, page_size, rows)
  local converse = require "converse"
  local base, path = url:match("^(http://[^/]+/converz/api/v1)(/calls)%?(.*)$")
  local api = converse.client { base_url = base, auth = { header = "X-API-Key", value = "bench" } }
  local t0 = now()
  local n = 0
  local pages = math.ceil(tonumber(rows) / tonumber(page_size))
  for _ in api:paginate(path, { style = "page", size_param = "n_per_page",
                                page_size = tonumber(page_size), max_pages = pages }) do
    n = n + 1
  end
  return now() - t0, n
end

function CASES.latency(url, concurrency, rate)
  local converse = require "converse"
  local api = converse.client { base_url = url .. "/converseiq/public/v1",
                                auth = { header = "x-api-key", value = "bench" },
                                rate_limit = tonumber(rate) > 0 and { per_second = tonumber(rate) } or nil }
  local t0 = now()
  local n = #api:paginate("/contact", { records = "data", total_pages = "pages",
                                        page_size = 10, concurrency = tonumber(concurrency) }):collect()
  return now() - t0, n
end

if arg[1] == "--case" then
  local f = CASES[arg[2]]
  local secs, rows = f(arg[3], arg[4], arg[5])
  io.write(string.format("%.4f %d %d\n", secs, rows, hwm_kb()))
  os.exit(0)
end

-- ---- parent ----------------------------------------------------------------
local rows = 200000
local quick = false
for i = 1, #arg do
  if arg[i] == "--rows" then rows = tonumber(arg[i + 1]) end
  if arg[i] == "--quick" then quick = true end
end

local helper = require "helper"
local socket = require "socket"

local function run_case(...)
  local args = { ... }
  local cmd = ("cd %q && %s bench/paging.lua --case %s"):format(ROOT, LUA, table.concat(args, " "))
  local p = io.popen(cmd)
  local out = p:read("a")
  p:close()
  local secs, n, kb = out:match("([%d.]+) (%d+) (%d+)")
  if not secs then error("case failed: " .. cmd .. "\n" .. out) end
  return tonumber(secs), tonumber(n), tonumber(kb)
end

local function timed_shell(cmd)
  local t0 = socket.gettime()
  assert(os.execute(cmd))
  return socket.gettime() - t0
end

local function best(n, f)
  local b, extra1, extra2
  for _ = 1, n do
    local s, x, y = f()
    if not b or s < b then b, extra1, extra2 = s, x, y end
  end
  return b, extra1, extra2
end

print(("converse paging benchmark — %s, %d rows, %s"):format(FLAVOUR, rows, os.date("!%Y-%m-%d")))
local big = math.max(rows, quick and 100000 or 1000000)
-- the mock runs under LuaJIT (faster to start and to serve) for every client
local mock = helper.start_mock { calls = big, max_lifetime = 3600, gzip = "never",
                                 interpreter = "luajit" }
local base = mock.url .. "/converz/api/v1/calls"
local one = ("%s?n_per_page=%d&page=1"):format(base, rows)
local H = "-H 'X-API-Key: bench'"

-- warm the mock's cache for this page
timed_shell(("curl -s -o /dev/null %s '%s'"):format(H, one))
local size = tonumber(io.popen(("curl -s %s '%s' | wc -c"):format(H, one)):read("a"))
print(("reference page: %d rows, %.1f MB"):format(rows, size / 1e6))

local R = 3
local t_curl = best(R, function() return timed_shell(("curl -s -o /dev/null %s '%s'"):format(H, one)) end)
local t_cjson, _, kb_cjson = best(R, function()
  return run_case("curl_cjson", "'" .. one .. "'")
end)
local py = ([[python3 -c "
import json, resource, sys, time, urllib.request
t0 = time.time()
req = urllib.request.Request(sys.argv[1], headers={'X-API-Key': 'bench'})
rows = json.loads(urllib.request.urlopen(req).read())
print('%.4f %d %d' % (time.time() - t0, len(rows), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))
" ']]) .. one .. "'"
local t_py, kb_py = best(R, function()
  local out = io.popen(py):read("a")
  local s, _, kb = out:match("([%d.]+) (%d+) (%d+)")
  return tonumber(s), tonumber(kb)
end)
local t_one, n_one, kb_one = best(R, function()
  return run_case("converse", "'" .. one .. "'", rows, rows)
end)
local t_pages, n_pages, kb_pages = best(R, function()
  return run_case("converse", "'" .. one .. "'", 1000, rows)
end)
assert(n_one == rows and n_pages == rows, "converse returned the wrong number of rows")

local function row(name, secs, kb, ref)
  print(("  %-40s %8.3f s %9.1f MB/s %8.0f MB RSS %s"):format(name, secs, size / 1e6 / secs,
    (kb or 0) / 1024, ref and ("%6.2fx"):format(ref / secs) or ""))
end
print("\nend-to-end, one page of " .. rows .. " rows (ratio = curl+cjson time / this time)")
row("curl -o /dev/null (transport limit)", t_curl, nil, t_cjson)
row("curl + cjson.decode (naive Lua)", t_cjson, kb_cjson, t_cjson)
row("python3 urllib + json.loads", t_py, kb_py, t_cjson)
row("converse, 1 page of " .. rows, t_one, kb_one, t_cjson)
row("converse, pages of 1,000", t_pages, kb_pages, t_cjson)
print(("  converse vs curl+cjson: %.2fx (one page), %.2fx (pages of 1,000); must 1.5x, aim 2.3x")
  :format(t_cjson / t_one, t_cjson / t_pages))
print(("  converse vs python:     %.2fx (one page), %.2fx (pages of 1,000); must 2.5x, aim 3.5x")
  :format(t_py / t_one, t_py / t_pages))

print("\npeak RSS while paging (must < 64 MB, aim 32 MB)")
for _, n in ipairs { 10000, 100000, quick and 100000 or 1000000 } do
  local url = ("%s?n_per_page=%d&page=1"):format(base, n)
  local secs, got, kb = run_case("converse", "'" .. url .. "'", n, n)
  print(("  page of %8d rows: %7.0f MB peak RSS (%d rows in %.2f s)"):format(n, kb / 1024, got, secs))
end
mock:stop()

print("\nlatency-bound paging: 20 ms per request, 100 pages of 10 (concurrency 1 vs 8)")
local lat = helper.start_mock { contacts = 1000, latency = "20ms", max_lifetime = 600,
                                gzip = "never", interpreter = "luajit" }
local t_seq = run_case("latency", lat.url, 1, 0)
local t_par = run_case("latency", lat.url, 8, 0)
local t_rl = run_case("latency", lat.url, 8, 50)
lat:stop()
print(("  sequential %.2f s, concurrent(8) %.2f s: %.2fx (must 3x, aim 0.9 x 8 = 7.2x)")
  :format(t_seq, t_par, t_seq / t_par))
print(("  concurrent(8) with rate_limit 50/s: %.2f s (100 requests need >= %.2f s)")
  :format(t_rl, (100 - 50) / 50))
