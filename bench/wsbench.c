/*
 * wsbench — the benchmark scripts' client (bench/run.sh, bench/extra.sh):
 * the load generator of `duplex bench` (src/cli/bench.h, the same source
 * files) behind the options and the one machine-readable line the scripts
 * parse. See bench/README.md for what each figure means.
 *
 *   echo       N connections, P messages in flight on each, S-byte messages:
 *              messages/s, MB/s of echoed payload (10^6 bytes, one
 *              direction) and latency p50/p99.
 *   handshake  C concurrent loops of connect, upgrade, close handshake; with
 *              --raw: connect, the same request bytes echoed, the server's
 *              close (raw_echo --close-after-request).
 *   idle       N upgraded, idle connections; the server's VmRSS before and
 *              after, per connection. --echo-once: one message each way
 *              first.
 *   fanout     N subscribers and one publisher on --path (a room of
 *              `duplex serve --rooms`, or raw_fanout); the publisher keeps
 *              P messages in flight until every subscriber has them:
 *              deliveries/s, and the server's CPU per delivery.
 *
 * --deflate offers permessage-deflate, --json sends JSON-like text, --tls
 * speaks wss:// (no certificate check), --raw plain TCP.
 *
 * Unlike `duplex bench`, any failed connection in echo or idle mode fails
 * the run: the scripts compare figures, and one with failures means
 * nothing. One line to stdout; diagnostics to stderr. Exit status 0 on
 * success, 1 on a failed run, 2 on a usage error.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "malloc_policy.h"

static void usage(void) {
  fprintf(stderr,
          "usage: wsbench [--host H] [--port P] [--path /] [--raw] --mode MODE ...\n"
          "  --mode echo      --conns N --inflight P --size S --seconds T\n"
          "                   [--warmup W] [--binary] [--no-verify] [--pid SERVERPID]\n"
          "  --mode handshake --seconds T [--conns CONCURRENCY] [--warmup W]\n"
          "  --mode idle      --conns N --pid SERVERPID [--settle S] [--burst B]\n"
          "                   [--echo-once --size S]\n"
          "  --mode fanout    --path /rooms/NAME --conns SUBSCRIBERS --inflight P\n"
          "                   --size S (16 or more) --seconds T [--warmup W] [--burst B]\n"
          "                   [--binary] [--pid SERVERPID]\n"
          "--raw speaks plain TCP (for the raw echo reference) instead of WebSocket.\n"
          "--pid in echo/handshake mode also reports the server's CPU use.\n"
          "--deflate offers permessage-deflate; --deflate-no-takeover offers it with\n"
          "  server_no_context_takeover and client_no_context_takeover;\n"
          "  --deflate-level L (-1..9, default -1) is our compressor's zlib level.\n"
          "--json makes text messages JSON-like; --variants K of them rotate (8).\n"
          "--tls speaks TLS (wss://) without verifying the certificate;\n"
          "  --tls-groups LIST offers only these key exchange groups, in this order\n"
          "  (OpenSSL's names: X25519, P-256, ...): the server takes the first it has.\n");
  exit(2);
}

static double parse_num(const char *s, const char *name) {
  char *end;
  double v = strtod(s, &end);
  if (end == s || *end || v < 0) {
    fprintf(stderr, "wsbench: bad value for %s: %s\n", name, s);
    usage();
  }
  return v;
}

static struct {
  const char *host, *path, *groups;
  int port, conns, inflight, burst, variants, zlevel;
  double size, seconds, warmup, settle, pid;
  int binary, raw, no_verify, deflate, no_takeover, json, tls, echo_once;
  bench_mode mode;
} opt = {.host = "127.0.0.1", .path = "/", .port = 8080, .conns = -1, .inflight = 1,
         .burst = 128, .variants = 8, .zlevel = -1, .size = 20, .seconds = 5.0,
         .warmup = 1.0, .settle = 1.0};

static void parse_args(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    int has = i + 1 < argc;
#define ARG(name) (!strcmp(a, name) && (has || (usage(), 0)))
    if (ARG("--host")) opt.host = argv[++i];
    else if (ARG("--port")) opt.port = (int)parse_num(argv[++i], a);
    else if (ARG("--path")) opt.path = argv[++i];
    else if (ARG("--mode")) {
      const char *m = argv[++i];
      if (!strcmp(m, "echo")) opt.mode = BENCH_ECHO;
      else if (!strcmp(m, "handshake")) opt.mode = BENCH_HANDSHAKE;
      else if (!strcmp(m, "idle")) opt.mode = BENCH_IDLE;
      else if (!strcmp(m, "fanout")) opt.mode = BENCH_FANOUT;
      else usage();
    }
    else if (ARG("--conns")) opt.conns = (int)parse_num(argv[++i], a);
    else if (ARG("--inflight")) opt.inflight = (int)parse_num(argv[++i], a);
    else if (ARG("--size")) opt.size = parse_num(argv[++i], a);
    else if (ARG("--seconds")) opt.seconds = parse_num(argv[++i], a);
    else if (ARG("--warmup")) opt.warmup = parse_num(argv[++i], a);
    else if (ARG("--settle")) opt.settle = parse_num(argv[++i], a);
    else if (ARG("--burst")) opt.burst = (int)parse_num(argv[++i], a);
    else if (ARG("--pid")) opt.pid = parse_num(argv[++i], a);
    else if (!strcmp(a, "--binary")) opt.binary = 1;
    else if (!strcmp(a, "--raw")) opt.raw = 1;
    else if (!strcmp(a, "--no-verify")) opt.no_verify = 1;
    else if (!strcmp(a, "--deflate")) opt.deflate = 1;
    else if (!strcmp(a, "--deflate-no-takeover")) opt.deflate = opt.no_takeover = 1;
    else if (ARG("--deflate-level")) opt.zlevel = atoi(argv[++i]);
    else if (!strcmp(a, "--json")) opt.json = 1;
    else if (ARG("--variants")) opt.variants = (int)parse_num(argv[++i], a);
    else if (!strcmp(a, "--tls")) opt.tls = 1;
    else if (ARG("--tls-groups")) opt.groups = argv[++i];
    else if (!strcmp(a, "--echo-once")) opt.echo_once = 1;
    else usage();
#undef ARG
  }
  if (opt.conns < 0) opt.conns = opt.mode == BENCH_HANDSHAKE ? 16 : opt.mode == BENCH_IDLE || opt.mode == BENCH_FANOUT ? 1000 : 1;
  if (opt.conns < 1 || opt.inflight < 1 || opt.inflight > 65536 || opt.burst < 1 ||
      opt.port < 1 || opt.port > 65535 || opt.seconds <= 0 || opt.size > (1 << 30))
    usage();
  if (opt.mode == BENCH_ECHO && opt.size < 1) usage();
  if (opt.mode == BENCH_FANOUT && (opt.size < BENCH_SEQ_LEN || opt.raw || opt.deflate || opt.json)) {
    fprintf(stderr, "wsbench: --mode fanout needs --size of at least %d, and goes with "
                    "neither --raw, --deflate nor --json\n", BENCH_SEQ_LEN);
    usage();
  }
  if (opt.variants < 1 || opt.variants > 256) usage();
  if (opt.zlevel < -1 || opt.zlevel > 9) usage();
  if (opt.echo_once && (opt.mode != BENCH_IDLE || opt.size < 1)) usage();
  if (opt.mode == BENCH_IDLE) opt.inflight = 1;
  if (opt.json && (opt.binary || opt.size < 2)) {
    fprintf(stderr, "wsbench: --json is text and needs --size of at least 2\n");
    usage();
  }
  if (opt.groups && !opt.tls) {
    fprintf(stderr, "wsbench: --tls-groups goes with --tls\n");
    usage();
  }
  if (opt.raw && (opt.deflate || opt.tls)) {
    fprintf(stderr, "wsbench: --raw goes with neither --deflate nor --tls\n");
    usage();
  }
  if (opt.mode == BENCH_IDLE && !opt.pid) {
    fprintf(stderr, "wsbench: --mode idle needs --pid SERVERPID\n");
    exit(1);
  }
}

static const char *transport(void) { return opt.raw ? "raw" : opt.tls ? "wss" : "ws"; }

/* What the line says about --json, --deflate and --tls. */
static void print_wire_options(const bench_result *r) {
  if (opt.json) printf(" json=%d", opt.variants);
  if (opt.deflate) printf(" deflate=%s", opt.no_takeover ? "no-takeover" : "takeover");
  if (opt.deflate) printf(" client_level=%d", opt.zlevel);
  if (opt.tls) printf(" tls=%s", r->tls_info[0] ? r->tls_info : "?");
}

