-- bin/converse: the launcher, `converse export` and the usage errors every
-- command shares (exit 2, a message naming the option, no file positions).
local helper = require "helper"
local cli    = require "support.cli"
local core   = require "converse.core"
local json   = require("converse").json

local run = cli.run

-- A usage message is for people: no Lua file position, no doubled prefix.
local function assert_clean(err, prog)
  assert.is_nil(err:find("%.lua:%d"), err)
  assert.is_nil(err:find("bin/converse:%d"), err)
  assert.is_nil(err:find("spec/", 1, true), err)
  assert.is_nil(err:find(prog .. ": " .. prog, 1, true), err)
  assert.is_nil(err:find("converse: converse", 1, true), err)
end

-- Does the streaming decoder hand out raw record texts yet?
local function raw_mode()
  local ok, dec = pcall(core.decoder, { raw = true })
  if not ok then return false end
  dec:feed('[{"a":1}]')
  dec:finish()
  return type(dec:next()) == "string"
end

describe("bin/converse", function()
  after_each(function() cli.cleanup() end)

  it("prints its version and its commands", function()
    local rc, out = run({}, { "--version" })
    assert.are.equal(0, rc)
    assert.are.equal("converse " .. core.VERSION .. "\n", out)
    rc, out = run({}, { "--help" })
    assert.are.equal(0, rc)
    for _, c in ipairs { "sync", "export", "mock" } do assert.matches("\n   " .. c .. " ", out) end
    for _, c in ipairs { "sync", "export" } do
      rc, out = run({}, { c, "--help" })
      assert.are.equal(0, rc)
      assert.matches("^Usage: converse " .. c, out)
    end
    rc, out = run({}, { "mock", "--help" })
    assert.are.equal(0, rc)
    assert.matches("^usage: converse mock", out)
    rc, out = run({}, { "help", "sync" })
    assert.are.equal(0, rc)
    assert.matches("^Usage: converse sync", out)
    rc, out = run({}, { "help" })
    assert.are.equal(0, rc)
    assert.matches("^Usage: converse ", out)
  end)

  it("refuses a missing or unknown command", function()
    local rc, _, err = run({}, {})
    assert.are.equal(2, rc)
    assert.matches("a command is required", err)
    rc, _, err = run({}, { "snyc" })
    assert.are.equal(2, rc)
    assert.matches("unknown command 'snyc' %(did you mean 'sync'%?%)", err)
    assert_clean(err, "converse")
  end)
end)

