/* What the server and client endpoints share: the options object, the
 * per-endpoint settings every connection borrows, and the connection
 * object with the machinery both roles use. */
#ifndef DX_ENDPOINT_H
#define DX_ENDPOINT_H
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

#include "duplex.h"
#include "net/loop.h"
#include "net/tls.h"
#include "net/transport.h"
#include "proto/deflate.h"
#include "proto/session.h"

/* The slots a server's connection limits count (dx_options_set_max_connections,
 * _max_handshakes): one block per dx_options object, shared by every copy
 * made of it, so the servers of one process that run a loop per thread on
 * one port count together. Each loop's thread takes and gives back slots
 * at once, hence the atomics. */
typedef struct dx__limits {
  atomic_size_t conns;      /* admitted connections, until they end */
  atomic_size_t handshakes; /* of those, the ones whose request head is not in yet */
  atomic_uint refs;         /* options objects and copies holding it */
} dx__limits;

/* max_handshakes when none was set (see dx_options_set_max_handshakes). */
#define DX__DEFAULT_MAX_HANDSHAKES 1024

/* A fresh block of counts (one reference), NULL when out of memory. */
dx__limits *dx__limits_new(void);

/* The hooks a server connection calls once it serves HTTP requests instead
 * of upgrading (src/http/). The table is set by dx_options_on_http(), which
 * lives in the HTTP layer, so this layer calls up into it only through these
 * pointers. Every hook runs on the connection's loop thread. */
typedef struct dx__http_ops {
  /* The first head was not an upgrade: take over the connection (its phase
   * is already DX__P_HTTP). head[0..head_len) is that request's head and
   * rest[0..n) what followed it; both are only borrowed. */
  void (*begin)(dx_conn *c, const char *head, size_t head_len, const uint8_t *rest, size_t n);
  /* Bytes read in DX__P_HTTP (borrowed: the loop's buffer). */
  void (*input)(dx_conn *c, const uint8_t *buf, size_t n);
  /* The connection's queued output was all written: room for more. */
  void (*writable)(dx_conn *c);
  /* c->timer fired in DX__P_HTTP. */
  void (*timer)(dx_conn *c);
  /* The peer ended its direction of the stream (EOF) in DX__P_HTTP. */
  void (*eof)(dx_conn *c);
  /* The server drains (dx_server_shutdown). */
  void (*drain)(dx_conn *c);
  /* The connection ends (c->http is set): release the HTTP state, telling
   * the application about a request it still holds unless `silent`. */
  void (*end)(dx_conn *c, int silent);
} dx__http_ops;

/* A counter of dx_server_stats: written by one thread only (the server's
 * loop), read by any. A relaxed load and store, not a locked
 * read-modify-write: the hot path pays a plain add. */
typedef _Atomic uint64_t dx__counter;
static inline void dx__count(dx__counter *c, uint64_t n) {
  atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                        memory_order_relaxed);
}
static inline void dx__uncount(dx__counter *c) {
  atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) - 1,
                        memory_order_relaxed);
}

/* Connection states counted by dx_server_stats (dx_conn.stat_state). */
enum { DX__ST_NONE = 0, DX__ST_CONNECTING, DX__ST_OPEN, DX__ST_CLOSING, DX__ST_HTTP };

/* The counters behind dx_server_stats, per endpoint (one server). */
typedef struct dx__stats {
  dx__counter state[5]; /* connections now, by DX__ST_* (index 0 unused) */
  dx__counter accepted, opened, http_closed;
  dx__counter closed[DX_WHY_COUNT];
  dx__counter msgs_in, msgs_out, bytes_in, bytes_out;
  dx__counter http_requests, http_responses[6]; /* by status class, 1xx..5xx */
} dx__stats;

/* A list of strings packed as NUL-separated names (one allocation). */
typedef struct dx__strlist {
  char *p;
  size_t len; /* bytes in p, every name's NUL included */
} dx__strlist;

