/*
 * sio_load — the client of bench/socketio.sh: many Socket.IO v5 clients
 * (Engine.IO v4, over WebSocket or long-polling, no upgrade) in one C
 * process, so that the client costs far less than the server it measures.
 * The server must behave as bench/sio_server.c and bench/sio_ref.js do.
 *
 *   echo    --conns N --inflight K --size S: every client keeps K events
 *           "echo" PAYLOAD (S letters) in flight, each with an ack; every
 *           ack must be 3<id>["PAYLOAD"], in order. Events/s and the
 *           server's CPU per event over --seconds after --warmup.
 *   fanout  N subscribers join room --room (an acked "join"), then one
 *           more client publishes "fanout" ROOM PAYLOAD with K messages in
 *           flight, a message being in flight until every subscriber has
 *           received "msg" PAYLOAD. PAYLOAD starts with its number in 16 hex
 *           digits; every delivery is checked byte for byte, in order.
 *           Deliveries/s and the server's CPU per delivery.
 *   idle    N connected clients (CONNECT answered), nothing else; the
 *           server's VmRSS before, after the first tenth and after all N,
 *           per client (as wsbench --mode idle).
 *
 * Server CPU is utime + stime from /proc/PID/stat (--pid) over the
 * measured window, as `duplex bench --server-pid` reads it. At most
 * --burst clients are being opened at a time. Any error (a refused
 * connection, an unexpected packet, a wrong byte) ends the run with exit
 * status 1 and the reason on stderr: a figure with errors means nothing.
 * One key=value line on stdout on success.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "bench_stats.h"
#include "sio_load.h"

enum { M_ECHO, M_FANOUT, M_IDLE };

static struct {
  sl_target t;
  int mode, polling;
  unsigned conns, inflight, burst, size;
  double seconds, warmup, settle;
  long pid;
  const char *room;
} opt = {.t = {"127.0.0.1", 0, "/socket.io/"}, .conns = 100, .inflight = 1, .burst = 128,
         .size = 20, .seconds = 3, .warmup = 1, .settle = 1, .room = "bench"};

static int ep;
static sl_client *cl;        /* opt.conns clients, then the publisher */
static unsigned n_clients;   /* in cl */
static unsigned target;      /* clients to have started */
static unsigned started, n_ready, n_joined;
static bool loading, measuring;
static uint64_t done_events;  /* acks or deliveries while measuring */
static uint64_t done_publishes;
static bench_hist hist;
static char *payload;         /* opt.size letters */
static char *want_ack_tail;   /* ["PAYLOAD"] */
static size_t want_ack_len;
/* fanout */
static uint64_t next_seq;     /* the next message to publish */
static uint32_t *fan_got;     /* subscribers that have message n, at n % K */
static uint64_t *fan_at;      /* when message n was published, at n % K */

void sl_fail(sl_client *c, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  if (c) fprintf(stderr, "sio_load: client %u: ", c->idx);
  else fprintf(stderr, "sio_load: ");
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  exit(1);
}

/* ---- Socket.IO -------------------------------------------------------- */

static void send_echo(sl_client *c) {
  char buf[64];
  uint32_t id = c->next_id++;
  int n = snprintf(buf, sizeof buf, "2%u[\"echo\",\"", id);
  size_t len = (size_t)n + opt.size + 2;
  char *p = len <= sizeof buf ? buf : malloc(len);
  if (!p) sl_fail(c, "out of memory");
  if (p != buf) memcpy(p, buf, (size_t)n);
  memcpy(p + n, payload, opt.size);
  memcpy(p + n + opt.size, "\"]", 2);
  sl_wire_send(c, p, len);
  if (p != buf) free(p);
  unsigned slot = (c->head + c->count++) % opt.inflight;
  c->ids[slot] = id;
  c->sent_at[slot] = bench_now_ns();
}

static void hex16(char dst[16], uint64_t n) {
  static const char hex[] = "0123456789abcdef";
  for (int i = 15; i >= 0; i--, n >>= 4) dst[i] = hex[n & 15];
}

/* 16 hex digits of n, then the payload's letters: message n's text. */
static void fan_text(char *dst, uint64_t n) {
  hex16(dst, n);
  memcpy(dst + 16, payload + 16, opt.size - 16);
}

static void publish(void) {
  sl_client *pub = &cl[opt.conns];
  char head[96];
  int n = snprintf(head, sizeof head, "2[\"fanout\",\"%s\",\"", opt.room);
  size_t len = (size_t)n + opt.size + 2;
  char *p = malloc(len);
  if (!p) sl_fail(pub, "out of memory");
  memcpy(p, head, (size_t)n);
  fan_text(p + n, next_seq);
  memcpy(p + n + opt.size, "\"]", 2);
  sl_wire_send(pub, p, len);
  free(p);
  fan_got[next_seq % opt.inflight] = 0;
  fan_at[next_seq % opt.inflight] = bench_now_ns();
  next_seq++;
}

