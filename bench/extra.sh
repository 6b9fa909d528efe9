#!/usr/bin/env bash
# bench/extra.sh — the figures run.sh does not cover, each as a ratio
# against a reference measured in the same invocation, interleaved:
#   deflate  16 KiB JSON-like text echo with permessage-deflate:
#            `duplex serve` against a Node `ws` echo server (bench/ws_echo.js),
#            and the same row without compression
#   tls      `duplex serve --tls-cert/--tls-key` against plain `duplex serve`
#   memory   server RSS per idle connection after one compressed message each
#            way: context takeover, no context takeover, no deflate
#   threads  `duplex serve --threads 2` against `--threads 1`, driven by one
#            wsbench and by two in parallel
# Every server is started fresh for every run and stopped after it. Prints
# the medians over --reps runs and the ratios; every line wsbench printed
# is kept in BUILD/bench-results/extra-<time>/results.txt. See
# bench/README.md.
#
# usage: bench/extra.sh [--quick] [--reps N] [BUILD_DIR]  (default build-rel in the repository)
# env:   BENCH_PORT_BASE (default 18490: duplex, +1 node, +2 duplex-tls, +3 duplex-t2)
#        NODE (default node)
set -u

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ME=extra.sh
. "$ROOT/bench/lib.sh"
BUILD=$ROOT/build-rel
parse_rep_args 20 4000 "$@"
PORT_BASE=${BENCH_PORT_BASE:-18490}
NODE=${NODE:-node}

# ---------------------------------------------------------------- build
build_wsbench_duplex
HAVE_NODE=1
if ! "$NODE" -e "require('$ROOT/tests/interop/node_modules/ws')" 2>/dev/null; then
  HAVE_NODE=0
  warn "node or tests/interop/node_modules/ws missing: no ws column"
fi

# ------------------------------------------------------- limits and ports
raise_nofile
if [ "$NOFILE" != unlimited ] && [ "$IDLE_N" -gt $((NOFILE - 200)) ]; then
  IDLE_N=$((NOFILE - 200))
  warn "ulimit -n is $NOFILE: memory rows use $IDLE_N connections"
fi

port_of() {
  case $1 in
    duplex) echo "$PORT_BASE" ;; node) echo $((PORT_BASE + 1)) ;;
    duplex-tls) echo $((PORT_BASE + 2)) ;; duplex-t2) echo $((PORT_BASE + 3)) ;;
  esac
}
start_results "extra-" duplex node duplex-tls duplex-t2
sh "$ROOT/tests/certs/make.sh" "$OUT/certs" >"$OUT/certs.log" 2>&1 ||
  die "tests/certs/make.sh failed: see $OUT/certs.log"

# -------------------------------------------------------------- servers
start_server() { # NAME
  local port; port=$(port_of "$1")
  local common=(--quiet --host 127.0.0.1 --port "$port")
  case $1 in
    duplex) "$DUPLEX" serve --threads 1 "${common[@]}" >>"$OUT/duplex.log" 2>&1 & ;;
    duplex-t2) "$DUPLEX" serve --threads 2 "${common[@]}" >>"$OUT/duplex-t2.log" 2>&1 & ;;
    duplex-tls) "$DUPLEX" serve --threads 1 "${common[@]}" --tls-cert "$OUT/certs/server.pem" \
                  --tls-key "$OUT/certs/server.key" >>"$OUT/duplex-tls.log" 2>&1 & ;;
    node) "$NODE" "$ROOT/bench/ws_echo.js" "$port" 127.0.0.1 >>"$OUT/node.log" 2>&1 & ;;
  esac
  SPID=$!
  wait_listening "$1" "$port" "$OUT/$1.log" 200
}
trap 'stop_server; exit 130' INT TERM

