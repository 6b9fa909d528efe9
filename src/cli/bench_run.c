/* bench_run: sets a run up, drives the phases of its mode, and tears it
 * down. See bench.h. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench_engine.h"

#define NS_PER_MS 1000000u
#define DRAIN_NS 1000000000u   /* echoes in flight at the end */
#define CLOSE_NS 2000000000u   /* close handshakes at the end */
#define IDLE_GIVE_UP_NS 120000000000u

const char *bench_mode_name(bench_mode m) {
  switch (m) {
    case BENCH_ECHO: return "echo";
    case BENCH_HANDSHAKE: return "handshake";
    case BENCH_IDLE: return "idle";
    case BENCH_FANOUT: return "fanout";
  }
  return "?";
}

void bench_fatal(bench_ctx *b, const char *fmt, ...) {
  if (b->failed) return; /* the first reason is the one that counts */
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(b->res->fatal, sizeof b->res->fatal, fmt, ap);
  va_end(ap);
  b->failed = true;
}

/* Masking keys only have to be unpredictable to stop cache poisoning of
 * intermediaries; an xorshift64* seeded once from getrandom() is plenty
 * and costs a few cycles per frame. */
uint32_t bench_rand(bench_ctx *b) {
  uint64_t x = b->rng;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  b->rng = x;
  return (uint32_t)((x * 0x2545F4914F6CDD1Dull) >> 32);
}

/* Nothing worked: the reason names the most frequent error. */
static void nothing_worked(bench_ctx *b, const char *what) {
  bench_result *r = b->res;
  if (!r->errors) {
    bench_fatal(b, "%s", what);
    return;
  }
  bench_error_sort(r);
  if (r->kinds[0].count == r->errors)
    bench_fatal(b, "%s: %s (%llu attempt%s)", what, r->kinds[0].name,
                (unsigned long long)r->errors, r->errors == 1 ? "" : "s");
  else
    bench_fatal(b, "%s: %s (%llu of %llu errors)", what, r->kinds[0].name,
                (unsigned long long)r->kinds[0].count, (unsigned long long)r->errors);
}

static int setup(bench_ctx *b, size_t out_cap, size_t rbuf) {
  const bench_config *cfg = b->cfg;
  /* fanout: the publisher comes after the subscribers */
  b->nconns = cfg->conns + (cfg->mode == BENCH_FANOUT);
  b->rbuf_size = rbuf;
  b->rbuf = malloc(rbuf);
  b->c = calloc(b->nconns, sizeof *b->c);
  if (!b->c || !b->rbuf) goto oom;
  for (unsigned i = 0; i < b->nconns; i++) {
    b->c[i].b = b;
    b->c[i].fd = -1;
  }
  bool ring = cfg->mode == BENCH_ECHO || cfg->mode == BENCH_FANOUT || cfg->echo_once;
  for (unsigned i = 0; i < b->nconns; i++) {
    bench_conn *c = &b->c[i];
    if (out_cap) {
      c->cap = out_cap;
      if (!(c->out = malloc(out_cap))) goto oom;
    }
    if (ring) {
      c->sent = malloc(sizeof(uint64_t) * cfg->inflight);
      c->var = malloc(cfg->inflight);
      if (!c->sent || !c->var) goto oom;
      /* Connections start at different points of the rotation, so the
       * server sees every variant at any moment. */
      c->next_var = i % b->npayload;
    }
  }
  return 0;
oom:
  bench_fatal(b, "out of memory for %u connections", cfg->conns);
  return -1;
}

static bool all_settled(bench_ctx *b) { return b->opened + b->down >= b->nconns; }
static bool all_closed(bench_ctx *b) { return b->closed >= b->nconns; }
static bool none_in_flight(bench_ctx *b) { return b->in_flight == 0; }
static bool hopeless(bench_ctx *b) { return !b->ever && b->res->errors >= b->nconns; }

/* Stops the load, lets the echoes in flight arrive (up to 1 s), then closes
 * every connection politely: a close frame (or a FIN when raw), and waits
 * up to 2 s for the servers to close their side. */
