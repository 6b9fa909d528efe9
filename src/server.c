/* The server endpoint: listening sockets, accepting, and the server side
 * of the opening handshake. */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "endpoint.h"
#include "proto/handshake.h"
#include "proto/http1.h"

#define DX__MAX_LISTENERS 8
#define DX__ACCEPT_BATCH 64
#define DX__ACCEPT_PAUSE_MS 100
/* Connections that came past a limit and are being refused (503) at once,
 * per server. Past that many, the server stops accepting for a moment
 * instead, and the kernel's backlog holds the rest. */
#define DX__REFUSE_RESERVE 32

/* Which limit a refused connection met (dx_conn.refusing). */
enum { DX__FULL_CONNS = 1, DX__FULL_HANDSHAKES = 2 };

typedef struct dx__listener {
  dx__io io;
  dx_server *server;
} dx__listener;

struct dx_server {
  dx_loop *loop;
  dx__endpoint ep;
  dx__listener listeners[DX__MAX_LISTENERS];
  int nlisteners;
  uint16_t port;
  size_t nconns; /* connections in any state (they sit on the loop's list) */
  size_t nrefusing; /* of those, the ones refused at a limit (DX__REFUSE_RESERVE) */
  int shutting_down;
  dx__timer deadline;     /* graceful drain: cut what is left */
  dx__timer accept_pause; /* out of descriptors: listen again later */
  dx__task release;       /* dx_server_free: the memory goes at the end of the iteration */
  dx_server *lnext;       /* the loop's servers (dx__loop_servers), newest first */
};

/* A server's connections point at its endpoint, which it embeds. */
static dx_server *server_of(const dx__endpoint *ep) {
  return (dx_server *)((char *)ep - offsetof(dx_server, ep));
}

struct dx_request {
  const dx__http_request *http;
};

static int server_on_head(dx_conn *c, const char *head, size_t len);
static void server_refuse(dx_conn *c, int status, const char *why);
static void server_detach(dx_conn *c);
static void on_deadline(dx__timer *t);
static void on_accept_resume(dx__timer *t);

/* What a server's connections ask of it (endpoint.h). */
static const dx__conn_owner server_owner = {
    .role = DX__ROLE_SERVER,
    .closes_first = 1,
    .held_from_start = 0,
    .head_name = "request",
    .head = server_on_head,
    .refuse = server_refuse,
    .detach = server_detach,
};

dx_server *dx_server_new(dx_loop *loop, const dx_options *o) {
  if (!loop) return NULL;
  dx_server *s = calloc(1, sizeof *s);
  if (!s) {
    dx__set_last_error("out of memory");
    return NULL;
  }
  s->loop = loop;
  dx__timer_init(&s->deadline, on_deadline);
  dx__timer_init(&s->accept_pause, on_accept_resume);
  char err[256] = "out of memory";
  if (dx__endpoint_init(&s->ep, o, &server_owner, err, sizeof err)) {
    dx__set_last_error(err);
    free(s);
    return NULL;
  }
  s->ep.loop = loop;
  /* Options of our own (NULL) count for this server alone. */
  /* Heap room for the drain deadline and the accept pause, so arming them
   * later cannot fail (a drain without its deadline could last forever). */
  if ((!s->ep.opt.limits && !(s->ep.opt.limits = dx__limits_new())) ||
      dx__timer_reserve(loop, 2)) {
    dx__set_last_error("out of memory");
    dx__endpoint_deinit(&s->ep);
    free(s);
    return NULL;
  }
  dx_server **head = (dx_server **)dx__loop_servers(loop);
  s->lnext = *head;
  *head = s;
  return s;
}

dx_server *dx__loop_server_next(dx_loop *l, const dx_server *prev) {
  return prev ? prev->lnext : *(dx_server **)dx__loop_servers(l);
}

const dx_options *dx__server_options(const dx_server *s) { return &s->ep.opt; }

size_t dx_server_connections(const dx_server *s) { return s->nconns; }

