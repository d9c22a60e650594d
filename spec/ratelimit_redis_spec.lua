-- One rate budget per API key across processes, in Redis
-- (converse.ratelimit.redis): a real redis-server on a free port, several
-- client processes, a raw-socket server that records when requests arrive.
local helper   = require "helper"
local converse = require "converse"
local core     = require "converse.core"

local KEY = "sk-shared-budget-0123456789"

-- A server that appends each request's arrival time to a file.
local function timing_server(dir, status)
  return helper.hostile(([[
    local socket = require "socket"
    return function(req)
      local f = io.open(%q, "a")
      f:write(("%%.6f %%s\n"):format(socket.gettime(), req.path))
      f:close()
      %s
    end]]):format(dir .. "/arrivals", status or 'return response(200, "[]")'))
end

local function arrivals(dir)
  local out = {}
  for line in io.lines(dir .. "/arrivals") do out[#out + 1] = tonumber(line:match("^(%S+)")) end
  table.sort(out)
  return out
end

-- The most requests in any window of `w` seconds.
local function max_in_window(times, w)
  local best, j = 0, 1
  for i = 1, #times do
    while times[i] - times[j] >= w do j = j + 1 end
    if i - j + 1 > best then best = i - j + 1 end
  end
  return best
end

local CLIENT = [[
  local converse = require "converse"
  local url, redis, n, key = ...
  local api = converse.client { base_url = url, retries = 3, auth = { header = "X-Key", value = key },
                                rate_limit = { per_second = 5, shared = redis } }
  for _ = 1, tonumber(n) do api:get("/x") end
  print("OK")
]]

describe("converse.ratelimit.redis", function()
  local redis, dir
  setup(function()
    redis = assert(helper.start_redis())
    dir = os.tmpname()
    os.remove(dir)
    os.execute("mkdir -p " .. dir)
  end)
  teardown(function()
    redis:stop()
    os.execute("rm -rf " .. dir)
  end)
  before_each(function() os.remove(dir .. "/arrivals") end)

  it("holds one budget for several processes: never more than the limit in any window", function()
    local srv = timing_server(dir)
    local kids = {}
    for i = 1, 3 do kids[i] = helper.spawn(CLIENT, srv.url, redis.url, 6, KEY) end
    for i = 1, 3 do assert.matches("OK", kids[i]:wait()) end
    srv:stop()
    local t = arrivals(dir)
    assert.are.equal(18, #t)
    assert.is_true(max_in_window(t, 1.0) <= 5, "more than 5 requests in one second")
    assert.is_true(t[#t] - t[1] >= 3.0)               -- 18 requests at 5/s need 3 windows
  end)

  it("keys Redis by a hash of the API key, never the key", function()
    local srv = timing_server(dir)
    assert.matches("OK", helper.child(CLIENT, srv.url, redis.url, 1, KEY))
    srv:stop()
    local keys = redis:cli("--scan --pattern 'converse:*'")
    assert.matches(core.sha256(KEY):sub(1, 32), keys)
    assert.is_nil(keys:find(KEY, 1, true))
  end)

  it("shares a 429 pause: another process waits for the server's delay too", function()
    local srv = helper.hostile(([[
      local socket = require "socket"
      return function(req, n)
        local f = io.open(%q, "a"); f:write(("%%.6f\n"):format(socket.gettime())); f:close()
        if n == 1 then return response(429, "slow down", { ["Retry-After"] = "2" }) end
        return response(200, "[]")
      end]]):format(dir .. "/arrivals"))
    local first = helper.spawn(CLIENT, srv.url, redis.url, 1, KEY)
    require("socket").sleep(0.4)                        -- the 429 has set the pause
    local second = helper.spawn(CLIENT, srv.url, redis.url, 1, KEY)
    assert.matches("OK", first:wait())
    assert.matches("OK", second:wait())
    srv:stop()
    local t = arrivals(dir)
    assert.are.equal(3, #t)
    assert.is_true(t[2] - t[1] >= 1.9, "the second process did not honour the pause")
    assert.is_true(t[3] - t[1] >= 1.9)
  end)

  it("fails closed with a retryable error when Redis is unreachable", function()
    local port = helper.free_port()
    local api = converse.client { base_url = "http://127.0.0.1:1", retries = 0,
                                  rate_limit = { per_second = 5, shared = "redis://127.0.0.1:" .. port } }
    api.limiter.fail_after = 0.5
    local t0 = core.now()
    local err = helper.raises(function() api:get("/x") end)
    assert.are.equal("RATE_LIMIT_UNAVAILABLE", err.code)
    assert.is_true(err.retryable)
    assert.is_true(core.now() - t0 >= 0.5 and core.now() - t0 < 3)
  end)

  it("rides out a Redis restart shorter than fail_after", function()
    local srv = timing_server(dir)
    local api = converse.client { base_url = srv.url, retries = 0, auth = { header = "X-Key", value = KEY },
                                  rate_limit = { per_second = 50, shared = redis.url } }
    api:get("/x")
    local port = redis.port
    redis:stop()
    local restarted = false
    local co = coroutine.wrap(function() redis = assert(helper.start_redis(port)) restarted = true end)
    require("socket").sleep(0.5)
    co()
    assert.is_true(restarted)
    api:get("/x")
    srv:stop()
    assert.are.equal(2, #arrivals(dir))
  end)

  it("holds requests for one window after a Redis restart: the forgotten window is never spent twice", function()
    local srv = timing_server(dir)
    local api = converse.client { base_url = srv.url, retries = 0, auth = { header = "X-Key", value = KEY },
                                  rate_limit = { per_second = 5, shared = redis.url } }
    for _ = 1, 5 do api:get("/x") end                 -- the whole budget of this second
    local old, port = redis, redis.port                -- kill it and start another at once
    os.execute("kill -9 " .. old.pid)
    for _ = 1, 200 do                                   -- until the port is free
      local c = require("socket").tcp()
      c:settimeout(0.05)
      local up = c:connect("127.0.0.1", port)
      c:close()
      if not up then break end
      require("socket").sleep(0.01)
    end
    redis = assert(helper.start_redis(port))           -- an empty Redis: the log is gone
    os.execute("rm -rf '" .. old.dir .. "'")              -- its pid is gone already
    old.pid, old.dir = nil, nil
    local kid = helper.spawn(CLIENT, srv.url, redis.url, 5, KEY)   -- a new process, and this one
    for _ = 1, 5 do api:get("/x") end
    assert.matches("OK", kid:wait())
    srv:stop()
    local t = arrivals(dir)
    assert.are.equal(15, #t)
    assert.is_true(max_in_window(t, 1.0) <= 5, "more than 5 requests in one second across the restart")
  end)

  it("refuses a malformed redis URL", function()
    local err = helper.raises(function()
      converse.client { base_url = "http://h", rate_limit = { per_second = 1, shared = "redis:/nope" } }
    end)
    assert.are.equal("usage", err.kind)
  end)
end)
