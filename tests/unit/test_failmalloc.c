/* Allocation failure across the whole endpoint (the nghttp2 failmalloc
 * idea): a server and a client on one loop, in one process, do a
 * handshake, echo a text and a binary message, and close with 1000. The
 * scenario runs once to count the allocations, N, then again for every i
 * in 1..N (and a few more) with only the i-th allocation failing. Each run
 * must end (the loop returns on its own), owe nothing (every connection
 * that reached on_open, and the client whatever happened, gets exactly one
 * on_close; an on_close only for those), and give back every byte: the
 * test tracks the library's live allocations itself and, in the sanitizer
 * build, asks LeakSanitizer after every run. Run plain, with
 * permessage-deflate, over TLS, and over TLS with deflate; and "http": the
 * server answers HTTP requests (on_http) that a client thread pipelines
 * over a raw socket, one answered at once, one later (dx_loop_post), a
 * POST echoed, a streamed body, and one with Connection: close. There
 * every request handed to on_http must be answered or aborted exactly
 * once, and every body producer released exactly once. And "sio": a
 * Socket.IO server (dx_sio) on the server's port, which a client thread
 * drives over raw HTTP polling, each request on a connection of its own:
 * the handshake, CONNECT to "/", an event the server answers with an emit,
 * and the close packet. There every socket that got on_connection must get
 * exactly one on_disconnect, and the calls return only what the header
 * lists; jansson's allocations go through the wrapped allocator too
 * (json_set_alloc_funcs), so the JSON the Socket.IO layer builds is
 * failed and tracked like the rest.
 *
 * How allocations are failed: this program is linked with the linker's
 * --wrap for malloc, calloc, realloc, strdup, strndup and free (see
 * tests/CMakeLists.txt), so every call to them from an object linked into
 * it, duplex_static's included, lands in __wrap_X below. zlib's memory goes
 * through duplex's allocator (deflate.c's zalloc over dx__alloc_std), so it
 * is failed too. OpenSSL, zlib's own code and libc are shared libraries:
 * their internal calls (SSL_new, getaddrinfo) are not wrapped and never
 * fail here. The library's objects call the plain names (checked with nm:
 * no posix_memalign, aligned_alloc or __strdup), so nothing slips past.
 *
 * A hang cannot hang the suite: a watchdog thread stops the loop after
 * 10 s and the run fails. Time is never asserted: a run that a timeout
 * had to end (1 s close timeout here) is only reported. Every code a call
 * returns must be one the header lists for it (the deviations this test
 * first found, DX_EIO and DX_EINVAL for out of memory, are fixed).
 *
 * Environment: DX_FAILMALLOC_ONLY=MODE:I runs one case (MODE one of plain,
 * deflate, tls, tls+deflate, http, sio; I 0 for no failure), e.g. for LeakSanitizer's
 * stacks alone; DX_FAILMALLOC_VERBOSE=1 prints every run;
 * DX_FAILMALLOC_TRACE=1 prints each counted allocation's caller as an
 * offset for `addr2line -f -e test_failmalloc`. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <unistd.h>

#include "certs.h"
#include "duplex.h"
#include "duplex_sio.h"

#if defined(__SANITIZE_ADDRESS__)
#define DX_FM_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define DX_FM_LSAN 1
#endif
#endif
#ifdef DX_FM_LSAN
#include <sanitizer/lsan_interface.h>
#endif

/* ---- the interposed allocator -------------------------------------------- */

void *__real_malloc(size_t n);
void *__real_calloc(size_t k, size_t n);
void *__real_realloc(void *p, size_t n);
char *__real_strdup(const char *s);
char *__real_strndup(const char *s, size_t n);
void __real_free(void *p);

void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t k, size_t n);
void *__wrap_realloc(void *p, size_t n);
char *__wrap_strdup(const char *s);
char *__wrap_strndup(const char *s, size_t n);
void __wrap_free(void *p);

/* Live allocations made while a run is armed: what is still here when
 * the run has freed everything leaked. A flat table is enough: the
 * scenario holds a few dozen blocks at a time. */
#define LIVE_MAX 4096
typedef struct {
  void *p;
  long seq; /* which allocation of the run made it */
  size_t n;
} live_block;

static struct {
  pthread_mutex_t mu;
  int armed;    /* counting and tracking */
  long seq;     /* allocations seen in this run */
  long fail_at; /* the one to fail (0: none) */
  int injected; /* fail_at was reached */
  live_block live[LIVE_MAX];
  int nlive;    /* used prefix of live[] */
  int overflow; /* more live blocks than the table holds */
} A = {.mu = PTHREAD_MUTEX_INITIALIZER};

extern char __executable_start; /* the GNU linker's: where the program is mapped */
static int g_trace;             /* DX_FAILMALLOC_TRACE: print each allocation's caller */

/* 1 when this allocation is the one to fail. Counts it either way. */
#define should_fail() should_fail_at(__builtin_return_address(0))
static int should_fail_at(void *caller) {
  if (!A.armed) return 0;
  long s = ++A.seq;
  /* An offset into the executable, for addr2line -e test_failmalloc. */
  if (g_trace)
    fprintf(stderr, "alloc #%ld from %#lx\n", s,
            (unsigned long)((char *)caller - &__executable_start));
  if (s != A.fail_at) return 0;
  A.injected = 1;
  return 1;
}

static void live_add(void *p, size_t n) {
  if (!p || !A.armed) return;
  for (int i = 0; i < A.nlive; i++)
    if (!A.live[i].p) {
      A.live[i] = (live_block){p, A.seq, n};
      return;
    }
  if (A.nlive == LIVE_MAX) {
    A.overflow = 1;
    return;
  }
  A.live[A.nlive++] = (live_block){p, A.seq, n};
}