static void on_ack(sl_client *c, const char *p, size_t n) {
  char *end;
  unsigned long id = strtoul(p, &end, 10);
  if (end == p) sl_fail(c, "ack without an id: %.*s", (int)n, p);
  size_t rest = n - (size_t)(end - p);
  if (opt.mode == M_FANOUT) { /* the join's */
    if (c->joined || id != 0 || rest != 2 || memcmp(end, "[]", 2))
      sl_fail(c, "unexpected ack %.*s", (int)n, p);
    c->joined = true;
    n_joined++;
    return;
  }
  if (opt.mode != M_ECHO || !c->count || c->ids[c->head] != id)
    sl_fail(c, "unexpected ack %.*s", (int)(n < 60 ? n : 60), p);
  if (rest != want_ack_len || memcmp(end, want_ack_tail, rest))
    sl_fail(c, "ack %lu carries %.*s", id, (int)(rest < 60 ? rest : 60), end);
  if (measuring) {
    bench_hist_add(&hist, bench_now_ns() - c->sent_at[c->head]);
    done_events++;
  }
  c->head = (c->head + 1) % opt.inflight;
  c->count--;
  if (loading) send_echo(c);
}

/* A subscriber's "msg": the message it is due, byte for byte. */
static void on_delivery(sl_client *c, const char *p, size_t n) {
  static const char pre[] = "[\"msg\",\"";
  size_t pl = sizeof pre - 1;
  char want[16];
  if (c->idx >= opt.conns || n != pl + opt.size + 2 || memcmp(p, pre, pl) ||
      memcmp(p + pl + opt.size, "\"]", 2))
    sl_fail(c, "unexpected event %.*s", (int)(n < 60 ? n : 60), p);
  hex16(want, c->fan_next);
  if (memcmp(p + pl, want, 16) || memcmp(p + pl + 16, payload + 16, opt.size - 16))
    sl_fail(c, "expected message %llu, got %.*s", (unsigned long long)c->fan_next, (int)n, p);
  uint64_t seq = c->fan_next++;
  if (measuring) done_events++;
  if (++fan_got[seq % opt.inflight] < opt.conns) return;
  /* every subscriber has it: room for the next */
  if (measuring) {
    bench_hist_add(&hist, bench_now_ns() - fan_at[seq % opt.inflight]);
    done_publishes++;
  }
  if (loading) publish();
}

void sl_on_open(sl_client *c) { sl_wire_send(c, "0", 1); /* CONNECT to "/" */ }

void sl_on_packet(sl_client *c, const char *p, size_t n) {
  if (!n) sl_fail(c, "empty Socket.IO packet");
  switch (p[0]) {
    case '0': /* CONNECT answered: 0{"sid":"..."} */
      if (c->ready) sl_fail(c, "a second CONNECT answer");
      c->ready = true;
      n_ready++;
      if (opt.mode == M_FANOUT && c->idx < opt.conns) {
        char join[96];
        int k = snprintf(join, sizeof join, "20[\"join\",\"%s\"]", opt.room);
        sl_wire_send(c, join, (size_t)k);
      }
      break;
    case '3': on_ack(c, p + 1, n - 1); break;
    case '2': on_delivery(c, p + 1, n - 1); break;
    case '4': sl_fail(c, "CONNECT refused: %.*s", (int)n, p);
    case '1': sl_fail(c, "DISCONNECT from the server");
    default: sl_fail(c, "unexpected Socket.IO packet %.*s", (int)(n < 60 ? n : 60), p);
  }
}

/* ---- the loop --------------------------------------------------------- */

static void start_more(void) {
  while (started < target && started - n_ready < opt.burst) {
    sl_client *c = &cl[started];
    c->idx = started++;
    c->polling = opt.polling && opt.mode == M_ECHO; /* fanout and idle: WebSocket */
    sl_wire_start(c);
  }
}

static bool all_ready(void) { return n_ready == target; }
static bool all_joined(void) { return n_ready == target && n_joined == opt.conns; }
static bool any_done(void) { return done_events > 0; }

/* Runs until `until` (ns) or done() holds. */
static void run_until(uint64_t until, bool (*done)(void)) {
  struct epoll_event ev[512];
  for (;;) {
    uint64_t now = bench_now_ns();
    if (now >= until || (done && done())) return;
    start_more();
    uint64_t left = (until - now) / 1000000u + 1;
    int n = epoll_wait(ep, ev, 512, left < 50 ? (int)left : 50);
    if (n < 0 && errno != EINTR) sl_fail(NULL, "epoll_wait: %s", strerror(errno));
    for (int i = 0; i < n; i++) sl_wire_event(ev[i].data.ptr, ev[i].events);
    sl_wire_flush_all();
  }
}

