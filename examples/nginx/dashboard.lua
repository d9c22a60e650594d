--- A small live dashboard inside nginx, computed through converse.
--
-- A background sync (ngx.timer.every from init_worker_by_lua, in one
-- worker) pages every Converz call through the cosocket transport, folds
-- them into a few numbers -- calls per hour of the day, top campaigns,
-- sentiment -- and keeps the result in a lua_shared_dict. Every worker
-- serves the page (/) and the numbers (/stats.json) from that dict, so a
-- request never waits for a vendor API.
--
-- Configuration comes from the environment (nginx.conf lists it with
-- `env`): CONVERZ_URL (default: a local mock on port 8080), CONVERZ_KEY,
-- DASHBOARD_INTERVAL (seconds between syncs, default 60).
-- luacheck: globals ngx
local converse = require "converse"

local M = {}

local DICT = "dashboard"

local function setting(name, default)
  local v = os.getenv(name)
  if v == nil or v == "" then return default end
  return v
end

-- ---- the numbers ------------------------------------------------------------------

--- Fold calls into the dashboard's numbers.
-- @tparam function each an iterator of calls (records with start_time, campaign,
--   sentiment, duration, resolved)
-- @treturn table { calls, per_hour[24], campaigns = { {name, calls, resolved, minutes} },
--   sentiment = { positive, neutral, negative, unknown } }
function M.aggregate(each)
  local per_hour, by_campaign = {}, {}
  for h = 1, 24 do per_hour[h] = 0 end
  local sentiment = { positive = 0, neutral = 0, negative = 0, unknown = 0 }
  local n = 0
  for call in each do
    n = n + 1
    local hour = tonumber(tostring(call.start_time):sub(12, 13))
    if hour then per_hour[hour + 1] = per_hour[hour + 1] + 1 end
    local name = type(call.campaign) == "string" and call.campaign or "(none)"
    local c = by_campaign[name]
    if not c then
      c = { name = name, calls = 0, resolved = 0, seconds = 0 }
      by_campaign[name] = c
    end
    c.calls = c.calls + 1
    if call.resolved == true then c.resolved = c.resolved + 1 end
    c.seconds = c.seconds + (tonumber(call.duration) or 0)
    local s = tonumber(call.sentiment)
    local bucket = not s and "unknown" or s > 0.2 and "positive" or s < -0.2 and "negative" or "neutral"
    sentiment[bucket] = sentiment[bucket] + 1
  end
  local campaigns = {}
  for _, c in pairs(by_campaign) do
    campaigns[#campaigns + 1] = { name = c.name, calls = c.calls, resolved = c.resolved,
                                  minutes = math.floor(c.seconds / 60 + 0.5) }
  end
  table.sort(campaigns, function(a, b)
    if a.calls ~= b.calls then return a.calls > b.calls end
    return a.name < b.name
  end)
  return { calls = n, per_hour = converse.array(per_hour), campaigns = converse.array(campaigns),
           sentiment = sentiment }
end

-- ---- the background sync ---------------------------------------------------------

--- One sync (a timer handler): page every call, keep the numbers.
function M.sync(premature)
  if premature then return end
  local dict = ngx.shared[DICT]
  if not dict:add("syncing", true, 600) then return end     -- one at a time
  ngx.update_time()
  local t0 = ngx.now()
  local ok, err = pcall(function()
    local cz = converse.converz {
      base_url = setting("CONVERZ_URL", "http://127.0.0.1:8080/converz/api/v1"),
      api_key = setting("CONVERZ_KEY", "demo-key"),
    }
    local calls = cz:calls { n_per_page = 5000,
                             columns = { "call_id", "start_time", "campaign", "sentiment",
                                         "duration", "resolved" } }
    local stats = M.aggregate(calls)
    ngx.update_time()
    stats.synced_at = ngx.now()
    stats.sync_seconds = ngx.now() - t0
    dict:set("stats", converse.json.encode(stats))
    dict:delete("error")
  end)
  if not ok then
    dict:set("error", tostring(err))                          -- error objects print one line
    ngx.log(ngx.ERR, "dashboard sync: ", tostring(err))
  end
  dict:delete("syncing")
end

--- init_worker_by_lua: the first worker syncs now and every INTERVAL seconds.
function M.init_worker()
  if ngx.worker.id() ~= 0 then return end
  local every = tonumber(setting("DASHBOARD_INTERVAL", "60"))
  assert(ngx.timer.at(0, M.sync))
  assert(ngx.timer.every(every, M.sync))
end

-- ---- serving ----------------------------------------------------------------------

local function stats()
  local dict = ngx.shared[DICT]
  local text = dict:get("stats")
  return text and converse.json.decode(text), dict:get("error")
end

