/*
 * duplex — a WebSocket (RFC 6455) server and client library.
 *
 * Threading: every handle belongs to the loop it was created on, and every
 * function below must be called on that loop's thread, except where a
 * comment says otherwise. Callbacks run on the loop's thread.
 *
 * Errors: functions that can fail return a negative DX_E* code (see the
 * table in duplex_codes.h, which this header includes; dx_strerror() and
 * dx_err_name() describe one). A function that returns an error never also
 * invokes a callback for that call.
 *
 * Ownership: a pointer passed *into* duplex is only borrowed for the duration
 * of the call unless its comment says otherwise (duplex copies what it keeps).
 * A pointer handed *out* by a callback is valid only until that callback
 * returns.
 */
#ifndef DUPLEX_H
#define DUPLEX_H

#include <stddef.h>
#include <stdint.h>

#include "duplex_codes.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DX_VERSION_MAJOR 0
#define DX_VERSION_MINOR 1
#define DX_VERSION_PATCH 0

/* ---------------------------------------------------------------------- */
/* Errors                                                                  */
/* ---------------------------------------------------------------------- */

/* The DX_E* table, dx_strerror() and dx_err_name() are in duplex_codes.h,
 * included above, with the close codes. */

/* A one-line description of the last failure of dx_server_new(),
 * dx_server_listen() or dx_connect() on this thread (e.g. the OpenSSL reason
 * a certificate was refused); "" when none. Valid until the next call into
 * duplex on this thread. */
const char *dx_last_error(void);

/* ---------------------------------------------------------------------- */
/* Lifecycle                                                               */
/* ---------------------------------------------------------------------- */

/* The browser's WebSocket.readyState. */
typedef enum {
  DX_CONNECTING = 0,
  DX_OPEN = 1,
  DX_CLOSING = 2,
  DX_CLOSED = 3
} dx_ready_state;

/* Why a connection ended; reported exactly once per connection. */
typedef enum {
  DX_WHY_PEER = 0,          /* peer sent a close frame: its code, or 1005 */
  DX_WHY_LOCAL,             /* this side called dx_close(): the code and
                               reason sent */
  DX_WHY_PING_TIMEOUT,      /* no traffic within the heartbeat timeout: 1006 */
  DX_WHY_TRANSPORT_CLOSE,   /* TCP ended without a close frame: 1006 */
  DX_WHY_TRANSPORT_ERROR,   /* socket error: 1006 */
  DX_WHY_PROTOCOL_ERROR,    /* the peer broke RFC 6455: 1002/1007/1009 sent */
  DX_WHY_SERVER_SHUTDOWN,   /* graceful drain: 1001 */
  DX_WHY_HANDSHAKE_FAILED,  /* opening handshake never completed: 1006 */
  DX_WHY_INTERNAL_ERROR     /* this side could not go on (out of memory):
                               1011 sent when it could be, else 1006 */
} dx_why;
/* How many dx_why values there are (the size of dx_server_stats.closed). */
#define DX_WHY_COUNT 9

/* "closed by peer", "transport close", ...; never NULL. */
const char *dx_why_name(dx_why why);

/* The close codes (DX_CLOSE_NORMAL, ...) are in duplex_codes.h. */

/* ---------------------------------------------------------------------- */
/* Handles                                                                 */
/* ---------------------------------------------------------------------- */

typedef struct dx_loop dx_loop;         /* an epoll event loop (one thread) */
typedef struct dx_server dx_server;     /* a listening WebSocket server */
typedef struct dx_conn dx_conn;         /* one WebSocket connection */
typedef struct dx_options dx_options;   /* settings for a server or client */
typedef struct dx_request dx_request;   /* an upgrade request being decided */

typedef enum { DX_TEXT = 1, DX_BINARY = 2 } dx_msg_type;

/* ---------------------------------------------------------------------- */
/* Callbacks: one typed function per event                                 */
/* ---------------------------------------------------------------------- */

/* The connection is OPEN: the handshake completed. */
typedef void (*dx_on_open)(dx_conn *c);
/* A complete message. For DX_TEXT the bytes are valid UTF-8 (not
 * NUL-terminated). `data` is valid only until the callback returns; do not
 * write to it: a dx_send() of exactly these bytes from inside the callback
 * (an echo, a broadcast) trusts the validation already done. */
typedef void (*dx_on_message)(dx_conn *c, dx_msg_type type,
                              const uint8_t *data, size_t len);
/* A ping (duplex has already queued the pong) or a pong arrived. */
typedef void (*dx_on_control)(dx_conn *c, const uint8_t *data, size_t len);
/* The connection ended. Called exactly once per connection that reached
 * dx_on_open *or* was returned by dx_connect(); `reason` is NUL-terminated
 * and valid until the callback returns. `http_status` is the status of a
 * failed handshake where there was one, else 0. The dx_conn is freed after
 * this callback returns; do not use it afterwards. */
typedef void (*dx_on_close)(dx_conn *c, int code, const char *reason,
                            dx_why why, int http_status);
/* Server only: decide an upgrade request before the 101 is sent. Return 0 to
 * accept, or an HTTP status (400-599) to refuse with. `c` is in CONNECTING
 * state; dx_conn_set_user() may be called on it. */
typedef int (*dx_on_accept)(dx_conn *c, const dx_request *req);

/* ---------------------------------------------------------------------- */
/* Options (copied by dx_server_new() and dx_connect())                    */
/* ---------------------------------------------------------------------- */

/* Returns NULL when out of memory. Caller owns it; free with
 * dx_options_free() (safe as soon as dx_server_new()/dx_connect() return). */
dx_options *dx_options_new(void);
void dx_options_free(dx_options *o);

void dx_options_on_open(dx_options *o, dx_on_open cb);
void dx_options_on_message(dx_options *o, dx_on_message cb);
void dx_options_on_close(dx_options *o, dx_on_close cb);
void dx_options_on_ping(dx_options *o, dx_on_control cb);
void dx_options_on_pong(dx_options *o, dx_on_control cb);
void dx_options_on_accept(dx_options *o, dx_on_accept cb);
/* Initial value of dx_conn_user() for every connection made with these
 * options. Borrowed: duplex never frees it. */
void dx_options_set_user(dx_options *o, void *user);
/* Largest message (after reassembly) accepted; beyond it the connection is
 * failed with 1009, reason "message too big". Default 16 MiB. 0 is
 * DX_EINVAL. */
int dx_options_set_max_message(dx_options *o, uint64_t bytes);
/* Largest single frame accepted (default: the max message size); beyond
 * it the connection is failed with 1009, reason "frame too big". 0, or
 * DX_EINVAL for 0. */
