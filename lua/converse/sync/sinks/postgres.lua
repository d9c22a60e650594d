--- PostgreSQL sink (Debian's lua-sql-postgres): one row per record,
-- upserted by id, nested values as jsonb.
--
-- The table is created from the records, like the SQLite sink's: the id
-- field first (PRIMARY KEY), then the source's documented fields, then the
-- others in sorted order; a field seen later adds a column. Column types
-- follow the JSON values: strings `text`, numbers `numeric` (exact: every
-- digit of an integer beyond int64, 1e400), booleans `boolean`, objects and
-- arrays `jsonb`, a field seen only as null so far `jsonb`. A value that
-- does not fit its column (a string where numbers were) widens the column
-- to `jsonb`, in the same transaction (a text column takes anything).
-- Schema changes take a transaction-scoped advisory lock, so workers on
-- several machines never race on CREATE or ALTER.
--
-- No value is formatted in Lua: a page goes to PostgreSQL as one JSON
-- array (the records' raw texts when the decoder gives them) and
-- `jsonb_populate_recordset` casts every field to its column's type:
--   INSERT INTO t (...) SELECT r.* FROM jsonb_populate_recordset(NULL::t, PAGE) r
--   ON CONFLICT (id) DO UPDATE SET every column
-- A page that holds one record twice goes through `jsonb_array_elements
-- ... WITH ORDINALITY` and `DISTINCT ON (id)` instead: the last one wins,
-- as in the SQLite sink (an upsert cannot touch one row twice).
--
-- Each page is one transaction: its rows and the checkpoint (a row of
-- `_converse_state`, or the partition's row when a work queue on the same
-- database runs the job) commit together or not at all.
-- @module converse.sync.sinks.postgres
local core   = require "converse.core"
local errors = require "converse.errors"
local state  = require "converse.sync.state"
local pg     = require "converse.sync.queue.pg"
local record = require "converse.sync.record"

local type, pairs, ipairs, setmetatable, getmetatable, pcall =
  type, pairs, ipairs, setmetatable, getmetatable, pcall
local concat, sort = table.concat, table.sort
local encode, decode = core.json_encode, core.json_decode
local ARRAY_MT = core.array_mt()
local NULL = core.null
local raise_io = state.raise_io
local ident, lit = pg.ident, pg.lit
local SORTED = { sort_keys = true }
local KIND_DECODE = { big_integers = "float", max_depth = 10000 }

local M = {}
local Sink = {}
Sink.__index = Sink

M.STATE_TABLE = "_converse_state"

-- The column type for a JSON kind.
M.TYPES = { string = "text", number = "numeric", boolean = "boolean", table = "jsonb" }

-- Does a value of `kind` (Lua type of the decoded value) fit a column of `ctype`?
local function fits(ctype, kind)
  if ctype == "jsonb" or ctype == "json" or ctype == "text" or ctype == "character varying" then
    return true
  end
  if kind == "number" then
    return ctype == "numeric" or ctype == "bigint" or ctype == "integer" or ctype == "smallint"
      or ctype == "double precision" or ctype == "real" or ctype:match("^numeric%(") ~= nil
  end
  if kind == "boolean" then return ctype == "boolean" end
  return false
end
M.fits = fits

-- Does a record hold an object anywhere (whose key order the encoder must fix)?
local function has_objects(v)
  for _, x in pairs(v) do
    if type(x) == "table" and (getmetatable(x) ~= ARRAY_MT or has_objects(x)) then return true end
  end
  return false
end

function Sink:open(ctx)
  self.ctx = ctx or self.ctx
  if self.pg then return end
  ctx = self.ctx or {}
  self.table = self.table or ctx.table or (ctx.name and ctx.name:gsub("%W", "_"))
  self.key = self.key or ctx.key
  if not self.key then errors.usage("postgres sink: the source has no id field: pass key = FIELD") end
  if #self.key > 63 then raise_io("postgres sink: the id field's name is longer than 63 bytes", "POSTGRES") end
  self.qtable = pg.qualified(self.table)
  self.pg = pg.shared(self.conninfo)
end

-- The table's columns and types, from the catalog (none: the table is absent).
function Sink:load_columns()
  local rows = self.pg:exec("SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type "
    .. "FROM pg_attribute a WHERE a.attrelid = to_regclass(" .. lit(self.qtable) .. ") "
    .. "AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum")
  local cols, types = {}, {}
  for i, r in ipairs(rows) do cols[i] = r.name; types[r.name] = r.type end
  self.columns, self.types = cols, types
  self.sql_insert = nil
end

-- The page as JSON texts, the kind of every top-level field it holds,
-- and whether an id comes twice.
function Sink:texts(batch)
  local texts, kinds, order, ids, twice = {}, {}, {}, {}, false
  local recs, raws, key = batch.records, batch.raws, self.key
  for i = 1, batch.n do
    local rec, text = recs[i], raws and raws[i]
    if type(rec) == "string" then
      text = text or rec
      rec = decode(rec, KIND_DECODE)
    elseif text then
      rec = decode(text, KIND_DECODE)         -- the kinds of the exact text, not of the Lua values
    else
      text = encode(rec, has_objects(rec) and SORTED or nil)
    end
    texts[i] = text
    local id = record.key_text(rec[key])
    if id then
      if ids[id] then twice = true end
      ids[id] = true
    end
    for k, v in pairs(rec) do
      if type(k) == "string" then
        local kind = v ~= NULL and type(v) or nil
        local seen = kinds[k]
        if seen == nil then order[#order + 1] = k; kinds[k] = kind or false
        elseif kind and seen ~= kind then
          kinds[k] = seen == false and kind or "mixed"
        end
      end
    end
  end
  return texts, kinds, order, twice
end

-- What the page needs that the table lacks: new columns, wider types.
function Sink:missing(kinds, order)
  local types = self.types
  if #self.columns == 0 then return true end
  for _, k in ipairs(order) do
    local ctype, kind = types[k], kinds[k]
    if not ctype then return true end
    if kind and (kind == "mixed" or not fits(ctype, kind)) then return true end
  end
  return false
end

local function type_for(kind, is_key)
  if kind == "mixed" then return is_key and "text" or "jsonb" end
  return M.TYPES[kind or "table"] or "jsonb"
end

-- Create the table, add columns, widen types: under an advisory lock, from
-- the catalog as it is now (another worker may have done part of it).
function Sink:evolve(kinds, order)
  local p = self.pg
  p:exec("SELECT pg_advisory_xact_lock(hashtext(" .. lit("converse:" .. self.qtable) .. "))")
  self:load_columns()
  local key = self.key
  for _, k in ipairs(order) do
    if #k > 63 then
      raise_io(("postgres sink: field %q is longer than 63 bytes, PostgreSQL's limit for a column name")
        :format(k:sub(1, 40) .. "..."), "POSTGRES")
    end
  end
  if #self.columns == 0 then
    if kinds[key] == nil then raise_io(("postgres sink: the records have no %q field"):format(key), "POSTGRES") end
    local defs, seen = {}, {}
    local function add(c)
      if seen[c] or kinds[c] == nil then return end
      seen[c] = true
      defs[#defs + 1] = ident(c) .. " " .. type_for(kinds[c], c == key)
        .. (c == key and " NOT NULL PRIMARY KEY" or "")
    end
    add(key)
    for _, c in ipairs(self.ctx and self.ctx.columns or {}) do add(c) end
    local rest = {}
    for _, c in ipairs(order) do if not seen[c] then rest[#rest + 1] = c end end
    sort(rest)
    for _, c in ipairs(rest) do add(c) end
    p:exec("CREATE TABLE IF NOT EXISTS " .. self.qtable .. " (" .. concat(defs, ", ") .. ")")
  else
    local add, widen = {}, {}
    for _, k in ipairs(order) do
      local ctype, kind = self.types[k], kinds[k]
      if not ctype then add[#add + 1] = k
      elseif kind and (kind == "mixed" or not fits(ctype, kind)) then widen[#widen + 1] = k end
    end
    sort(add)
    for _, k in ipairs(add) do
      p:exec("ALTER TABLE " .. self.qtable .. " ADD COLUMN IF NOT EXISTS " .. ident(k) .. " "
        .. type_for(kinds[k], false))
    end
    for _, k in ipairs(widen) do
      local to = k == key and "text" or "jsonb"
      p:exec("ALTER TABLE " .. self.qtable .. " ALTER COLUMN " .. ident(k) .. " TYPE " .. to
        .. " USING " .. (to == "text" and (ident(k) .. "::text") or ("to_jsonb(" .. ident(k) .. ")")))
    end
  end
  self:load_columns()
end

-- The upsert of one page (cached until the columns change): plain, or
-- keeping the last of records given twice.
function Sink:insert_sql(twice)
  local cached = self.sql_insert and self.sql_insert[twice and 2 or 1]
  if cached then return cached end
  local names, sets, sel = {}, {}, {}
  local key = self.key
  for i, c in ipairs(self.columns) do
    names[i] = ident(c)
    sel[i] = "r." .. ident(c)
    if c ~= key then sets[#sets + 1] = ident(c) .. " = excluded." .. ident(c) end
  end
  local into = "INSERT INTO " .. self.qtable .. " (" .. concat(names, ", ") .. ") SELECT "
  local upsert = " ON CONFLICT (" .. ident(key) .. ") DO "
    .. (#sets > 0 and ("UPDATE SET " .. concat(sets, ", ")) or "NOTHING")
  self.sql_insert = {
    { into .. concat(sel, ", ") .. " FROM jsonb_populate_recordset(NULL::" .. self.qtable .. ", ",
      "::jsonb) AS r" .. upsert },
    { into .. "DISTINCT ON (r." .. ident(key) .. ") " .. concat(sel, ", ") .. " FROM jsonb_array_elements(",
      "::jsonb) WITH ORDINALITY AS e(doc, n), jsonb_populate_record(NULL::" .. self.qtable
      .. ", e.doc) AS r ORDER BY r." .. ident(key) .. ", e.n DESC" .. upsert },
  }
  return self.sql_insert[twice and 2 or 1]
end

function Sink:upsert_page(batch)
  local texts, kinds, order, twice = self:texts(batch)
  if not self.columns then self:load_columns() end
  if self:missing(kinds, order) then self:evolve(kinds, order) end
  local sql = self:insert_sql(twice)
  -- the page's statement ends the transaction: its COMMIT goes in the same round trip
  self.pg:exec_commit(sql[1] .. lit("[" .. concat(texts, ",") .. "]") .. sql[2])
end

--- Write a page and (when given) the job's state, in one transaction.
function Sink:write(batch, st)
  local ok, err = pcall(self.pg.tx, self.pg, function()
    if st then
      if self.state_writer then self.state_writer(st) else self:save_state(st) end
    end
    if batch and batch.n > 0 then self:upsert_page(batch) end
  end)
  if not ok then
    self.columns = nil                -- re-read: a rolled back ALTER never happened
    self.sql_insert = nil
    if errors.is(err) and err.code == "POSTGRES" then
      err.message = "postgres sink " .. self.shown .. "#" .. self.table .. ": " .. err.message
    end
    error(err, 0)
  end
end

function Sink:ensure_state_table()
  if self.state_ready then return end
  self.pg:tx(function()
    self.pg:exec("SELECT pg_advisory_xact_lock(hashtext('converse:" .. M.STATE_TABLE .. "'))")
    self.pg:exec("CREATE TABLE IF NOT EXISTS " .. M.STATE_TABLE
      .. " (job text PRIMARY KEY, state text NOT NULL, updated_at timestamptz NOT NULL DEFAULT now())")
  end)
  self.state_ready = true
end

function Sink:save_state(st)
  self.pg:exec(("INSERT INTO %s (job, state, updated_at) VALUES (%s, %s, now()) ON CONFLICT (job) "
    .. "DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at")
    :format(M.STATE_TABLE, lit(self.job or st.job), lit(state.encode(st))))
end

--- The store that keeps the state in `_converse_state` (same transactions).
-- A run holds a session advisory lock on its job name: a second run of the
-- same job on the same database fails at once (`LOCKED`); use a work queue
-- (`queue = "postgres:..."`) to share a job between processes.
function Sink:store(name)
  local sink = self
  sink.job = name
  return {
    transactional = true,
    load = function()
      sink:open(sink.ctx)
      sink:ensure_state_table()
      local got = sink.pg:row("SELECT pg_try_advisory_lock(hashtext(" .. lit("converse-job:" .. name)
        .. ")) AS ok")
      if got.ok ~= "t" then
        raise_io(("another run of %s is using %s: wait for it, or share the job with a work queue "
          .. "(--queue)"):format(name, sink.shown), "LOCKED")
      end
      local r = sink.pg:row("SELECT state FROM " .. M.STATE_TABLE .. " WHERE job = " .. lit(name))
      return r and state.decode(r.state, sink.shown .. "#" .. M.STATE_TABLE) or nil
    end,
    save = function(_, st) sink:write(nil, st) end,
    describe = function() return sink.shown .. " (table " .. M.STATE_TABLE .. ")" end,
  }
end

function Sink:close()
  if self.pg then
    local p = self.pg
    self.pg, self.columns, self.sql_insert, self.state_ready = nil, nil, nil, nil
    p:release()
  end
end

--- A PostgreSQL sink.
-- @tparam string conninfo libpq conninfo (`host=db dbname=sync user=converse`) or URI
-- @tparam[opt] table opts `table` (`[schema.]name`; default: the stream's name), `key` (default: the source's id field)
function M.new(conninfo, opts)
  opts = opts or {}
  if type(conninfo) ~= "string" or conninfo:match("^%s*$") then
    errors.usage("postgres sink: a conninfo expected (e.g. \"dbname=sync\" or \"postgresql://host/db\")")
  end
  local tbl = opts.table
  if tbl ~= nil and (type(tbl) ~= "string" or not (tbl:match("^[^.]+$") or tbl:match("^[^.]+%.[^.]+$"))) then
    errors.usage("postgres sink: table must be a name or schema.name")
  end
  if tbl == M.STATE_TABLE then errors.usage("postgres sink: " .. M.STATE_TABLE .. " holds the job state") end
  if opts.key ~= nil and type(opts.key) ~= "string" then errors.usage("postgres sink: key must be a string") end
  return setmetatable({ kind = "postgres", conninfo = conninfo, shown = pg.redact(conninfo), table = tbl,
                        key = opts.key, upsert = true, wants_raw = true }, Sink)
end

return M
