/* One WebSocket connection over a transport, for either role: reading into
 * the loop's shared buffer, the handshake head, feeding the session,
 * corked writes, the closing handshake, and reporting the end once. */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>

#include "endpoint.h"
#include "net/batch.h"
#include "proto/handshake.h"
#include "proto/utf8.h"

/* Reads of the loop's buffer (256 KiB) one connection gets per wake-up:
 * past them it waits for the next iteration, after the other connections'
 * events, so no fast peer keeps the loop to itself. 4 MiB: with 1 MiB a
 * 1 MiB message was always split across wake-ups and its buffer's life
 * interleaved with the echo's, which made glibc give its heap top back
 * and take it again twice a message (strace: ~1.7 brk per message, server
 * CPU per MB up ~50 % in bench/run.sh's 1 MiB row). */
#define DX__READ_BUDGET 16

/* Messages at least this large may bypass the output buffer. */
#define DX__DIRECT_MIN (64 * 1024)
/* The largest control frame payload (RFC 6455 §5.5). */
#define DX__CONTROL_MAX 125

#define CONTAINER(p, type, member) ((type *)((char *)(p) - offsetof(type, member)))

/* A request head split across reads, collected: its counts in front of
 * its bytes, so that a connection holds one pointer for it, NULL once it
 * opened (or never split). */
typedef struct dx__head_buf {
  uint32_t len, cap;
  char data[];
} dx__head_buf;

/* Reading stops while queued output is at the high-water mark (or the cap,
 * if lower) and resumes at the low-water mark (or half that). */
static size_t pause_mark(const dx_options *o) {
  size_t cap = dx__max_buffered(o);
  return o->high_water < cap ? o->high_water : cap;
}
static size_t resume_mark(const dx_options *o) {
  size_t pause = pause_mark(o);
  return o->low_water < pause ? o->low_water : pause / 2;
}

static int is_open(const dx_conn *c);

/* The text message being delivered on this thread, already validated as
 * UTF-8 (p NULL when none): a send of exactly those bytes while its
 * callback runs (an echo, a broadcast to a room) need not validate them
 * again. Per thread rather than per loop: the callback runs on its loop's
 * thread and every send it may make is on that thread too, so loops on
 * several threads each see their own. Initial-exec: a send reads it with
 * one load, no call into the TLS resolver (its 16 bytes fit the static TLS
 * glibc keeps spare for a library loaded with dlopen). */
static __thread __attribute__((tls_model("initial-exec"))) struct {
  const void *p;
  size_t n;
} relay;

static int is_relay(const void *p, size_t n) { return p && p == relay.p && n == relay.n; }

/* The connection whose input on_io is reading on this thread, NULL when
 * none: on_io writes what that read made it queue as soon as the read
 * ends, so output queued for it meanwhile needs no end-of-iteration flush
 * task as well (queueing the task, and running it only to find nothing
 * left, cost ~50 instructions a read). Per thread and initial-exec, like
 * `relay`. */
static __thread __attribute__((tls_model("initial-exec"))) dx_conn *reading;

/* Output was queued for c (a send, or what the session queued): it leaves
 * at the end of the read under way on c, or else at the end of the
 * iteration. */
static inline void output_queued(dx_conn *c) {
  if (c != reading && !dx__task_queued(&c->flush_task)) dx__conn_want_flush(c);
}

/* ---- session events ----------------------------------------------------- */

static void ev_message(dx__session *s, int opcode, uint8_t *data, size_t len) {
  dx_conn *c = CONTAINER(s, dx_conn, sess);
  c->last_msg = c->last_rx; /* the loop time of this read */
  dx__stats *st = dx__endpoint_stats(c->ep);
  dx__count(&st->msgs_in, 1);
  dx__count(&st->bytes_in, len);
  if (c->phase == DX__P_DONE || !c->ep->opt.on_message) return;
  if (opcode != DX__OP_TEXT) {
    c->ep->opt.on_message(c, DX_BINARY, data, len);
    return;
  }
  /* The callback sees the text as const: sending it on, unchanged, needs
   * no second UTF-8 pass. */
  relay.p = data;
  relay.n = len;
  c->ep->opt.on_message(c, DX_TEXT, data, len);
  relay.p = NULL;
  relay.n = 0;
}
static void ev_ping(dx__session *s, const uint8_t *data, size_t len) {
  dx_conn *c = CONTAINER(s, dx_conn, sess);
  if (c->phase != DX__P_DONE && c->ep->opt.on_ping) c->ep->opt.on_ping(c, data, len);
}
static void ev_pong(dx__session *s, const uint8_t *data, size_t len) {
  dx_conn *c = CONTAINER(s, dx_conn, sess);
  if (c->phase == DX__P_DONE) return;
  /* Our heartbeat pings carry the loop time they left at. */
  uint32_t sent;
  if (len == sizeof sent && c->hb_waiting) {
    memcpy(&sent, data, sizeof sent);
    if (sent == c->hb.ping_sent) c->hb.rtt = (int32_t)((uint32_t)dx__loop_now(dx__conn_loop(c)) - sent);
  }
  if (c->ep->opt.on_pong) c->ep->opt.on_pong(c, data, len);
}
static void ev_close(dx__session *s, int code, const char *reason, size_t len) {
  (void)code, (void)reason, (void)len;
  dx_conn *c = CONTAINER(s, dx_conn, sess);
  /* Unless we started the close (or failed the connection), the peer did. */
  if (!c->why_set) {
    c->why = DX_WHY_PEER;
    c->why_set = 1;
  }
}

/* Every connection's session shares these (static: they outlive any
 * endpoint, so the session's memory can go after its server did). */
static const dx__session_ops session_ops = {{ev_message, ev_ping, ev_pong, ev_close},
                                            {dx__std_realloc, NULL}};

/* The loop's spare output block: lent to a connection's session for each
 * read and taken back once what the read made it queue is written (or
 * when it queued nothing), so that a read and its replies cost no malloc
 * and free, and an idle connection still holds no block. A slow reader
 * keeps its block as its own output (the next reader gets a new one), and
 * a connection that ends frees what it holds with its session. */
static void drop_spare(void *block) { dx__session_out_free(&session_ops, block); }
static inline void **spare_slot(dx_conn *c) { return dx__loop_spare(dx__conn_loop(c), drop_spare); }

/* ---- shared output (pub/sub) -------------------------------------------- */

/* A queue of shared frames: b[head..n) wait, the first with `off` of its
 * bytes already written. */
struct dx__shq {
  uint32_t head, n, cap;
  size_t off;
  size_t bytes; /* unwritten bytes in the queue */
  dx__shbuf *b[];
};

dx__conn_rare *dx__conn_rare_get(dx_conn *c) {
  if (!c->rare && (c->rare = malloc(sizeof *c->rare))) *c->rare = (dx__conn_rare){0};
  return c->rare;
}

int dx__conn_set_ext(dx_conn *c, dx__conn_ext *e) {
  if (!e && !c->rare) return 0;
  dx__conn_rare *r = dx__conn_rare_get(c);
  if (!r) return DX_ENOMEM;
  r->ext = e;
  return 0;
}

int dx__conn_set_protocol(dx_conn *c, const char *p, size_t n) {
  dx__conn_rare *r = dx__conn_rare_get(c);
  char *copy = r ? strndup(p, n) : NULL;
  if (!copy) return DX_ENOMEM;
  free(r->protocol);
  r->protocol = copy;
  return 0;
}