--- GET /stats.json: the numbers (503 until the first sync finished).
function M.stats_json()
  local s, err = stats()
  ngx.header["Content-Type"] = "application/json"
  if not s then
    ngx.status = 503
    ngx.say(converse.json.encode { status = "syncing", error = err })
    return
  end
  ngx.say(converse.json.encode(s, { sort_keys = true }))
end

local function esc(s)
  return (tostring(s):gsub("[&<>\"']", { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;",
                                         ['"'] = "&quot;", ["'"] = "&#39;" }))
end

-- Calls per hour of the day as an SVG bar chart.
local function hours_svg(per_hour)
  local W, H, pad = 720, 220, 28
  local max = 1
  for _, v in ipairs(per_hour) do if v > max then max = v end end
  local bw = (W - 2 * pad) / 24
  local out = { ('<svg viewBox="0 0 %d %d" width="%d" height="%d" role="img" '
    .. 'aria-label="calls per hour of the day">'):format(W, H, W, H) }
  for h, v in ipairs(per_hour) do
    local bh = (H - 2 * pad) * v / max
    out[#out + 1] = ('<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="#3b7dd8">'
      .. '<title>%02d:00 %d calls</title></rect>'):format(pad + (h - 1) * bw + 2, H - pad - bh, bw - 4, bh,
      h - 1, v)
    if (h - 1) % 3 == 0 then
      out[#out + 1] = ('<text x="%.1f" y="%d" font-size="11" text-anchor="middle">%02d</text>')
        :format(pad + (h - 0.5) * bw, H - 8, h - 1)
    end
  end
  out[#out + 1] = ('<text x="%d" y="14" font-size="11">%d</text>'):format(2, max)
  out[#out + 1] = "</svg>"
  return table.concat(out)
end

-- Sentiment as one stacked bar.
local function sentiment_svg(s)
  local parts = { { "positive", "#2e9e5b" }, { "neutral", "#b8b8b8" }, { "negative", "#d64541" },
                  { "unknown", "#eeeeee" } }
  local total = 0
  for _, p in ipairs(parts) do total = total + s[p[1]] end
  local W, x = 720, 0
  local out = { ('<svg viewBox="0 0 %d 40" width="%d" height="40" role="img" aria-label="sentiment">'):format(W, W) }
  for _, p in ipairs(parts) do
    local w = total > 0 and W * s[p[1]] / total or 0
    out[#out + 1] = ('<rect x="%.1f" y="0" width="%.1f" height="40" fill="%s"><title>%s %d</title></rect>')
      :format(x, w, p[2], p[1], s[p[1]])
    x = x + w
  end
  out[#out + 1] = "</svg>"
  return table.concat(out)
end

--- GET /: the dashboard page.
function M.page()
  local s, err = stats()
  ngx.header["Content-Type"] = "text/html; charset=utf-8"
  local out = { [[<!doctype html><html><head><meta charset="utf-8"><meta http-equiv="refresh" content="30">
<title>Calls dashboard</title><style>
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:780px}
h1{font-size:1.4em} h2{font-size:1.05em;margin-top:1.6em} table{border-collapse:collapse}
td,th{padding:.25em .8em;border-bottom:1px solid #ddd;text-align:right} td:first-child,th:first-child{text-align:left}
.muted{color:#777;font-size:.9em} .legend span{display:inline-block;margin-right:1em}
</style></head><body><h1>Calls dashboard</h1>]] }
  if not s then
    out[#out + 1] = "<p>The first sync is running" .. (err and (": " .. esc(err)) or "") .. ".</p>"
  else
    out[#out + 1] = ('<p class="muted">%d calls, synced %s UTC in %.2f s through converse '
      .. '(nginx cosockets)%s</p>'):format(s.calls, os.date("!%Y-%m-%d %H:%M:%S", math.floor(s.synced_at)),
      s.sync_seconds, err and (" &mdash; last sync failed: " .. esc(err)) or "")
    out[#out + 1] = "<h2>Calls per hour of the day</h2>" .. hours_svg(s.per_hour)
    out[#out + 1] = "<h2>Top campaigns</h2><table><tr><th>campaign</th><th>calls</th>"
      .. "<th>resolved</th><th>talk time</th></tr>"
    for i, c in ipairs(s.campaigns) do
      if i > 5 then break end
      out[#out + 1] = ("<tr><td>%s</td><td>%d</td><td>%.0f%%</td><td>%d h</td></tr>")
        :format(esc(c.name), c.calls, 100 * c.resolved / c.calls, math.floor(c.minutes / 60 + 0.5))
    end
    out[#out + 1] = "</table><h2>Sentiment</h2>" .. sentiment_svg(s.sentiment)
    local se = s.sentiment
    out[#out + 1] = ('<p class="legend"><span>positive %d</span><span>neutral %d</span>'
      .. '<span>negative %d</span><span>unknown %d</span></p>')
      :format(se.positive, se.neutral, se.negative, se.unknown)
  end
  out[#out + 1] = "</body></html>"
  ngx.print(table.concat(out, "\n"))
end

return M
