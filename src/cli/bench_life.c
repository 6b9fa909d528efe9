/* What each mode does at each turn of a connection: opened, echoed,
 * failed, done, timed out. Failures are counted by kind; whether a
 * connection is tried again depends on the mode:
 *   echo       a connection that fails while the load runs is reconnected
 *              after 100 ms; one that fails while they are being opened
 *              stays down until the load starts, so a server that refuses
 *              everyone is seen at once;
 *   handshake  a failed cycle starts over after 10 ms;
 *   idle       never: the figure is how many the server held. */
#include <stdio.h>
#include <stdlib.h>

#include "bench_engine.h"

#define RETRY_ECHO_NS 100000000u
#define RETRY_CYCLE_NS 10000000u

/* The timestamp of a message's latency: when the loop woke for the events
 * that led to it. One clock read per wake instead of two per message (they
 * were 8 % of the client's CPU at 20 B x 16 in flight); the error is the
 * time one wake's work takes. With deflate the client's own compression
 * time must stay out of the figure, so the clock is read at the send. */
uint64_t bench_msg_stamp(bench_ctx *b) {
  return b->cfg->deflate ? bench_now_ns() : b->woke;
}

static void count_open(bench_conn *c) {
  if (c->counted) return;
  c->counted = true;
  c->b->opened++;
  if (c->pending) {
    c->pending = false;
    c->b->pending--;
  }
}

/* Releases the socket and what the counts say about it. */
static void release(bench_conn *c) {
  bench_ctx *b = c->b;
  if (c->counted) {
    c->counted = false;
    b->opened--;
  }
  if (c->pending) {
    c->pending = false;
    b->pending--;
  }
  bench_conn_release(c);
}

void bench_conn_fail(bench_conn *c, const char *kind) {
  bench_ctx *b = c->b;
  const bench_config *cfg = b->cfg;
  if (b->stopping) {
    /* Closing down: the failure is not counted as an error, but messages
     * still in flight on it are lost (sent == echoed + lost + unanswered
     * must hold whenever the server ends a connection during the drain). */
    b->lost += c->ring_count;
    release(c);
    b->closed++;
    return;
  }
  bench_error_count(b->res, kind);
  b->lost += c->ring_count;
  if (cfg->strict && cfg->mode != BENCH_HANDSHAKE)
    bench_fatal(b, "connection %u: %s", (unsigned)(c - b->c), kind);
  if (cfg->strict && b->res->errors > 1000 && b->res->errors > 10 * b->events)
    bench_fatal(b, "too many failed handshakes (last: %s)", kind);
  release(c);
  if (cfg->mode == BENCH_HANDSHAKE) {
    c->deadline = bench_now_ns() + RETRY_CYCLE_NS; /* bench_check_deadlines */
  } else if (cfg->mode == BENCH_ECHO && b->loading) {
    c->deadline = bench_now_ns() + RETRY_ECHO_NS;
  } else if (!c->down && !b->loading) {
    c->down = true;
    b->down++;
  }
}

void bench_conn_done(bench_conn *c) {
  bench_ctx *b = c->b;
  /* A server that closes during the drain takes the messages still in
   * flight on that connection with it. */
  b->lost += c->ring_count;
  release(c);
  if (b->stopping) {
    b->closed++;
    return;
  }
  if (b->cfg->mode == BENCH_HANDSHAKE) {
    uint64_t ns = bench_now_ns() - c->t_start;
    bench_hist_add(&b->tick, ns);
    b->events++;
    if (b->measuring) {
      bench_hist_add(&b->hist, ns);
      b->msgs++;
    }
    bench_conn_start(c);
  }
}

void bench_on_open(bench_conn *c) {
  bench_ctx *b = c->b;
  const bench_config *cfg = b->cfg;
  uint64_t now = bench_now_ns();
  c->state = BC_OPEN;
  c->deadline = 0;
  b->ever++;
  switch (cfg->mode) {
    case BENCH_ECHO:
      count_open(c);
      if (b->loading) /* a late or reconnected one joins in */
        for (unsigned j = 0; j < cfg->inflight; j++) bench_queue_msg(c);
      break;
    case BENCH_HANDSHAKE:
      bench_queue_close(c);
      c->state = BC_CLOSING;
      c->deadline = now + b->timeout_ns;
      break;
    case BENCH_FANOUT:
      count_open(c);
      break;
    case BENCH_IDLE:
      /* The upgrade's latency, from connect() to the 101. */
      bench_hist_add(&b->hist, now - c->t_start);
      bench_hist_add(&b->tick, now - c->t_start);
      if (cfg->echo_once) { /* counted as open once its echo is back */
        bench_queue_msg(c);
        c->deadline = now + b->timeout_ns;
      } else {
        count_open(c);
      }
      break;
  }
}

