-- converse.converra against the local mock (seed 003): Bearer auth, every
-- endpoint of the seed's tables, plan -> default rate limit, the
-- {"error":{code,message}} shape, and the undocumented list envelopes
-- (bare array, page envelope, cursor envelope, the `list` override).
local converse = require "converse"
local helper   = require "helper"
local raises, query_of = helper.raises, helper.query_of

local KEY = "cr-key-1"
local PREFIX = "/converra/api/v1"
local unpack = table.unpack or unpack

describe("converse.converra", function()
  local mock

  setup(function() mock = helper.start_mock { agents = 6, api_key = KEY, converra_plan = "enterprise" } end)
  teardown(function() mock:stop() end)
  before_each(function() mock:fresh() end)

  local function cr(opts)
    local o = { base_url = mock.url .. PREFIX, api_key = KEY, backoff = { base = 0.01, cap = 0.05 } }
    for k, v in pairs(opts or {}) do o[k] = v end
    return converse.converra(o)
  end

  local function usage(f, pattern)
    local err = raises(f)
    assert.are.equal("usage", err.kind)
    if pattern then assert.matches(pattern, err.message) end
    assert.matches("converra_spec%.lua:%d+:", err.message)
    assert.are.same({}, mock:log())
  end

  describe("constructor", function()
    it("defaults to the seed's base URL and the free plan's 60 requests/minute", function()
      local c = converse.converra { api_key = KEY }
      assert.are.equal("https://converra.ai/api/v1", c.client.base_url)
      assert.are.same({ 60, 60 }, { c.client.limiter.limit, c.client.limiter.window })
    end)

    it("sets the rate limit from the plan; rate_limit overrides it", function()
      local pro = converse.converra { api_key = KEY, plan = "pro" }
      assert.are.same({ 300, 60 }, { pro.client.limiter.limit, pro.client.limiter.window })
      assert.is_nil(converse.converra { api_key = KEY, plan = "enterprise" }.client.limiter.limit)
      local own = converse.converra { api_key = KEY, plan = "free", rate_limit = { per_second = 5 } }
      assert.are.same({ 5, 1 }, { own.client.limiter.limit, own.client.limiter.window })
      usage(function() local _ = converse.converra { api_key = KEY, plan = "gold" } end, "plan")
      usage(function() local _ = converse.converra { plan = "pro" } end, "api_key")
    end)
  end)

  describe("endpoints", function()
    it("each method sends its method, path, body and the Bearer token", function()
      local c = cr()
      local A = c:agents():collect()[1].id
      local run, done
      for _, o in ipairs(c:optimizations():collect()) do
        if o.status == "running" then run = o.id elseif o.status == "completed" then done = o.id end
      end
      local C = c:conversations():collect()[1].id
      local bench = c:benchmarks():collect()[1]
      local function check(name, args, method, path, body)
        mock:request("DELETE", "/_log")
        local r = c[name](c, unpack(args, 1, args.n or #args))
        if type(r) == "table" and r.collect then r = r:collect() end
        local log = mock:log()
        assert.are.equal(1, #log, name)
        assert.are.equal(method, log[1].method, name)
        assert.are.equal(PREFIX .. path, log[1].path, name)
        assert.are.equal("Bearer " .. KEY, log[1].headers.authorization, name)
        if body then assert.are.same(body, helper.json.decode(log[1].body), name) end
        return r, log[1]
      end
      local list, e = check("agents", {}, "GET", "/agents")
      assert.are.equal(6, #list)
      assert.are.same({ limit = "100", page = "1" }, query_of(e))
      assert.are.equal(A, check("agent", { A }, "GET", "/agents/" .. A).id)
      local made = check("create_agent", { { name = "Bot X" } }, "POST", "/agents", { name = "Bot X" })
      assert.are.equal("Bot X", made.name)
      check("update_agent", { A, { name = "Renamed" } }, "PATCH", "/agents/" .. A, { name = "Renamed" })
      check("agent_insights", { A }, "GET", "/agents/" .. A .. "/insights")
      check("regenerate_agent_insights", { A }, "POST", "/agents/" .. A .. "/insights/regenerate")
      assert.is_table(check("step_failures", { A }, "GET", "/agents/" .. A .. "/step-failures").steps)
      list, e = check("optimizations", { { agentId = A } }, "GET", "/optimizations")
      assert.are.equal(A, query_of(e).agentId)
      for _, o in ipairs(list) do assert.are.equal(A, o.agentId) end
      check("optimization", { run }, "GET", "/optimizations/" .. run)
      check("trigger_optimization", { { agentId = A, goal = "g" } }, "POST", "/optimizations",
        { agentId = A, goal = "g" })
      check("optimization_variants", { done }, "GET", "/optimizations/" .. done .. "/variants")
      assert.are.equal("applied", check("apply_optimization", { done }, "POST",
        "/optimizations/" .. done .. "/apply").status)
      assert.are.equal("stopped", check("stop_optimization", { run }, "POST",
        "/optimizations/" .. run .. "/stop").status)
      check("conversations", {}, "GET", "/conversations")
      check("conversation", { C }, "GET", "/conversations/" .. C)
      local msgs = { { role = "user", content = "hi" } }
      check("log_conversation", { { agentId = A, messages = msgs } }, "POST", "/conversations",
        { agentId = A, messages = msgs })
      check("conversation_insights", { C }, "GET", "/conversations/" .. C .. "/insights")
      check("regenerate_conversation_insights", { C }, "POST", "/conversations/" .. C .. "/insights/regenerate")
      assert.are.equal(3, #check("benchmarks", {}, "GET", "/benchmarks"))
      check("benchmark", { bench.id }, "GET", "/benchmarks/" .. bench.id)
      check("create_benchmark", { { name = "B4" } }, "POST", "/benchmarks", { name = "B4" })
      local bulk = check("bulk_benchmarks", { { action = "delete", jobIds = { bench.jobId } } }, "POST",
        "/benchmarks/bulk", { action = "delete", jobIds = { bench.jobId } })
      assert.are.same({ bench.jobId }, bulk.deleted)
      check("settings", {}, "GET", "/settings")
      assert.are.equal("Europe/Amsterdam", check("update_settings", { { timezone = "Europe/Amsterdam" } },
        "PATCH", "/settings", { timezone = "Europe/Amsterdam" }).timezone)
      check("account", {}, "GET", "/account")
      assert.are.equal("enterprise", check("usage", {}, "GET", "/usage").plan)
      local hook = check("create_webhook", { { url = "https://example.org/h" } }, "POST", "/webhooks",
        { url = "https://example.org/h" })
      assert.are.equal(1, #check("webhooks", {}, "GET", "/webhooks"))
      assert.is_true(check("delete_webhook", { hook.id }, "DELETE", "/webhooks/" .. hook.id))
    end)

    it("checks arguments and required fields before any request", function()
      local c = cr()
      usage(function() c:bulk_benchmarks { jobIds = { "j" } } end, "action")
      usage(function() c:bulk_benchmarks { action = "delete" } end, "jobIds")
      usage(function() c:agent() end, "argument #1")
      usage(function() c:update_agent("a", "name") end, "argument #2")
      usage(function() local _ = c:agents { limit = 0 } end, "limit")
    end)
  end)

  describe("errors", function()
    it("maps {\"error\":{code,message}} to err.code and err.message", function()
      local c = cr()
      local err = raises(function() c:agent("agt_missing") end)
      assert.are.same({ "http", 404, "NOT_FOUND", "agent not found" },
        { err.kind, err.status, err.code, err.message })
      err = raises(function() c:create_agent {} end)
      assert.are.same({ 422, "VALIDATION_ERROR", "name is required" }, { err.status, err.code, err.message })
      assert.are.equal(1, #mock:log() - 1)          -- one GET, one POST: a 422 is not retried
    end)

    it("a bad token is kind auth with the vendor's code", function()
      local err = raises(function() cr { api_key = "secret-token-x" }:account() end)
      assert.are.same({ "auth", 401, "INVALID_API_KEY" }, { err.kind, err.status, err.code })
      assert.is_nil(tostring(err):find("secret-token-x", 1, true))
    end)
  end)

  describe("list envelopes", function()
    local AGENTS = PREFIX .. "/agents"

    it("pages a {data,page,limit,total,pages} envelope", function()
      local all = cr():agents { limit = 2 }:collect()
      assert.are.equal(6, #all)
      local pages = {}
      for _, e in ipairs(mock:log()) do pages[#pages + 1] = query_of(e).page end
      assert.are.same({ "1", "2", "3" }, pages)
    end)

    it("accepts a bare array", function()
      mock:control { type = "status", status = 200, path = AGENTS, body = { { id = "a" }, { id = "b" } } }
      local all = cr():agents():collect()
      assert.are.same({ "a", "b" }, { all[1].id, all[2].id })
      assert.are.equal(1, #mock:log())
    end)

    it("follows a {data, next_cursor, has_more} envelope", function()
      mock:control { { type = "status", status = 200, path = AGENTS,
                       body = { data = { { id = "a" }, { id = "b" } }, next_cursor = "c2", has_more = true } },
                     { type = "status", status = 200, path = AGENTS, skip = 1,
                       body = '{"data":[{"id":"c"}],"next_cursor":null,"has_more":false}' } }
      local all = cr():agents():collect()
      assert.are.same({ "a", "b", "c" }, { all[1].id, all[2].id, all[3].id })
      local log = mock:log()
      assert.are.equal(2, #log)
      assert.are.equal("c2", query_of(log[2]).cursor)
    end)

    it("stops on has_more = false even with a cursor", function()
      mock:control { type = "status", status = 200, path = AGENTS,
                     body = { data = { { id = "a" } }, cursor = "zz", has_more = false } }
      assert.are.equal(1, #cr():agents():collect())
      assert.are.equal(1, #mock:log())
    end)

    it("lets `list` override the paging options", function()
      mock:control { { type = "status", status = 200, path = AGENTS,
                       body = { items = { { id = "a" } }, meta = { next = "n2" } } },
                     { type = "status", status = 200, path = AGENTS, skip = 1,
                       body = { items = { { id = "b" } }, meta = { next = converse.null } } } }
      local c = cr { list = { style = "cursor", records = "items", cursor_field = "meta.next",
                              cursor_param = "after" } }
      local all = c:agents():collect()
      assert.are.same({ "a", "b" }, { all[1].id, all[2].id })
      local log = mock:log()
      assert.are.equal(2, #log)
      assert.are.equal("n2", query_of(log[2]).after)
      mock:reset()
      cr { list = { page_size = 4 } }:agents():collect()
      assert.are.equal("4", query_of(mock:log()[1]).limit)
    end)
  end)
end)
