--- Mock of the Converz Data API 1.0.5 (seed 000), mounted at `/converz/api/v1`.
-- `GET /reps`, `GET /calls` (bare JSON array of rows), `POST /calls`,
-- `POST /reps` (row or columnar bodies), `GET /report` (aggregates).
-- Each call row is rendered to JSON once and cached; a page is served as a
-- list of cached pieces, so a 200,000-row page costs one pass over an array.
-- call_id = 9007199254740993 + i (beyond 2^53), kept as decimal text so
-- LuaJIT serves the same digits as Lua 5.4.
-- @module converse.mock.converz
local json = require "converse.mock.json"
local D    = require "converse.mock.converz_data"
local util = require "converse.mock.util"

local type, pairs, ipairs, tostring, setmetatable = type, pairs, ipairs, tostring, setmetatable
local format, gmatch, sub = string.format, string.gmatch, string.sub
local concat, floor, sort = table.concat, math.floor, table.sort
local mtype = math.type
local unpack = table.unpack or unpack
local quote, number, null = json.quote, json.number, json.null

local M = {}
local mt = { __index = M }

M.prefix = "/converz/api/v1"
M.auth = { header = "x-api-key" }
M.MAX_PAGE = 1000000
M.MAX_POST_ROWS = 100000

local FILTERS = { "rep_id", "vendor", "campaign", "subcampaign", "department" }
local GROUPS = { rep_id = true, vendor = true, campaign = true, subcampaign = true,
  department = true, date = true, direction = true, language = true }

local function err(status, msg) return util.json(status, { detail = msg }) end

--- Encode one value of a row (call_id stays raw digits).
local function value(col, v)
  if v == nil or v == null then return "null" end
  local t = type(v)
  if col == "call_id" then return v end
  if t == "string" then return quote(v) end
  if t == "number" then return number(v) end
  if t == "boolean" then return v and "true" or "false" end
  return json.encode(v)
end

local function render(row, columns)
  local out = {}
  for i, col in ipairs(columns) do
    out[i] = quote(col) .. ":" .. value(col, row[col])
  end
  return "{" .. concat(out, ",") .. "}"
end

-- Stores: `n`, `key`, `columns`, `index` (key text -> i), `:field(i, name)`,
-- `:row(i)` (full row), `:text(i)` (JSON), `:set(i, column, value)`.

local Calls = {}
Calls.__index = Calls

-- Generate every row once: keep its filter columns and (when `render`) its JSON.
local function new_calls(opts, reps)
  local ctx = D.context(opts, reps)
  local self = setmetatable({ ctx = ctx, n = ctx.n, key = "call_id", json = {}, cols = {},
    index = {}, over = {}, columns = { unpack(D.CALL_COLUMNS) }, extra = false }, Calls)
  local cols, texts, render_rows = self.cols, self.json, opts.warm ~= false
  for _, c in ipairs(D.KEPT) do cols[c] = {} end
  for i = 1, ctx.n do
    local row, text = D.call(ctx, i, render_rows)
    for c, list in pairs(cols) do list[i] = row[c] end
    texts[i] = text
    self.index[row.call_id] = i
  end
  return self
end

function Calls:field(i, name)
  local col = self.cols[name]
  if col then return col[i] end
  return self:row(i)[name]
end

function Calls:row(i)
  local row = D.call(self.ctx, i, false)
  local over = self.over[i]
  if over then for k, v in pairs(over) do row[k] = v end end
  return row
end

function Calls:text(i)
  local s = self.json[i]
  if s then return s end
  if self.over[i] or self.extra then s = render(self:row(i), self.columns)
  else local _; _, s = D.call(self.ctx, i, true) end
  self.json[i] = s
  return s
end

function Calls:set(i, column, v)
  local over = self.over[i]
  if not over then over = {}; self.over[i] = over end
  over[column] = v
  local col = self.cols[column]
  if col then col[i] = v end
  self.json[i] = nil
end

function Calls:warm()
  local json_, ctx = self.json, self.ctx
  for i = 1, self.n do
    if not json_[i] then local _; _, json_[i] = D.call(ctx, i, true) end
  end
end

local Reps = {}
Reps.__index = Reps