static uint64_t load(const dx__counter *c) {
  return atomic_load_explicit((dx__counter *)c, memory_order_relaxed);
}

int dx_server_get_stats(const dx_server *s, dx_server_stats *out) {
  if (!s || !out) return DX_EINVAL;
  const dx__stats *st = &s->ep.stats;
  out->connecting = load(&st->state[DX__ST_CONNECTING]);
  out->open = load(&st->state[DX__ST_OPEN]);
  out->closing = load(&st->state[DX__ST_CLOSING]);
  out->http = load(&st->state[DX__ST_HTTP]);
  out->accepted = load(&st->accepted);
  out->opened = load(&st->opened);
  for (int i = 0; i < DX_WHY_COUNT; i++) out->closed[i] = load(&st->closed[i]);
  out->http_closed = load(&st->http_closed);
  out->messages_in = load(&st->msgs_in);
  out->messages_out = load(&st->msgs_out);
  out->bytes_in = load(&st->bytes_in);
  out->bytes_out = load(&st->bytes_out);
  out->http_requests = load(&st->http_requests);
  for (int i = 0; i < 6; i++) out->http_responses[i] = load(&st->http_responses[i]);
  return 0;
}
uint16_t dx_server_port(const dx_server *s) { return s->port; }

/* ---- limits ------------------------------------------------------------ */

/* Takes a slot of n unless max are taken (max 0: no limit, but counted, so
 * the count stays right for servers sharing it with other limits). 1 when
 * taken. Several loops' threads may take and give at once. */
static int take_slot(atomic_size_t *n, size_t max) {
  size_t cur = atomic_load_explicit(n, memory_order_relaxed);
  do {
    if (max && cur >= max) return 0;
  } while (!atomic_compare_exchange_weak_explicit(n, &cur, cur + 1, memory_order_relaxed,
                                                  memory_order_relaxed));
  return 1;
}

static void give_slot(atomic_size_t *n) { atomic_fetch_sub_explicit(n, 1, memory_order_relaxed); }

/* A new connection's slots: 0 when it may go on (a connection and a
 * handshake slot taken), else the limit it met (nothing taken). */
static int admit(const dx_server *s) {
  const dx_options *o = &s->ep.opt;
  if (!take_slot(&o->limits->conns, o->max_connections)) return DX__FULL_CONNS;
  if (take_slot(&o->limits->handshakes, o->max_handshakes)) return 0;
  give_slot(&o->limits->conns);
  return DX__FULL_HANDSHAKES;
}

/* Gives back what admit() took, for a connection that did not come after
 * all. */
static void unadmit(const dx_server *s) {
  give_slot(&s->ep.opt.limits->handshakes);
  give_slot(&s->ep.opt.limits->conns);
}

/* The connection's request head is in (or it ended): its handshake slot
 * is free for the next one. */
static void handshake_done(dx_conn *c) {
  if (!c->has_hs_slot) return;
  c->has_hs_slot = 0;
  give_slot(&c->ep->opt.limits->handshakes);
}

/* The connection ended: it no longer counts against the limits or the
 * server. */
static void server_detach(dx_conn *c) {
  dx_server *s = server_of(c->ep); /* still here: it is its last call */
  handshake_done(c);
  if (c->has_conn_slot) give_slot(&c->ep->opt.limits->conns);
  c->has_conn_slot = 0;
  if (c->refusing) s->nrefusing--;
  s->nconns--;
}

static void set_accepting(dx_server *s, int on) {
  for (int i = 0; i < s->nlisteners; i++)
    dx__io_update(s->loop, &s->listeners[i].io, on ? EPOLLIN : 0);
}

static void on_accept_resume(dx__timer *t) {
  set_accepting((dx_server *)((char *)t - offsetof(dx_server, accept_pause)), 1);
}

/* Stops listening for a moment: pending connections wait in the kernel's
 * backlog (and past it, the kernel drops their SYNs and the clients
 * retry), where they cost us nothing. */
static void pause_accepting(dx_server *s) {
  set_accepting(s, 0);
  dx__timer_start(s->loop, &s->accept_pause, DX__ACCEPT_PAUSE_MS);
}