static uint64_t secs_ns(double s) { return (uint64_t)(s * 1e9); }

/* Opens clients until done(). A server starved of CPU may take minutes
 * for 10,000: the run fails only when none made progress for 30 s. */
static void open_all(unsigned n, bool (*done)(void), const char *what) {
  target = n;
  for (unsigned last = 0;;) {
    run_until(bench_now_ns() + secs_ns(30), done);
    unsigned now = opt.mode == M_FANOUT ? n_joined : n_ready;
    if (done()) return;
    if (now == last) sl_fail(NULL, "only %u of %u clients %s, none more in 30 s", now, n, what);
    last = now;
  }
}

/* The load of echo and fanout: warm-up, then the measured window. */
static void measure(const char *mode_line) {
  run_until(bench_now_ns() + secs_ns(opt.warmup), NULL);
  double s0 = opt.pid ? bench_proc_cpu_s(opt.pid) : -1, c0 = bench_self_cpu_s();
  uint64_t t0 = bench_now_ns();
  measuring = true;
  run_until(t0 + secs_ns(opt.seconds), NULL);
  /* A server starved of CPU may complete nothing in a short window: the
   * window then lasts until something completes (the figure stays work
   * over wall time), so that no run fails on timing alone. */
  if (!done_events) run_until(bench_now_ns() + secs_ns(120), any_done);
  measuring = false;
  double wall = (double)(bench_now_ns() - t0) / 1e9;
  double s1 = opt.pid ? bench_proc_cpu_s(opt.pid) : -1, c1 = bench_self_cpu_s();
  loading = false;
  if (!done_events) sl_fail(NULL, "nothing completed within 120 s");
  double scpu = s0 >= 0 && s1 >= 0 ? s1 - s0 : -1;
  printf("%s seconds=%.2f", mode_line, wall);
  if (opt.mode == M_ECHO)
    printf(" events=%llu events_per_s=%.0f", (unsigned long long)done_events, (double)done_events / wall);
  else
    printf(" deliveries=%llu deliveries_per_s=%.0f publishes_per_s=%.0f",
           (unsigned long long)done_events, (double)done_events / wall, (double)done_publishes / wall);
  /* fanout: a slow server may complete no message in the window */
  if (hist.count)
    printf(" p50_us=%.1f p99_us=%.1f", bench_hist_pct_us(&hist, 0.5), bench_hist_pct_us(&hist, 0.99));
  printf(" client_cpu=%.2f", (c1 - c0) / wall);
  if (scpu >= 0)
    printf(" server_cpu=%.2f server_ns_per_%s=%.0f", scpu / wall, opt.mode == M_ECHO ? "event" : "delivery",
           scpu * 1e9 / (double)done_events);
  printf(" errors=0\n");
}

static void run_idle(void) {
  long before = bench_proc_rss_kb(opt.pid);
  unsigned tenth = opt.conns / 10 ? opt.conns / 10 : 1;
  open_all(tenth, all_ready, "connected");
  run_until(bench_now_ns() + secs_ns(opt.settle / 4), NULL);
  long first = bench_proc_rss_kb(opt.pid);
  open_all(opt.conns, all_ready, "connected");
  run_until(bench_now_ns() + secs_ns(opt.settle), NULL);
  long after = bench_proc_rss_kb(opt.pid);
  if (before < 0 || first < 0 || after < 0) sl_fail(NULL, "cannot read the VmRSS of %ld", opt.pid);
  printf("mode=idle transport=websocket conns=%u rss_before_kb=%ld rss_first_tenth_kb=%ld "
         "rss_after_kb=%ld bytes_per_conn=%.0f marginal_bytes_per_conn=%.0f errors=0\n",
         opt.conns, before, first, after, (double)(after - before) * 1024.0 / opt.conns,
         (double)(after - first) * 1024.0 / (opt.conns - tenth ? opt.conns - tenth : 1));
}

/* ---- main ------------------------------------------------------------- */

static void usage(void) {
  fprintf(stderr,
          "usage: sio_load --port P [--host 127.0.0.1] [--path /socket.io/] --mode MODE ...\n"
          "  --mode echo   [--transport websocket|polling] --conns N --inflight K --size S\n"
          "                --seconds T [--warmup W] [--pid SERVERPID]\n"
          "  --mode fanout --conns SUBSCRIBERS --inflight K --size S (16 or more) [--room R]\n"
          "                --seconds T [--warmup W] [--pid SERVERPID]\n"
          "  --mode idle   --conns N --pid SERVERPID [--settle S]\n"
          "  --burst B: clients being opened at a time (128)\n");
  exit(2);
}

static double num(const char *s) {
  char *end;
  double v = strtod(s, &end);
  if (end == s || *end || v < 0) usage();
  return v;
}

