--- `converse sync`: the command-line face of converse.sync (SPEC §5).
--   converse sync VENDOR STREAM --to SINK [--state PATH] [--since T] [--until T]
--                 [--window DURATION] [--lookback DURATION] [--base-url URL]
--                 [--domain D] [--bot-name B] [--plan P] [--param k=v ...]
--                 [--progress | --no-progress] [--json]
-- Exit statuses: 0 complete, 1 error (checkpoint kept), 2 usage, 3 stopped
-- early but resumable (retry or rate budget spent), 130 interrupted.
-- @module converse.cli.sync
local converse = require "converse"
local core     = require "converse.core"
local sync     = require "converse.sync"
local streams  = require "converse.sync.streams"
local stime    = require "converse.time"
local common   = require "converse.cli.common"
local progress = require "converse.cli.progress"

local tostring, ipairs, pcall, type = tostring, ipairs, pcall, type
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
    .. "SINK: ndjson:PATH | csv:PATH | sqlite:PATH[#TABLE] (TABLE defaults to STREAM).\n"
    .. "T: \"YYYY-MM-DD[ HH:MM[:SS]]\" (UTC) or unix seconds. DURATION: 30s, 15m, 6h, 1d.\n"
    .. "Keys come from the environment only: CONVERZ_KEY, AGENTX_KEY, CONVERSEIQ_KEY, CONVERRA_KEY.\n"
    .. "Exit status: 0 complete, 1 error (checkpoint kept), 2 usage, 3 stopped early but resumable, "
    .. "130 interrupted.")
  p:usage("Usage: converse sync VENDOR STREAM --to SINK [--state PATH] [--since T] [--until T]\n"
    .. "                     [--window DURATION] [--lookback DURATION] [--base-url URL]\n"
    .. "                     [--domain D] [--bot-name B] [--plan P] [--param k=v ...]\n"
    .. "                     [--progress | --no-progress] [--json]")
  p:argument("vendor", "converz | agentx | converseiq | converra")
  p:argument("stream", "The stream of the vendor (see below)")
  p:option("--to", "Where the records go: ndjson:PATH, csv:PATH or sqlite:PATH[#TABLE]"):argname("SINK")
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
    if not a.to then common.usage("--to SINK is required (ndjson:PATH, csv:PATH or sqlite:PATH[#TABLE])") end
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
    local show = a.progress or (not a.no_progress and core.isatty(2))
    local line = show and progress.new(vendor .. "/" .. a.stream) or nil
    local api = common.vendor(vendor, a)
    local ok, source = pcall(sync.stream, api, a.stream, q)
    if not ok then common.usage("--param: " .. common.plain(source.message or source)) end
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
