--- Pagers: iterate the records of a paginated JSON endpoint.
-- This file is the I/O driver. The decisions (which page next, whether the
-- next request waits for an envelope, when to stop, what the envelope says,
-- repeated cursors and pages, where to resume) belong to the sans-I/O state
-- machine in the C core (`core.paging`, src/paging.c); the request life
-- cycle (throttle, retries, redirects) to converse.request. Both are shared
-- by every transport.
--
-- Pages are requested ahead of the consumer (one page of prefetch; up to
-- `concurrency` pages once the page count is known); records are handed out
-- in page order as they are decoded; a page that fails half-way is fetched
-- again and its already-yielded records skipped by position.
--
-- Resuming: `pager:position()` (and `page.position` from `pages()`) is
-- where a new pager must start to continue *after* the pages finished so
-- far: `{ page = n }`, `{ cursor = c }` or `{ done = true }`, plus `query`,
-- a fingerprint of the request. `paginate(path, { resume = position })`
-- starts there, and refuses a position taken from another query.
-- @module converse.pager
local core    = require "converse.core"
local errors  = require "converse.errors"
local query   = require "converse.query"
local request = require "converse.request"

local type, pairs, select, setmetatable, tostring, pcall, error =
  type, pairs, select, setmetatable, tostring, pcall, error
local remove = table.remove
local encode, fingerprint = core.json_encode, core.fingerprint
local SORTED = { sort_keys = true }
local ARRAY_MT = core.array_mt()
local EMPTY = core.EMPTY

-- A page whose first record starts an earlier page too is read whole before
-- any of it is handed out (up to this many records), so that a repeated
-- page raises before a duplicate reaches the consumer.
local HOLD_MAX = 10000

local M = {}
local Pager = {}
Pager.__index = Pager

local STYLES = { page = true, cursor = true, none = true, auto = true }

-- What identifies the data a pager walks: path, query, records path, paging.
local function query_fingerprint(path, opts, page_size)
  return fingerprint(table.concat({
    path, query.encode(opts.query or {}), tostring(opts.records), tostring(opts.style or "page"),
    tostring(page_size), tostring(opts.page_param), tostring(opts.cursor_param),
  }, "\n"))
end

--- Create a pager (use `client:paginate(path, opts)`).
function M.new(client, path, opts)
  errors.check(opts, "table", "paginate options")
  local style = opts.style or "page"
  if not STYLES[style] then
    errors.usage("style must be \"page\", \"cursor\", \"none\" or \"auto\"")
  end
  if opts.query ~= nil then errors.check(opts.query, "table", "query") end
  local concurrency = opts.concurrency or 2
  if type(concurrency) ~= "number" or concurrency < 1 or concurrency % 1 ~= 0 then
    errors.usage("concurrency must be a whole number >= 1")
  end
  local size_param = opts.size_param == nil and "limit" or opts.size_param
  local page_size = opts.page_size
  if page_size == nil and size_param then page_size = 100 end
  local qfp = query_fingerprint(path, opts, page_size)
  local first_page, cursor, done = opts.first_page, opts.cursor, false
  local resume = opts.resume
  if resume ~= nil then
    errors.check(resume, "table", "resume")
    if resume.query ~= nil and resume.query ~= qfp then
      errors.usage("resume: this position belongs to another query (path, query or paging changed)")
    end
    if resume.done then done = true
    elseif resume.cursor ~= nil then cursor = resume.cursor
    elseif resume.page ~= nil then first_page = resume.page
    else errors.usage("resume: a position has page, cursor or done") end
  end
  local ok, paging = pcall(core.paging, {
    style = style, first_page = first_page, page_size = page_size,
    short_stops = size_param and true or false, concurrency = concurrency,
    max_pages = opts.max_pages, cursor = cursor,
    cursor_field = opts.cursor_field, total_field = opts.total_pages,
  })
  if not ok then errors.usage(paging.message or tostring(paging)) end
  local d = client.decoder_opts
  local self = setmetatable({
    client = client, path = path, style = style, paging = paging,
    base_query = opts.query or {},
    page_param = opts.page_param or "page",
    size_param = size_param, page_size = page_size,
    cursor_param = opts.cursor_param or "cursor",
    decoder_opts = { records = opts.records, raw = opts.raw, max_depth = d.max_depth,
                     max_body = d.max_body, max_record = d.max_record,
                     max_envelope = d.max_envelope, big_integers = d.big_integers },
    query_fp = qfp,
    decoders = {},                      -- idle decoders, reused page after page
    slots = {},                         -- pages in flight, in page order
    closed = false,
  }, Pager)
  if done then
    self.closed, self.finished = true, true
    self.resumed_done = true
  end
  return self