/* p's slot, or NULL when it was made while unarmed (or by someone else). */
static live_block *live_find(void *p) {
  for (int i = 0; i < A.nlive; i++)
    if (A.live[i].p == p) return &A.live[i];
  return NULL;
}

void *__wrap_malloc(size_t n) {
  pthread_mutex_lock(&A.mu);
  void *p = NULL;
  if (!should_fail()) p = __real_malloc(n);
  live_add(p, n);
  pthread_mutex_unlock(&A.mu);
  if (!p) errno = ENOMEM;
  return p;
}

void *__wrap_calloc(size_t k, size_t n) {
  pthread_mutex_lock(&A.mu);
  void *p = NULL;
  if (!should_fail()) p = __real_calloc(k, n);
  live_add(p, k * n);
  pthread_mutex_unlock(&A.mu);
  if (!p) errno = ENOMEM;
  return p;
}

void *__wrap_realloc(void *p, size_t n) {
  pthread_mutex_lock(&A.mu);
  void *q = NULL;
  if (p && n == 0) { /* glibc: a free */
    live_block *b = live_find(p);
    if (b) b->p = NULL;
    q = __real_realloc(p, 0);
  } else if (!should_fail()) {
    q = __real_realloc(p, n);
    if (q) {
      live_block *b = p ? live_find(p) : NULL;
      if (b) {
        b->p = q;
        b->n = n;
      } else if (!p) {
        live_add(q, n);
      }
    }
  }
  pthread_mutex_unlock(&A.mu);
  if (!q && n) errno = ENOMEM;
  return q;
}

char *__wrap_strdup(const char *s) {
  pthread_mutex_lock(&A.mu);
  char *p = NULL;
  if (!should_fail()) p = __real_strdup(s);
  live_add(p, p ? strlen(p) + 1 : 0);
  pthread_mutex_unlock(&A.mu);
  if (!p) errno = ENOMEM;
  return p;
}

char *__wrap_strndup(const char *s, size_t n) {
  pthread_mutex_lock(&A.mu);
  char *p = NULL;
  if (!should_fail()) p = __real_strndup(s, n);
  live_add(p, p ? strlen(p) + 1 : 0);
  pthread_mutex_unlock(&A.mu);
  if (!p) errno = ENOMEM;
  return p;
}

void __wrap_free(void *p) {
  if (!p) return;
  pthread_mutex_lock(&A.mu);
  live_block *b = live_find(p);
  if (b) b->p = NULL;
  pthread_mutex_unlock(&A.mu);
  __real_free(p);
}

static void arm(long fail_at) {
  pthread_mutex_lock(&A.mu);
  A.armed = 1;
  A.seq = 0;
  A.fail_at = fail_at;
  A.injected = 0;
  A.nlive = 0;
  A.overflow = 0;
  pthread_mutex_unlock(&A.mu);
}

/* Stops counting; returns how many allocations the run made. */
static long disarm(void) {
  pthread_mutex_lock(&A.mu);
  A.armed = 0;
  long n = A.seq;
  pthread_mutex_unlock(&A.mu);
  return n;
}

/* ---- a watchdog: a run that hangs fails instead of hanging --------------- */

#define WATCHDOG_MS 10000

static struct {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  pthread_t thread;
  dx_loop *loop; /* the run being watched, NULL between runs */
  struct timespec deadline;
  int fired, quit;
} W = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void *watchdog(void *arg) {
  (void)arg;
  pthread_mutex_lock(&W.mu);
  while (!W.quit) {
    if (!W.loop) {
      pthread_cond_wait(&W.cv, &W.mu);
      continue;
    }
    if (pthread_cond_timedwait(&W.cv, &W.mu, &W.deadline) == ETIMEDOUT && W.loop) {
      /* Under the mutex: the run cannot free the loop meanwhile. */
      dx_loop_stop(W.loop);
      W.fired = 1;
      W.loop = NULL;
    }
  }
  pthread_mutex_unlock(&W.mu);
  return NULL;
}

static void watch_start(dx_loop *loop) {
  pthread_mutex_lock(&W.mu);
  clock_gettime(CLOCK_MONOTONIC, &W.deadline);
  W.deadline.tv_sec += WATCHDOG_MS / 1000;
  W.loop = loop;
  W.fired = 0;
  pthread_cond_signal(&W.cv);
  pthread_mutex_unlock(&W.mu);
}

/* Returns 1 when the watchdog had to stop the loop. */
static int watch_end(void) {
  pthread_mutex_lock(&W.mu);
  W.loop = NULL;
  int fired = W.fired;
  pthread_cond_signal(&W.cv);
  pthread_mutex_unlock(&W.mu);
  return fired;
}

/* ---- set-up --------------------------------------------------------------- */

static int group_setup(void **state) {
  (void)state;
  if (certs_make("failmalloc")) return -1;
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&W.cv, &ca);
  pthread_condattr_destroy(&ca);
  return pthread_create(&W.thread, NULL, watchdog, NULL) == 0 ? 0 : -1;
}

static int group_teardown(void **state) {
  (void)state;
  pthread_mutex_lock(&W.mu);
  W.quit = 1;
  pthread_cond_signal(&W.cv);
  pthread_mutex_unlock(&W.mu);
  pthread_join(W.thread, NULL);
  pthread_cond_destroy(&W.cv);
  return certs_remove();
}

/* ---- the scenario -------------------------------------------------------- */

