-- Scaling benchmark (issue 11): 1, 2, 4 and 8 worker processes share one
-- sync job through the PostgreSQL queue, against the latency-bound mock.
--
--   lua5.4 bench/scale.lua [--quick]                  (make bench-scale)
--
-- Everything runs here: a PostgreSQL cluster and a redis-server of their
-- own (spec/helper.lua), the mock under LuaJIT with 50 ms of latency per
-- response. The workload is AgentX messages over 60 daily windows
-- (partitions), 100 records a page.
--
-- 1. Without a rate limit: records/s for each worker count, and the
--    scaling ratio throughput(N) / (N x throughput(1)). Must: >= 0.8 up to
--    4 workers on 2 cores (each worker waits on the network most of the time).
-- 2. With a shared rate limit (Redis, 20 requests/s for the key, the mock
--    enforcing the same): requests/s in the steady state (whole seconds
--    between the first and the last) as a percentage of the limit, and the
--    busiest second. Must: >= 95 %, never above the limit.
-- 3. Load per request: PostgreSQL transactions and statements (round trips)
--    per page, rows written per page, and Redis commands per request.
package.path = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/?.lua;" .. package.path
local common = require "common"
local ROOT, FLAVOUR = common.ROOT, common.FLAVOUR
local LUA = os.getenv("CONVERSE_LUA") or FLAVOUR

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- ---- a worker process -----------------------------------------------------------
if arg[1] == "--worker" then
  local converse = require "converse"
  local sync = require "converse.sync"
  local url, conninfo, redis, rate, name, days = arg[2], arg[3], arg[4], tonumber(arg[5]), arg[6], tonumber(arg[7])
  local rl = false
  if rate > 0 then rl = { per_second = rate, shared = redis } end
  local ax = converse.agentx { base_url = url .. "/agentx", api_key = "bench-key", bot_name = "b", rate_limit = rl }
  local ok, s = pcall(sync.run, {
    queue = conninfo, name = name, source = sync.stream(ax, "messages", { per_page = 100 }),
    sink = sync.postgres(conninfo, { table = name }), since = "2025-01-01",
    ["until"] = 1735689600 + days * 86400, lease = 30,
  })
  if not ok then
    io.stderr:write("worker: ", tostring(s), "\n")
    os.exit(1)
  end
  io.stdout:write(converse.json.encode { records = s.records, pages = s.pages, partitions = s.partitions,
                                         statements = s.pg_statements }, "\n")
  os.exit(0)
end

-- ---- the parent -------------------------------------------------------------------
local quick = false
for i = 1, #arg do if arg[i] == "--quick" then quick = true end end
local helper = require "helper"
local converse = require "converse"
local now = require("converse.core").now

local DAYS = 60
local CONVERSATIONS = quick and 6000 or 15000
local RATE = 20
local LIMITED_DAYS = quick and 12 or 30

io.stdout:write(("converse bench-scale (%s): PostgreSQL queue + postgres sink, mock latency 50 ms, "
  .. "%d daily partitions, 100 records a page\n"):format(LUA, DAYS))
local pgs = assert(helper.start_postgres())
local redis = assert(helper.start_redis())
local conninfo = pgs:database("bench")
local mock = helper.start_mock { conversations = CONVERSATIONS, days = DAYS, latency = "50ms", agentx_rate = 0,
                                 gzip = "never", interpreter = "luajit", max_lifetime = 3600 }

local function workers(n, rate, name, days)
  local dir = os.tmpname()
  os.remove(dir)
  os.execute("mkdir -p " .. q(dir))
  local t0 = now()
  for i = 1, n do
    os.execute(("cd %s && CONVERSE_BUILD=build/%s %s bench/scale.lua --worker %s %s %s %d %s %d >%s/%d.out "
      .. "2>%s/%d.err &"):format(q(ROOT), FLAVOUR, LUA, q(mock.url), q(conninfo), q(redis.url), rate, q(name),
      days, q(dir), i, q(dir), i))
  end
  local out = {}
  while #out < n do                                         -- every worker prints one line at its end
    require("socket").sleep(0.05)
    out = {}
    for i = 1, n do
      local f = io.open(dir .. "/" .. i .. ".out")
      local line = f and f:read("*l")
      if f then f:close() end
      if line then out[#out + 1] = converse.json.decode(line) end
      local e = io.open(dir .. "/" .. i .. ".err")
      local err = e and e:read("*a") or ""
      if e then e:close() end
      if err:find("worker: ") then error("worker " .. i .. " failed: " .. err) end
    end
  end
  local secs = now() - t0
  os.execute("rm -rf " .. q(dir))
  local t = { records = 0, pages = 0, statements = 0, secs = secs }
  for _, s in ipairs(out) do
    t.records, t.pages, t.statements = t.records + s.records, t.pages + s.pages, t.statements + (s.statements or 0)
  end
  return t
end

local function pg_stats()
  local r = pgs:psql("SELECT pg_stat_clear_snapshot(); SELECT xact_commit + xact_rollback, tup_inserted, "
    .. "tup_updated, active_time FROM pg_stat_database WHERE datname = 'bench'", "bench")
  local x, ins, upd, active = r:match("(%d+)|(%d+)|(%d+)|([%d.]+)$")
  return { xacts = tonumber(x), inserted = tonumber(ins), updated = tonumber(upd), active_ms = tonumber(active) }
end

-- EVALs of the limiter's script (each runs TIME, GET, ZREMRANGEBYSCORE, ZCARD and, when a request
-- is let through, ZADD and PEXPIRE inside Redis) and the microseconds Redis spent in them.
local function redis_evals()
  local out = redis:cli("INFO commandstats")
  local calls, usec = out:match("cmdstat_eval:calls=(%d+),usec=(%d+)")
  local info = out:match("cmdstat_info:calls=(%d+)")
  return { evals = tonumber(calls) or 0, usec = tonumber(usec) or 0, info = tonumber(info) or 0 }
