/* The TLS transport end to end: a server transport and a client transport
 * on the two ends of a socket pair, pumped by hand, with certificates made
 * at run time by tests/certs/make.sh. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "certs.h"
#include "duplex.h"
#include "net/tls.h"


static dx__tls_ctx *server_ctx(const char *name) {
  char crt[32], key[32], err[256] = "";
  snprintf(crt, sizeof crt, "%s.pem", name);
  snprintf(key, sizeof key, "%s.key", name);
  dx__tls_ctx *c = dx__tls_server_ctx(cert(crt), cert(key), err, sizeof err);
  if (!c) fprintf(stderr, "server ctx: %s\n", err);
  assert_non_null(c);
  return c;
}

static dx__tls_ctx *client_ctx(int insecure) {
  char err[256] = "";
  dx__tls_ctx *c = dx__tls_client_ctx(insecure ? NULL : cert("ca.pem"), insecure, err, sizeof err, NULL);
  if (!c) fprintf(stderr, "client ctx: %s\n", err);
  assert_non_null(c);
  return c;
}

/* ---- sockets ------------------------------------------------------------- */

/* Small send buffers make the transport hold records (pending() > 0). The
 * receive side is shrunk only on AF_UNIX: a TCP receive window below the
 * loopback MSS (32 KiB+) stalls the sender on its persist timer. */
static void small_buffers(int fd, int bytes, int tcp) {
  setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bytes, sizeof bytes);
  if (!tcp) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof bytes);
}

/* fds[0] is the server's end, fds[1] the client's; both non-blocking. */
static void make_pair(int fds[2], int tcp, int bufsize) {
  if (!tcp) {
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds), 0);
  } else {
    char why[200];
    int l;
    assert_int_equal(dx__tcp_listen("127.0.0.1", 0, 4, 0u, &l, 1, why, sizeof why), 1);
    unsigned port = dx__tcp_local_port(l);
    assert_true(port > 0);
    fds[1] = dx__tcp_connect("127.0.0.1", port);
    assert_true(fds[1] >= 0);
    struct pollfd p = {.fd = l, .events = POLLIN};
    assert_int_equal(poll(&p, 1, 5000), 1);
    fds[0] = accept4(l, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    assert_true(fds[0] >= 0);
    close(l);
    dx__tcp_tune(fds[0]);
    struct pollfd q = {.fd = fds[1], .events = POLLOUT};
    assert_int_equal(poll(&q, 1, 5000), 1);
  }
  if (bufsize) {
    small_buffers(fds[0], bufsize, tcp);
    small_buffers(fds[1], bufsize, tcp);
  }
}

/* ---- one end, pumped by hand ------------------------------------------- */

typedef struct {
  dx__transport t;
  const uint8_t *out; /* plaintext to send */
  size_t out_len, out_off;
  uint8_t *in; /* plaintext received */
  size_t in_len, in_cap;
  size_t rcap;    /* bytes offered to each read() */
  int shut_after; /* shutdown() once everything is accepted and flushed */
  int conn_style; /* stop reading at a short read, as conn.c does */
  int shut, eof, eio, saw_pending;
  long first_eio_step;
  char why[256];
  dx__tr_fault fault;
} end;

static void end_init(end *e, size_t in_cap, size_t rcap) {
  memset(e, 0, sizeof *e);
  e->in = malloc(in_cap);
  assert_non_null(e->in);
  e->in_cap = in_cap;
  e->rcap = rcap;
  e->first_eio_step = -1;
}

static void end_free(end *e) {
  if (e->t.impl) dx__tr_ops(&e->t)->close(&e->t);
  free(e->in);
}

static void got_eio(end *e, long step) {
  e->eio = 1;
  e->first_eio_step = step;
  e->fault = dx__tr_ops(&e->t)->error(&e->t, e->why, sizeof e->why);
}

/* One loop iteration for this end: write what is left (two iovecs, to
 * cover the multi-iovec path), flush, maybe shut down, then read until the
 * transport has nothing more. */