struct dx_options {
  dx_on_open on_open;
  dx_on_message on_message;
  dx_on_close on_close;
  dx_on_control on_ping, on_pong;
  dx_on_accept on_accept;
  void *user;
  uint64_t max_message, max_frame;
  uint32_t max_header;
  uint32_t handshake_timeout_ms, close_timeout_ms;
  dx_on_select_protocol on_select_protocol;
  dx__strlist protocols;
  dx__strlist origins;
  char *tls_cert, *tls_key, *tls_ca;
  uint8_t tls_insecure;
  dx__pmd_config pmd;
  uint32_t ping_interval_ms, ping_timeout_ms;
  uint32_t idle_timeout_ms;
  size_t high_water, low_water, max_buffered;
  dx_slow_policy slow_policy;
  dx_on_drain on_drain;
  uint8_t reuseport, defer_accept;
  size_t max_connections, max_handshakes; /* 0: no limit */
  dx__limits *limits;     /* the counts those limits apply to (shared) */
  /* the reconnecting client (src/reconnect.c) */
  uint32_t reconnect_initial_ms, reconnect_max_ms;
  double reconnect_randomization;
  unsigned reconnect_max_attempts;
  size_t reconnect_queue;
  dx_on_reconnect_attempt on_reconnect_attempt;
  dx_on_reconnected on_reconnected;
  dx_on_reconnect_failed on_reconnect_failed;
  dx_should_reconnect should_reconnect;
  struct dx_hub *hub;     /* borrowed (dx_options_set_hub) */
  /* HTTP on the same port (src/http/): NULL ops, no HTTP */
  const dx__http_ops *http_ops;
  dx_on_http on_http;
  dx_on_http_abort on_http_abort;
  size_t http_max_body;
  uint32_t http_request_ms, http_keepalive_ms;
  /* the Socket.IO server its callbacks route to (dx_sio_attach), borrowed */
  struct dx_sio *sio;
};

/* What a connection needs from its owner (a server, or the client that
 * made it): the role's decisions and the calls back into the owner. One
 * const table per role, reached through the endpoint, so that conn.c names
 * no server or client function and holds no branch per role. The decisions
 * are copied into the connection's bits when it starts: what runs per
 * message tests a bit and never calls through the table. */
typedef struct dx__conn_owner {
  dx__role role;             /* the side of RFC 6455 it plays: masking, TLS */
  /* RFC 6455 §7.1.1: with both close frames through, this side closes TCP
   * first (the server); the other waits for that (until the deadline). */
  uint8_t closes_first;
  /* The application holds the connection from its creation on (dx_connect
   * returned it): on_close is owed even if it never opens, and dx_close
   * aborts it while it is connecting. Else it is the application's only
   * from on_open on. */
  uint8_t held_from_start;
  /* Each connection has an endpoint of its own (a client's), allocated
   * with the endpoint first, freed with the connection. Else the owner
   * keeps the endpoint, and may free it once its connections finished,
   * even before their memory goes: a connection reads it no more then. */
  uint8_t conn_owns_endpoint;
  const char *head_name;     /* the head it reads: "request" or "response" */
  /* A complete handshake head. Returns 0 when the connection may open, 1
   * (a server with HTTP on) when the request is not an upgrade and goes to
   * the HTTP layer, else it has already been failed or answered. */
  int (*head)(dx_conn *c, const char *head, size_t len);
  /* The head cannot be taken (too large, not HTTP): a server answers with
   * the HTTP status and closes; a client fails the connection with `why`. */
  void (*refuse)(dx_conn *c, int status, const char *why);
  /* The connection ended (once, before on_close): the owner forgets it.
   * NULL: nothing to do. */
  void (*detach)(dx_conn *c);
  /* Only while `connecting` (a client; NULL for a server): the descriptor
   * is ready (resolved, or the TCP connect finished, well or not), and the
   * current address took too long. */
  void (*connected)(dx_conn *c);
  void (*attempt_expired)(dx_conn *c);
} dx__conn_owner;

/* Settings shared by every connection of one server (or owned by one client
 * connection): connections point at it instead of copying it. */
typedef struct dx__endpoint {
  dx_options opt;         /* a deep copy: owns its strings */
  dx__session_config scfg;
  dx__tls_ctx *tls;       /* NULL: plain TCP */
  const dx__conn_owner *owner; /* set by dx__endpoint_init */
  /* The loop its connections run on (one per endpoint: a server's, or a
   * client connection's own), so that a connection holds no loop pointer;
   * set by the owner after dx__endpoint_init. */
  dx_loop *loop;
  /* Client: the name being resolved (off the loop's thread), then the
   * resolved addresses (freed with the endpoint), the next one to try if
   * the current connect fails, and the current one. */
  struct dx__resolve *resolving;
  struct addrinfo *addrs, *next_addr;
  const struct addrinfo *cur_addr;
  /* Server: what dx_server_get_stats reads (a client connection's are
   * kept too, and read by nobody). Written through dx__endpoint_stats(). */
  dx__stats stats;
} dx__endpoint;

