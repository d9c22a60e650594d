--- AgentX Support Export API (seed 004; DeepConverse, seed 001):
-- conversations and messages over a time window, `x-api-key`, cursor
-- paging, at most 1000 records a page, 3 requests/second per endpoint.
-- `converse.deepconverse` is the same constructor.
-- @module converse.agentx
local vendor = require "converse.vendor"
local time   = require "converse.time"
local usage  = vendor.usage

local type, tonumber, ipairs, pairs = type, tonumber, ipairs, pairs
local sort, concat = table.sort, table.concat

local M = {}

M.BASE_URL = "https://api.converseapps.com"
M.MAX_PER_PAGE = 1000
M.RATE_LIMIT = { per_second = 3 }

local AgentX = vendor.define {
  name = "agentx",
  endpoints = {
    conversations = { "LIST", "/conversations/export/v1/conversations" },
    messages      = { "LIST", "/conversations/export/v1/messages" },
  },
}

--- Unix seconds from a number or a UTC "YYYY-MM-DD[ HH:MM[:SS]]" string
-- (converse.time.parse: impossible dates such as 2025-02-30 are refused).
-- @return seconds, or nil and a message
M.to_unix = time.parse

function AgentX:_list(_, q)
  local t0, e0 = M.to_unix(q.start_time)
  if not t0 then usage("start_time " .. e0) end
  local t1, e1 = M.to_unix(q.end_time)
  if not t1 then usage("end_time " .. e1) end
  if t1 <= t0 then usage("end_time must be after start_time") end
  q.start_time, q.end_time = t0, t1
  q.bot_name = q.bot_name or self.options.bot_name
  if type(q.bot_name) ~= "string" or q.bot_name == "" then
    usage("bot_name is required (in the call or the constructor)")
  end
  q.per_page = vendor.take_size(q, "per_page", M.MAX_PER_PAGE, M.MAX_PER_PAGE)
  local cursor = q.cursor
  q.cursor = nil
  return {
    style = "cursor", query = q, records = "data", cursor_param = "cursor",
    cursor_field = "cursor", cursor = cursor,
  }
end

-- One message as a transcript line, or nil for messages without text.
local function line(msg)
  local t = msg.type
  if msg.userInput ~= nil and (t == "UserInput" or t == nil) then
    local text = msg.userInput
    if type(text) == "table" then text = text.text or text.txt end
    if type(text) ~= "string" or not text:find("%S") then return nil end   -- nothing said
    return "User:\t" .. text:gsub("%s*\n%s*", " ")
  end
  local out = msg.outMsg
  if type(out) ~= "table" then
    if type(msg.text) == "string" then return "Bot:\t" .. msg.text:gsub("%s*\n%s*", " ") end
    return nil
  end
  local parts = {}
  for _, step in ipairs(type(out.steps) == "table" and out.steps or {}) do
    if type(step) == "table" and type(step.text) == "string" then
      parts[#parts + 1] = step.text:gsub("%s*\n%s*", " ")
    end
  end
  if type(out.text) == "string" then parts[#parts + 1] = out.text end
  local opts = {}
  for _, o in ipairs(type(out.options) == "table" and out.options or {}) do
    local txt = type(o) == "table" and (o.txt or o.text) or o
    if type(txt) == "string" then opts[#opts + 1] = txt end
  end
  if #opts > 0 then parts[#parts + 1] = "[" .. concat(opts, " | ") .. "]" end
  if #parts == 0 then return nil end
  return "Bot:\t" .. concat(parts, " ")
end

--- Render a conversation as text: one `User:\t...` or `Bot:\t...` line per
-- message, in time order (bot steps joined with spaces, quick-reply options
-- listed as `[Yes | No]`, line breaks inside a message folded to spaces).
-- @param messages an array of messages, or a conversation id (its messages are fetched)
-- @tparam[opt] table q for an id: `start_time`, `end_time` (default: all time), `bot_name`
-- @treturn string
function AgentX:transcript(messages, q)
  if type(messages) == "string" then
    local query = { conversation_id = messages, start_time = 0,
                    end_time = os.time() + 86400 }
    for k, v in pairs(q or {}) do query[k] = v end
    messages = self:messages(query):collect()
  elseif type(messages) ~= "table" then
    usage("transcript expects an array of messages or a conversation id")
  end
  local list = {}
  for i, m in ipairs(messages) do list[i] = { m = m, i = i } end
  sort(list, function(a, b)
    local ta, tb = tonumber(a.m.time) or 0, tonumber(b.m.time) or 0
    if ta ~= tb then return ta < tb end
    return a.i < b.i
  end)
  local lines = {}
  for _, e in ipairs(list) do
    local l = line(e.m)
    if l then lines[#lines + 1] = l end
  end
  return concat(lines, "\n")
end

M.class = AgentX

--- Create an AgentX (DeepConverse) export client.
-- @tparam table opts `api_key`, `bot_name` (default for every call), `base_url`
--   (default https://api.converseapps.com), every converse.client option;
--   the rate limit defaults to 3 requests/second per endpoint
function M.new(opts)
  vendor.check_new("agentx", opts)
  if opts.bot_name ~= nil and type(opts.bot_name) ~= "string" then
    usage("converse.agentx: bot_name must be a string")
  end
  return vendor.new(AgentX, opts, vendor.client_options(opts,
    { base_url = M.BASE_URL, rate_limit = M.RATE_LIMIT },
    { header = "x-api-key", value = opts.api_key }))
end

return M
