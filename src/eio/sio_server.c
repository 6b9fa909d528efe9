/* The Engine.IO v4 server (sessions, the polling and WebSocket transports,
 * the upgrade, the heartbeat) and the Socket.IO v5 server on top of it
 * (namespaces, CONNECT and its auth, events and acks both ways, rooms, the
 * disconnect reasons). The packet codecs are eio_packet.c and
 * sio_packet.c; this file does the state and the I/O, through the public
 * HTTP and WebSocket API of duplex (dx_http_respond, dx_send) plus the
 * loop's embedded timers and end-of-iteration tasks.
 *
 * Shape (after the reference server's lib/socket.ts): a session owns at
 * most one transport at a time; packets queue on the session (its
 * dx__eio_queue), not on the transport. Polling: a GET is held until the
 * queue has something, then answered with as much of it as maxPayload
 * allows; a POST is decoded whole and answered "ok" before its packets are
 * handled. WebSocket: packets leave at once through dx_send (which corks
 * them to the end of the iteration). The upgrade: a second WebSocket
 * connection carrying the sid is the probe; "2probe" is answered
 * "3probe" and the held GET released with a noop; on "5" the probe
 * becomes the transport and the queue is flushed over it; polling for
 * that sid is refused from then on.
 *
 * Lifetime: everything an application callback may still hold when it
 * returns (a session whose packets are being handled, a socket that
 * disconnected from inside its own event handler) is unlinked at once and
 * freed at the end of the loop iteration (dx__task_queue_last), so no
 * caller up the stack is left with a dangling pointer. */
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "duplex_sio.h"
#include "endpoint.h"
#include "eio/eio_packet.h"
#include "eio/sio_packet.h"
#include "net/loop.h"
#include "pubsub/hub_internal.h"

#define SID_BYTES 15 /* 20 base64url characters, as the reference's ids */
#define SID_LEN 20
static const char B64URL[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
#define SESS_TIMERS 3
/* How long a probe may take to say "5" (the reference's upgradeTimeout). */
#define UPGRADE_TIMEOUT_MS 10000

enum { T_POLLING = 0, T_WS = 1 };

typedef struct sess sess;
typedef struct fwd fwd;

/* A polling request: one of this loop's (r), or one that reached another
 * loop of the process and was forwarded here, the loop that holds its
 * session (f). */
typedef struct preq {
  dx_http_request *r;
  fwd *f;
} preq;

/* A forwarded request, shared by two loops: `from` (where the HTTP
 * request is, and where the answer goes back) and `to` (the session's).
 * Each loop is named by its bit in the hub, never by a pointer, so that a
 * dx_sio freed meanwhile is found missing instead of used: a loop's dx_sio
 * is its hub tap's ud, and posts go through dx__hub_post_tap, which checks
 * and posts under the hub's lock. References: one for `from`'s pending list, one for
 * `to` until it answers or lets go, each moved along with its post. */
struct fwd {
  atomic_int refs;
  atomic_int aborted; /* the request's connection ended on `from` */
  dx_hub *hub;
  unsigned from, to;
  dx_http_request *r; /* from's; valid while on from's pending list */
  fwd *prev, *next;   /* from's pending list */
  int post;           /* 1: POST, 0: GET */
  char sid[SID_LEN + 1];
  uint8_t *body;      /* the POST body, then the answer's */
  size_t len;
  int status;
  const char *type;   /* a static string */
};

struct dx_sio_options {
  char *path;
  uint32_t ping_interval, ping_timeout, connect_timeout;
  uint64_t max_payload;
  size_t max_buffered; /* 0: the default (dx_sio_options_set_max_buffered) */
  char **cors;
  size_t n_cors;
  uint8_t cors_credentials, polling, websocket;
  dx_eio_on_message raw;
  void *raw_ud;
  dx_eio_on_open raw_open; /* dx_sio_options_engine_events */
  dx_eio_on_close raw_close;
  void *raw_events_ud;
};

struct dx_sio {
  dx_loop *loop;
  dx_sio_options o;
  size_t path_len;
  /* the application's own callbacks, for what is not under the path */
  struct {
    dx_on_http http;
    dx_on_http_abort abort;
    dx_on_accept accept;
    dx_on_open open;
    dx_on_message message;
    dx_on_close close;
  } app;
  sess **tab; /* sessions by sid, chained */
  size_t tab_cap, n_sess;
  dx_sio_nsp *nsps;
  sess *dead;              /* closed sessions, freed by reap */
  dx_sio_socket *dead_socks; /* disconnected sockets, freed by reap */
  dx__task reap;
  dx__eio_buf scratch;     /* a WebSocket frame's "<type><data>" */
  uint8_t shutting, freeing, attached;
  dx_sio *chain; /* the server attached to the same options before this one */
  dx_eio_on_message raw; /* plain Engine.IO: messages go here */
  void *raw_ud;
  /* Rooms on a hub (dx_sio_use_hub): this loop's tap, and how many local
   * sockets each room topic has (registered with the hub while > 0). */
  dx_hub *hub;
  dx__local *lo;
  dx__map rooms;
  fwd *pending; /* requests of this loop forwarded to another */
};

struct dx_sio_nsp {
  dx_sio_nsp *next;
  dx_sio *io;
  char *name;
  dx_sio_on_auth auth;
  void *auth_ud;
  dx_sio_on_connection conn;
  void *conn_ud;
  dx_sio_socket *socks; /* connected sockets (nprev/nnext) */
};

typedef struct handler {
  struct handler *next;
  dx_sio_on_event cb;
  void *ud;
  char name[];
} handler;

typedef struct pending_ack { /* an emit of ours waiting for the client */
  struct pending_ack *next;
  dx_sio_socket *s;
  int64_t id;
  dx_sio_on_ack cb;
  void *ud;
  dx__timer t;
} pending_ack;

struct dx_sio_ack { /* an ack the client asked for, with the application */
  dx_sio_ack *prev, *next;
  dx_sio_socket *s; /* NULL once the socket is gone */
  int64_t id;
};

struct dx_sio_socket {
  sess *s;
  dx_sio_nsp *nsp;
  dx_sio_socket *snext;        /* the session's sockets */
  dx_sio_socket *nprev, *nnext; /* the namespace's connected sockets */
  dx_sio_socket *dnext;        /* on io->dead_socks */
  char id[SID_LEN + 1];
  handler *handlers;
  dx_sio_on_disconnect dcb;
  void *dud;
  char **rooms;
  size_t n_rooms;
  pending_ack *acks;
  int64_t next_id;
  dx_sio_ack *given;
  void *user;
  uint8_t connected, gone;
};

struct sess {
  dx_sio *io;
  sess *hnext;  /* hash chain */
  sess *dnext;  /* io->dead */
  char sid[SID_LEN + 1];
  dx__eio_queue q;
  int transport;
  preq get;            /* the held GET (both NULL: none) */
  dx_conn *ws, *probe;
  dx__timer hb;      /* next ping, or the pong deadline */
  dx__timer ctimer;  /* connectTimeout, then the close linger */
  dx__timer utimer;  /* the probe's deadline to upgrade */
  dx__task flush;    /* answer the held GET at the end of the iteration */
  dx__sio_decoder dec;
  dx_sio_socket *socks;
  uint8_t wait_pong, upgrading, closing, dead, timers;
  uint8_t close_queued; /* closing: the close packet is in the queue */
  uint8_t overflow;     /* the queue reached its cap: closed at the end of the iteration */
  uint8_t opened;       /* plain Engine.IO: raw_open ran, raw_close is owed */
};

static const char *const reason_names[] = {
  "server namespace disconnect", "client namespace disconnect",
  "server shutting down", "ping timeout", "transport close",
  "transport error", "parse error", "forced close"};

const char *dx_sio_reason_name(dx_sio_reason r) {
  if ((unsigned)r >= sizeof reason_names / sizeof *reason_names) return "unknown";
  return reason_names[r];
}

#define CONTAINER(p, type, member) ((type *)(void *)((char *)(p) - offsetof(type, member)))

/* ---------------------------------------------------------------------- */
/* Options                                                                 */
/* ---------------------------------------------------------------------- */

dx_sio_options *dx_sio_options_new(void) {
  dx_sio_options *o = calloc(1, sizeof *o);
  if (!o) return NULL;
  o->path = strdup("/socket.io/");
  if (!o->path) {
    free(o);
    return NULL;
  }
  o->ping_interval = 25000;
  o->ping_timeout = 20000;
  o->connect_timeout = 45000;
  o->max_payload = 1000000;
  o->polling = o->websocket = 1;
  return o;
}

static void options_clear(dx_sio_options *o) {
  free(o->path);
  for (size_t i = 0; i < o->n_cors; i++) free(o->cors[i]);
  free(o->cors);
}

void dx_sio_options_free(dx_sio_options *o) {
  if (!o) return;
  options_clear(o);
  free(o);
}

int dx_sio_options_set_path(dx_sio_options *o, const char *path) {
  size_t n = path ? strlen(path) : 0;
  if (!o || n < 2 || path[0] != '/' || path[n - 1] != '/' || strpbrk(path, "?# \t"))
    return DX_EINVAL;
  char *p = strdup(path);
  if (!p) return DX_ENOMEM;
  free(o->path);
  o->path = p;
  return 0;
}

int dx_sio_options_set_ping(dx_sio_options *o, uint32_t interval_ms, uint32_t timeout_ms) {
  if (!o || !interval_ms || !timeout_ms) return DX_EINVAL;
  o->ping_interval = interval_ms;
  o->ping_timeout = timeout_ms;
  return 0;
}

int dx_sio_options_set_max_payload(dx_sio_options *o, uint64_t bytes) {
  if (!o || !bytes || bytes > (UINT64_C(1) << 30)) return DX_EINVAL;
  o->max_payload = bytes;
  return 0;
}

int dx_sio_options_set_max_buffered(dx_sio_options *o, size_t bytes) {
  if (!o || !bytes) return DX_EINVAL;
  o->max_buffered = bytes;
  return 0;
}

/* The cap in force: the one set, or the larger of 16 MiB and two
 * maxPayloads (room for two full responses). */
static size_t max_buffered(const dx_sio_options *o) {
  if (o->max_buffered) return o->max_buffered;
  uint64_t two = 2 * o->max_payload;
  return two > (16u << 20) ? (size_t)two : (size_t)16u << 20;
}

int dx_sio_options_set_connect_timeout(dx_sio_options *o, uint32_t ms) {
  if (!o || !ms) return DX_EINVAL;
  o->connect_timeout = ms;
  return 0;
}

int dx_sio_options_cors_origin(dx_sio_options *o, const char *origin) {
  if (!o || !origin || !*origin || strpbrk(origin, "\r\n")) return DX_EINVAL;
  char **v = realloc(o->cors, (o->n_cors + 1) * sizeof *v);
  if (!v) return DX_ENOMEM;
  o->cors = v;
  if (!(v[o->n_cors] = strdup(origin))) return DX_ENOMEM;
  o->n_cors++;
  return 0;
}

void dx_sio_options_cors_credentials(dx_sio_options *o, int on) {
  if (o) o->cors_credentials = on != 0;
}

void dx_sio_options_set_transports(dx_sio_options *o, int polling, int websocket) {
  if (!o) return;
  o->polling = polling != 0;
  o->websocket = websocket != 0;
}

static int options_copy(dx_sio_options *dst, const dx_sio_options *src) {
  memset(dst, 0, sizeof *dst);
  *dst = *src;
  dst->path = strdup(src->path);
  dst->cors = src->n_cors ? calloc(src->n_cors, sizeof *dst->cors) : NULL;
  dst->n_cors = 0;
  if (!dst->path || (src->n_cors && !dst->cors)) goto fail;
  for (size_t i = 0; i < src->n_cors; i++) {
    if (!(dst->cors[i] = strdup(src->cors[i]))) goto fail;
    dst->n_cors++;
  }
  return 0;
fail:
  options_clear(dst);
  return DX_ENOMEM;
}

/* ---------------------------------------------------------------------- */
/* Ids and the session table                                               */
/* ---------------------------------------------------------------------- */

/* A fresh id: 15 bytes from OpenSSL's CSPRNG in base64url (no padding):
 * unguessable, so a sid is the session's only credential on polling. */
static int new_id(char out[SID_LEN + 1]) {
  unsigned char raw[SID_BYTES];
  if (RAND_bytes(raw, sizeof raw) != 1) return DX_EIO;
  EVP_EncodeBlock((unsigned char *)out, raw, sizeof raw);
  for (int i = 0; i < SID_LEN; i++) {
    if (out[i] == '+') out[i] = '-';
    else if (out[i] == '/') out[i] = '_';
  }
  out[SID_LEN] = 0;
  return 0;
}

static size_t hash_sid(const char *p, size_t n) {
  uint64_t h = 1469598103934665603ULL;
  for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)p[i]) * 1099511628211ULL;
  return (size_t)h;
}

