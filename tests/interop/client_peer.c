/*
 * client_peer: drives the duplex *client* API against a foreign WebSocket
 * echo server, for what `duplex connect` (text lines) cannot express:
 * binary messages, exact sizes, pings, chosen close codes, compression
 * parameters and what was negotiated.
 *
 *   client_peer [OPTION...] URL STEP...
 *
 * Options (before the URL):
 *   --timeout=SECONDS        give up (exit 3) after this long (default 60)
 *   --ca=FILE                wss://: trust the CAs in FILE
 *   --insecure               wss://: do not verify the certificate
 *   --protocol=NAME          offer a subprotocol (repeatable, in order)
 *   --deflate                offer permessage-deflate
 *   --deflate-window=S,C     ... asking for these max window bits (9..15)
 *   --deflate-no-context=S,C ... asking for no context takeover (0 or 1 each)
 *   --expect-protocol=NAME   on open, the negotiated subprotocol must be NAME
 *                            (empty: none)
 *   --expect-compressed=0|1  on open, permessage-deflate must (not) be on
 *   --expect-fail=CODE:WHY[:TEXT]  the connection must never open: on_close
 *                            must come with CODE, why named WHY (as
 *                            dx_why_name says it) and a reason containing TEXT
 *
 * Steps run in order; each waits for its outcome before the next starts:
 *   text:N            send N bytes of valid UTF-8 text, expect it echoed as text
 *   json:N            send N bytes of JSON-like text whose first 5000 bytes
 *                     repeat (a match only a window of 8 KiB or more can use)
 *   binary:N          send N bytes (every byte value), expect it echoed as binary
 *   noise:N           send N pseudo-random (incompressible) bytes as binary
 *   plain:N           binary:N sent with DX_SEND_NO_COMPRESS
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
  /* --expect-* options: checked in on_open / on_close */
  const char *want_protocol;   /* NULL: not checked */
  int want_compressed;         /* -1: not checked */
  int fail_code;               /* --expect-fail: 0 when not given */
  char *fail_why;              /* dx_why_name() text; owned */
  const char *fail_text;       /* substring of the reason, or NULL */
} st = {.want_compressed = -1};

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

static uint32_t lcg(uint32_t *s) {
  *s = *s * 1103515245u + 12345u;
  return *s >> 8;
}

/* Incompressible bytes: compression must fall back to stored blocks. */
static uint8_t *make_noise(size_t n) {
  uint8_t *p = malloc(n ? n : 1);
  if (!p) fail("out of memory for %zu bytes", n);
  uint32_t s = 42;
  for (size_t i = 0; i < n; i++) p[i] = (uint8_t)lcg(&s);
  return p;
}

/* JSON-like text: records with pseudo-random names and numbers, where the
 * first JSON_PERIOD bytes come again right after themselves. The repeat is
 * 5000 bytes back, so a compressor may use it only with a window of 13 bits
 * or more: a peer inflating with a smaller agreed window catches a
 * compressor that ignores the agreed window. */
