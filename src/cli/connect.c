/* duplex connect: stdin lines go out as text messages (connect_input.c),
 * messages received go to stdout, one per line. */
#include <errno.h>
#include <stdio.h>
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
  if (ctx->conn) dx_close(ctx->conn, code, reason);
}

static void on_open(dx_conn *c) { connect_input_start(dx_conn_user(c)); }

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
  connect_input_stop(ctx);
  if (http_status) fprintf(stderr, "handshake failed: HTTP %d\n", http_status);
  cli_put_close(stderr, "closed", code, reason, why);
  ctx->clean = clean_close(code, why);
  dx_loop_stop(ctx->loop);
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
    "On exit \"closed: code=C reason=\"R\" why=W\" is printed to stderr\n"
    "(preceded by \"handshake failed: HTTP S\" when the server refused the\n"
    "upgrade). Exit status: 0 when the close handshake ended with 1000, 1001\n"
    "or no code (1005), 1 otherwise, 2 for a bad command line or URL.\n"
    "\n"
    "SIZE is a number of bytes, optionally followed by K, M or G (x1024).\n";

/* Creates the loop and starts connecting. Returns 0, or an exit status
 * after reporting why. */
static int start(connect_ctx *ctx, const char *url, const connect_opts *co) {
  ctx->loop = dx_loop_new();
  dx_options *o = dx_options_new();
  int rc = DX_ENOMEM;
  if (ctx->loop && o) rc = dx_options_set_max_message(o, co->max_message);
  if (rc == 0) rc = dx_options_set_deflate(o, !co->no_deflate);
  if (rc == 0 && co->ca) rc = dx_options_set_tls_ca(o, co->ca);
  if (rc == 0) dx_options_set_tls_insecure(o, co->insecure);
  for (int i = 0; rc == 0 && i < co->protocols.n; i++) {
    rc = dx_options_add_protocol(o, co->protocols.items[i]);
    if (rc) cli_error("connect", "--protocol %s: not a valid name", co->protocols.items[i]);
  }
  if (rc == 0) {
    dx_options_on_open(o, on_open);
    dx_options_on_message(o, on_message);
    dx_options_on_close(o, on_close);
    dx_options_set_user(o, ctx);
    errno = 0; /* DX_EADDR keeps errno; do not show a stale one */
    rc = dx_connect(ctx->loop, url, o, &ctx->conn);
  }
  int saved_errno = errno;
  dx_options_free(o);
  if (rc == 0) return 0;
  const char *why = dx_last_error();
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

int cli_connect(int argc, char **argv) {
  connect_opts co = {.max_message = (uint64_t)16 << 20};
  uint64_t max_message = co.max_message;
  unsigned linger_ms = 500;
  const cli_opt opts[] = {
      {"max-message", CLI_OPT_SIZE, "SIZE",
       "largest message received and longest stdin line sent", "16M",
       &max_message},
      {"linger", CLI_OPT_UINT, "MS",
       "wait for replies this long after end of stdin", "500", &linger_ms},
      {"protocol", CLI_OPT_LIST, "NAME", "offer this subprotocol (repeatable)",
       "none", &co.protocols},
      {"no-deflate", CLI_OPT_FLAG, NULL, "do not offer permessage-deflate",
       "off (compression is offered)", &co.no_deflate},
      {"ca", CLI_OPT_STRING, "FILE", "wss://: trust the CAs in this PEM file",
       "the system CA store", &co.ca},
      {"insecure", CLI_OPT_FLAG, NULL,
       "wss://: do not verify the certificate (test servers only)", "off",
       &co.insecure},
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

  connect_ctx ctx = {0};
  co.max_message = max_message;
  int status = start(&ctx, pos[0], &co);
  if (status != 0) return status;
  connect_input_init(&ctx, (size_t)max_message, linger_ms);
  status = CLI_EXIT_FAIL;
  if (cli_signals_install(ctx.loop) != 0)
    cli_error("connect", "cannot install signal handlers: %s",
              strerror(errno));
  else if (run(&ctx) == 0 && ctx.clean && !ctx.failed)
    status = CLI_EXIT_OK;
  cli_signals_forget_loop();
  connect_input_free(&ctx);
  dx_loop_free(ctx.loop); /* cuts a connection a second signal left */
  return status;
}