enum { M_DEFLATE = 1, M_TLS = 2, M_HTTP = 4, M_SIO = 8 };
#define N_MODES 6
static const int g_modes[N_MODES] = {0, M_DEFLATE, M_TLS, M_TLS | M_DEFLATE, M_HTTP, M_SIO};
static const char *mode_name(int mode) {
  static const char *names[N_MODES] = {"plain", "deflate", "tls", "tls+deflate", "http", "sio"};
  for (int i = 0; i < N_MODES; i++)
    if (g_modes[i] == mode) return names[i];
  return "?";
}

/* What one connection saw. */
typedef struct {
  int opens, closes;
  int code, why, status;
  char reason[128];
} peer;

#define MAX_SERVER_CONNS 4

static struct {
  int mode;
  dx_loop *loop;
  dx_server *srv;
  dx_conn *client;
  int client_owed; /* dx_connect succeeded: one on_close is owed */
  peer cli;
  peer srv_conns[MAX_SERVER_CONNS];
  int nsrv;
  int echoes; /* echoes that matched what was sent */
  int client_closing;
  /* http mode */
  pthread_t http_client;
  int http_client_started;
  int http_client_ok;    /* the client read every response it expected */
  dx_http_request *outstanding[8]; /* handed to on_http, not yet answered */
  int http_seen, http_answered, http_aborted, producers, releases;
  /* sio mode */
  dx_sio *io;
  int sio_connections, sio_disconnects, sio_echoes;
  char errors[1024]; /* broken promises seen inside callbacks */
  char notes[512];   /* what the run did (printed on failure) */
} R;

static uint8_t g_text[300], g_binary[1000];

static void init_payloads(void) {
  /* Long enough to be compressed (the threshold is 64 bytes). */
  for (size_t i = 0; i < sizeof g_text; i++) g_text[i] = (uint8_t)("echo me, please "[i % 16]);
  for (size_t i = 0; i < sizeof g_binary; i++) g_binary[i] = (uint8_t)(i * 7 % 251);
}

/* Appends a formatted item and "; " to a log buffer. */
static void vappend(char *buf, size_t cap, const char *fmt, va_list ap) {
  size_t n = strlen(buf);
  vsnprintf(buf + n, cap - n, fmt, ap);
  n = strlen(buf);
  if (n + 2 < cap) strcpy(buf + n, "; ");
}

/* A promise the library broke: the run fails. */
static void broken(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vappend(R.errors, sizeof R.errors, fmt, ap);
  va_end(ap);
}

/* What the run did, printed with a failure. */
static void note(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vappend(R.notes, sizeof R.notes, fmt, ap);
  va_end(ap);
}

static void record_close(peer *p, int code, const char *reason, dx_why why, int status) {
  p->closes++;
  p->code = code;
  p->why = (int)why;
  p->status = status;
  snprintf(p->reason, sizeof p->reason, "%s", reason ? reason : "(null)");
}

/* The end of the run: the client has ended and every server connection
 * that opened has ended too. Freeing the server leaves the loop nothing to
 * run for, so dx_loop_run() must return on its own. */
static void maybe_finish(void) {
  if (!R.cli.closes || !R.srv) return;
  for (int i = 0; i < R.nsrv; i++)
    if (R.srv_conns[i].closes < R.srv_conns[i].opens) return;
  dx_server_free(R.srv);
  R.srv = NULL;
}

/* A call returned `rc`, which the header does not allow here: a broken
 * promise. */
static void unexpected(const char *call, const char *who, int rc) {
  broken("%s: %s returned %s", who, call, dx_err_name(rc));
}

/* dx_close, as an application would use it. DX_ENOMEM means the close
 * frame could not be queued and the connection was cut, its on_close
 * already run (the header says so): nothing to retry. */
static void close_conn(dx_conn *c, int code, const char *reason, const char *who) {
  int rc = dx_close(c, code, reason);
  if (rc != 0 && rc != DX_ESTATE && rc != DX_ENOMEM)
    broken("%s: dx_close -> %s", who, dx_err_name(rc));
}

static void cli_on_open(dx_conn *c) {
  if (c != R.client) broken("client on_open for an unknown connection");
  if (R.cli.opens++) broken("client on_open twice");
  if (R.cli.closes) broken("client on_open after on_close");
  int r = dx_send(c, DX_TEXT, g_text, sizeof g_text);
  if (r >= 0) r = dx_send(c, DX_BINARY, g_binary, sizeof g_binary);
  if (r < 0) {
    note("client dx_send -> %s", dx_err_name(r));
    if (r != DX_ENOMEM) broken("client dx_send -> %s", dx_err_name(r));
    R.client_closing = 1;
    close_conn(c, DX_CLOSE_NORMAL, "send failed", "client");
  }
}

static void cli_on_message(dx_conn *c, dx_msg_type type, const uint8_t *data, size_t len) {
  int ok = R.echoes == 0
               ? type == DX_TEXT && len == sizeof g_text && !memcmp(data, g_text, len)
               : type == DX_BINARY && len == sizeof g_binary && !memcmp(data, g_binary, len);
  if (!ok || R.echoes >= 2) {
    broken("client: echo %d wrong (type %d, %zu bytes)", R.echoes + 1, (int)type, len);
    return;
  }
  if (++R.echoes == 2 && !R.client_closing) {
    R.client_closing = 1;
    close_conn(c, DX_CLOSE_NORMAL, "done", "client");
  }
}