#define JSON_PERIOD 5000
static uint8_t *make_json(size_t n) {
  uint8_t *p = malloc(n ? n : 1);
  if (!p) fail("out of memory for %zu bytes", n);
  uint32_t s = 7;
  char rec[128];
  size_t i = 0;
  for (unsigned id = 0; i < n && i < JSON_PERIOD; id++) {
    char name[9];
    for (int k = 0; k < 8; k++) name[k] = (char)('a' + lcg(&s) % 26);
    name[8] = '\0';
    int l = snprintf(rec, sizeof rec, "{\"id\":%u,\"name\":\"%s\",\"score\":%u.%02u,"
                     "\"ok\":%s},", id, name, lcg(&s) % 1000, lcg(&s) % 100,
                     lcg(&s) & 1 ? "true" : "false");
    for (int k = 0; k < l && i < n && i < JSON_PERIOD; k++) p[i++] = (uint8_t)rec[k];
  }
  for (; i < n; i++) p[i] = p[i - JSON_PERIOD];
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

/* The message steps: "PREFIX:N" sends make(N) as type, with dx_send_ex flags. */
typedef struct {
  const char *prefix;
  dx_msg_type type;
  uint8_t *(*make)(size_t n);
  unsigned flags;
} msg_kind;

static const msg_kind KINDS[] = {
    {"text:", DX_TEXT, make_text, 0},
    {"json:", DX_TEXT, make_json, 0},
    {"binary:", DX_BINARY, make_binary, 0},
    {"noise:", DX_BINARY, make_noise, 0},
    {"plain:", DX_BINARY, make_binary, DX_SEND_NO_COMPRESS},
};

static const msg_kind *find_kind(const char *step) {
  for (size_t i = 0; i < sizeof KINDS / sizeof KINDS[0]; i++)
    if (strncmp(step, KINDS[i].prefix, strlen(KINDS[i].prefix)) == 0) return &KINDS[i];
  return NULL;
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

  const msg_kind *k = find_kind(buf);
  if (k) {
    size_t n = parse_size(buf + strlen(k->prefix), step);
    st.expect = k->make(n);
    st.expect_len = n;
    st.echo_type = k->type;
    st.wait = W_ECHO;
    int r = dx_send_ex(c, st.echo_type, st.expect, n, k->flags);
    /* DX_SEND_BACKPRESSURE: queued above the high-water mark; we send one
     * message at a time, so there is nothing to hold back. */
    if (r != 0 && r != DX_SEND_BACKPRESSURE)
      fail("dx_send(%zu bytes) returned %s", n, dx_err_name(r));
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
  printf("open: %s protocol=\"%s\" compressed=%d\n", dx_conn_path(c), dx_conn_protocol(c),
         dx_conn_compressed(c));
  if (st.fail_code)
    fail("the connection opened; expected it to fail with code %d (%s)", st.fail_code,
         st.fail_why);
  if (st.want_protocol && strcmp(dx_conn_protocol(c), st.want_protocol) != 0)
    fail("negotiated subprotocol: expected \"%s\", got \"%s\"", st.want_protocol,
         dx_conn_protocol(c));
  if (st.want_compressed >= 0 && dx_conn_compressed(c) != st.want_compressed)
    fail("permessage-deflate negotiated: expected %d, got %d", st.want_compressed,
         dx_conn_compressed(c));
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
  if (st.fail_code) {
    if (code != st.fail_code || strcmp(dx_why_name(why), st.fail_why) != 0)
      fail("failed connection: expected code=%d why=%s, got code=%d why=%s", st.fail_code,
           st.fail_why, code, dx_why_name(why));
    if (st.fail_text && !strstr(reason, st.fail_text))
      fail("failed connection: expected a reason containing \"%s\", got \"%s\"",
           st.fail_text, reason);
    st.finished = 1;
    return;
  }
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

/* "A,B" -> two ints; exits on anything else. */
static void parse_pair(const char *v, int *a, int *b, const char *opt) {
  char *end;
  *a = (int)strtol(v, &end, 10);
  if (end == v || *end != ',') fail("%s: expected A,B, got '%s'", opt, v);
  const char *w = end + 1;
  *b = (int)strtol(w, &end, 10);
  if (end == w || *end != '\0') fail("%s: expected A,B, got '%s'", opt, v);
}

static void check_rc(int r, const char *what) {
  if (r != 0) fail("%s returned %s", what, dx_err_name(r));
}

/* --expect-fail=CODE:WHY[:TEXT]; WHY has spaces ("transport error"). */
static void parse_expect_fail(const char *v) {
  char *end;
  st.fail_code = (int)strtol(v, &end, 10);
  if (end == v || *end != ':') fail("--expect-fail: expected CODE:WHY[:TEXT], got '%s'", v);
  st.fail_why = strdup(end + 1);
  if (!st.fail_why) fail("out of memory");
  char *colon = strchr(st.fail_why, ':');
  if (colon) {
    *colon = '\0';
    st.fail_text = colon + 1;
  }
}

/* Applies one leading --option; returns 0 when arg is not an option. */
static int apply_option(const char *arg, dx_options *o, unsigned *timeout) {
  const char *eq = strchr(arg, '=');
  const char *v = eq ? eq + 1 : "";
  size_t nl = eq ? (size_t)(eq - arg) : strlen(arg);
#define IS(name) (nl == strlen(name) && strncmp(arg, name, nl) == 0)
  int a, b;
  if (strncmp(arg, "--", 2) != 0) return 0;
  if (IS("--timeout")) *timeout = (unsigned)atoi(v);
  else if (IS("--ca")) check_rc(dx_options_set_tls_ca(o, v), "dx_options_set_tls_ca");
  else if (IS("--insecure")) dx_options_set_tls_insecure(o, 1);
  else if (IS("--protocol")) check_rc(dx_options_add_protocol(o, v), "dx_options_add_protocol");
  else if (IS("--deflate")) check_rc(dx_options_set_deflate(o, 1), "dx_options_set_deflate");
  else if (IS("--deflate-window")) {
    parse_pair(v, &a, &b, "--deflate-window");
    check_rc(dx_options_set_deflate_window_bits(o, a, b), "dx_options_set_deflate_window_bits");
  } else if (IS("--deflate-no-context")) {
    parse_pair(v, &a, &b, "--deflate-no-context");
    check_rc(dx_options_set_deflate_no_context_takeover(o, a, b),
             "dx_options_set_deflate_no_context_takeover");
  } else if (IS("--expect-protocol")) st.want_protocol = v;
  else if (IS("--expect-compressed")) st.want_compressed = atoi(v);
  else if (IS("--expect-fail")) parse_expect_fail(v);
  else fail("unknown option '%s'", arg);
#undef IS
  return 1;
}

int main(int argc, char **argv) {
  unsigned timeout = 60;
  setvbuf(stdout, NULL, _IOLBF, 0);
  dx_loop *loop = dx_loop_new();
  dx_options *o = dx_options_new();
  if (!loop || !o) fail("dx_loop_new/dx_options_new failed");
  int a = 1;
  while (a < argc && apply_option(argv[a], o, &timeout)) a++;
  if (argc - a < 1) {
    fprintf(stderr, "usage: client_peer [OPTION...] URL STEP...\n");
    return 2;
  }
  signal(SIGALRM, on_alarm);
  alarm(timeout);

  const char *url = argv[a++];
  st.steps = argv + a;
  st.n_steps = argc - a;

  dx_options_on_open(o, on_open);
  dx_options_on_message(o, on_message);
  dx_options_on_pong(o, on_pong);
  dx_options_on_close(o, on_close);
  /* Our own limits must not get in the way of the big echoes: we send one
   * message at a time, so the output cap only needs room for the largest. */
  int r = dx_options_set_max_message(o, 64ull << 20);
  if (r != 0) fail("dx_options_set_max_message returned %s", dx_err_name(r));
  check_rc(dx_options_set_max_buffered(o, (size_t)80 << 20, DX_SLOW_CLOSE),
           "dx_options_set_max_buffered");

  dx_conn *c = NULL;
  r = dx_connect(loop, url, o, &c);
  dx_options_free(o);
  if (r != 0) fail("dx_connect(%s) returned %s: %s", url, dx_err_name(r), dx_last_error());

  r = dx_loop_run(loop);
  if (r != 0) fail("dx_loop_run returned %s", dx_err_name(r));
  dx_loop_free(loop);
  free(st.close_reason);
  free(st.fail_why);
  if (!st.finished) fail("the loop ended before the script finished (step %d)", st.idx + 1);
  if (st.fail_code)
    printf("client_peer: the connection failed as expected\n");
  else
    printf("client_peer: all %d step(s) passed\n", st.n_steps);
  return 0;
}