static dx__shq *shq_of(const dx_conn *c) { return c->rare ? c->rare->shq : NULL; }
static size_t shq_bytes(const dx_conn *c) {
  dx__shq *q = shq_of(c);
  return q ? q->bytes : 0;
}

/* dx_conn_buffered_amount, inlined where every delivery asks. */
static inline size_t buffered(const dx_conn *c) {
  size_t n = dx__session_out_bytes(&c->sess) + shq_bytes(c);
  /* Only TLS holds bytes of its own (plain TCP has no impl). */
  return c->tr.impl ? n + dx__tr_ops(&c->tr)->pending((dx__transport *)&c->tr) : n;
}

static void shq_free(dx_conn *c) {
  dx__shq *q = shq_of(c);
  if (!q) return;
  for (uint32_t i = q->head; i < q->n; i++) dx__shbuf_unref(q->b[i]);
  free(q);
  c->rare->shq = NULL;
}

/* Appends b (taking a reference). 0 or DX_ENOMEM. */
static int shq_push(dx_conn *c, dx__shbuf *b) {
  dx__conn_rare *r = dx__conn_rare_get(c);
  if (!r) return DX_ENOMEM;
  dx__shq *q = r->shq;
  if (q && q->head > 0 && q->n == q->cap) {
    memmove(q->b, q->b + q->head, (q->n - q->head) * sizeof q->b[0]);
    q->n -= q->head;
    q->head = 0;
  }
  if (!q || q->n == q->cap) {
    uint32_t cap = q ? q->cap * 2 : 4;
    dx__shq *nq = realloc(q, sizeof *q + cap * sizeof q->b[0]);
    if (!nq) return DX_ENOMEM;
    if (!q) *nq = (dx__shq){0};
    nq->cap = cap;
    r->shq = q = nq;
  }
  b->refs++;
  q->b[q->n++] = b;
  q->bytes += b->len;
  return 0;
}

/* Marks n bytes of the shared queue written; returns how many of n it
 * took (the rest belong to the session's output). */
static size_t shq_consumed(dx_conn *c, size_t n) {
  dx__shq *q = shq_of(c);
  size_t took = 0;
  while (q && q->head < q->n && n > 0) {
    dx__shbuf *b = q->b[q->head];
    size_t left = b->len - q->off;
    size_t k = n < left ? n : left;
    q->off += k;
    q->bytes -= k;
    took += k;
    n -= k;
    if (q->off < b->len) break;
    dx__shbuf_unref(b);
    q->head++;
    q->off = 0;
  }
  if (q && q->head == q->n) {
    /* Drained. A subscriber keeps its (small) queue for the next publish,
     * which would otherwise cost a malloc and a free per burst; anyone
     * else gives the memory back, so an idle connection holds none. */
    if (c->rare->ext) {
      q->head = q->n = 0;
      q->off = 0;
    } else {
      shq_free(c);
    }
  }
  return took;
}

/* At most this many shared frames go in one writev (IOV_MAX is 1024). */
#define DX__SHQ_IOV 64

/* ---- lifecycle ---------------------------------------------------------- */

static void on_io(dx__io *io, uint32_t events);
static void on_timer(dx__timer *t);
static void on_heartbeat(dx__timer *t);
static int send_direct(dx_conn *c, int opcode, const void *data, size_t len);

/* A frame may skip the output block (send_direct, send_batched_ping): a
 * server's (unmasked) frame on plain TCP with nothing queued ahead of it. */
static inline int direct_ok(const dx_conn *c) {
  return !c->masks && !c->tr.impl && !c->connecting && !dx__session_out_bytes(&c->sess) &&
         !shq_bytes(c);
}

/* A heartbeat ping of c's may wait in the loop's write batch (see
 * on_heartbeat): it leaves before anything else touches the socket, so
 * that no byte overtakes it and no descriptor closes under it. */
static inline void settle_batch(dx_conn *c) {
  if (c->ping_batched) dx__batch_flush(dx__loop_batch(dx__conn_loop(c)));
}
static void run_flush(dx__task *t);

static void run_release(dx__task *t) {
  dx_conn *c = CONTAINER(t, dx_conn, release_task);
  /* Its flush task still waits on the next iteration's list (a read
   * deferred for fairness): that task frees the memory when it runs. Not
   * queued again here: that would take the loop from the endpoint, which a
   * server freed in this iteration takes with it. */
  if (dx__task_queued(&c->flush_task)) {
    c->release_waits = 1;
    return;
  }
  dx__session_deinit(&c->sess);
  shq_free(c);
  if (!c->opened) free(c->hs);
  if (!c->path_inline) free(c->path);
  if (c->rare) {
    free(c->rare->protocol);
    free(c->rare);
  }
  /* Only an endpoint of its own may be read here: a server may have been
   * freed, its endpoint with it, since this connection finished. */
  if (c->owns_ep) {
    dx__endpoint_deinit((dx__endpoint *)c->ep);
    free((void *)c->ep);
  }
  free(c);
}

void dx__conn_cut(dx_conn *c) {
  c->silent = 1;
  dx__conn_finish(c, DX_WHY_LOCAL, DX_CLOSE_ABNORMAL, "cut");
}

static void cut(dx__handle *h) { dx__conn_cut(CONTAINER(h, dx_conn, handle)); }

/* The cut function is the kind of handle: the loop lists connections
 * apart from other handles (a Redis engine's). */
dx_conn *dx__loop_conns(dx_loop *l) {
  dx__handle *h = dx__loop_handles(l, cut);
  return h ? CONTAINER(h, dx_conn, handle) : NULL;
}
dx_conn *dx__conn_next(const dx_conn *c) {
  return c->handle.next ? CONTAINER(c->handle.next, dx_conn, handle) : NULL;
}

/* What starting a connection takes once its transport is set: the role's
 * bits, the timers, the epoll registration, the loop's list. 0, DX_ENOMEM
 * or DX_EIO with nothing held (the transport is the caller's to undo). */
static int begin(dx_conn *c, dx_loop *l, const dx__endpoint *ep, uint32_t events) {
  c->ep = ep;
  c->user = ep->opt.user;
  const dx__conn_owner *owner = ep->owner;
  c->masks = owner->role == DX__ROLE_CLIENT;
  c->closes_first = owner->closes_first != 0;
  c->close_owed = owner->held_from_start != 0;
  c->owns_ep = owner->conn_owns_endpoint != 0;
  dx__io_set_cb(&c->tr.io, on_io);
  c->flush_task.run = run_flush;
  c->phase = DX__P_HANDSHAKE;
  dx__timer_init(&c->timer, on_timer);
  dx__timer_init(&c->hb_timer, on_heartbeat);
  dx__session_init(&c->sess, &ep->scfg, &session_ops);
  /* Room in the timer heap for both embedded timers, taken now, so that
   * arming them later (a deadline, a heartbeat) can never fail and leave
   * the connection without one. */
  if (dx__timer_reserve(l, 2)) return DX_ENOMEM;
  if (dx__handle_add(l, &c->handle, cut)) {
    dx__timer_unreserve(l, 2);
    return DX_ENOMEM;
  }
  if (dx__io_start(l, &c->tr.io, events)) {
    dx__handle_remove(l, &c->handle);
    dx__timer_unreserve(l, 2);
    return DX_EIO;
  }
  dx__loop_ref(l);
  if (!c->masks) { /* a server's connection: its counters */
    dx__count(&dx__endpoint_stats(ep)->accepted, 1);
    dx__conn_set_stat_state(c, DX__ST_CONNECTING);
  }
  dx__timer_start(l, &c->timer, ep->opt.handshake_timeout_ms);
  return 0;
}

