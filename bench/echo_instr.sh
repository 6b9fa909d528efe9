#!/usr/bin/env bash
# bench/echo_instr.sh — server instructions per echoed message under
# callgrind: deterministic where a timed figure on a shared machine is not,
# so a change to the message path can be compared before and after.
#
# usage: bench/echo_instr.sh [--conns N] [--inflight N] [--size SIZE] DUPLEX...
#        (defaults: 200 connections, 16 in flight, 20 bytes)
# env:   BENCH_PORT_BASE (default 18540)
#
# Each DUPLEX binary in turn runs `serve --threads 1 --no-deflate
# --ping-interval 0` under callgrind, driven by `duplex bench` (the first
# binary's) for 8 s. The counters are zeroed 3 s in, once the handshakes
# are over, so start-up and handshakes stay out; the figure is the
# instructions from then to the server's exit (the 200 closing handshakes
# included, a few per message) divided by the messages delivered in that
# time (calls of conn.c's ev_message). It does not depend on how many
# echoes a run gets, which under valgrind on a busy machine varies 2-3x.
# Prints one line per binary, and keeps callgrind's file for
# callgrind_annotate --threshold=100.
set -u
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ME=echo_instr.sh
die() { echo "$ME: $*" >&2; exit 1; }
CONNS=200 INFLIGHT=16 SIZE=20
while [ $# -gt 0 ]; do
  case "$1" in
    --conns) shift; CONNS=${1:?} ;;
    --inflight) shift; INFLIGHT=${1:?} ;;
    --size) shift; SIZE=${1:?} ;;
    -h|--help) sed -n "2,20p" "$0"; exit 0 ;;
    -*) die "unknown option $1" ;;
    *) break ;;
  esac
  shift
done
[ $# -gt 0 ] || die "usage: $ME [--conns N] [--inflight N] [--size SIZE] DUPLEX..."
command -v valgrind >/dev/null && command -v callgrind_control >/dev/null ||
  die "valgrind (callgrind) is needed"
PORT=${BENCH_PORT_BASE:-18540}
CLIENT=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
OUT=$(mktemp -d "${TMPDIR:-/tmp}/echo_instr.XXXXXX")

# Calls of a function and the total instructions in a callgrind file
# (names are compressed: "(id) name" the first time, "(id)" after).
count() { # FILE FUNCTION
  awk -v fn="$2" '
    /^c?fn=/ { id = $1; sub(/^c?fn=/, "", id); if (NF > 1) name[id] = $2
               if ($0 ~ /^cfn=/) callee = name[id] }
    /^calls=/ { if (callee == fn) { n = $1; sub(/^calls=/, "", n); calls += n } }
    /^(summary|totals):/ { total = $2 }
    END { printf "%d %d\n", calls, total }' "$1"
}

i=0
for d in "$@"; do
  [ -x "$d" ] || die "$d is not an executable"
  i=$((i + 1))
  f=$OUT/callgrind.$i.out
  valgrind --tool=callgrind --callgrind-out-file="$f" "$d" serve --host 127.0.0.1 \
    --port "$PORT" --threads 1 --no-deflate --ping-interval 0 --quiet 2>"$OUT/vg.$i.log" &
  pid=$!
  sleep 3
  "$CLIENT" bench "ws://127.0.0.1:$PORT/" --json --quiet --connections "$CONNS" \
    --inflight "$INFLIGHT" --size "$SIZE" --duration 8 >"$OUT/bench.$i.json" 2>&1 &
  bp=$!
  sleep 3
  callgrind_control -z "$pid" >/dev/null 2>&1
  wait "$bp"
  kill -INT "$pid"
  wait "$pid"
  read -r calls total < <(count "$f" ev_message)
  [ "$calls" -gt 0 ] || die "$d: no message counted (see $OUT)"
  awk -v d="$d" -v c="$calls" -v t="$total" -v f="$f" \
    'BEGIN { printf "%s: %.1f instructions per message (%d messages; %s)\n", d, t / c, c, f }'
done
