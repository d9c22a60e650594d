--- The mock's request handler: `app:handle(req) -> res`, independent of any
-- socket loop (the luasocket server drives it; an nginx content handler can
-- too). It owns the vendors, authentication, fault injection, global latency,
-- gzip, the request log and the control API under `/_`.
--
-- Request table: `method, path, query, target, version, headers` (lower-case
-- names), `body`, `conn` (connection id), `time` (seconds).
-- Response table: `status, headers` (list of `{name, value}`), `body` (string
-- or list of strings), and transport hints the loop honours: `delay`,
-- `chunked`, `close`, `drop_after`, `drop_before_head`, `trickle`.
-- @module converse.mock.app
local json   = require "converse.mock.json"
local http   = require "converse.mock.http"
local util   = require "converse.mock.util"
local faults = require "converse.mock.faults"
local gzip   = require "converse.mock.gzip"

local type, pairs, ipairs, tostring, setmetatable, pcall, require =
      type, pairs, ipairs, tostring, setmetatable, pcall, require
local sub, find, lower, match = string.sub, string.find, string.lower, string.match
local concat = table.concat
local ok_socket, socket = pcall(require, "socket")
local gettime = ok_socket and socket.gettime or os.time

local M = {}
local mt = { __index = M }

--- Vendor modules, in the order they are matched.
M.VENDORS = { "converz", "agentx", "converseiq", "converra" }

