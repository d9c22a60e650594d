-- End-to-end paging from a local nginx against the floor (issue 12), one run.
--
--   lua5.4 bench/e2e.lua [--rows 200000] [--runs 7]
--   lua5.4 bench/e2e.lua --serve      start nginx only; prints its URL and how to stop it
--
-- The reference body (bench/common.lua, the same bytes bench/json.lua
-- decodes) is cut into static pages of 200,000, 10,000 and 1,000 rows in
-- build/bench/e2e/; nginx (Debian's nginx-light) serves them from a
-- temporary prefix on a free port, `?page=N&n_per_page=M` mapped to the
-- file calls-M-N.json ("[]" past the end). Each case runs in its own
-- process (its peak RSS is its own), every case once per round (--runs):
--   floor               bench/floor.c builds the same tables, no parsing (CPU time)
--   curl -o /dev/null   the transfer alone (wall time)
--   converse            a pager over pages of 200,000, 10,000 and 1,000 rows,
--                       reading r.call_id of each row (wall time)
-- Ratios, within each round, then their median: one page / (floor + curl),
-- and pages of 10,000 and 1,000 / one page.
package.path = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/?.lua;" .. package.path
local common = require "common"
local ROOT, FLAVOUR, hwm_kb = common.ROOT, common.FLAVOUR, common.hwm_kb
local LUA = os.getenv("CONVERSE_LUA") or FLAVOUR

-- ---- child: one measured case ------------------------------------------------
local CASES = {}

function CASES.floor(path)
  local tape = require("bench.floor").tape()
  local dec = require("converse").json.decoder()
  local f = assert(io.open(path, "rb"))
  while true do
    local chunk = f:read(65536)
    if chunk then dec:feed(chunk) else dec:finish() end
    for r in dec.next, dec do tape:add(r) end
    if not chunk then break end
  end
  f:close()
  dec:close()
  collectgarbage()
  collectgarbage()
  local t0, n, sink = os.clock(), 0, nil
  for r in tape:rows() do
    sink = r.call_id
    n = n + 1
  end
  assert(sink ~= nil)
  return os.clock() - t0, n
end

function CASES.converse(url, page_size, rows)
  local converse = require "converse"
  local now = require("converse.core").now
  local api = converse.client { base_url = url }
  page_size, rows = tonumber(page_size), tonumber(rows)
  local t0, c0, n, sink = now(), os.clock(), 0, nil
  for r in api:paginate("/calls", { style = "page", size_param = "n_per_page",
                                    page_size = page_size,
                                    max_pages = math.ceil(rows / page_size) }) do
    sink = r.call_id
    n = n + 1
  end
  assert(sink ~= nil)
  return now() - t0, n, os.clock() - c0
end

if arg[1] == "--case" then
  local secs, n, cpu = CASES[arg[2]](arg[3], arg[4], arg[5])
  io.write(("%.4f %d %d %.4f\n"):format(secs, n, hwm_kb(), cpu or secs))
  os.exit(0)
end

-- ---- the pages ---------------------------------------------------------------
local rows, runs = 200000, 7
for i = 1, #arg do
  if arg[i] == "--rows" then rows = tonumber(arg[i + 1]) end
  if arg[i] == "--runs" then runs = tonumber(arg[i + 1]) end
end
local SIZES = { rows, 10000, 1000 }
local path, size = common.reference_body(rows)
local DATA = ("%s/build/bench/e2e-%d"):format(io.popen(("cd %q && pwd"):format(ROOT)):read("l"), rows)

-- Cut the reference body into pages (records copied as their exact text).
local function make_pages()
  local stamp = io.open(DATA .. "/.done")
  if stamp then stamp:close() return end
  os.execute(("rm -rf %q && mkdir -p %q"):format(DATA, DATA))
  local function write(name, text)
    local f = assert(io.open(DATA .. "/" .. name, "wb"))
    f:write(text)
    f:close()
  end
  write("empty.json", "[]")
  os.execute(("cp %q %q"):format(path, ("%s/calls-%d-1.json"):format(DATA, rows)))
  for _, per in ipairs(SIZES) do
    if per < rows then
      local dec = require("converse").json.decoder { raw = true }
      local f = assert(io.open(path, "rb"))
      local page, buf = 1, {}
      local function flush()
        write(("calls-%d-%d.json"):format(per, page), "[" .. table.concat(buf, ",") .. "]")
        page, buf = page + 1, {}
      end
      while true do
        local chunk = f:read(1048576)
        if chunk then dec:feed(chunk) else dec:finish() end
        for text in dec.next, dec do
          buf[#buf + 1] = text
          if #buf == per then flush() end
        end
        if not chunk then break end
      end
      if #buf > 0 then flush() end
      f:close()
    end
  end
  write(".done", "")
end

-- ---- nginx ---------------------------------------------------------------------
local NGINX_CONF = [[
%sworker_processes 1;
daemon on;
pid %s/nginx.pid;
error_log %s/error.log warn;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path %s/tmp; proxy_temp_path %s/tmp; fastcgi_temp_path %s/tmp;
  uwsgi_temp_path %s/tmp; scgi_temp_path %s/tmp;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 100000;
  keepalive_timeout 60s;
  map $arg_page $pg { ~^[0-9]+$ $arg_page; default x; }
  map $arg_n_per_page $per { ~^[0-9]+$ $arg_n_per_page; default x; }
  server {
    listen 127.0.0.1:%d;
    root %s;
    default_type application/json;
    location = /calls { try_files /calls-$per-$pg.json /empty.json; }
  }
}
]]

local function free_port()
  local socket = require "socket"
  local s = assert(socket.bind("127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  return tonumber(port)
end

local function start_nginx()
  local prefix = io.popen("mktemp -d /tmp/converse-bench-nginx.XXXXXX"):read("l")
  local port = free_port()
  os.execute(("mkdir -p %q/tmp %q/logs"):format(prefix, prefix))
  -- as root, the worker would run as nobody, who may not read the checkout
  local root = io.popen("id -u"):read("l") == "0"
  local conf = NGINX_CONF:format(root and "user root;\n" or "", prefix, prefix, prefix, prefix,
                                 prefix, prefix, prefix, port, DATA)
  local f = assert(io.open(prefix .. "/nginx.conf", "w"))
  f:write(conf)
  f:close()
  assert(os.execute(("nginx -q -p %q -c %q/nginx.conf"):format(prefix, prefix)),
         "nginx did not start (see " .. prefix .. "/error.log)")
  local pid
  for _ = 1, 50 do
    local pf = io.open(prefix .. "/nginx.pid")
    pid = pf and tonumber(pf:read("l"))
    if pf then pf:close() end
    if pid then break end
    os.execute("sleep 0.1")
  end
  assert(pid, "nginx wrote no pid file")
  return { url = ("http://127.0.0.1:%d"):format(port), pid = pid, prefix = prefix }
end

local function stop_nginx(ngx)
  os.execute(("kill -QUIT %d"):format(ngx.pid))
  for _ = 1, 50 do
    if not os.execute(("kill -0 %d 2>/dev/null"):format(ngx.pid)) then break end
    os.execute("sleep 0.1")
  end
  if not os.getenv("CONVERSE_BENCH_KEEP") then os.execute(("rm -rf %q"):format(ngx.prefix)) end
end

-- ---- the run -------------------------------------------------------------------
local function run_case(...)
  local cmd = ("cd %q && %s bench/e2e.lua --case %s"):format(ROOT, LUA, table.concat({ ... }, " "))
  local p = io.popen(cmd)
  local out = p:read("a")
  p:close()
  local secs, n, kb, cpu = out:match("([%d.]+) (%d+) (%d+) ([%d.]+)")
  if not secs then error("case failed: " .. cmd .. "\n" .. out) end
  return tonumber(secs), tonumber(n), tonumber(kb), tonumber(cpu)
end

local now = require("socket").gettime
local function curl(url)
  local t0 = now()
  assert(os.execute(("curl -sf -o /dev/null %q"):format(url)), "curl failed: " .. url)
  return now() - t0
end

make_pages()
if arg[1] == "--serve" then       -- for profiling by hand: start nginx, print how to stop it
  local ngx = start_nginx()
  print(ngx.url, ("kill -QUIT %d; rm -rf %s"):format(ngx.pid, ngx.prefix))
  os.exit(0)
end
local ngx = start_nginx()
local ok, err = pcall(function()
  local one = ("%s/calls?n_per_page=%d&page=1"):format(ngx.url, rows)
  curl(one)                                         -- warm the page cache
  print(("end to end from nginx — %s, %d rows, %.1f MB (%d rounds of every case in turn,"
    .. " median ratios; load %s)"):format(FLAVOUR, rows, size / 1e6, runs, common.load()))
  -- One round runs every case once, starting one case later each round;
  -- each ratio is taken within a round (same machine speed on both sides),
  -- and the median over the rounds is reported with the best times.
  local cases = { "floor", "curl" }
  for _, per in ipairs(SIZES) do cases[#cases + 1] = per end
  local times, ratios = {}, { one = {} }
  for _, c in ipairs(cases) do times[c] = {} end
  for _, per in ipairs(SIZES) do ratios[per] = {} end
  for round = 1, runs do
    local t = {}
    for k = 0, #cases - 1 do
      local c = cases[(round - 1 + k) % #cases + 1]
      if c == "floor" then t[c] = { run_case("floor", path) }
      elseif c == "curl" then t[c] = { curl(one) }
      else
        t[c] = { run_case("converse", ngx.url, c, rows) }
        assert(t[c][2] == rows, ("pages of %d gave %d rows"):format(c, t[c][2]))
      end
      local list = times[c]
      list[#list + 1] = t[c]
    end
    local floor_curl = t.floor[1] + t.curl[1]
    ratios.one[round] = t[rows][1] / floor_curl
    for _, per in ipairs(SIZES) do ratios[per][round] = t[per][1] / t[rows][1] end
  end
  local function best(c)
    local b
    for _, r in ipairs(times[c]) do if not b or r[1] < b[1] then b = r end end
    return (table.unpack or unpack)(b) -- luacheck: ignore
  end
  local t_floor, t_curl = best("floor"), best("curl")
  print(("  %-36s %7.3f s"):format("floor (CPU time, bench/floor.c)", t_floor))
  print(("  %-36s %7.3f s"):format("curl -o /dev/null (wall time)", t_curl))
  print(("  %-36s %7.3f s"):format("floor + curl", t_floor + t_curl))
  for _, per in ipairs(SIZES) do
    local secs, _, kb, cpu = best(per)
    local vs_floor = per == rows and ("%5.2fx (floor + curl)"):format(common.median(ratios.one))
      or ""
    print(("  %-36s %7.3f s (CPU %.3f s) %4.0f MB peak RSS  %s  %5.2fx one page")
      :format(("converse, pages of %d"):format(per), secs, cpu, kb / 1024, vs_floor,
              common.median(ratios[per])))
  end
  print(("  ratios per round: one page / (floor + curl) %s; pages of %d %s; of %d %s")
    :format(common.list(ratios.one), SIZES[2], common.list(ratios[SIZES[2]]), SIZES[3],
            common.list(ratios[SIZES[3]])))
  print("  targets: one page <= 1.5x (floor + curl); pages of 10,000 and 1,000 <= 1.15x one page;"
    .. " peak RSS < 32 MB")
end)
stop_nginx(ngx)
if not ok then error(err, 0) end
