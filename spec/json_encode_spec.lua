local converse = require "converse"
local helper   = require "helper"
local raises_json = helper.raises_json
local json = converse.json
local HAS_INT = math.type ~= nil

describe("converse.json", function()
  describe(".encode", function()
    it("writes scalars", function()
      assert.are.equal("true", json.encode(true))
      assert.are.equal("false", json.encode(false))
      assert.are.equal("null", json.encode(converse.null))
      assert.are.equal("null", json.encode(nil))
      assert.are.equal('"x"', json.encode("x"))
      assert.are.equal("0", json.encode(0))
      assert.are.equal("-12", json.encode(-12))
    end)

    it("writes every digit of 64-bit integers", function()
      if not HAS_INT then return end
      assert.are.equal("9007199254740993", json.encode(9007199254740993))
      assert.are.equal("-9223372036854775808", json.encode(math.mininteger))
      assert.are.equal("9223372036854775807", json.encode(math.maxinteger))
      assert.are.equal("123456789012345", json.encode(123456789012345))
    end)

    it("writes integral doubles within 2^53 as integers when there is no integer subtype", function()
      if HAS_INT then return end
      assert.are.equal("9007199254740992", json.encode(2 ^ 53))
      assert.are.equal("-9007199254740992", json.encode(-2 ^ 53))
      assert.are.equal("123456789012345", json.encode(123456789012345))
      assert.are.equal("-0", json.encode(-0.0))
    end)

    it("writes integral doubles beyond 2^53 in float form, so they decode as numbers", function()
      assert.are.equal("1.152921504606847e+18", json.encode(2 ^ 60))
      assert.are.equal("-1.152921504606847e+18", json.encode(-2 ^ 60))
      assert.are.equal("-9.223372036854776e+18", json.encode(-2 ^ 63))
      assert.are.equal("9007199254740994.0", json.encode(2 ^ 53 + 2))
      assert.are.equal("1e+300", json.encode(1e300))
      for _, d in ipairs { 2 ^ 60, -2 ^ 63, 2 ^ 53 + 2, 1e17, 1e300, 2 ^ 1023 } do
        local back = json.decode(json.encode(d))
        assert.are.equal("number", type(back))
        assert.are.equal(d, back)
        assert.are.equal(d, json.decode(json.encode({ d }))[1])
      end
    end)

    it("writes floats that read back exactly, in the shortest form", function()
      for _, d in ipairs { 0.1, 1 / 3, -2.5e-308, 1.7976931348623157e308, 5e-324, 123.456, 1e21 } do
        local s = json.encode(d)
        assert.are.equal(d, tonumber(s))
      end
      assert.are.equal("0.1", json.encode(0.1))
      assert.are.equal("1e+300", json.encode(1e300))
    end)

    it("keeps floats floats on 5.3+ (1.0 is not written as 1)", function()
      if not HAS_INT then return end
      assert.are.equal("1.0", json.encode(1.0))
      assert.are.equal("-0.0", json.encode(-0.0))
    end)

    it("refuses NaN and infinities", function()
      raises_json(function() json.encode(0 / 0) end, "NaN")
      raises_json(function() json.encode(math.huge) end, "nfinity")
      raises_json(function() json.encode({ x = -math.huge }) end, "nfinity")
    end)

    it("escapes quotes, backslashes and control characters", function()
      assert.are.equal([["a\"b\\c\n\r\t\b\f\u0001\u001f"]],
        json.encode("a\"b\\c\n\r\t\b\f\1\31"))
      assert.are.equal('"\\u0000"', json.encode("\0"))
    end)

    it("leaves valid UTF-8 as it is", function()
      local s = "héllo wörld — 日本語 😀"
      assert.are.equal('"' .. s .. '"', json.encode(s))
    end)

    it("refuses invalid UTF-8 with its position", function()
      raises_json(function() json.encode("ab\255") end, "byte 3")
      raises_json(function() json.encode("\192\128") end, "UTF%-8")           -- overlong
      raises_json(function() json.encode("\237\160\128") end, "UTF%-8")       -- surrogate
      raises_json(function() json.encode("\244\144\128\128") end, "UTF%-8")   -- > U+10FFFF
      raises_json(function() json.encode("\226\130") end, "UTF%-8")           -- truncated
    end)

    it("writes sequences as arrays and string-keyed tables as objects", function()
      assert.are.equal("[1,2,3]", json.encode { 1, 2, 3 })
      assert.are.equal('{"a":1}', json.encode { a = 1 })
      assert.are.equal('[[],{}]', json.encode { converse.array {}, {} })
    end)

    it("writes an empty plain table as {} and a marked one as []", function()
      assert.are.equal("{}", json.encode {})
      assert.are.equal("[]", json.encode(converse.array {}))
      assert.are.equal("[]", json.encode(converse.array()))
    end)

    it("re-encodes decoded empty arrays as arrays", function()
      local ok, v = pcall(json.decode, '{"a":[],"b":{}}')
      if not ok then pending("decoder not available") return end
      assert.are.equal('{"a":[],"b":{}}', json.encode(v, { sort_keys = true }))
    end)

    it("sorts keys on request", function()
      assert.are.equal('{"a":2,"b":1,"c":{"x":1,"y":2}}',
        json.encode({ c = { y = 2, x = 1 }, b = 1, a = 2 }, { sort_keys = true }))
      assert.are.equal('{"a":1,"a\\u0000b":2}',
        json.encode({ ["a\0b"] = 2, a = 1 }, { sort_keys = true }))
    end)

    it("refuses sparse arrays and mixed keys", function()
      raises_json(function() json.encode { 1, nil, 3 } end, "sparse")
      raises_json(function() json.encode { 1, a = 2 } end, "mixed")
      raises_json(function() json.encode { [1.5] = true } end, "key")
      raises_json(function() json.encode { [true] = 1 } end, "key")
      raises_json(function() json.encode(setmetatable({ a = 1 }, json.array_mt)) end, "string keys")
    end)

    it("refuses functions, coroutines and userdata other than null", function()
      raises_json(function() json.encode(print) end, "function")
      raises_json(function() json.encode { f = coroutine.create(function() end) } end, "thread")
      raises_json(function() json.encode(io.stdout) end, "userdata")
    end)

    it("refuses nesting beyond max_depth, and cycles", function()
      local t = {}
      t.self = t
      raises_json(function() json.encode(t) end, "deeper")
      local deep = {}
      for _ = 1, 10 do deep = { deep } end
      raises_json(function() json.encode(deep, { max_depth = 5 }) end, "deeper than 5")
      assert.is_string(json.encode(deep, { max_depth = 20 }))
    end)

    it("blames bad options on the caller", function()
      for _, opts in ipairs { "x", { max_depth = 10001 }, { max_depth = 1e6 }, { max_depth = 0 },
                              { max_depth = 2.5 } } do
        local ok, err = pcall(json.encode, 1, opts)
        assert.is_false(ok)
        assert.are.equal("usage", err.kind)
      end
    end)

    describe("deep nesting", function()
      local N = 10000
      local function nest(n, obj)
        local t = obj and {} or converse.array {}
        for _ = 2, n do t = obj and { a = t } or converse.array { t } end
        return t
      end
      local arrays = ("["):rep(N) .. ("]"):rep(N)
      local objects = ('{"a":'):rep(N - 1) .. "{}" .. ("}"):rep(N - 1)

      it("encodes 10000 levels with max_depth = 10000", function()
        assert.are.equal(arrays, json.encode(nest(N), { max_depth = N }))
        assert.are.equal(objects, json.encode(nest(N, true), { max_depth = N }))
        assert.are.equal(objects, json.encode(nest(N, true), { max_depth = N, sort_keys = true }))
        assert.are.equal(arrays, json.encode(json.decode(arrays, { max_depth = N }), { max_depth = N }))
      end)

      it("encodes 10000 levels inside a coroutine", function()
        local co = coroutine.wrap(function()
          return json.encode(nest(N), { max_depth = N }), json.encode(nest(N, true), { max_depth = N })
        end)
        local a, o = co()
        assert.are.equal(arrays, a)
        assert.are.equal(objects, o)
      end)

      it("raises a json error at 10001 levels", function()
        raises_json(function() json.encode(nest(N + 1), { max_depth = N }) end, "deeper than 10000")
        raises_json(function() json.encode(nest(N + 1, true), { max_depth = N }) end, "deeper than 10000")
      end)
    end)
  end)

  describe(".array", function()
    it("marks tables and refuses to replace another metatable", function()
      local t = converse.array { 1 }
      assert.are.equal(json.array_mt, getmetatable(t))
      local ok, err = pcall(converse.array, setmetatable({}, {}))
      assert.is_false(ok)
      assert.are.equal("usage", err.kind)
    end)
  end)

  it("has a null identical to cjson.null", function()
    assert.are.equal(require("cjson").null, converse.null)
  end)
end)
