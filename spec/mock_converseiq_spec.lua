-- converse.mock: the ConverseIQ public API v1 (seed 002).
local helper = require "helper"

local KEY = { ["x-api-key"] = "k" }
local BASE = "/converseiq/public/v1"

describe("converse.mock converseiq", function()
  local mock
  setup(function() mock = helper.start_mock{ contacts = 45, chats = 12, calls = 5 } end)
  teardown(function() mock:stop() end)
  before_each(function() mock:reset() end)

  local function get(p) return mock:get(BASE .. p, KEY) end
  local function send(method, p, body) return mock:request(method, BASE .. p, body, KEY) end

  it("serves workspace and workspace/me", function()
    local ws = get("/workspace").json
    assert.is_string(ws.id)
    assert.is_true(#ws.channels >= 1)
    assert.equal("owner", get("/workspace/me").json.role)
  end)

  it("lists with the {data,page,limit,pages,total} envelope, default limit 20", function()
    local r = get("/contact")
    assert.matches('^{"data":%[', r.body)
    assert.equal(20, #r.json.data)
    assert.equal(1, r.json.page); assert.equal(20, r.json.limit)
    assert.equal(45, r.json.total); assert.equal(3, r.json.pages)
    assert.equal(5, #get("/contact?page=3&limit=20").json.data)
    assert.equal(45, #get("/contact?limit=100").json.data)
  end)

  it("rejects limit outside 1..100", function()
    assert.equal(400, get("/contact?limit=0").status)
    assert.equal(400, get("/contact?limit=101").status)
    assert.equal(400, get("/chat?page=0").status)
  end)

  it("creates, reads, searches, updates and deletes a contact", function()
    local r = send("POST", "/contact", { name = "Zoë Test", email = "zoe@test.example", city = "Zürich" })
    assert.equal(200, r.status)
    local id = r.json.id
    assert.equal("Zürich", get("/contact/" .. id).json.city)
    local found = get("/contact/search?email=ZOE@test.example").json.data
    assert.equal(1, #found)
    assert.equal(id, found[1].id)
    assert.equal("Basel", send("PUT", "/contact/" .. id, { city = "Basel" }).json.city)
    assert.equal(46, get("/contact").json.total)
    local d = send("DELETE", "/contact/" .. id)
    assert.equal(200, d.status)
    assert.equal("", d.body)
    assert.equal(404, get("/contact/" .. id).status)
  end)

  it("validates contact bodies", function()
    assert.equal(400, send("POST", "/contact", "[1]").status)
    assert.equal(400, send("POST", "/contact", { email = "not-an-email" }).status)
    assert.equal(400, send("POST", "/contact", { name = 5 }).status)
    send("POST", "/contact", { email = "dup@test.example" })
    assert.equal(409, send("POST", "/contact", { email = "dup@test.example" }).status)
    assert.equal(400, get("/contact/search").status)
    assert.equal(404, send("PUT", "/contact/nope", { name = "x" }).status)
  end)

  it("starts a chat, sends messages and lists them newest first", function()
    local ws = get("/workspace").json
    local contact = get("/contact?limit=1").json.data[1]
    local web = ws.channels[1]
    assert.equal("LiveChatWeb", web.type)
    local r = send("POST", "/chat", { channel = web.id, message = "hello", contact = contact.id })
    assert.equal(200, r.status)
    local chat = r.json
    assert.equal(contact.name, chat.title)
    local m = send("POST", "/chat/" .. chat.id .. "/message", { message = "second", bot = ws.bots[1] })
    assert.equal(200, m.status)
    local msgs = get("/chat/" .. chat.id .. "/message").json.data
    assert.equal(2, #msgs)
    assert.equal("second", msgs[1].message)
    assert.equal("hello", msgs[2].message)
    assert.equal("second", get("/chat/" .. chat.id .. "/message/" .. m.json.id).json.message)
    assert.equal(13, get("/chat").json.total)
  end)

  it("validates start_chat and send_message bodies", function()
    local ws = get("/workspace").json
    local web, other = ws.channels[1].id, ws.channels[2].id
    assert.equal(400, send("POST", "/chat", { message = "x", agent = "a" }).status)        -- no channel
    assert.equal(400, send("POST", "/chat", { channel = web, agent = "a" }).status)        -- no message
    assert.equal(400, send("POST", "/chat", { channel = web, message = "x" }).status)      -- nobody
    assert.equal(404, send("POST", "/chat", { channel = "nope", message = "x", agent = "a" }).status)
    local contact = get("/contact?limit=1").json.data[1].id
    assert.equal(400, send("POST", "/chat", { channel = other, message = "x", contact = contact }).status)
    local chat = get("/chat?limit=1").json.data[1].id
    assert.equal(400, send("POST", "/chat/" .. chat .. "/message", { agent = "a" }).status)
    assert.equal(400, send("POST", "/chat/" .. chat .. "/message", { message = "x" }).status)
  end)

  it("renames a chat, resets the title with null, and deletes it", function()
    local chat = get("/chat?limit=1").json.data[1]
    assert.equal("Renamed", send("PUT", "/chat/" .. chat.id, { title = "Renamed" }).json.title)
    local reset = send("PUT", "/chat/" .. chat.id, '{"title":null}').json
    assert.equal(chat.title, reset.title)
    assert.equal(400, send("PUT", "/chat/" .. chat.id, { title = 5 }).status)
    assert.equal(200, send("DELETE", "/chat/" .. chat.id).status)
    assert.equal(404, get("/chat/" .. chat.id).status)
    assert.equal(404, get("/chat/" .. chat.id .. "/message").status)
  end)

  it("lists and gets team members", function()
    local team = get("/team").json
    assert.equal(5, team.total)
    assert.equal(team.data[2].email, get("/team/" .. team.data[2].id).json.email)
    assert.equal(404, get("/team/nope").status)
  end)

  it("answers unknown paths and methods in its error shape", function()
    local r = get("/nope")
    assert.equal(404, r.status)
    assert.equal(404, r.json.status)
    assert.equal(405, send("PATCH", "/contact").status)
  end)
end)
