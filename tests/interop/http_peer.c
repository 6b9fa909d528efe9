/*
 * http_peer: a duplex server with an on_http handler, for test_http.py to
 * drive the HTTP API over raw sockets: answers inside the callback, answers
 * later (from a timer, from another request's callback), bodies produced
 * as the socket drains, the limits set from the command line, and the
 * abort callback. It also echoes WebSocket messages, so upgrades and HTTP
 * share its port.
 *
 *   http_peer [OPTION...]     listens on 127.0.0.1, port 0
 *
 * Options:
 *   --max-body=BYTES --request-ms=MS --keepalive-ms=MS  dx_options_set_http_limits
 *   --max-header=BYTES          dx_options_set_max_header
 *   --handshake-timeout=MS      dx_options_set_handshake_timeout
 *   --tls=CERT,KEY              dx_options_set_tls_cert
 *   --static=DIR                other GET/HEAD paths from dx_http_static_serve
 *
 * Routes:
 *   GET  /hello             200 "hello\n"
 *   *    /echo              200: the body back; X-Method, X-Path, X-Query,
 *                           X-Test (dx_http_header("x-TEST")) headers
 *   GET  /headers           200: "name: value\n" per request header (iteration)
 *   GET  /later?MS          200 "later\n" from a timer MS ms later
 *   GET  /hold              kept until a GET /release answers it ("held\n")
 *   GET  /release           answers every held request, then 200 "released N\n"
 *   GET  /stream?N          200: N bytes of the pattern i*31%251, produced as
 *                           the socket drains (dx_http_respond_body)
 *   GET  /close             200 with "Connection: close"
 *   GET  /get-only          405 with Allow: GET for any other method
 *   anything else           404 (or the --static file)
 * Lines on stdout: "listening PORT", "abort PATH" (on_http_abort),
 * "stream-release" (a body's release ran).
 * Commands on stdin: "drain" (dx_server_shutdown 5000), "quit".
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <duplex.h>

#define MAX_HELD 64

static struct {
  dx_loop *loop;
  dx_server *server;
  dx_http_static *st;
  dx_http_request *held[MAX_HELD];
  int nheld;
} P;

static void out(const char *fmt, const char *arg) {
  printf(fmt, arg);
  fflush(stdout);
}

static const dx_http_field text_plain[] = {{"Content-Type", "text/plain; charset=utf-8"}};

static void text(dx_http_request *r, int status, const char *body) {
  int rc = dx_http_respond(r, status, text_plain, 1, body, strlen(body));
  if (rc) fprintf(stderr, "respond: %s\n", dx_err_name(rc));
}

/* ---- answering later: a timerfd per request ---- */

typedef struct later {
  dx_http_request *req;
  int fd;
} later;

static later *pending_later[MAX_HELD];

static void forget_held(dx_http_request *r) {
  for (int i = 0; i < P.nheld; i++)
    if (P.held[i] == r) P.held[i] = P.held[--P.nheld];
}

static void on_later(dx_loop *loop, int fd, void *ud) {
  later *l = ud;
  dx_loop_unwatch_fd(loop, fd);
  close(fd);
  for (int i = 0; i < MAX_HELD; i++)
    if (pending_later[i] == l) pending_later[i] = NULL;
  if (l->req) text(l->req, 200, "later\n");
  free(l);
}

static void answer_later(dx_http_request *r, long ms) {
  later *l = calloc(1, sizeof *l);
  int slot = -1;
  for (int i = 0; i < MAX_HELD && slot < 0; i++)
    if (!pending_later[i]) slot = i;
  l->req = r;
  l->fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  struct itimerspec its = {{0, 0}, {ms / 1000, (ms % 1000) * 1000000L}};
  if (!its.it_value.tv_sec && !its.it_value.tv_nsec) its.it_value.tv_nsec = 1;
  timerfd_settime(l->fd, 0, &its, NULL);
  pending_later[slot] = l;
  dx_loop_watch_fd(P.loop, l->fd, on_later, l);
}

/* ---- a streamed body ---- */

typedef struct stream {
  unsigned long long i;
} stream;

static long stream_read(void *ud, uint8_t *buf, size_t cap) {
  stream *s = ud;
  for (size_t k = 0; k < cap; k++, s->i++) buf[k] = (uint8_t)(s->i * 31 % 251);
  return (long)cap;
}

static void stream_release(void *ud) {
  free(ud);
  out("stream-release%s\n", "");
}

/* ---- routes ---- */

