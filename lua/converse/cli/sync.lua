--- `converse sync`: the command-line face of converse.sync (SPEC §5).
--   converse sync VENDOR STREAM --to SINK [--state PATH] [--since T] [--until T]
--                 [--window DURATION] [--lookback DURATION] [--base-url URL]
--                 [--domain D] [--bot-name B] [--plan P] [--param k=v ...]
--                 [--progress | --no-progress] [--json]
--                 [--queue postgres:CONNINFO [--workers N] [--lease DURATION]]
--                 [--shared-rate redis://HOST:PORT]
-- Exit statuses: 0 complete, 1 error (checkpoint kept), 2 usage, 3 stopped
-- early but resumable (retry or rate budget spent), 130 interrupted.
-- With --queue (SPEC §7) the job is planned in PostgreSQL (idempotently)
-- and worked until no partition is left, by this process or, with
-- --workers N, by N child processes of the same interpreter running the
-- same command; the same command on other machines adds workers.
-- @module converse.cli.sync
local converse = require "converse"
local core     = require "converse.core"
local sync     = require "converse.sync"
local streams  = require "converse.sync.streams"
local stime    = require "converse.time"
local common   = require "converse.cli.common"
local progress = require "converse.cli.progress"

local tostring, tonumber, ipairs, pairs, pcall, type, rawget =
  tostring, tonumber, ipairs, pairs, pcall, type, rawget
local format, concat = string.format, table.concat

local M = {}
local PROG = "converse sync"

local function stream_list()
  local out = {}
  for _, v in ipairs(streams.VENDORS) do
    out[#out + 1] = v .. " " .. concat(streams.names(v), "|")
  end
  return concat(out, "; ")
end

-- argparse converters: a bad value names its option.
local function time_arg(option)
  return function(s)
    local t, why = stime.parse(s)
    if not t then return nil, option .. ": " .. why end
    return t
  end
end
local function duration_arg(option)
  return function(s)
    local d, why = stime.duration(s)
    if not d then return nil, option .. ": " .. why end
    return d
  end
end

local function parser()
  local p = common.parser(PROG, "Copy a vendor stream into a sink, checkpointed after every page: "
    .. "a re-run after any interruption continues where the last one stopped, a later run from the "
    .. "bookmark minus --lookback.",
    "Streams: " .. stream_list() .. ".\n"
    .. "SINK: ndjson:PATH | csv:PATH | sqlite:PATH[#TABLE] | postgres:CONNINFO[#TABLE] (TABLE defaults to STREAM).\n"
    .. "T: \"YYYY-MM-DD[ HH:MM[:SS]]\" (UTC) or unix seconds. DURATION: 30s, 15m, 6h, 1d.\n"
    .. "Keys come from the environment only: CONVERZ_KEY, AGENTX_KEY, CONVERSEIQ_KEY, CONVERRA_KEY.\n"
    .. "With --queue the job is shared by every process running the same command, on any machine "
    .. "(docs/scaling.md); --to must then be postgres:CONNINFO[#TABLE].\n"
    .. "Exit status: 0 complete, 1 error (checkpoint kept), 2 usage, 3 stopped early but resumable, "
    .. "130 interrupted.")
  p:usage("Usage: converse sync VENDOR STREAM --to SINK [--state PATH] [--since T] [--until T]\n"
    .. "                     [--window DURATION] [--lookback DURATION] [--base-url URL]\n"
    .. "                     [--domain D] [--bot-name B] [--plan P] [--param k=v ...]\n"
    .. "                     [--progress | --no-progress] [--json]\n"
    .. "                     [--queue postgres:CONNINFO [--workers N] [--lease DURATION]]\n"
    .. "                     [--shared-rate redis://HOST:PORT]")
  p:argument("vendor", "converz | agentx | converseiq | converra")
  p:argument("stream", "The stream of the vendor (see below)")
  p:option("--to", "Where the records go: ndjson:PATH, csv:PATH, sqlite:PATH[#TABLE] or "
    .. "postgres:CONNINFO[#TABLE]"):argname("SINK")
  p:option("--state", "Keep the state in this JSON file (default: the sink's)"):argname("PATH")
  p:option("--since", "Earliest time to read (first run; later runs start at the bookmark)")
   :argname("T"):convert(time_arg("--since"))
  p:option("--until", "Read up to this time (default: now minus 5 minutes)")
   :argname("T"):convert(time_arg("--until"))
  p:option("--window", "Length of the time windows (default 1d)"):argname("DURATION")
   :convert(duration_arg("--window"))
  p:option("--lookback", "Read this much before the bookmark again (default 1d)"):argname("DURATION")
   :convert(duration_arg("--lookback"))
  common.vendor_options(p)
  p:mutex(p:flag("--progress", "Show the progress line even when stderr is not a terminal"),
          p:flag("--no-progress", "Never show the progress line"))
  p:flag("--json", "Print a JSON summary on stdout at the end")
  p:option("--queue", "Share the job through a work queue in PostgreSQL (any number of processes and "
    .. "machines running the same command)"):argname("postgres:CONNINFO")
  p:option("--workers", "With --queue: run N local worker processes (default 1)"):argname("N")
   :convert(function(v)
     local n = tonumber(v)
     if not n or n < 1 or n % 1 ~= 0 or n > 256 then return nil, "--workers: a whole number from 1 to 256" end
     return n
   end)
  p:option("--lease", "With --queue: how long a partition stays claimed without a renewal (default 60s)")
   :argname("DURATION"):convert(function(v)
     local d, why = duration_arg("--lease")(v)
     if d and d < 1 then return nil, "--lease must be at least 1s" end
     return d, why
   end)
  p:option("--shared-rate", "Share the vendor's rate limit (one budget per API key) with every process "
    .. "on every machine, in Redis"):argname("redis://HOST:PORT")
  p:flag("--worker-child"):hidden(true)       -- a child of --workers N: join, do not plan
  return p
end

local plain_error = common.message

-- The --json summary: stable keys, bookmark as a UTC time.
local function json_summary(s, vendor, stream, rc)
  return converse.json.encode({
    status = s.status, records = s.records, pages = s.pages, retries = s.retries,
    resumed = s.resumed, bookmark = s.bookmark and stime.format(s.bookmark) or converse.null,
    elapsed_s = s.elapsed_s, vendor = vendor, stream = stream, job = s.job,
    duplicates = s.duplicates, read = s.read, rate_limit_waits = s.rate_limit_waits,
    state = s.state or converse.null, resume = s.resume or converse.null,
    error = s.error and plain_error(s.error) or converse.null, exit = rc,
    partitions = s.partitions, workers = s.workers, run = s.run,
    queue = s.queue and {
      pending = s.queue.pending, running = s.queue.running, done = s.queue.done, failed = s.queue.failed,
      total = s.queue.total } or nil,
  }, { sort_keys = true })
end

local function report(s, rc)
  local where = s.resume and ("; a re-run resumes at " .. s.resume) or ""
  local state = s.state and (" (state: " .. s.state .. ")") or ""
  local msg
  if s.status == "complete" then
    msg = format("%s complete: %s records, %d page%s in %.1f s%s%s%s", s.job, progress.thousands(s.records),
      s.pages, s.pages == 1 and "" or "s", s.elapsed_s,
      s.duplicates > 0 and format(", %d unchanged skipped", s.duplicates) or "",
      s.bookmark and ("; bookmark " .. stime.format(s.bookmark)) or "", state)
  elseif s.status == "interrupted" then
    msg = format("%s interrupted (%s) after %d pages: checkpoint written%s%s", s.job,
      tostring(s.error and s.error.message or "signal"):gsub("^interrupted by ", ""), s.pages, where, state)
  elseif s.status == "partial" then
    msg = format("%s stopped early, resumable: %s%s%s", s.job, plain_error(s.error), where, state)
  elseif rc == 2 then
    msg = plain_error(s.error)
  else
    msg = format("%s failed: %s; checkpoint kept%s%s", s.job, plain_error(s.error), where, state)
  end
  io.stderr:write(PROG, ": ", msg, "\n")
  return rc
end

local EXIT_OF = { complete = 0, interrupted = 130, partial = 3, failed = 1 }

-- ---- --queue ----------------------------------------------------------------

-- The vendor's documented rate limit, shared through Redis (--shared-rate).
local function shared_rate(vendor, a)
  local url = a.shared_rate
  local ok, why = require("converse.redis").parse_url(url)
  if not ok then common.usage("--shared-rate: " .. why) end
  local rl
  if vendor == "agentx" then rl = require("converse.agentx").RATE_LIMIT
  elseif vendor == "converra" then rl = require("converse.converra").PLANS[a.plan or "free"] end
  if not rl then
    common.usage(("--shared-rate: %s has no documented rate limit to share%s; from Lua: rate_limit = "
      .. "{ per_second = N, shared = \"redis://...\" }"):format(vendor,
      vendor == "converra" and " on the enterprise plan" or ""))
  end
  local copy = { shared = url }
  for k, v in pairs(rl) do copy[k] = v end
  return copy
end

local function queue_report(s, rc, workers)
  local who = workers and (workers .. " workers") or "this worker"
  local c = s.queue or {}
  local msg
  if s.status == "complete" then
    msg = format("%s complete: run %s, %s: %s records, %d pages, %d partitions in %.1f s%s", s.job,
      tostring(s.run or "?"), who, progress.thousands(s.records), s.pages, s.partitions or 0, s.elapsed_s,
      s.bookmark and ("; bookmark " .. stime.format(s.bookmark)) or "")
  else
    local left = format("%d pending, %d running, %d failed of %d partitions", c.pending or 0, c.running or 0,
      c.failed or 0, c.total or 0)
    if s.status == "interrupted" then
      msg = format("%s interrupted (%s): partitions released at their checkpoints; %s; a re-run continues",
        s.job, tostring(s.error and s.error.message or "signal"):gsub("^interrupted by ", ""), left)
    elseif s.status == "partial" then
      msg = format("%s stopped early, resumable: %s; %s", s.job, plain_error(s.error), left)
    elseif rc == 2 then
      msg = plain_error(s.error)
    else
      msg = format("%s failed: %s; %s", s.job, plain_error(s.error), left)
    end
  end
  io.stderr:write(PROG, ": ", msg, "\n")
  return rc
end

-- The interpreter running us (`lua5.4`, `luajit` ...) and our script: the
-- children of --workers N are the same program.
local function self_command()
  local a = rawget(_G, "arg")
  if type(a) ~= "table" or not a[0] then return nil end
  local i = -1
  while a[i - 1] do i = i - 1 end
  local cmd = {}
  for k = i, 0 do cmd[#cmd + 1] = a[k] end
  return cmd
end

local function quote(v) return "'" .. tostring(v):gsub("'", "'\\''") .. "'" end

-- The arguments of a child: ours without --workers, --json and progress
-- options, plus --worker-child --json --no-progress.
local function child_args(args)
  local out, skip = { "sync" }, false
  for _, v in ipairs(args) do
    if skip then skip = false
    elseif v == "--workers" then skip = true
    elseif not (v:match("^%-%-workers=") or v == "--json" or v == "--progress" or v == "--no-progress") then
      out[#out + 1] = v
    end
  end
  out[#out + 1] = "--worker-child"
  out[#out + 1] = "--json"
  out[#out + 1] = "--no-progress"
  return out
end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local t = f:read("*a")
  f:close()
  return t
end

-- Run N children and wait for them; a SIGINT/SIGTERM to us goes on to them
-- (they finish or drop their page, release their partition, exit 130).
local function run_children(n, args, w, line)
  local cmd = self_command()
  if not cmd then error("converse sync: --workers needs bin/converse (the interpreter's arg table)", 0) end
  local base = {}
  for i, v in ipairs(cmd) do base[i] = quote(v) end
  for _, v in ipairs(child_args(args)) do base[#base + 1] = quote(v) end
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p " .. quote(dir)))
  local kids = {}
  for i = 1, n do
    local p = dir .. "/" .. i
    os.execute(("( %s >%s.out & echo $! >%s.pid.tmp; mv %s.pid.tmp %s.pid; wait $!; echo $? >%s.rc.tmp; "
      .. "mv %s.rc.tmp %s.rc ) >/dev/null &"):format(table.concat(base, " "), quote(p), quote(p), quote(p),
      quote(p), quote(p), quote(p), quote(p)))
    kids[i] = { path = p }
  end
  local signalled, left, next_draw = false, n, 0
  while left > 0 do
    left = 0
    for _, k in ipairs(kids) do
      k.pid = k.pid or tonumber(read_file(k.path .. ".pid") or "")
      if not k.rc then k.rc = tonumber(read_file(k.path .. ".rc") or "") end
      if not k.rc then left = left + 1 end
    end
    if left == 0 then break end
    if core.signal() and not signalled then
      signalled = true
      for _, k in ipairs(kids) do
        if k.pid and not k.rc then os.execute("kill -TERM " .. k.pid .. " 2>/dev/null") end
      end
    end
    if line and core.now() >= next_draw then
      next_draw = core.now() + 0.5
      local ok, c = pcall(w.q.counts, w.q, w.job)
      if ok then
        line:event { type = "checkpoint", records = c.records, pages = c.pages or 0,
                     fraction = c.total > 0 and c.done / c.total or nil }
      end
    end
    w:sleep_quietly(0.1)
  end
  local out = {}
  for i, k in ipairs(kids) do
    local text = read_file(k.path .. ".out") or ""
    local last = text:match("([^\n]+)\n?$")
    local ok, s = pcall(converse.json.decode, last or "")
    out[i] = { rc = k.rc, summary = ok and type(s) == "table" and s or nil }
  end
  os.execute("rm -rf " .. quote(dir))
  return out, signalled
end

-- --workers N: plan here, work in N children, sum up their summaries.
local function parent(n, args, w, a, line)
  local t0 = core.now()
  w:plan_only()
  local kids, signalled = run_children(n, args, w, line)
  local s = { job = w.name, records = 0, pages = 0, retries = 0, rate_limit_waits = 0, read = 0,
              duplicates = 0, partitions = 0, resumed = w.job.joined or false, workers = n, run = w.job.run }
  local rcs, err = {}, nil
  for _, k in ipairs(kids) do
    rcs[k.rc or 1] = true
    local c = k.summary
    if c then
      for _, f in ipairs { "records", "pages", "retries", "rate_limit_waits", "read", "duplicates", "partitions" } do
        s[f] = s[f] + (tonumber(c[f]) or 0)
      end
      if c.resumed == true then s.resumed = true end
      if c.error ~= converse.null and c.error and not err then err = c.error end
    end
  end
  local ok, complete, bookmark = pcall(function() return w.q:complete(w.job) end)
  local cok, counts = pcall(w.q.counts, w.q, w.job)
  s.queue = cok and counts or nil
  s.bookmark = ok and bookmark or nil
  s.elapsed_s = math.floor((core.now() - t0) * 1000 + 0.5) / 1000
  s.state = w.q.shown .. " (converse_partitions)"
  if signalled or rcs[130] then s.status = "interrupted"
  elseif ok and complete then s.status = "complete"
  elseif rcs[1] or (s.queue and s.queue.failed > 0) then s.status = "failed"
  elseif rcs[3] then s.status = "partial"
  else s.status = "failed" end
  if s.status == "interrupted" then
    s.error = converse.errors.new { kind = "network", code = "INTERRUPTED", message = "interrupted by a signal" }
  elseif s.status ~= "complete" then
    s.error = converse.errors.new { kind = "io", code = "WORKERS",
                                    message = err or "the workers stopped before the queue was empty" }
  end
  if line then line:finish() end
  local rc = EXIT_OF[s.status]
  if s.status == "failed" and rcs[2] then rc = common.EXIT.usage end
  if a.json then io.stdout:write(json_summary(s, w.source.vendor, a.stream, rc), "\n") end
  return queue_report(s, rc, n)
end

local function run_queue(a, args, vendor, source, sink, line)
  if sink.kind ~= "postgres" then
    common.usage("--queue: the sink must be postgres:CONNINFO[#TABLE] (every worker writes to it; "
      .. "a file or SQLite sink lives on one machine)")
  end
  if a.state then common.usage("--state: with --queue the state lives in the queue") end
  local queue = require "converse.sync.queue"
  local conninfo, why = queue.conninfo(a.queue)
  if not conninfo or not a.queue:match("^postgres") then
    common.usage("--queue: " .. (why or "use postgres:CONNINFO"))
  end
  local worker = require "converse.sync.queue.worker"
  local outage = false
  local function on_event(ev)                   -- an unreachable PostgreSQL is said at once
    if ev.type == "queue_wait" and not outage and not line then
      io.stderr:write(format("%s: PostgreSQL unavailable, trying again for up to %d s: %s\n", PROG,
                             worker.DEFAULTS.fail_after, tostring(ev.message)))
    end
    outage = ev.type == "queue_wait"
    if line then line:event(ev) end
  end
  local w = worker.new {
    queue = conninfo, source = source, sink = sink,
    name = vendor .. "/" .. a.stream .. (sink.table and sink.table ~= a.stream and ("#" .. sink.table) or ""),
    since = a.since, ["until"] = a["until"], window = a.window, lookback = a.lookback, lease = a.lease,
    identity = table.concat({ a.bot_name or "", a.domain or "", a.plan or "" }, "\n"),
    plan = not a.worker_child, trap_signals = true, on_event = on_event,
  }
  core.trap_signals()
  if (a.workers or 1) > 1 and not a.worker_child then return parent(a.workers, args, w, a, line) end
  local rok, res = pcall(w.run, w)
  if line then line:finish() end
  local s = rok and res or (type(res) == "table" and res.sync)
  if not s then error(res, 0) end
  local rc = EXIT_OF[s.status] or 1
  if not rok and s.status == "failed" and converse.is_error(res) and res.kind == "usage" then rc = 2 end
  if a.json then io.stdout:write(json_summary(s, vendor, a.stream, rc), "\n") end
  if a.worker_child and rc == 0 then return rc end      -- the parent reports
  return queue_report(s, rc)
end

function M.main(args)
  return common.run(PROG, function()
    local a = common.parse(parser(), args)
    local vendor = common.check_vendor(a.vendor)
    local names = streams.names(vendor)
    if not streams.STREAMS[vendor][a.stream] then
      local near = common.closest(a.stream, names)
      common.usage(("%s has no stream '%s'%s; streams: %s"):format(vendor, a.stream,
        near and (" (did you mean '" .. near .. "'?)") or "", concat(names, ", ")))
    end
    if not a.to then
      common.usage("--to SINK is required (ndjson:PATH, csv:PATH, sqlite:PATH[#TABLE] or postgres:CONNINFO[#TABLE])")
    end
    local sink, serr = sync.parse_sink(a.to, a.stream)
    if not sink then common.usage("--to: " .. serr) end
    if a.since and a["until"] and a["until"] <= a.since then common.usage("--until must be after --since") end
    if a.window and a.window < 1 then common.usage("--window must be at least 1s") end
    local windowed = streams.STREAMS[vendor][a.stream].window ~= nil
    if not windowed and (a.since or a["until"] or a.window or a.lookback) then
      common.usage(("%s %s is read from the start every run: --since, --until, --window and --lookback "
        .. "apply to converz calls and agentx conversations|messages"):format(vendor, a.stream))
    end
    local q = common.params(a.param)
    for _, k in ipairs(streams.STREAMS[vendor][a.stream].window_params or {}) do
      if q[k] ~= nil then common.usage(("--param %s: the windows set it: use --since and --until"):format(k)) end
    end
    for _, k in ipairs { "page", "cursor" } do
      if q[k] ~= nil then common.usage(("--param %s: the checkpoints set it"):format(k)) end
    end
    if not a.queue and (a.workers or a.lease) then common.usage("--workers and --lease go with --queue") end
    local show = a.progress or (not a.no_progress and core.isatty(2))
    local line = show and progress.new(vendor .. "/" .. a.stream) or nil
    local api = common.vendor(vendor, a, a.shared_rate and { rate_limit = shared_rate(vendor, a) } or nil)
    local ok, source = pcall(sync.stream, api, a.stream, q)
    if not ok then common.usage("--param: " .. common.plain(source.message or source)) end
    if a.queue then return run_queue(a, args, vendor, source, sink, line) end
    local job = sync.job {
      source = source, sink = sink, name = vendor .. "/" .. a.stream .. (sink.table and sink.table ~= a.stream
        and ("#" .. sink.table) or ""),
      state = a.state, since = a.since, ["until"] = a["until"], window = a.window, lookback = a.lookback,
      on_event = line and function(ev) line:event(ev) end or nil,
    }
    core.trap_signals()
    local rok, res = pcall(job.run, job)
    if line then line:finish() end
    local s = rok and res or (type(res) == "table" and res.sync)
    if not s then error(res, 0) end                -- a bug, not a sync outcome
    local rc = EXIT_OF[s.status] or 1
    if not rok and s.status == "failed" and converse.is_error(res) and res.kind == "usage" then rc = 2 end
    if a.json then io.stdout:write(json_summary(s, vendor, a.stream, rc), "\n") end
    return report(s, rc)
  end)
end

return M
