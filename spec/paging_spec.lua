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
      local ps = core.paging { style = "page", page_size = 10, total_field = true, concurrency = 3 }
      assert.are.same({ "page:1" }, wants(ps))
      ps:learn { total = 5 }
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
      assert.is_nil(ps:learn { cursor = "c1" })
      assert.are.same({ "cursor:c1" }, wants(ps))
      assert.is_false(ps:finish(nil, 3))
      assert.is_nil(ps:learn {})
      assert.are.same({}, wants(ps))
      assert.is_true(ps:finish(nil, 3))
    end)

    it("answers REPEATED_CURSOR for a cursor seen before", function()
      local ps = core.paging { style = "cursor", cursor = "start" }
      assert.are.same({ "cursor:start" }, wants(ps))
      assert.is_nil(ps:learn { cursor = "x" })
      ps:finish(nil, 1)
      wants(ps)
      assert.are.equal("REPEATED_CURSOR", ps:learn { cursor = "x" })
    end)
  end)

  describe("style auto", function()
    it("follows a cursor while has_more, then stops", function()
      local ps = core.paging { style = "auto", page_size = 2, short_stops = true }
      assert.are.same({ "page:1" }, wants(ps))
      ps:learn { cursor = "n2", has_more = true }
      ps:finish(1, 2)
      assert.are.same({ "cursor:n2" }, wants(ps))
      ps:learn { cursor = "n3", has_more = false }
      assert.is_true(ps:finish(nil, 2))
    end)

    it("uses a page count, and stops on an envelope without paging", function()
      local ps = core.paging { style = "auto", page_size = 2, short_stops = true }
      wants(ps)
      ps:learn { total = 2 }
      assert.is_false(ps:finish(1, 2))
      assert.are.same({ "page:2" }, wants(ps))
      assert.is_true(ps:finish(2, 2))
      ps = core.paging { style = "auto", page_size = 2, short_stops = true }
      wants(ps)
      ps:learn { bare = true }
      assert.is_true(ps:finish(1, 2))
    end)
  end)

  it("makes one request in style none", function()
    local ps = core.paging { style = "none" }
    assert.are.same({ "page:nil" }, wants(ps))
    assert.is_true(ps:finish(nil, 10))
  end)

  it("remembers first records to catch repeated pages", function()
    local ps = core.paging { style = "page" }
    assert.is_false(ps:first('{"id":1}'))
    assert.is_false(ps:first('{"id":2}'))
    assert.is_true(ps:first('{"id":1}'))
    for i = 1, 1000 do ps:first("k" .. i) end
    assert.is_true(ps:first("k500"))
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
    assert.are.equal("usage", err.kind)
  end)
end)