static void on_http(dx_http_request *r) {
  const char *m = dx_http_method(r), *path = dx_http_path(r), *q = dx_http_query(r);
  if (!strcmp(path, "/hello") && !strcmp(m, "GET")) {
    text(r, 200, "hello\n");
  } else if (!strcmp(path, "/echo")) {
    size_t len;
    const uint8_t *body = dx_http_body(r, &len);
    const char *xt = dx_http_header(r, "x-TEST");
    dx_http_field h[] = {{"Content-Type", "application/octet-stream"},
                         {"X-Method", m},
                         {"X-Path", path},
                         {"X-Query", q},
                         {"X-Test", xt ? xt : "(none)"}};
    dx_http_respond(r, 200, h, 5, body, len);
  } else if (!strcmp(path, "/headers")) {
    char buf[8192];
    size_t n = 0;
    const char *name, *value;
    for (size_t i = 0; dx_http_header_at(r, i, &name, &value) && n < sizeof buf - 200; i++)
      n += (size_t)snprintf(buf + n, sizeof buf - n, "%s: %s\n", name, value);
    dx_http_respond(r, 200, text_plain, 1, buf, n);
  } else if (!strcmp(path, "/later")) {
    answer_later(r, atol(q));
  } else if (!strcmp(path, "/hold")) {
    if (P.nheld < MAX_HELD) P.held[P.nheld++] = r;
    else text(r, 503, "too many held\n");
  } else if (!strcmp(path, "/release")) {
    char buf[64];
    int n = P.nheld;
    while (P.nheld) text(P.held[--P.nheld], 200, "held\n");
    snprintf(buf, sizeof buf, "released %d\n", n);
    text(r, 200, buf);
  } else if (!strcmp(path, "/stream")) {
    stream *s = calloc(1, sizeof *s);
    dx_http_producer p = {stream_read, stream_release, s};
    static const dx_http_field h[] = {{"Content-Type", "application/octet-stream"}};
    int rc = dx_http_respond_body(r, 200, h, 1, strtoull(q, NULL, 10), &p);
    if (rc) fprintf(stderr, "respond_body: %s\n", dx_err_name(rc));
  } else if (!strcmp(path, "/close")) {
    static const dx_http_field h[] = {{"Connection", "close"}};
    dx_http_respond(r, 200, h, 1, "bye\n", 4);
  } else if (!strcmp(path, "/get-only")) {
    static const dx_http_field allow[] = {{"Allow", "GET"}};
    if (strcmp(m, "GET")) dx_http_error(r, 405, "this route takes GET", allow, 1);
    else text(r, 200, "got\n");
  } else if (P.st) {
    dx_http_static_serve(P.st, r);
  } else {
    dx_http_error(r, 404, "no such route", NULL, 0);
  }
}

static void on_http_abort(dx_http_request *r) {
  out("abort %s\n", dx_http_path(r));
  forget_held(r);
  for (int i = 0; i < MAX_HELD; i++)
    if (pending_later[i] && pending_later[i]->req == r) pending_later[i]->req = NULL;
}

static void on_message(dx_conn *c, dx_msg_type t, const uint8_t *d, size_t n) {
  dx_send(c, t, d, n);
}

static void on_stdin(dx_loop *loop, int fd, void *ud) {
  (void)ud;
  char line[256];
  ssize_t n = read(fd, line, sizeof line - 1);
  if (n <= 0 || !strncmp(line, "quit", 4)) {
    dx_loop_unwatch_fd(loop, fd);
    dx_loop_stop(loop);
    return;
  }
  if (!strncmp(line, "drain", 5)) {
    int rc = dx_server_shutdown(P.server, 5000);
    out("drain rc=%s\n", dx_err_name(rc));
  }
}

static int opt(const char *a, const char *name, const char **val) {
  size_t n = strlen(name);
  if (strncmp(a, name, n) || a[n] != '=') return 0;
  *val = a + n + 1;
  return 1;
}

int main(int argc, char **argv) {
  signal(SIGPIPE, SIG_IGN);
  dx_options *o = dx_options_new();
  size_t max_body = 1 << 20;
  unsigned request_ms = 10000, keepalive_ms = 5000;
  for (int i = 1; i < argc; i++) {
    const char *v;
    int rc = 0;
    if (opt(argv[i], "--max-body", &v)) max_body = strtoul(v, NULL, 10);
    else if (opt(argv[i], "--request-ms", &v)) request_ms = (unsigned)atoi(v);
    else if (opt(argv[i], "--keepalive-ms", &v)) keepalive_ms = (unsigned)atoi(v);
    else if (opt(argv[i], "--max-header", &v)) rc = dx_options_set_max_header(o, strtoul(v, NULL, 10));
    else if (opt(argv[i], "--handshake-timeout", &v))
      rc = dx_options_set_handshake_timeout(o, (uint32_t)atoi(v));
    else if (opt(argv[i], "--static", &v)) {
      if (!(P.st = dx_http_static_new(v))) rc = DX_EINVAL;
    } else if (opt(argv[i], "--tls", &v)) {
      char cert[512];
      snprintf(cert, sizeof cert, "%s", v);
      char *key = strchr(cert, ',');
      if (!key) rc = DX_EINVAL;
      else {
        *key++ = '\0';
        rc = dx_options_set_tls_cert(o, cert, key);
      }
    } else {
      fprintf(stdout, "FAIL: unknown option %s\n", argv[i]);
      return 1;
    }
    if (rc) {
      fprintf(stdout, "FAIL: %s: %s\n", argv[i], dx_err_name(rc));
      return 1;
    }
  }
  if (dx_options_set_http_limits(o, max_body, request_ms, keepalive_ms)) {
    fprintf(stdout, "FAIL: dx_options_set_http_limits refused the limits\n");
    return 1;
  }
  dx_options_on_http(o, on_http);
  dx_options_on_http_abort(o, on_http_abort);
  dx_options_on_message(o, on_message);
  dx_options_set_ping(o, 0, 0);
  P.loop = dx_loop_new();
  P.server = dx_server_new(P.loop, o);
  dx_options_free(o);
  if (!P.server || dx_server_listen(P.server, "127.0.0.1", 0)) {
    fprintf(stdout, "FAIL: cannot listen: %s\n", dx_last_error());
    return 1;
  }
  printf("listening %u\n", dx_server_port(P.server));
  fflush(stdout);
  dx_loop_watch_fd(P.loop, 0, on_stdin, NULL);
  dx_loop_run(P.loop);
  dx_server_free(P.server);
  for (int i = 0; i < MAX_HELD; i++)
    if (pending_later[i]) {
      dx_loop_unwatch_fd(P.loop, pending_later[i]->fd);
      close(pending_later[i]->fd);
      free(pending_later[i]);
    }
  dx_loop_free(P.loop);
  dx_http_static_free(P.st);
  return 0;
}
