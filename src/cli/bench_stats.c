/* Latency histogram, error kinds and /proc readers; see bench_stats.h. */
#include "bench_stats.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static unsigned hist_index(uint64_t v) {
  if (v < 2 * BENCH_HIST_SUB) return (unsigned)v;
  unsigned msb = 63u - (unsigned)__builtin_clzll(v);
  unsigned shift = msb - BENCH_HIST_SUB_BITS;
  return shift * BENCH_HIST_SUB + (unsigned)(v >> shift);
}

/* The midpoint of a bucket. */
static uint64_t hist_value(unsigned idx) {
  if (idx < 2 * BENCH_HIST_SUB) return idx;
  unsigned shift = idx / BENCH_HIST_SUB - 1;
  uint64_t low = (uint64_t)(idx % BENCH_HIST_SUB + BENCH_HIST_SUB) << shift;
  return low + ((uint64_t)1 << shift) / 2;
}

void bench_hist_add(bench_hist *h, uint64_t ns) {
  h->b[hist_index(ns)]++;
  h->count++;
  if (ns > h->max) h->max = ns;
}

double bench_hist_pct_us(const bench_hist *h, double q) {
  if (!h->count) return 0;
  uint64_t want = (uint64_t)(q * (double)h->count + 0.999999);
  if (want < 1) want = 1;
  uint64_t seen = 0;
  for (unsigned i = 0; i < BENCH_HIST_BUCKETS; i++) {
    seen += h->b[i];
    /* A bucket's midpoint may lie above the largest sample in it. */
    if (seen >= want) {
      uint64_t v = hist_value(i);
      return (double)(v < h->max ? v : h->max) / 1000.0;
    }
  }
  return (double)h->max / 1000.0;
}

void bench_error_count(bench_result *r, const char *name) {
  r->errors++;
  for (int i = 0; i < r->n_kinds; i++) {
    if (strncmp(r->kinds[i].name, name, sizeof r->kinds[i].name - 1) == 0) {
      r->kinds[i].count++;
      return;
    }
  }
  /* The last slot is kept for "other": every new name once the rest are
   * taken. */
  int i = BENCH_ERROR_KINDS - 1;
  if (r->n_kinds < i) {
    i = r->n_kinds++;
  } else if (r->n_kinds == i) {
    r->n_kinds++;
    name = "other";
  } else {
    name = NULL;
  }
  if (name) snprintf(r->kinds[i].name, sizeof r->kinds[i].name, "%s", name);
  r->kinds[i].count++;
}

static int by_count(const void *a, const void *b) {
  const bench_error *x = a, *y = b;
  return (x->count < y->count) - (x->count > y->count);
}

void bench_error_sort(bench_result *r) {
  qsort(r->kinds, (size_t)r->n_kinds, sizeof r->kinds[0], by_count);
}

uint64_t bench_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

double bench_proc_cpu_s(long pid) {
  char path[64], buf[1024];
  snprintf(path, sizeof path, "/proc/%ld/stat", pid);
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  /* The command name, in parentheses, may hold spaces and ')': the fields
   * start after the last one. utime is field 14, stime 15. */
  char *p = strrchr(buf, ')');
  if (!p) return -1;
  unsigned long ut = 0, st = 0;
  if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
             &ut, &st) != 2)
    return -1;
  return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

double bench_self_cpu_s(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
         (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

long bench_proc_rss_kb(long pid) {
  char path[64], line[256];
  snprintf(path, sizeof path, "/proc/%ld/status", pid);
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  long kb = -1;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "VmRSS: %ld kB", &kb) == 1) break;
  fclose(f);
  return kb;
}

unsigned long bench_raise_nofile(unsigned long need) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl)) return 0;
  rlim_t want = (rlim_t)need;
  if (rl.rlim_cur >= want) return (unsigned long)rl.rlim_cur;
  if (rl.rlim_max < want) { /* only root may raise the hard limit */
    struct rlimit hard = {want, want};
    if (setrlimit(RLIMIT_NOFILE, &hard) == 0) return need;
  }
  rl.rlim_cur = rl.rlim_max < want ? rl.rlim_max : want;
  setrlimit(RLIMIT_NOFILE, &rl);
  return (unsigned long)rl.rlim_cur;
}
