-- One set of behaviour cases (spec/support/nginx_cases.lua), two transports:
-- libcurl standalone, here under busted; and nginx cosockets, inside a real
-- nginx started by this spec (one worker), each case run by GET
-- /run?case=NAME (spec/support/nginx_runner.lua). nginx always runs LuaJIT,
-- so its half runs once per `make test` (see support/nginx.lua); the
-- libcurl half runs under Lua 5.4 and LuaJIT (the 5.1-5.3 passes test
-- libcurl with client_spec and pager_spec, which cover the same ground).
local helper = require "helper"
local nginx  = require "support.nginx"
local cases  = require "support.nginx_cases"
local socket = require "socket"
local core   = require "converse.core"

local function escape(s)
  return (s:gsub("[^%w%-%._~]", function(c) return ("%%%02X"):format(c:byte()) end))
end

local lua = os.getenv("CONVERSE_LUA") or "lua5.4"
local curl_half = lua == "lua5.4" or lua == "luajit"
local nginx_half = nginx.wanted()

describe("the transports behave the same", function()
  if not (curl_half or nginx_half) then return end
  local mock, other, hostile, sink, blackhole, filler, config

  setup(function()
    mock = helper.start_mock { calls = 60000, reps = 12, contacts = 95 }
    other = helper.start_mock {}
    hostile = helper.hostile [[
      return function(req, n, c)
        if req.path == "/informational" then
          return "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nX-Early: 1\r\n\r\n"
            .. response(200, "[1,2,3]", { ["Content-Type"] = "application/json" }), "keep"
        elseif req.path == "/trailers" then
          local recs = json_array(500, function(i) return tostring(i) end)
          return "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
            .. "Trailer: X-Status\r\n\r\n" .. chunk(recs:sub(1, 100)) .. chunk(recs:sub(101))
            .. "0\r\nHTTP/1.1 500: flipped\r\nX-Status: 500\r\n\r\n", "keep"
        elseif req.path == "/closing" then        -- keep-alive framing, then the server closes
          return response(200, "[" .. n .. "]", { ["Content-Type"] = "application/json" })
        elseif req.path == "/longhead" then
          c:send("HTTP/1.1 200 OK\r\nX-Long: ")
          for _ = 1, 200 do if not c:send(string.rep("a", 65536)) then break end end
        elseif req.path == "/zstd" then
          return response(200, "(zstd bytes)", { ["Content-Encoding"] = "zstd" })
        elseif req.path == "/endless-error" then
          c:send("HTTP/1.1 500 Oops\r\nContent-Type: text/plain\r\n\r\nthe server is on fire ")
          local block = string.rep("fire ", 13000)
          for _ = 1, 2000 do if not c:send(block) then break end end
        end
      end]]
    sink = assert(socket.bind("127.0.0.1", 0, 16))        -- accepts (in the kernel), never reads
    blackhole = assert(socket.bind("127.0.0.1", 0, 0))    -- its accept queue is full: connects hang
    filler = socket.tcp()
    filler:settimeout(1)
    assert(filler:connect(blackhole:getsockname()))
    config = {
      mock = mock.url, other = other.url, hostile_url = hostile.url,
      sink_url = "http://127.0.0.1:" .. select(2, sink:getsockname()),
      blackhole_url = "http://127.0.0.1:" .. select(2, blackhole:getsockname()),
    }
  end)

  teardown(function()
    mock:stop()
    other:stop()
    hostile:stop()
    filler:close()
    sink:close()
    blackhole:close()
  end)

  if curl_half then describe("libcurl, standalone", function()
    local ctx
    setup(function()
      local function http(method, url, body) return helper.http(method, url, body) end
      ctx = {
        transport = "curl",
        mock = cases.mock(mock.url, http, socket.sleep),
        other = cases.mock(other.url, http, socket.sleep),
        sink_url = config.sink_url, blackhole_url = config.blackhole_url, hostile_url = config.hostile_url,
        sleep = socket.sleep, rss_kb = cases.rss_kb,
        sanitized = os.getenv("CONVERSE_VALGRIND") ~= nil
          or (os.getenv("CONVERSE_BUILD") or ""):find("asan", 1, true) ~= nil,
      }
    end)
    before_each(function() ctx.mock.fresh() end)

    for _, c in ipairs(cases.cases) do
      it(c.name, function() c.fn(ctx) end)
    end
  end) end

  if nginx_half then
    describe("nginx cosockets, inside nginx", function()
      local srv
      setup(function()
        srv = assert(nginx.start {
          config = config,
          http = "lua_socket_log_errors off;",
          server = "location /run { content_by_lua_block { require('nginx_runner').run() } }",
        })
      end)
      teardown(function() if srv then srv:stop() end end)

      for _, c in ipairs(cases.cases) do
        it(c.name, function()
          local t0 = core.now()
          local res = srv:json("/run?case=" .. escape(c.name), 120)
          assert(res.ok, tostring(res.err) .. ("\n(%.2f s)\n"):format(core.now() - t0) .. srv:error_log())
        end)
      end

      it("logs no errors while doing so", function()
        -- One line is expected now and then: "goes on after the server closed
        -- a kept-alive connection" may send its next request on the pooled
        -- socket before the server's close arrives; the read then fails with
        -- ECONNRESET, nginx's event layer logs it whatever
        -- lua_socket_log_errors says, and the transport goes on over a fresh
        -- connection (that case asserts it). Every other error or alert fails.
        local log = srv:error_log()
        for line in log:gmatch("[^\n]+") do
          if not line:find("recv() failed (104: Connection reset by peer)", 1, true) then
            assert.is_nil(line:find("%[error%]"), log)
            assert.is_nil(line:find("%[alert%]"), log)
          end
        end
      end)
    end)
  end
end)