# ----------------------------------------------------------------- rows
# ROW -> servers it runs against (the first is the reference... see table)
row_servers() {
  case $1 in
    json-z|json) [ "$HAVE_NODE" = 1 ] && echo "duplex node" || echo duplex ;;
    tls1|tlsbig) echo "duplex duplex-tls" ;;
    echo16|echo16x2|hs|hsx2) echo "duplex duplex-t2" ;;
    idle-z|idle-znt|idle-none) echo duplex ;;
  esac
}
# ROW SERVER -> wsbench arguments (for one client; x2 rows run two of them)
row_args() {
  local tls=""
  [ "$2" = duplex-tls ] && tls=--tls
  local t="--seconds $SECS --warmup $WARM"
  local idle="--mode idle --conns $IDLE_N --echo-once --size 4096 --json --settle 1"
  case $1 in
    json-z) echo "--mode echo --conns 32 --inflight 1 --size 16384 --json --deflate --deflate-level 1 $t" ;;
    json) echo "--mode echo --conns 32 --inflight 1 --size 16384 --json $t" ;;
    tls1) echo "--mode echo --conns 200 --inflight 1 --size 20 $tls $t" ;;
    tlsbig) echo "--mode echo --conns 4 --inflight 1 --size 1048576 --binary $tls $t" ;;
    echo16) echo "--mode echo --conns 200 --inflight 16 --size 20 $t" ;;
    echo16x2) echo "--mode echo --conns 100 --inflight 16 --size 20 $t" ;;
    hs) echo "--mode handshake --conns 16 $t" ;;
    hsx2) echo "--mode handshake --conns 8 $t" ;;
    idle-z) echo "$idle --deflate" ;;
    idle-znt) echo "$idle --deflate-no-takeover" ;;
    idle-none) echo "$idle" ;;
  esac
}

# Two wsbench lines -> one: rates, counts and client CPU add up; server CPU
# (the same process, seen over almost the same window) is averaged;
# latencies take the worse of the two.
combine() {
  awk '{ for (i = 1; i <= NF; i++) { eq = index($i, "="); k = substr($i, 1, eq - 1); v = substr($i, eq + 1)
         if (!(k in first)) { order[++n] = k; first[k] = v }
         if (k ~ /_per_s$|^msgs$|^handshakes$|^client_cpu$|^errors$|^conns$|^mb_per_s$/) sum[k] += v
         else if (k == "server_cpu") { sum[k] += v; cnt[k]++ }
         else if (k ~ /_us$/) { if (v + 0 > mx[k] + 0) mx[k] = v }
       } }
       END { for (i = 1; i <= n; i++) { k = order[i]
               if (k == "server_cpu") v = sprintf("%.2f", sum[k] / cnt[k])
               else if (k in sum) v = (k ~ /cpu|mb_per_s/) ? sprintf("%.2f", sum[k]) : sprintf("%.0f", sum[k])
               else if (k in mx) v = mx[k]
               else v = first[k]
               printf "%s%s=%s", (i > 1 ? " " : ""), k, v }
             printf " clients=%d\n", NR }'
}

run_one() { # ROW SERVER REP
  local row=$1 srv=$2 rep=$3 line rc
  if ! start_server "$srv"; then
    echo "row=$row server=$srv rep=$rep failed=start" >>"$RESULTS"
    return
  fi
  local args; args=$(row_args "$row" "$srv")
  case $row in
    *x2)
      local a=$OUT/c1.txt b=$OUT/c2.txt pa pb ra rb
      # shellcheck disable=SC2086 # args is meant to split
      timeout 120 "$WSBENCH" --port "$(port_of "$srv")" --pid "$SPID" $args >"$a" 2>>"$OUT/wsbench.log" & pa=$!
      # shellcheck disable=SC2086
      timeout 120 "$WSBENCH" --port "$(port_of "$srv")" --pid "$SPID" $args >"$b" 2>>"$OUT/wsbench.log" & pb=$!
      wait "$pa"; ra=$?; wait "$pb"; rb=$?
      rc=$((ra | rb))
      line=""
      [ $rc -eq 0 ] && [ -s "$a" ] && [ -s "$b" ] && line=$(cat "$a" "$b" | combine)
      ;;
    *)
      # shellcheck disable=SC2086
      line=$(timeout 120 "$WSBENCH" --port "$(port_of "$srv")" --pid "$SPID" $args 2>>"$OUT/wsbench.log")
      rc=$?
      ;;
  esac
  record_run "$row" "$srv" "$rep" "$rc" "$line"
}

