/*
 * duplex_sio — a Socket.IO v5 server (Engine.IO v4 underneath) on a duplex
 * server's port, next to its plain WebSocket and HTTP traffic.
 *
 *   dx_sio *io = dx_sio_new(loop, NULL);             // settings: defaults
 *   dx_sio_nsp *chat = dx_sio_of(io, "/chat");       // io.of("/chat")
 *   dx_sio_nsp_on_connection(chat, on_connection, NULL); // .on("connection")
 *   dx_options *o = dx_options_new();
 *   dx_sio_attach(io, o);          // /socket.io/ requests go to io
 *   dx_server *srv = dx_server_new(loop, o);
 *
 *   static void on_connection(dx_sio_socket *s, const json_t *auth, void *ud) {
 *     dx_sio_on(s, "chat message", on_chat, NULL);   // socket.on(...)
 *     dx_sio_join(s, "lobby");                       // socket.join(...)
 *   }
 *   static void on_chat(dx_sio_socket *s, const json_t *args,
 *                       dx_sio_ack *ack, void *ud) {
 *     dx_sio_emit_to(dx_sio_socket_nsp(s), "lobby", s, "chat message", args);
 *     if (ack) dx_sio_ack_send(ack, args);           // callback(...args)
 *   }
 *
 * Threading, errors and ownership follow duplex.h: every handle here
 * belongs to the loop given to dx_sio_new and is used on its thread only;
 * callbacks run on that thread; functions return 0 or a negative DX_E*
 * code, and one that returns an error never also runs a callback for that
 * call. A pointer passed in is borrowed for the call (duplex copies, or
 * takes its own json_incref of, what it keeps); a pointer handed to a
 * callback is valid until the callback returns unless said otherwise.
 *
 * JSON is jansson's (Debian libjansson-dev): arguments arrive as a json_t
 * array, already parsed, and go out as one. Binary data (a Node Buffer,
 * an ArrayBuffer) is a json_t made by dx_sio_binary() and read with
 * dx_sio_binary_get(), at any depth of the arguments; json_dumps() cannot
 * write it (see src/eio/sio_packet.h for why it is a json_t).
 *
 * A whole application on this API: `duplex serve --socketio`
 * (src/cli/serve_sio.c); its cost beside the Node reference server:
 * bench/socketio.sh (bench/README.md).
 */
#ifndef DUPLEX_SIO_H
#define DUPLEX_SIO_H

#include <jansson.h>

#include "duplex.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dx_sio dx_sio;               /* a Socket.IO server */
typedef struct dx_sio_options dx_sio_options;
typedef struct dx_sio_nsp dx_sio_nsp;       /* a namespace ("/", "/chat") */
typedef struct dx_sio_socket dx_sio_socket; /* one client in one namespace */
typedef struct dx_sio_ack dx_sio_ack;       /* an ack the client asked for */

/* Why a socket left its namespace: the reasons Socket.IO users know. */
typedef enum {
  DX_SIO_SERVER_NAMESPACE_DISCONNECT = 0, /* dx_sio_disconnect(s, 0) */
  DX_SIO_CLIENT_NAMESPACE_DISCONNECT,     /* the client's socket.disconnect() */
  DX_SIO_SERVER_SHUTTING_DOWN,            /* dx_sio_free / dx_sio_shutdown */
  DX_SIO_PING_TIMEOUT,                    /* no pong within pingTimeout */
  DX_SIO_TRANSPORT_CLOSE,                 /* the client closed the transport */
  DX_SIO_TRANSPORT_ERROR,                 /* a cut connection, an overlapping poll */
  DX_SIO_PARSE_ERROR,                     /* a malformed packet */
  DX_SIO_FORCED_CLOSE                     /* dx_sio_disconnect(s, 1) */
} dx_sio_reason;
/* "server namespace disconnect", ...: the string Socket.IO reports. */
const char *dx_sio_reason_name(dx_sio_reason r);

/* ---- settings ---------------------------------------------------------- */

/* NULL when out of memory; free with dx_sio_options_free (dx_sio_new
 * copies it). */
