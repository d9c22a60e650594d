-- Shared by the benchmarks: paths to this checkout's Lua modules and build,
-- and the peak RSS of the running process.
local M = {}

M.ROOT = (arg[0]:match("^(.*)/bench/[^/]*$")) or "."
M.FLAVOUR = rawget(_G, "jit") and "luajit" or "lua5.4"
package.path = M.ROOT .. "/lua/?.lua;" .. M.ROOT .. "/lua/?/init.lua;" .. M.ROOT .. "/spec/?.lua;"
  .. package.path
package.cpath = M.ROOT .. "/build/" .. M.FLAVOUR .. "/?.so;" .. package.cpath

--- Peak resident set size of this process, in KiB (VmHWM).
function M.hwm_kb()
  local f = io.open("/proc/self/status")
  local s = f and f:read("a") or ""
  if f then f:close() end
  return tonumber(s:match("VmHWM:%s*(%d+)")) or 0
end

return M