static void cli_on_close(dx_conn *c, int code, const char *reason, dx_why why, int status) {
  if (c != R.client) broken("client on_close for an unknown connection");
  if (!R.client_owed) broken("client on_close though dx_connect failed");
  if (R.cli.closes) broken("client on_close twice");
  record_close(&R.cli, code, reason, why, status);
  maybe_finish();
}

static void srv_on_open(dx_conn *c) {
  if (dx_conn_user(c)) {
    broken("server on_open twice for one connection");
    return;
  }
  if (R.nsrv == MAX_SERVER_CONNS) {
    broken("more than %d server connections", MAX_SERVER_CONNS);
    return;
  }
  peer *p = &R.srv_conns[R.nsrv++];
  p->opens++;
  dx_conn_set_user(c, p);
}

static void srv_on_message(dx_conn *c, dx_msg_type type, const uint8_t *data, size_t len) {
  int r = dx_send(c, type, data, len);
  if (r < 0) {
    note("server echo dx_send -> %s", dx_err_name(r));
    if (r != DX_ENOMEM) broken("server echo dx_send -> %s", dx_err_name(r));
    close_conn(c, DX_CLOSE_INTERNAL, "echo failed", "server");
  }
}

static void srv_on_close(dx_conn *c, int code, const char *reason, dx_why why, int status) {
  peer *p = dx_conn_user(c);
  if (!p) {
    broken("server on_close for a connection that never reached on_open");
    return;
  }
  if (p->closes) broken("server on_close twice for one connection");
  record_close(p, code, reason, why, status);
  maybe_finish();
}

/* ---- the http scenario ---------------------------------------------------- */

#define STREAM_LEN 200000
static uint8_t g_post[3000];

static const char g_requests_fmt[] =
    "GET /now HTTP/1.1\r\nHost: x\r\n\r\n"
    "GET /later HTTP/1.1\r\nHost: x\r\n\r\n"
    "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n\r\n";
static const char g_requests_tail[] =
    "GET /stream HTTP/1.1\r\nHost: x\r\n\r\n"
    "GET /bye HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

static void forget_request(dx_http_request *r, const char *how) {
  for (int i = 0; i < 8; i++)
    if (R.outstanding[i] == r) {
      R.outstanding[i] = NULL;
      return;
    }
  broken("%s for a request not outstanding", how);
}

/* dx_http_respond as an application would use it: a 500 when the answer
 * did not fit in memory; left to on_http_abort when the connection ends. */
static void answer(dx_http_request *r, const void *body, size_t len) {
  int rc = dx_http_respond(r, 200, NULL, 0, body, len);
  if (rc == DX_ENOMEM) rc = dx_http_error(r, 500, "out of memory", NULL, 0);
  if (rc == 0) {
    R.http_answered++;
    forget_request(r, "an answer");
  } else if (rc != DX_ENOMEM && rc != DX_ECLOSED) {
    unexpected("dx_http_respond", "server", rc);
  }
}

static void answer_later(dx_loop *loop, void *ud) {
  (void)loop;
  dx_http_request *r = ud;
  for (int i = 0; i < 8; i++)
    if (R.outstanding[i] == r) answer(r, "later\n", 6);
}

static long stream_read(void *ud, uint8_t *buf, size_t cap) {
  size_t *off = ud;
  for (size_t k = 0; k < cap; k++) buf[k] = (uint8_t)((*off + k) * 13 % 251);
  *off += cap;
  return (long)cap;
}

static void stream_release(void *ud) {
  (void)ud;
  R.releases++;
}

static void srv_on_http(dx_http_request *r) {
  static size_t stream_off;
  R.http_seen++;
  int slot = -1;
  for (int i = 0; i < 8 && slot < 0; i++)
    if (!R.outstanding[i]) slot = i;
  if (slot < 0) {
    broken("more than 8 requests outstanding");
    return;
  }
  R.outstanding[slot] = r;
  const char *path = dx_http_path(r);
  if (!strcmp(path, "/later")) {
    if (dx_loop_post(dx_http_loop(r), answer_later, r)) answer(r, "later\n", 6);
  } else if (!strcmp(path, "/echo")) {
    size_t len;
    const uint8_t *body = dx_http_body(r, &len);
    answer(r, body, len);
  } else if (!strcmp(path, "/stream")) {
    stream_off = 0;
    dx_http_producer p = {stream_read, stream_release, &stream_off};
    R.producers++;
    int rc = dx_http_respond_body(r, 200, NULL, 0, STREAM_LEN, &p);
    if (rc == DX_ENOMEM) {
      answer(r, "x", 1);
    } else if (rc == 0) {
      R.http_answered++;
      forget_request(r, "an answer");
    } else if (rc != DX_ECLOSED) {
      unexpected("dx_http_respond_body", "server", rc);
    }
  } else {
    answer(r, path, strlen(path));
  }
}

static void srv_on_http_abort(dx_http_request *r) {
  R.http_aborted++;
  forget_request(r, "on_http_abort");
}

/* Reads one response (status 200, Content-Length) from fd into its
 * buffer; 1 with the body in *body, 0 at the end or on a mismatch. */
static int read_response(int fd, uint8_t *buf, size_t cap, size_t *have, const uint8_t **body,
                         size_t *blen, size_t *used) {
  for (;;) {
    uint8_t *end = memmem(buf, *have, "\r\n\r\n", 4);
    if (end) {
      size_t head = (size_t)(end - buf) + 4;
      const char *cl = memmem(buf, head, "Content-Length: ", 16);
      if (memcmp(buf, "HTTP/1.1 200 ", 13) || !cl) return 0;
      size_t n = strtoul(cl + 16, NULL, 10);
      if (head + n > cap) return 0;
      if (*have >= head + n) {
        *body = buf + head;
        *blen = n;
        *used = head + n;
        return 1;
      }
    }
    if (*have == cap) return 0;
    ssize_t r = recv(fd, buf + *have, cap - *have, 0);
    if (r <= 0) return 0;
    *have += (size_t)r;
  }
}

