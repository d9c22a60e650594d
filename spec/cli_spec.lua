-- bin/converse export against the mock: NDJSON out, keys from the
-- environment only, clear errors and exit codes.
local helper = require "helper"
local json   = require("converse").json

local ROOT = helper.ROOT
local LUA = os.getenv("CONVERSE_LUA") or "lua5.4"
local BUILD = os.getenv("CONVERSE_BUILD") or "build/lua5.4"

-- Run bin/converse with env and args; returns exit code, stdout, stderr.
local function run(env, args)
  local err = os.tmpname()
  local cmd = ("cd %q && env %s CONVERSE_BUILD=%s %s bin/converse %s 2>%s; echo \"rc=$?\"")
    :format(ROOT, env, BUILD, LUA, args, err)
  local p = io.popen(cmd)
  local out = p:read("*a")
  p:close()
  local f = io.open(err)
  local stderr = f:read("*a")
  f:close()
  os.remove(err)
  local rc = tonumber(out:match("rc=(%d+)%s*$"))
  return rc, out:gsub("rc=%d+%s*$", ""), stderr
end

describe("bin/converse export", function()
  local mock
  setup(function() mock = helper.start_mock { calls = 120, contacts = 30 } end)
  teardown(function() mock:stop() end)

  it("writes every record of a pager as one JSON object per line", function()
    local rc, out, err = run("CONVERZ_KEY=k1",
      ("export converz calls --base-url %s/converz/api/v1 --param n_per_page=50"):format(mock.url))
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
    mock:reset()
    local rc = run("CONVERSEIQ_KEY=k2",
      ("export converseiq contacts --base-url %s/converseiq/public/v1 --param limit=10")
      :format(mock.url))
    assert.are.equal(0, rc)
    rc = run("CONVERZ_KEY=k1", ("export converz calls --base-url %s/converz/api/v1 "
      .. "--param rep_id=a --param rep_id=b"):format(mock.url))
    assert.are.equal(0, rc)
    local log = helper.entries(mock, "/converz/api/v1/calls")
    assert.are.same({ "a", "b" }, helper.query_of(log[1]).rep_id)
  end)

  it("writes a single body for methods that are not lists", function()
    local rc, out = run("CONVERSEIQ_KEY=k2",
      ("export converseiq workspace --base-url %s/converseiq/public/v1"):format(mock.url))
    assert.are.equal(0, rc)
    assert.is_table(json.decode(out))
  end)

  it("refuses to run without the key in the environment", function()
    local rc, _, err = run("CONVERZ_KEY=", "export converz calls --domain acme")
    assert.are.equal(2, rc)
    assert.matches("CONVERZ_KEY", err)
  end)

  it("explains unknown vendors and methods", function()
    local rc, _, err = run("", "export nope calls")
    assert.are.equal(2, rc)
    assert.matches("unknown vendor", err)
    rc, _, err = run("CONVERZ_KEY=k", ("export converz nothing --base-url %s/converz/api/v1")
      :format(mock.url))
    assert.are.equal(1, rc)
    assert.matches("no method", err)
  end)

  it("reports API errors without showing the key", function()
    local rc, _, err = run("CONVERZ_KEY=secret-123",
      ("export converz report --base-url %s/nowhere/api/v1"):format(mock.url))
    assert.are.equal(1, rc)
    assert.matches("404", err)
    assert.is_nil(err:find("secret-123", 1, true))
  end)
end)
