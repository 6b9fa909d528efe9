/* Pub/sub (dx_hub): raw-socket WebSocket clients against servers whose
 * connections subscribe and publish on command. What is checked is what a
 * client sees on the wire: which messages arrive, exactly once, in which
 * order, and the close code a slow subscriber gets.
 *
 * The servers' loops run on their own threads; the test thread is "any
 * other thread" (it publishes with dx_publish too). scripts/test also
 * builds this file under ThreadSanitizer, where the cross-thread paths
 * (publishes from the test thread and from other loops, subscriptions
 * coming and going on two loops) must show no data race.
 *
 * Commands a client sends (text), run by the server on its loop:
 *   sub T / unsub T       reply "topics N" (dx_conn_topics after it)
 *   pub T X               dx_publish(T, X), excluding the sender
 *   puball T X            dx_publish(T, X), not excluding it
 *   say X                 dx_send(X) to the sender
 *   mix T                 publish and send interleaved (see test_order)
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <zlib.h>

#include "duplex.h"

#define WAIT_MS 60000 /* generous bounds only: sanitizers slow things 10x */
#define NLOOPS 2

static const char REQUEST[] =
    "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
    "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Version: 13\r\n\r\n";

/* ---- the servers ------------------------------------------------------- */

static struct {
  dx_hub *hub;
  dx_loop *loop[NLOOPS];
  dx_server *srv[NLOOPS];
  uint16_t port[NLOOPS];
  pthread_t thread[NLOOPS];
  atomic_int closes, slow_closes;
  atomic_int last_code;
} S;

static void reply(dx_conn *c, const char *fmt, ...) {
  char buf[256];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  dx_send_text(c, buf, (size_t)n);
}

/* "T X" -> topic T, rest X */
static void split(const char *p, size_t n, const char **t, size_t *tl, const char **x, size_t *xl) {
  const char *sp = memchr(p, ' ', n);
  *t = p;
  *tl = sp ? (size_t)(sp - p) : n;
  *x = sp ? sp + 1 : p + n;
  *xl = sp ? n - *tl - 1 : 0;
}

static void on_message(dx_conn *c, dx_msg_type type, const uint8_t *data, size_t len) {
  (void)type;
  const char *p = (const char *)data, *t, *x;
  size_t tl, xl;
#define CMD(s) (len > sizeof(s) - 1 && memcmp(p, s, sizeof(s) - 1) == 0 && \
                (split(p + sizeof(s) - 1, len - (sizeof(s) - 1), &t, &tl, &x, &xl), 1))
  if (CMD("sub ")) {
    int r = dx_subscribe(c, t, tl);
    if (r) reply(c, "error %s", dx_err_name(r));
    else reply(c, "topics %zu", dx_conn_topics(c));
  } else if (CMD("unsub ")) {
    int r = dx_unsubscribe(c, t, tl);
    if (r) reply(c, "error %s", dx_err_name(r));
    else reply(c, "topics %zu", dx_conn_topics(c));
  } else if (CMD("pub ")) {
    int r = dx_publish(S.hub, t, tl, DX_TEXT, x, xl, c);
    if (r) reply(c, "error %s", dx_err_name(r));
  } else if (CMD("puball ")) {
    int r = dx_publish(S.hub, t, tl, DX_TEXT, x, xl, NULL);
    if (r) reply(c, "error %s", dx_err_name(r));
  } else if (CMD("say ")) {
    dx_send_text(c, t, len - 4); /* all of it, spaces included */
  } else if (CMD("zmix ")) {
    /* The connection's own compressed message, a published one (compressed
     * alone), then own and published again: the own compressor must not
     * refer past the published message into what it sent before. */
    char own[300], pub[300];
    for (size_t i = 0; i < sizeof own; i++) {
      own[i] = (char)('a' + i % 7);
      pub[i] = (char)('A' + i % 11);
    }
    dx_send_text(c, own, sizeof own);
    dx_publish(S.hub, t, tl, DX_TEXT, pub, sizeof pub, NULL);
    dx_send_text(c, own, sizeof own);
    dx_publish(S.hub, t, tl, DX_TEXT, pub, sizeof pub, NULL);
  } else if (CMD("mix ")) {
    /* Shared frames queued first (nothing of the session's ahead), then
     * the connection's own, then shared behind own, then a big shared
     * frame that will not leave in one write, then own again. */
    static uint8_t big[300000];
    memset(big, 'e', sizeof big);
    dx_publish(S.hub, t, tl, DX_TEXT, "1", 1, NULL);
    dx_send_text(c, "2", 1);
    dx_publish(S.hub, t, tl, DX_TEXT, "3", 1, NULL);
    dx_publish(S.hub, t, tl, DX_BINARY, big, sizeof big, NULL);
    dx_send_text(c, "5", 1);
  }
