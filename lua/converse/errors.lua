--- Error objects (SPEC §2).
-- Every failure in converse raises one of these: a table with `kind`,
-- `status`, `code`, `message`, `method`, `url` (secrets redacted),
-- `retryable` and `attempts`, and a one-line `__tostring`.
-- The metatable is shared with the C core, which raises the same objects.
-- @module converse.errors
local core = require "converse.core"

local type, tostring, setmetatable, getmetatable = type, tostring, setmetatable, getmetatable
local error, pairs, ipairs, concat = error, pairs, ipairs, table.concat
local format, byte = string.format, string.byte
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
-- The authority ends at the first `/`, `?` or `#`, as every URL parser
-- (libcurl's included) reads it, so `http://a#@b/` shows host `a`.
-- @tparam string url
-- @treturn string
function M.redact_url(url)
  if type(url) ~= "string" then return url end
  if url:find("@", 1, true) then           -- userinfo only where there is an '@'
    local scheme, authority, rest = url:match("^(%a[%w+.-]*://)([^/?#]*)(.*)$")
    if scheme and authority:find("@", 1, true) then
      url = scheme .. "REDACTED@" .. authority:gsub("^.*@", "") .. rest
    end
  end
  -- Every name is part of the URL: when no secret word is anywhere in it,
  -- there is nothing to redact (this is every request of a pager, three
  -- times a page: a tenth of the cost of the substitution below).
  local lower = url:lower()
  local found = false
  for i = 1, #SECRET do
    if lower:find(SECRET[i], 1, true) then found = true break end
  end
  if not found then return url end
  return (url:gsub("([?&])([^=&#]+)=([^&#]*)", function(sep, k, v)
    if secret_name(k) then return sep .. k .. "=REDACTED" end
    return sep .. k .. "=" .. v
  end))
end

-- Replace every occurrence of `secret` in s, whatever its letter case.
local function redact_secret(s, secret)
  local ls, lsec = s:lower(), secret:lower()
  local a, b = ls:find(lsec, 1, true)
  if not a then return s end
  local out, i = {}, 1
  while a do
    out[#out + 1] = s:sub(i, a - 1)
    out[#out + 1] = "REDACTED"
    i = b + 1
    a, b = ls:find(lsec, i, true)
  end
  out[#out + 1] = s:sub(i)
  return concat(out)
end

-- The forms a secret may take in text: as is, and percent-encoded.
local function secret_forms(secret)
  local escaped = secret:gsub("[^%w%-%._~]", function(c) return format("%%%02X", byte(c)) end)
  if escaped ~= secret then return { secret, escaped } end
  return { secret }
end

-- Shorter secrets are not searched for: they would redact ordinary words
-- (a 1-letter test key would turn "network" into "networREDACTED").
M.MIN_SECRET = 4

--- Remove every secret from a string (any letter case, raw or percent-encoded).
-- @tparam string s
-- @tparam table secrets array of secret strings
-- @treturn string
function M.scrub_string(s, secrets)
  if type(s) ~= "string" or not secrets then return s end
  for _, secret in ipairs(secrets) do
    if #secret >= M.MIN_SECRET then
      for _, form in ipairs(secret_forms(secret)) do s = redact_secret(s, form) end
    end
  end
  return s
end

--- Scrub every string field of an error object (and of tables in it) in place:
-- the one place where secrets leave error objects.
-- @tparam table err
-- @tparam table secrets
-- @treturn table err
function M.scrub(err, secrets)
  if type(err) ~= "table" or not secrets or #secrets == 0 then return err end
  local function walk(t, depth)
    for k, v in pairs(t) do
      if type(v) == "string" then t[k] = M.scrub_string(v, secrets)
      elseif type(v) == "table" and depth < 4 and getmetatable(v) == nil then walk(v, depth + 1) end
    end
  end
  walk(err, 0)
  return err
end

-- Control characters (C0, DEL and C1) shown as \xHH: a server's message
-- must not drive the terminal that prints it.
local function escape_controls(s)
  s = s:gsub("[%z\1-\31\127]", function(c) return format("\\x%02x", byte(c)) end)
  return (s:gsub("\194([\128-\159])", function(c) return format("\\u%04x", byte(c)) end))
end
M.escape_controls = escape_controls

mt.__tostring = function(e)
  local parts = { "converse: ", tostring(e.kind or "?"), " error" }
  if e.status then parts[#parts + 1] = " " .. tostring(e.status) end
  if e.code then parts[#parts + 1] = " (" .. tostring(e.code) .. ")" end
  parts[#parts + 1] = ": " .. tostring(e.message or "")
  if e.method or e.url then
    parts[#parts + 1] = " [" .. tostring(e.method or "") .. (e.method and e.url and " " or "")
      .. tostring(M.redact_url(e.url) or "") .. "]"
  end
  if type(e.attempts) == "number" and e.attempts > 1 then
    parts[#parts + 1] = " after " .. e.attempts .. " attempts"
  end
  return escape_controls(concat(parts))
end

--- Create an error object.
-- @tparam table fields kind, message and any of status, code, method, url, retryable, attempts
-- @tparam[opt] table secrets strings scrubbed from every field (see `scrub`)
-- @treturn table the error object
function M.new(fields, secrets)
  local e = {}
  for k, v in pairs(fields) do e[k] = v end
  if e.retryable == nil then e.retryable = false end
  if e.url then e.url = M.redact_url(e.url) end
  return M.scrub(setmetatable(e, mt), secrets)
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
