#!/usr/bin/env bash
# bench/idle_cpu.sh — what idle connections with heartbeats cost the server
# in CPU. For each ping interval: a fresh `duplex serve --threads 1 --quiet`
# with that --ping-interval; bench/soak --idle opens N connections evenly
# over one interval (so, as with clients that come and go, their pings are
# spread evenly rather than all due at once), which then only answer pings;
# once all are open and S seconds have passed, soak reads the server's
# utime + stime from /proc/PID/stat, waits W seconds, reads it again and
# reports ms of CPU per second, the same scaled to 10,000 connections, the
# pings seen in the window and the CPU per ping. Any connection lost during
# the window is reported (lost=) and fails the run.
# Loopback only; not part of the tests or CI (see bench/README.md).
#
# usage: bench/idle_cpu.sh [--conns N] [--window W] [--settle S]
#                          [--intervals "25 1"] [--port P] [--duplex BIN]
#                          [BUILD_DIR]
#   defaults: 10000 connections, W 60 s, S 5 s, intervals 25 s (the
#   default) and 1 s; an interval of 0 turns heartbeats off (a baseline).
#   The ping timeout is the interval, at most 20 s (the default).
#   BUILD_DIR defaults to build in the repository. --duplex runs another
#   duplex binary as the server (a copy of an older build, for a before /
#   after comparison); soak still comes from BUILD_DIR.
set -u

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ME=idle_cpu.sh
. "$ROOT/bench/lib.sh"
BUILD=$ROOT/build
CONNS=10000
WINDOW=60
SETTLE=5
INTERVALS="25 1"
PORT=${IDLE_CPU_PORT:-18591}
DUPLEX=
while [ $# -gt 0 ]; do
  case "$1" in
    --conns) shift; CONNS=${1:?--conns needs a value} ;;
    --window) shift; WINDOW=${1:?--window needs a value} ;;
    --settle) shift; SETTLE=${1:?--settle needs a value} ;;
    --intervals) shift; INTERVALS=${1:?--intervals needs a value} ;;
    --port) shift; PORT=${1:?--port needs a value} ;;
    --duplex) shift; DUPLEX=${1:?--duplex needs a value} ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    -*) echo "idle_cpu.sh: unknown option $1" >&2; exit 2 ;;
    *) BUILD=$1 ;;
  esac
  shift
done

bench_build_dir
ensure soak "$BUILD/bench/soak" && ensure duplex "$BUILD/duplex" ||
  die "soak or duplex did not build: see $BUILD/bench-build.log"
[ -n "$DUPLEX" ] || DUPLEX=$BUILD/duplex
[ -x "$DUPLEX" ] || die "--duplex $DUPLEX: not an executable"

# Both sides hold one descriptor per connection; the server inherits this.
# Where the hard limit is lower (no CAP_SYS_RESOURCE), take the hard limit.
raise_nofile
[ "$NOFILE" != unlimited ] && [ "$CONNS" -gt $((NOFILE - 100)) ] &&
  die "ulimit -n is $NOFILE here: too few descriptors for $CONNS connections"
# Ephemeral ports: 10,000 connections to one port fit in Linux's default
# range; soak spreads over more 127.0.0.x source addresses by itself if
# connect() ever runs out (EADDRNOTAVAIL).

listening "$PORT" && die "port $PORT is already in use (--port)"
OUT=$BUILD/idle-cpu-results/$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT" || die "cannot create $OUT"

echo "idle CPU: $CONNS connections, ${WINDOW}s window after ${SETTLE}s settle;" \
  "server $DUPLEX, build $BUILD ($BTYPE); ulimit -n $NOFILE; $(nproc) CPUs; results in $OUT"
echo "machine busy before: $(busy_pct)% (other load is not counted in the server's CPU time, but adds noise)"

SPID=
CPID=
trap '[ -n "$CPID" ] && kill "$CPID" 2>/dev/null; [ -n "$SPID" ] && kill "$SPID" 2>/dev/null; exit 130' INT TERM
FAIL=0
for iv in $INTERVALS; do
  to=$iv
  [ "$to" -gt 20 ] && to=20
  [ "$to" -lt 1 ] && to=1
  "$DUPLEX" serve --threads 1 --quiet --host 127.0.0.1 --port "$PORT" \
    --ping-interval "$iv" --ping-timeout "$to" 2>"$OUT/server-$iv.log" &
  SPID=$!
  wait_listening duplex "$PORT" "$OUT/server-$iv.log" || exit 1
  echo "-- ping interval ${iv}s (timeout ${to}s): opening $CONNS connections over ${iv}s..."
  "$BUILD/bench/soak" --idle --port "$PORT" --conns "$CONNS" --pid "$SPID" \
    --spread "$iv" --settle "$SETTLE" --window "$WINDOW" \
    >"$OUT/client-$iv.txt" 2>"$OUT/client-$iv.log" &
  CPID=$!
  wait "$CPID"
  rc=$?
  CPID=
  RSS=$(awk '/^VmRSS:/ { print $2 }' "/proc/$SPID/status" 2>/dev/null)
  kill "$SPID" 2>/dev/null
  wait "$SPID" 2>/dev/null
  SPID=
  line=$(tail -1 "$OUT/client-$iv.txt")
  [ $rc -ne 0 ] && { FAIL=1; echo "   soak failed (rc $rc): see $OUT/client-$iv.log"; }
  echo "interval=$iv $line" >>"$OUT/results.txt"
  echo "   $line"
  # Ports held in TIME_WAIT by the closes are harmless; give the kernel a
  # moment before the next server binds the same port.
  sleep 1
done

echo
printf '%-9s %7s %8s %16s %14s %10s %9s %12s %5s\n' interval conns window \
  "server CPU ms/s" "per 10k conns" "pings/s" "us/ping" "client ms/s" lost
awk '{
  for (i = 1; i <= NF; i++) { eq = index($i, "="); f[substr($i, 1, eq - 1)] = substr($i, eq + 1) }
  printf "%-9s %7s %8s %16s %14s %10s %9s %12s %5s\n", f["interval"] "s", f["conns"],
    f["window_s"] "s", f["server_ms_per_s"], f["server_ms_per_s_per_10k"], f["pings_per_s"],
    f["us_per_ping"], f["client_ms_per_s"], f["lost"]
}' "$OUT/results.txt" | tee "$OUT/table.txt"
echo "machine busy after: $(busy_pct)%"
exit "$FAIL"