int dx_options_set_max_frame(dx_options *o, uint64_t bytes);
/* Largest opening-handshake head (request or response). Default 8 KiB; a
 * server answers a larger request with 431. 0, or DX_EINVAL outside 256
 * bytes..1 MiB. */
int dx_options_set_max_header(dx_options *o, size_t bytes);
/* Milliseconds allowed for the opening handshake (default 10000). 0, or
 * DX_EINVAL for 0: every handshake has a deadline. */
int dx_options_set_handshake_timeout(dx_options *o, uint32_t ms);
/* Milliseconds a connection may take, from the moment it leaves OPEN (a
 * close sent or received, a protocol failure), to end: the closing
 * handshake and TCP's close (default 5000). Counted once, from that
 * moment: nothing the peer sends, and no output that cannot drain, moves
 * it. 0, or DX_EINVAL for 0. */
int dx_options_set_close_timeout(dx_options *o, uint32_t ms);

/* ---- Heartbeats ---- */

/* Sends a ping every interval_ms and ends a connection whose peer sent
 * nothing at all (no pong, no frame) within timeout_ms after a ping: its
 * on_close reports DX_WHY_PING_TIMEOUT and 1006. interval_ms 0 turns
 * heartbeats off. Defaults: 25000 and 20000, both roles. The pongs give
 * dx_conn_rtt(). Timers are embedded in the connection: no allocation per
 * ping. Both deadlines are rounded up to a slot of interval_ms / 64 (at
 * most 500 ms) so that many connections' heartbeats share a wake-up: a
 * ping may leave, and a timeout be declared, up to that much later, never
 * earlier. 0 or DX_EINVAL (timeout 0 with an interval). */
int dx_options_set_ping(dx_options *o, uint32_t interval_ms,
                        uint32_t timeout_ms);

/* Closes a connection (1000 "idle timeout", why DX_WHY_LOCAL) when no
 * message went either way for `ms` milliseconds; pings do not count. 0
 * (the default) turns it off. Returns 0. */
int dx_options_set_idle_timeout(dx_options *o, uint32_t ms);

/* ---- Backpressure ---- */

/* Output queued beyond `high` bytes makes dx_send() return
 * DX_SEND_BACKPRESSURE (the message is still queued); once the queue falls
 * to `low` or below, on_drain runs. Defaults: 1 MiB and 256 KiB.
 * 0 or DX_EINVAL (low > high). */
int dx_options_set_watermarks(dx_options *o, size_t high, size_t low);
typedef void (*dx_on_drain)(dx_conn *c);
void dx_options_on_drain(dx_options *o, dx_on_drain cb);

/* What happens when a message would take a connection's queued output past
 * the cap: */
typedef enum {
  DX_SLOW_CLOSE = 0,     /* refuse it (DX_EBUFFER) and close with 1008 */
  DX_SLOW_CLOSE_RETRY,   /* refuse it and close with 1013 (try again later) */
  DX_SLOW_DROP           /* refuse it (DX_EBUFFER), keep the connection */
} dx_slow_policy;
/* Caps the bytes queued per connection (frame headers included), so a peer
 * that stops reading costs bounded memory. Default: twice the max message
 * size (32 MiB by default), DX_SLOW_CLOSE. 0 or DX_EINVAL. */
int dx_options_set_max_buffered(dx_options *o, size_t bytes,
                                dx_slow_policy policy);

/* ---- Listening ---- */

/* Server: whether listening sockets share their port (SO_REUSEPORT), so
 * that several loops (one per thread) listen on it and the kernel spreads
 * connections among them. */
typedef enum {
  /* The default: the port is this socket's alone. A port any other socket
   * holds fails with DX_EADDR ("Address already in use"). */
  DX_REUSEPORT_OFF = 0,
  /* Join the sockets that share the port, or start sharing a free one. Any
   * process of the same user that asks for it can join too. */
  DX_REUSEPORT_JOIN = 1,
  /* Bind as with OFF (a port anyone holds fails, even a shared one), then
   * let DX_REUSEPORT_JOIN sockets share it. For the first of a process's
   * loops: the others join it, while a second process that did not ask to
   * share gets "Address already in use" instead of half the connections. */
  DX_REUSEPORT_OPEN = 2
} dx_reuseport;
/* 0, or DX_EINVAL for a mode not listed above. */
int dx_options_set_reuseport(dx_options *o, dx_reuseport mode);
/* Server, Linux: accept a connection only once its first bytes arrived
 * (TCP_DEFER_ACCEPT; a WebSocket client always speaks first), and read them
 * at once: one wake-up per new connection instead of two, and a client that
 * connects and sends nothing waits in the kernel, holding no descriptor and
 * no memory of ours. Such a client is handed over after about 1 s of
 * silence, and only then does the handshake timeout start: it is dropped
 * after roughly 1 s + the handshake timeout. On by default; 0 accepts
 * every connection as soon as TCP completes it. */
void dx_options_set_defer_accept(dx_options *o, int on);

/* ---- Connection limits (server) ---- */

/* At most n connections at once, in any state (0, the default: no limit
 * but the process's descriptors, RLIMIT_NOFILE, where the server stops
 * accepting for 100 ms at a time until one is free). Returns 0.
 *
 * At max_handshakes (default 1024; 0: no limit) connections whose request
 * head is not in yet, a new one is refused (below). Such connections
 * have proven nothing yet and each may hold up to the max header size, so
 * this bounds what slow or silent clients (slowloris) can take; an
 * ordinary client is counted for the moment between its connection and
 * its request, which with deferred accept arrive together. Returns 0.
 *
 * A connection that comes when either limit is reached is still accepted,
 * and its request answered at once (deferred accept: it is already there)
 * with "503 Service Unavailable", "Retry-After: 1" and a one-line reason
 * naming the limit: "connection limit reached (N)" or "handshake limit
 * reached (N)". A client is told why instead of guessing at a timeout,
 * for the price of one descriptor and a read and a write. It never gets
 * on_open, so not on_close either (dx_on_accept does not see it), and while
 * it is being answered it counts in dx_server_connections() but not
 * against the limits. When more than 32 such answers are in progress on
 * one server (a flood), the server stops accepting for 100 ms at a time
 * instead: the kernel's backlog holds the newcomers, which cost nothing
 * there, and past it the kernel drops their SYNs and the clients retry.
 *
 * The counts belong to this options object: every server created from it
 * (dx_server_new copies it, the counts stay shared) counts against the same
 * limits, so a process that runs one loop per thread on one port
 * (dx_options_set_reuseport) is limited as a whole. Use another options
 * object for servers that count apart. (A server given NULL options counts
 * alone, with the defaults.) */