static void print_cpu(const bench_result *r) {
  printf(" client_cpu=%.2f", r->client_cpu);
  if (r->server_cpu >= 0) printf(" server_cpu=%.2f", r->server_cpu);
}

static void print_latency(const bench_result *r) {
  printf(" p50_us=%.1f p99_us=%.1f max_us=%.1f", r->p50_us, r->p99_us, r->max_us);
}

static void print_echo(const bench_result *r) {
  double mps = (double)r->msgs / r->seconds;
  printf("mode=echo transport=%s conns=%d inflight=%d size=%.0f binary=%d "
         "seconds=%.2f msgs=%llu msgs_per_s=%.0f mb_per_s=%.2f",
         transport(), opt.conns, opt.inflight, opt.size, opt.binary, r->seconds,
         (unsigned long long)r->msgs, mps, mps * opt.size / 1e6);
  print_latency(r);
  print_cpu(r);
  print_wire_options(r);
  if (opt.deflate && r->tx_plain && r->rx_plain)
    printf(" tx_ratio=%.3f rx_ratio=%.3f rx_compressed=%.3f",
           (double)r->tx_wire / (double)r->tx_plain, (double)r->rx_wire / (double)r->rx_plain,
           r->msgs ? (double)r->rx_z / (double)r->msgs : 0.0);
  printf("\n");
}

