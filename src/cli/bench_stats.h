/* Measurements for the load generator (bench.h): a latency histogram, the
 * table of error kinds, and what /proc says about another process. */
#ifndef DUPLEX_CLI_BENCH_STATS_H
#define DUPLEX_CLI_BENCH_STATS_H

#include <stdint.h>

#include "bench.h"

/* Log-linear: exact below 64 ns, then 32 buckets per power of two (about
 * 3 % resolution), enough for percentiles. Values in ns. */
#define BENCH_HIST_SUB_BITS 5
#define BENCH_HIST_SUB (1u << BENCH_HIST_SUB_BITS)
#define BENCH_HIST_BUCKETS (BENCH_HIST_SUB * 60)

typedef struct {
  uint64_t count;
  uint64_t max;
  uint64_t b[BENCH_HIST_BUCKETS];
} bench_hist;

void bench_hist_add(bench_hist *h, uint64_t ns);
/* The q-quantile (0..1) in microseconds; 0 when empty. */
double bench_hist_pct_us(const bench_hist *h, double q);

/* Counts one error under `name` (truncated to fit); names past the table's
 * size are counted as "other". */
void bench_error_count(bench_result *r, const char *name);
/* Sorts the kinds by count, most frequent first. */
void bench_error_sort(bench_result *r);

uint64_t bench_now_ns(void);
/* CPU seconds used so far by process `pid` (utime + stime), or -1. */
double bench_proc_cpu_s(long pid);
/* CPU seconds used so far by this process. */
double bench_self_cpu_s(void);
/* VmRSS of `pid` in KiB, or -1. */
long bench_proc_rss_kb(long pid);
/* Raises RLIMIT_NOFILE towards `need` (the hard limit too, when allowed).
 * Returns the soft limit it ends at. */
unsigned long bench_raise_nofile(unsigned long need);

#endif
