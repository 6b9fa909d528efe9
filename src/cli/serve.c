/* duplex serve: an echo server (text back as text, binary as binary), on
 * one event loop per thread sharing the port through SO_REUSEPORT (the
 * first loop binds the port exclusively, so another process cannot share
 * it unless both ask with --reuseport). */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <duplex.h>
#include <duplex_sio.h>

#include "args.h"
#include "cli.h"
#include "fmt.h"
#include "serve_rooms.h"
#include "serve_http.h"
#include "serve_sio.h"
#include "signals.h"
#include "timer.h"

#define MAX_THREADS 64

typedef struct {
  dx_loop *loop;
  dx_server *server;
  pthread_t thread;
  bool joined;   /* its thread (workers 1..N-1) was joined */
  bool quiet;
  bool echo_self;  /* rooms: the sender gets its own messages too */
  dx_hub *hub;     /* rooms mode (--rooms), else NULL: echo */
  dx_sio *io;      /* --socketio: this loop's Socket.IO server, else NULL */
  cli_timer sio_wait;   /* the drain: waiting for Socket.IO sessions to end */
  bool sio_done;        /* the drain: this loop's sessions are gone (or time is up) */
  atomic_uint *sio_busy; /* the drain: loops whose sessions are not all gone yet */
  uint64_t drain_began; /* ms, monotonic */
  uint32_t drain_ms;
  serve_http *http;  /* the HTTP routes, shared by every worker */
  int rc;
  /* Counted on the worker's own loop thread, read after it is joined. */
  size_t draining;   /* connections open when the drain began */
  size_t cut;        /* of those, ended without a close handshake (1006) */
} worker;

static void on_open(dx_conn *c) {
  worker *w = dx_conn_user(c);
  if (w->hub) {
    int rc = serve_rooms_join(c, w->hub);
    if (rc) {
      if (!w->quiet) fprintf(stderr, "cannot join the room: %s\n", dx_strerror(rc));
      dx_close(c, DX_CLOSE_INTERNAL, "cannot join the room");
      return;
    }
  }
  if (w->quiet) return;
  /* Several loop threads log: hold stderr's lock for the whole line. */
  flockfile(stderr);
  fputs("open: path=\"", stderr);
  cli_put_escaped(stderr, dx_conn_path(c));
  fprintf(stderr, "\" protocol=\"%s\" deflate=%s connections=%zu\n",
          dx_conn_protocol(c), dx_conn_compressed(c) ? "on" : "off",
          dx_server_connections(w->server));
  funlockfile(stderr);
}

static void on_message(dx_conn *c, dx_msg_type type, const uint8_t *data,
                       size_t len) {
  worker *w = dx_conn_user(c);
  if (w->hub) {
    /* A publish is refused only for want of memory; the room's slow
     * members are the hub's business (each is closed on its own). */
    int rc = serve_rooms_say(c, w->hub, w->echo_self, type, data, len);
    if (rc && !w->quiet) fprintf(stderr, "publish failed: %s\n", dx_strerror(rc));
    return;
  }
  int rc = dx_send(c, type, data, len);
  /* DX_ESTATE only means the peer is already closing; nothing to echo to.
   * DX_SEND_BACKPRESSURE means queued: an echo server reads only as fast as
   * its peer sends, so it has nothing to hold back. DX_EBUFFER means the
   * output cap was hit and the library is already closing the slow peer. */
  if (rc < 0 && rc != DX_ESTATE && rc != DX_EBUFFER) {
    if (!w->quiet) fprintf(stderr, "echo failed: %s\n", dx_strerror(rc));
    dx_close(c, DX_CLOSE_INTERNAL, "echo failed");
  }
}

