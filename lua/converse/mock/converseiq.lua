--- Mock of the ConverseIQ public API v1 (seed 002), mounted at
-- `/converseiq/public/v1`: workspace, workspace/me, contact CRUD + search,
-- chat list/get/start/update/delete and messages (DESC order), team.
-- Lists use the `{data,page,limit,pages,total}` envelope with `page` (from 1)
-- and `limit` (1..100, default 20). State lives in memory, so created, updated
-- and deleted objects show in later requests until `/_reset`.
-- Errors: `{"status":N,"error":"<reason>","message":"..."}`.
-- @module converse.mock.converseiq
local json = require "converse.mock.json"
local data = require "converse.mock.data"
local util = require "converse.mock.util"
local http = require "converse.mock.http"

local type, ipairs, tostring, setmetatable = type, ipairs, tostring, setmetatable
local floor, lower = math.floor, string.lower
local null, ordered = json.null, json.ordered

local M = {}
local mt = { __index = M }

M.prefix = "/converseiq/public/v1"
M.auth = { header = "x-api-key" }

local CONTACT_FIELDS = { "name", "email", "phone", "ip", "origin", "description", "country",
  "zip_code", "city", "state", "address", "company", "lang" }
local CONTACT_ORDER = { "id", "name", "email", "phone", "ip", "origin", "description", "country",
  "zip_code", "city", "state", "address", "company", "lang", "created_at", "updated_at" }
local CHAT_ORDER = { "id", "title", "channel", "channel_type", "contact", "agent", "bot", "status",
  "created_at", "updated_at", "last_message_at" }
local MSG_ORDER = { "id", "chat", "message", "sender_type", "sender", "created_at" }

local function err(status, msg)
  return util.json(status, ordered({ status = status, error = http.REASONS[status] or "Error",
    message = msg }, { "status", "error", "message" }))
end

--- Create the ConverseIQ state.
-- @tparam table opts `seed`, `contacts` (40), `chats` (25), `start_date`, `days`
-- @treturn table vendor
function M.new(opts)
  local self = setmetatable({ opts = opts }, mt)
  self:reset()
  return self
end

local function stamp(self, t) return data.iso(t or self.clock) end

