--- HTTP/1.1 message helpers for the mock server, with no I/O: parse a request
-- head, a query string and a chunked body; render a response head; format
-- dates. The socket loop (`converse.mock.server`) and any other front end
-- (nginx) drive these.
-- @module converse.mock.http
local tonumber, tostring, type, pairs, ipairs, next = tonumber, tostring, type, pairs, ipairs, next
local find, sub, gsub, lower, format, char, match, gmatch =
      string.find, string.sub, string.gsub, string.lower, string.format, string.char,
      string.match, string.gmatch
local concat, date, floor = table.concat, os.date, math.floor

local M = {}

M.REASONS = {
  [100] = "Continue", [200] = "OK", [201] = "Created", [202] = "Accepted",
  [204] = "No Content", [301] = "Moved Permanently", [302] = "Found",
  [303] = "See Other", [304] = "Not Modified", [307] = "Temporary Redirect",
  [308] = "Permanent Redirect", [400] = "Bad Request", [401] = "Unauthorized",
  [403] = "Forbidden", [404] = "Not Found", [405] = "Method Not Allowed",
  [408] = "Request Timeout", [409] = "Conflict", [411] = "Length Required",
  [413] = "Payload Too Large", [415] = "Unsupported Media Type",
  [422] = "Unprocessable Entity", [429] = "Too Many Requests",
  [431] = "Request Header Fields Too Large", [500] = "Internal Server Error",
  [501] = "Not Implemented", [502] = "Bad Gateway", [503] = "Service Unavailable",
  [504] = "Gateway Timeout",
}

--- Percent-decode a query component (`+` is a space).
-- @tparam string s
-- @treturn string
function M.unescape(s)
  s = gsub(s, "+", " ")
  return (gsub(s, "%%(%x%x)", function(h) return char(tonumber(h, 16)) end))
end

--- Percent-encode a string for a query or path component.
-- @tparam string s
-- @treturn string
function M.escape(s)
  return (gsub(s, "[^%w%-%._~]", function(c) return format("%%%02X", c:byte()) end))
end

--- Parse a query string.
-- @tparam string qs raw query (without `?`)
-- @treturn table args: name -> last value
-- @treturn table multi: name -> array of every value, in order
function M.parse_query(qs)
  local args, multi = {}, {}
  if not qs or qs == "" then return args, multi end
  for part in gmatch(qs, "[^&]+") do
    local k, v = match(part, "^([^=]*)=(.*)$")
    if not k then k, v = part, "" end
    k, v = M.unescape(k), M.unescape(v)
    local list = multi[k]
    if not list then list = {}; multi[k] = list end
    list[#list + 1] = v
    args[k] = v
  end
  return args, multi
end

--- Parse a request head (request line + header lines, without the blank line).
-- @tparam string head
-- @treturn table|nil request `{method, target, path, query, version, headers}`;
--   `headers` maps lower-case names to values (repeats joined with ", ")
-- @treturn[2] string error
function M.parse_head(head)
  local line_end = find(head, "\r\n", 1, true) or (#head + 1)
  local method, target, version = match(sub(head, 1, line_end - 1),
                                        "^(%u+) (%S+) HTTP/(%d%.%d)$")
  if not method then return nil, "bad request line" end
  local headers, list = {}, {}
  local pos = line_end + 2
  while pos <= #head do
    local e = find(head, "\r\n", pos, true) or (#head + 1)
    local line = sub(head, pos, e - 1)
    local name, value = match(line, "^([^:%s]+):%s*(.-)%s*$")
    if not name then return nil, "bad header line" end
    list[#list + 1] = { name, value }
    name = lower(name)
    if headers[name] then headers[name] = headers[name] .. ", " .. value
    else headers[name] = value end
    pos = e + 2
  end
  local path, query = match(target, "^([^?#]*)%??([^#]*)")
  return {
    method = method, target = target, path = path, query = query or "",
    version = version, headers = headers, header_list = list,
  }
end

--- Decode as much of a chunked body as `buf` holds, starting at `pos`.
-- @tparam string buf
-- @tparam number pos
-- @treturn string|nil body when the terminating chunk (and trailers) are in `buf`
-- @treturn number|string position after the body, or an error text
function M.dechunk(buf, pos)
  local parts = {}
  while true do
    local e = find(buf, "\r\n", pos, true)
    if not e then return nil end
    local size = tonumber(match(sub(buf, pos, e - 1), "^%s*(%x+)"), 16)
    if not size then return nil, "bad chunk size" end
    if size == 0 then
      local t = find(buf, "\r\n\r\n", e, true)
      if not t then
        if sub(buf, e, e + 3) == "\r\n\r\n" then t = e else return nil end
      end
      return concat(parts), t + 4
    end
    if #buf < e + 2 + size + 1 then return nil end
    parts[#parts + 1] = sub(buf, e + 2, e + 1 + size)
    pos = e + 2 + size + 2
  end
end

--- RFC 7231 date ("Sun, 06 Nov 1994 08:49:37 GMT").
-- @tparam number t unix seconds
-- @treturn string
function M.http_date(t) return date("!%a, %d %b %Y %H:%M:%S GMT", floor(t)) end

--- Normalise response headers to an ordered list of `{name, value}`.
-- @tparam table h map or list
-- @treturn table list
function M.header_list(h)
  if not h then return {} end
  if h[1] ~= nil or next(h) == nil then return h end
  local list = {}
  for k, v in pairs(h) do list[#list + 1] = { k, tostring(v) } end
  table.sort(list, function(a, b) return a[1] < b[1] end)
  return list
end

--- Find a response header (case-insensitive) in a header list.
-- @tparam table list
-- @tparam string name
-- @treturn string|nil
function M.get_header(list, name)
  name = lower(name)
  for _, h in ipairs(list) do
    if lower(h[1]) == name then return h[2] end
  end
  return nil
end

--- Render a response head.
-- @tparam number status
-- @tparam table list header list `{ {name, value}, ... }`
-- @treturn string head including the blank line
function M.render_head(status, list)
  local out = { format("HTTP/1.1 %d %s\r\n", status, M.REASONS[status] or "Unknown") }
  for i = 1, #list do
    out[#out + 1] = list[i][1] .. ": " .. tostring(list[i][2]) .. "\r\n"
  end
  out[#out + 1] = "\r\n"
  return concat(out)
end

--- Parse a duration such as "20ms", "1.5s", "250us" or a bare number of seconds.
-- @tparam string|number v
-- @treturn number|nil seconds
function M.duration(v)
  if type(v) == "number" then return v end
  if type(v) ~= "string" then return nil end
  local n, unit = match(v, "^%s*([%d%.]+)%s*(%a*)%s*$")
  n = tonumber(n)
  if not n then return nil end
  if unit == "" or unit == "s" then return n
  elseif unit == "ms" then return n / 1000
  elseif unit == "us" then return n / 1e6
  elseif unit == "m" or unit == "min" then return n * 60 end
  return nil
end

return M
