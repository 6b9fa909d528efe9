/* The reconnecting client: one ordinary client dx_conn at a time, a backoff
 * timer between them, and an optional queue of messages sent while no
 * connection is open.
 *
 * Every connection is made with a copy of the user's options whose on_open
 * and on_close are replaced by wrappers: they run the user's callback, then
 * the client's bookkeeping (flush the queue / decide whether and when to
 * try again). Everything else the user set passes straight through.
 *
 * Re-entrancy: user callbacks may call any dx_client_* function, including
 * dx_client_free(). Every function of ours that calls out counts itself in
 * `depth`; dx_client_free() inside such a call only marks the client, and
 * the outermost frame frees it on the way out (leave()). */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "endpoint.h"
#include "proto/utf8.h"
#include "reconnect.h"

#define CONTAINER(p, type, member) ((type *)((char *)(p) - offsetof(type, member)))

/* A message dx_client_send() queued while disconnected. */
typedef struct dx__qmsg {
  struct dx__qmsg *next;
  size_t len;
  dx_msg_type type;
  uint8_t data[];
} dx__qmsg;

enum {
  CL_CONNECTING, /* conn is a handshake in progress */
  CL_OPEN,       /* conn opened (it may be closing now) */
  CL_ENDED,      /* conn just ended; the wrapper is deciding what next */
  CL_WAITING,    /* the timer runs until the next attempt */
  CL_CLOSED      /* for good: closed by us, refused by the rule, gave up */
};

struct dx_client {
  dx_loop *loop;
  char *url;
  dx_options opt;         /* the user's, with our on_open/on_close */
  dx_on_open user_open;
  dx_on_close user_close;
  dx_conn *conn;          /* the current connection, NULL between them */
  dx__timer timer;        /* the next attempt */
  uint64_t rng;           /* jitter (splitmix64 state) */
  unsigned attempts;      /* reconnection attempts since the last open */
  unsigned depth;         /* our frames on the stack that call out */
  uint8_t state;
  uint8_t closing : 1;    /* dx_client_close() was called */
  uint8_t freed : 1;      /* dx_client_free() was called */
  uint8_t ref_held : 1;   /* we keep dx_loop_run() going (no conn does) */
  uint8_t pending_fail : 1; /* the first attempt failed inside dx_client_new */
  dx__qmsg *q_head, **q_tail;
  size_t q_bytes;
  char fail_reason[256];  /* dx_last_error() of an attempt that failed at once */
};

/* ---- the pure parts (reconnect.h) ---------------------------------------- */

uint32_t dx__reconnect_delay(uint32_t initial_ms, uint32_t max_ms,
                             double randomization, unsigned n, double u) {
  unsigned shift = n ? n - 1 : 0;
  uint64_t d = max_ms;
  /* initial_ms << 32 and beyond is above any uint32_t max: saturate. */
  if (shift < 32 && ((uint64_t)initial_ms << shift) < d) d = (uint64_t)initial_ms << shift;
  double j = (double)d * (1.0 + randomization * u);
  if (!(j > 0)) return 0; /* also catches NaN */
  if (j >= (double)UINT32_MAX) return UINT32_MAX;
  return (uint32_t)(j + 0.5);
}

/* splitmix64: a tiny, well-mixed generator. Jitter needs spread, not
 * secrecy, so a seeded PRNG beats a CSPRNG call per attempt. */
static uint64_t next64(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15u);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
  return z ^ (z >> 31);
}

double dx__reconnect_unit(uint64_t *state) {
  /* 53 random bits: every double in [0, 1) on the 2^-53 grid, then [-1, 1). */
  return (double)(next64(state) >> 11) * 0x1p-53 * 2.0 - 1.0;
}

int dx__reconnect_default(int code, dx_why why, int http_status) {
  switch (why) {
    case DX_WHY_LOCAL:
      return 0;
    case DX_WHY_PING_TIMEOUT:
    case DX_WHY_TRANSPORT_CLOSE:
    case DX_WHY_TRANSPORT_ERROR:
    case DX_WHY_SERVER_SHUTDOWN:
    case DX_WHY_INTERNAL_ERROR: /* our own trouble (memory) may pass */
      return 1;
    case DX_WHY_PROTOCOL_ERROR:
      /* The peer broke RFC 6455: a bug on its side that a new connection
       * would most likely meet again. */
      return 0;
    case DX_WHY_HANDSHAKE_FAILED:
      /* 5xx: the server (or a proxy) is in trouble for now. Other statuses
       * (403, 404, ...) are answers. Without one: a timeout or a connection
       * closed mid-handshake (1006) may pass; a subprotocol (1002) or an
       * extension (1010) we did not offer is the server's configuration. */
      if (http_status) return http_status >= 500 && http_status <= 599;
      return code == DX_CLOSE_ABNORMAL;
    case DX_WHY_PEER:
      switch (code) {
        case DX_CLOSE_GOING_AWAY: /* 1001: restarting, or a proxy going down */
        case DX_CLOSE_ABNORMAL:
        case DX_CLOSE_INTERNAL:   /* 1011 */
        case 1012:                /* service restart */
        case 1013:                /* try again later */
        case 1014:                /* bad gateway: the upstream failed */
          return 1;
        default:
          /* 1000, 1003, 1008, 1009, 3000-4999 and the rest: the peer
           * decided, and a decision is not undone by asking again. */
          return 0;
      }
  }
  return 0;
}

