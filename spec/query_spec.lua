-- converse.query: query strings and URLs, no I/O.
local query = require "converse.query"
local core  = require "converse.core"
local helper = require "helper"

describe("converse.query", function()
  describe(".encode", function()
    it("sorts keys, repeats arrays, writes booleans and every digit of integers", function()
      assert.are.equal("a=1&b=x&b=y&c=true&d=false",
        query.encode { c = true, a = 1, b = { "x", "y" }, d = false })
      local big = math.tointeger and math.tointeger(9007199254740993) or "9007199254740993"
      assert.are.equal("n=9007199254740993", query.encode { n = big })
      assert.are.equal("f=0.5", query.encode { f = 0.5 })
    end)

    it("percent-encodes everything but unreserved characters", function()
      assert.are.equal("q=a%20b%26c%3Dd%2F%C3%A9~._-", query.encode { q = "a b&c=d/é~._-" })
      assert.are.equal("k%20x=1", query.encode { ["k x"] = 1 })
    end)

    it("leaves out null values, and an empty table is an empty string", function()
      assert.are.equal("b=2", query.encode { a = core.null, b = 2 })
      assert.are.equal("x=1", query.encode { x = { 1, core.null } })
      assert.are.equal("", query.encode {})
      assert.are.equal("", query.encode(nil))
    end)

    it("raises usage errors for functions, tables in arrays and non-string keys", function()
      assert.are.equal("usage", helper.raises(function() query.encode { f = print } end).kind)
      assert.are.equal("usage", helper.raises(function() query.encode { [1] = "x" } end).kind)
      assert.are.equal("usage", helper.raises(function() query.encode("a=1") end).kind)
    end)
  end)

  describe(".parse_url", function()
    it("splits scheme, host, port and path, with default ports", function()
      local u = query.parse_url("HTTPS://User:pw@API.Example.com/v1/x?y=1#f")
      assert.are.same({ scheme = "https", host = "api.example.com", port = 443,
                        origin = "https://api.example.com:443", path = "/v1/x" }, u)
      assert.are.equal(8080, query.parse_url("http://h:8080").port)
      assert.are.equal("[::1]", query.parse_url("http://[::1]:9/").host)
    end)

    it("ends the authority at the first / ? or #", function()
      assert.are.equal("127.0.0.2", query.parse_url("http://127.0.0.2:1#@127.0.0.1:1/ok").host)
      assert.are.equal("a", query.parse_url("http://a?@b/").host)
    end)

    it("answers nil for what is not an absolute URL", function()
      assert.is_nil(query.parse_url("/relative"))
      assert.is_nil(query.parse_url("http:///nohost"))
    end)
  end)

  describe(".build, .resolve, .endpoint", function()
    it("joins base, path and query", function()
      assert.are.equal("http://h/v1/calls?page=2", query.build("http://h/v1/", "/calls", { page = 2 }))
      assert.are.equal("http://h/v1?x=1&a=b", query.build("http://h/v1?x=1", "", { a = "b" }))
      assert.are.equal("http://o/x", query.build("http://h/v1", "http://o/x"))
    end)

    it("resolves Location headers", function()
      assert.are.equal("http://h/new", query.resolve("http://h/a/b?q", "/new"))
      assert.are.equal("http://h/a/c", query.resolve("http://h/a/b", "c"))
      assert.are.equal("https://o/x", query.resolve("http://h/a", "//o/x"):gsub("^http:", "https:"))
      assert.are.equal("http://other:1/", query.resolve("http://h/a", "http://other:1/"))
    end)

    it("names the endpoint by its path, without the query", function()
      assert.are.equal("/v1/calls", query.endpoint("http://h/v1/calls?page=3"))
    end)
  end)
end)
