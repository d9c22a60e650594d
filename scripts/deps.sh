#!/bin/sh
# Install what converse needs from Debian's packages, once. Quick no-op when
# everything is already there.  `scripts/deps.sh ci` adds what CI needs on
# top of the tests (clang and its sanitizer runtime for fuzzing, cppcheck and
# clang-tidy for `make lint`).
set -e
PKGS="lua5.4 liblua5.4-dev luajit2 libluajit2-5.1-dev lua5.1 liblua5.1-0-dev
lua5.2 liblua5.2-dev lua5.3 liblua5.3-dev libcurl4-openssl-dev zlib1g-dev curl
lua-cjson lua-busted lua-socket lua-argparse lua-sql-sqlite3 luarocks
nginx-light libnginx-mod-http-lua lua-resty-core lua-nginx-redis redis-server postgresql
lua-sql-postgres gcc make
python3 valgrind openssl procps"
[ "$1" = ci ] && PKGS="$PKGS clang libclang-rt-14-dev cppcheck clang-tidy lua-check"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "converse: installing missing packages:$missing"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