dx_sio_options *dx_sio_options_new(void);
void dx_sio_options_free(dx_sio_options *o);
/* The path prefix Socket.IO is served under (default "/socket.io/"); must
 * start and end with "/". 0, DX_EINVAL, DX_ENOMEM. */
int dx_sio_options_set_path(dx_sio_options *o, const char *path);
/* pingInterval and pingTimeout in ms (defaults 25000 and 20000, the
 * reference's): the server pings every interval and ends a session that
 * does not pong within timeout ("ping timeout"). 0 or DX_EINVAL (0). */
int dx_sio_options_set_ping(dx_sio_options *o, uint32_t interval_ms,
                            uint32_t timeout_ms);
/* maxPayload (default 1000000 bytes): a POST body above it gets 413, a
 * WebSocket message above it closes the session. 0 or DX_EINVAL (0 or
 * above 1 GiB). */
int dx_sio_options_set_max_payload(dx_sio_options *o, uint64_t bytes);
/* The most bytes of packets a polling session may have queued for its
 * client (their data, as queued, and a few dozen bytes of bookkeeping
 * each, so that packets of no data count too): a client that stops
 * coming for them (no GET) costs bounded memory. A packet that would
 * pass the cap is refused (dx_sio_emit and dx_eio_send return
 * DX_ECLOSED, a broadcast skips the session) and the session ends at the
 * end of the loop iteration with DX_SIO_TRANSPORT_ERROR ("transport error", on_disconnect
 * of each of its sockets); its client then gets 400 "Session ID unknown".
 * Default: the larger of 16 MiB and 2 x maxPayload. A session on
 * WebSocket is bounded by the server's dx_options_set_max_buffered
 * instead. 0 or DX_EINVAL (0). */
int dx_sio_options_set_max_buffered(dx_sio_options *o, size_t bytes);
/* connectTimeout (default 45000 ms): a session that has joined no
 * namespace after it is closed. 0 or DX_EINVAL. */
int dx_sio_options_set_connect_timeout(dx_sio_options *o, uint32_t ms);
/* CORS for polling requests: an allowed Origin (exact), or "*" for any;
 * repeatable. With none set, no CORS headers are sent (same-origin pages
 * and non-browser clients work; cross-origin pages do not). With
 * credentials, Access-Control-Allow-Credentials: true is sent and the
 * request's own Origin is echoed instead of "*". OPTIONS preflights under
 * the path are answered 204. 0, DX_EINVAL, DX_ENOMEM. */
int dx_sio_options_cors_origin(dx_sio_options *o, const char *origin);
void dx_sio_options_cors_credentials(dx_sio_options *o, int on);
/* Whether polling sessions are offered the upgrade to WebSocket, and
 * whether each transport is served at all (both on by default). */
void dx_sio_options_set_transports(dx_sio_options *o, int polling,
                                   int websocket);

/* ---- the server -------------------------------------------------------- */

/* A server on `loop`, with settings o (copied; NULL: defaults). NULL when
 * out of memory. Namespace "/" exists from the start (it refuses nothing:
 * give it a connection callback to use it). */
dx_sio *dx_sio_new(dx_loop *loop, const dx_sio_options *o);
/* Routes the Socket.IO path of servers made from `o` to io: installs
 * duplex's own on_http, on_http_abort, on_accept, on_open, on_message and
 * on_close in o, and keeps the ones o had (set them before this call) to
 * hand them every request and connection outside the path: plain
 * WebSocket endpoints and HTTP routes keep working on the same port. Also
 * raises o's HTTP body limit to maxPayload when it is lower. Call it before
 * dx_server_new(o); io must outlive those servers. The callbacks set on o
 * after this call replace duplex's (do not). Several servers may be
 * attached to one dx_options, each on its own path (e.g. Socket.IO on
 * /socket.io/ and plain Engine.IO on /engine.io/). 0, or DX_EINVAL (io
 * already attached, or another attached server has the same path). */
int dx_sio_attach(dx_sio *io, dx_options *o);
/* Server shutdown: every connected socket gets on_disconnect with
 * DX_SIO_SERVER_SHUTTING_DOWN (before its transport closes), every session
 * is closed (a close packet to its client), and the server takes no new
 * ones. The servers keep running: free them afterwards. 0, DX_ESTATE
 * (already). */