void bench_on_echo(bench_conn *c) {
  bench_ctx *b = c->b;
  const bench_config *cfg = b->cfg;
  if (!c->ring_count) { /* raw: bytes before any were sent */
    bench_conn_fail(c, "echo of a message never sent");
    return;
  }
  uint64_t sent = c->sent[c->ring_head];
  c->ring_head = (c->ring_head + 1) % cfg->inflight;
  c->ring_count--;
  b->in_flight--;
  b->echoed++;
  if (cfg->mode == BENCH_IDLE) { /* echo_once: the exchange is done */
    count_open(c);
    c->deadline = 0;
    /* Nothing more is sent or compressed on it: the client's own memory
     * goes back (the server's is what is measured). */
    dx__pmd_free(c->pmd);
    c->pmd = NULL;
    if (c->head == c->tail) {
      free(c->out);
      c->out = NULL;
      c->cap = c->head = c->tail = 0;
    }
    return;
  }
  uint64_t ns = bench_msg_stamp(b) - sent;
  bench_hist_add(&b->tick, ns);
  b->events++;
  if (b->measuring) {
    bench_hist_add(&b->hist, ns);
    b->msgs++;
    b->rx_plain += c->msg_len;
    b->rx_wire += c->msg_wire;
    b->rx_z += c->msg_z;
  }
  if (!b->stopping) bench_queue_msg(c);
}

/* A subscriber's next message arrived, checked. Each one delivers the
 * messages in order, so the oldest in flight is the first that every
 * subscriber has: it completes the publisher's oldest, which queues the
 * next (bench_on_echo). */
void bench_on_delivery(bench_conn *c) {
  bench_ctx *b = c->b;
  uint64_t n = c->fan_next++;
  if (b->measuring) b->deliveries++;
  uint32_t *got = &b->fan_got[n % b->cfg->inflight];
  if (++*got < b->subs) return;
  *got = 0;
  if (n != b->fan_done) { /* cannot happen with deliveries in order */
    bench_fatal(b, "message %llu reached every subscriber before %llu",
                (unsigned long long)n, (unsigned long long)b->fan_done);
    return;
  }
  b->fan_done++;
  bench_on_echo(b->pub); /* sent at the end of the loop's batch (bench_loop.c) */
}

void bench_on_eof(bench_conn *c) {
  if (c->state == BC_WAIT_EOF || (c->b->cfg->raw && c->state == BC_CLOSING)) {
    bench_conn_done(c);
    return;
  }
  bench_conn_fail(c, c->state == BC_UPGRADING || c->state == BC_TLS
                         ? "handshake: server closed the connection"
                         : "server closed TCP without a close frame");
}

void bench_on_server_close(bench_conn *c, unsigned code) {
  char kind[64];
  snprintf(kind, sizeof kind, "closed by server with code %u", code);
  bench_conn_fail(c, kind);
}

static const char *timeout_kind(enum bench_cstate s) {
  switch (s) {
    case BC_CONNECTING: return "connect timeout";
    case BC_TLS: return "TLS: handshake timeout";
    case BC_UPGRADING: return "handshake: timeout";
    case BC_CLOSING: return "close timeout";
    default: return "echo timeout";
  }
}

/* Runs a few times a second: retries that are due, states that took too
 * long, and echo mode's oldest message on each connection. */
void bench_check_deadlines(bench_ctx *b, uint64_t now) {
  /* fanout: only the publisher has messages in flight */
  bool echo = (b->cfg->mode == BENCH_ECHO || b->cfg->mode == BENCH_FANOUT) && !b->stopping;
  for (unsigned i = 0; i < b->nconns && !b->failed; i++) {
    bench_conn *c = &b->c[i];
    if (echo && c->state == BC_OPEN && c->ring_count && now > c->sent[c->ring_head] &&
        now - c->sent[c->ring_head] > b->timeout_ns) {
      bench_conn_fail(c, b->cfg->mode == BENCH_FANOUT ? "delivery timeout" : "echo timeout");
      continue;
    }
    if (!c->deadline || now < c->deadline) continue;
    if (c->state == BC_FREE) { /* a failed one, backed off */
      c->deadline = 0;
      bench_conn_start(c);
    } else if (c->state == BC_WAIT_EOF) { /* the server never closed TCP: we do */
      if (b->cfg->mode == BENCH_HANDSHAKE) b->no_close++;
      bench_conn_done(c);
    } else {
      bench_conn_fail(c, timeout_kind(c->state));
    }
  }
}
