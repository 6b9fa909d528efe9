#!/usr/bin/env bash
# bench/tls.sh — TLS against plain WebSocket on every echo row of run.sh and
# for handshakes, with both key exchange groups (X25519, P-256) and both
# kinds of certificate (ECDSA P-256, RSA 2048), in one invocation:
#   echo1   20 B echo, 200 conns, 1 in flight
#   echo16  20 B echo, 200 conns, 16 in flight
#   big     1 MiB binary echo, 4 conns
#   hs      handshake + close, 16 concurrent, client and server on one CPU
# A fresh `duplex serve --threads 1` per run, rows and servers interleaved
# rep by rep; medians of the reps, and the median of the per-rep ratios
# against plain (each rep ran them back to back). Raw lines go to
# BUILD/bench-results/tls-<time>/results.txt. See bench/README.md, "TLS".
#
# usage: bench/tls.sh [--quick] [--reps N] [BUILD_DIR]  (default build-rel in the repository)
# env:   BENCH_PORT_BASE (default 18560; one port per server, +0..+5)
#        DUPLEX_BEFORE=path: also run this duplex binary over TLS (EC
#          certificate, X25519) as the column "before", for a before/after
#        TLS_CPU (default: the last CPU): the CPU of the handshake row
#        TLS_ROWS (default "echo1 echo16 big hs"): the rows to run
set -u

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ME=tls.sh
. "$ROOT/bench/lib.sh"
BUILD=$ROOT/build-rel
parse_rep_args 20 0 "$@"
PORT_BASE=${BENCH_PORT_BASE:-18560}
CPU=${TLS_CPU:-$(($(nproc) - 1))}

build_wsbench_duplex
raise_nofile

# A server is a binary, a certificate kind and the group the client offers.
ALL="plain ec-x25519 ec-p256 rsa-x25519 rsa-p256"
[ -n "${DUPLEX_BEFORE:-}" ] && ALL="$ALL before"
port_of() {
  local i=0 s
  for s in $ALL; do [ "$s" = "$1" ] && { echo $((PORT_BASE + i)); return; }; i=$((i + 1)); done
}
start_results "tls-" $ALL
for k in ec rsa; do
  sh "$ROOT/tests/certs/make.sh" "$OUT/certs-$k" "$k" >"$OUT/certs.log" 2>&1 ||
    die "tests/certs/make.sh failed: see $OUT/certs.log"
done

start_server() { # NAME [taskset prefix...]
  local name=$1 bin=$DUPLEX cert=""; shift
  case $name in
    plain) ;;
    ec-*) cert=ec ;;
    rsa-*) cert=rsa ;;
    before) cert=ec; bin=$DUPLEX_BEFORE ;;
  esac
  local args=(serve --threads 1 --quiet --host 127.0.0.1 --port "$(port_of "$name")")
  [ -n "$cert" ] && args+=(--tls-cert "$OUT/certs-$cert/server.pem" --tls-key "$OUT/certs-$cert/server.key")
  "$@" "$bin" "${args[@]}" >>"$OUT/$name.log" 2>&1 &
  SPID=$!
  wait_listening "$name" "$(port_of "$name")" "$OUT/$name.log" 200
}
trap 'stop_server; exit 130' INT TERM

row_args() { # ROW
  local t="--seconds $SECS --warmup $WARM"
  case $1 in
    echo1) echo "--mode echo --conns 200 --inflight 1 --size 20 $t" ;;
    echo16) echo "--mode echo --conns 200 --inflight 16 --size 20 $t" ;;
    big) echo "--mode echo --conns 4 --inflight 1 --size 1048576 --binary $t" ;;
    hs) echo "--mode handshake --conns 16 $t" ;;
  esac
}
# The group only matters to the handshake: the echo rows run plain, the
# default offer (X25519 first) and P-256 once each as a check.
row_servers() {
  case $1 in
    hs) echo "$ALL" ;;
    *) echo "plain ec-x25519 ec-p256${DUPLEX_BEFORE:+ before}" ;;
  esac
}

