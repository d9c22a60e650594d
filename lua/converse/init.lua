--- converse: pull, sync and enrich conversation data from vendor REST APIs.
-- @module converse
local core   = require "converse.core"
local errors = require "converse.errors"

local setmetatable, getmetatable, require = setmetatable, getmetatable, require

local M = {
  VERSION  = core.VERSION,
  null     = core.null,      -- lightuserdata NULL: the same value as cjson.null
  errors   = errors,
  is_error = errors.is,
}

local ARRAY_MT = core.array_mt()

--- Mark a table as a JSON array, so that `{}` encodes as `[]`.
-- @tparam[opt] table t
-- @treturn table t
function M.array(t)
  t = t or {}
  errors.check(t, "table", "t")
  local old = getmetatable(t)
  if old ~= nil and old ~= ARRAY_MT then
    errors.usage("converse.array: table already has a metatable")
  end
  return setmetatable(t, ARRAY_MT)
end

--- JSON helpers (C codec).
-- @section json
M.json = {
  null = core.null,
  array = M.array,
  array_mt = ARRAY_MT,
  --- Decode a JSON text. Raises an error object of kind "json".
  -- @tparam string s
  -- @tparam[opt] table opts `max_depth`, `max_string`, `big_integers` ("float"|"string")
  decode = core.json_decode,
  --- Encode a Lua value as JSON text.
  -- @tparam any v
  -- @tparam[opt] table opts `max_depth`, `sort_keys`
  encode = core.json_encode,
  --- A streaming decoder (see README "Streaming decoder").
  decoder = core.decoder,
}

-- Constructors loaded on first use, so `require "converse"` stays cheap.
local LAZY = {
  client       = { "converse.client",     "new" },
  converz      = { "converse.converz",    "new" },
  agentx       = { "converse.agentx",     "new" },
  deepconverse = { "converse.agentx",     "new" },
  converseiq   = { "converse.converseiq", "new" },
  converra     = { "converse.converra",   "new" },
}

return setmetatable(M, {
  __index = function(t, k)
    local spec = LAZY[k]
    if not spec then return nil end
    local f = require(spec[1])[spec[2]]
    t[k] = f
    return f
  end,
})
