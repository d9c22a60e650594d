--- A real nginx for the specs: Debian's nginx with ngx_lua (nginx-light,
-- libnginx-mod-http-lua, lua-resty-core; scripts/deps.sh installs them),
-- started on 127.0.0.1 on a free port with a generated config under a
-- temporary prefix (pid, logs, temp paths, config all there), stopped by
-- its PID, the prefix removed.
--
--   local nginx = require "support.nginx"
--   if nginx.wanted() then
--     local srv = assert(nginx.start { workers = 1, http = "...", server = "location /x { ... }",
--                                      config = { mock = url } })
--     srv:get("/x") ; srv:stop()
--   end
--
-- Inside nginx the C core is build/luajit/converse/core.so (nginx runs
-- LuaJIT whatever Lua runs busted), and `require "nginx_spec_config"`
-- returns `opts.config`. nginx specs run once per `make test`: in the
-- LuaJIT pass (or, when LUAS leaves LuaJIT out, in the Lua 5.4 pass), never
-- under ASan or valgrind; CONVERSE_NGINX=1 forces them, =0 skips them.
local socket = require "socket"
local helper = require "helper"

local M = {}

local MODULES = "/usr/lib/nginx/modules/"
-- CONVERSE_NGINX_BUILD: another LuaJIT build of the core (e.g. one with ASan,
-- with CONVERSE_NGINX_PRELOAD naming the sanitizer runtimes to preload)
local BUILD = os.getenv("CONVERSE_NGINX_BUILD") or (helper.ROOT .. "/build/luajit")
local CORE = BUILD .. "/converse/core.so"
local PRELOAD = os.getenv("CONVERSE_NGINX_PRELOAD")

local function quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

--- Should this busted pass run the nginx specs?
function M.wanted()
  local force = os.getenv("CONVERSE_NGINX")
  if force == "1" then return true end
  if force == "0" then return false end
  if os.getenv("CONVERSE_VALGRIND") or (os.getenv("CONVERSE_BUILD") or ""):find("asan") then
    return false
  end
  local lua = os.getenv("CONVERSE_LUA") or "lua5.4"
  if lua == "luajit" then return true end
  local luas = os.getenv("LUAS")
  return lua == "lua5.4" and luas ~= nil and not luas:find("luajit", 1, true)
end

--- Is everything there? true, or nil and what is missing.
function M.available()
  if not os.execute("command -v nginx >/dev/null 2>&1") then return nil, "nginx is not installed" end
  for _, m in ipairs { "ndk_http_module.so", "ngx_http_lua_module.so" } do
    if not exists(MODULES .. m) then return nil, MODULES .. m .. " is missing (libnginx-mod-http-lua)" end
  end
  if not exists("/usr/share/lua/5.1/resty/core.lua") then return nil, "lua-resty-core is missing" end
  if not exists(CORE) then return nil, CORE .. " is missing: run `make LUA=luajit`" end
  return true
end