#undef CMD
}

static void on_close(dx_conn *c, int code, const char *reason, dx_why why, int status) {
  (void)c, (void)status;
  atomic_store(&S.last_code, code);
  if (why == DX_WHY_LOCAL && code == DX_CLOSE_POLICY &&
      strcmp(reason, "slow consumer: output buffer limit reached") == 0)
    atomic_fetch_add(&S.slow_closes, 1);
  atomic_fetch_add(&S.closes, 1);
}

static void *run(void *p) {
  dx_loop_run(p);
  return NULL;
}

static void stop(dx_loop *l, void *ud) {
  (void)ud;
  dx_loop_stop(l);
}

static void start(size_t max_buffered) {
  memset(&S, 0, sizeof S);
  S.hub = dx_hub_new();
  assert_non_null(S.hub);
  dx_options *o = dx_options_new();
  dx_options_on_message(o, on_message);
  dx_options_on_close(o, on_close);
  dx_options_set_hub(o, S.hub);
  dx_options_set_deflate(o, 1); /* offered by the test_compressed_subscribers clients only */
  if (max_buffered) {
    dx_options_set_watermarks(o, max_buffered / 4, max_buffered / 8);
    dx_options_set_max_buffered(o, max_buffered, DX_SLOW_CLOSE);
  }
  for (int i = 0; i < NLOOPS; i++) {
    S.loop[i] = dx_loop_new();
    S.srv[i] = dx_server_new(S.loop[i], o);
    assert_int_equal(dx_server_listen(S.srv[i], "127.0.0.1", 0), 0);
    S.port[i] = dx_server_port(S.srv[i]);
  }
  dx_options_free(o);
  for (int i = 0; i < NLOOPS; i++) pthread_create(&S.thread[i], NULL, run, S.loop[i]);
}

static void finish(void) {
  for (int i = 0; i < NLOOPS; i++) {
    dx_loop_post(S.loop[i], stop, NULL);
    pthread_join(S.thread[i], NULL);
  }
  for (int i = 0; i < NLOOPS; i++) {
    dx_server_free(S.srv[i]);
    /* Run once more so the freed server's connections are released. */
    dx_loop_free(S.loop[i]);
  }
  dx_hub_free(S.hub);
}

/* ---- a raw client ------------------------------------------------------- */

static long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Reads exactly n bytes (within WAIT_MS); 0 on success. */
static int read_n(int fd, void *buf, size_t n) {
  size_t got = 0;
  long end = now_ms() + WAIT_MS;
  while (got < n) {
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, (int)(end - now_ms())) <= 0) return -1;
    ssize_t r = read(fd, (char *)buf + got, n - got);
    if (r <= 0) return -1;
    got += (size_t)r;
  }
  return 0;
}

static int client_ext(int loop, int rcvbuf, const char *ext);
static int client(int loop, int rcvbuf) { return client_ext(loop, rcvbuf, NULL); }

static int client_ext(int loop, int rcvbuf, const char *ext) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (rcvbuf) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(S.port[loop])};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
  char req[512];
  int rn = snprintf(req, sizeof req, "%.*s%s%s%s\r\n", (int)(sizeof REQUEST - 3), REQUEST,
                    ext ? "Sec-WebSocket-Extensions: " : "", ext ? ext : "", ext ? "\r\n" : "");
  assert_int_equal(write(fd, req, (size_t)rn), rn);
  /* The 101 head, byte by byte up to its blank line. */
  char head[1024];
  size_t n = 0;
  while (n < 4 || memcmp(head + n - 4, "\r\n\r\n", 4)) {
    assert_true(n < sizeof head);
    assert_int_equal(read_n(fd, head + n, 1), 0);
    n++;
  }
  assert_memory_equal(head, "HTTP/1.1 101", 12);
  return fd;
}