local function new_reps(rows)
  local self = setmetatable({ rows = rows, n = #rows, key = "rep_id", json = {}, index = {},
    columns = { unpack(D.REP_COLUMNS) } }, Reps)
  for i, r in ipairs(rows) do self.index[r.rep_id] = i end
  return self
end

function Reps:field(i, name) return self.rows[i][name] end
function Reps:row(i) return self.rows[i] end
function Reps:text(i)
  local s = self.json[i]
  if not s then s = render(self.rows[i], self.columns); self.json[i] = s end
  return s
end
function Reps:set(i, column, v) self.rows[i][column] = v; self.json[i] = nil end

--- Create the Converz mock state.
-- @tparam table opts `seed`, `calls` (row count, default 1000), `reps` (default 50),
--   `start_date` ("YYYY-MM-DD", default "2025-01-01"), `days` (default 90)
-- @treturn table vendor
function M.new(opts)
  local self = setmetatable({ opts = opts }, mt)
  self:reset()
  return self
end

--- Regenerate all data from the seed (drops every POSTed change).
function M:reset()
  if self.calls and not self.dirty then return end   -- nothing changed: keep the rendered rows
  local o = self.opts
  local reps = D.reps(o.seed or 1, o.reps or 50)
  self.reps = new_reps(reps)
  self.calls = new_calls(o, reps)
  self.dirty = false
end

--- Render every call row once (so the first large page is as fast as the rest).
function M:warm() self.calls:warm() end

-- Filters ---------------------------------------------------------------------

local function set_of(list)
  if not list or #list == 0 then return nil end
  local s = {}
  for _, v in ipairs(list) do
    for part in gmatch(v, "[^,]+") do s[part] = true end
  end
  return s
end

local function norm_time(s, default_clock)
  if not s or s == "" then return nil end
  local d, rest = s:match("^(%d%d%d%d%-%d%d%-%d%d)(.*)$")
  if not d then return false end
  local h, m, sec = rest:match("^[ T](%d%d):(%d%d):?(%d*)")
  if not h then return d .. " " .. default_clock end
  return format("%s %s:%s:%s", d, h, m, sec ~= "" and sec or (default_clock == "23:59:59" and "59" or "00"))
end

