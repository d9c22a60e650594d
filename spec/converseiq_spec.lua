-- converse.converseiq against the local mock (seed 002): x-api-key, every
-- workspace / contact / chat / message / team method, the
-- {data,page,limit,pages,total} pagers (limit 1..100, default 100; the page
-- count lets pages be fetched concurrently), required fields checked before
-- any request, null titles, delete -> true, 404 -> an http error.
local converse = require "converse"
local helper   = require "helper"
local raises, query_of = helper.raises, helper.query_of
local socket   = require "socket"

local KEY = "iq-key-1"
local PREFIX = "/converseiq/public/v1"
local CONTACTS, CHATS = 95, 25

describe("converse.converseiq", function()
  local mock

  setup(function() mock = helper.start_mock { contacts = CONTACTS, chats = CHATS, api_key = KEY } end)
  teardown(function() mock:stop() end)
  before_each(function() mock:fresh() end)

  local function iq(opts)
    local o = { base_url = mock.url .. PREFIX, api_key = KEY, backoff = { base = 0.01, cap = 0.05 } }
    for k, v in pairs(opts or {}) do o[k] = v end
    return converse.converseiq(o)
  end

  local function usage(f, pattern)
    local err = raises(f)
    assert.are.equal("usage", err.kind)
    if pattern then assert.matches(pattern, err.message) end
    assert.matches("converseiq_spec%.lua:%d+:", err.message)
    for _, e in ipairs(mock:log()) do assert.are.equal("2", query_of(e).page, "a request was sent") end
  end

  -- Forget the requests so far (the state stays: created objects survive).
  local function clear_log() mock:request("DELETE", "/_log") end

  -- The one request the mock saw since the last clear_log (a list may add
  -- one page of prefetch beyond the last page: page 2 of a one-page list).
  local function only(method, path)
    local log = {}
    for _, e in ipairs(mock:log()) do
      if query_of(e).page ~= "2" then log[#log + 1] = e end
    end
    assert.are.equal(1, #log)
    assert.are.equal(method, log[1].method)
    assert.are.equal(PREFIX .. path, log[1].path)
    assert.are.equal(KEY, log[1].headers["x-api-key"])
    return log[1]
  end

  it("has the seed's base URL", function()
    assert.are.equal("https://api.converseiq.com.au/public/v1",
      converse.converseiq { api_key = KEY }.client.base_url)
    usage(function() local _ = converse.converseiq {} end, "api_key")
  end)

  describe("workspace", function()
    it("workspace() and me()", function()
      local ws = iq():workspace()
      only("GET", "/workspace")
      assert.are.equal("Acme Support 🎧", ws.name)
      clear_log()
      assert.are.equal("owner", iq():me().role)
      only("GET", "/workspace/me")
    end)
  end)

  describe("contacts", function()
    it("contacts() pages with limit=100 by default", function()
      local all = iq():contacts():collect()
      assert.are.equal(CONTACTS, #all)
      local e = only("GET", "/contact")
      assert.are.same({ page = "1", limit = "100" }, query_of(e))
    end)

    it("fetches every page once, concurrently once the page count is known", function()
      mock:control { latency = "100ms" }
      local t = socket.gettime()
      local all = iq():contacts { limit = 10 }:collect()
      local elapsed = socket.gettime() - t
      assert.are.equal(CONTACTS, #all)
      local pages, conns = {}, {}
      for _, e in ipairs(mock:log()) do
        local q = query_of(e)
        assert.are.equal("10", q.limit)
        assert.is_nil(pages[q.page]); pages[q.page] = true
        conns[e.conn] = true
      end
      for p = 1, 10 do assert.is_true(pages[tostring(p)], "page " .. p) end
      assert.is_nil(pages["11"])
      local n = 0
      for _ in pairs(conns) do n = n + 1 end
      assert.is_true(n >= 2)
      assert.is_true(elapsed < 0.75, ("10 pages took %.2f s"):format(elapsed))
    end)

    it("starts at the given page", function()
      local all = iq():contacts { page = 9, limit = 10 }:collect()
      assert.are.equal(CONTACTS - 80, #all)
      assert.are.equal("9", query_of(mock:log()[1]).page)
    end)

    it("checks limit before any request", function()
      local c = iq()
      usage(function() local _ = c:contacts { limit = 0 } end, "limit")
      usage(function() local _ = c:chats { limit = 101 } end, "limit")
      usage(function() local _ = c:team { limit = 2.5 } end, "limit")
      usage(function() local _ = c:contacts { limit = "10" } end, "limit")
    end)

    it("search_contacts(email) sends ?email=", function()
      local c = iq()
      local email
      for _, r in ipairs(c:contacts():collect()) do if type(r.email) == "string" then email = r.email end end
      clear_log()
      local found = c:search_contacts(email):collect()
      assert.are.equal(1, #found)
      assert.are.equal(email, found[1].email)
      local e = only("GET", "/contact/search")
      assert.are.equal(email, query_of(e).email)
      clear_log()
      mock:reset()
      usage(function() local _ = c:search_contacts() end, "email")
      usage(function() local _ = c:search_contacts("") end, "email")
      usage(function() local _ = c:search_contacts { name = "x" } end, "email")
    end)

    it("create, read, update and delete a contact", function()
      local c = iq()
      local made = c:create_contact { name = "Ada Lovelace", email = "ada@example.org", city = "London" }
      local e = only("POST", "/contact")
      assert.are.same({ name = "Ada Lovelace", email = "ada@example.org", city = "London" },
        helper.json.decode(e.body))
      assert.is_string(made.id)
      clear_log()
      assert.are.equal("Ada Lovelace", c:contact(made.id).name)
      only("GET", "/contact/" .. made.id)
      clear_log()
      local upd = c:update_contact(made.id, { city = "Perth" })
      e = only("PUT", "/contact/" .. made.id)
      assert.are.equal('{"city":"Perth"}', e.body)
      assert.are.equal("Perth", upd.city)
      clear_log()
      assert.is_true(c:delete_contact(made.id))
      only("DELETE", "/contact/" .. made.id)
      local err = raises(function() c:contact(made.id) end)
      assert.are.equal("http", err.kind)
      assert.are.equal(404, err.status)
      assert.are.equal("contact not found", err.message)
    end)

    it("checks path arguments before any request", function()
      local c = iq()
      usage(function() c:contact() end, "argument #1")
      usage(function() c:contact("") end, "empty")
      usage(function() c:delete_contact({}) end, "argument #1")
      usage(function() c:update_contact("id", "city=Perth") end, "argument #2")
    end)
  end)

  describe("chats", function()
    local function first_chat(c)
      local chats = c:chats():collect()
      clear_log()
      return chats[1], chats
    end

    it("chats() and chat(id)", function()
      local c = iq()
      local chat, all = first_chat(c)
      assert.are.equal(CHATS, #all)
      assert.are.equal(chat.title, c:chat(chat.id).title)
      only("GET", "/chat/" .. chat.id)
    end)

    it("chat_messages(id) and chat_message(id, message_id)", function()
      local c = iq()
      local chat = first_chat(c)
      local msgs = c:chat_messages(chat.id):collect()
      assert.is_true(#msgs >= 3)
      local e = only("GET", "/chat/" .. chat.id .. "/message")
      assert.are.equal("100", query_of(e).limit)
      clear_log()
      local m = c:chat_message(chat.id, msgs[2].id)
      assert.are.same(msgs[2], m)
      only("GET", "/chat/" .. chat.id .. "/message/" .. msgs[2].id)
    end)

    it("start_chat and send_message post their bodies", function()
      local c = iq()
      local ws = c:workspace()
      local contact = c:contacts { limit = 1 }:pages()().records[1]
      clear_log()
      local chat = c:start_chat { channel = ws.channels[1].id, message = "Hi there", contact = contact.id }
      local e = only("POST", "/chat")
      assert.are.same({ channel = ws.channels[1].id, message = "Hi there", contact = contact.id },
        helper.json.decode(e.body))
      assert.are.equal(contact.id, chat.contact)
      clear_log()
      local agent = c:team():collect()[2].id
      clear_log()
      local m = c:send_message(chat.id, { message = "How can I help?", agent = agent })
      e = only("POST", "/chat/" .. chat.id .. "/message")
      assert.are.same({ message = "How can I help?", agent = agent }, helper.json.decode(e.body))
      assert.are.equal("agent", m.sender_type)
    end)

    it("checks start_chat and send_message fields before any request", function()
      local c = iq()
      usage(function() c:start_chat { message = "m", agent = "a" } end, "channel")
      usage(function() c:start_chat { channel = "c", agent = "a" } end, "message")
      usage(function() c:start_chat { channel = "c", message = "m" } end, "one of 'agent', 'bot', 'contact'")
      usage(function() c:start_chat { channel = "c", message = "m", bot = "" } end, "one of")
      usage(function() c:start_chat() end, "channel")
      usage(function() c:send_message("id", { agent = "a" }) end, "message")
      usage(function() c:send_message("id", { message = "m", contact = converse.null }) end, "one of")
      usage(function() c:send_message(nil, { message = "m", bot = "b" }) end, "argument #1")
    end)

    it("update_chat sends a title or null", function()
      local c = iq()
      local chat = first_chat(c)
      local renamed = c:update_chat(chat.id, { title = "VIP" })
      assert.are.equal("VIP", renamed.title)
      assert.are.equal('{"title":"VIP"}', only("PUT", "/chat/" .. chat.id).body)
      clear_log()
      local reset = c:update_chat(chat.id, { title = converse.null })
      assert.are.equal('{"title":null}', only("PUT", "/chat/" .. chat.id).body)
      assert.are.equal(chat.title, reset.title)
    end)

    it("delete_chat returns true; a missing chat is a 404 error", function()
      local c = iq()
      local chat = first_chat(c)
      assert.is_true(c:delete_chat(chat.id))
      only("DELETE", "/chat/" .. chat.id)
      local err = raises(function() c:delete_chat(chat.id) end)
      assert.are.equal(404, err.status)
      assert.are.equal("http", err.kind)
      assert.is_false(err.retryable)
      err = raises(function() c:chat_messages(chat.id):collect() end)
      assert.are.equal(404, err.status)
    end)

    it("does not retry a failed POST", function()
      mock:control { type = "status", status = 503, method = "POST", path = PREFIX .. "/chat" }
      local err = raises(function() iq():start_chat { channel = "c", message = "m", bot = "b" } end)
      assert.are.equal(503, err.status)
      assert.is_false(err.retryable)
      assert.are.equal(1, #mock:log())
    end)
  end)

  describe("team", function()
    it("team() and team_member(id)", function()
      local c = iq()
      local team = c:team():collect()
      assert.are.equal(5, #team)
      only("GET", "/team")
      clear_log()
      assert.are.same(team[3], c:team_member(team[3].id))
      only("GET", "/team/" .. team[3].id)
    end)

    it("a wrong key is an auth error", function()
      local err = raises(function() iq { api_key = "nope" }:team():collect() end)
      assert.are.equal("auth", err.kind)
      assert.are.equal(401, err.status)
    end)
  end)
end)
