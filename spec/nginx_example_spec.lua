-- examples/nginx: the dashboard served by nginx from a background sync
-- (ngx.timer.every in init_worker_by_lua) through converse's cosockets,
-- started with the example's own run.sh and nginx.conf against the mock; its
-- numbers are checked against an independent count of the mock's calls.
-- nginx always runs LuaJIT: this runs once per `make test` (support/nginx.lua).
local helper = require "helper"
local nginx  = require "support.nginx"
local socket = require "socket"

local wanted = nginx.wanted()

describe(wanted and "examples/nginx (the dashboard)" or "examples/nginx (runs in the LuaJIT pass)", function()
  if not wanted then return end
  local mock, dir, url

  local function run(cmd, env)
    local p = io.popen(("cd %q && env %s EXAMPLE_DIR=%q examples/nginx/run.sh %s 2>&1")
      :format(helper.ROOT, env or "", dir, cmd))
    local out = p:read("*a")
    p:close()
    return out
  end

  setup(function()
    assert(nginx.available())
    mock = helper.start_mock { calls = 3000 }
    dir = os.tmpname()
    os.remove(dir)
    local port = nginx.free_port()
    local out = run("start " .. port, ("CONVERZ_URL=%s/converz/api/v1 CONVERZ_KEY=k DASHBOARD_INTERVAL=3600")
      :format(mock.url))
    url = out:match("(http://127%.0%.0%.1:%d+/)")
    assert(url, out)
  end)

  teardown(function()
    run("stop")
    os.execute("rm -rf " .. dir)
    mock:stop()
  end)

  local function stats()
    for _ = 1, 200 do
      local res = helper.http("GET", url .. "stats.json")
      if res.status == 200 then return res.json end
      socket.sleep(0.05)
    end
    error("no sync finished")
  end

  it("serves the numbers of every call, as an independent count has them", function()
    local got = stats()
    local calls = helper.http("GET", mock.url .. "/converz/api/v1/calls?n_per_page=3000",
                              nil, { ["X-API-Key"] = "k" }).json
    assert.are.equal(3000, #calls)
    local hours, camp, senti = {}, {}, { positive = 0, neutral = 0, negative = 0, unknown = 0 }
    for h = 1, 24 do hours[h] = 0 end
    for _, c in ipairs(calls) do
      local h = tonumber(c.start_time:sub(12, 13)) + 1
      hours[h] = hours[h] + 1
      camp[c.campaign] = (camp[c.campaign] or 0) + 1
      local s = type(c.sentiment) == "number" and c.sentiment or nil
      local b = not s and "unknown" or s > 0.2 and "positive" or s < -0.2 and "negative" or "neutral"
      senti[b] = senti[b] + 1
    end
    assert.are.equal(3000, got.calls)
    assert.are.same(hours, got.per_hour)
    assert.are.same(senti, got.sentiment)
    local prev = math.huge
    for _, c in ipairs(got.campaigns) do
      assert.are.equal(camp[c.name], c.calls, c.name)
      assert.is_true(c.calls <= prev)
      prev = c.calls
    end
    assert.is_true(got.sync_seconds > 0)
  end)

  it("serves the page with its charts", function()
    stats()
    local res = helper.http("GET", url)
    assert.are.equal(200, res.status)
    assert.matches("text/html", res.headers["content-type"])
    assert.matches("Calls per hour of the day", res.body)
    assert.matches("<svg", res.body)
    assert.matches("Onboarding", res.body)
    assert.matches("3000 calls", res.body)
  end)

  it("synced in the background through the mock (the requests are in its log)", function()
    stats()
    local n = 0
    for _, e in ipairs(mock:log()) do
      if e.path == "/converz/api/v1/calls" and e.headers["x-api-key"] == "k" then n = n + 1 end
    end
    assert.is_true(n >= 1)
    local log = io.open(dir .. "/error.log"):read("*a")
    assert.is_nil(log:find("%[error%]"), log)
  end)
end)