int dx_sio_shutdown(dx_sio *io);
/* dx_sio_shutdown if it was not called, then frees io, its namespaces and
 * sessions: no callback runs after it returns. Free it after the dx_servers
 * it was attached to (their pending polls end through it) and before the
 * loop; the memory itself goes at the end of the loop's iteration, or in
 * dx_loop_free() (a callback up the stack may still name a session). */
void dx_sio_free(dx_sio *io);
/* Engine.IO sessions alive (sockets being polled or on a WebSocket). */
size_t dx_sio_sessions(const dx_sio *io);

/* Several loops (one dx_sio each) and several nodes, through a pub/sub hub
 * (duplex.h). Rooms: a broadcast (dx_sio_emit_to) reaches the room's
 * members on every loop whose dx_sio uses the same hub, and on every node
 * whose hub shares its Redis (dx_hub_use_redis); the hub keeps one
 * publisher's order. Polling: a session's sid names its loop, and a
 * polling request that reaches another loop of the hub (SO_REUSEPORT
 * loops on one port) is forwarded to it and its answer brought back, held
 * GETs and their aborts included. The upgrade: a WebSocket probe that
 * reaches another loop is handed, connection and all, to a server of the
 * session's loop attached to that loop's dx_sio, which answers it (so each
 * loop needs such a server: the same options on every loop). Across nodes, route by sid (sticky
 * sessions). Without a hub, rooms are this dx_sio's alone and its sessions'
 * requests must reach its loop. Call it before the first session. 0,
 * DX_EINVAL, DX_ESTATE (already, sessions exist, or another dx_sio of this
 * loop uses h), DX_ENOMEM. h must outlive io. */
int dx_sio_use_hub(dx_sio *io, dx_hub *h);

/* ---- namespaces -------------------------------------------------------- */

/* The namespace `name` ("/", "/chat"), made on first use. NULL: a name not
 * starting with "/" or holding ",", or out of memory. Owned by io. A
 * client connecting to a namespace never made here is refused with
 * CONNECT_ERROR "Invalid namespace". */
dx_sio_nsp *dx_sio_of(dx_sio *io, const char *name);
/* Its name, NUL-terminated, owned by the namespace. */
const char *dx_sio_nsp_name(const dx_sio_nsp *n);

/* Decides a CONNECT (the middleware of io.use()): `auth` is the client's
 * auth payload (an object; {} when it sent none), borrowed. Return 0 to
 * accept; anything else refuses with CONNECT_ERROR, whose message is
 * *message (borrowed until the callback returns; NULL: "not authorized")
 * and whose data is *data (a reference the callback hands over; NULL for
 * none). The socket exists but is not connected: no emit. */
typedef int (*dx_sio_on_auth)(dx_sio_socket *s, const json_t *auth,
                              const char **message, json_t **data, void *ud);
void dx_sio_nsp_on_auth(dx_sio_nsp *n, dx_sio_on_auth cb, void *ud);
/* A socket joined the namespace (io.on("connection")). `auth` as above.
 * Register its event handlers here. */
typedef void (*dx_sio_on_connection)(dx_sio_socket *s, const json_t *auth,
                                     void *ud);
void dx_sio_nsp_on_connection(dx_sio_nsp *n, dx_sio_on_connection cb, void *ud);

/* Emits to every socket of n (room NULL) or of one room of n, except
 * `except` (NULL: none; socket.broadcast is except = the sender). args: a
 * json_t array of the arguments (NULL or [] for none), borrowed. 0,
 * DX_EINVAL (a reserved event name, args not an array, a bad value),
 * DX_ENOMEM. Sockets whose session is closing are skipped. */
int dx_sio_emit_to(dx_sio_nsp *n, const char *room,
                   const dx_sio_socket *except, const char *event,
                   const json_t *args);

/* Who a broadcast is for (io.to(...).except(...).emit, socket.broadcast):
 * the sockets of the namespace in any of `rooms` (n_rooms 0: every socket
 * of the namespace), but none in any of `except_rooms`, nor `except`
 * (NULL: none). Each socket gets it once, whatever number of the rooms it
 * is in. Up to 64 rooms in each list. */
