--- The command line: `converse <command> [options]` (bin/converse is a
-- thin launcher around `main`). Each command parses its own arguments
-- with lua-argparse, so `--help` works on every one; unknown commands and
-- options are usage errors (exit 2).
-- @module converse.cli
local core   = require "converse.core"
local common = require "converse.cli.common"

local ipairs, require = ipairs, require

local M = {}

--- Commands in the order of `converse --help`: name, module, summary.
M.COMMANDS = {
  { "sync",   "converse.cli.sync",   "Checkpointed incremental sync of a vendor stream (converse sync --help)" },
  { "status", "converse.cli.status", "Partitions of a sync work queue by state, leases (converse status --help)" },
  { "export", "converse.cli.export", "One-off dump of a vendor read method as NDJSON (converse export --help)" },
  { "mock",   "converse.cli.mock",   "The local mock of every vendor API (converse mock --help)" },
}

local function parser()
  local p = common.parser("converse", "Pull, sync and enrich conversation data from vendor REST APIs "
    .. "(Converz, AgentX/DeepConverse, ConverseIQ, Converra).")
  p:flag("--version", "Print the version and exit."):action(function()
    io.stdout:write("converse ", core.VERSION, "\n")
    os.exit(0)
  end)
  p:command_target("command")
  p:epilog("API keys come from the environment only: CONVERZ_KEY, AGENTX_KEY, CONVERSEIQ_KEY, "
    .. "CONVERRA_KEY.\n`converse help COMMAND` is `converse COMMAND --help`.")
  for _, c in ipairs(M.COMMANDS) do
    local cmd = p:command(c[1], c[3]):summary(c[3]):add_help(false):handle_options(false)
    cmd:argument("args"):args("*")
  end
  return p
end

--- Run the command line; returns the exit status.
-- @tparam table argv the arguments after the program name
function M.main(argv)
  local rc = common.run("converse", function()
    if argv[1] == "help" then                    -- `converse help [COMMAND]`
      for _, c in ipairs(M.COMMANDS) do
        if c[1] == argv[2] then return require(c[2]).main { "--help" } end
      end
      argv = { "--help" }
    end
    local a = common.parse(parser(), argv)
    for _, c in ipairs(M.COMMANDS) do
      if c[1] == a.command then return require(c[2]).main(a.args or {}) end
    end
    return common.EXIT.usage
  end)
  io.stdout:flush()
  return rc
end

return M
