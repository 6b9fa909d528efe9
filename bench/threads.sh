#!/usr/bin/env bash
# bench/threads.sh — `duplex serve --threads N` for N = 1 and 2, with the
# client pinned to one CPU: for N = 1 the server is pinned to another, so
# client and server each have a core; for N = 2 the server may use every
# CPU (on a 2-CPU machine its second loop shares the client's). Rows:
#   echo1   20 B echo, 200 conns, 1 in flight
#   echo16  20 B echo, 200 conns, 16 in flight
# A fresh server per run, interleaved rep by rep; medians of the reps and
# of the per-rep ratios t2/t1. Raw lines go to
# BUILD/bench-results/threads-<time>/results.txt. See bench/README.md,
# "Threads".
#
# usage: bench/threads.sh [--quick] [--reps N] [BUILD_DIR]  (default build-rel in the repository)
# env:   BENCH_PORT_BASE (default 18570: t1, +1 t2)
#        CLIENT_CPU (default 0), SERVER_CPU (default 1): the pinning
set -u

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ME=threads.sh
. "$ROOT/bench/lib.sh"
BUILD=$ROOT/build-rel
parse_rep_args 16 0 "$@"
PORT_BASE=${BENCH_PORT_BASE:-18570}
CCPU=${CLIENT_CPU:-0}
SCPU=${SERVER_CPU:-1}

build_wsbench_duplex
raise_nofile

port_of() { case $1 in t1) echo "$PORT_BASE" ;; t2) echo $((PORT_BASE + 1)) ;; esac; }
start_results "threads-" t1 t2

start_server() { # NAME
  local pin=() n=${1#t}
  [ "$n" = 1 ] && pin=(taskset -c "$SCPU")
  "${pin[@]}" "$DUPLEX" serve --threads "$n" --quiet --host 127.0.0.1 --port "$(port_of "$1")" \
    >>"$OUT/$1.log" 2>&1 &
  SPID=$!
  wait_listening "$1" "$(port_of "$1")" "$OUT/$1.log" 200
}
trap 'stop_server; exit 130' INT TERM

row_args() {
  local t="--seconds $SECS --warmup $WARM"
  case $1 in
    echo1) echo "--mode echo --conns 200 --inflight 1 --size 20 $t" ;;
    echo16) echo "--mode echo --conns 200 --inflight 16 --size 20 $t" ;;
  esac
}

run_one() { # ROW SERVER REP
  local line rc
  if ! start_server "$2"; then
    echo "row=$1 server=$2 rep=$3 failed=start" >>"$RESULTS"
    return
  fi
  # shellcheck disable=SC2046 # row_args is meant to split
  line=$(timeout 120 taskset -c "$CCPU" "$WSBENCH" --port "$(port_of "$2")" --pid "$SPID" \
    $(row_args "$1") 2>>"$OUT/wsbench.log")
  rc=$?
  record_run "$1" "$2" "$3" "$rc" "$line"
}

SERVERS="t1 t2"
begin_run "duplex threads bench: $(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -sr), $(nproc) CPUs" \
  "build: $BUILD ($BTYPE); client on CPU $CCPU; --threads 1 on CPU $SCPU, --threads 2 unpinned" \
  "$REPS rep(s) of ${SECS}s after ${WARM}s warm-up" \
  "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
run_interleaved echo1 echo16
end_run
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/header.txt"
echo

awk "$AWK_COMMON"'
{
  parse()
  if (failed != "") { delete f; next }
  if (f["msgs"] > 0) f["us"] = f["server_cpu"] * f["seconds"] * 1e6 / f["msgs"]
  for (k in f) { key = row SUBSEP srv SUBSEP k; val[key, ++cnt[key]] = f[k] + 0; byrep[key, f["rep"]] = f[k] + 0 }
  if (f["rep"] > nrep) nrep = f["rep"]
  delete f
}
function m(row, srv, fig,   v) { v = median(row SUBSEP srv SUBSEP fig); return v == "" ? 0 : v }
function show(title, row, fig, name, fmt) {
  printf "%-34s %-20s " fmt " " fmt " %8s\n", title, name, m(row, "t1", fig), m(row, "t2", fig), rep_ratio(row, "t2", "t1", fig)
}
END {
  printf "%-34s %-20s %12s %12s %8s\n", "row", "figure", "threads 1", "threads 2", "t2/t1"
  split("echo1 echo16", rows, " ")
  label["echo1"] = "echo 20 B, 200 conns, 1 in flight"; label["echo16"] = "echo 20 B, 200 conns, 16 in flight"
  for (i = 1; i <= 2; i++) {
    r = rows[i]
    show(label[r], r, "msgs_per_s", "msgs/s", "%12.0f")
    show("", r, "us", "server us/msg", "%12.3f")
    show("", r, "server_cpu", "server CPU (cores)", "%12.2f")
    show("", r, "client_cpu", "client CPU (cores)", "%12.2f")
    show("", r, "p50_us", "p50 us", "%12.0f")
  }
  print ""
  print "t2/t1: the median over reps of the ratio within one rep (the two servers ran back to back)."
}' "$RESULTS" | tee "$OUT/table.txt"