-- Returns a predicate (store, i) -> boolean, nil when unfiltered, or false, msg.
local function make_filter(req)
  local a, m = req.args, req.multi
  local tests = {}
  local function test_in(name, set)
    tests[#tests + 1] = function(st, i) return set[st:field(i, name)] == true end
  end
  for _, name in ipairs(FILTERS) do
    local s = set_of(m[name])
    if s then test_in(name, s) end
  end
  local ids = set_of(m.vendor_call_id)
  if ids then test_in("vendor_call_id", ids) end
  local function test_cmp(name, lo, hi)
    tests[#tests + 1] = function(st, i)
      local v = st:field(i, name)
      return type(v) == "string" and (not lo or v >= lo) and (not hi or v <= hi)
    end
  end
  local sd, ed = a.start_date, a.end_date
  for _, p in ipairs({ { "start_date", sd }, { "end_date", ed } }) do
    if p[2] and p[2] ~= "" and not p[2]:match("^%d%d%d%d%-%d%d%-%d%d$") then
      return false, p[1] .. " must be YYYY-MM-DD"
    end
  end
  if sd == "" then sd = nil end
  if ed == "" then ed = nil end
  if sd or ed then test_cmp("date", sd, ed) end
  local after, before = norm_time(a.after, "00:00:00"), norm_time(a.before, "23:59:59")
  if after == false or before == false then return false, "after/before must be YYYY-MM-DD[ HH:MM]" end
  if after or before then test_cmp("start_time", after, before) end
  if #tests == 0 then return nil end
  return function(st, i)
    for k = 1, #tests do if not tests[k](st, i) then return false end end
    return true
  end
end

local function columns_arg(req, all)
  local list = req.multi.columns
  if not list then return nil end
  local known = {}
  for _, c in ipairs(all) do known[c] = true end
  local cols = {}
  for _, v in ipairs(list) do
    for c in gmatch(v, "[^,%s]+") do if known[c] then cols[#cols + 1] = c end end
  end
  return cols
end

local function metric_value(id, name)
  local h = 0
  local s = tostring(id) .. name
  for i = 1, #s do h = (h * 31 + s:byte(i)) % 1000003 end
  return (h % 1000) / 1000
end

-- The rows a filter selects, in order, remembered for the filter last
-- asked of a store (a filtered page then costs its own rows, not a scan
-- of every row before it). Parameters that do not filter are left out of
-- the key; a POST or a reset drops the memory with the store's data.
local NOT_FILTERS = { page = true, n_per_page = true, columns = true, metric = true }

local function selected(req, st, pred)
  local keys = {}
  for k, list in pairs(req.multi) do
    if not NOT_FILTERS[k] then keys[#keys + 1] = k .. "=" .. concat(list, "\0") end
  end
  sort(keys)
  local key = concat(keys, "&")
  local memo = st.selected
  if memo and memo.key == key then return memo.rows end
  local rows = {}
  for i = 1, st.n do
    if pred(st, i) then rows[#rows + 1] = i end
  end
  st.selected = { key = key, rows = rows }
  return rows
end

-- Serve a page of a store as a bare JSON array of pieces.
local function list(req, st)
  local page = util.int_arg(req.args, "page", 1)
  local per = util.int_arg(req.args, "n_per_page", 10)
  if not page or page < 1 then return err(400, "page must be an integer >= 1") end
  if not per or per < 1 or per > M.MAX_PAGE then
    return err(400, "n_per_page must be an integer between 1 and " .. M.MAX_PAGE)
  end
  local pred, msg = make_filter(req)
  if pred == false then return err(400, msg) end
  local cols = columns_arg(req, st.columns)
  local metric = req.args.metric
  if metric == "" then metric = nil end
  if metric then
    for _, c in ipairs(st.columns) do if c == metric then metric = nil; break end end
  end
  local rows = pred and selected(req, st, pred)
  local total = rows and #rows or st.n
  local parts, n, taken = { "[" }, 1, 0
  for k = (page - 1) * per + 1, total do
    local i = rows and rows[k] or k
    local s
    if cols then s = render(st:row(i), cols) else s = st:text(i) end
    if metric then
      s = sub(s, 1, -2) .. "," .. quote(metric) .. ":" .. number(metric_value(st:field(i, st.key), metric)) .. "}"
    end
    if taken > 0 then n = n + 1; parts[n] = "," end
    n = n + 1; parts[n] = s
    taken = taken + 1
    if taken >= per then break end
  end
  n = n + 1; parts[n] = "]"
  return util.raw(200, parts)
end

-- POST bodies ----------------------------------------------------------------

local function id_text(v)
  if type(v) == "string" then return v end
  if type(v) == "number" then
    if mtype and mtype(v) == "integer" then return format("%d", v) end
    if v == floor(v) then return format("%.0f", v) end
  end
  return nil
end

-- Normalise a row or columnar body to { columns = {...}, rows = { {col=v|null|nil} } }.
-- In row form a column missing from a row becomes null (seed 000); in columnar
-- form a null entry stays nil: "leave unchanged".
local function normalise(body, key)
  if type(body) ~= "table" then return nil, "body must be a JSON array of rows or an object of columns" end
  local cols, seen, rows = {}, {}, {}
  if json.is_array(body) or body[1] ~= nil then
    for i, r in ipairs(body) do
      if type(r) ~= "table" or json.is_array(r) then return nil, "row " .. i .. " is not an object" end
      for k in pairs(r) do if not seen[k] then seen[k] = true; cols[#cols + 1] = k end end
    end
    for i, r in ipairs(body) do
      local row = {}
      for _, c in ipairs(cols) do
        local v = r[c]
        if v == nil then v = null end
        row[c] = v
      end
      rows[i] = row
    end
  else
    local n
    for k, v in pairs(body) do
      if type(v) ~= "table" then return nil, "column " .. k .. " must be an array" end
      if n and #v ~= n then return nil, "columns must all have the same length" end
      n = #v
      cols[#cols + 1] = k
      seen[k] = true
    end
    for i = 1, n or 0 do
      local row = {}
      for _, c in ipairs(cols) do
        local v = body[c][i]
        if v ~= null then row[c] = v end
      end
      rows[i] = row
    end
  end
  if #rows > 0 and not seen[key] then return nil, "every row needs " .. key end
  sort(cols)
  return { columns = cols, rows = rows }
end

local function update(self, req, st)
  local body, derr = json.decode(req.body or "")
  if body == nil then return err(400, "invalid JSON body: " .. tostring(derr)) end
  local t, msg = normalise(body, st.key)
  if not t then return err(400, msg) end
  if #t.rows > M.MAX_POST_ROWS then
    return err(413, "too many rows: " .. #t.rows .. " (max rows per request: " .. M.MAX_POST_ROWS .. ")")
  end
  local known = {}
  for _, c in ipairs(st.columns) do known[c] = true end
  for _, c in ipairs(t.columns) do
    if not known[c] then
      known[c] = true
      st.columns[#st.columns + 1] = c
      st.json, st.extra = {}, true        -- every row now renders the new column
    end
  end
  st.selected = nil                         -- a change may move rows in or out of a filter
  local updated, missing = 0, json.array()
  for _, r in ipairs(t.rows) do
    local id = id_text(r[st.key])
    local i = id and st.index[id]
    if not i then missing[#missing + 1] = r[st.key] == nil and null or r[st.key]
    else
      for c, v in pairs(r) do
        if c ~= st.key then st:set(i, c, v) end
      end
      updated = updated + 1
    end
  end
  self.dirty = true
  return util.json(200, json.ordered({ status = "ok", rows = #t.rows, updated = updated,
    not_found = missing }, { "status", "rows", "updated", "not_found" }))
end

local function report(self, req)
  local by = req.args.group_by or "rep_id"
  if not GROUPS[by] then return err(400, "group_by must be one of rep_id, vendor, campaign, "
    .. "subcampaign, department, date, direction, language") end
  local pred, msg = make_filter(req)
  if pred == false then return err(400, msg) end
  local metric = req.args.metric
  if metric == "" then metric = nil end
  local st = self.calls
  local groups, keys = {}, {}
  for i = 1, st.n do
    if not pred or pred(st, i) then
      local k = st:field(i, by)
      if k == null or k == nil then k = "" end
      local g = groups[k]
      if not g then g = { n = 0, dur = 0, res = 0, m = 0, mn = 0 }; groups[k] = g; keys[#keys + 1] = k end
      g.n = g.n + 1
      local d = st:field(i, "duration")
      g.dur = g.dur + (type(d) == "number" and d or 0)
      if st:field(i, "resolved") == true then g.res = g.res + 1 end
      if metric then
        local v = st.cols[metric] and st.cols[metric][i]
        if v == nil and (st.extra or st.over[i]) then v = st:row(i)[metric] end
        if v == nil or v == null then v = metric_value(st:field(i, "call_id") or D.call_id(i), metric) end
        if type(v) == "number" then g.m = g.m + v; g.mn = g.mn + 1 end
      end
    end
  end
  sort(keys)
  local out = json.array()
  for _, k in ipairs(keys) do
    local g = groups[k]
    local o = { [by] = k == "" and null or k, n_calls = g.n, total_duration = g.dur,
      mean_duration = floor(g.dur / g.n * 1000 + 0.5) / 1000,
      resolved_rate = floor(g.res / g.n * 10000 + 0.5) / 10000 }
    local order = { by, "n_calls", "total_duration", "mean_duration", "resolved_rate" }
    if metric then
      local name = "mean_" .. metric
      o[name] = g.mn > 0 and floor(g.m / g.mn * 10000 + 0.5) / 10000 or null
      order[#order + 1] = name
    end
    out[#out + 1] = json.ordered(o, order)
  end
  return util.json(200, out)
end

--- Handle a request under the prefix.
-- @tparam table req request (args/multi parsed)
-- @tparam string path path relative to the prefix
-- @treturn table|nil response
-- @treturn[2] string "not_found" | "method"
function M:handle(req, path)
  return util.route({
    { "GET", "/calls/?", function() return list(req, self.calls) end },
    { "POST", "/calls/?", function() return update(self, req, self.calls) end },
    { "GET", "/reps/?", function() return list(req, self.reps) end },
    { "POST", "/reps/?", function() return update(self, req, self.reps) end },
    { "GET", "/report/?", function() return report(self, req) end },
  }, req, path)
end

--- The vendor's 401 response.
-- @treturn table
function M.unauthorized() return err(401, "Invalid or missing API key") end

return M
