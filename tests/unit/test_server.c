/* The server's accept path, with raw TCP clients on loopback:
 * - deferred accept (the default): a client that connected but sent nothing
 *   is not yet a connection of the server; with dx_options_set_defer_accept
 *   off it is one as soon as TCP completed;
 * - a batch of connections whose requests were all waiting when the server
 *   woke up, on two listeners, answered at once, while the first one's
 *   on_open shuts the server down or frees it (the others must be dropped,
 *   and nothing touched after the free, the other listener's event in the
 *   same batch included: ASan checks that in the sanitizer run);
 * - dx_conn_path, for paths kept inside the connection (up to 7 bytes) and
 *   allocated ones, from on_open to on_close. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "duplex.h"

#define BATCH 8 /* clients whose requests wait together in the backlog */

static const char REQUEST[] =
    "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
    "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Version: 13\r\n\r\n";

static struct {
  dx_loop *loop;
  dx_server *srv;
  uint16_t port; /* the first listener's */
  int opens, closes;
  int last_code;
  dx_why last_why;
  enum { NOTHING, SHUTDOWN_IN_OPEN, FREE_IN_OPEN } in_open;
  char open_path[64], close_path[64]; /* dx_conn_path in the last on_open, on_close */
} W;

static void on_open(dx_conn *c) {
  snprintf(W.open_path, sizeof W.open_path, "%s", dx_conn_path(c));
  if (W.opens++) return;
  if (W.in_open == SHUTDOWN_IN_OPEN) {
    assert_int_equal(dx_server_shutdown(W.srv, 2000), 0);
  } else if (W.in_open == FREE_IN_OPEN) {
    dx_server_free(W.srv);
    W.srv = NULL;
  }
}

static void on_close(dx_conn *c, int code, const char *reason, dx_why why, int status) {
  (void)reason, (void)status;
  snprintf(W.close_path, sizeof W.close_path, "%s", dx_conn_path(c));
  W.closes++;
  W.last_code = code;
  W.last_why = why;
}

static void stop_loop(dx_loop *loop, int fd, void *ud) {
  (void)ud;
  uint64_t n;
  assert_int_equal(read(fd, &n, sizeof n), (ssize_t)sizeof n);
  dx_loop_stop(loop);
}

/* Runs the loop for `ms` (the timer's own watch keeps it running). */
static void run_for(int ms) {
  int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  assert_true(tfd >= 0);
  struct itimerspec its = {.it_value = {ms / 1000, (long)(ms % 1000) * 1000000L}};
  assert_int_equal(timerfd_settime(tfd, 0, &its, NULL), 0);
  assert_int_equal(dx_loop_watch_fd(W.loop, tfd, stop_loop, NULL), 0);
  assert_int_equal(dx_loop_run(W.loop), 0);
  dx_loop_unwatch_fd(W.loop, tfd);
  close(tfd);
}

static void start_server(int defer) {
  memset(&W, 0, sizeof W);
  W.loop = dx_loop_new();
  assert_non_null(W.loop);
  dx_options *o = dx_options_new();
  assert_non_null(o);
  dx_options_on_open(o, on_open);
  dx_options_on_close(o, on_close);
  assert_int_equal(dx_options_set_ping(o, 0, 0), 0);
  dx_options_set_defer_accept(o, defer);
  W.srv = dx_server_new(W.loop, o);
  dx_options_free(o);
  assert_non_null(W.srv);
  assert_int_equal(dx_server_listen(W.srv, "127.0.0.1", 0), 0);
  W.port = dx_server_port(W.srv);
}

static void stop_server(void) {
  if (W.srv) dx_server_free(W.srv);
  dx_loop_free(W.loop);
}

/* A blocking client socket connected to the server (the kernel completes
 * TCP without the server's help). */
