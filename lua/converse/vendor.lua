--- Shared driver for the vendor modules.
-- A vendor module is data: a table of endpoints, each one line
-- `name = { METHOD, "/path/{param}", options }`, where METHOD is an HTTP
-- method or "LIST" (a pager). This file turns that table into methods:
-- positional arguments fill the `{params}` of the path (percent-encoded),
-- the next argument is the query (GET, LIST, DELETE) or the body (POST, PUT,
-- PATCH); a LIST method takes one more, paging options for its pager
-- (`raw`, `resume`, `max_pages`, `concurrency`): `cz:calls(q, { raw = true })`.
-- A vendor's `_list(path, query)` answers the paginate options of its lists.
-- Endpoint options: `required = {...}` fields checked before any request,
-- `one_of = {...}` (at least one present), `query_arg = "email"` (a scalar
-- argument sent as that query parameter), `idempotent = true` (POST safe to
-- retry), `returns_true = true` (answer true instead of the body),
-- `optional_body = true`.
-- @module converse.vendor
local errors = require "converse.errors"
local client = require "converse.client"
local query  = require "converse.query"
local core   = require "converse.core"

local type, pairs, ipairs, setmetatable, tostring = type, pairs, ipairs, setmetatable, tostring
local NULL = core.null

local M = {}

--- Raise a "usage" error blamed on the first caller outside the library.
M.usage = errors.usage
local usage = M.usage

local BODY = { POST = true, PUT = true, PATCH = true }

-- What a list method's second table may set on its pager.
local PAGING_OPTIONS = { raw = true, resume = true, max_pages = true, concurrency = true }

-- Every option of converse.client that a vendor constructor passes through.
local CLIENT_OPTIONS = {
  "headers", "timeout", "connect_timeout", "low_speed_time", "retries", "retry_budget",
  "backoff", "rate_limit", "user_agent", "ca_file", "insecure", "max_body", "max_error_body",
  "max_depth", "max_record", "max_envelope", "big_integers", "verbose", "transport",
  "on_event", "log",
}

--- Build the converse.client options of a vendor from the user's options.
-- @tparam table opts the constructor's argument
-- @tparam table defaults `base_url`, `rate_limit` ...
-- @tparam table auth `{ header = name, value = key }` or `{ bearer = token }`
function M.client_options(opts, defaults, auth)
  local o = {}
  for k, v in pairs(defaults) do o[k] = v end
  for _, k in ipairs(CLIENT_OPTIONS) do
    if opts[k] ~= nil then o[k] = opts[k] end
  end
  if opts.base_url ~= nil then o.base_url = opts.base_url end
  if opts.rate_limit == false then o.rate_limit = nil end
  o.auth = opts.auth or auth
  return o
end

local function present(v) return v ~= nil and v ~= NULL and v ~= "" end

-- Check required fields of a body or query table before any request.
local function validate(name, ep, t)
  local opts = ep[3] or {}
  if opts.required then
    for _, f in ipairs(opts.required) do
      if not present(t and t[f]) then
        usage(("%s: field '%s' is required"):format(name, f))
      end
    end
  end
  if opts.one_of then
    local any = false
    for _, f in ipairs(opts.one_of) do any = any or present(t and t[f]) end
    if not any then
      usage(("%s: one of '%s' is required"):format(name,
        table.concat(opts.one_of, "', '")))
    end
  end
end

-- Fill "/chat/{id}/message/{message_id}" from positional arguments.
local function fill_path(name, path, args)
  local i = 0
  local filled = path:gsub("{([%w_]+)}", function(param)
    i = i + 1
    local v = args[i]
    local tv = type(v)
    if tv ~= "string" and tv ~= "number" then
      usage(("%s: argument #%d (%s) must be a string or number, got %s")
        :format(name, i, param, tv))
    end
    if v == "" then usage(("%s: argument #%d (%s) is empty"):format(name, i, param)) end
    return query.escape(tostring(v))
  end)
  return filled, i
end

local function make_method(name, ep)
  local method, path = ep[1], ep[2]
  local opts = ep[3] or {}
  return function(self, ...)
    local args = { ... }
    local url_path, used = fill_path(name, path, args)
    local extra = args[used + 1]
    if opts.query_arg and type(extra) ~= "table" then
      if extra ~= nil then extra = { [opts.query_arg] = extra } end
    end
    if extra ~= nil and type(extra) ~= "table" then
      usage(("%s: argument #%d must be a table, got %s"):format(name, used + 1,
        type(extra)))
    end
    if opts.required or opts.one_of then validate(name, ep, extra) end
    if method == "LIST" then
      local q = {}                           -- a copy: _list may rewrite it
      for k, v in pairs(extra or {}) do q[k] = v end
      local popts = args[used + 2]
      if popts ~= nil and type(popts) ~= "table" then
        usage(("%s: argument #%d (paging options) must be a table, got %s")
          :format(name, used + 2, type(popts)))
      end
      local po = self:_list(url_path, q, opts)
      for k, v in pairs(popts or {}) do
        if not PAGING_OPTIONS[k] then
          usage(("%s: unknown paging option '%s' (raw, resume, max_pages, concurrency)"):format(name, k))
        end
        po[k] = v
      end
      return self.client:paginate(url_path, po)
    end
    if BODY[method] then
      if extra == nil and not opts.optional_body then extra = {} end
      local body = self.client:request(method, url_path, {
        body = extra, idempotent = opts.idempotent })
      return body
    end
    local body = self.client:request(method, url_path, { query = extra })
    if opts.returns_true then return true end
    return body
  end
end

--- Define a vendor class from its endpoint table.
-- @tparam table def `{ name=, endpoints = { name = { METHOD, path, opts } } }`
-- @treturn table the class; methods are generated, `def.methods` adds hand-written ones
function M.define(def)
  local class = { endpoints = def.endpoints }
  class.__index = class
  for name, ep in pairs(def.endpoints) do
    class[name] = make_method(name, ep)
  end
  for name, f in pairs(def.methods or {}) do class[name] = f end
  --- The underlying converse.client, for endpoints the library does not know yet.
  function class:request(method, path, opts) return self.client:request(method, path, opts) end
  return class
end

--- Create a vendor object.
-- @tparam table class from `define`
-- @tparam table opts user options
-- @tparam table client_opts options for converse.client (from `client_options`)
function M.new(class, opts, client_opts)
  return setmetatable({ client = client.new(client_opts), options = opts }, class)
end

--- Take a page-size parameter out of a query: a whole number in [1, max],
-- `default` when absent; a usage error otherwise.
-- @treturn number
function M.take_size(q, key, default, max)
  local v = q[key]
  if v == nil then v = default end
  if type(v) ~= "number" or v < 1 or v % 1 ~= 0 or (max and v > max) then
    usage(("%s must be a whole number from 1%s"):format(key, max and (" to " .. max) or " up"))
  end
  q[key] = nil
  return v
end

--- Check the constructor's argument and its api_key.
function M.check_new(name, opts)
  if type(opts) ~= "table" then
    usage(("converse.%s: options table expected, got %s"):format(name, type(opts)))
  end
  if opts.auth == nil and (type(opts.api_key) ~= "string" or opts.api_key == "") then
    usage(("converse.%s: api_key (a non-empty string) is required"):format(name))
  end
end

return M
