/* duplex serve: an echo server (text back as text, binary as binary). */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <duplex.h>

#include "args.h"
#include "cli.h"
#include "fmt.h"
#include "signals.h"

typedef struct {
  dx_server *server;
  bool quiet;
} serve_ctx;

static void on_open(dx_conn *c) {
  serve_ctx *ctx = dx_conn_user(c);
  if (ctx->quiet) return;
  fputs("open: path=\"", stderr);
  cli_put_escaped(stderr, dx_conn_path(c));
  fprintf(stderr, "\" protocol=\"%s\" deflate=%s connections=%zu\n",
          dx_conn_protocol(c), dx_conn_compressed(c) ? "on" : "off",
          dx_server_connections(ctx->server));
}

static void on_message(dx_conn *c, dx_msg_type type, const uint8_t *data,
                       size_t len) {
  int rc = dx_send(c, type, data, len);
  /* DX_ESTATE only means the peer is already closing; nothing to echo to.
   * DX_SEND_BACKPRESSURE means queued: an echo server reads only as fast as
   * its peer sends, so it has nothing to hold back. DX_EBUFFER means the
   * output cap was hit and the library is already closing the slow peer. */
  if (rc < 0 && rc != DX_ESTATE && rc != DX_EBUFFER) {
    serve_ctx *ctx = dx_conn_user(c);
    if (!ctx->quiet)
      fprintf(stderr, "echo failed: %s\n", dx_strerror(rc));
    dx_close(c, DX_CLOSE_INTERNAL, "echo failed");
  }
}

static void on_close(dx_conn *c, int code, const char *reason, dx_why why,
                     int http_status) {
  serve_ctx *ctx = dx_conn_user(c);
  (void)http_status;
  /* The server may be mid-dx_server_free() here, so don't query it. */
  if (!ctx->quiet) cli_put_close(stderr, "close", code, reason, why);
}

static const char serve_details[] =
    "Echoes every message back to its sender: text as text, binary as\n"
    "binary. Once listening it prints \"listening on HOST:PORT\" to stderr\n"
    "with the port actually bound (so --port 0 can be used to pick a free\n"
    "one); the default host, every IPv4 and IPv6 address, is shown as \"*\".\n"
    "That line is printed even with --quiet, which only silences the\n"
    "per-connection open/close lines. SIGINT (Ctrl-C) or SIGTERM stops the\n"
    "server, cutting any open connections, and it exits 0.\n"
    "\n"
    "SIZE is a number of bytes, optionally followed by K, M or G (x1024).\n";

