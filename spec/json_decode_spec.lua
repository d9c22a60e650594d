local converse = require "converse"
local helper   = require "helper"
local raises_json = helper.raises_json
local json = converse.json
local HAS_INT = math.type ~= nil

describe("converse.json", function()
  describe(".decode", function()
    it("decodes scalars", function()
      assert.are.equal(true, json.decode("true"))
      assert.are.equal(false, json.decode(" false "))
      assert.are.equal(converse.null, json.decode("null"))
      assert.are.equal("x", json.decode('"x"'))
      assert.are.equal(12, json.decode("12"))
      assert.are.equal(-1.5, json.decode("-1.5"))
    end)

    it("decodes integers that fit in int64 exactly, as integers", function()
      if not HAS_INT then return end
      for _, s in ipairs { "9007199254740993", "-9223372036854775808", "9223372036854775807",
                           "123456789012345", "0", "-1" } do
        local v = json.decode(s)
        assert.are.equal("integer", math.type(v), s)
        assert.are.equal(s, ("%d"):format(v))
      end
    end)

    it("decodes numbers with '.' or an exponent to floats", function()
      if HAS_INT then
        assert.are.equal("float", math.type(json.decode("1.0")))
        assert.are.equal("float", math.type(json.decode("1e2")))
        assert.are.equal("float", math.type(json.decode("1E+2")))
      end
      assert.are.equal(100, json.decode("1e2"))
      assert.are.equal(0.1, json.decode("0.1"))
      assert.are.equal(1744651778.652, json.decode("1744651778.652"))
      assert.are.equal(2.2250738585072014e-308, json.decode("2.2250738585072014e-308"))
      assert.are.equal(1.7976931348623157e308, json.decode("1.7976931348623157e308"))
      assert.are.equal(0.30000000000000004, json.decode("0.30000000000000004"))
    end)

    it("keeps the sign of -0 (as the float -0.0)", function()
      local v = json.decode("-0")
      assert.are.equal(0, v)
      assert.are.equal(-math.huge, 1 / v)
    end)

    it("never clamps integers outside int64: nearest float, or the exact text", function()
      if HAS_INT then
        local v = json.decode("9223372036854775808")
        assert.are.equal("float", math.type(v))
        assert.are.equal(9223372036854775808.0, v)
        assert.are.equal(-1e20, json.decode("-100000000000000000000"))
      end
      assert.are.equal("123456789012345678901234567890",
        json.decode("123456789012345678901234567890", { big_integers = "string" }))
      assert.are.equal("-9223372036854775809",
        json.decode("-9223372036854775809", { big_integers = "string" }))
    end)

    it("returns integers beyond 2^53 as strings by default without an integer subtype", function()
      if HAS_INT then return end
      assert.are.equal("9007199254740993", json.decode("9007199254740993"))
      assert.are.equal(9007199254740992, json.decode("9007199254740992"))
      assert.are.equal("number", type(json.decode("9007199254740993", { big_integers = "float" })))
    end)

    it("decodes null to converse.null, the cjson sentinel", function()
      local t = json.decode('{"a":null,"b":[null]}')
      assert.are.equal(require("cjson").null, t.a)
      assert.are.equal(converse.null, t.b[1])
    end)

    it("marks arrays, so empty ones re-encode as []", function()
      local t = json.decode('{"a":[],"b":{},"c":[1]}')
      assert.are.equal(json.array_mt, getmetatable(t.a))
      assert.are.equal(json.array_mt, getmetatable(t.c))
      assert.is_nil(getmetatable(t.b))
      assert.is_nil(getmetatable(t))
      assert.are.equal('{"a":[],"b":{},"c":[1]}', json.encode(t, { sort_keys = true }))
    end)

    it("decodes every escape, including surrogate pairs", function()
      assert.are.equal('"\\/\b\f\n\r\t', json.decode([["\"\\\/\b\f\n\r\t"]]))
      assert.are.equal("é", json.decode([["\u00e9"]]))
      assert.are.equal("€", json.decode([["\u20AC"]]))
      assert.are.equal("😀", json.decode([["\ud83d\ude00"]]))
      assert.are.equal("a\0b", json.decode([["a\u0000b"]]))
      assert.are.equal("日本語 ✓", json.decode('"日本語 ✓"'))
    end)

    it("rejects lone surrogates with the byte offset", function()
      local e = raises_json(function() json.decode('["ab\\ud800"]') end, "surrogate")
      assert.are.equal(4, e.offset)
      raises_json(function() json.decode('"\\udc00"') end, "surrogate")
      raises_json(function() json.decode('"\\ud800\\u0041"') end, "surrogate")
    end)

    it("rejects invalid UTF-8 with the byte offset", function()
      local e = raises_json(function() json.decode('{"k":"ab\255"}') end, "UTF%-8")
      assert.are.equal(8, e.offset)
      assert.matches("byte offset 8", e.message)
      raises_json(function() json.decode('"\192\175"') end, "UTF%-8")          -- overlong
      raises_json(function() json.decode('"\237\160\128"') end, "UTF%-8")      -- surrogate
      raises_json(function() json.decode('"\244\144\128\128"') end, "UTF%-8")  -- > U+10FFFF
      raises_json(function() json.decode('"\226\130"') end)                     -- truncated
    end)

    it("rejects malformed documents with a clear message and offset", function()
      local cases = {
        { "[1,]", "unexpected character ']'", 3 },
        { '{"a":1,}', "key", 7 },
        { "01", "leading zero", 0 },
        { "[1] x", "after the JSON value", 4 },
        { "", "empty", 0 },
        { "nul", "end of input" },
        { "[1", "end of input" },
        { "{'a':1}", "key" },
        { "[NaN]", "unexpected" },
        { "1.", "end of input" },
        { '"a\tb"', "control character", 2 },
        { '"\\x"', "escape", 1 },
        { "[1 2]", "','" },
      }
      for _, c in ipairs(cases) do
        local e = raises_json(function() json.decode(c[1]) end, c[2])
        if c[3] then assert.are.equal(c[3], e.offset, c[1]) end
        assert.is_number(e.offset)
      end
    end)

    it("rejects a byte order mark", function()
      raises_json(function() json.decode("\239\187\191{}") end)
    end)

    it("limits nesting depth, without crashing on deep input", function()
      local deep = ("["):rep(100000) .. ("]"):rep(100000)
      raises_json(function() json.decode(deep) end, "deeper than max_depth %(512%)")
      assert.is_table(json.decode(("["):rep(512) .. ("]"):rep(512)))
      raises_json(function() json.decode("[[[1]]]", { max_depth = 2 }) end, "max_depth")
      assert.is_table(json.decode("[[[1]]]", { max_depth = 3 }))
    end)

    it("limits string sizes", function()
      raises_json(function() json.decode('"' .. ("x"):rep(100) .. '"', { max_string = 10 }) end,
        "max_string")
      raises_json(function() json.decode('"a\\n' .. ("x"):rep(100) .. '"', { max_string = 10 }) end,
        "max_string")
    end)

    it("blames bad options on the caller", function()
      local ok, err = pcall(json.decode, "1", { big_integers = "nope" })
      assert.is_false(ok)
      assert.are.equal("usage", err.kind)
      ok, err = pcall(json.decode, "1", "x")
      assert.is_false(ok)
      assert.are.equal("usage", err.kind)
      assert.has_error(function() json.decode(nil) end)
    end)

    it("keeps the last of duplicate keys", function()
      assert.are.equal(2, json.decode('{"a":1,"a":2}').a)
    end)

    it("round-trips through the encoder", function()
      local s = '{"a":[1,2.5,"x",true,false,null,{}],"b":{"c":[]},"d":-9223372036854775808}'
      if not HAS_INT then s = s:gsub("%-9223372036854775808", "-12") end
      assert.are.equal(s, json.encode(json.decode(s), { sort_keys = true }))
    end)
  end)
end)