end

-- ---- 1. without a rate limit ---------------------------------------------------------
io.stdout:write("\n1. no rate limit: throughput by worker count\n")
io.stdout:write("workers   records      time    records/s   pages/s   vs linear\n")
local base
local load
for _, n in ipairs { 1, 2, 4, 8 } do
  mock:control { action = "clear_log" }
  local before = pg_stats()
  helper.http("DELETE", mock.url .. "/_counts")
  local r = workers(n, 0, "free_" .. n, DAYS)
  local rps = r.records / r.secs
  base = base or rps
  io.stdout:write(("%7d %9d %8.2f s %11.0f %9.1f %10.2fx\n"):format(n, r.records, r.secs, rps, r.pages / r.secs,
    rps / (n * base)))
  if n == 4 then
    local after = pg_stats()
    load = { pages = r.pages, xacts = after.xacts - before.xacts, statements = r.statements,
             rows = (after.inserted - before.inserted) + (after.updated - before.updated), records = r.records,
             active_ms = after.active_ms - before.active_ms }
  end
end
io.stdout:write(("\nPostgreSQL load (4 workers, whole run incl. claims and planning): per page of 100 records "
  .. "%.2f transactions, %.2f statements (round trips), %.2f ms of server time; %.2f rows written per record\n")
  :format(load.xacts / load.pages, load.statements / load.pages, load.active_ms / load.pages,
  load.rows / load.records))

-- ---- 2. with a shared rate limit -----------------------------------------------------
mock:control { action = "reset" }
mock:stop()
mock = helper.start_mock { conversations = CONVERSATIONS, days = DAYS, latency = "50ms", agentx_rate = RATE,
                           gzip = "never", interpreter = "luajit", max_lifetime = 3600 }
io.stdout:write(("\n2. shared rate limit %d requests/s for the key (Redis), %d partitions\n"):format(RATE,
  LIMITED_DAYS))
io.stdout:write("workers  requests     time   steady req/s  of limit   busiest second   429s\n")
local evals = {}
for _, n in ipairs { 1, 2, 4, 8 } do
  helper.http("DELETE", mock.url .. "/_counts")
  local e0 = redis_evals()
  local r = workers(n, RATE, "limited_" .. n, LIMITED_DAYS)
  local e1 = redis_evals()
  local per, first, last, total, limited, busiest = {}, math.huge, 0, 0, 0, 0
  for _, c in ipairs(helper.http("GET", mock.url .. "/_counts").json) do
    if c.key == "bench-key" then
      per[c.second] = (per[c.second] or 0) + c.requests
      if c.second < first then first = c.second end
      if c.second > last then last = c.second end
      total, limited = total + c.requests, limited + c.limited
    end
  end
  local steady, secs = 0, 0
  for s = first + 1, last - 1 do steady, secs = steady + (per[s] or 0), secs + 1 end
  for _, v in pairs(per) do if v > busiest then busiest = v end end
  local rate = secs > 0 and steady / secs or 0
  io.stdout:write(("%7d %9d %8.2f s %12.2f %8.1f %% %13d %9d\n"):format(n, total, r.secs, rate, 100 * rate / RATE,
    busiest, limited))
  evals[#evals + 1] = ("%d workers %.2f EVALs, %.0f us"):format(n, (e1.evals - e0.evals) / total,
    (e1.usec - e0.usec) / total)
end
io.stdout:write("\nRedis load per request (EVALs of the limiter's script, Redis time): "
  .. table.concat(evals, "; ") .. " (plus one INFO per connection)\n")

mock:stop()
redis:stop()
pgs:stop()
