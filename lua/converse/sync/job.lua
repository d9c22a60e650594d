--- The sync engine: one job = source + sink + state + name.
--
-- A run walks the source page by page and checkpoints after every page,
-- only once the sink has durably taken it (for SQLite: the page and the
-- state in one transaction). Time-filtered sources are read in half-open
-- windows `[start, stop)` aligned to the window size; the state keeps the
-- window being read and the pager position after the last committed page,
-- so a run stopped anywhere (signal, kill -9, network, exhausted retries)
-- is continued by the next one without reading any page twice or skipping
-- one. A complete window moves the bookmark (the end of the newest fully
-- delivered window); a later run starts at `bookmark - lookback`, never
-- before `since`, and stops at `until` or `now - skew`, whichever is
-- earlier, so the bookmark never passes the run's start minus the margin.
--
-- Append-only sinks (ndjson, csv) drop the records the lookback reads
-- again unchanged: the state remembers key and content hash of the
-- records inside the lookback zone only (`[bookmark - lookback, bookmark)`),
-- not every key. Upserting sinks (SQLite) need no such memory.
--
-- Outcomes: `run()` returns the summary when the job is complete; anything
-- else raises the error object that stopped it, with the summary in
-- `err.sync` (`status` "interrupted" for SIGINT/SIGTERM, "partial" when the
-- retry or rate budget ran out, "failed" otherwise). The checkpoint is
-- always kept. See docs/sync.md.
-- @module converse.sync.job
local core   = require "converse.core"
local errors = require "converse.errors"
local record = require "converse.sync.record"
local state  = require "converse.sync.state"
local stime  = require "converse.time"
local request = require "converse.request"

local type, pairs, ipairs, tostring, tonumber, pcall, error, setmetatable, next =
  type, pairs, ipairs, tostring, tonumber, pcall, error, setmetatable, next
local floor, max, min, format = math.floor, math.max, math.min, string.format
local now, signal = core.now, core.signal
local usage = errors.usage

local M = {}
local Job = {}
Job.__index = Job
M.Job = Job

M.DEFAULTS = { window = 86400, lookback = 86400, skew = 300 }

local LEVELS = request.LEVELS

local function opt_time(v, name)
  if v == nil then return nil end
  local t, why = stime.parse(v)
  if not t then usage(name .. ": " .. why) end
  return t
end

local function opt_duration(v, name, default)
  if v == nil then return default end
  local d, why = stime.duration(v)
  if not d then usage(name .. ": " .. why) end
  return d
end

--- Create a job (see `converse.sync.job{}` in docs/sync.md).
-- @tparam table opts `source`, `sink`, `name`, `state` (nil: the sink's own
--   store; a path: a JSON file; a store object; false: memory), `since`,
--   `until`, `window`, `lookback`, `skew`, `on_event`, `log`, `trap_signals`
-- @treturn Job
--- Check a job's `source` and `sink` options (also the queue worker's).
-- @treturn table source, table sink
function M.check_parts(opts)
  local source, sink = opts.source, opts.sink
  if type(source) ~= "table" or type(source.open) ~= "function" then
    usage("sync: source must be a sync source (converse.sync.stream(...) or converse.sync.source{...})")
  end
  if type(sink) ~= "table" or type(sink.write) ~= "function" then
    usage("sync: sink must be a sync sink (converse.sync.ndjson(path), .csv, .sqlite, .postgres or .sink(fn))")
  end
  return source, sink
end

function M.new(opts)
  errors.check(opts, "table", "sync job options")
  local source, sink = M.check_parts(opts)
  local name = opts.name or source.name
  if type(name) ~= "string" or name == "" then usage("sync: name (a string) is required") end
  if opts.on_event ~= nil and type(opts.on_event) ~= "function" then usage("on_event must be a function") end
  local store = opts.state
  if store == nil then
    store = sink.store and sink:store(name)
    if not store then
      usage(("sync: the %s sink keeps no state: pass state = PATH (a JSON file)"):format(sink.kind or "custom"))
    end
  elseif store == false then store = state.memory()
  elseif type(store) == "string" then store = state.file(store)
  elseif type(store) ~= "table" or type(store.load) ~= "function" or type(store.save) ~= "function" then
    usage("sync: state must be a path, a store with load/save, false, or nil")
  end
  local self = setmetatable({
    source = source, sink = sink, name = name, store = store,
    since = opt_time(opts.since, "since"), ["until"] = opt_time(opts["until"], "until"),
    window = opt_duration(opts.window, "window", source.window_size or M.DEFAULTS.window),
    lookback = opt_duration(opts.lookback, "lookback", source.lookback or M.DEFAULTS.lookback),
    skew = opt_duration(opts.skew, "skew", M.DEFAULTS.skew),
    on_event = opts.on_event, log = request.logger(opts.log), trap_signals = opts.trap_signals,
    clock = opts.clock or os.time,
  }, Job)
  if self.window < 1 then usage("window must be at least 1s") end
  if self.since and self["until"] and self["until"] <= self.since then usage("until must be after since") end
  return self