/* ---- options ------------------------------------------------------------- */

int dx_options_set_reconnect(dx_options *o, uint32_t initial_ms, uint32_t max_ms,
                             double randomization, unsigned max_attempts) {
  /* A 0 ms first delay would retry a dead server in a tight loop. */
  if (!o || initial_ms == 0 || max_ms < initial_ms) return DX_EINVAL;
  if (!(randomization >= 0.0 && randomization <= 1.0)) return DX_EINVAL; /* NaN too */
  o->reconnect_initial_ms = initial_ms;
  o->reconnect_max_ms = max_ms;
  o->reconnect_randomization = randomization;
  o->reconnect_max_attempts = max_attempts;
  return 0;
}

void dx_options_on_reconnect_attempt(dx_options *o, dx_on_reconnect_attempt cb) {
  o->on_reconnect_attempt = cb;
}
void dx_options_on_reconnected(dx_options *o, dx_on_reconnected cb) { o->on_reconnected = cb; }
void dx_options_on_reconnect_failed(dx_options *o, dx_on_reconnect_failed cb) {
  o->on_reconnect_failed = cb;
}
void dx_options_should_reconnect(dx_options *o, dx_should_reconnect cb) {
  o->should_reconnect = cb;
}

int dx_options_set_reconnect_queue(dx_options *o, size_t bytes) {
  if (!o) return DX_EINVAL;
  o->reconnect_queue = bytes;
  return 0;
}

/* ---- bookkeeping --------------------------------------------------------- */

static void destroy(dx_client *cl) {
  dx__options_clear(&cl->opt);
  free(cl->url);
  free(cl);
}

static void enter(dx_client *cl) { cl->depth++; }

/* The end of a frame that called out. Returns 1 when the client is gone:
 * the caller must not touch it again. */
static int leave(dx_client *cl) {
  if (--cl->depth == 0 && cl->freed) {
    destroy(cl);
    return 1;
  }
  return 0;
}

/* While no connection exists, the client itself keeps the loop running. */
static void hold(dx_client *cl) {
  if (cl->ref_held) return;
  cl->ref_held = 1;
  dx__loop_ref(cl->loop);
}

static void release(dx_client *cl) {
  if (!cl->ref_held) return;
  cl->ref_held = 0;
  dx__loop_unref(cl->loop);
}

static void queue_drop(dx_client *cl) {
  while (cl->q_head) {
    dx__qmsg *m = cl->q_head;
    cl->q_head = m->next;
    free(m);
  }
  cl->q_tail = &cl->q_head;
  cl->q_bytes = 0;
}

/* Sends what was queued, oldest first, on the connection that just opened
 * (DX_SEND_BACKPRESSURE still counts as sent: the queue was bounded by
 * reconnect_queue). A message that cannot be sent stays queued when the
 * connection is no longer open (the next one gets it), and is dropped with
 * the rest when the connection is open but refused it (out of memory, the
 * max_buffered cap under DX_SLOW_DROP). */
static void queue_flush(dx_client *cl, dx_conn *c) {
  while (cl->q_head) {
    dx__qmsg *m = cl->q_head;
    if (dx_send(c, m->type, m->data, m->len) < 0) {
      if (dx_conn_state(c) == DX_OPEN) queue_drop(cl);
      return;
    }
    cl->q_head = m->next;
    if (!cl->q_head) cl->q_tail = &cl->q_head;
    cl->q_bytes -= m->len;
    free(m);
  }
}

/* No more connections: the queue goes, the loop may end. */
static void become_closed(dx_client *cl) {
  cl->state = CL_CLOSED;
  dx__timer_stop(cl->loop, &cl->timer);
  release(cl);
  queue_drop(cl);
}

static void give_up(dx_client *cl) {
  become_closed(cl);
  if (cl->opt.on_reconnect_failed) cl->opt.on_reconnect_failed(cl, cl->attempts);
}

