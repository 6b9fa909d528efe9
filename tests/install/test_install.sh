#!/usr/bin/env bash
# Installs the build into a scratch prefix and compiles the examples against
# it with pkg-config, statically and dynamically: what a user of the
# installed library does.
set -euo pipefail
build=${1:?usage: test_install.sh BUILD_DIR SOURCE_DIR}
src=${2:?usage: test_install.sh BUILD_DIR SOURCE_DIR}
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
cmake --install "$build" --prefix "$prefix" >/dev/null
libdir=$(ls -d "$prefix"/lib*/ | head -n1)
export PKG_CONFIG_PATH="$libdir/pkgconfig"
test -f "$prefix/include/duplex.h" || { echo "FAIL: duplex.h not installed"; exit 1; }
pkg-config --exists duplex || { echo "FAIL: duplex.pc not found"; exit 1; }
for ex in echo_server client; do
  ${CC:-cc} ${CFLAGS:-} -o "$prefix/$ex" "$src/examples/$ex.c" $(pkg-config --cflags --libs duplex)
  LD_LIBRARY_PATH="$libdir" "$prefix/$ex" --help >/dev/null 2>&1 || true
  ${CC:-cc} ${CFLAGS:-} -o "$prefix/$ex-static" "$src/examples/$ex.c" $(pkg-config --cflags duplex) \
    "$libdir/libduplex.a" $(pkg-config --libs-only-l --static duplex | sed 's/-lduplex//')
done
# The dynamically linked client talks to the statically linked server.
port=$((20000 + RANDOM % 20000))
"$prefix/echo_server-static" "$port" >/dev/null &
server=$!
trap 'kill $server 2>/dev/null; rm -rf "$prefix"' EXIT
for _ in $(seq 50); do
  LD_LIBRARY_PATH="$libdir" "$prefix/client" "ws://127.0.0.1:$port/" >"$prefix/out" 2>&1 && break
  sleep 0.1
done
grep -qx hello "$prefix/out" || { echo "FAIL: installed client got: $(cat "$prefix/out")"; exit 1; }
echo "PASS: installed headers, pkg-config file, static and shared libraries work"
