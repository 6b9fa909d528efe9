/*
 * lifecycle_peer: one duplex endpoint, server or client, with the lifecycle
 * options (heartbeats, timeouts, watermarks, the output cap and its policy)
 * taken from the command line. It prints every callback with its arguments
 * as one line on stdout and takes commands on stdin, so test_lifecycle.py
 * can provoke each way a connection ends and read what duplex reported.
 *
 *   lifecycle_peer server [OPTION...]        listens on 127.0.0.1, port 0
 *   lifecycle_peer client [OPTION...] URL    exits once the connection ended
 *
 * Options:
 *   --ping=INTERVAL,TIMEOUT     dx_options_set_ping, ms (0,0 turns pings off)
 *   --close-timeout=MS          dx_options_set_close_timeout
 *   --idle-timeout=MS           dx_options_set_idle_timeout
 *   --handshake-timeout=MS      dx_options_set_handshake_timeout
 *   --no-defer-accept           dx_options_set_defer_accept(0)
 *   --watermarks=HIGH,LOW       dx_options_set_watermarks, bytes
 *   --max-buffered=BYTES,POLICY dx_options_set_max_buffered; close|retry|drop
 *   --max-message=BYTES         dx_options_set_max_message
 *   --echo                      send every message back
 *   --quiet-pings               no "ping" lines (a ping flood would stall
 *                               the peer on a harness that reads slowly)
 *
 * Lines (one per event; reason and why are quoted, '"' and '\' escaped):
 *   listening PORT                      the server listens
 *   open path=P rtt=R                   on_open
 *   message type=text|binary len=N      on_message
 *   ping len=N | pong len=N rtt=R       on_ping | on_pong
 *   drain buffered=B                    on_drain
 *   close code=C reason="R" why="W" http_status=S   on_close
 *   connect-error rc=NAME               dx_connect() refused to start
 *
 * Commands, one a line, acting on the newest connection that opened:
 *   send N               dx_send of N binary bytes -> send rc=RC buffered=B
 *   text WORD            dx_send_text              -> send rc=RC buffered=B
 *   burst K N            K sends of N bytes at once -> burst ok=.. backpressure=..
 *                        other=.. buffered=B
 *   flood N MS           sends of N bytes for MS ms, a burst per loop iteration
 *                        (so the socket is written between bursts); prints the
 *                        first flood-backpressure n=I buffered=B, the first
 *                        flood-ebuffer n=I buffered=B state=S, then flood-done
 *                        with counters (see flood_done)
 *   close CODE [REASON]  dx_close                  -> close-call rc=RC
 *   ping WORD            dx_ping                   -> ping-call rc=RC
 *   stats                -> stats state=S buffered=B rtt=R
 *   shutdown MS          dx_server_shutdown        -> shutdown rc=RC
 *   quit                 (server; also end of stdin) dx_server_free, exit
 * RC is OK, BACKPRESSURE or dx_err_name(). A command with no connection
 * prints "error no connection". Bad usage or a failed setup call prints
 * "FAIL: ..." and exits 1. There is no watchdog here: the suite kills its
 * children (and they die with it).
 */
#define _POSIX_C_SOURCE 200809L
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <duplex.h>

#define BURST 32 /* flood sends per loop iteration */

typedef struct {
  int active;
  size_t size;
  uint64_t end_ms;
  uint8_t *data;
  unsigned long attempts, ok, backpressure, ebuffer, estate, other;
  unsigned long long refused_bytes;
  unsigned long mark_violations; /* rc disagreeing with the high-water mark */
  size_t max_buffered;
} flood_state;

static struct {
  dx_loop *loop;
  dx_server *server;
  dx_conn *cur; /* the newest open connection, NULL once it ended */
  int is_client;
  int echo;
  int quiet_pings;
  size_t high_water;
  flood_state flood;
  char in[4096];
  size_t in_len;
} P = {.high_water = 1u << 20};

/* Setup failures only: "FAIL: what detail", exit 1. */
static void die(const char *what, const char *detail) __attribute__((noreturn));

static void die(const char *what, const char *detail) {
  printf("FAIL: %s%s\n", what, detail ? detail : "");
  exit(1);
}

static void *alloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p) die("out of memory", NULL);
  return p;
}

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static const char *rc_name(int rc) {
  if (rc == 0) return "OK";
  if (rc == DX_SEND_BACKPRESSURE) return "BACKPRESSURE";
  return dx_err_name(rc);
}

static void put_quoted(const char *key, const char *s) {
  printf(" %s=\"", key);
  for (; *s; s++) {
    if (*s == '"' || *s == '\\') putchar('\\');
    putchar(*s);
  }
  putchar('"');
}