function M.free_port()
  local s = assert(socket.bind("127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  return tonumber(port)
end

local function is_root()
  local p = io.popen("id -u")
  local uid = p:read("*l")
  p:close()
  return uid == "0"
end

-- A Lua value as Lua source (config tables of strings, numbers, booleans).
local function literal(v)
  if type(v) == "table" then
    local out = {}
    for k, x in pairs(v) do out[#out + 1] = ("[%s] = %s"):format(literal(k), literal(x)) end
    table.sort(out)
    return "{ " .. table.concat(out, ", ") .. " }"
  elseif type(v) == "string" then
    return ("%q"):format(v)
  end
  return tostring(v)
end

local Server = {}
Server.__index = Server

--- Start nginx.
-- @tparam table opts `workers` (1), `main` (main-context directives),
--   `http` (http-context directives), `server` (server-context directives:
--   locations), `config` (a table: `require "nginx_spec_config"`),
--   `error_level` ("warn")
-- @treturn table server: `url`, `port`, `prefix`, `pid`, `:get(path)`,
--   `:request(method, path, body)`, `:error_log()`, `:worker_pids()`, `:stop()`
function M.start(opts)
  opts = opts or {}
  local ok, why = M.available()
  if not ok then return nil, why end
  local prefix = os.tmpname()
  os.remove(prefix)
  assert(os.execute("mkdir -p " .. quote(prefix .. "/tmp") .. " " .. quote(prefix .. "/lua")))
  local f = assert(io.open(prefix .. "/lua/nginx_spec_config.lua", "w"))
  f:write("return ", literal(opts.config or {}), "\n")
  f:close()
  local port = opts.port or M.free_port()
  local root = helper.ROOT
  local conf = table.concat({
    "load_module " .. MODULES .. "ndk_http_module.so;",
    "load_module " .. MODULES .. "ngx_http_lua_module.so;",
    is_root() and "user root;" or "",
    "worker_processes " .. (opts.workers or 1) .. ";",
    "daemon on;",
    "pid " .. prefix .. "/nginx.pid;",
    "error_log " .. prefix .. "/error.log " .. (opts.error_level or "warn") .. ";",
    opts.main or "",
    "events { worker_connections 1024; }",
    "http {",
    "  access_log off;",
    "  client_body_temp_path " .. prefix .. "/tmp/body;",
    "  proxy_temp_path " .. prefix .. "/tmp/proxy;",
    "  fastcgi_temp_path " .. prefix .. "/tmp/fastcgi;",
    "  uwsgi_temp_path " .. prefix .. "/tmp/uwsgi;",
    "  scgi_temp_path " .. prefix .. "/tmp/scgi;",
    ('  lua_package_path "%s/lua/?.lua;%s/lua/?/init.lua;%s/spec/?.lua;%s/spec/support/?.lua;%s/lua/?.lua;;";')
      :format(root, root, root, root, prefix),
    '  lua_package_cpath "' .. BUILD .. '/?.so;;";',
    opts.http or "",
    "  server {",
    "    listen 127.0.0.1:" .. port .. ";",
    opts.server or "",
    "  }",
    "}",
  }, "\n")
  f = assert(io.open(prefix .. "/nginx.conf", "w"))
  f:write(conf, "\n")
  f:close()
  local cmd = ("%snginx -p %s -c %s -e %s >%s 2>&1"):format(
    PRELOAD and ("env LD_PRELOAD=%s ASAN_OPTIONS=detect_leaks=0:log_path=%s "):format(quote(PRELOAD),
      quote(prefix .. "/asan")) or "",
    quote(prefix), quote(prefix .. "/nginx.conf"), quote(prefix .. "/error.log"), quote(prefix .. "/start.log"))
  local self = setmetatable({ prefix = prefix, port = port, url = "http://127.0.0.1:" .. port }, Server)
  if not os.execute(cmd) then
    local log = self:error_log() .. self:read("start.log")
    os.execute("rm -rf " .. quote(prefix))
    return nil, "nginx did not start:\n" .. log
  end
  self.pid = tonumber(self:read("nginx.pid"))
  for _ = 1, 200 do                            -- until it accepts connections
    local c = socket.tcp()
    c:settimeout(0.1)
    if c:connect("127.0.0.1", port) then c:close() break end
    c:close()
    socket.sleep(0.01)
  end
  return self
end

function Server:read(name)
  local f = io.open(self.prefix .. "/" .. name, "rb")
  local s = f and f:read("*a") or ""
  if f then f:close() end
  return s
end

--- The error log so far.
function Server:error_log() return self:read("error.log") end

--- The PIDs of the worker processes.
function Server:worker_pids()
  local p = io.popen("pgrep -P " .. tonumber(self.pid))
  local out = {}
  for line in p:lines() do out[#out + 1] = tonumber(line) end
  p:close()
  return out
end

function Server:request(method, path, body, headers, timeout)
  return helper.http(method, self.url .. path, body, headers, timeout or 60)
end

function Server:get(path, timeout) return self:request("GET", path, nil, nil, timeout) end

--- A GET answering JSON, decoded; raises with the error log when it is not.
function Server:json(path, timeout)
  local res = self:get(path, timeout)
  if res.status ~= 200 or type(res.json) ~= "table" then
    error(("nginx %s -> %s %s\n%s"):format(path, tostring(res.status), tostring(res.body or res.error),
      self:error_log()), 2)
  end
  return res.json
end

--- Stop nginx (SIGTERM to the master, by PID), wait for it, remove the prefix.
function Server:stop()
  if not self.prefix then return end
  if self.pid then
    os.execute("kill " .. tonumber(self.pid) .. " 2>/dev/null")
    for _ = 1, 250 do                          -- until it is gone (or a zombie)
      local stat = io.open("/proc/" .. self.pid .. "/stat")
      local s = stat and stat:read("*l") or ""
      if stat then stat:close() end
      if s == "" or s:match("^%d+ %b() (%a)") == "Z" then break end
      socket.sleep(0.02)
    end
  end
  os.execute("rm -rf " .. quote(self.prefix))
  self.prefix = nil
end

Server.__gc = Server.stop

return M