/* A message framed once and written to many connections (pub/sub): the
 * bytes of one complete frame. Reference-counted without atomics, because
 * every reference belongs to connections of one loop, on its thread. */
typedef struct dx__shbuf {
  uint32_t refs;
  uint8_t compressed; /* permessage-deflate, compressed alone (RSV1 set) */
  size_t len;
  uint8_t data[];
} dx__shbuf;
static inline void dx__shbuf_unref(dx__shbuf *b) {
  if (--b->refs == 0) free(b);
}

/* Shared output waiting for one connection: written, in order, ahead of
 * the session's own output (see dx__conn_send_shared). Allocated on demand
 * and freed once drained, so an idle connection holds none. */
typedef struct dx__shq dx__shq;

/* What a layer above attaches to a connection (pub/sub: its topics). The
 * connection calls release once when it ends, before on_close, so nothing
 * is delivered to it afterwards; the layer frees its state there. */
typedef struct dx__conn_ext {
  void (*release)(dx_conn *c);
} dx__conn_ext;

/* The counters of a connection's endpoint. Every endpoint is a mutable
 * object (a dx_server's, or one a client connection allocated): the
 * connection only holds it through a const pointer. */
static inline dx__stats *dx__endpoint_stats(const dx__endpoint *ep) {
  return (dx__stats *)&ep->stats;
}

/* Connection phases (finer than the readyState users see). */
enum {
  DX__P_HANDSHAKE = 0, /* reading the HTTP head */
  DX__P_OPEN,          /* frames flow (possibly in the closing handshake) */
  DX__P_LINGER,        /* nothing more to read: input is dropped, EOF awaited */
  DX__P_HTTP,          /* serving HTTP requests (src/http/, through http_ops) */
  DX__P_DONE           /* reported and detached; freed at iteration end */
};

struct dx_conn {
  dx__transport tr;      /* the socket (tr.io: its loop registration) and TLS */
  dx__timer timer;       /* handshake, then close timeout */
  dx__timer hb_timer;    /* heartbeat: next ping, or the pong deadline;
                          * client, before that: the connect attempt limit */
  uint32_t last_rx;      /* loop time (ms, wrapping) of the last bytes read */
  uint32_t last_msg;     /* loop time of the last message either way */
  dx__task flush_task;   /* corked output leaves at iteration end */
  dx__session sess;
  struct dx__conn_rare *rare; /* pub/sub, subprotocol: NULL until needed */
  const dx__endpoint *ep;     /* ep->loop is the connection's loop */
  union { /* one, then the other: dx__conn_finish takes the connection off
           * the loop's list before it queues the release */
    dx__handle handle;     /* on the loop's list of connections until it ends */
    dx__task release_task; /* then: its memory is freed after the event batch */
  };
  void *user;
  union { /* dx_conn_path: path_inline tells which */
    char *path;          /* allocated (NULL: "/") */
    char path_in[8];     /* a path of up to 7 bytes ("/", "/ws"), NUL-terminated:
                          * the common short path costs no allocation */
  };
  union { /* one at a time, by the connection's stage: none of the three
           * costs an idle WebSocket connection a byte of its own */
    struct dx__head_buf *hs; /* DX__P_HANDSHAKE: a head split across reads
                              * (conn.c); freed, and left, at open */
    struct dx__http_conn *http; /* is_http: the HTTP layer's state (NULL once it let go) */
    struct {                 /* `opened`: the heartbeat's clocks */
      uint32_t ping_sent;    /* loop time of the outstanding heartbeat ping */
      int32_t rtt;           /* last heartbeat round trip in ms, -1 if none */
    } hb;
  };
  uint8_t phase;
  uint8_t why;           /* dx_why, once why_set */
  uint8_t why_set : 1;
  uint8_t close_owed : 1; /* on_open ran (or owner->held_from_start): on_close is owed */
  uint8_t silent : 1;    /* cut by dx_loop_free: no callbacks */
  uint8_t masks : 1;     /* owner->role is the client: our frames are masked, so
                          * their headers are larger and none leaves straight
                          * from the caller's buffer */
  uint8_t closes_first : 1; /* owner->closes_first */
  uint8_t owns_ep : 1;   /* owner->conn_owns_endpoint */
  uint8_t close_after_flush : 1;
  uint8_t connecting : 1; /* client: TCP connect in progress */
  uint8_t fin_sent : 1;   /* our direction of the stream is shut */
  uint8_t hb_waiting : 1; /* a heartbeat ping awaits any sign of life */
  uint8_t above_high : 1; /* output passed the high-water mark: drain owed */
  uint8_t rx_paused : 1;  /* output is at its mark: not reading until it drains */
  uint8_t rx_held : 1;    /* HTTP: not reading while requests wait (dx__conn_pause_input) */
  uint8_t deadline_set : 1; /* left OPEN: c->timer is the close deadline, never re-armed */
  uint8_t read_more : 1;  /* read budget used up: flush_task reads on, next iteration */
  uint8_t visited : 1;    /* scratch mark for walks over a server's conns */
  uint8_t has_conn_slot : 1; /* server: holds a slot of max_connections */
  uint8_t has_hs_slot : 1;   /* server: holds a slot of max_handshakes */
  uint8_t refusing : 2;      /* server: a limit was reached when it came (DX__FULL_*):
                              * its request gets 503, it never opens */
  uint8_t stat_state : 3;    /* server: the DX__ST_* it is counted in */
  uint8_t is_http : 1;       /* server: serves HTTP requests (src/http/) */
  uint8_t path_inline : 1;   /* the path is in path_in, not allocated */
  uint8_t handed_off : 1;    /* server: given to another loop (dx__conn_hand_off) */
  uint8_t ping_batched : 1;  /* a heartbeat ping waits in the loop's write batch */
  uint8_t opened : 1;        /* dx__conn_opened ran: hb, not hs, is in the union */
  uint8_t release_waits : 1; /* ended; freed by its flush task, queued for the
                              * next iteration (a read deferred for fairness) */
  int16_t http_status;
};

