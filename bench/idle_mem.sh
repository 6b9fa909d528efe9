#!/usr/bin/env bash
# bench/idle_mem.sh — issue 14, target 1: server memory per idle connection
# (user-space RSS), for duplex, Node `ws` (bench/ws_echo.js) and Python
# `websockets` (bench/ws_echo.py), each plain, with permessage-deflate
# negotiated, and over TLS, all driven by the same client: `duplex bench
# --mode idle`. Each figure is the marginal one, (RSS after N - RSS after
# the first N/10) / (9N/10), so one-time costs (OpenSSL's first use, the
# loop's buffer) stay out of it. A fresh server per run; --reps runs each.
#
# usage: bench/idle_mem.sh [--reps N] [--conns N] [--only SERVER] [--variants LIST]
#                          [BUILD_DIR]
#        (default build-rel in the repository; SERVER: duplex, node or python;
#        LIST: some of "plain deflate tls", the default)
# env:   BENCH_PORT_BASE (default 18520), NODE (default node), PYTHON
#        (default /usr/bin/python3), WS_MODULE (ws for node, default
#        tests/interop/node_modules/ws), DUPLEX (a duplex binary to use as
#        it is, server and client: nothing is built)
set -u

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ME=idle_mem.sh
. "$ROOT/bench/lib.sh"
BUILD=$ROOT/build-rel
REPS=2 CONNS=10000 ONLY= VARIANTS="plain deflate tls"
while [ $# -gt 0 ]; do
  case "$1" in
    --reps) shift; REPS=${1:?--reps needs a number} ;;
    --conns) shift; CONNS=${1:?--conns needs a number} ;;
    --only) shift; ONLY=${1:?--only needs a server} ;;
    --variants) shift; VARIANTS=${1:?--variants needs a list} ;;
    -h|--help) sed -n "2,19p" "$0"; exit 0 ;;
    -*) die "unknown option $1" ;;
    *) BUILD=$1 ;;
  esac
  shift
done
PORT=${BENCH_PORT_BASE:-18520}
NODE=${NODE:-node}
PYTHON=${PYTHON:-/usr/bin/python3}

if [ -n "${DUPLEX:-}" ]; then
  [ -x "$DUPLEX" ] || die "DUPLEX=$DUPLEX is not an executable"
  mkdir -p "$BUILD" && BUILD=$(cd "$BUILD" && pwd) BTYPE="as given"
else
  bench_build_dir -DBUILD_TESTING=OFF
  ensure duplex "$BUILD/duplex" || die "duplex did not build: see $BUILD/bench-build.log"
  DUPLEX=$BUILD/duplex
fi
SERVERS="duplex"
WS_MODULE=${WS_MODULE:-$ROOT/tests/interop/node_modules/ws}
export WS_MODULE
"$NODE" -e "require('$WS_MODULE')" 2>/dev/null && SERVERS="$SERVERS node" ||
  warn "node or $WS_MODULE missing (npm ci in tests/interop, or set WS_MODULE): no node column"
"$PYTHON" -c 'import websockets' 2>/dev/null && SERVERS="$SERVERS python" ||
  warn "$PYTHON has no websockets module: no python column"
[ -n "$ONLY" ] && SERVERS=$ONLY

raise_nofile
if [ "$NOFILE" != unlimited ] && [ "$CONNS" -gt $((NOFILE - 200)) ]; then
  CONNS=$((NOFILE - 200))
  warn "ulimit -n is $NOFILE: $CONNS connections"
fi
port_of() { echo "$PORT"; }
start_results "idle-mem-" duplex
sh "$ROOT/tests/certs/make.sh" "$OUT/certs" >"$OUT/certs.log" 2>&1 ||
  die "tests/certs/make.sh failed: see $OUT/certs.log"
CERT=$OUT/certs/server.pem KEY=$OUT/certs/server.key

