-- The hand-written sync the sync benchmark compares against: what a user
-- writes without converse.sync. A page loop with curl, cjson.decode of each
-- page, and one INSERT per row in one transaction per page
-- (lua-sql-sqlite3). No checkpoint, no resume, no exact big integers.
--   lua5.4 bench/sync_naive.lua BASE_URL DB [PAGE_SIZE]     (or require it: .run)
local cjson  = require "cjson"
local driver = require "luasql.sqlite3"

local M = {}

local function literal(v)
  local t = type(v)
  if v == nil or v == cjson.null then return "NULL" end
  if t == "number" then return tostring(v) end
  if t == "boolean" then return v and "1" or "0" end
  if t == "table" then v = cjson.encode(v) end
  return "'" .. tostring(v):gsub("'", "''") .. "'"
end

--- Copy every call of a Converz API into table `calls` of `db`.
-- @treturn number rows
function M.run(base, db, per)
  per = per or 1000
  local env = driver.sqlite3()
  local conn = assert(env:connect(db))
  local cols
  local page, rows = 1, 0
  while true do
    local p = io.popen(("curl -s -H 'X-API-Key: bench' '%s/calls?n_per_page=%d&page=%d'"):format(base, per, page))
    local body = p:read("*a")
    p:close()
    local list = cjson.decode(body)
    if #list == 0 then break end
    if not cols then
      cols = {}
      for k in pairs(list[1]) do cols[#cols + 1] = k end
      table.sort(cols)
      assert(conn:execute("CREATE TABLE IF NOT EXISTS calls (" .. table.concat(cols, ", ")
        .. ", PRIMARY KEY (call_id))"))
    end
    assert(conn:execute("BEGIN"))
    for _, row in ipairs(list) do
      local vals = {}
      for i, c in ipairs(cols) do vals[i] = literal(row[c]) end
      assert(conn:execute("INSERT OR REPLACE INTO calls (" .. table.concat(cols, ", ") .. ") VALUES ("
        .. table.concat(vals, ", ") .. ")"))
    end
    assert(conn:execute("COMMIT"))
    rows = rows + #list
    if #list < per then break end
    page = page + 1
  end
  conn:close()
  env:close()
  return rows
end

if arg and arg[0] and arg[0]:match("sync_naive%.lua$") then
  io.stdout:write(M.run(arg[1], arg[2], tonumber(arg[3] or "1000")), "\n")
end

return M