describe("bin/converse export", function()
  local mock
  setup(function() mock = helper.start_mock { calls = 120, contacts = 30, gzip = "never" } end)
  teardown(function() mock:stop() end)
  after_each(function() cli.cleanup() end)

  it("writes every record of a pager as one JSON object per line", function()
    local rc, out, err = run({ CONVERZ_KEY = "k1" }, { "export", "converz", "calls", "--base-url",
      mock.url .. "/converz/api/v1", "--param", "n_per_page=50" })
    assert.are.equal(0, rc, err)
    local n = 0
    for line in out:gmatch("[^\n]+") do
      n = n + 1
      assert.is_not_nil(json.decode(line).call_id)
    end
    assert.are.equal(120, n)
    assert.matches("120 records", err)
    assert.are.equal("k1", helper.entries(mock, "/converz")[1].headers["x-api-key"])
  end)

  it("passes repeated --param as repeated query parameters, and path ids", function()
    mock:fresh()
    local rc = run({ CONVERZ_KEY = "k1" }, { "export", "converz", "calls", "--base-url",
      mock.url .. "/converz/api/v1", "--param", "rep_id=a", "--param", "rep_id=b" })
    assert.are.equal(0, rc)
    local log = helper.entries(mock, "/converz/api/v1/calls")
    assert.are.same({ "a", "b" }, helper.query_of(log[1]).rep_id)
    local chat = json.decode(select(2, run({ CONVERSEIQ_KEY = "k" }, { "export", "converseiq", "chats",
      "--base-url", mock.url .. "/converseiq/public/v1" })):match("[^\n]+"))
    local rc2, out = run({ CONVERSEIQ_KEY = "k" }, { "export", "converseiq", "chat_messages", chat.id,
      "--base-url", mock.url .. "/converseiq/public/v1" })
    assert.are.equal(0, rc2)
    assert.are.equal(chat.id, json.decode(out:match("[^\n]+")).chat)
  end)

  it("writes the body of other read methods, byte for byte", function()
    local body = '{"id":"c1","big":123456789012345678901234567890,"huge":1e400,"neg":-0,"s":"\\u00e9"}'
    local srv = helper.hostile(("return function() return response(200, %q, "
      .. "{ ['Content-Type'] = 'application/json' }) end"):format(body))
    local rc, out, err = run({ CONVERSEIQ_KEY = "k" }, { "export", "converseiq", "contact", "c1",
      "--base-url", srv.url .. "/v1" })
    srv:stop()
    assert.are.equal(0, rc, err)
    assert.are.equal(body .. "\n", out)
  end)

  it("does not alter the records of a list: exact text, or a clear failure", function()
    local rec = '{"id":"a","big":123456789012345678901234567890,"huge":1e400}'
    local srv = helper.hostile(("return function() return response(200, %q, "
      .. "{ ['Content-Type'] = 'application/json' }) end")
      :format('{"data":[' .. rec .. '],"page":1,"limit":100,"pages":1,"total":1}'))
    local dir = cli.tmpdir()
    local rc, out, err = run({ CONVERSEIQ_KEY = "k" }, { "export", "converseiq", "contacts",
      "--base-url", srv.url .. "/v1", "--out", dir .. "/c.ndjson" })
    srv:stop()
    assert.are.equal("", out)
    if raw_mode() then
      assert.are.equal(0, rc, err)
      assert.are.equal(rec .. "\n", cli.read(dir .. "/c.ndjson"))
    else
      -- without the decoder's raw mode 1e400 cannot be written back exactly: refuse, write nothing
      assert.are.equal(1, rc)
      assert.matches("^converse export: json error: ", err)
      assert.is_nil(cli.read(dir .. "/c.ndjson"))
      assert.are.equal("", cli.read(dir .. "/c.ndjson.part"))
    end
  end)

  it("writes --out through FILE.part, renamed when complete", function()
    local dir = cli.tmpdir()
    local rc = run({ CONVERSEIQ_KEY = "k" }, { "export", "converseiq", "contacts", "--base-url",
      mock.url .. "/converseiq/public/v1", "--out", dir .. "/c.ndjson" })
    assert.are.equal(0, rc)
    local text = cli.read(dir .. "/c.ndjson")
    assert.are.equal(30, select(2, text:gsub("\n", "")))
    assert.is_nil(cli.read(dir .. "/c.ndjson.part"))
  end)

  it("refuses write methods, naming the Lua API, before any request", function()
    mock:fresh()
    for _, m in ipairs { { "converseiq", "delete_contact", "x" }, { "converseiq", "create_contact" },
                         { "converra", "update_agent", "a" }, { "converz", "update_calls" } } do
      local rc, _, err = run({ CONVERSEIQ_KEY = "k", CONVERRA_KEY = "k", CONVERZ_KEY = "k" },
        { "export", m[1], m[2], m[3], "--base-url", mock.url .. "/" .. m[1] })
      assert.are.equal(2, rc)
      assert.matches(m[2] .. " changes data", err)
      assert.matches("converse%." .. m[1] .. "{...}:" .. m[2], err)
      assert_clean(err, "converse export")
    end
    assert.are.same({}, mock:log())
  end)

  it("lists the read methods for a typo'd method, and explains unknown vendors", function()
    local rc, _, err = run({}, { "export", "converseiq", "contcts" })
    assert.are.equal(2, rc)
    assert.matches("no read method 'contcts' %(did you mean 'contacts'%?%)", err)
    assert.matches("read methods: chat, chat_message, chat_messages, chats, contact, contacts", err)
    rc, _, err = run({}, { "export", "nope", "calls" })
    assert.are.equal(2, rc)
    assert.matches("unknown vendor 'nope'", err)
    rc, _, err = run({ CONVERSEIQ_KEY = "k" }, { "export", "converseiq", "chat_messages" })
    assert.are.equal(2, rc)
    assert.matches("chat_messages takes 1 argument", err)
  end)

  it("refuses unknown options instead of ignoring them", function()
    local rc, out, err = run({ CONVERZ_KEY = "k" }, { "export", "converz", "calls", "--ot", "x", "--base-url",
      mock.url .. "/converz/api/v1" })
    assert.are.equal(2, rc)
    assert.are.equal("", out)
    assert.matches("^converse export: unknown option '%-%-ot' %(did you mean '%-%-out'%?%)\n", err)
    assert_clean(err, "converse export")
  end)

  it("refuses to run without the key in the environment", function()
    local rc, _, err = run({ CONVERZ_KEY = "" }, { "export", "converz", "calls", "--domain", "acme" })
    assert.are.equal(2, rc)
    assert.matches("CONVERZ_KEY", err)
  end)

  it("reports API errors without showing the key", function()
    local rc, _, err = run({ CONVERZ_KEY = "secret-123" }, { "export", "converz", "report", "--base-url",
      mock.url .. "/nowhere/api/v1" })
    assert.are.equal(1, rc)
    assert.matches("404", err)
    assert.is_nil(err:find("secret-123", 1, true))
    assert_clean(err, "converse export")
  end)
end)
