--- UTC times and durations for sync jobs and the command line.
-- A time is "YYYY-MM-DD[ HH:MM[:SS]]" (UTC; a `T` instead of the space and
-- a trailing `Z` are accepted) or unix seconds; impossible dates
-- (2025-02-30, 2025-13-45, 24:00) are refused with a reason. A duration is
-- a whole number with a unit: `30s`, `15m`, `6h`, `1d`, `2w` (a bare
-- number is seconds). No time zone database and no os.time: the calendar
-- arithmetic is exact on every Lua.
-- @module converse.time
local type, tonumber, tostring, floor = type, tonumber, tostring, math.floor
local format = string.format

local M = {}

local DAYS_IN_MONTH = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 }
local MONTHS = { "January", "February", "March", "April", "May", "June", "July", "August",
                 "September", "October", "November", "December" }

local function leap(y) return y % 4 == 0 and (y % 100 ~= 0 or y % 400 == 0) end

local function month_days(y, m)
  if m == 2 and leap(y) then return 29 end
  return DAYS_IN_MONTH[m]
end

-- Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
local function days_from_civil(y, m, d)
  y = m <= 2 and y - 1 or y
  local era = floor(y / 400)
  local yoe = y - era * 400
  local doy = floor((153 * (m + (m > 2 and -3 or 9)) + 2) / 5) + d - 1
  local doe = yoe * 365 + floor(yoe / 4) - floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

local function civil_from_days(z)
  z = z + 719468
  local era = floor(z / 146097)
  local doe = z - era * 146097
  local yoe = floor((doe - floor(doe / 1460) + floor(doe / 36524) - floor(doe / 146096)) / 365)
  local y = yoe + era * 400
  local doy = doe - (365 * yoe + floor(yoe / 4) - floor(yoe / 100))
  local mp = floor((5 * doy + 2) / 153)
  local d = doy - floor((153 * mp + 2) / 5) + 1
  local m = mp < 10 and mp + 3 or mp - 9
  return m <= 2 and y + 1 or y, m, d
end

local function int(n)            -- an integer-valued number as an integer where there are integers
  return math.tointeger and math.tointeger(n) or n
end

--- Parse a time.
-- @tparam string|number v "YYYY-MM-DD[ HH:MM[:SS]]" (UTC) or unix seconds
-- @treturn[1] number unix seconds (whole)
-- @treturn[2] nil
-- @treturn[2] string why it is not a time
function M.parse(v)
  if type(v) == "number" then
    if v ~= v or v < 0 or v == math.huge then return nil, "must be a time after 1970" end
    return int(floor(v))
  end
  if type(v) ~= "string" then return nil, "must be a date or unix seconds" end
  if v:match("^%d+$") then return int(tonumber(v)) end
  local y, mo, d, rest = v:match("^(%d%d%d%d)%-(%d%d)%-(%d%d)(.*)$")
  if not y then
    return nil, format("%q is not a date: use \"YYYY-MM-DD[ HH:MM[:SS]]\" (UTC) or unix seconds", v)
  end
  local h, mi, s = 0, 0, 0
  if rest ~= "" then
    local hh, mm, ss = rest:match("^[ T](%d%d):(%d%d)(.*)$")
    if ss and ss ~= "" then ss = ss:match("^:(%d%d)Z?$") or (ss == "Z" and "00") end
    if not hh or not ss then
      return nil, format("%q has a bad time of day: use HH:MM or HH:MM:SS (UTC)", v)
    end
    h, mi, s = tonumber(hh), tonumber(mm), tonumber(ss) or 0
  end
  y, mo, d = tonumber(y), tonumber(mo), tonumber(d)
  if mo < 1 or mo > 12 then return nil, format("%q is not a date: there is no month %d", v, mo) end
  if d < 1 or d > month_days(y, mo) then
    return nil, format("%q is not a date: %s %d has %d days", v, MONTHS[mo], y, month_days(y, mo))
  end
  if h > 23 or mi > 59 or s > 59 then return nil, format("%q is not a time of day", v) end
  return int(days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s)
end

--- "YYYY-MM-DD HH:MM:SS" (UTC) of unix seconds.
function M.format(t)
  t = floor(t)
  local days = floor(t / 86400)
  local y, m, d = civil_from_days(days)
  local s = t - days * 86400
  return format("%04d-%02d-%02d %02d:%02d:%02d", y, m, d, floor(s / 3600), floor(s / 60) % 60, s % 60)
end

--- Like `format`, without a time of day at midnight ("2025-01-03").
function M.short(t)
  local s = M.format(t)
  if s:sub(12) == "00:00:00" then return s:sub(1, 10) end
  return s
end

local UNITS = { s = 1, m = 60, h = 3600, d = 86400, w = 604800 }

--- Parse a duration.
-- @tparam string|number v `30s`, `15m`, `6h`, `1d`, `2w`, or seconds
-- @treturn[1] number seconds
-- @treturn[2] nil
-- @treturn[2] string why it is not a duration
function M.duration(v)
  if type(v) == "number" then
    if v ~= v or v < 0 or v == math.huge then return nil, "must be a duration >= 0" end
    return v
  end
  if type(v) ~= "string" then return nil, "must be a duration such as 30s, 15m, 6h or 1d" end
  local n, unit = v:match("^(%d+)([smhdw]?)$")
  if not n then
    return nil, format("%q is not a duration: use a whole number with s, m, h, d or w (30s, 15m, 6h, 1d)", v)
  end
  return int(tonumber(n) * UNITS[unit ~= "" and unit or "s"])
end

--- A duration as its largest whole unit ("1d", "90m", "45s").
function M.format_duration(secs)
  secs = floor(secs)
  for _, u in ipairs { "w", "d", "h", "m" } do
    if secs >= UNITS[u] and secs % UNITS[u] == 0 then return tostring(int(secs / UNITS[u])) .. u end
  end
  return tostring(int(secs)) .. "s"
end

return M
