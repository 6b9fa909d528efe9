#!/usr/bin/env bash
# Installs what is missing for one job, from Debian's packages (and, for the
# tests, the npm packages of the Node peers). Safe to re-run: it does nothing
# when everything is present.
#   scripts/deps.sh serve   build the library and the tool (hiredis for
#                           the pub/sub hub's Redis engine and jansson for
#                           the Socket.IO layer's JSON included)
#   scripts/deps.sh socketio  serve's, plus Node + npm and the official
#                           Socket.IO client that the Socket.IO page loads
#                           (npm ci in web/socketio)
#   scripts/deps.sh test    serve's, plus the test peers and tools: cmocka,
#                           clang (fuzzers), Python websockets, Node + npm
#                           (ws, socket.io-client), Chromium, redis-server
#                           (the Redis engine's tests start, kill and
#                           restart their own)
# Every failure says what failed and how to retry.
set -euo pipefail
cd "$(dirname "$0")/.."

job=${1:-}
serve=(build-essential cmake pkg-config libssl-dev zlib1g-dev libhiredis-dev
       libjansson-dev liburing-dev)
# libzstd-dev: Debian 13's libssl.pc names -lzstd for a static link, which
# the install test makes of the examples.
test=("${serve[@]}" libcmocka-dev libzstd-dev openssl python3 python3-websockets
      clang libclang-rt-dev nodejs npm chromium redis-server)
case $job in
  serve) want=("${serve[@]}") ;;
  socketio) want=("${serve[@]}" nodejs npm) ;;
  test) want=("${test[@]}") ;;
  *) echo "usage: $0 serve|socketio|test" >&2; exit 2 ;;
esac

fail() {
  echo "deps: FAILED: $1" >&2
  echo "deps: to retry, run: $0 $job" >&2
  exit 1
}

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
# Node may come from elsewhere than Debian's package: any node >= 18 with
# npm will do (Debian 12 ships 18).
if command -v node >/dev/null && command -v npm >/dev/null &&
   [ "$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)" -ge 18 ]; then
  kept=()
  for p in "${missing[@]}"; do [ "$p" = nodejs ] || [ "$p" = npm ] || kept+=("$p"); done
  missing=("${kept[@]}")
fi

if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || fail "missing packages (${missing[*]}) and no root: run as root, or install them: apt-get install ${missing[*]}"
    sudo="sudo"
  fi
  log=$(mktemp "${TMPDIR:-/tmp}/duplex-deps.XXXXXX")
  echo "deps: installing ${#missing[@]} Debian package(s) for '$job': ${missing[*]} (log: $log)" >&2
  if ! $sudo apt-get update >"$log" 2>&1; then
    tail -n 15 "$log" >&2
    fail "apt-get update (network or sources.list?); full log: $log"
  fi
  if ! DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends \
       "${missing[@]}" >>"$log" 2>&1; then
    tail -n 15 "$log" >&2
    fail "apt-get install ${missing[*]}; full log: $log"
  fi
  rm -f "$log"
fi

if [ "$job" = test ] && [ -f tests/interop/package.json ] &&
   [ ! -d tests/interop/node_modules/ws ]; then
  # The Node peers (ws), exactly as package-lock.json pins them.
  echo "deps: npm ci in tests/interop (ws)" >&2
  if ! (cd tests/interop && npm ci --no-audit --no-fund --loglevel=error); then
    fail "npm ci in tests/interop (is the npm registry reachable?)"
  fi
fi
# The Socket.IO page's client (web/socketio/index.html loads it from
# there), exactly as package-lock.json pins it; never committed.
if { [ "$job" = socketio ] || [ "$job" = test ]; } &&
   [ ! -f web/socketio/node_modules/socket.io-client/dist/socket.io.min.js ]; then
  echo "deps: npm ci in web/socketio (socket.io-client, for the Socket.IO page)" >&2
  if ! (cd web/socketio && npm ci --no-audit --no-fund --loglevel=error); then
    fail "npm ci in web/socketio (is the npm registry reachable?)"
  fi
fi
exit 0
