/* The Socket.IO server the protocol repositories' test suites expect:
 * example_socketio_conformance [PORT] [--test-hooks] [--redis URL]
 * [--threads N [--shared-port]] [--max-buffered BYTES]
 * [--ping INTERVAL,TIMEOUT] (port 3000 by default). pingInterval 300
 * ms, pingTimeout 200 ms, maxPayload 1000000, connectTimeout 1000 ms,
 * CORS "*". Rooms go through a dx_hub, shared through Redis with --redis;
 * --threads runs N loops, loop i on port + i, or all on one port with
 * --shared-port (polling requests, and WebSocket upgrades, then reach
 * their session's loop whichever loop the kernel gave them to).
 * --max-buffered caps what a polling session may have queued
 * (dx_sio_options_set_max_buffered). --ping replaces the 300 and 200 ms
 * (a test of many clients on a slow machine wants more).
 *
 * On /engine.io/: plain Engine.IO, every message echoed, text or binary;
 * each session's start and end printed ("eio open SID", "eio close SID
 * REASON").
 * On /socket.io/: namespaces "/" and "/custom" accept every connection
 * and emit "auth" with the handshake's auth payload; "message" is answered
 * with "message-back" and the same arguments (binaries included);
 * "message-with-ack" is acked with its arguments; any other namespace is
 * refused with "Invalid namespace". Every connection and disconnect is
 * printed on stdout ("disconnect NSP REASON"), for tests to read.
 *
 * --test-hooks adds what tests/interop/ drives beyond that: "/" refuses a
 * client whose auth has "refuse" (CONNECT_ERROR "refused" with data
 * {"why": <its value>}), and for one whose auth has "disconnectInAuth":
 * true calls dx_sio_disconnect from on_auth (printing "disconnect in auth
 * RC"); the events "server-disconnect" (disconnect(false)),
 * "server-close" (disconnect(true)), "ask" (the server emits "question"
 * with the event's arguments and an ack, then "answer" with what the client
 * acked, or "answer-timeout" when nothing came within 2 s), "join" and
 * "leave" ROOM, "to" ROOM EVENT ...ARGS (a broadcast to the room, not to
 * the sender; ROOM null: the namespace) and "to-many" [ROOMS] [EXCEPT]
 * EVENT ...ARGS (dx_sio_broadcast), "to-binaries" ROOM EVENT N (a
 * broadcast like "to" whose arguments are N binaries made here, the i-th
 * the two bytes i and 255 - i: more than a client may send in one packet),
 * each acked with the return code,
 * "rooms" (acked with socket.rooms, its id room included); and,
 * outside the Socket.IO paths, a WebSocket echo on any path and an HTTP
 * route /hello. Ctrl-C stops. */
#define _POSIX_C_SOURCE 200809L /* sigaction */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <duplex.h>
#include <duplex_sio.h>

#define MAX_THREADS 8

static int n_nodes;
static int hooks;
static size_t max_buffered; /* 0: the default */
static unsigned ping_interval = 300, ping_timeout = 200;

static void on_message(dx_sio_socket *s, const json_t *args, dx_sio_ack *ack, void *ud) {
  (void)ud;
  dx_sio_emit(s, "message-back", args);
  if (ack) dx_sio_ack_drop(ack);
}

static void on_message_with_ack(dx_sio_socket *s, const json_t *args, dx_sio_ack *ack,
                                void *ud) {
  (void)s, (void)ud;
  if (ack) dx_sio_ack_send(ack, args);
}

static void on_server_disconnect(dx_sio_socket *s, const json_t *args, dx_sio_ack *ack,
                                 void *ud) {
  (void)args, (void)ud;
  if (ack) dx_sio_ack_drop(ack);
  dx_sio_disconnect(s, 0);
}

static void on_server_close(dx_sio_socket *s, const json_t *args, dx_sio_ack *ack, void *ud) {
  (void)args, (void)ud;
  if (ack) dx_sio_ack_drop(ack);
  dx_sio_disconnect(s, 1);
}

static void on_answer(dx_sio_socket *s, int err, const json_t *args, void *ud) {
  (void)ud;
  if (err == DX_ECLOSED) return;
  if (err) dx_sio_emit(s, "answer-timeout", NULL);
  else dx_sio_emit(s, "answer", args);
}

