#!/usr/bin/env bash
# bench/echo_ab.sh — server CPU per echoed message of several servers under
# the same wsbench echo load, interleaved rep by rep (so drift on a shared
# machine hits them alike), for comparing two builds of duplex with the raw
# TCP echo: the pipelined-echo rows of run.sh without lws, and with any
# binaries. A server named raw* is driven with --raw. PORT in a command is
# replaced by a fresh port (BENCH_PORT_BASE, default 19410, up to +30).
#
# usage: bench/echo_ab.sh REPS INFLIGHT SECONDS NAME=COMMAND...
# e.g.   bench/echo_ab.sh 5 16 3 \
#          "old=old/duplex serve --threads 1 --quiet --host 127.0.0.1 --port PORT" \
#          "new=build/duplex serve --threads 1 --quiet --host 127.0.0.1 --port PORT" \
#          "raw=build/bench/raw_echo PORT 127.0.0.1"
# prints one line per run: rep, name, msgs/s, server and client CPU, server
# CPU per message (us). Needs build/bench/wsbench (WSBENCH overrides).
set -u
[ $# -ge 4 ] || { sed -n 2,17p "$0"; exit 2; }
reps=$1 infl=$2 secs=$3
shift 3
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
W=${WSBENCH:-$ROOT/build/bench/wsbench}
base=${BENCH_PORT_BASE:-19410}
port=$base
field() { tr ' ' '\n' <<<"$1" | sed -n "s/^$2=//p"; }
for r in $(seq "$reps"); do
  for spec in "$@"; do
    name=${spec%%=*} cmd=${spec#*=}
    port=$((port + 1)); [ $port -gt $((base + 30)) ] && port=$((base + 1))
    # shellcheck disable=SC2086 # the command is split into words on purpose
    ${cmd//PORT/$port} >/dev/null 2>&1 &
    sp=$!
    for _ in $(seq 100); do ss -ltn | grep -q ":$port " && break; sleep 0.05; done
    raw=; case $name in raw*) raw=--raw ;; esac
    out=$("$W" --port "$port" $raw --mode echo --conns 200 --inflight "$infl" --size 20 \
            --seconds "$secs" --warmup 1 --pid "$sp" 2>/dev/null)
    kill "$sp"; wait "$sp" 2>/dev/null
    awk -v r="$r" -v n="$name" -v m="$(field "$out" msgs_per_s)" -v s="$(field "$out" server_cpu)" \
        -v c="$(field "$out" client_cpu)" \
        'BEGIN { printf "%s %-8s msgs/s=%8.0f server_cpu=%.2f client_cpu=%.2f server_us_per_msg=%.4f\n", r, n, m, s, c, (m > 0 ? s * 1e6 / m : 0) }'
  done
done
