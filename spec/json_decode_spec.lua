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
      for _, v in ipairs { -1, 0 / 0, "big" } do
        ok, err = pcall(json.decode, "1", { max_string = v })
        assert.is_false(ok)
        assert.are.equal("usage", err.kind)
      end
      assert.are.equal("12", json.decode('"12"', { max_string = "2" }))
      assert.has_error(function() json.decode(nil) end)
    end)

    it("accepts objects whose keys are all distinct", function()
      assert.are.same({ a = 1, b = 2, A = 3, ["a "] = 4 }, json.decode('{"a":1,"b":2,"A":3,"a ":4}'))
    end)

    it("round-trips through the encoder", function()
      local s = '{"a":[1,2.5,"x",true,false,null,{}],"b":{"c":[]},"d":-9223372036854775808}'
      if not HAS_INT then s = s:gsub("%-9223372036854775808", "-12") end
      assert.are.equal(s, json.encode(json.decode(s), { sort_keys = true }))
    end)
  end)

  describe(".decode strings at the end of the text", function()
    it("reads no byte past the text after an escape (a 2-byte character last)", function()
      -- found by make fuzz: the character was copied 4 bytes at a time
      for _, s in ipairs { '["\\uD62e\222\163', '["\\n\195\169', '"\\t\222\163' } do
        raises_json(function() json.decode(s) end, "unexpected end of input")
      end
      assert.are.same({ "\237\152\174\222\163" }, json.decode('["\\uD62e\222\163"]'))
      assert.are.equal("\n\195\169", json.decode('"\\n\195\169"'))
    end)
  end)

  describe(".decode duplicate keys", function()
    it("raises on a duplicate key, naming it, with the offset of its quote", function()
      local e = raises_json(function() json.decode('{"a":1,"a":2}') end, 'duplicate key "a"')
      assert.are.equal(7, e.offset)
      assert.matches("at byte offset 7", e.message)
    end)

    it("compares keys by their decoded value", function()
      raises_json(function() json.decode('{"a":1,"\\u0061":2}') end, 'duplicate key "a"')
      raises_json(function() json.decode('{"\\u00e9":1,"\195\169":2}') end, "duplicate key")
      raises_json(function() json.decode('{"\\/":1,"/":2}') end, "duplicate key")
      assert.are.same({ a = 1, ["\\"] = 2 }, json.decode('{"a":1,"\\\\":2}'))
    end)

    it("raises on duplicates at any depth, in arrays of objects too", function()
      raises_json(function() json.decode('{"x":{"y":{"z":1,"z":2}}}') end, 'duplicate key "z"')
      raises_json(function() json.decode('[{"a":1},{"a":1,"b":2,"a":3}]') end, 'duplicate key "a"')
      local deep = ('{"k":'):rep(20) .. '{"d":1,"d":1}' .. ("}"):rep(20)
      raises_json(function() json.decode(deep) end, 'duplicate key "d"')
    end)

    it("finds a duplicate in an object shaped like the previous one", function()
      -- the key cache skips checks only for keys in the previous order
      local rows = {}
      for i = 1, 5 do rows[i] = ('{"id":%d,"name":"n","tags":[]}'):format(i) end
      assert.are.equal(5, #json.decode("[" .. table.concat(rows, ",") .. "]"))
      rows[6] = '{"id":6,"name":"n","id":7}'
      local e = raises_json(function() json.decode("[" .. table.concat(rows, ",") .. "]") end,
        'duplicate key "id"')
      assert.are.equal(#table.concat(rows, ",", 1, 5) + 2 + #'{"id":6,"name":"n",', e.offset)
      raises_json(function() json.decode('[{"a":1,"b":2},{"a":1,"a":2}]') end, "duplicate")
      raises_json(function() json.decode('[{"a":1,"b":2},{"b":1,"a":2,"b":3}]') end, "duplicate")
      raises_json(function() json.decode('[{"a":1,"b":2},{"a":1,"b":2,"a":3}]') end, "duplicate")
      raises_json(function() json.decode('[{"\\u0061":1},{"\\u0061":1,"a":2}]') end, "duplicate")
    end)

    it("decodes objects of changing shapes and key orders exactly", function()
      local docs, want = {}, {}
      local shapes = { { "a", "b", "c" }, { "b", "a" }, { "a", "b", "c", "d" }, { "a" }, {},
                       { "c", "b", "a" }, { "a", "b", "x", "c" }, { "\\u00e9t\\u00e9", "a" } }
      for i = 1, 40 do
        local keys = shapes[i % #shapes + 1]
        local parts, t = {}, {}
        for j, k in ipairs(keys) do
          parts[j] = ('"%s":{"v":%d,"w":[%d]}'):format(k, j, i)
          t[json.decode('"' .. k .. '"')] = { v = j, w = { i } }
        end
        docs[i] = "{" .. table.concat(parts, ",") .. "}"
        want[i] = t
      end
      assert.are.same(want, json.decode("[" .. table.concat(docs, ",") .. "]"))
    end)

    it("learns a record shape with optional keys and still finds every duplicate", function()
      -- shape prediction: {a,b,c} then {a,c} then {a,b,c}: each key is
      -- predicted from the one before it; a missed prediction is learned again
      local docs = {}
      for i = 1, 30 do
        docs[i] = i % 3 == 0 and ('{"a":%d,"c":%d}'):format(i, i) or ('{"a":%d,"b":%d,"c":%d}'):format(i, i, i)
      end
      local t = json.decode("[" .. table.concat(docs, ",") .. "]")
      for i = 1, 30 do
        assert.are.same(i % 3 == 0 and { a = i, c = i } or { a = i, b = i, c = i }, t[i])
      end
      local base = table.concat(docs, ",")
      -- a duplicate of a predicted key, of a key found after a miss, of an escaped key
      raises_json(function() json.decode("[" .. base .. ',{"a":1,"c":2,"a":3}]') end, 'duplicate key "a"')
      raises_json(function() json.decode("[" .. base .. ',{"a":1,"c":2,"b":3,"c":4}]') end,
        'duplicate key "c"')
      raises_json(function() json.decode("[" .. base .. ',{"a":1,"\\u0063":2,"c":3}]') end,
        'duplicate key "c"')
      raises_json(function() json.decode("[" .. base .. ',{"\\u0061":1,"b":2,"a":3}]') end,
        'duplicate key "a"')
      raises_json(function() json.decode("[" .. base .. ',{"b":1,"a":2,"b":3}]') end, 'duplicate key "b"')
      -- the same objects in raw mode fail the same way
      local d = json.decoder { raw = true }
      d:feed("[" .. base .. ',{"a":1,"c":2,"b":3,"c":4}]')
      d:finish()
      for _ = 1, 30 do assert.is_string(d:next()) end
      raises_json(function() d:next() end, 'duplicate key "c"')
    end)

    it("starts a slot again when its keys stop repeating (maps keyed by ids)", function()
      local docs = {}
      for i = 1, 200 do
        local parts = {}
        for j = 1, 5 do parts[j] = ('"id%d_%d":%d'):format(i, j, j) end
        docs[i] = "{" .. table.concat(parts, ",") .. "}"
      end
      for i = 201, 260 do docs[i] = ('{"x":%d,"y":"v%d"}'):format(i, i % 4) end
      docs[261] = '{"x":1,"y":2,"x":3}'
      local ok, e = pcall(json.decode, "[" .. table.concat(docs, ",") .. "]")
      assert.is_false(ok)
      assert.matches('duplicate key "x"', e.message)
      docs[261] = nil
      local t = json.decode("[" .. table.concat(docs, ",") .. "]")
      assert.are.equal(5, t[200].id200_5)
      assert.are.same({ x = 260, y = "v0" }, t[260])
    end)

    it("checks objects with more keys than the cache holds", function()
      local parts = {}
      for i = 1, 300 do parts[i] = ('"k%d":%d'):format(i, i) end
      local obj = "{" .. table.concat(parts, ",") .. "}"
      local t = json.decode("[" .. obj .. "," .. obj .. "]")
      assert.are.equal(300, t[2].k300)
      parts[301] = '"k299":0'
      obj = "{" .. table.concat(parts, ",") .. "}"
      raises_json(function() json.decode("[" .. obj .. "," .. obj .. "]") end, 'duplicate key "k299"')
    end)

    it("shows a long or binary key shortened, on one line", function()
      local k = ("x"):rep(100)
      local e = raises_json(function() json.decode(('{"%s":1,"%s":2}'):format(k, k)) end)
      assert.matches('duplicate key "x+%.%.%."', e.message)
      assert.is_true(#e.message < 120)
      e = raises_json(function() json.decode('{"a\\nb":1,"a\\nb":2}') end)
      assert.matches('duplicate key "a%?b"', e.message)
    end)
  end)

  describe(".decode deep nesting", function()
    local N = 10000
    local arrays = ("["):rep(N) .. ("]"):rep(N)
    local objects = ('{"a":'):rep(N - 1) .. "{}" .. ("}"):rep(N - 1)

    local function depth_of(v)
      local n = 0
      while type(v) == "table" do n = n + 1; v = v[1] or v.a end
      return n
    end

    it("decodes 10000 levels with max_depth = 10000", function()
      assert.are.equal(N, depth_of(json.decode(arrays, { max_depth = N })))
      assert.are.equal(N, depth_of(json.decode(objects, { max_depth = N })))
    end)

    it("decodes 10000 levels inside a coroutine", function()
      local co = coroutine.wrap(function()
        return depth_of(json.decode(arrays, { max_depth = N })),
               depth_of(json.decode(objects, { max_depth = N }))
      end)
      local a, o = co()
      assert.are.equal(N, a)
      assert.are.equal(N, o)
    end)

    it("raises the max_depth error at 10001 levels", function()
      local e = raises_json(function() json.decode("[" .. arrays .. "]", { max_depth = N }) end,
        "nesting deeper than max_depth %(10000%)")
      assert.are.equal(N, e.offset)
      raises_json(function() json.decode('{"a":' .. objects .. "}", { max_depth = N }) end,
        "max_depth %(10000%)")
    end)

    it("refuses max_depth above 10000 as a usage error", function()
      for _, v in ipairs { 10001, 1e6, 0, -1, 1.5, 0 / 0 } do
        local ok, err = pcall(json.decode, "1", { max_depth = v })
        assert.is_false(ok)
        assert.are.equal("usage", err.kind, tostring(v))
        assert.matches("max_depth", err.message)
      end
    end)
  end)

  describe("fuzz findings", function()
    -- spec/fixtures/json/fuzz/: inputs saved from `make fuzz` and edge cases
    -- pinned down by hand (first byte: the harness flags). Every property of
    -- the three harnesses (fuzz/*.lua) holds for each, on every Lua.
    local core = require "converse.core"
    local ROOT = (debug.getinfo(1, "S").source:match("^@(.*)/spec/[^/]*$")) or "."
    local H = dofile(ROOT .. "/fuzz/fuzz_common.lua")(core)
    local props = {}
    for _, name in ipairs { "json_fuzz", "json_fuzz_roundtrip", "json_fuzz_raw" } do
      props[name] = dofile(ROOT .. "/fuzz/" .. name .. ".lua")(core, H)
    end
    local p = io.popen('ls "' .. ROOT .. '/spec/fixtures/json/fuzz" 2>/dev/null')
    local names = {}
    for name in p:lines() do names[#names + 1] = name end
    p:close()
    table.sort(names)

    it("has fixtures", function() assert.is_true(#names >= 10) end)

    for _, name in ipairs(names) do
      it("keeps every fuzz property on " .. name, function()
        local f = assert(io.open(ROOT .. "/spec/fixtures/json/fuzz/" .. name, "rb"))
        local s = f:read("*a")
        f:close()
        for prop, check in pairs(props) do
          local ok, err = pcall(check, s:sub(2), s:byte(1))
          assert(ok, prop .. ": " .. tostring(err))
        end
      end)
    end

    it("catches a broken property (the oracle works)", function()
      local ok = pcall(props.json_fuzz_raw, '{"a":1}', 0)
      assert.is_true(ok)
      local real = core.decoder
      core.decoder = function(o)
        if o and o.raw then o.raw = false end       -- raw mode made to lie
        return real(o)
      end
      ok = pcall(props.json_fuzz_raw, '[{"a":1}]', 0)
      core.decoder = real
      assert.is_false(ok)
    end)
  end)
end)

