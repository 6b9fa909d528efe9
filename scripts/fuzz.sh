#!/usr/bin/env bash
# Builds the libFuzzer targets (build-fuzz: clang, ASan+UBSan) and runs each
# for a bounded time over a scratch copy of its seed corpus.
#   scripts/fuzz.sh [SECONDS]   SECONDS per target: default 20, at most 60
# Exits non-zero if a target crashes, leaks, times out or fails to build;
# the reproducer is left in fuzz/corpus-run/artifacts/.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
secs=${1:-20}
if ! [[ $secs =~ ^[0-9]+$ ]] || (( secs < 1 )); then
  echo "usage: $0 [SECONDS]" >&2
  exit 2
fi
(( secs > 60 )) && secs=60

build=$root/build-fuzz
cmake -S "$root" -B "$build" -DCMAKE_C_COMPILER=clang -DDX_FUZZ=ON \
  -DDX_SANITIZE=ON -DBUILD_TESTING=OFF -DDX_BENCH=OFF >/dev/null
# Every fuzz/fuzz_<name>.c is a target (see fuzz/CMakeLists.txt).
targets=()
for src in "$root"/fuzz/fuzz_*.c; do
  name=$(basename "$src" .c)
  targets+=("${name#fuzz_}")
done
cmake --build "$build" -j2 --target "${targets[@]/#/fuzz_}"

run=$root/fuzz/corpus-run          # git-ignored
art=$run/artifacts
rm -rf "$run"
mkdir -p "$art"

status=0
for t in "${targets[@]}"; do
  mkdir -p "$run/$t"
  if [[ -d $root/fuzz/corpus/$t ]]; then
    cp -r "$root/fuzz/corpus/$t/." "$run/$t"
  fi
  # A target's own dictionary (fuzz/<name>.dict) when it has one.
  dict=$root/fuzz/websocket.dict
  [[ -f $root/fuzz/$t.dict ]] && dict=$root/fuzz/$t.dict
  echo "== fuzz_$t: ${secs}s"
  # -rss_limit_mb and -max_len keep a run bounded on a small shared
  # machine; leaks are reported by LeakSanitizer (-detect_leaks=1).
  if ! ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
       UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
       "$build/fuzz/fuzz_$t" "$run/$t" \
         -dict="$dict" \
         -max_total_time="$secs" -timeout=10 -rss_limit_mb=1024 \
         -max_len=4096 -detect_leaks=1 -print_final_stats=1 \
         -artifact_prefix="$art/${t}-" 2>"$run/$t.log"; then
    echo "fuzz_$t FAILED; log: $run/$t.log" >&2
    grep -E "ERROR|runtime error|check failed|SUMMARY" "$run/$t.log" | head -20 >&2 || true
    ls "$art" >&2
    status=1
  else
    grep -E "stat::number_of_executed_units|stat::new_units_added" "$run/$t.log" || true
  fi
done
exit $status
