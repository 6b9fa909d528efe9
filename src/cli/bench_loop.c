/* The load generator's loop: epoll, the deadline sweep, and the progress
 * tick once a second. */
#include <errno.h>
#include <string.h>
#include <sys/epoll.h>

#include "bench_engine.h"

#define CHECK_EVERY_NS 100000000u
#define TICK_NS 1000000000u

static void poll_once(bench_ctx *b, int timeout_ms) {
  struct epoll_event evs[512];
  int n = epoll_wait(b->ep, evs, 512, timeout_ms);
  b->woke = bench_now_ns();
  if (n < 0) {
    if (errno != EINTR) bench_fatal(b, "epoll_wait: %s", strerror(errno));
    return;
  }
  for (int i = 0; i < n && !b->failed; i++) {
    bench_conn *c = evs[i].data.ptr;
    if (c->fd >= 0) bench_on_event(c, evs[i].events);
  }
  /* fanout: what the batch completed made room for goes out in one send,
   * as a publisher with messages in flight sends them */
  if (b->pub && b->pub->fd >= 0) bench_flush(b->pub);
}

/* Shows what happened since the last tick, then starts a new interval. */
static void tick(bench_ctx *b, uint64_t now) {
  const bench_config *cfg = b->cfg;
  double secs = (double)(now - (b->next_tick - TICK_NS)) / 1e9;
  bench_progress p = {
      .mode = cfg->mode,
      .elapsed_ms = (now - b->t0) / 1000000u,
      .phase = b->phase,
      .rate = secs > 0 ? (double)(b->events - b->tick_events) / secs : 0,
      .held = b->opened,
      .want = b->nconns,
      .p50_us = bench_hist_pct_us(&b->tick, 0.50),
      .p99_us = bench_hist_pct_us(&b->tick, 0.99),
      .errors = b->res->errors,
  };
  if (cfg->progress) cfg->progress(&p, cfg->progress_ud);
  memset(&b->tick, 0, sizeof b->tick);
  b->tick_events = b->events;
  b->next_tick = now + TICK_NS;
}

static bool stopped(const bench_ctx *b) {
  /* While closing down the stop flag no longer cuts the loop short, so the
   * close handshakes still happen. */
  return b->failed || (b->cfg->stop && *b->cfg->stop && !b->stopping);
}

void bench_run_until(bench_ctx *b, uint64_t until, bool (*done)(bench_ctx *b)) {
  for (;;) {
    uint64_t now = bench_now_ns();
    if (stopped(b) || now >= until || (done && done(b))) return;
    if (now >= b->next_check) {
      bench_check_deadlines(b, now);
      b->next_check = now + CHECK_EVERY_NS;
      if (b->failed) return;
    }
    if (now >= b->next_tick) tick(b, now);
    uint64_t next = until < b->next_tick ? until : b->next_tick;
    if (next > b->next_check) next = b->next_check;
    uint64_t left_ms = next > now ? (next - now) / 1000000u + 1 : 1;
    poll_once(b, (int)left_ms);
  }
}