/* The loop c runs on. Not after c's release began: its endpoint (a
 * server's) may be gone by then. */
static inline dx_loop *dx__conn_loop(const dx_conn *c) { return c->ep->loop; }

/* The output cap when none was set: room for two messages of the maximum
 * size (one being written, one queued behind it), headers included, so a
 * peer may always be sent what it may send. */
static inline size_t dx__default_max_buffered(const dx_options *o) {
  /* Saturates: max_message may be up to SIZE_MAX / 2, and a cap that
   * wrapped to a few bytes would refuse every message. */
  if (o->max_message > (SIZE_MAX - 64) / 2) return SIZE_MAX;
  return (size_t)(2 * o->max_message + 64);
}
/* The output cap in force: dx_options_set_max_buffered's, or the default. */
static inline size_t dx__max_buffered(const dx_options *o) {
  return o->max_buffered ? o->max_buffered : dx__default_max_buffered(o);
}

/* Defaults for a fresh options object. */
void dx__options_defaults(dx_options *o);
/* Deep-copies options (strings included). 0 or DX_ENOMEM (dst is then
 * empty but valid to clear). */
int dx__options_copy(dx_options *dst, const dx_options *src);
/* Frees the strings an options object owns. */
void dx__options_clear(dx_options *o);
/* Fills an endpoint from options (NULL: defaults) for an owner (its role
 * included): a deep copy, and for a server with a certificate, its TLS
 * context. 0, DX_ENOMEM, or DX_EINVAL with a reason in err (an unreadable
 * certificate). */
int dx__endpoint_init(dx__endpoint *ep, const dx_options *o, const dx__conn_owner *owner,
                      char *err, size_t err_cap);
void dx__endpoint_deinit(dx__endpoint *ep);

/* Sets up a connection on an fd that is already connected/accepted (TLS
 * on top when the endpoint has a context; a client names the host it
 * verifies) and registers it with the loop l, which is ep->loop, for
 * `events`; the role's decisions come from ep->owner. 0, DX_EIO or DX_ENOMEM (the descriptor is
 * then still the caller's, and nothing else is held). */
int dx__conn_start(dx_conn *c, dx_loop *l, const dx__endpoint *ep, int fd,
                   uint32_t events, const char *tls_host);
/* Handles input as if the socket had reported readable: for a connection
 * accepted with bytes already waiting (TCP_DEFER_ACCEPT). */
void dx__conn_read_now(dx_conn *c);
/* The handshake succeeded: OPEN, on_open, then feed bytes that arrived
 * behind the head. */