static void send_text(int fd, const char *s) {
  size_t n = strlen(s);
  assert_true(n < 126);
  uint8_t f[2 + 4 + 126] = {0x81, (uint8_t)(0x80 | n), 1, 2, 3, 4};
  for (size_t i = 0; i < n; i++) f[6 + i] = (uint8_t)s[i] ^ f[2 + i % 4];
  assert_int_equal(write(fd, f, 6 + n), (ssize_t)(6 + n));
}

/* The next message: its opcode, and its payload (NUL-terminated) in a
 * buffer the caller frees. */
static uint8_t *recv_frame(int fd, int *opcode, size_t *len, int *rsv1);
static uint8_t *recv_msg(int fd, int *opcode, size_t *len) {
  int rsv1;
  uint8_t *p = recv_frame(fd, opcode, len, &rsv1);
  assert_int_equal(rsv1, 0); /* nothing compressed without permessage-deflate */
  return p;
}

static uint8_t *recv_frame(int fd, int *opcode, size_t *len, int *rsv1) {
  uint8_t h[10];
  assert_int_equal(read_n(fd, h, 2), 0);
  *opcode = h[0] & 0x0f;
  *rsv1 = (h[0] & 0x40) != 0;
  assert_int_equal(h[0] & 0xb0, 0x80); /* FIN, no RSV2/RSV3 */
  assert_int_equal(h[1] & 0x80, 0);    /* a server's frames are unmasked */
  uint64_t n = h[1] & 0x7f;
  if (n == 126) {
    assert_int_equal(read_n(fd, h, 2), 0);
    n = (uint64_t)h[0] << 8 | h[1];
  } else if (n == 127) {
    assert_int_equal(read_n(fd, h, 8), 0);
    n = 0;
    for (int i = 0; i < 8; i++) n = n << 8 | h[i];
  }
  uint8_t *p = malloc(n + 1);
  assert_non_null(p);
  assert_int_equal(read_n(fd, p, n), 0);
  p[n] = 0;
  *len = n;
  return p;
}

static void expect_text(int fd, const char *want) {
  int op;
  size_t n;
  uint8_t *p = recv_msg(fd, &op, &n);
  assert_int_equal(op, 1);
  assert_string_equal((char *)p, want);
  free(p);
}

/* Ends with a probe: the next message must be "probe" (nothing else came). */
static void expect_nothing_more(int fd) {
  send_text(fd, "say probe");
  expect_text(fd, "probe");
}

static void sub(int fd, const char *topic, const char *want) {
  char cmd[128];
  snprintf(cmd, sizeof cmd, "sub %s", topic);
  send_text(fd, cmd);
  expect_text(fd, want);
}

static void unsub(int fd, const char *topic, const char *want) {
  char cmd[128];
  snprintf(cmd, sizeof cmd, "unsub %s", topic);
  send_text(fd, cmd);
  expect_text(fd, want);
}

static size_t hub_topics(void) {
  dx_hub_stats st;
  dx_hub_get_stats(S.hub, &st);
  return st.topics;
}

/* Waits until the hub counts `n` topics (subscriptions end on the loop's
 * thread after the socket closes). */
static void wait_topics(size_t n) {
  long end = now_ms() + WAIT_MS;
  while (hub_topics() != n && now_ms() < end) usleep(1000);
  assert_int_equal(hub_topics(), n);
}

/* ---- tests -------------------------------------------------------------- */

/* A publish from a subscriber reaches every other subscriber once, on
 * both loops, and not the sender; "puball" reaches the sender too. */
static void test_fanout_excludes_sender(void **state) {
  (void)state;
  start(0);
  int fd[4];
  for (int i = 0; i < 4; i++) {
    fd[i] = client(i % NLOOPS, 0);
    sub(fd[i], "room", "topics 1");
  }
  int other = client(0, 0); /* subscribed to nothing */
  send_text(fd[0], "pub room hello");
  for (int i = 1; i < 4; i++) expect_text(fd[i], "hello");
  send_text(fd[3], "puball room again");
  for (int i = 0; i < 4; i++) expect_text(fd[i], "again");
  for (int i = 0; i < 4; i++) expect_nothing_more(fd[i]);
  expect_nothing_more(other);
  assert_int_equal(hub_topics(), 1);
  for (int i = 0; i < 4; i++) close(fd[i]);
  close(other);
  wait_topics(0);
  finish();
}