end

-- ---- events ---------------------------------------------------------------

-- Levels of the job's own events and of the client's (as converse.request logs them).
local EVENT_LEVEL = { start = "info", window = "info", checkpoint = "debug", done = "info",
                      request = "debug", response = "debug", page = "debug", rate_limit = "info",
                      retry = "warn" }

local function describe(ev)
  local t = ev.type
  if t == "window" then
    return format("%s: window [%s, %s)", ev.job, stime.short(ev.start), stime.short(ev.stop))
  elseif t == "checkpoint" then
    return format("%s: checkpoint: %d records, %d pages", ev.job, ev.records, ev.pages)
  elseif t == "start" then
    return format("%s: %s", ev.job, ev.resumed and "resuming an unfinished run" or "starting")
  elseif t == "done" then
    return format("%s: %s", ev.job, ev.status)
  end
  return ev.job .. ": " .. request.describe(ev)
end

function Job:emit(ev)
  ev.job = self.name
  if self.on_event then pcall(self.on_event, ev) end
  local log = self.log
  if log and LEVELS[ev.level or EVENT_LEVEL[ev.type] or "info"] >= log.level then
    pcall(log.write, "converse sync: " .. describe(ev))
  end
end

-- ---- state ----------------------------------------------------------------

local function interrupted_error(sig)
  return errors.new { kind = "network", code = "INTERRUPTED",
                      message = "interrupted by " .. (sig or "a signal") }
end

local function fresh_state(self)
  return { version = state.VERSION, job = self.name, source = self.source.fingerprint }
end

-- Where a run of this job starts and stops: [from, to).
function Job:plan(st)
  local to = self.clock() - self.skew
  if self["until"] and self["until"] < to then to = self["until"] end
  local from = self.since
  if st.bookmark then
    local b = st.bookmark - self.lookback
    from = from and max(from, b) or b
  end
  return from, to
end

-- The end of the window that starts at `start`: the next multiple of the
-- window size, or `to`; a run without since or bookmark reads its history
-- as one window (resumable by page or cursor inside it).
function Job:window_stop(run, start)
  if run.whole then return run.to end
  return min(run.to, (floor(start / self.window) + 1) * self.window)
end

function Job:checkpoint(batch)
  local st = self.st
  if self.store.transactional then
    self.sink:write(batch, st)
  else
    if batch then self.sink:write(batch) end
    if self.sink.checkpoint then st.sink = self.sink:checkpoint() end
    self.store:save(st)
  end
end

-- ---- one page -------------------------------------------------------------

-- Decode raw items, drop lookback duplicates (append-only sinks), remember
-- the records of the next lookback zone. Returns the batch for the sink.
function Job:prepare(page, win)
  local src, run, st = self.source, self.st.run, self.st
  local key, time_of = src.key, src.time
  local recs, raws, n = {}, nil, 0
  local dedupe = not self.sink.upsert and win and time_of and self.lookback > 0
  local old = dedupe and st.seen or nil
  local zone = dedupe and (run.to - self.lookback) or nil
  local dups = 0
  -- raw texts stay undecoded when nothing needs the table (ndjson, no lookback zone)
  local decode = dedupe or not self.sink.wants_raw or self.sink.needs_tables
  for _, item in ipairs(page.records) do
    local rec, raw
    if decode or type(item) ~= "string" then rec, raw = record.split(item) else rec, raw = item, item end
    local keep = true
    if dedupe then
      local k = record.key_text(rec[key])
      local ts = k and time_of(rec)
      if ts then
        local h = record.hash(rec, raw)
        local prev = old and old[k]
        if prev and prev:sub(1, 16) == h then keep = false end
        if ts >= zone then run.seen[k] = h .. " " .. format("%d", floor(ts)) end
      end
    end
    if keep then
      n = n + 1
      recs[n] = rec
      if raw ~= nil then raws = raws or {}; raws[n] = raw end
    else
      dups = dups + 1
    end
  end
  return { records = recs, raws = raws, n = n, window = win, page = page.number or page.cursor,
           key = key }, dups