end

-- ---- issuing pages ----------------------------------------------------------

function Pager:_issue(number, cursor)
  local q = {}
  for k, v in pairs(self.base_query) do q[k] = v end
  if number ~= nil then q[self.page_param] = number
  elseif cursor ~= nil then q[self.cursor_param] = cursor end
  if self.style ~= "cursor" and self.size_param and self.page_size then
    q[self.size_param] = self.page_size
  end
  local client = self.client
  local url = query.build(client.base_url, self.path, q)
  local dec = remove(self.decoders) or core.decoder(self.decoder_opts)
  local req = { method = "GET", url = url, endpoint = query.endpoint(url), decoder = dec }
  request.check(req)
  local slot = { number = number, cursor = cursor, req = req, st = {}, yielded = 0 }
  slot.t = request.start(client, req, slot.st)   -- may raise (interrupted while throttled)
  self.slots[#self.slots + 1] = slot
end

-- Start every request the state machine wants now.
function Pager:_fill()
  if self.closed then return end
  while true do
    local kind, value = self.paging:want()
    if not kind then return end
    if kind == "cursor" then self:_issue(nil, value) else self:_issue(value, nil) end
  end
end

-- ---- page metadata -------------------------------------------------------------

local MESSAGES = {
  REPEATED_CURSOR = "server returned a cursor it had sent before (it would loop forever)",
  REPEATED_PAGE = "server returned the same page again (same first record, last record "
    .. "and count: it ignores the page parameter?)",
  BAD_PAGE_COUNT = "server sent a page count that is not a whole number of pages",
  PAGE_COUNT_MISMATCH = "server sent an empty page before the last page it announced",
  PAGE_CHANGED = "page has fewer records than before the retry",
}

function Pager:_fail(code, detail, slot)
  local err = request.error(self.client, "http", MESSAGES[code] .. (detail and (": " .. detail) or ""), {
    code = code, method = "GET", url = slot and slot.req.url, status = slot and slot.st.status,
    attempts = slot and slot.st.attempts,
  })
  self:close()
  error(err, 0)
end

-- Tell the state machine what the page's envelope says (once per page).
function Pager:_learn(slot, env)
  if slot.learned then return end
  slot.learned, slot.envelope = true, env
  local ok, code, detail = self.paging:learn(env)
  if not ok then
    self:_fail(code, code == "BAD_PAGE_COUNT" and ("%q"):format(tostring(detail)) or nil, slot)
  end
end

local function record_fp(rec)
  if type(rec) == "string" then return fingerprint(rec) end          -- raw mode
  local ok, text = pcall(encode, rec, SORTED)
  return fingerprint(ok and text or tostring(rec))
end

-- A slot is done with its transfer: its decoder serves the next page.
function Pager:_release(slot)
  slot.t:close()
  local dec = slot.req.decoder
  if dec then
    slot.req.decoder = nil
    self.decoders[#self.decoders + 1] = dec
  end
end

-- The oldest page has handed out all its records: decide what comes next.
function Pager:_finish(slot)
  if not slot.learned then self:_learn(slot, slot.t:envelope()) end
  self:_release(slot)
  remove(self.slots, 1)
  local last = slot.yielded > 0 and record_fp(slot.last) or nil
  slot.last = nil
  local stopped, code, detail = self.paging:finish(slot.number, slot.yielded, slot.first_fp, last)
  if code then self:_fail(code, detail, slot) end
  local client = self.client
  if client.on_event or client.log then     -- no event (nor redacted URL) when nobody listens
    request.emit(client, { type = "page", number = slot.number, cursor = slot.cursor,
                           records = slot.yielded, url = errors.redact_url(slot.req.url) })
  end
  if stopped then self:_drop_slots() end
  return slot
end

function Pager:_drop_slots()
  for i = #self.slots, 1, -1 do
    self:_release(self.slots[i])
    self.slots[i] = nil
  end
end

-- ---- pulling records -----------------------------------------------------------

-- Read the rest of a page into its buffer (at most `limit` records): used
-- when the body is complete (so the envelope is known at once) and for a
-- page under suspicion of repeating an earlier one.
function Pager:_drain(slot, limit)
  local buffered, n = slot.buffer or {}, slot.buffer and #slot.buffer or 0
  slot.bi = slot.bi or 0
  local complete = true
  while true do
    if limit and n >= limit then complete = false break end
    local rec, kind = slot.t:next()
    if rec == nil then
      slot.partial = kind ~= nil               -- _pull meets the failure later
      break
    end
    n = n + 1
    buffered[n] = rec
  end
  slot.buffer = buffered
  if complete and not slot.partial then
    self.want_envelope = false
    self:_learn(slot, slot.t:envelope())
    self:_fill()
  end
  return complete and not slot.partial
end

-- The first record of a page: remember it; a page that starts like an
-- earlier one is read whole (HOLD_MAX records at most) and compared before
-- anything of it is handed out.
function Pager:_first_record(slot, rec)
  slot.first_fp = record_fp(rec)
  if not self.paging:first(slot.first_fp) then return end
  slot.buffer, slot.bi = { rec }, 0
  if not self:_drain(slot, HOLD_MAX) then return end
  local buffered = slot.buffer
  if self.paging:repeats(#buffered, slot.first_fp, record_fp(buffered[#buffered])) then
    self:_fail("REPEATED_PAGE", #buffered .. " records", slot)
  end
end

-- Pull the next record of a slot: record, or nil at the end of its page.
function Pager:_pull(slot)
  local buffered = slot.buffer
  if buffered then
    local i = slot.bi + 1
    if i <= #buffered then
      slot.bi = i
      slot.yielded = slot.yielded + 1
      slot.last = buffered[i]
      return buffered[i]
    end
    slot.buffer = nil
    if not slot.partial and slot.learned then return nil end
    slot.partial = nil                          -- else the transfer reports its end or failure
  end
  if not slot.ready then
    slot.t = request.await(self.client, slot.t, slot.req, slot.st)
    slot.ready = true
    for _ = 1, slot.yielded do                 -- re-fetched page: skip by position
      local ok, kind, msg, permanent = slot.t:next(true)
      if ok == EMPTY or not ok then
        if kind then return self:_refetch(slot, kind, msg, permanent) end
        self:_fail("PAGE_CHANGED", nil, slot)
      end
    end
  end
  return self:_took(slot, slot.t:next())
end

-- What the slot's transfer answered to next(): a record (returned), the
-- end of the page (nil), or a failure (the page is fetched again).
function Pager:_took(slot, rec, kind, msg, permanent)
  if rec ~= nil and rec ~= EMPTY then
    if slot.yielded == 0 and not slot.first_fp then
      self:_first_record(slot, rec)
      if slot.buffer then return self:_pull(slot) end
    end
    slot.yielded = slot.yielded + 1
    slot.last = rec
    if self.want_envelope and (slot.yielded == 1 or slot.yielded % 128 == 0)
       and slot.t:done() then
      self:_drain(slot)
    end
    return rec
  end
  if rec == EMPTY then
    self:close()
    error(request.error(self.client, "json", "empty response body where a JSON page was expected",
      { method = "GET", url = slot.req.url, status = slot.st.status, attempts = slot.st.attempts }), 0)
  end
  if kind then return self:_refetch(slot, kind, msg, permanent) end
  return nil
end

-- A page failed half-way: fetch it again (the retry rules decide) and skip
-- the records already handed out.
function Pager:_refetch(slot, kind, msg, permanent)
  slot.t:close()
  local client = self.client
  local err = request.failure(client, kind, msg, slot.req, slot.st)
  if kind == "interrupted" then self:close() error(err, 0) end
  local ok, t = pcall(request.retry, client, err, slot.req, slot.st, nil, permanent)
  if not ok then self:close() error(t, 0) end
  slot.t, slot.ready = t, false
  return self:_pull(slot)
end

-- Release everything and raise err, saying which request it came from.
function Pager:_raise(err, slot)
  self:close()
  error(request.annotate(self.client, err, slot.req, slot.st), 0)
end

local CLOSED = "this pager is finished or closed (iterated to the end, broken out of, "
  .. "or closed): create a new one"

-- The current slot, after starting whatever may start now; nil at the end.
function Pager:_current()
  if self.closed then
    if self.finished then return nil end
    errors.usage(CLOSED)
  end
  self:_fill()
  local slot = self.slots[1]
  if not slot then
    self.finished = true
    self:close()
    return nil
  end
  return slot
end

-- The per-record path. While the current page streams plainly (its head
-- awaited, its first record checked, nothing buffered), `self.fast` is its
-- slot and a record costs one protected call of the transfer's next();
-- anything else (the page's end, a failure, every 128th record while the
-- next request waits for this page's envelope) goes the general way.
-- A local function, called directly: no method lookup per record.
local next_record

-- The fast path's call answered something other than a plain record.
function Pager:_off_fast(slot, ok, rec, kind, msg, permanent)
  self.fast = nil
  if not ok then self:_raise(rec, slot) end
  ok, rec = pcall(self._took, self, slot, rec, kind, msg, permanent)
  if not ok then self:_raise(rec, slot) end
  if rec ~= nil then return rec end
  self:_finish(slot)
  return self:_next_general()
end

function Pager:_next_general()
  if self.closed then
    if self.finished and not self.ended then self.ended = true return nil end
    errors.usage(CLOSED)
  end
  while true do
    local slot = self:_current()
    if not slot then self.ended = true return nil end
    if slot ~= self.current then             -- a new page: does the next one wait for it?
      self.current = slot
      self.want_envelope = self.paging:needs_envelope()
    end
    local ok, rec = pcall(self._pull, self, slot)
    if not ok then self:_raise(rec, slot) end
    if rec ~= nil then
      if slot.ready and not slot.buffer and slot.first_fp and not self.closed then
        slot.t_next = slot.t_next or slot.t.next
        self.fast = slot
      end
      return rec
    end
    self:_finish(slot)
  end
end

next_record = function(self)
  local slot = self.fast
  if slot then
    local ok, rec, kind, msg, permanent = pcall(slot.t_next, slot.t)
    if ok and rec ~= nil and rec ~= EMPTY then
      local y = slot.yielded + 1
      if not self.want_envelope or y % 128 ~= 0 then
        slot.yielded, slot.last = y, rec
        return rec
      end
    end
    return self:_off_fast(slot, ok, rec, kind, msg, permanent)
  end
  return self:_next_general()
end
Pager._next_record = next_record

-- ---- public iteration ------------------------------------------------------

--- Iterate records. `for r in pager do` works everywhere; on Lua 5.4,
-- `for r in pager() do` (or `pager:each()`) also passes a to-be-closed value,
-- so `break` releases the connections at once. A pager is iterated once:
-- iterating it again after its end, a `break` or `close()` raises a usage error.
function Pager:each()
  if self.closed and (not self.finished or self.ended) then errors.usage(CLOSED) end
  return function() return next_record(self) end, nil, nil, self
end

-- `for r in pager do` calls this with the loop's state and control values:
-- after the first record the control value (the record before) is not
-- nil, which spares counting the arguments (a third of the cost of a call).
function Pager.__call(self, ...)
  local _, ctl = ...
  if ctl == nil and select("#", ...) == 0 then return self:each() end
  return next_record(self)
end

--- Iterate pages: `{ records = {...}, number = n, cursor = c, body = envelope,
-- position = p }` where `cursor` is the cursor that fetched the page and
-- `position` is where to resume after it (see the module's header).
function Pager:pages()
  if self.closed and (not self.finished or self.ended) then errors.usage(CLOSED) end
  local function nextpage()
    if self.closed then
      if self.finished and not self.ended then self.ended = true return nil end
      errors.usage(CLOSED)
    end
    local slot = self:_current()
    if not slot then self.ended = true return nil end
    local recs, n = setmetatable({}, ARRAY_MT), 0
    self.current = slot
    self.want_envelope = false
    while true do
      local ok, rec = pcall(self._pull, self, slot)
      if not ok then self:_raise(rec, slot) end
      if rec == nil then break end
      n = n + 1
      recs[n] = rec
    end
    self:_finish(slot)
    return { records = recs, number = slot.number, cursor = slot.cursor, body = slot.envelope,
             position = self:position() }
  end
  return nextpage, nil, nil, self
end

--- Every record, in order, in one array.
function Pager:collect()
  local all, n = setmetatable({}, ARRAY_MT), 0
  for rec in self:each() do
    n = n + 1
    all[n] = rec
  end
  return all
end

--- Where a new pager resumes after the pages finished so far (nil before
-- the first page is finished): `{ page = n | cursor = c | done = true, query = fp }`.
function Pager:position()
  if self.resumed_done then return { done = true, query = self.query_fp } end
  local ok, pos = pcall(self.paging.position, self.paging)
  if not ok then pos = self.last_position end
  if pos then pos.query = self.query_fp end
  self.last_position = pos
  return pos
end

--- Stop iterating and release every connection (safe to call twice).
function Pager:close()
  self.fast = nil
  if self.closed then return end
  self:position()                        -- keep it: the state machine is closed below
  self.closed = true
  self:_drop_slots()
  self.paging:stop()
end

Pager.__close = Pager.close
Pager.__gc = Pager.close

return M
