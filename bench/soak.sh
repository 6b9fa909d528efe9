#!/usr/bin/env bash
# bench/soak.sh — churn soak of `duplex serve`: N connections (bench/soak)
# with heartbeats, ending at random by clean close, TCP reset, TCP close,
# silence (the server's ping timeout), protocol error or a cut mid-handshake,
# and reconnecting, for T seconds; H of the N are hostile instead (a ping
# flooder that never reads, a peer that closes while its output is blocked,
# a half-open peer, a slow-loris handshake: see bench/SOAK.md). Then checks
# that no connection was lost track of and that the server's memory stayed
# flat:
#   - the server logged as many "open:" as "close:" lines, as many opens as
#     the client made (per request path: one per hostile plan) and, for each
#     why=, exactly the ends the client caused;
#   - the client saw no error (echoes byte for byte and in order, close
#     codes, pongs, silent peers cut in time, every hostile connection ended
#     by the server within its plan's bound) and closed every descriptor;
#   - the server holds as many descriptors after the drain as before;
#   - the server's VmRSS, sampled every S seconds during the churn: the mean
#     of the last quarter of the samples against the first quarter.
# Not part of the tests or CI (see bench/README.md). Exit 0 when every check
# passes, 1 otherwise.
#
# usage: bench/soak.sh [--seconds T | --minutes M] [--conns N] [--hostile H]
#                      [--sample S] [--port P] [--max-growth-kib K] [BUILD_DIR]
#   defaults: 60 s, 200 connections of which 16 hostile, a sample every 3 s,
#   port 18590 (or $SOAK_PORT), growth allowed 1024 KiB plus 1024 per flood
#   slot (a flooder holds its 1 MiB pause mark of pongs while it lives),
#   BUILD_DIR build in the repository
set -u

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ME=soak.sh
. "$ROOT/bench/lib.sh"
BUILD=$ROOT/build
SECS=60
CONNS=200
HOSTILE=16
SAMPLE=3
PORT=${SOAK_PORT:-18590}
MAX_GROWTH_KIB=
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) shift; SECS=${1:?--seconds needs a value} ;;
    --minutes) shift; SECS=$(( ${1:?--minutes needs a value} * 60 )) ;;
    --conns) shift; CONNS=${1:?--conns needs a value} ;;
    --hostile) shift; HOSTILE=${1:?--hostile needs a value} ;;
    --sample) shift; SAMPLE=${1:?--sample needs a value} ;;
    --port) shift; PORT=${1:?--port needs a value} ;;
    --max-growth-kib) shift; MAX_GROWTH_KIB=${1:?--max-growth-kib needs a value} ;;
    -h|--help) sed -n '2,27p' "$0"; exit 0 ;;
    -*) echo "soak.sh: unknown option $1" >&2; exit 2 ;;
    *) BUILD=$1 ;;
  esac
  shift
done

# Each flood slot holds about 1 MiB (the server's pause mark) of pongs
# while it lives, so samples taken with more or fewer flooders alive differ
# by that much; a leak shows as growth over the second half as well.
: "${MAX_GROWTH_KIB:=$(( 1024 + 1024 * ((HOSTILE + 3) / 4) ))}"

# ---------------------------------------------------------------- build
bench_build_dir
ensure soak "$BUILD/bench/soak" && ensure duplex "$BUILD/duplex" ||
  die "soak or duplex did not build: see $BUILD/bench-build.log"
DUPLEX=$BUILD/duplex
SOAK=$BUILD/bench/soak

# Both sides hold one descriptor per connection (the server inherits this).
raise_nofile

listening "$PORT" && die "port $PORT is already in use (--port)"

OUT=$BUILD/soak-results/$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT" || die "cannot create $OUT"

# -------------------------------------------------------------- server
"$DUPLEX" serve --threads 1 --ping-interval 1 --ping-timeout 1 \
  --host 127.0.0.1 --port "$PORT" 2>"$OUT/server.log" &
SPID=$!
CPID=
cleanup() {
  [ -n "$CPID" ] && kill "$CPID" 2>/dev/null
  kill "$SPID" 2>/dev/null
  wait 2>/dev/null
}
trap 'cleanup; exit 130' INT TERM
for _ in $(seq 100); do
  listening "$PORT" && break
  kill -0 "$SPID" 2>/dev/null || break
  sleep 0.05