start_server() { # NAME VARIANT (plain, deflate, tls)
  local log=$OUT/$1-$2.log
  case $1-$2 in
    duplex-plain) "$DUPLEX" serve --threads 1 --quiet --host 127.0.0.1 --port "$PORT" --no-deflate >>"$log" 2>&1 & ;;
    duplex-deflate) "$DUPLEX" serve --threads 1 --quiet --host 127.0.0.1 --port "$PORT" >>"$log" 2>&1 & ;;
    duplex-tls) "$DUPLEX" serve --threads 1 --quiet --host 127.0.0.1 --port "$PORT" --no-deflate \
                  --tls-cert "$CERT" --tls-key "$KEY" >>"$log" 2>&1 & ;;
    node-plain) WS_NO_DEFLATE=1 "$NODE" "$ROOT/bench/ws_echo.js" "$PORT" >>"$log" 2>&1 & ;;
    node-deflate) "$NODE" "$ROOT/bench/ws_echo.js" "$PORT" >>"$log" 2>&1 & ;;
    node-tls) WS_NO_DEFLATE=1 WS_TLS_CERT=$CERT WS_TLS_KEY=$KEY "$NODE" "$ROOT/bench/ws_echo.js" "$PORT" >>"$log" 2>&1 & ;;
    python-plain) "$PYTHON" "$ROOT/bench/ws_echo.py" "$PORT" --no-deflate >>"$log" 2>&1 & ;;
    python-deflate) "$PYTHON" "$ROOT/bench/ws_echo.py" "$PORT" >>"$log" 2>&1 & ;;
    python-tls) "$PYTHON" "$ROOT/bench/ws_echo.py" "$PORT" --no-deflate --tls-cert "$CERT" \
                  --tls-key "$KEY" >>"$log" 2>&1 & ;;
  esac
  SPID=$!
  wait_listening "$1" "$PORT" "$log" 200
}
trap 'stop_server; exit 130' INT TERM

echo "idle memory: $CONNS connections, $REPS rep(s), servers: $SERVERS; $DUPLEX ($BTYPE)"
for rep in $(seq "$REPS"); do
  for variant in $VARIANTS; do
    for srv in $SERVERS; do
      start_server "$srv" "$variant" || { echo "$srv $variant $rep failed=start" >>"$RESULTS"; continue; }
      # Let an interpreter finish starting up before RSS is first read.
      sleep 0.5
      args=(--mode idle --connections "$CONNS" --duration 2 --timeout 30 --json --quiet --server-pid "$SPID")
      url=ws://127.0.0.1:$PORT/
      case $variant in
        deflate) args+=(--deflate) ;;
        tls) args+=(--insecure); url=wss://127.0.0.1:$PORT/ ;;
      esac
      line=$(timeout 300 "$DUPLEX" bench "$url" "${args[@]}" 2>>"$OUT/bench.log")
      echo "$srv $variant $rep $line" >>"$RESULTS"
      stop_server
    done
  done
done

# marginal = (after - first) KiB * 1024 / (held - held/10), as duplex bench
# computes it: the first tenth is what it opens before its middle reading.
awk -v reps="$REPS" '
function num(key,   m) {
  if (match($0, "\"" key "\":[0-9]+")) return substr($0, RSTART + length(key) + 3, RLENGTH - length(key) - 3) + 0
  return -1
}
{
  held = num("connections_held"); first = num("first"); after = num("after")
  if (held <= 0 || first < 0 || after < 0) { v = "fail" }
  else v = sprintf("%.0f", (after - first) * 1024 / (held - int(held / 10)))
  if (($1, $2) in cell) cell[$1, $2] = cell[$1, $2] " / " v
  else cell[$1, $2] = v
  if (!($1 in seen)) { seen[$1] = 1; order[++ns] = $1 }
}
END {
  printf "%-12s", "bytes/conn"
  for (i = 1; i <= ns; i++) printf " %20s", order[i]
  print ""
  split("plain deflate tls", vs, " ")
  for (j = 1; j <= 3; j++) {
    printf "%-12s", vs[j]
    for (i = 1; i <= ns; i++) printf " %20s", cell[order[i], vs[j]]
    print ""
  }
}' "$RESULTS" | tee "$OUT/table.txt"
echo "raw lines: $RESULTS"