static void shut_down(bench_ctx *b) {
  b->stopping = true;
  b->phase = "closing";
  if (!b->failed) bench_run_until(b, bench_now_ns() + DRAIN_NS, none_in_flight);
  b->res->unanswered = b->in_flight;
  b->closed = 0;
  for (unsigned i = 0; i < b->nconns; i++) {
    bench_conn *c = &b->c[i];
    /* Counted as unanswered now, so they are not counted lost as well
     * when the connection ends. */
    b->in_flight -= c->ring_count;
    c->ring_head = c->ring_count = 0;
    if (c->fd < 0) {
      b->closed++;
    } else if (c->state == BC_OPEN && !b->failed) {
      if (b->cfg->raw) {
        shutdown(c->fd, SHUT_WR);
      } else {
        bench_queue_close(c);
        bench_flush(c);
      }
      if (c->fd >= 0) {
        c->state = BC_CLOSING;
        c->deadline = 0;
      }
    } else if (c->state != BC_WAIT_EOF || b->failed) {
      bench_conn_release(c);
      b->closed++;
    }
  }
  bench_run_until(b, bench_now_ns() + CLOSE_NS, all_closed);
  for (unsigned i = 0; i < b->nconns; i++)
    if (b->c[i].fd >= 0) bench_conn_release(&b->c[i]);
}

/* The measured window: from now for duration_ms (or until done(b)), with
 * CPU use. */
static void measure(bench_ctx *b, bool (*done)(bench_ctx *b)) {
  const bench_config *cfg = b->cfg;
  bench_result *r = b->res;
  memset(&b->hist, 0, sizeof b->hist);
  b->msgs = b->deliveries = 0;
  b->tx_plain = b->tx_wire = b->rx_plain = b->rx_wire = b->rx_z = 0;
  b->measuring = true;
  b->phase = "measuring";
  double srv0 = cfg->pid ? bench_proc_cpu_s(cfg->pid) : -1, cli0 = bench_self_cpu_s();
  uint64_t t0 = bench_now_ns();
  bench_run_until(b, t0 + (uint64_t)cfg->duration_ms * NS_PER_MS, done);
  uint64_t t1 = bench_now_ns();
  b->measuring = false;
  double srv1 = cfg->pid ? bench_proc_cpu_s(cfg->pid) : -1, cli1 = bench_self_cpu_s();
  r->seconds = (double)(t1 - t0) / 1e9;
  double secs = r->seconds > 0 ? r->seconds : 1e-9;
  r->client_cpu = (cli1 - cli0) / secs;
  r->server_cpu = srv0 >= 0 && srv1 >= 0 ? (srv1 - srv0) / secs : -1;
  r->msgs = b->msgs;
  r->deliveries = b->deliveries;
  r->tx_plain = b->tx_plain;
  r->tx_wire = b->tx_wire;
  r->rx_plain = b->rx_plain;
  r->rx_wire = b->rx_wire;
  r->rx_z = b->rx_z;
}

/* The messages in flight are queued: warm-up, the measured window, the
 * end. `nothing` is the reason when no message was ever answered. */
static void run_load(bench_ctx *b, const char *nothing) {
  b->phase = "warm-up";
  bench_run_until(b, bench_now_ns() + (uint64_t)b->cfg->warmup_ms * NS_PER_MS, NULL);
  measure(b, NULL);
  shut_down(b);
  b->res->sent = b->sent;
  b->res->echoed = b->echoed;
  b->res->lost = b->lost;
  if (!b->failed && !b->echoed) nothing_worked(b, nothing);
}

static void run_echo(bench_ctx *b) {
  const bench_config *cfg = b->cfg;
  size_t per_msg = cfg->size + DX__FRAME_MAX_HEADER;
  if (setup(b, per_msg * cfg->inflight + 512, cfg->size >= 65536 ? 256 * 1024 : 64 * 1024))
    return;
  b->phase = "connecting";
  for (unsigned i = 0; i < b->nconns && !b->failed; i++) bench_conn_start(&b->c[i]);
  /* Every connection gets its own timeout, so this settles by then. */
  bench_run_until(b, bench_now_ns() + b->timeout_ns + 1000 * NS_PER_MS, all_settled);
  b->res->opened = b->opened;
  if (!b->failed && !b->opened) nothing_worked(b, "no connection opened");
  if (b->failed) return;
  /* Everyone starts together; those that failed to open try again. */
  b->loading = true;
  uint64_t retry = bench_now_ns() + 100 * NS_PER_MS;
  for (unsigned i = 0; i < b->nconns; i++) {
    bench_conn *c = &b->c[i];
    if (c->state == BC_OPEN) {
      for (unsigned j = 0; j < cfg->inflight; j++) bench_queue_msg(c);
      bench_flush(c);
    } else if (c->down) {
      c->down = false;
      c->deadline = retry;
    }
  }
  b->down = 0;
  run_load(b, "no echo came back");
}