/* Subscribing and unsubscribing in every order: a topic's members and a
 * connection's topics are indexed both ways, and moving entries must keep
 * both sides right. */
static void test_subscribe_unsubscribe_orders(void **state) {
  (void)state;
  start(0);
  static const int orders[][3] = {{0, 1, 2}, {0, 2, 1}, {1, 0, 2}, {1, 2, 0}, {2, 0, 1}, {2, 1, 0}};
  const char *topics[] = {"t0", "t1", "t2"};
  for (size_t o = 0; o < sizeof orders / sizeof orders[0]; o++) {
    int a = client(0, 0), b = client(0, 0), c = client(1, 0);
    for (int i = 0; i < 3; i++) {
      char want[16];
      snprintf(want, sizeof want, "topics %d", i + 1);
      sub(a, topics[i], want);
      sub(b, topics[i], want);
      sub(c, topics[i], want);
    }
    sub(a, "t1", "topics 3"); /* again: a no-op */
    for (int k = 0; k < 3; k++) {
      int gone = orders[o][k];
      char want[16];
      snprintf(want, sizeof want, "topics %d", 2 - k);
      unsub(b, topics[gone], want);
      /* every topic still reaches a and c; b only those it holds */
      for (int i = 0; i < 3; i++) {
        char cmd[32];
        snprintf(cmd, sizeof cmd, "puball %s m%d", topics[i], i);
        send_text(c, cmd);
        snprintf(cmd, sizeof cmd, "m%d", i);
        expect_text(a, cmd);
        expect_text(c, cmd);
        int held = 1;
        for (int j = 0; j <= k; j++)
          if (orders[o][j] == i) held = 0;
        if (held) expect_text(b, cmd);
      }
      expect_nothing_more(b);
    }
    /* a disconnects holding three topics; c still gets them */
    close(a);
    unsub(c, "t0", "topics 2");
    send_text(b, "puball t1 x");
    expect_text(c, "x");
    expect_nothing_more(c);
    close(b);
    close(c);
    wait_topics(0);
  }
  finish();
}

/* Shared frames and a connection's own messages leave in the order they
 * were queued, whichever queue holds them, and a large shared frame that
 * takes many writes arrives whole. */
static void test_order_of_shared_and_own(void **state) {
  (void)state;
  start(0);
  int fd = client(0, 4096); /* a small receive buffer: partial writes */
  sub(fd, "o", "topics 1");
  send_text(fd, "mix o");
  expect_text(fd, "1");
  expect_text(fd, "2");
  expect_text(fd, "3");
  int op;
  size_t n;
  uint8_t *p = recv_msg(fd, &op, &n);
  assert_int_equal(op, 2);
  assert_int_equal(n, 300000);
  for (size_t i = 0; i < n; i++)
    if (p[i] != 'e') fail_msg("byte %zu of the big message is %d", i, p[i]);
  free(p);
  expect_text(fd, "5");
  expect_nothing_more(fd);
  close(fd);
  finish();
}

/* With permessage-deflate (context takeover both ways, and a smaller
 * window), a published message arrives compressed (RSV1) and decodes in
 * the subscriber's one inflate stream, between the connection's own
 * compressed messages, which still decode after it. */
