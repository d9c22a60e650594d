-- converse.agentx (alias converse.deepconverse) against the local mock
-- (seeds 001, 004): x-api-key, time windows as unix seconds or UTC date
-- strings, cursor paging until the cursor is null, per_page 1..1000, the
-- conversation_id filter, the default 3 requests/second limit (the mock
-- enforces it too), and transcripts.
local converse = require "converse"
local helper   = require "helper"
local raises, query_of = helper.raises, helper.query_of

local KEY = "ax-key-1"
local BOT = "r3-218210"
local CONVS = 30
local PREFIX = "/agentx"
local CONV_PATH = PREFIX .. "/conversations/export/v1/conversations"
local MSG_PATH = PREFIX .. "/conversations/export/v1/messages"
local T0, T1 = 1735689600, 1743465600          -- 2025-01-01, 2025-04-01 (UTC)

describe("converse.agentx", function()
  local mock

  setup(function() mock = helper.start_mock { conversations = CONVS, api_key = KEY, agentx_rate = 3 } end)
  teardown(function() mock:stop() end)
  before_each(function() mock:fresh() end)

  local function ax(opts)
    local o = { base_url = mock.url .. PREFIX, api_key = KEY, bot_name = BOT }
    for k, v in pairs(opts or {}) do o[k] = v end
    return converse.agentx(o)
  end

  local function usage(f, pattern)
    local err = raises(f)
    assert.are.equal("usage", err.kind)
    if pattern then assert.matches(pattern, err.message) end
    assert.matches("agentx_spec%.lua:%d+:", err.message)
    assert.are.same({}, mock:log())
  end

  describe("constructor", function()
    it("is also converse.deepconverse, with the seed's base URL and rate limit", function()
      assert.are.equal(converse.agentx, converse.deepconverse)
      local c = converse.deepconverse { api_key = KEY }
      assert.are.equal("https://api.converseapps.com", c.client.base_url)
      assert.are.equal(3, c.client.limiter.limit)
      assert.are.equal(1, c.client.limiter.window)
      assert.is_nil(converse.agentx { api_key = KEY, rate_limit = false }.client.limiter.limit)
    end)

    it("requires api_key; bot_name must be a string", function()
      usage(function() local _ = converse.agentx { bot_name = BOT } end, "api_key")
      usage(function() local _ = converse.agentx { api_key = KEY, bot_name = 7 } end, "bot_name")
    end)
  end)

  describe(":conversations", function()
    it("sends x-api-key, the window as unix seconds, bot_name and per_page=1000", function()
      local all = ax():conversations { start_time = "2025-01-01", end_time = "2025-02-15 08:09:10" }:collect()
      local log = mock:log()
      assert.are.equal(1, #log)
      assert.are.equal("GET", log[1].method)
      assert.are.equal(CONV_PATH, log[1].path)
      assert.are.equal(KEY, log[1].headers["x-api-key"])
      assert.are.same({ start_time = "1735689600", end_time = "1739606950", bot_name = BOT,
                        per_page = "1000" }, query_of(log[1]))
      assert.is_true(#all > 0 and #all < CONVS)
      for _, c in ipairs(all) do
        assert.is_true(c.startTime >= 1735689600 and c.startTime < 1739606950)
      end
    end)

    it("accepts unix seconds, \"YYYY-MM-DD HH:MM\" and a per-call bot_name", function()
      ax():conversations { start_time = T0, end_time = "2025-03-01 12:30", bot_name = "other",
                           per_page = 50 }:collect()
      assert.are.same({ start_time = "1735689600", end_time = "1740832200", bot_name = "other",
                        per_page = "50" }, query_of(mock:log()[1]))
    end)

    it("follows the cursor until it is null", function()
      local all = ax():conversations { start_time = T0, end_time = T1, per_page = 7 }:collect()
      assert.are.equal(CONVS, #all)
      local seen = {}
      for _, c in ipairs(all) do assert.is_nil(seen[c._id]); seen[c._id] = true end
      local log = mock:log()
      assert.are.equal(5, #log)                      -- 7 + 7 + 7 + 7 + 2
      assert.is_nil(query_of(log[1]).cursor)
      for i = 2, 5 do
        assert.is_string(query_of(log[i]).cursor)
        assert.are.equal("7", query_of(log[i]).per_page)
      end
      for _, e in ipairs(log) do assert.are.equal(200, e.status) end
    end)

    it("checks the window, bot_name and per_page before any request", function()
      local c = ax()
      usage(function() local _ = c:conversations { end_time = T1 } end, "start_time")
      usage(function() local _ = c:conversations { start_time = T0 } end, "end_time")
      usage(function() local _ = c:conversations { start_time = "yesterday", end_time = T1 } end, "start_time")
      usage(function() local _ = c:conversations { start_time = "2025-13-01", end_time = T1 } end, "start_time")
      usage(function() local _ = c:conversations { start_time = "2025-02-30", end_time = T1 } end, "28 days")
      usage(function() local _ = c:conversations { start_time = "2025-01-01 25:00", end_time = T1 } end)
      usage(function() local _ = c:conversations { start_time = -5, end_time = T1 } end, "start_time")
      usage(function() local _ = c:conversations { start_time = T1, end_time = T0 } end, "after start_time")
      usage(function() local _ = c:conversations { start_time = T0, end_time = T0 } end, "after start_time")
      usage(function() local _ = c:messages { start_time = T0, end_time = T1, per_page = 0 } end, "per_page")
      usage(function() local _ = c:messages { start_time = T0, end_time = T1, per_page = 1001 } end, "per_page")
      usage(function() local _ = c:messages { start_time = T0, end_time = T1, per_page = 2.5 } end, "per_page")
      local nobot = converse.agentx { base_url = mock.url .. PREFIX, api_key = KEY }
      usage(function() local _ = nobot:messages { start_time = T0, end_time = T1 } end, "bot_name")
    end)
  end)

  describe(":messages", function()
    it("filters on conversation_id", function()
      local convs = ax():conversations { start_time = T0, end_time = T1 }:collect()
      local id = convs[3]._id
      mock:reset()
      local msgs = ax():messages { start_time = T0, end_time = T1, conversation_id = id }:collect()
      assert.is_true(#msgs >= 2)
      for _, m in ipairs(msgs) do assert.are.equal(id, m.conversationId) end
      local e = mock:log()[1]
      assert.are.equal(MSG_PATH, e.path)
      assert.are.equal(id, query_of(e).conversation_id)
    end)

    it("stays within 3 requests per second per endpoint by default", function()
      local all = ax():messages { start_time = T0, end_time = T1, per_page = 25 }:collect()
      assert.is_true(#all > 100)
      local log = mock:log()
      assert.is_true(#log >= 5)
      for i, e in ipairs(log) do
        assert.are.equal(200, e.status)             -- the mock's own limiter never fired
        if i > 3 then
          local gap = e.time - log[i - 3].time
          assert.is_true(gap >= 0.98, ("requests %d..%d within %.3f s"):format(i - 3, i, gap))
        end
      end
    end)
  end)

  describe(":transcript", function()
    -- The messages of seed 004's sample, out of order.
    local SAMPLE = {
      { _id = "3", time = 1744651793.839, type = "Question", conversationId = "c",
        outMsg = { steps = { { text = "Here are the details for Comfort Headphones:\n\n"
                                        .. "💲 Price: $89.99\n📦 In Stock: Yes" },
                             { text = "Did that answer your question?" } },
                   options = { { txt = "Yes" }, { txt = "No" } } } },
      { _id = "1", time = 1744651778.652, type = "Question", conversationId = "c",
        outMsg = { steps = { { text = "Hello 👋 I am a virtual assistant. How can I help you?" } } } },
      { _id = "2", time = 1744651783, type = "UserInput", conversationId = "c",
        userInput = "Tell me about Comfort Headphones" },
    }

    it("renders messages as User:/Bot: lines in time order", function()
      assert.are.equal(
        "Bot:\tHello 👋 I am a virtual assistant. How can I help you?\n" ..
        "User:\tTell me about Comfort Headphones\n" ..
        "Bot:\tHere are the details for Comfort Headphones: 💲 Price: $89.99 📦 In Stock: Yes " ..
        "Did that answer your question? [Yes | No]",
        ax():transcript(SAMPLE))
      assert.are.same({}, mock:log())
      assert.are.equal("", ax():transcript({}))
    end)

    it("skips messages without text and reads quick replies", function()
      assert.are.equal("User:\tYes\nBot:\tGreat!", ax():transcript {
        { time = 3, type = "Question", outMsg = { steps = { { text = "Great!" } } } },
        { time = 1, type = "UserInput", userInput = "" },
        { time = 2, type = "UserInput", userActionType = "quickReply", userInput = { txt = "Yes" } },
        { time = 4, type = "Event" },
      })
    end)

    it("fetches the messages of a conversation id", function()
      local c = ax()
      local id = c:conversations { start_time = T0, end_time = T1, per_page = 5 }:collect()[2]._id
      mock:reset()
      local text = c:transcript(id)
      local log = mock:log()
      assert.are.equal(1, #log)
      assert.are.equal(MSG_PATH, log[1].path)
      assert.are.equal(id, query_of(log[1]).conversation_id)
      assert.are.equal(BOT, query_of(log[1]).bot_name)
      local msgs = c:messages { start_time = T0, end_time = T1, conversation_id = id }:collect()
      assert.are.equal(c:transcript(msgs), text)
      assert.matches("^[UB][so][et]r?:\t", text)
      local prev = -1
      table.sort(msgs, function(a, b) return a.time < b.time end)
      for _, m in ipairs(msgs) do assert.is_true(m.time >= prev); prev = m.time end
    end)

    it("rejects anything but messages or an id", function()
      usage(function() local _ = ax():transcript(42) end, "transcript")
      usage(function() local _ = ax():transcript() end, "transcript")
    end)
  end)
end)