/* Arms the next attempt (or gives up when max_attempts ran out). */
static void schedule(dx_client *cl) {
  unsigned next = cl->attempts + 1;
  const dx_options *o = &cl->opt;
  if ((o->reconnect_max_attempts && next > o->reconnect_max_attempts) || next == 0) {
    give_up(cl);
    return;
  }
  uint32_t delay = dx__reconnect_delay(o->reconnect_initial_ms, o->reconnect_max_ms,
                                       o->reconnect_randomization, next,
                                       dx__reconnect_unit(&cl->rng));
  if (dx__timer_start(cl->loop, &cl->timer, delay)) { /* no memory for the heap */
    give_up(cl);
    return;
  }
  cl->attempts = next;
  cl->state = CL_WAITING;
  hold(cl);
  if (o->on_reconnect_attempt) o->on_reconnect_attempt(cl, next, delay);
}

/* A connection (or an attempt that never became one) ended. `deliberate`:
 * this side asked for it, which never reconnects and is not put to the
 * hook. */
static void after_end(dx_client *cl, int deliberate, int code, dx_why why, int status) {
  if (deliberate || cl->closing || cl->state == CL_CLOSED) {
    become_closed(cl);
    return;
  }
  int again = cl->opt.should_reconnect ? cl->opt.should_reconnect(cl, code, why, status) != 0
                                       : dx__reconnect_default(code, why, status);
  /* The hook may have closed or freed the client. */
  if (cl->freed) return;
  if (cl->closing || cl->state == CL_CLOSED || !again) {
    become_closed(cl);
    return;
  }
  schedule(cl);
}

/* dx__connect() failed before a connection existed (an address literal
 * refused at once, no memory): a transport error as far
 * as the rule is concerned, with no on_close since there was no conn. */
static void attempt_failed_early(dx_client *cl) {
  dx__set_last_error(cl->fail_reason); /* what on_reconnect_attempt may ask */
  after_end(cl, 0, DX_CLOSE_ABNORMAL, DX_WHY_TRANSPORT_ERROR, 0);
}

/* Starts one connection. 0, or dx__connect()'s error (fail_reason holds
 * dx_last_error() for it). */
static int start_attempt(dx_client *cl) {
  dx_conn *c = NULL;
  cl->state = CL_CONNECTING;
  int r = dx__connect(cl->loop, cl->url, &cl->opt, cl, &c);
  if (r == 0) {
    cl->conn = c;
    release(cl); /* the connection keeps the loop going now */
    return 0;
  }
  strncpy(cl->fail_reason, dx_last_error(), sizeof cl->fail_reason - 1);
  cl->fail_reason[sizeof cl->fail_reason - 1] = '\0';
  return r;
}

static void on_timer(dx__timer *t) {
  dx_client *cl = CONTAINER(t, dx_client, timer);
  enter(cl);
  if (cl->pending_fail) {
    cl->pending_fail = 0;
    attempt_failed_early(cl);
  } else if (start_attempt(cl) != 0) {
    attempt_failed_early(cl);
  }
  leave(cl);
}

/* ---- the wrappers around the user's on_open / on_close ---------------- */

static void wrap_open(dx_conn *c) {
  dx_client *cl = dx_conn_client(c);
  unsigned attempts = cl->attempts;
  cl->state = CL_OPEN;
  cl->attempts = 0;
  enter(cl);
  if (cl->user_open) cl->user_open(c);
  /* After the user's on_open: a greeting or authentication sent there
   * goes out before what was queued while disconnected. */
  if (!cl->freed && cl->conn == c && dx_conn_state(c) == DX_OPEN) queue_flush(cl, c);
  if (!cl->freed && attempts && cl->conn == c && !cl->closing && cl->opt.on_reconnected)
    cl->opt.on_reconnected(cl, attempts);
  leave(cl);
}

static void wrap_close(dx_conn *c, int code, const char *reason, dx_why why, int http_status) {
  dx_client *cl = dx_conn_client(c);
  /* A dx_close() the user made on the connection itself is deliberate too,
   * even if the closing handshake then ended in a transport error. */
  int deliberate = why == DX_WHY_LOCAL || (c->why_set && c->why == DX_WHY_LOCAL);
  if (cl->conn == c) cl->conn = NULL;
  if (cl->state != CL_CLOSED) cl->state = CL_ENDED;
  enter(cl);
  if (cl->user_close) cl->user_close(c, code, reason, why, http_status);
  if (!cl->freed) after_end(cl, deliberate, code, why, http_status);
  leave(cl);
}

/* ---- public API ---------------------------------------------------------- */

static uint64_t seed(const dx_client *cl) {
  uint64_t s;
  if (getrandom(&s, sizeof s, GRND_NONBLOCK) == (ssize_t)sizeof s) return s;
  /* No entropy yet (early boot): clients must still not retry in step. */
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ((uint64_t)ts.tv_sec * 1000000007u) ^ (uint64_t)ts.tv_nsec ^ (uint64_t)(uintptr_t)cl;
}