int dx_options_set_max_connections(dx_options *o, size_t n);
int dx_options_set_max_handshakes(dx_options *o, size_t n);

/* ---- Subprotocols (RFC 6455 §1.9) ---- */

/* Server: a subprotocol this server speaks; the server picks the first one
 * in the client's offer that it speaks (unless dx_on_select_protocol
 * decides). Client: a subprotocol to offer, in order of preference; the
 * connection fails if the server picks one not offered. Repeatable. `name`
 * is copied. 0, DX_EINVAL (not an RFC 7230 token), DX_ENOMEM. */
int dx_options_add_protocol(dx_options *o, const char *name);
/* Server: decides the subprotocol from the client's offer (offered[i] is
 * not NUL-terminated; its length is lens[i]). Return the index chosen, or
 * -1 for none. Replaces the first-match rule of dx_options_add_protocol. */
typedef int (*dx_on_select_protocol)(dx_conn *c, const char *const *offered,
                                     const size_t *lens, size_t n);
void dx_options_on_select_protocol(dx_options *o, dx_on_select_protocol cb);

/* ---- Origin policy (server) ---- */

/* Allows browsers from an Origin: an exact value ("https://app.example.com",
 * compared case-insensitively) or a wildcard for subdomains:
 * "*.example.com" for any scheme, or the same with a scheme in front
 * ("https:" then "//" then "*.example.com") for that scheme only. Repeatable.
 * With none set, every Origin is accepted. Once one is set, a request whose
 * Origin matches none is refused with 403; a request without an Origin
 * header (not a browser) is still accepted: Origin protects browsers from
 * cross-site WebSocket hijacking, it does not authenticate other clients.
 * 0, DX_EINVAL, DX_ENOMEM. */
int dx_options_allow_origin(dx_options *o, const char *pattern);

/* ---- TLS (wss://) ---- */

/* Server: serve TLS with this certificate chain and private key (PEM
 * files; read when dx_server_new() runs). 0, DX_EINVAL, DX_ENOMEM. */
int dx_options_set_tls_cert(dx_options *o, const char *cert_file,
                            const char *key_file);
/* Client: trust the CAs in this PEM file instead of the system store (the
 * file is read by dx_connect()/dx_client_new(), which report an unusable
 * one; NULL goes back to the system store). 0, or DX_ENOMEM. */
int dx_options_set_tls_ca(dx_options *o, const char *ca_file);
/* Client: do not verify the server's certificate or host name. For
 * self-signed test servers only. */
void dx_options_set_tls_insecure(dx_options *o, int insecure);

/* ---- Compression: permessage-deflate (RFC 7692) ---- */

/* Offer (client) or accept (server) permessage-deflate. Off by default.
 * 0 or DX_EINVAL. */
int dx_options_set_deflate(dx_options *o, int enabled);
/* Largest LZ77 window, 9..15 (default 15), for what the server compresses
 * and what the client compresses. Smaller windows cost less memory per
 * connection (see docs/compression.md). 0 or DX_EINVAL. */
int dx_options_set_deflate_window_bits(dx_options *o, int server_bits,
                                       int client_bits);
/* Ask for no context takeover: each message is compressed on its own in
 * that direction (less memory held between messages, worse ratio). Always
 * 0. */
int dx_options_set_deflate_no_context_takeover(dx_options *o, int server,
                                               int client);
/* zlib memLevel (1..9, default 8) and level (-1..9, default -1) of our
 * compressor. 0 or DX_EINVAL. */
int dx_options_set_deflate_memory(dx_options *o, int mem_level, int level);
/* Messages shorter than `bytes` are sent uncompressed (default 64). 0, or
 * DX_EINVAL above UINT32_MAX. */
int dx_options_set_deflate_threshold(dx_options *o, size_t bytes);

/* ---------------------------------------------------------------------- */
/* Loop                                                                    */
/* ---------------------------------------------------------------------- */

/* Returns NULL on failure (out of memory or descriptors). */
dx_loop *dx_loop_new(void);
/* Runs until dx_loop_stop() or until nothing (no server, connection or
 * timer) is left. Returns 0, or DX_EIO if epoll failed. */
int dx_loop_run(dx_loop *loop);
/* Makes dx_loop_run() return after the current iteration. Safe to call
 * from any thread and from a signal handler; errno is kept. When
 * dx_loop_run() returns because of it, its thread may free the loop at
 * once, even before this call has returned on another thread. */
void dx_loop_stop(dx_loop *loop);
/* Watches a file descriptor the caller owns (e.g. stdin) for readability.
 * `cb` runs on the loop thread when fd is readable or at EOF/hang-up; the
 * callback reads it itself. One watch per fd. Returns 0, DX_EINVAL (bad fd or
 * already watched), DX_ENOMEM or DX_EIO (epoll refused the fd: regular files
 * cannot be watched). The loop keeps running while a watch exists. */
typedef void (*dx_fd_cb)(dx_loop *loop, int fd, void *ud);
int dx_loop_watch_fd(dx_loop *loop, int fd, dx_fd_cb cb, void *ud);
/* Stops watching fd (it is not closed). Returns 0 or DX_EINVAL. */
int dx_loop_unwatch_fd(dx_loop *loop, int fd);
/* Frees the loop. Servers and connections on it must be freed/closed first
 * (remaining connections are cut without callbacks). It waits for calls of
 * dx_loop_stop() and dx_loop_post() the loop has already seen to finish
 * with it; no such call may start once it has begun (forget the loop in
 * your signal handler first). */
void dx_loop_free(dx_loop *loop);
/* The one thread-safe entry point: runs fn(loop, ud) on the loop's thread
 * during its next iteration (in the order posted), waking it through an
 * eventfd. Use it to send from other threads: post a function that calls
 * dx_send(); the connection must still be alive when fn runs (keep your own
 * registry, updated from on_open/on_close, which run on the loop thread).
 * Returns 0 or DX_ENOMEM. Callable from any thread, not from a signal
 * handler. Functions still queued when the loop is freed are dropped. The
 * loop may be freed as soon as fn has run (dx_loop_free() waits for this
 * call to finish with the loop). */
typedef void (*dx_post_fn)(dx_loop *loop, void *ud);
int dx_loop_post(dx_loop *loop, dx_post_fn fn, void *ud);

