--- A sync worker on a PostgreSQL work queue: plan (idempotently), then
-- claim partitions one at a time and run each as a converse.sync job
-- until no partition is left (SPEC §7; docs/scaling.md).
--
-- A partition is a converse.sync job restricted to its window (`since` =
-- its start, `until` = its stop, the run's window length), whose state
-- store is the partition's row: the windows, checkpoints, resume positions,
-- events and outcomes are converse.sync.job's, unchanged. With the postgres
-- sink on the queue's database (same conninfo: one connection) a page's
-- rows and the partition's checkpoint commit in one transaction; with any
-- other upserting sink the rows are committed first and the checkpoint
-- after, so a page may be written twice but the table holds it once.
--
-- Leases: claimed for `lease` seconds (PostgreSQL's clock), renewed by
-- every checkpoint and, on a timer (every lease / 3), during every wait of
-- the client (rate limits, 429 pauses, retry backoff): the worker wraps
-- its client's transport so that waits are sliced and renewals happen
-- between slices. A fetch of one page must not outlast a lease; if it does,
-- the checkpoint is refused (LEASE_LOST), the page rolled back, and the
-- worker moves on (the other owner reads it again).
--
-- Outcomes (as converse.sync's): returns a summary when the run is complete
-- (every partition done, by whichever worker); raises with `err.sync`
-- otherwise: "interrupted" (SIGINT/SIGTERM: the partition goes back to
-- pending at its last checkpoint), "partial" (a retryable failure: retry or
-- rate budget spent, Redis or PostgreSQL unreachable for longer than
-- `fail_after`), "failed" (partitions failed; a re-run makes them pending).
-- @module converse.sync.queue.worker
local core    = require "converse.core"
local errors  = require "converse.errors"
local jobmod  = require "converse.sync.job"
local queue   = require "converse.sync.queue"
local pg      = require "converse.sync.queue.pg"
local request = require "converse.request"

local type, tostring, tonumber, pcall, error, setmetatable, ipairs =
  type, tostring, tonumber, pcall, error, setmetatable, ipairs
local floor, max, min, format, concat = math.floor, math.max, math.min, string.format, table.concat
local now, signal = core.now, core.signal
local usage = errors.usage

local M = {}
local Worker = {}
Worker.__index = Worker
M.Worker = Worker

M.DEFAULTS = { lease = queue.LEASE, fail_after = 60, poll = 1, max_partitions = 100000 }

local LEVELS = request.LEVELS

local function read_line(path)
  local f = io.open(path, "r")
  if not f then return nil end
  local s = f:read("*l")
  f:close()
  return s
end

--- This process's worker id: `host:pid:random` (the lease owner).
function M.owner_id()
  local host = read_line("/proc/sys/kernel/hostname") or read_line("/etc/hostname") or os.getenv("HOSTNAME")
    or "host"
  local stat = read_line("/proc/self/stat")
  local pid = stat and stat:match("^(%d+)") or "0"
  return format("%s:%s:%s", host:gsub("[%s:]", ""), pid, core.fingerprint(tostring({}) .. now()):sub(1, 6))
end

--- The job's key in the queue: its name plus a fingerprint of the source's
-- query, the API key's id (sha256, never the key), the base URL and
-- `identity` (what else tells two tenants apart, e.g. an AgentX bot).
-- @treturn string fingerprint, string key id
function M.identity(source, identity)
  local client = source.client
  local secret = type(client) == "table" and type(client.secrets) == "table" and client.secrets[1] or nil
  local key_id = secret and core.sha256(secret):sub(1, 32) or "none"
  local parts = { tostring(source.fingerprint or source.name), key_id,
                  type(client) == "table" and tostring(client.base_url or "") or "", tostring(identity or "") }
  return core.fingerprint(concat(parts, "\n")), key_id
end

local function duration(v, name, default)
  if v == nil then return default end
  local d, why = require("converse.sync").time.duration(v)
  if not d then usage(name .. ": " .. why) end
  return d
end

local NULL_SINK = { write = function() end, upsert = true, open = function() end, close = function() end }

--- Create a worker (see `run`).
function M.new(opts)
  errors.check(opts, "table", "sync options")
  local source, sink = jobmod.check_parts(opts)
  if not sink.upsert then
    usage(("sync: a work queue needs a sink that upserts by id (postgres, sqlite, or sync.sink(fn, "
      .. "{ upsert = true })): the %s sink appends, and a page read again after a lost lease would be "
      .. "written twice"):format(sink.kind or "custom"))
  end
  if opts.state ~= nil then usage("sync: with a queue the state lives in the queue: drop state") end
  local name = opts.name or source.name
  if type(name) ~= "string" or name == "" then usage("sync: name (a string) is required") end
  if opts.on_event ~= nil and type(opts.on_event) ~= "function" then usage("on_event must be a function") end
  local lease = duration(opts.lease, "lease", M.DEFAULTS.lease)
  if lease < 1 then usage("lease must be at least 1s") end
  local q = opts.queue
  if type(q) ~= "table" then q = queue.open(q) end
  -- the planner: converse.sync's own windows, bookmark and lookback
  local planner = jobmod.new {
    source = source, sink = NULL_SINK, state = false, name = name, since = opts.since,
    ["until"] = opts["until"], window = opts.window, lookback = opts.lookback, skew = opts.skew,
  }
  local fingerprint, key_id = M.identity(source, opts.identity)
  return setmetatable({
    source = source, real_sink = sink, name = name, q = q, planner = planner,
    fingerprint = fingerprint, key_id = key_id, lease = lease,
    renew_every = max(lease / 3, 0.2),
    fail_after = duration(opts.fail_after, "fail_after", M.DEFAULTS.fail_after),
    poll = duration(opts.poll, "poll", M.DEFAULTS.poll),
    owner = opts.owner or M.owner_id(),
    plan = opts.plan ~= false, on_event = opts.on_event, log = request.logger(opts.log),
    trap_signals = opts.trap_signals,
  }, Worker)
end

-- ---- events ---------------------------------------------------------------

local function short(t) return require("converse.sync").time.short(t) end

local function window_text(part)
  if not part.start then return "the whole stream" end
  return format("[%s, %s)", short(part.start), short(part.stop))
end
M.window_text = window_text

local function describe(ev)
  local t = ev.type
  if t == "plan" then
    if ev.joined then
      return format("joined run %d (%d partitions: %d pending, %d running, %d done, %d failed)", ev.run,
        ev.counts.total, ev.counts.pending, ev.counts.running, ev.counts.done, ev.counts.failed)
    end
    return format("planned run %d: %d partition%s", ev.run, ev.partitions, ev.partitions == 1 and "" or "s")
  elseif t == "claim" then
    return format("partition %d %s claimed%s (attempt %d)", ev.partition, ev.window,
      ev.resumed and ", resuming at its checkpoint" or "", ev.attempts)
  elseif t == "lease_lost" then
    return format("partition %d: lease lost, another worker has it", ev.partition)
  elseif t == "partition_failed" then
    return format("partition %d %s failed: %s", ev.partition, ev.window, ev.message)
  elseif t == "queue_wait" then
    return format("PostgreSQL unavailable, trying again in %.1f s: %s", ev.wait, ev.message)
  elseif t == "idle" then
    return format("waiting %.1f s: %d partition%s leased by other workers", ev.wait, ev.running,
      ev.running == 1 and "" or "s")
  elseif t == "done" then
    return ev.status
  elseif t == "run_complete" then
    return format("run %d complete%s", ev.run, ev.bookmark and ("; bookmark " .. short(ev.bookmark)) or "")
  elseif t == "window" then
    return format("partition %d: window [%s, %s)", ev.partition, short(ev.start), short(ev.stop))
  elseif t == "checkpoint" then
    return format("partition %d: checkpoint: %d records, %d pages", ev.partition, ev.records, ev.pages)
  end
  return require("converse.request").describe(ev)
end

local EVENT_LEVEL = { plan = "info", claim = "info", lease_lost = "warn", partition_failed = "warn",
                      queue_wait = "warn", idle = "debug", run_complete = "info", done = "info",
                      window = "debug", checkpoint = "debug", request = "debug", response = "debug",
                      page = "debug", rate_limit = "info", retry = "warn" }

function Worker:emit(ev)
  ev.job = self.name
  if self.on_event then pcall(self.on_event, ev) end
  local log = self.log
  if log and LEVELS[EVENT_LEVEL[ev.type] or "info"] >= log.level then
    pcall(log.write, "converse sync: " .. self.name .. ": " .. describe(ev))
  end
end

-- ---- waiting ----------------------------------------------------------------

local function interrupted_error(sig)
  return errors.new { kind = "network", code = "INTERRUPTED", message = "interrupted by " .. (sig or "a signal") }
end

function Worker.check_signal()
  local sig = signal()
  if sig then error(interrupted_error(sig), 0) end
end

-- Sleep, cut short by SIGINT/SIGTERM (raises the interruption).
function Worker:sleep(seconds)
  local tr = self.real_transport
  if tr then
    if tr:wait(seconds) == false then self:check_signal() end
  else
    local socket = require "socket"
    local deadline = now() + seconds
    while now() < deadline do
      self:check_signal()
      socket.sleep(min(0.05, deadline - now()))
    end
  end
  self:check_signal()
end

--- Sleep whatever signals arrive (the parent of --workers N waits for its children).
function Worker.sleep_quietly(_, seconds)
  require("socket").sleep(seconds)
end

--- Run fn; while PostgreSQL is unreachable, wait and try again, up to
-- `fail_after` seconds (then its retryable error is raised: "partial").
function Worker:retrying(fn)
  local deadline, pause = nil, 0.2
  while true do
    local ok, a, b = pcall(fn)
    if ok then return a, b end
    if not pg.unavailable(a) then error(a, 0) end
    deadline = deadline or now() + self.fail_after
    if now() >= deadline then error(a, 0) end
    self:emit { type = "queue_wait", wait = pause, message = a.message }
    self:sleep(pause)
    pause = min(pause * 2, 2)
  end
end

-- Renew the lease of the partition in hand when it is due (a timer on
-- the monotonic clock; the expiry itself is PostgreSQL's).
function Worker:maybe_renew()
  local part = self.current
  if not part or now() - self.last_renew < self.renew_every then return end
  self.last_renew = now()
  local ok, held = pcall(self.q.renew, self.q, part)
  if ok and not held then part.lost = true end
  self.renewals = (self.renewals or 0) + 1
end

-- The client's transport, with waits sliced so leases are renewed while
-- the client waits (rate limits, 429 pauses, backoff). Only waits: a
-- transport's request and close go through unchanged.
function Worker:wrap_transport()
  local client = self.source.client
  if type(client) ~= "table" or client.transport == nil then return end
  local real = client.transport
  self.real_transport = real
  local worker = self
  client.transport = {
    request = function(_, spec) return real:request(spec) end,
    close = function() return real:close() end,
    wait = function(_, seconds)
      local deadline = now() + seconds
      while true do
        worker:maybe_renew()
        local left = deadline - now()
        if left <= 0 then return true end
        if real:wait(min(left, worker.renew_every)) == false then return false end
      end
    end,
  }
  self.unwrap = function() client.transport = real end
end

-- ---- planning ----------------------------------------------------------------

-- The partitions of a run: converse.sync.job's plan and windows.
function Worker:windows(bookmark, pg_now)
  local planner = self.planner
  local clock = planner.clock
  planner.clock = function() return floor(pg_now) end
  local from, to = planner:plan { bookmark = bookmark }
  planner.clock = clock
  local run = { from = from or 0, to = to, whole = from == nil or nil }
  local list, start = {}, run.from
  while start < run.to do
    local stop = planner:window_stop(run, start)
    list[#list + 1] = { start, stop }
    if #list > M.DEFAULTS.max_partitions then
      usage(("sync: more than %d partitions: use a longer window"):format(M.DEFAULTS.max_partitions))
    end
    start = stop
  end
  return list, run.from, run.to, run.whole
end

function Worker:spec(reset_failed)
  local windowed = self.source.windowed
  return {
    name = self.name, fingerprint = self.fingerprint, vendor = self.source.vendor or "custom",
    stream = self.source.stream or self.source.name or self.name, key_id = self.key_id,
    window = windowed and self.planner.window or nil, reset_failed = reset_failed, grace = self.lease,
    windows = windowed and function(bookmark, t) return self:windows(bookmark, t) end or nil,
  }
end

--- Plan the job (or join its run in progress); failed partitions of a
-- run in progress become pending again (this is a re-run).
-- @treturn table job (see converse.sync.queue `plan`) with `counts`
function Worker:prepare()
  local q = self.q
  local job
  if self.plan then
    job = self:retrying(function() return q:plan(self:spec(true)) end)
  else
    job = self:retrying(function() return q:find(self.name, self.fingerprint) end)
    if not job or job.run == 0 then
      error(queue.error(("the job %s has not been planned in %s"):format(self.name, q.shown), "NO_PLAN"), 0)
    end
  end
  job.counts = self:retrying(function() return q:counts(job) end)
  self.job = job
  self:emit { type = "plan", run = job.run, joined = job.joined or not self.plan,
              partitions = job.partitions or job.counts.total, counts = job.counts }
  return job
end

-- ---- one partition -----------------------------------------------------------

-- The sink, opened once for the worker's life (a partition's job opens
-- and closes it: here that is a no-op).
function Worker:held_sink()
  local real = self.real_sink
  local held = setmetatable({}, { __index = real })
  held.open = function() end
  held.close = function() end
  held.write = function(_, batch, st) return real:write(batch, st) end
  if real.checkpoint then held.checkpoint = function() return real:checkpoint() end end
  if real.restore then held.restore = function(_, s) return real:restore(s) end end
  return held
end

function Worker:add(s)
  if type(s) ~= "table" then return end
  local t = self.stats
  for _, k in ipairs { "records", "read", "duplicates", "pages", "retries", "rate_limit_waits", "waited_s" } do
    t[k] = t[k] + (tonumber(s[k]) or 0)
  end
end

function Worker:partition_event(ev, part)
  ev.partition = part.id
  if ev.type == "checkpoint" then
    self.last_renew = now()                 -- the checkpoint renewed the lease
    local t = self.stats
    ev.records, ev.pages = t.records + ev.records, t.pages + ev.pages
    ev.duplicates = t.duplicates + (ev.duplicates or 0)
    local c = self.job.counts
    ev.fraction = c and c.total > 0 and (c.done / c.total) or nil
    ev.total = nil
  elseif ev.type == "start" or ev.type == "done" then
    return                                  -- a partition's: the worker reports its own
  end
  self:emit(ev)
end

function Worker:work(part)
  local q, job = self.q, self.job
  self:emit { type = "claim", partition = part.id, window = window_text(part), resumed = part.resumed,
              attempts = part.attempts }
  local store = {
    transactional = self.shared_tx,
    load = function() return q:load(part) end,
    save = function(_, st) q:save(part, st) end,
    describe = function() return ("partition %d of %s"):format(part.id, q.shown) end,
  }
  if self.shared_tx then self.real_sink.state_writer = function(st) q:save(part, st) end end
  local stop = part.stop
  local j = jobmod.new {
    source = self.source, sink = self.sink, name = self.name, state = store,
    since = (part.start and part.start ~= 0) and part.start or nil, ["until"] = stop,
    window = job.window or self.planner.window, lookback = 0, skew = 0,
    -- never cut a window short on this machine's clock: the plan used PostgreSQL's
    clock = function() return max(os.time(), stop or 0) end,
    on_event = function(ev) self:partition_event(ev, part) end,
  }
  self.current, self.last_renew = part, now()
  local ok, res = pcall(j.run, j)
  self.current = nil
  self.real_sink.state_writer = nil
  if ok then
    self:add(res)
    self.stats.partitions = self.stats.partitions + 1
    if part.resumed then self.stats.resumed_partitions = self.stats.resumed_partitions + 1 end
    return
  end
  local err = res
  self:add(type(err) == "table" and err.sync)
  if errors.is(err) and err.code == "LEASE_LOST" then
    self.stats.lost = self.stats.lost + 1
    self:emit { type = "lease_lost", partition = part.id }
    return
  end
  if pg.unavailable(err) then
    -- wait for PostgreSQL; then the claim gives this partition back to us
    -- (its lease is ours) unless it expired meanwhile
    self:retrying(function() q.pg:exec("SELECT 1") end)
    return
  end
  local status = jobmod.status_of(err)
  if status == "interrupted" or status == "partial" then
    pcall(q.release, q, part)
    error(err, 0)
  end
  local msg = errors.is(err) and err.message or tostring(err)
  self:retrying(function() q:fail(part, msg) end)
  self.stats.failed = self.stats.failed + 1
  self.first_error = self.first_error or err
  self:emit { type = "partition_failed", partition = part.id, window = window_text(part), message = msg }
end

-- ---- the loop ------------------------------------------------------------------

function Worker:loop()
  local q, job = self.q, self.job
  while true do
    self:check_signal()
    local part = self:retrying(function() return q:claim(job, self.owner, self.lease) end)
    if part then
      self:work(part)
      self:retrying(function() q:complete(job) end)
      if now() - (self.counted or 0) >= 1 then        -- for the progress line: at most once a second
        job.counts = self:retrying(function() return q:counts(job) end)
        self.counted = now()
      end
    else
      local c = self:retrying(function() return q:counts(job) end)
      job.counts = c
      if c.pending + c.running == 0 then break end
      -- leased by others: wait for them to finish, or for a lease to run out
      local wait = 0.05
      if c.pending == 0 and c.next_expiry then wait = max(c.next_expiry + 0.05, 0.05) end
      wait = min(wait, self.poll)
      self:emit { type = "idle", wait = wait, running = c.running }
      self:sleep(wait)
    end
  end
  local complete, bookmark = self:retrying(function() return q:complete(job) end)
  self.bookmark = bookmark
  job.counts = self:retrying(function() return q:counts(job) end)
  if complete then
    self:emit { type = "run_complete", run = job.run, bookmark = bookmark }
    return
  end
  local c = job.counts
  if c.failed > 0 then
    local first = self.first_error
    if errors.is(first) and first.kind == "usage" then error(first, 0) end
    error(queue.error(("%d of %d partitions failed (a re-run makes them pending again): %s")
      :format(c.failed, c.total, tostring(first and first.message or c.error or "see converse status")),
      "PARTITIONS_FAILED"), 0)
  end
end

function Worker:summary(status, t0, err)
  local s, c = self.stats, self.job and self.job.counts
  return {
    status = status, job = self.name, records = s.records, read = s.read, duplicates = s.duplicates,
    pages = s.pages, retries = s.retries, rate_limit_waits = s.rate_limit_waits, waited_s = s.waited_s,
    partitions = s.partitions, failed = s.failed, lost = s.lost, resumed_partitions = s.resumed_partitions,
    resumed = (self.job and self.job.joined) or s.resumed_partitions > 0,
    bookmark = self.bookmark or (self.job and self.job.bookmark), run = self.job and self.job.run,
    queue = c, worker = self.owner, state = self.q.shown .. " (converse_partitions)",
    pg_statements = self.q.pg and self.q.pg.statements or nil,
    elapsed_s = floor((now() - t0) * 1000 + 0.5) / 1000,
    resume = status ~= "complete" and "the queue's pending partitions, at their checkpoints" or nil,
    error = err,
  }
end

--- Work: plan or join, claim and run partitions until none is left.
-- @treturn table summary (status "complete"); raises with `err.sync` otherwise
function Worker:run()
  local t0 = now()
  self.stats = { records = 0, read = 0, duplicates = 0, pages = 0, retries = 0, rate_limit_waits = 0,
                 waited_s = 0, partitions = 0, failed = 0, lost = 0, resumed_partitions = 0 }
  if self.trap_signals then core.trap_signals() end
  self:wrap_transport()
  local ok, err = pcall(function()
    self:check_signal()
    self:prepare()
    self.sink = self:held_sink()
    local real = self.real_sink
    self:retrying(function()
      real:open { key = self.source.key, columns = self.source.columns, name = self.name,
                  table = self.source.stream }
    end)
    self.shared_tx = real.kind == "postgres" and real.pg ~= nil and real.pg == self.q.pg
    self:loop()
  end)
  if self.unwrap then self.unwrap() end
  pcall(self.real_sink.close, self.real_sink)
  if ok then
    local s = self:summary("complete", t0)
    self:emit { type = "done", status = "complete", summary = s }
    return s
  end
  local status = jobmod.status_of(err)
  local s = self:summary(status, t0, err)
  self:emit { type = "done", status = status, summary = s }
  if type(err) == "table" then err.sync = s end
  error(err, 0)
end

--- Plan (or join) without working: the parent of `--workers N`.
function Worker:plan_only()
  local ok, job = pcall(self.prepare, self)
  if not ok then error(job, 0) end
  return job
end

--- Run a worker: `converse.sync.run{ queue = "postgres:...", ... }`.
-- @tparam table opts the options of `converse.sync.job` but `state`, plus
--   `queue` (conninfo, `postgres:CONNINFO` or a converse.sync.queue object),
--   `lease` (60 s), `fail_after` (60 s: how long PostgreSQL may be away),
--   `identity` (mixed into the job's key), `plan` (false: join only),
--   `owner` (the lease owner id; default host:pid:random)
function M.run(opts) return M.new(opts):run() end

return M
