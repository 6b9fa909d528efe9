#!/usr/bin/env bash
# bench/socketio.sh — duplex's Socket.IO server against the reference (npm
# socket.io, the version in bench/package.json), in one invocation, with
# the same client (bench/sio_load, in C) on the same machine (issue 13):
#   duplex  bench/sio_server: dx_sio on one loop
#   ref     node bench/sio_ref.js: socket.io on Node (one thread of JavaScript)
# Both do the same: "echo" acked with its arguments, "join" a room,
# "fanout" ROOM PAYLOAD -> "msg" PAYLOAD to the room; pingInterval 25 s,
# pingTimeout 20 s, no compression. Rows, interleaved server by server,
# rep by rep, a fresh server per run:
#   echo_ws    200 clients over WebSocket, 4 acked events in flight each
#   echo_poll  200 clients over long-polling, 4 in flight each
#   fan1k      1,000 subscribers in a room, one publisher, 8 in flight
#   fan10k     10,000 subscribers, likewise
#   idle       IDLE_N idle connected clients: server RSS growth per client
#              (once per server, after the reps: it varies by a few %)
# Prints medians of each figure and of the within-rep ratios duplex/ref.
# Raw lines go to BUILD/bench-results/socketio-<time>/results.txt.
#
# usage: bench/socketio.sh [--quick] [--reps N] [BUILD_DIR]   (default:
#        build-rel in the source tree; configured Release if new)
# env:   BENCH_PORT_BASE (default 22100: duplex, +1 ref), SIO_PIN (default
#        1: server on one CPU, client on another, when there are two),
#        SIO_IDLE_N (default 10000; --quick 2000)
set -u

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ME=socketio.sh
. "$ROOT/bench/lib.sh"
BUILD=$ROOT/build-rel
parse_rep_args 25 "${SIO_IDLE_N:-10000}" "$@"
PORT_BASE=${BENCH_PORT_BASE:-22100}
# Node's JIT needs a moment: longer windows than the other scripts.
if [ "$SECS" = 1 ]; then WARM=1; SECS=2; else WARM=2; SECS=3; fi

# ---------------------------------------------------------------- build
bench_build_dir -DBUILD_TESTING=OFF
echo "building..."
ensure sio_server "$BUILD/bench/sio_server" || die "sio_server did not build: see $BUILD/bench-build.log"
ensure sio_load "$BUILD/bench/sio_load" || die "sio_load did not build: see $BUILD/bench-build.log"
LOAD=$BUILD/bench/sio_load
command -v node >/dev/null || die "node is needed for the reference server"
if [ ! -d "$ROOT/bench/node_modules/socket.io" ]; then
  echo "installing the reference (npm ci in bench/)..."
  (cd "$ROOT/bench" && npm ci --no-audit --no-fund >"$BUILD/bench-npm.log" 2>&1) ||
    die "npm ci failed: see $BUILD/bench-npm.log"
fi
SIO_VERSION=$(node -p 'require(process.argv[1] + "/bench/node_modules/socket.io/package.json").version' "$ROOT")
SERVERS="duplex ref"

# Client and server each hold one descriptor per client (two per polling
# client on the client's side).
raise_nofile
if [ "$NOFILE" != unlimited ] && [ "$NOFILE" -lt $(( (IDLE_N > 10000 ? IDLE_N : 10000) + 100 )) ]; then
  die "ulimit -n is $NOFILE: too few for 10,000 subscribers and $IDLE_N idle clients"
fi

# Server and client on CPUs of their own, when there are two: Node's
# helper threads (GC, libuv) then share the server's one CPU, as duplex's
# single loop does, and neither side takes the other's CPU.
read -r -a CPU_LIST <<<"$(awk '/^Cpus_allowed_list/ { n = split($2, r, ",")
  for (i = 1; i <= n; i++) { m = split(r[i], b, "-"); for (c = b[1]; c <= b[m]; c++) printf "%d ", c } }' /proc/self/status)"
SRV_PIN="" CLI_PIN=""
if [ "${SIO_PIN:-1}" = 1 ] && command -v taskset >/dev/null && [ "${#CPU_LIST[@]}" -ge 2 ]; then
  CLI_PIN="taskset -c ${CPU_LIST[0]}" SRV_PIN="taskset -c ${CPU_LIST[1]}"
fi

port_of() { case $1 in duplex) echo "$PORT_BASE" ;; ref) echo $((PORT_BASE + 1)) ;; esac; }
start_results "socketio-" $SERVERS

start_server() { # NAME ROW
  local port; port=$(port_of "$1")
  # shellcheck disable=SC2086 # SRV_PIN is a command prefix or nothing
  case $1 in
    duplex) $SRV_PIN "$BUILD/bench/sio_server" "$port" 127.0.0.1 >>"$OUT/duplex.log" 2>&1 & ;;
    ref) # the idle row collects garbage every second: only live memory counts
      local args=("$ROOT/bench/sio_ref.js" "$port" 127.0.0.1)
      [ "$2" = idle ] && args=(--expose-gc "${args[@]}" --gc-every 1000)
      $SRV_PIN node "${args[@]}" >>"$OUT/ref.log" 2>&1 & ;;
  esac
  SPID=$!
  wait_listening "$1" "$port" "$OUT/$1.log" 200
}
trap 'stop_server; exit 130' INT TERM

