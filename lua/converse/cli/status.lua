--- `converse status`: what a work queue holds (SPEC §7).
--   converse status --queue postgres:CONNINFO [--job NAME] [--json]
-- Prints a line `STATE COUNT` for each of pending, running, done, failed,
-- then records and throughput, one line per job, the lease holders, the
-- oldest lease and the failed partitions; `--json` prints one object
-- `{"pending":n,"running":n,"done":n,"failed":n,...}`.
-- Exit status: 0, 1 (the queue cannot be read), 2 (usage).
-- @module converse.cli.status
local converse = require "converse"
local common   = require "converse.cli.common"

local M = {}
local PROG = "converse status"

local function parser()
  local p = common.parser(PROG, "Show the partitions of a sync work queue by state, records, throughput, "
    .. "lease holders and the oldest lease.",
    "Exit status: 0, 1 when the queue cannot be read, 2 usage.")
  p:usage("Usage: converse status --queue postgres:CONNINFO [--job NAME] [--json]")
  p:option("--queue", "The work queue: postgres:CONNINFO"):argname("postgres:CONNINFO")
  p:option("--job", "Only this job (e.g. agentx/messages)"):argname("NAME")
  p:flag("--json", "Print one JSON object on stdout")
  return p
end

-- A JSON object with the four states first, the rest in sorted order.
local function encode(r)
  local null = converse.null
  local function list(t) return converse.array(t) end
  local body = converse.json.encode({
    records = r.records, records_per_s = r.records_per_s or null, partitions = r.partitions,
    jobs = list(r.jobs), leases = list(r.leases), oldest_lease = r.oldest_lease or null,
    failures = list(r.failures),
  }, { sort_keys = true })
  return ('{"pending":%d,"running":%d,"done":%d,"failed":%d,%s'):format(r.pending, r.running, r.done,
    r.failed, body:sub(2))
end

function M.main(args)
  return common.run(PROG, function()
    local a = common.parse(parser(), args)
    if not a.queue then common.usage("--queue postgres:CONNINFO is required") end
    local queue = require "converse.sync.queue"
    local conninfo, why = queue.conninfo(a.queue)
    if not conninfo or not a.queue:match("^postgres") then
      common.usage("--queue: " .. (why or "use postgres:CONNINFO"))
    end
    local q = queue.open(conninfo)
    local ok, r = pcall(require("converse.sync.queue.status").report, q, a.job)
    q:close()
    if not ok then error(r, 0) end
    if a.json then
      io.stdout:write(encode(r), "\n")
    else
      io.stdout:write(require("converse.sync.queue.status").text(r), "\n")
    end
    return common.EXIT.ok
  end)
end

return M
