#!/usr/bin/env bash
# Source-line coverage that each fuzz target's kept corpus reaches.
#   fuzz/coverage.sh [TARGET...]   default: every fuzz/fuzz_<name>.c
# Builds the replay_<name> programs (tests/CMakeLists.txt: the target's
# LLVMFuzzerTestOneInput driven by fuzz/replay_main.c, no libFuzzer) in
# build-cov/ with clang source-based coverage, replays fuzz/corpus/<name>/
# through each, and prints llvm-cov's per-file table for src/proto/, then
# the line coverage of the files the target reaches. Needs clang, the
# llvm-profdata/llvm-cov of the same version (Debian: llvm-<ver>) and, as
# the replay programs are built with the tests, cmocka (libcmocka-dev).
# The profiles and the summary stay in build-cov/coverage/.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
build="build-cov"
out=$build/coverage

# llvm-profdata and llvm-cov must read what this clang writes.
ver=$(clang --version | sed -n 's/.*clang version \([0-9][0-9]*\).*/\1/p' | head -1)
tool() {
  if command -v "$1-$ver" >/dev/null; then echo "$1-$ver"
  elif command -v "$1" >/dev/null; then echo "$1"
  else echo "fuzz/coverage.sh: $1 not found (Debian: apt-get install llvm-$ver)" >&2; exit 2
  fi
}
profdata=$(tool llvm-profdata)
cov=$(tool llvm-cov)

targets=("$@")
if (( ${#targets[@]} == 0 )); then
  for src in fuzz/fuzz_*.c; do
    name=$(basename "$src" .c)
    targets+=("${name#fuzz_}")
  done
fi

flags="-fprofile-instr-generate -fcoverage-mapping"
cmake -S . -B "$build" -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug \
  -DCMAKE_C_FLAGS="$flags" -DCMAKE_EXE_LINKER_FLAGS="$flags" \
  -DBUILD_TESTING=ON -DDX_BENCH=OFF -DDX_FUZZ=OFF >/dev/null
cmake --build "$build" -j2 --target "${targets[@]/#/replay_}"

rm -rf "$out"
mkdir -p "$out"
for t in "${targets[@]}"; do
  echo "== fuzz_$t: fuzz/corpus/$t"
  if ! LLVM_PROFILE_FILE="$out/$t.profraw" "$build/tests/replay_$t" "fuzz/corpus/$t" \
       2>"$out/$t.log"; then
    tail -5 "$out/$t.log" >&2   # the input that broke an invariant
    exit 1
  fi
  "$profdata" merge -sparse "$out/$t.profraw" -o "$out/$t.profdata"
  # Only the src/proto/ files linked into the program are listed, named
  # from src/proto/ on (llvm-cov drops their common prefix, or none).
  "$cov" report "$build/tests/replay_$t" -instr-profile="$out/$t.profdata" \
    src/proto/*.c | sed "s|$root/src/proto/||" | tee "$out/$t.txt"
  # Filename Regions Missed Cover Functions Missed Executed Lines Missed
  # Cover ...: lines are columns 8-10; a file with no executed line is not
  # one the target reaches.
  awk -v t="$t" '$1 ~ /\.c$/ && $8 > $9 { printf "%s src/proto/%s %d/%d %s\n", t, $1, $8-$9, $8, $10 }' \
    "$out/$t.txt" >> "$out/summary.txt"
done
echo "== line coverage (target, file, lines hit/total, %)"
column -t "$out/summary.txt"
