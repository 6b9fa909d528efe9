/* A connection on a real loop, seen from the application's side, in the
 * situations the interop suites cannot create:
 * - the epoll registration of an accepted TLS connection fails
 *   (epoll_ctl is wrapped: -Wl,--wrap=epoll_ctl): the TLS state made for
 *   it is freed (SSL_new and SSL_free are counted the same way, and ASan's
 *   leak check runs at exit in the sanitizer build), the client sees its
 *   connection end, and the server goes on serving. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "certs.h"
#include "duplex.h"

static struct {
  dx_loop *loop;
  dx_server *srv;
  uint16_t port;
  /* the epoll_ctl wrapper */
  int fail_adds;      /* EPOLL_CTL_ADDs of accepted sockets still to fail */
  int failed_adds;    /* how many it failed */
  /* TLS sessions duplex_static holds */
  long ssl_live;
  /* the TLS case */
  int srv_opens, srv_closes, cli_opens, cli_closes, echoes;
  int cli_code;
  dx_why cli_why;
  char cli_reason[128];
  int watchdog_fired;
} W;

/* ---- wrapped calls ------------------------------------------------------ */

int __real_epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev);
SSL *__real_SSL_new(SSL_CTX *ctx);
void __real_SSL_free(SSL *ssl);

static int is_listening(int fd) {
  int on = 0;
  socklen_t n = sizeof on;
  return getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &on, &n) == 0 && on;
}

/* A socket the server accepted: its local port is the server's, and it is
 * not the listener (the clients' sockets have ports of their own). */
static int is_accepted(int fd) {
  struct sockaddr_storage a;
  socklen_t n = sizeof a;
  if (!W.port || is_listening(fd) || getsockname(fd, (struct sockaddr *)&a, &n) != 0) return 0;
  if (a.ss_family == AF_INET) return ntohs(((struct sockaddr_in *)&a)->sin_port) == W.port;
  if (a.ss_family == AF_INET6) return ntohs(((struct sockaddr_in6 *)&a)->sin6_port) == W.port;
  return 0;
}

int __wrap_epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev) {
  if (op == EPOLL_CTL_ADD && W.fail_adds > 0 && is_accepted(fd)) {
    W.fail_adds--;
    W.failed_adds++;
    errno = ENOMEM;
    return -1;
  }
  return __real_epoll_ctl(epfd, op, fd, ev);
}

SSL *__wrap_SSL_new(SSL_CTX *ctx) {
  SSL *s = __real_SSL_new(ctx);
  if (s) W.ssl_live++;
  return s;
}

void __wrap_SSL_free(SSL *ssl) {
  if (ssl) W.ssl_live--;
  __real_SSL_free(ssl);
}

/* ---- running the loop --------------------------------------------------- */

static void watchdog(dx_loop *loop, int fd, void *ud) {
  (void)ud;
  uint64_t n;
  assert_int_equal(read(fd, &n, sizeof n), (ssize_t)sizeof n);
  W.watchdog_fired = 1;
  dx_loop_stop(loop);
}

/* Runs the loop until a callback stops it. The watchdog only keeps a bug
 * from hanging the suite (30 s, far beyond any case here): what each case
 * checks afterwards are counts. */
static void run_loop(void) {
  int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  assert_true(tfd >= 0);
  struct itimerspec its = {.it_value = {30, 0}};
  assert_int_equal(timerfd_settime(tfd, 0, &its, NULL), 0);
  assert_int_equal(dx_loop_watch_fd(W.loop, tfd, watchdog, NULL), 0);
  assert_int_equal(dx_loop_run(W.loop), 0);
  dx_loop_unwatch_fd(W.loop, tfd);
  close(tfd);
  assert_false(W.watchdog_fired);
}

static void start_server(dx_options *o) {
  W.loop = dx_loop_new();
  assert_non_null(W.loop);
  assert_int_equal(dx_options_set_ping(o, 0, 0), 0);
  W.srv = dx_server_new(W.loop, o);
  dx_options_free(o);
  if (!W.srv) fprintf(stderr, "dx_server_new: %s\n", dx_last_error());
  assert_non_null(W.srv);
  assert_int_equal(dx_server_listen(W.srv, "127.0.0.1", 0), 0);
  W.port = dx_server_port(W.srv);
}

/* ---- TLS state when the epoll registration fails ------------------------- */