static void on_close(dx_conn *c, int code, const char *reason, dx_why why,
                     int http_status) {
  worker *w = dx_conn_user(c);
  (void)http_status;
  /* No connection opens once the drain began, so every close after it
   * is one of those: cut at the drain deadline, by a second signal
   * (dx_server_free: 1006), or gone without a close handshake (1006). */
  if (w->draining && (code == DX_CLOSE_ABNORMAL || strcmp(reason, DX_REASON_DRAIN_CUT) == 0))
    w->cut++;
  /* The server may be mid-dx_server_free() here, so don't query it. */
  if (w->quiet) return;
  flockfile(stderr);
  cli_put_close(stderr, "close", code, reason, why);
  funlockfile(stderr);
}

static void on_http(dx_http_request *r) {
  worker *w = dx_http_user(r);
  serve_http_handle(w->http, r);
}

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void drain_server(worker *w, uint32_t ms) {
  w->draining = dx_server_connections(w->server);
  dx_server_shutdown(w->server, ms);
}

/* Every 50 ms of a drain with --socketio: once no Socket.IO session is
 * left on any loop, or the drain's time is up, the server drains (for
 * what time is left). Every loop waits for all of them: a polling
 * client's GET may come on a keep-alive connection that another loop
 * holds (the request is forwarded to the session's loop), and that loop
 * shutting down early would cut it ("transport error"). */
static void sio_wait(cli_timer *t, void *ud) {
  worker *w = ud;
  uint64_t spent = now_ms() - w->drain_began;
  if (!w->sio_done && (!dx_sio_sessions(w->io) || spent >= w->drain_ms)) {
    w->sio_done = true;
    atomic_fetch_sub(w->sio_busy, 1);
  }
  if (atomic_load(w->sio_busy) && spent < w->drain_ms && cli_timer_start(t, 50, sio_wait, w) == 0)
    return;
  cli_timer_stop(t);
  drain_server(w, spent < w->drain_ms ? w->drain_ms - (uint32_t)spent : 0);
}

static void drain(worker *w) {
  serve_http_set_draining(w->http); /* /healthz: 503 from now on, every worker */
  /* Socket.IO first: its sockets hear "server shutting down" and each
   * client a close packet, which it reports as "transport close" (and
   * reconnects). A polling client gets it on its next GET, so the server
   * keeps serving until those sessions are gone (or the drain's time is
   * up): shut down at once, it would cut that GET ("transport error"). */
  if (w->io) {
    dx_sio_shutdown(w->io);
    w->drain_began = now_ms();
    sio_wait(&w->sio_wait, w);
    return;
  }
  drain_server(w, w->drain_ms);
}

/* Posted to each loop by the main thread (the only thread-safe entry). */
static void post_drain(dx_loop *loop, void *ud) {
  (void)loop;
  worker *w = ud;
  drain(w);
}

static void post_stop(dx_loop *loop, void *ud) {
  (void)ud;
  dx_loop_stop(loop);
}

static void *run_worker(void *arg) {
  worker *w = arg;
  w->rc = dx_loop_run(w->loop);
  return NULL;
}

/* Runs worker 0's loop on this (the main) thread until a signal, drains
 * every loop, and waits for the threaded ones. Loop 0 is not given a
 * thread of its own so that `--threads 1` is a single-threaded process:
 * the kernel then skips file reference counting on every send and recv,
 * and libc its cancellation bookkeeping (perf, 20-byte echo: about 100 ns
 * of ~7 us a message). The signal handler only stops loop 0; the rest
 * happens here. */
