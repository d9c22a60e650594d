--- The Redis connection behind shared rate limits (`rate_limit.shared =
-- "redis://..."`): just enough of Redis to run one Lua script atomically.
--
-- Inside nginx it uses Debian's lua-nginx-redis (resty.redis, module
-- `nginx.redis`) over cosockets, pooled with set_keepalive. Standalone it
-- speaks RESP2 itself over luasocket, which converse already uses: Debian 12
-- packages lua-redis only for Lua 5.1-5.3, and the limiter needs four
-- commands (AUTH, SELECT, EVAL, INFO), about 60 lines.
-- @module converse.redis
local errors = require "converse.errors"

local type, tonumber, tostring, concat, setmetatable = type, tonumber, tostring, table.concat,
  setmetatable
local sub, byte, format = string.sub, string.byte, string.format

local M = {}

--- Parse `redis://[:password@]host[:port][/db]`.
-- @treturn table { host, port, password, db } or nil, message
function M.parse_url(url)
  local bad = "a URL like redis://host:6379 or redis://:password@host:6379/0 expected"
  local rest = type(url) == "string" and url:match("^redis://(.*)$")
  if not rest then return nil, bad end
  local auth, hostpart = rest:match("^(.*)@([^@]*)$")
  local host, port, db = (hostpart or rest):match("^([^:/]+):?(%d*)/?(%d*)$")
  if not host then return nil, bad end
  local password = auth and auth:match("^:?(.*)$")
  return { host = host, port = tonumber(port) or 6379, password = password ~= "" and password or nil,
           db = tonumber(db) }
end

-- ---- standalone: RESP2 over luasocket ----------------------------------------

local Conn = {}
Conn.__index = Conn

local function encode(args)
  local out = { "*" .. #args .. "\r\n" }
  for i = 1, #args do
    local s = tostring(args[i])
    out[#out + 1] = "$" .. #s .. "\r\n" .. s .. "\r\n"
  end
  return concat(out)
end

-- One reply: value, or nil + message (a Redis error, "closed", "timeout").
function Conn:read()
  local line, err = self.sock:receive("*l")
  if not line then return nil, err end
  local kind, rest = byte(line), sub(line, 2)
  if kind == 43 then return rest end                           -- + simple string
  if kind == 45 then return nil, rest, true end                -- - error
  if kind == 58 then return tonumber(rest) end                 -- : integer
  if kind == 36 then                                           -- $ bulk string
    local n = tonumber(rest)
    if n < 0 then return false end
    local data, e2 = self.sock:receive(n + 2)
    if not data then return nil, e2 end
    return sub(data, 1, n)
  end
  if kind == 42 then                                           -- * array
    local n, arr = tonumber(rest), {}
    for i = 1, n do
      local v, e3, server = self:read()
      if v == nil then return nil, e3, server end
      arr[i] = v
    end
    return arr
  end
  return nil, "bad reply from Redis: " .. format("%q", line)
end

function Conn:call(...)
  local ok, err = self.sock:send(encode { ... })
  if not ok then return nil, err end
  return self:read()
end

function Conn.release() end                  -- kept open for the next call

function Conn:close() self.sock:close() end

local function connect_socket(u, timeout)
  local socket = require "socket"
  local sock = socket.tcp()
  sock:settimeout(timeout)
  local ok, err = sock:connect(u.host, u.port)
  if not ok then sock:close() return nil, err end
  sock:setoption("tcp-nodelay", true)
  local c = setmetatable({ sock = sock, fresh = true }, Conn)
  if u.password then
    local r, e = c:call("AUTH", u.password)
    if not r then c:close() return nil, e end
  end
  if u.db then
    local r, e = c:call("SELECT", u.db)
    if not r then c:close() return nil, e end
  end
  return c
end

-- ---- inside nginx: resty.redis ------------------------------------------------

local Resty = {}
Resty.__index = Resty

function Resty:call(cmd, ...)
  local f = self.red[cmd:lower()]
  local res, err = f(self.red, ...)
  if res == nil then return nil, err, err and not err:find("^closed") and not err:find("^timeout") end
  if res == ngx.null then return false end   -- luacheck: ignore 113 (ngx)
  return res
end

function Resty:release() self.red:set_keepalive(10000, 16) end

function Resty:close() self.red:close() end

local function connect_resty(u, timeout)
  local redis = require "nginx.redis"
  local red = redis:new()
  red:set_timeout(timeout * 1000)
  local ok, err = red:connect(u.host, u.port)
  if not ok then return nil, err end
  local c = setmetatable({ red = red, fresh = red:get_reused_times() == 0 }, Resty)
  if c.fresh then
    if u.password then
      local r, e = red:auth(u.password)
      if not r then red:close() return nil, e end
    end
    if u.db then
      local r, e = red:select(u.db)
      if not r then red:close() return nil, e end
    end
  end
  return c
end

--- Connect: cosockets inside nginx (where the phase has them), luasocket elsewhere.
-- @tparam table u from `parse_url`
-- @tparam number timeout seconds
-- @return connection with `:call(cmd, ...)`, `:release()`, `:close()` and `fresh`
--   (a new connection, not one from nginx's pool); or nil, message
function M.connect(u, timeout)
  local ngx = rawget(_G, "ngx")
  if type(ngx) == "table" and ngx.socket and require("converse.transport").ngx_phase() then
    return connect_resty(u, timeout)
  end
  return connect_socket(u, timeout)
end

--- Run a Lua script (EVAL: Redis keeps the compiled script by its hash, so
-- sending the text each time costs a few hundred bytes, not a compile).
-- @return the script's reply, or nil, message [, true when Redis itself refused]
function M.eval(conn, script, keys, args)
  local cmd = { "EVAL", script, #keys }
  for i = 1, #keys do cmd[#cmd + 1] = keys[i] end
  for i = 1, #args do cmd[#cmd + 1] = args[i] end
  return conn:call((table.unpack or unpack)(cmd))   -- luacheck: ignore 113
end

M.usage = errors.usage
return M
