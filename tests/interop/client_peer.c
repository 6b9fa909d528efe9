/*
 * client_peer: drives the duplex *client* API against a foreign WebSocket
 * echo server, for what `duplex connect` (text lines) cannot express:
 * binary messages, exact sizes, pings, chosen close codes.
 *
 *   client_peer [--timeout=SECONDS] URL STEP...
 *
 * Steps run in order; each waits for its outcome before the next starts:
 *   text:N            send N bytes of valid UTF-8 text, expect it echoed as text
 *   binary:N          send N bytes (every byte value), expect it echoed as binary
 *   ping:PAYLOAD      send a ping, expect a pong with the same payload
 *   close:CODE[:R]    dx_close(CODE, R); expect on_close(why=local, code=CODE)
 *   expect-close:CODE[:R]  wait for the peer to close with CODE (and reason R)
 *
 * Prints one line per step; exits 0 when every step passed, 1 on the first
 * mismatch (with expected and actual), 3 on timeout.
 */
#define _POSIX_C_SOURCE 200809L
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <duplex.h>

typedef enum { W_NONE, W_ECHO, W_PONG, W_CLOSE } waiting;

static struct {
  char **steps;
  int n_steps;
  int idx;
  waiting wait;
  dx_msg_type echo_type;
  uint8_t *expect;     /* the echo or pong payload we wait for */
  size_t expect_len;
  int close_code;      /* for W_CLOSE */
  char *close_reason;  /* NULL: any; owned */
  int close_local;     /* 1 when we started the close */
  int finished;        /* every step passed and the connection ended */
} st;

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void fail(const char *fmt, ...) {
  va_list ap;
  fputs("FAIL: ", stdout);
  va_start(ap, fmt);
  vprintf(fmt, ap);
  va_end(ap);
  fputc('\n', stdout);
  fflush(stdout);
  exit(1);
}

static void on_alarm(int sig) {
  (void)sig;
  static const char msg[] = "FAIL: client_peer timed out\n";
  ssize_t r = write(STDOUT_FILENO, msg, sizeof msg - 1);
  (void)r;
  _exit(3);
}

/* n bytes of valid UTF-8 mixing 1- to 4-byte sequences; the tail is padded
 * with ASCII so the length is exact. */
static uint8_t *make_text(size_t n) {
  static const char *units[] = {"a", "\xc3\xa9", "\xe2\x9c\x93", "\xf0\x9f\x99\x82",
                                "Z", " ", "\xe4\xb8\xad"};
  uint8_t *p = malloc(n ? n : 1);
  if (!p) fail("out of memory for %zu bytes", n);
  size_t i = 0, u = 0;
  while (i < n) {
    const char *s = units[u++ % (sizeof units / sizeof units[0])];
    size_t l = strlen(s);
    if (l > n - i) s = "x", l = 1;
    memcpy(p + i, s, l);
    i += l;
  }
  return p;
}

static uint8_t *make_binary(size_t n) {
  uint8_t *p = malloc(n ? n : 1);
  if (!p) fail("out of memory for %zu bytes", n);
  for (size_t i = 0; i < n; i++) p[i] = (uint8_t)(i * 7 + (i >> 8));
  return p;
}

static size_t parse_size(const char *s, const char *step) {
  char *end;
  unsigned long long v = strtoull(s, &end, 10);
  if (*s == '\0' || *end != '\0') fail("bad size in step '%s'", step);
  return (size_t)v;
}

/* CODE[:REASON] -> code, reason (NULL when absent). */
static int parse_close(char *arg, const char **reason, const char *step) {
  char *colon = strchr(arg, ':');
  *reason = NULL;
  if (colon) {
    *colon = '\0';
    *reason = colon + 1;
  }
  char *end;
  long code = strtol(arg, &end, 10);
  if (*arg == '\0' || *end != '\0') fail("bad close code in step '%s'", step);
  return (int)code;
}

static void run_steps(dx_conn *c);

static void next_step(dx_conn *c) {
  free(st.expect);
  st.expect = NULL;
  st.wait = W_NONE;
  st.idx++;
  run_steps(c);
}

static void run_steps(dx_conn *c) {
  if (st.idx >= st.n_steps) {
    /* Script done with the connection still open: close it normally. */
    printf("step %d: (end of script) close 1000\n", st.idx + 1);
    int r = dx_close(c, 1000, "done");
    if (r != 0) fail("dx_close(1000) returned %s", dx_err_name(r));
    st.wait = W_CLOSE;
    st.close_code = 1000;
    st.close_local = 1;
    st.idx = st.n_steps + 1; /* marks the implicit close */
    return;
  }
  /* A copy we may cut at ':' (reason) without touching argv for messages. */
  char *step = st.steps[st.idx];
  static char buf[512];
  snprintf(buf, sizeof buf, "%s", step);
  printf("step %d: %s\n", st.idx + 1, step);
  fflush(stdout);

  if (strncmp(buf, "text:", 5) == 0 || strncmp(buf, "binary:", 7) == 0) {
    int text = buf[0] == 't';
    size_t n = parse_size(buf + (text ? 5 : 7), step);
    st.expect = text ? make_text(n) : make_binary(n);
    st.expect_len = n;
    st.echo_type = text ? DX_TEXT : DX_BINARY;
    st.wait = W_ECHO;
    int r = dx_send(c, st.echo_type, st.expect, n);
    if (r != 0) fail("dx_send(%zu bytes) returned %s", n, dx_err_name(r));
  } else if (strncmp(buf, "ping:", 5) == 0) {
    size_t n = strlen(buf + 5);
    st.expect = malloc(n + 1);
    if (!st.expect) fail("out of memory");
    memcpy(st.expect, buf + 5, n);
    st.expect_len = n;
    st.wait = W_PONG;
    int r = dx_ping(c, st.expect, n);
    if (r != 0) fail("dx_ping(%zu bytes) returned %s", n, dx_err_name(r));
  } else if (strncmp(buf, "close:", 6) == 0) {
    const char *reason;
    int code = parse_close(buf + 6, &reason, step);
    st.wait = W_CLOSE;
    st.close_code = code;
    /* on a local close the reason reported is ours, not checked */
    st.close_local = 1;
    int r = dx_close(c, code, reason);
    if (r != 0) fail("dx_close(%d) returned %s", code, dx_err_name(r));
  } else if (strncmp(buf, "expect-close:", 13) == 0) {
    const char *reason;
    int code = parse_close(buf + 13, &reason, step);
    st.wait = W_CLOSE;
    st.close_code = code;
    st.close_reason = reason ? strdup(reason) : NULL;
    st.close_local = 0;
  } else {
    fail("unknown step '%s'", step);
  }
}