end

-- Read one window (or the whole stream) from the saved position on.
function Job:read(win)
  local run, stats = self.st.run, self.stats
  local pos = run.position
  if pos and pos.done then return false end
  local pager = self.source.open(pos, win, self.sink.wants_raw)
  local advanced = false
  self.pager = pager
  for page in pager:pages() do
    local batch, dups = self:prepare(page, win)
    run.position = page.position
    run.pages = (run.pages or 0) + 1
    run.records = (run.records or 0) + batch.n
    -- the window's last page: the same checkpoint completes the window
    if win and page.position and page.position.done and not advanced then
      self:advance()
      advanced = true
    end
    self:checkpoint(batch)
    stats.pages = stats.pages + 1
    stats.records = stats.records + batch.n
    stats.read = stats.read + #page.records
    stats.duplicates = stats.duplicates + dups
    local env = page.body
    local total = type(env) == "table" and tonumber(env.total) or nil
    self:emit { type = "checkpoint", records = stats.records, pages = stats.pages, page_records = batch.n,
                duplicates = stats.duplicates, total = not win and total or nil,
                fraction = self:fraction(win), position = run.position }
    local sig = signal()
    if sig then
      pager:close()
      error(interrupted_error(sig), 0)
    end
  end
  self.pager = nil
  return advanced
end

-- The window is complete: move the bookmark, start the next one.
function Job:advance()
  local st, run = self.st, self.st.run
  if not st.bookmark or run.stop > st.bookmark then st.bookmark = run.stop end
  run.start, run.position = run.stop, nil
  run.stop = self:window_stop(run, run.start)
end

-- How far the run is (0..1), from the windows' times; nil when unknown.
function Job:fraction(win)
  local run = self.st.run
  if not win or not run.from or run.to <= run.from then return nil end
  return (win.start - run.from) / (run.to - run.from)
end

-- ---- the run ----------------------------------------------------------------

local function copy(t)
  local c = {}
  for k, v in pairs(t or {}) do c[k] = v end
  return c
end

function Job:finish()
  local st, run = self.st, self.st.run
  if self.source.windowed and not self.sink.upsert and self.lookback > 0 then
    local zone = (st.bookmark or run.to) - self.lookback
    local seen = copy(run.seen)
    for k, v in pairs(st.seen or {}) do
      if seen[k] == nil then seen[k] = v end
    end
    for k, v in pairs(seen) do
      local ts = tonumber(v:match(" (%-?%d+)$"))
      if not ts or ts < zone then seen[k] = nil end
    end
    st.seen = next(seen) and seen or nil
  end
  st.last_run = { started = run.started, finished = self.clock(), records = run.records or 0,
                  pages = run.pages or 0 }
  st.run = nil
  self:checkpoint(nil)
end

function Job:loop()
  local st = self.st
  local run = st.run
  if not self.source.windowed then
    self:read(nil)
    return self:finish()
  end
  while true do
    if not run.start then
      run.start = run.from
      run.stop = self:window_stop(run, run.start)
    end
    if run.start >= run.to then break end
    local win = { start = run.start, stop = run.stop }
    self:emit { type = "window", start = win.start, stop = win.stop, fraction = self:fraction(win) }
    if not self:read(win) then
      self:advance()
      if run.start < run.to then self:checkpoint(nil) end
    end
    local sig = signal()
    if sig then error(interrupted_error(sig), 0) end
  end
  self:finish()
end

-- Count the client's retries and rate-limit waits while the job runs.
function Job:hook_client()
  local client = self.source.client
  if not client then return function() end end
  local prev, stats = client.on_event, self.stats
  client.on_event = function(ev)
    if prev then pcall(prev, ev) end
    if ev.type == "retry" then stats.retries = stats.retries + 1
    elseif ev.type == "rate_limit" then
      -- the limiter may report one wait in several slices: count it once
      if not self.waiting then stats.rate_limit_waits = stats.rate_limit_waits + 1 end
      self.waiting = true
      stats.waited_s = stats.waited_s + (ev.wait or 0)
    elseif ev.type == "request" then
      self.waiting = false
    end
    self:emit(ev)
  end
  return function() client.on_event = prev end