static void print_handshake(const bench_result *r) {
  printf("mode=handshake transport=%s conns=%d seconds=%.2f handshakes=%llu "
         "handshakes_per_s=%.0f",
         transport(), opt.conns, r->seconds, (unsigned long long)r->msgs,
         (double)r->msgs / r->seconds);
  print_latency(r);
  printf(" errors=%llu server_no_close=%llu", (unsigned long long)r->errors,
         (unsigned long long)r->no_close);
  print_cpu(r);
  print_wire_options(r);
  printf("\n");
}

/* Two figures: the whole RSS growth per connection, and the marginal cost
 * between the first tenth and all N, which leaves out one-time costs the
 * first connections trigger (buffers, tables allocated on first use). */
static void print_idle(const bench_result *r) {
  printf("mode=idle transport=%s conns=%d rss_before_kb=%ld rss_first_tenth_kb=%ld "
         "rss_after_kb=%ld bytes_per_conn=%.0f marginal_bytes_per_conn=%.0f "
         "open_per_s=%.0f",
         transport(), opt.conns, r->rss_before_kb, r->rss_first_kb, r->rss_after_kb,
         (double)(r->rss_after_kb - r->rss_before_kb) * 1024.0 / opt.conns,
         (double)(r->rss_after_kb - r->rss_first_kb) * 1024.0 / (opt.conns - r->first),
         r->open_per_s);
  if (opt.echo_once) printf(" echo_once=%.0f", opt.size);
  print_wire_options(r);
  printf("\n");
}

/* Deliveries are what a fan-out does: the server's CPU per delivery is its
 * cost whoever was the bottleneck. Latency: from queueing a message to the
 * last subscriber's receipt of it. */
static void print_fanout(const bench_result *r) {
  printf("mode=fanout transport=%s subscribers=%d inflight=%d size=%.0f binary=%d "
         "seconds=%.2f publishes=%llu publishes_per_s=%.0f deliveries=%llu "
         "deliveries_per_s=%.0f",
         transport(), opt.conns, opt.inflight, opt.size, opt.binary, r->seconds,
         (unsigned long long)r->msgs, (double)r->msgs / r->seconds,
         (unsigned long long)r->deliveries, (double)r->deliveries / r->seconds);
  print_latency(r);
  print_cpu(r);
  if (r->server_cpu >= 0 && r->deliveries)
    printf(" server_ns_per_delivery=%.1f", r->server_cpu * r->seconds * 1e9 / (double)r->deliveries);
  print_wire_options(r);
  printf("\n");
}

int main(int argc, char **argv) {
  /* The same allocator policy as the duplex tool, so plain and TLS rows
   * and both ends of a run share it (src/cli/malloc_policy.c). */
  cli_malloc_policy();
  parse_args(argc, argv);
  bench_config cfg = {
      .mode = opt.mode, .path = opt.path, .raw = opt.raw, .tls = opt.tls,
      .insecure = true, .tls_groups = opt.groups, .conns = (unsigned)opt.conns, .inflight = (unsigned)opt.inflight,
      .burst = (unsigned)opt.burst, .size = (size_t)opt.size, .binary = opt.binary,
      .verify = !opt.no_verify, .deflate = opt.deflate, .no_takeover = opt.no_takeover,
      .zlevel = opt.zlevel, .json_variants = opt.json ? (unsigned)opt.variants : 0,
      .echo_once = opt.echo_once, .timeout_ms = 10000, .pid = (long)opt.pid,
      .strict = true};
  /* idle holds the connections --settle seconds before the last reading */
  double secs = opt.mode == BENCH_IDLE ? opt.settle : opt.seconds;
  cfg.duration_ms = (uint32_t)(secs * 1000 + 0.5);
  cfg.warmup_ms = (uint32_t)(opt.warmup * 1000 + 0.5);
  if (!cfg.duration_ms) cfg.duration_ms = 1;
  struct sockaddr_in *sa = (struct sockaddr_in *)&cfg.addr;
  sa->sin_family = AF_INET;
  sa->sin_port = htons((uint16_t)opt.port);
  if (inet_pton(AF_INET, opt.host, &sa->sin_addr) != 1) {
    fprintf(stderr, "wsbench: --host must be an IPv4 address: %s\n", opt.host);
    return 1;
  }
  cfg.addr_len = sizeof *sa;
  char host_header[300];
  snprintf(host_header, sizeof host_header, "%s:%d", opt.host, opt.port);
  cfg.host_header = host_header;
  signal(SIGPIPE, SIG_IGN);

  bench_result r;
  int rc = bench_run(&cfg, &r);
  for (int i = 0; i < r.n_kinds; i++)
    fprintf(stderr, "wsbench: %llu x %s\n", (unsigned long long)r.kinds[i].count,
            r.kinds[i].name);
  if (rc != 0) {
    fprintf(stderr, "wsbench: %s\n", r.fatal);
    return 1;
  }
  switch (opt.mode) {
    case BENCH_ECHO: print_echo(&r); break;
    case BENCH_HANDSHAKE: print_handshake(&r); break;
    case BENCH_IDLE: print_idle(&r); break;
    case BENCH_FANOUT: print_fanout(&r); break;
  }
  return 0;
}