static void step(end *e, long n) {
  if (e->eio) return;
  const dx__transport_ops *o = dx__tr_ops(&e->t);
  if (e->out_off < e->out_len) {
    size_t left = e->out_len - e->out_off, half = left / 2;
    struct iovec iov[2] = {{(void *)(e->out + e->out_off), half ? half : left},
                           {(void *)(e->out + e->out_off + half), left - half}};
    ssize_t w = o->writev(&e->t, iov, half ? 2 : 1);
    if (w == DX_EIO) return got_eio(e, n);
    assert_true(w == DX_EINCOMPLETE || (w >= 0 && (size_t)w <= left));
    if (w > 0) e->out_off += (size_t)w;
  } else if (o->pending(&e->t)) {
    ssize_t w = o->writev(&e->t, NULL, 0);
    if (w == DX_EIO) return got_eio(e, n);
    assert_true(w == 0 || w == DX_EINCOMPLETE);
  }
  if (o->pending(&e->t)) e->saw_pending = 1;
  if (e->shut_after && !e->shut && e->out_off == e->out_len) {
    o->shutdown(&e->t);
    e->shut = 1;
  }
  while (!e->eof) {
    size_t room = e->in_cap - e->in_len;
    assert_true(room > 0);
    ssize_t r = o->read(&e->t, e->in + e->in_len, room < e->rcap ? room : e->rcap);
    if (r == DX_EINCOMPLETE) break;
    if (r == 0) {
      e->eof = 1;
      break;
    }
    if (r < 0) {
      assert_int_equal(r, DX_EIO);
      return got_eio(e, n);
    }
    e->in_len += (size_t)r;
    /* A short read promises that nothing is left inside the transport: a
     * level-triggered loop would not come back for it. */
    if (e->conn_style && (size_t)r < e->rcap) break;
  }
}

static int settled(const end *e) { return e->eio || e->eof; }

static size_t progress(end *e) {
  return e->out_off + e->in_len + (size_t)e->eof + (size_t)e->eio + (size_t)e->shut +
         dx__tr_ops(&e->t)->pending(&e->t);
}

/* Waits (briefly) for either end's socket to become readable, or writable
 * when it holds records: over TCP a tiny window can take a persist-timer
 * round to reopen, which no amount of spinning speeds up. */