end

--- Where a stopped run continues, in words (nil when nothing is pending).
function Job:resume_point(st)
  st = st or self.st
  local run = st and st.run
  if not run then return nil end
  local pos = run.position
  local where
  if pos and pos.page then where = "page " .. tostring(pos.page)
  elseif pos and pos.cursor then where = "cursor " .. tostring(pos.cursor):sub(1, 24)
  else where = "its first page" end
  if self.source.windowed and run.start then
    return format("window [%s, %s) at %s", stime.short(run.start), stime.short(run.stop or run.to), where)
  end
  return where
end

function Job:summary(status, t0, err)
  local st, stats = self.st or {}, self.stats
  return {
    status = status, job = self.name, records = stats.records, read = stats.read,
    duplicates = stats.duplicates, pages = stats.pages, retries = stats.retries,
    rate_limit_waits = stats.rate_limit_waits, waited_s = stats.waited_s,
    resumed = self.resumed or false, bookmark = st.bookmark,
    elapsed_s = floor((now() - t0) * 1000 + 0.5) / 1000,
    state = self.store.describe and self.store:describe() or nil,
    resume = status ~= "complete" and self:resume_point() or nil,
    error = err,
  }
end

--- What an error means for the run: "interrupted", "partial" or "failed".
function M.status_of(err)
  if errors.is(err) then
    if err.code == "INTERRUPTED" then return "interrupted" end
    if err.retryable then return "partial" end
  end
  return "failed"
end

--- Run the job once (from its checkpoint, if a previous run stopped).
-- @treturn table summary: `status` ("complete"), `records`, `read`,
--   `duplicates`, `pages`, `retries`, `rate_limit_waits`, `waited_s`,
--   `resumed`, `bookmark`, `elapsed_s`, `state`
-- @raise the error that stopped the run, with `err.sync` = the summary
function Job:run()
  local t0 = now()
  self.stats = { records = 0, read = 0, duplicates = 0, pages = 0, retries = 0,
                 rate_limit_waits = 0, waited_s = 0 }
  if self.trap_signals then core.trap_signals() end
  local unhook = function() end
  local ok, err = pcall(function()
    self.sink:open { key = self.source.key, columns = self.source.columns, name = self.name,
                     table = self.source.stream }
    local st = self.store:load()
    if st then
      if st.source ~= nil and self.source.fingerprint and st.source ~= self.source.fingerprint then
        usage(("sync: the state at %s belongs to another query of %s (its parameters changed): "
          .. "use another state, or remove it to start over"):format(self.store:describe(), self.name))
      end
    else
      st = fresh_state(self)
    end
    self.st = st
    if self.sink.restore then self.sink:restore(st.sink) end
    unhook = self:hook_client()
    self.resumed = st.run ~= nil
    if st.run then
      local _, to = self:plan(st)                     -- a later `to` extends the unfinished run
      if self.source.windowed and to > st.run.to then st.run.to = to end
    else
      local run = { started = self.clock(), records = 0, pages = 0 }
      if self.source.windowed then
        local from, to = self:plan(st)
        run.from, run.to, run.whole = from or 0, to, from == nil or nil
        run.seen = {}
      end
      st.run = run
      -- on disk before the first byte of output: a run killed inside its
      -- first page write is cut back like any other
      self:checkpoint(nil)
    end
    self:emit { type = "start", resumed = self.resumed, from = st.run.from, to = st.run.to,
                windowed = self.source.windowed or false }
    if signal() then error(interrupted_error(signal()), 0) end
    self:loop()
  end)
  unhook()
  if self.pager then pcall(self.pager.close, self.pager) self.pager = nil end
  local cok, cerr = pcall(self.sink.close, self.sink)
  if ok and not cok then ok, err = false, cerr end
  if ok then
    local s = self:summary("complete", t0)
    self:emit { type = "done", status = "complete", summary = s }
    return s
  end
  local status = M.status_of(err)
  local s = self:summary(status, t0, err)
  self:emit { type = "done", status = status, summary = s, level = "warn" }
  if type(err) == "table" then err.sync = s end
  error(err, 0)
end

--- The stored state (nil before the first checkpoint).
function Job:state() return self.store:load() end

return M