static void on_accept(dx__io *io, uint32_t events) {
  (void)events;
  /* Stopped (shutdown or free) by a callback earlier in this batch of
   * events: the descriptor is closed, its number maybe reused already. */
  if (io->fd < 0) return;
  dx__listener *li = (dx__listener *)io;
  dx_server *s = li->server;
  dx_conn *got[DX__ACCEPT_BATCH];
  int n = 0;
  /* A bounded batch per wake-up keeps one busy listener from starving the
   * connections already open. */
  for (int i = 0; i < DX__ACCEPT_BATCH; i++) {
    /* Past a limit a connection is still accepted, to be told so (503),
     * while few are being told; past that, the backlog holds them. The
     * slots are taken after accept4(), so that an empty backlog never
     * holds one even for a moment (another loop might be refused for it),
     * unless the answer decides whether to accept at all. */
    int full = -1;
    if (s->nrefusing >= DX__REFUSE_RESERVE && (full = admit(s))) {
      pause_accepting(s);
      break;
    }
    int fd = accept4(io->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      int e = errno;
      if (full == 0) unadmit(s);
      /* Out of descriptors or memory: the pending connection stays queued
       * and the listener stays readable, so a level-triggered loop would
       * spin. Stop listening for a moment; the backlog waits meanwhile. */
      if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM) pause_accepting(s);
      break; /* EAGAIN: all taken */
    }
    if (full < 0) full = admit(s);
    dx__tcp_tune(fd);
    dx_conn *c = calloc(1, sizeof *c);
    if (!c || dx__conn_start(c, s->loop, &s->ep, fd, EPOLLIN, NULL)) {
      close(fd);
      free(c);
      if (!full) unadmit(s);
      continue;
    }
    c->has_conn_slot = c->has_hs_slot = !full;
    c->refusing = (uint8_t)full & 3u;
    s->nrefusing += !!full;
    s->nconns++;
    got[n++] = c;
  }
  /* Deferred accept: each request is (almost always) here already, and
   * answering it now saves a trip through epoll_wait. Only after the
   * accept loop, touching neither s nor the listener afterwards: the
   * callbacks run here may shut the server down or free it. A connection
   * (or server) that ends meanwhile keeps its memory until the end of the
   * iteration, and reading it then does nothing. */
  if (!s->ep.opt.defer_accept) return;
  for (int i = 0; i < n; i++) dx__conn_read_now(got[i]);
}

/* A connection another loop's server took and handed over (endpoint.h):
 * admitted as if accepted here, then its head is handled. */
int dx__server_adopt(dx_server *s, dx__handoff *h) {
  if (s->shutting_down) return DX_ESTATE;
  dx_conn *c = calloc(1, sizeof *c);
  if (!c) return DX_ENOMEM;
  int full = admit(s);
  int r = dx__conn_adopt(c, s->loop, &s->ep, h);
  if (r) {
    if (!full) unadmit(s);
    free(c);
    return r;
  }
  c->has_conn_slot = c->has_hs_slot = !full;
  c->refusing = (uint8_t)full & 3u;
  s->nrefusing += !!full;
  s->nconns++;
  dx__conn_adopted_input(c, h);
  return 0;
}

