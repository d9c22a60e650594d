--- Fault injection: arm faults for the next N requests matching a method and
-- a path prefix, then let them rewrite the request, replace the response or
-- transform it. See docs/mock.md for every fault type and its fields.
-- @module converse.mock.faults
local json = require "converse.mock.json"
local http = require "converse.mock.http"
local socket_ok, socket = pcall(require, "socket")

local type, tostring, tonumber, ipairs, setmetatable = type, tostring, tonumber, ipairs, setmetatable
local sub, find, rep, upper, format = string.sub, string.find, string.rep, string.upper, string.format
local concat, floor = table.concat, math.floor
local now = socket_ok and socket.gettime or os.time

local M = {}
local mt = { __index = M }

-- Where each fault type acts: "before" replaces the response without calling
-- the vendor, "request" rewrites the request, "after" transforms the response.
M.TYPES = {
  status = "before", rate_limit = "before", redirect = "before",
  repeat_cursor = "request", repeat_page = "request",
  drop = "after", truncate = "after", invalid_utf8 = "after", deep_nesting = "after",
  slow = "after", latency = "after", chunked = "after", gzip = "after", close = "after",
}

--- A new, empty fault table.
-- @treturn table
function M.new() return setmetatable({ list = {}, next_id = 0 }, mt) end

--- Arm one fault.
-- @tparam table f fault description (`type`, `method`, `path`, `times`, `skip`, ...)
-- @treturn number|nil id
-- @treturn[2] string error
function M:arm(f)
  if type(f) ~= "table" then return nil, "fault must be an object" end
  local kind = f.type
  if kind == "rate-limit" then kind = "rate_limit" end
  if not M.TYPES[kind] then return nil, "unknown fault type: " .. tostring(kind) end
  if kind == "status" and f.status ~= nil and not tonumber(f.status) then
    return nil, "status must be a number"
  end
  if kind == "latency" and not http.duration(f.delay or f.latency) then
    return nil, "latency needs delay (seconds or \"20ms\")"
  end
  self.next_id = self.next_id + 1
  local fault = {}
  for k, v in pairs(f) do fault[k] = v end
  fault.id, fault.type = self.next_id, kind
  fault.method = f.method and f.method ~= "*" and upper(f.method) or nil
  fault.path = f.path or "/"
  fault.times = f.forever and math.huge or tonumber(f.times or f.count or 1) or 1
  fault.skip = tonumber(f.skip or 0) or 0
  self.list[#self.list + 1] = fault
  return fault.id
end

--- Remove every armed fault.
function M:clear() self.list = {} end

--- Faults still armed (for `GET /_control`).
-- @treturn table array
function M:armed()
  local out = json.array()
  for _, f in ipairs(self.list) do
    local c = {}
    for k, v in pairs(f) do c[k] = v end
    if c.times == math.huge then c.times = json.null; c.forever = true end
    out[#out + 1] = c
  end
  return out
end

--- Take the faults that apply to `req` (consuming one use of each).
-- @tparam table req
-- @treturn table list of faults (possibly empty)
function M:take(req)
  local hits, keep = {}, {}
  for _, f in ipairs(self.list) do
    local match = (not f.method or f.method == req.method) and sub(req.path, 1, #f.path) == f.path
    if match and f.skip > 0 then f.skip = f.skip - 1; match = false end
    if match then
      hits[#hits + 1] = f
      f.times = f.times - 1
    end
    if f.times > 0 then keep[#keep + 1] = f end
  end
  self.list = keep
  return hits
end

local function body_value(f, default)
  local b = f.body
  if b == nil then return json.encode(default) end
  if type(b) == "string" then return b end
  return json.encode(b)
end

local function retry_after(f)
  local v = f.retry_after
  if v == nil then return nil end
  if f.retry_after_date or v == "date" then
    return http.http_date(now() + (tonumber(f.seconds or f.retry_after_seconds) or
                                   (tonumber(v) or 1)))
  end
  return tostring(v)
end

--- The response a "before" fault produces instead of calling the vendor.
-- @tparam table f fault
-- @tparam table req
-- @treturn table response
function M.respond(f, req)
  local headers = { { "Content-Type", "application/json; charset=utf-8" } }
  if type(f.headers) == "table" then
    for k, v in pairs(f.headers) do headers[#headers + 1] = { k, tostring(v) } end
  end
  if f.type == "redirect" then
    local location = f.location
    if not location then
      location = (f.to or "http://127.0.0.1:1"):gsub("/+$", "") .. req.target
    end
    headers[#headers + 1] = { "Location", location }
    return { status = tonumber(f.status) or 302, headers = headers,
             body = json.encode({ redirect = location }) }
  end
  local status = f.type == "rate_limit" and (tonumber(f.status) or 429) or (tonumber(f.status) or 500)
  local ra = retry_after(f)
  if f.type == "rate_limit" and not ra then ra = "1" end
  if ra then headers[#headers + 1] = { "Retry-After", ra } end
  return { status = status, headers = headers,
           body = body_value(f, { error = { code = "INJECTED_FAULT",
                                            message = "injected " .. status .. " by converse.mock" } }) }
end

local function flat(body)
  if type(body) == "table" then return concat(body) end
  return body or ""
end

--- Apply an "after" fault to a response (in place).
-- @tparam table f fault
-- @tparam table res
-- @treturn table res
function M.transform(f, res)
  local t = f.type
  if t == "drop" then
    if f.before_head then res.drop_before_head = true
    else res.drop_after = tonumber(f.bytes or f.after or 0) or 0 end
    res.close = true
  elseif t == "truncate" then
    local body = flat(res.body)
    local n = tonumber(f.bytes) or floor(#body * (tonumber(f.fraction) or 0.5))
    res.body = sub(body, 1, n)
    res.truncated = true
  elseif t == "invalid_utf8" then
    local body = flat(res.body)
    local pos = find(body, ':"', 1, true) or find(body, '"', 1, true)
    local bad = f.bytes or "\255\254\192\128"
    if pos then
      local q = find(body, '"', pos, true)
      res.body = sub(body, 1, q) .. bad .. sub(body, q + 1)
    else
      res.body = body .. bad
    end
  elseif t == "deep_nesting" then
    local depth = tonumber(f.depth) or 100000
    local inner = rep("[", depth) .. rep("]", depth)
    res.body = f.wrap and format(f.wrap, inner) or inner
    res.headers = { { "Content-Type", "application/json; charset=utf-8" } }
  elseif t == "slow" then
    res.trickle = { bytes = tonumber(f.bytes) or 16, interval = http.duration(f.interval) or 0.05 }
  elseif t == "latency" then
    res.delay = (res.delay or 0) + http.duration(f.delay or f.latency)
  elseif t == "chunked" then
    res.chunked = true
  elseif t == "gzip" then
    res.force_gzip = true
  elseif t == "close" then
    res.close = true
  end
  return res
end

return M
