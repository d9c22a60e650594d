#!/bin/sh
# All benchmarks, one run, under Lua 5.4 and LuaJIT: JSON decode against
# the floor, in time and in instructions (bench/json.sh), end-to-end
# paging from a local nginx against the floor (bench/e2e.sh), and the
# SPEC §4 table against the mock (bench/paging.lua). Pass --quick for a
# short run of the last.
cd "$(dirname "$0")/.." || exit 1
uptime
# The machine: time ratios differ between CPUs (README, Benchmarks).
echo "machine: $(sed -n 's/^model name[^:]*: *//p' /proc/cpuinfo 2>/dev/null | head -1), \
$(nproc 2>/dev/null || echo '?') cores, $(uname -sr)"
bench/json.sh || exit 1
bench/e2e.sh || exit 1
for lua in lua5.4 luajit; do
  echo
  CONVERSE_LUA=$lua CONVERSE_BUILD=build/$lua $lua bench/paging.lua "$@" || exit 1
done
