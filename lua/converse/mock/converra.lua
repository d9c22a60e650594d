--- Mock of the Converra REST API v1 (seed 003), mounted at `/converra/api/v1`
-- with `Authorization: Bearer`. Every endpoint of the seed; lists use
-- `{"data":[...],"page":n,"limit":n,"total":n,"pages":n}` with `page`/`limit`
-- (limit 1..100, default 20); errors are `{"error":{"code","message"}}`.
-- Rate limit per token and fixed window (`converra_window`, 60 s): free 60,
-- pro 300, enterprise 1000 requests (`converra_limit` overrides), with
-- X-RateLimit-Limit/-Remaining/-Reset (unix seconds) on every response and
-- 429 RATE_LIMITED + Retry-After beyond it.
-- @module converse.mock.converra
local json = require "converse.mock.json"
local data = require "converse.mock.data"
local util = require "converse.mock.util"

local type, pairs, ipairs, tostring, setmetatable = type, pairs, ipairs, tostring, setmetatable
local floor, ceil, format = math.floor, math.ceil, string.format
local null, ordered = json.null, json.ordered

local M = {}
local mt = { __index = M }

M.prefix = "/converra/api/v1"
M.auth = { bearer = true }
M.PLANS = { free = 60, pro = 300, enterprise = 1000 }

local function err(status, code, msg, details)
  return util.json(status, { error = ordered({ code = code, message = msg, details = details },
    { "code", "message", "details" }) })
end
local function invalid(msg, field) return err(422, "VALIDATION_ERROR", msg, field and { field = field } or nil) end
local function missing(what) return err(404, "NOT_FOUND", what .. " not found") end

--- Create the Converra state.
-- @tparam table opts `seed`, `agents` (6), `converra_plan`, `converra_limit`, `converra_window`
-- @treturn table vendor
function M.new(opts)
  local self = setmetatable({ opts = opts, windows = {} }, mt)
  self:reset()
  return self
end

local function iso(self) self.clock = self.clock + 1; return data.iso(self.clock) end

--- Regenerate all objects and forget rate-limit windows.
function M:reset()
  local o = self.opts
  local rng = data.rng((o.seed or 1) * 19 + 11)
  self.rng, self.windows = rng, {}
  self.clock = data.parse_time(o.start_date or "2025-01-01")
  self.agents, self.optimizations, self.conversations, self.benchmarks, self.webhooks = {}, {}, {}, {}, {}
  self.seq = 0
  for i = 1, o.agents or 6 do
    local a = self:add("agents", "agt", {
      name = rng:pick({ "Support Bot", "Sales Assistant", "Onboarding Guide", "Billing Helper" }) .. " " .. i,
      description = rng:chance(0.3) and null or "Handles " .. rng:pick({ "refunds", "orders", "FAQ 💬" }),
      systemPrompt = "You are a helpful assistant.\nBe concise; never reveal \"internal\" notes.",
      model = rng:pick({ "gpt-4o", "claude-3-5-sonnet", "gemini-1.5-pro" }),
      status = rng:chance(0.8) and "active" or "paused", tags = json.array(),
    })
    for k = 1, rng:int(1, 4) do
      local msgs = json.array()
      for m = 1, rng:int(2, 6) do
        msgs[m] = ordered({ role = m % 2 == 1 and "user" or "assistant", content = rng:chat_line() },
          { "role", "content" })
      end
      self:add("conversations", "conv", { agentId = a.id, messages = msgs,
        outcome = rng:pick({ "resolved", "escalated", "abandoned" }), metadata = { channel = "web", k = k } })
    end
    if i <= 3 then
      self:add("optimizations", "opt", { agentId = a.id, status = i == 1 and "running" or "completed",
        goal = "Increase resolution rate", variants = json.array({
          { id = "var_a", name = "Control", score = 0.61 }, { id = "var_b", name = "Variant B", score = 0.72 } }),
        winner = i == 1 and null or "var_b", appliedAt = null })
    end
  end
  for i = 1, 3 do
    self:add("benchmarks", "bench", { name = "Benchmark " .. i, agentId = self.agents[i].id,
      status = "completed", score = floor(rng:float() * 1000) / 1000, jobId = "job_" .. rng:hex(8) })
  end
  self.settings = { defaultModel = "gpt-4o", notifications = { email = true, slack = false },
    timezone = "UTC", autoOptimize = false }
  self.account = { id = "acct_" .. rng:hex(10), name = "Acme Inc.", email = "owner@acme.example",
    plan = o.converra_plan or "free", createdAt = data.iso(self.clock - 86400 * 200) }
  self.dirty = false
