/* duplex bench: a load generator for any WebSocket echo server. The
 * command reads its options and the URL, and shows what the engine
 * (bench.h) measured: a progress line on a terminal, then a table or JSON
 * (bench_report.c). */
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "args.h"
#include "bench.h"
#include "bench_report.h"
#include "cli.h"
#include "proto/url.h"

#define UNSET UINT_MAX
#define IDLE_BURST 128

/* Whether a TCP connection to `ai` is accepted within a second. */
static bool reachable(const struct addrinfo *ai) {
  int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  bool ok = connect(fd, ai->ai_addr, ai->ai_addrlen) == 0;
  if (!ok && errno == EINPROGRESS) {
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    int err = 0;
    socklen_t len = sizeof err;
    ok = poll(&p, 1, 1000) == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 &&
         err == 0;
  }
  close(fd);
  return ok;
}

/* Resolves the URL's host once: a load generator connects to one address.
 * When the name has several (localhost: ::1 and 127.0.0.1), the first that
 * accepts a connection, so a server listening on one of them is found as
 * `duplex connect` finds it; when none does, the first (its errors are
 * then the run's). 0, or -1 after reporting. */
static int resolve(const dx__url *u, bench_config *cfg) {
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
  struct addrinfo *list;
  char port[8];
  snprintf(port, sizeof port, "%u", u->port);
  int rc = getaddrinfo(u->host, port, &hints, &list);
  if (rc != 0) {
    cli_error("bench", "cannot resolve %s: %s", u->host, gai_strerror(rc));
    return -1;
  }
  const struct addrinfo *ai = list;
  if (list->ai_next)
    for (const struct addrinfo *p = list; p; p = p->ai_next)
      if (reachable(p)) {
        ai = p;
        break;
      }
  memcpy(&cfg->addr, ai->ai_addr, ai->ai_addrlen);
  cfg->addr_len = ai->ai_addrlen;
  freeaddrinfo(list);
  return 0;
}

static volatile sig_atomic_t g_stop;

/* The first SIGINT/SIGTERM ends the run early (results for the time it
 * ran); the second exits at once. */
static void on_signal(int sig) {
  (void)sig;
  if (g_stop) _exit(130);
  g_stop = 1;
}

static void install_signals(void) {
  struct sigaction sa = {0};
  sigemptyset(&sa.sa_mask);
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  sa.sa_handler = SIG_IGN;
  sigaction(SIGPIPE, &sa, NULL); /* OpenSSL writes with plain send() */
}

static const char bench_details[] =
    "Drives a WebSocket echo server (duplex serve or any other) and measures\n"
    "it. Modes:\n"
    "  echo       each connection keeps --inflight messages of --size bytes\n"
    "             in flight for --duration; every echo is checked byte for\n"
    "             byte. Reports messages/s and the send-to-echo latency.\n"
    "  handshake  --connections loops of connect, upgrade, close handshake,\n"
    "             the server's TCP close. Reports handshakes/s and the\n"
    "             latency of a whole cycle.\n"
    "  idle       opens --connections connections (128 handshakes at a\n"
    "             time) and holds them for --duration. Reports how many the\n"
    "             server held and, with --server-pid, the memory they cost\n"
    "             it (VmRSS in /proc/PID/status before and after).\n"
    "\n"
    "When stderr is a terminal a progress line is rewritten every second:\n"
    "the rate (or connections held), p50 and p99 latency over that second,\n"
    "errors so far. When it is not (or with --quiet) there is none. The\n"
    "result goes to stdout: a table, or one JSON object with --json\n"
    "(latencies in microseconds).\n"
    "\n"
    "Errors are counted by kind (connection refused, handshake: HTTP 404,\n"
    "closed by server with code C, timeouts, an echo that differs) and\n"
    "listed with the result. In echo mode a connection that fails is opened\n"
    "again after 100 ms, in handshake mode a cycle after 10 ms; idle\n"
    "connections are not reopened. SIGINT ends the run early with the\n"
    "results so far.\n"
    "\n"
    "Exit status: 0 when something was measured (even with errors), 1 when\n"
    "nothing worked (no connection opened, no echo came back, no handshake\n"
    "completed; the reason is on stderr), 2 for a bad command line.\n"
    "SIZE is a number of bytes, optionally followed by K, M or G (x1024).\n"
    "SECONDS may have a fraction (0.5).\n";

typedef struct {
  const char *mode;
  unsigned conns, inflight;
  uint64_t size;
  bool binary, deflate, json, quiet, insecure;
  uint32_t duration_ms, warmup_ms, timeout_ms;
  unsigned pid;
  const char *ca;
} bench_args;

/* Checks the options against each other and fills cfg. 0, or an exit
 * status after reporting. */
