#!/usr/bin/env bash
# bench/fanout.sh — pub/sub fan-out on one node (issue 12 §5), in one
# invocation, with the same client (wsbench --mode fanout) against:
#   duplex  `duplex serve --rooms --threads 1 --quiet --no-deflate`
#   raw     bench/raw_fanout: pre-framed bytes, one write per subscriber per
#           loop iteration (every message published in it): the limit
# One publisher and S subscribers in one room, B-byte messages, K messages
# in flight (a message is in flight until every subscriber has it). Rows
# S = 1,000 and 10,000 x B = 20 and 1024, interleaved row by row, server by
# server, rep by rep; a fresh server per run. Prints the medians of
# deliveries/s and of the server's CPU per delivery, and duplex/raw. Raw
# lines go to BUILD/bench-results/fanout-<time>/results.txt. Then the
# memory of a subscription: bench/sub_memory (a hub whose every connection
# holds T topics) with N idle connections (wsbench --mode idle), T = 1 and
# 10: (growth at T=10 - growth at T=1) / (N x 9). See bench/README.md,
# "Fan-out (pub/sub)".
#
# usage: bench/fanout.sh [--quick] [--reps N] [BUILD_DIR]   (default: build-rel
#        in the source tree; configured Release with the benchmarks if new)
# env:   BENCH_PORT_BASE (default 18500: duplex, +1 raw, +2 sub_memory)
#        FANOUT_INFLIGHT (default 8), FANOUT_SUBS (default "1000 10000")
set -u

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ME=fanout.sh
. "$ROOT/bench/lib.sh"
BUILD=$ROOT/build-rel
parse_rep_args 21 10000 "$@"
PORT_BASE=${BENCH_PORT_BASE:-18500}
INFLIGHT=${FANOUT_INFLIGHT:-8}
SUBS=${FANOUT_SUBS:-1000 10000}
SIZES="20 1024"

# ---------------------------------------------------------------- build
bench_build_dir -DBUILD_TESTING=OFF
echo "building..."
ensure wsbench "$BUILD/bench/wsbench" || die "wsbench did not build: see $BUILD/bench-build.log"
ensure raw_fanout "$BUILD/bench/raw_fanout" || die "raw_fanout did not build: see $BUILD/bench-build.log"
ensure duplex "$BUILD/duplex" || die "the duplex CLI did not build: see $BUILD/bench-build.log"
ensure sub_memory "$BUILD/bench/sub_memory" || die "sub_memory did not build: see $BUILD/bench-build.log"
WSBENCH=$BUILD/bench/wsbench
SERVERS="duplex raw"

# Client and server each hold one descriptor per subscriber.
raise_nofile
for s in $SUBS $IDLE_N; do
  [ "$NOFILE" = unlimited ] || [ "$s" -le $((NOFILE - 100)) ] ||
    die "ulimit -n is $NOFILE: too few for $s subscribers"
done

port_of() {
  case $1 in duplex) echo "$PORT_BASE" ;; raw) echo $((PORT_BASE + 1)) ;; sub*) echo $((PORT_BASE + 2)) ;; esac
}
start_results "fanout-" $SERVERS sub

start_server() { # NAME (sub1, sub10: sub_memory with 1 or 10 topics)
  local port; port=$(port_of "$1")
  case $1 in
    sub*) "$BUILD/bench/sub_memory" "$port" "${1#sub}" >>"$OUT/sub.log" 2>&1 & ;;
    duplex) "$BUILD/duplex" serve --rooms --threads 1 --quiet --no-deflate --host 127.0.0.1 \
              --port "$port" >>"$OUT/duplex.log" 2>&1 & ;;
    raw) "$BUILD/bench/raw_fanout" "$port" 127.0.0.1 >>"$OUT/raw.log" 2>&1 & ;;
  esac
  SPID=$!
  wait_listening "$1" "$port" "$OUT/$1.log"
}
trap 'stop_server; exit 130' INT TERM

run_one() { # SUBS SIZE SERVER REP
  local subs=$1 size=$2 srv=$3 rep=$4 row="s${1}_b${2}" line
  if ! start_server "$srv"; then
    echo "row=$row server=$srv rep=$rep failed=start" >>"$RESULTS"
    return
  fi
  line=$(timeout 300 "$WSBENCH" --mode fanout --port "$(port_of "$srv")" --path /rooms/bench \
    --conns "$subs" --inflight "$INFLIGHT" --size "$size" --seconds "$SECS" --warmup "$WARM" \
    --pid "$SPID" 2>>"$OUT/wsbench.log")
  record_run "$row" "$srv" "$rep" $? "$line"
}

