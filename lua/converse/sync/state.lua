--- Where a sync job keeps its state, and the state's format.
--
-- A store has `load() -> state | nil`, `save(state)` and `describe()`.
-- `file(path)` writes a JSON document atomically: a temporary file in the
-- same directory, flushed and fsync'ed, renamed over the old one, and the
-- directory fsync'ed, so a crash at any instant leaves either the old
-- state or the new one, never a mix. The SQLite sink has its own store (a
-- row of `_converse_state`, written in the same transaction as the page).
--
-- The state format is versioned (`version`); see docs/sync.md for every field.
-- @module converse.sync.state
local core   = require "converse.core"
local errors = require "converse.errors"

local type, tostring, pcall, setmetatable = type, tostring, pcall, setmetatable
local io, os = io, os
local encode, decode = core.json_encode, core.json_decode

local M = {}

--- The version of the state format this code writes.
M.VERSION = 1

--- An error object of kind "io" (a file or database operation failed).
function M.io_error(message, code)
  return errors.new { kind = "io", code = code or "IO", message = message }
end

local function raise_io(message, code) error(M.io_error(message, code), 0) end
M.raise_io = raise_io

--- Encode a state document (stable key order).
function M.encode(st) return encode(st, { sort_keys = true }) end

--- Decode and check a state document.
-- @tparam string text
-- @tparam string where for messages (a path)
function M.decode(text, where)
  local ok, st = pcall(decode, text, { big_integers = "string" })
  if not ok or type(st) ~= "table" then
    raise_io(("state %s is not valid JSON (%s); move it away to start over")
      :format(where, ok and "not an object" or tostring(st.message or st)), "BAD_STATE")
  end
  if type(st.version) ~= "number" then
    raise_io(("state %s has no version: not a converse sync state"):format(where), "BAD_STATE")
  end
  if st.version > M.VERSION then
    raise_io(("state %s has format %d; this converse reads format %d or older: upgrade converse")
      :format(where, st.version, M.VERSION), "BAD_STATE")
  end
  return st
end

-- ---- a JSON file -----------------------------------------------------------

local File = {}
File.__index = File

local function dirname(path) return path:match("^(.*)/[^/]*$") or "." end

local function read_all(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

function File:load()
  local text = read_all(self.path)
  if text == nil then return nil end
  return M.decode(text, self.path)
end

--- Write atomically: temp file, flush, fsync, rename, fsync the directory.
function File:save(st)
  local tmp = self.path .. ".tmp"
  local f, err = io.open(tmp, "wb")
  if not f then raise_io("cannot write state: " .. tostring(err), "STATE_WRITE") end
  local ok, werr = f:write(M.encode(st), "\n")
  if ok then ok, werr = f:flush() end
  f:close()
  if not ok then
    os.remove(tmp)
    raise_io("cannot write state " .. tmp .. ": " .. tostring(werr), "STATE_WRITE")
  end
  local synced, serr = core.fsync(tmp)
  if not synced then os.remove(tmp) raise_io("cannot fsync state: " .. serr, "STATE_WRITE") end
  local renamed, rerr = os.rename(tmp, self.path)
  if not renamed then os.remove(tmp) raise_io("cannot replace state: " .. tostring(rerr), "STATE_WRITE") end
  core.fsync(dirname(self.path))
end

function File:describe() return self.path end

--- A state store in a JSON file.
-- @tparam string path
function M.file(path)
  if type(path) ~= "string" or path == "" then errors.usage("state: a file path expected") end
  return setmetatable({ path = path }, File)
end

-- ---- memory (nothing survives the process) ---------------------------------

local Memory = {}
Memory.__index = Memory
function Memory:load() return self.st and decode(M.encode(self.st)) or nil end
function Memory:save(st) self.st = decode(M.encode(st)) end
function Memory.describe() return "memory" end

--- A state store that lives as long as the job object (tests, one-off runs).
function M.memory() return setmetatable({}, Memory) end

return M