static void run_main(worker *w, unsigned started, uint32_t drain_ms, const sigset_t *sigs) {
  if (cli_signals_install(w[0].loop) != 0) {
    cli_error("serve", "cannot install signal handlers: %s", strerror(errno));
    w[0].rc = DX_EIO;
  } else {
    pthread_sigmask(SIG_UNBLOCK, sigs, NULL); /* held ones arrive now */
    w[0].rc = dx_loop_run(w[0].loop);
  }
  /* The threaded loops get the drain deadline plus a margin, from the
   * first signal. */
  uint64_t limit = now_ms() + drain_ms + 2000;
  if (w[0].rc == 0 && cli_signals_count() >= 1) {
    /* First signal: drain. Loop 0 returns once its connections are gone
     * (or on a second signal, which stops every loop at once). */
    /* Counted before any loop starts its drain, so that none can find
     * the count at 0 before the others have begun. */
    static atomic_uint sio_busy;
    unsigned with_sio = 0;
    for (unsigned i = 0; i < started; i++) {
      w[i].sio_busy = &sio_busy;
      with_sio += w[i].io != NULL;
    }
    atomic_store(&sio_busy, with_sio);
    for (unsigned i = 1; i < started; i++) dx_loop_post(w[i].loop, post_drain, &w[i]);
    drain(&w[0]);
    if (cli_signals_count() < 2) w[0].rc = dx_loop_run(w[0].loop);
  }
  /* The others return on their own once drained; a second signal, a failed
   * loop 0, or the drain deadline plus a margin stops them. */
  bool stop = w[0].rc != 0 || cli_signals_count() == 0, stopped = false;
  for (unsigned i = 1; i < started; i++) {
    for (;;) {
      if (!stopped && (stop || cli_signals_count() >= 2 || now_ms() > limit)) {
        for (unsigned j = i; j < started; j++) dx_loop_post(w[j].loop, post_stop, NULL);
        stopped = true;
      }
      struct timespec ts;
      clock_gettime(CLOCK_REALTIME, &ts);
      ts.tv_nsec += 50 * 1000000L;
      if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
      if (pthread_timedjoin_np(w[i].thread, NULL, &ts) == 0) break;
    }
    w[i].joined = true;
  }
  pthread_sigmask(SIG_BLOCK, sigs, NULL);
  cli_signals_forget_loop();
}