int dx__conn_start(dx_conn *c, dx_loop *l, const dx__endpoint *ep, int fd,
                   uint32_t events, const char *tls_host) {
  c->tr.io.fd = fd;
  c->tr.impl = NULL;
  int server = ep->owner->role == DX__ROLE_SERVER;
  if (ep->tls && dx__tls_start(&c->tr, ep->tls, fd, server, tls_host)) return DX_ENOMEM;
  int r = begin(c, l, ep, events);
  if (r) {
    /* Undo the TLS state but leave the descriptor to the caller. */
    c->tr.io.fd = -1;
    dx__tr_ops(&c->tr)->close(&c->tr);
    c->tr.io.fd = fd;
  }
  return r;
}

void dx__conn_read_now(dx_conn *c) { on_io(&c->tr.io, EPOLLIN); }

void dx__conn_set_stat_state(dx_conn *c, int st) {
  if (c->stat_state == st) return;
  dx__stats *s = dx__endpoint_stats(c->ep);
  if (c->stat_state) dx__uncount(&s->state[c->stat_state]);
  if (st) dx__count(&s->state[st], 1);
  c->stat_state = (uint8_t)st & 7u;
}

void dx__conn_finish(dx_conn *c, dx_why why, int code, const char *reason) {
  if (c->phase == DX__P_DONE) return;
  settle_batch(c);
  int owed = c->close_owed && !c->silent;
  c->phase = DX__P_DONE;
  dx__timer_stop(dx__conn_loop(c), &c->timer);
  dx__timer_stop(dx__conn_loop(c), &c->hb_timer);
  dx__timer_unreserve(dx__conn_loop(c), 2);
  dx__io_stop(dx__conn_loop(c), &c->tr.io);
  dx__tr_ops(&c->tr)->close(&c->tr);
  if (c->ep->owner->detach) c->ep->owner->detach(c);
  dx__handle_remove(dx__conn_loop(c), &c->handle);
  dx__loop_unref(dx__conn_loop(c));
  /* Out of its topics before on_close, so that what the application
   * publishes from there does not come back to it. */
  dx__conn_ext *ext = dx__conn_get_ext(c);
  if (ext) ext->release(c);
  if (!c->masks) {
    dx__conn_set_stat_state(c, DX__ST_NONE);
    if (!c->is_http && !c->handed_off) dx__count(&dx__endpoint_stats(c->ep)->closed[why], 1);
  }
  /* An HTTP connection: its layer lets go (and tells the application of a
   * request it still holds). */
  if (c->is_http && c->http) c->ep->opt.http_ops->end(c, c->silent);
  if (owed && c->ep->opt.on_close)
    c->ep->opt.on_close(c, code, reason ? reason : "", why, c->http_status);
  /* The handle left the loop's list above; its memory is the task's now. */
  c->release_task = (dx__task){NULL, run_release};
  dx__task_queue_last(dx__conn_loop(c), &c->release_task);
}

/* The end of a connection whose closing handshake (or failure) already
 * decided why; the code and reason follow from it. */
static void finish_decided(dx_conn *c) {
  dx__session *s = &c->sess;
  if (!c->why_set) {
    dx__conn_finish(c, DX_WHY_TRANSPORT_CLOSE, DX_CLOSE_ABNORMAL,
                    "connection closed without a close frame");
    return;
  }
  switch (c->why) {
    case DX_WHY_PEER:
      dx__conn_finish(c, DX_WHY_PEER, dx__session_received_code(s),
                      dx__session_received_reason(s));
      break;
    case DX_WHY_LOCAL: {
      /* The code and reason we sent, however the closing handshake ended
       * (the peer's reply, TCP's end, or the close deadline). */
      int code = dx__session_sent_code(s);
      dx__conn_finish(c, DX_WHY_LOCAL, code ? code : DX_CLOSE_NO_STATUS,
                      dx__session_sent_reason(s));
      break;
    }
    case DX_WHY_PROTOCOL_ERROR: {
      int code = dx__session_sent_code(s);
      dx__conn_finish(c, DX_WHY_PROTOCOL_ERROR, code, dx__session_fail_reason(s));
      break;
    }
    case DX_WHY_SERVER_SHUTDOWN:
      dx__conn_finish(c, DX_WHY_SERVER_SHUTDOWN, DX_CLOSE_GOING_AWAY, "server shutting down");
      break;
    case DX_WHY_INTERNAL_ERROR: {
      int code = dx__session_sent_code(s);
      dx__conn_finish(c, DX_WHY_INTERNAL_ERROR, code ? code : DX_CLOSE_ABNORMAL, "out of memory");
      break;
    }
    default:
      dx__conn_finish(c, (dx_why)c->why, DX_CLOSE_ABNORMAL, "");
  }
}

void dx__conn_want_flush(dx_conn *c) { dx__task_queue(dx__conn_loop(c), &c->flush_task); }

int dx__conn_write_raw(dx_conn *c, const void *p, size_t n, int then_close) {
  int r = dx__session_queue_raw(&c->sess, p, n);
  if (r) return r;
  if (then_close) c->close_after_flush = 1;
  dx__conn_want_flush(c);
  return 0;
}

/* Once a connection leaves OPEN, for whatever reason, it has one deadline:
 * the close timeout from that moment. Armed once and never moved, so no
 * peer can stretch it (a byte trickled every few hundred ms used to re-arm
 * it), whether our output drains or not. */
static void close_deadline(dx_conn *c) {
  if (c->stat_state == DX__ST_OPEN) dx__conn_set_stat_state(c, DX__ST_CLOSING);
  if (c->deadline_set) return;
  c->deadline_set = 1;
  dx__timer_start(dx__conn_loop(c), &c->timer, c->ep->opt.close_timeout_ms);
}

/* Reads again next iteration, after the other connections: the socket
 * may hold more, or TLS may hold decrypted input that epoll cannot see. */
static void read_next_iteration(dx_conn *c) {
  c->read_more = 1;
  dx__task_queue_next(dx__conn_loop(c), &c->flush_task);
}

/* The events to wait for: input unless reading is paused for a full
 * output queue, and writability while output waits. */
static void set_interest(dx_conn *c, int want_out) {
  uint32_t ev = (c->rx_paused || c->rx_held ? 0u : (uint32_t)EPOLLIN) |
                (want_out ? (uint32_t)EPOLLOUT : 0u);
  if (ev != c->tr.io.events) dx__io_update(dx__conn_loop(c), &c->tr.io, ev);
}

void dx__conn_pause_input(dx_conn *c, int paused) {
  if (c->rx_held == !!paused || c->phase == DX__P_DONE) return;
  c->rx_held = !!paused;
  set_interest(c, (c->tr.io.events & EPOLLOUT) != 0);
  if (!paused && c->tr.impl) {
    /* TLS may hold decrypted input that epoll cannot see. */
    read_next_iteration(c);
  }
}

void dx__conn_end_after_output(dx_conn *c) {
  if (c->phase == DX__P_DONE) return;
  c->phase = DX__P_LINGER;
  c->close_after_flush = 1;
  close_deadline(c);
  dx__conn_want_flush(c);
}

/* After our last bytes: send FIN and wait (bounded) for the peer's, so an
 * unread tail of input never turns our close into a reset that could
 * destroy the close frame in flight. */
static void linger(dx_conn *c) {
  settle_batch(c);
  c->phase = DX__P_LINGER;
  c->fin_sent = 1;
  c->rx_paused = c->rx_held = 0; /* what comes now is read only to find the FIN */
  dx__tr_ops(&c->tr)->shutdown(&c->tr);
  /* TLS: close_notify may still sit in the transport, FIN behind it. */
  set_interest(c, dx__tr_pending(&c->tr) != 0);
  close_deadline(c);
}

