-- converse.mock: the server loop, HTTP behaviour, auth, log and control API.
local helper = require "helper"

local KEY = { ["X-API-Key"] = "k" }

-- true when the process is gone (or a zombie waiting for a reaper)
local function exited(pid)
  local f = io.open("/proc/" .. pid .. "/stat", "r")
  if not f then return true end
  local state = f:read("*a"):match("%) (%a)")
  f:close()
  return state == "Z"
end
local CALLS = "/converz/api/v1/calls"

describe("converse.mock server", function()
  local mock
  setup(function() mock = helper.start_mock{ calls = 50 } end)
  teardown(function() mock:stop() end)
  before_each(function() mock:reset() end)

  it("prints its URL on 127.0.0.1 with the real port", function()
    assert.matches("^http://127%.0%.0%.1:%d+$", mock.url)
    assert.is_true(mock.port > 0)
    assert.is_number(mock.pid)
  end)

  it("answers 404 for unknown paths", function()
    assert.equal(404, mock:get("/nope", KEY).status)
  end)

  it("serves several requests on one keep-alive connection", function()
    local c = helper.connection(mock.url)
    for _ = 1, 3 do
      local r = c:request("GET", CALLS .. "?n_per_page=2", nil, KEY)
      assert.equal(200, r.status)
      assert.equal(2, #r.json)
    end
    c:close()
    local log = mock:log()
    assert.equal(3, #log)
    assert.equal(log[1].conn, log[3].conn)
  end)

  it("serves 16 concurrent keep-alive connections", function()
    local conns = {}
    for i = 1, 16 do conns[i] = helper.connection(mock.url) end
    for round = 1, 2 do
      for i = 1, 16 do conns[i]:send("GET", CALLS .. "?n_per_page=1&page=" .. i, nil, KEY) end
      for i = 1, 16 do
        local r = conns[i]:receive()
        assert.equal(200, r.status, "round " .. round .. " conn " .. i)
        assert.equal(1, #r.json)
      end
    end
    for i = 1, 16 do conns[i]:close() end
    local seen, n = {}, 0
    for _, e in ipairs(mock:log()) do if not seen[e.conn] then seen[e.conn] = true; n = n + 1 end end
    assert.equal(16, n)
  end)

  it("reads chunked request bodies", function()
    local c = helper.connection(mock.url)
    local body = '[{"rep_id":"x","team":"T"}]'
    c.sock:send("POST /converz/api/v1/reps HTTP/1.1\r\nHost: x\r\nX-API-Key: k\r\n" ..
      "Transfer-Encoding: chunked\r\n\r\n" .. string.format("%x", #body) .. "\r\n" .. body .. "\r\n0\r\n\r\n")
    local r = c:receive()
    c:close()
    assert.equal(200, r.status)
    assert.equal(1, r.json.rows)
  end)

  it("answers Expect: 100-continue", function()
    local c = helper.connection(mock.url)
    local body = '[{"rep_id":"x","team":"T"}]'
    c.sock:send("POST /converz/api/v1/reps HTTP/1.1\r\nHost: x\r\nX-API-Key: k\r\nExpect: 100-continue\r\n" ..
      "Content-Length: " .. #body .. "\r\n\r\n")
    local line = c.sock:receive("*l")
    assert.equal("HTTP/1.1 100 Continue", line)
    c.sock:receive("*l")
    c.sock:send(body)
    assert.equal(200, c:receive().status)
    c:close()
  end)

  it("rejects a malformed request line with 400", function()
    local c = helper.connection(mock.url)
    c.sock:send("BAD\r\n\r\n")
    assert.equal(400, c:receive().status)
    c:close()
  end)

  it("sends chunked responses when asked (control setting)", function()
    mock:control{ chunked = true }
    local r = mock:get(CALLS .. "?n_per_page=5", KEY)
    assert.is_true(r.chunked)
    assert.equal(5, #r.json)
    mock:control{ chunked = false }
    assert.is_nil(mock:get(CALLS, KEY).chunked)
  end)

  it("gzips when the client accepts gzip", function()
    local r = mock:get(CALLS .. "?n_per_page=3", { ["X-API-Key"] = "k", ["Accept-Encoding"] = "gzip" })
    assert.equal("gzip", r.headers["content-encoding"])
    assert.equal("\31\139", r.body:sub(1, 2))
    local plain = mock:get(CALLS .. "?n_per_page=3", KEY)
    assert.is_nil(plain.headers["content-encoding"])
    local path = os.tmpname()
    local f = assert(io.open(path, "wb")); f:write(r.body); f:close()
    local p = io.popen("gzip -dc < " .. path)
    local out = p:read("*a"); p:close(); os.remove(path)
    assert.equal(plain.body, out)
  end)

  it("adds global latency and per-request latency", function()
    local t0 = require("socket").gettime()
    mock:control{ latency = "150ms" }
    mock:get(CALLS, KEY)
    local t1 = require("socket").gettime()
    assert.is_true(t1 - t0 >= 0.15)
    mock:control{ latency = 0 }
    local t2 = require("socket").gettime()
    mock:get(CALLS, { ["X-API-Key"] = "k", ["X-Mock-Latency"] = "120ms" })
    assert.is_true(require("socket").gettime() - t2 >= 0.12)
  end)

  describe("request log", function()
    it("records method, path, query, headers, time and connection", function()
      local before = require("socket").gettime()
      mock:get(CALLS .. "?n_per_page=2&rep_id=a&rep_id=b", KEY)
      mock:request("POST", "/converz/api/v1/reps", '[{"rep_id":"zz"}]', KEY)
      local log = mock:log()
      assert.equal(2, #log)
      local e = log[1]
      assert.equal("GET", e.method)
      assert.equal(CALLS, e.path)
      assert.equal("n_per_page=2&rep_id=a&rep_id=b", e.query)
      assert.equal("k", e.headers["x-api-key"])
      assert.equal(200, e.status)
      assert.is_number(e.conn)
      assert.is_true(e.time >= before - 1 and e.time ~= math.floor(e.time))
      assert.equal('[{"rep_id":"zz"}]', log[2].body)
      assert.are_not.equal(log[1].conn, log[2].conn)
    end)

    it("does not log control requests and is cleared by reset", function()
      mock:get(CALLS, KEY)
      mock:control{ latency = 0 }
      assert.equal(1, #mock:log())
      mock:reset()
      assert.equal(0, #mock:log())
    end)
  end)

  describe("request counts", function()
    it("counts requests per key, endpoint and second, with the 429s among them", function()
      local ax = "/agentx/conversations/export/v1/conversations?start_time=0&end_time=9&bot_name=b"
      for _ = 1, 4 do mock:get(ax, { ["x-api-key"] = "one" }) end     -- 3 per second: the 4th is a 429
      mock:get(ax, { ["x-api-key"] = "two" })
      mock:get(CALLS, KEY)
      local seen = {}
      for _, c in ipairs(mock:get("/_counts").json) do
        local id = c.key .. " " .. c.path
        local s = seen[id] or { requests = 0, limited = 0 }
        s.requests, s.limited = s.requests + c.requests, s.limited + c.limited
        assert.equal(math.floor(c.second), c.second)
        seen[id] = s
      end
      assert.are.same({ requests = 4, limited = 1 }, seen["one /agentx/conversations/export/v1/conversations"])
      assert.are.same({ requests = 1, limited = 0 }, seen["two /agentx/conversations/export/v1/conversations"])
      assert.are.same({ requests = 1, limited = 0 }, seen["k " .. CALLS])
      mock:request("DELETE", "/_counts")
      assert.equal(0, #mock:get("/_counts").json)
    end)
  end)

  describe("control API", function()
    it("rejects unknown fault types", function()
      local r = mock:request("POST", "/_control", { type = "nonsense" })
      assert.equal(400, r.status)
    end)

    it("lists armed faults and clears them on reset", function()
      mock:control{ type = "status", status = 503, path = CALLS, times = 2 }
      local armed = mock:get("/_control").json.faults
      assert.equal(1, #armed)
      assert.equal(2, armed[1].times)
      mock:reset()
      assert.equal(0, #mock:get("/_control").json.faults)
      assert.equal(200, mock:get(CALLS, KEY).status)
    end)
  end)
end)

describe("converse.mock authentication", function()
  local mock
  setup(function() mock = helper.start_mock{ calls = 10, agentx_rate = 0 } end)
  teardown(function() mock:stop() end)

  local cases = {
    { "converz", "/converz/api/v1/reps", "X-API-Key" },
    { "agentx", "/agentx/conversations/export/v1/conversations?start_time=0&end_time=1&bot_name=b", "x-api-key" },
    { "converseiq", "/converseiq/public/v1/workspace", "x-api-key" },
  }
  for _, c in ipairs(cases) do
    it(c[1] .. " answers 401 without a key and 200 with any key", function()
      assert.equal(401, mock:get(c[2]).status)
      assert.equal(401, mock:get(c[2], { [c[3]] = "" }).status)
      assert.equal(200, mock:get(c[2], { [c[3]] = "anything" }).status)
    end)
  end

  it("converra answers 401 INVALID_API_KEY without a bearer token", function()
    local r = mock:get("/converra/api/v1/account")
    assert.equal(401, r.status)
    assert.equal("INVALID_API_KEY", r.json.error.code)
    assert.equal(401, mock:get("/converra/api/v1/account", { Authorization = "Basic abc" }).status)
    assert.equal(200, mock:get("/converra/api/v1/account", { Authorization = "Bearer t" }).status)
  end)
end)

describe("converse.mock --api-key", function()
  local mock
  setup(function() mock = helper.start_mock{ calls = 10, api_key = "secret" } end)
  teardown(function() mock:stop() end)

  it("accepts only the configured key", function()
    assert.equal(401, mock:get("/converz/api/v1/reps", { ["X-API-Key"] = "other" }).status)
    assert.equal(200, mock:get("/converz/api/v1/reps", { ["X-API-Key"] = "secret" }).status)
    local r = mock:get("/converra/api/v1/account", { Authorization = "Bearer other" })
    assert.equal("The provided API key is invalid", r.json.error.message)
    assert.equal(200, mock:get("/converra/api/v1/account", { Authorization = "Bearer secret" }).status)
  end)
end)

describe("converse.mock process", function()
  it("exits on stop and leaves no process behind", function()
    local mock = helper.start_mock{ calls = 5 }
    local pid = mock.pid
    mock:stop()
    assert.is_true(exited(pid))
  end)

  it("exits by itself after max_lifetime", function()
    local mock = helper.start_mock{ calls = 5, max_lifetime = "0.5s" }
    local pid = mock.pid
    require("socket").sleep(1.5)
    assert.is_true(exited(pid))
    mock.proc:close(); mock.proc = nil
    os.remove(mock.errfile)
  end)

  it("exits when its parent dies", function()
    -- a shell parent that starts the mock and is then killed
    local root = helper.ROOT
    local lua = os.getenv("CONVERSE_LUA") or "lua5.4"
    local p = io.popen("cd " .. root .. " && exec sh -c 'echo $$; " .. lua ..
      " bin/converse mock --port 0 --watch-parent --max-lifetime 30 & echo $!; wait'")
    local shell_pid = tonumber(p:read("*l"))
    local mock_pid = tonumber(p:read("*l"))
    local url = p:read("*l")
    assert.matches("^http://", url)
    os.execute("kill " .. shell_pid)
    require("socket").sleep(1.5)
    assert.is_true(exited(mock_pid))
    p:close()
  end)
end)

describe("converse.mock in-process", function()
  it("starts from Lua and serves with step()", function()
    local srv = assert(require("converse.mock").start{ port = 0, calls = 20, conversations = 3 })
    assert.matches("^http://127%.0%.0%.1:%d+$", srv.url)
    local c = helper.connection(srv.url)
    c:send("GET", "/converz/api/v1/calls?n_per_page=4", nil, KEY)
    for _ = 1, 5 do srv:step(0.05) end
    local r = c:receive()
    assert.equal(200, r.status)
    assert.equal(4, #r.json)
    c:close()
    srv:stop()
    srv:stop()
    assert.is_false(srv:step(0))
  end)

  it("exposes the request handler without a socket", function()
    local app = require("converse.mock").app{ calls = 5, conversations = 2 }
    local res = app:handle{ method = "GET", path = "/converz/api/v1/reps", query = "n_per_page=2",
                            headers = { ["x-api-key"] = "k" }, body = "" }
    assert.equal(200, res.status)
    assert.equal(2, #helper.json.decode(table.concat(res.body)))
  end)
end)

describe("converse mock command line", function()
  local mock_mod = require "converse.mock"

  it("parses flags, durations and --flag=value", function()
    local o = assert(mock_mod.parse_args{ "--port", "0", "--latency=20ms", "--chunked", "--calls", "5",
                                          "--converra-plan", "pro", "--no-warm" })
    assert.equal(0, o.port)
    assert.equal(0.02, o.latency)
    assert.is_true(o.chunked)
    assert.equal(5, o.calls)
    assert.equal("pro", o.converra_plan)
    assert.is_false(o.warm)
  end)

  it("rejects unknown options and bad values", function()
    assert.is_nil((mock_mod.parse_args{ "--nope" }))
    assert.is_nil((mock_mod.parse_args{ "--calls", "many" }))
    assert.is_nil((mock_mod.parse_args{ "--latency", "soon" }))
    assert.is_nil((mock_mod.parse_args{ "--port" }))
  end)

  it("applies --latency to every response", function()
    local mock = helper.start_mock{ calls = 5, latency = "100ms" }
    local socket = require "socket"
    local t0 = socket.gettime()
    assert.equal(200, mock:get("/converz/api/v1/reps", KEY).status)
    assert.is_true(socket.gettime() - t0 >= 0.1)
    mock:stop()
  end)

  it("prints usage for bin/converse help and fails on an unknown command", function()
    local lua = os.getenv("CONVERSE_LUA") or "lua5.4"
    local p = io.popen("cd " .. helper.ROOT .. " && " .. lua .. " bin/converse help 2>&1; echo rc=$?")
    local out = p:read("*a"); p:close()
    assert.matches("mock", out)
    assert.matches("rc=0", out)
    p = io.popen("cd " .. helper.ROOT .. " && " .. lua .. " bin/converse frobnicate 2>&1; echo rc=$?")
    out = p:read("*a"); p:close()
    assert.matches("unknown command", out)
    assert.matches("rc=2", out)
  end)
end)
