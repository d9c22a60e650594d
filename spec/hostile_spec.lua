-- Servers that lie, stall, flood and echo secrets (spec/support/hostile_server.lua,
-- raw sockets on 127.0.0.1 and 127.0.0.2): the client must end every such
-- exchange in a clear error object or a correct result, never a silent short
-- result, a hang, a crash, unbounded memory or a leaked key.
local helper   = require "helper"
local converse = require "converse"
local core     = require "converse.core"

local raises = helper.raises
local KEY = "sk-live-0123456789abcdef"

local function client(url, opts)
  local o = { base_url = url, retries = 0, auth = { header = "X-Key", value = KEY } }
  for k, v in pairs(opts or {}) do o[k] = v end
  return converse.client(o)
end

local function count(pager)
  local n = 0
  for _ in pager do n = n + 1 end
  return n
end

-- Run a Lua chunk in a child process of the interpreter under test (so its
-- signals, memory and exit are its own); returns its stdout and exit status.
local function child(code, ...)
  local lua = os.getenv("CONVERSE_LUA") or "lua5.4"
  local build = os.getenv("CONVERSE_BUILD") or "build/lua5.4"
  local file = os.tmpname()
  local f = assert(io.open(file, "w"))
  f:write(("package.path = %q .. package.path\npackage.cpath = %q .. package.cpath\n")
    :format(helper.ROOT .. "/lua/?.lua;" .. helper.ROOT .. "/lua/?/init.lua;",
            helper.ROOT .. "/" .. build .. "/?.so;"), code)
  f:close()
  local args = {}
  for i, a in ipairs { ... } do args[i] = ("'%s'"):format(tostring(a)) end
  local p = io.popen(("%s %s %s 2>&1"):format(lua, file, table.concat(args, " ")))
  local out = p:read("*a")
  local _, _, status = p:close()
  os.remove(file)
  return out, status
end

-- Like child, but send `signal` to it after `delay` seconds; returns its
-- output and the seconds from the signal to its exit.
local function child_signalled(delay, signal, code, ...)
  local lua = os.getenv("CONVERSE_LUA") or "lua5.4"
  local build = os.getenv("CONVERSE_BUILD") or "build/lua5.4"
  local file = os.tmpname()
  local f = assert(io.open(file, "w"))
  f:write(("package.path = %q .. package.path\npackage.cpath = %q .. package.cpath\n")
    :format(helper.ROOT .. "/lua/?.lua;" .. helper.ROOT .. "/lua/?/init.lua;",
            helper.ROOT .. "/" .. build .. "/?.so;"), code)
  f:close()
  local args = {}
  for i, a in ipairs { ... } do args[i] = ("'%s'"):format(tostring(a)) end
  local p = io.popen(("%s %s %s 2>&1 & echo $!; wait"):format(lua, file, table.concat(args, " ")))
  local pid = assert(tonumber(p:read("*l")))
  require("socket").sleep(delay)
  local t0 = core.now()
  os.execute(("kill -%s %d"):format(signal, pid))
  local out = p:read("*a")
  local secs = core.now() - t0
  p:close()
  os.remove(file)
  return out, secs
end

local function peak_mb(out)
  return tonumber(out:match("PEAK%s+(%d+)")) / 1024
end

-- Peak RSS under 64 MB (not measured under ASan or valgrind, whose shadow
-- memory and quarantine are theirs, not ours: scripts/test.sh sets
-- CONVERSE_SANITIZER there; the normal runs on every Lua measure it).
local function assert_bounded(out)
  if os.getenv("CONVERSE_SANITIZER") then return end
  assert.is_true(peak_mb(out) < 64, out)
end

local PEAK = [[
local function peak()
  for line in io.lines("/proc/self/status") do
    local kb = line:match("^VmHWM:%s*(%d+)")
    if kb then return kb end
  end
end
]]