static size_t first_diff(const uint8_t *a, const uint8_t *b, size_t n) {
  size_t i = 0;
  while (i < n && a[i] == b[i]) i++;
  return i;
}

static void on_open(dx_conn *c) {
  printf("open: %s\n", dx_conn_path(c));
  run_steps(c);
}

static void on_message(dx_conn *c, dx_msg_type type, const uint8_t *data,
                       size_t len) {
  if (st.wait != W_ECHO)
    fail("unexpected %s message of %zu bytes during step %d",
         type == DX_TEXT ? "text" : "binary", len, st.idx + 1);
  if (type != st.echo_type)
    fail("echo type: expected %s, got %s", st.echo_type == DX_TEXT ? "text" : "binary",
         type == DX_TEXT ? "text" : "binary");
  if (len != st.expect_len || memcmp(data, st.expect, len) != 0) {
    size_t n = len < st.expect_len ? len : st.expect_len;
    fail("echo differs: sent %zu bytes, got %zu; first difference at %zu", st.expect_len,
         len, first_diff(data, st.expect, n));
  }
  printf("  echoed %zu bytes ok\n", len);
  next_step(c);
}

static void on_pong(dx_conn *c, const uint8_t *data, size_t len) {
  if (st.wait != W_PONG) {
    printf("  (unsolicited pong of %zu bytes ignored)\n", len);
    return;
  }
  if (len != st.expect_len || memcmp(data, st.expect, len) != 0)
    fail("pong payload: expected %zu bytes '%.*s', got %zu bytes '%.*s'", st.expect_len,
         (int)st.expect_len, (const char *)st.expect, len, (int)len, (const char *)data);
  printf("  pong ok\n");
  next_step(c);
}

static void on_close(dx_conn *c, int code, const char *reason, dx_why why,
                     int http_status) {
  (void)c;
  printf("close: code=%d reason=\"%s\" why=%s http_status=%d\n", code, reason,
         dx_why_name(why), http_status);
  if (st.wait != W_CLOSE)
    fail("connection closed during step %d (%s)", st.idx + 1,
         st.idx < st.n_steps ? st.steps[st.idx] : "end");
  if (code != st.close_code) fail("close code: expected %d, got %d", st.close_code, code);
  dx_why want_why = st.close_local ? DX_WHY_LOCAL : DX_WHY_PEER;
  if (why != want_why)
    fail("close why: expected %s, got %s", dx_why_name(want_why), dx_why_name(why));
  if (st.close_reason && strcmp(reason, st.close_reason) != 0)
    fail("close reason: expected \"%s\", got \"%s\"", st.close_reason, reason);
  /* Only the last step (or the implicit close) may end the connection. */
  if (st.idx < st.n_steps - 1)
    fail("connection ended at step %d of %d", st.idx + 1, st.n_steps);
  st.finished = 1;
}

int main(int argc, char **argv) {
  unsigned timeout = 60;
  int a = 1;
  if (a < argc && strncmp(argv[a], "--timeout=", 10) == 0) timeout = (unsigned)atoi(argv[a++] + 10);
  if (argc - a < 1) {
    fprintf(stderr, "usage: client_peer [--timeout=S] URL STEP...\n");
    return 2;
  }
  signal(SIGALRM, on_alarm);
  alarm(timeout);
  setvbuf(stdout, NULL, _IOLBF, 0);

  const char *url = argv[a++];
  st.steps = argv + a;
  st.n_steps = argc - a;

  dx_loop *loop = dx_loop_new();
  dx_options *o = dx_options_new();
  if (!loop || !o) fail("dx_loop_new/dx_options_new failed");
  dx_options_on_open(o, on_open);
  dx_options_on_message(o, on_message);
  dx_options_on_pong(o, on_pong);
  dx_options_on_close(o, on_close);
  /* Our own limit must not get in the way of the big echoes. */
  int r = dx_options_set_max_message(o, 64ull << 20);
  if (r != 0) fail("dx_options_set_max_message returned %s", dx_err_name(r));

  dx_conn *c = NULL;
  r = dx_connect(loop, url, o, &c);
  dx_options_free(o);
  if (r != 0) fail("dx_connect(%s) returned %s", url, dx_err_name(r));

  r = dx_loop_run(loop);
  if (r != 0) fail("dx_loop_run returned %s", dx_err_name(r));
  dx_loop_free(loop);
  free(st.close_reason);
  if (!st.finished) fail("the loop ended before the script finished (step %d)", st.idx + 1);
  printf("client_peer: all %d step(s) passed\n", st.n_steps);
  return 0;
}
