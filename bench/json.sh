#!/bin/sh
# JSON decode benchmark under Lua 5.4 and LuaJIT (see bench/json.lua).
cd "$(dirname "$0")/.." || exit 1
for lua in lua5.4 luajit; do $lua bench/json.lua "$@" || exit 1; echo; done
