-- converse.vendor: the data-driven vendor driver, no I/O (a transport
-- object records the requests instead of sending them).
local vendor = require "converse.vendor"
local helper = require "helper"
local core   = require "converse.core"

-- A transport object (the contract of converse.transport) that answers
-- every request with 200 and an empty JSON object, and records it.
local function recorder()
  local sent = {}
  local function transfer()
    return {
      headers = function() return 200, {} end,
      next = function(self) if self.given then return nil end self.given = true return {} end,
      body = function() return "{}" end, envelope = function() return {} end,
      done = function() return true end, info = function() return {} end, close = function() end,
    }
  end
  return sent, { request = function(_, spec) sent[#sent + 1] = spec return transfer() end,
                 wait = function() return true end, close = function() end }
end

local Thing = vendor.define {
  name = "thing",
  endpoints = {
    item    = { "GET",    "/items/{id}/sub/{sub_id}" },
    create  = { "POST",   "/items", { required = { "name" }, one_of = { "a", "b" } } },
    search  = { "LIST",   "/search", { query_arg = "email" } },
    remove  = { "DELETE", "/items/{id}", { returns_true = true } },
  },
}
Thing._list = function(_, _, q) return { style = "none", query = q } end

local function thing(opts)
  local sent, tr = recorder()
  local o = vendor.client_options(opts or {}, { base_url = "http://h/api" },
                                  { header = "X-Key", value = "key-12345" })
  o.transport = tr
  return vendor.new(Thing, opts or {}, o), sent
end

describe("converse.vendor", function()
  it("fills path parameters percent-encoded, and sends the key", function()
    local t, sent = thing()
    t:item("a b", 7)
    assert.are.equal("http://h/api/items/a%20b/sub/7", sent[1].url)
    local has_key = false
    for _, h in ipairs(sent[1].headers) do has_key = has_key or h == "X-Key: key-12345" end
    assert.is_true(has_key)
  end)

  it("checks path arguments, required and one_of fields before any request", function()
    local t, sent = thing()
    assert.are.equal("usage", helper.raises(function() t:item(nil, 1) end).kind)
    assert.are.equal("usage", helper.raises(function() t:item("", 1) end).kind)
    assert.matches("'name' is required", helper.raises(function() t:create { a = 1 } end).message)
    assert.matches("one of 'a', 'b'", helper.raises(function() t:create { name = "n" } end).message)
    assert.matches("one of", helper.raises(function() t:create { name = "n", a = core.null } end).message)
    assert.are.equal(0, #sent)
    t:create { name = "n", b = 2 }
    assert.are.equal("POST", sent[1].method)
    assert.are.equal('{"b":2,"name":"n"}', (sent[1].body:gsub('"name":"n","b":2', '"b":2,"name":"n"')))
  end)

  it("turns a scalar into the query_arg parameter, and answers true where asked", function()
    local t = thing()
    assert.are.same({ email = "x@y" }, t:search("x@y").base_query)
    assert.is_true(t:search("x@y", { raw = true }).decoder_opts.raw)
    assert.are.equal("usage", helper.raises(function() t:search("x@y", { bogus = 1 }) end).kind)
    assert.are.equal("usage", helper.raises(function() t:search("x@y", "raw") end).kind)
    assert.is_true(t:remove(3))
  end)

  it("take_size checks a page size and removes it from the query", function()
    local q = { n = 50 }
    assert.are.equal(50, vendor.take_size(q, "n", 10, 100))
    assert.is_nil(q.n)
    assert.are.equal(10, vendor.take_size({}, "n", 10, 100))
    for _, bad in ipairs { 0, 101, 1.5, "5" } do
      assert.are.equal("usage", helper.raises(function() vendor.take_size({ n = bad }, "n", 10, 100) end).kind)
    end
  end)

  it("client_options passes client options through and `rate_limit = false` drops a default", function()
    local o = vendor.client_options({ timeout = 5, rate_limit = false, bogus = 1 },
                                    { base_url = "http://h", rate_limit = { per_second = 3 } }, { bearer = "t" })
    assert.are.equal(5, o.timeout)
    assert.is_nil(o.rate_limit)
    assert.is_nil(o.bogus)
    assert.are.same({ bearer = "t" }, o.auth)
  end)

  it("check_new wants an options table with a non-empty api_key", function()
    assert.are.equal("usage", helper.raises(function() vendor.check_new("x", "k") end).kind)
    assert.are.equal("usage", helper.raises(function() vendor.check_new("x", { api_key = "" }) end).kind)
    vendor.check_new("x", { api_key = "k" })
  end)
end)
