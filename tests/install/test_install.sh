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
for h in duplex.h duplex_codes.h; do
  test -f "$prefix/include/$h" || { echo "FAIL: $h not installed"; exit 1; }
done
pkg-config --exists duplex || { echo "FAIL: duplex.pc not found"; exit 1; }
for ex in echo_server client; do
  ${CC:-cc} ${CFLAGS:-} -o "$prefix/$ex" "$src/examples/$ex.c" $(pkg-config --cflags --libs duplex)
  LD_LIBRARY_PATH="$libdir" "$prefix/$ex" --help >/dev/null 2>&1 || true
  ${CC:-cc} ${CFLAGS:-} -o "$prefix/$ex-static" "$src/examples/$ex.c" $(pkg-config --cflags duplex) \
    "$libdir/libduplex.a" $(pkg-config --libs-only-l --static duplex | sed 's/-lduplex//')
done
# The dynamically linked client talks to the statically linked server, which
# picks a free port (0) and prints its URL once listening.
"$prefix/echo_server-static" 0 >"$prefix/server.out" &
server=$!
trap 'kill $server 2>/dev/null; rm -rf "$prefix"' EXIT
url=
for _ in $(seq 100); do
  url=$(grep -oE 'ws://[^ ]+' "$prefix/server.out" || true)
  [ -n "$url" ] && break
  sleep 0.1
done
[ -n "$url" ] || { echo "FAIL: the installed echo server did not start"; exit 1; }
LD_LIBRARY_PATH="$libdir" "$prefix/client" "$url" >"$prefix/out" 2>&1 || true
grep -qx hello "$prefix/out" || { echo "FAIL: installed client got: $(cat "$prefix/out")"; exit 1; }
echo "PASS: installed headers, pkg-config file, static and shared libraries work"
