#!/usr/bin/env bash
# bench/run.sh — duplex against two references, in one invocation, with the
# same client (wsbench) on the same machine:
#   duplex  `duplex serve` (the library's echo server)
#   lws     bench/lws_echo, a libwebsockets echo server
#   raw     bench/raw_echo, plain TCP echo on epoll: the machine's limit
# Each server is started fresh on its own loopback port for every run and
# stopped after it. Prints each figure (median over --reps runs) and the
# ratios duplex/lws and duplex/raw; every line wsbench printed is kept in
# BUILD/bench-results/<time>/results.txt. See bench/README.md.
#
# usage: bench/run.sh [--quick] [--reps N] [BUILD_DIR]   (default build in the repository)
# env:   BENCH_PORT_BASE (default 18480: duplex, +1 lws, +2 raw)
set -u

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ME=run.sh
. "$ROOT/bench/lib.sh"
BUILD=$ROOT/build
parse_rep_args 14 10000 "$@"
PORT_BASE=${BENCH_PORT_BASE:-18480}

# ---------------------------------------------------------------- build
bench_build_dir
echo "building..."
ensure wsbench "$BUILD/bench/wsbench" || die "wsbench did not build: see $BUILD/bench-build.log"
ensure raw_echo "$BUILD/bench/raw_echo" || die "raw_echo did not build: see $BUILD/bench-build.log"
SERVERS=""
if ensure duplex "$BUILD/duplex"; then SERVERS="duplex"; else
  warn "the duplex CLI did not build; its column will be empty"
fi
if ensure lws_echo "$BUILD/bench/lws_echo"; then SERVERS="$SERVERS lws"; else
  warn "lws_echo did not build (libwebsockets-dev missing?)"
fi
SERVERS="$SERVERS raw"
WSBENCH=$BUILD/bench/wsbench

# ------------------------------------------------------- limits and ports
# Both the client and the server hold one descriptor per idle connection;
# servers inherit the raised limit from this shell.
raise_nofile
if [ "$NOFILE" != unlimited ] && [ "$IDLE_N" -gt $((NOFILE - 200)) ]; then
  IDLE_N=$((NOFILE - 200))
  warn "ulimit -n is $NOFILE: idle row uses $IDLE_N connections"
fi

# The handshake row runs twice. On two CPUs (hs2) the one-thread client is
# saturated and the rate is the client's: a server that keeps up and goes
# idle between packets makes the client pay for waking it, so a cheaper
# server can score lower (bench/README.md, Caveats). On one CPU shared by
# client and server (hs1) every microsecond either spends counts, and the
# rate compares what the servers cost.
PIN_CPU=$(awk '/^Cpus_allowed_list/ { split($2, a, /[-,]/); print a[1] }' /proc/self/status)
command -v taskset >/dev/null || die "taskset (util-linux) is needed for the one-CPU handshake row"
pin_of() { [ "$1" = hs1 ] && echo "taskset -c $PIN_CPU"; }

port_of() { case $1 in duplex) echo "$PORT_BASE" ;; lws) echo $((PORT_BASE + 1)) ;; raw) echo $((PORT_BASE + 2)) ;; esac; }
start_results "" $SERVERS

# -------------------------------------------------------------- servers
start_server() { # NAME ROW
  local port pin; port=$(port_of "$1"); pin=$(pin_of "$2")
  # shellcheck disable=SC2086 # pin is a command prefix or nothing
  case $1 in
    duplex) $pin "$BUILD/duplex" serve --threads 1 --quiet --host 127.0.0.1 --port "$port" >>"$OUT/duplex.log" 2>&1 & ;;
    lws) $pin "$BUILD/bench/lws_echo" "$port" >>"$OUT/lws.log" 2>&1 & ;;
    raw) # the handshake rows need the server to close first, as WebSocket does
      local extra=()
      case $2 in hs1|hs2) extra=(--close-after-request) ;; esac
      $pin "$BUILD/bench/raw_echo" "$port" 127.0.0.1 "${extra[@]}" >>"$OUT/raw.log" 2>&1 & ;;
  esac
  SPID=$!
  wait_listening "$1" "$port" "$OUT/$1.log"
}
trap 'stop_server; exit 130' INT TERM

# ----------------------------------------------------------------- rows
row_args() {
  case $1 in
    echo1) echo "--mode echo --conns 200 --inflight 1 --size 20 --seconds $SECS --warmup $WARM" ;;
    echo16) echo "--mode echo --conns 200 --inflight 16 --size 20 --seconds $SECS --warmup $WARM" ;;
    big) echo "--mode echo --conns 4 --inflight 1 --size 1048576 --binary --seconds $SECS --warmup $WARM" ;;
    hs1|hs2) echo "--mode handshake --conns 16 --seconds $SECS --warmup $WARM" ;;
    idle) echo "--mode idle --conns $IDLE_N --settle 1" ;;
  esac
}

