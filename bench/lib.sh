# bench/lib.sh — what the benchmark scripts share (sourced, not run): the
# build directory, the machine's load, loopback ports, starting and stopping
# one server at a time. The sourcing script sets ME (its name, for
# messages) and ROOT (the source tree) first.

die() { echo "$ME: $*" >&2; exit 1; }

# The options of run.sh and extra.sh: [--quick] [--reps N] [BUILD_DIR].
# Sets BUILD (when given; the caller sets its default first), REPS, SECS,
# WARM and IDLE_N (2000 when quick, else FULL_IDLE_N). --help prints
# lines 2..HELP_END of the script.
parse_rep_args() { # HELP_END FULL_IDLE_N ARG...
  local help_end=$1 full_idle=$2 quick=0
  shift 2
  REPS=
  while [ $# -gt 0 ]; do
    case "$1" in
      --quick) quick=1 ;;
      --reps) shift; REPS=${1:?--reps needs a number} ;;
      -h|--help) sed -n "2,${help_end}p" "$0"; exit 0 ;;
      -*) echo "$ME: unknown option $1" >&2; exit 2 ;;
      *) BUILD=$1 ;;
    esac
    shift
  done
  if [ "$quick" = 1 ]; then
    : "${REPS:=1}"; SECS=1; WARM=0.5; IDLE_N=2000
  else
    : "${REPS:=3}"; SECS=3; WARM=1; IDLE_N=$full_idle
  fi
}
warn() { echo "$ME: warning: $*" >&2; }

# Makes BUILD absolute, configures it (Release, with the benchmarks) when
# it has no CMake cache yet, and sets BTYPE to its build type, warning when
# figures from it would not be representative. Extra arguments go to cmake.
bench_build_dir() { # [CMAKE_ARG...]
  mkdir -p "$BUILD" || die "cannot create $BUILD"
  BUILD=$(cd "$BUILD" && pwd)
  if [ ! -f "$BUILD/CMakeCache.txt" ]; then
    echo "configuring $BUILD (Release)..."
    cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DDX_BENCH=ON "$@" \
      >"$BUILD/bench-configure.log" 2>&1 || die "cmake configure failed: see $BUILD/bench-configure.log"
  fi
  : >"$BUILD/bench-build.log"
  BTYPE=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$BUILD/CMakeCache.txt")
  case "$BTYPE" in Release|RelWithDebInfo|MinSizeRel) ;; *)
    warn "$BUILD is a '$BTYPE' build: figures are not representative" ;;
  esac
  if grep -qE '^DX_(SANITIZE|TSAN):BOOL=ON' "$BUILD/CMakeCache.txt"; then
    warn "$BUILD has sanitizers on: figures are not representative"
  fi
}

# Builds TARGET; if that fails (the tree is shared and may be mid-edit) but
# an earlier PATH exists, says so loudly and uses it. 1 when there is none.
ensure() { # TARGET PATH
  if cmake --build "$BUILD" -j2 --target "$1" >>"$BUILD/bench-build.log" 2>&1 && [ -x "$2" ]; then
    return 0
  fi
  [ -x "$2" ] || return 1
  warn "$1 failed to build; using the older $2 ($(date -r "$2" '+%H:%M:%S'))"
}

# The build step of the scripts that need only wsbench and the duplex CLI:
# configures BUILD if new (no tests), builds both, sets WSBENCH and DUPLEX.
build_wsbench_duplex() {
  bench_build_dir -DBUILD_TESTING=OFF
  echo "building..."
  WSBENCH=$BUILD/bench/wsbench
  DUPLEX=$BUILD/duplex
  ensure wsbench "$WSBENCH" && ensure duplex "$DUPLEX" ||
    die "wsbench or duplex did not build: see $BUILD/bench-build.log"
}

# Both the client and the server hold one descriptor per connection; the
# servers inherit the raised limit from this shell. Sets NOFILE.
raise_nofile() {
  ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null
  NOFILE=$(ulimit -n)
}

listening() { ss -Hltn "sport = :$1" 2>/dev/null | grep -q .; }

# CPU use of the whole machine over one second, in percent.
busy_pct() {
  local a b
  a=$(head -1 /proc/stat); sleep 1; b=$(head -1 /proc/stat)
  awk -v a="$a" -v b="$b" 'BEGIN {
    n = split(a, x, " "); split(b, y, " ")
    for (i = 2; i <= n; i++) { d = y[i] - x[i]; tot += d; if (i == 5 || i == 6) idle += d }
    printf "%.0f", tot ? 100 * (tot - idle) / tot : 0 }'
}
# Other work on the machine skews every figure: measure it for a second.
check_busy() { # WHEN
  local pct; pct=$(busy_pct)
  echo "CPU busy $1 (nothing of ours running): $pct%"
  [ "$pct" -gt 10 ] && warn "the machine is already $pct% busy: figures will be low and noisy"
  return 0
}

