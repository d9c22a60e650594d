#!/bin/sh
# JSON decode benchmark under Lua 5.4 and LuaJIT (see bench/json.lua), and
# the same comparison in instructions (bench/instr.lua) when valgrind is here.
cd "$(dirname "$0")/.." || exit 1
for lua in lua5.4 luajit; do
  $lua bench/json.lua "$@" || exit 1
  if command -v valgrind >/dev/null 2>&1; then $lua bench/instr.lua || exit 1; fi
  echo
done
