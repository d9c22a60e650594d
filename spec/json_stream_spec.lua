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
end)