--- Regenerate the workspace from the seed.
function M:reset()
  local o = self.opts
  local rng = data.rng((o.seed or 1) * 17 + 3)
  self.rng = rng
  self.clock = data.parse_time(o.start_date or "2025-01-01")
  local span = (o.days or 90) * 86400
  self.workspace = ordered({ id = rng:uuid(), name = "Acme Support 🎧", domain = "acme.example",
    plan = "business", timezone = "Australia/Sydney", created_at = stamp(self, self.clock - 86400 * 400) },
    { "id", "name", "domain", "plan", "timezone", "created_at" })
  self.team, self.team_by = {}, {}
  for i = 1, 5 do
    local name = rng:name()
    local m = ordered({ id = rng:uuid(), name = name, email = data.slug(name) .. "@acme.example",
      role = i == 1 and "owner" or (i <= 2 and "admin" or "agent"),
      status = rng:chance(0.7) and "online" or "offline", created_at = stamp(self, self.clock - i * 86400) },
      { "id", "name", "email", "role", "status", "created_at" })
    self.team[i] = m; self.team_by[m.id] = m
  end
  self.channels = {}
  for _, kind in ipairs({ "LiveChatWeb", "WhatsApp", "Email" }) do
    self.channels[#self.channels + 1] = { id = rng:uuid(), type = kind }
  end
  self.channel_by = {}
  for _, c in ipairs(self.channels) do self.channel_by[c.id] = c end
  self.bots = { rng:uuid() }
  local ws = self.workspace
  ws.channels = json.array()
  for _, c in ipairs(self.channels) do
    ws.channels[#ws.channels + 1] = ordered({ id = c.id, type = c.type }, { "id", "type" })
  end
  ws.bots = json.array({ self.bots[1] })
  self.contacts, self.contact_by = {}, {}
  for i = 1, o.contacts or 40 do
    local name = rng:name()
    local t = self.clock + floor((i - 1) * span / (o.contacts or 40))
    local c = ordered({ id = rng:uuid(), name = name,
      email = rng:chance(0.9) and (data.slug(name) .. i .. "@example.com") or null,
      phone = rng:chance(0.5) and ("+61 4" .. rng:int(10000000, 99999999)) or null,
      ip = rng:int(1, 223) .. "." .. rng:int(0, 255) .. "." .. rng:int(0, 255) .. "." .. rng:int(1, 254),
      origin = "https://acme.example/" .. rng:pick({ "pricing", "help", "", "checkout?step=2" }),
      description = rng:chance(0.3) and rng:summary() or "", country = rng:pick({ "AU", "NZ", "NL", "US" }),
      zip_code = tostring(rng:int(1000, 9999)), city = rng:pick(data.CITIES), state = null,
      address = rng:chance(0.5) and (rng:int(1, 200) .. " George St") or null,
      company = rng:pick(data.COMPANIES), lang = rng:pick({ "en", "nl", "de", "ja" }),
      created_at = stamp(self, t), updated_at = stamp(self, t) }, CONTACT_ORDER)
    self.contacts[i] = c; self.contact_by[c.id] = c
  end
  self.chats, self.chat_by = {}, {}
  for i = 1, o.chats or 25 do
    local contact = self.contacts[rng:int(1, #self.contacts)]
    local channel = self.channels[rng:int(1, #self.channels)]
    local agent = self.team[rng:int(1, #self.team)]
    local t = self.clock + floor((i - 1) * span / (o.chats or 25))
    local chat = ordered({ id = rng:uuid(), title = contact.name, channel = channel.id,
      channel_type = channel.type, contact = contact.id, agent = agent.id, bot = null,
      status = rng:pick({ "open", "closed", "pending" }), created_at = stamp(self, t) }, CHAT_ORDER)
    chat.messages = {}
    for k = 1, rng:int(3, 10) do
      t = t + rng:int(5, 600)
      local who = k % 2 == 1 and "contact" or (rng:chance(0.5) and "agent" or "bot")
      local sender = who == "contact" and contact.id or (who == "agent" and agent.id or self.bots[1])
      chat.messages[k] = ordered({ id = rng:uuid(), chat = chat.id, message = rng:chat_line(),
        sender_type = who, sender = sender, created_at = stamp(self, t) }, MSG_ORDER)
    end
    chat.updated_at, chat.last_message_at = stamp(self, t), stamp(self, t)
    self.chats[i] = chat; self.chat_by[chat.id] = chat
  end
  self.clock = self.clock + span + 86400
  self.dirty = false
end

local function now(self) self.clock = self.clock + 1; return stamp(self) end

local function page_args(req)
  local page = util.int_arg(req.args, "page", 1)
  local limit = util.int_arg(req.args, "limit", 20)
  if not page or page < 1 then return nil, err(400, "page must be an integer >= 1") end
  if not limit or limit < 1 or limit > 100 then return nil, err(400, "limit must be between 1 and 100") end
  return page, limit
end

local function list(req, items, map)
  local page, limit = page_args(req)
  if not page then return limit end
  return util.json(200, util.envelope(items, page, limit, map))
end

local function chat_view(c)
  local v = {}
  for _, k in ipairs(CHAT_ORDER) do v[k] = c[k] end
  return ordered(v, CHAT_ORDER)
end

local function body(req)
  local b = json.decode(req.body or "")
  if type(b) ~= "table" or json.is_array(b) then return nil, err(400, "body must be a JSON object") end
  return b
end

local function check_contact(self, b, id)
  for _, f in ipairs(CONTACT_FIELDS) do
    local v = b[f]
    if v ~= nil and v ~= null and type(v) ~= "string" then return err(400, f .. " must be a string") end
  end
  if type(b.email) == "string" then
    if not b.email:match("^[^@%s]+@[^@%s]+%.[^@%s]+$") then return err(400, "email is not valid") end
    for _, c in ipairs(self.contacts) do
      if c.id ~= id and type(c.email) == "string" and lower(c.email) == lower(b.email) then
        return err(409, "a contact with this email already exists")
      end
    end
  end
end

local function set_contact(self, c, b)
  for _, f in ipairs(CONTACT_FIELDS) do if b[f] ~= nil then c[f] = b[f] end end
  c.updated_at = now(self)
end

local function on_behalf(b)
  for _, k in ipairs({ "agent", "bot", "contact" }) do
    if b[k] ~= nil and b[k] ~= null and type(b[k]) ~= "string" then return nil, k .. " must be a GUID string" end
  end
  if not (util.nonempty(b.agent) or util.nonempty(b.bot) or util.nonempty(b.contact)) then
    return nil, "one of agent, bot or contact is required"
  end
  return true
end

local function add_message(self, chat, b)
  local who = util.nonempty(b.agent) and "agent" or (util.nonempty(b.bot) and "bot" or "contact")
  local m = ordered({ id = self.rng:uuid(), chat = chat.id, message = b.message, sender_type = who,
    sender = b[who], created_at = now(self) }, MSG_ORDER)
  chat.messages[#chat.messages + 1] = m
  chat.updated_at, chat.last_message_at = m.created_at, m.created_at
  return m
end

local function routes(self, req)
  return {
    { "GET", "/workspace", function() return util.json(200, self.workspace) end },
    { "GET", "/workspace/me", function() return util.json(200, self.team[1]) end },
    { "GET", "/contact", function() return list(req, self.contacts) end },
    { "GET", "/contact/search", function()
      local email = req.args.email
      if not util.nonempty(email) then return err(400, "email is required") end
      local found = {}
      for _, c in ipairs(self.contacts) do
        if type(c.email) == "string" and lower(c.email) == lower(email) then found[#found + 1] = c end
      end
      return list(req, found)
    end },
    { "POST", "/contact", function()
      local b, e = body(req)
      if not b then return e end
      local bad = check_contact(self, b)
      if bad then return bad end
      local c = ordered({ id = self.rng:uuid(), created_at = now(self) }, CONTACT_ORDER)
      for _, f in ipairs(CONTACT_FIELDS) do c[f] = null end
      set_contact(self, c, b)
      self.contacts[#self.contacts + 1] = c; self.contact_by[c.id] = c
      self.dirty = true
      return util.json(200, c)
    end },
    { "GET", "/contact/([^/]+)", function(_, id)
      local c = self.contact_by[id]
      return c and util.json(200, c) or err(404, "contact not found")
    end },
    { "PUT", "/contact/([^/]+)", function(_, id)
      local c = self.contact_by[id]
      if not c then return err(404, "contact not found") end
      local b, e = body(req)
      if not b then return e end
      local bad = check_contact(self, b, id)
      if bad then return bad end
      set_contact(self, c, b)
      self.dirty = true
      return util.json(200, c)
    end },
    { "DELETE", "/contact/([^/]+)", function(_, id)
      if not self.contact_by[id] then return err(404, "contact not found") end
      self.contact_by[id] = nil
      for i, c in ipairs(self.contacts) do if c.id == id then table.remove(self.contacts, i); break end end
      self.dirty = true
      return { status = 200, headers = {}, body = "" }
    end },
    { "GET", "/chat", function() return list(req, self.chats, chat_view) end },
    { "POST", "/chat", function()
      local b, e = body(req)
      if not b then return e end
      if not util.nonempty(b.channel) then return err(400, "channel is required") end
      if not util.nonempty(b.message) then return err(400, "message is required") end
      local ok, why = on_behalf(b)
      if not ok then return err(400, why) end
      local channel = self.channel_by[b.channel]
      if not channel then return err(404, "channel not found") end
      if channel.type ~= "LiveChatWeb" and not util.nonempty(b.agent) and not util.nonempty(b.bot) then
        return err(400, "in " .. channel.type .. " messages can only be sent by an agent or a bot")
      end
      if b.chatflow ~= nil and b.chatflow ~= 0 and b.chatflow ~= 1 and b.chatflow ~= "0" and b.chatflow ~= "1" then
        return err(400, "chatflow must be 0 or 1")
      end
      local contact = util.nonempty(b.contact) and self.contact_by[b.contact]
      if util.nonempty(b.contact) and not contact then return err(404, "contact not found") end
      local t = now(self)
      local chat = ordered({ id = self.rng:uuid(), title = contact and contact.name or null,
        channel = channel.id, channel_type = channel.type, contact = contact and contact.id or null,
        agent = util.nonempty(b.agent) and b.agent or null, bot = util.nonempty(b.bot) and b.bot or null,
        status = "open", created_at = t, updated_at = t, last_message_at = t }, CHAT_ORDER)
      chat.messages = {}
      add_message(self, chat, b)
      table.insert(self.chats, chat); self.chat_by[chat.id] = chat
      self.dirty = true
      return util.json(200, chat_view(chat))
    end },
    { "GET", "/chat/([^/]+)", function(_, id)
      local c = self.chat_by[id]
      return c and util.json(200, chat_view(c)) or err(404, "chat not found")
    end },
    { "PUT", "/chat/([^/]+)", function(_, id)
      local c = self.chat_by[id]
      if not c then return err(404, "chat not found") end
      local b, e = body(req)
      if not b then return e end
      if b.title == nil then return err(400, "title is required (a string, or null to reset)") end
      if b.title ~= null and type(b.title) ~= "string" then return err(400, "title must be a string or null") end
      local contact = self.contact_by[c.contact]
      if b.title == null or b.title == "" then c.title = contact and contact.name or null else c.title = b.title end
      c.updated_at = now(self)
      self.dirty = true
      return util.json(200, chat_view(c))
    end },
    { "DELETE", "/chat/([^/]+)", function(_, id)
      if not self.chat_by[id] then return err(404, "chat not found") end
      self.chat_by[id] = nil
      for i, c in ipairs(self.chats) do if c.id == id then table.remove(self.chats, i); break end end
      self.dirty = true
      return { status = 200, headers = {}, body = "" }
    end },
    { "GET", "/chat/([^/]+)/message", function(_, id)
      local c = self.chat_by[id]
      if not c then return err(404, "chat not found") end
      local desc = {}
      for i = #c.messages, 1, -1 do desc[#desc + 1] = c.messages[i] end
      return list(req, desc)
    end },
    { "POST", "/chat/([^/]+)/message", function(_, id)
      local c = self.chat_by[id]
      if not c then return err(404, "chat not found") end
      local b, e = body(req)
      if not b then return e end
      if not util.nonempty(b.message) then return err(400, "message is required") end
      local ok, why = on_behalf(b)
      if not ok then return err(400, why) end
      local m = add_message(self, c, b)
      self.dirty = true
      return util.json(200, m)
    end },
    { "GET", "/chat/([^/]+)/message/([^/]+)", function(_, id, mid)
      local c = self.chat_by[id]
      if not c then return err(404, "chat not found") end
      for _, m in ipairs(c.messages) do if m.id == mid then return util.json(200, m) end end
      return err(404, "message not found")
    end },
    { "GET", "/team", function() return list(req, self.team) end },
    { "GET", "/team/([^/]+)", function(_, id)
      local m = self.team_by[id]
      return m and util.json(200, m) or err(404, "team member not found")
    end },
  }
end

--- Handle a request under the prefix.
-- @tparam table req
-- @tparam string path relative to the prefix
-- @treturn table|nil response
function M:handle(req, path)
  if #path > 1 and path:sub(-1) == "/" then path = path:sub(1, -2) end
  return util.route(routes(self, req), req, path)
end

--- 404/405 in the vendor's shape.
function M.not_found(what)
  if what == "method" then return err(405, "method not allowed") end
  return err(404, "not found")
end

--- The vendor's 401 response.
function M.unauthorized() return err(401, "invalid or missing API key") end

return M