int cli_serve(int argc, char **argv) {
  const char *host = "";
  uint16_t port = 8080;
  uint64_t max_message = (uint64_t)16 << 20;
  bool quiet = false, no_deflate = false;
  const char *tls_cert = NULL, *tls_key = NULL;
  cli_list protocols = {0}, origins = {0};
  const cli_opt opts[] = {
      {"host", CLI_OPT_STRING, "HOST",
       "address to listen on", "\"\", every IPv4 and IPv6 address", &host},
      {"port", CLI_OPT_PORT, "PORT", "TCP port; 0 picks a free one", "8080",
       &port},
      {"max-message", CLI_OPT_SIZE, "SIZE",
       "largest message accepted; larger ones close with 1009", "16M",
       &max_message},
      {"quiet", CLI_OPT_FLAG, NULL,
       "do not log connections opening and closing", "off", &quiet},
      {"tls-cert", CLI_OPT_STRING, "FILE",
       "serve wss://: certificate chain (PEM); needs --tls-key", "none", &tls_cert},
      {"tls-key", CLI_OPT_STRING, "FILE", "private key (PEM) for --tls-cert", "none",
       &tls_key},
      {"no-deflate", CLI_OPT_FLAG, NULL, "do not negotiate permessage-deflate",
       "off (compression is negotiated)", &no_deflate},
      {"protocol", CLI_OPT_LIST, "NAME",
       "a subprotocol to speak (repeatable; the client's first match wins)",
       "none", &protocols},
      {"origin", CLI_OPT_LIST, "ORIGIN",
       "allow browsers from this Origin only (repeatable; *.example.com "
       "wildcards)", "any Origin", &origins},
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

  serve_ctx ctx = {NULL, quiet};
  dx_loop *loop = dx_loop_new();
  dx_options *o = dx_options_new();
  if (!loop || !o) {
    cli_error("serve", "cannot create the event loop: out of memory or "
              "file descriptors");
    dx_options_free(o);
    if (loop) dx_loop_free(loop);
    return CLI_EXIT_FAIL;
  }
  int rc = dx_options_set_max_message(o, max_message);
  if (rc != 0) {
    cli_error("serve", "--max-message: %s", dx_strerror(rc));
    dx_options_free(o);
    dx_loop_free(loop);
    return CLI_EXIT_USAGE;
  }
  if (!tls_cert != !tls_key) {
    cli_error("serve", "--tls-cert and --tls-key go together");
    rc = DX_EINVAL;
  }
  if (rc == 0 && tls_cert) rc = dx_options_set_tls_cert(o, tls_cert, tls_key);
  if (rc == 0) rc = dx_options_set_deflate(o, !no_deflate);
  for (int i = 0; rc == 0 && i < protocols.n; i++) {
    rc = dx_options_add_protocol(o, protocols.items[i]);
    if (rc) cli_error("serve", "--protocol %s: not a valid name", protocols.items[i]);
  }
  for (int i = 0; rc == 0 && i < origins.n; i++) {
    rc = dx_options_allow_origin(o, origins.items[i]);
    if (rc) cli_error("serve", "--origin %s: not a valid origin", origins.items[i]);
  }
  if (rc != 0) {
    dx_options_free(o);
    dx_loop_free(loop);
    return CLI_EXIT_USAGE;
  }
  dx_options_on_open(o, on_open);
  dx_options_on_message(o, on_message);
  dx_options_on_close(o, on_close);
  dx_options_set_user(o, &ctx);
  ctx.server = dx_server_new(loop, o);
  dx_options_free(o);
  if (!ctx.server) {
    cli_error("serve", "cannot create the server: %s", dx_last_error());
    dx_loop_free(loop);
    return CLI_EXIT_FAIL;
  }

  char where[300];
  cli_hostport(where, sizeof where, host, port);
  errno = 0; /* DX_EADDR keeps errno; make sure a stale one is not shown */
  rc = dx_server_listen(ctx.server, host, port);
  int saved_errno = errno;
  /* Handlers go in before "listening on" is printed: whoever reads that
   * line may send SIGTERM at once. */
  if (rc == 0 && cli_signals_install(loop) != 0) {
    saved_errno = errno;
    rc = DX_EIO;
  }
  if (rc != 0) {
    if (rc == DX_EADDR && saved_errno != 0)
      cli_error("serve", "cannot listen on %s: %s", where,
                strerror(saved_errno));
    else
      cli_error("serve", "cannot listen on %s: %s", where, dx_strerror(rc));
    dx_server_free(ctx.server);
    dx_loop_free(loop);
    return rc == DX_EINVAL ? CLI_EXIT_USAGE : CLI_EXIT_FAIL;
  }
  fprintf(stderr, "listening on %s\n",
          cli_hostport(where, sizeof where, host,
                       dx_server_port(ctx.server)));

  /* A signal that arrived before the loop ran has already been counted. */
  rc = cli_signals_count() ? 0 : dx_loop_run(loop);
  cli_signals_forget_loop();
  dx_server_free(ctx.server);
  dx_loop_free(loop);
  if (rc != 0) {
    cli_error("serve", "event loop failed: %s", dx_strerror(rc));
    return CLI_EXIT_FAIL;
  }
  return CLI_EXIT_OK;
}
