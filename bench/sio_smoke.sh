#!/bin/sh
# bench/sio_smoke.sh — the Socket.IO bench tools still work (ctest
# bench/sio_smoke, in builds with DX_BENCH and BUILD_TESTING): sio_server
# on a free loopback port, and sio_load against it in every mode, briefly
# and with few clients. Checks what was exchanged (sio_load checks every
# reply byte for byte and exits 1 on any error) and that the server stops
# cleanly on SIGTERM (under ASan: no leak, no error), never a rate.
#
# usage: bench/sio_smoke.sh BENCH_DIR   (where sio_server and sio_load are)
set -u
dir=${1:?usage: sio_smoke.sh BENCH_DIR}
tmp=$(mktemp -d) || exit 1
spid=
cleanup() {
  [ -n "$spid" ] && kill "$spid" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "sio_smoke: $*" >&2; exit 1; }

"$dir/sio_server" 0 127.0.0.1 >"$tmp/server.out" 2>"$tmp/server.err" &
spid=$!
port=
for _ in $(seq 200); do
  port=$(sed -n 's/^listening on //p' "$tmp/server.out")
  [ -n "$port" ] && break
  kill -0 "$spid" 2>/dev/null || break
  sleep 0.05
done
[ -n "$port" ] || fail "sio_server did not start: $(cat "$tmp/server.err")"

# Runs sio_load with ARGS; its line must hold every KEY (and errors=0).
run() { # NAME "ARGS" KEY...
  name=$1 args=$2
  shift 2
  # shellcheck disable=SC2086 # args is meant to split
  line=$("$dir/sio_load" --port "$port" --pid "$spid" $args 2>"$tmp/load.err") ||
    fail "$name: sio_load failed: $(cat "$tmp/load.err")"
  for k in "$@" errors=0; do
    case " $line " in *" $k"*) ;; *) fail "$name: no '$k' in: $line" ;; esac
  done
  echo "ok $name: $line"
}

w="--seconds 0.2 --warmup 0"
run "echo websocket" "--mode echo --conns 5 --inflight 3 $w" transport=websocket events_per_s= server_ns_per_event=
run "echo polling" "--mode echo --transport polling --conns 5 --inflight 3 $w" transport=polling events_per_s=
run "fanout" "--mode fanout --conns 20 --inflight 2 $w" deliveries_per_s= server_ns_per_delivery=
run "idle" "--mode idle --conns 20 --settle 0.1" conns=20 bytes_per_conn=

kill "$spid"
wait "$spid"
rc=$?
spid=
[ "$rc" -eq 0 ] || fail "sio_server exited with $rc on SIGTERM: $(cat "$tmp/server.err")"
echo "ok sio_server stopped cleanly"