typedef struct dx_sio_target {
  const char *const *rooms;
  size_t n_rooms;
  const char *const *except_rooms;
  size_t n_except_rooms;
  const dx_sio_socket *except;
} dx_sio_target;
/* Emits to the target's sockets (t NULL: the whole namespace); args as in
 * dx_sio_emit_to. With a hub, on every loop and node. 0, DX_EINVAL (a bad
 * event, args or room list), DX_ENOMEM. */
int dx_sio_broadcast(dx_sio_nsp *n, const dx_sio_target *t, const char *event,
                     const json_t *args);

/* ---- sockets ----------------------------------------------------------- */

/* An event arrived: `args` is the array of its arguments (borrowed; take
 * your own json_incref to keep it or any part). `ack` is non-NULL when the
 * client asked for an acknowledgement: answer it with dx_sio_ack_send, now
 * or later, or give it back with dx_sio_ack_drop: every ack handed out
 * must be one or the other exactly once (it stays valid until then, even
 * after the socket disconnected). */
typedef void (*dx_sio_on_event)(dx_sio_socket *s, const json_t *args,
                                dx_sio_ack *ack, void *ud);
/* socket.on(event): one handler per name (a second call replaces it; cb
 * NULL removes it). An event without a handler goes to the "*" handler if
 * one is set (args then start with the event name), else is dropped (an
 * ack it asked for is never answered, as in Socket.IO). 0, DX_EINVAL,
 * DX_ENOMEM. */
int dx_sio_on(dx_sio_socket *s, const char *event, dx_sio_on_event cb,
              void *ud);

/* The socket left its namespace, for `reason`. The last callback for s:
 * it is freed when this returns. */
typedef void (*dx_sio_on_disconnect)(dx_sio_socket *s, dx_sio_reason reason,
                                     void *ud);
void dx_sio_socket_on_disconnect(dx_sio_socket *s, dx_sio_on_disconnect cb,
                          void *ud);

/* socket.emit(event, ...args). args as in dx_sio_emit_to. Packets queue on
 * the session: they wait for the client's next poll, or go out on its
 * WebSocket at the end of the loop iteration. 0, DX_ECLOSED (the socket
 * disconnected or its session is closing, or its polling queue is full:
 * see dx_sio_options_set_max_buffered), DX_EINVAL, DX_ENOMEM. */
int dx_sio_emit(dx_sio_socket *s, const char *event, const json_t *args);

/* The client's answer to an emit with ack: err 0 and its arguments (an
 * array, borrowed), or err DX_ETIMEDOUT (no answer within the timeout) or
 * DX_ECLOSED (the socket disconnected first) with args NULL. Runs exactly
 * once per successful dx_sio_emit_ack. */
typedef void (*dx_sio_on_ack)(dx_sio_socket *s, int err, const json_t *args,
                              void *ud);
/* socket.timeout(ms).emit(event, ...args, callback). timeout_ms 0: no
 * timeout (the answer, or the disconnect, ends the wait). Returns
 * dx_sio_emit's codes; on an error cb never runs. */
int dx_sio_emit_ack(dx_sio_socket *s, const char *event, const json_t *args,
                    uint32_t timeout_ms, dx_sio_on_ack cb, void *ud);

/* Answers an ack with args (as in dx_sio_emit) and releases it. 0, or
 * DX_ECLOSED (the socket is gone: nothing sent); either way ack is freed.
 * DX_EINVAL or DX_ENOMEM leave it yours. */
int dx_sio_ack_send(dx_sio_ack *ack, const json_t *args);
/* Releases an ack without answering. */
void dx_sio_ack_drop(dx_sio_ack *ack);

/* socket.join(room) / socket.leave(room). Rooms of one namespace; a socket
 * is in the room named by its id from the start. 0, DX_EINVAL (empty or
 * longer than DX_TOPIC_MAX), DX_ECLOSED, DX_ENOMEM. leave of a room not
 * joined is 0. */
int dx_sio_join(dx_sio_socket *s, const char *room);
int dx_sio_leave(dx_sio_socket *s, const char *room);

