#!/usr/bin/env bash
# Pub/sub across nodes: two `duplex serve --rooms --redis` nodes (one
# thread each, no compression) and one redis-server on loopback, all
# started here. Prints, in one run:
#   - publish->deliver latency p50/p99 at a moderate rate (RATE msg/s),
#   - the peak cross-node rate with WINDOW messages in flight,
#   - redis-benchmark's pipelined PUBLISH (-P 16) of the same payload size
#     on the same Redis: the reference, and the ratio peak / reference.
# Each figure is the median of REPS runs.
#   bench/cross_node.sh [--quick] [--reps N] [BUILD_DIR]   (default: build-rel)
# Env: SIZE (payload bytes, default 64), RATE (default 2000), WINDOW (default
# 1024), BENCH_PORT_BASE (default 18580: Redis, +1 and +2 the nodes).
set -euo pipefail
ME=cross_node.sh
ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/bench/lib.sh"
BUILD=$ROOT/build-rel
parse_rep_args 14 10000 "$@"
bench_build_dir
ensure duplex "$BUILD/duplex" || die "cannot build duplex"
ensure cross_node "$BUILD/bench/cross_node" || die "cannot build cross_node"
command -v redis-server >/dev/null || die "redis-server is missing (apt-get install redis-server)"
SIZE=${SIZE:-64} RATE=${RATE:-2000} WINDOW=${WINDOW:-1024}
base=${BENCH_PORT_BASE:-18580}
rport=$base p1=$((base + 1)) p2=$((base + 2))
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT
redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no --dir "$tmp" \
  >"$tmp/redis.log" 2>&1 &
pids+=($!)
for n in 1 2; do
  port=$((base + n))
  "$BUILD/duplex" serve --rooms --threads 1 --quiet --no-deflate --host 127.0.0.1 \
    --port "$port" --redis "redis://127.0.0.1:$rport" 2>"$tmp/node$n.log" &
  pids+=($!)
done
for n in 1 2; do
  for _ in $(seq 100); do grep -q "redis: connected" "$tmp/node$n.log" && break; sleep 0.1; done
  grep -q "redis: connected" "$tmp/node$n.log" || die "node $n did not reach Redis: $(cat "$tmp/node$n.log")"
done
a=ws://127.0.0.1:$p1/rooms/bench b=ws://127.0.0.1:$p2/rooms/bench
payload=$(head -c "$SIZE" /dev/zero | tr '\0' x)
median() { sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
lat50=() lat99=() peak=() ref=()
for r in $(seq "$REPS"); do
  line=$("$BUILD/bench/cross_node" latency "$a" "$b" "$RATE" "$SECS" "$SIZE")
  echo "rep $r latency: $line"
  lat50+=("$(sed -n 's/.*p50_us \([0-9]*\).*/\1/p' <<<"$line")")
  lat99+=("$(sed -n 's/.*p99_us \([0-9]*\).*/\1/p' <<<"$line")")
  line=$("$BUILD/bench/cross_node" peak "$a" "$b" "$WINDOW" "$SECS" "$SIZE")
  echo "rep $r peak: $line"
  peak+=("$(sed -n 's/.*: \([0-9]*\) msg\/s.*/\1/p' <<<"$line")")
  line=$(redis-benchmark -p "$rport" -P 16 -n 200000 -q PUBLISH dx:reference "$payload" 2>/dev/null |
         tr '\r' '\n' | grep "requests per second" | tail -1)
  echo "rep $r redis-benchmark: $line"
  ref+=("$(sed -n 's/.*: \([0-9.]*\) requests per second.*/\1/p' <<<"$line" | cut -d. -f1)")
done
m50=$(printf '%s\n' "${lat50[@]}" | median) m99=$(printf '%s\n' "${lat99[@]}" | median)
mp=$(printf '%s\n' "${peak[@]}" | median) mr=$(printf '%s\n' "${ref[@]}" | median)
echo
echo "| figure ($SIZE-byte payload, $REPS reps, medians) | value |"
echo "| --- | --- |"
echo "| publish->deliver p50 at $RATE msg/s | $m50 us |"
echo "| publish->deliver p99 at $RATE msg/s | $m99 us |"
echo "| peak cross-node rate, $WINDOW in flight | $mp msg/s |"
echo "| redis-benchmark -P 16 PUBLISH | $mr msg/s |"
awk -v p="$mp" -v r="$mr" 'BEGIN { printf "| ratio peak / reference | %.2f |\n", p / r }'