int dx_server_listen(dx_server *s, const char *host, uint16_t port) {
  dx__set_last_error("");
  if (!s) return DX_EINVAL;
  if (s->nlisteners == DX__MAX_LISTENERS) return DX_EINVAL;
  if (s->shutting_down) return DX_ESTATE;
  char why[300];
  unsigned flags = (s->ep.opt.reuseport == DX_REUSEPORT_JOIN ? DX__LISTEN_REUSEPORT : 0u) |
                   (s->ep.opt.reuseport == DX_REUSEPORT_OPEN ? DX__LISTEN_OPEN : 0u) |
                   (s->ep.opt.defer_accept ? DX__LISTEN_DEFER : 0u);
  int fds[DX__MAX_LISTENERS];
  int n = dx__tcp_listen(host, port, 1024, flags, fds, DX__MAX_LISTENERS - s->nlisteners,
                         why, sizeof why);
  if (n < 0) {
    int e = errno;
    dx__set_last_error(why);
    errno = e;
    return n;
  }
  for (int i = 0; i < n; i++) {
    dx__listener *li = &s->listeners[s->nlisteners + i];
    li->io.fd = fds[i];
    dx__io_set_cb(&li->io, on_accept);
    li->server = s;
    if (dx__io_start(s->loop, &li->io, EPOLLIN)) {
      int e = errno;
      snprintf(why, sizeof why, "cannot watch the listening socket: %s", strerror(e));
      dx__set_last_error(why);
      for (int j = 0; j < i; j++) dx__io_stop(s->loop, &s->listeners[s->nlisteners + j].io);
      for (int j = 0; j < n; j++) close(fds[j]);
      errno = e;
      return DX_EADDR;
    }
  }
  for (int i = 0; i < n; i++) dx__loop_ref(s->loop);
  s->nlisteners += n;
  s->port = (uint16_t)dx__tcp_local_port(fds[0]);
  return 0;
}

static void stop_listening(dx_server *s) {
  for (int i = 0; i < s->nlisteners; i++) {
    dx__io_stop(s->loop, &s->listeners[i].io);
    close(s->listeners[i].io.fd);
    s->listeners[i].io.fd = -1; /* for an event of it still in this batch */
    dx__loop_unref(s->loop);
  }
  s->nlisteners = 0;
}

dx_server *dx__conn_server(const dx_conn *c) {
  return c->masks || c->phase == DX__P_DONE ? NULL : server_of(c->ep);
}

/* c if it is the server's: the loop's list also holds clients and other
 * servers' connections. */
static dx_conn *conn_of(dx_server *s, dx_conn *c) {
  return dx__conn_server(c) == s ? c : NULL;
}

/* Calls fn once on each of the server's connections. fn may end
 * connections (through callbacks, others too), so they are taken in
 * batches marked `visited`; one that ended meanwhile is skipped (its memory
 * lives until the end of the iteration). */
static void each_conn(dx_server *s, void (*fn)(dx_conn *c)) {
  for (dx_conn *c = dx__loop_conns(s->loop); c; c = dx__conn_next(c))
    if (conn_of(s, c)) c->visited = 0;
  for (;;) {
    dx_conn *todo[64];
    size_t n = 0;
    for (dx_conn *h = dx__loop_conns(s->loop); h && n < 64; h = dx__conn_next(h)) {
      dx_conn *c = conn_of(s, h);
      if (c && !c->visited) {
        c->visited = 1;
        todo[n++] = c;
      }
    }
    if (!n) return;
    for (size_t i = 0; i < n; i++)
      if (todo[i]->phase != DX__P_DONE) fn(todo[i]);
  }
}

static void drain_one(dx_conn *c) {
  if (c->phase == DX__P_HTTP) {
    c->ep->opt.http_ops->drain(c);
    return;
  }
  if (c->phase == DX__P_HANDSHAKE) {
    c->silent = 1; /* never opened: nothing to report */
    dx__conn_finish(c, DX_WHY_SERVER_SHUTDOWN, DX_CLOSE_GOING_AWAY, "server shutting down");
    return;
  }
  /* Connections already closing finish on their own (or at the deadline). */
  if (dx_conn_state(c) != DX_OPEN) return;
  c->why = DX_WHY_SERVER_SHUTDOWN;
  c->why_set = 1;
  dx_close(c, DX_CLOSE_GOING_AWAY, "server shutting down");
}

static void cut_one(dx_conn *c) {
  dx__conn_finish(c, DX_WHY_SERVER_SHUTDOWN, DX_CLOSE_GOING_AWAY, DX_REASON_DRAIN_CUT);
}

static void on_deadline(dx__timer *t) {
  dx_server *s = (dx_server *)((char *)t - offsetof(dx_server, deadline));
  each_conn(s, cut_one);
}

