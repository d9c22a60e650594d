--- converse.mock: a local HTTP server that emulates every vendor API
-- (Converz, AgentX, ConverseIQ, Converra) with fault injection, for tests,
-- demos and benchmarks. Pure Lua over luasocket. See docs/mock.md.
-- @module converse.mock
-- @usage
-- local mock = require("converse.mock")
-- local srv = mock.start{ port = 0, calls = 1000 }
-- print(srv.url)          -- http://127.0.0.1:PORT
-- srv:run()               -- or srv:step(timeout) from your own loop; srv:stop()
local app    = require "converse.mock.app"
local server = require "converse.mock.server"
local http   = require "converse.mock.http"

local setmetatable, tonumber, tostring, io, os = setmetatable, tonumber, tostring, io, os
local match = string.match
local ok_socket, socket = pcall(require, "socket")

local M = {}
local mt = { __index = M }

M.app = app.new          -- request handler only, for mounting elsewhere (nginx)

--- Our own pid and parent pid, from /proc (nil elsewhere).
-- @treturn number|nil pid
-- @treturn number|nil ppid
function M.pids()
  local f = io.open("/proc/self/stat", "r")
  if not f then return nil end
  local s = f:read("*l") or ""
  f:close()
  local pid = tonumber(match(s, "^(%d+)"))
  local ppid = tonumber(match(s, "%) %S+ (%d+)"))
  return pid, ppid
end

local function alive(pid)
  local f = io.open("/proc/" .. pid .. "/stat", "r")
  if f then f:close(); return true end
  if io.open("/proc/self/stat", "r") then return false end     -- /proc exists: gone
  return os.execute("kill -0 " .. tonumber(pid) .. " 2>/dev/null") == true
end