--- Create the handler.
-- @tparam table opts see `converse.mock.start` (seed, sizes, api_key, latency,
--   plans and rate windows, gzip, chunked)
-- @treturn table app
function M.new(opts)
  opts = opts or {}
  local self = setmetatable({
    opts = opts, faults = faults.new(), log = {}, next_id = 0, counts = {},
    latency = http.duration(opts.latency) or 0, vendors = {}, started = gettime(),
  }, mt)
  for _, name in ipairs(M.VENDORS) do
    local mod = require("converse.mock." .. name)
    self.vendors[#self.vendors + 1] = { name = name, mod = mod, state = mod.new(opts) }
  end
  return self
end

--- Reset vendor state, faults, the log and the request counts.
function M:reset()
  for _, v in ipairs(self.vendors) do v.state:reset() end
  self.faults:clear()
  self.log = {}
  self.counts = {}
  self.latency = http.duration(self.opts.latency) or 0
end

local function credential(vendor, req)
  local auth = vendor.mod.auth
  if auth.bearer then
    local h = req.headers.authorization
    return h and match(h, "^[Bb]earer%s+(%S+)%s*$") or nil
  end
  local v = req.headers[auth.header]
  if v and v ~= "" then return v end
  return nil
end

local function log_entry(self, req)
  self.next_id = self.next_id + 1
  local e = json.ordered({
    id = self.next_id, conn = req.conn or 0, time = req.time or gettime(),
    method = req.method, path = req.path, query = req.query, target = req.target,
    headers = req.headers, body_size = #(req.body or ""),
    body = (#(req.body or "") <= 4096) and req.body or nil,
  }, { "id", "conn", "time", "method", "path", "query", "target", "headers", "body_size", "body" })
  self.log[#self.log + 1] = e
  return e
end

-- Requests per API key, endpoint and second (whole unix seconds of
-- arrival), with how many of them were refused with a 429: the oracle for
-- "never above the rate limit" (GET /_counts).
local function count(self, key, path, t, limited)
  local by_path = self.counts[key]
  if not by_path then by_path = {}; self.counts[key] = by_path end
  local by_second = by_path[path]
  if not by_second then by_second = {}; by_path[path] = by_second end
  local sec = math.floor(t)
  local c = by_second[sec]
  if not c then c = { 0, 0 }; by_second[sec] = c end
  c[1] = c[1] + 1
  if limited then c[2] = c[2] + 1 end
end

local function counts_body(self)
  local list = json.array()
  local keys = {}
  for k in pairs(self.counts) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do
    local paths = {}
    for p in pairs(self.counts[k]) do paths[#paths + 1] = p end
    table.sort(paths)
    for _, p in ipairs(paths) do
      local secs = {}
      for sec in pairs(self.counts[k][p]) do secs[#secs + 1] = sec end
      table.sort(secs)
      for _, sec in ipairs(secs) do
        local c = self.counts[k][p][sec]
        list[#list + 1] = json.ordered({ key = k, path = p, second = sec, requests = c[1], limited = c[2] },
          { "key", "path", "second", "requests", "limited" })
      end
    end
  end
  return list
end

-- Control API ---------------------------------------------------------------

local function control(self, req)
  local body = req.body ~= "" and json.decode(req.body) or {}
  if type(body) ~= "table" then return util.json(400, { error = "control body must be JSON" }) end
  local list
  if json.is_array(body) then list = body
  elseif body.faults then list = body.faults
  elseif body.type then list = { body }
  else list = {} end
  if body.action == "reset" then self:reset() end
  if body.action == "clear_faults" then self.faults:clear() end
  if body.action == "clear_log" then self.log = {} end
  if body.latency ~= nil then self.latency = http.duration(body.latency) or 0 end
  if body.gzip ~= nil then self.opts.gzip = body.gzip end
  if body.chunked ~= nil then self.opts.chunked = body.chunked and true or false end
  local ids = json.array()
  for _, f in ipairs(list) do
    local id, err = self.faults:arm(f)
    if not id then return util.json(400, { error = err }) end
    ids[#ids + 1] = id
  end
  return util.json(200, { ok = true, armed = ids })
end

local function internal(self, req)
  local p = req.path
  if p == "/_control" and req.method == "POST" then return control(self, req)
  elseif p == "/_control" and req.method == "GET" then
    return util.json(200, { faults = self.faults:armed(), latency = self.latency })
  elseif p == "/_reset" and req.method == "POST" then
    self:reset()
    return util.json(200, { ok = true })
  elseif p == "/_log" and req.method == "GET" then
    local list = json.array()
    for i, e in ipairs(self.log) do list[i] = e end
    return util.json(200, list)
  elseif p == "/_log" and req.method == "DELETE" then
    self.log = {}
    return util.json(200, { ok = true })
  elseif p == "/_counts" and req.method == "GET" then
    return util.json(200, counts_body(self))
  elseif p == "/_counts" and req.method == "DELETE" then
    self.counts = {}
    return util.json(200, { ok = true })
  elseif p == "/_info" or p == "/_health" then
    return util.json(200, { ok = true, pid = self.pid or json.null, uptime = gettime() - self.started,
      vendors = { converz = "/converz/api/v1", agentx = "/agentx",
                  converseiq = "/converseiq/public/v1", converra = "/converra/api/v1" } })
  elseif p == "/_shutdown" and req.method == "POST" then
    self.shutdown = true
    local res = util.json(200, { ok = true })
    res.close = true
    return res
  end
  return util.json(404, { error = "unknown control endpoint " .. p })
end

-- Dispatch ------------------------------------------------------------------

local function not_found(vendor, what, req)
  if vendor and vendor.mod.not_found then return vendor.mod.not_found(what, req) end
  if what == "method" then return util.json(405, { error = "method not allowed" }) end
  return util.json(404, { error = "not found: " .. req.path })
end

local function dispatch(self, req)
  for _, v in ipairs(self.vendors) do
    local prefix = v.mod.prefix
    local rest = sub(req.path, 1, #prefix) == prefix and sub(req.path, #prefix + 1)
    if rest and (rest == "" or sub(rest, 1, 1) == "/") then
      local key = credential(v, req)
      if not key or (self.opts.api_key and key ~= self.opts.api_key) then
        return v.mod.unauthorized(key == nil)
      end
      req.api_key = key
      local extra
      if v.state.limit then
        local limited, headers = v.state:limit(req, rest, gettime())
        count(self, key, req.path, req.time or gettime(), limited ~= nil)
        if limited then return limited end
        extra = headers
      else
        count(self, key, req.path, req.time or gettime(), false)
      end
      local res, why = v.state:handle(req, rest)
      if not res then res = not_found(v, why, req) end
      if extra then
        res.headers = http.header_list(res.headers)
        for _, h in ipairs(extra) do res.headers[#res.headers + 1] = h end
      end
      return res
    end
  end
  return not_found(nil, "not_found", req)
end

local function maybe_gzip(self, req, res)
  if res.gzipped then return res end                  -- once is enough
  local mode = self.opts.gzip
  if mode == nil then mode = "auto" end
  local accept = req.headers["accept-encoding"]
  if not (accept and find(lower(accept), "gzip", 1, true)) then return res end
  if not res.force_gzip and (mode == "never" or mode == false) then return res end
  local body = res.body or ""
  if type(body) == "table" then
    local n = 0
    for i = 1, #body do n = n + #body[i] end
    if not res.force_gzip and mode ~= "always" and n > (self.opts.gzip_max or 1048576) then return res end
    body = concat(body)
  elseif not res.force_gzip and mode ~= "always" and #body > (self.opts.gzip_max or 1048576) then
    return res
  end
  if body == "" then return res end
  res.body = gzip.encode(body)
  res.gzipped = true
  res.headers = http.header_list(res.headers)
  res.headers[#res.headers + 1] = { "Content-Encoding", "gzip" }
  res.headers[#res.headers + 1] = { "Vary", "Accept-Encoding" }
  return res
end

--- Handle one request.
-- @tparam table req
-- @treturn table response
function M:handle(req)
  req.args, req.multi = http.parse_query(req.query)
  req.target = req.target or (req.query ~= "" and req.path .. "?" .. req.query or req.path)
  if sub(req.path, 1, 2) == "/_" then return internal(self, req) end
  local entry = log_entry(self, req)
  local hits = self.faults:take(req)
  local res, applied = nil, {}
  for _, f in ipairs(hits) do
    local kind = faults.TYPES[f.type]
    if kind == "before" and not res then
      res = faults.respond(f, req); applied[#applied + 1] = f.type
    elseif kind == "request" then
      if f.type == "repeat_page" then
        req.args.page = tostring(f.page or 1)
        req.multi.page = { req.args.page }
      else
        req.repeat_cursor = f.cursor or true
      end
      applied[#applied + 1] = f.type
    end
  end
  local fresh = not res
  if fresh then res = dispatch(self, req) end
  if self.opts.chunked then res.chunked = true end
  -- Faults change the content (truncate, invalid_utf8 ...) or the delivery
  -- (drop, slow, chunked ...); gzip comes after both, as a server would
  -- compress what it sends: a truncated body is a valid gzip of short JSON.
  for _, f in ipairs(hits) do
    if faults.TYPES[f.type] == "after" then
      if f.type == "gzip" then res.force_gzip = true
      else faults.transform(f, res) end
      applied[#applied + 1] = f.type
    end
  end
  if fresh or res.force_gzip then res = maybe_gzip(self, req, res) end
  local delay = http.duration(req.headers["x-mock-latency"]) or 0
  res.delay = (res.delay or 0) + self.latency + delay
  entry.status = res.status or 200
  if #applied > 0 then entry.faults = applied end
  return res
end

return M