static void post_finish(dx_loop *loop, void *ud) {
  (void)loop, (void)ud;
  if (R.srv) dx_server_free(R.srv); /* aborts what is still outstanding */
  R.srv = NULL;
}

/* The client: every request in one write, then the responses in order. */
static void *http_client(void *arg) {
  unsigned port = *(unsigned *)arg;
  static uint8_t buf[STREAM_LEN + 4096];
  int ok = 0;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  struct timeval tv = {2, 0}; /* a request left unanswered: give up after 2 s */
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0) {
    char head[512];
    int n = snprintf(head, sizeof head, g_requests_fmt, sizeof g_post);
    struct iovec iov[3] = {{head, (size_t)n}, {g_post, sizeof g_post},
                           {(void *)g_requests_tail, sizeof g_requests_tail - 1}};
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 3};
    if (sendmsg(fd, &mh, MSG_NOSIGNAL) > 0) {
      size_t have = 0, blen, used;
      const uint8_t *body;
      int got = 0;
      for (; got < 5; got++) {
        if (!read_response(fd, buf, sizeof buf, &have, &body, &blen, &used)) break;
        int good = got == 0   ? blen == 4 && !memcmp(body, "/now", 4)
                   : got == 1 ? blen == 6 && !memcmp(body, "later\n", 6)
                   : got == 2 ? blen == sizeof g_post && !memcmp(body, g_post, blen)
                   : got == 3 ? blen == STREAM_LEN && body[STREAM_LEN - 1] ==
                                                            (uint8_t)((STREAM_LEN - 1) * 13 % 251)
                              : blen == 4 && !memcmp(body, "/bye", 4);
        if (!good) break;
        memmove(buf, buf + used, have - used);
        have -= used;
      }
      ok = got == 5 && recv(fd, buf, 1, 0) == 0; /* and then the server closed */
    }
  }
  if (fd >= 0) close(fd);
  R.http_client_ok = ok;
  /* One allocation of the run may fail: dx_loop_post's, at most once. */
  while (dx_loop_post(R.loop, post_finish, NULL)) {
  }
  return NULL;
}

/* ---- the Socket.IO scenario ---------------------------------------------- */

static void give_up(dx_sio_socket *s, const char *why) {
  note("%s: out of memory, session closed", why);
  int rc = dx_sio_disconnect(s, 1);
  if (rc && rc != DX_ECLOSED) unexpected("dx_sio_disconnect", "server", rc);
}

static void sio_on_echo(dx_sio_socket *s, const json_t *args, dx_sio_ack *ack, void *ud) {
  (void)ud;
  int rc = dx_sio_emit(s, "echo-back", args);
  if (rc == 0) R.sio_echoes++;
  else if (rc != DX_ENOMEM && rc != DX_ECLOSED) unexpected("dx_sio_emit", "server", rc);
  if (ack) dx_sio_ack_drop(ack);
  /* As an application would: a client that cannot be answered is let go
   * (it reconnects), rather than left waiting. */
  if (rc == DX_ENOMEM) give_up(s, "dx_sio_emit");
}

static void sio_on_disconnect(dx_sio_socket *s, dx_sio_reason why, void *ud) {
  (void)s, (void)ud;
  note("disconnect: %s", dx_sio_reason_name(why));
  if (++R.sio_disconnects > R.sio_connections) broken("on_disconnect without on_connection");
}

static void sio_on_connection(dx_sio_socket *s, const json_t *auth, void *ud) {
  (void)auth, (void)ud;
  R.sio_connections++;
  dx_sio_socket_on_disconnect(s, sio_on_disconnect, NULL);
  int rc = dx_sio_on(s, "echo", sio_on_echo, NULL);
  if (rc && rc != DX_ENOMEM) unexpected("dx_sio_on", "server", rc);
  if (rc == DX_ENOMEM) give_up(s, "dx_sio_on");
}

/* One polling request on a connection of its own: its status (0: no
 * answer) and its body, NUL-terminated, in out. */
static int sio_request(unsigned port, const char *method, const char *sid, const char *body,
                       char *out, size_t cap) {
  char req[512];
  int n = snprintf(req, sizeof req,
                   "%s /socket.io/?EIO=4&transport=polling%s%s HTTP/1.1\r\nHost: x\r\n"
                   "Connection: close\r\nContent-Length: %zu\r\n\r\n%s",
                   method, sid ? "&sid=" : "", sid ? sid : "", body ? strlen(body) : 0,
                   body ? body : "");
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  struct timeval tv = {2, 0}; /* an answer that never comes: give up after 2 s */
  size_t have = 0;
  out[0] = 0;
  if (fd < 0) return 0;
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
      send(fd, req, (size_t)n, MSG_NOSIGNAL) == n) {
    ssize_t r;
    while (have + 1 < cap && (r = recv(fd, out + have, cap - 1 - have, 0)) > 0) have += (size_t)r;
  }
  close(fd);
  out[have] = 0;
  char *end = strstr(out, "\r\n\r\n");
  int status = have > 12 && !strncmp(out, "HTTP/1.1 ", 9) ? atoi(out + 9) : 0;
  if (!end) return 0;
  memmove(out, end + 4, strlen(end + 4) + 1);
  return status;
}

