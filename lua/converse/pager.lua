--- Pagers: iterate the records of a paginated JSON endpoint.
-- This file is the I/O driver; the decisions (which page next, when to
-- stop, repeated cursors and pages) belong to the sans-I/O state machine in
-- the C core (`core.paging`, src/paging.c), shared by every transport.
-- Pages are requested ahead of the consumer (one page of prefetch; up to
-- `concurrency` pages once the page count is known), records are handed out
-- in page order as they are decoded, a page that fails half-way is fetched
-- again and its already-yielded records skipped, and a server that repeats
-- a page or a cursor raises instead of looping forever.
-- @module converse.pager
local core   = require "converse.core"
local errors = require "converse.errors"
local query  = require "converse.query"

local type, pairs, next, select, setmetatable, tostring, tonumber, pcall, error =
  type, pairs, next, select, setmetatable, tostring, tonumber, pcall, error
local remove = table.remove
local NULL = core.null
local encode = core.json_encode
local SORTED = { sort_keys = true }
local ARRAY_MT = core.array_mt()

local M = {}
local Pager = {}
Pager.__index = Pager

-- "auto" reads each envelope to find out how to continue (for APIs that do
-- not document it): a cursor (`next_cursor`/`cursor` + `has_more`), a page
-- count (`pages`/`total_pages`), `has_more`, or a short page.
local STYLES = { page = true, cursor = true, none = true, auto = true }

-- Field at a dotted path in a table, or nil.
local function dig(t, path)
  for part in path:gmatch("[^.]+") do
    if type(t) ~= "table" then return nil end
    t = t[part]
  end
  return t
end

local function present(v) return v ~= nil and v ~= NULL and v ~= "" end

--- Create a pager (use `client:paginate(path, opts)`).
function M.new(client, path, opts)
  if type(opts) ~= "table" then errors.usage("paginate options must be a table") end
  local style = opts.style or "page"
  if not STYLES[style] then
    errors.usage("style must be \"page\", \"cursor\", \"none\" or \"auto\"")
  end
  if opts.query ~= nil and type(opts.query) ~= "table" then errors.usage("query must be a table") end
  local concurrency = opts.concurrency or 2
  if type(concurrency) ~= "number" or concurrency < 1 or concurrency % 1 ~= 0 then
    errors.usage("concurrency must be a whole number >= 1")
  end
  local size_param = opts.size_param == nil and "limit" or opts.size_param
  local page_size = opts.page_size
  if page_size == nil and size_param then page_size = 100 end
  local ok, paging = pcall(core.paging, {
    style = style, first_page = opts.first_page, page_size = page_size,
    short_stops = size_param and true or false, concurrency = concurrency,
    max_pages = opts.max_pages, cursor = opts.cursor,
    total_field = opts.total_pages ~= nil,
  })
  if not ok then errors.usage(paging.message or tostring(paging)) end
  return setmetatable({
    client = client, path = path, style = style, paging = paging,
    base_query = opts.query or {},
    records = opts.records,
    page_param = opts.page_param or "page",
    size_param = size_param, page_size = page_size,
    total_field = opts.total_pages,
    cursor_param = opts.cursor_param or "cursor",
    cursor_field = opts.cursor_field or "cursor",
    slots = {},                         -- pages in flight, in page order
    closed = false,
  }, Pager)
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
  local d = client.decoder_opts
  local req = {
    method = "GET", url = url, endpoint = query.endpoint(url),
    decoder_opts = { records = self.records, max_depth = d.max_depth,
                     max_body = d.max_body, big_integers = d.big_integers },
  }
  local slot = { number = number, cursor = cursor, req = req, st = {}, yielded = 0 }
  slot.t = client:_start(req)
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

-- Does the state machine need this page's envelope before the next request?
function Pager:_needs_envelope()
  local st = self.paging:state()
  if st.stopped then return false end
  if self.style == "cursor" or self.style == "auto" then return #self.slots == 1 end
  return self.style == "page" and self.total_field ~= nil and st.total == nil
end

-- ---- page metadata -------------------------------------------------------------

function Pager:_fail(code, message, slot)
  local err = errors.new {
    kind = "http", code = code, message = message, method = "GET",
    url = slot and slot.req.url, status = slot and slot.st.status,
    attempts = slot and slot.st.attempts,
  }
  self:close()
  error(err, 0)
end

local function label(slot) return tostring(slot.number or slot.cursor or "1") end

-- Tell the state machine what the page's envelope says (once per page).
function Pager:_learn(slot, env)
  if slot.learned then return end
  slot.learned, slot.envelope = true, env
  local c = dig(env, self.cursor_field)
  if self.style == "auto" and not present(c) then c = env.next_cursor or env.nextCursor end
  local total = self.total_field and dig(env, self.total_field)
  if self.style == "auto" and total == nil then total = env.pages or env.total_pages end
  local more = env.has_more
  if type(more) ~= "boolean" then more = nil end
  local code = self.paging:learn {
    cursor = present(c) and tostring(c) or nil,
    total = tonumber(total),
    has_more = more,
    bare = next(env) ~= nil and env.page == nil,
  }
  if code then
    self:_fail(code, ("server returned cursor %q again"):format(tostring(c)), slot)
  end
end

-- A server that ignores the page parameter (or repeats a page) sends the
-- same first record again: catch it before any of its records is handed out.
function Pager:_check_first(slot, rec)
  local ok, fp = pcall(encode, rec, SORTED)
  if not ok or not self.paging:first(fp) then return end
  if self.style == "cursor" then             -- say which: read on to the cursor
    while slot.t:next() ~= nil do end
    self:_learn(slot, slot.t:envelope())
  end
  self:_fail("REPEATED_PAGE", ("page %s starts with a record an earlier page started with")
    :format(label(slot)), slot)