static void transport_failed(dx_conn *c) {
  /* With both close frames through (or our failure of the connection
   * sent), the connection's end is decided: a reset or error from the peer
   * now changes nothing (RFC 6455 §7.1.1: a peer may close TCP any way it
   * likes once the closing handshake is done). */
  if (c->phase == DX__P_LINGER ||
      (c->phase == DX__P_OPEN && dx__session_state(&c->sess) == DX__S_CLOSED)) {
    finish_decided(c);
    return;
  }
  char why[160];
  dx__tr_fault fault = dx__tr_ops(&c->tr)->error(&c->tr, why, sizeof why);
  /* A failed TLS handshake reports 1015 (RFC 6455 §7.4.1), and is a
   * transport error even though the WebSocket handshake had not started.
   * Any other failure is 1006: during the WebSocket handshake it failed
   * the handshake. */
  int tls_handshake = fault == DX__TR_TLS_HANDSHAKE_FAILED;
  int code = tls_handshake ? DX_CLOSE_TLS : DX_CLOSE_ABNORMAL;
  int handshake = c->phase == DX__P_HANDSHAKE && !tls_handshake;
  dx__conn_finish(c, handshake ? DX_WHY_HANDSHAKE_FAILED : DX_WHY_TRANSPORT_ERROR, code, why);
}

/* After output left: the drain callback is owed once the queue is back at
 * the low-water mark. */
static void drained(dx_conn *c) {
  if (!c->above_high || c->phase != DX__P_OPEN) return;
  if (dx_conn_buffered_amount(c) > c->ep->opt.low_water) return;
  c->above_high = 0;
  if (c->ep->opt.on_drain) c->ep->opt.on_drain(c);
}

/* 1 when the kernel holds no unread input for the socket: closing it then
 * sends a FIN, not a reset (a reset could destroy our close frame while it
 * is still in flight). A peer may legally send a ping or pong after its
 * close frame, and a read can stop exactly at the buffer's size. */
static int nothing_unread(const dx_conn *c) {
  int unread = 0;
  return ioctl(c->tr.io.fd, FIONREAD, &unread) == 0 && unread == 0;
}

/* 1 when flush() would find nothing to write and nothing to change: a
 * plain open connection with no output, reading, owing no drain or close.
 * The end-of-iteration flush of a connection whose replies already left
 * from on_io is such a one; the test costs a tenth of flush()'s own. */
static inline int flush_idle(const dx_conn *c) {
  return c->phase == DX__P_OPEN && !c->tr.impl && !dx__session_out_bytes(&c->sess) &&
         !shq_bytes(c) && !c->close_after_flush && !c->above_high && !c->rx_paused &&
         c->tr.io.events == (c->rx_held ? 0u : (uint32_t)EPOLLIN);
}

static void flush(dx_conn *c) {
  if (c->phase == DX__P_DONE || c->connecting) return;
  settle_batch(c);
  /* Bytes the transport already holds (TLS records) go first. */
  if (dx__tr_pending(&c->tr) && dx__tr_writev(&c->tr, NULL, 0) == DX_EIO) {
    transport_failed(c);
    return;
  }
  const uint8_t *p;
  /* An HTTP response body is produced as the socket takes it: a few rounds
   * here, then the rest when the socket is writable again. */
  int rounds = 0;
again:;
  size_t n = dx__session_pending(&c->sess, &p) + shq_bytes(c);
  if (n && !dx__tr_pending(&c->tr)) {
    /* Shared frames first (they were queued before anything the session
     * holds), then the session's own output: one writev. */
    struct iovec iov[DX__SHQ_IOV + 1];
    int k = 0;
    size_t own = dx__session_pending(&c->sess, &p);
    dx__shq *q = shq_of(c);
    if (q) {
      for (uint32_t i = q->head; i < q->n && k < DX__SHQ_IOV; i++, k++) {
        size_t off = i == q->head ? q->off : 0;
        iov[k] = (struct iovec){q->b[i]->data + off, q->b[i]->len - off};
      }
    }
    /* The session's bytes only once every shared frame is in the call. */
    if (own && (!q || q->n - q->head <= DX__SHQ_IOV)) iov[k++] = (struct iovec){(void *)p, own};
    ssize_t w = dx__tr_writev(&c->tr, iov, k);
    if (w == DX_EIO) {
      transport_failed(c);
      return;
    }
    if (w > 0) {
      size_t rest = (size_t)w - shq_consumed(c, (size_t)w);
      if (rest) dx__session_consumed_to(&c->sess, rest, spare_slot(c));
    }
    n = dx__session_pending(&c->sess, &p) + shq_bytes(c);
    /* 0 accepted: a TLS handshake waits for the peer; the next read
     * retries. Waiting for writability would spin. */
    if (w == 0 && !dx__tr_pending(&c->tr)) return;
  }
  if (!n && c->phase == DX__P_HTTP && !dx__tr_pending(&c->tr)) {
    c->ep->opt.http_ops->writable(c);
    if (c->phase == DX__P_DONE) return;
    if (dx__session_out_bytes(&c->sess) && ++rounds < 8) goto again;
    n = dx__session_pending(&c->sess, &p);
  }
  if (c->rx_paused && dx_conn_buffered_amount(c) <= resume_mark(&c->ep->opt)) {
    c->rx_paused = 0;
    /* The read that paused may have stopped with input inside TLS (a
     * record's plaintext, records read ahead) and none left in the
     * socket: epoll would never report it. */
    if (c->tr.impl && !c->rx_held) {
      read_next_iteration(c);
    }
  }
  if (n || dx__tr_pending(&c->tr)) {
    set_interest(c, 1);
    drained(c);
    return;
  }
  if (c->close_after_flush && !c->fin_sent) {
    /* RFC 6455 §7.1.1: with both close frames through, the server closes
     * TCP, and the peer's FIN is left to the kernel instead of waking us
     * once more (a wake-up the peer pays for too). It lingers instead when
     * input is still unread (a close then resets), under TLS (to send
     * close_notify), and after failing the connection (the peer may still
     * be sending). */
    if (c->closes_first && !c->tr.impl && dx__session_state(&c->sess) == DX__S_CLOSED &&
        nothing_unread(c)) {
      finish_decided(c);
      return;
    }
    linger(c);
  } else {
    set_interest(c, 0);
  }
  drained(c);
}

static void on_readable(dx_conn *c);

static void run_flush(dx__task *t) {
  dx_conn *c = CONTAINER(t, dx_conn, flush_task);
  if (c->release_waits) {
    run_release(&c->release_task);
    return;
  }
  if (c->read_more) { /* the rest of a read deferred for fairness */
    c->read_more = 0;
    if (c->phase != DX__P_DONE) on_readable(c);
  }
  if (!flush_idle(c)) flush(c);
}

/* Output a peer made us queue by what it sent (pongs, close replies) counts
 * like any other: at the pause mark we stop reading it, so the kernel
 * pushes back on the peer as a TCP proxy would; past the cap the
 * slow-consumer policy applies (a close frame may pass the cap: it is how
 * the connection ends). */
static void check_output(dx_conn *c) {
  const dx_options *o = &c->ep->opt;
  size_t queued = buffered(c);
  if (queued < pause_mark(o)) return;
  c->rx_paused = 1;
  set_interest(c, 1);
  if (queued > dx__max_buffered(o) && is_open(c) && o->slow_policy != DX_SLOW_DROP)
    dx_close(c, o->slow_policy == DX_SLOW_CLOSE_RETRY ? 1013 : DX_CLOSE_POLICY,
             "slow consumer: output buffer limit reached");
}

