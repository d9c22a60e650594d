-- The HTTP/1.1 framing parser (src/http.c, core.http_parse) and the
-- response reader built on it (src/http_response.c, core.http_response),
-- with no socket: fixtures from spec/fixtures/http fed whole, one byte at a
-- time and split at random points must give the same events and results.
local core    = require "converse.core"
local helper  = require "helper"

local DIR = helper.ROOT .. "/spec/fixtures/http/"

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

local EXPECTED = core.json_decode(read(DIR .. "expected.json"))
local NAMES = {}
for name in pairs(EXPECTED) do NAMES[#NAMES + 1] = name end
table.sort(NAMES)

-- Split s into pieces: `size` bytes each, or random sizes from a fixed seed.
local function pieces(s, size, seed)
  local out, i = {}, 1
  local x = seed or 1
  while i <= #s do
    local n = size
    if not n then
      x = (x * 1103515245 + 12345) % 2147483648
      n = 1 + x % 23
    end
    out[#out + 1] = s:sub(i, i + n - 1)
    i = i + n
  end
  return out
end

-- The events with consecutive body events merged (splitting only changes those).
local function merged(events)
  local out = {}
  for _, e in ipairs(events) do
    local last = out[#out]
    if e.type == "body" and last and last.type == "body" then
      last.data = last.data .. e.data
    else
      local c = {}
      for k, v in pairs(e) do c[k] = v end
      out[#out + 1] = c
    end
  end
  return out
end

local function events(name, chunks)
  local exp = EXPECTED[name]
  return merged(core.http_parse(chunks, { method = exp.method, eof = exp.eof }))
end

describe("core.http_parse (the framing parser)", function()
  for _, name in ipairs(NAMES) do
    local exp = EXPECTED[name]
    it(name .. ": " .. (exp["end"] == "done" and "reads the response" or "fails: " .. exp.error), function()
      local bytes = read(DIR .. name .. ".http")
      local evs = events(name, { bytes })
      local info, head, body, last = {}, nil, "", evs[#evs]
      for _, e in ipairs(evs) do
        if e.type == "info" then info[#info + 1] = e.status
        elseif e.type == "head" then head = e
        elseif e.type == "body" then body = body .. e.data end
      end
      assert.are.equal(exp["end"], last.type)
      if exp.error then assert.matches(exp.error, last.error) end
      if exp.status then
        assert.are.equal(exp.status, head.status)
        for k, v in pairs(exp.headers or {}) do assert.are.equal(v, head.headers[k]) end
        for _, k in ipairs(exp.absent or {}) do assert.is_nil(head.headers[k]) end
      end
      if exp.body then assert.are.equal(exp.body, body) end
      if exp.keep_alive ~= nil then assert.are.equal(exp.keep_alive, last.keep_alive) end
      assert.are.same(exp.info or {}, info)
      -- the same events however the bytes are split
      assert.are.same(evs, events(name, pieces(bytes, 1)))
      assert.are.same(evs, events(name, pieces(bytes, nil, #bytes)))
      assert.are.same(evs, events(name, pieces(bytes, 7)))
    end)
  end

  it("refuses a head over 256 KiB, also when it is spread over 1xx heads", function()
    local big = ("X-Pad: " .. ("a"):rep(1000) .. "\r\n"):rep(300)
    local e = core.http_parse({ "HTTP/1.1 200 OK\r\n", big, "\r\n" })
    assert.are.equal("error", e[#e].type)
    assert.matches("256 KiB", e[#e].error)
    local info = ("HTTP/1.1 100 Continue\r\n" .. ("X-Pad: " .. ("a"):rep(1000) .. "\r\n"):rep(20) .. "\r\n"):rep(15)
    e = core.http_parse({ info, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n" })
    assert.are.equal("error", e[#e].type)
    assert.matches("256 KiB", e[#e].error)
  end)

  it("refuses an endless header line before it ends", function()
    local e = core.http_parse({ "HTTP/1.1 200 OK\r\nX-Long: ", ("a"):rep(300 * 1024) })
    assert.are.equal("error", e[#e].type)
  end)

  it("refuses endless trailers", function()
    local e = core.http_parse({ "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n",
                                ("X-T: " .. ("b"):rep(1000) .. "\r\n"):rep(300) })
    assert.are.equal("error", e[#e].type)
    assert.matches("trailers", e[#e].error)
  end)

  it("refuses an endless chunk-size line", function()
    local e = core.http_parse({ "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;", ("x"):rep(10000) })
    assert.are.equal("error", e[#e].type)
    assert.matches("chunk%-size line too long", e[#e].error)
  end)

  it("hands out body bytes of a 10 MB body without buffering them", function()
    local body = ("x"):rep(10 * 1024 * 1024)
    local e = core.http_parse({ "HTTP/1.1 200 OK\r\nContent-Length: " .. #body .. "\r\n\r\n", body })
    assert.are.equal("done", e[#e].type)
    assert.are.equal(#body, #merged(e)[2].data)
  end)

  it("checks its argument", function()
    assert.has_error(function() core.http_parse({ 1 }) end)
    assert.has_error(function() core.http_parse("x") end)
  end)
end)

describe("core.http_response", function()
  local function feed_all(r, bytes, size, eof)
    for _, p in ipairs(pieces(bytes, size)) do r:feed(p) end
    if eof then r:eof() end
  end

  for _, name in ipairs(NAMES) do
    local exp = EXPECTED[name]
    it(name .. ": the same result fed whole or byte by byte", function()
      local bytes = read(DIR .. name .. ".http")
      local results = {}
      for _, size in ipairs { #bytes + 1, 1, 5 } do
        local r = core.http_response { method = exp.method,
                                       decoder = exp.records and core.decoder { records = "data" } }
        feed_all(r, bytes, size, exp.eof)
        local res = {}
        local status, headers, msg = r:head()
        res.status, res.state = status, r:state()
        if status and exp.records then
          local n = 0
          local ok, err = pcall(function()
            while true do
              local rec, kind = r:next()
              if rec == nil then res.kind = kind break end
              assert.is_not_false(rec)
              n = n + 1
            end
          end)
          if not ok then res.raised = type(err) == "table" and err.kind or tostring(err) end
          res.records = n
        elseif status then
          local text, kind, m = r:text(true)
          res.text, res.kind, res.message = text, kind, m
        else
          res.kind, res.message = headers, msg
        end
        res.complete = r:complete()
        results[#results + 1] = res
        r:close()
      end
      assert.are.same(results[1], results[2])
      assert.are.same(results[1], results[3])
      local res = results[1]
      if exp["end"] == "done" then
        assert.are.equal(exp.status, res.status)
        if exp.body then assert.are.equal(exp.body, res.text) end
        if exp.records then assert.are.equal(exp.records, res.records) end
        assert.are.equal(exp.raised, res.raised)
        local reusable = exp.reusable
        if reusable == nil then reusable = exp.keep_alive and not exp.extra end
        assert.are.equal(reusable, res.complete)
      else
        assert.is_false(res.complete)
        local headed = false
        for _, e in ipairs(events(name, { bytes })) do headed = headed or e.type == "head" end
        if not headed then
          assert.is_nil(res.status)
          assert.are.equal("network", res.kind)
          assert.matches(exp.error, res.message)
        end
      end
    end)
  end

  local function json_response(body, extra)
    return "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" .. (extra or "")
      .. "Content-Length: " .. #body .. "\r\n\r\n" .. body
  end

  it("decodes records as the bytes arrive and says when it needs more", function()
    local r = core.http_response { decoder = core.decoder {} }
    assert.is_true(r:wants())
    assert.is_false(r:head())
    r:feed("HTTP/1.1 200 OK\r\nContent-Length: 17\r\n\r\n[{\"a\":1},")
    assert.are.equal(200, (r:head()))
    assert.are.equal(1, r:next().a)
    assert.is_false(r:next())
    assert.is_true(r:wants())
    r:feed("{\"a\":2}]")
    assert.are.equal(2, r:next().a)
    assert.is_nil(r:next())
    assert.is_true(r:complete())
    assert.is_false(r:wants())
  end)

  it("skips records by position", function()
    local r = core.http_response { decoder = core.decoder {} }
    r:feed(json_response("[1,2,3]"))
    assert.is_true(r:next(true))
    assert.is_true(r:next(true))
    assert.are.equal(3, r:next())
    assert.are.equal(3, r:info().count)
  end)

  it("answers core.EMPTY for a 2xx without a body", function()
    local r = core.http_response { decoder = core.decoder {} }
    r:feed("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    assert.are.equal(core.EMPTY, r:next())
  end)

  it("hands out decoded records before a connection closed mid-body", function()
    local r = core.http_response { decoder = core.decoder {} }
    r:feed("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n[1,2,3")
    r:eof()
    assert.are.equal(1, r:next())
    assert.are.equal(2, r:next())
    local rec, kind, msg, permanent = r:next()
    assert.is_nil(rec)
    assert.are.equal("network", kind)
    assert.matches("closed before the response was complete", msg)
    assert.is_false(permanent)
    assert.is_false(r:complete())
  end)

  it("raises the decoder's json errors as error objects", function()
    local r = core.http_response { decoder = core.decoder {} }
    r:feed(json_response("[1,}"))
    assert.are.equal(1, r:next())
    local err = helper.raises_json(function() r:next() end)
    assert.is_truthy(err.message)
  end)

  it("stops asking for bytes while the decoder holds 256 KiB (back-pressure)", function()
    local row = '{"id":1,"text":"' .. ("x"):rep(1000) .. '"},'
    local body = "[" .. row:rep(8000) .. "1]"
    local r = core.http_response { decoder = core.decoder {} }
    local fed, stalled = 0, false
    local head = "HTTP/1.1 200 OK\r\nContent-Length: " .. #body .. "\r\n\r\n"
    r:feed(head)
    while fed < #body do
      if not r:wants() then stalled = true break end
      r:feed(body:sub(fed + 1, fed + 65536))
      fed = fed + 65536
    end
    assert.is_true(stalled)
    assert.is_true(fed < 512 * 1024, fed)
    local n = 0
    while true do                                    -- draining lets bytes in again
      local rec = r:next()
      if rec == false then
        r:feed(body:sub(fed + 1, fed + 65536))
        fed = fed + 65536
      elseif rec == nil then break
      else n = n + 1 end
    end
    assert.are.equal(8001, n)
    assert.is_true(r:complete())
  end)

  it("lets a record larger than the backlog in, doubling the bound each time it asks", function()
    local big = '{"id":1,"text":"' .. ("y"):rep(3 * 1024 * 1024) .. '"}'
    local body = "[" .. big .. ",2]"
    local r = core.http_response { decoder = core.decoder {} }
    r:feed("HTTP/1.1 200 OK\r\nContent-Length: " .. #body .. "\r\n\r\n")
    local fed, asks, most = 0, 0, 0
    local function fill()                              -- feed while it wants bytes
      while fed < #body and r:wants() do
        r:feed(body:sub(fed + 1, fed + 16384))
        fed = fed + 16384
      end
      most = math.max(most, fed)
    end
    fill()
    assert.is_true(fed < 512 * 1024, fed)             -- the backlog bound, before it asks
    local rec
    repeat
      rec = r:next()
      if rec == false then asks = asks + 1; fill() end
    until rec ~= false
    assert.are.equal(1, rec.id)
    assert.is_true(asks >= 3 and asks <= 6, asks)    -- 256 KiB doubled up to 3 MiB
    assert.is_true(most < 4 * #big, most)
    fill()
    assert.are.equal(2, r:next())
  end)

  it("inflates gzip in bounded steps and refuses an encoding it did not ask for", function()
    local r = core.http_response { decoder = core.decoder {} }
    r:feed(json_response("[1]", "Content-Encoding: zstd\r\n"))
    local rec, kind, msg, permanent = r:next()
    assert.is_nil(rec)
    assert.are.equal("network", kind)
    assert.matches("Content%-Encoding", msg)
    assert.is_true(permanent)
  end)

  it("keeps an error body up to max_error_body and no more", function()
    local r = core.http_response { decoder = core.decoder {}, max_error_body = 10 }
    r:feed("HTTP/1.1 503 Busy\r\nContent-Length: 1000\r\n\r\n" .. ("e"):rep(100))
    assert.are.equal(503, (r:head()))
    assert.is_false(r:wants())
    assert.are.equal(("e"):rep(10), r:text())
    assert.is_nil(r:next())
    assert.is_false(r:complete())
  end)

  it("keeps a text body up to max_body, then fails for good", function()
    local r = core.http_response { max_body = 4 }
    r:feed(json_response("[1,2,3]"))
    local text, kind, msg, permanent = r:text()
    assert.is_nil(text)
    assert.are.equal("network", kind)
    assert.matches("max_body", msg)
    assert.is_true(permanent)
  end)

  it("waits for a text body to end, unless told to take what came", function()
    local r = core.http_response {}
    r:feed("HTTP/1.1 500 Oops\r\nContent-Length: 10\r\n\r\nhalf")
    assert.is_false(r:text())
    assert.are.equal("half", r:text(true))
  end)

  it("reports a failure before the head", function()
    local r = core.http_response {}
    r:feed("SSH-2.0-OpenSSH\r\n")
    local ok, kind, msg = r:head()
    assert.is_nil(ok)
    assert.are.equal("network", kind)
    assert.matches("status line", msg)
  end)

  it("is not reusable after bytes beyond the response", function()
    local r = core.http_response { decoder = core.decoder {} }
    r:feed(json_response("[]") .. "HTTP/1.1")
    assert.is_nil(r:next())
    assert.is_false(r:complete())
  end)

  it("says HTTP/1.0 and 1.1 in info() as libcurl's numbers", function()
    local r = core.http_response {}
    r:feed("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n")
    assert.are.equal(1, r:info().http_version)
    r = core.http_response {}
    r:feed("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    assert.are.equal(2, r:info().http_version)
  end)

  it("closes twice harmlessly and refuses use after close", function()
    local r = core.http_response { decoder = core.decoder {} }
    assert.matches("HttpResponse %(0, head%)", tostring(r))
    r:close()
    r:close()
    assert.matches("closed", tostring(r))
    local err = helper.raises(function() r:feed("x") end)
    assert.are.equal("usage", err.kind)
    err = helper.raises(function() r:next() end)
    assert.are.equal("usage", err.kind)
  end)

  it("refuses bytes after eof", function()
    local r = core.http_response {}
    r:eof()
    assert.are.equal("usage", helper.raises(function() r:feed("x") end).kind)
  end)
end)