/* ---------------------------------------------------------------------- */
/* Server                                                                  */
/* ---------------------------------------------------------------------- */

/* Creates a server; `o` is copied (NULL means defaults, an echo-less server
 * that accepts everything). Returns NULL when out of memory or when the TLS
 * certificate or key cannot be used (dx_last_error() says why). */
dx_server *dx_server_new(dx_loop *loop, const dx_options *o);
/* Listens on host:port. host NULL or "" means every IPv4 and IPv6 address
 * (one dual-stack socket); a name means every address it resolves to
 * ("localhost": ::1 and 127.0.0.1 where both exist; an address family the
 * machine lacks is skipped), all on the same port; port 0 picks a free
 * port. May be called several times, up to 8 sockets in all. Returns 0, or
 * DX_EADDR (errno is kept; dx_last_error() says why in one line: the
 * resolver's reason for a name that does not resolve, else the socket
 * error such as "Address already in use"; print that, not dx_strerror())
 * / DX_EINVAL (too many sockets) / DX_ESTATE (shutting down) / DX_ENOMEM. */
int dx_server_listen(dx_server *s, const char *host, uint16_t port);
/* The port the last successful dx_server_listen() bound; 0 if none. */
uint16_t dx_server_port(const dx_server *s);
/* Stops listening and cuts every connection: each one's on_close
 * (DX_WHY_SERVER_SHUTDOWN, 1006) runs before dx_server_free returns; then
 * frees the server. May be called from
 * any of its callbacks; the handle is invalid at once, its memory goes at
 * the end of the loop iteration (or in dx_loop_free(), which must follow
 * when the loop does not run again). */
void dx_server_free(dx_server *s);
/* How many connections (any state) the server holds, those being refused
 * at a limit included (see dx_options_set_max_connections). */
size_t dx_server_connections(const dx_server *s);
/* Graceful drain: stops accepting, sends every open connection a close
 * frame 1001 "server shutting down" (after anything already queued for
 * it), waits for their replies, and cuts whatever is left after
 * deadline_ms. Each on_close reports DX_WHY_SERVER_SHUTDOWN and 1001; the
 * reason is "server shutting down" for a connection whose close handshake
 * completed, DX_REASON_DRAIN_CUT for one cut at the deadline.
 * Connections still in their opening handshake are dropped. Returns at
 * once; dx_loop_run() returns when the last connection is gone (if nothing
 * else keeps it running). Free the server afterwards as usual. 0, or
 * DX_ESTATE if already shutting down. */
int dx_server_shutdown(dx_server *s, uint32_t deadline_ms);
#define DX_REASON_DRAIN_CUT "server shutting down: cut at the drain deadline"

/* The upgrade request seen by dx_on_accept (valid during that callback). */
const char *dx_request_path(const dx_request *r, size_t *len);
/* The first header named `name` (case-insensitive), NULL if absent; the
 * value is not NUL-terminated, its length is stored in *len. */
const char *dx_request_header(const dx_request *r, const char *name,
                              size_t *len);

/* Counters of one server since it was created. Each is read atomically;
 * the set is not one snapshot (a connection may be counted as opened and
 * not yet as open). Connections refused at a limit (503) are counted as
 * accepted and closed (DX_WHY_HANDSHAKE_FAILED). */
typedef struct dx_server_stats {
  /* Connections now, by state: in the opening handshake (or sending a
   * refusal), OPEN, CLOSING (a close sent or received, until TCP ends), and
   * serving HTTP requests (dx_options_on_http). */
  uint64_t connecting, open, closing, http;
  uint64_t accepted;           /* TCP connections accepted */
  uint64_t opened;             /* WebSocket connections that reached OPEN */
  /* Connections that ended, by why (indexed by dx_why): every one that
   * opened, with the why its on_close reported, and every one that never
   * opened nor served HTTP (DX_WHY_HANDSHAKE_FAILED, or
   * DX_WHY_SERVER_SHUTDOWN when a drain dropped it). HTTP connections are
   * not in it: they end in http_closed. */
  uint64_t closed[DX_WHY_COUNT];
  uint64_t http_closed;        /* connections that served HTTP and ended */
  /* WebSocket messages delivered to on_message / queued by dx_send, and
   * their payload bytes (uncompressed; frame headers not counted). */
  uint64_t messages_in, messages_out, bytes_in, bytes_out;
  uint64_t http_requests;      /* requests handed to on_http */
  /* HTTP responses sent, by class: [1] 1xx ... [5] 5xx ([0] unused), the
   * ones duplex sends itself (400, 408, 411, 413, 431) included. */
  uint64_t http_responses[6];
} dx_server_stats;
/* Fills *out with the server's counters. Safe from any thread while the
 * server exists (a monitoring thread, or another loop's /metrics handler);
 * each counter is written by the server's loop thread only. Returns 0, or
 * DX_EINVAL for a NULL argument. */
int dx_server_get_stats(const dx_server *s, dx_server_stats *out);

/* ---------------------------------------------------------------------- */
/* HTTP/1.1 on the same port                                               */
/* ---------------------------------------------------------------------- */

/* A server with an on_http callback answers every request that is not a
 * WebSocket handshake through it, on the same port, plain or TLS. A
 * handshake is a request with "Upgrade: websocket", a Sec-WebSocket-Key or
 * a Sec-WebSocket-Version header: it is judged as one (a faulty one gets
 * its 400, 405 or 426 as without on_http). Without on_http, every request
 * is a handshake: 400 "missing Upgrade header" (405 for a method other
 * than GET) for one that is not.
 *
 * Connections are persistent (HTTP/1.1 keep-alive; HTTP/1.0 only with
 * "Connection: keep-alive") and may pipeline: requests are handed to
 * on_http one at a time, in order, each after the previous one was
 * answered; bytes of later requests wait meanwhile (reading stops once a
 * max header size of them is buffered). A request body needs
 * Content-Length; "Transfer-Encoding" (chunked) is refused with 411.
 * "Expect: 100-continue" is answered with 100 Continue before the body is
 * read. An upgrade request that comes after HTTP requests on a connection
 * is refused (400): upgrade on a fresh connection.
 *
 * What duplex answers itself, each with a one-line text/plain body naming
 * the limit ("431 Request Header Fields Too Large: request head exceeds
 * 8192 bytes") and "Connection: close", after which the connection ends:
 *   400  a malformed request (an HTTP/1.1 one without exactly one Host,
 *        both Content-Length and Transfer-Encoding, conflicting
 *        Content-Lengths);
 *   408  a request (head and body) not received within the request time;
 *        the first request of a connection, whose head is read before it is
 *        known not to be an upgrade, is bounded by the handshake timeout;
 *   411  Transfer-Encoding (a chunked body);
 *   413  Content-Length above the max body size (before any of it is read);
 *   431  a head above the max header size (dx_options_set_max_header).
 * A connection idle between requests for the keep-alive time is closed
 * without a response (a quiet close, as HTTP/1.1 allows).
 *
 * Routing (404, 405 with Allow) is the application's: see dx_http_error().
 */
