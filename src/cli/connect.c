/* duplex connect: stdin lines go out as text messages (connect_input.c),
 * messages received go to stdout, one per line. With --reconnect the
 * connection is a dx_client's, made again after an abnormal end. */
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <duplex.h>

#include "args.h"
#include "cli.h"
#include "connect.h"
#include "fmt.h"
#include "signals.h"

#define HEX_PREVIEW 64

void connect_fail(connect_ctx *ctx, int code, const char *reason) {
  ctx->failed = true;
  connect_input_stop(ctx);
  connect_close(ctx, code, reason);
}

int connect_send(connect_ctx *ctx, const char *line, size_t len) {
  if (ctx->client) return dx_client_send(ctx->client, DX_TEXT, line, len);
  return dx_send_text(ctx->conn, line, len);
}

void connect_close(connect_ctx *ctx, int code, const char *reason) {
  if (ctx->client)
    dx_client_close(ctx->client, code, reason); /* DX_ECLOSED: already over */
  else if (ctx->conn)
    dx_close(ctx->conn, code, reason);
}

static void on_open(dx_conn *c) {
  connect_ctx *ctx = dx_conn_user(c);
  if (ctx->client) ctx->conn = c;
  connect_input_start(ctx);
}

static void on_message(dx_conn *c, dx_msg_type type, const uint8_t *data,
                       size_t len) {
  connect_ctx *ctx = dx_conn_user(c);
  if (type == DX_TEXT) {
    fwrite(data, 1, len, stdout);
  } else {
    printf("binary: %zu bytes", len);
    if (len) {
      fputc(' ', stdout);
      cli_put_hex(stdout, data, len, HEX_PREVIEW);
    }
  }
  fputc('\n', stdout);
  /* Flush per message so a reader of the pipe sees each one at once. */
  if ((fflush(stdout) != 0 || ferror(stdout)) && !ctx->failed) {
    cli_error("connect", "writing stdout: %s", strerror(errno));
    connect_fail(ctx, DX_CLOSE_GOING_AWAY, NULL);
    return;
  }
  connect_input_activity(ctx);
}

static bool clean_close(int code, dx_why why) {
  if (why != DX_WHY_PEER && why != DX_WHY_LOCAL) return false;
  return code == DX_CLOSE_NORMAL || code == DX_CLOSE_GOING_AWAY ||
         code == DX_CLOSE_NO_STATUS;
}

static void on_close(dx_conn *c, int code, const char *reason, dx_why why,
                     int http_status) {
  connect_ctx *ctx = dx_conn_user(c);
  ctx->conn = NULL;
  if (http_status) fprintf(stderr, "handshake failed: HTTP %d\n", http_status);
  ctx->clean = clean_close(code, why);
  /* A clean close is the expected end: say nothing unless asked. */
  if (!ctx->clean || ctx->verbose) cli_put_close(stderr, "closed", code, reason, why);
  if (!ctx->client) {
    connect_input_stop(ctx);
    dx_loop_stop(ctx->loop);
    return;
  }
  /* --reconnect: the client decides next. stdin rests until an attempt is
   * announced; if none is, nothing holds the loop and it ends. */
  ctx->close_seen = true;
  ctx->last_code = code;
  ctx->last_why = why;
  ctx->last_status = http_status;
  if (ctx->input_done) {
    /* stdin has ended (or failed): a dropped connection is not worth
     * making again, there is nothing left to send. */
    connect_input_stop(ctx);
    dx_client_close(ctx->client, DX_CLOSE_NORMAL, NULL);
  } else {
    connect_input_pause(ctx);
  }
}

static void on_reconnect_attempt(dx_client *cl, unsigned attempt,
                                 uint32_t delay_ms) {
  connect_ctx *ctx = dx_client_user(cl);
  fprintf(stderr, "reconnecting: attempt %u in %u ms (after ", attempt,
          (unsigned)delay_ms);
  if (ctx->close_seen) {
    fprintf(stderr, "code=%d why=%s", ctx->last_code,
            dx_why_name(ctx->last_why));
    if (ctx->last_status) fprintf(stderr, " status=%d", ctx->last_status);
  } else {
    /* The attempt before never became a connection (refused at once, a
     * name that does not resolve): no on_close, dx_last_error() says why. */
    fputs(*dx_last_error() ? dx_last_error() : "connection failed", stderr);
  }
  fputs(")\n", stderr);
  ctx->close_seen = false;
  /* Lines typed while waiting are queued (or refused) by the client. */
  if (ctx->input_started) connect_input_start(ctx);
}

static void on_reconnected(dx_client *cl, unsigned attempts) {
  (void)cl;
  fprintf(stderr, "reconnected after %u attempt%s\n", attempts,
          attempts == 1 ? "" : "s");
}

