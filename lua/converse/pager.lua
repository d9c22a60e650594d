--- Pagers: iterate the records of a paginated JSON endpoint.
-- Pages are requested ahead of the consumer (one page of prefetch; up to
-- `concurrency` pages once the page count is known), records are handed out
-- in page order as they are decoded, a page that fails half-way is fetched
-- again and its already-yielded records skipped, and a server that repeats
-- a page or a cursor raises instead of looping forever.
-- @module converse.pager
local core   = require "converse.core"
local errors = require "converse.errors"
local query  = require "converse.query"

local type, pairs, next, select, setmetatable, tostring = type, pairs, next, select, setmetatable, tostring
local remove, error = table.remove, error
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

local function absent(v) return v == nil or v == NULL or v == "" end

--- Create a pager (use `client:paginate(path, opts)`).
function M.new(client, path, opts)
  if type(opts) ~= "table" then errors.usage("paginate options must be a table") end
  local style = opts.style or "page"
  if not STYLES[style] then
    errors.usage("style must be \"page\", \"cursor\", \"none\" or \"auto\"")
  end
  local page_size = opts.page_size
  if page_size == nil and opts.size_param ~= false then page_size = 100 end
  local self = setmetatable({
    client = client, path = path, style = style,
    base_query = opts.query or {},
    records = opts.records,
    page_param = opts.page_param or "page",
    size_param = opts.size_param == nil and "limit" or opts.size_param,
    page_size = page_size,
    total_field = opts.total_pages,
    cursor_param = opts.cursor_param or "cursor",
    cursor_field = opts.cursor_field or "cursor",
    concurrency = opts.concurrency or 2,
    max_pages = opts.max_pages,
    next_number = opts.first_page or 1,
    first_page = opts.first_page or 1,
    next_cursor = opts.cursor,          -- cursor style: nil = first page
    cursor_ready = true,                -- the next cursor is known
    slots = {},                         -- in-flight pages, in page order
    seen_cursors = {}, first_records = {},
    issued = 0, stopped = false, closed = false,
  }, Pager)
  if type(self.base_query) ~= "table" then errors.usage("query must be a table") end
  if type(self.concurrency) ~= "number" or self.concurrency < 1 then
    errors.usage("concurrency must be a number >= 1")
  end
  return self
end

-- ---- issuing pages --------------------------------------------------------