void dx__conn_opened(dx_conn *c, uint8_t *rest, size_t n);
/* Ends the connection now: closes the socket, reports on_close once (when
 * owed), and frees the memory at the end of the iteration. */
void dx__conn_finish(dx_conn *c, dx_why why, int code, const char *reason);
/* Ends the connection now without any callback (dx_loop_free,
 * dx_client_free). */
void dx__conn_cut(dx_conn *c);
/* The loop's connections, most recent first, those that ended excepted:
 * the first, NULL when none, and the one after c (on the list: c has not
 * ended), NULL after the last. */
dx_conn *dx__loop_conns(dx_loop *l);
dx_conn *dx__conn_next(const dx_conn *c);
/* Keeps p[0..n) (up to a NUL) as the connection's path (dx_conn_path).
 * 0 or DX_ENOMEM. */
int dx__conn_set_path(dx_conn *c, const char *p, size_t n);
/* Queues raw bytes (HTTP) and has them flushed; with `then_close` the
 * connection shuts down once they are written. */
int dx__conn_write_raw(dx_conn *c, const void *p, size_t n, int then_close);
/* Schedules a flush of pending output at the end of this iteration. */
void dx__conn_want_flush(dx_conn *c);
/* Stops (1) or resumes (0) reading input; resuming also reads what a TLS
 * transport may hold already, in the next iteration. */
void dx__conn_pause_input(dx_conn *c, int paused);
/* What is queued is the last output: once written, the connection ends
 * (lingering for the peer's FIN, bounded by the close timeout, which starts
 * now). Input from now on is dropped. */
void dx__conn_end_after_output(dx_conn *c);
/* Moves the connection to a DX__ST_* state in its endpoint's counters. */
void dx__conn_set_stat_state(dx_conn *c, int st);
/* dx_connect() for a reconnecting client: the connection remembers its
 * owner (dx_conn_client). */
int dx__connect(dx_loop *loop, const char *url, const dx_options *o,
                dx_client *owner, dx_conn **out);
/* Queues a shared frame (takes a reference to b when queued) behind
 * everything queued so far. Counts against the output cap like dx_send:
 * past it the slow-consumer policy applies and DX_EBUFFER is returned.
 * 0, DX_SEND_BACKPRESSURE (queued, above the high-water mark), DX_ESTATE
 * (not OPEN), DX_EBUFFER, DX_ENOMEM. The bytes leave with the connection's
 * next flush (one writev with its own output). */
int dx__conn_send_shared(dx_conn *c, dx__shbuf *b);
/* What few connections have, behind one pointer (dx_conn.rare) allocated
 * at the first need and kept until the connection's memory goes, so that
 * the others hold a NULL pointer instead of three. */
typedef struct dx__conn_rare {
  dx__shq *shq;        /* shared frames queued ahead of sess's output */
  dx__conn_ext *ext;   /* the pub/sub layer's state, NULL when none */
  char *protocol;      /* the negotiated subprotocol, or NULL */
} dx__conn_rare;
/* c's rare block, allocated (zeroed) at the first call; NULL when out of
 * memory. */
dx__conn_rare *dx__conn_rare_get(dx_conn *c);
/* The state a layer above attached (dx__conn_ext), NULL when none. */
static inline dx__conn_ext *dx__conn_get_ext(const dx_conn *c) {
  return c->rare ? c->rare->ext : NULL;
}
/* Attaches (or, with NULL, detaches) it. 0 or DX_ENOMEM. */
int dx__conn_set_ext(dx_conn *c, dx__conn_ext *e);
/* Keeps p[0..n) as the negotiated subprotocol (dx_conn_protocol). 0 or
 * DX_ENOMEM. */
int dx__conn_set_protocol(dx_conn *c, const char *p, size_t n);
/* The window permessage-deflate agreed for what we send it (8-15), 0 when
 * it was not negotiated: a frame compressed alone with that window suits
 * it (dx__conn_send_shared then keeps its own compressor from referring
 * past it). */
static inline int dx__conn_deflate_window(const dx_conn *c) {
  return dx__session_pmd_window(&c->sess);
}
/* The server the connection was accepted (or adopted) by, found from its
 * endpoint (a connection keeps no pointer of its own for it); NULL for a
 * client connection, and once the connection ended (its server may be
 * gone). */
dx_server *dx__conn_server(const dx_conn *c);
/* The endpoint's options. */
static inline const dx_options *dx__conn_options(const dx_conn *c) { return &c->ep->opt; }
/* From on_accept only: refuses the upgrade with `status` (400-599) and
 * `why` as the body's line, in place of on_accept's return value (which
 * gives a fixed line). 0, or DX_ESTATE outside the opening handshake. */