done
listening "$PORT" || { cleanup; die "the server did not start (see $OUT/server.log)"; }

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$SPID/status" 2>/dev/null; }
nfds() { ls "/proc/$SPID/fd" 2>/dev/null | wc -l; }
count() { grep -c "^$1" "$OUT/server.log"; }
echo "soak: $CONNS connections ($HOSTILE hostile) for ${SECS}s against duplex serve (pid $SPID, port $PORT); results in $OUT"
RSS_START=$(rss_kib)
FDS_START=$(nfds)
echo "server RSS before any connection: $RSS_START KiB ($FDS_START descriptors)"

# -------------------------------------------------------------- client
"$SOAK" --port "$PORT" --conns "$CONNS" --seconds "$SECS" --ping 1000 1000 --hostile "$HOSTILE" \
  >"$OUT/client.txt" 2>"$OUT/client.log" &
CPID=$!

# VmRSS every SAMPLE seconds while the churn runs (not during the final
# drain), with the connections the server holds at that moment and the
# connections it has opened so far.
: >"$OUT/rss.txt"
START=$(date +%s.%N)
n=1
while kill -0 "$CPID" 2>/dev/null; do
  next=$(awk -v s="$START" -v n="$n" -v d="$SAMPLE" 'BEGIN { printf "%.3f", s + n * d }')
  now=$(date +%s.%N)
  wait_s=$(awk -v a="$next" -v b="$now" 'BEGIN { d = a - b; printf "%.3f", (d > 0 ? d : 0) }')
  sleep "$wait_s"
  kill -0 "$CPID" 2>/dev/null || break
  t=$(awk -v s="$START" -v n="$n" -v d="$SAMPLE" 'BEGIN { printf "%.0f", n * d }')
  [ "$t" -ge "$SECS" ] && { n=$((n + 1)); continue; }
  kill -0 "$SPID" 2>/dev/null || break
  opened=$(count open:)
  echo "$t $(rss_kib) $((opened - $(count close:))) $opened" >>"$OUT/rss.txt"
  n=$((n + 1))
done
wait "$CPID"
CRC=$?
CPID=

# Let the server log the last closes (a silent peer takes up to 2 s).
for _ in $(seq 50); do
  [ "$(count open:)" = "$(count close:)" ] && break
  sleep 0.1
done
RSS_END=$(rss_kib)
FDS_END=$(nfds)
ALIVE=1
kill -0 "$SPID" 2>/dev/null || ALIVE=0
kill -TERM "$SPID" 2>/dev/null
wait "$SPID" 2>/dev/null
SRC=$?

