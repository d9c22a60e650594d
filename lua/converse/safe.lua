--- converse.safe: the same clients, but failures come back as `nil, err`
-- instead of being raised, in the manner of `cjson.safe` -- the form
-- OpenResty code expects.
--
--   local safe = require "converse.safe"
--   local api, err = safe.client { base_url = URL, auth = { bearer = TOKEN } }
--   local body, res = api:get("/things")        -- body, res | nil, err
--   if not body and res then ngx.log(ngx.ERR, tostring(res)) end
--
-- `err` is the usual error object (kind, status, code, message, url ...).
-- A method that succeeds returns what it always returns (a request method
-- whose body is empty returns nil, res: tell it from a failure by the second
-- value's type, or by `converse.is_error`). Pagers are returned as they are:
-- iterating one still raises (a loop cannot return `nil, err` half-way
-- without being mistaken for its end), so wrap the loop:
--
--   local ok, err = pcall(function()
--     for rec in api:paginate("/things", { records = "data" }) do ... end
--   end)
--
-- Only converse error objects are turned into `nil, err`; any other error
-- (a bug in a callback, say) is raised as before.
-- @module converse.safe
local converse = require "converse"
local errors   = require "converse.errors"

local type, pcall, error, setmetatable, tostring = type, pcall, error, setmetatable, tostring

local M = {}

local function results(ok, ...)
  if ok then return ... end
  local err = ...
  if errors.is(err) then return nil, err end
  error(err, 0)
end

local function call(f, ...)
  return results(pcall(f, ...))
end

--- Wrap a client or a vendor object: its methods return `nil, err`.
-- @param obj a converse.client or vendor object
-- @return a proxy with the same methods and fields
function M.wrap(obj)
  if type(obj) ~= "table" then errors.usage("converse.safe.wrap: a client or vendor object expected") end
  local proxy = {}
  local cache = {}
  return setmetatable(proxy, {
    __index = function(_, k)
      local v = obj[k]
      if type(v) ~= "function" then return v end
      local f = cache[k]
      if not f then
        f = function(self, ...)
          if self == proxy then self = obj end
          return call(v, self, ...)
        end
        cache[k] = f
      end
      return f
    end,
    __tostring = function() return "converse.safe(" .. tostring(obj) .. ")" end,
  })
end

local function constructor(name)
  return function(opts)
    local ok, obj = pcall(converse[name], opts)
    if not ok then return results(false, obj) end
    return M.wrap(obj)
  end
end

--- safe.client(opts) -> client | nil, err (see converse.client)
M.client       = constructor("client")
--- safe.converz(opts), safe.agentx(opts), safe.converseiq(opts), safe.converra(opts)
M.converz      = constructor("converz")
M.agentx       = constructor("agentx")
M.deepconverse = M.agentx
M.converseiq   = constructor("converseiq")
M.converra     = constructor("converra")

--- JSON without raising: decode(s) -> value | nil, err; encode(v) -> text | nil, err.
M.json = {
  decode = function(...) return call(converse.json.decode, ...) end,
  encode = function(...) return call(converse.json.encode, ...) end,
  null = converse.null,
}

M.is_error = converse.is_error

return M
