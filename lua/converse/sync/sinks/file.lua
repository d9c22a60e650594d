--- What the append-only file sinks (ndjson, csv) share: a lock, appending
-- a page and putting it on disk, and the cut back to the checkpoint.
--
-- The file is an append-only log. Its state (`PATH.state.json` unless the
-- job says otherwise) records the file's length at the last checkpoint,
-- written only after the page is on disk (flush + fsync). A run starts by
-- cutting the file back to that length, so whatever a killed run wrote
-- after its last checkpoint (a partial line, a page never checkpointed) is
-- gone before anything new is appended: no partial or repeated line
-- survives. A run takes an exclusive lock on the file; a second run of the
-- same job fails at once instead of interleaving.
-- @module converse.sync.sinks.file
local core   = require "converse.core"
local state  = require "converse.sync.state"

local type, tostring, setmetatable, tonumber = type, tostring, setmetatable, tonumber
local io, os = io, os
local raise_io = state.raise_io

local M = {}
local File = {}
File.__index = File
M.File = File

--- A file sink object of `kind` ("ndjson", "csv") writing `path`.
-- `render(self, batch) -> text` turns a batch into the bytes to append.
function M.new(kind, path, render)
  if type(path) ~= "string" or path == "" then
    require("converse.errors").usage(kind .. " sink: a file path expected")
  end
  return setmetatable({ kind = kind, path = path, render = render, upsert = false }, File)
end

--- Its default state store: `PATH.state.json`.
function File:store() return state.file(self.path .. ".state.json") end

function File:open()
  if self.f then return end
  local lock, err, busy = core.lock(self.path)
  if not lock then
    if busy then
      raise_io(("%s is in use by another converse sync (it holds the lock): wait for it to finish")
        :format(self.path), "LOCKED")
    end
    raise_io("cannot open " .. tostring(err), "OPEN")
  end
  self.lock = lock
  local f, ferr = io.open(self.path, "ab")
  if not f then lock:release() raise_io("cannot open " .. tostring(ferr), "OPEN") end
  self.f = f
end

--- Bring the file back to the saved checkpoint (`saved.offset`), or check
-- that a file without a checkpoint is empty.
function File:restore(saved)
  local size = self.f:seek("end")
  local offset = saved and tonumber(saved.offset) or 0
  if size > offset then
    if offset == 0 and not saved then
      raise_io(("%s already exists (%d bytes) but has no sync state: remove it or choose another file")
        :format(self.path, size), "NO_STATE")
    end
    local ok, err = core.truncate(self.path, offset)
    if not ok then raise_io("cannot cut back to the checkpoint: " .. err, "TRUNCATE") end
    core.fsync(self.path)
  elseif size < offset then
    raise_io(("%s is shorter (%d bytes) than its checkpoint (%d bytes): it was changed outside "
      .. "converse; move it and its state away to start over"):format(self.path, size, offset), "SHORT")
  end
  self.offset = offset
  if self.restored then self:restored(saved) end
end

-- A pause in the middle of a page write, for the kill -9 specs only
-- (CONVERSE_SYNC_WRITE_DELAY=seconds): the test kills the process while a
-- half-written page sits in the file.
local DELAY = tonumber(os.getenv("CONVERSE_SYNC_WRITE_DELAY") or "")

--- Append a batch and put it on disk before returning.
function File:write(batch)
  local text = self:render(batch)
  if text == "" then return end
  local f = self.f
  local ok, err
  if DELAY and #text > 1 then
    local half = math.floor(#text / 2)
    ok, err = f:write(text:sub(1, half))
    if ok then ok, err = f:flush() end
    os.execute("sleep " .. DELAY)
    if ok then ok, err = f:write(text:sub(half + 1)) end
  else
    ok, err = f:write(text)
  end
  if ok then ok, err = f:flush() end
  if not ok then raise_io(("cannot write %s: %s"):format(self.path, tostring(err)), "WRITE") end
  local synced, serr = core.fsync(self.path)
  if not synced then raise_io("cannot fsync " .. serr, "WRITE") end
  self.offset = self.offset + #text
end

--- What the checkpoint records about the file.
function File:checkpoint()
  local c = { offset = self.offset }
  if self.extra_checkpoint then self:extra_checkpoint(c) end
  return c
end

function File:close()
  if self.f then self.f:close() self.f = nil end
  if self.lock then self.lock:release() self.lock = nil end
end

return M
