--- What a work queue holds, for `converse status --queue ...`: the
-- partitions of every job's current run by state, records, throughput,
-- lease holders, the oldest lease and the failures. All times are
-- PostgreSQL's.
-- @module converse.sync.queue.status
local pg    = require "converse.sync.queue.pg"

local tonumber, ipairs, format = tonumber, ipairs, string.format
local lit = pg.lit

local M = {}

M.STATES = { "pending", "running", "done", "failed" }

local function int(v)
  local n = tonumber(v)
  if n == nil then return nil end
  return math.tointeger and math.tointeger(n) or n
end

local function round(x, d)
  if x == nil then return nil end
  local m = 10 ^ (d or 1)
  return math.floor(x * m + 0.5) / m
end

--- The report.
-- @tparam table q a converse.sync.queue
-- @tparam[opt] string name only this job
-- @treturn table `pending`, `running`, `done`, `failed`, `partitions`,
--   `records`, `records_per_s`, `jobs` (list), `leases` (list of owners),
--   `oldest_lease` (or nil), `failures` (list)
function M.report(q, name)
  local p = q.pg
  local r = { pending = 0, running = 0, done = 0, failed = 0, partitions = 0, records = 0, jobs = {},
              leases = {}, failures = {} }
  local exists = p:row("SELECT to_regclass('converse_partitions') IS NOT NULL AS ok")
  if exists.ok ~= "t" then return r end
  local where = "p.run = j.run" .. (name and (" AND j.name = " .. lit(name)) or "")
  for _, row in ipairs(p:exec(([[
SELECT j.id, j.name, j.vendor, j.stream, j.run, j.run_status, j.run_from, j.run_to, j.run_window, j.bookmark,
  count(p.id) FILTER (WHERE p.status = 'pending') AS pending,
  count(p.id) FILTER (WHERE p.status = 'running') AS running,
  count(p.id) FILTER (WHERE p.status = 'done') AS done,
  count(p.id) FILTER (WHERE p.status = 'failed') AS failed,
  count(p.id) AS partitions, coalesce(sum(p.records), 0) AS records, coalesce(sum(p.pages), 0) AS pages,
  extract(epoch FROM (coalesce(j.run_finished, now()) - j.run_started))::float8 AS elapsed
FROM converse_jobs j LEFT JOIN converse_partitions p ON p.job_id = j.id AND %s
WHERE j.run > 0 %s
GROUP BY j.id ORDER BY j.name, j.id]]):format(where, name and ("AND j.name = " .. lit(name)) or ""))) do
    local job = {
      name = row.name, vendor = row.vendor, stream = row.stream, run = int(row.run), status = row.run_status,
      from = int(row.run_from), to = int(row.run_to), window = int(row.run_window), bookmark = int(row.bookmark),
      pending = int(row.pending), running = int(row.running), done = int(row.done), failed = int(row.failed),
      partitions = int(row.partitions), records = int(row.records), pages = int(row.pages),
      elapsed_s = round(tonumber(row.elapsed), 1),
    }
    local el = tonumber(row.elapsed)
    job.records_per_s = el and el > 0 and round(job.records / el, 1) or nil
    r.jobs[#r.jobs + 1] = job
    for _, s in ipairs(M.STATES) do r[s] = r[s] + job[s] end
    r.partitions, r.records = r.partitions + job.partitions, r.records + job.records
  end
  -- throughput of the runs in progress (or the last ones): records over their time
  local span = 0
  for _, j in ipairs(r.jobs) do if j.elapsed_s and j.elapsed_s > span then span = j.elapsed_s end end
  r.records_per_s = span > 0 and round(r.records / span, 1) or nil
  local running = ([[
FROM converse_partitions p JOIN converse_jobs j ON j.id = p.job_id AND %s
WHERE p.status = 'running']]):format(where)
  for _, row in ipairs(p:exec(([[
SELECT p.lease_owner AS owner, count(*) AS partitions,
  extract(epoch FROM min(p.lease_expires) - now())::float8 AS expires_in,
  coalesce(sum(p.records), 0) AS records
%s GROUP BY p.lease_owner ORDER BY p.lease_owner]]):format(running))) do
    r.leases[#r.leases + 1] = { owner = row.owner, partitions = int(row.partitions),
                                expires_in_s = round(tonumber(row.expires_in), 1), records = int(row.records) }
  end
  local old = p:row(([[
SELECT p.id, j.name, p.window_start, p.window_stop, p.lease_owner AS owner, p.attempts, p.records, p.pages,
  extract(epoch FROM now() - p.claimed_at)::float8 AS held,
  extract(epoch FROM p.lease_expires - now())::float8 AS expires_in
%s ORDER BY p.claimed_at LIMIT 1]]):format(running))
  if old then
    r.oldest_lease = { partition = int(old.id), job = old.name, start = int(old.window_start),
                       stop = int(old.window_stop), owner = old.owner, attempts = int(old.attempts),
                       records = int(old.records), pages = int(old.pages), held_s = round(tonumber(old.held), 1),
                       expires_in_s = round(tonumber(old.expires_in), 1) }
  end
  for _, row in ipairs(p:exec(([[
SELECT p.id, j.name, p.window_start, p.window_stop, p.attempts, p.error
FROM converse_partitions p JOIN converse_jobs j ON j.id = p.job_id AND %s
WHERE p.status = 'failed' ORDER BY p.id LIMIT 20]]):format(where))) do
    r.failures[#r.failures + 1] = { partition = int(row.id), job = row.name, start = int(row.window_start),
                                    stop = int(row.window_stop), attempts = int(row.attempts), error = row.error }
  end
  return r
end

local function window(start, stop)
  if not start then return "the whole stream" end
  local short = require("converse.sync").time.short
  return format("[%s, %s)", short(start), short(stop))
end
M.window = window

--- The report as lines of text: `STATE COUNT` for each state, then details.
function M.text(r)
  local thousands = require("converse.cli.progress").thousands
  local out = {}
  for _, s in ipairs(M.STATES) do out[#out + 1] = format("%s %d", s, r[s]) end
  out[#out + 1] = format("records %s%s", thousands(r.records),
    r.records_per_s and format(" (%s records/s)", thousands(math.floor(r.records_per_s + 0.5))) or "")
  for _, j in ipairs(r.jobs) do
    out[#out + 1] = format("job %s: run %d %s, %d partitions (%d pending, %d running, %d done, %d failed), "
      .. "%s records%s", j.name, j.run, j.status, j.partitions, j.pending, j.running, j.done, j.failed,
      thousands(j.records), j.bookmark and (", bookmark " .. require("converse.sync").time.format(j.bookmark)) or "")
  end
  for _, l in ipairs(r.leases) do
    out[#out + 1] = format("lease %s: %d partition%s, expires in %.1f s", l.owner, l.partitions,
      l.partitions == 1 and "" or "s", l.expires_in_s or 0)
  end
  local o = r.oldest_lease
  if o then
    out[#out + 1] = format("oldest lease: partition %d of %s %s held by %s for %.1f s (attempt %d, %d pages), "
      .. "expires in %.1f s", o.partition, o.job, window(o.start, o.stop), o.owner, o.held_s or 0, o.attempts,
      o.pages, o.expires_in_s or 0)
  end
  for _, f in ipairs(r.failures) do
    out[#out + 1] = format("failed: partition %d of %s %s (attempt %d): %s", f.partition, f.job,
      window(f.start, f.stop), f.attempts, f.error or "?")
  end
  return table.concat(out, "\n")
end

return M