static int connect_client(uint16_t port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  assert_true(fd >= 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
  struct timeval tv = {5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return fd;
}

/* Everything the server sent until it ended TCP, or -1 if it reset the
 * connection (closing a socket whose request it never read does that). A
 * silence of 5 s fails. */
static long read_to_eof(int fd, char *buf, size_t cap) {
  size_t got = 0;
  for (;;) {
    ssize_t r = recv(fd, buf + got, cap - 1 - got, 0);
    if (r == 0) break;
    if (r < 0 && errno == ECONNRESET) return -1;
    assert_true(r > 0);
    got += (size_t)r;
    assert_true(got < cap - 1);
  }
  buf[got] = 0;
  return (long)got;
}

/* The server's first bytes on fd are a 101. */
static void expect_101(int fd) {
  char buf[512];
  ssize_t r = recv(fd, buf, sizeof buf - 1, 0);
  assert_true(r > 12);
  assert_memory_equal(buf, "HTTP/1.1 101", 12);
}

/* A client connects and sends nothing for 200 ms: how many connections
 * the server holds then. Returns the client's socket. */
static int silent_client(int defer, size_t expect_conns) {
  start_server(defer);
  int fd = connect_client(W.port);
  run_for(200);
  assert_int_equal(dx_server_connections(W.srv), expect_conns);
  assert_int_equal(W.opens, 0);
  return fd;
}

static void test_silent_client_waits_in_the_kernel(void **state) {
  (void)state;
  int fd = silent_client(1, 0);
  /* Its request arrives: accepted and answered in the same wake-up. */
  assert_int_equal(send(fd, REQUEST, sizeof REQUEST - 1, 0), (ssize_t)(sizeof REQUEST - 1));
  run_for(500); /* generous: the sanitizer build is slower */
  assert_int_equal(W.opens, 1);
  assert_int_equal(dx_server_connections(W.srv), 1);
  expect_101(fd);
  close(fd);
  stop_server();
}

/* The first bytes wake the server, but they are not a whole head: the
 * read at accept time takes what is there, and epoll brings the rest. */
static void test_request_head_in_two_parts(void **state) {
  (void)state;
  start_server(1);
  int fd = connect_client(W.port);
  const size_t first = 20; /* "GET / HTTP/1.1\r\nHost" */
  assert_int_equal(send(fd, REQUEST, first, 0), (ssize_t)first);
  run_for(200);
  assert_int_equal(dx_server_connections(W.srv), 1);
  assert_int_equal(W.opens, 0);
  assert_int_equal(send(fd, REQUEST + first, sizeof REQUEST - 1 - first, 0),
                   (ssize_t)(sizeof REQUEST - 1 - first));
  run_for(500);
  assert_int_equal(W.opens, 1);
  expect_101(fd);
  close(fd);
  stop_server();
}

static void test_without_defer_silent_client_is_a_connection(void **state) {
  (void)state;
  close(silent_client(0, 1));
  stop_server();
}

/* BATCH clients connect, half to each of two listeners, and send their
 * requests before the server runs, so one wake-up reports both listeners;
 * the first on_open does `act`. Returns how many clients got a 101. */
static int batch_with(int act, int fds[BATCH]) {
  start_server(1);
  assert_int_equal(dx_server_listen(W.srv, "127.0.0.1", 0), 0);
  uint16_t ports[2] = {W.port, dx_server_port(W.srv)};
  W.in_open = act;
  for (int i = 0; i < BATCH; i++) {
    fds[i] = connect_client(ports[i % 2]);
    assert_int_equal(send(fds[i], REQUEST, sizeof REQUEST - 1, 0),
                     (ssize_t)(sizeof REQUEST - 1));
  }
  usleep(50 * 1000); /* let the kernel queue every request */
  run_for(3000);     /* past the shutdown's 2 s deadline */
  int upgraded = 0;
  for (int i = 0; i < BATCH; i++) {
    char buf[1024];
    long n = read_to_eof(fds[i], buf, sizeof buf);
    if (n >= 12 && memcmp(buf, "HTTP/1.1 101", 12) == 0) upgraded++;
    else assert_true(n <= 0); /* dropped during its handshake: no bytes */
    close(fds[i]);
  }
  return upgraded;
}

/* Whatever the first on_open does, only that connection opened and it
 * alone reports its end (why: server shutdown); the others were dropped
 * in their handshake, without callbacks. */
static void expect_batch(int act, int upgraded) {
  int fds[BATCH];
  assert_int_equal(batch_with(act, fds), upgraded);
  assert_int_equal(W.opens, 1);
  assert_int_equal(W.closes, 1);
  assert_int_equal(W.last_why, DX_WHY_SERVER_SHUTDOWN);
  if (W.srv) assert_int_equal(dx_server_connections(W.srv), 0);
  stop_server();
}

/* dx_server_free cuts every connection, the first one too: its 101 was
 * still queued when on_open ran, so no client sees any byte. */
static void test_free_in_open_during_accept_batch(void **state) {
  (void)state;
  expect_batch(FREE_IN_OPEN, 0);
  assert_null(W.srv);
}

/* The opened client gets its 101 and the 1001; it never answers (it reads
 * to EOF only after the loop ran), so the 2 s deadline ends it. */
static void test_shutdown_in_open_during_accept_batch(void **state) {
  (void)state;
  expect_batch(SHUTDOWN_IN_OPEN, 1);
}

/* The request path comes back from dx_conn_path as sent, query included,
 * whether it fits inside the connection (7 bytes or fewer) or not, and
 * stays valid until on_close. */
static void test_conn_path(void **state) {
  (void)state;
  static const char *const paths[] = {"/", "/abcdef", "/abcdefg", "/rooms/x?y=1"};
  for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
    start_server(1);
    int fd = connect_client(W.port);
    char req[512];
    int n = snprintf(req, sizeof req, "GET %s%s", paths[i], REQUEST + 5); /* past "GET /" */
    assert_int_equal(send(fd, req, (size_t)n, 0), n);
    run_for(500);
    assert_int_equal(W.opens, 1);
    assert_string_equal(W.open_path, paths[i]);
    expect_101(fd);
    close(fd);
    run_for(500);
    assert_int_equal(W.closes, 1);
    assert_string_equal(W.close_path, paths[i]);
    stop_server();
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_silent_client_waits_in_the_kernel),
      cmocka_unit_test(test_request_head_in_two_parts),
      cmocka_unit_test(test_without_defer_silent_client_is_a_connection),
      cmocka_unit_test(test_free_in_open_during_accept_batch),
      cmocka_unit_test(test_shutdown_in_open_during_accept_batch),
      cmocka_unit_test(test_conn_path),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