static void on_ask(dx_sio_socket *s, const json_t *args, dx_sio_ack *ack, void *ud) {
  (void)ud;
  if (ack) dx_sio_ack_drop(ack);
  dx_sio_emit_ack(s, "question", args, 2000, on_answer, NULL);
}

/* --test-hooks: the same port's own WebSocket and HTTP, outside the
 * Socket.IO paths, still reach the application. */
static void on_plain_message(dx_conn *c, dx_msg_type type, const uint8_t *data, size_t len) {
  dx_send(c, type, data, len);
}

static void on_plain_http(dx_http_request *r) {
  if (!strcmp(dx_http_path(r), "/hello")) dx_http_respond(r, 200, NULL, 0, "hello", 5);
  else dx_http_error(r, 404, NULL, NULL, 0);
}

/* /engine.io/: every message straight back, text or binary. */
static void on_engine_message(dx_eio_session *s, dx_msg_type type, const uint8_t *data,
                              size_t len, void *ud) {
  (void)ud;
  dx_eio_send(s, type, data, len);
}

static void on_engine_open(dx_eio_session *s, void *ud) {
  (void)ud;
  printf("eio open %s\n", dx_eio_session_id(s));
  fflush(stdout);
}

static void on_engine_close(dx_eio_session *s, dx_sio_reason why, void *ud) {
  (void)ud;
  printf("eio close %s %s\n", dx_eio_session_id(s), dx_sio_reason_name(why));
  fflush(stdout);
}

/* "join" ROOM; "leave" ROOM; "to" ROOM EVENT ...ARGS: a broadcast to the
 * room from this socket (not to itself), acked once queued. */
static void on_join(dx_sio_socket *s, const json_t *args, dx_sio_ack *ack, void *ud) {
  const char *room = json_string_value(json_array_get(args, 0));
  int r = room ? (ud ? dx_sio_leave(s, room) : dx_sio_join(s, room)) : DX_EINVAL;
  json_t *res = json_pack("[i]", r);
  if (ack) dx_sio_ack_send(ack, res);
  json_decref(res);
}

