-- examples/*.lua run as people run them, against the mock.
local helper = require "helper"
local cli    = require "support.cli"

local LUA, BUILD = cli.LUA, cli.BUILD

local function example(name, env)
  local dir = cli.tmpdir()
  local vars = { ("LUA_PATH=%s"):format(cli.quote("lua/?.lua;lua/?/init.lua;;")),
                 ("LUA_CPATH=%s"):format(cli.quote(BUILD .. "/?.so;;")) }
  for k, v in pairs(env) do vars[#vars + 1] = k .. "=" .. cli.quote(v) end
  os.execute(("cd %s && env %s %s examples/%s >%s/out 2>%s/err; echo $? >%s/rc"):format(cli.quote(cli.ROOT),
    table.concat(vars, " "), LUA, name, dir, dir, dir))
  return tonumber(cli.read(dir .. "/rc")), cli.read(dir .. "/out"), cli.read(dir .. "/err")
end

describe("examples", function()
  local mock, env
  setup(function()
    mock = helper.start_mock { calls = 300, conversations = 60, gzip = "never" }
  end)
  teardown(function() mock:stop() cli.cleanup() end)
  before_each(function()
    mock:fresh()
    env = { CONVERSE_MOCK = mock.url, OUT = cli.tmpdir(), SINCE = "2025-01-01", UNTIL = "2025-04-01" }
  end)

  it("01: AgentX conversations and messages into SQLite, resumable", function()
    local rc, out, err = example("01_agentx_nightly.lua", env)
    assert.are.equal(0, rc, err)
    assert.matches("conversations +60 records", out)
    assert.matches("messages +%d+ records", out)
    assert.matches("bookmark 2025%-04%-01 00:00:00", out)
    -- the next night starts at the bookmark minus the lookback: only the last day again
    rc, out = example("01_agentx_nightly.lua", env)
    assert.are.equal(0, rc)
    assert.matches("conversations +%d records in   1 pages", out)
  end)

  it("02: Converz calls with summaries to CSV", function()
    local rc, out, err = example("02_converz_calls_csv.lua", env)
    assert.are.equal(0, rc, err)
    assert.matches("^300 calls written", out)
    local csv = cli.read(env.OUT .. "/calls.csv")
    assert.matches("^call_id,start_time,rep_name,campaign,duration,sentiment,resolved,summary\r\n", csv)
    rc, out = example("02_converz_calls_csv.lua", env)
    assert.are.equal(0, rc)
    assert.matches("^0 calls written %(%d+ unchanged skipped%)", out)
    assert.are.equal(csv, cli.read(env.OUT .. "/calls.csv"))
  end)

  it("03: AgentX transcripts written back to the matching Converz calls", function()
    local rc, out, err = example("03_transcripts_to_converz.lua", env)
    assert.are.equal(0, rc, err)
    assert.matches("60 conversations, 60 with a telephony id, 60 matched Converz calls; 60 rows updated "
      .. "in 1 request", out)
    local posts = {}
    for _, e in ipairs(mock:log()) do if e.method == "POST" then posts[#posts + 1] = e end end
    assert.are.equal(1, #posts)
    local id, text = out:match("\ncall (%d+) %([^)]*%):\n(.*)\n$")
    local res = mock:get("/converz/api/v1/calls?n_per_page=1&columns=call_id,bot_transcript",
      { ["X-API-Key"] = "k" })
    assert.are.equal(id, res.body:match('"call_id":(%d+)'))
    assert.are.equal(text, res.json[1].bot_transcript)
    assert.matches("^[BU][os][te]r?:\t", text)
    mock:reset()
  end)

  it("04: ConverseIQ contacts into a CRM table, one row per e-mail address", function()
    local rc, out, err = example("04_converseiq_crm.lua", env)
    assert.are.equal(0, rc, err)
    local contacts, rows, without = out:match("^(%d+) contacts in %d+ pages %-> (%d+) CRM rows %((%d+) without")
    assert.are.equal(tonumber(contacts), tonumber(rows) + tonumber(without))
    rc, out = example("04_converseiq_crm.lua", env)
    assert.are.equal(0, rc)
    assert.matches("%-> " .. rows .. " CRM rows", out)
  end)

  it("05: Converra insights and step failures as a report", function()
    local rc, out, err = example("05_converra_report.lua", env)
    assert.are.equal(0, rc, err)
    assert.matches("| agent | status | conversations |", out, 1, true)
    assert.are.equal(6, select(2, out:gsub("\n| [^|]+ | %a+ | %d+ | %d+ | %d+ | 41%% | collect_email %(12%) |", "")))
    assert.are.equal(out, cli.read(env.OUT .. "/converra_report.md"))
  end)
end)
