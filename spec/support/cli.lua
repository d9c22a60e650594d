--- bin/converse as a child process, for the command-line specs.
--   cli.run(env, args) -> rc, stdout, stderr          (waits for it)
--   cli.spawn(env, args) -> proc                      (in the background)
--     proc.pid, proc:wait(timeout) -> rc | nil, proc:signal(name), proc:stdout(), proc:stderr()
--   cli.tmpdir() -> path (removed by cli.cleanup())
-- The child runs under the interpreter of the suite (CONVERSE_LUA,
-- CONVERSE_BUILD). `env` is a table of environment variables; args an
-- array of strings (each quoted for the shell).
local socket = require "socket"
local helper = require "helper"

local M = {}
M.ROOT = helper.ROOT
M.LUA = os.getenv("CONVERSE_LUA") or "lua5.4"
M.BUILD = os.getenv("CONVERSE_BUILD") or "build/lua5.4"

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
M.quote = q

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end
M.read = read

local dirs = {}

--- A fresh temporary directory.
function M.tmpdir()
  local p = io.popen("mktemp -d")
  local dir = p:read("*l")
  p:close()
  dirs[#dirs + 1] = dir
  return dir
end

--- Remove every directory made by tmpdir.
function M.cleanup()
  for _, d in ipairs(dirs) do os.execute("rm -rf " .. q(d)) end
  dirs = {}
end

local function command(env, args)
  local e = { "CONVERSE_BUILD=" .. q(M.BUILD) }
  for k, v in pairs(env or {}) do e[#e + 1] = k .. "=" .. q(v) end
  local a = {}
  for i, s in ipairs(args) do a[i] = q(s) end
  return ("cd %s && env %s %s bin/converse %s"):format(q(M.ROOT), table.concat(e, " "), M.LUA,
    table.concat(a, " "))
end

--- Run bin/converse and wait: exit status, stdout, stderr.
function M.run(env, args)
  local dir = M.tmpdir()
  os.execute(("%s >%s/out 2>%s/err; echo $? >%s/rc"):format(command(env, args), dir, dir, dir))
  return tonumber(read(dir .. "/rc") or ""), read(dir .. "/out") or "", read(dir .. "/err") or ""
end

local Proc = {}
Proc.__index = Proc

--- Start bin/converse in the background.
function M.spawn(env, args)
  local dir = M.tmpdir()
  os.execute(("( %s >%s/out 2>%s/err & echo $! >%s/pid.tmp; mv %s/pid.tmp %s/pid; wait $!; "
    .. "echo $? >%s/rc.tmp; mv %s/rc.tmp %s/rc ) >/dev/null 2>&1 &")
    :format(command(env, args), dir, dir, dir, dir, dir, dir, dir, dir))
  local pid
  for _ = 1, 500 do
    pid = tonumber(read(dir .. "/pid") or "")
    if pid then break end
    socket.sleep(0.01)
  end
  assert(pid, "the child did not start")
  return setmetatable({ pid = pid, dir = dir }, Proc)
end

--- Its exit status, waiting at most `timeout` seconds (nil if still running).
function Proc:wait(timeout)
  local deadline = socket.gettime() + (timeout or 30)
  repeat
    local rc = tonumber(read(self.dir .. "/rc") or "")
    if rc then return rc end
    socket.sleep(0.01)
  until socket.gettime() > deadline
  return nil
end

--- Send a signal ("INT", "TERM", "KILL").
function Proc:signal(name) os.execute("kill -" .. name .. " " .. self.pid .. " 2>/dev/null") end

function Proc:stdout() return read(self.dir .. "/out") or "" end
function Proc:stderr() return read(self.dir .. "/err") or "" end

return M
