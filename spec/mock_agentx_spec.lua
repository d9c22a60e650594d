-- converse.mock: the AgentX (DeepConverse) Export API (seeds 001, 004).
local helper = require "helper"
local socket = require "socket"

local KEY = { ["x-api-key"] = "k" }
local BASE = "/agentx/conversations/export/v1/"
local WINDOW = "start_time=0&end_time=2000000000&bot_name=r3-218210"

describe("converse.mock agentx", function()
  local mock
  setup(function() mock = helper.start_mock{ conversations = 30, agentx_rate = 0, calls = 5 } end)
  teardown(function() mock:stop() end)

  local function get(what, q) return mock:get(BASE .. what .. "?" .. WINDOW .. (q or ""), KEY) end

  local function drain(what, q)
    local all, pages, cursor = {}, 0, nil
    repeat
      local r = get(what, q .. (cursor and "&cursor=" .. cursor or ""))
      assert.equal(200, r.status)
      for _, x in ipairs(r.json.data) do all[#all + 1] = x end
      cursor = r.json.cursor ~= helper.json.null and r.json.cursor or nil
      pages = pages + 1
    until not cursor
    return all, pages
  end

  it("pages conversations with an opaque cursor until it is null", function()
    local all, pages = drain("conversations", "&per_page=7")
    assert.equal(30, #all)
    assert.equal(5, pages)
    local seen = {}
    for _, c in ipairs(all) do
      assert.is_nil(seen[c._id]); seen[c._id] = true
      assert.is_number(c.startTime)
      assert.is_table(c.metadata)
      assert.is_table(c.tags)
    end
  end)

  it("writes the cursor after the data", function()
    local r = get("conversations", "&per_page=2")
    assert.matches('^{"data":%[.*%],"cursor":"[^"]+"}$', r.body)
    r = get("conversations", "&per_page=1000")
    assert.matches(',"cursor":null}$', r.body)
  end)

  it("serves messages in the three seed shapes, in time order", function()
    local all = drain("messages", "&per_page=50")
    local kinds, last = {}, 0
    for _, m in ipairs(all) do
      kinds[m.type] = true
      assert.is_true(m.time >= last); last = m.time
      assert.is_string(m.conversationId)
      if m.type == "UserInput" then assert.is_string(m.userInput)
      else assert.is_table(m.outMsg.steps) end
    end
    assert.is_true(kinds.Question and kinds.UserInput and kinds.BotMessage)
  end)

  it("filters messages by conversation_id", function()
    local conv = get("conversations", "&per_page=1").json.data[1]
    local msgs = get("messages", "&conversation_id=" .. conv._id).json.data
    assert.is_true(#msgs >= 2)
    for _, m in ipairs(msgs) do assert.equal(conv._id, m.conversationId) end
  end)

  it("restricts to the [start_time, end_time) window", function()
    local all = drain("conversations", "&per_page=1000")
    local t0, t1 = all[5].startTime, all[10].startTime
    local r = mock:get(BASE .. "conversations?bot_name=b&start_time=" .. t0 .. "&end_time=" .. t1, KEY)
    assert.equal(5, #r.json.data)
  end)

  it("validates required parameters, per_page and the cursor", function()
    assert.equal(400, mock:get(BASE .. "conversations?start_time=0&end_time=1", KEY).status)
    assert.equal(400, mock:get(BASE .. "conversations?bot_name=b&end_time=1", KEY).status)
    assert.equal(400, get("conversations", "&per_page=1001").status)
    assert.equal(400, get("conversations", "&cursor=zz").status)
    assert.equal(200, get("conversations", "&per_page=1000").status)
  end)
end)

describe("converse.mock agentx rate limit", function()
  local mock
  setup(function() mock = helper.start_mock{ conversations = 5, calls = 5, agentx_window = "0.5s" } end)
  teardown(function() mock:stop() end)

  it("allows 3 requests per window per endpoint, then 429 with Retry-After", function()
    local q = "?" .. WINDOW
    for _ = 1, 3 do assert.equal(200, mock:get(BASE .. "conversations" .. q, KEY).status) end
    local r = mock:get(BASE .. "conversations" .. q, KEY)
    assert.equal(429, r.status)
    assert.equal("1", r.headers["retry-after"])
    assert.equal(200, mock:get(BASE .. "messages" .. q, KEY).status)   -- other endpoint
    socket.sleep(0.6)
    assert.equal(200, mock:get(BASE .. "conversations" .. q, KEY).status)
  end)
end)