typedef struct dx_http_request dx_http_request;

/* A request arrived. `req` stays valid until it is answered (dx_http_respond
 * or dx_http_respond_body returned 0) or, if the connection ends first,
 * until on_http_abort for it returns: answer it inside the callback (the
 * common case) or later, from any callback or timer on the same loop
 * (long polling). Runs on the server's loop thread, from the loop itself:
 * never inside a dx_* call of yours (dx_http_respond* never hands the next
 * pipelined request over before it returns). */
typedef void (*dx_on_http)(dx_http_request *req);
/* The connection of a request that was not answered yet ended (the peer
 * went away, a transport error, dx_server_free). Runs once per such
 * request, on its loop thread; `req` is valid until it returns, and must
 * not be answered. Runs inside dx_server_free() for the requests of that
 * server; not at all for a loop freed with dx_loop_free() (nothing is
 * reported then, as for WebSocket connections). */
typedef void (*dx_on_http_abort)(dx_http_request *req);

/* Turns HTTP on for servers made with these options (NULL: off). */
void dx_options_on_http(dx_options *o, dx_on_http cb);
void dx_options_on_http_abort(dx_options *o, dx_on_http_abort cb);
/* HTTP limits: the largest request body (default 1 MiB; beyond it 413),
 * the time from a request's first byte until its head and body are in
 * (default 10000 ms; beyond it 408), and how long a connection may wait
 * idle for its next request (default 5000 ms; then a quiet close). The
 * head is limited by dx_options_set_max_header (431). 0, or DX_EINVAL for
 * a time of 0 or a body above 1 GiB. */
int dx_options_set_http_limits(dx_options *o, size_t max_body,
                               uint32_t request_ms, uint32_t keepalive_ms);

/* The request's parts. Every string is NUL-terminated and owned by the
 * request: valid as long as the request is (see dx_on_http). */
/* "GET", "POST", ... (case-sensitive, as sent). */
const char *dx_http_method(const dx_http_request *r);
/* The path as sent, without the query: percent-encoded, not normalized
 * ("/a%20b/../c"). dx_http_path_decode() decodes one. An absolute-form
 * target ("http://host/p") gives its path ("/p"); "*" (OPTIONS) gives "*". */
const char *dx_http_path(const dx_http_request *r);
/* What followed the first "?", undecoded; "" when there was none. */
const char *dx_http_query(const dx_http_request *r);
/* 1 for HTTP/1.1, 0 for HTTP/1.0. */
int dx_http_minor_version(const dx_http_request *r);
/* The first header named `name` (case-insensitive), its value trimmed of
 * surrounding whitespace; NULL when absent. */
const char *dx_http_header(const dx_http_request *r, const char *name);
/* The i-th header (0-based, in the order sent): 1 with *name and *value
 * set, 0 past the last. */
int dx_http_header_at(const dx_http_request *r, size_t i, const char **name,
                      const char **value);
/* The body (Content-Length bytes; NULL and 0 when there is none). Not
 * NUL-terminated. */
const uint8_t *dx_http_body(const dx_http_request *r, size_t *len);
/* The user pointer of the server's options (dx_options_set_user). */
void *dx_http_user(const dx_http_request *r);
/* The loop the request's connection runs on (for timers of your own). */
dx_loop *dx_http_loop(const dx_http_request *r);

/* A response header: name and value, NUL-terminated, borrowed for the call. */
typedef struct dx_http_field {
  const char *name;
  const char *value;
} dx_http_field;

/* Answers the request: status (200-599), n headers, and a body of len
 * bytes (copied; NULL when len is 0). duplex adds Date, Content-Length
 * (for a HEAD request too, whose body it leaves out; not for 204 and 304,
 * which carry no body, and whose body it drops) and "Connection: close" when the connection ends after this response: the
 * application asked for it with a "Connection: close" header of its own,
 * the client did, it spoke HTTP/1.0 without keep-alive, or the server is
 * draining. Headers may not be Content-Length, Transfer-Encoding or a
 * Connection other than "close"; a name must be a token and a value may
 * not hold CR, LF or other control bytes.
 * Returns 0: the response is queued and `r` is no longer valid (the next
 * pipelined request, if any, is handed to on_http after the current
 * callback returns, never from inside this call). DX_EINVAL (a bad status,
 * header or argument, or `r` already answered): nothing queued, `r` still
 * yours to answer. DX_ENOMEM: out of memory; `r` is still yours (try a
 * smaller answer, e.g. a 500) unless part of the response had been
 * queued: then the connection is ending and the next try gets DX_ECLOSED.
 * DX_ECLOSED: the connection is ending (after such a DX_ENOMEM, or duplex
 * ran out of memory reading it); on_http_abort runs for `r` later, from
 * the loop. No callback runs inside this call. */
int dx_http_respond(dx_http_request *r, int status, const dx_http_field *h,
                    size_t n, const void *body, size_t len);
/* A body produced as the connection can take it, for bodies too large to
 * hold in memory (files). read() fills buf[0..cap) with the next bytes and
 * returns how many (1..cap), or a negative number when it cannot (the
 * connection is then cut: its Content-Length cannot be kept). It is called
 * on the loop thread whenever the connection's output has drained, never
 * inside dx_http_respond_body, and only until `len` bytes were produced.
 * release() (may be NULL) is called exactly once when the body is done
 * with: all of it produced, or the connection ended (from the loop), or,
 * before dx_http_respond_body returns, when no body is sent (a HEAD
 * request, len 0, a 204 or 304) or the call fails. */
typedef struct dx_http_producer {
  long (*read)(void *ud, uint8_t *buf, size_t cap);
  void (*release)(void *ud);
  void *ud;
} dx_http_producer;
/* Answers like dx_http_respond with a body of `len` bytes from `body`
 * (copied: the struct, not ud). Same returns; on an error release() has
 * run. */
int dx_http_respond_body(dx_http_request *r, int status,
                         const dx_http_field *h, size_t n, uint64_t len,
                         const dx_http_producer *body);