/* Looks at the session after input or a local action and moves the
 * connection on: the closing handshake done or the connection failed. */
static void after_session(dx_conn *c) {
  if (c->phase != DX__P_OPEN) return;
  int st = dx__session_state(&c->sess);
  /* Out of OPEN (a close either way, or a failure): the deadline starts,
   * whether or not our output ever drains. */
  if (st != DX__S_OPEN) close_deadline(c);
  /* RFC 6455 §7.1.1: with both close frames through, the server closes
   * TCP first; a client waits for it (until the deadline). */
  if (st == DX__S_CLOSED && c->closes_first) c->close_after_flush = 1;
  if (dx__session_out_bytes(&c->sess)) output_queued(c);
  else if (c->close_after_flush) flush(c);
}

static void feed(dx_conn *c, uint8_t *buf, size_t n) {
  void **spare = spare_slot(c);
  dx__session_out_lend(&c->sess, spare);
  ssize_t r = dx__session_recv(&c->sess, buf, n);
  /* Nothing queued (no reply, or the connection ended): back at once. */
  dx__session_out_return(&c->sess, spare);
  if (c->phase == DX__P_DONE) return;
  check_output(c);
  if (r < 0) {
    if (!c->why_set) {
      /* Our own shortage of memory is no fault of the peer's. */
      c->why = r == DX_ENOMEM ? DX_WHY_INTERNAL_ERROR : DX_WHY_PROTOCOL_ERROR;
      c->why_set = 1;
    }
    c->close_after_flush = 1;
  }
  after_session(c);
}

/* Arms the heartbeat timer for about `ms` from now: the deadline is rounded
 * up to a slot of 1/64 of the ping interval (at most 500 ms) on the loop's
 * clock, so the heartbeats of many connections fall due together and leave
 * in one loop wake-up instead of one wake-up each. An idle loop's cost is
 * mostly waking up (10,000 connections at 25 s: 400 pings a second, spread
 * evenly, were 400 wake-ups of a sleeping thread). */
static void heartbeat_arm(dx_conn *c, uint64_t ms) {
  uint64_t slot = c->ep->opt.ping_interval_ms / 64;
  if (slot > 500) slot = 500;
  if (slot > 1) {
    uint64_t now = dx__loop_now(dx__conn_loop(c)), due = now + ms;
    due += slot - 1 - (due + slot - 1) % slot;
    ms = due - now;
  }
  dx__timer_start(dx__conn_loop(c), &c->hb_timer, ms);
}

/* The batch's word on a batched ping: what the
 * socket did not take is queued behind nothing, as send_direct does, and a
 * failure surfaces at that flush. */
static void batched_ping_done(void *ud, int res, const uint8_t *bytes, size_t len) {
  dx_conn *c = ud;
  c->ping_batched = 0;
  if (res == (int)len) return;
  size_t done = res > 0 ? (size_t)res : 0;
  if (dx__session_queue_raw(&c->sess, bytes + done, len - done)) {
    /* Out of memory: with part of the frame on the wire the stream is
     * broken; with none, the ping is lost and the timeout decides. */
    if (done) dx__tr_ops(&c->tr)->shutdown(&c->tr);
    return;
  }
  dx__conn_want_flush(c);
}

/* A server's ping on plain TCP with nothing queued ahead of it goes into
 * the loop's write batch: the slot's pings leave in one system call (on
 * this machine that halves what a ping costs the kernel beyond its TCP
 * work; bench/README.md "Heartbeats"). 1 when queued. */
static int send_batched_ping(dx_conn *c, uint32_t now) {
  if (!direct_ok(c)) return 0;
  uint8_t frame[DX__FRAME_MAX_HEADER + sizeof now];
  size_t h = dx__frame_write_header(frame, 1, 0, DX__OP_PING, NULL, sizeof now);
  memcpy(frame + h, &now, sizeof now);
  if (!dx__batch_send(dx__loop_batch(dx__conn_loop(c)), c->tr.io.fd, frame, h + sizeof now,
                      batched_ping_done, c))
    return 0;
  c->ping_batched = 1;
  return 1;
}

/* The heartbeat, two alternating deadlines on one embedded timer: at the
 * interval a ping leaves; at the timeout after it, the connection must have
 * shown a sign of life (any bytes at all) since the ping. Reading costs one
 * store (last_rx), never a timer update. */
static void on_heartbeat(dx__timer *t) {
  dx_conn *c = CONTAINER(t, dx_conn, hb_timer);
  const dx_options *o = &c->ep->opt;
  if (c->connecting) { /* until open, this timer paces the connect attempts */
    c->ep->owner->attempt_expired(c);
    return;
  }
  if (c->phase != DX__P_OPEN || dx__session_state(&c->sess) != DX__S_OPEN) return;
  uint32_t now = (uint32_t)dx__loop_now(dx__conn_loop(c));
  if (c->hb_waiting) {
    if ((int32_t)(c->last_rx - c->hb.ping_sent) < 0) {
      dx__conn_finish(c, DX_WHY_PING_TIMEOUT, DX_CLOSE_ABNORMAL, "no pong within the ping timeout");
      return;
    }
    c->hb_waiting = 0;
    uint32_t waited = now - c->hb.ping_sent;
    if (o->ping_interval_ms > waited) {
      heartbeat_arm(c, o->ping_interval_ms - waited);
      return;
    }
    /* The next ping is due already (a timeout at or past the interval):
     * it leaves now, not one more pass through the timer heap later. */
  }
  c->hb.ping_sent = now;
  c->hb_waiting = 1;
  /* A peer that reads nothing gets no more pings queued past the cap; the
   * timeout below still ends it unless it shows a sign of life. */
  if (dx_conn_buffered_amount(c) + 6 <= dx__max_buffered(o)) {
    /* Usually nothing else is queued: the 6 bytes go straight to the
     * socket, with no output block to allocate and free and no flush task
     * (10,000 connections pinging every 2 s: malloc, brk and the page
     * faults of the blocks were a fifth of the server's CPU). */
    if (send_batched_ping(c, now)) {
      /* leaves when the loop flushes its batch, after this slot's timers */
    } else if (send_direct(c, DX__OP_PING, &now, sizeof now)) {
      if (dx__session_out_bytes(&c->sess)) dx__conn_want_flush(c);
    } else if (dx__session_control(&c->sess, DX__OP_PING, &now, sizeof now) == 0) {
      dx__conn_want_flush(c);
    }
  }
  heartbeat_arm(c, o->ping_timeout_ms);
}

void dx__conn_opened(dx_conn *c, uint8_t *rest, size_t n) {
  free(c->hs);
  c->opened = 1; /* the union now holds the heartbeat's clocks */
  c->hb.ping_sent = 0;
  c->hb.rtt = -1;
  c->phase = DX__P_OPEN;
  c->close_owed = 1;
  if (!c->masks) { /* a server's connection: its counters */
    dx__count(&dx__endpoint_stats(c->ep)->opened, 1);
    dx__conn_set_stat_state(c, DX__ST_OPEN);
  }
  c->last_rx = c->last_msg = (uint32_t)dx__loop_now(dx__conn_loop(c));
  dx__timer_stop(dx__conn_loop(c), &c->timer);
  if (c->ep->opt.idle_timeout_ms) dx__timer_start(dx__conn_loop(c), &c->timer, c->ep->opt.idle_timeout_ms);
  if (c->ep->opt.ping_interval_ms)
    heartbeat_arm(c, c->ep->opt.ping_interval_ms);
  dx__conn_want_flush(c);
  if (c->ep->opt.on_open) c->ep->opt.on_open(c);
  if (c->phase == DX__P_OPEN) after_session(c);
  if (n && c->phase == DX__P_OPEN) feed(c, rest, n);
}