# The server started last (SPID) must be listening on PORT within TRIES
# × 50 ms; otherwise it is stopped and 1 returned.
SPID=
wait_listening() { # NAME PORT LOG [TRIES]
  for _ in $(seq "${4:-100}"); do
    listening "$2" && return 0
    kill -0 "$SPID" 2>/dev/null || break
    sleep 0.05
  done
  echo "$ME: $1 server did not start listening on $2 (see $3)" >&2
  stop_server
  return 1
}
stop_server() {
  [ -n "$SPID" ] || return 0
  kill "$SPID" 2>/dev/null
  for _ in $(seq 40); do kill -0 "$SPID" 2>/dev/null || break; sleep 0.05; done
  kill -9 "$SPID" 2>/dev/null
  wait "$SPID" 2>/dev/null
  SPID=
}

# The end of one client run: its output LINE (RC its exit status), or why
# it failed, goes to $RESULTS as "row=ROW server=SERVER rep=REP ..." and to
# the terminal; then the server (SPID) is stopped.
record_run() { # ROW SERVER REP RC LINE
  local row=$1 srv=$2 rep=$3 rc=$4 line=$5
  if [ "$rc" -ne 0 ] || [ -z "$line" ]; then
    line="failed=wsbench-rc-$rc"
    echo "$ME: $srv $row rep $rep failed (see $OUT/wsbench.log, $OUT/$srv.log)" >&2
  elif ! kill -0 "$SPID" 2>/dev/null; then
    line="failed=server-died $line"
  fi
  echo "row=$row server=$srv rep=$rep $line" >>"$RESULTS"
  printf '  %-12s %-10s rep %s: %s\n' "$row" "$srv" "$rep" "$line"
  stop_server
}

# What the scripts' table programs share (prepended to each awk program):
# parse() splits a results line into row, srv, failed and the figures f[];
# median(key) is the median of val[key, 1..cnt[key]]; ratio(a, b) is a/b
# or "-".
AWK_COMMON='
function parse(   i, eq, k, v) {
  row = ""; srv = ""; failed = ""
  for (i = 1; i <= NF; i++) {
    eq = index($i, "="); k = substr($i, 1, eq - 1); v = substr($i, eq + 1)
    if (k == "row") row = v; else if (k == "server") srv = v; else if (k == "failed") failed = v
    else f[k] = v
  }
}
function median(key,   k, i, j, t, a) {
  k = cnt[key]
  if (!k) return ""
  for (i = 1; i <= k; i++) a[i] = val[key, i]
  for (i = 2; i <= k; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
  return k % 2 ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2
}
function ratio(a, b) { return (a == "" || b == "" || b == 0) ? "-" : sprintf("%.2f", a / b) }
# The median over reps of fig(a) / fig(b) within each rep, from
# byrep[row, srv, fig, rep] (the caller fills it, and nrep); "-" if none.
function rep_ratio(row, a, b, fig,   r, x, y, key) {
  key = "ratio" SUBSEP row SUBSEP a SUBSEP b SUBSEP fig
  cnt[key] = 0
  for (r = 1; r <= nrep; r++) {
    x = (row SUBSEP a SUBSEP fig SUBSEP r); y = (row SUBSEP b SUBSEP fig SUBSEP r)
    if ((x in byrep) && (y in byrep) && byrep[y] > 0) val[key, ++cnt[key]] = byrep[x] / byrep[y]
  }
  return cnt[key] ? sprintf("%.2f", median(key)) : "-"
}
'

# Checks that no server's port (port_of, the caller's) is taken, then makes
# the results directory OUT=BUILD/bench-results/PREFIX<time> and an empty
# RESULTS file in it.
start_results() { # PREFIX SERVER...
  local prefix=$1 s
  shift
  for s in "$@"; do
    listening "$(port_of "$s")" && die "port $(port_of "$s") is already in use (set BENCH_PORT_BASE)"
  done
  OUT=$BUILD/bench-results/$prefix$(date +%Y%m%d-%H%M%S)
  mkdir -p "$OUT" || die "cannot create $OUT"
  RESULTS=$OUT/results.txt
  : >"$RESULTS"
}

# The frame of a run: begin_run prints the header lines it is given (to
# the terminal and OUT/header.txt) and how busy the machine is, and starts
# the clock; run_interleaved calls the caller's run_one ROW SERVER REP for
# every rep, every row given and every server of SERVERS, in that order,
# so that drift on the shared machine hits every server alike; end_run
# says how long it took and how busy the machine is afterwards.
begin_run() { # LINE...
  printf '%s\n' "$@" | tee "$OUT/header.txt"
  check_busy "before the run" | tee -a "$OUT/header.txt"
  RUN_START=$(date +%s)
}
run_interleaved() { # ROW...
  local rep row srv
  for rep in $(seq "$REPS"); do
    for row in "$@"; do
      for srv in $SERVERS; do run_one "$row" "$srv" "$rep"; done
    done
  done
}
end_run() {
  echo "ran in $(( $(date +%s) - RUN_START ))s; raw lines: $RESULTS"
  check_busy "after the run" | tee -a "$OUT/header.txt"
}