run_one() { # ROW SERVER REP
  local row=$1 srv=$2 rep=$3 pin=() tls=() line rc
  [ "$row" = hs ] && pin=(taskset -c "$CPU")
  if ! start_server "$srv" "${pin[@]}"; then
    echo "row=$row server=$srv rep=$rep failed=start" >>"$RESULTS"
    return
  fi
  case $srv in
    plain) ;;
    *-p256) tls=(--tls --tls-groups P-256) ;;
    *) tls=(--tls --tls-groups X25519) ;;
  esac
  # shellcheck disable=SC2046 # row_args is meant to split
  line=$(timeout 120 "${pin[@]}" "$WSBENCH" --port "$(port_of "$srv")" --pid "$SPID" "${tls[@]}" \
    $(row_args "$row") 2>>"$OUT/wsbench.log")
  rc=$?
  record_run "$row" "$srv" "$rep" "$rc" "$line"
}

begin_run "duplex TLS bench: $(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -sr), $(nproc) CPUs shared by clients and servers" \
  "build: $BUILD ($BTYPE); OpenSSL $(openssl version 2>/dev/null | cut -d' ' -f2)" \
  "$REPS rep(s) of ${SECS}s after ${WARM}s warm-up; handshakes on CPU $CPU (client and server)" \
  "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
for rep in $(seq "$REPS"); do
  for row in ${TLS_ROWS:-echo1 echo16 big hs}; do
    for srv in $(row_servers "$row"); do run_one "$row" "$srv" "$rep"; done
  done
done
end_run
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/header.txt"
echo

awk "$AWK_COMMON"'
{
  parse()
  if (failed != "") { fail[row, srv] = 1; delete f; next }
  rate = ("msgs_per_s" in f) ? f["msgs_per_s"] : f["handshakes_per_s"]
  n = ("msgs" in f) ? f["msgs"] : f["handshakes"]
  f["rate"] = rate
  if (row == "big") f["rate"] = f["mb_per_s"]
  if (n > 0 && f["server_cpu"] != "") f["us"] = f["server_cpu"] * f["seconds"] * 1e6 / n
  # per MB: CPU-seconds per second / MB per second, in ms
  if (row == "big" && f["mb_per_s"] > 0) f["us"] = f["server_cpu"] / f["mb_per_s"] * 1e3
  for (k in f) { key = row SUBSEP srv SUBSEP k; val[key, ++cnt[key]] = f[k] + 0; byrep[key, f["rep"]] = f[k] + 0 }
  if (f["rep"] > nrep) nrep = f["rep"]
  seen[row, srv] = 1
  delete f
}
function med(row, srv, fig,   m) { m = median(row SUBSEP srv SUBSEP fig); return m == "" ? "-" : m }
function show(title, row, unit, cpuunit,   i, s, n, list) {
  if (!((row, "plain") in seen) && !((row, "plain") in fail)) return # not run (TLS_ROWS)
  printf "\n%s\n%-12s %12s %9s %16s %9s %10s %10s %10s\n", title, "server", unit, "vs plain", cpuunit, "vs plain", "p50 us", "server CPU", "client CPU"
  n = split("plain ec-x25519 ec-p256 rsa-x25519 rsa-p256 before", list, " ")
  for (i = 1; i <= n; i++) {
    s = list[i]
    if (!((row, s) in seen)) { if ((row, s) in fail) printf "%-12s FAIL\n", s; continue }
    printf "%-12s %12.0f %9s %16.2f %9s %10.0f %10.2f %10.2f\n", s, med(row, s, "rate"), rep_ratio(row, s, "plain", "rate"),
      med(row, s, "us"), rep_ratio(row, s, "plain", "us"), med(row, s, "p50_us"), med(row, s, "server_cpu"), med(row, s, "client_cpu")
  }
}
END {
  show("echo 20 B, 200 conns, 1 in flight", "echo1", "msgs/s", "server us/msg")
  show("echo 20 B, 200 conns, 16 in flight", "echo16", "msgs/s", "server us/msg")
  show("echo 1 MiB binary, 4 conns", "big", "MB/s", "server ms/MB")
  show("handshake + close, 16 concurrent, one CPU", "hs", "handshakes/s", "server us/hs")
  print ""
  print "vs plain: the median over reps of the ratio to plain in the same rep (above 1 is better for"
  print "rates, worse for CPU). ec/rsa: the server certificate (ECDSA P-256, RSA 2048); x25519/p256:"
  print "the only group the client offers. MB = 10^6 bytes of echoed payload."
}' "$RESULTS" | tee "$OUT/table.txt"