/* The first request is not an upgrade: the HTTP layer takes the
 * connection over, with the head and what followed it. */
static void http_begin(dx_conn *c, const char *head, size_t len, const uint8_t *rest, size_t n) {
  dx__head_buf *hs = c->hs; /* head may point into it: freed once the layer copied it */
  c->hs = NULL; /* and c->http, which the layer sets */
  c->is_http = 1;
  c->phase = DX__P_HTTP;
  dx__conn_set_stat_state(c, DX__ST_HTTP);
  c->ep->opt.http_ops->begin(c, head, len, rest, n);
  free(hs);
}

/* The head being decided on this thread (by the owner's head hook, and
 * the on_accept it calls), with what followed it: what a hand-off to
 * another loop takes along. Per thread like `relay`. */
static __thread struct head_in_hand {
  dx_conn *c;
  const char *head;
  size_t head_len;
  const uint8_t *rest;
  size_t n;
} deciding;

/* Collects the HTTP head. The common case (the whole head in one read) is
 * parsed straight from the loop's buffer; only a head split across reads
 * is copied. */
static void handshake_input(dx_conn *c, uint8_t *buf, size_t n) {
  size_t limit = c->ep->opt.max_header;
  const char *head;
  size_t head_len, used;
  if (!c->hs) {
    /* A request line starts with a method token, a status line with
     * "HTTP/"; anything else (0x16 is a TLS ClientHello on a plaintext
     * port) is refused at once rather than after the handshake timeout. */
    if (!(buf[0] >= 'A' && buf[0] <= 'Z')) {
      char why[40];
      snprintf(why, sizeof why, "not an HTTP %s", c->ep->owner->head_name);
      c->ep->owner->refuse(c, 400, buf[0] == 0x16 ? "TLS handshake on a plaintext port" : why);
      return;
    }
    head_len = dx__http_head_end((const char *)buf, n, 0);
    if (head_len) {
      head = (const char *)buf;
      used = head_len;
      goto complete;
    }
    if (n > limit) goto too_large;
  }
  size_t old = c->hs ? c->hs->len : 0;
  size_t take = n < limit - old ? n : limit - old;
  if (old + take > (c->hs ? c->hs->cap : 0)) {
    /* Grow by doubling rather than taking the whole limit at once: a peer
     * that trickles a head (or stalls, slowloris-style) holds only what it
     * sent, never max_header per connection. */
    size_t cap = c->hs ? c->hs->cap : 512;
    while (cap < old + take) cap *= 2;
    if (cap > limit) cap = limit;
    dx__head_buf *p = realloc(c->hs, sizeof *p + cap);
    if (!p) {
      dx__conn_finish(c, DX_WHY_HANDSHAKE_FAILED, DX_CLOSE_ABNORMAL, "out of memory");
      return;
    }
    if (!c->hs) p->len = 0;
    p->cap = (uint32_t)cap;
    c->hs = p;
  }
  memcpy(c->hs->data + old, buf, take);
  c->hs->len += (uint32_t)take;
  head_len = dx__http_head_end(c->hs->data, c->hs->len, old);
  if (!head_len) {
    if (c->hs->len >= limit) goto too_large;
    return;
  }
  head = c->hs->data;
  used = head_len - old;
complete:
  if (head_len > limit) goto too_large;
  /* Kept and put back: a callback may drive another connection's head. */
  struct head_in_hand outer = deciding;
  deciding.c = c;
  deciding.head = head;
  deciding.head_len = head_len;
  deciding.rest = buf + used;
  deciding.n = n - used;
  int verdict = c->ep->owner->head(c, head, head_len);
  deciding = outer;
  switch (verdict) {
    case 0: dx__conn_opened(c, buf + used, n - used); break;
    case 1: http_begin(c, head, head_len, buf + used, n - used); break;
  }
  return;
too_large:;
  char why[80];
  snprintf(why, sizeof why, "%s head exceeds the %zu-byte limit", c->ep->owner->head_name, limit);
  c->ep->owner->refuse(c, 431, why);
}

/* ---- handing off to another loop (endpoint.h) ---------------------------- */

struct dx__handoff {
  dx__transport tr;
  void *user;
  size_t len; /* the head, then the bytes that followed it */
  uint8_t data[];
};

static const dx__transport no_transport = {{-1, 0, 0}, NULL};

int dx__conn_refuse(dx_conn *c, int status, const char *why) {
  if (c->phase != DX__P_HANDSHAKE) return DX_ESTATE;
  c->ep->owner->refuse(c, status, why);
  return 0;
}

int dx__conn_hand_off(dx_conn *c, dx__handoff_post post, void *ud) {
  settle_batch(c);
  if (deciding.c != c || c->masks || c->phase != DX__P_HANDSHAKE) return DX_ESTATE;
  size_t n = deciding.head_len + deciding.n;
  dx__handoff *h = malloc(sizeof *h + n);
  if (!h) return DX_ENOMEM;
  memcpy(h->data, deciding.head, deciding.head_len);
  if (deciding.n) memcpy(h->data + deciding.head_len, deciding.rest, deciding.n);
  h->len = n;
  h->user = NULL;
  /* Off this loop's epoll before the other loop may see the socket: from
   * the post on, it is that loop's alone. */
  uint32_t events = c->tr.io.events;
  dx__io_stop(dx__conn_loop(c), &c->tr.io);
  h->tr = c->tr;
  int r = post(h, ud);
  if (r) {
    free(h);
    if (dx__io_start(dx__conn_loop(c), &c->tr.io, events)) {
      dx__conn_finish(c, DX_WHY_TRANSPORT_ERROR, DX_CLOSE_ABNORMAL, "cannot watch the socket");
      return DX_EIO;
    }
    return r;
  }
  /* What is left here is a husk: no socket, no TLS, nothing to report. */
  c->tr = no_transport;
  c->handed_off = 1;
  c->silent = 1;
  dx__conn_finish(c, DX_WHY_LOCAL, DX_CLOSE_ABNORMAL, "handed off to another loop");
  return 0;
}

void dx__handoff_set_user(dx__handoff *h, void *user) { h->user = user; }
void *dx__handoff_user(const dx__handoff *h) { return h->user; }

void dx__handoff_free(dx__handoff *h) {
  if (!h) return;
  dx__tr_ops(&h->tr)->close(&h->tr);
  free(h);
}

int dx__conn_adopt(dx_conn *c, dx_loop *l, const dx__endpoint *ep, dx__handoff *h) {
  if ((h->tr.impl != NULL) != (ep->tls != NULL)) return DX_EINVAL;
  c->tr = h->tr;
  int r = begin(c, l, ep, EPOLLIN);
  if (r) {
    c->tr = no_transport;
    return r;
  }
  h->tr = no_transport;
  return 0;
}

void dx__conn_adopted_input(dx_conn *c, dx__handoff *h) {
  c->last_rx = (uint32_t)dx__loop_now(dx__conn_loop(c));
  handshake_input(c, h->data, h->len);
  free(h);
  /* TLS may hold decrypted input already, which epoll cannot see. */
  if (c->phase != DX__P_DONE && c->tr.impl) {
    read_next_iteration(c);
  }
}

