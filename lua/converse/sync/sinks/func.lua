--- Function sink: your code takes each page.
--
-- `fn(records, batch)` is called once per page with the page's records
-- (decoded tables) and the batch (`records`, `raws` (raw JSON texts when
-- the decoder gives them, else nil), `n`, `window` {start, stop} or nil,
-- `page`, `key`). The checkpoint is written after `fn` returns, so `fn`
-- must have made the page durable by then (committed it, sent it ...);
-- if it raises, the run stops and the page is read again next time. A
-- function sink keeps no state itself: give the job `state = PATH`.
-- @module converse.sync.sinks.func
local errors = require "converse.errors"

local type, setmetatable = type, setmetatable

local M = {}
local Sink = {}
Sink.__index = Sink

function Sink:open(ctx) self.ctx = ctx end
function Sink:write(batch) if batch and batch.n > 0 then self.fn(batch.records, batch) end end
function Sink:close() if self.on_close then self.on_close() end end

--- A sink calling `fn(records, batch)` for every page.
-- @tparam function fn
-- @tparam[opt] table opts `upsert` (true when writing a record twice is
--   harmless: the job then skips its lookback bookkeeping), `raw` (ask for
--   raw JSON texts), `close` (function called when the run ends)
function M.new(fn, opts)
  if type(fn) ~= "function" then errors.usage("sync.sink: a function expected") end
  opts = opts or {}
  return setmetatable({ kind = "function", fn = fn, upsert = opts.upsert or false,
                        wants_raw = opts.raw or false, needs_tables = true,
                        on_close = opts.close }, Sink)
end

return M