/* socket.disconnect(close): the client gets a DISCONNECT for this
 * namespace (its reason: "io server disconnect", after which the official
 * client does not reconnect), and on_disconnect runs with
 * DX_SIO_SERVER_NAMESPACE_DISCONNECT, or, with close 1, the whole session
 * ends (every namespace of that client) with DX_SIO_FORCED_CLOSE. The
 * on_disconnect callbacks run before this returns. 0, DX_ECLOSED (also
 * close 0 from on_auth, where s is not connected yet: nothing happens, as
 * in Socket.IO; refuse by returning nonzero there). */
int dx_sio_disconnect(dx_sio_socket *s, int close);

/* socket.rooms: the rooms s is in, the room named by its id included (as
 * in Socket.IO: every socket is in it from the start). dx_sio_socket_room
 * gives the i-th (i < dx_sio_socket_rooms), NUL-terminated, owned by s and
 * valid until s leaves that room or is gone; NULL for any other i. The
 * order is unspecified: a leave moves the last room into the gap. */
size_t dx_sio_socket_rooms(const dx_sio_socket *s);
const char *dx_sio_socket_room(const dx_sio_socket *s, size_t i);

/* The socket id (as in CONNECT's answer), NUL-terminated, owned by s. */
const char *dx_sio_socket_id(const dx_sio_socket *s);
dx_sio_nsp *dx_sio_socket_nsp(const dx_sio_socket *s);
/* "polling" or "websocket": the session's transport now. */
const char *dx_sio_socket_transport(const dx_sio_socket *s);
/* A pointer of the application's, NULL at first. */
void *dx_sio_socket_user(const dx_sio_socket *s);
void dx_sio_socket_set_user(dx_sio_socket *s, void *user);

/* ---- plain Engine.IO ---------------------------------------------------- */

/* A server made from options with dx_sio_options_engine_only serves plain
 * Engine.IO on its path: no Socket.IO, no namespaces, no connectTimeout;
 * every message a client sends goes to cb. Without
 * dx_sio_options_engine_events, the session handle is valid only until
 * the callback returns. */
typedef struct dx_eio_session dx_eio_session;
typedef void (*dx_eio_on_message)(dx_eio_session *s, dx_msg_type type,
                                  const uint8_t *data, size_t len, void *ud);
void dx_sio_options_engine_only(dx_sio_options *o, dx_eio_on_message cb,
                                void *ud);
/* Plain Engine.IO sessions' lifetime (with dx_sio_options_engine_only):
 * on_open when a session is made (its open packet is queued; what
 * dx_eio_send queues from here follows it), and on_close exactly once
 * for every session on_open was told of, when it ends, with why (the
 * reasons of dx_sio_reason that apply: transport close, transport error,
 * ping timeout, parse error, server shutting down). The handle is valid
 * from on_open until on_close returns; dx_eio_send from on_close returns
 * DX_ECLOSED. on_close runs inside dx_sio_shutdown and dx_sio_free for
 * the sessions they end. Either may be NULL. */
typedef void (*dx_eio_on_open)(dx_eio_session *s, void *ud);
typedef void (*dx_eio_on_close)(dx_eio_session *s, dx_sio_reason why, void *ud);
void dx_sio_options_engine_events(dx_sio_options *o, dx_eio_on_open on_open,
                                  dx_eio_on_close on_close, void *ud);
/* Sends a message packet (text: UTF-8) to the session's client. 0,
 * DX_ECLOSED (the session is closing, or its polling queue is full: see
 * dx_sio_options_set_max_buffered), DX_EINVAL, DX_EUTF8, DX_ENOMEM. */
int dx_eio_send(dx_eio_session *s, dx_msg_type type, const void *data,
                size_t len);
/* The session id (sid), NUL-terminated, owned by the session. */
const char *dx_eio_session_id(const dx_eio_session *s);

/* ---- binaries ---------------------------------------------------------- */

/* A binary value holding a copy of p[0..n): a new reference, NULL when out
 * of memory. */
json_t *dx_sio_binary(const void *p, size_t n);
/* 1 with *p, *n set (valid while v lives) when v is a binary, else 0. */
int dx_sio_binary_get(const json_t *v, const uint8_t **p, size_t *n);

#ifdef __cplusplus
}
#endif
#endif /* DUPLEX_SIO_H */