# ------------------------------------------------------------- report
CLIENT=$(tail -1 "$OUT/client.txt")
field() { echo "$CLIENT" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
why() { grep -c "^close:.*why=$1\$" "$OUT/server.log"; }
opens_path() { grep -c "^open: path=\"$1\"" "$OUT/server.log"; }
closes_reason() { grep -c "^close: code=[0-9]* reason=\"$1\" why=$2\$" "$OUT/server.log"; }
S_OPEN=$(count open:)
S_CLOSE=$(count close:)
FAIL=0
check() { # LABEL GOT WANT
  if [ "$2" = "$3" ]; then printf '  ok    %-44s %s\n' "$1" "$2"
  else printf '  FAIL  %-44s %s, expected %s\n' "$1" "$2" "$3"; FAIL=1; fi
}

echo
echo "client: $CLIENT"
echo "server close lines by why=:"
sed -n 's/^close:.*why=//p' "$OUT/server.log" | sort | uniq -c | sed 's/^/  /'
echo
echo "server VmRSS (KiB) every ${SAMPLE}s, with the connections it held and had opened so far:"
awk '{ printf "  t=%4ss  %7d KiB  %5d open  %7d opened\n", $1, $2, $3, $4 }' "$OUT/rss.txt"
echo "  after the drain (no connections): $RSS_END KiB"
echo "  before any connection: $RSS_START KiB; max during the churn: $(awk 'BEGIN { m = 0 } $2 > m { m = $2 } END { print m }' "$OUT/rss.txt") KiB"
echo
echo "hostile connections (lifetimes in ms: flood, halfopen from the upgrade, blocked from"
echo "its close frame, slowloris from its first byte; ended as seen by the client):"
for p in flood blocked halfopen slowloris; do
  printf '  %-9s %6s ended, %6s opened; rst %s, eof %s, orphan %s; max %s ms, mean %s ms; %s KiB sent\n' \
    "$p" "$(field "$p")" "$(field "${p}_opens")" "$(field "${p}_rst")" "$(field "${p}_eof")" \
    "$(field "${p}_orphan")" "$(field "${p}_max_ms")" "$(field "${p}_mean_ms")" "$(field "${p}_kib")"
done
echo "  blocked: the server held $(field blocked_userq_kib_min)-$(field blocked_userq_kib_max) KiB of" \
  "echoes in its own queue when the close frame came; $(field blocked_early) ended before it"
read -r Q1 Q4 NS HALF < <(awk '{ v[NR] = $2 } END {
  q = int(NR / 4); if (q < 1) q = 1
  for (i = 1; i <= q; i++) a += v[i]
  for (i = NR - q + 1; i <= NR; i++) b += v[i]
  printf "%.0f %.0f %d %d\n", NR ? a / q : 0, NR ? b / q : 0, NR, NR ? v[NR] - v[int(NR / 2) + 1] : 0 }' "$OUT/rss.txt")
GROWTH=$((Q4 - Q1))
echo "  mean of the first quarter: $Q1 KiB; of the last quarter: $Q4 KiB;" \
  "growth $GROWTH KiB ($(awk -v a="$Q1" -v g="$GROWTH" 'BEGIN { printf "%+.1f", a ? 100 * g / a : 0 }')%)" \
  "over $(field opens) connections"
# glibc settles over the first minutes (freed chunks of many sizes get
# reused); a leak keeps climbing through the second half as well.
echo "  growth over the second half of the samples: $HALF KiB"
echo
echo "checks:"
check "client exit status" "$CRC" 0
check "client errors" "$(field errors)" 0
check "client opens = client closes" "$(field closes)" "$(field opens)"
check "server open lines = close lines" "$S_CLOSE" "$S_OPEN"
check "server opens = client opens" "$S_OPEN" "$(field opens)"
check "server closes = client closes" "$S_CLOSE" "$(field closes)"
S_PT=$(why 'ping timeout')
S_SLOW=$(closes_reason 'slow consumer: output buffer limit reached' 'closed locally')
S_BLOCKED=$(closes_reason blocked 'closed by peer')
check "open lines path=/soak = client random opens" "$(opens_path /soak)" \
  "$(( $(field opens) - $(field flood_opens) - $(field blocked_opens) - $(field halfopen_opens) ))"
for p in flood blocked halfopen slowloris; do
  check "open lines path=/soak/$p = client $p opens" "$(opens_path "/soak/$p")" "$(field "${p}_opens")"
done
check "client slowloris opens (must be 0)" "$(field slowloris_opens)" 0
check "why=closed by peer, reason bye = client clean" "$(closes_reason bye 'closed by peer')" "$(field expect_peer)"
check "why=closed by peer = clean + blocked (\"blocked\")" "$(why 'closed by peer')" \
  "$(( $(field expect_peer) + S_BLOCKED ))"
check "why=protocol error = client proto" "$(why 'protocol error')" "$(field expect_protocol_error)"
# A flood ends by ping timeout or as a slow consumer; a blocked peer whose
# close frame the server never read, the same way.
check "ping timeout + slow consumer = silent+halfopen+flood+blocked-\"blocked\"" \
  "$(( S_PT + S_SLOW ))" "$(( $(field expect_hostile_timeout) + $(field blocked) - S_BLOCKED ))"
check "why=ping timeout >= silent + halfopen" "$([ "$S_PT" -ge "$(field expect_ping_timeout)" ] && echo yes || echo "no ($S_PT)")" yes
check "why=closed locally = slow consumer closes" "$(why 'closed locally')" "$S_SLOW"
check "why=transport close/error = client rst+fin" \
  "$(( $(why 'transport close') + $(why 'transport error') ))" "$(field expect_transport)"
check "no other why=" "$(( S_CLOSE - $(why 'closed by peer') - $(why 'protocol error') - S_PT - $(why 'closed locally') - $(why 'transport close') - $(why 'transport error') ))" 0
check "client descriptors left open" "$(field fds_left)" 0
check "server descriptors after the drain = before" "$FDS_END" "$FDS_START"
check "server alive until the end" "$ALIVE" 1
check "server exit status after SIGTERM" "$SRC" 0
check "RSS samples" "$([ "$NS" -ge 4 ] && echo ">=4" || echo "$NS")" ">=4"
check "RSS growth <= $MAX_GROWTH_KIB KiB" "$([ "$GROWTH" -le "$MAX_GROWTH_KIB" ] && echo yes || echo "no ($GROWTH)")" yes
echo
if [ "$FAIL" = 0 ]; then echo "soak: PASS"; else echo "soak: FAIL (logs in $OUT)"; fi
exit "$FAIL"