int dx_server_shutdown(dx_server *s, uint32_t deadline_ms) {
  if (!s || s->shutting_down) return DX_ESTATE;
  s->shutting_down = 1;
  stop_listening(s);
  each_conn(s, drain_one);
  dx__timer_start(s->loop, &s->deadline, deadline_ms);
  return 0;
}

static void release_server(dx__task *t) {
  dx_server *s = (dx_server *)((char *)t - offsetof(dx_server, release));
  dx__endpoint_deinit(&s->ep);
  free(s);
}

void dx_server_free(dx_server *s) {
  if (!s) return;
  for (dx_server **pp = (dx_server **)dx__loop_servers(s->loop); *pp; pp = &(*pp)->lnext)
    if (*pp == s) {
      *pp = s->lnext;
      break;
    }
  stop_listening(s);
  dx__timer_stop(s->loop, &s->deadline);
  dx__timer_stop(s->loop, &s->accept_pause);
  dx__timer_unreserve(s->loop, 2);
  /* Our connections sit on the loop's list among others (clients, other
   * servers'). A close callback may end further connections, so start over
   * from the head after each: finished ones have left the list. */
  dx_conn *h = dx__loop_conns(s->loop);
  while (h && s->nconns) {
    dx_conn *c = conn_of(s, h);
    if (!c) {
      h = dx__conn_next(h);
      continue;
    }
    dx__conn_finish(c, DX_WHY_SERVER_SHUTDOWN, DX_CLOSE_ABNORMAL, "server freed");
    h = dx__loop_conns(s->loop);
  }
  /* Called from a callback, later events of this batch may still name a
   * listener (in s) or a connection's endpoint (s->ep): release both at
   * the end of the iteration, after the connections' own releases. */
  s->release.run = release_server;
  dx__task_queue_last(s->loop, &s->release);
}

/* ---- handshake ---------------------------------------------------------- */

/* Answers the handshake with an HTTP error (plus a header line, with its
 * CRLF, when extra is not NULL) and closes. */
static void refuse(dx_conn *c, int status, const char *why, const char *extra) {
  char buf[600];
  size_t xn = extra ? strlen(extra) : 0;
  size_t n = dx__http_build_error(buf, sizeof buf - xn, status, why);
  /* The extra line goes last in the head, before its empty line. */
  char *end = n && xn ? memmem(buf, n, "\r\n\r\n", 4) : NULL;
  if (end) {
    end += 2;
    memmove(end + xn, end, n - (size_t)(end - buf));
    memcpy(end, extra, xn);
    n += xn;
  }
  handshake_done(c);
  /* It never opens: however TCP ends now, the handshake failed. */
  c->why = DX_WHY_HANDSHAKE_FAILED;
  c->why_set = 1;
  /* Whatever the client sends from now on is read only to be dropped. */
  c->phase = DX__P_LINGER;
  dx__timer_start(dx__conn_loop(c), &c->timer, c->ep->opt.close_timeout_ms);
  if (!n || dx__conn_write_raw(c, buf, n, 1))
    dx__conn_finish(c, DX_WHY_HANDSHAKE_FAILED, DX_CLOSE_ABNORMAL, why);
}

static void server_refuse(dx_conn *c, int status, const char *why) {
  refuse(c, status, why, NULL);
}

/* A connection that came past a limit: 503, the limit in one line, and
 * when to try again. A second is a guess, but an honest one: a handshake
 * slot frees within the handshake timeout, and a client that retries at
 * once would only be refused again. */
static void refuse_busy(dx_conn *c) {
  const dx_options *o = &c->ep->opt;
  char why[80];
  if (c->refusing == DX__FULL_CONNS)
    snprintf(why, sizeof why, "connection limit reached (%zu)", o->max_connections);
  else
    snprintf(why, sizeof why, "handshake limit reached (%zu)", o->max_handshakes);
  refuse(c, 503, why, "Retry-After: 1\r\n");
}

const char *dx_request_path(const dx_request *r, size_t *len) {
  if (len) *len = r->http->path_len;
  return r->http->path;
}