static void wait_either(end *c, end *s) {
  struct pollfd p[2] = {{.fd = c->t.io.fd, .events = POLLIN}, {.fd = s->t.io.fd, .events = POLLIN}};
  if (dx__tr_ops(&c->t)->pending(&c->t)) p[0].events |= POLLOUT;
  if (dx__tr_ops(&s->t)->pending(&s->t)) p[1].events |= POLLOUT;
  poll(p, 2, 20);
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Pumps both ends until both have settled (EOF or error), for at most max
 * iterations or 20 seconds; returns the iterations used (max if not done). */
static long pump(end *c, end *s, long max) {
  long i;
  double deadline = now() + 20;
  for (i = 0; i < max && !(settled(c) && settled(s)); i++) {
    if (now() > deadline) return max;
    size_t before = progress(c) + progress(s);
    step(c, i);
    step(s, i);
    if (progress(c) + progress(s) == before) wait_either(c, s);
  }
  return i;
}

static void fill(uint8_t *p, size_t n, uint32_t seed) {
  uint32_t x = seed;
  for (size_t i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    p[i] = (uint8_t)x;
  }
}

/* ---- round trips --------------------------------------------------------- */

#define MIB (1024 * 1024)

static void roundtrip(int tcp, const char *host, int conn_style) {
  dx__tls_ctx *sc = server_ctx("server"), *cc = client_ctx(0);
  int fds[2];
  make_pair(fds, tcp, 4096);
  uint8_t *a = malloc(MIB), *b = malloc(MIB);
  assert_non_null(a);
  assert_non_null(b);
  fill(a, MIB, 1);
  fill(b, MIB, 2);
  end s, c;
  /* One spare byte, so reads go on until the end of stream. */
  end_init(&s, MIB + 1, 7001); /* odd, smaller than a record */
  end_init(&c, MIB + 1, 65536);
  assert_int_equal(dx__tls_start(&s.t, sc, fds[0], 1, NULL), 0);
  assert_int_equal(dx__tls_start(&c.t, cc, fds[1], 0, host), 0);
  assert_int_equal(s.t.io.fd, fds[0]);
  c.out = a;
  c.out_len = MIB;
  s.out = b;
  s.out_len = MIB;
  c.shut_after = s.shut_after = 1;
  s.conn_style = c.conn_style = conn_style;

  long steps = pump(&c, &s, 200000);
  if (c.eio) fprintf(stderr, "client: %s\n", c.why);
  if (s.eio) fprintf(stderr, "server: %s\n", s.why);
  if (steps >= 200000)
    fprintf(stderr, "stuck: c out %zu in %zu pend %zu eof %d shut %d; s out %zu in %zu pend %zu eof %d shut %d\n",
            c.out_off, c.in_len, dx__tr_ops(&c.t)->pending(&c.t), c.eof, c.shut, s.out_off, s.in_len,
            dx__tr_ops(&s.t)->pending(&s.t), s.eof, s.shut);
  if (steps >= 200000 && getenv("DXDBG")) system("ss -tnoim dst 127.0.0.1 or src 127.0.0.1");
  assert_true(steps < 200000);
  assert_false(c.eio);
  assert_false(s.eio);
  /* Both directions complete and intact, each ended by close_notify. */
  assert_int_equal(s.in_len, MIB);
  assert_int_equal(c.in_len, MIB);
  assert_memory_equal(s.in, a, MIB);
  assert_memory_equal(c.in, b, MIB);
  assert_true(s.eof && c.eof);
  /* Small socket buffers made the transport hold records. */
  assert_true(s.saw_pending || c.saw_pending);
  assert_int_equal(dx__tr_ops(&s.t)->pending(&s.t), 0);
  assert_int_equal(dx__tr_ops(&c.t)->pending(&c.t), 0);
  /* After the end of stream, read keeps saying so. */
  uint8_t x;
  assert_int_equal(dx__tr_ops(&s.t)->read(&s.t, &x, 1), 0);

  end_free(&s);
  end_free(&c);
  free(a);
  free(b);
  dx__tls_ctx_free(sc);
  dx__tls_ctx_free(cc);
}

static void test_roundtrip_unix_localhost(void **state) {
  (void)state;
  roundtrip(0, "localhost", 0);
}

static void test_roundtrip_tcp_ipv4_literal(void **state) {
  (void)state;
  roundtrip(1, "127.0.0.1", 1);
}

static void test_roundtrip_ipv6_literal_in_brackets(void **state) {
  (void)state;
  roundtrip(0, "[::1]", 1);
}

/* A small exchange; returns the pumped ends for inspection. */
static void small_exchange(dx__tls_ctx *sc, dx__tls_ctx *cc, const char *host, end *s,
                           end *c) {
  int fds[2];
  make_pair(fds, 0, 0);
  end_init(s, 4096, 4096);
  end_init(c, 4096, 4096);
  assert_int_equal(dx__tls_start(&s->t, sc, fds[0], 1, NULL), 0);
  assert_int_equal(dx__tls_start(&c->t, cc, fds[1], 0, host), 0);
  c->out = (const uint8_t *)"hello";
  c->out_len = 5;
  s->out = (const uint8_t *)"world";
  s->out_len = 5;
  c->shut_after = s->shut_after = 1;
  assert_true(pump(c, s, 1000) < 1000);
}

static void test_insecure_accepts_self_signed(void **state) {
  (void)state;
  dx__tls_ctx *sc = server_ctx("self"), *cc = client_ctx(1);
  end s, c;
  small_exchange(sc, cc, "localhost", &s, &c);
  assert_false(c.eio);
  assert_false(s.eio);
  assert_int_equal(s.in_len, 5);
  assert_memory_equal(s.in, "hello", 5);
  assert_int_equal(c.in_len, 5);
  assert_memory_equal(c.in, "world", 5);
  end_free(&s);
  end_free(&c);
  dx__tls_ctx_free(sc);
  dx__tls_ctx_free(cc);
}

/* ---- verification failures ----------------------------------------------- */

static void expect_verify_failure(const char *server_cert, const char *host,
                                  const char *detail) {
  dx__tls_ctx *sc = server_ctx(server_cert), *cc = client_ctx(0);
  end s, c;
  small_exchange(sc, cc, host, &s, &c);
  /* The client refuses the certificate during the handshake... */
  assert_true(c.eio);
  assert_int_equal(c.fault, DX__TR_TLS_HANDSHAKE_FAILED);
  fprintf(stderr, "  client: %s\n", c.why);
  assert_non_null(strstr(c.why, "TLS handshake failed"));
  assert_non_null(strstr(c.why, "verify"));
  assert_non_null(strstr(c.why, detail));
  /* ...no plaintext crossed either way... */
  assert_int_equal(c.in_len, 0);
  assert_int_equal(s.in_len, 0);
  /* ...and the server hears the client's alert as a failed handshake. */
  assert_true(s.eio);
  assert_int_equal(s.fault, DX__TR_TLS_HANDSHAKE_FAILED);
  fprintf(stderr, "  server: %s\n", s.why);
  assert_non_null(strstr(s.why, "TLS handshake failed"));
  /* The failure is sticky. */
  uint8_t x;
  assert_int_equal(dx__tr_ops(&c.t)->read(&c.t, &x, 1), DX_EIO);
  struct iovec iov = {"x", 1};
  assert_int_equal(dx__tr_ops(&c.t)->writev(&c.t, &iov, 1), DX_EIO);
  end_free(&s);
  end_free(&c);
  dx__tls_ctx_free(sc);
  dx__tls_ctx_free(cc);
}

static void test_wrong_host_name(void **state) {
  (void)state;
  expect_verify_failure("wrong", "localhost", "hostname mismatch");
}

static void test_host_name_checked_against_server_cert(void **state) {
  (void)state;
  expect_verify_failure("server", "other.example", "hostname mismatch");
}

static void test_wrong_ip_literal(void **state) {
  (void)state;
  expect_verify_failure("server", "127.0.0.2", "IP address mismatch");
}

static void test_untrusted_self_signed(void **state) {
  (void)state;
  expect_verify_failure("self", "localhost", "self-signed");
}

/* ---- a TLS end facing plaintext ------------------------------------------ */

static void test_plaintext_client_to_tls_server(void **state) {
  (void)state;
  dx__tls_ctx *sc = server_ctx("server");
  int fds[2];
  make_pair(fds, 0, 0);
  end s;
  end_init(&s, 4096, 4096);
  assert_int_equal(dx__tls_start(&s.t, sc, fds[0], 1, NULL), 0);
  const char req[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  assert_int_equal(send(fds[1], req, sizeof req - 1, 0), (ssize_t)(sizeof req - 1));
  long i;
  for (i = 0; i < 3 && !s.eio; i++) step(&s, i);
  /* Refused on the first read, not left waiting for a ClientHello. */
  assert_true(s.eio);
  assert_int_equal(s.first_eio_step, 0);
  assert_int_equal(s.fault, DX__TR_TLS_HANDSHAKE_FAILED);
  fprintf(stderr, "  server: %s\n", s.why);
  assert_non_null(strstr(s.why, "TLS handshake failed: "));
  assert_true(strlen(s.why) > strlen("TLS handshake failed: "));
  end_free(&s);
  close(fds[1]);
  dx__tls_ctx_free(sc);
}

static void test_tls_client_to_plaintext_server(void **state) {
  (void)state;
  dx__tls_ctx *cc = client_ctx(0);
  int fds[2];
  make_pair(fds, 0, 0);
  end c;
  end_init(&c, 4096, 4096);
  assert_int_equal(dx__tls_start(&c.t, cc, fds[1], 0, "localhost"), 0);
  c.out = (const uint8_t *)"hello";
  c.out_len = 5;
  step(&c, 0); /* sends the ClientHello */
  assert_false(c.eio);
  assert_int_equal(c.out_off, 0); /* nothing accepted before the handshake */
  /* The plaintext server reads the hello as a bad HTTP request. */
  char junk[4096];
  ssize_t n = recv(fds[0], junk, sizeof junk, 0);
  assert_true(n > 5);
  assert_int_equal((uint8_t)junk[0], 0x16); /* a TLS handshake record */
  const char resp[] = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n"
                      "Connection: close\r\n\r\n";
  assert_int_equal(send(fds[0], resp, sizeof resp - 1, 0), (ssize_t)(sizeof resp - 1));
  shutdown(fds[0], SHUT_WR);
  for (long i = 1; i < 4 && !c.eio; i++) step(&c, i);
  assert_true(c.eio);
  assert_int_equal(c.fault, DX__TR_TLS_HANDSHAKE_FAILED);
  fprintf(stderr, "  client: %s\n", c.why);
  assert_non_null(strstr(c.why, "TLS handshake failed: "));
  end_free(&c);
  close(fds[0]);
  dx__tls_ctx_free(cc);
}

/* ---- end of stream during the handshake ------------------------------- */

static void test_eof_before_any_byte_is_end_of_stream(void **state) {
  (void)state;
  dx__tls_ctx *sc = server_ctx("server");
  int fds[2];
  make_pair(fds, 0, 0);
  end s;
  end_init(&s, 4096, 4096);
  assert_int_equal(dx__tls_start(&s.t, sc, fds[0], 1, NULL), 0);
  step(&s, 0);
  assert_false(s.eof);
  close(fds[1]); /* a bare connect and close, like a health check */
  step(&s, 1);
  assert_true(s.eof);
  assert_false(s.eio);
  end_free(&s);
  dx__tls_ctx_free(sc);
}

static void test_eof_mid_handshake_is_tls_failure(void **state) {
  (void)state;
  dx__tls_ctx *sc = server_ctx("server"), *cc = client_ctx(0);
  int fds[2];
  make_pair(fds, 0, 0);
  end s, c;
  end_init(&s, 4096, 4096);
  end_init(&c, 4096, 4096);
  assert_int_equal(dx__tls_start(&s.t, sc, fds[0], 1, NULL), 0);
  assert_int_equal(dx__tls_start(&c.t, cc, fds[1], 0, "localhost"), 0);
  /* The owner's kick: flushing starts a client's handshake. */
  assert_int_equal(dx__tr_ops(&c.t)->writev(&c.t, NULL, 0), 0);
  end_free(&c); /* the client goes away after its hello */
  step(&s, 0);
  assert_true(s.eio);
  assert_int_equal(s.fault, DX__TR_TLS_HANDSHAKE_FAILED);
  assert_non_null(strstr(s.why, "closed by the peer"));
  end_free(&s);
  dx__tls_ctx_free(sc);
  dx__tls_ctx_free(cc);
}

/* ---- backpressure ------------------------------------------------------ */

static void test_backpressure_bounds_buffered_ciphertext(void **state) {
  (void)state;
  dx__tls_ctx *sc = server_ctx("server"), *cc = client_ctx(0);
  int fds[2];
  make_pair(fds, 0, 4096);
  end s, c;
  end_init(&s, 4 * MIB + 1, 65536);
  end_init(&c, 4096, 4096);
  assert_int_equal(dx__tls_start(&s.t, sc, fds[0], 1, NULL), 0);
  assert_int_equal(dx__tls_start(&c.t, cc, fds[1], 0, "localhost"), 0);
  c.out = (const uint8_t *)"hi";
  c.out_len = 2;
  for (long i = 0; i < 100 && s.in_len < 2; i++) {
    step(&c, i);
    step(&s, i);
  }
  assert_int_equal(s.in_len, 2);

  /* The server stops reading; the client offers 4 MiB. */
  uint8_t *big = malloc(4 * MIB);
  assert_non_null(big);
  fill(big, 4 * MIB, 3);
  size_t accepted = 0;
  ssize_t w = 0;
  for (int i = 0; i < 1000; i++) {
    struct iovec iov = {big + accepted, 4 * MIB - accepted};
    w = dx__tr_ops(&c.t)->writev(&c.t, &iov, 1);
    if (w <= 0) break;
    accepted += (size_t)w;
  }
  /* Refused with "socket full", and what the transport holds is bounded:
   * the socket buffers plus about 64 KiB of records, not the 4 MiB. */
  assert_int_equal(w, DX_EINCOMPLETE);
  assert_true(accepted > 0);
  assert_true(accepted < 512 * 1024);
  size_t held = dx__tr_ops(&c.t)->pending(&c.t);
  assert_true(held >= 64 * 1024);
  assert_true(held < 64 * 1024 + 2 * 16 * 1024 + 1024);
  assert_int_equal(dx__tr_ops(&c.t)->writev(&c.t, NULL, 0), DX_EINCOMPLETE);

  /* Now the server reads; everything arrives, in order. */
  c.out = big;
  c.out_len = 4 * MIB;
  c.out_off = accepted;
  s.in_len = 0;
  /* The server, with nothing to say, closes its direction at once: the
   * client keeps writing into the half-closed stream. */
  c.shut_after = s.shut_after = 1;
  assert_true(pump(&c, &s, 200000) < 200000);
  assert_true(c.eof && s.eof);
  assert_false(c.eio);
  assert_false(s.eio);
  assert_int_equal(s.in_len, 4 * MIB);
  assert_memory_equal(s.in, big, 4 * MIB);
  free(big);
  end_free(&s);
  end_free(&c);
  dx__tls_ctx_free(sc);
  dx__tls_ctx_free(cc);
}

/* Many small records queued at once: one pass of conn.c-style reading
 * (stop at the first short read) must get all of them, since a short read
 * promises nothing is left buffered inside the transport. */
static void test_short_read_means_drained(void **state) {
  (void)state;
  dx__tls_ctx *sc = server_ctx("server"), *cc = client_ctx(0);
  int fds[2];
  make_pair(fds, 0, 0);
  end s, c;
  end_init(&s, 256 * 1024, 65536);
  end_init(&c, 4096, 4096);
  assert_int_equal(dx__tls_start(&s.t, sc, fds[0], 1, NULL), 0);
  assert_int_equal(dx__tls_start(&c.t, cc, fds[1], 0, "localhost"), 0);
  c.out = (const uint8_t *)"hi";
  c.out_len = 2;
  for (long i = 0; i < 100 && s.in_len < 2; i++) {
    step(&c, i);
    step(&s, i);
  }
  assert_int_equal(s.in_len, 2);
  s.in_len = 0;

  enum { N = 200, SZ = 100 }; /* fits the socket buffer at once */
  uint8_t *msgs = malloc(N * SZ);
  assert_non_null(msgs);
  fill(msgs, N * SZ, 4);
  for (int i = 0; i < N; i++) { /* one record each */
    struct iovec iov = {msgs + i * SZ, SZ};
    assert_int_equal(dx__tr_ops(&c.t)->writev(&c.t, &iov, 1), SZ);
  }
  assert_int_equal(dx__tr_ops(&c.t)->pending(&c.t), 0);
  s.conn_style = 1;
  step(&s, 0);
  assert_int_equal(s.in_len, N * SZ);
  assert_memory_equal(s.in, msgs, N * SZ);
  free(msgs);
  end_free(&s);
  end_free(&c);
  dx__tls_ctx_free(sc);
  dx__tls_ctx_free(cc);
}

/* ---- records OpenSSL writes by itself ------------------------------------ */

/* A plain OpenSSL client on fds[1], non-blocking, through its handshake
 * with the server end s (pumped by hand). */
static SSL *raw_client(SSL_CTX **ctx, int fd, end *s) {
  *ctx = SSL_CTX_new(TLS_client_method());
  assert_non_null(*ctx);
  SSL_CTX_set_verify(*ctx, SSL_VERIFY_NONE, NULL);
  SSL_CTX_set_min_proto_version(*ctx, TLS1_3_VERSION);
  SSL *ssl = SSL_new(*ctx);
  assert_non_null(ssl);
  SSL_set_fd(ssl, fd);
  SSL_set_connect_state(ssl);
  int done = 0;
  for (long i = 0; i < 2000 && !done; i++) {
    done = SSL_do_handshake(ssl) == 1;
    step(s, i);
    if (!done) {
      struct pollfd p = {.fd = fd, .events = POLLIN};
      poll(&p, 1, 10);
    }
  }
  assert_true(done);
  assert_false(s->eio);
  return ssl;
}

/* A server end over a socket pair (the peer's receive buffer 4 KiB) and a
 * plain OpenSSL client through its handshake with it: the KeyUpdate tests'
 * set-up, and its undoing. */
typedef struct {
  dx__tls_ctx *sc;
  int fds[2];
  end s;
  SSL_CTX *pctx;
  SSL *peer;
} peer_pair;

static void peer_pair_open(peer_pair *pp) {
  pp->sc = server_ctx("server");
  make_pair(pp->fds, 0, 4096);
  end_init(&pp->s, 4096, 4096);
  assert_int_equal(dx__tls_start(&pp->s.t, pp->sc, pp->fds[0], 1, NULL), 0);
  pp->peer = raw_client(&pp->pctx, pp->fds[1], &pp->s);
}

static void peer_pair_close(peer_pair *pp) {
  SSL_free(pp->peer);
  SSL_CTX_free(pp->pctx);
  close(pp->fds[1]);
  end_free(&pp->s);
  dx__tls_ctx_free(pp->sc);
}

/* TLS 1.3 lets a peer ask for a KeyUpdate in return (update_requested),
 * and OpenSSL writes that answer from inside SSL_read, past any
 * high-water mark of writev. A peer that asks again and again and never
 * reads must not make the transport hold its answers without bound. */
static void test_key_update_storm_is_bounded(void **state) {
  (void)state;
  peer_pair pp;
  peer_pair_open(&pp);
  end *s = &pp.s;
  SSL *peer = pp.peer;

  /* ~27 bytes each way per update: 40,000 are about 1 MiB of answers. */
  size_t most = 0;
  long sent = 0;
  for (long i = 0; i < 40000 && !s->eio; i++) {
    if (SSL_key_update(peer, SSL_KEY_UPDATE_REQUESTED) != 1) break;
    int r;
    while ((r = SSL_do_handshake(peer)) != 1 && !s->eio) {
      assert_int_equal(SSL_get_error(peer, r), SSL_ERROR_WANT_WRITE);
      step(s, i); /* the server reads (and answers); the peer never does */
    }
    sent++;
    if (i % 16 == 0) step(s, i);
    size_t held = dx__tr_ops(&s->t)->pending(&s->t);
    if (held > most) most = held;
  }
  step(s, sent);
  size_t held = dx__tr_ops(&s->t)->pending(&s->t);
  if (held > most) most = held;
  fprintf(stderr, "  %ld updates; most held %zu bytes; %s\n", sent, most,
          s->eio ? s->why : "still open");
  /* The answers held stay within the writev mark plus a record's slack... */
  assert_true(most <= 64 * 1024 + 2 * 16 * 1024 + 1024);
  /* ... because a peer that makes us write and never reads is cut off. */
  assert_true(s->eio);
  assert_int_equal(s->fault, DX__TR_TLS_ERROR);
  assert_non_null(strstr(s->why, "not reading"));

  peer_pair_close(&pp);
}

/* A few KeyUpdates from a peer that reads its answers are just traffic. */
static void test_key_updates_from_a_reading_peer_are_fine(void **state) {
  (void)state;
  peer_pair pp;
  peer_pair_open(&pp);
  end *s = &pp.s;
  SSL *peer = pp.peer;
  s->out = (const uint8_t *)"pong";
  s->out_len = 4;
  char buf[16];
  int got = 0;
  for (long i = 0; i < 2000; i++) {
    assert_int_equal(SSL_key_update(peer, SSL_KEY_UPDATE_REQUESTED), 1);
    assert_int_equal(SSL_write(peer, "x", 1), 1);
    step(s, i);
    int r = SSL_read(peer, buf, sizeof buf);
    if (r > 0) got += r;
  }
  for (long i = 0; i < 200 && got < 4; i++) {
    step(s, i);
    int r = SSL_read(peer, buf, sizeof buf);
    if (r > 0) got += r;
    struct pollfd p = {.fd = pp.fds[1], .events = POLLIN};
    poll(&p, 1, 5);
  }
  assert_false(s->eio);
  assert_int_equal(s->in_len, 2000);
  assert_int_equal(got, 4);
  assert_int_equal(dx__tr_ops(&s->t)->pending(&s->t), 0);

  peer_pair_close(&pp);
}

/* ---- ALPN, seen from plain OpenSSL peers --------------------------------- */

typedef struct {
  int fd;
  const unsigned char *offer; /* client: ALPN list to offer */
  unsigned offer_len;
  char result[64]; /* what the peer saw */
  int ok;
  int close_notify; /* the peer's SSL_read ended with close_notify */
  int fin;          /* ...and the TCP stream then ended */
} peer_arg;

static void set_blocking(int fd) {
  int fl = fcntl(fd, F_GETFL);
  fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
}

/* A blocking OpenSSL client: reports the protocol the server selected. */
static void *alpn_client(void *p) {
  peer_arg *a = p;
  SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
  SSL_CTX_set_alpn_protos(ctx, a->offer, a->offer_len);
  SSL *ssl = SSL_new(ctx);
  SSL_set_fd(ssl, a->fd);
  if (SSL_connect(ssl) == 1) {
    const unsigned char *sel = NULL;
    unsigned len = 0;
    SSL_get0_alpn_selected(ssl, &sel, &len);
    snprintf(a->result, sizeof a->result, "%.*s", (int)len, sel ? (const char *)sel : "");
    a->ok = SSL_write(ssl, "x", 1) == 1;
    /* The duplex server then shuts down: close_notify, then FIN. */
    char c;
    int r = SSL_read(ssl, &c, 1);
    a->close_notify = r == 0 && SSL_get_error(ssl, r) == SSL_ERROR_ZERO_RETURN;
    struct pollfd pf = {.fd = a->fd, .events = POLLIN};
    a->fin = poll(&pf, 1, 5000) == 1 && recv(a->fd, &c, 1, 0) == 0;
    SSL_shutdown(ssl);
  }
  SSL_free(ssl);
  SSL_CTX_free(ctx);
  return NULL;
}

static void server_alpn_case(const unsigned char *offer, unsigned len, const char *want) {
  dx__tls_ctx *sc = server_ctx("server");
  int fds[2];
  make_pair(fds, 0, 0);
  set_blocking(fds[1]);
  peer_arg a = {.fd = fds[1], .offer = offer, .offer_len = len};
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, alpn_client, &a), 0);
  end s;
  end_init(&s, 4096, 4096);
  assert_int_equal(dx__tls_start(&s.t, sc, fds[0], 1, NULL), 0);
  for (long i = 0; i < 2000 && !settled(&s); i++) {
    struct pollfd p = {.fd = fds[0], .events = POLLIN};
    poll(&p, 1, 100);
    step(&s, i);
    if (s.in_len == 1) s.shut_after = 1;
  }
  pthread_join(th, NULL);
  assert_false(s.eio);
  assert_true(a.ok);
  assert_true(s.eof); /* the peer's close_notify */
  assert_true(a.close_notify);
  assert_true(a.fin);
  assert_string_equal(a.result, want);
  assert_int_equal(s.in_len, 1);
  end_free(&s);
  close(fds[1]);
  dx__tls_ctx_free(sc);
}

