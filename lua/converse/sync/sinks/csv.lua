--- CSV sink (RFC 4180), appended page by page.
--
-- Columns are fixed by the header, written with the first records: the
-- `columns` option if given (other fields are left out), else the
-- record's id field, the source's documented fields in their order, then
-- any other field of the first page in sorted order. A field that appears
-- later and has no column is an error (the header of an append-only file
-- cannot grow); pass `columns` or `extra = "drop"` to leave such fields out.
--
-- Values: strings as they are (quoted when they contain a comma, a quote,
-- CR or LF, or are empty, so "" differs from null), null and absent
-- fields as an empty field, numbers with every digit, booleans as
-- true/false, arrays and objects as JSON text (sorted keys). Lines end
-- with CRLF. Identical data gives identical bytes.
-- @module converse.sync.sinks.csv
local core   = require "converse.core"
local errors = require "converse.errors"
local file   = require "converse.sync.sinks.file"
local state  = require "converse.sync.state"

local type, pairs, ipairs, tostring = type, pairs, ipairs, tostring
local find, gsub, format = string.find, string.gsub, string.format
local concat, sort = table.concat, table.sort
local encode, NULL = core.json_encode, core.null
local mtype = math.type
local SORTED = { sort_keys = true }

local M = {}

--- One CSV field (RFC 4180 quoting).
function M.field(v)
  local t = type(v)
  local s
  if v == nil or v == NULL then return ""
  elseif t == "string" then s = v
  elseif t == "number" then
    if mtype and mtype(v) == "integer" then return format("%d", v) end
    if v == math.huge then return "Infinity" elseif v == -math.huge then return "-Infinity" end
    s = encode(v)
  elseif t == "boolean" then return v and "true" or "false"
  else s = encode(v, SORTED) end
  if s == "" then return '""' end
  if find(s, '[",\r\n]') then return '"' .. gsub(s, '"', '""') .. '"' end
  return s
end
local field = M.field

--- One CSV line (fields joined by commas, CRLF at the end).
function M.line(values, n)
  local out = {}
  for i = 1, n or #values do out[i] = field(values[i]) end
  return concat(out, ",") .. "\r\n"
end

-- The header of a file: explicit columns, or id + known fields + the rest sorted.
local function choose_columns(self, batch)
  local cols, have = {}, {}
  local function add(c)
    if not have[c] then have[c] = true; cols[#cols + 1] = c end
  end
  local ctx = self.ctx or {}
  if ctx.key then add(ctx.key) end
  for _, c in ipairs(ctx.columns or {}) do add(c) end
  local extra = {}
  for i = 1, batch.n do
    for k in pairs(batch.records[i]) do
      if type(k) == "string" and not have[k] and not extra[k] then extra[k] = true end
    end
  end
  local list = {}
  for k in pairs(extra) do list[#list + 1] = k end
  sort(list)
  for _, c in ipairs(list) do add(c) end
  return cols
end

local function render(self, batch)
  if batch.n == 0 then return "" end
  local out = {}
  if not self.columns then
    self.columns = self.fixed or choose_columns(self, batch)
    out[1] = M.line(self.columns)
  end
  local cols = self.columns
  local index = self.index
  if not index then
    index = {}
    for i, c in ipairs(cols) do index[c] = i end
    self.index = index
  end
  local ncol = #cols
  for i = 1, batch.n do
    local rec = batch.records[i]
    if not self.fixed and not self.drop then
      for k in pairs(rec) do
        if not index[k] then
          state.raise_io(("csv: a record has the field %q, which is not a column of %s (its header is "
            .. "fixed); pass columns = {...} or extra = \"drop\", or write ndjson or sqlite")
            :format(tostring(k), self.path), "CSV_COLUMNS")
        end
      end
    end
    local vals = {}
    for c = 1, ncol do vals[c] = field(rec[cols[c]]) end
    out[#out + 1] = concat(vals, ",") .. "\r\n"
  end
  return concat(out)
end

--- A CSV sink appending to `path`.
-- @tparam string path
-- @tparam[opt] table opts `columns` (array of field names: exactly these columns),
--   `extra` ("error" default, or "drop": fields without a column are left out)
function M.new(path, opts)
  opts = opts or {}
  if opts.columns ~= nil and (type(opts.columns) ~= "table" or #opts.columns == 0) then
    errors.usage("csv sink: columns must be a non-empty array of field names")
  end
  if opts.extra ~= nil and opts.extra ~= "error" and opts.extra ~= "drop" then
    errors.usage("csv sink: extra must be \"error\" or \"drop\"")
  end
  local sink = file.new("csv", path, render)
  sink.fixed, sink.drop = opts.columns, opts.extra == "drop"
  local open = sink.open
  function sink:open(ctx)
    self.ctx = ctx
    return open(self, ctx)
  end
  function sink:restored(saved)
    -- the header is in the file: keep its columns
    self.columns = self.offset > 0 and saved and saved.columns or nil
    self.index = nil
    if self.offset > 0 and not self.columns then
      state.raise_io(self.path .. ": its state does not list the CSV columns", "BAD_STATE")
    end
  end
  function sink:extra_checkpoint(c) c.columns = self.columns end
  return sink
end

return M
