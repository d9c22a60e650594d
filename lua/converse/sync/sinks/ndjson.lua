--- ndjson sink: one JSON object per line, appended; each record's raw text
-- when the decoder gives it (exact), else our encoder with sorted keys, so
-- identical data gives identical bytes. See converse.sync.sinks.file for
-- the checkpoint protocol.
-- @module converse.sync.sinks.ndjson
local file   = require "converse.sync.sinks.file"
local record = require "converse.sync.record"

local concat = table.concat
local text = record.text

local M = {}

local function render(_, batch)
  local recs, raws, out = batch.records, batch.raws, {}
  for i = 1, batch.n do
    out[i] = text(recs[i], raws and raws[i]) .. "\n"
  end
  return concat(out)
end

--- An ndjson sink writing (appending to) `path`.
-- @tparam string path
function M.new(path)
  local sink = file.new("ndjson", path, render)
  sink.wants_raw = true
  return sink
end

return M