static sess *find_sess(dx_sio *io, const char *sid, size_t n) {
  if (!io->tab_cap || n != SID_LEN) return NULL;
  for (sess *s = io->tab[hash_sid(sid, n) & (io->tab_cap - 1)]; s; s = s->hnext)
    if (!memcmp(s->sid, sid, SID_LEN)) return s;
  return NULL;
}

static int table_add(dx_sio *io, sess *s) {
  if (io->n_sess + 1 > io->tab_cap) {
    size_t cap = io->tab_cap ? io->tab_cap * 2 : 64;
    sess **t = calloc(cap, sizeof *t);
    if (!t) return DX_ENOMEM;
    for (size_t i = 0; i < io->tab_cap; i++)
      for (sess *e = io->tab[i], *nx; e; e = nx) {
        nx = e->hnext;
        size_t b = hash_sid(e->sid, SID_LEN) & (cap - 1);
        e->hnext = t[b];
        t[b] = e;
      }
    free(io->tab);
    io->tab = t;
    io->tab_cap = cap;
  }
  size_t b = hash_sid(s->sid, SID_LEN) & (io->tab_cap - 1);
  s->hnext = io->tab[b];
  io->tab[b] = s;
  io->n_sess++;
  return 0;
}

static void table_remove(dx_sio *io, sess *s) {
  sess **pp = &io->tab[hash_sid(s->sid, SID_LEN) & (io->tab_cap - 1)];
  for (; *pp; pp = &(*pp)->hnext)
    if (*pp == s) {
      *pp = s->hnext;
      io->n_sess--;
      return;
    }
}

size_t dx_sio_sessions(const dx_sio *io) { return io ? io->n_sess : 0; }

/* ---------------------------------------------------------------------- */
/* Sending                                                                 */
/* ---------------------------------------------------------------------- */

static void sess_close(sess *s, dx_sio_reason why, int tell_client);

static int has_get(const sess *s) { return s->get.r || s->get.f; }

static void answer_get(sess *s, int with_queue);

/* The close packet goes in a response of its own, after the one that
 * carried the last packets: the official client handles a payload's
 * close at once but its Socket.IO packets on the next tick, so a
 * DISCONNECT sharing a response with the close would be reported as
 * "transport close" (and the client would reconnect). The reference
 * server sends it on the poll after the drain, too. */
static void close_packet(sess *s) {
  if (dx__eio_queue_push(&s->q, DX__EIO_CLOSE, 0, NULL, 0) == 0) s->close_queued = 1;
}

/* A packet for the client: straight onto the WebSocket once the session
 * has one, else onto the queue for the next poll (a held GET is answered
 * at the end of the iteration, so a burst of emits shares one response). */
static int sess_send(sess *s, int type, int binary, const void *data, size_t len) {
  if (s->ws) {
    if (binary) return dx_send(s->ws, DX_BINARY, data, len) < 0 ? DX_ECLOSED : 0;
    dx__eio_buf *b = &s->io->scratch;
    b->len = 0;
    dx__eio_packet p = {.type = (uint8_t)type, .data = data, .len = len};
    int r = dx__eio_encode_ws(b, &p);
    if (r) return r;
    return dx_send(s->ws, DX_TEXT, b->data, b->len) < 0 ? DX_ECLOSED : 0;
  }
  /* A client that does not come for its packets must not make us hold
   * unbounded memory. Past the cap the packet is refused and the session
   * ends ("transport error", as a WebSocket peer that stops reading ends
   * with its slow-consumer close), at the end of the iteration: the caller
   * may be walking a list of sockets (a broadcast) that closing would
   * change under it. */
  size_t cap = max_buffered(&s->io->o);
  if (s->overflow || s->q.bytes > cap || len > cap - s->q.bytes) {
    if (!s->overflow) {
      s->overflow = 1;
      dx__task_queue(s->io->loop, &s->flush);
    }
    return DX_ECLOSED;
  }
  int r = dx__eio_queue_push(&s->q, type, binary, data, len);
  if (r) return r;
  if (has_get(s)) dx__task_queue(s->io->loop, &s->flush);
  return 0;
}

static void flush_task(dx__task *t) {
  sess *s = CONTAINER(t, sess, flush);
  if (s->dead) return;
  if (s->overflow) sess_close(s, DX_SIO_TRANSPORT_ERROR, 0);
  else if (has_get(s)) answer_get(s, 1);
}

/* The CORS headers a polling response carries: none unless origins were
 * configured; "*" echoed as "*" (the request's Origin with credentials,
 * which browsers refuse to pair with "*"); an exact origin only when the
 * request's matches. */
static size_t cors_headers(const dx_sio *io, dx_http_request *r, dx_http_field *h) {
  const char *origin = dx_http_header(r, "Origin");
  size_t n = 0;
  if (!io->o.n_cors) return 0;
  const char *allow = NULL;
  for (size_t i = 0; i < io->o.n_cors; i++) {
    if (!strcmp(io->o.cors[i], "*")) {
      allow = io->o.cors_credentials && origin ? origin : "*";
      break;
    }
    if (origin && !strcasecmp(io->o.cors[i], origin)) {
      allow = origin;
      break;
    }
  }
  if (!allow) return 0;
  h[n++] = (dx_http_field){"Access-Control-Allow-Origin", allow};
  if (strcmp(allow, "*")) h[n++] = (dx_http_field){"Vary", "Origin"};
  if (io->o.cors_credentials) h[n++] = (dx_http_field){"Access-Control-Allow-Credentials", "true"};
  return n;
}

static int respond(dx_sio *io, dx_http_request *r, int status, const char *type,
                   const void *body, size_t len) {
  dx_http_field h[6];
  size_t n = cors_headers(io, r, h);
  if (type) h[n++] = (dx_http_field){"Content-Type", type};
  return dx_http_respond(r, status, h, n, body, len);
}

static void respond_error(dx_sio *io, dx_http_request *r, int code) {
  dx__eio_buf b;
  dx__eio_buf_init(&b, &dx__alloc_std);
  int status = dx__eio_http_error(code, NULL);
  if (dx__eio_http_error_body(&b, code, NULL) == 0)
    respond(io, r, status, "application/json", b.data, b.len);
  else
    dx_http_error(r, 500, NULL, NULL, 0);
  dx__eio_buf_free(&b);
}

static void fwd_reply(fwd *f, int status, const char *type, const void *body, size_t len);
static void fwd_abort(dx_sio *io, fwd *f);
static void hub_tap(void *ud, const char *topic, size_t tlen, dx_msg_type type,
                    const uint8_t *data, size_t len);

/* Answers a polling request, ours or forwarded. */
static void reply(dx_sio *io, preq q, int status, const char *type, const void *body,
                  size_t len) {
  if (q.f) fwd_reply(q.f, status, type, body, len);
  else if (respond(io, q.r, status, type, body, len))
    dx_http_error(q.r, 500, NULL, NULL, 0);
}

static void reply_error(dx_sio *io, preq q, int code) {
  if (q.r) {
    respond_error(io, q.r, code);
    return;
  }
  dx__eio_buf b;
  dx__eio_buf_init(&b, &dx__alloc_std);
  if (dx__eio_http_error_body(&b, code, NULL) == 0)
    fwd_reply(q.f, dx__eio_http_error(code, NULL), "application/json", b.data, b.len);
  else
    fwd_reply(q.f, 500, "text/plain; charset=UTF-8", "500", 3);
  dx__eio_buf_free(&b);
}

/* Answers the held GET: with what the queue holds (up to maxPayload), or
 * with a noop when with_queue is 0 or the queue is empty (releasing the
 * poll for an upgrade). A closing session whose close packet just left is
 * done with. */
static void answer_get(sess *s, int with_queue) {
  preq r = s->get;
  dx__eio_buf b;
  dx__eio_buf_init(&b, &dx__alloc_std);
  int took = 0;
  if (with_queue) took = dx__eio_payload_encode(&s->q, s->io->o.max_payload, &b);
  if (took <= 0) {
    b.len = 0;
    if (dx__eio_buf_putc(&b, '0' + DX__EIO_NOOP)) took = -1;
  }
  s->get = (preq){0};
  if (b.len) reply(s->io, r, 200, "text/plain; charset=UTF-8", b.data, b.len);
  else reply(s->io, r, 500, "text/plain; charset=UTF-8", "500", 3);
  dx__eio_buf_free(&b);
  if (s->closing && !s->dead && !s->q.count) {
    if (s->close_queued) sess_close(s, DX_SIO_TRANSPORT_CLOSE, 0);
    else close_packet(s);
  }
}

/* ---------------------------------------------------------------------- */
/* Socket.IO packets out                                                   */
/* ---------------------------------------------------------------------- */

/* Encodes p and queues its text and attachments on s. */
static int send_packet(sess *s, const dx__sio_packet *p) {
  dx__sio_encoded e;
  dx__sio_encoded_init(&e, &dx__alloc_std);
  int r = dx__sio_encode(p, 0, &e);
  if (!r) r = sess_send(s, DX__EIO_MESSAGE, 0, e.text.data, e.text.len);
  for (size_t i = 0; !r && i < e.n_att; i++)
    r = sess_send(s, DX__EIO_MESSAGE, 1, e.att[i].p, e.att[i].n);
  dx__sio_encoded_free(&e);
  return r;
}