/* GETs until something other than a ping comes (answering the pings). */
static int sio_poll(unsigned port, const char *sid, char *out, size_t cap) {
  for (int i = 0; i < 4; i++) {
    int st = sio_request(port, "GET", sid, NULL, out, cap);
    if (st != 200 || strcmp(out, "2")) return st;
    char ok[256];
    if (sio_request(port, "POST", sid, "3", ok, sizeof ok) != 200) return 0;
  }
  return 0;
}

/* The client: the handshake, CONNECT to "/", an event and its answer, and
 * the close packet, each request on a connection of its own. */
static void *sio_client(void *arg) {
  unsigned port = *(unsigned *)arg;
  char b[2048], sid[21] = "";
  int ok = 0;
  if (sio_request(port, "GET", NULL, NULL, b, sizeof b) == 200 && !strncmp(b, "0{\"sid\":\"", 9) &&
      strlen(b) >= 29) {
    memcpy(sid, b + 9, 20);
    ok = sio_request(port, "POST", sid, "40", b, sizeof b) == 200 && !strcmp(b, "ok") &&
         sio_poll(port, sid, b, sizeof b) == 200 && !strncmp(b, "40{", 3) &&
         sio_request(port, "POST", sid, "42[\"echo\",\"hello\"]", b, sizeof b) == 200 &&
         sio_poll(port, sid, b, sizeof b) == 200 && !strcmp(b, "42[\"echo-back\",\"hello\"]") &&
         sio_request(port, "POST", sid, "1", b, sizeof b) == 200;
  }
  if (!ok) note("sio client: last body \"%.60s\"", b);
  R.http_client_ok = ok;
  while (dx_loop_post(R.loop, post_finish, NULL)) {
  }
  return NULL;
}

/* The Socket.IO server on so: pings every 500 ms (a poll left hanging by a
 * failure is answered soon), connectTimeout 2 s. 0 or the first error. */
static int sio_setup(dx_options *so) {
  dx_sio_options *o = dx_sio_options_new();
  if (!o) return DX_ENOMEM;
  int r = dx_sio_options_set_ping(o, 500, 500);
  if (!r) r = dx_sio_options_set_connect_timeout(o, 2000);
  if (!r && !(R.io = dx_sio_new(R.loop, o))) r = DX_ENOMEM;
  dx_sio_options_free(o);
  dx_sio_nsp *root = r ? NULL : dx_sio_of(R.io, "/");
  if (!r && !root) r = DX_ENOMEM;
  if (!r) dx_sio_nsp_on_connection(root, sio_on_connection, NULL);
  if (!r) r = dx_sio_attach(R.io, so);
  return r;
}

/* Common settings; 0, or the first error a setter returned. */
static int base_options(dx_options *o, int mode) {
  int r = 0;
  /* No heartbeats (a run lasts milliseconds); short timeouts so that a
   * failure that leaves a connection waiting on one still ends well
   * before the watchdog, and costs the suite little time. Nothing is
   * asserted about time: a timeout that fires is reported, not failed. */
  if (!r) r = dx_options_set_ping(o, 0, 0);
  if (!r) r = dx_options_set_handshake_timeout(o, 3000);
  if (!r) r = dx_options_set_close_timeout(o, 1000);
  if (!r && (mode & M_DEFLATE)) r = dx_options_set_deflate(o, 1);
  return r;
}

typedef struct {
  int injected;   /* the failing allocation was reached */
  long allocs;    /* allocations the run made */
  int stage_done; /* how far setup got before a call refused (see below) */
  int ok;         /* every promise kept */
  int complete;   /* the whole scenario happened (echoes, codes 1000) */
  long ms;        /* how long the run took (reported, never asserted) */
  int hung;       /* the watchdog stopped the loop */
} run_result;

enum { ST_NONE, ST_LOOP, ST_OPTIONS, ST_SERVER, ST_LISTEN, ST_CONNECT, ST_RAN };
static const char *stage_name(int s) {
  static const char *n[] = {"nothing",          "dx_loop_new", "options", "dx_server_new",
                            "dx_server_listen", "dx_connect",  "loop ran"};
  return n[s];
}

/* A setup call refused: allowed only as out of memory. */
static void refused(const char *what, int rc) {
  note("%s refused: %s (%s)", what, dx_err_name(rc), dx_last_error());
  if (rc != DX_ENOMEM) unexpected(what, "setup", rc);
}