static void run_handshake(bench_ctx *b) {
  const bench_config *cfg = b->cfg;
  if (setup(b, 512, 16 * 1024)) return;
  b->phase = "warm-up";
  for (unsigned i = 0; i < b->nconns && !b->failed; i++) bench_conn_start(&b->c[i]);
  bench_run_until(b, bench_now_ns() + (uint64_t)cfg->warmup_ms * NS_PER_MS, hopeless);
  /* Stops early too when the first attempts all fail. */
  if (!b->failed && !hopeless(b)) measure(b, hopeless);
  b->stopping = true; /* cycles in progress are abandoned */
  for (unsigned i = 0; i < b->nconns; i++)
    if (b->c[i].fd >= 0) bench_conn_release(&b->c[i]);
  b->res->no_close = b->no_close;
  if (!b->failed && !b->events) nothing_worked(b, "no handshake completed");
}

static bool started_settled(bench_ctx *b) { return b->opened + b->down >= b->started; }

/* Opens connections until `target` have upgraded or failed, at most
 * cfg->burst handshakes at a time so the listen backlog never overflows (a
 * dropped SYN costs a 1 s retransmit, not memory). */

static void idle_open(bench_ctx *b, unsigned target, uint64_t give_up) {
  while (!b->failed && !(b->cfg->stop && *b->cfg->stop) && b->opened + b->down < target) {
    while (b->started < target && b->pending < b->cfg->burst && !b->failed) {
      bench_conn *c = &b->c[b->started++];
      c->pending = true;
      b->pending++;
      bench_conn_start(c);
    }
    uint64_t now = bench_now_ns();
    if (now > give_up) {
      bench_fatal(b, "only %u of %u connections opened in %llu s", b->opened, target,
                  (unsigned long long)(IDLE_GIVE_UP_NS / 1000000000u));
      return;
    }
    bench_run_until(b, now + 5 * NS_PER_MS, started_settled);
  }
}

static long rss_after(bench_ctx *b, uint64_t settle_ns) {
  bench_run_until(b, bench_now_ns() + settle_ns, NULL);
  if (!b->cfg->pid) return -1;
  long kb = bench_proc_rss_kb(b->cfg->pid);
  if (kb < 0) bench_fatal(b, "cannot read /proc/%ld/status: server gone?", b->cfg->pid);
  return kb;
}

/* The server's RSS before, after the first tenth (so one-time costs the
 * first connections trigger can be told from what each further one costs)
 * and after all were held duration_ms. */
static void run_idle(bench_ctx *b) {
  const bench_config *cfg = b->cfg;
  bench_result *r = b->res;
  if (setup(b, 0, 16 * 1024)) return;
  b->phase = "connecting";
  if (cfg->pid && (r->rss_before_kb = bench_proc_rss_kb(cfg->pid)) < 0) {
    bench_fatal(b, "cannot read /proc/%ld/status", cfg->pid);
    return;
  }
  uint64_t give_up = bench_now_ns() + IDLE_GIVE_UP_NS;
  uint64_t hold_ns = (uint64_t)cfg->duration_ms * NS_PER_MS;
  r->first = cfg->pid ? b->nconns / 10 : 0;
  r->rss_first_kb = r->rss_before_kb;
  if (r->first > 0) {
    idle_open(b, r->first, give_up);
    r->first = b->opened;
    r->rss_first_kb = rss_after(b, hold_ns / 4);
  }
  uint64_t t1 = bench_now_ns();
  idle_open(b, b->nconns, give_up);
  double open_s = (double)(bench_now_ns() - t1) / 1e9;
  r->opened = b->opened;
  r->open_per_s = (double)(b->opened - r->first) / (open_s > 0 ? open_s : 1e-9);
  r->p50_us = bench_hist_pct_us(&b->hist, 0.50);
  r->p90_us = bench_hist_pct_us(&b->hist, 0.90);
  r->p99_us = bench_hist_pct_us(&b->hist, 0.99);
  r->max_us = (double)b->hist.max / 1000.0;
  r->samples = b->hist.count;
  if (!b->failed && !b->opened) nothing_worked(b, "no connection opened");
  if (b->failed) return;
  b->phase = "holding";
  uint64_t t2 = bench_now_ns();
  r->rss_after_kb = rss_after(b, hold_ns);
  r->seconds = (double)(bench_now_ns() - t2) / 1e9;
  r->held = b->opened;
  if (b->failed) return;
  shut_down(b);
}