static void on_eof(dx_conn *c) {
  if (c->phase == DX__P_HTTP) {
    c->ep->opt.http_ops->eof(c);
    return;
  }
  if (c->phase == DX__P_HANDSHAKE) {
    dx__conn_finish(c, DX_WHY_HANDSHAKE_FAILED, DX_CLOSE_ABNORMAL,
                    "connection closed during the opening handshake");
    return;
  }
  finish_decided(c);
}

static void on_readable(dx_conn *c) {
  size_t cap;
  uint8_t *buf = dx__loop_rbuf(dx__conn_loop(c), &cap);
  for (int reads = 0;; reads++) {
    if (reads == DX__READ_BUDGET) {
      /* More may be waiting (in the socket, or decrypted inside TLS where
       * epoll cannot see it): come back next iteration, after the others. */
      read_next_iteration(c);
      break;
    }
    ssize_t n = dx__tr_read(&c->tr, buf, cap);
    if (n == DX_EINCOMPLETE) break;
    if (n == 0) {
      on_eof(c);
      return;
    }
    if (n < 0) {
      transport_failed(c);
      return;
    }
    c->last_rx = (uint32_t)dx__loop_now(dx__conn_loop(c));
    if (c->phase == DX__P_HANDSHAKE)
      handshake_input(c, buf, (size_t)n);
    else if (c->phase == DX__P_OPEN)
      feed(c, buf, (size_t)n);
    else if (c->phase == DX__P_HTTP)
      c->ep->opt.http_ops->input(c, buf, (size_t)n);
    /* In LINGER the bytes are read only to be dropped. */
    if (c->phase == DX__P_DONE) return;
    if ((size_t)n < cap || c->rx_paused || c->rx_held) break;
  }
  /* With TLS a read can produce output (handshake records) or unblock ours
   * (the handshake finished). */
  if (c->tr.impl && (dx__tr_pending(&c->tr) || dx__session_out_bytes(&c->sess)))
    dx__conn_want_flush(c);
}

static void on_io(dx__io *io, uint32_t events) {
  dx_conn *c = CONTAINER(io, dx_conn, tr.io);
  if (c->phase == DX__P_DONE) return;
  if (c->connecting) {
    /* Connected or refused (the socket), or resolved (the resolver's
     * eventfd stands in for the socket until then). */
    c->ep->owner->connected(c);
    return;
  }
  if (events & EPOLLOUT) flush(c);
  if (c->phase != DX__P_DONE && (events & (EPOLLIN | EPOLLHUP | EPOLLERR))) {
    dx_conn *outer = reading;
    reading = c;
    on_readable(c);
    reading = outer;
    /* Replies to this read leave now, in one send, rather than after the
     * whole event batch: a request/response peer gets its answer without
     * waiting for up to 255 other connections' callbacks. Sends and the
     * session queued them without the flush task (output_queued); what
     * other events queue for this socket later in the iteration queues
     * the task for the end-of-iteration flush. */
    if ((c->phase == DX__P_OPEN || c->phase == DX__P_HTTP) &&
        (dx__task_queued(&c->flush_task) || dx__session_out_bytes(&c->sess)))
      flush(c);
  }
}

static void on_timer(dx__timer *t) {
  dx_conn *c = CONTAINER(t, dx_conn, timer);
  switch (c->phase) {
    case DX__P_HANDSHAKE:
      if (c->hs && c->hs->len && c->ep->opt.http_ops && !c->masks) {
        /* Part of a request is in, and it may be an HTTP one: an HTTP
         * server tells its client why (408) rather than hanging up. */
        char why[100];
        snprintf(why, sizeof why, "408 Request Timeout: request head not received within %u ms",
                 c->ep->opt.handshake_timeout_ms);
        c->ep->owner->refuse(c, 408, why);
        break;
      }
      dx__conn_finish(c, DX_WHY_HANDSHAKE_FAILED, DX_CLOSE_ABNORMAL,
                      "opening handshake timed out");
      break;
    case DX__P_HTTP:
      c->ep->opt.http_ops->timer(c);
      break;
    case DX__P_OPEN:
      if (dx__session_state(&c->sess) == DX__S_OPEN) {
        /* While open, this timer is the idle timeout: no message either
         * way for that long ends the connection politely. */
        uint32_t idle = (uint32_t)dx__loop_now(dx__conn_loop(c)) - c->last_msg;
        uint32_t limit = c->ep->opt.idle_timeout_ms;
        if (idle >= limit)
          dx_close(c, DX_CLOSE_NORMAL, "idle timeout");
        else
          dx__timer_start(dx__conn_loop(c), t, limit - idle);
        break;
      }
      /* The peer never answered our close. */
      finish_decided(c);
      break;
    case DX__P_LINGER:
      /* The peer never closed TCP. */
      finish_decided(c);
      break;
  }
}

/* ---- public connection API ---------------------------------------------- */

/* OPEN: frames flow and no close was sent or received. Static, so every
 * send checks it without a call. */
static int is_open(const dx_conn *c) {
  return c->phase == DX__P_OPEN && dx__session_state(&c->sess) == DX__S_OPEN;
}

/* A message would pass the output cap: a consumer this slow would make us
 * hold unbounded memory, so its policy applies. Returns DX_EBUFFER. */
static int refuse_slow(dx_conn *c) {
  const dx_options *o = &c->ep->opt;
  if (o->slow_policy != DX_SLOW_DROP)
    dx_close(c, o->slow_policy == DX_SLOW_CLOSE_RETRY ? 1013 : DX_CLOSE_POLICY,
             "slow consumer: output buffer limit reached");
  return DX_EBUFFER;
}

int dx__conn_send_shared(dx_conn *c, dx__shbuf *b) {
  if (!is_open(c)) return DX_ESTATE;
  settle_batch(c); /* see dx_send_ex */
  const dx_options *o = &c->ep->opt;
  size_t queued = buffered(c);
  size_t cap = dx__max_buffered(o);
  if (queued > cap || b->len > cap - queued) return refuse_slow(c);
  /* Behind output the session already holds, the frame must follow it:
   * copy it there (that connection is writing anyway). Otherwise queue a
   * reference: no copy. */
  int r = dx__session_out_bytes(&c->sess) ? dx__session_queue_raw(&c->sess, b->data, b->len)
                                          : shq_push(c, b);
  if (r) return r;
  /* The peer's window now holds a message our compressor never saw. */
  if (b->compressed) dx__session_pmd_forget(&c->sess);
  c->last_msg = (uint32_t)dx__loop_now(dx__conn_loop(c));
  dx__conn_want_flush(c);
  if (queued + b->len > o->high_water) {
    c->above_high = 1;
    return DX_SEND_BACKPRESSURE;
  }
  return 0;
}

dx_ready_state dx_conn_state(const dx_conn *c) {
  switch (c->phase) {
    case DX__P_HANDSHAKE: return DX_CONNECTING;
    case DX__P_OPEN: return is_open(c) ? DX_OPEN : DX_CLOSING;
    case DX__P_LINGER: return DX_CLOSING;
    default: return DX_CLOSED;
  }
}