static int sock_packet(dx_sio_socket *k, int type, int64_t id, json_t *data) {
  dx__sio_packet p = {.type = type, .nsp = k->nsp->name, .nsp_len = strlen(k->nsp->name),
                      .id = id, .data = data};
  return send_packet(k->s, &p);
}

/* ["event", ...args] in *out, a new reference. 0, DX_EINVAL (a bad
 * argument) or DX_ENOMEM (jansson's allocations failed). */
static int event_array(const char *event, const json_t *args, json_t **out) {
  *out = NULL;
  if (!event || (args && !json_is_array(args))) return DX_EINVAL;
  if (dx__sio_reserved_event(event, strlen(event))) return DX_EINVAL;
  json_t *a = json_array();
  if (!a || json_array_append_new(a, json_string(event)) ||
      (args && json_array_extend(a, (json_t *)args))) {
    json_decref(a);
    return DX_ENOMEM;
  }
  *out = a;
  return 0;
}

/* ---------------------------------------------------------------------- */
/* Rooms on the hub                                                        */
/* ---------------------------------------------------------------------- */

/* A room's hub topic: "sio", NUL, the namespace, NUL, the room ("" for
 * the whole namespace). A namespace holds no NUL, so the split is
 * unambiguous; WebSocket rooms (dx_subscribe) could spell such a name but
 * never do by accident. */
#define TOPIC_PREFIX "sio\0"
#define TOPIC_PREFIX_LEN 4

static size_t room_topic(char *out, const char *nsp, const char *room) {
  size_t nl = strlen(nsp), rl = room ? strlen(room) : 0;
  if (TOPIC_PREFIX_LEN + nl + 1 + rl > DX_TOPIC_MAX) return 0;
  memcpy(out, TOPIC_PREFIX, TOPIC_PREFIX_LEN);
  memcpy(out + TOPIC_PREFIX_LEN, nsp, nl + 1);
  if (rl) memcpy(out + TOPIC_PREFIX_LEN + nl + 1, room, rl);
  return TOPIC_PREFIX_LEN + nl + 1 + rl;
}

typedef struct room_ref {
  dx__map_node node;
  uint32_t count;
  char name[];
} room_ref;

/* One more (delta 1) or one fewer (-1) local socket in a room: the hub
 * learns of the room's first and last. 0 or DX_ENOMEM (nothing changed). */
static int room_count(dx_sio *io, const char *nsp, const char *room, int delta) {
  if (!io->hub) return 0;
  char t[DX_TOPIC_MAX];
  size_t n = room_topic(t, nsp, room);
  if (!n) return DX_EINVAL;
  uint32_t h = dx__map_hash(t, n);
  room_ref *r = (room_ref *)dx__map_get(&io->rooms, t, n, h);
  if (delta < 0) {
    if (r && --r->count == 0) {
      dx__map_del(&io->rooms, &r->node);
      dx__hub_topic_removed(io->lo, t, n, h);
      free(r);
    }
    return 0;
  }
  if (r) {
    r->count++;
    return 0;
  }
  if (!(r = calloc(1, sizeof *r + n))) return DX_ENOMEM;
  memcpy(r->name, t, n);
  r->node = (dx__map_node){r->name, (uint32_t)n, h};
  r->count = 1;
  if (dx__map_put(&io->rooms, &r->node)) {
    free(r);
    return DX_ENOMEM;
  }
  if (dx__hub_topic_added(io->lo, t, n, h)) {
    dx__map_del(&io->rooms, &r->node);
    free(r);
    return DX_ENOMEM;
  }
  return 0;
}

/* ---------------------------------------------------------------------- */
/* Sockets                                                                 */
/* ---------------------------------------------------------------------- */

static void reap_task(dx__task *t);
static void io_free(dx_sio *io);

static void sock_free(dx_sio_socket *k) {
  for (handler *h = k->handlers, *nx; h; h = nx) {
    nx = h->next;
    free(h);
  }
  for (size_t i = 0; i < k->n_rooms; i++) free(k->rooms[i]);
  free(k->rooms);
  free(k);
}

static void nsp_unlink(dx_sio_socket *k) {
  if (k->nprev) k->nprev->nnext = k->nnext;
  else if (k->nsp->socks == k) k->nsp->socks = k->nnext;
  if (k->nnext) k->nnext->nprev = k->nprev;
  k->nprev = k->nnext = NULL;
}

/* The socket leaves: unlinked from its session and namespace, its pending
 * acks answered DX_ECLOSED, its handed-out acks orphaned, on_disconnect
 * told (when it was connected); freed at the end of the iteration. */
static void sock_gone(dx_sio_socket *k, dx_sio_reason why) {
  if (k->gone) return;
  k->gone = 1;
  sess *s = k->s;
  for (dx_sio_socket **pp = &s->socks; *pp; pp = &(*pp)->snext)
    if (*pp == k) {
      *pp = k->snext;
      break;
    }
  nsp_unlink(k);
  for (dx_sio_ack *a = k->given; a; a = a->next) a->s = NULL;
  k->given = NULL;
  for (size_t i = 0; i < k->n_rooms; i++) {
    room_count(s->io, k->nsp->name, k->rooms[i], -1);
    free(k->rooms[i]);
  }
  k->n_rooms = 0;
  if (k->connected) room_count(s->io, k->nsp->name, NULL, -1);
  pending_ack *acks = k->acks;
  k->acks = NULL;
  int was = k->connected;
  k->connected = 0;
  for (pending_ack *a = acks, *nx; a; a = nx) {
    nx = a->next;
    dx__timer_stop(s->io->loop, &a->t);
    dx__timer_unreserve(s->io->loop, 1);
    a->cb(k, DX_ECLOSED, NULL, a->ud);
    free(a);
  }
  if (was && k->dcb) k->dcb(k, why, k->dud);
  k->dnext = s->io->dead_socks;
  s->io->dead_socks = k;
  dx__task_queue_last(s->io->loop, &s->io->reap);
}

static dx_sio_socket *sock_of(sess *s, const char *nsp, size_t n) {
  for (dx_sio_socket *k = s->socks; k; k = k->snext)
    if (strlen(k->nsp->name) == n && !memcmp(k->nsp->name, nsp, n)) return k;
  return NULL;
}

static int in_room(const dx_sio_socket *k, const char *room) {
  for (size_t i = 0; i < k->n_rooms; i++)
    if (!strcmp(k->rooms[i], room)) return 1;
  return 0;
}

int dx_sio_join(dx_sio_socket *k, const char *room) {
  if (!k || !room || !*room || strlen(room) > DX_TOPIC_MAX) return DX_EINVAL;
  if (k->gone) return DX_ECLOSED;
  if (in_room(k, room)) return 0;
  char **v = realloc(k->rooms, (k->n_rooms + 1) * sizeof *v);
  if (!v) return DX_ENOMEM;
  k->rooms = v;
  if (!(v[k->n_rooms] = strdup(room))) return DX_ENOMEM;
  int r = room_count(k->s->io, k->nsp->name, room, 1);
  if (r) {
    free(v[k->n_rooms]);
    return r;
  }
  k->n_rooms++;
  return 0;
}

int dx_sio_leave(dx_sio_socket *k, const char *room) {
  if (!k || !room) return DX_EINVAL;
  for (size_t i = 0; i < k->n_rooms; i++)
    if (!strcmp(k->rooms[i], room)) {
      room_count(k->s->io, k->nsp->name, room, -1);
      free(k->rooms[i]);
      k->rooms[i] = k->rooms[--k->n_rooms];
      return 0;
    }
  return 0;
}

int dx_sio_on(dx_sio_socket *k, const char *event, dx_sio_on_event cb, void *ud) {
  if (!k || !event) return DX_EINVAL;
  for (handler **pp = &k->handlers; *pp; pp = &(*pp)->next)
    if (!strcmp((*pp)->name, event)) {
      if (cb) {
        (*pp)->cb = cb;
        (*pp)->ud = ud;
      } else {
        handler *h = *pp;
        *pp = h->next;
        free(h);
      }
      return 0;
    }
  if (!cb) return 0;
  size_t n = strlen(event);
  handler *h = malloc(sizeof *h + n + 1);
  if (!h) return DX_ENOMEM;
  memcpy(h->name, event, n + 1);
  h->cb = cb;
  h->ud = ud;
  h->next = k->handlers;
  k->handlers = h;
  return 0;
}

void dx_sio_socket_on_disconnect(dx_sio_socket *k, dx_sio_on_disconnect cb, void *ud) {
  if (!k) return;
  k->dcb = cb;
  k->dud = ud;
}

static int can_send(const dx_sio_socket *k) {
  return k && k->connected && !k->gone && !k->s->closing && !k->s->overflow;
}

int dx_sio_emit(dx_sio_socket *k, const char *event, const json_t *args) {
  if (!k) return DX_EINVAL;
  if (!can_send(k)) return DX_ECLOSED;
  json_t *a;
  int r = event_array(event, args, &a);
  if (r) return r;
  r = sock_packet(k, DX__SIO_EVENT, DX__SIO_NO_ID, a);
  json_decref(a);
  return r == DX_ENOMEM || r == DX_ECLOSED || r == 0 ? r : DX_EINVAL;
}

static void ack_timeout(dx__timer *t) {
  pending_ack *a = CONTAINER(t, pending_ack, t);
  dx_sio_socket *k = a->s;
  for (pending_ack **pp = &k->acks; *pp; pp = &(*pp)->next)
    if (*pp == a) {
      *pp = a->next;
      break;
    }
  dx__timer_unreserve(k->s->io->loop, 1);
  a->cb(k, DX_ETIMEDOUT, NULL, a->ud);
  free(a);
}

int dx_sio_emit_ack(dx_sio_socket *k, const char *event, const json_t *args,
                    uint32_t timeout_ms, dx_sio_on_ack cb, void *ud) {
  if (!k || !cb) return DX_EINVAL;
  if (!can_send(k)) return DX_ECLOSED;
  json_t *a;
  int r = event_array(event, args, &a);
  if (r) return r;
  pending_ack *p = calloc(1, sizeof *p);
  dx_loop *loop = k->s->io->loop;
  if (!p || dx__timer_reserve(loop, 1)) {
    free(p);
    json_decref(a);
    return DX_ENOMEM;
  }
  p->s = k;
  p->id = k->next_id++;
  p->cb = cb;
  p->ud = ud;
  dx__timer_init(&p->t, ack_timeout);
  r = sock_packet(k, DX__SIO_EVENT, p->id, a);
  json_decref(a);
  if (r) {
    dx__timer_unreserve(loop, 1);
    free(p);
    return r == DX_ENOMEM || r == DX_ECLOSED ? r : DX_EINVAL;
  }
  if (timeout_ms) dx__timer_start(loop, &p->t, timeout_ms);
  p->next = k->acks;
  k->acks = p;
  return 0;
}