run_one() { # ROW SERVER REP
  local row=$1 srv=$2 rep=$3 line raw=""
  [ "$srv" = raw ] && raw=--raw
  if ! start_server "$srv" "$row"; then
    echo "row=$row server=$srv rep=$rep failed=start" >>"$RESULTS"
    return
  fi
  # shellcheck disable=SC2046 # row_args is meant to split
  line=$(timeout 120 $(pin_of "$row") "$WSBENCH" $raw --port "$(port_of "$srv")" --pid "$SPID" \
    $(row_args "$row") 2>>"$OUT/wsbench.log")
  record_run "$row" "$srv" "$rep" $? "$line"
}

{
  echo "duplex bench: $(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -sr), $(nproc) CPUs shared by client and servers"
  echo "build: $BUILD ($BTYPE); libwebsockets $(pkg-config --modversion libwebsockets 2>/dev/null || echo n/a)"
  echo "servers: $SERVERS; $REPS rep(s) of ${SECS}s after ${WARM}s warm-up; idle row: $IDLE_N connections"
} | tee "$OUT/header.txt"
check_busy "before the run" | tee -a "$OUT/header.txt"

START=$(date +%s)
for rep in $(seq "$REPS"); do
  for row in echo1 echo16 big hs1 hs2; do
    for srv in $SERVERS; do run_one "$row" "$srv" "$rep"; done
  done
done
for srv in $SERVERS; do run_one idle "$srv" 1; done
echo "ran in $(( $(date +%s) - START ))s; raw lines: $RESULTS"
check_busy "after the run" | tee -a "$OUT/header.txt"
echo

# ---------------------------------------------------------------- table
awk -v servers="$SERVERS" "$AWK_COMMON"'
function fmt(v) {
  if (v == "") return "-"
  if (v >= 100 || (v >= 10 && v == int(v))) return sprintf("%.0f", v)
  return sprintf("%.2f", v)
}
{
  parse()
  if (failed != "") { fail[row, srv] = failed; delete f; next }
  # Server CPU per message (or handshake): what the server spends whoever
  # is the bottleneck. The client is at 2 shared cores too, so a server
  # the client cannot keep busy can look as fast as a cheaper one.
  unit = ("handshakes_per_s" in f) ? f["handshakes_per_s"] : f["msgs_per_s"]
  if (("server_cpu" in f) && unit + 0 > 0) f["server_us_per_unit"] = f["server_cpu"] / unit * 1e6
  for (k in f) { key = row SUBSEP srv SUBSEP k; val[key, ++cnt[key]] = f[k] + 0 }
  delete f
}
function line(label, row, fig, name, showratio,   d, l, r, s) {
  d = median(row SUBSEP "duplex" SUBSEP fig)
  l = median(row SUBSEP "lws" SUBSEP fig)
  r = median(row SUBSEP "raw" SUBSEP fig)
  printf "%-34s %-18s %12s %12s %12s %11s %11s\n", label, name,
    cell(row, "duplex", d), cell(row, "lws", l), cell(row, "raw", r),
    showratio ? ratio(d, l) : "", showratio ? ratio(d, r) : ""
}
function cell(row, srv, v) {
  if (v != "") return fmt(v)
  if ((row, srv) in fail) return "FAIL"
  return index(" " servers " ", " " srv " ") ? "-" : "n/a"
}
END {
  printf "%-34s %-18s %12s %12s %12s %11s %11s\n", "row", "figure", "duplex", "lws", "raw", "duplex/lws", "duplex/raw"
  n = split("echo1|echo16|big|hs1|hs2", rows, "|")
  label["echo1"] = "echo 20 B, 200 conns, 1 in flight"
  label["echo16"] = "echo 20 B, 200 conns, 16 in flight"
  label["big"] = "echo 1 MiB binary, 4 conns"
  label["hs1"] = "handshakes, 16 conc., 1 CPU"
  label["hs2"] = "handshakes, 2 CPUs (client-bound)"
  for (i = 1; i <= n; i++) {
    r = rows[i]
    if (r ~ /^hs/) line(label[r], r, "handshakes_per_s", "handshakes/s", 1)
    else if (r == "big") line(label[r], r, "mb_per_s", "MB/s", 1)
    else line(label[r], r, "msgs_per_s", "msgs/s", 1)
    line("", r, "p50_us", "p50 us", 1)
    line("", r, "p99_us", "p99 us", 1)
    line("", r, "server_cpu", "server CPU (cores)", 0)
    line("", r, "server_us_per_unit", r ~ /^hs/ ? "server us/handshake" : "server us/msg", 1)
    line("", r, "client_cpu", "client CPU (cores)", 0)
  }
  line("idle connections", "idle", "conns", "connections", 0)
  line("", "idle", "bytes_per_conn", "server bytes/conn", 1)
  line("", "idle", "marginal_bytes_per_conn", "marginal bytes/conn", 1)
  print ""
  print "Ratios are duplex / reference: above 1 is better for msgs/s, MB/s and handshakes/s;"
  print "below 1 is better for latency, server us per message or handshake, and bytes/conn."
  print "MB = 10^6 bytes of echoed payload."
}' "$RESULTS" | tee "$OUT/table.txt"