static void test_server_alpn_http11_then_close_notify_and_fin(void **state) {
  (void)state;
  static const unsigned char offer[] = "\x02h2\x08http/1.1";
  server_alpn_case(offer, sizeof offer - 1, "http/1.1");
}

static void test_server_without_common_alpn_still_connects(void **state) {
  (void)state;
  static const unsigned char offer[] = "\x02h2";
  server_alpn_case(offer, sizeof offer - 1, "");
}

/* A blocking OpenSSL server: records the client's ALPN list and SNI. */
static int record_offer(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                        const unsigned char *in, unsigned int inlen, void *arg) {
  peer_arg *a = arg;
  (void)ssl;
  (void)out;
  (void)outlen;
  size_t n = inlen < sizeof a->result - 1 ? inlen : sizeof a->result - 1;
  memcpy(a->result, in, n);
  a->result[n] = '\0';
  return SSL_TLSEXT_ERR_NOACK;
}

static char g_sni[64];

static void *alpn_server(void *p) {
  peer_arg *a = p;
  SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
  SSL_CTX_use_certificate_chain_file(ctx, cert("server.pem"));
  SSL_CTX_use_PrivateKey_file(ctx, cert("server.key"), SSL_FILETYPE_PEM);
  SSL_CTX_set_alpn_select_cb(ctx, record_offer, a);
  SSL *ssl = SSL_new(ctx);
  SSL_set_fd(ssl, a->fd);
  if (SSL_accept(ssl) == 1) {
    const char *sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    snprintf(g_sni, sizeof g_sni, "%s", sni ? sni : "");
    a->ok = SSL_write(ssl, "y", 1) == 1;
    SSL_shutdown(ssl);
  }
  SSL_free(ssl);
  SSL_CTX_free(ctx);
  return NULL;
}