static void ack_unlink(dx_sio_ack *a) {
  if (!a->s) return;
  if (a->prev) a->prev->next = a->next;
  else a->s->given = a->next;
  if (a->next) a->next->prev = a->prev;
}

int dx_sio_ack_send(dx_sio_ack *a, const json_t *args) {
  if (!a || (args && !json_is_array(args))) return DX_EINVAL;
  int r = DX_ECLOSED;
  if (a->s && can_send(a->s)) {
    json_t *empty = args ? NULL : json_array();
    r = sock_packet(a->s, DX__SIO_ACK, a->id, args ? (json_t *)args : empty);
    json_decref(empty);
    if (r == DX_ENOMEM) return r;
    if (r && r != DX_ECLOSED) return DX_EINVAL;
  }
  ack_unlink(a);
  free(a);
  return r;
}

void dx_sio_ack_drop(dx_sio_ack *a) {
  if (!a) return;
  ack_unlink(a);
  free(a);
}

int dx_sio_disconnect(dx_sio_socket *k, int close) {
  if (!k || k->gone) return DX_ECLOSED;
  sess *s = k->s;
  if (close) {
    /* Every namespace of the client is told first (the official client
     * does not reconnect after "io server disconnect"), then the session
     * ends. */
    for (dx_sio_socket *e = s->socks; e && !s->closing; e = e->snext)
      if (e->connected) sock_packet(e, DX__SIO_DISCONNECT, DX__SIO_NO_ID, NULL);
    sess_close(s, DX_SIO_FORCED_CLOSE, 1);
    return 0;
  }
  if (k->connected && !s->closing) sock_packet(k, DX__SIO_DISCONNECT, DX__SIO_NO_ID, NULL);
  sock_gone(k, DX_SIO_SERVER_NAMESPACE_DISCONNECT);
  return 0;
}

const char *dx_sio_socket_id(const dx_sio_socket *k) { return k->id; }
dx_sio_nsp *dx_sio_socket_nsp(const dx_sio_socket *k) { return k->nsp; }
const char *dx_sio_socket_transport(const dx_sio_socket *k) {
  return k->s->transport == T_WS ? "websocket" : "polling";
}
void *dx_sio_socket_user(const dx_sio_socket *k) { return k->user; }
void dx_sio_socket_set_user(dx_sio_socket *k, void *user) { k->user = user; }

json_t *dx_sio_binary(const void *p, size_t n) { return dx__sio_binary_new(p, n); }
int dx_sio_binary_get(const json_t *v, const uint8_t **p, size_t *n) {
  return dx__sio_binary_get(v, p, n);
}

/* ---------------------------------------------------------------------- */
/* Namespaces                                                              */
/* ---------------------------------------------------------------------- */

static dx_sio_nsp *nsp_find(dx_sio *io, const char *name, size_t n) {
  for (dx_sio_nsp *ns = io->nsps; ns; ns = ns->next)
    if (strlen(ns->name) == n && !memcmp(ns->name, name, n)) return ns;
  return NULL;
}

dx_sio_nsp *dx_sio_of(dx_sio *io, const char *name) {
  if (!io || !name || name[0] != '/' || strchr(name, ',')) return NULL;
  dx_sio_nsp *ns = nsp_find(io, name, strlen(name));
  if (ns) return ns;
  if (!(ns = calloc(1, sizeof *ns)) || !(ns->name = strdup(name))) {
    free(ns);
    return NULL;
  }
  ns->io = io;
  ns->next = io->nsps;
  io->nsps = ns;
  return ns;
}

const char *dx_sio_nsp_name(const dx_sio_nsp *n) { return n->name; }

void dx_sio_nsp_on_auth(dx_sio_nsp *n, dx_sio_on_auth cb, void *ud) {
  if (!n) return;
  n->auth = cb;
  n->auth_ud = ud;
}

void dx_sio_nsp_on_connection(dx_sio_nsp *n, dx_sio_on_connection cb, void *ud) {
  if (!n) return;
  n->conn = cb;
  n->conn_ud = ud;
}

/* Who a broadcast is for, as bytes (rooms from the hub are not
 * NUL-terminated): the members of any of rooms (every socket of the
 * namespace when there are none), but those in any except room and the
 * socket whose id is except_id. */
#define MAX_TARGET_ROOMS 64
typedef struct filter {
  size_t n_rooms, n_except;
  const char *room[MAX_TARGET_ROOMS], *except[MAX_TARGET_ROOMS];
  size_t room_len[MAX_TARGET_ROOMS], except_len[MAX_TARGET_ROOMS];
  const char *except_id; /* NUL-terminated, or NULL */
} filter;

static int in_room_n(const dx_sio_socket *k, const char *room, size_t n) {
  for (size_t i = 0; i < k->n_rooms; i++)
    if (strlen(k->rooms[i]) == n && !memcmp(k->rooms[i], room, n)) return 1;
  return 0;
}

static int wanted(const dx_sio_socket *k, const filter *f) {
  if (f->except_id && !strcmp(k->id, f->except_id)) return 0;
  for (size_t i = 0; i < f->n_except; i++)
    if (in_room_n(k, f->except[i], f->except_len[i])) return 0;
  if (!f->n_rooms) return 1;
  for (size_t i = 0; i < f->n_rooms; i++)
    if (in_room_n(k, f->room[i], f->room_len[i])) return 1;
  return 0;
}

/* Sends an encoded broadcast to the members of n the filter wants: once
 * each, whatever number of its rooms they are in. */
static int deliver(dx_sio_nsp *n, const filter *f, const uint8_t *text, size_t tlen,
                   const dx__sio_attachment *att, size_t n_att) {
  int r = 0;
  for (dx_sio_socket *k = n->socks; k; k = k->nnext) {
    if (!can_send(k) || !wanted(k, f)) continue;
    if (sess_send(k->s, DX__EIO_MESSAGE, 0, text, tlen) == DX_ENOMEM) r = DX_ENOMEM;
    for (size_t i = 0; i < n_att; i++) sess_send(k->s, DX__EIO_MESSAGE, 1, att[i].p, att[i].n);
  }
  return r;
}