static const char serve_details[] =
    "Echoes every message back to its sender: text as text, binary as\n"
    "binary. With --rooms it is a chat server instead: a client connects to\n"
    "/rooms/NAME (any other path gets 404) and every message it sends goes\n"
    "to the other clients of room NAME, on every thread (--echo-self: to\n"
    "the sender too). A client that reads too slowly is closed with 1008\n"
    "\"slow consumer\" once --max-buffered bytes wait for it; the others are\n"
    "not held up. --redis URL shares the rooms with every other duplex serve\n"
    "using the same Redis: a message reaches the room's members on every\n"
    "node. The link is made in the background and retried while Redis is\n"
    "away; meanwhile rooms work within this node, and what could not be\n"
    "sent to the others is counted and logged (\"redis: ...\" lines).\n"
    "\n"
    "--socketio adds a Socket.IO (v5) chat on /socket.io/, namespace /chat;\n"
    "every other path is served as without it (echo, or --rooms). A client\n"
    "connects with auth {nick: NAME} (none: \"guest-XXXX\"; a bad one is\n"
    "refused: \"invalid nick\") and emits, each with an optional ack answered\n"
    "{ok: true, ...} or {ok: false, error: WHY}: join ROOM, leave ROOM,\n"
    "\"chat message\" ROOM TEXT (to the room's other members), nick NAME, and\n"
    "quit (the server then disconnects it: \"io server disconnect\"). A room\n"
    "hears \"joined\", \"left\" (with why the member left) and \"nick\". Its\n"
    "page is web/socketio/ (--static web, then open /socketio/), which loads\n"
    "the official client from npm (npm ci in web/socketio; ./scripts/serve\n"
    "--socketio does both). With several threads, a request or an upgrade\n"
    "that reaches another thread than its session's is handed to that one.\n"
    "--redis shares its rooms with other nodes too\n"
    "(each client's requests must then reach one node: sticky sessions).\n"
    "\n"
    "Once listening it prints \"listening on HOST:PORT (ws|wss, N\n"
    "threads)\" to stderr with the port actually bound (so --port 0 can be\n"
    "used to pick a free one); the default host, every IPv4 and IPv6\n"
    "address, is shown as \"*\". When it ends it prints \"stopped: N\n"
    "connections drained, M cut (of K open)\": cut ones did not answer the\n"
    "close within --drain-timeout. Both lines are printed even with --quiet,\n"
    "which only silences the per-connection open/close lines.\n"
    "\n"
    "SIGINT (Ctrl-C) or SIGTERM drains the server: it stops accepting, sends\n"
    "every connection a close frame 1001 \"server shutting down\" after what\n"
    "was already queued for it, waits up to --drain-timeout for the replies,\n"
    "cuts the rest and exits 0. A second signal exits at once.\n"
    "\n"
    "--threads N runs N event loops, one per thread, on the same port\n"
    "(SO_REUSEPORT: the kernel spreads connections over them). The port is\n"
    "this process's: a port another process holds fails with \"Address\n"
    "already in use\". --reuseport joins such a port instead (another duplex\n"
    "serve, or any program of the same user that set SO_REUSEPORT), and the\n"
    "kernel spreads connections over both processes.\n"
    "\n"
    "--host NAME listens on every address NAME resolves to (localhost: ::1\n"
    "and 127.0.0.1).\n"
    "\n"
    "--max-connections and --max-handshakes hold for the whole process (all\n"
    "threads). A connection past either gets \"503 Service Unavailable\" with\n"
    "Retry-After: 1 and the reason (\"connection limit reached (N)\"), and is\n"
    "not logged: it never opened. A handshake slot is held from the TCP\n"
    "connection until its request has arrived (or the handshake timeout,\n"
    "10 s). During a flood of refusals, the server stops accepting for\n"
    "100 ms at a time and the kernel queues the newcomers.\n"
    "\n"
    "HTTP on the same port: a request that is not a WebSocket upgrade is\n"
    "answered as HTTP/1.1 (keep-alive, pipelining; over TLS with\n"
    "--tls-cert too). GET /healthz answers 200 \"ok\" while serving and 503\n"
    "\"draining\" once a drain began. --metrics adds GET /metrics: the\n"
    "counters of every thread in Prometheus' text format (connections by\n"
    "state, opened, closed by why, messages and bytes in and out, HTTP\n"
    "requests and responses). --publish-token TOKEN adds POST\n"
    "/publish/TOPIC, which needs \"Authorization: Bearer TOKEN\" (else 401)\n"
    "and publishes the body to the topic's subscribers: as text (UTF-8, else\n"
    "400), or binary with Content-Type: application/octet-stream; it needs\n"
    "rooms, which this build has not (503). --static DIR serves the files\n"
    "below DIR for every other GET or HEAD path (\"/\" is index.html), with\n"
    "MIME types, ETag and Last-Modified (304); paths that lead outside DIR\n"
    "(\"..\", encoded or not, symbolic links out of it) get 404. Anything\n"
    "else gets 404. Requests: heads up to 8 KiB (431), bodies up to 1 MiB\n"
    "(413, and 411 for a chunked one), 10 s per request (408); a connection\n"
    "idle for 5 s between requests is closed.\n"
    "\n"
    "SIZE is a number of bytes, optionally followed by K, M or G (x1024).\n"
    "SECONDS may have a fraction (0.5).\n";

/* What the options of a worker's server are made from. */
typedef struct settings {
  uint64_t max_message, max_buffered;
  bool no_deflate;
  const char *tls_cert, *tls_key;
  cli_list protocols, origins;
  uint32_t ping_ms, ping_timeout_ms;
  unsigned max_conns, max_handshakes;
  dx_hub *rooms; /* --rooms' hub, else NULL */
} settings;

/* Builds the options a worker's server copies (every worker's, or with
 * --socketio one worker's: see cli_serve). NULL after reporting. */