static void on_reconnect_failed(dx_client *cl, unsigned attempts) {
  connect_ctx *ctx = dx_client_user(cl);
  fprintf(stderr, "reconnect: gave up after %u attempt%s\n", attempts,
          attempts == 1 ? "" : "s");
  ctx->failed = true;
  connect_input_stop(ctx); /* nothing else may hold the loop now */
}

/* Runs the loop until the connection is gone; the first signal closes it
 * politely, a second one gives up on it. */
static int run(connect_ctx *ctx) {
  int handled = 0;
  for (;;) {
    /* dx_loop_run() forgets a dx_loop_stop() made before it started. */
    int rc = cli_signals_count() > handled ? 0 : dx_loop_run(ctx->loop);
    if (rc != 0) {
      cli_error("connect", "event loop failed: %s", dx_strerror(rc));
      return -1;
    }
    if (!ctx->conn) return 0;
    int signals = cli_signals_count();
    if (signals == handled || signals > 1) {
      cli_error("connect", "%s; connection cut",
                signals > 1 ? "interrupted twice" : "event loop ended early");
      return -1;
    }
    handled = signals;
    connect_input_stop(ctx);
    dx_close(ctx->conn, DX_CLOSE_GOING_AWAY, NULL);
  }
}

/* --reconnect: the loop ends by itself once the client is done (closed,
 * refused by the reconnect rule, or gave up): then nothing holds it. */
static int run_client(connect_ctx *ctx) {
  int handled = 0;
  for (;;) {
    int rc = cli_signals_count() > handled ? 0 : dx_loop_run(ctx->loop);
    if (rc != 0) {
      cli_error("connect", "event loop failed: %s", dx_strerror(rc));
      return -1;
    }
    int signals = cli_signals_count();
    if (signals == handled) return 0;
    if (signals > 1) {
      cli_error("connect", "interrupted twice; connection cut");
      return -1;
    }
    handled = signals;
    connect_input_stop(ctx);
    /* Closes the connection, or calls off the next attempt. */
    dx_client_close(ctx->client, DX_CLOSE_GOING_AWAY, NULL);
  }
}

static const char connect_details[] =
    "Each line read from stdin (without its newline) is sent as a text\n"
    "message once the connection is open; each message received is printed\n"
    "on its own line to stdout: text as is, binary as\n"
    "\"binary: N bytes HEX\" (hex of at most the first 64 bytes). At the end\n"
    "of stdin the connection is closed with 1000, once everything was sent\n"
    "and no message has arrived for --linger ms (messages arriving after the\n"
    "close are dropped, so this lets replies to the last lines through; 0\n"
    "closes at once). The first SIGINT/SIGTERM closes with 1001, a second\n"
    "one cuts the connection.\n"
    "\n"
    "When the connection ends abnormally (or always, with -v) \"closed:\n"
    "code=C reason=\"R\" why=W\" is printed to stderr (preceded by\n"
    "\"handshake failed: HTTP S\" when the server refused the upgrade); a\n"
    "clean close prints nothing there. Exit status: 0 when the close\n"
    "handshake ended with 1000, 1001 or no code (1005), 1 otherwise, 2 for a\n"
    "bad command line or URL.\n"
    "\n"
    "SIZE is a number of bytes, optionally followed by K, M or G (x1024).\n"
    "\n"
    "With --reconnect, a connection that ends abnormally is made again after\n"
    "a delay that doubles from MIN to at most MAX ms (--reconnect-delay), each\n"
    "moved at random by up to +-50%: after a dropped connection (1006), a\n"
    "server close with 1001, 1011, 1012, 1013 or 1014, a refused or failed\n"
    "connection, or a handshake answered with a 5xx status. Not after a close\n"
    "made here (end of stdin, a signal), nor after other close codes (1000,\n"
    "1008, 4000-4999, ...) or a 4xx answer. On stderr each attempt is\n"
    "announced as \"reconnecting: attempt N in D ms (after code=C why=W)\"\n"
    "(\"status=S\" added after a refused handshake; \"(after REASON)\" when the\n"
    "attempt before could not connect at all), success as \"reconnected after\n"
    "N attempts\", and giving up after --reconnect-attempts as \"reconnect:\n"
    "gave up after N attempts\" (exit status 1). stdin is read from the first\n"
    "open on; lines read while disconnected are queued, up to\n"
    "--reconnect-queue bytes, and sent in order once reconnected; a line that\n"
    "does not fit (or any, with --reconnect-queue 0) is dropped with a\n"
    "warning on stderr. Once stdin has ended, a connection that drops is not\n"
    "made again. The exit status is that of the last connection's close.\n";