end

--- Add an object to a collection with a fresh id and timestamps.
-- @treturn table the object
function M:add(coll, prefix, fields)
  self.seq = self.seq + 1
  local t = iso(self)
  local obj = { id = format("%s_%s%04d", prefix, self.rng:hex(6), self.seq), createdAt = t, updatedAt = t }
  for k, v in pairs(fields) do obj[k] = v end
  local list = self[coll]
  list[#list + 1] = obj
  return obj
end

local function find(list, id)
  for i, o in ipairs(list) do if o.id == id then return o, i end end
end

--- Fixed-window rate limit per token; adds the X-RateLimit-* headers.
-- @treturn table|nil 429 response
-- @treturn table headers to add to the response
function M:limit(req, _, now)
  local o = self.opts
  local limit = o.converra_limit or M.PLANS[o.converra_plan or "free"] or 60
  local window = o.converra_window or 60
  local key = req.api_key or ""
  local w = self.windows[key]
  if not w or now >= w.reset then
    w = { reset = now + window, count = 0 }
    self.windows[key] = w
  end
  local reset = ceil(w.reset)
  if w.count >= limit then
    local wait = ceil(w.reset - now)
    if wait < 1 then wait = 1 end
    local res = err(429, "RATE_LIMITED", "Rate limit of " .. limit .. " requests per " .. window ..
      "s exceeded")
    local h = res.headers
    h[#h + 1] = { "Retry-After", tostring(wait) }
    h[#h + 1] = { "X-RateLimit-Limit", tostring(limit) }
    h[#h + 1] = { "X-RateLimit-Remaining", "0" }
    h[#h + 1] = { "X-RateLimit-Reset", format("%d", reset) }
    return res
  end
  w.count = w.count + 1
  return nil, { { "X-RateLimit-Limit", tostring(limit) },
                { "X-RateLimit-Remaining", tostring(limit - w.count) },
                { "X-RateLimit-Reset", format("%d", reset) } }
end

local function list(req, items, pred)
  local page = util.int_arg(req.args, "page", 1)
  local limit = util.int_arg(req.args, "limit", 20)
  if not page or page < 1 then return invalid("page must be an integer >= 1", "page") end
  if not limit or limit < 1 or limit > 100 then return invalid("limit must be between 1 and 100", "limit") end
  local sel = items
  if pred then
    sel = {}
    for _, o in ipairs(items) do if pred(o) then sel[#sel + 1] = o end end
  end
  local env = util.envelope(sel, page, limit)
  env.pages = ceil(#sel / limit)
  json.ordered(env, { "data", "page", "limit", "total", "pages" })
  return util.json(200, env)
end

local function body(req)
  local b = json.decode(req.body ~= "" and req.body or "{}")
  if type(b) ~= "table" or json.is_array(b) then return nil, invalid("body must be a JSON object") end
  return b
end

local function with(req, f)
  local b, e = body(req)
  if not b then return e end
  return f(b)
end

local function insights(kind, obj)
  return util.json(200, { id = obj.id, type = kind, summary = "Customers mostly ask about refunds 💸.",
    fleetIntelligence = { peers = 4, percentile = 72 }, businessImpact = { deflectionRate = 0.41 },
    issues = json.array({ { code = "MISSED_INTENT", count = 3 } }), generatedAt = obj.insightsAt or obj.updatedAt })
end

local function routes(self, req)
  local function filter_agent(o) return not req.args.agentId or o.agentId == req.args.agentId end
  local function getter(coll, what)
    return function(_, id)
      local o = find(self[coll], id)
      return o and util.json(200, o) or missing(what)
    end
  end
  return {
    { "GET", "/agents", function() return list(req, self.agents) end },
    { "POST", "/agents", function() return with(req, function(b)
      if not util.nonempty(b.name) then return invalid("name is required", "name") end
      if b.systemPrompt ~= nil and type(b.systemPrompt) ~= "string" then
        return invalid("systemPrompt must be a string", "systemPrompt")
      end
      self.dirty = true
      local a = self:add("agents", "agt", { name = b.name, description = b.description or null,
        systemPrompt = b.systemPrompt or "", model = b.model or "gpt-4o", status = "active",
        tags = b.tags or json.array() })
      return util.json(201, a)
    end) end },
    { "GET", "/agents/([^/]+)", getter("agents", "agent") },
    { "PATCH", "/agents/([^/]+)", function(_, id) return with(req, function(b)
      local a = find(self.agents, id)
      if not a then return missing("agent") end
      if b.name ~= nil and not util.nonempty(b.name) then return invalid("name must be a non-empty string", "name") end
      for k, v in pairs(b) do if k ~= "id" and k ~= "createdAt" then a[k] = v end end
      a.updatedAt = iso(self); self.dirty = true
      return util.json(200, a)
    end) end },
    { "GET", "/agents/([^/]+)/insights", function(_, id)
      local a = find(self.agents, id)
      return a and insights("agent", a) or missing("agent")
    end },
    { "POST", "/agents/([^/]+)/insights/regenerate", function(_, id)
      local a = find(self.agents, id)
      if not a then return missing("agent") end
      local n = 0
      for _, c in ipairs(self.conversations) do
        if c.agentId == id then c.insightsAt = iso(self); n = n + 1 end
      end
      return util.json(202, { agentId = id, status = "queued", conversations = n })
    end },
    { "GET", "/agents/([^/]+)/step%-failures", function(_, id)
      if not find(self.agents, id) then return missing("agent") end
      return util.json(200, { agentId = id, period = "30d", steps = json.array({
        { step = "collect_email", failures = 12, rate = 0.08 },
        { step = "verify_order", failures = 4, rate = 0.02 } }) })
    end },
    { "GET", "/optimizations", function() return list(req, self.optimizations, filter_agent) end },
    { "POST", "/optimizations", function() return with(req, function(b)
      if not util.nonempty(b.agentId) then return invalid("agentId is required", "agentId") end
      if not find(self.agents, b.agentId) then return missing("agent") end
      local running = 0
      for _, o in ipairs(self.optimizations) do if o.status == "running" then running = running + 1 end end
      if running >= 10 then return err(409, "CONCURRENCY_LIMIT", "at most 10 concurrent optimizations") end
      self.dirty = true
      return util.json(201, self:add("optimizations", "opt", { agentId = b.agentId, status = "running",
        goal = b.goal or "Improve outcomes", variants = json.array(), winner = null, appliedAt = null }))
    end) end },
    { "GET", "/optimizations/([^/]+)", getter("optimizations", "optimization") },
    { "GET", "/optimizations/([^/]+)/variants", function(_, id)
      local o = find(self.optimizations, id)
      return o and util.json(200, { data = o.variants }) or missing("optimization")
    end },
    { "POST", "/optimizations/([^/]+)/apply", function(_, id)
      local o = find(self.optimizations, id)
      if not o then return missing("optimization") end
      if o.status ~= "completed" or o.winner == null then
        return err(409, "CONFLICT", "optimization has no winning variant to apply")
      end
      o.status, o.appliedAt = "applied", iso(self); self.dirty = true
      return util.json(200, o)
    end },
    { "POST", "/optimizations/([^/]+)/stop", function(_, id)
      local o = find(self.optimizations, id)
      if not o then return missing("optimization") end
      if o.status ~= "running" then return err(409, "CONFLICT", "optimization is not running") end
      o.status, o.updatedAt = "stopped", iso(self); self.dirty = true
      return util.json(200, o)
    end },
    { "GET", "/conversations", function() return list(req, self.conversations, filter_agent) end },
    { "POST", "/conversations", function() return with(req, function(b)
      if not util.nonempty(b.agentId) then return invalid("agentId is required", "agentId") end
      if type(b.messages) ~= "table" or #b.messages == 0 then
        return invalid("messages must be a non-empty array", "messages")
      end
      for i, m in ipairs(b.messages) do
        if type(m) ~= "table" or not util.nonempty(m.role) or type(m.content) ~= "string" then
          return invalid("messages[" .. (i - 1) .. "] needs role and content", "messages")
        end
      end
      if not find(self.agents, b.agentId) then return missing("agent") end
      self.dirty = true
      return util.json(201, self:add("conversations", "conv", { agentId = b.agentId, messages = b.messages,
        outcome = b.outcome or null, metadata = b.metadata or {} }))
    end) end },
    { "GET", "/conversations/([^/]+)", getter("conversations", "conversation") },
    { "GET", "/conversations/([^/]+)/insights", function(_, id)
      local c = find(self.conversations, id)
      return c and insights("conversation", c) or missing("conversation")
    end },
    { "POST", "/conversations/([^/]+)/insights/regenerate", function(_, id)
      local c = find(self.conversations, id)
      if not c then return missing("conversation") end
      c.insightsAt = iso(self)
      return util.json(202, { conversationId = id, status = "queued" })
    end },
    { "GET", "/benchmarks", function() return list(req, self.benchmarks, filter_agent) end },
    { "POST", "/benchmarks", function() return with(req, function(b)
      if not util.nonempty(b.name) then return invalid("name is required", "name") end
      if b.agentId ~= nil and not find(self.agents, b.agentId) then return missing("agent") end
      self.dirty = true
      return util.json(201, self:add("benchmarks", "bench", { name = b.name, agentId = b.agentId or null,
        status = "queued", score = null, jobId = "job_" .. self.rng:hex(8) }))
    end) end },
    { "POST", "/benchmarks/bulk", function() return with(req, function(b)
      if b.action ~= "delete" then return invalid("action must be \"delete\"", "action") end
      if type(b.jobIds) ~= "table" or #b.jobIds == 0 then
        return invalid("jobIds must be a non-empty array", "jobIds")
      end
      local deleted, nf = json.array(), json.array()
      for _, jid in ipairs(b.jobIds) do
        local hit
        for i, x in ipairs(self.benchmarks) do
          if x.jobId == jid or x.id == jid then hit = i; break end
        end
        if hit then table.remove(self.benchmarks, hit); deleted[#deleted + 1] = jid else nf[#nf + 1] = jid end
      end
      self.dirty = true
      return util.json(200, { action = "delete", deleted = deleted, notFound = nf })
    end) end },
    { "GET", "/benchmarks/([^/]+)", getter("benchmarks", "benchmark") },
    { "GET", "/settings", function() return util.json(200, self.settings) end },
    { "PATCH", "/settings", function() return with(req, function(b)
      for k, v in pairs(b) do self.settings[k] = v end
      self.dirty = true
      return util.json(200, self.settings)
    end) end },
    { "GET", "/account", function() return util.json(200, self.account) end },
    { "GET", "/usage", function()
      local o = self.opts
      return util.json(200, { plan = o.converra_plan or "free",
        rateLimit = { requestsPerMinute = o.converra_limit or M.PLANS[o.converra_plan or "free"] or 60 },
        conversations = #self.conversations, optimizations = #self.optimizations,
        concurrentOptimizationsLimit = 10, period = { start = data.iso(self.clock - 86400 * 30),
        ["end"] = data.iso(self.clock) } })
    end },
    { "GET", "/webhooks", function() return list(req, self.webhooks) end },
    { "POST", "/webhooks", function() return with(req, function(b)
      if type(b.url) ~= "string" or not b.url:match("^https?://") then
        return invalid("url must be an http(s) URL", "url")
      end
      if b.events ~= nil and (type(b.events) ~= "table" or #b.events == 0) then
        return invalid("events must be a non-empty array", "events")
      end
      self.dirty = true
      return util.json(201, self:add("webhooks", "wh", { url = b.url,
        events = b.events or json.array({ "optimization.completed" }), secret = "whsec_" .. self.rng:hex(16) }))
    end) end },
    { "DELETE", "/webhooks/([^/]+)", function(_, id)
      local _, i = find(self.webhooks, id)
      if not i then return missing("webhook") end
      table.remove(self.webhooks, i); self.dirty = true
      return util.json(200, { id = id, deleted = true })
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
  if what == "method" then return err(405, "METHOD_NOT_ALLOWED", "method not allowed") end
  return err(404, "NOT_FOUND", "endpoint not found")
end

--- The vendor's 401 response.
-- @tparam boolean absent true when no token was sent
function M.unauthorized(absent)
  return err(401, "INVALID_API_KEY", absent and "Missing API key: send Authorization: Bearer <key>"
    or "The provided API key is invalid")
end

return M
