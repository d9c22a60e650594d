--- converse.sync: checkpointed incremental sync of vendor streams into
-- ndjson, CSV, SQLite or your own code. See docs/sync.md.
-- @module converse.sync
-- @usage
-- local converse = require "converse"
-- local sync = require "converse.sync"
-- local ax = converse.agentx{ api_key = os.getenv("AGENTX_KEY"), bot_name = "r3-218210" }
-- local summary = sync.run {
--   source = sync.stream(ax, "conversations"),
--   sink = sync.sqlite("agentx.db", { table = "conversations" }),
--   since = "2025-01-01", lookback = "1d",
-- }
local errors  = require "converse.errors"
local job     = require "converse.sync.job"
local streams = require "converse.sync.streams"
local stime   = require "converse.time"
local state   = require "converse.sync.state"

local type = type

local M = {
  job = job.new,
  stream = streams.stream,
  source = streams.source,
  STREAMS = streams.STREAMS,
  time = stime,
  status_of = job.status_of,
  state_file = state.file,
  STATE_VERSION = state.VERSION,
}

--- Create a job and run it once. See `converse.sync.job` for the options.
-- With `queue = "postgres:CONNINFO"` the job is shared by every process
-- that runs it, on any machine: see `converse.sync.queue.worker` and
-- docs/scaling.md (`lease`, `fail_after`, `identity` ...).
-- @treturn table the summary (status "complete"); raises otherwise
function M.run(opts)
  if type(opts) == "table" and opts.queue ~= nil then
    return require("converse.sync.queue.worker").run(opts)
  end
  return job.new(opts):run()
end

--- An ndjson sink (append-only, one record per line).
function M.ndjson(path) return require("converse.sync.sinks.ndjson").new(path) end

--- A CSV sink (append-only, RFC 4180). opts: `columns`, `extra`.
function M.csv(path, opts) return require("converse.sync.sinks.csv").new(path, opts) end

--- A SQLite sink (upsert by id, checkpoint in the same transaction). opts: `table`, `key`.
function M.sqlite(path, opts) return require("converse.sync.sinks.sqlite").new(path, opts) end

--- A PostgreSQL sink (upsert by id, nested values as jsonb, checkpoint in the
-- same transaction). opts: `table` (`[schema.]name`), `key`.
function M.postgres(conninfo, opts) return require("converse.sync.sinks.postgres").new(conninfo, opts) end

--- A function sink: `fn(records, batch)` per page. opts: `upsert`, `raw`, `close`.
function M.sink(fn, opts) return require("converse.sync.sinks.func").new(fn, opts) end

--- A sink from its command-line form: `ndjson:PATH`, `csv:PATH`, `sqlite:PATH[#TABLE]`,
-- `postgres:CONNINFO[#TABLE]`.
-- @tparam string spec
-- @tparam[opt] string default_table the table when `#TABLE` is absent
-- @return sink, or nil and a message
function M.parse_sink(spec, default_table)
  if type(spec) ~= "string" then return nil, "a sink such as ndjson:PATH, csv:PATH or sqlite:PATH[#TABLE]" end
  if spec:match("^postgres:") or spec:match("^postgresql:") then
    local pg = require "converse.sync.queue.pg"
    local conninfo, tbl = pg.parse_spec(spec)
    if not conninfo then return nil, tbl end
    if tbl == "_converse_state" then return nil, "_converse_state is where the job state lives" end
    if tbl and not (tbl:match("^[^.]+$") or tbl:match("^[^.]+%.[^.]+$")) then
      return nil, ("%q: TABLE must be a name or schema.name"):format(pg.redact(spec))
    end
    return M.postgres(conninfo, { table = tbl or default_table })
  end
  local kind, rest = spec:match("^(%a+):(.*)$")
  if not kind then
    return nil, ("%q is not a sink: use ndjson:PATH, csv:PATH or sqlite:PATH[#TABLE]"):format(spec)
  end
  if rest == "" then return nil, ("%q has no path"):format(spec) end
  if kind == "ndjson" then return M.ndjson(rest)
  elseif kind == "csv" then return M.csv(rest)
  elseif kind == "sqlite" then
    local path, tbl = rest:match("^(.-)#(.*)$")
    if path then
      if path == "" then return nil, ("%q has no path"):format(spec) end
      if tbl == "" then return nil, ("%q has an empty table name after #"):format(spec) end
      if tbl == "_converse_state" then return nil, "_converse_state is where the job state lives" end
      return M.sqlite(path, { table = tbl })
    end
    return M.sqlite(rest, { table = default_table })
  end
  return nil, ("unknown sink %q in %q: use ndjson, csv, sqlite or postgres"):format(kind, spec)
end

M.is_error = errors.is

--- Enrichment helpers: transcripts, Converz calls by vendor_call_id, write-back columns.
M.enrich = require "converse.sync.enrich"

return M