static void parse_args(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!v) usage();
    i++;
    if (!strcmp(a, "--port")) opt.t.port = (int)num(v);
    else if (!strcmp(a, "--host")) opt.t.host = v;
    else if (!strcmp(a, "--path")) opt.t.path = v;
    else if (!strcmp(a, "--mode")) opt.mode = !strcmp(v, "echo") ? M_ECHO : !strcmp(v, "fanout") ? M_FANOUT
                                            : !strcmp(v, "idle") ? M_IDLE : (usage(), 0);
    else if (!strcmp(a, "--transport")) opt.polling = !strcmp(v, "polling") ? 1 : !strcmp(v, "websocket") ? 0 : (usage(), 0);
    else if (!strcmp(a, "--conns")) opt.conns = (unsigned)num(v);
    else if (!strcmp(a, "--inflight")) opt.inflight = (unsigned)num(v);
    else if (!strcmp(a, "--size")) opt.size = (unsigned)num(v);
    else if (!strcmp(a, "--seconds")) opt.seconds = num(v);
    else if (!strcmp(a, "--warmup")) opt.warmup = num(v);
    else if (!strcmp(a, "--settle")) opt.settle = num(v);
    else if (!strcmp(a, "--pid")) opt.pid = (long)num(v);
    else if (!strcmp(a, "--burst")) opt.burst = (unsigned)num(v);
    else if (!strcmp(a, "--room")) opt.room = v;
    else usage();
  }
  if (opt.t.port < 1 || opt.t.port > 65535 || opt.conns < 1 || opt.inflight < 1 || opt.burst < 1 ||
      opt.seconds <= 0 || opt.size < 1 || opt.size > 1000000 || strlen(opt.room) > 64 ||
      strpbrk(opt.room, "\"\\"))
    usage();
  if (opt.mode == M_FANOUT && opt.size < 16) usage();
  if (opt.mode == M_IDLE && !opt.pid) usage();
  if (opt.polling && opt.mode != M_ECHO) {
    fprintf(stderr, "sio_load: polling is for --mode echo only\n");
    exit(2);
  }
}

int main(int argc, char **argv) {
  parse_args(argc, argv);
  /* a descriptor per client, two when polling, and the publisher */
  unsigned long need = (unsigned long)opt.conns * (opt.polling ? 2 : 1) + 64;
  if (bench_raise_nofile(need) < need) sl_fail(NULL, "RLIMIT_NOFILE is too low for %u clients", opt.conns);
  n_clients = opt.conns + (opt.mode == M_FANOUT);
  cl = calloc(n_clients, sizeof *cl);
  payload = malloc(opt.size);
  want_ack_len = opt.size + 4;
  want_ack_tail = malloc(want_ack_len);
  fan_got = calloc(opt.inflight, sizeof *fan_got);
  fan_at = calloc(opt.inflight, sizeof *fan_at);
  if (!cl || !payload || !want_ack_tail || !fan_got || !fan_at) sl_fail(NULL, "out of memory");
  for (unsigned i = 0; i < opt.size; i++) payload[i] = (char)('a' + i % 26);
  memcpy(want_ack_tail, "[\"", 2);
  memcpy(want_ack_tail + 2, payload, opt.size);
  memcpy(want_ack_tail + 2 + opt.size, "\"]", 2);
  if ((ep = epoll_create1(EPOLL_CLOEXEC)) < 0) sl_fail(NULL, "epoll_create1: %s", strerror(errno));
  sl_wire_init(ep, &opt.t);

  char line[160];
  const char *tr = opt.polling ? "polling" : "websocket";
  switch (opt.mode) {
    case M_IDLE: run_idle(); break;
    case M_ECHO:
      for (unsigned i = 0; i < n_clients; i++) {
        cl[i].sent_at = calloc(opt.inflight, sizeof *cl[i].sent_at);
        cl[i].ids = calloc(opt.inflight, sizeof *cl[i].ids);
        if (!cl[i].sent_at || !cl[i].ids) sl_fail(NULL, "out of memory");
      }
      open_all(opt.conns, all_ready, "connected");
      loading = true;
      for (unsigned i = 0; i < n_clients; i++)
        for (unsigned k = 0; k < opt.inflight; k++) send_echo(&cl[i]);
      snprintf(line, sizeof line, "mode=echo transport=%s conns=%u inflight=%u size=%u", tr, opt.conns,
               opt.inflight, opt.size);
      measure(line);
      break;
    case M_FANOUT:
      open_all(n_clients, all_joined, "joined");
      loading = true;
      for (unsigned k = 0; k < opt.inflight; k++) publish();
      snprintf(line, sizeof line, "mode=fanout transport=websocket conns=%u inflight=%u size=%u", opt.conns,
               opt.inflight, opt.size);
      measure(line);
      break;
  }
  fflush(stdout);
  /* the descriptors close with the process: the server sees the FINs */
  return 0;
}