const char *dx_request_header(const dx_request *r, const char *name, size_t *len) {
  const dx__http_header *h = dx__http_find(r->http->headers, r->http->num_headers, name);
  if (!h) return NULL;
  if (len) *len = h->value_len;
  return h->value;
}

/* One Origin pattern against the request's Origin (RFC 6454 serialized:
 * scheme "://" host [":" port]). "*." in a pattern matches one or more
 * leading labels; a pattern without a scheme matches any scheme. */
static int origin_matches(const char *pat, const char *o, size_t olen) {
  const char *sep = strstr(pat, "://");
  if (sep) {
    size_t sl = (size_t)(sep - pat) + 3;
    if (olen < sl || strncasecmp(pat, o, sl) != 0) return 0;
    pat += sl;
    o += sl;
    olen -= sl;
  } else {
    const char *os = memmem(o, olen, "://", 3);
    if (os) {
      olen -= (size_t)(os + 3 - o);
      o = os + 3;
    }
  }
  size_t pl = strlen(pat);
  if (pl >= 2 && pat[0] == '*' && pat[1] == '.') {
    /* "*.example.com": the origin must end with ".example.com" and have at
     * least one label before it. */
    size_t tl = pl - 1; /* ".example.com" */
    return olen > tl && strncasecmp(o + olen - tl, pat + 1, tl) == 0;
  }
  return olen == pl && strncasecmp(o, pat, pl) == 0;
}

static int origin_allowed(const dx_options *opt, const dx__http_request *req,
                          char *why, size_t why_cap) {
  if (!opt->origins.len) return 1;
  const dx__http_header *h = dx__http_find(req->headers, req->num_headers, "Origin");
  if (!h) return 1; /* not a browser: see dx_options_allow_origin */
  for (size_t i = 0; i < opt->origins.len; i += strlen(opt->origins.p + i) + 1)
    if (origin_matches(opt->origins.p + i, h->value, h->value_len)) return 1;
  int shown = h->value_len > 80 ? 80 : (int)h->value_len;
  snprintf(why, why_cap, "origin not allowed: %.*s", shown, h->value);
  for (char *p = why; *p; p++)
    if ((unsigned char)*p < 0x20 || *p == 0x7f) *p = '?';
  return 0;
}

#define DX__MAX_OFFERED 32

/* Picks the subprotocol: the hook's choice, or the first offered one the
 * server speaks. Returns 0 (c->protocol set or left NULL), 400 (an offered
 * name is not a token, RFC 6455 §4.1: the hook could otherwise pick what
 * no response may carry) or 500 (no memory). */
static int select_protocol(dx_conn *c, const dx__http_request *req) {
  const dx_options *opt = &c->ep->opt;
  if (!opt->protocols.len && !opt->on_select_protocol) return 0;
  const char *offered[DX__MAX_OFFERED];
  size_t lens[DX__MAX_OFFERED], n = 0;
  for (size_t i = 0; i < req->num_headers; i++) {
    const dx__http_header *h = &req->headers[i];
    if (h->name_len != 22 || strncasecmp(h->name, "Sec-WebSocket-Protocol", 22)) continue;
    const char *p = h->value, *end = h->value + h->value_len;
    while (p < end && n < DX__MAX_OFFERED) {
      while (p < end && (*p == ' ' || *p == '\t' || *p == ',')) p++;
      const char *t = p;
      while (p < end && *p != ',' && *p != ' ' && *p != '\t') p++;
      if (p > t) {
        if (!dx__http_is_token(t, (size_t)(p - t))) return 400;
        offered[n] = t;
        lens[n++] = (size_t)(p - t);
      }
    }
  }
  if (!n) return 0;
  long pick = -1;
  if (opt->on_select_protocol) {
    int r = opt->on_select_protocol(c, offered, lens, n);
    if (r >= 0 && (size_t)r < n) pick = r;
  } else {
    for (size_t i = 0; i < n && pick < 0; i++)
      for (size_t j = 0; j < opt->protocols.len; j += strlen(opt->protocols.p + j) + 1)
        if (strlen(opt->protocols.p + j) == lens[i] &&
            memcmp(opt->protocols.p + j, offered[i], lens[i]) == 0) {
          pick = (long)i;
          break;
        }
  }
  if (pick < 0) return 0;
  return dx__conn_set_protocol(c, offered[pick], lens[pick]) ? 500 : 0;
}