/* One publisher, `conns` subscribers: all opened first (like idle ones,
 * `burst` handshakes at a time, the publisher last), then the publisher
 * keeps `inflight` messages in flight; each one that every subscriber has
 * received makes room for the next (bench_on_delivery). */
static void run_fanout(bench_ctx *b) {
  const bench_config *cfg = b->cfg;
  b->subs = cfg->conns;
  b->fan_got = calloc(cfg->inflight, sizeof *b->fan_got);
  b->fan_msg = malloc(cfg->size);
  if (!b->fan_got || !b->fan_msg) {
    bench_fatal(b, "out of memory");
    return;
  }
  if (setup(b, 0, 256 * 1024)) return;
  b->pub = &b->c[b->subs];
  b->phase = "connecting";
  idle_open(b, b->nconns, bench_now_ns() + IDLE_GIVE_UP_NS);
  b->res->opened = b->opened;
  if (!b->failed && b->opened < b->nconns)
    bench_fatal(b, "only %u of %u connections opened", b->opened, b->nconns);
  if (b->failed) return;
  b->loading = true;
  for (unsigned j = 0; j < cfg->inflight; j++) bench_queue_msg(b->pub);
  bench_flush(b->pub);
  run_load(b, "no message reached every subscriber");
}

static void teardown(bench_ctx *b) {
  for (unsigned i = 0; b->c && i < b->nconns; i++) {
    bench_conn *c = &b->c[i];
    bench_conn_release(c);
    free(c->out);
    free(c->hs);
    free(c->sent);
    free(c->var);
  }
  free(b->c);
  free(b->fan_got);
  free(b->fan_msg);
  free(b->rbuf);
  free(b->req);
  bench_payload_free(b);
  if (b->tls) SSL_CTX_free(b->tls);
  if (b->ep >= 0) close(b->ep);
  free(b);
}

int bench_run(const bench_config *cfg, bench_result *res) {
  memset(res, 0, sizeof *res);
  res->server_cpu = -1;
  res->rss_before_kb = res->rss_first_kb = res->rss_after_kb = -1;
  bench_ctx *b = calloc(1, sizeof *b);
  if (!b) {
    snprintf(res->fatal, sizeof res->fatal, "out of memory");
    return -1;
  }
  b->cfg = cfg;
  b->res = res;
  b->ep = -1;
  b->phase = "connecting";
  b->t0 = bench_now_ns();
  b->next_tick = b->t0 + 1000 * NS_PER_MS;
  b->timeout_ns = (uint64_t)(cfg->timeout_ms ? cfg->timeout_ms : 10000) * NS_PER_MS;
  if (getrandom(&b->rng, sizeof b->rng, 0) != (ssize_t)sizeof b->rng) b->rng = b->t0;
  if (!b->rng) b->rng = 0x9E3779B97F4A7C15ull;

  unsigned long need = (unsigned long)cfg->conns + 64;
  unsigned long have = bench_raise_nofile(need);
  if (have < need)
    bench_fatal(b, "%u connections need %lu file descriptors, the limit is %lu "
                   "(ulimit -n)", cfg->conns, need, have);
  else if ((b->ep = epoll_create1(EPOLL_CLOEXEC)) < 0)
    bench_fatal(b, "epoll_create1: %s", strerror(errno));
  if (!b->failed && bench_payload_make(b) == 0 && bench_ws_init(b) == 0 &&
      (!cfg->tls || bench_tls_init(b) == 0)) {
    switch (cfg->mode) {
      case BENCH_ECHO: run_echo(b); break;
      case BENCH_HANDSHAKE: run_handshake(b); break;
      case BENCH_IDLE: run_idle(b); break;
      case BENCH_FANOUT: run_fanout(b); break;
    }
  }
  if (cfg->mode != BENCH_IDLE) {
    res->p50_us = bench_hist_pct_us(&b->hist, 0.50);
    res->p90_us = bench_hist_pct_us(&b->hist, 0.90);
    res->p99_us = bench_hist_pct_us(&b->hist, 0.99);
    res->max_us = (double)b->hist.max / 1000.0;
    res->samples = b->hist.count;
  }
  teardown(b);
  bench_error_sort(res);
  return res->fatal[0] ? -1 : 0;
}