static void zmix_with(const char *ext, int wbits) {
  int fd = client_ext(0, 0, ext);
  sub(fd, "z", "topics 1");
  send_text(fd, "zmix z");
  z_stream zs = {0};
  assert_int_equal(inflateInit2(&zs, -wbits), Z_OK);
  for (int k = 0; k < 4; k++) {
    int op, rsv1;
    size_t n;
    uint8_t *p = recv_frame(fd, &op, &n, &rsv1);
    assert_int_equal(op, 1);
    if (!rsv1) fail_msg("message %d of %s came uncompressed", k, ext);
    uint8_t *in = realloc(p, n + 4);
    memcpy(in + n, "\x00\x00\xff\xff", 4);
    char out[400];
    zs.next_in = in;
    zs.avail_in = (uInt)(n + 4);
    zs.next_out = (Bytef *)out;
    zs.avail_out = sizeof out;
    int zr = inflate(&zs, Z_SYNC_FLUSH);
    if (zr != Z_OK) fail_msg("message %d does not inflate (%d) with %s", k, zr, ext);
    assert_int_equal(sizeof out - zs.avail_out, 300);
    for (size_t i = 0; i < 300; i++) {
      char want = k % 2 == 0 ? (char)('a' + i % 7) : (char)('A' + i % 11);
      if (out[i] != want) fail_msg("message %d byte %zu: %c, not %c (%s)", k, i, out[i], want, ext);
    }
    free(in);
  }
  inflateEnd(&zs);
  expect_nothing_more(fd);
  close(fd);
}

static void test_compressed_subscribers(void **state) {
  (void)state;
  start(0);
  zmix_with("permessage-deflate", 15);
  zmix_with("permessage-deflate; server_max_window_bits=10", 10);
  zmix_with("permessage-deflate; server_no_context_takeover", 15);
  finish();
}

/* Publishes from a thread that is not a loop's, and from both loops at
 * once, arrive at every subscriber exactly once and in each publisher's
 * order. */
#define NSEQ 2000
static void *publisher(void *p) {
  const char *tag = p;
  for (int i = 0; i < NSEQ; i++) {
    char m[32];
    int n = snprintf(m, sizeof m, "%s%d", tag, i);
    assert_int_equal(dx_publish(S.hub, "seq", 3, DX_TEXT, m, (size_t)n, NULL), 0);
  }
  return NULL;
}

static void test_order_across_threads(void **state) {
  (void)state;
  start(0);
  int fd[4];
  for (int i = 0; i < 4; i++) {
    fd[i] = client(i % NLOOPS, 0);
    sub(fd[i], "seq", "topics 1");
  }
  pthread_t th[2];
  pthread_create(&th[0], NULL, publisher, "a");
  pthread_create(&th[1], NULL, publisher, "b");
  for (int i = 0; i < 4; i++) {
    int next[2] = {0, 0};
    for (int k = 0; k < 2 * NSEQ; k++) {
      int op;
      size_t n;
      char *m = (char *)recv_msg(fd[i], &op, &n);
      int who = m[0] == 'b';
      int seq = atoi(m + 1);
      if (seq != next[who]) fail_msg("client %d: %s after %c%d", i, m, m[0], next[who] - 1);
      next[who]++;
      free(m);
    }
  }
  pthread_join(th[0], NULL);
  pthread_join(th[1], NULL);
  for (int i = 0; i < 4; i++) {
    expect_nothing_more(fd[i]);
    close(fd[i]);
  }
  dx_hub_stats st;
  dx_hub_get_stats(S.hub, &st);
  assert_int_equal(st.publishes, 2 * NSEQ);
  assert_int_equal(st.deliveries, 4 * 2 * NSEQ);
  finish();
}

/* A subscriber that never reads is closed with 1008 once its queue passes
 * the cap; the others get every message regardless. */
static void test_slow_subscriber_is_dropped_alone(void **state) {
  (void)state;
  start(256 * 1024);
  int slow = client(0, 4096);
  sub(slow, "s", "topics 1");
  int fast = client(0, 0);
  sub(fast, "s", "topics 1");
  static char msg[16384];
  memset(msg, 'z', sizeof msg);
  /* 32 MiB: more than the kernel's socket buffers can hide. */
  for (int i = 0; i < 2048; i++) {
    assert_int_equal(dx_publish(S.hub, "s", 1, DX_BINARY, msg, sizeof msg, NULL), 0);
    int op;
    size_t n;
    uint8_t *p = recv_msg(fast, &op, &n);
    assert_int_equal(n, sizeof msg);
    free(p);
  }
  long end = now_ms() + WAIT_MS;
  while (atomic_load(&S.slow_closes) == 0 && now_ms() < end) usleep(1000);
  assert_int_equal(atomic_load(&S.slow_closes), 1);
  dx_hub_stats st;
  dx_hub_get_stats(S.hub, &st);
  assert_true(st.slow_drops >= 1);
  expect_nothing_more(fast);
  close(slow);
  close(fast);
  finish();
}

