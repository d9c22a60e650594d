#!/bin/sh
# make demo: a resumable sync of AgentX conversations and messages into
# SQLite against the local mock, with the progress line; the first run is
# interrupted on purpose (SIGINT, as Ctrl-C would), the same command then
# resumes from its checkpoint; a short summary at the end.
cd "$(dirname "$0")/.." || exit 1
LUA=${LUA:-lua5.4}
DEMO=build/demo
DB=$DEMO/agentx.db
rm -rf "$DEMO" && mkdir -p "$DEMO" || exit 1

$LUA bin/converse mock --port 0 --conversations 900 --max-lifetime 600 >"$DEMO/mock.url" 2>/dev/null &
mock=$!
trap 'kill $mock 2>/dev/null' EXIT
trap 'exit 130' INT TERM
i=0
until grep -q '^http://' "$DEMO/mock.url" 2>/dev/null; do
  i=$((i + 1))
  if [ $i -gt 200 ] || ! kill -0 $mock 2>/dev/null; then echo "demo: the mock did not start" >&2; exit 1; fi
  sleep 0.05
done
url=$(head -n 1 "$DEMO/mock.url")
export AGENTX_KEY=demo-key             # the mock takes any key; real keys come from the environment too

sync() {  # STREAM PER_PAGE (exec: a signal for this job reaches converse itself)
  ( exec $LUA bin/converse sync agentx "$1" --to "sqlite:$DB" --base-url "$url/agentx" \
      --bot-name r3-218210 --since 2025-01-01 --until 2025-04-01 --window 30d --param "per_page=$2" --progress )
}

start=$(date +%s)
echo "converse demo: AgentX (mock at $url) -> $DB"
echo
echo "1. converse sync agentx conversations --to sqlite:$DB ... (interrupted after 3 s, on purpose)"
( exec $LUA bin/converse sync agentx conversations --to "sqlite:$DB" --base-url "$url/agentx" \
    --bot-name r3-218210 --since 2025-01-01 --until 2025-04-01 --window 30d --param per_page=50 --progress ) &
pid=$!
sleep 3
kill -INT $pid
wait $pid
echo "   exit status $? (130 = interrupted: the current page finished or dropped, the checkpoint written)"
echo
echo "2. the same command again: it resumes from the checkpoint"
sync conversations 50 || exit 1
echo
echo "3. converse sync agentx messages --to sqlite:$DB ..."
sync messages 500 || exit 1
echo
$LUA - "$DB" "$(( $(date +%s) - start ))" <<'EOF'
local db, secs = arg[1], arg[2]
local env = require("luasql.sqlite3").sqlite3()
local conn = assert(env:connect(db))
local function one(sql) local c = assert(conn:execute(sql)); local v = c:fetch(); c:close(); return v end
print(("summary (%s s):"):format(secs))
for _, t in ipairs { "conversations", "messages" } do
  print(("  table %-14s %6d rows"):format(t, one("SELECT count(*) FROM " .. t)))
end
local cur = assert(conn:execute("SELECT job, json_extract(state, '$.bookmark') FROM _converse_state ORDER BY job"))
local job, bookmark = cur:fetch()
while job do
  print(("  state of %-22s bookmark %s"):format(job, os.date("!%Y-%m-%d %H:%M:%S", bookmark)))
  job, bookmark = cur:fetch()
end
cur:close()
print(("  the state lives in %s, table _converse_state: run step 3 again to see a nightly run"):format(db))
conn:close()
env:close()
EOF