static void client_offer_case(const char *host, const char *want_sni) {
  dx__tls_ctx *cc = client_ctx(0);
  int fds[2];
  make_pair(fds, 0, 0);
  set_blocking(fds[0]);
  peer_arg a = {.fd = fds[0]};
  g_sni[0] = '\0';
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, alpn_server, &a), 0);
  end c;
  end_init(&c, 4096, 4096);
  assert_int_equal(dx__tls_start(&c.t, cc, fds[1], 0, host), 0);
  assert_int_equal(dx__tr_ops(&c.t)->writev(&c.t, NULL, 0), 0);
  for (long i = 0; i < 2000 && !settled(&c); i++) {
    struct pollfd p = {.fd = fds[1], .events = POLLIN};
    poll(&p, 1, 100);
    step(&c, i);
  }
  pthread_join(th, NULL);
  assert_false(c.eio);
  assert_true(a.ok);
  assert_string_equal(a.result, "\x08http/1.1");
  assert_string_equal(g_sni, want_sni);
  assert_int_equal(c.in_len, 1);
  end_free(&c);
  close(fds[0]);
  dx__tls_ctx_free(cc);
}

static void test_client_offers_http11_and_sni(void **state) {
  (void)state;
  client_offer_case("localhost", "localhost");
}

static void test_client_sends_no_sni_for_ip_literal(void **state) {
  (void)state;
  client_offer_case("127.0.0.1", "");
}