/* The hub's Redis engine on loop 0 (no Redis listens: it only retries),
 * and the servers freed one loop after the other, loop 0 first, as the
 * hub's documentation allows. Loop 1's subscriber leaves its room when its
 * loop is freed: the hub must not post the engine's UNSUBSCRIBE to loop 0,
 * already freed (nor may a publish hand anything to it). */
static void test_engine_loop_freed_first(void **state) {
  (void)state;
  memset(&S, 0, sizeof S);
  S.hub = dx_hub_new();
  dx_options *o = dx_options_new();
  dx_options_on_message(o, on_message);
  dx_options_set_hub(o, S.hub);
  for (int i = 0; i < NLOOPS; i++) {
    S.loop[i] = dx_loop_new();
    S.srv[i] = dx_server_new(S.loop[i], o);
    assert_int_equal(dx_server_listen(S.srv[i], "127.0.0.1", 0), 0);
    S.port[i] = dx_server_port(S.srv[i]);
  }
  dx_options_free(o);
  assert_int_equal(dx_hub_use_redis(S.hub, S.loop[0], "redis://127.0.0.1:19601"), 0);
  for (int i = 0; i < NLOOPS; i++) pthread_create(&S.thread[i], NULL, run, S.loop[i]);
  int fd = client(1, 0);
  /* The engine's SUBSCRIBE is posted to loop 0 before the stop below is. */
  sub(fd, "room", "topics 1");
  for (int i = 0; i < NLOOPS; i++) {
    dx_loop_post(S.loop[i], stop, NULL);
    pthread_join(S.thread[i], NULL);
  }
  dx_server_free(S.srv[0]);
  dx_loop_free(S.loop[0]);
  /* Any thread may publish: nothing reaches the engine now (lost). */
  assert_int_equal(dx_publish(S.hub, "room", 4, DX_TEXT, "x", 1, NULL), 0);
  dx_server_free(S.srv[1]);
  dx_loop_free(S.loop[1]); /* the subscriber leaves "room" */
  dx_hub_stats st;
  dx_hub_get_stats(S.hub, &st);
  assert_int_equal(st.topics, 0);
  assert_int_equal(st.engine_state, 0); /* down, for good */
  assert_true(st.remote_lost >= 1);
  close(fd);
  dx_hub_free(S.hub);
}

/* Bad arguments are refused, not crashed on. */
static void test_bad_arguments(void **state) {
  (void)state;
  dx_hub *h = dx_hub_new();
  char big[DX_TOPIC_MAX + 1] = {0};
  assert_int_equal(dx_publish(h, "", 0, DX_TEXT, "x", 1, NULL), DX_EINVAL);
  assert_int_equal(dx_publish(h, big, sizeof big, DX_TEXT, "x", 1, NULL), DX_EINVAL);
  assert_int_equal(dx_publish(h, "t", 1, (dx_msg_type)7, "x", 1, NULL), DX_EINVAL);
  assert_int_equal(dx_publish(h, "t", 1, DX_TEXT, NULL, 1, NULL), DX_EINVAL);
  assert_int_equal(dx_publish(NULL, "t", 1, DX_TEXT, "x", 1, NULL), DX_EINVAL);
  assert_int_equal(dx_publish(h, "t", 1, DX_TEXT, "x", 1, NULL), 0); /* nobody: fine */
  assert_int_equal(dx_subscribe(NULL, "t", 1), DX_EINVAL);
  dx_hub_free(h);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_bad_arguments),
      cmocka_unit_test(test_fanout_excludes_sender),
      cmocka_unit_test(test_subscribe_unsubscribe_orders),
      cmocka_unit_test(test_order_of_shared_and_own),
      cmocka_unit_test(test_order_across_threads),
      cmocka_unit_test(test_compressed_subscribers),
      cmocka_unit_test(test_slow_subscriber_is_dropped_alone),
      cmocka_unit_test(test_engine_loop_freed_first),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
