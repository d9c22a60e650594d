#!/bin/sh
# End-to-end paging from a local nginx against the floor (bench/e2e.lua),
# under Lua 5.4 and LuaJIT.
cd "$(dirname "$0")/.." || exit 1
for lua in lua5.4 luajit; do CONVERSE_LUA=$lua $lua bench/e2e.lua "$@" || exit 1; echo; done
