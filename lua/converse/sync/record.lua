--- Records as the sync layer sees them: a decoded table plus, when the
-- decoder's raw mode gives it, the record's exact JSON text.
--
-- The raw mode (`decoder{ raw = true }`, a pager option) hands out each
-- record as its JSON text with the whitespace removed: integers beyond
-- int64 and numbers such as 1e400 come out byte for byte. Until a decoder
-- has it, pagers keep handing out tables; everything here works with both,
-- so switching is the one line in `M.raw`.
-- @module converse.sync.record
local core = require "converse.core"

local type, tostring, format = type, tostring, string.format
local encode, decode, fingerprint = core.json_encode, core.json_decode, core.fingerprint
local mtype = math.type

local M = {}

local SORTED = { sort_keys = true }

--- Ask a pager that has not started yet for raw records. Vendor list
-- methods build their pagers themselves, so this sets the option the
-- pager gives its decoder (`paginate{ raw = true }` for your own pagers).
-- @return the pager
function M.raw(pager)
  if type(pager) == "table" and type(pager.decoder_opts) == "table" then
    pager.decoder_opts.raw = true
  end
  return pager
end

--- The record's JSON text: its raw text when there is one (exact), else
-- our encoder with sorted keys (stable bytes for identical data).
-- @tparam table rec decoded record
-- @tparam[opt] string raw its raw text
-- @treturn string
function M.text(rec, raw)
  if raw ~= nil then return raw end
  if type(rec) == "string" then return rec end
  return encode(rec, SORTED)
end

--- Split what a pager handed out into the decoded record and its raw text.
-- @return table record
-- @return string|nil raw text
function M.split(item, decode_opts)
  if type(item) == "string" then return decode(item, decode_opts), item end
  return item, nil
end

--- The text of a primary-key value ("9007199254740993", "abc"), or nil
-- when the record has none usable.
function M.key_text(v)
  local t = type(v)
  if t == "string" then return v ~= "" and v or nil end
  if t == "number" then
    if v ~= v or v == math.huge or v == -math.huge then return nil end
    if mtype and mtype(v) == "integer" then return format("%d", v) end
    if v % 1 == 0 and v > -2^53 and v < 2^53 then return format("%.0f", v) end
    return format("%.17g", v)
  end
  if t == "boolean" then return tostring(v) end
  return nil
end

--- A short fingerprint of a record's content (for "already written, unchanged").
function M.hash(rec, raw) return fingerprint(M.text(rec, raw)) end

return M
