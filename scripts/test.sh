#!/bin/sh
# Run the busted spec suite under every Lua the rockspec claims (5.4, LuaJIT,
# 5.1, 5.2, 5.3) and print one closing line "N passed, M failed" (busted
# successes vs failures + errors, all runs added up).
#   scripts/test.sh              every Lua version, normal build (LUAS="lua5.4 luajit" for fewer)
#   scripts/test.sh --asan       Lua 5.4 against build/asan (ASan + UBSan)
#   scripts/test.sh --valgrind   Lua 5.4 under valgrind (leak check)
#   extra arguments after the mode are passed to busted (e.g. spec/json_spec.lua)
# The Lua versions run TEST_JOBS at a time (default 2): the suite spends most
# of its time waiting on its servers (latency, rate limits, timeouts), and
# every server it starts takes a free port and a temp dir of its own. Each
# version's output is printed whole when it ends.
cd "$(dirname "$0")/.." || exit 1
mode=normal
case "$1" in --asan|--valgrind) mode=${1#--}; shift ;; esac
logs=$(mktemp -d); trap 'rm -rf "$logs"' EXIT
passed=0; failed=0; rc=0

busted_run() { # name lua build [wrapper...] > its log; exit status in $logs/<name>.rc
  name=$1; lua=$2; build=$3; shift 3
  LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="$build/?.so;;" \
  CONVERSE_LUA="$lua" CONVERSE_BUILD="$build" \
    "$@" "$lua" /usr/bin/busted --output=utfTerminal ${SPECS:-spec} >"$logs/$name.log" 2>&1
  echo $? >"$logs/$name.rc"
}

tally() { # name: print its log, add its summary line to the totals
  name=$1
  echo "== busted under $name"
  cat "$logs/$name.log"
  status=$(cat "$logs/$name.rc" 2>/dev/null || echo 1)
  line=$(grep -aE '[0-9]+ success(es)? / [0-9]+ failures? / [0-9]+ errors?' "$logs/$name.log" | tail -n 1)
  if [ -z "$line" ]; then
    echo "converse: busted under $name printed no summary (exit $status)"
    failed=$((failed + 1)); rc=1; return
  fi
  s=$(echo "$line" | sed -E 's/.*\b([0-9]+) success.*/\1/')
  f=$(echo "$line" | sed -E 's/.*\b([0-9]+) failures?.*/\1/')
  e=$(echo "$line" | sed -E 's/.*\b([0-9]+) errors?.*/\1/')
  passed=$((passed + s)); failed=$((failed + f + e))
  if [ "$status" -ne 0 ]; then
    rc=1
    if [ $((f + e)) -eq 0 ]; then          # e.g. valgrind's or ASan's error exit after the specs
      echo "converse: busted under $name exited $status with no failing spec: counted as one failure"
      failed=$((failed + 1))
    fi
  fi
}

run() { busted_run "$@"; tally "$1"; }

[ $# -gt 0 ] && SPECS="$*"
case $mode in
  normal)
    jobs=${TEST_JOBS:-2}; running=""
    for lua in ${LUAS:-lua5.4 luajit lua5.1 lua5.2 lua5.3}; do
      while [ "$(echo $running | wc -w)" -ge "$jobs" ]; do     # wait for a free slot
        still=""
        for l in $running; do [ -e "$logs/$l.rc" ] || still="$still $l"; done
        running=$still
        [ "$(echo $running | wc -w)" -ge "$jobs" ] && sleep 1
      done
      case $lua in lua5.[123]) mock=lua5.4 ;; *) mock= ;; esac
      ( [ -n "$mock" ] && export CONVERSE_MOCK_LUA=$mock || unset CONVERSE_MOCK_LUA
        busted_run "$lua" "$lua" "build/$lua" ) &
      running="$running $lua"
    done
    wait
    for lua in ${LUAS:-lua5.4 luajit lua5.1 lua5.2 lua5.3}; do tally "$lua"; done ;;
  asan)
    libasan=$(gcc -print-file-name=libasan.so)
    libubsan=$(gcc -print-file-name=libubsan.so)
    CONVERSE_SANITIZER=asan \
    ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
      run "Lua 5.4 (ASan+UBSan)" lua5.4 build/asan env LD_PRELOAD="$libasan:$libubsan" ;;
  valgrind)
    CONVERSE_SANITIZER=valgrind CONVERSE_VALGRIND=1 run "Lua 5.4 (valgrind)" lua5.4 build/lua5.4 \
      valgrind -q --leak-check=full --errors-for-leak-kinds=definite --error-exitcode=99 \
               --trace-children=no ;;
esac
[ "$failed" -gt 0 ] && rc=1
echo "$passed passed, $failed failed"
exit $rc
