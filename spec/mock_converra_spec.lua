-- converse.mock: the Converra REST API v1 (seed 003).
local helper = require "helper"
local socket = require "socket"

local AUTH = { Authorization = "Bearer tok" }
local BASE = "/converra/api/v1"

describe("converse.mock converra", function()
  local mock
  setup(function() mock = helper.start_mock{ calls = 5, converra_plan = "enterprise" } end)
  teardown(function() mock:stop() end)
  before_each(function() mock:reset() end)

  local function get(p) return mock:get(BASE .. p, AUTH) end
  local function send(method, p, body) return mock:request(method, BASE .. p, body, AUTH) end

  it("lists agents in the {data,page,limit,total,pages} envelope", function()
    local r = get("/agents?limit=4")
    assert.equal(200, r.status)
    assert.equal(4, #r.json.data)
    assert.equal(6, r.json.total); assert.equal(2, r.json.pages)
    assert.equal(2, #get("/agents?limit=4&page=2").json.data)
    assert.equal(422, get("/agents?limit=101").status)
  end)

  it("creates, gets and patches an agent", function()
    local a = send("POST", "/agents", { name = "Test agent", systemPrompt = "Be nice" })
    assert.equal(201, a.status)
    local id = a.json.id
    assert.equal("Test agent", get("/agents/" .. id).json.name)
    local p = send("PATCH", "/agents/" .. id, { description = "updated ✨" })
    assert.equal("updated ✨", p.json.description)
    assert.equal(7, get("/agents").json.total)
  end)

  it("answers VALIDATION_ERROR and NOT_FOUND in the error envelope", function()
    local r = send("POST", "/agents", { systemPrompt = "x" })
    assert.equal(422, r.status)
    assert.equal("VALIDATION_ERROR", r.json.error.code)
    assert.is_string(r.json.error.message)
    r = get("/agents/agt_nope")
    assert.equal(404, r.status)
    assert.equal("NOT_FOUND", r.json.error.code)
    assert.equal("NOT_FOUND", get("/nothing").json.error.code)
  end)

  it("serves agent insights, regeneration and step failures", function()
    local id = get("/agents").json.data[1].id
    assert.is_table(get("/agents/" .. id .. "/insights").json.issues)
    assert.equal(202, send("POST", "/agents/" .. id .. "/insights/regenerate").status)
    assert.is_table(get("/agents/" .. id .. "/step-failures").json.steps)
    assert.equal(404, get("/agents/nope/step-failures").status)
  end)

  it("triggers, inspects, applies and stops optimizations", function()
    local agent = get("/agents").json.data[1].id
    local list = get("/optimizations").json.data
    local completed, running
    for _, o in ipairs(list) do
      if o.status == "completed" then completed = o.id elseif o.status == "running" then running = o.id end
    end
    assert.equal(2, #get("/optimizations/" .. completed .. "/variants").json.data)
    assert.equal("applied", send("POST", "/optimizations/" .. completed .. "/apply").json.status)
    assert.equal(409, send("POST", "/optimizations/" .. completed .. "/apply").status)
    assert.equal("stopped", send("POST", "/optimizations/" .. running .. "/stop").json.status)
    assert.equal(409, send("POST", "/optimizations/" .. running .. "/stop").status)
    local o = send("POST", "/optimizations", { agentId = agent })
    assert.equal(201, o.status)
    assert.equal("running", get("/optimizations/" .. o.json.id).json.status)
    assert.equal(422, send("POST", "/optimizations", {}).status)
    assert.equal(404, send("POST", "/optimizations", { agentId = "nope" }).status)
  end)

  it("logs and reads conversations and their insights", function()
    local agent = get("/agents").json.data[1].id
    local c = send("POST", "/conversations", { agentId = agent,
      messages = { { role = "user", content = "hi" }, { role = "assistant", content = "hello 👋" } } })
    assert.equal(201, c.status)
    assert.equal("hello 👋", get("/conversations/" .. c.json.id).json.messages[2].content)
    assert.is_table(get("/conversations/" .. c.json.id .. "/insights").json)
    assert.equal(202, send("POST", "/conversations/" .. c.json.id .. "/insights/regenerate").status)
    assert.equal(422, send("POST", "/conversations", { agentId = agent, messages = {} }).status)
    for _, conv in ipairs(get("/conversations?limit=100&agentId=" .. agent).json.data) do
      assert.equal(agent, conv.agentId)
    end
  end)

  it("creates benchmarks and bulk-deletes them by job id", function()
    local b = send("POST", "/benchmarks", { name = "B" })
    assert.equal(201, b.status)
    assert.equal("B", get("/benchmarks/" .. b.json.id).json.name)
    local r = send("POST", "/benchmarks/bulk", { action = "delete", jobIds = { b.json.jobId, "job_nope" } })
    assert.equal(200, r.status)
    assert.same({ b.json.jobId }, r.json.deleted)
    assert.same({ "job_nope" }, r.json.notFound)
    assert.equal(404, get("/benchmarks/" .. b.json.id).status)
    assert.equal(422, send("POST", "/benchmarks/bulk", { action = "archive", jobIds = { "x" } }).status)
  end)

  it("reads and patches settings; reads account and usage", function()
    assert.equal("gpt-4o", get("/settings").json.defaultModel)
    assert.equal(true, send("PATCH", "/settings", { autoOptimize = true }).json.autoOptimize)
    assert.equal(true, get("/settings").json.autoOptimize)
    assert.is_string(get("/account").json.id)
    assert.is_number(get("/usage").json.conversations)
  end)

  it("creates, lists and deletes webhooks", function()
    local w = send("POST", "/webhooks", { url = "https://example.com/hook", events = { "optimization.completed" } })
    assert.equal(201, w.status)
    assert.equal(1, get("/webhooks").json.total)
    assert.equal(200, send("DELETE", "/webhooks/" .. w.json.id).status)
    assert.equal(0, get("/webhooks").json.total)
    assert.equal(404, send("DELETE", "/webhooks/" .. w.json.id).status)
    assert.equal(422, send("POST", "/webhooks", { url = "ftp://x" }).status)
  end)
end)

describe("converse.mock converra rate limits", function()
  it("free plan: 60 requests per window with X-RateLimit headers, then 429", function()
    local mock = helper.start_mock{ calls = 5, converra_window = "2s" }
    local last
    for i = 1, 60 do
      last = mock:get(BASE .. "/account", AUTH)
      assert.equal(200, last.status)
      assert.equal(tostring(60 - i), last.headers["x-ratelimit-remaining"])
    end
    assert.equal("60", last.headers["x-ratelimit-limit"])
    assert.matches("^%d+$", last.headers["x-ratelimit-reset"])
    local r = mock:get(BASE .. "/account", AUTH)
    assert.equal(429, r.status)
    assert.equal("RATE_LIMITED", r.json.error.code)
    assert.matches("^%d+$", r.headers["retry-after"])
    assert.equal("0", r.headers["x-ratelimit-remaining"])
    -- another token has its own window
    assert.equal(200, mock:get(BASE .. "/account", { Authorization = "Bearer other" }).status)
    socket.sleep(tonumber(r.headers["retry-after"]) + 0.1)
    assert.equal(200, mock:get(BASE .. "/account", AUTH).status)
    mock:stop()
  end)

  it("pro plan: 300 requests per window", function()
    local mock = helper.start_mock{ calls = 5, converra_plan = "pro" }
    local r = mock:get(BASE .. "/usage", AUTH)
    assert.equal("300", r.headers["x-ratelimit-limit"])
    assert.equal(300, r.json.rateLimit.requestsPerMinute)
    mock:stop()
  end)
end)
