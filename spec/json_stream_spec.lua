-- The streaming decoder: records out as soon as they are complete, the
-- envelope around them, any chunking, limits, reuse and abandonment.
local converse = require "converse"
local helper   = require "helper"
local raises_json = helper.raises_json
local json = converse.json

local function drain(d, out)
  out = out or {}
  while true do
    local v, state = d:next()
    if v == nil then return out, state end
    out[#out + 1] = v
  end
end

-- Feed s in pieces cut at the given sizes (cycled), collect every record.
local function feed_in(d, s, sizes)
  local out, i, k = {}, 1, 1
  while i <= #s do
    local n = sizes[(k - 1) % #sizes + 1]
    d:feed(s:sub(i, i + n - 1))
    i, k = i + n, k + 1
    drain(d, out)
  end
  d:finish()
  local _, state = drain(d, out)
  assert.are.equal("done", state)
  return out
end

-- A deterministic generated page of records with every kind of value.
local function page(n, seed)
  local rows = {}
  local x = seed or 7
  local function rnd(m) x = (x * 1103515245 + 12345) % 2147483648; return x % m end
  for i = 1, n do
    rows[i] = {
      id = 9007199254740993 + i, name = "rep" .. rnd(1000),
      text = ("héllo \"wörld\" 😀 \\ \n"):rep(1 + rnd(5)) .. i,
      score = rnd(100000) / 1000, ok = rnd(2) == 1, none = converse.null,
      tags = converse.array { "a", "b" }, empty = converse.array {},
      nested = { deep = { deeper = converse.array { 1, 2, { x = rnd(10) } } } },
    }
  end
  return rows
end

describe("converse.json.decoder", function()
  it("yields each record of a top-level array as soon as it is complete", function()
    local d = json.decoder()
    d:feed('[{"a":1},{"a"')
    assert.are.same({ a = 1 }, d:next())
    local v, state = d:next()
    assert.is_nil(v)
    assert.are.equal("more", state)
    d:feed(':2}]')
    assert.are.same({ a = 2 }, d:next())
    d:finish()
    assert.are.same({ nil, "done" }, { d:next() })
    assert.are.equal(2, d:count())
  end)

  it("collects the envelope around the records, before and after them", function()
    local d = json.decoder { records = "data" }
    local out = feed_in(d, '{"page":2,"limit":10,"data":[1,2,3],"pages":5,"cursor":null,'
      .. '"meta":{"x":[true]}}', { 3 })
    assert.are.same({ 1, 2, 3 }, out)
    local env = d:envelope()
    assert.are.equal(2, env.page)
    assert.are.equal(5, env.pages)
    assert.are.equal(converse.null, env.cursor)
    assert.is_true(env.meta.x[1])
    assert.is_nil(env.data)
  end)

  it("shows envelope fields before the records as soon as they are parsed", function()
    local d = json.decoder { records = "data" }
    d:feed('{"total":7,"data":[{"a":1},')
    assert.are.same({ a = 1 }, d:next())
    assert.are.equal(7, d:envelope().total)
  end)

  it("follows a dotted path to nested records", function()
    local d = json.decoder { records = "result.items" }
    local out = feed_in(d, '{"ok":true,"result":{"n":2,"items":[{"i":1},{"i":2}],"next":"c"}}', { 1 })
    assert.are.same({ { i = 1 }, { i = 2 } }, out)
    local env = d:envelope()
    assert.is_true(env.ok)
    assert.are.equal(2, env.result.n)
    assert.are.equal("c", env.result.next)
  end)

  it("treats a bare top-level array as the records whatever the path", function()
    local d = json.decoder { records = "data" }
    assert.are.same({ 1, 2 }, feed_in(d, "[1,2]", { 10 }))
  end)

  it("yields nothing when the path is absent or null", function()
    local d = json.decoder { records = "data" }
    assert.are.same({}, feed_in(d, '{"error":"none"}', { 4 }))
    assert.are.equal("none", d:envelope().error)
    d = json.decoder { records = "data" }
    assert.are.same({}, feed_in(d, '{"data":null,"cursor":"x"}', { 4 }))
    assert.are.equal("x", d:envelope().cursor)
  end)

  it("raises when the records field is not an array", function()
    local d = json.decoder { records = "data" }
    d:feed('{"data":{"a":1}}')
    raises_json(function() d:next() end, "not an array")
  end)

  it("raises when there is no array of records", function()
    local d = json.decoder()
    d:feed('{"a":1}')
    raises_json(function() d:next() end, "array of records")
  end)

  it("hands out one whole value with whole = true", function()
    local d = json.decoder { whole = true }
    assert.are.same({ { a = { 1, 2 } } }, feed_in(d, ' {"a":[1,2]} ', { 1 }))
    d = json.decoder { whole = true }
    assert.are.same({ 42 }, feed_in(d, "42", { 1 }))
  end)

  it("gives the same values for any chunking of a large document", function()
    local rows = page(400)
    local text = json.encode(rows)
    local expected = json.decode(text)
    local seed = 42
    for _, sizes in ipairs { { 1 }, { 7, 1, 300 }, { 4096 }, { 65536 } } do
      assert.are.same(expected, feed_in(json.decoder(), text, sizes))
    end
    for _ = 1, 5 do                                -- random split points
      local sizes = {}
      for i = 1, 50 do
        seed = (seed * 1103515245 + 12345) % 2147483648
        sizes[i] = 1 + seed % 2000
      end
      assert.are.same(expected, feed_in(json.decoder(), text, sizes))
    end
  end)

  it("keeps memory bounded by a record, not the body", function()
    local d = json.decoder()
    d:feed("[")
    local row = json.encode(page(1)[1])
    for _ = 1, 2000 do
      d:feed(row .. ",")
      assert.is_table(d:next())
      assert.is_true(d:pending() < 2 * #row + 16)
    end
  end)

  it("skips records without building them", function()
    local d = json.decoder()
    d:feed('[{"a":1},{"a":2},{"a":3}]')
    assert.is_true(d:skip())
    assert.is_true(d:skip())
    assert.are.same({ a = 3 }, d:next())
    assert.are.equal(3, d:count())
  end)

  it("can be reset and reused", function()
    local d = json.decoder { records = "data" }
    assert.are.same({ 1 }, feed_in(d, '{"data":[1],"n":1}', { 2 }))
    d:reset()
    assert.are.same({ 2, 3 }, feed_in(d, '{"data":[2,3],"n":2}', { 2 }))
    assert.are.equal(2, d:envelope().n)
    assert.are.equal(2, d:count())
  end)

  it("can be abandoned half-way and collected", function()
    for _ = 1, 50 do
      local d = json.decoder { records = "data" }
      d:feed('{"data":[{"a":"' .. ("x"):rep(1000))
      d:next()
    end
    collectgarbage()
    collectgarbage()
  end)

  it("raises on a truncated document at finish, with the offset", function()
    local d = json.decoder()
    d:feed('[{"a":1},{"a":')
    assert.is_table(d:next())
    d:finish()
    local e = raises_json(function() d:next() end, "end of input")
    assert.are.equal(14, e.offset)
  end)

  it("reports errors with absolute offsets across chunks", function()
    local d = json.decoder()
    d:feed('[1,2,')
    d:next(); d:next()
    d:feed('3,"\255"]')
    d:next()
    local e = raises_json(function() d:next() end, "UTF%-8")
    assert.are.equal(8, e.offset)
  end)

  it("enforces max_record, max_depth and max_body", function()
    local d = json.decoder { max_record = 100 }
    d:feed('[{"a":"' .. ("x"):rep(50))
    d:next()
    d:feed(("x"):rep(100))
    raises_json(function() d:next() end, "max_record")
    d = json.decoder { max_depth = 3 }
    d:feed("[[[[1]]]]")
    raises_json(function() d:next() end, "max_depth")
    d = json.decoder { max_body = 10 }
    d:feed("[1,2,3,4,5,6,7]")
    raises_json(function() d:next() end, "max_body")
  end)

  it("raises on trailing data", function()
    local d = json.decoder()
    d:feed("[1] [2]")
    assert.are.equal(1, d:next())
    raises_json(function() d:next() end, "after the JSON value")
  end)

  it("refuses use after close and can be closed twice", function()
    local d = json.decoder()
    d:close()
    d:close()
    local ok, err = pcall(d.feed, d, "[1]")
    assert.is_false(ok)
    assert.are.equal("usage", err.kind)
    assert.matches("closed", tostring(d))
  end)

  it("blames bad options on the caller", function()
    local ok, err = pcall(json.decoder, { records = 5 })
    assert.is_false(ok)
    assert.are.equal("usage", err.kind)
    ok, err = pcall(json.decoder, { records = "a..b" })
    assert.is_false(ok)
    assert.are.equal("usage", err.kind)
    ok, err = pcall(json.decoder, { big_integers = "x" })
    assert.is_false(ok)
    assert.are.equal("usage", err.kind)
  end)

  describe(":decoder duplicate keys", function()
    it("raises on a second records key instead of yielding its records", function()
      local d = json.decoder { records = "data" }
      d:feed('{"data":[1,2],"data":[3]}')
      assert.are.equal(1, d:next())
      assert.are.equal(2, d:next())
      local e = raises_json(function() d:next() end, 'duplicate key "data"')
      assert.are.equal(14, e.offset)
    end)

    it("raises on duplicate envelope keys, before or after the records", function()
      for _, doc in ipairs { '{"page":1,"page":2,"data":[]}', '{"data":[],"n":1,"n":1}',
                             '{"data":null,"data":[1]}', '{"a":1,"\\u0061":2,"data":[]}',
                             '{"m":{"x":1,"x":2},"data":[]}' } do
        local d = json.decoder { records = "data" }
        assert.has_error(function() feed_in(d, doc, { 1 }) end)
        d = json.decoder { records = "data" }
        d:feed(doc)
        d:finish()
        raises_json(function() drain(d) end, "duplicate key")
      end
    end)

    it("raises on duplicates on a nested records path", function()
      for _, doc in ipairs { '{"result":{"items":[1],"n":1,"n":2}}', '{"result":{"items":[]},"result":{}}',
                             '{"result":{"items":[],"items":[]}}', '{"result":5,"result":{"items":[]}}' } do
        local d = json.decoder { records = "result.items" }
        d:feed(doc)
        d:finish()
        raises_json(function() drain(d) end, "duplicate key")
      end
    end)

    it("gives the duplicate's offset however the bytes arrive", function()
      local doc = '{"total":7,"data":[{"a":1}],"total":8}'
      for _, size in ipairs { 1, 3, #doc } do
        local d = json.decoder { records = "data" }
        local ok, e = pcall(feed_in, d, doc, { size })
        assert.is_false(ok)
        assert.are.equal("json", e.kind)
        assert.are.equal(28, e.offset, "chunks of " .. size)
      end
    end)

    it("raises on duplicate keys inside records, at any depth", function()
      local d = json.decoder { records = "data" }
      d:feed('{"data":[{"a":1},{"a":1,"a":2}]}')
      assert.are.same({ a = 1 }, d:next())
      raises_json(function() d:next() end, 'duplicate key "a"')
      d = json.decoder()
      d:feed('[{"x":{"y":[{"z":1,"z":1}]}}]')
      raises_json(function() d:next() end, 'duplicate key "z"')
    end)

    it("yields records of one shape and then another exactly", function()
      local d = json.decoder()
      local out = feed_in(d, '[{"a":1,"b":2},{"a":3,"b":4},{"b":5,"a":6},{"a":7},{"a":8,"b":9,"c":0}]', { 5 })
      assert.are.same({ { a = 1, b = 2 }, { a = 3, b = 4 }, { b = 5, a = 6 }, { a = 7 },
                        { a = 8, b = 9, c = 0 } }, out)
    end)
  end)

  describe(":decoder value cache", function()
    -- short plain string values of members whose values repeat come from a
    -- cache of recent values: they must be exactly the decoded strings
    local function doc(n, value)
      local rows = {}
      for i = 1, n do
        rows[i] = ('{"id":%d,"campaign":"%s","tags":["%s","t"],"note":"%s"}')
          :format(i, value(i), value(i + 1), ("x"):rep(i % 50))
      end
      return "[" .. table.concat(rows, ",") .. "]", rows
    end

    it("gives back exactly the values, however the bytes arrive", function()
      local values = { "", "a", "Retention", "Onboarding", ("y"):rep(40), ("y"):rep(41),
                       "12345678", "12345679", "abcdefgh-1", "abcdefgh-2", "esc\\\\aped", "naïve" }
      local s = doc(400, function(i) return values[i % #values + 1] end)
      for _, sizes in ipairs { { 65536 }, { 7 }, { 1, 3, 50 } } do
        local out = feed_in(json.decoder(), s, sizes)
        assert.are.equal(400, #out)
        for i = 1, 400 do
          local want = values[i % #values + 1]:gsub("\\\\", "\\")
          assert.are.equal(want, out[i].campaign)
          assert.are.equal((values[(i + 1) % #values + 1]:gsub("\\\\", "\\")), out[i].tags[1])
          assert.are.equal(("x"):rep(i % 50), out[i].note)
        end
      end
    end)

    it("keeps values apart that collide in it, and many distinct ones", function()
      local s = doc(3000, function(i) return ("v%d"):format(i * 7919 % 1000) end)
      local out = feed_in(json.decoder(), s, { 4096 })
      for i = 1, 3000 do
        assert.are.equal(("v%d"):format(i * 7919 % 1000), out[i].campaign)
        assert.are.equal(("v%d"):format((i + 1) * 7919 % 1000), out[i].tags[1])
      end
      local whole = json.decode(s)                    -- json.decode uses it above 64 KiB
      assert.are.equal(3000, #whole)
      for i = 1, 3000 do assert.are.equal(out[i].campaign, whole[i].campaign) end
    end)

    it("still applies max_string to cached values", function()
      local d = json.decoder { max_string = 5 }
      d:feed('[{"k":"abc"},{"k":"abc"},{"k":"abc"},{"k":"abcdef"}]')
      d:finish()
      for _ = 1, 3 do assert.are.equal("abc", d:next().k) end
      raises_json(function() d:next() end, "string longer than max_string")
    end)
  end)

  describe(":feed", function()
    it("accepts an empty chunk on a fresh decoder", function()
      local d = json.decoder()
      d:feed("")
      assert.are.same({ nil, "more" }, { d:next() })
      d:feed("")
      d:feed("[1]")
      d:feed("")
      assert.are.equal(1, d:next())
      d:finish()
      assert.are.same({ nil, "done" }, { d:next() })
    end)

    it("still raises on an empty document after empty chunks", function()
      local d = json.decoder { records = "data" }
      d:feed("")
      d:finish()
      raises_json(function() d:next() end, "empty document")
    end)
  end)

  -- A fed string of 512 bytes or more is read where it is, not copied: the
  -- decoder holds it, and moves into its buffer only what a record cut at
  -- a string's end needs.
  describe(":feed in place", function()
    -- Everything a decoder gives for text fed in pieces of the given sizes:
    -- the records, the envelope, and the error (message and offset) if any.
    local function outcome(opts, text, sizes)
      local d = json.decoder(opts)
      local ok, res = pcall(feed_in, d, text, sizes)
      if ok then return { records = res, envelope = d:envelope() } end
      return { error = tostring(res.message):gsub(" at offset %d+", ""), offset = res.offset }
    end
    local SIZES = { { 1e9 }, { 512 }, { 600, 3 }, { 5000 }, { 511, 513, 70000 }, { 4097, 100 },
                    { 700, 1, 1, 800 } }

    it("gives the same records, envelope and errors for any mix of copied and held strings",
       function()
      local body = json.encode { meta = { n = 3 }, data = page(120, 3), tail = "t" }
      local at = body:find('{"', 9000, true)                -- a record starts there
      local bad = {
        body,
        body:sub(1, #body - 1),                            -- truncated
        body:sub(1, 5000) .. "\255" .. body:sub(5001),     -- garbage inside a record
        body:sub(1, at - 1) .. "]" .. body:sub(at),        -- structure broken
        body .. " x",                                      -- trailing data
      }
      for k, text in ipairs(bad) do
        for _, opts in ipairs { { records = "data" }, { records = "data", raw = true },
                                { records = "data", max_record = 250 } } do
          local want = outcome(opts, text, { 1e9 })
          assert.are.equal(k > 1 or opts.max_record ~= nil, want.error ~= nil)
          for _, sizes in ipairs(SIZES) do
            assert.are.same(want, outcome(opts, text, sizes))
          end
        end
      end
    end)

    it("keeps a held string alive when nothing else refers to it", function()
      local rows = page(60, 9)
      local text = json.encode(rows)
      local d = json.decoder()
      local out, i = {}, 1
      while i <= #text do
        d:feed(text:sub(i, i + 999))                -- the only reference is the decoder's
        i = i + 1000
        collectgarbage()
        collectgarbage()
        drain(d, out)
      end
      d:finish()
      drain(d, out)
      assert.are.same(json.decode(text), out)
    end)

    it("keeps the order of strings fed one after another before reading", function()
      local text = json.encode(page(50, 5))
      local d = json.decoder()
      local cut = { 1, 700, 1400, 1401, 3000, 6000, #text + 1 }
      for k = 1, #cut - 1 do d:feed(text:sub(cut[k], cut[k + 1] - 1)) end
      d:finish()
      assert.are.same(json.decode(text), (drain(d)))
    end)

    it("completes a record cut across many held strings, and counts them in pending", function()
      local big = json.encode { text = ("é"):rep(20000) }          -- 40 KB
      local text = "[1," .. big .. ",2]"
      local d = json.decoder()
      d:feed(text:sub(1, 1000))
      assert.are.equal(1, d:next())
      assert.are.same({ nil, "more" }, { d:next() })
      assert.are.equal(997, d:pending())
      for i = 1001, #text, 3000 do
        d:feed(text:sub(i, i + 2999))
        assert.is_true(d:pending() <= #text - 2)
        local v = d:next()
        if v ~= nil then
          assert.are.equal(("é"):rep(20000), v.text)
          break
        end
      end
      d:finish()
      assert.are.same({ 2 }, (drain(d)))
    end)

    it("stops a record at max_record however the strings are cut", function()
      local text = '[{"a":"' .. ("x"):rep(20000) .. '"}]'
      for _, sizes in ipairs(SIZES) do
        local d = json.decoder { max_record = 5000 }
        local e = raises_json(function() feed_in(d, text, sizes) end, "max_record")
        assert.are.equal(1, e.offset)
      end
    end)

    it("applies max_body to held strings", function()
      local d = json.decoder { max_body = 1000 }
      d:feed("[" .. ("1,"):rep(400))
      d:feed(("1,"):rep(300))
      raises_json(function() drain(d) end, "max_body")
    end)

    it("ends a value cut between two strings fed before reading, at finish", function()
      for _, raw in ipairs { false, true } do
        local d = json.decoder { whole = true, raw = raw }
        d:feed((" "):rep(600) .. "0.123")
        assert.are.same({ nil, "more" }, { d:next() })
        d:feed(("4"):rep(600))
        d:finish()
        local v = d:next()
        if raw then assert.are.equal("0.123" .. ("4"):rep(600), v)
        else assert.are.equal(tonumber("0.123" .. ("4"):rep(600)), v) end
        assert.are.same({ nil, "done" }, { d:next() })
      end
    end)

    it("reads a held string after finish, and lets it go when done or reset", function()
      local text = json.encode(page(20, 1))
      local d = json.decoder()
      d:feed(text)
      d:finish()
      assert.are.same(json.decode(text), (drain(d)))
      assert.are.equal(0, d:pending())
      d:reset()
      d:feed(text:sub(1, 2000))
      assert.is_true(d:pending() > 0)
      d:reset()
      assert.are.equal(0, d:pending())
      d:feed("[7]")
      d:finish()
      assert.are.same({ 7 }, (drain(d)))
    end)
  end)

  describe(":decoder deep nesting", function()
    local N = 10000
    local arrays = ("["):rep(N) .. ("]"):rep(N)
    local objects = ('{"a":'):rep(N - 1) .. "{}" .. ("}"):rep(N - 1)

    local function depth_of(v)
      local n = 0
      while type(v) == "table" do n = n + 1; v = v[1] or v.a end
      return n
    end

    local function stream(doc, size, opts)
      local d = json.decoder(opts)
      local out = feed_in(d, doc, { size })
      return out
    end

    it("streams 10000 levels, fed whole and byte by byte", function()
      for _, size in ipairs { #objects, 1 } do
        assert.are.equal(N, depth_of(stream(arrays, size, { whole = true, max_depth = N })[1]))
        assert.are.equal(N, depth_of(stream(objects, size, { whole = true, max_depth = N })[1]))
        assert.are.equal(N - 1, depth_of(stream(arrays, size, { max_depth = N })[1]))
        local env = '{"data":[' .. arrays:sub(3, -3) .. "]}"
        assert.are.equal(N - 2, depth_of(stream(env, size, { records = "data", max_depth = N })[1]))
      end
    end)

    it("streams 10000 levels inside a coroutine", function()
      local co = coroutine.wrap(function()
        return depth_of(stream(objects, 1, { whole = true, max_depth = N })[1]),
               depth_of(stream(arrays, #arrays, { whole = true, max_depth = N })[1])
      end)
      local o, a = co()
      assert.are.equal(N, o)
      assert.are.equal(N, a)
    end)

    it("raises the same max_depth error from the parser and the scanner", function()
      for _, doc in ipairs { "[" .. arrays .. "]", '{"a":' .. objects .. "}" } do
        local errs = {}
        for i, size in ipairs { #doc, 1 } do
          local d = json.decoder { whole = true, max_depth = N }
          local ok, e = pcall(feed_in, d, doc, { size })
          assert.is_false(ok)
          errs[i] = e
        end
        assert.matches("nesting deeper than max_depth %(10000%)", errs[1].message)
        assert.are.equal(errs[1].message, errs[2].message)
        assert.are.equal(errs[1].offset, errs[2].offset)
      end
    end)

    it("counts the envelope's depth in the scanner as the parser does", function()
      -- records at depth 3 ({ -> data [ -> record); max_depth 3 allows [] records, not [[]]
      for _, size in ipairs { 100, 1 } do
        local d = json.decoder { records = "data", max_depth = 3 }
        assert.are.same({ {} }, feed_in(d, '{"data":[[]]}', { size }))
        d = json.decoder { records = "data", max_depth = 3 }
        local ok, e = pcall(feed_in, d, '{"data":[[[]]]}', { size })
        assert.is_false(ok)
        assert.matches("max_depth %(3%)", e.message)
        assert.are.equal(10, e.offset)
      end
    end)

    it("raises as soon as a record cut by the chunk is too deep", function()
      local d = json.decoder { records = "data", max_depth = 3 }
      d:feed('{"data":[[')
      assert.are.same({ nil, "more" }, { d:next() })
      d:feed("[")
      local e = raises_json(function() d:next() end, "max_depth %(3%)")
      assert.are.equal(10, e.offset)
    end)

    it("refuses max_depth above 10000 as a usage error", function()
      for _, v in ipairs { 10001, 1e6 } do
        local ok, err = pcall(json.decoder, { max_depth = v })
        assert.is_false(ok)
        assert.are.equal("usage", err.kind)
      end
    end)
  end)

  describe(":decoder limits", function()
    it("stops an endless envelope of distinct keys at max_envelope", function()
      local d = json.decoder { records = "data", max_envelope = 1000 }
      d:feed("{")
      local fed, err = 1, nil
      for i = 1, 100000 do
        local chunk = ('"k%d":1,'):format(i)
        d:feed(chunk)
        fed = fed + #chunk
        local ok, e = pcall(d.next, d)
        if not ok then err = e break end
      end
      assert.is_table(err)
      assert.are.equal("json", err.kind)
      assert.matches("max_envelope", err.message)
      assert.is_true(fed < 1100)
    end)

    it("stops an endless envelope with the default max_envelope of 1 MiB", function()
      local d = json.decoder { records = "data" }
      d:feed("{")
      local chunk = {}
      for i = 1, 1000 do chunk[i] = ('"k%07d":1,'):format(i) end
      chunk = table.concat(chunk)
      local fed, err = 1, nil
      for i = 1, 300 do
        d:feed(chunk:gsub('"k', '"' .. i .. "k"))
        fed = fed + #chunk + 1000 * #tostring(i)
        local ok, e = pcall(d.next, d)
        if not ok then err = e break end
      end
      assert.matches("max_envelope", err.message)
      assert.is_true(fed > 1048576 and fed < 1048576 + 2 * #chunk)
    end)

    it("stops an endless envelope key or value at max_envelope", function()
      for _, head in ipairs { '{"', '{"a":"', '{"a":[1,', '{"a":123' } do
        local d = json.decoder { records = "data", max_envelope = 500 }
        d:feed(head)
        local err
        for _ = 1, 100 do
          d:feed(head:sub(-1) == "," and ("1,"):rep(50) or ("1"):rep(100))
          local ok, e = pcall(d.next, d)
          if not ok then err = e break end
        end
        assert.matches("max_envelope", err and err.message or "no error", head)
      end
    end)

    it("accepts an envelope up to max_envelope", function()
      -- every byte but the records array's "[1,2]" is envelope
      local doc = '{"a":"' .. ("x"):rep(80) .. '","data":[1,2],"b":2}'
      local d = json.decoder { records = "data", max_envelope = #doc - 5 }
      assert.are.same({ 1, 2 }, feed_in(d, doc, { 7 }))
      assert.are.equal(80, #d:envelope().a)
      d = json.decoder { records = "data", max_envelope = 0 }
      assert.are.same({ 1, 2 }, feed_in(d, "[1,2]", { 1 }))
      d = json.decoder { records = "data", max_envelope = #doc - 6 }
      assert.has_error(function() feed_in(d, doc, { 7 }) end)
      assert.has_error(function() json.decoder { max_envelope = -1 } end)
    end)

    it("lifts a size limit with math.huge, and refuses sizes that are not", function()
      local d = json.decoder { records = "data", max_record = math.huge, max_envelope = math.huge,
                               max_body = math.huge }
      assert.are.same({ ("x"):rep(5000) }, feed_in(d, '{"e":"' .. ("y"):rep(5000) .. '","data":["'
        .. ("x"):rep(5000) .. '"]}', { 999 }))
      for _, k in ipairs { "max_record", "max_envelope", "max_body" } do
        for _, v in ipairs { -1, 0 / 0, "big" } do
          local ok, err = pcall(json.decoder, { [k] = v })
          assert.is_false(ok)
          assert.are.equal("usage", err.kind)
        end
      end
    end)

    it("stops a scalar record with endless digits at max_record", function()
      for _, head in ipairs { "[", '{"data":[1,', "[-", "[1.", "[1e" } do
        local d = json.decoder { records = "data", max_record = 100 }
        d:feed(head)
        local err
        for _ = 1, 100 do
          d:feed("123123123")
          local ok, e = pcall(d.next, d)
          if not ok then err = e break end
        end
        assert.matches("max_record", err and err.message or "no error", head)
      end
    end)

    it("applies max_record to a record that arrives complete in one chunk", function()
      local rec = '{"a":"' .. ("x"):rep(100) .. '"}'
      for _, opts in ipairs { { max_record = #rec - 1 }, { max_record = #rec - 1, whole = true } } do
        local d = json.decoder(opts)
        d:feed(opts.whole and rec or "[" .. rec .. "]")
        raises_json(function() d:next() end, "max_record")
      end
      local d = json.decoder { max_record = #rec }
      d:feed("[" .. rec .. "," .. rec .. "]")
      assert.are.equal(100, #d:next().a)
      d = json.decoder { max_record = 3 }
      d:feed("[123,1234]")
      assert.are.equal(123, d:next())
      raises_json(function() d:next() end, "max_record")
    end)

    it("stops endless strings at max_record, and long ones at max_string", function()
      for _, head in ipairs { '["', '{"data":[{"a":"', '[{"', '["\\u00e9' } do
        local d = json.decoder { records = "data", max_record = 1000 }
        d:feed(head)
        local err
        for _ = 1, 100 do
          d:feed(("x"):rep(100))
          local ok, e = pcall(d.next, d)
          if not ok then err = e break end
        end
        assert.matches("max_record", err and err.message or "no error", head)
      end
      local d = json.decoder { max_string = 10 }
      d:feed('["' .. ("x"):rep(11) .. '"]')
      raises_json(function() d:next() end, "max_string")
      d = json.decoder { max_string = 10 }
      assert.are.same({ ("x"):rep(10) }, feed_in(d, '["' .. ("x"):rep(10) .. '"]', { 3 }))
    end)
  end)

  describe(":decoder raw mode", function()
    local function raw_records(doc, opts, sizes)
      opts = opts or {}
      opts.raw = true
      return feed_in(json.decoder(opts), doc, sizes or { #doc })
    end

    it("keeps 1e400 byte for byte", function()
      assert.are.same({ "1e400", "-1E-400", "0.10" }, raw_records("[1e400,-1E-400,0.10]"))
    end)

    it("keeps -0 and integers beyond int64 byte for byte", function()
      assert.are.same({ "-0", "123456789012345678901234567890", "-9223372036854775809" },
        raw_records("[-0,123456789012345678901234567890,-9223372036854775809]"))
    end)

    it("keeps escapes as they came in", function()
      local rec = [["\u00e9\n\/\"\ud83d\ude00 é"]]
      assert.are.same({ rec }, raw_records("[" .. rec .. "]"))
    end)

    it("removes whitespace outside strings only", function()
      local doc = '[ {\n  "a" : [ 1 ,\t2 ] ,\r\n  "b c" : " x  y "\n} ,\n  true ]'
      local out = raw_records(doc)
      assert.are.same({ '{"a":[1,2],"b c":" x  y "}', "true" }, out)
      for _, sizes in ipairs { { 1 }, { 3, 7 } } do
        assert.are.same(out, raw_records(doc, nil, sizes))
      end
    end)

    it("never puts a newline inside a record", function()
      local rows = page(50)
      local doc = json.encode(rows):gsub(",", ",\n  ")
      for _, r in ipairs(raw_records(doc, nil, { 100 })) do
        assert.is_nil(r:find("\n", 1, true))
      end
    end)

    it("gives records that decode to the same values as table mode", function()
      local text = json.encode(page(200))
      local want = feed_in(json.decoder(), text, { 333 })
      local got = raw_records(text, nil, { 333 })
      assert.are.equal(#want, #got)
      for i = 1, #want do assert.are.same(want[i], json.decode(got[i])) end
    end)

    it("hands out the whole document minified with whole = true", function()
      assert.are.same({ '{"a":[1,{}],"b":"x y"}' },
        raw_records(' { "a" : [ 1 , { } ] , "b" : "x y" } ', { whole = true }, { 2 }))
      assert.are.same({ "1e400" }, raw_records(" 1e400 ", { whole = true }, { 1 }))
    end)

    it("keeps the envelope, count and skip as in table mode", function()
      local d = json.decoder { records = "data", raw = true }
      d:feed('{"page":2,"data":[{"a":1},{"a":2},{"a":3}],"next":{"c":"x"}}')
      d:finish()
      assert.are.equal('{"a":1}', d:next())
      assert.is_true(d:skip())
      assert.are.equal('{"a":3}', d:next())
      assert.are.same({ nil, "done" }, { d:next() })
      assert.are.equal(3, d:count())
      assert.are.same({ page = 2, next = { c = "x" } }, d:envelope())
    end)

    it("raises the same errors as table mode, at the same offsets", function()
      local bad = { '["\255"]', '["\\ud800"]', '["\\udc00x"]', '["\\x"]', "[01]", "[1.]", "[-]",
                    '["a\tb"]', "[[1,]]", '[{"a" 1}]', '[{"a":1,}]', "[nul]", "[[[[1]]]]",
                    '[{"a":1,"a":2}]', '[{"a":1,"\\u0061":2}]', '[{"k":{"x":1,"y":{"x":1,"x":2}}}]',
                    '["' .. ("x"):rep(20) .. '"]', '["\\u00e9' .. ("x"):rep(19) .. '"]', "[1 2]",
                    '[{"a":1},{"a":1,"b":2,"a":3}]', "[tru]", '[{"a":[}]',
                    '["' .. ("x"):rep(20) .. '\\q"]', '["\\n' .. ("x"):rep(20) .. '\255"]',
                    '["\\n' .. ("x"):rep(20) .. '\1"]', '["\\n' .. ("x"):rep(30) }
      for _, doc in ipairs(bad) do
        for _, size in ipairs { #doc, 1 } do
          local opts = { max_depth = 3, max_string = 19 }
          local ok1, e1 = pcall(feed_in, json.decoder(opts), doc, { size })
          opts.raw = true
          local ok2, e2 = pcall(feed_in, json.decoder(opts), doc, { size })
          assert.is_false(ok1, doc)
          assert.is_false(ok2, doc)
          assert.are.equal("json", e2.kind)
          assert.are.equal(e1.message, e2.message, doc)
          assert.are.equal(e1.offset, e2.offset, doc)
        end
      end
    end)

    it("accepts what table mode accepts at the limits", function()
      local opts = { max_depth = 3, max_string = 19, raw = true }
      assert.are.same({ "[[1]]", '"' .. ("x"):rep(19) .. '"', '"\\u00e9' .. ("x"):rep(17) .. '"' },
        raw_records('[[[1]],"' .. ("x"):rep(19) .. '","\\u00e9' .. ("x"):rep(17) .. '"]', opts))
    end)

    it("finds duplicate keys in records of a repeated shape", function()
      local recs = {}
      for i = 1, 10 do recs[i] = ('{"id":%d,"m":{"x":1,"y":2},"t":[{"k":1}]}'):format(i) end
      assert.are.equal(10, #raw_records("[" .. table.concat(recs, ",") .. "]"))
      for _, dup in ipairs { '{"id":1,"m":{"x":1,"y":2},"id":2}', '{"id":1,"m":{"x":1,"x":2}}',
                             '{"id":1,"m":{"x":1,"y":2},"t":[{"k":1,"k":1}]}', '{"\\u0069d":1,"id":1}' } do
        local doc = "[" .. table.concat(recs, ",") .. "," .. dup .. "]"
        assert.has_error(function() raw_records(doc) end)
        local ok, e = pcall(raw_records, doc, nil, { 7 })
        assert.is_false(ok)
        assert.matches("duplicate key", e.message)
      end
    end)

    it("applies max_record to the record's text as it came in", function()
      assert.are.same({ "[1,2]" }, raw_records("[[ 1 , 2 ]]", { max_record = 9 }))
      assert.has_error(function() raw_records("[[ 1 , 2 ]]", { max_record = 8 }) end)
    end)

    it("streams 10000 levels, and refuses 10001", function()
      local N = 10000
      local arrays = ("["):rep(N) .. ("]"):rep(N)
      local objects = ('{"a":'):rep(N - 1) .. "{}" .. ("}"):rep(N - 1)
      for _, doc in ipairs { arrays, objects } do
        local spaced = doc:gsub(":", " : ")
        for _, size in ipairs { #spaced, 1 } do
          assert.are.same({ doc }, raw_records(spaced, { whole = true, max_depth = N }, { size }))
        end
        local co = coroutine.wrap(function() return raw_records(doc, { whole = true, max_depth = N }) end)
        assert.are.same({ doc }, co())
        local deeper = doc:sub(1, 1) == "[" and "[" .. doc .. "]" or '{"a":' .. doc .. "}"
        local ok, e = pcall(raw_records, deeper, { whole = true, max_depth = N })
        assert.is_false(ok)
        assert.matches("max_depth %(10000%)", e.message)
      end
    end)

    it("is faster than decoding to tables", function()
      if os.getenv("CONVERSE_VALGRIND") then return end
      local text = json.encode(page(3000))
      local function best(opts)
        local t = math.huge
        for _ = 1, 3 do
          local t0 = os.clock()
          feed_in(json.decoder(opts), text, { 65536 })
          t = math.min(t, os.clock() - t0)
        end
        return t
      end
      local tables, raw = best(nil), best({ raw = true })
      assert.is_true(raw < tables, ("raw %.3fs, tables %.3fs"):format(raw, tables))
    end)

    it("blames a raw option that is not a boolean on the caller", function()
      local ok, err = pcall(json.decoder, { raw = "yes" })
      assert.is_false(ok)
      assert.are.equal("usage", err.kind)
      assert.is_string(feed_in(json.decoder { raw = false }, "[1]", { 1 })[1] and "ok")
    end)
  end)
end)

