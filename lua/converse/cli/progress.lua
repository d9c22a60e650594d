--- The live progress line of `converse sync` (stderr, terminals only),
-- built from the job's and the client's events:
--   agentx/messages | 12,345 records | 13 pages | 4,120 rec/s | window 2025-01-03 | retries 2 | ETA 0:42
-- While the client waits (a retry's backoff, a Retry-After, the rate
-- limiter) the line says so, with the wait, so waiting is never mistaken
-- for hanging. Redrawn at most ten times a second.
-- @module converse.cli.progress
local core  = require "converse.core"
local stime = require "converse.time"

local floor, format, max, ipairs, tonumber = math.floor, string.format, math.max, ipairs, tonumber
local now = core.now

local M = {}
local Progress = {}
Progress.__index = Progress

--- 1234567 -> "1,234,567"
function M.thousands(n)
  local s = format("%d", n)
  local out = s:reverse():gsub("(%d%d%d)", "%1,"):reverse()
  return (out:gsub("^,", ""))
end

local function clock(secs)
  secs = floor(secs + 0.5)
  if secs >= 3600 then return format("%d:%02d:%02d", floor(secs / 3600), floor(secs / 60) % 60, secs % 60) end
  return format("%d:%02d", floor(secs / 60), secs % 60)
end

--- The terminal's width: $COLUMNS, else what stty says, else 80.
function M.width()
  local n = tonumber(os.getenv("COLUMNS") or "")
  if n then return n end
  local p = io.popen("stty size 2>/dev/null </dev/tty")
  local size = p and p:read("*l")
  if p then p:close() end
  return tonumber(size and size:match("^%d+ (%d+)")) or 80
end

--- A progress line writing to `out` (default io.stderr).
function M.new(name, out)
  return setmetatable({ name = name, out = out or io.stderr, t0 = now(), last = 0, records = 0, pages = 0,
                        retries = 0, waits = 0, shown = false,
                        width = M.width() - 1 }, Progress)
end

function Progress:line()
  local elapsed = max(now() - self.t0, 1e-3)
  local parts = { self.name, M.thousands(self.records) .. " records",
                  M.thousands(self.pages) .. (self.pages == 1 and " page" or " pages"),
                  M.thousands(floor(self.records / elapsed)) .. " rec/s" }
  local later = {}
  if self.window then later[#later + 1] = "window " .. stime.short(self.window) end
  if self.retries > 0 then later[#later + 1] = "retries " .. self.retries end
  if self.waits > 0 then later[#later + 1] = "rate-limit waits " .. self.waits end
  local eta
  if self.total and self.records > 0 and self.total > self.records then
    eta = elapsed * (self.total - self.records) / self.records
  elseif self.fraction and self.fraction > 0.01 and self.fraction < 1 then
    eta = elapsed * (1 - self.fraction) / self.fraction
  end
  if eta then parts[#parts + 1] = "ETA " .. clock(eta) end
  if self.waiting then parts[#parts + 1] = self.waiting end
  for _, p in ipairs(later) do parts[#parts + 1] = p end
  return table.concat(parts, " | ")
end

function Progress:draw(force)
  local t = now()
  if not force and t - self.last < 0.1 then return end
  self.last = t
  local line = self:line()
  if #line > self.width then line = line:sub(1, self.width - 3) .. "..." end
  self.out:write("\r", line, "\27[K")
  self.out:flush()
  self.shown = true
end

--- Feed one event (job or client).
function Progress:event(ev)
  local t = ev.type
  if t == "checkpoint" then
    self.records, self.pages = ev.records, ev.pages
    self.total = ev.total or self.total
    self.fraction = ev.fraction or self.fraction
    self.waiting = nil
  elseif t == "window" then
    self.window, self.fraction = ev.start, ev.fraction or self.fraction
  elseif t == "retry" then
    self.retries = self.retries + 1
    self.waiting = format("retry in %.1f s after %s", ev.wait or 0, tostring(ev.reason))
    return self:draw(true)
  elseif t == "rate_limit" then
    if not self.in_wait then self.waits = self.waits + 1 end   -- one wait may come in slices
    self.in_wait = true
    if (ev.wait or 0) < 0.05 and not ev.paused then return end
    self.waiting = format("waiting %.1f s (%s)", ev.wait or 0,
                          ev.paused and "the server's Retry-After" or "rate limit")
    return self:draw(true)
  elseif t == "queue_wait" then
    self.waiting = format("PostgreSQL unavailable, trying again in %.1f s", ev.wait or 0)
    return self:draw(true)
  elseif t == "request" then
    self.in_wait = false
    if self.waiting then self.waiting = nil end
  elseif t == "done" then
    return
  end
  self:draw(false)
end

--- End the line (before the summary is printed).
function Progress:finish()
  if self.shown then
    self:draw(true)
    self.out:write("\n")
    self.out:flush()
  end
end

return M
