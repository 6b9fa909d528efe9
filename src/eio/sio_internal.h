/* What the files of the Socket.IO server share (src/eio/: sio_server.c and
 * the files listed below): its structures, and the functions one file
 * calls in another. The shape, after the reference server's lib/socket.ts:
 * a session owns at most one transport at a time; packets queue on the
 * session (its dx__eio_queue), not on the transport. Polling: a GET is held
 * until the queue has something, then answered with as much of it as
 * maxPayload allows; a POST is decoded whole and answered "ok" before its
 * packets are handled. WebSocket: packets leave at once through dx_send
 * (which corks them to the end of the iteration). The upgrade: a second
 * WebSocket connection carrying the sid is the probe; "2probe" is answered
 * "3probe" and the held GET released with a noop; on "5" the probe becomes
 * the transport and the queue is flushed over it; polling for that sid is
 * refused from then on.
 *
 * Lifetime: everything an application callback may still hold when it
 * returns (a session whose packets are being handled, a socket that
 * disconnected from inside its own event handler) is unlinked at once and
 * freed at the end of the loop iteration (dx__task_queue_last), so no
 * caller up the stack is left with a dangling pointer. */
#ifndef DX_EIO_SIO_INTERNAL_H
#define DX_EIO_SIO_INTERNAL_H
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
#define DX__SIO_B64URL "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
#define SESS_TIMERS 3
/* How long a probe may take to say "5" (the reference's upgradeTimeout). */
#define UPGRADE_TIMEOUT_MS 10000
/* A room's hub topic: "sio", NUL, the namespace, NUL, the room ("" for
 * the whole namespace). A namespace holds no NUL, so the split is
 * unambiguous; WebSocket rooms (dx_subscribe) could spell such a name but
 * never do by accident. */
#define TOPIC_PREFIX "sio\0"
#define TOPIC_PREFIX_LEN 4

#define CONTAINER(p, type, member) ((type *)(void *)((char *)(p) - offsetof(type, member)))

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
  dx__sio_encoded enc;     /* a packet being sent (send_packet), kept */
  uint8_t enc_busy;        /* enc in use: a send made inside a send (a close
                              handler run by a failed write) encodes apart */
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

/* A request's query: the parameters Engine.IO reads (not NUL-terminated). */
typedef struct query {
  const char *eio, *transport, *sid;
  size_t eio_len, transport_len, sid_len;
} query;

/* A room with members on this loop, and how many (dx_sio.rooms). */
typedef struct room_ref {
  dx__map_node node;
  uint32_t count;
  char name[];
} room_ref;

/* ---- sio_server.c: the server: its settings,
 * dx_sio_new/attach/shutdown/free, plain Engine.IO's API */
size_t dx__sio_max_buffered_of(const dx_sio_options *o);
void dx__sio_io_free(dx_sio *io);

/* ---- eio_session.c: Engine.IO sessions: ids and the table, the output
 * queue and the held GET, the heartbeat, packets in, the lifecycle */
int dx__sio_new_id(char out[SID_LEN + 1]);
sess *dx__sio_find_sess(dx_sio *io, const char *sid, size_t n);
int dx__sio_has_get(const sess *s);
int dx__sio_sess_send(sess *s, int type, int binary, const void *data, size_t len);
size_t dx__sio_cors_headers(const dx_sio *io, dx_http_request *r, dx_http_field *h);
int dx__sio_respond(dx_sio *io, dx_http_request *r, int status, const char *type,
                    const void *body, size_t len);
void dx__sio_respond_error(dx_sio *io, dx_http_request *r, int code);
void dx__sio_reply(dx_sio *io, preq q, int status, const char *type, const void *body,
                   size_t len);
void dx__sio_reply_error(dx_sio *io, preq q, int code);
void dx__sio_answer_get(sess *s, int with_queue);
void dx__sio_handle_eio(sess *s, const dx__eio_packet *p);
sess *dx__sio_sess_new(dx_sio *io, int transport);
void dx__sio_reap_task(dx__task *t);
void dx__sio_sess_close(sess *s, dx_sio_reason why, int tell_client);

/* ---- eio_polling.c: the polling transport: the query, verify, GET and
 * POST, the HTTP callbacks */
void dx__sio_parse_query(const char *q, size_t n, query *out);
int dx__sio_query_is(const char *p, size_t n, const char *lit);
int dx__sio_verify(dx_sio *io, const query *q, int upgrade, sess **out);
void dx__sio_handle_post(sess *s, preq r);
void dx__sio_handle_get(sess *s, preq r);
int dx__sio_other_loop(const dx_sio *io, const query *q, unsigned *bit);
dx_sio *dx__sio_route(dx_sio *head, const char *path, size_t n);
void dx__sio_http(dx_http_request *r);
void dx__sio_http_abort(dx_http_request *r);

/* ---- eio_forward.c: polling requests that reached another loop than their
 * session's */
void dx__sio_fwd_reply(fwd *f, int status, const char *type, const void *body, size_t len);
void dx__sio_fwd_abort(dx_sio *io, fwd *f);
int dx__sio_fwd_send(dx_sio *io, dx_http_request *r, unsigned bit, const char *sid, int post);

/* ---- eio_websocket.c: the WebSocket transport: direct sessions, the
 * upgrade (and its hand-off to another loop), the WebSocket callbacks */
int dx__sio_ws_accept(dx_conn *c, const dx_request *req);
void dx__sio_ws_open(dx_conn *c);
void dx__sio_ws_message(dx_conn *c, dx_msg_type type, const uint8_t *data, size_t len);
void dx__sio_ws_close(dx_conn *c, int code, const char *reason, dx_why why, int status);

/* ---- sio_socket.c: Socket.IO sockets: packets out and in, CONNECT,
 * events, acks, rooms joined */
int dx__sio_event_array(const char *event, const json_t *args, json_t **out);
size_t dx__sio_room_topic(char *out, const char *nsp, const char *room);
void dx__sio_sock_free(dx_sio_socket *k);
void dx__sio_sock_gone(dx_sio_socket *k, dx_sio_reason why);
int dx__sio_can_send(const dx_sio_socket *k);
void dx__sio_handle_packet(sess *s, dx__sio_packet *p);

/* ---- sio_broadcast.c: namespaces, and broadcasts to rooms, through the
 * hub across loops and nodes */
dx_sio_nsp *dx__sio_nsp_find(dx_sio *io, const char *name, size_t n);
void dx__sio_hub_tap(void *ud, const char *topic, size_t tlen, dx_msg_type type,
                     const uint8_t *data, size_t len);

#endif
