--- Error objects (SPEC §2).
-- Every failure in converse raises one of these: a table with `kind`,
-- `status`, `code`, `message`, `method`, `url` (secrets redacted),
-- `retryable` and `attempts`, and a one-line `__tostring`.
-- The metatable is shared with the C core, which raises the same objects.
-- @module converse.errors
local core = require "converse.core"

local type, tostring, setmetatable, getmetatable = type, tostring, setmetatable, getmetatable
local error, pairs, concat = error, pairs, table.concat
local getinfo = debug.getinfo

local M = {}

local mt = core.error_mt()
M.metatable = mt

M.KINDS = {
  usage = true, network = true, timeout = true, http = true,
  auth = true, rate_limited = true, json = true,
}

-- Query parameter names whose values are never shown.
local SECRET = { "key", "token", "secret", "password", "passwd", "auth", "signature", "sig" }

local function secret_name(name)
  name = name:lower()
  for i = 1, #SECRET do
    if name:find(SECRET[i], 1, true) then return true end
  end
  return false
end

--- Redact credentials from a URL: userinfo and secret-looking query values.
-- @tparam string url
-- @treturn string
function M.redact_url(url)
  if type(url) ~= "string" then return url end
  url = url:gsub("^(%a[%w+.-]*://)[^/@]*@", "%1REDACTED@")
  return (url:gsub("([?&])([^=&#]+)=([^&#]*)", function(sep, k, v)
    if secret_name(k) then return sep .. k .. "=REDACTED" end
    return sep .. k .. "=" .. v
  end))
end

mt.__tostring = function(e)
  local parts = { "converse: ", tostring(e.kind or "?"), " error" }
  if e.status then parts[#parts + 1] = " " .. tostring(e.status) end
  if e.code then parts[#parts + 1] = " (" .. tostring(e.code) .. ")" end
  parts[#parts + 1] = ": " .. tostring(e.message or "")
  if e.method or e.url then
    parts[#parts + 1] = " [" .. tostring(e.method or "") .. (e.method and e.url and " " or "")
      .. tostring(M.redact_url(e.url) or "") .. "]"
  end
  if e.attempts and e.attempts > 1 then
    parts[#parts + 1] = " after " .. e.attempts .. " attempts"
  end
  return (concat(parts):gsub("[\r\n]+", " "))
end

--- Create an error object.
-- @tparam table fields kind, message and any of status, code, method, url, retryable, attempts
-- @treturn table the error object
function M.new(fields)
  local e = {}
  for k, v in pairs(fields) do e[k] = v end
  if e.retryable == nil then e.retryable = false end
  if e.url then e.url = M.redact_url(e.url) end
  return setmetatable(e, mt)
end

--- Raise an error object.
-- @tparam string kind one of `M.KINDS`
-- @tparam string message
-- @tparam[opt] table fields extra fields
function M.raise(kind, message, fields)
  local e = M.new(fields or {})
  e.kind, e.message = kind, message
  error(e, 0)
end

-- Files of this library (the directory of this file): never blamed for misuse.
local LIBDIR = (getinfo(1, "S").source:match("^@(.*[/\\])")) or "\0"

--- Raise a "usage" error blamed on the first caller outside the library, so
-- the position is right however deep (or tail-called) the check is.
-- @tparam string message
function M.usage(message)
  for level = 2, 40 do
    local info = getinfo(level, "Sl")
    if not info then break end
    if info.what ~= "C" and (info.currentline or 0) > 0
       and info.source:sub(2, #LIBDIR + 1) ~= LIBDIR then
      message = info.short_src .. ":" .. info.currentline .. ": " .. message
      break
    end
  end
  M.raise("usage", message)
end

--- Check an argument's type, raising a usage error blamed on the caller.
function M.check(value, expected, name)
  local t = type(value)
  if t == expected then return value end
  M.usage(("bad argument '%s' (%s expected, got %s)"):format(name, expected, t))
end

--- True for error objects raised by converse.
function M.is(v)
  return type(v) == "table" and getmetatable(v) == mt
end

return M
