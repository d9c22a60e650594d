--- The work queue of a sync job shared by many processes on many machines,
-- in PostgreSQL (SPEC §7). No coordinator: every worker runs the same
-- code against two tables.
--
-- `converse_jobs`: one row per job (name + query fingerprint), with the
-- bookmark and the current run (`run`, `run_status`, `[run_from, run_to)`,
-- the window length). `converse_partitions`: one row per partition of a
-- run -- for a time-filtered stream one per window `[window_start,
-- window_stop)`, else one for the stream -- with `status` (pending,
-- running, done, failed), `lease_owner`, `lease_expires`, `attempts`, the
-- resume `position` (and the whole job state of the partition, `state`),
-- `records`, `pages` and the last `error`.
--
-- * Planning is idempotent: under the job row's lock (`SELECT ... FOR
--   UPDATE`), a worker joins the run in progress, or plans the next one
--   (from the bookmark minus the lookback, as converse.sync does) when the
--   last one is complete. Every worker may run the same command.
-- * A worker claims one partition at a time with the pattern the
--   PostgreSQL manual gives for SKIP LOCKED:
--   `UPDATE ... WHERE id = (SELECT id ... FOR UPDATE SKIP LOCKED LIMIT 1)
--   RETURNING ...`; claimable are pending partitions, running ones whose
--   lease expired (their owner died), and its own.
-- * Leases run on PostgreSQL's clock (`now()`), never a worker's. Every
--   checkpoint renews the lease, and is fenced: it updates the partition
--   only `WHERE lease_owner = me AND status = 'running'`; a worker whose
--   lease was taken over gets `LEASE_LOST` and its page is rolled back.
-- * The run completes when its last partition is done (checked after each
--   partition, by whichever worker sees it): the bookmark moves to the run's end.
-- @module converse.sync.queue
local core   = require "converse.core"
local errors = require "converse.errors"
local state  = require "converse.sync.state"
local pg     = require "converse.sync.queue.pg"

local type, tostring, tonumber, ipairs, setmetatable, error =
  type, tostring, tonumber, ipairs, setmetatable, error
local format, concat, floor = string.format, table.concat, math.floor
local lit = pg.lit

local M = {}
local Queue = {}
Queue.__index = Queue
M.Queue = Queue

--- Default lease (seconds).
M.LEASE = 60
--- Partitions inserted per statement when a run is planned.
M.INSERT_BATCH = 500

M.SCHEMA = [[
CREATE TABLE IF NOT EXISTS converse_jobs (
  id bigserial PRIMARY KEY,
  name text NOT NULL,
  fingerprint text NOT NULL,
  vendor text, stream text, key_id text,
  bookmark bigint,
  run integer NOT NULL DEFAULT 0,
  run_status text NOT NULL DEFAULT 'none',
  run_from bigint, run_to bigint, run_window bigint, run_whole boolean NOT NULL DEFAULT false,
  run_started timestamptz, run_finished timestamptz,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (name, fingerprint));
CREATE TABLE IF NOT EXISTS converse_partitions (
  id bigserial PRIMARY KEY,
  job_id bigint NOT NULL REFERENCES converse_jobs (id) ON DELETE CASCADE,
  run integer NOT NULL,
  seq integer NOT NULL,
  vendor text, key_id text, stream text,
  window_start bigint, window_stop bigint,
  status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'running', 'done', 'failed')),
  lease_owner text, lease_expires timestamptz, claimed_at timestamptz,
  attempts integer NOT NULL DEFAULT 0,
  position jsonb, state text,
  records bigint NOT NULL DEFAULT 0, pages bigint NOT NULL DEFAULT 0,
  error text,
  created_at timestamptz NOT NULL DEFAULT now(), started_at timestamptz, finished_at timestamptz,
  updated_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (job_id, run, seq));
CREATE INDEX IF NOT EXISTS converse_partitions_claim ON converse_partitions (job_id, run, status, seq);
]]

local function qerror(message, code, retryable)
  return errors.new { kind = "io", code = code, message = message, retryable = retryable or false }
end

local function int(v)
  local n = tonumber(v)
  if n == nil then return nil end
  return math.tointeger and math.tointeger(n) or n
end

local function num_lit(v)
  if v == nil then return "NULL" end
  return format("%d", v)
end

--- Parse a `postgres:CONNINFO` queue location (a bare conninfo is accepted too).
function M.conninfo(spec)
  if type(spec) ~= "string" then return nil, "queue: postgres:CONNINFO expected" end
  if spec:match("^postgres:") or spec:match("^postgresql:") then
    local conninfo, tbl = pg.parse_spec(spec)
    if not conninfo then return nil, tbl end
    if tbl then return nil, "a queue takes no #TABLE: its tables are converse_jobs and converse_partitions" end
    return conninfo
  end
  return spec
end

--- Open a queue.
-- @tparam string conninfo libpq conninfo or URI (or `postgres:CONNINFO`)
-- @treturn Queue
function M.open(conninfo)
  local c, why = M.conninfo(conninfo)
  if not c then errors.usage(why) end
  return setmetatable({ conninfo = c, shown = pg.redact(c), pg = pg.shared(c) }, Queue)
end

function Queue:close()
  if self.pg then self.pg:release() self.pg = nil end
end

--- Create the tables if they are missing (safe from any number of workers at once).
function Queue:ensure_schema()
  if self.schema_ready then return end
  local p = self.pg
  local r = p:row("SELECT to_regclass('converse_partitions') IS NOT NULL AS ok")
  if r.ok ~= "t" then
    p:tx(function()
      p:exec("SELECT pg_advisory_xact_lock(hashtext('converse:queue-schema'))")
      p:exec(M.SCHEMA)
    end)
  end
  self.schema_ready = true
end

local function job_of(row)
  return {
    id = int(row.id), name = row.name, fingerprint = row.fingerprint, vendor = row.vendor,
    stream = row.stream, key_id = row.key_id, bookmark = int(row.bookmark), run = int(row.run),
    run_status = row.run_status, from = int(row.run_from), to = int(row.run_to),
    window = int(row.run_window), whole = row.run_whole == "t",
  }
end

local JOB_WHERE = "name = %s AND fingerprint = %s"

--- Plan the job's next run, or join the one in progress (idempotent).
-- @tparam table spec `name`, `fingerprint`, `vendor`, `stream`, `key_id`,
--   `window` (seconds), `windows = function(bookmark, now) -> list of {start, stop}, from, to`
--   (a windowed job's partitions; nil for a stream read whole: one partition),
--   `reset_failed` (a re-run: failed partitions of the run in progress become pending again),
--   `grace` (seconds: a run completed less long ago is joined, not followed by a new one)
-- @treturn table job: `id`, `run`, `run_status`, `from`, `to`, `window`, `bookmark`,
--   `joined` (true when the run was already planned), `partitions` (planned now)
function Queue:plan(spec)
  self:ensure_schema()
  local p = self.pg
  return p:tx(function()
    local where = JOB_WHERE:format(lit(spec.name), lit(spec.fingerprint))
    p:exec(("INSERT INTO converse_jobs (name, fingerprint, vendor, stream, key_id) VALUES (%s, %s, %s, %s, %s) "
      .. "ON CONFLICT (name, fingerprint) DO NOTHING"):format(lit(spec.name), lit(spec.fingerprint),
      lit(spec.vendor or ""), lit(spec.stream or ""), lit(spec.key_id or "")))
    local row = p:row("SELECT *, extract(epoch FROM now())::float8 AS now, "
      .. "extract(epoch FROM now() - run_finished)::float8 AS since_done FROM converse_jobs WHERE "
      .. where .. " FOR UPDATE")
    local job = job_of(row)
    -- the run just completed (less than `grace` seconds ago): a worker that
    -- started with the others but arrived late joins it, finds nothing to
    -- do, and does not plan another run of the lookback
    local since_done = tonumber(row.since_done)
    if job.run_status == "complete" and spec.grace and since_done and since_done < spec.grace then
      job.joined, job.partitions = true, 0
      return job
    end
    if job.run_status == "running" then
      if spec.reset_failed then
        job.reset = p:exec(("UPDATE converse_partitions SET status = 'pending', error = NULL, "
          .. "lease_owner = NULL, lease_expires = NULL, updated_at = now() "
          .. "WHERE job_id = %d AND run = %d AND status = 'failed'"):format(job.id, job.run))
      end
      job.joined = true
      return job
    end
    local windows, from, to, whole
    if spec.windows then
      windows, from, to, whole = spec.windows(job.bookmark, tonumber(row.now))
    else
      windows = { {} }
    end
    local run = job.run + 1
    local values, n = {}, #windows
    local function flush()
      if #values == 0 then return end
      p:exec("INSERT INTO converse_partitions (job_id, run, seq, vendor, key_id, stream, window_start, "
        .. "window_stop) VALUES " .. concat(values, ", ") .. " ON CONFLICT (job_id, run, seq) DO NOTHING")
      values = {}
    end
    for i, w in ipairs(windows) do
      values[#values + 1] = format("(%d, %d, %d, %s, %s, %s, %s, %s)", job.id, run, i, lit(spec.vendor or ""),
        lit(spec.key_id or ""), lit(spec.stream or ""), num_lit(w[1]), num_lit(w[2]))
      if #values >= M.INSERT_BATCH then flush() end
    end
    flush()
    local status = n == 0 and "complete" or "running"
    p:exec(("UPDATE converse_jobs SET run = %d, run_status = %s, run_from = %s, run_to = %s, "
      .. "run_window = %s, run_whole = %s, run_started = now(), run_finished = %s, updated_at = now() "
      .. "WHERE id = %d"):format(run, lit(status), num_lit(from), num_lit(to), num_lit(spec.window),
      whole and "true" or "false", n == 0 and "now()" or "NULL", job.id))
    -- keep the previous run's partitions for `converse status`, drop older ones
    p:exec(("DELETE FROM converse_partitions WHERE job_id = %d AND run < %d"):format(job.id, run - 1))
    job.run, job.run_status, job.from, job.to, job.window, job.whole = run, status, from, to, spec.window,
      whole or false
    job.partitions, job.joined = n, false
    return job
  end)
end

--- The job's row as it is now (nil when it was never planned).
function Queue:find(name, fingerprint)
  self:ensure_schema()
  local row = self.pg:row("SELECT * FROM converse_jobs WHERE " .. JOB_WHERE:format(lit(name), lit(fingerprint)))
  return row and job_of(row) or nil
end

local function part_of(row, job)
  return {
    id = int(row.id), seq = int(row.seq), job_id = int(row.job_id), run = int(row.run),
    start = int(row.window_start), stop = int(row.window_stop), attempts = int(row.attempts),
    records = int(row.records) or 0, pages = int(row.pages) or 0, job = job,
    resumed = row.state ~= nil,
  }
end

--- Claim a partition: pending, expired, or our own (after a reconnect).
-- @tparam table job from `plan`
-- @tparam string owner this worker's id
-- @tparam number lease seconds
-- @treturn table|nil partition `{ id, seq, start, stop, attempts, resumed, owner, lease }`
function Queue:claim(job, owner, lease)
  local o = lit(owner)
  local rows = self.pg:exec(format([[
UPDATE converse_partitions AS p SET status = 'running', lease_owner = %s,
  lease_expires = now() + %s * interval '1 second', claimed_at = now(), attempts = p.attempts + 1,
  started_at = coalesce(p.started_at, now()), updated_at = now()
WHERE p.id = (
  SELECT id FROM converse_partitions
  WHERE job_id = %d AND run = %d
    AND (status = 'pending' OR (status = 'running' AND (lease_expires < now() OR lease_owner = %s)))
  ORDER BY (status = 'running' AND lease_owner = %s) DESC, (status = 'running') DESC, seq
  FOR UPDATE SKIP LOCKED LIMIT 1)
RETURNING p.id, p.seq, p.job_id, p.run, p.window_start, p.window_stop, p.attempts, p.records, p.pages,
  p.state IS NOT NULL AS has_state, p.state]], o, format("%.3f", lease), job.id, job.run, o, o))
  local row = rows[1]
  if not row then return nil end
  local part = part_of(row, job)
  part.resumed = row.has_state == "t"
  part.owner, part.lease = owner, lease
  part.state_text = row.state                   -- what `load` returns first (no second query)
  return part
end

--- Extend a partition's lease (PostgreSQL's clock). False when it is no longer ours.
function Queue:renew(part)
  local n = self.pg:exec(("UPDATE converse_partitions SET lease_expires = now() + %.3f * interval '1 second', "
    .. "updated_at = now() WHERE id = %d AND lease_owner = %s AND status = 'running'")
    :format(part.lease, part.id, lit(part.owner)))
  return n == 1
end

--- The partition's saved job state (nil before its first checkpoint).
function Queue:load(part)
  local text = part.state_text
  if part.claimed_state_used then
    local r = self.pg:row(("SELECT state FROM converse_partitions WHERE id = %d"):format(part.id))
    text = r and r.state
  end
  part.claimed_state_used = true
  if text == nil then return nil end
  return state.decode(text, "partition " .. part.id .. " of " .. self.shown)
end

--- Save a partition's state: a checkpoint (renews the lease), or with
-- `st.run == nil` the partition is done. Fenced on the lease: raises
-- `LEASE_LOST` (kind "io") when another worker holds the partition now.
-- Runs inside the caller's transaction when there is one.
function Queue:save(part, st)
  local run = st.run
  local done = run == nil
  local counts = run or st.last_run or {}
  local pos = run and run.position
  local rows = self.pg:exec(format([[
UPDATE converse_partitions SET state = %s, position = %s::jsonb, records = %s, pages = %s,
  status = %s, lease_expires = %s, finished_at = %s, updated_at = now()
WHERE id = %d AND lease_owner = %s AND status = 'running'
RETURNING id]], lit(state.encode(st)),
    lit(done and '{"done":true}' or (pos and core.json_encode(pos, { sort_keys = true })) or "null"),
    num_lit(floor(counts.records or 0)), num_lit(floor(counts.pages or 0)), lit(done and "done" or "running"),
    done and "NULL" or format("now() + %.3f * interval '1 second'", part.lease), done and "now()" or "NULL",
    part.id, lit(part.owner)))
  if #rows ~= 1 then
    error(qerror(("lease lost on partition %d: another worker holds it now (the lease of %s s ran out); "
      .. "this page is dropped, the other worker reads it"):format(part.id, tostring(part.lease)),
      "LEASE_LOST"), 0)
  end
  if done then part.done = true end
end

--- Give a partition back (pending, position kept): an interrupted or stopped worker.
function Queue:release(part)
  return self.pg:exec(("UPDATE converse_partitions SET status = 'pending', lease_expires = NULL, "
    .. "updated_at = now() WHERE id = %d AND lease_owner = %s AND status = 'running'")
    :format(part.id, lit(part.owner))) == 1
end

--- Mark a partition failed (a re-run of the command makes it pending again).
function Queue:fail(part, message)
  return self.pg:exec(("UPDATE converse_partitions SET status = 'failed', error = %s, lease_expires = NULL, "
    .. "updated_at = now() WHERE id = %d AND lease_owner = %s AND status = 'running'")
    :format(lit(tostring(message):sub(1, 2000)), part.id, lit(part.owner))) == 1
end

--- Partitions of the job's run by state, and when the next lease runs out.
-- @treturn table `pending`, `running`, `done`, `failed`, `total`, `records`,
--   `next_expiry` (seconds from now, PostgreSQL's clock; nil when nothing runs)
function Queue:counts(job)
  local r = self.pg:row(([[
SELECT count(*) FILTER (WHERE status = 'pending') AS pending,
  count(*) FILTER (WHERE status = 'running') AS running,
  count(*) FILTER (WHERE status = 'done') AS done,
  count(*) FILTER (WHERE status = 'failed') AS failed, count(*) AS total,
  coalesce(sum(records), 0) AS records, coalesce(sum(pages), 0) AS pages,
  extract(epoch FROM min(lease_expires) FILTER (WHERE status = 'running') - now())::float8 AS next_expiry,
  min(error) FILTER (WHERE status = 'failed') AS error
FROM converse_partitions WHERE job_id = %d AND run = %d]]):format(job.id, job.run))
  return { pending = int(r.pending), running = int(r.running), done = int(r.done), failed = int(r.failed),
           total = int(r.total), records = int(r.records), pages = int(r.pages), next_expiry = tonumber(r.next_expiry),
           error = r.error }
end

--- Complete the run if every partition is done: the bookmark moves to its end.
-- @treturn boolean complete, number|nil bookmark
function Queue:complete(job)
  local r = self.pg:row(([[
UPDATE converse_jobs AS j SET run_status = 'complete', run_finished = now(), updated_at = now(),
  bookmark = CASE WHEN j.run_to IS NULL THEN j.bookmark ELSE greatest(coalesce(j.bookmark, j.run_to), j.run_to) END
WHERE j.id = %d AND j.run = %d AND j.run_status = 'running'
  AND NOT EXISTS (SELECT 1 FROM converse_partitions AS p WHERE p.job_id = %d AND p.run = %d
                  AND p.status <> 'done');
SELECT run, run_status, bookmark FROM converse_jobs WHERE id = %d]]):format(job.id, job.run, job.id, job.run,
    job.id))
  local complete = r ~= nil and int(r.run) == job.run and r.run_status == "complete"
  return complete, r and int(r.bookmark)
end

M.error = qerror
return M
