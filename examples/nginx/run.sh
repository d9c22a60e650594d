#!/bin/sh
# Run the converse dashboard in nginx against a mock (or a real API).
#   examples/nginx/run.sh start [PORT]   start nginx (and, unless CONVERZ_URL is set,
#                                        a local mock); prints the dashboard's URL
#   examples/nginx/run.sh stop           stop both (by PID)
#   examples/nginx/run.sh screenshot     start, wait for the first sync, take a
#                                        screenshot with headless Chromium, stop
# State lives in build/nginx-example/ (config, pid, logs, mock), or in
# $EXAMPLE_DIR. CONVERZ_URL, CONVERZ_KEY and DASHBOARD_INTERVAL are passed on.
set -e
cd "$(dirname "$0")/../.." || exit 1
ROOT=$(pwd)
DIR=${EXAMPLE_DIR:-$ROOT/build/nginx-example}
cmd=${1:-start}

stop() {
  [ -f "$DIR/nginx.pid" ] && kill "$(cat "$DIR/nginx.pid")" 2>/dev/null || true
  [ -f "$DIR/mock.pid" ] && kill "$(cat "$DIR/mock.pid")" 2>/dev/null || true
  i=0
  while [ -f "$DIR/nginx.pid" ] && kill -0 "$(cat "$DIR/nginx.pid")" 2>/dev/null && [ $i -lt 100 ]; do
    sleep 0.05; i=$((i + 1))
  done
  rm -f "$DIR/nginx.pid" "$DIR/mock.pid"
}

start() {
  port=${1:-8088}
  stop
  mkdir -p "$DIR/tmp"
  [ -f build/luajit/converse/core.so ] || make --no-print-directory LUA=luajit >/dev/null
  if [ -z "$CONVERZ_URL" ]; then
    luajit bin/converse mock --port 0 --calls "${DASHBOARD_CALLS:-20000}" --max-lifetime 3600 \
      >"$DIR/mock.out" 2>"$DIR/mock.err" &
    echo $! >"$DIR/mock.pid"
    i=0
    until grep -q '^http://' "$DIR/mock.out" 2>/dev/null; do
      i=$((i + 1)); [ $i -gt 400 ] && { echo "run.sh: the mock did not start" >&2; exit 1; }
      sleep 0.05
    done
    CONVERZ_URL="$(head -n 1 "$DIR/mock.out")/converz/api/v1"
  fi
  user=""; [ "$(id -u)" = 0 ] && user="user root;"
  sed -e "s|__ROOT__|$ROOT|g" -e "s|__PREFIX__|$DIR|g" -e "s|__PORT__|$port|g" -e "s|__USER__|$user|" \
    examples/nginx/nginx.conf >"$DIR/nginx.conf"
  CONVERZ_URL=$CONVERZ_URL CONVERZ_KEY=${CONVERZ_KEY:-demo-key} DASHBOARD_INTERVAL=${DASHBOARD_INTERVAL:-60} \
    nginx -p "$DIR" -c "$DIR/nginx.conf" -e "$DIR/error.log"
  echo "http://127.0.0.1:$port/"
}

case $cmd in
  start) start "$2" ;;
  stop) stop ;;
  screenshot)
    command -v chromium >/dev/null || { echo "run.sh: chromium is not installed (apt-get install chromium)" >&2; exit 1; }
    url=$(start "$2")
    i=0
    until curl -sf "${url}stats.json" >/dev/null; do
      i=$((i + 1)); [ $i -gt 600 ] && { stop; echo "run.sh: no sync after 60 s" >&2; exit 1; }
      sleep 0.1
    done
    out=${SCREENSHOT:-$ROOT/build/dashboard.png}
    chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=860,860 \
      --screenshot="$out" "$url" >/dev/null 2>&1 || { stop; echo "run.sh: chromium failed" >&2; exit 1; }
    stop
    echo "$out" ;;
  *) echo "usage: examples/nginx/run.sh start [PORT] | stop | screenshot" >&2; exit 2 ;;
esac
