-- converse inside a real nginx (ngx_lua, one or two workers, started on a
-- free port by spec/support/nginx.lua): the transport is chosen by phase,
-- every vendor pages as it does standalone, the rate limit holds across
-- workers, TLS goes through lua_ssl_*, an abandoned pager does not hold the
-- request, and the worker keeps answering while a 200,000-row sync runs.
-- nginx always runs LuaJIT: this file runs once per `make test`, in the
-- LuaJIT pass (see support/nginx.lua); the behaviour shared with libcurl
-- is spec/nginx_transport_spec.lua.
local helper = require "helper"
local nginx  = require "support.nginx"
local app    = require "support.nginx_app"
local socket = require "socket"

local wanted = nginx.wanted()

local function app_location(path, call, extra)
  return ("location %s { %s content_by_lua_block { require('nginx_app').%s } }"):format(path, extra or "", call)
end

describe(wanted and "converse inside nginx" or "converse inside nginx (runs in the LuaJIT pass)", function()
  if not wanted then return end
  local mock, tls, tls2, srv, redis

  setup(function()
    mock = helper.start_mock { calls = 300, reps = 12, contacts = 45, chats = 12, conversations = 70,
                               agents = 4, agentx_rate = 10000, converra_plan = "enterprise" }
    tls = assert(helper.start_tls_server('[{"id":1},{"id":2}]'))
    -- connections are pooled by scheme, host, port, SNI name and verification,
    -- not by the location's trust store: the untrusted case gets its own server
    tls2 = assert(helper.start_tls_server('[{"id":1},{"id":2}]'))
    redis = assert(helper.start_redis())
    srv = assert(nginx.start {
      workers = 2,
      config = { mock = mock.url, tls = tls.url, tls2 = tls2.url, redis = redis.url },
      http = table.concat({
        "lua_shared_dict results 1m;",
        "lua_shared_dict rate 1m;",
        "lua_socket_log_errors off;",
        "init_by_lua_block { require('nginx_app').init() }",
        "init_worker_by_lua_block { require('nginx_app').record('init_worker') "
          .. "require('nginx_app').rate_worker() }",
      }, "\n"),
      server = table.concat({
        [[location /phases {
            set_by_lua_block $in_set { return require('nginx_app').try() }
            header_filter_by_lua_block { require('nginx_app').record('header_filter') }
            body_filter_by_lua_block { if ngx.arg[2] then require('nginx_app').record('body_filter') end }
            log_by_lua_block { require('nginx_app').record('log') }
            content_by_lua_block { ngx.say(ngx.var.in_set) }
          }]],
        app_location("/results", "results()"),
        app_location("/auto", "auto()"),
        app_location("/curl", "curl()"),
        app_location("/vendors", "vendors_handler()"),
        app_location("/rate", "rate()"),
        app_location("/redis_down", "redis_down()"),
        app_location("/pause", "pause()"),
        app_location("/abandon", "abandon()"),
        app_location("/safe", "safe()"),
        app_location("/tls_trusted", "tls()", "lua_ssl_trusted_certificate " .. tls.cert .. ";"),
        app_location("/tls_untrusted", "tls({ url = require('nginx_spec_config').tls2 })"),
        app_location("/tls_insecure", "tls({ insecure = true })"),
        app_location("/tls_ca_file", "tls({ ca_file = '/etc/ssl/certs/ca-certificates.crt' })"),
      }, "\n"),
    })
  end)

  teardown(function()
    if srv then srv:stop() end
    if tls then tls:stop() end
    if tls2 then tls2:stop() end
    if redis then redis:stop() end
    mock:stop()
  end)
  before_each(function() mock:fresh() end)

  describe("phases", function()
    it("picks cosockets in content handlers and timers for a client built in init_by_lua", function()
      local res = srv:json("/auto")
      assert.matches("NginxTransport", res.transport)
      assert.are.equal(2, res.records)
      assert.are.equal("ok", res.timer)
    end)

    it("raises a usage error naming ngx.timer.at where nginx has no cosockets", function()
      assert.are.equal(200, srv:get("/phases").status)
      socket.sleep(0.1)                          -- the log phase runs after the response
      local res = srv:json("/results")
      local set = srv:get("/phases").body
      for phase, msg in pairs { init = res.init, init_worker = res.init_worker, set = set,
                                header_filter = res.header_filter, body_filter = res.body_filter,
                                log = res.log } do
        assert.matches("^usage: ", msg, phase)
        assert.matches("ngx%.timer%.at", msg, phase)
        assert.matches((phase:gsub("_", "%%_")), msg, phase)
      end
      assert.are.equal(0, #mock:log())           -- nothing was sent
    end)

    it("uses libcurl inside nginx only when asked for", function()
      local res = srv:json("/curl")
      assert.matches("converse%.Transport", res.transport)
      assert.are.equal(3, res.records)
    end)
  end)

  it("pages every vendor with the results of the standalone run", function()
    local inside = srv:json("/vendors")
    local outside = app.vendors(mock.url, "curl")
    assert.are.same(outside, inside)
    assert.are.equal(300, inside.converz_calls.count)
    for name, d in pairs(inside) do assert.is_true(d.count > 0, name) end
  end)

  describe("a shared rate limit", function()
    local function windows(gen)
      local times, workers = {}, {}
      for _, e in ipairs(mock:log()) do
        if e.headers["x-gen"] == tostring(gen) then
          times[#times + 1] = e.time
          workers[e.headers["x-worker"]] = true
        end
      end
      table.sort(times)
      local n, closest = 0, math.huge
      for _ in pairs(workers) do n = n + 1 end
      for i = 5, #times do closest = math.min(closest, times[i] - times[i - 4]) end
      return #times, n, closest
    end

    -- Two workers of 8 requests each under one budget of 4 per half second:
    -- all 16 arrive, from both workers, never 5 within half a second.
    local function assert_shared(mode)
      local res = srv:json("/rate?mode=" .. mode)
      assert.is_nil(res.error)
      assert.are.equal(2, res.done)
      local count, workers, closest = windows(res.gen)
      assert.are.equal(16, count)
      assert.are.equal(2, workers)
      assert.is_true(closest >= 0.49, ("5 requests within %.3f s"):format(closest))
    end

    it("holds for all workers together (lua_shared_dict)", function()
      assert_shared("shared")
    end)

    it("holds for all workers together through Redis (lua-nginx-redis over cosockets)", function()
      assert_shared("redis")
      assert.matches("converse:rl:", redis:cli("--scan --pattern 'converse:rl:*'"))
    end)

    it("fails closed through cosockets when Redis does not answer (RATE_LIMIT_UNAVAILABLE)", function()
      local res = srv:json("/redis_down?port=" .. helper.free_port())
      assert.is_false(res.ok)
      assert.are.equal("RATE_LIMIT_UNAVAILABLE", res.code)
      assert.is_true(res.retryable)
      assert.is_true(res.waited >= 0.5 and res.waited < 5, res.waited)
      assert.are.equal(0, #mock:log())             -- nothing was sent
    end)

    it("shares a 429 pause between clients of one key, not across keys", function()
      local res = srv:json("/pause")
      assert.is_true(res.paused)
      assert.is_true(res.wait > 1.5 and res.wait <= 2, res.wait)
      assert.are.equal(0, res.other)
      assert.matches("SharedLimiter", res.name)
    end)

    it("is per worker without `shared` (so two workers start twice the limit)", function()
      local res = srv:json("/rate?mode=local")
      local count, workers, closest = windows(res.gen)
      assert.are.equal(16, count)
      assert.are.equal(2, workers)
      assert.is_true(closest < 0.49, ("closest 5 requests %.3f s apart"):format(closest))
    end)
  end)

  describe("TLS", function()
    it("verifies against lua_ssl_trusted_certificate", function()
      local res = srv:json("/tls_trusted")
      assert.is_true(res.ok, res.message)
      assert.are.equal(2, res.records)
    end)

    it("fails at once, naming the certificate and lua_ssl_trusted_certificate, without it", function()
      local res = srv:json("/tls_untrusted")
      assert.is_false(res.ok)
      assert.are.equal("network", res.kind)
      assert.is_false(res.retryable)
      assert.are.equal(1, res.attempts)
      assert.matches("certificate", res.message)
      assert.matches("lua_ssl_trusted_certificate", res.message)
    end)

    it("skips verification with insecure = true, and refuses ca_file", function()
      assert.is_true(srv:json("/tls_insecure").ok)
      local res = srv:json("/tls_ca_file")
      assert.are.equal("usage", res.kind)
      assert.matches("lua_ssl_trusted_certificate", res.message)
    end)
  end)

  it("does not hold the request for a pager abandoned with a page in flight", function()
    mock:control { type = "latency", delay = 5, path = "/converz/api/v1/calls", skip = 1 }
    local t0 = socket.gettime()
    local res = srv:json("/abandon")
    assert.are.equal(3, res.records)
    assert.is_true(socket.gettime() - t0 < 2, ("took %.2f s"):format(socket.gettime() - t0))
  end)

  it("offers converse.safe: nil, err from requests; pagers raise", function()
    local res = srv:json("/safe")
    assert.is_true(res.body)
    assert.are.equal(404, res.status)
    assert.are.equal("http", res.kind)
    assert.is_true(res.pager_raised)
    assert.are.equal(404, res.pager_status)
  end)

  it("logs no Lua errors", function()
    local log = srv:error_log()
    assert.is_nil(log:find("%[error%]"), log)
    assert.is_nil(log:find("%[alert%]"), log)
  end)
end)

describe(wanted and "an nginx worker during a sync" or "an nginx worker during a sync (runs in the LuaJIT pass)",
  function()
  if not wanted then return end
  local big, srv

  setup(function()
    big = helper.start_mock { calls = 200000, latency = "100ms", max_lifetime = 600 }
    srv = assert(nginx.start {
      workers = 1,
      config = { big = big.url },
      http = "lua_socket_log_errors off;",
      server = app_location("/sync", "sync()") .. "\n"
        .. "location /ping { content_by_lua_block { ngx.say('pong') } }",
    })
  end)
  teardown(function()
    if srv then srv:stop() end
    big:stop()
  end)

  it("answers /ping within 50 ms (p99) while 200,000 rows are paged and decoded", function()
    -- the sync: a request left running on its own connection; it answers
    -- when it is done, so pings stop then (at 50), and at least 20 must
    -- have been answered while it ran
    local conn = socket.tcp()
    conn:settimeout(120)
    assert(conn:connect("127.0.0.1", srv.port))
    conn:send("GET /sync?page=20000 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    socket.sleep(0.3)                            -- it is under way
    local times, raw, last_ping = {}, "", nil
    conn:settimeout(0)
    while #times < 50 do
      local t0 = socket.gettime()
      local res = srv:get("/ping", 10)
      local got, err, partial = conn:receive("*a")
      raw = raw .. (got or partial or "")
      if got or err == "closed" then break end   -- the sync is over: this ping does not count
      times[#times + 1] = socket.gettime() - t0
      last_ping = socket.gettime()
      assert.are.equal("pong\n", res.body)
      socket.sleep(0.02)
    end
    conn:settimeout(120)
    raw = raw .. (conn:receive("*a") or "")
    conn:close()
    local sync = helper.json.decode(raw:match("\r\n\r\n(.*)$"):match("{.*}"))
    table.sort(times)
    local n = #times
    local p50, p99 = times[math.ceil(n / 2)], times[math.ceil(n * 0.99)]
    print(("\n  /ping during the sync: %d pings, p50 %.1f ms, p99 %.1f ms; sync of %d rows took %.2f s")
      :format(n, p50 * 1000, p99 * 1000, sync.records, sync.finish - sync.start))
    assert.are.equal(200000, sync.records)
    assert.matches("NginxTransport", sync.transport)
    assert.is_true(n >= 20, ("only %d pings while the sync ran"):format(n))
    assert.is_true(sync.finish > last_ping, "the sync ended before the pings did: nothing was measured")
    assert.is_true(p99 < 0.05, ("p99 %.1f ms"):format(p99 * 1000))
  end)
end)

-- A turn of the event loop (transport/nginx.lua `turn`): a timer of 0 s
-- posting a semaphore, so a turn costs about nothing when nobody else
-- waits; without a timer to be had, or one that can run, the sleep of NAP
-- it replaced.
describe(wanted and "turns of an nginx worker's event loop"
  or "turns of an nginx worker's event loop (runs in the LuaJIT pass)", function()
  if not wanted then return end
  local srv

  local TURNS = [[
    local t = require "converse.transport.nginx"
    local now = require("converse.core").now
    local slice = t.SLICE
    if ngx.var.arg_hold == "running" then                -- the only timer that may run
      ngx.timer.at(0, function() ngx.sleep(1.5) end)
      ngx.sleep(0.05)
    elseif ngx.var.arg_hold == "pending" then            -- the only timer that may wait
      ngx.timer.at(60, function() end)
    end
    t.SLICE = 0                                          -- every breathe() turns
    local t0 = now()
    for _ = 1, 200 do t.breathe() end
    t.SLICE = slice
    ngx.say(now() - t0)
  ]]

  local function turns(query)
    local res = srv:get("/turns" .. query, 20)
    assert.are.equal(200, res.status, res.body)
    return tonumber(res.body)
  end

  local function alerts()
    local n = 0
    for _ in srv:error_log():gmatch("lua_max_running_timers are not enough") do n = n + 1 end
    return n
  end

  setup(function()
    srv = assert(nginx.start {
      workers = 1,
      http = "lua_max_pending_timers 1; lua_max_running_timers 1;",
      server = "location /turns { content_by_lua_block { " .. TURNS .. " } }",
    })
  end)
  teardown(function() if srv then srv:stop() end end)

  it("does not sleep when a timer can run at once", function()
    local secs = turns("")
    assert.is_true(secs < 0.15, ("200 turns took %.3f s"):format(secs))
    assert.are.equal(0, alerts())
  end)

  it("sleeps NAP when its timers cannot run, with one alert a second from nginx", function()
    local secs = turns("?hold=running")
    assert.is_true(secs >= 0.2, ("200 turns took %.3f s"):format(secs))
    local n = alerts()
    assert.is_true(n >= 1 and n <= 2, n .. " alerts")
  end)

  it("sleeps NAP when no timer can be had, and logs nothing", function()
    local before = srv:error_log()
    local secs = turns("?hold=pending")
    assert.is_true(secs >= 0.2, ("200 turns took %.3f s"):format(secs))
    assert.are.equal(before, srv:error_log())
  end)
end)