mem_one() { # TOPICS REP
  local line
  if ! start_server "sub$1"; then
    echo "row=mem server=sub$1 rep=$2 failed=start" >>"$RESULTS"
    return
  fi
  line=$(timeout 300 "$WSBENCH" --mode idle --port "$(port_of sub)" --conns "$IDLE_N" \
    --pid "$SPID" --settle 1 2>>"$OUT/wsbench.log")
  record_run mem "sub$1" "$2" $? "$line"
}

{
  echo "duplex fan-out bench: $(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -sr), $(nproc) CPUs shared by client and servers"
  echo "build: $BUILD ($BTYPE); $REPS rep(s) of ${SECS}s after ${WARM}s warm-up; $INFLIGHT messages in flight"
  echo "subscription memory: $IDLE_N connections, 1 and 10 topics each"
} | tee "$OUT/header.txt"
check_busy "before the run" | tee -a "$OUT/header.txt"

START=$(date +%s)
for rep in $(seq "$REPS"); do
  for subs in $SUBS; do
    for size in $SIZES; do
      for srv in $SERVERS; do run_one "$subs" "$size" "$srv" "$rep"; done
    done
  done
done
for rep in $(seq "$REPS"); do
  for t in 1 10; do mem_one "$t" "$rep"; done
done
echo "ran in $(( $(date +%s) - START ))s; raw lines: $RESULTS"
check_busy "after the run" | tee -a "$OUT/header.txt"
echo

# ---------------------------------------------------------------- table
awk -v rows="$(for s in $SUBS; do for b in $SIZES; do printf 's%s_b%s ' "$s" "$b"; done; done)" "$AWK_COMMON"'
function fmt(v) {
  if (v == "") return "-"
  if (v >= 100) return sprintf("%.0f", v)
  return sprintf("%.2f", v)
}
{
  parse()
  # the client'"'"'s CPU per delivery, to see which side was the limit
  if (f["deliveries"] + 0 > 0) f["client_ns_per_delivery"] = f["client_cpu"] * f["seconds"] * 1e9 / f["deliveries"]
  if (failed == "") for (k in f) { key = row SUBSEP srv SUBSEP k; val[key, ++cnt[key]] = f[k] + 0 }
  delete f
}
function line(label, row, fig, name,   d, r) {
  d = median(row SUBSEP "duplex" SUBSEP fig)
  r = median(row SUBSEP "raw" SUBSEP fig)
  printf "%-26s %-22s %12s %12s %10s\n", label, name, fmt(d), fmt(r), ratio(d, r)
}
END {
  printf "%-26s %-22s %12s %12s %10s\n", "row", "figure", "duplex", "raw", "duplex/raw"
  n = split(rows, rs, " ")
  for (i = 1; i <= n; i++) {
    r = rs[i]; split(substr(r, 2), sb, "_b")
    line(sprintf("%d subscribers, %d B", sb[1], sb[2]), r, "deliveries_per_s", "deliveries/s")
    line("", r, "server_ns_per_delivery", "server ns/delivery")
    line("", r, "server_cpu", "server CPU (cores)")
    line("", r, "client_cpu", "client CPU (cores)")
    line("", r, "client_ns_per_delivery", "client ns/delivery")
    line("", r, "p50_us", "p50 us (all received)")
  }
  m1 = median("mem" SUBSEP "sub1" SUBSEP "bytes_per_conn")
  m10 = median("mem" SUBSEP "sub10" SUBSEP "bytes_per_conn")
  n = median("mem" SUBSEP "sub1" SUBSEP "conns")
  print ""
  printf "subscription memory, %s connections: RSS growth per connection %s B with 1 topic, %s B with 10\n", fmt(n), fmt(m1), fmt(m10)
  if (m1 != "" && m10 != "") printf "bytes per connection per topic: (%s - %s) / 9 = %.1f\n", fmt(m10), fmt(m1), (m10 - m1) / 9
  print ""
  print "deliveries/s: messages received by subscribers per second (above 1 is better);"
  print "server ns/delivery: the server'"'"'s CPU time (user + system) per delivery (below 1 is better)."
}' "$RESULTS" | tee "$OUT/table.txt"
