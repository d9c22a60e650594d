--- Query strings and URLs.
-- Arrays encode as repeated parameters (`rep_id=a&rep_id=b`), booleans as
-- `true`/`false`, integers with every digit, everything percent-encoded;
-- keys are sorted so the same query always gives the same URL.
-- @module converse.query
local errors = require "converse.errors"
local core   = require "converse.core"

local type, pairs, sort, concat = type, pairs, table.sort, table.concat
local format, mtype = string.format, math.type

local M = {}

local NULL = core.null

--- Percent-encode everything but RFC 3986 unreserved characters.
function M.escape(s)
  return (s:gsub("[^%w%-%._~]", function(c) return format("%%%02X", c:byte()) end))
end

local function scalar(v, key)
  local t = type(v)
  if t == "string" then return v end
  if t == "boolean" then return v and "true" or "false" end
  if t == "number" then
    if mtype and mtype(v) == "integer" then return format("%d", v) end
    if v == v and v % 1 == 0 and v > -2^63 and v < 2^63 then return format("%.0f", v) end
    return format("%.17g", v)
  end
  errors.usage(("query parameter '%s': %s values are not allowed"):format(key, t))
end

--- Encode a query table.
-- @tparam table q
-- @treturn string without the leading `?` ("" for an empty table)
function M.encode(q)
  if q == nil then return "" end
  errors.check(q, "table", "query")
  local keys = {}
  for k in pairs(q) do
    if type(k) ~= "string" then errors.usage("query keys must be strings") end
    keys[#keys + 1] = k
  end
  sort(keys)
  local out = {}
  for i = 1, #keys do
    local k = keys[i]
    local v, ek = q[k], M.escape(k)
    if type(v) == "table" then
      for j = 1, #v do
        if v[j] ~= NULL then out[#out + 1] = ek .. "=" .. M.escape(scalar(v[j], k)) end
      end
    elseif v ~= NULL then
      out[#out + 1] = ek .. "=" .. M.escape(scalar(v, k))
    end
  end
  return concat(out, "&")
end

--- Split a URL into scheme, host, port and the rest.
-- @treturn table { scheme=, host=, port=, origin=, path= } or nil
function M.parse_url(url)
  local scheme, authority, rest = url:match("^(%a[%w+.-]*)://([^/?#]*)(.*)$")
  if not scheme then return nil end
  scheme = scheme:lower()
  authority = authority:gsub("^.*@", "")
  local host, port = authority:match("^(%[[^%]]+%]):?(%d*)$")
  if not host then host, port = authority:match("^([^:]*):?(%d*)$") end
  if not host or host == "" then return nil end
  port = tonumber(port) or (scheme == "https" and 443 or 80)
  host = host:lower()
  return {
    scheme = scheme, host = host, port = port,
    origin = scheme .. "://" .. host .. ":" .. port,
    path = (rest:match("^[^?#]*")),
  }
end

--- The endpoint a URL belongs to, for rate limiting: its path, no query.
function M.endpoint(url)
  local u = M.parse_url(url)
  return u and u.path or url
end

--- Join a base URL, a path and a query table.
function M.build(base, path, q)
  local url
  if path:find("^%a[%w+.-]*://") then
    url = path
  elseif path == "" then
    url = base
  else
    url = base:gsub("/+$", "") .. "/" .. path:gsub("^/+", "")
  end
  local qs = M.encode(q)
  if qs ~= "" then url = url .. (url:find("?", 1, true) and "&" or "?") .. qs end
  return url
end

--- Resolve a Location header against the URL it answered.
function M.resolve(base, location)
  if location:find("^%a[%w+.-]*://") then return location end
  local u = M.parse_url(base)
  local prefix = base:match("^(%a[%w+.-]*://[^/?#]*)")
  if location:sub(1, 2) == "//" then return u.scheme .. ":" .. location end
  if location:sub(1, 1) == "/" then return prefix .. location end
  local dir = (base:match("^[^?#]*")):gsub("[^/]*$", "")
  return dir .. location
end

return M
