--- PostgreSQL connections for the work queue and the postgres sink, over
-- Debian's lua-sql-postgres (LuaSQL: libpq's PQexec, one statement string
-- at a time, every value as text).
--
-- * A connection is opened lazily, with defaults added to the conninfo
--   unless it sets them: `connect_timeout=10`, TCP keepalives (10 s idle,
--   5 s interval, 3 probes) and `tcp_user_timeout=30000`, so a server that
--   vanishes (network partition, lost machine) is noticed within about 30
--   seconds instead of a blocked PQexec forever; `application_name=converse`.
--   The session sets the server side to match: keepalives, UTC, standard
--   strings, `idle_in_transaction_session_timeout` (a worker that stops
--   inside a transaction releases its row locks).
-- * Values are sent as SQL literals built here (`lit`): standard conforming
--   strings, so a quote is doubled and nothing else changes; a NUL byte is
--   refused (PostgreSQL text cannot hold one).
-- * A failed statement is told apart from a lost connection by asking the
--   server again (ROLLBACK inside a transaction, else `SELECT 1`): a
--   statement error raises kind "io", code "POSTGRES"; a lost or refused
--   connection raises code "PG_UNAVAILABLE" with `retryable = true`, and the
--   next statement outside a transaction connects again. A connection lost
--   inside a transaction is never silently replaced: the transaction fails.
-- * `shared(conninfo)` gives one connection per conninfo per process, so a
--   sink and a queue on the same database share it -- and its transactions:
--   the postgres sink commits a page and its partition's checkpoint together.
-- @module converse.sync.queue.pg
local errors = require "converse.errors"

local type, tostring, tonumber, pcall, setmetatable, ipairs =
  type, tostring, tonumber, pcall, setmetatable, ipairs
local find, gsub, format = string.find, string.gsub, string.format
local concat = table.concat

local M = {}
local Conn = {}
Conn.__index = Conn
M.Conn = Conn

--- Client-side defaults added to a conninfo that does not set them.
M.DEFAULTS = {
  { "connect_timeout", "10" }, { "keepalives", "1" }, { "keepalives_idle", "10" },
  { "keepalives_interval", "5" }, { "keepalives_count", "3" }, { "tcp_user_timeout", "30000" },
  { "application_name", "converse" },
}

local function pg_error(message, code, retryable)
  return errors.new { kind = "io", code = code, message = message, retryable = retryable or false }
end

--- A conninfo with its password hidden (`password=...`, `postgres://u:p@h`).
-- @tparam string conninfo
-- @treturn string
function M.redact(conninfo)
  if type(conninfo) ~= "string" then return conninfo end
  local s = gsub(conninfo, "(password%s*=%s*)'[^']*'", "%1REDACTED")
  s = gsub(s, "(password%s*=%s*)[^%s']+", "%1REDACTED")
  s = gsub(s, "(//[^:/@%s]*):[^@/%s]*@", "%1:REDACTED@")   -- user:password@ of a URI
  return s
end

local function is_uri(conninfo) return conninfo:match("^postgres[%w]*://") ~= nil end