/* ---- callbacks ----------------------------------------------------------- */

static void on_open(dx_conn *c) {
  P.cur = c;
  printf("open path=%s rtt=%d\n", dx_conn_path(c), (int)dx_conn_rtt(c));
}

static void on_message(dx_conn *c, dx_msg_type type, const uint8_t *data, size_t len) {
  printf("message type=%s len=%zu\n", type == DX_TEXT ? "text" : "binary", len);
  if (P.echo) {
    int rc = dx_send(c, type, data, len);
    if (rc < 0) printf("echo rc=%s\n", rc_name(rc));
  }
}

static void on_ping(dx_conn *c, const uint8_t *data, size_t len) {
  (void)c, (void)data;
  if (!P.quiet_pings) printf("ping len=%zu\n", len);
}

static void on_pong(dx_conn *c, const uint8_t *data, size_t len) {
  (void)data;
  printf("pong len=%zu rtt=%d\n", len, (int)dx_conn_rtt(c));
}

static void on_drain(dx_conn *c) { printf("drain buffered=%zu\n", dx_conn_buffered_amount(c)); }

static void flood_done(void);

static void on_close(dx_conn *c, int code, const char *reason, dx_why why, int http_status) {
  if (c == P.cur) {
    if (P.flood.active) flood_done();
    P.cur = NULL;
  }
  printf("close code=%d", code);
  put_quoted("reason", reason);
  put_quoted("why", dx_why_name(why));
  printf(" http_status=%d\n", http_status);
  /* A client is done with its one connection: let the loop end. */
  if (P.is_client) dx_loop_unwatch_fd(P.loop, STDIN_FILENO);
}

/* ---- flood ----------------------------------------------------------------- */

static int cur_state(void) {
  return P.cur ? (int)dx_conn_state(P.cur) : (int)DX_CLOSED;
}

static void flood_done(void) {
  flood_state *f = &P.flood;
  f->active = 0;
  printf("flood-done attempts=%lu ok=%lu backpressure=%lu ebuffer=%lu estate=%lu other=%lu "
         "refused_bytes=%llu mark_violations=%lu max_buffered=%zu state=%d\n",
         f->attempts, f->ok, f->backpressure, f->ebuffer, f->estate, f->other,
         f->refused_bytes, f->mark_violations, f->max_buffered, cur_state());
  free(f->data);
  f->data = NULL;
}

/* One send of the flood; returns 0 to stop (the connection is not open). */
static int flood_one(flood_state *f) {
  if (!P.cur) return 0;
  int rc = dx_send_binary(P.cur, f->data, f->size);
  size_t b = P.cur ? dx_conn_buffered_amount(P.cur) : 0;
  f->attempts++;
  if (b > f->max_buffered) f->max_buffered = b;
  switch (rc) {
    case 0:
      f->ok++;
      if (b > P.high_water) f->mark_violations++;
      return 1;
    case DX_SEND_BACKPRESSURE:
      if (f->backpressure++ == 0) printf("flood-backpressure n=%lu buffered=%zu\n", f->attempts, b);
      if (b <= P.high_water) f->mark_violations++;
      return 1;
    case DX_EBUFFER:
      f->refused_bytes += f->size;
      if (f->ebuffer++ == 0)
        printf("flood-ebuffer n=%lu buffered=%zu state=%d\n", f->attempts, b, cur_state());
      return cur_state() == DX_OPEN;
    case DX_ESTATE:
      f->estate++;
      return 0;
    default:
      f->other++;
      printf("flood-error rc=%s\n", rc_name(rc));
      return 0;
  }
}

static void flood_step(dx_loop *loop, void *ud) {
  (void)ud;
  flood_state *f = &P.flood;
  if (!f->active) return;
  int go = P.cur != NULL;
  for (int i = 0; go && i < BURST; i++) go = flood_one(f);
  if (!go || now_ms() >= f->end_ms) {
    if (f->active) flood_done();
    return;
  }
  if (dx_loop_post(loop, flood_step, NULL) != 0) die("dx_loop_post failed", NULL);
}

static void flood_start(size_t size, unsigned ms) {
  flood_state *f = &P.flood;
  if (f->active) {
    printf("error flood already running\n");
    return;
  }
  memset(f, 0, sizeof *f);
  f->data = alloc(size);
  for (size_t i = 0; i < size; i++) f->data[i] = (uint8_t)(i * 31 + 7);
  f->size = size;
  f->end_ms = now_ms() + ms;
  f->active = 1;
  flood_step(P.loop, NULL);
}

/* ---- commands -------------------------------------------------------------- */

