/* What the server and client endpoints share: the options object, the
 * per-endpoint settings every connection borrows, and the connection
 * object with the machinery both roles use. */
#ifndef DX_ENDPOINT_H
#define DX_ENDPOINT_H
#include <stdatomic.h>
#include <stdint.h>

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
  /* A complete handshake head. Returns 0 when the connection may open,
   * else it has already been failed or answered. */
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
  /* Client: the name being resolved (off the loop's thread), then the
   * resolved addresses (freed with the endpoint), the next one to try if
   * the current connect fails, and the current one. */
  struct dx__resolve *resolving;
  struct addrinfo *addrs, *next_addr;
  const struct addrinfo *cur_addr;
} dx__endpoint;

/* Connection phases (finer than the readyState users see). */
enum {
  DX__P_HANDSHAKE = 0, /* reading the HTTP head */
  DX__P_OPEN,          /* frames flow (possibly in the closing handshake) */
  DX__P_LINGER,        /* nothing more to read: input is dropped, EOF awaited */
  DX__P_DONE           /* reported and detached; freed at iteration end */
};

struct dx_conn {
  dx__io io;
  dx__transport tr;
  dx__timer timer;       /* handshake, then close timeout */
  dx__timer hb_timer;    /* heartbeat: next ping, or the pong deadline;
                          * client, before that: the connect attempt limit */
  uint32_t last_rx;      /* loop time (ms, wrapping) of the last bytes read */
  uint32_t ping_sent;    /* loop time of the outstanding heartbeat ping */
  uint32_t last_msg;     /* loop time of the last message either way */
  int32_t rtt;           /* last heartbeat round trip in ms, -1 if none */
  dx__task flush_task;   /* corked output leaves at iteration end */
  dx__task release_task; /* memory freed after the event batch */
  dx__session sess;
  dx_loop *loop;
  const dx__endpoint *ep;
  dx_server *server;     /* NULL on a client connection */
  dx__handle handle;     /* on the loop's list of connections */
  void *user;
  char *path;
  char *protocol;        /* the negotiated subprotocol, or NULL */
  char *hs;              /* a handshake head split across reads */
  uint32_t hs_len, hs_cap;
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
  uint8_t deadline_set : 1; /* left OPEN: c->timer is the close deadline, never re-armed */
  uint8_t read_more : 1;  /* read budget used up: flush_task reads on, next iteration */
  uint8_t visited : 1;    /* scratch mark for walks over a server's conns */
  uint8_t has_conn_slot : 1; /* server: holds a slot of max_connections */
  uint8_t has_hs_slot : 1;   /* server: holds a slot of max_handshakes */
  uint8_t refusing : 2;      /* server: a limit was reached when it came (DX__FULL_*):
                              * its request gets 503, it never opens */
  int16_t http_status;
};

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
 * verifies) and registers it with the loop for `events`; the role's
 * decisions come from ep->owner. 0, DX_EIO or DX_ENOMEM (the descriptor is
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
/* Queues raw bytes (HTTP) and has them flushed; with `then_close` the
 * connection shuts down once they are written. */
int dx__conn_write_raw(dx_conn *c, const void *p, size_t n, int then_close);
/* Schedules a flush of pending output at the end of this iteration. */
void dx__conn_want_flush(dx_conn *c);
/* dx_connect() for a reconnecting client: the connection remembers its
 * owner (dx_conn_client). */
int dx__connect(dx_loop *loop, const char *url, const dx_options *o,
                dx_client *owner, dx_conn **out);
/* Records the reason dx_last_error() gives on this thread. */
void dx__set_last_error(const char *msg);
/* Buffered random bytes from OpenSSL's CSPRNG (masking keys, client keys). */
void dx__random(void *ud, uint8_t *out, size_t n);
#endif
