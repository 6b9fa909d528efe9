#!/usr/bin/env bash
# Installs what building and testing duplex needs and is not there yet
# (Debian packages; the npm packages of the interop tests). Safe to re-run:
# it does nothing when everything is present.
set -euo pipefail

want=(build-essential cmake pkg-config libssl-dev zlib1g-dev libcmocka-dev
      python3 python3-websockets clang libclang-rt-14-dev libwebsockets-dev
      nodejs npm chromium)
missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
# Node may come from elsewhere than Debian's package; accept any node+npm.
if command -v node >/dev/null && command -v npm >/dev/null; then
  missing=("${missing[@]/nodejs}"); missing=("${missing[@]/npm}")
fi
missing=($(printf '%s\n' "${missing[@]}" | grep -v '^$' || true))
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}" >&2
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The Node peers (ws) live in tests/interop.
if [ -f tests/interop/package.json ] && [ ! -d tests/interop/node_modules/ws ]; then
  (cd tests/interop && npm ci --no-audit --no-fund --silent)
fi
# The browser suite drives Debian's chromium (above) with playwright-core;
# it must never download a browser of its own.
if [ -f tests/browser/package.json ] && [ ! -d tests/browser/node_modules/playwright-core ]; then
  (cd tests/browser && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --silent)
fi