describe("hostile servers", function()
  describe("trailers", function()
    local srv
    setup(function()
      srv = helper.hostile [[
        return function(req)
          local n = req.path == "/small" and 1 or 20000
          local recs = json_array(n, function(i) return '{"id":' .. i .. '}' end)
          local out = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            .. "Transfer-Encoding: chunked\r\nTrailer: X-Status\r\n\r\n"
          for i = 1, #recs, 4096 do out = out .. chunk(recs:sub(i, i + 4095)) end
          return out .. "0\r\nHTTP/1.1 500: flipped\r\nX-Status: 500\r\n\r\n"
        end]]
    end)
    teardown(function() srv:stop() end)

    it("never change the status nor end a page early", function()
      assert.are.equal(20000, count(client(srv.url):paginate("/big", { style = "none" })))
    end)

    it("leave client:get its body and its status", function()
      local body, res = client(srv.url):get("/small")
      assert.are.equal(1, body[1].id)
      assert.are.equal(200, res.status)
    end)
  end)

  it("a malformed trailer is a network error, not a silent end", function()
    local srv = helper.hostile [[
      return function()
        return "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" .. chunk("[1,2,3]")
          .. "0\r\nHTTP/1.1 500 Nope\r\n\r\n"
      end]]
    local seen = 0
    local err = raises(function()
      for _ in client(srv.url, { retries = 1, backoff = { base = 0.01, cap = 0.01 } })
          :paginate("/", { style = "none" }) do
        seen = seen + 1
      end
    end)
    srv:stop()
    assert.are.equal("network", err.kind)
    assert.are.equal(3, seen)                      -- none repeated on the retry
  end)

  describe("large records and bodies", function()
    local srv
    setup(function()
      srv = helper.hostile [[
        local big = string.rep("x", 10 * 1024 * 1024)
        return function(req, n, c)
          if req.path == "/record" then
            return response(200, '[{"id":1},{"big":"' .. big .. '"},{"id":3}]')
          elseif req.path == "/document" then
            return response(200, '{"big":"' .. big .. '","n":7}')
          elseif req.path == "/endless" then
            c:send("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n[{\"a\":\"")
            local block = string.rep("a", 65536)
            for _ = 1, 4096 do if not c:send(block) then break end end
          elseif req.path == "/digits" then
            c:send("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n[1")
            local block = string.rep("7", 65536)
            for _ = 1, 4096 do if not c:send(block) then break end end
          end
        end]]
    end)
    teardown(function() srv:stop() end)

    it("a 10 MB record in a page completes", function()
      local recs = client(srv.url):paginate("/record", { style = "none" }):collect()
      assert.are.equal(3, #recs)
      assert.are.equal(10 * 1024 * 1024, #recs[2].big)
    end)

    it("a 10 MB client:get body completes", function()
      local body = client(srv.url):get("/document")
      assert.are.equal(7, body.n)
      assert.are.equal(10 * 1024 * 1024, #body.big)
    end)

    it("a record over max_record is a json error", function()
      local err = raises(function()
        client(srv.url, { max_record = 1024 * 1024 }):paginate("/record", { style = "none" }):collect()
      end)
      assert.are.equal("json", err.kind)
      assert.matches("max_record", err.message)
    end)

    it("an endless string ends in the max_record error, not a timeout", function()
      local t0 = core.now()
      local err = raises(function()
        client(srv.url, { timeout = 60 }):paginate("/endless", { style = "none" }):collect()
      end)
      assert.are.equal("json", err.kind)
      assert.matches("max_record", err.message)
      assert.is_true(core.now() - t0 < 20)
    end)

    it("endless digits end in the max_record error", function()
      local err = raises(function()
        client(srv.url, { max_record = 100000 }):paginate("/digits", { style = "none" }):collect()
      end)
      assert.are.equal("json", err.kind)
      assert.matches("max_record", err.message)
    end)
  end)

  describe("error bodies", function()
    local srv
    setup(function()
      srv = helper.hostile [[
        return function(req, n, c)
          if req.path == "/endless" then
            c:send("HTTP/1.1 500 Oops\r\nContent-Type: text/plain\r\n\r\nthe server is on fire ")
            local block = string.rep("fire ", 13000)
            for _ = 1, 100000 do if not c:send(block) then break end end
          elseif req.path == "/slow" then
            c:send("HTTP/1.1 503 Busy\r\nContent-Length: 1000\r\n\r\nbusy")
            for _ = 1, 60 do c:sleep(0.5) if not c:send(".") then break end end
          end
        end]]
    end)
    teardown(function() srv:stop() end)

    it("an endless error body is read up to max_error_body, not to the timeout", function()
      local t0 = core.now()
      local err = raises(function() client(srv.url, { timeout = 60 }):get("/endless") end)
      assert.are.equal("http", err.kind)
      assert.are.equal(500, err.status)
      assert.matches("^the server is on fire", err.message)
      assert.is_true(core.now() - t0 < 10)
    end)

    it("a trickling error body is given a few seconds, then the error is raised", function()
      local t0 = core.now()
      local err = raises(function() client(srv.url, { timeout = 60 }):get("/slow") end)
      assert.are.equal(503, err.status)
      assert.matches("^busy", err.message)
      assert.is_true(core.now() - t0 < 10)
    end)
  end)

  describe("waits", function()
    it("a Retry-After beyond the retry budget raises at once, retryable", function()
      local srv = helper.hostile [[
        return function() return response(429, "slow down", { ["Retry-After"] = "9300000000000000" }) end]]
      local t0 = core.now()
      local err = raises(function() client(srv.url, { retries = 3, retry_budget = 10 }):get("/") end)
      srv:stop()
      assert.are.equal("rate_limited", err.kind)
      assert.is_true(err.retryable)
      assert.matches("retry budget", err.message)
      assert.is_true(core.now() - t0 < 2)
    end)

    it("transport:wait takes any number and is cut short by a trapped signal", function()
      local out = child([[
        local core = require "converse.core"
        local tr = core.transport {}
        assert(tr:wait(-1) == true and tr:wait(0/0) == true)
        core.trap_signals()
        core.raise_signal("SIGINT")
        local t0 = core.now()
        local ok = tr:wait(1e23)
        print("RESULT", ok, core.signal(), core.now() - t0 < 1)
      ]])
      assert.matches("RESULT\tfalse\tSIGINT\ttrue", out)
    end)

    for _, case in ipairs {
      { "a slow response", [[c:sleep(20)]] },
      { "a Retry-After wait", [[c:send(response(503, "later", { ["Retry-After"] = "20" }))]] },
    } do
      for _, sig in ipairs { "INT", "TERM" } do
        it("SIG" .. sig .. " during " .. case[1] .. " ends the request within a second", function()
          local srv = helper.hostile(("return function(req, n, c) %s end"):format(case[2]))
          local out, secs = child_signalled(0.5, sig, [[
            local core = require "converse.core"
            local converse = require "converse"
            core.trap_signals()
            local api = converse.client { base_url = ..., retries = 2 }
            local ok, err = pcall(api.get, api, "/")
            print("RESULT", ok, err.kind, err.code, err.message)
          ]], srv.url)
          srv:stop()
          assert.matches("RESULT\tfalse\tnetwork\tINTERRUPTED\tinterrupted by SIG" .. sig, out)
          assert.is_true(secs < 1, secs .. " s\n" .. out)
        end)
      end
    end
  end)

  describe("content encodings", function()
    it("asks for gzip and deflate only, and refuses an encoding it did not ask for", function()
      local srv = helper.hostile [[
        return function() return response(200, "(zstd bytes)", { ["Content-Encoding"] = "zstd" }) end]]
      local err = raises(function() client(srv.url, { retries = 3 }):get("/") end)
      local head = srv:requests()[1]
      srv:stop()
      assert.matches("Accept%-Encoding: gzip, deflate\r\n", head .. "\r\n")
      assert.are.equal("network", err.kind)
      assert.matches("Content%-Encoding", err.message)
      assert.are.equal(1, err.attempts)
    end)

    local bomb_file
    local function bomb(json_prefix, unit, megabytes)
      local file = os.tmpname()
      local py = ([[import gzip,sys
out = gzip.GzipFile(filename="", mode="wb", fileobj=open(sys.argv[1], "wb"), compresslevel=9)
out.write(sys.argv[2].encode())
unit = (sys.argv[3] * (1 << 16)).encode()[: 1 << 20]
for _ in range(int(sys.argv[4])): out.write(unit)
out.close()]])
      local pf = os.tmpname()
      local f = assert(io.open(pf, "w")); f:write(py); f:close()
      assert(os.execute(("python3 %s %s '%s' '%s' %d"):format(pf, file, json_prefix, unit, megabytes)))
      os.remove(pf)
      return file
    end

    it("a gzip bomb in one record ends in max_record with bounded memory", function()
      bomb_file = bomb('[{"a":"', "a", 256)              -- 256 MiB in 255 KB
      local srv = helper.hostile(([[
        local f = assert(io.open(%q, "rb")); local body = f:read("*a"); f:close()
        return function() return response(200, body, { ["Content-Encoding"] = "gzip" }) end]])
        :format(bomb_file))
      local out = child(PEAK .. [[
        local converse = require "converse"
        local api = converse.client { base_url = ..., retries = 2 }
        local ok, err = pcall(function() return api:paginate("/", { style = "none" }):collect() end)
        print("RESULT", ok, err.kind, err.message, err.attempts)
        print("PEAK", peak())
      ]], srv.url)
      srv:stop()
      os.remove(bomb_file)
      assert.is_not_nil(out:match("PEAK"), out)
      assert.matches("RESULT\tfalse\tjson\t[^\n]*max_record[^\n]*\t1\n", out)
      assert_bounded(out)
    end)

    it("a gzip stream of many small records pages through in bounded memory", function()
      local file = bomb('[{"a":1}', ',{"a":1}', 16)    -- 8 MiB of records, 1M of them
      local srv = helper.hostile(([[
        local f = assert(io.open(%q, "rb")); local body = f:read("*a"); f:close()
        return function(req, n, c)
          -- the end of the array comes as a gzip member of its own
          local tail = "\31\139\8\0\0\0\0\0\2\3\139\5\0\196\194\216\199\1\0\0\0"
          c:send("HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: "
                 .. (#body + #tail) .. "\r\n\r\n")
          c:send(body)
          c:send(tail)
        end]]):format(file))
      local out = child(PEAK .. [[
        local converse = require "converse"
        local api = converse.client { base_url = ..., retries = 0 }
        local n = 0
        for _ in api:paginate("/", { style = "none" }) do n = n + 1 end
        print("RESULT", n)
        print("PEAK", peak())
      ]], srv.url)
      srv:stop()
      os.remove(file)
      assert.matches("RESULT\t1048577\n", out)
      assert_bounded(out)
    end)
  end)

  it("running out of memory is one error (json, OUT_OF_MEMORY), never retried", function()
    if os.getenv("CONVERSE_SANITIZER") then return end   -- ASan reserves terabytes of address space
    local srv = helper.hostile [[
      return function(req, n, c)
        c:send("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n[{\"a\":\"")
        local block = string.rep("a", 1048576)
        for _ = 1, 2048 do if not c:send(block) then break end end
      end]]
    local out = helper.child({ memory_kb = 600000 }, [[
      local converse = require "converse"
      local api = converse.client { base_url = ..., retries = 3, max_record = 1e12 }
      local ok, err = pcall(function() return api:paginate("/", { style = "none" }):collect() end)
      print("RESULT", ok, err.kind, err.code, err.attempts, err.retryable)
    ]], srv.url)
    srv:stop()
    assert.matches("RESULT\tfalse\tjson\tOUT_OF_MEMORY\t1\tfalse", out)
  end)

  describe("heads", function()
    it("an endless header line is a clear error, not retried", function()
      local srv = helper.hostile [[
        return function(req, n, c)
          c:send("HTTP/1.1 200 OK\r\nX-Long: ")
          for _ = 1, 2000 do if not c:send(string.rep("a", 65536)) then break end end
        end]]
      local err = raises(function() client(srv.url, { retries = 3 }):get("/") end)
      srv:stop()
      assert.are.equal("network", err.kind)
      assert.matches("head", err.message)
      assert.are.equal(1, err.attempts)
    end)
  end)

  describe("secrets", function()
    local srv
    setup(function()
      srv = helper.hostile [[
        return function(req)
          local key = req.headers["x-key"] or "none"
          if req.path == "/code" then
            return response(400, '{"code":"' .. key .. '","message":"bad key ' .. key:upper() .. '"}')
          elseif req.path == "/nested" then
            return response(401, '{"error":{"code":"' .. key:upper() .. '","message":"key=' .. key .. '"}}')
          elseif req.path == "/controls" then
            return response(400, '{"message":"\\u001b[2J\\u001b]0;pwned\\u0007 and \\u009b31m"}')
          elseif req.path == "/cursor" then
            return response(200, '{"data":[{"id":1}],"cursor":"' .. key .. '"}')
          end
        end]]
    end)
    teardown(function() srv:stop() end)

    local function clean(err)
      for k, v in pairs(err) do
        if type(v) == "string" then
          assert.is_nil(v:lower():find(KEY:lower(), 1, true), k .. " leaks the key: " .. v)
        end
      end
      assert.is_nil(tostring(err):lower():find(KEY:lower(), 1, true), tostring(err))
    end

    it("a key echoed in code and message (any case) is scrubbed from every field", function()
      local err = raises(function() client(srv.url):get("/code") end)
      assert.are.equal("REDACTED", err.code)
      clean(err)
      err = raises(function() client(srv.url):get("/nested") end)
      assert.are.equal("auth", err.kind)
      clean(err)
    end)

    it("a repeated cursor that is the key never shows it", function()
      local err = raises(function()
        client(srv.url):paginate("/cursor", { style = "cursor", records = "data" }):collect()
      end)
      assert.are.equal("REPEATED_CURSOR", err.code)
      clean(err)
    end)

    it("control characters from a server are escaped in tostring", function()
      local err = raises(function() client(srv.url):get("/controls") end)
      local s = tostring(err)
      assert.is_nil(s:find("[%z\1-\31\127]"), s)
      assert.is_nil(s:find("\194\155", 1, true), s)
      assert.matches("\\x1b%[2J", s)
    end)
  end)

  describe("requests", function()
    it("refuses line breaks in per-request headers and the method; nothing is sent", function()
      local srv = helper.hostile [[return function() return response(200, "[]") end]]
      local api = client(srv.url)
      local err = raises(function()
        api:get("/", { headers = { "X-Ok: 1\r\nX-Injected: yes" } })
      end)
      assert.are.equal("usage", err.kind)
      err = raises(function() api:request("GET / HTTP/1.1\r\nX-Injected: yes\r\n\r\nGET", "/") end)
      assert.are.equal("usage", err.kind)
      err = raises(function() api:get("/a b\r\nX-Injected: yes") end)
      assert.are.equal("usage", err.kind)
      local n = #srv:requests()
      srv:stop()
      assert.are.equal(0, n)
    end)

    it("a URL with '#@' goes where the redactor says it goes", function()
      local srv = helper.hostile([[return function() return response(404, '{"message":"nope"}') end]],
                                 "127.0.0.2")
      local url = srv.url .. "#@127.0.0.1:" .. srv.port .. "/ok"
      local err = raises(function() converse.client { base_url = srv.url, retries = 0 }:get(url) end)
      local n = #srv:requests()
      srv:stop()
      assert.are.equal(1, n)                         -- it reached 127.0.0.2
      assert.matches("^http://127%.0%.0%.2:", err.url)
      assert.matches("127%.0%.0%.2", tostring(err))
    end)
  end)
end)