/* Creates the loop and starts connecting. Returns 0, or an exit status
 * after reporting why. */
static int start(connect_ctx *ctx, const char *url, const connect_opts *co) {
  ctx->loop = dx_loop_new();
  dx_options *o = dx_options_new();
  int rc = DX_ENOMEM;
  if (ctx->loop && o) rc = dx_options_set_max_message(o, co->max_message);
  if (rc == 0 && (rc = dx_options_set_ping(o, co->ping_ms, co->ping_timeout_ms)))
    cli_error("connect", "--ping-timeout must be above 0 when pings are on");
  if (rc == 0) rc = dx_options_set_deflate(o, !co->no_deflate);
  if (rc == 0 && co->ca) rc = dx_options_set_tls_ca(o, co->ca);
  if (rc == 0) dx_options_set_tls_insecure(o, co->insecure);
  for (int i = 0; rc == 0 && i < co->protocols.n; i++) {
    rc = dx_options_add_protocol(o, co->protocols.items[i]);
    if (rc) cli_error("connect", "--protocol %s: not a valid name", co->protocols.items[i]);
  }
  if (rc == 0 && co->reconnect) {
    rc = dx_options_set_reconnect(o, co->delay_min_ms, co->delay_max_ms, 0.5,
                                  co->max_attempts);
    if (rc == 0) rc = dx_options_set_reconnect_queue(o, (size_t)co->queue_bytes);
    dx_options_on_reconnect_attempt(o, on_reconnect_attempt);
    dx_options_on_reconnected(o, on_reconnected);
    dx_options_on_reconnect_failed(o, on_reconnect_failed);
  }
  if (rc == 0) {
    dx_options_on_open(o, on_open);
    dx_options_on_message(o, on_message);
    dx_options_on_close(o, on_close);
    dx_options_set_user(o, ctx);
    errno = 0; /* DX_EADDR keeps errno; do not show a stale one */
    if (co->reconnect) {
      /* NULL only for what retrying cannot fix (URL, CA file, memory). */
      ctx->client = dx_client_new(ctx->loop, url, o);
      rc = ctx->client                                  ? 0
           : strstr(dx_last_error(), "out of memory") ? DX_ENOMEM
                                                        : DX_EINVAL;
    } else {
      rc = dx_connect(ctx->loop, url, o, &ctx->conn);
    }
  }
  int saved_errno = errno;
  dx_options_free(o);
  if (rc == 0) return 0;
  const char *why = dx_last_error();
  if (rc == DX_EURL)
    cli_error("connect", "invalid URL '%s': %s", url, *why ? why : dx_strerror(rc));
  else
    cli_error("connect", "cannot connect to %s: %s", url,
            *why ? why
                 : rc == DX_EADDR && saved_errno ? strerror(saved_errno)
                                                 : dx_strerror(rc));
  if (ctx->loop) dx_loop_free(ctx->loop);
  ctx->loop = NULL;
  return rc == DX_EURL || rc == DX_EUNSUPPORTED || rc == DX_EINVAL
             ? CLI_EXIT_USAGE
             : CLI_EXIT_FAIL;
}

/* --reconnect-delay MIN:MAX (ms, 1 <= MIN <= MAX). 0 or -1. */
static int parse_delay(const char *text, uint32_t *min, uint32_t *max) {
  char *end;
  errno = 0;
  unsigned long a = strtoul(text, &end, 10);
  if (errno || end == text || *end != ':' || text[0] == '-') return -1;
  const char *b_text = end + 1;
  unsigned long b = strtoul(b_text, &end, 10);
  if (errno || end == b_text || *end || *b_text == '-') return -1;
  if (a < 1 || b < a || b > UINT32_MAX) return -1;
  *min = (uint32_t)a;
  *max = (uint32_t)b;
  return 0;
}

/* Checks the --reconnect-* options; 0 or -1 after saying why. */
static int reconnect_opts(connect_opts *co, const char *delay,
                          unsigned attempts, const char *queue) {
  bool any = delay || attempts != UINT_MAX || queue;
  if (any && !co->reconnect) {
    cli_error("connect", "--reconnect-delay, --reconnect-attempts and "
              "--reconnect-queue need --reconnect");
    return -1;
  }
  co->delay_min_ms = 1000;
  co->delay_max_ms = 5000;
  if (delay && parse_delay(delay, &co->delay_min_ms, &co->delay_max_ms)) {
    cli_error("connect", "--reconnect-delay: '%s' is not MIN:MAX in ms "
              "(1 <= MIN <= MAX)", delay);
    return -1;
  }
  co->max_attempts = attempts == UINT_MAX ? 0 : attempts;
  co->queue_bytes = (uint64_t)1 << 20;
  /* A size, or 0 for no queue (SIZE options refuse 0). */
  if (queue && strcmp(queue, "0") != 0 &&
      (cli_parse_size(queue, &co->queue_bytes) || co->queue_bytes > SIZE_MAX)) {
    cli_error("connect", "--reconnect-queue: '%s' is not a size", queue);
    return -1;
  }
  if (queue && strcmp(queue, "0") == 0) co->queue_bytes = 0;
  return 0;
}

