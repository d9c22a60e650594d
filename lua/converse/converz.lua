--- Converz Data API 1.0.5 (seed 000): users (`/reps`), conversations
-- (`/calls`) and analytics (`/report`). `X-API-Key` authentication,
-- `page` + `n_per_page` paging over bare JSON arrays.
-- @module converse.converz
local vendor = require "converse.vendor"
local usage  = vendor.usage
local core   = require "converse.core"

local type, pairs, ipairs, next, concat, min = type, pairs, ipairs, next, table.concat, math.min
local NULL = core.null
local ARRAY_MT = core.array_mt()

local M = {}

M.MAX_ROWS_PER_REQUEST = 100000      -- seed 000: "Max rows per request: 100000"
M.DEFAULT_PAGE_SIZE = 1000
M.MAX_PAGE_SIZE = 1000000

-- Filters that accept one value or several (repeated parameters).
local MULTI = { "rep_id", "vendor", "campaign", "subcampaign", "department" }

local Converz = vendor.define {
  name = "converz",
  endpoints = {
    calls  = { "LIST", "/calls" },
    reps   = { "LIST", "/reps" },
    report = { "GET",  "/report" },
  },
}

-- GET list with page + n_per_page; a page shorter than n_per_page ends it.
function Converz:_list(_, q)
  local size = vendor.take_size(q, "n_per_page", M.DEFAULT_PAGE_SIZE, M.MAX_PAGE_SIZE)
  for _, f in ipairs(MULTI) do
    local v = q[f]
    if v ~= nil and type(v) ~= "string" and type(v) ~= "table" then
      usage(("%s must be a string or an array of strings"):format(f))
    end
  end
  if type(q.columns) == "table" then q.columns = concat(q.columns, ",") end
  local first = q.page or 1
  q.page = nil
  return {
    style = "page", query = q, page_param = "page", size_param = "n_per_page",
    page_size = size, first_page = first, concurrency = self.options.concurrency or 2,
  }
end

-- Rows (array of tables) or columns (table of arrays) -> columns, row count.
-- Rows become columns because the row form sets a field missing from some
-- rows to null for them (seed 000); in columns a missing value is null,
-- which leaves the stored value unchanged.
local function to_columns(data, key)
  if type(data) ~= "table" then
    usage("rows (array of tables) or columns (table of arrays) expected")
  end
  if data[1] ~= nil or (next(data) == nil) then
    local fields, order = {}, {}
    for i, row in ipairs(data) do
      if type(row) ~= "table" then usage(("row %d is not a table"):format(i)) end
      local k = row[key]
      if k == nil or k == NULL then
        usage(("row %d has no %s"):format(i, key))
      end
      for f in pairs(row) do
        if type(f) ~= "string" then usage(("row %d has a non-string field"):format(i)) end
        if not fields[f] then fields[f] = true; order[#order + 1] = f end
      end
    end
    local cols, n = {}, #data
    for _, f in ipairs(order) do
      local col = setmetatable({}, ARRAY_MT)
      for i = 1, n do
        local v = data[i][f]
        if v == nil then v = NULL end
        col[i] = v
      end
      cols[f] = col
    end
    return cols, n
  end
  local keys = data[key]
  if type(keys) ~= "table" then
    usage(("columns need a '%s' array"):format(key))
  end
  local n = #keys
  for f, col in pairs(data) do
    if type(col) ~= "table" or #col ~= n then
      usage(("column '%s' must be an array of %d values"):format(tostring(f), n))
    end
  end
  for i = 1, n do
    if keys[i] == NULL then usage(("%s[%d] is null"):format(key, i)) end
  end
  return data, n
end

local function update(self, path, key, data)
  local cols, n = to_columns(data, key)
  local requests, step = 0, M.MAX_ROWS_PER_REQUEST
  for first = 1, n, step do
    local last = min(n, first + step - 1)
    local chunk = {}
    for f, col in pairs(cols) do
      local part = setmetatable({}, ARRAY_MT)
      for i = first, last do part[i - first + 1] = col[i] end
      chunk[f] = part
    end
    -- setting values is idempotent: safe to retry
    self.client:request("POST", path, { body = chunk, idempotent = true })
    requests = requests + 1
  end
  return { requests = requests, rows = n }
end

--- Update conversations (POST /calls), rows or columns, key `call_id`.
-- @treturn table `{ requests = n, rows = m }`
function Converz:update_calls(data) return update(self, "/calls", "call_id", data) end

--- Update users (POST /reps), rows or columns, key `rep_id`.
function Converz:update_reps(data) return update(self, "/reps", "rep_id", data) end

M.class = Converz

--- Create a Converz client.
-- @tparam table opts `api_key`, and `base_url` or `domain`
--   (`https://<domain>.converz.co/api/v1`), plus every converse.client option
-- @usage local cz = converse.converz{ domain = "acme", api_key = os.getenv("CONVERZ_KEY") }
function M.new(opts)
  vendor.check_new("converz", opts)
  local base = opts.base_url
  if base == nil then
    if type(opts.domain) ~= "string" or not opts.domain:match("^[%w%-]+$") then
      usage("converse.converz: base_url or domain is required")
    end
    base = "https://" .. opts.domain .. ".converz.co/api/v1"
  end
  return vendor.new(Converz, opts, vendor.client_options(opts, { base_url = base },
    { header = "X-API-Key", value = opts.api_key }))
end

return M