/* Answers with a one-line text/plain body, "STATUS Reason: why" and a
 * newline ("404 Not Found: no such route"; without the ": why" when why is
 * NULL), plus up to 15 headers of yours (e.g. Allow for a 405, Location
 * for a 301). Same returns as dx_http_respond. */
int dx_http_error(dx_http_request *r, int status, const char *why,
                  const dx_http_field *h, size_t n);

/* Percent-decodes a path (or one part of it) into out[0..cap), NUL-
 * terminated. Returns the decoded length, or -1 when cap is too small, an
 * escape is malformed ("%zz", "%4"), or it decodes to a NUL byte. */
long dx_http_path_decode(const char *in, size_t len, char *out, size_t cap);

/* Static files from a directory (the HTTP layer's file server). */
typedef struct dx_http_static dx_http_static;
/* Serves the files below `root` (a directory; kept open). NULL when it
 * cannot be opened (errno says why) or out of memory. The object is only
 * read after it was made: one may serve every loop of a process (every
 * thread) at once. */
dx_http_static *dx_http_static_new(const char *root);
/* Free it after every server that used it. */
void dx_http_static_free(dx_http_static *st);
/* Answers a GET or HEAD request for the file its path names, below root:
 * 200 with the file (streamed, never read whole into memory), a MIME type
 * from its extension, ETag and Last-Modified; 304 when If-None-Match (or,
 * without it, If-Modified-Since) says the client has it; 301 to "path/"
 * for a directory named without its slash; "/" and every "dir/" serve the
 * index.html in it. 404 for a file that does not exist, is not a regular
 * file, or is not below root: "..", "." segments (also as %2e%2e or with
 * %2f for a slash), NUL bytes, and symbolic links that lead out of root
 * (relative links that stay inside it are followed; where the kernel has
 * openat2, absolute links are refused even when they point inside); 404
 * rather than 403, so that nothing is revealed about what lies outside. 405 (Allow: GET, HEAD) for another
 * method. Returns dx_http_respond's codes (0: answered). */
int dx_http_static_serve(const dx_http_static *st, dx_http_request *r);

/* ---------------------------------------------------------------------- */
/* Client                                                                  */
/* ---------------------------------------------------------------------- */

/* Starts connecting to a ws:// or wss:// URL (default ports 80 and 443;
 * wss:// verifies the certificate and host name against the system CAs or
 * dx_options_set_tls_ca()). On success stores the connection (CONNECTING)
 * in *out and returns 0; the outcome arrives as on_open, or as on_close with
 * DX_WHY_HANDSHAKE_FAILED (1006; 1015 when TLS failed; 1010 for an extension
 * the server chose that we did not offer; 1002 for such a subprotocol) or
 * DX_WHY_TRANSPORT_ERROR. On error returns DX_EURL (a URL that is not
 * ws:// or wss://, or a host or path that cannot go in a request),
 * DX_EADDR, DX_ENOMEM, DX_EINVAL (NULL arguments, an unusable CA file) or
 * DX_EIO (the socket could not be watched by the loop), dx_last_error()
 * says why, and no callback will run.
 * A host name is resolved off the loop's thread, so a slow DNS server never
 * stalls the loop. At most 8 names are resolved at once in the process
 * (on up to 8 threads, which end once no request waits); further
 * requests, from any loop, wait their turn in order, and the handshake
 * timeout bounds the wait like any other part of connecting (on_close:
 * DX_WHY_HANDSHAKE_FAILED, "opening handshake timed out"). A request given
 * up meanwhile (dx_close, dx_loop_free) leaves the queue unresolved. When no
 * thread can be started at all, the name is resolved on the caller's thread
 * instead. A name that does not resolve ends as
 * on_close (1006, DX_WHY_TRANSPORT_ERROR, "cannot resolve NAME: <the
 * resolver's reason>"). An address literal is used as is. Every address of
 * the name is tried in the resolver's order until one accepts the TCP
 * connection (localhost: ::1, then 127.0.0.1), all within the handshake
 * timeout: while addresses are left, an attempt that neither connects nor
 * fails is abandoned after its share of that timeout (timeout / number of
 * addresses). When none connects, the close reason names the last address
 * and how many were tried. */
int dx_connect(dx_loop *loop, const char *url, const dx_options *o,
               dx_conn **out);

/* ---------------------------------------------------------------------- */
/* Reconnecting client                                                     */
/* ---------------------------------------------------------------------- */

/* A client that reconnects after an abnormal end, with exponential backoff
 * and jitter (Socket.IO's defaults). Each underlying connection is an
 * ordinary dx_conn: on_open, on_message and on_close (from the options)
 * run for every one of them, and dx_conn_client() leads back here. */
typedef struct dx_client dx_client;

/* Before attempt `attempt` (1, 2, ...), which starts after `delay_ms`. */
typedef void (*dx_on_reconnect_attempt)(dx_client *cl, unsigned attempt,
                                        uint32_t delay_ms);
/* A reconnection succeeded after `attempts` attempts (on_open also ran). */
typedef void (*dx_on_reconnected)(dx_client *cl, unsigned attempts);
/* max_attempts ran out; the client is now idle (dx_client_conn is NULL). */
typedef void (*dx_on_reconnect_failed)(dx_client *cl, unsigned attempts);
/* Decides whether to reconnect after a connection ended with these
 * values; return 1 to reconnect, 0 not to. Replaces the default rule:
 * reconnect after 1006, 1011, 1012, 1013, 1014, 1001 sent by the server,
 * a server shutting down, a transport error (TLS failures included), a ping
 * timeout, or a failed handshake with a 5xx status or none (connection
 * refused); not after any other code the server sent — 1000, 1003, 1008,
 * 1009, 3000-4999 (an application's decision, such as "kicked from room")
 * — nor after a protocol error or a subprotocol/extension the server chose
 * that we did not offer. The hook is not asked after a close this side
 * asked for: that never reconnects. */
typedef int (*dx_should_reconnect)(dx_client *cl, int code, dx_why why,
                                   int http_status);

/* Backoff: the n-th delay is min(max_ms, initial_ms * 2^(n-1)), then moved
 * at random by up to +-randomization of itself (0..1). max_attempts 0 means
 * unlimited. Defaults: 1000, 5000, 0.5, 0. 0 or DX_EINVAL. */
int dx_options_set_reconnect(dx_options *o, uint32_t initial_ms,
                             uint32_t max_ms, double randomization,
                             unsigned max_attempts);