int cli_connect(int argc, char **argv) {
  connect_opts co = {.max_message = (uint64_t)16 << 20, .ping_ms = 25000,
                     .ping_timeout_ms = 20000};
  uint64_t max_message = co.max_message;
  unsigned linger_ms = 500;
  const char *reconnect_delay = NULL, *reconnect_queue = NULL;
  unsigned reconnect_attempts = UINT_MAX; /* not given */
  bool verbose = false;
  const cli_opt opts[] = {
      {"max-message", CLI_OPT_SIZE, "SIZE",
       "largest message received and longest stdin line sent", "16M",
       &max_message},
      {"linger", CLI_OPT_UINT, "MS",
       "wait for replies this long after end of stdin", "500", &linger_ms},
      {"protocol", CLI_OPT_LIST, "NAME", "offer this subprotocol (repeatable)",
       "none", &co.protocols},
      {"ping-interval", CLI_OPT_SECONDS, "SECONDS",
       "send a ping this often; 0 turns heartbeats off", "25", &co.ping_ms},
      {"ping-timeout", CLI_OPT_SECONDS, "SECONDS",
       "give up on a server silent this long after a ping (why: ping timeout)",
       "20", &co.ping_timeout_ms},
      {"no-deflate", CLI_OPT_FLAG, NULL, "do not offer permessage-deflate",
       "off (compression is offered)", &co.no_deflate},
      {"ca", CLI_OPT_STRING, "FILE", "wss://: trust the CAs in this PEM file",
       "the system CA store", &co.ca},
      {"insecure", CLI_OPT_FLAG, NULL,
       "wss://: do not verify the certificate (test servers only)", "off",
       &co.insecure},
      {"reconnect", CLI_OPT_FLAG, NULL,
       "reconnect after an abnormal end (see below)", "off",
       &co.reconnect},
      {"reconnect-delay", CLI_OPT_STRING, "MIN:MAX",
       "first and largest retry delay, ms",
       "1000:5000", &reconnect_delay},
      {"reconnect-attempts", CLI_OPT_UINT, "N",
       "give up after N attempts (0: never)", "0",
       &reconnect_attempts},
      {"reconnect-queue", CLI_OPT_STRING, "SIZE",
       "lines kept while disconnected (0: none)", "1M", &reconnect_queue},
      {"verbose", CLI_OPT_FLAG, NULL, "also report a clean close on stderr", "off",
       &verbose, 'v'},
  };
  const cli_command cmd = {"connect", "ws[s]://HOST[:PORT][/PATH]",
                           "Connect to a WebSocket server; stdin lines out, "
                           "messages to stdout.",
                           connect_details, opts,
                           (int)(sizeof opts / sizeof opts[0]), 1, 1};
  char *pos[1];
  int n_pos;
  switch (cli_parse(&cmd, argc, argv, pos, &n_pos)) {
    case CLI_PARSE_OK: break;
    case CLI_PARSE_HELP: return CLI_EXIT_OK;
    case CLI_PARSE_ERROR: return CLI_EXIT_USAGE;
  }
  if (max_message > (size_t)-1 / 2) { /* the stdin line buffer's limit */
    cli_error("connect", "--max-message: at most %zu bytes", (size_t)-1 / 2);
    return CLI_EXIT_USAGE;
  }
  if (reconnect_opts(&co, reconnect_delay, reconnect_attempts,
                     reconnect_queue))
    return CLI_EXIT_USAGE;

  connect_ctx ctx = {.verbose = verbose};
  co.max_message = max_message;
  int status = start(&ctx, pos[0], &co);
  if (status != 0) return status;
  connect_input_init(&ctx, (size_t)max_message, linger_ms);
  status = CLI_EXIT_FAIL;
  if (cli_signals_install(ctx.loop) != 0)
    cli_error("connect", "cannot install signal handlers: %s",
              strerror(errno));
  else if ((ctx.client ? run_client(&ctx) : run(&ctx)) == 0 && ctx.clean &&
           !ctx.failed)
    status = CLI_EXIT_OK;
  cli_signals_forget_loop();
  connect_input_free(&ctx);
  dx_client_free(ctx.client); /* cuts what a second signal left, if any */
  dx_loop_free(ctx.loop);     /* likewise for a plain connection */
  return status;
}