static dx_options *make_options(const settings *st) {
  dx_options *o = dx_options_new();
  if (!o) {
    cli_error("serve", "out of memory");
    return NULL;
  }
  int rc = dx_options_set_max_message(o, st->max_message);
  if (rc) cli_error("serve", "--max-message: %s", dx_strerror(rc));
  if (rc == 0 && !st->tls_cert != !st->tls_key) {
    cli_error("serve", "--tls-cert and --tls-key go together");
    rc = DX_EINVAL;
  }
  if (rc == 0 && st->tls_cert) rc = dx_options_set_tls_cert(o, st->tls_cert, st->tls_key);
  if (rc == 0) rc = dx_options_set_deflate(o, !st->no_deflate);
  /* Set once on the object every worker's server copies: the limits hold
   * for the process, whatever loop the kernel hands a connection to. */
  if (rc == 0) rc = dx_options_set_max_connections(o, st->max_conns);
  if (rc == 0) rc = dx_options_set_max_handshakes(o, st->max_handshakes);
  if (rc == 0 && (rc = dx_options_set_ping(o, st->ping_ms, st->ping_timeout_ms)))
    cli_error("serve", "--ping-timeout must be above 0 when pings are on");
  for (int i = 0; rc == 0 && i < st->protocols.n; i++)
    if ((rc = dx_options_add_protocol(o, st->protocols.items[i])))
      cli_error("serve", "--protocol %s: not a valid name", st->protocols.items[i]);
  for (int i = 0; rc == 0 && i < st->origins.n; i++)
    if ((rc = dx_options_allow_origin(o, st->origins.items[i])))
      cli_error("serve", "--origin %s: not a valid origin", st->origins.items[i]);
  if (rc == 0 && st->max_buffered &&
      (rc = dx_options_set_max_buffered(o, (size_t)st->max_buffered, DX_SLOW_CLOSE)))
    cli_error("serve", "--max-buffered: not a usable size");
  if (rc) {
    dx_options_free(o);
    return NULL;
  }
  dx_options_on_open(o, on_open);
  dx_options_on_message(o, on_message);
  dx_options_on_close(o, on_close);
  dx_options_on_http(o, on_http);
  if (st->rooms) {
    dx_options_set_hub(o, st->rooms);
    dx_options_on_accept(o, serve_rooms_accept);
  }
  return o;
}

/* Creates worker i's loop and server and listens; with sio_hub (--socketio)
 * a Socket.IO server on that loop too, its rooms on sio_hub, attached to o
 * (which then serves this worker only). 0, or an exit status after
 * reporting. */
static int start_worker(worker *w, dx_options *o, dx_hub *sio_hub, const char *host,
                        uint16_t *port) {
  w->loop = dx_loop_new();
  if (!w->loop) {
    cli_error("serve", "cannot create an event loop: out of memory or file descriptors");
    return CLI_EXIT_FAIL;
  }
  cli_timer_init(&w->sio_wait, w->loop);
  if (sio_hub) {
    if (!(w->io = serve_sio_new(w->loop, sio_hub, w->quiet))) return CLI_EXIT_FAIL;
    /* The routes serve.c set stay the application's: everything outside
     * /socket.io/ reaches them as before. */
    if (dx_sio_attach(w->io, o)) {
      cli_error("serve", "--socketio: cannot attach the Socket.IO server");
      return CLI_EXIT_FAIL;
    }
  }
  dx_options_set_user(o, w); /* copied by dx_server_new */
  w->server = dx_server_new(w->loop, o);
  if (!w->server) {
    cli_error("serve", "cannot create the server: %s", dx_last_error());
    return CLI_EXIT_FAIL;
  }
  char where[300];
  cli_hostport(where, sizeof where, host, *port);
  errno = 0; /* DX_EADDR keeps errno; make sure a stale one is not shown */
  int rc = dx_server_listen(w->server, host, *port);
  if (rc != 0) {
    cli_error("serve", "cannot listen on %s: %s", where,
              *dx_last_error() ? dx_last_error() : dx_strerror(rc));
    return rc == DX_EINVAL ? CLI_EXIT_USAGE : CLI_EXIT_FAIL;
  }
  *port = dx_server_port(w->server); /* port 0: later workers share the one picked */
  serve_http_add_server(w->http, w->server);
  return 0;
}