end

-- The oldest page has handed out all its records: decide what comes next.
function Pager:_finish(slot)
  if not slot.learned then self:_learn(slot, slot.t:envelope()) end
  slot.t:close()
  remove(self.slots, 1)
  if self.paging:finish(slot.number, slot.yielded) then self:_drop_slots() end
  return slot
end

function Pager:_drop_slots()
  for i = #self.slots, 1, -1 do
    self.slots[i].t:close()
    self.slots[i] = nil
  end
end

-- ---- pulling records -----------------------------------------------------------

-- Pull the next record of a slot: record, or nil at the end of its page.
function Pager:_pull(slot)
  local buffered = slot.buffer
  if buffered then
    local i = slot.bi + 1
    if i <= #buffered then
      slot.bi = i
      slot.yielded = slot.yielded + 1
      return buffered[i]
    end
    slot.buffer = nil
    if not slot.partial then return nil end   -- else the transfer reports its failure
  end
  if not slot.ready then
    slot.t = self.client:_await(slot.t, slot.req, slot.st)
    slot.ready = true
    for _ = 1, slot.yielded do                 -- re-fetched page: skip by position
      local ok, kind, msg, permanent = slot.t:next(true)
      if not ok then
        if kind then return self:_refetch(slot, kind, msg, permanent) end
        self:_fail("PAGE_CHANGED", ("page %s has fewer records than before the retry")
          :format(label(slot)), slot)
      end
    end
  end
  local rec, kind, msg, permanent = slot.t:next()
  if rec ~= nil then
    if slot.yielded == 0 then self:_check_first(slot, rec) end
    slot.yielded = slot.yielded + 1
    if self.want_envelope and (slot.yielded == 1 or slot.yielded % 128 == 0)
       and slot.t:done() then
      self:_drain(slot)
    end
    return rec
  end
  if kind == "empty" then
    self:close()
    errors.raise("json", "empty response body where a JSON page was expected",
      { method = "GET", url = slot.req.url, status = slot.st.status, attempts = slot.st.attempts })
  end
  if kind then return self:_refetch(slot, kind, msg, permanent) end
  return nil
end

-- The body is complete: decode the rest now so the envelope (next cursor,
-- page count) is known and the next requests can start while the consumer
-- is still busy with this page.
function Pager:_drain(slot)
  local buffered, n = {}, 0
  while true do
    local rec, kind = slot.t:next()
    if rec == nil then
      slot.partial = kind ~= nil               -- _pull meets the failure later
      break
    end
    n = n + 1
    buffered[n] = rec
  end
  slot.buffer, slot.bi = buffered, 0
  self.want_envelope = false
  if slot.partial then return end
  self:_learn(slot, slot.t:envelope())
  self:_fill()
end

-- A page failed half-way: fetch it again (the retry rules decide) and skip
-- the records already handed out.
function Pager:_refetch(slot, kind, msg, permanent)
  slot.t:close()
  local err = self.client:_error(kind, msg, {
    method = "GET", url = slot.req.url, attempts = slot.st.attempts })
  local ok, t = pcall(self.client._retry_or_raise, self.client, err, slot.req, slot.st, nil,
                      permanent)
  if not ok then self:close() error(t, 0) end
  slot.t, slot.ready = t, false
  return self:_pull(slot)
end

-- Release everything and raise err, saying which request a decoding error
-- came from.
function Pager:_raise(err, slot)
  self:close()
  self.client:_annotate(err, slot.req, slot.st)
  error(err, 0)
end

-- The current slot, after starting whatever may start now; nil at the end.
function Pager:_current()
  if self.closed then return nil end
  self:_fill()
  local slot = self.slots[1]
  if not slot then self:close() return nil end
  return slot
end

function Pager:_next_record()
  while true do
    local slot = self:_current()
    if not slot then return nil end
    if slot ~= self.current then             -- a new page: does the next one wait for it?
      self.current = slot
      self.want_envelope = self:_needs_envelope()
    end
    local ok, rec = pcall(self._pull, self, slot)
    if not ok then self:_raise(rec, slot) end
    if rec ~= nil then return rec end
    self:_finish(slot)
  end
end

-- ---- public iteration ------------------------------------------------------

--- Iterate records. `for r in pager do` works everywhere; on Lua 5.4,
-- `for r in pager() do` (or `pager:each()`) also passes a to-be-closed value,
-- so `break` releases the connections at once.
function Pager:each()
  return function() return self:_next_record() end, nil, nil, self
end

function Pager.__call(self, ...)
  if select("#", ...) == 0 then return self:each() end
  return self:_next_record()
end

--- Iterate pages: `{ records = {...}, number = n, cursor = c, body = envelope }`.
function Pager:pages()
  local function nextpage()
    local slot = self:_current()
    if not slot then return nil end
    local recs, n = setmetatable({}, ARRAY_MT), 0
    self.want_envelope = false
    while true do
      local ok, rec = pcall(self._pull, self, slot)
      if not ok then self:_raise(rec, slot) end
      if rec == nil then break end
      n = n + 1
      recs[n] = rec
    end
    self:_finish(slot)
    return { records = recs, number = slot.number, cursor = slot.cursor, body = slot.envelope }
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

--- Stop iterating and release every connection (safe to call twice).
function Pager:close()
  if self.closed then return end
  self.closed = true
  self:_drop_slots()
  self.paging:stop()
end

Pager.__close = Pager.close
Pager.__gc = Pager.close

return M
