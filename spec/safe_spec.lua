-- converse.safe: the same clients, failures as `nil, err` (cjson.safe's
-- form, which OpenResty code expects); pagers keep raising.
local helper = require "helper"
local safe   = require "converse.safe"
local converse = require "converse"

describe("converse.safe", function()
  local mock
  setup(function() mock = helper.start_mock { calls = 30 } end)
  teardown(function() mock:stop() end)
  before_each(function() mock:reset() end)

  local function api(opts)
    local o = { base_url = mock.url .. "/converz/api/v1", auth = { header = "X-API-Key", value = "k" },
                retries = 0 }
    for k, v in pairs(opts or {}) do o[k] = v end
    return assert(safe.client(o))
  end

  it("returns what the client returns on success", function()
    local body, res = api():get("/reps", { query = { n_per_page = 2 } })
    assert.are.equal(2, #body)
    assert.are.equal(200, res.status)
  end)

  it("returns nil and the error object instead of raising", function()
    local body, err = api():get("/nothing-here")
    assert.is_nil(body)
    assert.is_true(converse.is_error(err))
    assert.are.equal(404, err.status)
    body, err = api():get(42)
    assert.is_nil(body)
    assert.are.equal("usage", err.kind)
  end)

  it("returns nil and the error for bad options", function()
    local c, err = safe.client { base_url = 42 }
    assert.is_nil(c)
    assert.are.equal("usage", err.kind)
    c, err = safe.converz { domain = "acme" }
    assert.is_nil(c)
    assert.matches("api_key", err.message)
  end)

  it("wraps vendor objects; pagers still raise, inside pcall", function()
    local cz = assert(safe.converz { base_url = mock.url .. "/converz/api/v1", api_key = "k" })
    local n = 0
    for _ in cz:calls { n_per_page = 10 } do n = n + 1 end
    assert.are.equal(30, n)
    mock:fresh()
    mock:control { type = "status", status = 404, path = "/converz/api/v1/calls", times = 5 }
    local ok, err = pcall(function() for _ in cz:calls { n_per_page = 10 } do end end)
    assert.is_false(ok)
    assert.are.equal(404, err.status)
    assert.is_string(cz.client.base_url)
    assert.matches("^converse%.safe%(", tostring(cz))
  end)

  it("lets errors that are not converse's through", function()
    local c = safe.wrap { boom = function() error("a bug") end }
    assert.has_error(function() c:boom() end, "a bug")
    assert.has_error(function() safe.wrap(7) end)
  end)

  it("decodes and encodes JSON without raising", function()
    assert.are.equal(1, safe.json.decode("[1]")[1])
    local v, err = safe.json.decode("[1,")
    assert.is_nil(v)
    assert.are.equal("json", err.kind)
    assert.are.equal("[1]", safe.json.encode { 1 })
    v, err = safe.json.encode { f = print }
    assert.is_nil(v)
    assert.are.equal("json", err.kind)
  end)
end)
