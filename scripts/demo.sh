#!/bin/sh
# The demo: start the local mock of all four vendor APIs, run examples/demo.lua
# against it (a real sync: streaming pages, retries, rate limits), stop the mock.
cd "$(dirname "$0")/.." || exit 1
out=$(mktemp)
lua5.4 bin/converse mock --port 0 --calls 20000 --max-lifetime 600 >"$out" 2>/dev/null &
pid=$!
trap 'kill $pid 2>/dev/null; rm -f "$out"' EXIT INT TERM
i=0
until grep -q '^http://' "$out" 2>/dev/null; do
  i=$((i + 1))
  if [ $i -gt 200 ] || ! kill -0 $pid 2>/dev/null; then echo "demo: the mock did not start" >&2; exit 1; fi
  sleep 0.05
done
url=$(head -n 1 "$out")
LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="build/lua5.4/?.so;;" \
  lua5.4 examples/demo.lua "$url"
