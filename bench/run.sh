#!/bin/sh
# All benchmarks, one run: JSON decode (bench/json.sh) and end-to-end paging
# (bench/paging.lua) under Lua 5.4 and LuaJIT. Pass --quick for a short run.
cd "$(dirname "$0")/.." || exit 1
[ -x bench/json.sh ] && bench/json.sh "$@"
for lua in lua5.4 luajit; do
  echo
  CONVERSE_LUA=$lua CONVERSE_BUILD=build/$lua $lua bench/paging.lua "$@" || exit 1
done