static run_result run_once(int mode, long fail_at) {
  memset(&R, 0, sizeof R);
  R.mode = mode;
  run_result res = {0};
  dx_options *so = NULL, *co = NULL;
  int hung = 0, lsan_leak = 0;

  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  arm(fail_at);
  R.loop = dx_loop_new();
  if (!R.loop) {
    note("dx_loop_new returned NULL");
    goto done;
  }
  res.stage_done = ST_LOOP;

  so = dx_options_new();
  co = dx_options_new();
  if (!so || !co) {
    note("dx_options_new returned NULL");
    goto cleanup;
  }
  dx_options_on_open(so, srv_on_open);
  dx_options_on_message(so, srv_on_message);
  dx_options_on_close(so, srv_on_close);
  dx_options_on_open(co, cli_on_open);
  dx_options_on_message(co, cli_on_message);
  dx_options_on_close(co, cli_on_close);
  if (mode & M_HTTP) {
    dx_options_on_http(so, srv_on_http);
    dx_options_on_http_abort(so, srv_on_http_abort);
  }
  int r = base_options(so, mode);
  if (!r) r = base_options(co, mode);
  if (!r && (mode & M_SIO)) r = sio_setup(so);
  if (!r && (mode & M_TLS)) r = dx_options_set_tls_cert(so, cert("server.pem"), cert("server.key"));
  if (!r && (mode & M_TLS)) r = dx_options_set_tls_ca(co, cert("ca.pem"));
  if (r) {
    refused("an options setter", r);
    goto cleanup;
  }
  res.stage_done = ST_OPTIONS;

  R.srv = dx_server_new(R.loop, so);
  if (!R.srv) {
    note("dx_server_new returned NULL (%s)", dx_last_error());
    goto cleanup;
  }
  res.stage_done = ST_SERVER;
  r = dx_server_listen(R.srv, "127.0.0.1", 0);
  if (r) {
    refused("dx_server_listen", r);
    goto cleanup;
  }
  res.stage_done = ST_LISTEN;

  static unsigned port;
  port = dx_server_port(R.srv);
  if (mode & (M_HTTP | M_SIO)) {
    if (pthread_create(&R.http_client, NULL, mode & M_SIO ? sio_client : http_client, &port)) {
      broken("cannot start the client thread");
      goto cleanup;
    }
    R.http_client_started = 1;
  } else {
    char url[64];
    snprintf(url, sizeof url, "%s://127.0.0.1:%u/echo", (mode & M_TLS) ? "wss" : "ws", port);
    r = dx_connect(R.loop, url, co, &R.client);
    if (r) {
      refused("dx_connect", r);
      goto cleanup;
    }
    R.client_owed = 1;
  }
  res.stage_done = ST_CONNECT;
  /* The options were copied: free them now, as an application may. */
  dx_options_free(so);
  dx_options_free(co);
  so = co = NULL;

  watch_start(R.loop);
  r = dx_loop_run(R.loop);
  hung = watch_end();
  if (r) broken("dx_loop_run -> %s", dx_err_name(r));
  if (hung) broken("hang: the loop did not return within %d ms", WATCHDOG_MS);
  res.hung = hung;
  res.stage_done = ST_RAN;

cleanup:
  if (R.http_client_started) {
    if (hung) dx_loop_run(R.loop); /* let the client's post run */
    pthread_join(R.http_client, NULL);
    dx_loop_run(R.loop);            /* its post: the server is freed */
  }
  if (R.srv) {
    /* Only after a hang, or when setup stopped early. */
    dx_server_free(R.srv);
    R.srv = NULL;
  }
  dx_options_free(so);
  dx_options_free(co);
  dx_sio_free(R.io); /* after its servers; its sockets hear "server shutting down" */
  dx_loop_free(R.loop);
done:
  res.allocs = disarm();
  res.injected = A.injected;
  clock_gettime(CLOCK_MONOTONIC, &t1);
  res.ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;

  /* The promises. */
  if (R.client_owed && R.cli.closes != 1)
    broken("client: %d on_close (opened %d), 1 owed", R.cli.closes, R.cli.opens);
  for (int i = 0; i < R.nsrv; i++)
    if (R.srv_conns[i].closes != 1)
      broken("server connection %d: %d on_close after on_open", i, R.srv_conns[i].closes);
  int leaked = 0;
  for (int i = 0; i < A.nlive; i++)
    if (A.live[i].p) {
      if (leaked++ < 8)
        broken("leak: allocation #%ld (%zu bytes) never freed", A.live[i].seq, A.live[i].n);
    }
  if (leaked > 8) broken("leak: %d blocks in all", leaked);
  if (A.overflow) broken("more than %d live blocks: leak tracking incomplete", LIVE_MAX);
#ifdef DX_FM_LSAN
  /* Catches what the table cannot see: OpenSSL's or zlib's memory held by
   * something of ours that was never released. Prints the stacks. */
  lsan_leak = __lsan_do_recoverable_leak_check();
  if (lsan_leak) broken("LeakSanitizer found a leak (stacks above)");
#endif
  (void)lsan_leak;

  if (R.http_answered + R.http_aborted != R.http_seen)
    broken("http: %d requests, %d answered, %d aborted", R.http_seen, R.http_answered,
           R.http_aborted);
  if (R.releases != R.producers)
    broken("http: %d bodies produced, %d released", R.producers, R.releases);
  if (R.sio_disconnects != R.sio_connections)
    broken("sio: %d connections, %d disconnects", R.sio_connections, R.sio_disconnects);
  if (mode & M_HTTP)
    res.complete = R.http_client_ok && R.http_seen == 5 && R.http_answered == 5;
  else if (mode & M_SIO)
    res.complete = R.http_client_ok && R.sio_connections == 1 && R.sio_echoes == 1;
  else
    res.complete = R.cli.opens == 1 && R.echoes == 2 && R.cli.code == DX_CLOSE_NORMAL &&
                 R.cli.why == DX_WHY_LOCAL && R.nsrv == 1 &&
                 R.srv_conns[0].code == DX_CLOSE_NORMAL && R.srv_conns[0].why == DX_WHY_PEER;
  if (!res.injected && !res.complete)
    broken("no allocation failed, yet the scenario did not complete");
  res.ok = R.errors[0] == '\0';
  return res;
}