--- The conninfo with the client-side defaults it does not set.
-- @tparam string conninfo `key=value ...` or a `postgresql://` URI
-- @treturn string
function M.with_defaults(conninfo)
  local uri = is_uri(conninfo)
  local add = {}
  for _, kv in ipairs(M.DEFAULTS) do
    local k = kv[1]
    local present
    if uri then present = find(conninfo, "[?&]" .. k .. "=") ~= nil
    else present = find(conninfo, "%f[%w_]" .. k .. "%s*=") ~= nil end
    if not present then add[#add + 1] = k .. "=" .. kv[2] end
  end
  if #add == 0 then return conninfo end
  if uri then return conninfo .. (find(conninfo, "?", 1, true) and "&" or "?") .. concat(add, "&") end
  return (conninfo == "" and "" or conninfo .. " ") .. concat(add, " ")
end

-- LuaSQL's message without its prefix, on one line.
local function clean(msg)
  msg = tostring(msg or "unknown error")
  msg = gsub(msg, "^LuaSQL: ", "")
  msg = gsub(msg, "^error [%w ]-%. PostgreSQL: ", "")
  msg = gsub(msg, "%s*\n%s*", " ")
  return (gsub(msg, "%s+$", ""))
end
M.clean = clean

--- A SQL string literal (standard conforming strings: quotes doubled).
-- @tparam string s
-- @treturn string
function M.lit(s)
  s = tostring(s)
  if find(s, "\0", 1, true) then
    error(pg_error("a text value holds a NUL byte, which PostgreSQL cannot store", "POSTGRES"), 0)
  end
  if find(s, "'", 1, true) then s = gsub(s, "'", "''") end
  return "'" .. s .. "'"
end

--- A quoted identifier (`"name"`; a dotted `schema.table` is quoted part by part
-- with `qualified`).
function M.ident(name) return '"' .. gsub(name, '"', '""') .. '"' end

--- `schema.table` or `table`, each part quoted.
function M.qualified(name)
  local schema, tbl = name:match("^([^.]+)%.([^.]+)$")
  if schema then return M.ident(schema) .. "." .. M.ident(tbl) end
  return M.ident(name)
end

-- ---- connections -------------------------------------------------------------

local driver_env

local function env()
  if driver_env then return driver_env end
  local ok, driver = pcall(require, "luasql.postgres")
  if not ok then
    error(pg_error("PostgreSQL needs LuaSQL for PostgreSQL (Debian: apt-get install lua-sql-postgres)",
      "NO_DRIVER"), 0)
  end
  driver_env = driver.postgres()
  return driver_env
end

--- A connection (opened at its first statement).
-- @tparam string conninfo libpq conninfo or URI
-- @tparam[opt] table opts `idle_tx_timeout` (seconds, default 120)
function M.connect(conninfo, opts)
  if type(conninfo) ~= "string" then errors.usage("postgres: a conninfo string expected") end
  opts = opts or {}
  return setmetatable({ conninfo = conninfo, shown = M.redact(conninfo), refs = 1,
                        idle_tx_timeout = opts.idle_tx_timeout or 120, statements = 0 }, Conn)
end

local registry = {}

--- The process's connection for `conninfo` (one per conninfo; counted:
-- `release()` closes it after the last user).
function M.shared(conninfo)
  local c = registry[conninfo]
  if c and not c.closed then
    c.refs = c.refs + 1
    return c
  end
  c = M.connect(conninfo)
  c.shared = true
  registry[conninfo] = c
  return c
end

function Conn:open()
  if self.conn then return self.conn end
  local conn, err = env():connect(M.with_defaults(self.conninfo))
  if not conn then
    error(pg_error(("cannot connect to PostgreSQL (%s): %s"):format(self.shown, clean(err)),
      "PG_UNAVAILABLE", true), 0)
  end
  local ok, serr = conn:execute(format("SET client_min_messages = warning; SET TIME ZONE 'UTC'; "
    .. "SET standard_conforming_strings = on; SET tcp_keepalives_idle = 10; "
    .. "SET tcp_keepalives_interval = 5; SET tcp_keepalives_count = 3; "
    .. "SET idle_in_transaction_session_timeout = '%ds'", self.idle_tx_timeout))
  if not ok then
    conn:close()
    error(pg_error(("cannot set up the PostgreSQL session (%s): %s"):format(self.shown, clean(serr)),
      "PG_UNAVAILABLE", true), 0)
  end
  self.conn = conn
  self.connects = (self.connects or 0) + 1
  return conn
end

-- Forget a connection that is gone.
function Conn:drop()
  if self.conn then pcall(self.conn.close, self.conn) end
  self.conn = nil
  self.in_tx, self.begin_pending = false, false
end

-- A statement failed: was it the statement, or the connection?
function Conn:failed(err, sql)
  local conn = self.conn
  local alive
  if self.in_tx then
    alive = conn:execute("ROLLBACK") ~= nil
    self.in_tx = false
  else
    local cur = conn:execute("SELECT 1")
    alive = cur ~= nil
    if type(cur) == "userdata" then cur:close() end
  end
  if not alive then
    self:drop()
    return pg_error(("PostgreSQL connection lost (%s): %s"):format(self.shown, clean(err)),
      "PG_UNAVAILABLE", true)
  end
  local first = sql:match("^%s*(%u+[%s%u]*)") or "statement"
  return pg_error(("PostgreSQL %s: %s"):format(first:gsub("%s+$", ""):lower(), clean(err)), "POSTGRES")