/* Accepts permessage-deflate when offered and enabled: returns 0 (with the
 * response value in resp, "" when not accepted) or -1 (no memory). */
static int negotiate_deflate(dx_conn *c, const dx__http_request *req,
                             char *resp, size_t cap) {
  resp[0] = '\0';
  const dx_options *opt = &c->ep->opt;
  if (!opt->pmd.enabled) return 0;
  const char *vals[16];
  size_t lens[16], n = 0;
  for (size_t i = 0; i < req->num_headers && n < 16; i++) {
    const dx__http_header *h = &req->headers[i];
    if (h->name_len == 24 && !strncasecmp(h->name, "Sec-WebSocket-Extensions", 24)) {
      vals[n] = h->value;
      lens[n++] = h->value_len;
    }
  }
  dx__pmd_params params;
  if (!n || !dx__pmd_server_negotiate(&opt->pmd, vals, lens, n, &params, resp, cap)) {
    resp[0] = '\0';
    return 0;
  }
  dx__pmd *pmd = dx__pmd_new(&params, &opt->pmd, 1, &dx__alloc_std);
  if (!pmd) return -1;
  dx__session_set_pmd(&c->sess, pmd);
  return 0;
}

static int server_on_head(dx_conn *c, const char *head, size_t len) {
  dx__http_request req;
  char accept[DX__WS_ACCEPT_LEN + 1];
  char why[160];
  char ext[256];
  /* From here on the connection holds no handshake slot, whatever comes:
   * the costly part (waiting for the head, holding it) is over. */
  handshake_done(c);
  if (c->refusing) {
    refuse_busy(c);
    return -1;
  }
  if (dx__http_parse_request(head, len, &req) != 0) {
    server_refuse(c, 400, "malformed HTTP request");
    return -1;
  }
  /* Not an upgrade, and the server speaks HTTP: its layer answers. */
  if (c->ep->opt.http_ops && !dx__http1_wants_websocket(&req)) return 1;
  int status = dx__ws_check_request(&req, accept, why, sizeof why);
  if (status) {
    server_refuse(c, status, why);
    return -1;
  }
  if (!origin_allowed(&c->ep->opt, &req, why, sizeof why)) {
    server_refuse(c, 403, why);
    return -1;
  }
  int bad = dx__conn_set_path(c, req.path, req.path_len) ? 500 : select_protocol(c, &req);
  if (bad == 400) {
    server_refuse(c, 400, "Sec-WebSocket-Protocol: an offered name is not a token");
    return -1;
  }
  if (bad || negotiate_deflate(c, &req, ext, sizeof ext)) {
    server_refuse(c, 500, "out of memory");
    return -1;
  }
  if (c->ep->opt.on_accept) {
    dx_request r = {&req};
    int refuse = c->ep->opt.on_accept(c, &r);
    /* Refused with a reason of its own (dx__conn_refuse), handed to
     * another loop, or ended. */
    if (c->phase != DX__P_HANDSHAKE) return -1;
    if (refuse) {
      if (refuse < 400 || refuse > 599) refuse = 403;
      server_refuse(c, refuse, "refused by the server");
      return -1;
    }
  }
  char resp[512];
  size_t n = dx__ws_build_response(resp, sizeof resp, accept, dx_conn_protocol(c)[0] ? dx_conn_protocol(c) : NULL, ext);
  if (!n) { /* every part was checked above: a bug, not the peer's fault */
    server_refuse(c, 500, "cannot build the upgrade response");
    return -1;
  }
  if (dx__session_queue_raw(&c->sess, resp, n)) {
    server_refuse(c, 500, "out of memory");
    return -1;
  }
  return 0;
}