int dx__conn_refuse(dx_conn *c, int status, const char *why);

/* ---- handing a connection to another loop -------------------------------
 *
 * Loops that share a port (SO_REUSEPORT) get their connections from the
 * kernel, which knows nothing of what a request is for. A layer above may
 * find, deciding an upgrade in on_accept, that it belongs on another loop
 * (Socket.IO: a probe for a session that loop holds). Then the connection
 * moves there whole, before anything is answered: its socket, its TLS
 * state (OpenSSL through memory BIOs: what it buffered moves with it), the
 * request head and the bytes read behind it. On the other loop a server
 * adopts it and handles the head from the start, as if it had accepted the
 * connection itself: the upgrade checks and on_accept run again there.
 *
 * The counters: the connection counts as accepted by both servers, as
 * closed by neither for the move, and as opened and closed by the one that
 * adopted it. Connection limits: the adopting server admits it like a
 * connection it accepted (503 at its limit); the first one's slot is free
 * once the move is done. */
typedef struct dx__handoff dx__handoff;
/* Carries h to the other loop's thread and returns 0 (dx_loop_post or
 * dx__loop_post_owned: h is then that side's, to give to
 * dx__server_adopt or dx__handoff_free), or anything else when it could
 * not (h is still the caller's: dx__conn_hand_off takes it back). Runs on
 * the connection's thread, inside dx__conn_hand_off. */
typedef int (*dx__handoff_post)(dx__handoff *h, void *ud);
/* From on_accept of a server connection only: takes the connection off
 * this loop and hands it to post. 0: it is gone from here (no callback
 * about it runs here, and on_accept's return value is ignored). Else the
 * connection stays as it was, to be decided here: DX_ESTATE (not inside
 * on_accept), DX_ENOMEM, or post's non-zero return; or, in the rare case
 * that the socket cannot be watched again, the connection has ended
 * (DX_EIO; dx_conn_state is DX_CLOSED). */
int dx__conn_hand_off(dx_conn *c, dx__handoff_post post, void *ud);
/* A pointer the layer above carries along with h (NULL at first). */
void dx__handoff_set_user(dx__handoff *h, void *user);
void *dx__handoff_user(const dx__handoff *h);
/* Closes the socket (and TLS state) of a connection nobody adopts, and
 * frees h. Any thread (the connection belongs to none while it moves). */
void dx__handoff_free(dx__handoff *h);
/* On s's loop thread: s adopts the connection and handles its request
 * head (callbacks of s's options run before this returns, on_accept among
 * them). 0: h is consumed. DX_ESTATE (s is shutting down), DX_EINVAL (h
 * is over TLS and s is not, or the reverse), DX_ENOMEM, DX_EIO: h is
 * still the caller's. */
int dx__server_adopt(dx_server *s, dx__handoff *h);
/* The servers of a loop, newest first: the one after prev (NULL: the
 * first), NULL after the last. Loop thread only. */
dx_server *dx__loop_server_next(dx_loop *l, const dx_server *prev);
/* The server's options (its copy). */
const dx_options *dx__server_options(const dx_server *s);
/* conn.c's half of dx__server_adopt: starts c on ep's loop (l) over h's
 * transport (0: c owns it; else h keeps it: DX_EINVAL, DX_ENOMEM,
 * DX_EIO), then dx__conn_adopted_input feeds it h's bytes and frees h. */
int dx__conn_adopt(dx_conn *c, dx_loop *l, const dx__endpoint *ep, dx__handoff *h);
void dx__conn_adopted_input(dx_conn *c, dx__handoff *h);

/* Records the reason dx_last_error() gives on this thread. */
void dx__set_last_error(const char *msg);
/* Buffered random bytes from OpenSSL's CSPRNG (masking keys, client keys). */
void dx__random(void *ud, uint8_t *out, size_t n);
/* The Socket.IO server attached to the options a connection (or an HTTP
 * request's connection) was made with, NULL when none: how src/eio/ finds
 * its state from the plain callbacks it installs (dx_sio_attach). */
struct dx_sio *dx__conn_sio(const dx_conn *c);
struct dx_sio *dx__http_sio(const dx_http_request *r);
void dx__options_set_sio(dx_options *o, struct dx_sio *io);
#endif