end

--- Run SQL (one or several statements; the last one's result counts).
-- @treturn table|number the rows of a query (column name -> text, NULL -> nil)
--   or the number of rows a command affected
function Conn:exec(sql)
  if not self.conn and self.in_tx and not self.begin_pending then
    error(pg_error("PostgreSQL connection lost inside a transaction", "PG_UNAVAILABLE", true), 0)
  end
  local conn = self:open()
  if self.begin_pending then                      -- BEGIN travels with the first statement
    self.begin_pending = false
    sql = "BEGIN; " .. sql
  end
  self.statements = self.statements + 1
  local res, err = conn:execute(sql)
  if res == nil then error(self:failed(err, sql), 0) end
  if type(res) ~= "userdata" then return tonumber(res) or 0 end
  local rows = {}
  local row = res:fetch({}, "a")
  while row do
    rows[#rows + 1] = row
    row = res:fetch({}, "a")
  end
  res:close()
  return rows
end

--- The first row of a query (or nil).
function Conn:row(sql)
  local rows = self:exec(sql)
  return type(rows) == "table" and rows[1] or nil
end

--- Run SQL as the last statement of the transaction, with its COMMIT in
-- the same round trip (if the SQL fails, nothing after it runs and the
-- transaction rolls back). Outside a transaction: `exec`.
function Conn:exec_commit(sql)
  if not self.in_tx then return self:exec(sql) end
  local res = self:exec(sql .. "; COMMIT")
  self.committed = true
  return res
end

--- Run `fn()` inside BEGIN ... COMMIT; any error rolls back and is raised again.
-- @return what fn returns
function Conn:tx(fn)
  if self.in_tx then return fn() end            -- nested: part of the outer transaction
  self.in_tx, self.begin_pending, self.committed = true, true, false   -- BEGIN goes with the first statement
  local ok, a, b = pcall(fn)
  if ok then
    if self.begin_pending or self.committed then  -- nothing was sent, or exec_commit committed
      self.in_tx, self.begin_pending, self.committed = false, false, false
      return a, b
    end
    local cok, cerr = pcall(self.exec, self, "COMMIT")
    self.in_tx = false
    if cok then return a, b end
    error(cerr, 0)
  end
  if self.in_tx and self.conn and not self.begin_pending then
    if self.conn:execute("ROLLBACK") == nil then self:drop() end
  end
  self.in_tx, self.begin_pending = false, false
  error(a, 0)
end

--- The server's clock (unix seconds, float): leases and plans use it, never a worker's.
function Conn:now()
  return tonumber(self:row("SELECT extract(epoch FROM now())::float8 AS t").t)
end

--- Release one user; the last one closes the connection.
function Conn:release()
  self.refs = self.refs - 1
  if self.refs > 0 then return end
  self:close()
end

function Conn:close()
  self:drop()
  self.closed = true
  if self.shared and registry[self.conninfo] == self then registry[self.conninfo] = nil end
end

--- Is this error a lost or refused PostgreSQL connection (worth waiting for)?
function M.unavailable(err)
  return errors.is(err) and err.code == "PG_UNAVAILABLE"
end

--- Parse `postgres:CONNINFO[#TABLE]` (and `postgresql:`).
-- @treturn string conninfo, string|nil table; or nil, message
function M.parse_spec(spec)
  if type(spec) ~= "string" then return nil, "postgres:CONNINFO expected" end
  local rest = spec:match("^postgres[%w]*://") and spec    -- a URI: libpq takes it whole
    or spec:match("^postgres:(.*)$") or spec:match("^postgresql:(.*)$")
  if not rest then
    return nil, ("%q is not a PostgreSQL location: use postgres:CONNINFO (e.g. postgres:dbname=sync)")
      :format(M.redact(spec))
  end
  local conninfo, tbl = rest:match("^(.*)#([^#]*)$")
  if not conninfo then conninfo = rest end
  if conninfo:match("^%s*$") then
    return nil, "postgres: the conninfo is empty (e.g. postgres:dbname=sync or postgres:postgresql://host/db)"
  end
  if tbl == "" then return nil, ("%q has an empty table name after #"):format(M.redact(spec)) end
  return conninfo, tbl
end

return M
