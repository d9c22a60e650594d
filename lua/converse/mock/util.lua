--- Shared helpers for the mock's vendor modules: JSON responses, a tiny
-- router, page/limit parsing and the list envelope.
-- @module converse.mock.util
local json = require "converse.mock.json"

local type, tonumber, ipairs, pairs, floor, ceil = type, tonumber, ipairs, pairs, math.floor, math.ceil
local setmetatable, getmetatable = setmetatable, getmetatable
local unpack = table.unpack or unpack
local match, find = string.match, string.find

local M = {}

--- A JSON response.
-- @tparam number status
-- @param value encoded with `converse.mock.json`
-- @tparam[opt] table headers list of `{name, value}`
-- @treturn table response
function M.json(status, value, headers)
  local list = { { "Content-Type", "application/json; charset=utf-8" } }
  if headers then for _, h in ipairs(headers) do list[#list + 1] = h end end
  return { status = status, headers = list, body = json.encode(value) }
end

--- A response whose body is already JSON text (a string or a list of pieces).
-- @tparam number status
-- @tparam string|table body
-- @tparam[opt] table headers
-- @treturn table response
function M.raw(status, body, headers)
  local list = { { "Content-Type", "application/json; charset=utf-8" } }
  if headers then for _, h in ipairs(headers) do list[#list + 1] = h end end
  return { status = status, headers = list, body = body }
end

--- Dispatch `req` over a route table.
-- Routes are `{ method, pattern, handler }`; `pattern` is a Lua pattern
-- anchored at both ends, matched against `path` (relative to the vendor
-- prefix); captures are passed to `handler(req, ...)`.
-- @tparam table routes
-- @tparam table req
-- @tparam string path
-- @treturn table|nil response, or nil, "not_found" | "method"
function M.route(routes, req, path)
  local path_matched = false
  for _, r in ipairs(routes) do
    local caps = { match(path, "^" .. r[2] .. "$") }
    if caps[1] ~= nil then
      if r[1] == req.method or (r[1] == "GET" and req.method == "HEAD") then
        if not find(r[2], "(", 1, true) then caps = {} end
        return r[3](req, unpack(caps))
      end
      path_matched = true
    end
  end
  return nil, path_matched and "method" or "not_found"
end

--- Parse an integer query parameter.
-- @tparam table args
-- @tparam string name
-- @tparam number default
-- @treturn number|nil value (nil when present but not an integer)
function M.int_arg(args, name, default)
  local v = args[name]
  if v == nil or v == "" then return default end
  local n = tonumber(v)
  if not n or n ~= floor(n) then return nil end
  return n
end

--- Build a `{data,page,limit,pages,total}` envelope for a slice of `items`.
-- @tparam table items full (filtered) list
-- @tparam number page 1-based
-- @tparam number limit
-- @tparam[opt] function map item -> JSON value
-- @treturn table envelope (key order fixed)
function M.envelope(items, page, limit, map)
  local total = #items
  local data = json.array()
  local first = (page - 1) * limit + 1
  for i = first, math.min(total, first + limit - 1) do
    data[#data + 1] = map and map(items[i]) or items[i]
  end
  return json.ordered({ data = data, page = page, limit = limit,
                        pages = ceil(total / limit), total = total },
                      { "data", "page", "limit", "pages", "total" })
end

--- Copy a table (one level).
-- @tparam table t
-- @treturn table
function M.copy(t)
  local c = {}
  for k, v in pairs(t) do c[k] = v end
  return setmetatable(c, getmetatable(t))
end

--- Is `v` a non-empty string?
-- @param v
-- @treturn boolean
function M.nonempty(v) return type(v) == "string" and v ~= "" end

return M
