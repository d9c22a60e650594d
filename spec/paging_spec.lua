-- The sans-I/O paging state machine (src/paging.c): no server, no socket;
-- it is told what pages said and answers what to request next.
local core = require "converse.core"

local function wants(ps)
  local out = {}
  while true do
    local kind, value = ps:want()
    if not kind then return out end
    out[#out + 1] = kind .. ":" .. tostring(value)
  end
end

describe("converse.core.paging", function()
  describe("style page", function()
    it("keeps one page of prefetch and stops on a short page", function()
      local ps = core.paging { style = "page", page_size = 100, short_stops = true }
      assert.are.same({ "page:1", "page:2" }, wants(ps))
      assert.is_false(ps:finish(1, 100))
      assert.are.same({ "page:3" }, wants(ps))
      assert.is_true(ps:finish(2, 40))
      assert.are.same({}, wants(ps))
    end)

    it("stops on an empty page, and ignores shortness without a size parameter", function()
      local ps = core.paging { style = "page", page_size = 100 }
      wants(ps)
      assert.is_false(ps:finish(1, 3))
      assert.is_true(ps:finish(2, 0))
    end)

    it("waits for the page count, then fetches up to `concurrency` pages", function()
      local ps = core.paging { style = "page", page_size = 10, total_field = "pages", concurrency = 3 }
      assert.are.same({ "page:1" }, wants(ps))
      assert.is_true(ps:needs_envelope())
      ps:learn { pages = 5 }
      assert.is_false(ps:needs_envelope())
      assert.are.same({ "page:2", "page:3" }, wants(ps))
      assert.is_false(ps:finish(1, 10))
      assert.are.same({ "page:4" }, wants(ps))
      ps:finish(2, 10); ps:finish(3, 10)
      assert.are.same({ "page:5" }, wants(ps))
      assert.is_true(ps:finish(4, 10) == false and ps:finish(5, 10))
      assert.are.same({}, wants(ps))
    end)

    it("starts at first_page and honours max_pages", function()
      local ps = core.paging { style = "page", first_page = 0, max_pages = 2, page_size = 5 }
      assert.are.same({ "page:0", "page:1" }, wants(ps))
      assert.is_false(ps:finish(0, 5))
      assert.are.same({}, wants(ps))
      assert.is_true(ps:finish(1, 5))
    end)
  end)

  describe("style cursor", function()
    it("asks for the next cursor only once it is known, and stops without one", function()
      local ps = core.paging { style = "cursor" }
      assert.are.same({ "cursor:nil" }, wants(ps))
      assert.are.same({}, wants(ps))
      assert.is_true(ps:needs_envelope())
      assert.is_true(ps:learn { cursor = "c1" })
      assert.are.same({ "cursor:c1" }, wants(ps))
      assert.is_false(ps:finish(nil, 3))
      assert.is_true(ps:learn { cursor = core.null })
      assert.are.same({}, wants(ps))
      assert.is_true(ps:finish(nil, 3))
    end)

    it("answers REPEATED_CURSOR for a cursor seen before", function()
      local ps = core.paging { style = "cursor", cursor = "start" }
      assert.are.same({ "cursor:start" }, wants(ps))
      assert.is_true(ps:learn { cursor = "x" })
      ps:finish(nil, 1)
      wants(ps)
      local ok, code, detail = ps:learn { cursor = "x" }
      assert.is_nil(ok)
      assert.are.equal("REPEATED_CURSOR", code)
      assert.are.equal("x", detail)
    end)
  end)

  describe("style auto", function()
    it("follows a cursor while has_more, then stops", function()
      local ps = core.paging { style = "auto", page_size = 2, short_stops = true }
      assert.are.same({ "page:1" }, wants(ps))
      ps:learn { next_cursor = "n2", has_more = true }
      ps:finish(1, 2)
      assert.are.same({ "cursor:n2" }, wants(ps))
      ps:learn { next_cursor = "n3", has_more = false }
      assert.is_true(ps:finish(nil, 2))
    end)

    it("uses a page count, and stops on an envelope without paging", function()
      local ps = core.paging { style = "auto", page_size = 2, short_stops = true }
      wants(ps)
      ps:learn { data = {}, page = 1, total_pages = 2 }
      assert.is_false(ps:finish(1, 2))
      assert.are.same({ "page:2" }, wants(ps))
      ps:learn { data = {}, page = 2, total_pages = 2 }
      assert.is_true(ps:finish(2, 2))
      ps = core.paging { style = "auto", page_size = 2, short_stops = true }
      wants(ps)
      ps:learn { data = {}, note = "no paging fields" }
      assert.is_true(ps:finish(1, 2))
    end)
  end)

  it("makes one request in style none", function()
    local ps = core.paging { style = "none" }
    assert.are.same({ "page:nil" }, wants(ps))
    assert.is_true(ps:finish(nil, 10))
  end)

  it("remembers first records, to read suspicious pages whole", function()
    local ps = core.paging { style = "page" }
    assert.is_false(ps:first('{"id":1}'))
    assert.is_false(ps:first('{"id":2}'))
    assert.is_true(ps:first('{"id":1}'))
    for i = 1, 1000 do ps:first("k" .. i) end
    assert.is_true(ps:first("k500"))
  end)

  describe("page identity", function()
    it("answers REPEATED_PAGE only for the same first record, last record and count", function()
      local ps = core.paging { style = "page", page_size = 3, short_stops = true }
      wants(ps)
      assert.is_false(ps:finish(1, 3, "hb", "a"))
      assert.is_false(ps:repeats(3, "hb", "b"))       -- starts alike: legitimate
      assert.is_false(ps:finish(2, 3, "hb", "b"))
      assert.is_true(ps:repeats(3, "hb", "a"))
      wants(ps)
      local stopped, code = ps:finish(3, 3, "hb", "a")
      assert.is_nil(stopped)
      assert.are.equal("REPEATED_PAGE", code)
    end)

    it("does not compare empty pages", function()
      local ps = core.paging { style = "page" }
      wants(ps)
      assert.is_true(ps:finish(1, 0))
    end)
  end)

  describe("page counts a server may lie about", function()
    local function learned(value)
      local ps = core.paging { style = "page", total_field = "meta.pages", page_size = 2 }
      wants(ps)
      return ps, ps:learn { meta = { pages = value } }
    end

    for _, bad in ipairs { 9223372036854775807, 1e19, 1e300, math.huge, 2.7, -1, 0/0, "2.5",
                           "x", true } do
      it("answers BAD_PAGE_COUNT for " .. tostring(bad), function()
        local _, ok, code = learned(bad)
        assert.is_nil(ok)
        assert.are.equal("BAD_PAGE_COUNT", code)
      end)
    end

    it("accepts whole numbers up to 2^53, numeric strings, and null as unknown", function()
      assert.is_true(select(2, learned(2 ^ 53)))
      assert.is_true(select(2, learned("7")))
      local ps, ok = learned(core.null)
      assert.is_true(ok)
      assert.is_nil(ps:state().total)
    end)

    it("ignores short pages once the count is known, and stops at the count", function()
      local ps = core.paging { style = "page", total_field = "pages", page_size = 10,
                               short_stops = true, concurrency = 2 }
      wants(ps)
      ps:learn { pages = 3 }
      assert.is_false(ps:finish(1, 4))                  -- short, but 3 pages announced
      wants(ps)
      ps:learn { pages = 3 }
      assert.is_false(ps:finish(2, 10))
      ps:learn { pages = 3 }
      assert.is_true(ps:finish(3, 2))
    end)

    it("answers PAGE_COUNT_MISMATCH for an empty page before the announced end", function()
      local ps = core.paging { style = "page", total_field = "pages", page_size = 10 }
      wants(ps)
      ps:learn { pages = 4 }
      assert.is_false(ps:finish(1, 10))
      wants(ps)
      ps:learn { pages = 4 }
      local stopped, code = ps:finish(2, 0)
      assert.is_nil(stopped)
      assert.are.equal("PAGE_COUNT_MISMATCH", code)
    end)

    it("follows the latest page count when the data shrinks", function()
      local ps = core.paging { style = "page", total_field = "pages", page_size = 10 }
      wants(ps)
      ps:learn { pages = 4 }
      assert.is_false(ps:finish(1, 10))
      wants(ps)
      ps:learn { pages = 2 }
      assert.is_true(ps:finish(2, 5))
    end)
  end)

  describe(":position", function()
    it("is nil before a page is finished, then the next page, then done", function()
      local ps = core.paging { style = "page", page_size = 2, short_stops = true, first_page = 5 }
      assert.is_nil(ps:position())
      wants(ps)
      ps:finish(5, 2)
      assert.are.same({ page = 6 }, ps:position())
      ps:finish(6, 1)
      assert.are.same({ done = true }, ps:position())
    end)

    it("is the cursor that fetches the next page, not the one that fetched this one", function()
      local ps = core.paging { style = "cursor" }
      wants(ps)
      ps:learn { cursor = "c2" }
      ps:finish(nil, 100)
      assert.are.same({ cursor = "c2" }, ps:position())
      wants(ps)
      ps:learn { cursor = core.null }
      ps:finish(nil, 3)
      assert.are.same({ done = true }, ps:position())
    end)

    it("is not done when the consumer stopped or max_pages ended it", function()
      local ps = core.paging { style = "page", page_size = 2, max_pages = 1 }
      wants(ps)
      assert.is_true(ps:finish(1, 2))
      assert.are.same({ page = 2 }, ps:position())
    end)
  end)

  it("fingerprints strings with 16 hex digits", function()
    assert.are.equal(core.fingerprint("a"), core.fingerprint("a"))
    assert.are_not.equal(core.fingerprint("a"), core.fingerprint("b"))
    assert.matches("^%x+$", core.fingerprint(""))
    assert.are.equal(16, #core.fingerprint("x"))
  end)

  it("stops on request and refuses use after close", function()
    local ps = core.paging { style = "page" }
    ps:stop()
    assert.are.same({}, wants(ps))
    ps:close(); ps:close()
    local ok, err = pcall(ps.want, ps)
    assert.is_false(ok)
    assert.are.equal("usage", err.kind)
  end)

  it("rejects bad options", function()
    assert.has_error(function() core.paging { style = "zigzag" } end)
    local ok, err = pcall(core.paging, { style = "page", concurrency = 0 })
    assert.is_false(ok)
    assert.are.equal("usage", err.kind)
    ok, err = pcall(core.paging, { style = "page", page_size = 1.5 })
    assert.is_false(ok)
    assert.are.equal("usage", err.kind)
  end)
end)
