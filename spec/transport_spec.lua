-- converse.transport: choosing a transport, and the contract as the client
-- uses it (a transport object that records what it is asked).
local transport = require "converse.transport"
local converse  = require "converse"
local core      = require "converse.core"
local helper    = require "helper"

-- A transport answering every request with `status` and a JSON body.
local function fake(status, records)
  local asked = {}
  local t = {}
  function t.request(_, spec)
    asked[#asked + 1] = spec
    local i = 0
    return {
      headers = function() return status, { ["content-type"] = "application/json" } end,
      next = function()
        if not records then return core.EMPTY end
        i = i + 1
        return records[i]
      end,
      body = function() return '{"message":"nope"}' end,
      envelope = function() return {} end,
      done = function() return true end,
      info = function() return { http_version = 2 } end,
      close = function() end,
    }
  end
  function t.wait() return true end
  function t.close() end
  return t, asked
end

describe("converse.transport", function()
  it("is libcurl outside nginx, and a usage error for an unknown name", function()
    assert.is_nil(transport.ngx_phase())
    local tr = transport.new {}
    assert.matches("^converse.Transport", tostring(tr))
    tr:close()
    assert.are.equal("usage", helper.raises(function() transport.new { transport = "carrier pigeon" } end).kind)
    assert.are.equal("usage", helper.raises(function() transport.new { transport = {} } end).kind)
    assert.are.equal("usage", helper.raises(function() transport.new { transport = "nginx" } end).kind)
  end)

  it("accepts any object with the contract's methods; the client drives it", function()
    local t, asked = fake(200, { { id = 1 }, { id = 2 } })
    local api = converse.client { base_url = "http://h/api", transport = t,
                                  auth = { header = "X-Key", value = "secret-1234" } }
    local all = api:paginate("/things", { style = "none" }):collect()
    assert.are.same({ { id = 1 }, { id = 2 } }, all)
    assert.are.equal("GET", asked[1].method)
    assert.are.equal("http://h/api/things?limit=100", asked[1].url)
    assert.is_not_nil(asked[1].decoder)
    local key = false
    for _, line in ipairs(asked[1].headers) do key = key or line == "X-Key: secret-1234" end
    assert.is_true(key)
  end)

  it("core.EMPTY is an empty 2xx body: nil from get, an error from a pager", function()
    local t = fake(204, nil)
    local api = converse.client { base_url = "http://h", transport = t }
    local body, res = api:get("/x")
    assert.is_nil(body)
    assert.are.equal(204, res.status)
    local err = helper.raises(function() api:paginate("/x", { style = "none" }):collect() end)
    assert.are.equal("json", err.kind)
    assert.matches("empty response body", err.message)
  end)

  it("check_phase is silent outside nginx", function()
    transport.check_phase()
  end)
end)
