--- SQLite sink (Debian's lua-sql-sqlite3): one row per record, upserted.
--
-- The table is created from the records: the id field as PRIMARY KEY (NOT
-- NULL), then one column per top-level field (the source's documented
-- fields first, then others in sorted order; a field seen later adds a
-- column). Columns have no declared type, so values keep theirs.
--
-- Values are never formatted in Lua: each page's records go to SQLite as
-- their JSON text (the raw text when the decoder gives it, else our
-- encoder's), staged in a temporary table, and one INSERT ... SELECT takes
-- every field out with json_extract: integers with every digit (beyond
-- int64 they become reals), reals, text, true/false as 1/0, null as NULL,
-- arrays and objects as JSON text. A record that comes again replaces its
-- row whole (upsert on the id: its newest content, absent fields NULL).
--
-- Each page is one transaction: its rows and the job's checkpoint (a row
-- of `_converse_state`) commit together or not at all, so after any crash
-- the table and the checkpoint agree.
-- @module converse.sync.sinks.sqlite
local core   = require "converse.core"
local errors = require "converse.errors"
local state  = require "converse.sync.state"

local type, pairs, ipairs, tostring, setmetatable, getmetatable, pcall =
  type, pairs, ipairs, tostring, setmetatable, getmetatable, pcall
local find, gsub = string.find, string.gsub
local concat, sort, min = table.concat, table.sort, math.min
local encode = core.json_encode
local ARRAY_MT = core.array_mt()
local raise_io = state.raise_io
local SORTED = { sort_keys = true }

local M = {}
local Sink = {}
Sink.__index = Sink

M.STATE_TABLE = "_converse_state"
M.ROWS_PER_STATEMENT = 1000

local function ident(name) return '"' .. gsub(name, '"', '""') .. '"' end
M.ident = ident

-- A SQL string literal (JSON texts never hold a raw NUL byte).
local function text_literal(s)
  if find(s, "'", 1, true) then s = gsub(s, "'", "''") end
  return "'" .. s .. "'"
end

function Sink:exec(sql)
  local res, err = self.conn:execute(sql)
  if res == nil then
    raise_io(("sqlite %s: %s"):format(self.path, tostring(err):gsub("^LuaSQL: ", "")), "SQLITE")
  end
  if type(res) == "userdata" then res:close() end
  return res
end

function Sink:rows(sql)
  local cur, err = self.conn:execute(sql)
  if not cur then raise_io(("sqlite %s: %s"):format(self.path, tostring(err)), "SQLITE") end
  local out = {}
  local row = cur:fetch({}, "a")
  while row do
    out[#out + 1] = row
    row = cur:fetch({}, "a")
  end
  cur:close()
  return out
end

function Sink:open(ctx)
  if self.conn then return end
  self.ctx = ctx
  self.table = self.table or (ctx and ctx.table) or (ctx and ctx.name and ctx.name:gsub("%W", "_"))
  self.key = self.key or (ctx and ctx.key)
  if not self.key then errors.usage("sqlite sink: the source has no id field: pass key = FIELD") end
  local ok, driver = pcall(require, "luasql.sqlite3")
  if not ok then
    raise_io("the sqlite sink needs LuaSQL for SQLite (Debian: apt-get install lua-sql-sqlite3)", "NO_DRIVER")
  end
  local env = driver.sqlite3()
  local conn, err = env:connect(self.path)
  if not conn then env:close() raise_io(("cannot open %s: %s"):format(self.path, tostring(err)), "OPEN") end
  self.env, self.conn = env, conn
  self:exec("PRAGMA busy_timeout = 30000")
  self:exec("PRAGMA temp_store = MEMORY")
  self:exec("CREATE TEMP TABLE IF NOT EXISTS _converse_page (j TEXT NOT NULL)")
  self:exec("CREATE TABLE IF NOT EXISTS " .. M.STATE_TABLE
    .. " (job TEXT PRIMARY KEY, state TEXT NOT NULL, updated_at TEXT NOT NULL)")
  self:load_columns()
end

function Sink:load_columns()
  local cols, have = {}, {}
  for _, r in ipairs(self:rows("PRAGMA table_info(" .. ident(self.table) .. ")")) do
    cols[#cols + 1] = r.name
    have[r.name] = true
  end
  self.columns, self.have = cols, have
  self.exists = #cols > 0
end

-- A JSON path selecting a top-level field, whatever its characters.
local function json_path(field)
  return "'$.\"" .. gsub(gsub(gsub(field, "\\", "\\\\"), '"', '\\"'), "'", "''") .. "\"'"
end

-- Does a record hold an object anywhere (whose key order the encoder
-- must fix for the stored JSON text to be the same every time)?
local function has_objects(v)
  for _, x in pairs(v) do
    if type(x) == "table" and (getmetatable(x) ~= ARRAY_MT or has_objects(x)) then return true end
  end
  return false
end

-- The page's records as SQL string literals of their JSON text: raw text
-- when the decoder gave it, else our encoder's (sorted keys: nested values
-- come out the same for the same data).
function Sink.texts(_, batch)
  local out, recs, raws = {}, batch.records, batch.raws
  for i = 1, batch.n do
    local t = raws and raws[i]
    if t == nil then
      local r = recs[i]
      if type(r) == "string" then t = r
      else t = encode(r, has_objects(r) and SORTED or nil) end
    end
    if find(t, "'", 1, true) then t = gsub(t, "'", "''") end
    out[i] = "('" .. t .. "')"
  end
  return out
end

-- The fields of a page: from the tables, or (raw texts only) from SQLite.
function Sink:fields(batch)
  local set, list = {}, {}
  local recs = batch.records
  if type(recs[1]) == "table" then
    for i = 1, batch.n do
      for k in pairs(recs[i]) do
        if type(k) == "string" and not set[k] then set[k] = true; list[#list + 1] = k end
      end
    end
  else
    for _, r in ipairs(self:rows("SELECT DISTINCT k.key AS key FROM temp._converse_page AS p, "
      .. "json_each(p.j) AS k")) do
      if type(r.key) == "string" then list[#list + 1] = r.key end
    end
  end
  return list
end

-- New columns for this page, in a stable order: documented fields first.
function Sink:new_columns(fields)
  local add, seen = {}, {}
  local function want(c)
    if not self.have[c] and not seen[c] then seen[c] = true; add[#add + 1] = c end
  end
  if not self.exists then
    want(self.key)
    for _, c in ipairs(self.ctx and self.ctx.columns or {}) do want(c) end
  end
  local rest = {}
  for _, k in ipairs(fields) do
    if not self.have[k] and not seen[k] then seen[k] = true; rest[#rest + 1] = k end
  end
  sort(rest)
  for _, c in ipairs(rest) do add[#add + 1] = c end
  return add
end

function Sink:ensure_columns(fields)
  local add = self:new_columns(fields)
  if #add == 0 then return end
  if not self.exists then
    local defs = {}
    for i, c in ipairs(add) do defs[i] = ident(c) .. (c == self.key and " NOT NULL PRIMARY KEY" or "") end
    self:exec("CREATE TABLE " .. ident(self.table) .. " (" .. concat(defs, ", ") .. ")")
  else
    for _, c in ipairs(add) do
      self:exec("ALTER TABLE " .. ident(self.table) .. " ADD COLUMN " .. ident(c))
    end
  end
  self.sql_insert = nil
  self:load_columns()
end

-- Stage the page's JSON texts in a temporary table (parsed once by SQLite).
function Sink:stage(values)
  local step = M.ROWS_PER_STATEMENT
  for first = 1, #values, step do
    self:exec("INSERT INTO temp._converse_page (j) VALUES "
              .. concat(values, ",", first, min(#values, first + step - 1)))
  end
end

-- Upsert the staged page: SQLite takes every field out of each record's
-- JSON text (json_extract: integers exact, true/false as 1/0, arrays and
-- objects as JSON text), so no value is formatted in Lua.
function Sink:insert()
  local cols, key = self.columns, self.key
  if not self.sql_insert then
    local names, exprs, sets = {}, {}, {}
    for i, c in ipairs(cols) do
      names[i] = ident(c)
      exprs[i] = "json_extract(j, " .. json_path(c) .. ")"
      if c ~= key then sets[#sets + 1] = ident(c) .. " = excluded." .. ident(c) end
    end
    self.sql_insert = "INSERT INTO " .. ident(self.table) .. " (" .. concat(names, ", ") .. ") SELECT "
      .. concat(exprs, ", ") .. " FROM temp._converse_page WHERE true ON CONFLICT (" .. ident(key) .. ") DO "
      .. (#sets > 0 and ("UPDATE SET " .. concat(sets, ", ")) or "NOTHING")
  end
  self:exec(self.sql_insert)
end

--- Write a page and (when given) the job's state, in one transaction.
function Sink:write(batch, st)
  self:exec("BEGIN IMMEDIATE")
  local ok, err = pcall(function()
    if batch and batch.n > 0 then
      self:exec("DELETE FROM temp._converse_page")
      self:stage(self:texts(batch))
      self:ensure_columns(self:fields(batch))
      self:insert()
    end
    if st then
      self:exec(("INSERT INTO %s (job, state, updated_at) VALUES (%s, %s, datetime('now')) "
        .. "ON CONFLICT (job) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at")
        :format(M.STATE_TABLE, text_literal(self.job or st.job), text_literal(state.encode(st))))
    end
    if self.delay then os.execute("sleep " .. self.delay) end
    self:exec("COMMIT")
  end)
  if not ok then
    pcall(self.conn.execute, self.conn, "ROLLBACK")
    self:load_columns()
    self.sql_insert = nil
    error(err, 0)
  end
end

--- The store that keeps the state in `_converse_state` (same transactions).
function Sink:store(name)
  local sink = self
  sink.job = name
  return {
    transactional = true,
    load = function()
      sink:open(sink.ctx)
      local r = sink:rows("SELECT state FROM " .. M.STATE_TABLE .. " WHERE job = " .. text_literal(name))[1]
      return r and state.decode(r.state, sink.path .. "#" .. M.STATE_TABLE) or nil
    end,
    save = function(_, st) sink:write(nil, st) end,
    describe = function() return sink.path .. " (table " .. M.STATE_TABLE .. ")" end,
  }
end

function Sink:close()
  if self.conn then self.conn:close() self.conn = nil end
  if self.env then self.env:close() self.env = nil end
end

--- A SQLite sink.
-- @tparam string path database file (created if absent)
-- @tparam[opt] table opts `table` (default: the stream's name), `key` (default: the source's id field)
function M.new(path, opts)
  opts = opts or {}
  if type(path) ~= "string" or path == "" then errors.usage("sqlite sink: a database path expected") end
  if opts.table ~= nil and (type(opts.table) ~= "string" or opts.table == "") then
    errors.usage("sqlite sink: table must be a non-empty string")
  end
  if opts.table == M.STATE_TABLE then errors.usage("sqlite sink: " .. M.STATE_TABLE .. " holds the job state") end
  return setmetatable({ kind = "sqlite", path = path, table = opts.table, key = opts.key, upsert = true,
                        wants_raw = true,
                        delay = tonumber(os.getenv("CONVERSE_SYNC_WRITE_DELAY") or "") }, Sink)
end

return M