void dx_options_on_reconnect_attempt(dx_options *o, dx_on_reconnect_attempt cb);
void dx_options_on_reconnected(dx_options *o, dx_on_reconnected cb);
void dx_options_on_reconnect_failed(dx_options *o, dx_on_reconnect_failed cb);
void dx_options_should_reconnect(dx_options *o, dx_should_reconnect cb);
/* While disconnected, dx_client_send() queues up to `bytes` of messages
 * (sent in order once reconnected) instead of refusing them. Default 0:
 * refuse with DX_ERECONNECTING. 0, or DX_EINVAL for a NULL o. */
int dx_options_set_reconnect_queue(dx_options *o, size_t bytes);

/* Starts connecting to url (as dx_connect). Returns NULL on a bad URL, an
 * unusable CA file or no memory (dx_last_error() says why); an address
 * that cannot be reached is retried like any other failure. */
dx_client *dx_client_new(dx_loop *loop, const char *url, const dx_options *o);
/* Sends on the current connection. Returns dx_send()'s codes, or, while
 * reconnecting, DX_ERECONNECTING (or 0 when queued, DX_EBUFFER when the
 * queue is full), or DX_ECLOSED after dx_client_close() or giving up. */
int dx_client_send(dx_client *cl, dx_msg_type type, const void *data,
                   size_t len);
/* Closes deliberately (dx_close on the current connection, or stops a
 * pending reconnection): no reconnection follows. 0, DX_ECLOSED (already
 * closed or given up), or dx_close()'s argument errors (DX_ECLOSECODE,
 * DX_EINVAL, DX_EUTF8), which leave the client unchanged. */
int dx_client_close(dx_client *cl, int code, const char *reason);
/* The current connection (CONNECTING, OPEN or CLOSING), NULL between
 * attempts. */
dx_conn *dx_client_conn(const dx_client *cl);
/* The client a connection belongs to, NULL for a plain dx_connect(). */
dx_client *dx_conn_client(const dx_conn *c);
/* The user pointer of the options the client was made with
 * (dx_options_set_user), borrowed; NULL for a NULL client. Each of its
 * connections starts with the same dx_conn_user(). */
void *dx_client_user(const dx_client *cl);
/* Cuts the current connection without callbacks and frees the client.
 * Safe inside any of its callbacks. Free clients before their loop. */
void dx_client_free(dx_client *cl);

/* ---------------------------------------------------------------------- */
/* Connections                                                             */
/* ---------------------------------------------------------------------- */

/* Queues a message. `data` is copied. Writes are corked: a connection's
 * queued output leaves in one send once the loop has handled that
 * connection's input (so a reply does not wait for the rest of the event
 * batch), and otherwise at the end of the loop iteration; output queued
 * for it after its input was handled (from other connections' callbacks,
 * timers, posted functions) leaves in one more send at the end of the
 * iteration. The exception: a message of 64 KiB or more, uncompressed, on
 * a plain-TCP server connection with nothing queued ahead of it is written
 * to the socket from `data` inside dx_send (one writev, header and
 * payload); only what the socket does not take is copied. Returns:
 *   0                     queued;
 *   DX_SEND_BACKPRESSURE  queued, but the connection's output is above the
 *                         high-water mark: hold further sends until
 *                         on_drain (see dx_options_set_watermarks);
 *   DX_ESTATE             not OPEN: nothing queued;
 *   DX_EBUFFER            refused: it would pass the per-connection cap
 *                         (dx_options_set_max_buffered), whose policy may
 *                         also have started closing the connection;
 *   DX_EUTF8              DX_TEXT that is not valid UTF-8 (not checked
 *                         again for the very text on_message is handing
 *                         out, sent from inside that callback);
 *   DX_ENOMEM, DX_EINVAL. */
enum { DX_SEND_BACKPRESSURE = 1 };
int dx_send(dx_conn *c, dx_msg_type type, const void *data, size_t len);
static inline int dx_send_text(dx_conn *c, const char *s, size_t len) {
  return dx_send(c, DX_TEXT, s, len);
}
static inline int dx_send_binary(dx_conn *c, const void *p, size_t len) {
  return dx_send(c, DX_BINARY, p, len);
}
/* dx_send with flags: DX_SEND_NO_COMPRESS sends this message uncompressed
 * even where permessage-deflate was negotiated. Same returns as dx_send. */
enum { DX_SEND_NO_COMPRESS = 1 };
int dx_send_ex(dx_conn *c, dx_msg_type type, const void *data, size_t len,
               unsigned flags);
/* Queues a ping with up to 125 bytes of payload. 0, DX_ESTATE (not OPEN),
 * DX_EINVAL (more than 125 bytes, or NULL data with a length), DX_EBUFFER
 * (it would pass the output cap: nothing queued), DX_ENOMEM. */
int dx_ping(dx_conn *c, const void *data, size_t len);
/* Starts the closing handshake: sends a close frame with `code` (1000-1003,
 * 1007-1014, 3000-4999; or 0 for none) and `reason` (NULL or UTF-8 up to
 * 123 bytes). The state becomes CLOSING; on_close follows with
 * DX_WHY_LOCAL, this code (1005 for none) and this reason, once the
 * handshake ends or the close timeout fires (the close frame may pass the
 * output cap: it is how a connection ends).
 * Returns 0, DX_ESTATE (already closing/closed), DX_ECLOSECODE, DX_EINVAL
 * (reason too long), DX_EUTF8, or DX_ENOMEM: no memory for the close
 * frame, so the connection was cut and its on_close
 * (DX_WHY_INTERNAL_ERROR, 1006) ran before dx_close returned. On a CONNECTING client
 * connection it aborts the attempt, and on_close (DX_WHY_LOCAL, 1006) runs
 * before dx_close returns. */
int dx_close(dx_conn *c, int code, const char *reason);

dx_ready_state dx_conn_state(const dx_conn *c);
void *dx_conn_user(const dx_conn *c);
void dx_conn_set_user(dx_conn *c, void *user);
/* Bytes queued but not yet written to the socket. */
size_t dx_conn_buffered_amount(const dx_conn *c);
/* The last round-trip time measured by a heartbeat ping, in ms; -1 before
 * the first pong. */
int32_t dx_conn_rtt(const dx_conn *c);
/* The request path (server) or URL path (client), NUL-terminated; owned by
 * the connection. */
const char *dx_conn_path(const dx_conn *c);
/* The negotiated subprotocol, "" when none; owned by the connection. */
const char *dx_conn_protocol(const dx_conn *c);
/* 1 when permessage-deflate was negotiated on this connection. */
int dx_conn_compressed(const dx_conn *c);
/* The loop the connection runs on. */
dx_loop *dx_conn_loop(const dx_conn *c);