static void print_run(int mode, long i, const run_result *res) {
  if (res->ok)
    fprintf(stderr, "[%s i=%ld] ok\n", mode_name(mode), i);
  else
    fprintf(stderr, "[%s i=%ld] FAILED: %s\n", mode_name(mode), i, R.errors);
  fprintf(stderr, "  allocations %ld, injected %d, setup reached: %s, %ld ms\n", res->allocs,
          res->injected, stage_name(res->stage_done), res->ms);
  if (R.notes[0]) fprintf(stderr, "  notes: %s\n", R.notes);
  fprintf(stderr,
          "  client: owed %d opens %d closes %d code %d why %s status %d reason \"%s\" echoes %d\n",
          R.client_owed, R.cli.opens, R.cli.closes, R.cli.code,
          R.cli.closes ? dx_why_name((dx_why)R.cli.why) : "-", R.cli.status, R.cli.reason,
          R.echoes);
  if (mode & M_HTTP)
    fprintf(stderr, "  http: %d requests, %d answered, %d aborted; %d bodies, %d released; "
            "client %s\n", R.http_seen, R.http_answered, R.http_aborted, R.producers, R.releases,
            R.http_client_ok ? "read every response" : "did not read every response");
  if (mode & M_SIO)
    fprintf(stderr, "  sio: %d connections, %d disconnects, %d echoes; client %s\n",
            R.sio_connections, R.sio_disconnects, R.sio_echoes,
            R.http_client_ok ? "completed" : "did not complete");
  for (int k = 0; k < R.nsrv; k++) {
    const peer *p = &R.srv_conns[k];
    fprintf(stderr, "  server conn %d: opens %d closes %d code %d why %s reason \"%s\"\n", k,
            p->opens, p->closes, p->code, p->closes ? dx_why_name((dx_why)p->why) : "-", p->reason);
  }
}

/* DX_FAILMALLOC_ONLY=MODE:I: run that one case, nothing else. */
static int only_case(int *mode, long *i) {
  const char *v = getenv("DX_FAILMALLOC_ONLY");
  if (!v || !*v) return 0;
  const char *colon = strrchr(v, ':');
  if (!colon) return 0;
  for (int k = 0; k < N_MODES; k++)
    if (strlen(mode_name(g_modes[k])) == (size_t)(colon - v) &&
        !strncmp(v, mode_name(g_modes[k]), (size_t)(colon - v))) {
      *mode = g_modes[k];
      *i = atol(colon + 1);
      return 1;
    }
  return 0;
}

/* Past N, a few more runs must see no failure at all (the count can vary
 * slightly between runs: which end's event the kernel reports first). */
#define EXTRA_RUNS 5

static void fail_each_allocation(int mode) {
  init_payloads();
  g_trace = getenv("DX_FAILMALLOC_TRACE") != NULL;
  int only_mode;
  long only_i;
  if (only_case(&only_mode, &only_i)) {
    if (only_mode != mode) skip();
    run_result res = run_once(mode, only_i);
    print_run(mode, only_i, &res);
    assert_true(res.ok);
    return;
  }

  run_result base = run_once(mode, 0);
  if (!base.ok) print_run(mode, 0, &base);
  assert_true(base.ok);
  assert_true(base.complete);
  long n = base.allocs;
  assert_true(n > 0);

  int failures = 0, not_injected = 0, completed = 0, slow = 0, hangs = 0;
  const char *v = getenv("DX_FAILMALLOC_VERBOSE");
  int verbose = v && *v && *v != '0';
  long i;
  for (i = 1; not_injected < EXTRA_RUNS && i <= 4 * n + EXTRA_RUNS; i++) {
    run_result res = run_once(mode, i);
    if (res.injected) {
      not_injected = 0;
      if (res.complete) completed++;
    } else {
      not_injected++;
    }
    if (!res.ok) failures++;
    if (res.hung && ++hangs == 3) {
      /* Each costs the watchdog's 10 s: the first ones say enough. */
      fprintf(stderr, "[%s] three runs hung: not trying the rest\n", mode_name(mode));
      print_run(mode, i, &res);
      i++;
      break;
    }
    if (!res.ok || verbose) print_run(mode, i, &res);
    /* Information, not an assertion: a failure that leaves a connection
     * waiting for a timeout (the close timeout, 1 s here) instead of
     * ending it at once. */
    if (res.ms >= 900) {
      slow++;
      if (res.ok && !verbose) {
        fprintf(stderr, "[%s i=%ld] note: took %ld ms (a timeout ended it)\n", mode_name(mode), i,
                res.ms);
        print_run(mode, i, &res);
      }
    }
  }
  printf(
      "[%s] N=%ld allocations; %ld runs: %d recovered to a complete exchange, %d ended by a "
      "timeout, %d failed\n",
      mode_name(mode), n, i - 1, completed, slow, failures);
  assert_int_equal(failures, 0);
}

static void test_plain(void **state) {
  (void)state;
  fail_each_allocation(0);
}

static void test_deflate(void **state) {
  (void)state;
  fail_each_allocation(M_DEFLATE);
}

static void test_tls(void **state) {
  (void)state;
  fail_each_allocation(M_TLS);
}

static void test_tls_deflate(void **state) {
  (void)state;
  fail_each_allocation(M_TLS | M_DEFLATE);
}

static void test_http(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof g_post; i++) g_post[i] = (uint8_t)(i * 11 % 253);
  fail_each_allocation(M_HTTP);
}

static void test_sio(void **state) {
  (void)state;
  fail_each_allocation(M_SIO);
}

int main(void) {
  /* jansson's memory through the wrapped allocator too: counted, failed
   * and tracked like duplex's own (the Socket.IO layer's JSON). */
  json_set_alloc_funcs(__wrap_malloc, __wrap_free);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_plain),
      cmocka_unit_test(test_deflate),
      cmocka_unit_test(test_tls),
      cmocka_unit_test(test_tls_deflate),
      cmocka_unit_test(test_http),
      cmocka_unit_test(test_sio),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