int dx_send_ex(dx_conn *c, dx_msg_type type, const void *data, size_t len,
               unsigned flags) {
  if (!c || (type != DX_TEXT && type != DX_BINARY) || (!data && len)) return DX_EINVAL;
  if (!is_open(c)) return DX_ESTATE;
  if (type == DX_TEXT && !is_relay(data, len) && dx__utf8_validate(data, len))
    return DX_EUTF8;
  /* A heartbeat ping may wait in the loop's write batch (a timer sends,
   * after the heartbeat's in the same wake-up): it leaves first, and what
   * the socket did not take of it is queued now, ahead of this frame, not
   * behind it when the batch flushes. */
  settle_batch(c);
  const dx_options *o = &c->ep->opt;
  /* The cap counts what will sit in the queue: the frame header too. (A
   * compressed message is counted at its uncompressed size.) Almost every
   * send has room for the largest header to spare; the exact header only
   * when it has not. `queued` may then stay the larger figure: below it
   * only screens the exact high-water test. */
  size_t cap = dx__max_buffered(o);
  size_t before = buffered(c);
  size_t queued = before + DX__FRAME_MAX_HEADER;
  if (queued > cap || len > cap - queued) {
    queued = before + dx__frame_header_size(len, c->masks);
    if (queued > cap || len > cap - queued) return refuse_slow(c);
  }
  int compress = dx__session_has_pmd(&c->sess) && !(flags & DX_SEND_NO_COMPRESS) &&
                 len >= o->pmd.threshold;
  int opcode = type == DX_TEXT ? DX__OP_TEXT : DX__OP_BINARY;
  /* A small frame goes into the room the output block has (inline); a
   * large one may go straight to the socket; the rest through the session. */
  int r = !compress && !dx__session_send_small(&c->sess, opcode, data, len)       ? 0
          : len >= DX__DIRECT_MIN && !compress && send_direct(c, opcode, data, len) ? 0
          : dx__session_send_ex(&c->sess, opcode, data, len, compress);
  if (r) return r;
  c->last_msg = (uint32_t)dx__loop_now(dx__conn_loop(c));
  dx__stats *st = dx__endpoint_stats(c->ep);
  dx__count(&st->msgs_out, 1);
  dx__count(&st->bytes_out, len);
  output_queued(c);
  /* (What was queued plus this message bounds the new amount, except that
   * deflate may grow incompressible data slightly.) */
  if ((compress || queued + len > o->high_water) && buffered(c) > o->high_water) {
    c->above_high = 1;
    return DX_SEND_BACKPRESSURE;
  }
  return 0;
}

/* A large message (or a heartbeat ping) on a plain-TCP connection whose
 * frames are not masked (a server's) with nothing queued ahead of it goes
 * straight from the caller's buffer to the socket (header and payload in
 * one writev); only what the socket does not take is copied, and then the
 * caller must queue a flush. Saves a copy of the whole message, and for a
 * ping the output block. (Masking would have to write the payload, which
 * is the caller's.) Returns 1 when it handled the frame, 0 when the normal
 * path must. */
static int send_direct(dx_conn *c, int opcode, const void *data, size_t len) {
  settle_batch(c);
  if (!direct_ok(c)) return 0;
  uint8_t hdr[DX__FRAME_MAX_HEADER + DX__CONTROL_MAX];
  size_t h = dx__frame_write_header(hdr, 1, 0, (unsigned)opcode, NULL, len);
  struct iovec iov[2] = {{hdr, h}, {(void *)data, len}};
  int k = 2;
  if (len <= DX__CONTROL_MAX) { /* a ping: one buffer, and send() is cheaper than sendmsg() */
    memcpy(hdr + h, data, len);
    data = hdr + h;
    iov[0].iov_len = h + len;
    k = 1;
  }
  ssize_t w = dx__tcp_writev(&c->tr, iov, k); /* plain TCP: tested above */
  /* An error surfaces on the next flush, outside the caller's dx_send. */
  size_t done = w > 0 ? (size_t)w : 0;
  if (done < h && dx__session_queue_raw(&c->sess, hdr + done, h - done)) {
    if (done == 0) return 0; /* nothing sent or queued: the normal path reports it */
    dx__tr_ops(&c->tr)->shutdown(&c->tr); /* part of a header on the wire: as below */
    return 1;
  }
  size_t off = done > h ? done - h : 0;
  if (off < len && dx__session_queue_raw(&c->sess, (const uint8_t *)data + off, len - off)) {
    /* Out of memory with part of a frame on the wire: the stream is
     * broken; let the transport end it. */
    dx__tr_ops(&c->tr)->shutdown(&c->tr);
    return 1;
  }
  return 1;
}

int dx_send(dx_conn *c, dx_msg_type type, const void *data, size_t len) {
  return dx_send_ex(c, type, data, len, 0);
}

int dx_ping(dx_conn *c, const void *data, size_t len) {
  if (!c || (!data && len) || len > 125) return DX_EINVAL;
  if (!is_open(c)) return DX_ESTATE;
  settle_batch(c); /* see dx_send_ex */
  if (dx_conn_buffered_amount(c) + 6 + len > dx__max_buffered(&c->ep->opt)) return DX_EBUFFER;
  int r = dx__session_control(&c->sess, DX__OP_PING, data, len);
  if (r == 0) dx__conn_want_flush(c);
  return r;
}

int dx_close(dx_conn *c, int code, const char *reason) {
  if (!c) return DX_EINVAL;
  /* A connection the application holds before it opens (a client's) may
   * be given up while connecting; a server's is the application's only
   * once open. */
  if (c->phase == DX__P_HANDSHAKE && c->close_owed) {
    dx__conn_finish(c, DX_WHY_LOCAL, DX_CLOSE_ABNORMAL, "connection attempt aborted");
    return 0;
  }
  if (!is_open(c)) return DX_ESTATE;
  settle_batch(c); /* see dx_send_ex (the idle timeout closes from a timer) */
  size_t rlen = reason ? strlen(reason) : 0;
  int r = dx__session_close(&c->sess, code, reason, rlen);
  if (r == DX_ENOMEM) {
    /* No memory for the close frame: end the connection now rather than
     * leave it OPEN with a close the caller believes started. */
    dx__conn_finish(c, DX_WHY_INTERNAL_ERROR, DX_CLOSE_ABNORMAL,
                    "out of memory queuing the close frame");
    return r;
  }
  if (r) return r;
  if (!c->why_set) {
    c->why = DX_WHY_LOCAL;
    c->why_set = 1;
  }
  close_deadline(c);
  dx__conn_want_flush(c);
  return 0;
}

void *dx_conn_user(const dx_conn *c) { return c->user; }
void dx_conn_set_user(dx_conn *c, void *user) { c->user = user; }
size_t dx_conn_buffered_amount(const dx_conn *c) { return buffered(c); }
int32_t dx_conn_rtt(const dx_conn *c) { return c->opened ? c->hb.rtt : -1; }
int dx__conn_set_path(dx_conn *c, const char *p, size_t n) {
  n = strnlen(p, n);
  if (n < sizeof c->path_in) {
    memcpy(c->path_in, p, n);
    c->path_in[n] = '\0';
    c->path_inline = 1;
    return 0;
  }
  if (!(c->path = strndup(p, n))) return DX_ENOMEM;
  c->path_inline = 0;
  return 0;
}

const char *dx_conn_path(const dx_conn *c) {
  if (c->path_inline) return c->path_in;
  return c->path ? c->path : "/";
}
const char *dx_conn_protocol(const dx_conn *c) {
  return c->rare && c->rare->protocol ? c->rare->protocol : "";
}
int dx_conn_compressed(const dx_conn *c) { return dx__session_has_pmd(&c->sess); }
dx_loop *dx_conn_loop(const dx_conn *c) { return dx__conn_loop(c); }
struct dx_sio *dx__conn_sio(const dx_conn *c) { return c->ep->opt.sio; }