{
  echo "duplex extra bench: $(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -sr), $(nproc) CPUs shared by clients and servers"
  echo "build: $BUILD ($BTYPE); node $("$NODE" --version 2>/dev/null || echo n/a), its zlib $("$NODE" -p process.versions.zlib 2>/dev/null || echo n/a); system zlib $(pkg-config --modversion zlib 2>/dev/null || echo '?'), OpenSSL $(pkg-config --modversion openssl 2>/dev/null || echo '?')"
  echo "$REPS rep(s) of ${SECS}s after ${WARM}s warm-up; memory rows: $IDLE_N connections"
} | tee "$OUT/header.txt"
check_busy "before the run" | tee -a "$OUT/header.txt"

START=$(date +%s)
for rep in $(seq "$REPS"); do
  for row in json-z json tls1 tlsbig echo16 echo16x2 hs hsx2; do
    for srv in $(row_servers "$row"); do run_one "$row" "$srv" "$rep"; done
  done
done
for row in idle-z idle-znt idle-none; do run_one "$row" duplex 1; done
echo "ran in $(( $(date +%s) - START ))s; raw lines: $RESULTS"
check_busy "after the run" | tee -a "$OUT/header.txt"
echo

# ---------------------------------------------------------------- table
awk "$AWK_COMMON"'
function fmt(v) {
  if (v == "") return "-"
  if (v >= 100 || (v >= 10 && v == int(v))) return sprintf("%.0f", v)
  if (v < 1 && v > 0) return sprintf("%.3f", v)
  return sprintf("%.2f", v)
}
{
  parse()
  if (failed != "") { fail[row, srv] = 1; delete f; next }
  # how much work each CPU-second of the server bought
  rate = ("msgs_per_s" in f) ? f["msgs_per_s"] : f["handshakes_per_s"]
  if (rate != "" && f["server_cpu"] + 0 > 0) f["per_server_cpu"] = rate / f["server_cpu"]
  for (k in f) { key = row SUBSEP srv SUBSEP k; val[key, ++cnt[key]] = f[k] + 0; byrep[key, f["rep"]] = f[k] + 0 }
  if (f["rep"] > nrep) nrep = f["rep"]
  delete f
}
# min-max of the ratio a/b taken rep by rep (each rep ran a and b back to back)
function spread(row, fig, a, b,   r, x, y, q, lo, hi) {
  lo = ""; hi = ""
  for (r = 1; r <= nrep; r++) {
    x = (row SUBSEP a SUBSEP fig SUBSEP r); y = (row SUBSEP b SUBSEP fig SUBSEP r)
    if (!(x in byrep) || !(y in byrep) || byrep[y] == 0) continue
    q = byrep[x] / byrep[y]
    if (lo == "" || q < lo) lo = q
    if (hi == "" || q > hi) hi = q
  }
  return (lo == "" || nrep < 2) ? "" : sprintf("%.2f-%.2f", lo, hi)
}
function get(row, srv, fig) { return median(row SUBSEP srv SUBSEP fig) }
function cell(row, srv, v) { return v != "" ? fmt(v) : ((row, srv) in fail ? "FAIL" : "-") }
# One line comparing server a (ratio numerator) with server b.
function line(label, row, fig, name, a, b, showratio,   x, y) {
  x = get(row, a, fig); y = get(row, b, fig)
  printf "%-36s %-20s %12s %12s %9s %11s\n", label, name, cell(row, a, x), cell(row, b, y),
    showratio ? ratio(x, y) : "", showratio == 2 ? spread(row, fig, a, b) : ""
}
function block(label, row, a, b, rate, ratename) {
  line(label, row, rate, ratename, a, b, 2)
  if (rate == "msgs_per_s") line("", row, "mb_per_s", "MB/s", a, b, 1)
  line("", row, "p50_us", "p50 us", a, b, 1)
  line("", row, "p99_us", "p99 us", a, b, 1)
  line("", row, "server_cpu", "server CPU (cores)", a, b, 0)
  line("", row, "per_server_cpu", "per server CPU-s", a, b, 1)
  line("", row, "client_cpu", "client CPU (cores)", a, b, 0)
}
function head(title, a, b, r) {
  printf "\n%s\n%-36s %-20s %12s %12s %9s %11s\n", title, "row", "figure", a, b, r, "per rep"
}
END {
  head("1. permessage-deflate: duplex serve --threads 1 vs Node ws (perMessageDeflate)", "duplex", "node-ws", "dx/ws")
  block("16 KiB JSON, deflate, 32 conns x 1", "json-z", "duplex", "node", "msgs_per_s", "msgs/s")
  line("", "json-z", "rx_ratio", "echo wire/plain", "duplex", "node", 0)
  line("", "json-z", "tx_ratio", "client wire/plain", "duplex", "node", 0)
  block("16 KiB JSON, no deflate, 32 conns x 1", "json", "duplex", "node", "msgs_per_s", "msgs/s")

  head("2. TLS: duplex serve --tls-cert/--tls-key vs plain duplex serve", "tls", "plain", "tls/plain")
  block("echo 20 B, 200 conns, 1 in flight", "tls1", "duplex-tls", "duplex", "msgs_per_s", "msgs/s")
  block("echo 1 MiB binary, 4 conns", "tlsbig", "duplex-tls", "duplex", "msgs_per_s", "msgs/s")

  head("3. threads: duplex serve --threads 2 vs --threads 1", "threads 2", "threads 1", "t2/t1")
  block("echo 20 B, 200x16, one wsbench", "echo16", "duplex-t2", "duplex", "msgs_per_s", "msgs/s")
  block("echo 20 B, 2 wsbench x 100x16", "echo16x2", "duplex-t2", "duplex", "msgs_per_s", "msgs/s")
  block("handshakes, 16 concurrent, one", "hs", "duplex-t2", "duplex", "handshakes_per_s", "handshakes/s")
  block("handshakes, 2 wsbench x 8", "hsx2", "duplex-t2", "duplex", "handshakes_per_s", "handshakes/s")

  printf "\n4. memory per idle connection, duplex serve --threads 1, after one ~4 KiB JSON message each way\n"
  printf "%-36s %14s %14s %14s %12s\n", "variant", "marginal B/conn", "overall B/conn", "vs no deflate", "conns"
  n = split("idle-z|idle-znt|idle-none", rows, "|")
  label["idle-z"] = "deflate, context takeover"
  label["idle-znt"] = "deflate, no context takeover"
  label["idle-none"] = "no deflate (baseline)"
  base = get("idle-none", "duplex", "marginal_bytes_per_conn")
  for (i = 1; i <= n; i++) {
    r = rows[i]; m = get(r, "duplex", "marginal_bytes_per_conn")
    d = (m != "" && base != "") ? sprintf("%+.0f", m - base) : "-"
    printf "%-36s %14s %14s %14s %12s\n", label[r], cell(r, "duplex", m),
      cell(r, "duplex", get(r, "duplex", "bytes_per_conn")), d, cell(r, "duplex", get(r, "duplex", "conns"))
  }
  print ""
  print "Ratios: above 1 is better for msgs/s, MB/s and handshakes/s; below 1 is better for latency."
  print "MB = 10^6 bytes of echoed (uncompressed) payload. wire/plain = compressed payload bytes / plain."
  print "x2 rows: the sum of two wsbench processes run at once (client CPU summed, server CPU averaged)."
  print "per rep: lowest and highest ratio of the rate within one rep (the two servers ran back to back)."
  print "per server CPU-s: the rate divided by the server CPU (messages or handshakes per CPU-second)."
}' "$RESULTS" | tee "$OUT/table.txt"