static uint8_t *filled(size_t n) {
  uint8_t *p = alloc(n);
  for (size_t i = 0; i < n; i++) p[i] = (uint8_t)i;
  return p;
}

static void print_send(int rc) {
  printf("send rc=%s buffered=%zu\n", rc_name(rc),
         P.cur ? dx_conn_buffered_amount(P.cur) : (size_t)0);
}

static void cmd_burst(unsigned long k, size_t n) {
  uint8_t *p = filled(n);
  unsigned long ok = 0, bp = 0, other = 0;
  for (unsigned long i = 0; i < k && P.cur; i++) {
    int rc = dx_send_binary(P.cur, p, n);
    if (rc == 0) ok++;
    else if (rc == DX_SEND_BACKPRESSURE) bp++;
    else other++;
  }
  free(p);
  printf("burst ok=%lu backpressure=%lu other=%lu buffered=%zu\n", ok, bp, other,
         P.cur ? dx_conn_buffered_amount(P.cur) : (size_t)0);
}

static void command(char *line) {
  char *arg = strchr(line, ' ');
  if (arg) *arg++ = '\0';
  else arg = line + strlen(line);
  if (strcmp(line, "quit") == 0) {
    if (P.server) dx_server_free(P.server);
    P.server = NULL;
    dx_loop_unwatch_fd(P.loop, STDIN_FILENO);
    return;
  }
  if (strcmp(line, "shutdown") == 0) {
    printf("shutdown rc=%s\n",
           P.server ? rc_name(dx_server_shutdown(P.server, (uint32_t)atol(arg))) : "no server");
    return;
  }
  if (!P.cur) {
    printf("error no connection for '%s'\n", line);
    return;
  }
  if (strcmp(line, "send") == 0) {
    size_t n = (size_t)strtoull(arg, NULL, 10);
    uint8_t *p = filled(n);
    int rc = dx_send_binary(P.cur, p, n);
    free(p);
    print_send(rc);
  } else if (strcmp(line, "text") == 0) {
    print_send(dx_send_text(P.cur, arg, strlen(arg)));
  } else if (strcmp(line, "burst") == 0) {
    char *end;
    unsigned long k = strtoul(arg, &end, 10);
    cmd_burst(k, (size_t)strtoull(end, NULL, 10));
  } else if (strcmp(line, "flood") == 0) {
    char *end;
    size_t n = (size_t)strtoull(arg, &end, 10);
    flood_start(n, (unsigned)strtoul(end, NULL, 10));
  } else if (strcmp(line, "close") == 0) {
    char *reason = strchr(arg, ' ');
    if (reason) *reason++ = '\0';
    printf("close-call rc=%s\n", rc_name(dx_close(P.cur, atoi(arg), reason)));
  } else if (strcmp(line, "ping") == 0) {
    printf("ping-call rc=%s\n", rc_name(dx_ping(P.cur, arg, strlen(arg))));
  } else if (strcmp(line, "stats") == 0) {
    printf("stats state=%d buffered=%zu rtt=%d\n", (int)dx_conn_state(P.cur),
           dx_conn_buffered_amount(P.cur), (int)dx_conn_rtt(P.cur));
  } else {
    printf("error unknown command '%s'\n", line);
  }
}

static void on_stdin(dx_loop *loop, int fd, void *ud) {
  (void)ud;
  ssize_t n = read(fd, P.in + P.in_len, sizeof P.in - 1 - P.in_len);
  if (n <= 0) { /* end of input: as "quit" (a client keeps its connection) */
    dx_loop_unwatch_fd(loop, fd);
    if (P.server) dx_server_free(P.server);
    P.server = NULL;
    return;
  }
  P.in_len += (size_t)n;
  char *start = P.in, *nl;
  while ((nl = memchr(start, '\n', P.in_len - (size_t)(start - P.in)))) {
    *nl = '\0';
    command(start);
    start = nl + 1;
  }
  P.in_len -= (size_t)(start - P.in);
  memmove(P.in, start, P.in_len);
  if (P.in_len == sizeof P.in - 1) die("command line too long", NULL);
}

/* ---- options --------------------------------------------------------------- */

static void pair(const char *v, unsigned long long *a, unsigned long long *b, const char *opt) {
  char *end;
  *a = strtoull(v, &end, 10);
  if (end == v || *end != ',') die(opt, ": expected A,B");
  *b = strtoull(end + 1, &end, 10);
  if (*end) die(opt, ": expected A,B");
}

static void must(int rc, const char *what) {
  if (rc == 0) return;
  char head[96];
  snprintf(head, sizeof head, "%s returned ", what);
  die(head, dx_err_name(rc));
}