row_args() {
  local t="--seconds $SECS --warmup $WARM"
  case $1 in
    echo_ws) echo "--mode echo --transport websocket --conns 200 --inflight 4 --size 20 $t" ;;
    echo_poll) echo "--mode echo --transport polling --conns 200 --inflight 4 --size 20 $t" ;;
    fan1k) echo "--mode fanout --conns 1000 --inflight 8 --size 20 $t" ;;
    fan10k) echo "--mode fanout --conns 10000 --inflight 8 --size 20 $t" ;;
    idle) echo "--mode idle --conns $IDLE_N --settle 2" ;;
  esac
}

run_one() { # ROW SERVER REP
  local row=$1 srv=$2 rep=$3 line
  if ! start_server "$srv" "$row"; then
    echo "row=$row server=$srv rep=$rep failed=start" >>"$RESULTS"
    return
  fi
  # shellcheck disable=SC2046,SC2086 # row_args is meant to split; CLI_PIN is a prefix
  line=$(timeout 900 $CLI_PIN "$LOAD" --port "$(port_of "$srv")" --pid "$SPID" $(row_args "$row") \
    2>>"$OUT/sio_load.log")
  record_run "$row" "$srv" "$rep" $? "$line"
}

begin_run "duplex Socket.IO bench: $(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -sr), $(nproc) CPUs; load average $(cut -d' ' -f1-3 /proc/loadavg)" \
  "build: $BUILD ($BTYPE); reference: socket.io $SIO_VERSION on node $(node --version)" \
  "$REPS rep(s) of ${SECS}s after ${WARM}s warm-up; idle row: $IDLE_N clients; pinning: ${SRV_PIN:-none} (server), ${CLI_PIN:-none} (client)"
run_interleaved echo_ws echo_poll fan1k fan10k
for srv in $SERVERS; do run_one idle "$srv" 1; done
end_run
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/header.txt"
echo

# ---------------------------------------------------------------- table
awk "$AWK_COMMON"'
function fmt(v) {
  if (v == "") return "-"
  if (v >= 100) return sprintf("%.0f", v)
  return sprintf("%.2f", v)
}
{
  parse()
  rep = f["rep"]
  if (failed != "") { delete f; next }
  # one work unit: an acked event, or a delivery
  if ("server_ns_per_event" in f) f["ns_per_unit"] = f["server_ns_per_event"]
  if ("server_ns_per_delivery" in f) f["ns_per_unit"] = f["server_ns_per_delivery"]
  if (f["ns_per_unit"] + 0 > 0) f["units_per_cpu_s"] = 1e9 / f["ns_per_unit"]
  f["rate"] = ("events_per_s" in f) ? f["events_per_s"] : f["deliveries_per_s"]
  for (k in f) {
    key = row SUBSEP srv SUBSEP k; val[key, ++cnt[key]] = f[k] + 0
    byrep[key, rep] = f[k] + 0
  }
  if (rep + 0 > nrep) nrep = rep + 0
  delete f
}
function line(label, row, k, name) {
  printf "%-28s %-24s %12s %12s %9s\n", label, name, fmt(median(row SUBSEP "duplex" SUBSEP k)),
    fmt(median(row SUBSEP "ref" SUBSEP k)), rep_ratio(row, "duplex", "ref", k)
}
END {
  printf "%-28s %-24s %12s %12s %9s\n", "row", "figure", "duplex", "ref", "duplex/ref"
  n = split("echo_ws echo_poll fan1k fan10k", rows, " ")
  label["echo_ws"] = "echo, websocket, 200x4"
  label["echo_poll"] = "echo, polling, 200x4"
  label["fan1k"] = "fan-out, 1,000 subscribers"
  label["fan10k"] = "fan-out, 10,000 subscribers"
  for (i = 1; i <= n; i++) {
    r = rows[i]; ev = r ~ /^echo/
    line(label[r], r, "rate", ev ? "events/s" : "deliveries/s")
    line("", r, "server_cpu", "server CPU (cores)")
    line("", r, "ns_per_unit", ev ? "server ns/event" : "server ns/delivery")
    line("", r, "units_per_cpu_s", ev ? "events per CPU-second" : "deliveries per CPU-s")
    line("", r, "client_cpu", "client CPU (cores)")
    line("", r, "p50_us", "p50 us")
  }
  line("idle clients", "idle", "conns", "clients")
  line("", "idle", "bytes_per_conn", "server bytes/client")
  line("", "idle", "marginal_bytes_per_conn", "marginal bytes/client")
  print ""
  print "duplex/ref is the median of the ratios within each rep. Targets (issue 13): events"
  print "(deliveries) per CPU-second >= 5, bytes per idle client <= 0.2."
}' "$RESULTS" | tee "$OUT/table.txt"