/* "rooms": acked with socket.rooms (its own id room too), sorted. */
static int by_name(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void on_rooms(dx_sio_socket *s, const json_t *args, dx_sio_ack *ack, void *ud) {
  (void)args, (void)ud;
  size_t n = dx_sio_socket_rooms(s);
  const char **v = malloc((n ? n : 1) * sizeof *v);
  json_t *list = json_array();
  for (size_t i = 0; v && i < n; i++) v[i] = dx_sio_socket_room(s, i);
  if (v) qsort(v, n, sizeof *v, by_name);
  for (size_t i = 0; v && i < n; i++) json_array_append_new(list, json_string(v[i]));
  json_t *res = json_pack("[o]", list);
  if (ack) dx_sio_ack_send(ack, res);
  json_decref(res);
  free(v);
}

static void on_to(dx_sio_socket *s, const json_t *args, dx_sio_ack *ack, void *ud) {
  (void)ud;
  const char *room = json_string_value(json_array_get(args, 0));
  const char *event = json_string_value(json_array_get(args, 1));
  json_t *rest = json_array();
  for (size_t i = 2; i < json_array_size(args); i++) json_array_append(rest, json_array_get(args, i));
  int r = event ? dx_sio_emit_to(dx_sio_socket_nsp(s), room, s, event, rest) : DX_EINVAL;
  json_decref(rest);
  json_t *res = json_pack("[i]", r);
  if (ack) dx_sio_ack_send(ack, res);
  json_decref(res);
}

static void on_to_binaries(dx_sio_socket *s, const json_t *args, dx_sio_ack *ack, void *ud) {
  (void)ud;
  const char *room = json_string_value(json_array_get(args, 0));
  const char *event = json_string_value(json_array_get(args, 1));
  json_int_t n = json_integer_value(json_array_get(args, 2));
  json_t *bins = json_array();
  for (json_int_t i = 0; i < n && i < 256; i++) {
    uint8_t b[2] = {(uint8_t)i, (uint8_t)(255 - i)};
    json_array_append_new(bins, dx_sio_binary(b, 2));
  }
  int r = event ? dx_sio_emit_to(dx_sio_socket_nsp(s), room, s, event, bins) : DX_EINVAL;
  json_decref(bins);
  json_t *res = json_pack("[i]", r);
  if (ack) dx_sio_ack_send(ack, res);
  json_decref(res);
}

/* "to-many" [ROOMS] [EXCEPT-ROOMS] EVENT ...ARGS: a broadcast to any of
 * the rooms but the except rooms and the sender, acked with the code. */
static void on_to_many(dx_sio_socket *s, const json_t *args, dx_sio_ack *ack, void *ud) {
  (void)ud;
  const char *rooms[8], *except[8];
  dx_sio_target t = {rooms, 0, except, 0, s};
  json_t *v;
  size_t i;
  json_array_foreach(json_array_get(args, 0), i, v) {
    if (i < 8) rooms[t.n_rooms++] = json_string_value(v);
  }
  json_array_foreach(json_array_get(args, 1), i, v) {
    if (i < 8) except[t.n_except_rooms++] = json_string_value(v);
  }
  json_t *rest = json_array();
  for (i = 3; i < json_array_size(args); i++) json_array_append(rest, json_array_get(args, i));
  const char *event = json_string_value(json_array_get(args, 2));
  int r = dx_sio_broadcast(dx_sio_socket_nsp(s), &t, event, rest);
  json_decref(rest);
  json_t *res = json_pack("[i]", r);
  if (ack) dx_sio_ack_send(ack, res);
  json_decref(res);
}

static void on_disconnect(dx_sio_socket *s, dx_sio_reason reason, void *ud) {
  (void)ud;
  printf("disconnect %s %s\n", dx_sio_nsp_name(dx_sio_socket_nsp(s)), dx_sio_reason_name(reason));
  fflush(stdout);
}

static void on_connection(dx_sio_socket *s, const json_t *auth, void *ud) {
  (void)ud;
  json_t *args = json_pack("[O]", auth);
  dx_sio_emit(s, "auth", args);
  json_decref(args);
  dx_sio_on(s, "message", on_message, NULL);
  dx_sio_on(s, "message-with-ack", on_message_with_ack, NULL);
  dx_sio_socket_on_disconnect(s, on_disconnect, NULL);
  if (hooks) {
    dx_sio_on(s, "server-disconnect", on_server_disconnect, NULL);
    dx_sio_on(s, "server-close", on_server_close, NULL);
    dx_sio_on(s, "ask", on_ask, NULL);
    dx_sio_on(s, "join", on_join, NULL);
    dx_sio_on(s, "leave", on_join, (void *)1);
    dx_sio_on(s, "rooms", on_rooms, NULL);
    dx_sio_on(s, "to", on_to, NULL);
    dx_sio_on(s, "to-many", on_to_many, NULL);
    dx_sio_on(s, "to-binaries", on_to_binaries, NULL);
  }
  printf("connect %s %s\n", dx_sio_nsp_name(dx_sio_socket_nsp(s)), dx_sio_socket_transport(s));
  fflush(stdout);
}

static int on_auth(dx_sio_socket *s, const json_t *auth, const char **message, json_t **data,
                   void *ud) {
  (void)ud;
  /* "disconnectInAuth": the application tries dx_sio_disconnect on a
   * socket not connected yet, then accepts it; the client must still get
   * its answer. */
  if (json_is_true(json_object_get(auth, "disconnectInAuth"))) {
    int rc = dx_sio_disconnect(s, 0);
    printf("disconnect in auth %d\n", rc);
    fflush(stdout);
  }
  json_t *why = json_object_get(auth, "refuse");
  if (!why) return 0;
  *message = "refused";
  *data = json_pack("{sO}", "why", why);
  return 1;
}

/* One loop (thread) of the server: its own Socket.IO and Engine.IO
 * servers and its own port, the rooms shared through the hub. */
typedef struct node {
  dx_loop *loop;
  dx_sio *io, *eio;
  dx_server *srv;
  pthread_t th;
} node;

static node nodes[MAX_THREADS];

static void on_signal(int sig) {
  (void)sig;
  for (int i = 0; i < n_nodes; i++) dx_loop_stop(nodes[i].loop); /* async-signal-safe */
}

static int node_start(node *n, dx_hub *hub, int port, dx_reuseport share) {
  dx_sio_options *so = dx_sio_options_new();
  if (!(n->loop = dx_loop_new()) || !so) return -1;
  dx_sio_options_set_ping(so, ping_interval, ping_timeout);
  dx_sio_options_set_max_payload(so, 1000000);
  dx_sio_options_set_connect_timeout(so, 1000);
  dx_sio_options_cors_origin(so, "*");
  if (max_buffered) dx_sio_options_set_max_buffered(so, max_buffered);
  n->io = dx_sio_new(n->loop, so);
  dx_sio_options_set_path(so, "/engine.io/");
  dx_sio_options_engine_only(so, on_engine_message, NULL);
  dx_sio_options_engine_events(so, on_engine_open, on_engine_close, NULL);
  n->eio = dx_sio_new(n->loop, so);
  dx_sio_options_free(so);
  if (!n->io || !n->eio || dx_sio_use_hub(n->io, hub)) return -1;
  dx_sio_nsp *root = dx_sio_of(n->io, "/"), *custom = dx_sio_of(n->io, "/custom");
  dx_sio_nsp_on_connection(root, on_connection, NULL);
  dx_sio_nsp_on_connection(custom, on_connection, NULL);
  if (hooks) dx_sio_nsp_on_auth(root, on_auth, NULL);

  dx_options *o = dx_options_new();
  if (!o) return -1;
  if (hooks) {
    dx_options_on_message(o, on_plain_message);
    dx_options_on_http(o, on_plain_http);
  }
  dx_options_set_reuseport(o, share);
  dx_sio_attach(n->io, o);
  dx_sio_attach(n->eio, o);
  n->srv = dx_server_new(n->loop, o);
  dx_options_free(o);
  if (!n->srv || dx_server_listen(n->srv, "127.0.0.1", (uint16_t)port) != 0) {
    fprintf(stderr, "cannot listen on port %d: %s\n", port, dx_last_error());
    return -1;
  }
  return 0;
}

static void *node_run(void *arg) {
  dx_loop_run(((node *)arg)->loop);
  return NULL;
}

int main(int argc, char **argv) {
  int port = 3000, threads = 1, shared = 0;
  const char *redis = NULL;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--test-hooks")) hooks = 1;
    else if (!strcmp(argv[i], "--redis") && i + 1 < argc) redis = argv[++i];
    else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--shared-port")) shared = 1;
    else if (!strcmp(argv[i], "--max-buffered") && i + 1 < argc) max_buffered = strtoul(argv[++i], NULL, 10);
    else if (!strcmp(argv[i], "--ping") && i + 1 < argc) {
      /* Its own branch: a value read well must not fall through to the
       * port below. */
      if (sscanf(argv[++i], "%u,%u", &ping_interval, &ping_timeout) != 2) return 2;
    } else port = atoi(argv[i]);
  }
  if (threads < 1 || threads > MAX_THREADS) threads = 1;
  /* Rooms on a hub: across the loops, and with --redis across nodes. */
  dx_hub *hub = dx_hub_new();
  if (!hub) return 1;
  for (int i = 0; i < threads; i++) {
    /* Loop i on port + i (each picks a free one for port 0), or with
     * --shared-port all on one (SO_REUSEPORT): then the kernel spreads the
     * connections, and a polling request that reaches another loop than
     * its session's is forwarded to it. */
    dx_reuseport share = !shared ? DX_REUSEPORT_OFF : i ? DX_REUSEPORT_JOIN : DX_REUSEPORT_OPEN;
    if (node_start(&nodes[i], hub, shared && i ? (int)dx_server_port(nodes[0].srv) : port ? port + i : 0, share))
      return 1;
    if (i) printf("loop %d listening on %u\n", i, dx_server_port(nodes[i].srv));
  }
  if (redis && dx_hub_use_redis(hub, nodes[0].loop, redis)) {
    fprintf(stderr, "cannot use Redis at %s\n", redis);
    return 1;
  }
  n_nodes = threads;
  printf("listening on %u\n", dx_server_port(nodes[0].srv));
  fflush(stdout);
  struct sigaction sa = {.sa_handler = on_signal};
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  for (int i = 1; i < threads; i++) pthread_create(&nodes[i].th, NULL, node_run, &nodes[i]);
  dx_loop_run(nodes[0].loop);
  for (int i = 1; i < threads; i++) pthread_join(nodes[i].th, NULL);
  for (int i = 0; i < threads; i++) {
    dx_sio_shutdown(nodes[i].io); /* sockets hear "server shutting down" first */
    dx_server_free(nodes[i].srv);
    dx_sio_free(nodes[i].io);
    dx_sio_free(nodes[i].eio);
  }
  dx_hub_free(hub); /* after the servers, once no loop runs */
  for (int i = 0; i < threads; i++) dx_loop_free(nodes[i].loop);
  return 0;
}