/* ---------------------------------------------------------------------- */
/* Pub/sub: topics (rooms)                                                 */
/* ---------------------------------------------------------------------- */

/* A hub holds the topics of one process. The connections of every server
 * whose options name the hub (dx_options_set_hub) may subscribe to topics,
 * on any number of loops (one per thread); a publish reaches every
 * subscriber on every loop, and through an engine (dx_hub_use_redis) every
 * other process that shares it.
 *
 * Delivery: a message is framed once per loop, and the same bytes are
 * queued to every subscriber of that loop (a reference-counted buffer, no
 * copy per subscriber); everything published during one loop iteration
 * leaves in one write per subscriber. Where permessage-deflate was
 * negotiated (and the message reaches the deflate threshold), the message
 * is compressed once per loop for each window size subscribers agreed
 * (server_max_window_bits), alone, with no reference to earlier messages,
 * so one compressed frame serves every subscriber with that window, and
 * each such subscriber's own compressor starts afresh after it. Messages
 * under the threshold go uncompressed to everyone.
 *
 * Ordering: the messages one thread publishes to one topic reach every
 * subscriber in the order they were published: on every loop of the
 * process and, through Redis, on every node (Redis keeps the order of one
 * client's publishes). Messages from different publishers may interleave.
 *
 * Slow subscribers: a delivery counts against the subscriber's output cap
 * (dx_options_set_max_buffered) like dx_send. Past it, the subscriber's
 * slow-consumer policy applies: DX_SLOW_CLOSE closes it with 1008 and
 * DX_SLOW_CLOSE_RETRY with 1013, its on_close reporting DX_WHY_LOCAL and
 * the reason "slow consumer: output buffer limit reached"; DX_SLOW_DROP
 * skips this message for it (counted in dx_hub_stats). Either way the
 * other subscribers are not delayed.
 *
 * Threading: dx_hub_new, dx_hub_free, dx_hub_use_redis, dx_publish and
 * dx_hub_stats may be called from any thread (dx_publish from a signal
 * handler no). dx_subscribe, dx_unsubscribe and dx_conn_topics take a
 * connection, so they run on its loop's thread like every connection call.
 */
typedef struct dx_hub dx_hub;

/* Topic names are bytes (not NUL-terminated), 1 to DX_TOPIC_MAX long. */
#define DX_TOPIC_MAX 1024

/* A new hub, NULL when out of memory. */
dx_hub *dx_hub_new(void);
/* Frees the hub (and its Redis link). Call it once every server that used
 * it was freed and no loop that used it runs any more (before or after
 * those loops are freed); messages still on their way to a loop are
 * dropped with it. */
void dx_hub_free(dx_hub *h);
/* The server's connections belong to `h` (borrowed: it must outlive the
 * servers made from these options). NULL: none (dx_subscribe then returns
 * DX_EINVAL). */
void dx_options_set_hub(dx_options *o, dx_hub *h);

/* Subscribes an OPEN connection (its server's options named a hub) to a
 * topic. A connection may hold any number of topics; subscribing again to
 * one it holds is a no-op. The subscription ends with dx_unsubscribe or
 * when the connection ends. Returns 0, DX_EINVAL (no hub; a topic empty or
 * longer than DX_TOPIC_MAX), DX_ESTATE (not OPEN), DX_ENOMEM. */
int dx_subscribe(dx_conn *c, const char *topic, size_t len);
/* Ends a subscription. 0 (also when it had none). */
int dx_unsubscribe(dx_conn *c, const char *topic, size_t len);
/* How many topics the connection holds. */
size_t dx_conn_topics(const dx_conn *c);

/* Publishes a message to every subscriber of `topic`, except `exclude`
 * (the sender; NULL for none, and NULL unless called on exclude's loop
 * thread). `data` is copied. Safe from any thread. Subscribers on the
 * calling thread's own loop get it queued before dx_publish returns (their
 * output leaves at the end of this iteration); other loops get it in their
 * next iteration. Returns 0, DX_EINVAL (bad topic, type or data),
 * DX_ENOMEM. (Whether anyone was subscribed is not an error: a publish to
 * an empty topic costs a lookup.) */
int dx_publish(dx_hub *h, const char *topic, size_t tlen, dx_msg_type type,
               const void *data, size_t len, const dx_conn *exclude);

/* Counters of a hub since it was made (each read atomically, the set not
 * as one snapshot). */
typedef struct dx_hub_stats {
  uint64_t publishes;   /* dx_publish calls that were accepted */
  uint64_t deliveries;  /* messages queued to subscribers, every loop */
  uint64_t slow_drops;  /* deliveries refused at a subscriber's cap */
  uint64_t remote_in;   /* messages received from other nodes (engine) */
  uint64_t remote_out;  /* messages handed to the engine for other nodes */
  uint64_t remote_lost; /* messages that could not reach the engine */
  uint64_t engine_reconnects; /* times the engine's link came back */
  int engine_state;     /* -1 no engine, 0 down (retrying), 1 connecting, 2 up */
  size_t topics;        /* topics with at least one subscriber, process-wide */
} dx_hub_stats;
void dx_hub_get_stats(dx_hub *h, dx_hub_stats *out);

/* Shares the hub's topics with every other process (node) whose hub uses
 * the same Redis server. url: "redis://[[user]:password@]host[:port][/db]"
 * (port 6379 by default). The Redis link runs on `loop`, asynchronously
 * (nothing blocks; `loop` must be one the hub's servers run on, or one of
 * the caller's own that keeps running): it connects in the background and
 * retries with backoff while Redis is down or gone, and subscribes to a
 * topic only while this node has subscribers to it. Local delivery never
 * waits for Redis: while the link is down, local rooms keep working, and
 * messages that could not be handed to Redis are counted (remote_lost in
 * dx_hub_stats) and logged; what other nodes published meanwhile is lost
 * (Redis pub/sub keeps nothing). Freeing `loop` before the hub ends the
 * link for good: from then on, publishes reach this node's other loops
 * only (counted in remote_lost). Call it once, before the servers start.
 * Returns 0, DX_EURL (malformed URL; dx_last_error() says why),
 * DX_EUNSUPPORTED ("rediss://": this build's hiredis has no TLS),
 * DX_ESTATE (the hub already has an engine), DX_ENOMEM. */
int dx_hub_use_redis(dx_hub *h, dx_loop *loop, const char *url);

#ifdef __cplusplus
}
#endif
#endif /* DUPLEX_H */