/* ---- contexts ------------------------------------------------------------ */

static void test_bad_paths_give_reasons(void **state) {
  (void)state;
  char err[256];
  err[0] = '\0';
  assert_null(dx__tls_server_ctx("/nonexistent/cert.pem", cert("server.key"), err, sizeof err));
  fprintf(stderr, "  %s\n", err);
  assert_non_null(strstr(err, "/nonexistent/cert.pem"));
  assert_non_null(strstr(err, "No such file"));

  err[0] = '\0';
  assert_null(dx__tls_server_ctx(cert("server.pem"), "/nonexistent/key.pem", err, sizeof err));
  fprintf(stderr, "  %s\n", err);
  assert_non_null(strstr(err, "/nonexistent/key.pem"));

  err[0] = '\0';
  assert_null(dx__tls_server_ctx(cert("server.pem"), cert("wrong.key"), err, sizeof err));
  fprintf(stderr, "  %s\n", err);
  assert_non_null(strstr(err, "mismatch"));

  /* A key is not a certificate. */
  err[0] = '\0';
  assert_null(dx__tls_server_ctx(cert("server.key"), cert("server.key"), err, sizeof err));
  fprintf(stderr, "  %s\n", err);
  assert_non_null(strstr(err, "certificate chain"));

  err[0] = '\0';
  int code = 0;
  assert_null(dx__tls_client_ctx("/nonexistent/ca.pem", 0, err, sizeof err, &code));
  fprintf(stderr, "  %s\n", err);
  assert_non_null(strstr(err, "/nonexistent/ca.pem"));
  assert_int_equal(code, DX_EINVAL); /* the file's fault, not memory's */

  /* The system store and insecure mode need no file. */
  dx__tls_ctx *c = dx__tls_client_ctx(NULL, 0, err, sizeof err, NULL);
  assert_non_null(c);
  dx__tls_ctx_free(c);
  c = dx__tls_client_ctx("/nonexistent/ca.pem", 1, err, sizeof err, NULL);
  assert_non_null(c);
  dx__tls_ctx_free(c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_roundtrip_unix_localhost),
      cmocka_unit_test(test_roundtrip_tcp_ipv4_literal),
      cmocka_unit_test(test_roundtrip_ipv6_literal_in_brackets),
      cmocka_unit_test(test_insecure_accepts_self_signed),
      cmocka_unit_test(test_wrong_host_name),
      cmocka_unit_test(test_host_name_checked_against_server_cert),
      cmocka_unit_test(test_wrong_ip_literal),
      cmocka_unit_test(test_untrusted_self_signed),
      cmocka_unit_test(test_plaintext_client_to_tls_server),
      cmocka_unit_test(test_tls_client_to_plaintext_server),
      cmocka_unit_test(test_eof_before_any_byte_is_end_of_stream),
      cmocka_unit_test(test_eof_mid_handshake_is_tls_failure),
      cmocka_unit_test(test_backpressure_bounds_buffered_ciphertext),
      cmocka_unit_test(test_short_read_means_drained),
      cmocka_unit_test(test_key_update_storm_is_bounded),
      cmocka_unit_test(test_key_updates_from_a_reading_peer_are_fine),
      cmocka_unit_test(test_server_alpn_http11_then_close_notify_and_fin),
      cmocka_unit_test(test_server_without_common_alpn_still_connects),
      cmocka_unit_test(test_client_offers_http11_and_sni),
      cmocka_unit_test(test_client_sends_no_sni_for_ip_literal),
      cmocka_unit_test(test_bad_paths_give_reasons),
  };
  return cmocka_run_group_tests(tests, certs_group_setup, certs_group_teardown);
}