function Pager:_issue(number, cursor)
  local q = {}
  for k, v in pairs(self.base_query) do q[k] = v end
  if number ~= nil then
    q[self.page_param] = number
  elseif cursor ~= nil then
    q[self.cursor_param] = cursor
  end
  if self.style ~= "cursor" and self.size_param and self.page_size then
    q[self.size_param] = self.page_size
  end
  local client = self.client
  local url = query.build(client.base_url, self.path, q)
  local req = {
    method = "GET", url = url, endpoint = query.endpoint(url),
    decoder_opts = {
      records = self.records, max_depth = client.decoder_opts.max_depth,
      max_body = client.decoder_opts.max_body,
      big_integers = client.decoder_opts.big_integers,
    },
  }
  local slot = { number = number, cursor = cursor, req = req, st = {}, yielded = 0 }
  slot.t = client:_start(req)
  self.slots[#self.slots + 1] = slot
  self.issued = self.issued + 1
  return slot
end

-- How many pages may be in flight now.
-- With a page-count field, wait for the first envelope rather than guess;
-- without one, keep one page of prefetch (it may ask one page past the end).
function Pager:_window()
  if self.total then return self.concurrency end
  if self.total_field then return 1 end
  return self.concurrency > 1 and 2 or 1
end

function Pager:_fill()
  if self.stopped or self.closed then return end
  local style = self.style
  if style == "none" then
    if self.issued == 0 then self:_issue(nil, nil) end
  elseif style == "auto" then
    if #self.slots == 0 then
      if self.next_cursor ~= nil then
        self:_issue(nil, self.next_cursor)
      else
        self:_issue(self.next_number, nil)
        self.next_number = self.next_number + 1
      end
    end
  elseif style == "cursor" then
    if #self.slots == 0 and self.cursor_ready then
      self.cursor_ready = false
      self:_issue(nil, self.next_cursor)
    end
  else
    while #self.slots < self:_window()
      and not (self.total and self.next_number > self.total)
      and not (self.max_pages and self.issued >= self.max_pages) do
      self:_issue(self.next_number, nil)
      self.next_number = self.next_number + 1
    end
  end
end

-- ---- page metadata ---------------------------------------------------------

-- Learn what the envelope says (total pages, next cursor) as soon as the
-- page's body is complete, so the next requests can start early.
function Pager:_learn(slot, env)
  if slot.learned then return end
  slot.learned = true
  slot.envelope = env
  if self.style == "cursor" then
    local c = dig(env, self.cursor_field)
    if absent(c) then
      self.stopped = true
    else
      c = tostring(c)
      if self.seen_cursors[c] then
        self:_fail("REPEATED_CURSOR", ("server returned cursor %q again"):format(c), slot)
      end
      self.seen_cursors[c] = true
      self.next_cursor, self.cursor_ready = c, true
    end
  elseif self.style == "page" and self.total_field and not self.total then
    local n = tonumber(dig(env, self.total_field))
    if n then self.total = n end
  elseif self.style == "auto" then
    self:_learn_auto(slot, env)
  end
end

function Pager:_learn_auto(slot, env)
  local c = dig(env, self.cursor_field)
  if absent(c) then c = env.next_cursor end
  if absent(c) then c = env.nextCursor end
  self.next_cursor = nil
  if not absent(c) and env.has_more ~= false then
    c = tostring(c)
    if self.seen_cursors[c] then
      self:_fail("REPEATED_CURSOR", ("server returned cursor %q again"):format(c), slot)
    end
    self.seen_cursors[c] = true
    self.next_cursor = c
    return
  end
  local pages = tonumber(dig(env, self.total_field or "pages") or env.total_pages)
  if pages then self.total = pages end
  if env.has_more == false then slot.last = true
  elseif env.has_more == true then slot.more = true
  elseif not pages and next(env) ~= nil and env.page == nil then
    slot.last = true            -- an envelope with no paging information: one page
  end
end

function Pager:_fail(code, message, slot)
  local err = errors.new {
    kind = "http", code = code, message = message, method = "GET",
    url = slot and slot.req.url, status = slot and slot.st.status,
    attempts = slot and slot.st.attempts,
  }
  self:close()
  error(err, 0)
end

-- The current page has handed out all its records: decide what comes next.
function Pager:_finish(slot)
  if not slot.learned then self:_learn(slot, slot.t:envelope()) end
  slot.t:close()
  remove(self.slots, 1)
  local count = slot.yielded
  if self.style == "page" then
    local short = self.size_param and self.page_size and count < self.page_size
    if count == 0 or short or (self.total and slot.number >= self.total) then
      self.stopped = true
    end
  elseif self.style == "none" then
    self.stopped = true
  elseif self.style == "auto" and self.next_cursor == nil and not slot.more then
    local short = self.page_size and count < self.page_size
    if count == 0 or short or slot.last or (self.total and slot.number
       and slot.number >= self.total) then
      self.stopped = true
    end
  end
  if self.max_pages and self.issued >= self.max_pages and #self.slots == 0 then
    self.stopped = true
  end
  if self.stopped then self:_drop_slots() end
  return slot
end

function Pager:_drop_slots()
  for i = #self.slots, 1, -1 do
    self.slots[i].t:close()
    self.slots[i] = nil
  end
end

-- ---- pulling records ------------------------------------------------------

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
      local ok, kind, msg = slot.t:next(true)
      if not ok then
        if kind then return self:_refetch(slot, kind, msg) end
        self:_fail("PAGE_CHANGED", ("page %s has fewer records than before the retry")
          :format(tostring(slot.number or slot.cursor or "?")), slot)
      end
    end
  end
  local rec, kind, msg = slot.t:next()
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
  if kind then return self:_refetch(slot, kind, msg) end
  return nil
end

-- A server that ignores the page parameter (or repeats a page) sends the
-- same first record again: catch it before any of its records is handed out.
function Pager:_check_first(slot, rec)
  local ok, fp = pcall(encode, rec, SORTED)
  if not ok then return end
  if self.first_records[fp] then
    if self.style == "cursor" then         -- say which: read on to the cursor
      while slot.t:next() ~= nil do end
      local c = dig(slot.t:envelope(), self.cursor_field)
      if not absent(c) and self.seen_cursors[tostring(c)] then
        self:_fail("REPEATED_CURSOR", ("server returned cursor %q again"):format(tostring(c)), slot)
      end
    end
    self:_fail("REPEATED_PAGE", ("page %s starts with the same record as page %s"):format(
      tostring(slot.number or slot.cursor or "?"), tostring(self.first_records[fp])), slot)
  end
  self.first_records[fp] = slot.number or slot.cursor or true
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
  if slot.partial then return end
  self:_learn(slot, slot.t:envelope())
  self:_fill()
end

-- A page failed half-way: fetch it again (the retry rules decide) and skip
-- the records already handed out.
function Pager:_refetch(slot, kind, msg)
  slot.t:close()
  local err = self.client:_error(kind, msg, {
    method = "GET", url = slot.req.url, attempts = slot.st.attempts })
  local ok, t = pcall(self.client._retry_or_raise, self.client, err, slot.req, slot.st, nil)
  if not ok then self:close() error(t, 0) end
  slot.t, slot.ready = t, false
  return self:_pull(slot)
end

function Pager:_next_record()
  while true do
    if self.closed then return nil end
    self:_fill()
    local slot = self.slots[1]
    if not slot then
      self:close()
      return nil
    end
    self.want_envelope = (self.style == "cursor" and not self.cursor_ready and not self.stopped)
      or (self.style == "page" and self.total_field ~= nil and not self.total)
    local ok, rec = pcall(self._pull, self, slot)
    if not ok then self:close() error(rec, 0) end
    if rec ~= nil then return rec end
    self:_finish(slot)
  end
end

-- ---- public iteration ----------------------------------------------------

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
    if self.closed then return nil end
    self:_fill()
    local slot = self.slots[1]
    if not slot then self:close() return nil end
    local recs, n = setmetatable({}, ARRAY_MT), 0
    while true do
      self.want_envelope = false
      local ok, rec = pcall(self._pull, self, slot)
      if not ok then self:close() error(rec, 0) end
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
end

Pager.__close = Pager.close
Pager.__gc = Pager.close

return M