static dx_slow_policy policy_named(const char *name) {
  if (strcmp(name, "close") == 0) return DX_SLOW_CLOSE;
  if (strcmp(name, "retry") == 0) return DX_SLOW_CLOSE_RETRY;
  if (strcmp(name, "drop") == 0) return DX_SLOW_DROP;
  die("--max-buffered: unknown policy ", name);
}

static int apply_option(const char *arg, dx_options *o) {
  if (strncmp(arg, "--", 2) != 0) return 0;
  const char *eq = strchr(arg, '=');
  const char *v = eq ? eq + 1 : "";
  size_t nl = eq ? (size_t)(eq - arg) : strlen(arg);
#define IS(name) (nl == strlen(name) && strncmp(arg, name, nl) == 0)
  unsigned long long a, b;
  if (IS("--ping")) {
    pair(v, &a, &b, "--ping");
    must(dx_options_set_ping(o, (uint32_t)a, (uint32_t)b), "dx_options_set_ping");
  } else if (IS("--idle-timeout")) {
    must(dx_options_set_idle_timeout(o, (uint32_t)atol(v)), "dx_options_set_idle_timeout");
  } else if (IS("--close-timeout")) {
    must(dx_options_set_close_timeout(o, (uint32_t)atol(v)), "dx_options_set_close_timeout");
  } else if (IS("--handshake-timeout")) {
    must(dx_options_set_handshake_timeout(o, (uint32_t)atol(v)),
         "dx_options_set_handshake_timeout");
  } else if (IS("--no-defer-accept")) {
    dx_options_set_defer_accept(o, 0);
  } else if (IS("--watermarks")) {
    pair(v, &a, &b, "--watermarks");
    must(dx_options_set_watermarks(o, (size_t)a, (size_t)b), "dx_options_set_watermarks");
    P.high_water = (size_t)a;
  } else if (IS("--max-buffered")) {
    const char *comma = strchr(v, ',');
    if (!comma) die("--max-buffered: expected BYTES,POLICY, got ", v);
    must(dx_options_set_max_buffered(o, (size_t)strtoull(v, NULL, 10), policy_named(comma + 1)),
         "dx_options_set_max_buffered");
  } else if (IS("--max-message")) {
    must(dx_options_set_max_message(o, strtoull(v, NULL, 10)), "dx_options_set_max_message");
  } else if (IS("--echo")) {
    P.echo = 1;
  } else if (IS("--quiet-pings")) {
    P.quiet_pings = 1;
  } else {
    die("unknown option ", arg);
  }
#undef IS
  return 1;
}

static int usage(void) {
  fprintf(stderr, "usage: lifecycle_peer server|client [OPTION...] [URL]\n");
  return 2;
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  signal(SIGPIPE, SIG_IGN);
  if (argc < 2 || (strcmp(argv[1], "server") && strcmp(argv[1], "client"))) {
    return usage();
  }
  P.is_client = strcmp(argv[1], "client") == 0;
  P.loop = dx_loop_new();
  dx_options *o = dx_options_new();
  if (!P.loop || !o) die("dx_loop_new/dx_options_new failed", NULL);
  int a = 2;
  while (a < argc && apply_option(argv[a], o)) a++;
  if (a != argc - P.is_client) {
    return usage();
  }
  dx_options_on_open(o, on_open);
  dx_options_on_message(o, on_message);
  dx_options_on_ping(o, on_ping);
  dx_options_on_pong(o, on_pong);
  dx_options_on_drain(o, on_drain);
  dx_options_on_close(o, on_close);
  must(dx_loop_watch_fd(P.loop, STDIN_FILENO, on_stdin, NULL), "dx_loop_watch_fd(stdin)");

  if (P.is_client) {
    dx_conn *c;
    int rc = dx_connect(P.loop, argv[a], o, &c);
    if (rc != 0) {
      printf("connect-error rc=%s\n", rc_name(rc));
      dx_loop_unwatch_fd(P.loop, STDIN_FILENO);
    }
  } else {
    P.server = dx_server_new(P.loop, o);
    if (!P.server) die("dx_server_new: ", dx_last_error());
    must(dx_server_listen(P.server, "127.0.0.1", 0), "dx_server_listen");
    printf("listening %u\n", (unsigned)dx_server_port(P.server));
  }
  dx_options_free(o);
  int rc = dx_loop_run(P.loop);
  if (rc != 0) die("dx_loop_run: ", dx_err_name(rc));
  if (P.server) dx_server_free(P.server);
  dx_loop_free(P.loop);
  free(P.flood.data);
  printf("exit\n");
  return 0;
}