dx_client *dx_client_new(dx_loop *loop, const char *url, const dx_options *o) {
  dx__set_last_error("");
  if (!loop || !url) {
    dx__set_last_error("no loop or no URL");
    return NULL;
  }
  dx_client *cl = calloc(1, sizeof *cl);
  if (!cl || !(cl->url = strdup(url))) {
    free(cl);
    dx__set_last_error("out of memory");
    return NULL;
  }
  if (o) {
    if (dx__options_copy(&cl->opt, o)) {
      free(cl->url);
      free(cl);
      dx__set_last_error("out of memory");
      return NULL;
    }
  } else {
    dx__options_defaults(&cl->opt);
  }
  cl->loop = loop;
  cl->user_open = cl->opt.on_open;
  cl->user_close = cl->opt.on_close;
  cl->opt.on_open = wrap_open;
  cl->opt.on_close = wrap_close;
  cl->q_tail = &cl->q_head;
  cl->rng = seed(cl);
  dx__timer_init(&cl->timer, on_timer);
  int r = start_attempt(cl);
  if (r == 0) return cl;
  if (r == DX_EADDR) {
    /* Unreachable is retried like any failure, but not from in here: the
     * caller does not hold the handle yet, so the failure is handled (and
     * on_reconnect_attempt called) from the loop, right away. */
    cl->pending_fail = 1;
    cl->state = CL_WAITING;
    if (dx__timer_start(loop, &cl->timer, 0) == 0) {
      hold(cl);
      dx__set_last_error(cl->fail_reason);
      return cl;
    }
  }
  /* A bad URL or CA file, no memory: the same answer every time. */
  char why[sizeof cl->fail_reason];
  memcpy(why, cl->fail_reason, sizeof why);
  destroy(cl);
  dx__set_last_error(why);
  return NULL;
}

int dx_client_send(dx_client *cl, dx_msg_type type, const void *data, size_t len) {
  if (!cl || (type != DX_TEXT && type != DX_BINARY) || (!data && len)) return DX_EINVAL;
  if (cl->closing || cl->state == CL_CLOSED) return DX_ECLOSED;
  if (cl->conn && dx_conn_state(cl->conn) != DX_CONNECTING)
    /* OPEN (DX_SEND_BACKPRESSURE passes through), or DX_ESTATE while
     * closing. */
    return dx_send(cl->conn, type, data, len);
  if (!cl->opt.reconnect_queue) return DX_ERECONNECTING;
  if (type == DX_TEXT && dx__utf8_validate(data, len)) return DX_EUTF8;
  if (len > cl->opt.reconnect_queue - cl->q_bytes) return DX_EBUFFER;
  dx__qmsg *m = malloc(sizeof *m + len);
  if (!m) return DX_ENOMEM;
  m->next = NULL;
  m->len = len;
  m->type = type;
  if (len) memcpy(m->data, data, len);
  *cl->q_tail = m;
  cl->q_tail = &m->next;
  cl->q_bytes += len;
  return 0;
}

/* What dx_close() would refuse, checked up front so a refused call changes
 * nothing, whether or not a connection exists to send the frame on. */
static int check_close_args(int code, const char *reason) {
  size_t rlen = reason ? strlen(reason) : 0;
  if (code == 0 && rlen) return DX_EINVAL;
  if (code != 0 && !dx__close_code_valid(code)) return DX_ECLOSECODE;
  if (rlen > 123) return DX_EINVAL;
  if (rlen && dx__utf8_validate((const uint8_t *)reason, rlen)) return DX_EUTF8;
  return 0;
}

int dx_client_close(dx_client *cl, int code, const char *reason) {
  if (!cl) return DX_EINVAL;
  if (cl->closing || cl->state == CL_CLOSED) return DX_ECLOSED;
  int r = check_close_args(code, reason);
  if (r) return r;
  cl->closing = 1;
  if (cl->conn) {
    /* A CONNECTING attempt is aborted at once (on_close runs inside); an
     * open one starts the closing handshake. DX_ESTATE (already closing)
     * is fine: its end counts as deliberate all the same. */
    enter(cl);
    dx_close(cl->conn, code, reason);
    leave(cl);
    return 0;
  }
  become_closed(cl); /* between attempts: stop waiting */
  return 0;
}

dx_conn *dx_client_conn(const dx_client *cl) { return cl ? cl->conn : NULL; }

void *dx_client_user(const dx_client *cl) { return cl ? cl->opt.user : NULL; }

void dx_client_free(dx_client *cl) {
  if (!cl || cl->freed) return;
  cl->freed = 1;
  dx_conn *c = cl->conn;
  cl->conn = NULL;
  become_closed(cl);
  if (c && c->phase != DX__P_DONE) dx__conn_cut(c); /* as dx_loop_free() does */
  if (cl->depth == 0) destroy(cl);
}