/* The line at the end of a run: what the drain achieved. */
static void report_drain(const worker *w, unsigned started) {
  size_t draining = 0, cut = 0;
  for (unsigned i = 0; i < started; i++) {
    draining += w[i].draining;
    cut += w[i].cut;
  }
  size_t drained = draining - cut;
  fprintf(stderr, "stopped: %zu connection%s drained", drained, drained == 1 ? "" : "s");
  if (cut) fprintf(stderr, ", %zu cut", cut);
  fprintf(stderr, " (of %zu open)\n", draining);
}

int cli_serve(int argc, char **argv) {
  const char *host = "";
  uint16_t port = 8080;
  settings st = {.max_message = (uint64_t)16 << 20, .ping_ms = 25000, .ping_timeout_ms = 20000,
                 .max_handshakes = 1024};
  bool quiet = false, reuseport = false, rooms = false, echo_self = false, socketio = false;
  const char *redis_url = NULL;
  uint32_t drain_ms = 5000;
  bool metrics = false;
  const char *publish_token = NULL, *static_dir = NULL;
  long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
  unsigned threads = ncpu > 0 ? (unsigned)ncpu : 1;
  bool limits_given = false;
  const cli_opt opts[] = {
      {"host", CLI_OPT_STRING, "HOST",
       "address to listen on", "\"\", every IPv4 and IPv6 address", &host},
      {"port", CLI_OPT_PORT, "PORT", "TCP port; 0 picks a free one", "8080",
       &port},
      {"max-message", CLI_OPT_SIZE, "SIZE",
       "largest message accepted; larger ones close with 1009", "16M",
       &st.max_message},
      {"quiet", CLI_OPT_FLAG, NULL,
       "do not log connections opening and closing", "off", &quiet},
      {"tls-cert", CLI_OPT_STRING, "FILE",
       "serve wss://: certificate chain (PEM); needs --tls-key", "none", &st.tls_cert},
      {"tls-key", CLI_OPT_STRING, "FILE", "private key (PEM) for --tls-cert", "none",
       &st.tls_key},
      {"no-deflate", CLI_OPT_FLAG, NULL, "do not negotiate permessage-deflate",
       "off (compression is negotiated)", &st.no_deflate},
      {"protocol", CLI_OPT_LIST, "NAME",
       "a subprotocol to speak (repeatable; the client's first match wins)",
       "none", &st.protocols},
      {"origin", CLI_OPT_LIST, "ORIGIN",
       "allow browsers from this Origin only (repeatable; *.example.com "
       "wildcards)", "any Origin", &st.origins},
      {"ping-interval", CLI_OPT_SECONDS, "SECONDS",
       "send a ping this often; 0 turns heartbeats off", "25", &st.ping_ms},
      {"ping-timeout", CLI_OPT_SECONDS, "SECONDS",
       "close a peer silent this long after a ping (why: ping timeout)", "20",
       &st.ping_timeout_ms},
      {"drain-timeout", CLI_OPT_SECONDS, "SECONDS",
       "on SIGINT/SIGTERM, wait this long for close replies", "5", &drain_ms},
      {"threads", CLI_OPT_UINT, "N", "event loops (threads) sharing the port",
       "one per core", &threads, 0, NULL},
      {"reuseport", CLI_OPT_FLAG, NULL,
       "join a port another duplex serve holds, sharing its connections",
       "off (a port in use is an error)", &reuseport},
      {"max-connections", CLI_OPT_UINT, "N",
       "connections at once, all threads; past it: HTTP 503; 0: no limit",
       "0 (the descriptor limit)", &st.max_conns, 0, &limits_given},
      {"rooms", CLI_OPT_FLAG, NULL,
       "chat rooms instead of echo: /rooms/NAME, messages go to the room",
       "off (echo)", &rooms},
      {"echo-self", CLI_OPT_FLAG, NULL, "rooms: the sender gets its own messages too",
       "off", &echo_self},
      {"socketio", CLI_OPT_FLAG, NULL,
       "a Socket.IO chat on /socket.io/ (namespace /chat; page: web/socketio/)", "off",
       &socketio},
      {"redis", CLI_OPT_STRING, "URL",
       "rooms, Socket.IO: share them with other nodes, "
       "redis://[[user]:pass@]host[:port][/db]",
       "none (this process only)", &redis_url},
      {"max-buffered", CLI_OPT_SIZE, "SIZE",
       "output held for one slow client; past it: close 1008", "2 x --max-message",
       &st.max_buffered},
      {"max-handshakes", CLI_OPT_UINT, "N",
       "connections whose request is not in yet; past it: HTTP 503; 0: no limit",
       "1024", &st.max_handshakes, 0, &limits_given},
      {"metrics", CLI_OPT_FLAG, NULL,
       "serve GET /metrics (Prometheus text format)", "off", &metrics},
      {"publish-token", CLI_OPT_STRING, "TOKEN",
       "serve POST /publish/TOPIC to clients sending this bearer token", "off",
       &publish_token},
      {"static", CLI_OPT_STRING, "DIR",
       "serve the files below DIR over HTTP (GET, HEAD)", "off", &static_dir},
  };
  const cli_command cmd = {"serve", "", "Run a WebSocket echo server.",
                           serve_details, opts,
                           (int)(sizeof opts / sizeof opts[0]), 0, 0};
  char *pos[1];
  int n_pos;
  switch (cli_parse(&cmd, argc, argv, pos, &n_pos)) {
    case CLI_PARSE_OK: break;
    case CLI_PARSE_HELP: return CLI_EXIT_OK;
    case CLI_PARSE_ERROR: return CLI_EXIT_USAGE;
  }
  if (threads < 1 || threads > MAX_THREADS) {
    cli_error("serve", "--threads: 1 to %d", MAX_THREADS);
    return CLI_EXIT_USAGE;
  }
  if (echo_self && !rooms) {
    cli_error("serve", "--echo-self needs --rooms");
    return CLI_EXIT_USAGE;
  }
  if (redis_url && !rooms && !socketio) {
    cli_error("serve", "--redis needs --rooms or --socketio");
    return CLI_EXIT_USAGE;
  }
  /* Each loop's Socket.IO server is attached to options of its own, and
   * the connection limits are shared only by servers made from one
   * options object: over several loops they could not hold for the
   * process as documented. */
  if (socketio && threads > 1 && limits_given) {
    cli_error("serve", "--max-connections and --max-handshakes with --socketio need "
              "--threads 1 (with several threads the limits would hold per thread)");
    return CLI_EXIT_USAGE;
  }
  if (publish_token && !*publish_token) {
    cli_error("serve", "--publish-token: the token may not be empty");
    return CLI_EXIT_USAGE;
  }
  /* One hub for the process: --rooms' rooms and Socket.IO's, on every
   * loop (and, with --redis, every node). */
  dx_hub *hub = NULL;
  if ((rooms || socketio) && !(hub = dx_hub_new())) {
    cli_error("serve", "out of memory");
    return CLI_EXIT_FAIL;
  }
  st.rooms = rooms ? hub : NULL;
  dx_options *o = make_options(&st);
  if (!o) {
    dx_hub_free(hub);
    return CLI_EXIT_USAGE;
  }
  serve_http *http = serve_http_new(metrics, publish_token, static_dir);
  if (!http) {
    dx_options_free(o);
    dx_hub_free(hub);
    return CLI_EXIT_USAGE;
  }
  serve_http_set_hub(http, st.rooms);
  if (socketio) serve_sio_check_page(static_dir);

  /* Threaded workers inherit a blocked SIGINT/SIGTERM, so the handler
   * only ever runs on the main thread (run_main unblocks them there). */
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &sigs, NULL);
  signal(SIGPIPE, SIG_IGN);

  worker workers[MAX_THREADS];
  memset(workers, 0, sizeof workers);
  int status = 0;
  unsigned started = 0;
  for (unsigned i = 0; i < threads && status == 0; i++) {
    workers[i].quiet = quiet;
    workers[i].hub = st.rooms;
    workers[i].echo_self = echo_self;
    workers[i].http = http;
    workers[i].drain_ms = drain_ms;
    /* With --socketio every worker's server gets options of its own (a
     * dx_sio is attached to the options, one per loop); o is worker 0's. */
    dx_options *mine = socketio && i > 0 ? make_options(&st) : o;
    if (!mine) {
      status = CLI_EXIT_FAIL;
      break;
    }
    /* The first loop binds the port as its owner (exclusively) and opens
     * it to the others; with --reuseport it joins whoever holds it. */
    dx_options_set_reuseport(mine, i > 0 || reuseport ? DX_REUSEPORT_JOIN : DX_REUSEPORT_OPEN);
    status = start_worker(&workers[i], mine, socketio ? hub : NULL, host, &port);
    if (mine != o) dx_options_free(mine);
    if (status == 0 && i == 0) {
      started++; /* runs on this thread, in run_main */
    } else if (status == 0) {
      int e = pthread_create(&workers[i].thread, NULL, run_worker, &workers[i]);
      if (e != 0) {
        cli_error("serve", "cannot start a thread: %s", strerror(e)); /* not errno */
        status = CLI_EXIT_FAIL;
      } else {
        started++;
      }
    }
  }
  dx_options_free(o);
  /* The Redis link runs on loop 0 (this thread's). */
  if (status == 0 && redis_url) {
    int rc = dx_hub_use_redis(hub, workers[0].loop, redis_url);
    if (rc) {
      cli_error("serve", "--redis %s: %s", redis_url,
                *dx_last_error() ? dx_last_error() : dx_strerror(rc));
      status = rc == DX_ENOMEM ? CLI_EXIT_FAIL : CLI_EXIT_USAGE;
    }
  }
  if (status == 0) {
    char where[300];
    /* ", rooms", ", Socket.IO", ", rooms and Socket.IO", each maybe
     * "shared through Redis". */
    char what[80];
    snprintf(what, sizeof what, "%s%s%s%s%s", rooms || socketio ? ", " : "",
             rooms ? "rooms" : "", rooms && socketio ? " and " : "",
             socketio ? "Socket.IO" : "", redis_url ? " shared through Redis" : "");
    fprintf(stderr, "listening on %s (%s, %u thread%s%s%s)\n",
            cli_hostport(where, sizeof where, host, port), st.tls_cert ? "wss" : "ws",
            threads, threads == 1 ? "" : "s", reuseport ? ", port shared" : "", what);
    run_main(workers, started, drain_ms, &sigs);
  } else {
    for (unsigned i = 1; i < started; i++) dx_loop_post(workers[i].loop, post_stop, NULL);
  }
  /* Every thread joined before any server is freed: a worker's /metrics
   * reads the others' servers. */
  for (unsigned i = 1; i < started; i++)
    if (!workers[i].joined) pthread_join(workers[i].thread, NULL);
  for (unsigned i = 0; i < threads; i++) {
    if (workers[i].rc && status == 0) {
      cli_error("serve", "event loop failed: %s", dx_strerror(workers[i].rc));
      status = CLI_EXIT_FAIL;
    }
    /* Socket.IO's sockets hear "server shutting down" (if the drain did
     * not tell them) before their server goes; the dx_sio after it. */
    if (workers[i].io) dx_sio_shutdown(workers[i].io);
    if (workers[i].loop) cli_timer_stop(&workers[i].sio_wait); /* a second signal */
    if (workers[i].server) dx_server_free(workers[i].server);
    dx_sio_free(workers[i].io);
  }
  /* The hub after the servers and Socket.IO servers (their connections
   * and sockets leave its rooms), before the loops (its engine runs on
   * one). */
  dx_hub_free(hub);
  for (unsigned i = 0; i < threads; i++)
    if (workers[i].loop) dx_loop_free(workers[i].loop);
  /* After dx_server_free, whose cuts (a second signal) count too. */
  if (status == 0) report_drain(workers, started);
  serve_http_free(http);
  return status;
}