--- Serve the largest Converz page once, internally, so the allocator and the
-- page list are warm before the first real request (benchmarks see steady state).
-- @tparam table handler an app from `converse.mock.app`
function M.warm_up(handler)
  local cz = handler.vendors[1].state
  local n = cz.calls and cz.calls.n or 0
  if n < 10000 then return end
  local res = cz:handle({ method = "GET", args = { n_per_page = tostring(n) }, multi = {} }, "/calls")
  local parts, block, len = res.body, {}, 0
  for i = 1, #parts do
    block[#block + 1] = parts[i]
    len = len + #parts[i]
    if len >= 262144 then table.concat(block); block, len = {}, 0 end
  end
end

--- Start a mock server (listening at once; serve with `run` or `step`).
-- @tparam[opt] table opts
--   `host` ("127.0.0.1"), `port` (0 = a free port), `seed` (1),
--   `calls` (1000), `reps` (50), `conversations` (200), `contacts` (40), `chats` (25),
--   `agents` (6), `start_date` ("2025-01-01"), `days` (90),
--   `api_key` (accept only this key; default: any non-empty key),
--   `latency` (seconds or "20ms", added to every response),
--   `converra_plan` ("free" | "pro" | "enterprise"), `converra_limit`, `converra_window` (60),
--   `agentx_rate` (3 per window; 0 disables), `agentx_window` (1),
--   `gzip` ("auto" | "always" | "never"), `gzip_max` (1 MiB), `chunked` (false),
--   `max_lifetime` (seconds), `parent_pid` (exit when it dies), `watch_parent` (exit when our
--   parent process changes), `warm` (pre-render rows, default true), `on_error` (function)
-- @treturn table server: `port`, `url`, `app`, `:step(t)`, `:run()`, `:stop()`
-- @treturn[2] string error
function M.start(opts)
  opts = opts or {}
  local handler = app.new(opts)
  local pid, ppid = M.pids()
  handler.pid = pid
  if opts.warm ~= false then
    for _, v in ipairs(handler.vendors) do if v.state.warm then v.state:warm() end end
    M.warm_up(handler)
  end
  local srv, err = server.new{
    host = opts.host or "127.0.0.1", port = opts.port or 0,
    handler = function(req) return handler:handle(req) end,
    on_error = opts.on_error or function(msg) io.stderr:write("converse.mock: ", msg, "\n") end,
  }
  if not srv then return nil, err end
  local host = srv.host == "0.0.0.0" and "127.0.0.1" or srv.host
  return setmetatable({
    srv = srv, app = handler, port = srv.port, host = srv.host,
    url = "http://" .. host .. ":" .. srv.port,
    opts = opts, ppid = ppid, pid = pid,
    deadline = opts.max_lifetime and ok_socket and socket.gettime() + opts.max_lifetime,
  }, mt)
end

--- Serve for at most `timeout` seconds (one loop iteration).
-- @tparam[opt=1] number timeout
-- @treturn boolean false once the server has stopped
function M:step(timeout)
  if self.stopped then return false end
  self.srv:step(timeout)
  if self.app.shutdown then self.srv:step(0); self:stop(); return false end
  return true
end

-- Should the process keep serving? (lifetime and parent watchdogs)
local function keep_going(self)
  if self.deadline and socket.gettime() > self.deadline then return false, "max lifetime reached" end
  if self.opts.parent_pid and not alive(self.opts.parent_pid) then return false, "parent exited" end
  if self.opts.watch_parent and self.ppid then
    local _, ppid = M.pids()
    if ppid ~= self.ppid then return false, "parent exited" end
  end
  return true
end

--- Serve until stopped (`POST /_shutdown`, `:stop()`, a watchdog).
-- @treturn string why it stopped
function M:run()
  local next_check = 0
  while not self.stopped do
    self:step(0.2)
    if ok_socket and socket.gettime() >= next_check then
      next_check = socket.gettime() + 0.5
      local ok, why = keep_going(self)
      if not ok then self:stop(); return why end
    end
  end
  return "stopped"
end

--- Stop serving and close every socket. Safe to call twice.
function M:stop()
  if self.stopped then return end
  self.stopped = true
  self.srv:stop()
end

-- Command-line options: flag -> { option name, kind }.
M.FLAGS = {
  ["--host"] = { "host", "string" }, ["--port"] = { "port", "number" },
  ["--seed"] = { "seed", "number" }, ["--calls"] = { "calls", "number" },
  ["--reps"] = { "reps", "number" }, ["--conversations"] = { "conversations", "number" },
  ["--contacts"] = { "contacts", "number" }, ["--chats"] = { "chats", "number" },
  ["--agents"] = { "agents", "number" }, ["--start-date"] = { "start_date", "string" },
  ["--days"] = { "days", "number" }, ["--api-key"] = { "api_key", "string" },
  ["--latency"] = { "latency", "duration" }, ["--converra-plan"] = { "converra_plan", "string" },
  ["--converra-limit"] = { "converra_limit", "number" },
  ["--converra-window"] = { "converra_window", "duration" },
  ["--agentx-rate"] = { "agentx_rate", "number" }, ["--agentx-window"] = { "agentx_window", "duration" },
  ["--gzip"] = { "gzip", "string" }, ["--gzip-max"] = { "gzip_max", "number" },
  ["--chunked"] = { "chunked", "flag" }, ["--max-lifetime"] = { "max_lifetime", "duration" },
  ["--parent-pid"] = { "parent_pid", "number" }, ["--watch-parent"] = { "watch_parent", "flag" },
  ["--no-warm"] = { "warm", "off" }, ["--verbose"] = { "verbose", "flag" },
}

M.USAGE = [[
usage: converse mock [options]
  --port N              port to listen on (0 = any free port; default 8080)
  --host H              address to bind (default 127.0.0.1)
  --seed N              data seed (default 1)
  --calls N --reps N    Converz data sizes (default 1000, 50)
  --conversations N     AgentX conversations (default 200)
  --contacts N --chats N  ConverseIQ sizes (default 40, 25)
  --agents N            Converra agents (default 6)
  --start-date D --days N  date range of generated data (default 2025-01-01, 90)
  --api-key K           accept only this key/token (default: any non-empty one)
  --latency T           delay every response (e.g. 20ms)
  --converra-plan P     free (60/min) | pro (300/min) | enterprise (1000/min)
  --converra-limit N    override the per-window request limit
  --converra-window T   rate-limit window (default 60s)
  --agentx-rate N       requests per window per endpoint (default 3; 0 = off)
  --agentx-window T     AgentX window (default 1s)
  --gzip MODE           auto (when asked, bodies <= --gzip-max) | always | never
  --chunked             send every response with chunked encoding
  --max-lifetime T      exit after T (e.g. 300s)
  --parent-pid PID      exit when PID exits
  --watch-parent        exit when our parent process exits
The first line on stdout is the URL the server listens on.]]

--- Parse `converse mock` arguments.
-- @tparam table args list of strings
-- @treturn table|nil opts
-- @treturn[2] string error
function M.parse_args(args)
  local opts = { port = 8080 }
  local i = 1
  while i <= #args do
    local a = args[i]
    local flag, inline = match(a, "^(%-%-[%w-]+)=(.*)$")
    flag = flag or a
    if flag == "--help" or flag == "-h" then return nil, M.USAGE end
    local spec = M.FLAGS[flag]
    if not spec then return nil, "unknown option " .. a .. "\n" .. M.USAGE end
    local kind = spec[2]
    if kind == "flag" then opts[spec[1]] = true
    elseif kind == "off" then opts[spec[1]] = false
    else
      local v = inline
      if v == nil then i = i + 1; v = args[i] end
      if v == nil then return nil, a .. " needs a value" end
      if kind == "number" then
        v = tonumber(v)
        if not v then return nil, a .. " needs a number" end
      elseif kind == "duration" then
        v = http.duration(v)
        if not v then return nil, a .. " needs a duration such as 20ms or 2s" end
      end
      opts[spec[1]] = v
    end
    i = i + 1
  end
  return opts
end

--- Entry point of `converse mock`: parse arguments, print the URL, serve.
-- @tparam table args
-- @treturn number exit status
function M.main(args)
  local opts, err = M.parse_args(args)
  if not opts then
    if err == M.USAGE then io.stdout:write(err) return 0 end      -- --help: stdout, success
    io.stderr:write(err, "\n")
    return 2
  end
  local srv, serr = M.start(opts)
  if not srv then io.stderr:write("converse mock: ", tostring(serr), "\n"); return 1 end
  -- The rendered rows are long-lived and each response's write buffers die
  -- young: a generational collector (5.4) does not re-traverse the rows.
  if not rawget(_G, "jit") then pcall(collectgarbage, "generational") end
  -- Freeing one large block raises glibc's mmap threshold, so the response
  -- write buffers come from the heap instead of a fresh mmap each time.
  local big = string.rep(" ", 4 * 1048576)   -- luacheck: ignore 231 311
  big = nil                                    -- luacheck: ignore 311
  collectgarbage("collect")
  io.stdout:write(srv.url, "\n")
  io.stdout:flush()
  local why = srv:run()
  if opts.verbose then io.stderr:write("converse mock: ", why, "\n") end
  return 0
end

return M