static void tls_srv_open(dx_conn *c) {
  (void)c;
  W.srv_opens++;
}
static void tls_srv_message(dx_conn *c, dx_msg_type t, const uint8_t *p, size_t n) {
  assert_int_equal(dx_send(c, t, p, n), 0); /* echo */
}
static void tls_srv_close(dx_conn *c, int code, const char *reason, dx_why why, int st) {
  (void)c, (void)code, (void)reason, (void)why, (void)st;
  W.srv_closes++;
}
static void tls_cli_open(dx_conn *c) {
  W.cli_opens++;
  assert_int_equal(dx_send(c, DX_TEXT, "hello", 5), 0);
}
static void tls_cli_message(dx_conn *c, dx_msg_type t, const uint8_t *p, size_t n) {
  assert_int_equal(t, DX_TEXT);
  assert_int_equal(n, 5);
  assert_memory_equal(p, "hello", 5);
  W.echoes++;
  assert_int_equal(dx_close(c, DX_CLOSE_NORMAL, "done"), 0);
}
static void tls_cli_close(dx_conn *c, int code, const char *reason, dx_why why, int st) {
  (void)c, (void)st;
  W.cli_closes++;
  W.cli_code = code;
  W.cli_why = why;
  snprintf(W.cli_reason, sizeof W.cli_reason, "%s", reason);
  fprintf(stderr, "  client on_close: %d \"%s\" (%s)\n", code, reason, dx_why_name(why));
  dx_loop_stop(W.loop);
}

static void connect_tls_client(void) {
  dx_options *o = dx_options_new();
  assert_non_null(o);
  dx_options_on_open(o, tls_cli_open);
  dx_options_on_message(o, tls_cli_message);
  dx_options_on_close(o, tls_cli_close);
  assert_int_equal(dx_options_set_tls_ca(o, cert("ca.pem")), 0);
  assert_int_equal(dx_options_set_ping(o, 0, 0), 0);
  char url[64];
  snprintf(url, sizeof url, "wss://127.0.0.1:%u/", (unsigned)W.port);
  dx_conn *c;
  assert_int_equal(dx_connect(W.loop, url, o, &c), 0);
  dx_options_free(o);
}

static void test_tls_state_freed_when_epoll_refuses_a_connection(void **state) {
  (void)state;
  memset(&W, 0, sizeof W);
  dx_options *o = dx_options_new();
  assert_non_null(o);
  dx_options_on_open(o, tls_srv_open);
  dx_options_on_message(o, tls_srv_message);
  dx_options_on_close(o, tls_srv_close);
  assert_int_equal(dx_options_set_tls_cert(o, cert("server.pem"), cert("server.key")), 0);
  start_server(o);

  /* The first connection: TLS starts on it (an SSL is made), then its
   * registration with epoll fails. */
  W.fail_adds = 1;
  connect_tls_client();
  run_loop();
  assert_int_equal(W.failed_adds, 1); /* the wrapper did fail it */
  assert_int_equal(W.cli_closes, 1);  /* the client saw its connection end */
  assert_int_equal(W.cli_opens, 0);
  /* Ended by the server (it closed the socket, unread: a reset), not by
   * the client's handshake timeout. */
  assert_int_equal(W.cli_why, DX_WHY_HANDSHAKE_FAILED);
  assert_string_equal(W.cli_reason, "socket error: Connection reset by peer");
  assert_int_equal(W.srv_opens, 0);
  assert_int_equal(dx_server_connections(W.srv), 0);
  /* Both ends' TLS sessions are gone: the server's with the refused
   * connection, the client's with its connection. */
  assert_int_equal(W.ssl_live, 0);

  /* The server goes on: a second connection opens, echoes and closes. */
  connect_tls_client();
  run_loop();
  assert_int_equal(W.failed_adds, 1);
  assert_int_equal(W.cli_opens, 1);
  assert_int_equal(W.srv_opens, 1);
  assert_int_equal(W.echoes, 1);
  assert_int_equal(W.cli_closes, 2);
  assert_int_equal(W.cli_code, DX_CLOSE_NORMAL);
  assert_int_equal(W.cli_why, DX_WHY_LOCAL);
  assert_string_equal(W.cli_reason, "done"); /* the reason it sent */

  dx_server_free(W.srv);
  dx_loop_free(W.loop);
  assert_int_equal(W.srv_closes, 1);
  assert_int_equal(W.ssl_live, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_tls_state_freed_when_epoll_refuses_a_connection),
  };
  return cmocka_run_group_tests(tests, certs_group_setup, certs_group_teardown);
}