static void put32(dx__eio_buf *b, size_t v, int *err) {
  uint8_t x[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
  if (dx__eio_buf_append(b, x, 4)) *err = DX_ENOMEM;
}

static void put_list(dx__eio_buf *b, const char *const *v, const size_t *lens, size_t n, int *err) {
  put32(b, n, err);
  for (size_t i = 0; !*err && i < n; i++) {
    put32(b, lens[i], err);
    if (!*err && dx__eio_buf_append(b, v[i], lens[i])) *err = DX_ENOMEM;
  }
}

/* A broadcast through the hub: one binary message, [1 byte: an excluded
 * id follows][its 20 bytes][the rooms][the except rooms][u32 text
 * length][text] then [u32 length][bytes] per attachment, a list being a
 * u32 count then each as u32 length and bytes, big-endian. To one room's
 * topic when it names one room, else to the namespace's, which every loop
 * with members of the namespace hears; every such loop (this one included,
 * in the order the hub keeps) delivers it to its own sockets (hub_tap). */
static int publish_room(dx_sio *io, dx_sio_nsp *n, const filter *f, const dx__sio_encoded *e) {
  char t[DX_TOPIC_MAX + 1], room[DX_TOPIC_MAX + 1];
  if (f->n_rooms == 1) {
    memcpy(room, f->room[0], f->room_len[0]);
    room[f->room_len[0]] = 0;
  }
  size_t tl = room_topic(t, n->name, f->n_rooms == 1 ? room : NULL);
  if (!tl) return DX_EINVAL;
  dx__eio_buf b;
  dx__eio_buf_init(&b, &dx__alloc_std);
  int err = dx__eio_buf_putc(&b, f->except_id ? 1 : 0);
  if (f->except_id && !err) err = dx__eio_buf_append(&b, f->except_id, SID_LEN);
  put_list(&b, f->room, f->room_len, f->n_rooms, &err);
  put_list(&b, f->except, f->except_len, f->n_except, &err);
  put32(&b, e->text.len, &err);
  if (!err) err = dx__eio_buf_append(&b, e->text.data, e->text.len);
  for (size_t i = 0; !err && i < e->n_att; i++) {
    put32(&b, e->att[i].n, &err);
    if (!err) err = dx__eio_buf_append(&b, e->att[i].p, e->att[i].n);
  }
  if (!err) err = dx_publish(io->hub, t, tl, DX_BINARY, b.data, b.len, NULL);
  dx__eio_buf_free(&b);
  return err;
}

static int get32(const uint8_t **p, const uint8_t *end, size_t *v) {
  if (end - *p < 4) return -1;
  *v = (size_t)(*p)[0] << 24 | (size_t)(*p)[1] << 16 | (size_t)(*p)[2] << 8 | (*p)[3];
  *p += 4;
  return (size_t)(end - *p) < *v ? -1 : 0;
}

static int get_list(const uint8_t **p, const uint8_t *end, const char **v, size_t *lens,
                    size_t *n) {
  if (get32(p, end, n) || *n > MAX_TARGET_ROOMS) return -1;
  for (size_t i = 0; i < *n; i++) {
    if (get32(p, end, &lens[i])) return -1;
    v[i] = (const char *)*p;
    *p += lens[i];
  }
  return 0;
}

/* A broadcast arriving from the hub (from this loop, another one, or
 * another node): checked whole, then delivered to this loop's members. */
static void hub_tap(void *ud, const char *topic, size_t tlen, dx_msg_type type,
                    const uint8_t *data, size_t len) {
  dx_sio *io = ud;
  if (type != DX_BINARY || tlen < TOPIC_PREFIX_LEN || memcmp(topic, TOPIC_PREFIX, TOPIC_PREFIX_LEN))
    return;
  const char *nsp = topic + TOPIC_PREFIX_LEN;
  const char *nul = memchr(nsp, 0, tlen - TOPIC_PREFIX_LEN);
  dx_sio_nsp *n = nul ? nsp_find(io, nsp, (size_t)(nul - nsp)) : NULL;
  const uint8_t *p = data, *end = data + len;
  char except[SID_LEN + 1];
  filter f = {0};
  if (!n || p == end) return;
  if (*p++) {
    if (end - p < SID_LEN) return;
    memcpy(except, p, SID_LEN);
    except[SID_LEN] = 0;
    f.except_id = except;
    p += SID_LEN;
  }
  size_t text_len, k = 0;
  if (get_list(&p, end, f.room, f.room_len, &f.n_rooms) ||
      get_list(&p, end, f.except, f.except_len, &f.n_except) || get32(&p, end, &text_len))
    return;
  const uint8_t *text = p;
  p += text_len;
  dx__sio_attachment att[DX__SIO_MAX_ATTACHMENTS * 8];
  while (p < end) {
    size_t al;
    if (k == sizeof att / sizeof *att || get32(&p, end, &al)) return;
    att[k++] = (dx__sio_attachment){p, al};
    p += al;
  }
  deliver(n, &f, text, text_len, att, k);
}

int dx_sio_use_hub(dx_sio *io, dx_hub *h) {
  if (!io || !h) return DX_EINVAL;
  if (io->hub || io->n_sess) return DX_ESTATE;
  int r = dx__hub_set_tap(h, io->loop, hub_tap, io, &io->lo);
  if (!r) io->hub = h;
  return r;
}

static int fill_list(const char *const *v, size_t n, const char **out, size_t *lens) {
  if (n > MAX_TARGET_ROOMS || (n && !v)) return DX_EINVAL;
  for (size_t i = 0; i < n; i++) {
    if (!v[i] || !*v[i] || (lens[i] = strlen(v[i])) > DX_TOPIC_MAX) return DX_EINVAL;
    out[i] = v[i];
  }
  return 0;
}

int dx_sio_broadcast(dx_sio_nsp *n, const dx_sio_target *t, const char *event,
                     const json_t *args) {
  filter f = {0};
  if (!n) return DX_EINVAL;
  if (t) {
    if (fill_list(t->rooms, t->n_rooms, f.room, f.room_len) ||
        fill_list(t->except_rooms, t->n_except_rooms, f.except, f.except_len))
      return DX_EINVAL;
    f.n_rooms = t->n_rooms;
    f.n_except = t->n_except_rooms;
    f.except_id = t->except ? t->except->id : NULL;
  }
  json_t *a;
  int r = event_array(event, args, &a);
  if (r) return r;
  dx__sio_encoded e;
  dx__sio_encoded_init(&e, &dx__alloc_std);
  dx__sio_packet p = {.type = DX__SIO_EVENT, .nsp = n->name, .nsp_len = strlen(n->name),
                      .id = DX__SIO_NO_ID, .data = a};
  r = dx__sio_encode(&p, 0, &e);
  json_decref(a);
  if (r) {
    dx__sio_encoded_free(&e);
    return r == DX_ENOMEM ? r : DX_EINVAL;
  }
  /* Encoded once; the same text and attachments go to every member. */
  if (n->io->hub) r = publish_room(n->io, n, &f, &e);
  else r = deliver(n, &f, e.text.data, e.text.len, e.att, e.n_att);
  dx__sio_encoded_free(&e);
  return r;
}

int dx_sio_emit_to(dx_sio_nsp *n, const char *room, const dx_sio_socket *except,
                   const char *event, const json_t *args) {
  dx_sio_target t = {.rooms = room ? &room : NULL, .n_rooms = room ? 1 : 0, .except = except};
  return dx_sio_broadcast(n, &t, event, args);
}

/* ---------------------------------------------------------------------- */
/* Socket.IO packets in                                                    */
/* ---------------------------------------------------------------------- */

static void connect_error(sess *s, const char *nsp, size_t nsp_len, const char *message,
                          json_t *data) {
  json_t *o = json_object();
  if (o) {
    json_object_set_new(o, "message", json_string(message ? message : "not authorized"));
    if (data) json_object_set(o, "data", data);
    dx__sio_packet p = {.type = DX__SIO_CONNECT_ERROR, .nsp = nsp, .nsp_len = nsp_len,
                        .id = DX__SIO_NO_ID, .data = o};
    send_packet(s, &p);
    json_decref(o);
  }
}

static void on_connect(sess *s, dx__sio_packet *p) {
  dx_sio *io = s->io;
  dx_sio_nsp *ns = io->shutting ? NULL : nsp_find(io, p->nsp, p->nsp_len);
  if (!ns) {
    connect_error(s, p->nsp, p->nsp_len, "Invalid namespace", NULL);
    return;
  }
  if (sock_of(s, p->nsp, p->nsp_len)) return; /* already there: as the reference */
  dx_sio_socket *k = calloc(1, sizeof *k);
  if (!k || new_id(k->id)) {
    free(k);
    connect_error(s, p->nsp, p->nsp_len, "Internal error", NULL);
    return;
  }
  k->s = s;
  k->nsp = ns;
  k->snext = s->socks;
  s->socks = k;
  json_t *auth = p->data ? json_incref(p->data) : json_object();
  if (ns->auth) {
    const char *msg = NULL;
    json_t *data = NULL;
    if (ns->auth(k, auth, &msg, &data, ns->auth_ud)) {
      if (!k->gone && !s->closing) connect_error(s, p->nsp, p->nsp_len, msg, data);
      json_decref(data);
      json_decref(auth);
      sock_gone(k, DX_SIO_SERVER_NAMESPACE_DISCONNECT);
      return;
    }
    json_decref(data);
  }
  if (k->gone || s->closing) {
    json_decref(auth);
    return;
  }
  /* The answer, the socket's own room and the namespace's count, before
   * it counts as connected: when memory runs out for any of them it never
   * connects (no on_connection), and the session ends, as the client
   * could not be told otherwise. */
  json_t *ans = json_pack("{ss}", "sid", k->id);
  int r = ans ? sock_packet(k, DX__SIO_CONNECT, DX__SIO_NO_ID, ans) : DX_ENOMEM;
  json_decref(ans);
  if (!r) r = dx_sio_join(k, k->id);
  if (!r) r = room_count(io, ns->name, NULL, 1);
  if (r) {
    json_decref(auth);
    sock_gone(k, DX_SIO_SERVER_NAMESPACE_DISCONNECT);
    sess_close(s, DX_SIO_TRANSPORT_ERROR, 0);
    return;
  }
  k->connected = 1;
  k->nnext = ns->socks;
  if (ns->socks) ns->socks->nprev = k;
  ns->socks = k;
  dx__timer_stop(io->loop, &s->ctimer);
  if (ns->conn) ns->conn(k, auth, ns->conn_ud);
  json_decref(auth);
}

static void on_event(dx_sio_socket *k, dx__sio_packet *p) {
  json_t *name = json_array_get(p->data, 0);
  const char *ev = json_is_string(name) ? json_string_value(name) : NULL;
  handler *h = NULL, *any = NULL;
  for (handler *e = k->handlers; e; e = e->next) {
    if (ev && !strcmp(e->name, ev)) h = e;
    if (!strcmp(e->name, "*")) any = e;
  }
  if (!h) h = any;
  if (!h) return;
  json_t *args;
  if (h == any) {
    args = json_incref(p->data);
  } else {
    args = json_array();
    for (size_t i = 1; args && i < json_array_size(p->data); i++)
      if (json_array_append(args, json_array_get(p->data, i))) {
        json_decref(args);
        args = NULL;
      }
  }
  dx_sio_ack *a = NULL;
  if (args && p->id != DX__SIO_NO_ID && !(a = calloc(1, sizeof *a))) {
    json_decref(args);
    args = NULL;
  }
  if (!args) {
    /* Out of memory: the event cannot be handed over whole, and dropping
     * it would leave a client waiting for its ack for ever. */
    sess_close(k->s, DX_SIO_TRANSPORT_ERROR, 0);
    return;
  }
  if (a) {
    a->s = k;
    a->id = p->id;
    a->next = k->given;
    if (k->given) k->given->prev = a;
    k->given = a;
  }
  h->cb(k, args, a, h->ud);
  json_decref(args);
}

static void on_ack(dx_sio_socket *k, dx__sio_packet *p) {
  for (pending_ack **pp = &k->acks; *pp; pp = &(*pp)->next)
    if ((*pp)->id == p->id) {
      pending_ack *a = *pp;
      *pp = a->next;
      dx__timer_stop(k->s->io->loop, &a->t);
      dx__timer_unreserve(k->s->io->loop, 1);
      a->cb(k, 0, p->data, a->ud);
      free(a);
      return;
    }
}

static void sio_packet(sess *s, dx__sio_packet *p) {
  dx_sio_socket *k = p->type == DX__SIO_CONNECT ? NULL : sock_of(s, p->nsp, p->nsp_len);
  switch (p->type) {
  case DX__SIO_CONNECT:
    on_connect(s, p);
    break;
  case DX__SIO_DISCONNECT:
    if (k) sock_gone(k, DX_SIO_CLIENT_NAMESPACE_DISCONNECT);
    break;
  case DX__SIO_EVENT:
    if (k && k->connected) on_event(k, p);
    break;
  case DX__SIO_ACK:
    if (k && k->connected) on_ack(k, p);
    break;
  default: /* CONNECT_ERROR is the server's to send */
    sess_close(s, DX_SIO_PARSE_ERROR, 0);
  }
}

/* ---------------------------------------------------------------------- */
/* Engine.IO packets in                                                    */
/* ---------------------------------------------------------------------- */

static void arm_ping(sess *s) {
  s->wait_pong = 0;
  dx__timer_start(s->io->loop, &s->hb, s->io->o.ping_interval);
}

static void hb_fire(dx__timer *t) {
  sess *s = CONTAINER(t, sess, hb);
  if (s->wait_pong) {
    sess_close(s, DX_SIO_PING_TIMEOUT, 0);
    return;
  }
  s->wait_pong = 1;
  dx__timer_start(s->io->loop, &s->hb, s->io->o.ping_timeout);
  sess_send(s, DX__EIO_PING, 0, NULL, 0);
}

static void ctimer_fire(dx__timer *t) {
  sess *s = CONTAINER(t, sess, ctimer);
  /* Either connectTimeout with no namespace joined, or the linger of a
   * closing polling session whose client never came for its close
   * packet. */
  if (s->closing) sess_close(s, DX_SIO_TRANSPORT_CLOSE, 0);
  else if (!s->socks) sess_close(s, DX_SIO_TRANSPORT_CLOSE, 1);
}

/* The probe did not finish the upgrade in time: it is closed, and the
 * session goes on polling. */
static void utimer_fire(dx__timer *t) {
  sess *s = CONTAINER(t, sess, utimer);
  dx_conn *c = s->probe;
  s->probe = NULL;
  s->upgrading = 0;
  if (c) {
    dx_conn_set_user(c, NULL);
    dx_close(c, 1000, NULL);
  }
  if (has_get(s) && s->q.count) dx__task_queue(s->io->loop, &s->flush);
}

static void eio_packet(sess *s, const dx__eio_packet *p) {
  dx__sio_packet out;
  int r;
  switch (p->type) {
  case DX__EIO_PONG:
    if (s->wait_pong) arm_ping(s);
    return;
  case DX__EIO_CLOSE:
    sess_close(s, DX_SIO_TRANSPORT_CLOSE, 0);
    return;
  case DX__EIO_MESSAGE:
    if (s->io->raw) {
      s->io->raw((dx_eio_session *)s, p->binary ? DX_BINARY : DX_TEXT, p->data, p->len,
                 s->io->raw_ud);
      return;
    }
    if (p->binary) r = dx__sio_decode_binary(&s->dec, p->data, p->len, &out);
    else r = dx__sio_decode_text(&s->dec, (const char *)p->data, p->len, &out);
    if (r < 0) {
      sess_close(s, DX_SIO_PARSE_ERROR, 0);
      return;
    }
    if (r == 1) {
      sio_packet(s, &out);
      dx__sio_packet_release(&out);
    }
    return;
  case DX__EIO_PING: /* a v4 client does not ping outside the probe */
  case DX__EIO_UPGRADE:
  case DX__EIO_NOOP:
    return;
  default:
    sess_close(s, DX_SIO_PARSE_ERROR, 0);
  }
}

/* ---------------------------------------------------------------------- */
/* Sessions                                                                */
/* ---------------------------------------------------------------------- */

static sess *sess_new(dx_sio *io, int transport) {
  sess *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  if (new_id(s->sid) || dx__timer_reserve(io->loop, SESS_TIMERS)) {
    free(s);
    return NULL;
  }
  /* On a hub, the sid's first character names the session's loop, so a
   * polling request that reaches another loop is forwarded to it. */
  if (io->lo) s->sid[0] = B64URL[dx__hub_bit(io->lo)];
  s->timers = 1;
  s->io = io;
  s->transport = transport;
  dx__eio_queue_init(&s->q, &dx__alloc_std);
  dx__sio_decoder_init(&s->dec, &dx__alloc_std, DX__SIO_MAX_ATTACHMENTS);
  dx__timer_init(&s->hb, hb_fire);
  dx__timer_init(&s->ctimer, ctimer_fire);
  dx__timer_init(&s->utimer, utimer_fire);
  s->flush.run = flush_task;
  if (table_add(io, s)) {
    dx__timer_unreserve(io->loop, SESS_TIMERS);
    dx__sio_decoder_free(&s->dec);
    free(s);
    return NULL;
  }
  /* The open packet first, then the heartbeat and connectTimeout. */
  dx__eio_buf b;
  dx__eio_buf_init(&b, &dx__alloc_std);
  dx__eio_open op = {.sid = s->sid,
                     .upgrade_websocket = transport == T_POLLING && io->o.websocket,
                     .ping_interval = io->o.ping_interval,
                     .ping_timeout = io->o.ping_timeout,
                     .max_payload = io->o.max_payload};
  int r = dx__eio_open_json(&b, &op);
  if (!r) r = dx__eio_queue_push(&s->q, DX__EIO_OPEN, 0, b.data, b.len);
  dx__eio_buf_free(&b);
  if (r) {
    table_remove(io, s);
    dx__timer_unreserve(io->loop, SESS_TIMERS);
    dx__sio_decoder_free(&s->dec);
    dx__eio_queue_clear(&s->q);
    free(s);
    return NULL;
  }
  arm_ping(s);
  if (!io->raw) dx__timer_start(io->loop, &s->ctimer, io->o.connect_timeout);
  if (io->raw && io->o.raw_open) {
    s->opened = 1;
    io->o.raw_open((dx_eio_session *)s, io->o.raw_events_ud);
  }
  return s;
}

static void sess_free(sess *s) {
  dx__eio_queue_clear(&s->q);
  dx__sio_decoder_free(&s->dec);
  free(s);
}

static void reap_task(dx__task *t) {
  dx_sio *io = CONTAINER(t, dx_sio, reap);
  while (io->dead_socks) {
    dx_sio_socket *k = io->dead_socks;
    io->dead_socks = k->dnext;
    sock_free(k);
  }
  while (io->dead) {
    sess *s = io->dead;
    io->dead = s->dnext;
    sess_free(s);
  }
  if (io->freeing) io_free(io);
}

/* Ends a session: every socket told `why`, then the transport let go. With
 * tell_client, a polling client still gets what was queued and a close
 * packet on its next GET (the session lingers for it, at most
 * pingInterval + pingTimeout), and a WebSocket one is closed after its
 * queued output; otherwise the session goes at once. */
static void sess_close(sess *s, dx_sio_reason why, int tell_client) {
  if (s->dead) return;
  dx_sio *io = s->io;
  if (!s->closing) {
    s->closing = 1;
    while (s->socks) sock_gone(s->socks, why);
    if (s->opened) {
      s->opened = 0;
      if (io->o.raw_close) io->o.raw_close((dx_eio_session *)s, why, io->o.raw_events_ud);
    }
    if (s->dead) return; /* a callback closed it for good meanwhile */
    if (tell_client && !s->ws) {
      dx__timer_stop(io->loop, &s->hb);
      dx__timer_start(io->loop, &s->ctimer, (uint64_t)io->o.ping_interval + io->o.ping_timeout);
      if (!s->q.count) close_packet(s);
      if (has_get(s)) answer_get(s, 1); /* it ends the session once "1" left */
      return;
    }
  }
  s->dead = 1;
  table_remove(io, s);
  dx__timer_stop(io->loop, &s->hb);
  dx__timer_stop(io->loop, &s->ctimer);
  dx__timer_stop(io->loop, &s->utimer);
  dx__timer_unreserve(io->loop, SESS_TIMERS);
  if (has_get(s)) { /* a held poll learns the session is over */
    preq r = s->get;
    s->get = (preq){0};
    reply(io, r, 200, "text/plain; charset=UTF-8", "1", 1);
  }
  if (s->ws) {
    dx_conn_set_user(s->ws, NULL);
    if (dx_conn_state(s->ws) == DX_OPEN) dx_close(s->ws, 1000, NULL);
  }
  if (s->probe) {
    dx_conn_set_user(s->probe, NULL);
    if (dx_conn_state(s->probe) == DX_OPEN) dx_close(s->probe, 1000, NULL);
  }
  s->ws = s->probe = NULL;
  s->dnext = io->dead;
  io->dead = s;
  dx__task_queue_last(io->loop, &io->reap);
}

/* ---------------------------------------------------------------------- */
/* Requests: the query and the routing                                     */
/* ---------------------------------------------------------------------- */

typedef struct query {
  const char *eio, *transport, *sid;
  size_t eio_len, transport_len, sid_len;
} query;

static void parse_query(const char *q, size_t n, query *out) {
  memset(out, 0, sizeof *out);
  const char *end = q + n;
  while (q < end) {
    const char *amp = memchr(q, '&', (size_t)(end - q));
    if (!amp) amp = end;
    const char *eq = memchr(q, '=', (size_t)(amp - q));
    if (eq) {
      size_t kl = (size_t)(eq - q), vl = (size_t)(amp - eq - 1);
      if (kl == 3 && !memcmp(q, "EIO", 3) && !out->eio) out->eio = eq + 1, out->eio_len = vl;
      else if (kl == 9 && !memcmp(q, "transport", 9) && !out->transport)
        out->transport = eq + 1, out->transport_len = vl;
      else if (kl == 3 && !memcmp(q, "sid", 3) && !out->sid) out->sid = eq + 1, out->sid_len = vl;
    }
    q = amp + 1;
  }
}

static int is(const char *p, size_t n, const char *lit) {
  return p && n == strlen(lit) && !memcmp(p, lit, n);
}

static int under_path(const dx_sio *io, const char *path, size_t n) {
  const char *q = memchr(path, '?', n);
  if (q) n = (size_t)(q - path);
  if (n >= io->path_len && !memcmp(path, io->o.path, io->path_len)) return 1;
  return n == io->path_len - 1 && !memcmp(path, io->o.path, n);
}

/* What the reference's verify() decides for a request, in its order:
 * -1 when it may go on, else the Engine.IO error code. */
static int verify(dx_sio *io, const query *q, int upgrade, sess **out) {
  *out = NULL;
  int polling = is(q->transport, q->transport_len, "polling");
  int ws = is(q->transport, q->transport_len, "websocket");
  if ((!polling || !io->o.polling) && (!ws || !io->o.websocket))
    return DX__EIO_ERR_UNKNOWN_TRANSPORT;
  if (q->sid) {
    sess *s = find_sess(io, q->sid, q->sid_len);
    if (!s || s->dead) return DX__EIO_ERR_UNKNOWN_SID;
    if (upgrade) {
      if (!ws || s->transport != T_POLLING || s->upgrading || s->probe || s->closing)
        return DX__EIO_ERR_BAD_REQUEST;
    } else if (!polling || s->transport != T_POLLING) {
      return DX__EIO_ERR_BAD_REQUEST;
    }
    *out = s;
    return -1;
  }
  if (!is(q->eio, q->eio_len, "4")) return DX__EIO_ERR_UNSUPPORTED_PROTOCOL_VERSION;
  if (ws && !upgrade) return DX__EIO_ERR_BAD_REQUEST;
  if (io->shutting) return DX__EIO_ERR_FORBIDDEN;
  return -1;
}

static void handle_post(sess *s, preq r) {
  dx_sio *io = s->io;
  size_t len = 0;
  const uint8_t *body = r.f ? r.f->body : dx_http_body(r.r, &len);
  if (r.f) len = r.f->len;
  if (len > io->o.max_payload) {
    reply(io, r, 413, "text/plain; charset=UTF-8", "Payload Too Large", 17);
    return;
  }
  /* The decoder writes base64 in place: a copy of ours. */
  uint8_t *copy = malloc(len ? len : 1);
  if (!copy) {
    reply(io, r, 500, "text/plain; charset=UTF-8", "500", 3);
    return;
  }
  if (len) memcpy(copy, body, len);
  dx__eio_reader rd;
  int bad = dx__eio_payload_begin(&rd, copy, len, io->o.max_payload);
  /* Answered before the packets are handled: a handler's emits may wait
   * for the next GET, never on this POST. */
  reply(io, r, 200, "text/html", "ok", 2);
  if (bad) {
    sess_close(s, DX_SIO_PARSE_ERROR, 0);
  } else {
    dx__eio_packet p;
    while (!s->closing && dx__eio_payload_next(&rd, &p)) eio_packet(s, &p);
  }
  free(copy);
}

static void handle_get(sess *s, preq r) {
  if (has_get(s)) {
    /* A second GET while one is held: the reference fails the session
     * ("transport error") and answers the newcomer 400. */
    reply(s->io, r, 400, NULL, NULL, 0);
    sess_close(s, DX_SIO_TRANSPORT_ERROR, 0);
    return;
  }
  s->get = r;
  if (s->q.count) answer_get(s, 1);
  else if (s->upgrading) answer_get(s, 0);
}

/* ---------------------------------------------------------------------- */
/* Polling requests that reached another loop than their session's         */
/* ---------------------------------------------------------------------- */

static void fwd_unref(fwd *f) {
  if (atomic_fetch_sub(&f->refs, 1) != 1) return;
  free(f->body);
  free(f);
}

/* A post of f that its loop, freed first, never ran: the reference the
 * post carried goes (every post of f carries one). */
static void fwd_drop(dx_loop *loop, void *ud) {
  (void)loop;
  fwd_unref(ud);
}

static void pending_unlink(dx_sio *io, fwd *f) {
  if (f->prev) f->prev->next = f->next;
  else io->pending = f->next;
  if (f->next) f->next->prev = f->prev;
  f->prev = f->next = NULL;
}

/* On `from`'s loop: the answer came back. */
static void fwd_back(dx_loop *loop, void *ud) {
  (void)loop;
  fwd *f = ud;
  dx_loop *l;
  dx_sio *io = dx__hub_tap_ud(f->hub, f->from, hub_tap, &l);
  if (io && !atomic_load(&f->aborted)) {
    pending_unlink(io, f);
    if (respond(io, f->r, f->status, f->type, f->body, f->len))
      dx_http_error(f->r, 500, NULL, NULL, 0);
    fwd_unref(f); /* from's */
  }
  fwd_unref(f); /* to's, which came with the answer */
}

/* On `to`'s loop: answers a forwarded request (its reference goes back
 * with the answer). */
static void fwd_reply(fwd *f, int status, const char *type, const void *body, size_t len) {
  free(f->body);
  f->body = NULL;
  f->len = 0;
  if (len && (f->body = malloc(len))) {
    memcpy(f->body, body, len);
    f->len = len;
  } else if (len) {
    status = 500;
    type = "text/plain; charset=UTF-8";
  }
  f->status = status;
  f->type = type;
  if (dx__hub_post_tap(f->hub, f->from, hub_tap, fwd_back, fwd_drop, f)) fwd_unref(f);
}

/* On `to`'s loop: a request for one of its sessions. */
static void fwd_arrive(dx_loop *loop, void *ud) {
  (void)loop;
  fwd *f = ud;
  dx_loop *l;
  dx_sio *io = dx__hub_tap_ud(f->hub, f->to, hub_tap, &l);
  if (atomic_load(&f->aborted)) {
    fwd_unref(f);
    return;
  }
  preq q = {NULL, f};
  sess *s = io ? find_sess(io, f->sid, SID_LEN) : NULL;
  if (!s || s->dead) {
    reply_error(io, q, DX__EIO_ERR_UNKNOWN_SID);
    return;
  }
  if (s->transport != T_POLLING) reply_error(io, q, DX__EIO_ERR_BAD_REQUEST);
  else if (f->post) handle_post(s, q);
  else handle_get(s, q);
}

/* On `to`'s loop: the request's connection ended on `from`. */
static void fwd_gone(dx_loop *loop, void *ud) {
  (void)loop;
  fwd *f = ud;
  dx_loop *l;
  dx_sio *io = dx__hub_tap_ud(f->hub, f->to, hub_tap, &l);
  sess *s = io ? find_sess(io, f->sid, SID_LEN) : NULL;
  if (s && s->get.f == f) {
    s->get = (preq){0};
    fwd_unref(f); /* to's: it will not be answered */
    sess_close(s, DX_SIO_TRANSPORT_ERROR, 0);
  }
  fwd_unref(f); /* from's, which came with the news */
}

/* On `from`'s loop, from on_http_abort. */
static void fwd_abort(dx_sio *io, fwd *f) {
  pending_unlink(io, f);
  atomic_store(&f->aborted, 1);
  if (dx__hub_post_tap(f->hub, f->to, hub_tap, fwd_gone, fwd_drop, f)) fwd_unref(f);
}

/* Hands a GET or POST for a session of loop `bit` over to that loop; the
 * answer comes back through fwd_back. 0, or -1 when it could not (no such
 * loop, no memory): the caller answers. */
static int fwd_send(dx_sio *io, dx_http_request *r, unsigned bit, const char *sid, int post) {
  fwd *f = calloc(1, sizeof *f);
  size_t len = 0;
  const uint8_t *body = dx_http_body(r, &len);
  if (!f || (len && !(f->body = malloc(len)))) {
    free(f);
    return -1;
  }
  if (len) memcpy(f->body, body, len);
  f->len = len;
  atomic_init(&f->refs, 2);
  atomic_init(&f->aborted, 0);
  f->hub = io->hub;
  f->from = dx__hub_bit(io->lo);
  f->to = bit;
  f->r = r;
  f->post = post;
  memcpy(f->sid, sid, SID_LEN);
  if (dx__hub_post_tap(io->hub, bit, hub_tap, fwd_arrive, fwd_drop, f)) {
    free(f->body);
    free(f);
    return -1;
  }
  f->next = io->pending;
  if (io->pending) io->pending->prev = f;
  io->pending = f;
  return 0;
}

/* The loop a sid names, when it is another one of this hub's. */
static int other_loop(const dx_sio *io, const query *q, unsigned *bit) {
  if (!io->lo || q->sid_len != SID_LEN) return 0;
  const char *c = memchr(B64URL, q->sid[0], 64);
  if (!c || (unsigned)(c - B64URL) == dx__hub_bit(io->lo)) return 0;
  *bit = (unsigned)(c - B64URL);
  return 1;
}

/* The server, of those attached to one dx_options (a chain, newest
 * first), whose path holds `path`; NULL when none does. */
static dx_sio *route(dx_sio *head, const char *path, size_t n) {
  for (dx_sio *io = head; io; io = io->chain)
    if (under_path(io, path, n)) return io;
  return NULL;
}

static void sio_http(dx_http_request *r) {
  dx_sio *head = dx__http_sio(r);
  const char *path = dx_http_path(r);
  dx_sio *io = route(head, path, strlen(path));
  if (!io) {
    if (head->app.http) head->app.http(r);
    else dx_http_error(r, 404, NULL, NULL, 0);
    return;
  }
  const char *m = dx_http_method(r);
  if (!strcmp(m, "OPTIONS")) {
    dx_http_field h[8];
    size_t n = cors_headers(io, r, h);
    const char *ask = dx_http_header(r, "Access-Control-Request-Headers");
    h[n++] = (dx_http_field){"Access-Control-Allow-Methods", "GET,HEAD,PUT,PATCH,POST,DELETE"};
    if (ask) h[n++] = (dx_http_field){"Access-Control-Allow-Headers", ask};
    dx_http_respond(r, 204, h, n, NULL, 0);
    return;
  }
  if (dx_http_loop(r) != io->loop) {
    dx_http_error(r, 500, "this Socket.IO server runs on another loop", NULL, 0);
    return;
  }
  const char *qs = dx_http_query(r);
  query q;
  parse_query(qs, strlen(qs), &q);
  unsigned bit;
  if ((!strcmp(m, "GET") || !strcmp(m, "POST")) && is(q.transport, q.transport_len, "polling") &&
      other_loop(io, &q, &bit)) {
    if (fwd_send(io, r, bit, q.sid, !strcmp(m, "POST"))) respond_error(io, r, DX__EIO_ERR_UNKNOWN_SID);
    return;
  }
  sess *s;
  int code = verify(io, &q, 0, &s);
  if (code >= 0) {
    respond_error(io, r, code);
    return;
  }
  int get = !strcmp(m, "GET"), post = !strcmp(m, "POST");
  if (!s) { /* the handshake */
    if (!get) {
      respond_error(io, r, DX__EIO_ERR_BAD_HANDSHAKE_METHOD);
      return;
    }
    s = sess_new(io, T_POLLING);
    if (!s) {
      dx_http_error(r, 500, NULL, NULL, 0);
      return;
    }
    handle_get(s, (preq){r, NULL});
    return;
  }
  if (get) handle_get(s, (preq){r, NULL});
  else if (post) handle_post(s, (preq){r, NULL});
  else respond_error(io, r, DX__EIO_ERR_BAD_REQUEST);
}

/* A held GET whose connection ended: the client went away ("transport
 * error", as the reference's "poll connection closed prematurely"). */
static void sio_http_abort(dx_http_request *r) {
  dx_sio *head = dx__http_sio(r);
  const char *path = dx_http_path(r);
  dx_sio *io = route(head, path, strlen(path));
  if (!io) {
    if (head->app.abort) head->app.abort(r);
    return;
  }
  const char *qs = dx_http_query(r);
  query q;
  parse_query(qs, strlen(qs), &q);
  sess *s = q.sid ? find_sess(io, q.sid, q.sid_len) : NULL;
  for (fwd *f = io->pending; f; f = f->next)
    if (f->r == r) {
      fwd_abort(io, f);
      return;
    }
  if (!s || s->get.r != r) return;
  s->get = (preq){0};
  sess_close(s, DX_SIO_TRANSPORT_ERROR, 0);
}

/* ---------------------------------------------------------------------- */
/* WebSocket connections                                                   */
/* ---------------------------------------------------------------------- */

static dx_sio *conn_route(const dx_conn *c) {
  const char *p = dx_conn_path(c);
  return route(dx__conn_sio(c), p, strlen(p));
}

static void conn_query(const dx_conn *c, query *q) {
  const char *p = dx_conn_path(c);
  const char *qs = strchr(p, '?');
  parse_query(qs ? qs + 1 : "", qs ? strlen(qs + 1) : 0, q);
}

/* ---- an upgrade that reached another loop than its session's ----------- */

/* On the session's loop: the connection arrives, and a server of this loop
 * attached to the Socket.IO server of the same hub adopts it; the upgrade
 * is then decided here (sio_accept again), as if this loop had accepted it:
 * a session gone meanwhile gets "Session ID unknown". When no server here
 * takes it (freed, shutting down) the connection is closed. */
static void handoff_arrive(dx_loop *loop, void *ud) {
  dx__handoff *h = ud;
  dx_hub *hub = dx__handoff_user(h);
  for (dx_server *srv = dx__loop_server_next(loop, NULL); srv;
       srv = dx__loop_server_next(loop, srv))
    for (dx_sio *io = dx__server_options(srv)->sio; io; io = io->chain)
      if (io->hub == hub && io->loop == loop && !io->freeing && dx__server_adopt(srv, h) == 0)
        return;
  dx__handoff_free(h);
}

/* The session's loop was freed before the connection's turn came. */
static void handoff_drop(dx_loop *loop, void *ud) {
  (void)loop;
  dx__handoff_free(ud);
}

typedef struct handoff_to {
  dx_sio *io;
  unsigned bit;
} handoff_to;

static int handoff_post(dx__handoff *h, void *ud) {
  handoff_to *t = ud;
  dx__handoff_set_user(h, t->io->hub);
  return dx__hub_post_tap(t->io->hub, t->bit, hub_tap, handoff_arrive, handoff_drop, h);
}

static int sio_accept(dx_conn *c, const dx_request *req) {
  dx_sio *head = dx__conn_sio(c);
  size_t n;
  const char *path = dx_request_path(req, &n);
  dx_sio *io = route(head, path, n);
  if (!io) return head->app.accept ? head->app.accept(c, req) : 0;
  dx_conn_set_user(c, NULL);
  if (dx_conn_loop(c) != io->loop) return 500;
  const char *qs = memchr(path, '?', n);
  query q;
  parse_query(qs ? qs + 1 : "", qs ? n - (size_t)(qs + 1 - path) : 0, &q);
  /* A probe for another loop's session moves there, connection and all.
   * When that loop cannot be reached (its server is gone), the session is
   * unknown here: answered below. */
  handoff_to to = {io, 0};
  if (is(q.transport, q.transport_len, "websocket") && other_loop(io, &q, &to.bit)) {
    int r = dx__conn_hand_off(c, handoff_post, &to);
    if (r == 0 || dx_conn_state(c) == DX_CLOSED) return 0;
    if (r == DX_ENOMEM) return 503;
  }
  sess *s;
  int code = verify(io, &q, 1, &s);
  if (code < 0) return 0;
  /* Refused as the reference's abortUpgrade: 400 and the code's message. */
  const char *msg = "Bad request";
  dx__eio_http_error(code, &msg);
  dx__conn_refuse(c, 400, msg);
  return 400;
}

static void sio_open(dx_conn *c) {
  dx_sio *io = conn_route(c), *head = dx__conn_sio(c);
  if (!io) {
    if (head->app.open) head->app.open(c);
    return;
  }
  query q;
  conn_query(c, &q);
  if (q.sid) { /* the probe of an upgrade */
    sess *s = find_sess(io, q.sid, q.sid_len);
    if (!s || s->dead || s->closing || s->probe || s->transport != T_POLLING) {
      dx_close(c, 1000, NULL);
      return;
    }
    s->probe = c;
    dx_conn_set_user(c, s);
    dx__timer_start(io->loop, &s->utimer, UPGRADE_TIMEOUT_MS);
    return;
  }
  sess *s = io->shutting ? NULL : sess_new(io, T_WS);
  if (!s) {
    dx_close(c, 1011, NULL);
    return;
  }
  dx_conn_set_user(c, s);
  /* Direct WebSocket: the open packet leaves as the first frame. */
  dx__eio_packet p;
  s->ws = c;
  while (dx__eio_queue_front(&s->q, &p)) {
    dx__eio_buf *b = &io->scratch;
    b->len = 0;
    if (!dx__eio_encode_ws(b, &p)) dx_send(c, DX_TEXT, b->data, b->len);
    dx__eio_queue_pop(&s->q);
  }
}

/* The probe said "5": it becomes the transport, and what waited in the
 * queue follows on it, in order. */
static void finish_upgrade(sess *s) {
  dx__eio_packet p;
  if (has_get(s)) answer_get(s, 0);
  dx__timer_stop(s->io->loop, &s->utimer);
  s->ws = s->probe;
  s->probe = NULL;
  s->upgrading = 0;
  s->transport = T_WS;
  while (dx__eio_queue_front(&s->q, &p)) {
    if (p.binary) {
      dx_send(s->ws, DX_BINARY, p.data, p.len);
    } else {
      dx__eio_buf *b = &s->io->scratch;
      b->len = 0;
      if (!dx__eio_encode_ws(b, &p)) dx_send(s->ws, DX_TEXT, b->data, b->len);
    }
    dx__eio_queue_pop(&s->q);
  }
}

static void sio_message(dx_conn *c, dx_msg_type type, const uint8_t *data, size_t len) {
  dx_sio *io = conn_route(c), *head = dx__conn_sio(c);
  if (!io) {
    if (head->app.message) head->app.message(c, type, data, len);
    return;
  }
  sess *s = dx_conn_user(c);
  if (!s || s->dead) return;
  if (len > io->o.max_payload) {
    sess_close(s, DX_SIO_TRANSPORT_ERROR, 0);
    return;
  }
  dx__eio_packet p;
  if (dx__eio_decode_ws(data, len, type == DX_BINARY, &p)) {
    sess_close(s, DX_SIO_PARSE_ERROR, 0);
    return;
  }
  if (c == s->probe) {
    if (p.type == DX__EIO_PING && p.len == 5 && !memcmp(p.data, "probe", 5)) {
      dx_send(c, DX_TEXT, "3probe", 6);
      s->upgrading = 1;
      /* Release the held poll so the client can pause polling and send
       * "5" (the reference sends noops until it does). */
      if (has_get(s)) answer_get(s, 0);
    } else if (p.type == DX__EIO_UPGRADE && s->upgrading) {
      finish_upgrade(s);
    } else {
      sess_close(s, DX_SIO_PARSE_ERROR, 0);
    }
    return;
  }
  if (c == s->ws) eio_packet(s, &p);
}

static void sio_close(dx_conn *c, int code, const char *reason, dx_why why, int status) {
  dx_sio *io = conn_route(c), *head = dx__conn_sio(c);
  if (!io) {
    if (head->app.close) head->app.close(c, code, reason, why, status);
    return;
  }
  sess *s = dx_conn_user(c);
  if (!s || s->dead) return;
  if (c == s->probe) { /* a failed probe: polling goes on */
    dx__timer_stop(io->loop, &s->utimer);
    s->probe = NULL;
    s->upgrading = 0;
    return;
  }
  if (c != s->ws) return;
  s->ws = NULL;
  dx_sio_reason r = DX_SIO_TRANSPORT_CLOSE;
  if (why == DX_WHY_TRANSPORT_ERROR || why == DX_WHY_PROTOCOL_ERROR || why == DX_WHY_INTERNAL_ERROR)
    r = DX_SIO_TRANSPORT_ERROR;
  else if (why == DX_WHY_PING_TIMEOUT)
    r = DX_SIO_PING_TIMEOUT;
  else if (why == DX_WHY_SERVER_SHUTDOWN)
    r = DX_SIO_SERVER_SHUTTING_DOWN;
  sess_close(s, r, 0);
}

/* ---------------------------------------------------------------------- */
/* The server                                                              */
/* ---------------------------------------------------------------------- */

dx_sio *dx_sio_new(dx_loop *loop, const dx_sio_options *o) {
  if (!loop) return NULL;
  dx_sio *io = calloc(1, sizeof *io);
  if (!io) return NULL;
  dx_sio_options *def = o ? NULL : dx_sio_options_new();
  if ((!o && !def) || options_copy(&io->o, o ? o : def)) {
    dx_sio_options_free(def);
    free(io);
    return NULL;
  }
  dx_sio_options_free(def);
  io->loop = loop;
  io->raw = io->o.raw;
  io->raw_ud = io->o.raw_ud;
  io->path_len = strlen(io->o.path);
  io->reap.run = reap_task;
  dx__eio_buf_init(&io->scratch, &dx__alloc_std);
  if (!dx_sio_of(io, "/")) {
    dx_sio_free(io);
    return NULL;
  }
  return io;
}

int dx_sio_attach(dx_sio *io, dx_options *o) {
  if (!io || !o || io->attached) return DX_EINVAL;
  if (o->sio) {
    /* A second server on the same options (another path): it goes first
     * in the chain, and the application's callbacks are the ones the
     * first attach kept (o's are the trampolines by now). */
    dx_sio *prev = o->sio;
    for (dx_sio *e = prev; e; e = e->chain)
      if (!strcmp(e->o.path, io->o.path)) return DX_EINVAL;
    io->app = prev->app;
    io->chain = prev;
    io->attached = 1;
    dx__options_set_sio(o, io);
    if (o->http_max_body < io->o.max_payload)
      dx_options_set_http_limits(o, io->o.max_payload, o->http_request_ms, o->http_keepalive_ms);
    return 0;
  }
  io->attached = 1;
  io->app.http = o->on_http;
  io->app.abort = o->on_http_abort;
  io->app.accept = o->on_accept;
  io->app.open = o->on_open;
  io->app.message = o->on_message;
  io->app.close = o->on_close;
  dx_options_on_http(o, sio_http);
  dx_options_on_http_abort(o, sio_http_abort);
  dx_options_on_accept(o, sio_accept);
  dx_options_on_open(o, sio_open);
  dx_options_on_message(o, sio_message);
  dx_options_on_close(o, sio_close);
  if (o->http_max_body < io->o.max_payload)
    dx_options_set_http_limits(o, io->o.max_payload, o->http_request_ms, o->http_keepalive_ms);
  if (o->max_message < io->o.max_payload + 1) dx_options_set_max_message(o, io->o.max_payload + 1);
  dx__options_set_sio(o, io);
  return 0;
}

int dx_sio_shutdown(dx_sio *io) {
  if (!io || io->shutting) return DX_ESTATE;
  io->shutting = 1;
  for (size_t i = 0; i < io->tab_cap; i++)
    for (sess *s = io->tab[i], *nx; s; s = nx) {
      nx = s->hnext;
      sess_close(s, DX_SIO_SERVER_SHUTTING_DOWN, 1);
    }
  return 0;
}

void dx_sio_free(dx_sio *io) {
  if (!io) return;
  if (!io->shutting) dx_sio_shutdown(io);
  /* What lingers for its close packet goes now. */
  for (size_t i = 0; i < io->tab_cap; i++)
    while (io->tab[i]) sess_close(io->tab[i], DX_SIO_SERVER_SHUTTING_DOWN, 0);
  /* The hub is let go now (it may be freed before the loop is): no
   * socket is left in any room, and the tap is removed. */
  if (io->lo) {
    dx__hub_clear_tap(io->lo);
    for (uint32_t i = 0; i < io->rooms.cap; i++)
      if (io->rooms.slot[i]) {
        room_ref *r = (room_ref *)io->rooms.slot[i];
        dx__hub_topic_removed(io->lo, r->name, r->node.len, r->node.hash);
        free(r);
      }
    dx__map_free(&io->rooms);
    io->lo = NULL;
    io->hub = NULL;
  }
  /* The memory goes with the reap task, after this iteration's tasks that
   * may still name a session (dx_loop_free runs it too when the loop does
   * not turn again). */
  io->freeing = 1;
  dx__task_queue_last(io->loop, &io->reap);
}

static void io_free(dx_sio *io) {
  for (dx_sio_nsp *n = io->nsps, *nx; n; n = nx) {
    nx = n->next;
    free(n->name);
    free(n);
  }
  free(io->tab);
  dx__eio_buf_free(&io->scratch);
  options_clear(&io->o);
  free(io);
}

/* ---------------------------------------------------------------------- */
/* Plain Engine.IO                                                         */
/* ---------------------------------------------------------------------- */

void dx_sio_options_engine_only(dx_sio_options *o, dx_eio_on_message cb, void *ud) {
  if (!o) return;
  o->raw = cb;
  o->raw_ud = ud;
}

int dx_eio_send(dx_eio_session *es, dx_msg_type type, const void *data, size_t len) {
  sess *s = (sess *)es;
  if (!s || (type != DX_TEXT && type != DX_BINARY) || (len && !data)) return DX_EINVAL;
  if (s->closing || s->dead || s->overflow) return DX_ECLOSED;
  int r = sess_send(s, DX__EIO_MESSAGE, type == DX_BINARY, data, len);
  return r == DX_EUTF8 ? DX_EUTF8 : r;
}

void dx_sio_options_engine_events(dx_sio_options *o, dx_eio_on_open open, dx_eio_on_close close,
                                  void *ud) {
  if (!o) return;
  o->raw_open = open;
  o->raw_close = close;
  o->raw_events_ud = ud;
}

const char *dx_eio_session_id(const dx_eio_session *es) { return ((const sess *)es)->sid; }