static int make_config(const bench_args *a, bench_config *cfg) {
  if (strcmp(a->mode, "echo") == 0) {
    cfg->mode = BENCH_ECHO;
  } else if (strcmp(a->mode, "handshake") == 0) {
    cfg->mode = BENCH_HANDSHAKE;
  } else if (strcmp(a->mode, "idle") == 0) {
    cfg->mode = BENCH_IDLE;
  } else {
    cli_error("bench", "--mode: '%s' is not echo, handshake or idle", a->mode);
    return CLI_EXIT_USAGE;
  }
  bool echo = cfg->mode == BENCH_ECHO;
  if (!echo && (a->inflight != UNSET || a->size || a->binary)) {
    cli_error("bench", "--inflight, --size and --binary are for --mode echo");
    return CLI_EXIT_USAGE;
  }
  if (a->conns == 0 || a->inflight == 0 || (a->conns != UNSET && a->conns > 1000000) ||
      (a->inflight != UNSET && a->inflight > 65536)) {
    cli_error("bench", "--connections: 1 to 1000000, --inflight: 1 to 65536");
    return CLI_EXIT_USAGE;
  }
  if (a->size > ((uint64_t)1 << 30)) {
    cli_error("bench", "--size: at most 1G");
    return CLI_EXIT_USAGE;
  }
  if (a->duration_ms == 0 || a->timeout_ms == 0) {
    cli_error("bench", "--duration and --timeout must be above 0");
    return CLI_EXIT_USAGE;
  }
  if (a->ca && a->insecure) {
    cli_error("bench", "--ca and --insecure do not go together");
    return CLI_EXIT_USAGE;
  }
  cfg->conns = a->conns != UNSET ? a->conns : cfg->mode == BENCH_IDLE ? 1000 : 16;
  cfg->inflight = a->inflight != UNSET ? a->inflight : 1;
  cfg->size = a->size ? (size_t)a->size : 64;
  cfg->burst = IDLE_BURST;
  cfg->binary = a->binary;
  cfg->verify = true;
  cfg->deflate = a->deflate;
  cfg->zlevel = -1;
  cfg->duration_ms = a->duration_ms;
  cfg->warmup_ms = a->warmup_ms;
  cfg->timeout_ms = a->timeout_ms;
  cfg->pid = (long)a->pid;
  cfg->ca = a->ca;
  cfg->insecure = a->insecure;
  return 0;
}

int cli_bench(int argc, char **argv) {
  bench_args a = {.mode = "echo", .conns = UNSET, .inflight = UNSET,
                  .duration_ms = 5000, .timeout_ms = 10000};
  const cli_opt opts[] = {
      {"mode", CLI_OPT_STRING, "MODE", "echo, handshake or idle", "echo", &a.mode},
      {"connections", CLI_OPT_UINT, "N",
       "connections (handshake: cycles at a time)", "16; idle: 1000", &a.conns},
      {"inflight", CLI_OPT_UINT, "N", "echo: messages in flight per connection", "1",
       &a.inflight},
      {"size", CLI_OPT_SIZE, "SIZE", "echo: message size", "64", &a.size},
      {"binary", CLI_OPT_FLAG, NULL, "echo: binary messages (random bytes)", "text",
       &a.binary},
      {"deflate", CLI_OPT_FLAG, NULL,
       "compress with permessage-deflate (the server must accept)", "off",
       &a.deflate},
      {"duration", CLI_OPT_SECONDS, "SECONDS",
       "how long to measure (idle: to hold the connections)", "5", &a.duration_ms},
      {"warmup", CLI_OPT_SECONDS, "SECONDS",
       "echo, handshake: load this long before measuring", "0", &a.warmup_ms},
      {"timeout", CLI_OPT_SECONDS, "SECONDS",
       "for connect and upgrade, an echo, a close", "10", &a.timeout_ms},
      {"server-pid", CLI_OPT_UINT, "PID",
       "a local server's process: its CPU use, idle memory", "none", &a.pid},
      {"ca", CLI_OPT_STRING, "FILE", "wss://: trust these CAs (PEM) only",
       "the system's", &a.ca},
      {"insecure", CLI_OPT_FLAG, NULL, "wss://: do not check the certificate", "off",
       &a.insecure},
      {"json", CLI_OPT_FLAG, NULL, "print the result as one JSON object", "a table",
       &a.json},
      {"quiet", CLI_OPT_FLAG, NULL, "no progress line, even on a terminal", "off",
       &a.quiet},
  };
  const cli_command cmd = {"bench", "ws[s]://host[:port]/path",
                           "Load-test a WebSocket echo server.", bench_details, opts,
                           (int)(sizeof opts / sizeof opts[0]), 1, 1};
  char *pos[1];
  int n_pos;
  cli_parse_result parsed = cli_parse(&cmd, argc, argv, pos, &n_pos);
  if (parsed != CLI_PARSE_OK) return parsed == CLI_PARSE_HELP ? CLI_EXIT_OK : CLI_EXIT_USAGE;
  bench_config cfg = {0};
  int status = make_config(&a, &cfg);
  if (status) return status;
  dx__url u;
  char why[160], path[2048];
  if (dx__url_parse(pos[0], &u, why, sizeof why) != 0) {
    cli_error("bench", "%s: not a WebSocket URL: %s", pos[0], why);
    return CLI_EXIT_USAGE;
  }
  if (resolve(&u, &cfg) != 0) return CLI_EXIT_FAIL;
  /* The request target: "/" when the URL has no path, "/?q" for "?q". */
  if (snprintf(path, sizeof path, "%s%s", u.path[0] == '/' ? "" : "/", u.path) >=
      (int)sizeof path) {
    cli_error("bench", "the URL's path is longer than %zu bytes", sizeof path - 2);
    return CLI_EXIT_USAGE;
  }
  cfg.host_header = u.host_hdr;
  cfg.path = path;
  cfg.tls = u.tls;
  cfg.tls_host = u.host;
  cfg.stop = &g_stop;
  bool progress = !a.quiet && isatty(STDERR_FILENO);
  if (progress) {
    cfg.progress = bench_report_progress;
    cfg.progress_ud = stderr;
  }
  install_signals();

  bench_result res;
  int rc = bench_run(&cfg, &res);
  if (progress) bench_report_progress_end(stderr);
  if (rc != 0) {
    cli_error("bench", "%s", res.fatal);
    return CLI_EXIT_FAIL;
  }
  if (a.json)
    bench_report_json(stdout, pos[0], &cfg, &res);
  else
    bench_report_table(stdout, pos[0], &cfg, &res);
  if (fflush(stdout) != 0) {
    cli_error("bench", "writing stdout failed");
    return CLI_EXIT_FAIL;
  }
  return CLI_EXIT_OK;
}
