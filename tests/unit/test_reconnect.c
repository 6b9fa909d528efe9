/* The reconnecting client (src/reconnect.c): the backoff arithmetic and
 * the default reconnect rule exactly, then the public dx_client_* API end
 * to end against an in-process dx_server (or a closed port) on 127.0.0.1. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "duplex.h"
#include "reconnect.h"

/* ======================================================================== */
/* Backoff                                                                  */
/* ======================================================================== */

static void test_backoff_sequence_without_jitter(void **state) {
  (void)state;
  const uint32_t want[] = {1000, 2000, 4000, 5000, 5000};
  for (unsigned n = 1; n <= 5; n++) {
    /* With randomization 0 the draw must not matter. */
    assert_int_equal(dx__reconnect_delay(1000, 5000, 0.0, n, 0.0), want[n - 1]);
    assert_int_equal(dx__reconnect_delay(1000, 5000, 0.0, n, -1.0), want[n - 1]);
    assert_int_equal(dx__reconnect_delay(1000, 5000, 0.0, n, 0.999), want[n - 1]);
  }
  /* Far attempts saturate at max instead of overflowing the shift. */
  assert_int_equal(dx__reconnect_delay(1000, 5000, 0.0, 33, 0.0), 5000);
  assert_int_equal(dx__reconnect_delay(1000, 5000, 0.0, 64, 0.0), 5000);
  assert_int_equal(dx__reconnect_delay(1000, 5000, 0.0, UINT_MAX, 0.0), 5000);
  assert_int_equal(dx__reconnect_delay(UINT32_MAX, UINT32_MAX, 0.0, 40, 0.0), UINT32_MAX);
  /* Attempt 0 is treated as the first. */
  assert_int_equal(dx__reconnect_delay(1000, 5000, 0.0, 0, 0.0), 1000);
  /* Doubling is from initial, capped by max at every step. */
  assert_int_equal(dx__reconnect_delay(3000, 5000, 0.0, 1, 0.0), 3000);
  assert_int_equal(dx__reconnect_delay(3000, 5000, 0.0, 2, 0.0), 5000);
  assert_int_equal(dx__reconnect_delay(7, 100, 0.0, 4, 0.0), 56);
  assert_int_equal(dx__reconnect_delay(7, 100, 0.0, 5, 0.0), 100);
}

static void test_backoff_jitter_bounds(void **state) {
  (void)state;
  /* The extremes of the draw land on the bounds: +-50% of the delay. */
  assert_int_equal(dx__reconnect_delay(1000, 5000, 0.5, 1, -1.0), 500);
  assert_int_equal(dx__reconnect_delay(1000, 5000, 0.5, 1, 0.0), 1000);
  assert_int_equal(dx__reconnect_delay(1000, 5000, 0.5, 1, 1.0), 1500);
  /* Jitter is applied after the cap: attempt 4 varies around max. */
  assert_int_equal(dx__reconnect_delay(1000, 5000, 0.5, 4, -1.0), 2500);
  assert_int_equal(dx__reconnect_delay(1000, 5000, 0.5, 4, 1.0), 7500);
  assert_int_equal(dx__reconnect_delay(1000, 5000, 1.0, 2, -1.0), 0);

  /* Real draws: inside the bounds, spread over both halves, centred. */
  uint64_t rng = 0x0123456789abcdefu;
  const uint32_t base[] = {1000, 2000, 4000, 5000, 5000};
  for (unsigned n = 1; n <= 5; n++) {
    uint32_t lo = base[n - 1] / 2, hi = base[n - 1] + base[n - 1] / 2;
    uint32_t min = UINT32_MAX, max = 0;
    double sum = 0;
    const int draws = 20000;
    for (int i = 0; i < draws; i++) {
      double u = dx__reconnect_unit(&rng);
      assert_true(u >= -1.0 && u < 1.0);
      uint32_t d = dx__reconnect_delay(1000, 5000, 0.5, n, u);
      assert_in_range(d, lo, hi);
      if (d < min) min = d;
      if (d > max) max = d;
      sum += d;
    }
    /* 20000 uniform draws reach within 1% of each end. */
    assert_true(min < lo + base[n - 1] / 100);
    assert_true(max > hi - base[n - 1] / 100);
    double mean = sum / draws;
    assert_true(fabs(mean - base[n - 1]) < base[n - 1] * 0.02);
  }
}

static void test_unit_draws_differ_by_seed(void **state) {
  (void)state;
  uint64_t a = 1, b = 2;
  int same = 0;
  for (int i = 0; i < 100; i++) same += dx__reconnect_unit(&a) == dx__reconnect_unit(&b);
  assert_true(same < 5);
}

/* ======================================================================== */
/* The default rule                                                          */
/* ======================================================================== */

static void test_default_rule_table(void **state) {
  (void)state;
  static const struct {
    int code;
    dx_why why;
    int status;
    int want;
  } rows[] = {
      /* the server's close frame */
      {1000, DX_WHY_PEER, 0, 0},
      {1001, DX_WHY_PEER, 0, 1},
      {1002, DX_WHY_PEER, 0, 0},
      {1003, DX_WHY_PEER, 0, 0},
      {1005, DX_WHY_PEER, 0, 0},
      {1007, DX_WHY_PEER, 0, 0},
      {1008, DX_WHY_PEER, 0, 0},
      {1009, DX_WHY_PEER, 0, 0},
      {1011, DX_WHY_PEER, 0, 1},
      {1012, DX_WHY_PEER, 0, 1},
      {1013, DX_WHY_PEER, 0, 1},
      {1014, DX_WHY_PEER, 0, 1},
      {3000, DX_WHY_PEER, 0, 0},
      {4000, DX_WHY_PEER, 0, 0},
      {4001, DX_WHY_PEER, 0, 0},
      {4999, DX_WHY_PEER, 0, 0},
      /* this side closed: never, whatever the code */
      {1000, DX_WHY_LOCAL, 0, 0},
      {1006, DX_WHY_LOCAL, 0, 0},
      {1012, DX_WHY_LOCAL, 0, 0},
      /* the connection failed under us */
      {1006, DX_WHY_TRANSPORT_CLOSE, 0, 1},
      {1006, DX_WHY_TRANSPORT_ERROR, 0, 1},
      {1015, DX_WHY_TRANSPORT_ERROR, 0, 1},
      {1006, DX_WHY_PING_TIMEOUT, 0, 1},
      {1001, DX_WHY_SERVER_SHUTDOWN, 0, 1},
      /* the peer broke the protocol */
      {1002, DX_WHY_PROTOCOL_ERROR, 0, 0},
      {1007, DX_WHY_PROTOCOL_ERROR, 0, 0},
      {1009, DX_WHY_PROTOCOL_ERROR, 0, 0},
      /* the opening handshake */
      {1011, DX_WHY_INTERNAL_ERROR, 0, 1},     /* our own memory: may pass */
      {1006, DX_WHY_HANDSHAKE_FAILED, 0, 1},   /* timeout, closed mid-way */
      {1006, DX_WHY_HANDSHAKE_FAILED, 500, 1},
      {1006, DX_WHY_HANDSHAKE_FAILED, 502, 1},
      {1006, DX_WHY_HANDSHAKE_FAILED, 503, 1},
      {1006, DX_WHY_HANDSHAKE_FAILED, 599, 1},
      {1006, DX_WHY_HANDSHAKE_FAILED, 400, 0},
      {1006, DX_WHY_HANDSHAKE_FAILED, 401, 0},
      {1006, DX_WHY_HANDSHAKE_FAILED, 403, 0},
      {1006, DX_WHY_HANDSHAKE_FAILED, 404, 0},
      {1006, DX_WHY_HANDSHAKE_FAILED, 301, 0},
      {1006, DX_WHY_HANDSHAKE_FAILED, 200, 0},
      {1002, DX_WHY_HANDSHAKE_FAILED, 0, 0},   /* a subprotocol not offered */
      {1010, DX_WHY_HANDSHAKE_FAILED, 0, 0},   /* an extension not offered */
  };
  for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
    int got = dx__reconnect_default(rows[i].code, rows[i].why, rows[i].status);
    if (got != rows[i].want)
      fail_msg("row %zu: code %d why %s status %d: expected %d, got %d", i, rows[i].code,
               dx_why_name(rows[i].why), rows[i].status, rows[i].want, got);
  }
}

/* ======================================================================== */
/* Option setters                                                            */
/* ======================================================================== */

static void test_option_setters_validate(void **state) {
  (void)state;
  dx_options *o = dx_options_new();
  assert_non_null(o);
  assert_int_equal(dx_options_set_reconnect(o, 1000, 5000, 0.5, 0), 0);
  assert_int_equal(dx_options_set_reconnect(o, 1, 1, 0.0, 3), 0);
  assert_int_equal(dx_options_set_reconnect(o, 1, 1, 1.0, 3), 0);
  assert_int_equal(dx_options_set_reconnect(o, 0, 5000, 0.5, 0), DX_EINVAL);
  assert_int_equal(dx_options_set_reconnect(o, 2000, 1000, 0.5, 0), DX_EINVAL);
  assert_int_equal(dx_options_set_reconnect(o, 1000, 5000, -0.01, 0), DX_EINVAL);
  assert_int_equal(dx_options_set_reconnect(o, 1000, 5000, 1.01, 0), DX_EINVAL);
  assert_int_equal(dx_options_set_reconnect(o, 1000, 5000, NAN, 0), DX_EINVAL);
  assert_int_equal(dx_options_set_reconnect(NULL, 1000, 5000, 0.5, 0), DX_EINVAL);
  assert_int_equal(dx_options_set_reconnect_queue(o, 0), 0);
  assert_int_equal(dx_options_set_reconnect_queue(o, SIZE_MAX), 0);
  assert_int_equal(dx_options_set_reconnect_queue(NULL, 10), DX_EINVAL);
  dx_options_free(o);
}

/* ======================================================================== */
/* End to end                                                                */
/* ======================================================================== */

/* What the in-process server does with its n-th connection (0-based). */
typedef enum {
  SRV_ECHO = 0,    /* echo every message */
  SRV_CLOSE_1012,  /* close with 1012 right after the handshake */
  SRV_CLOSE_4001,  /* close with 4001 "kicked" */
  SRV_REFUSE_503,
  SRV_REFUSE_403,
} srv_action;

#define MAX_EVENTS 64

typedef struct {
  dx_loop *loop;
  dx_server *srv;
  uint16_t port;
  srv_action plan[16];
  int accepted;           /* connections the server saw (handshakes) */
  char server_got[16][32]; /* messages the server received, in order */
  int n_server_got;

  dx_client *cl;
  int opens, closes, reconnected_calls, failed_calls, hook_calls;
  unsigned reconnected_attempts, failed_attempts;
  unsigned attempt_no[MAX_EVENTS];
  uint32_t attempt_delay[MAX_EVENTS];
  uint64_t attempt_at[MAX_EVENTS];
  int n_attempts;
  int close_code[8], close_status[8];
  dx_why close_why[8];
  int hook_code, hook_status;
  dx_why hook_why;
  int hook_answer;
  int user_tag;
  int conn_client_ok;      /* dx_conn_client(c) led back to the client */
  /* what to do, by event */
  int free_in_attempt, free_in_close, free_in_open, free_in_message, free_in_hook;
  int close_in_attempt, direct_close_on_open, client_close_on_echo;
  int stop_on_close;       /* stop the loop after this many closes */
  int stop_on_failed;
  int stop_on_local;       /* stop the loop after a close this side made */
  int send_on_open;        /* on_open sends "hello" */
  int send_in_close;       /* on_close/on_reconnect_attempt queue "x1"/"x2" */
  int sends_in_close_rc, sends_in_attempt_rc;
  int binary_as_text_rc, text_as_text_rc, text_prefix_rc; /* relay checks */
  int attempt_send_rc;
  int echoes;
  int kick_on_echo;        /* send "kick" (the server closes 1012) */
  int drop_on_echo;        /* free the server: TCP ends with no close frame */
  int restart_in_attempt;  /* start the server again in on_reconnect_attempt */
  int stop_on_open;
  char attempt_error[256]; /* dx_last_error() in the last on_reconnect_attempt */
} world;

static world W;

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- the server ---- */

static int srv_accept(dx_conn *c, const dx_request *req) {
  (void)c, (void)req;
  int n = W.accepted++;
  if (W.plan[n] == SRV_REFUSE_503) return 503;
  if (W.plan[n] == SRV_REFUSE_403) return 403;
  dx_conn_set_user(c, (void *)(intptr_t)n);
  return 0;
}

static void srv_open(dx_conn *c) {
  int n = (int)(intptr_t)dx_conn_user(c);
  if (W.plan[n] == SRV_CLOSE_1012) dx_close(c, 1012, "restarting");
  if (W.plan[n] == SRV_CLOSE_4001) dx_close(c, 4001, "kicked");
}

static void srv_message(dx_conn *c, dx_msg_type type, const uint8_t *data, size_t len) {
  if (W.n_server_got < 16) {
    snprintf(W.server_got[W.n_server_got], sizeof W.server_got[0], "%.*s", (int)len,
             (const char *)data);
    W.n_server_got++;
  }
  if (len == 4 && !memcmp(data, "kick", 4)) {
    dx_close(c, 1012, "restarting");
    return;
  }
  /* dx_send trusts the text on_message is handing out, and only that: the
   * same bytes that came as binary, or a cut through a character of the
   * text, are still checked. (Only for messages starting with 0xFF / 0xC3,
   * which no other scenario sends.) */
  if (type == DX_BINARY && len && data[0] == 0xFF)
    W.binary_as_text_rc = dx_send(c, DX_TEXT, data, len);
  if (type == DX_TEXT && len >= 2 && data[0] == 0xC3) {
    W.text_prefix_rc = dx_send(c, DX_TEXT, data, 1);
    W.text_as_text_rc = dx_send(c, DX_TEXT, data, len);
    return;
  }
  dx_send(c, type, data, len);
}

static void start_server(void) {
  dx_options *o = dx_options_new();
  assert_non_null(o);
  dx_options_on_accept(o, srv_accept);
  dx_options_on_open(o, srv_open);
  dx_options_on_message(o, srv_message);
  W.srv = dx_server_new(W.loop, o);
  dx_options_free(o);
  assert_non_null(W.srv);
  assert_int_equal(dx_server_listen(W.srv, "127.0.0.1", W.port), 0);
  W.port = dx_server_port(W.srv);
}

/* A port nothing listens on (it was free a moment ago). */
static uint16_t closed_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  assert_true(fd >= 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
  socklen_t len = sizeof a;
  assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
  close(fd);
  return ntohs(a.sin_port);
}

/* ---- the client's callbacks ---- */

static void cl_open(dx_conn *c) {
  W.opens++;
  dx_client *cl = dx_conn_client(c);
  W.conn_client_ok += cl == W.cl && dx_client_conn(cl) == c && dx_conn_user(c) == &W.user_tag &&
                      dx_client_user(cl) == &W.user_tag;
  if (W.send_on_open) assert_int_equal(dx_client_send(cl, DX_TEXT, "hello", 5), 0);
  if (W.direct_close_on_open) assert_int_equal(dx_close(c, 1000, NULL), 0);
  if (W.free_in_open) {
    dx_client_free(cl);
    W.cl = NULL;
  }
  if (W.stop_on_open) dx_loop_stop(W.loop);
}

static void cl_message(dx_conn *c, dx_msg_type type, const uint8_t *data, size_t len) {
  (void)type, (void)data, (void)len;
  W.echoes++;
  dx_client *cl = dx_conn_client(c);
  if (W.free_in_message) {
    dx_client_free(cl);
    W.cl = NULL;
    dx_loop_stop(W.loop);
    return;
  }
  if (W.client_close_on_echo && W.echoes == W.client_close_on_echo)
    assert_int_equal(dx_client_close(cl, 1000, "done"), 0);
  if (W.kick_on_echo && W.echoes == W.kick_on_echo)
    assert_int_equal(dx_client_send(cl, DX_TEXT, "kick", 4), 0);
  if (W.drop_on_echo && W.echoes == W.drop_on_echo) {
    dx_server_free(W.srv);
    W.srv = NULL;
  }
}

static void cl_close(dx_conn *c, int code, const char *reason, dx_why why, int status) {
  (void)reason;
  if (W.closes < 8) {
    W.close_code[W.closes] = code;
    W.close_why[W.closes] = why;
    W.close_status[W.closes] = status;
  }
  W.closes++;
  dx_client *cl = dx_conn_client(c);
  assert_ptr_equal(cl, W.cl);
  /* The connection is over: the client has none until the next attempt. */
  assert_null(dx_client_conn(cl));
  /* Queued while the first connection ends (the last end is deliberate:
   * DX_ECLOSED then). */
  if (W.send_in_close && W.closes == 1)
    W.sends_in_close_rc = dx_client_send(cl, DX_TEXT, "x1", 2);
  if (W.free_in_close) {
    dx_client_free(cl);
    W.cl = NULL;
  }
  if ((W.stop_on_close && W.closes >= W.stop_on_close) ||
      (W.stop_on_local && why == DX_WHY_LOCAL))
    dx_loop_stop(W.loop);
}

static void cl_attempt(dx_client *cl, unsigned attempt, uint32_t delay) {
  assert_ptr_equal(cl, W.cl);
  assert_null(dx_client_conn(cl));
  if (W.n_attempts < MAX_EVENTS) {
    W.attempt_no[W.n_attempts] = attempt;
    W.attempt_delay[W.n_attempts] = delay;
    W.attempt_at[W.n_attempts] = now_ms();
    W.n_attempts++;
  }
  snprintf(W.attempt_error, sizeof W.attempt_error, "%s", dx_last_error());
  W.attempt_send_rc = dx_client_send(cl, DX_TEXT, "x2", 2);
  if (W.restart_in_attempt && !W.srv) start_server();
  if (W.close_in_attempt) {
    assert_int_equal(dx_client_close(cl, 1000, NULL), 0);
    assert_int_equal(dx_client_close(cl, 1000, NULL), DX_ECLOSED);
  }
  if (W.free_in_attempt) {
    dx_client_free(cl);
    W.cl = NULL;
  }
}

static void cl_reconnected(dx_client *cl, unsigned attempts) {
  assert_ptr_equal(cl, W.cl);
  W.reconnected_calls++;
  W.reconnected_attempts = attempts;
}

static void cl_failed(dx_client *cl, unsigned attempts) {
  assert_ptr_equal(cl, W.cl);
  assert_null(dx_client_conn(cl));
  W.failed_calls++;
  W.failed_attempts = attempts;
  if (W.stop_on_failed) dx_loop_stop(W.loop);
}

static int cl_hook(dx_client *cl, int code, dx_why why, int status) {
  W.hook_calls++;
  W.hook_code = code;
  W.hook_why = why;
  W.hook_status = status;
  if (W.free_in_hook) {
    dx_client_free(cl);
    W.cl = NULL;
    return 1;
  }
  return W.hook_answer;
}

static dx_options *client_options(uint32_t initial, uint32_t max, unsigned max_attempts,
                                  size_t queue) {
  dx_options *o = dx_options_new();
  assert_non_null(o);
  dx_options_on_open(o, cl_open);
  dx_options_on_message(o, cl_message);
  dx_options_on_close(o, cl_close);
  dx_options_on_reconnect_attempt(o, cl_attempt);
  dx_options_on_reconnected(o, cl_reconnected);
  dx_options_on_reconnect_failed(o, cl_failed);
  dx_options_set_user(o, &W.user_tag);
  assert_int_equal(dx_options_set_reconnect(o, initial, max, 0.0, max_attempts), 0);
  assert_int_equal(dx_options_set_reconnect_queue(o, queue), 0);
  return o;
}

static void new_client(dx_options *o) {
  char url[64];
  snprintf(url, sizeof url, "ws://127.0.0.1:%u/", W.port);
  W.cl = dx_client_new(W.loop, url, o);
  dx_options_free(o);
  assert_non_null(W.cl);
}

static void on_alarm(int sig) {
  (void)sig;
  static const char msg[] = "test_reconnect: a scenario did not finish within 30 s "
                            "(an expected event never came)\n";
  ssize_t w = write(2, msg, sizeof msg - 1);
  (void)w;
  _exit(1);
}

static int world_setup(void **state) {
  (void)state;
  memset(&W, 0, sizeof W);
  W.loop = dx_loop_new();
  /* A hung loop must fail the test, not the CI job's patience. */
  signal(SIGALRM, on_alarm);
  alarm(30);
  return W.loop ? 0 : -1;
}

static int world_teardown(void **state) {
  (void)state;
  alarm(0);
  if (W.cl) dx_client_free(W.cl);
  if (W.srv) dx_server_free(W.srv);
  dx_loop_free(W.loop);
  return 0;
}

/* Runs the loop; with a server, stops it first so only the client can
 * keep the loop going: dx_loop_run() must then return by itself. */
static void run(void) { assert_int_equal(dx_loop_run(W.loop), 0); }

static void drop_server_and_run(void) {
  if (W.srv) dx_server_free(W.srv);
  W.srv = NULL;
  run();
}

/* ---- scenarios ---- */

static void test_gives_up_after_max_attempts(void **state) {
  (void)state;
  W.port = closed_port();
  uint64_t t0 = now_ms();
  new_client(client_options(20, 80, 4, 0));
  /* The first connection failed (refused at once) or is in flight: either
   * way not open. */
  assert_int_equal(dx_client_send(W.cl, DX_TEXT, "a", 1), DX_ERECONNECTING);
  run(); /* returns once the client gives up: nothing else holds the loop */
  uint64_t elapsed = now_ms() - t0;
  const unsigned want_delay[] = {20, 40, 80, 80};
  assert_int_equal(W.n_attempts, 4);
  for (int i = 0; i < 4; i++) {
    assert_int_equal(W.attempt_no[i], (unsigned)i + 1);
    assert_int_equal(W.attempt_delay[i], want_delay[i]);
  }
  /* Each attempt waited out its delay. */
  for (int i = 1; i < 4; i++)
    assert_true(W.attempt_at[i] - W.attempt_at[i - 1] + 2 >= want_delay[i - 1]);
  assert_true(elapsed + 4 >= 20 + 40 + 80 + 80);
  assert_int_equal(W.attempt_send_rc, DX_ERECONNECTING);
  assert_int_equal(W.failed_calls, 1);
  assert_int_equal(W.failed_attempts, 4);
  assert_int_equal(W.opens, 0);
  assert_null(dx_client_conn(W.cl));
  assert_int_equal(dx_client_send(W.cl, DX_TEXT, "a", 1), DX_ECLOSED);
  assert_int_equal(dx_client_close(W.cl, 1000, NULL), DX_ECLOSED);
}


static void test_reconnects_after_1012_and_messages_flow(void **state) {
  (void)state;
  W.plan[0] = SRV_CLOSE_1012;
  start_server();
  W.send_on_open = 1;
  W.client_close_on_echo = 1; /* the hello echoed on the second connection */
  W.stop_on_close = 2;
  new_client(client_options(10, 40, 3, 0));
  run();
  assert_int_equal(W.closes, 2);
  assert_int_equal(W.close_code[0], 1012);
  assert_int_equal(W.close_why[0], DX_WHY_PEER);
  assert_int_equal(W.accepted, 2);
  assert_int_equal(W.opens, 2);
  assert_int_equal(W.conn_client_ok, 2);
  assert_int_equal(W.n_attempts, 1);
  assert_int_equal(W.attempt_no[0], 1);
  assert_int_equal(W.attempt_delay[0], 10);
  assert_int_equal(W.reconnected_calls, 1);
  assert_int_equal(W.reconnected_attempts, 1);
  assert_int_equal(W.echoes, 1);
  assert_int_equal(W.close_code[1], 1000);
  assert_int_equal(W.close_why[1], DX_WHY_LOCAL);
  assert_int_equal(dx_client_send(W.cl, DX_TEXT, "a", 1), DX_ECLOSED);
  /* No attempt follows a deliberate close: the loop ends without one. */
  drop_server_and_run();
  assert_int_equal(W.n_attempts, 1);
  assert_int_equal(W.failed_calls, 0);
}

static void test_no_reconnect_after_4001(void **state) {
  (void)state;
  W.plan[0] = SRV_CLOSE_4001;
  start_server();
  W.stop_on_close = 1;
  new_client(client_options(10, 40, 3, 0));
  run();
  assert_int_equal(W.close_code[0], 4001);
  assert_int_equal(W.close_why[0], DX_WHY_PEER);
  assert_null(dx_client_conn(W.cl));
  assert_int_equal(dx_client_send(W.cl, DX_TEXT, "a", 1), DX_ECLOSED);
  drop_server_and_run();
  assert_int_equal(W.n_attempts, 0);
  assert_int_equal(W.accepted, 1);
  assert_int_equal(W.failed_calls, 0);
}

static void test_handshake_503_reconnects_403_does_not(void **state) {
  (void)state;
  W.plan[0] = SRV_REFUSE_503;
  W.plan[1] = SRV_REFUSE_403;
  start_server();
  W.stop_on_close = 2;
  new_client(client_options(10, 40, 5, 0));
  run();
  assert_int_equal(W.closes, 2);
  assert_int_equal(W.close_why[0], DX_WHY_HANDSHAKE_FAILED);
  assert_int_equal(W.close_status[0], 503);
  assert_int_equal(W.close_why[1], DX_WHY_HANDSHAKE_FAILED);
  assert_int_equal(W.close_status[1], 403);
  drop_server_and_run();
  assert_int_equal(W.n_attempts, 1);
  assert_int_equal(W.opens, 0);
  assert_int_equal(W.failed_calls, 0);
  assert_int_equal(W.reconnected_calls, 0);
}

static void test_queue_order_and_limits(void **state) {
  (void)state;
  start_server(); /* echoes; "kick" makes it close with 1012 */
  W.send_on_open = 1;
  W.send_in_close = 1;
  W.kick_on_echo = 5;         /* after hello, abc, defg, xyz, "" */
  W.client_close_on_echo = 8; /* after hello, x1, x2 on the second */
  W.stop_on_close = 2;
  new_client(client_options(10, 40, 3, 10));
  /* Not open yet: queued, up to 10 bytes. */
  assert_int_equal(dx_client_send(W.cl, DX_TEXT, "abc", 3), 0);
  assert_int_equal(dx_client_send(W.cl, DX_TEXT, "defg", 4), 0);
  assert_int_equal(dx_client_send(W.cl, DX_TEXT, "hijkl", 5), DX_EBUFFER);
  assert_int_equal(dx_client_send(W.cl, DX_TEXT, "\xff", 1), DX_EUTF8);
  assert_int_equal(dx_client_send(W.cl, 7, "z", 1), DX_EINVAL);
  assert_int_equal(dx_client_send(W.cl, DX_TEXT, "xyz", 3), 0);
  assert_int_equal(dx_client_send(W.cl, DX_BINARY, "\xff", 1), DX_EBUFFER);
  assert_int_equal(dx_client_send(W.cl, DX_TEXT, "", 0), 0);
  run();
  /* hello (on_open) goes first, then the queue in order; the same again
   * after the reconnection, with what on_close and on_reconnect_attempt
   * queued. */
  const char *want[] = {"hello", "abc", "defg", "xyz", "", "kick", "hello", "x1", "x2"};
  assert_int_equal(W.n_server_got, 9);
  for (int i = 0; i < 9; i++) assert_string_equal(W.server_got[i], want[i]);
  assert_int_equal(W.sends_in_close_rc, 0);
  assert_int_equal(W.attempt_send_rc, 0);
  assert_int_equal(W.reconnected_calls, 1);
  assert_int_equal(W.echoes, 8);
}

static void test_queue_flush_under_backpressure(void **state) {
  (void)state;
  start_server();
  W.client_close_on_echo = 3;
  W.stop_on_local = 1;
  dx_options *o = client_options(10, 40, 3, 100);
  /* Every queued message takes the output past the high-water mark:
   * DX_SEND_BACKPRESSURE, which still means sent. */
  assert_int_equal(dx_options_set_watermarks(o, 8, 4), 0);
  new_client(o);
  assert_int_equal(dx_client_send(W.cl, DX_TEXT, "aaaaaaaaaa", 10), 0);
  assert_int_equal(dx_client_send(W.cl, DX_TEXT, "bbbbbbbbbb", 10), 0);
  assert_int_equal(dx_client_send(W.cl, DX_TEXT, "cccccccccc", 10), 0);
  run();
  assert_int_equal(W.n_server_got, 3);
  assert_string_equal(W.server_got[0], "aaaaaaaaaa");
  assert_string_equal(W.server_got[1], "bbbbbbbbbb");
  assert_string_equal(W.server_got[2], "cccccccccc");
}

static void test_relayed_text_still_checked(void **state) {
  (void)state;
  start_server();
  W.client_close_on_echo = 2; /* the binary echo, then the text */
  W.stop_on_local = 1;
  new_client(client_options(10, 40, 3, 100));
  assert_int_equal(dx_client_send(W.cl, DX_BINARY, "\xff\xfe", 2), 0);
  assert_int_equal(dx_client_send(W.cl, DX_TEXT, "\xc3\xa9t\xc3\xa9", 6), 0);
  W.binary_as_text_rc = W.text_prefix_rc = W.text_as_text_rc = 12345;
  run();
  assert_int_equal(W.n_server_got, 2);
  assert_int_equal(W.binary_as_text_rc, DX_EUTF8);
  assert_int_equal(W.text_prefix_rc, DX_EUTF8);
  assert_int_equal(W.text_as_text_rc, 0);
  assert_int_equal(W.echoes, 2);
}

static void test_close_while_waiting(void **state) {
  (void)state;
  W.port = closed_port();
  W.close_in_attempt = 1;
  new_client(client_options(5000, 5000, 0, 0));
  uint64_t t0 = now_ms();
  run(); /* the pending attempt is called off: nothing holds the loop */
  assert_true(now_ms() - t0 < 1000);
  assert_int_equal(W.n_attempts, 1);
  assert_int_equal(W.failed_calls, 0);
  assert_int_equal(dx_client_send(W.cl, DX_TEXT, "a", 1), DX_ECLOSED);
}

static void test_close_args_checked(void **state) {
  (void)state;
  W.port = closed_port();
  new_client(client_options(5000, 5000, 0, 0));
  /* Refused arguments change nothing: the client still reconnects. */
  assert_int_equal(dx_client_close(W.cl, 1005, NULL), DX_ECLOSECODE);
  assert_int_equal(dx_client_close(W.cl, 0, "why"), DX_EINVAL);
  assert_int_equal(dx_client_close(W.cl, 1000, "\xff"), DX_EUTF8);
  assert_int_equal(dx_client_send(W.cl, DX_TEXT, "a", 1), DX_ERECONNECTING);
  assert_int_equal(dx_client_close(W.cl, 4000, "bye"), 0);
  assert_int_equal(dx_client_close(W.cl, 4000, "bye"), DX_ECLOSED);
  run();
  assert_int_equal(W.n_attempts, 0);
}

static void test_direct_dx_close_is_deliberate(void **state) {
  (void)state;
  start_server();
  W.direct_close_on_open = 1;
  W.stop_on_close = 1;
  W.hook_answer = 1;
  dx_options *o = client_options(10, 40, 3, 0);
  dx_options_should_reconnect(o, cl_hook);
  new_client(o);
  run();
  assert_int_equal(W.close_why[0], DX_WHY_LOCAL);
  assert_int_equal(W.close_code[0], 1000);
  assert_int_equal(W.hook_calls, 0); /* never asked after our own close */
  assert_int_equal(dx_client_send(W.cl, DX_TEXT, "a", 1), DX_ECLOSED);
  drop_server_and_run();
  assert_int_equal(W.n_attempts, 0);
}

static void test_hook_overrides_default(void **state) {
  (void)state;
  /* 4001 would not reconnect by default: the hook says yes. */
  W.plan[0] = SRV_CLOSE_4001;
  start_server();
  W.hook_answer = 1;
  W.send_on_open = 1;
  W.client_close_on_echo = 1;
  W.stop_on_close = 2;
  dx_options *o = client_options(10, 40, 3, 0);
  dx_options_should_reconnect(o, cl_hook);
  new_client(o);
  run();
  assert_int_equal(W.hook_calls, 1);
  assert_int_equal(W.hook_code, 4001);
  assert_int_equal(W.hook_why, DX_WHY_PEER);
  assert_int_equal(W.hook_status, 0);
  assert_int_equal(W.reconnected_calls, 1);
  assert_int_equal(W.opens, 2);
}

static void test_hook_can_refuse(void **state) {
  (void)state;
  /* 1012 would reconnect by default: the hook says no. */
  W.plan[0] = SRV_CLOSE_1012;
  start_server();
  W.hook_answer = 0;
  W.stop_on_close = 1;
  dx_options *o = client_options(10, 40, 3, 0);
  dx_options_should_reconnect(o, cl_hook);
  new_client(o);
  run();
  assert_int_equal(W.hook_calls, 1);
  assert_int_equal(W.hook_code, 1012);
  drop_server_and_run();
  assert_int_equal(W.n_attempts, 0);
  assert_int_equal(dx_client_send(W.cl, DX_TEXT, "a", 1), DX_ECLOSED);
}

static void test_transport_drop_then_server_back(void **state) {
  (void)state;
  start_server();
  W.send_on_open = 1;
  W.drop_on_echo = 1;          /* the server vanishes: TCP ends, no close frame */
  W.restart_in_attempt = 1;    /* ... and comes back on the same port */
  W.client_close_on_echo = 2;
  W.stop_on_close = 2;
  new_client(client_options(10, 40, 5, 0));
  run();
  assert_int_equal(W.close_code[0], 1006);
  assert_true(W.close_why[0] == DX_WHY_TRANSPORT_CLOSE ||
              W.close_why[0] == DX_WHY_TRANSPORT_ERROR);
  assert_int_equal(W.reconnected_calls, 1);
  assert_int_equal(W.opens, 2);
  assert_int_equal(W.echoes, 2);
}

static void test_unreachable_at_first_then_up(void **state) {
  (void)state;
  W.port = closed_port();
  W.restart_in_attempt = 1; /* the server starts during attempt 1's wait */
  W.send_on_open = 1;
  W.client_close_on_echo = 1;
  /* The first connection may be refused at once (no on_close) or after
   * its connect() (on_close, transport error). */
  W.stop_on_local = 1;
  new_client(client_options(20, 40, 5, 0));
  run();
  assert_int_equal(W.close_why[W.closes - 1], DX_WHY_LOCAL);
  assert_int_equal(W.n_attempts, 1);
  assert_int_equal(W.opens, 1);
  assert_int_equal(W.reconnected_calls, 1);
  assert_int_equal(W.reconnected_attempts, 1);
}

static void test_new_refuses_what_never_works(void **state) {
  (void)state;
  assert_null(dx_client_new(W.loop, "http://127.0.0.1/", NULL));
  assert_true(dx_last_error()[0] != '\0');
  dx_options *o = dx_options_new();
  assert_int_equal(dx_options_set_tls_ca(o, "/nonexistent/ca.pem"), 0);
  assert_null(dx_client_new(W.loop, "wss://127.0.0.1:1/", o));
  dx_options_free(o);
  /* Defaults, unreachable, freed before the loop ever ran: nothing left. */
  char url[64];
  snprintf(url, sizeof url, "ws://127.0.0.1:%u/", closed_port());
  dx_client *cl = dx_client_new(W.loop, url, NULL);
  assert_non_null(cl);
  assert_null(dx_client_user(cl));
  dx_client_free(cl);
  uint64_t t0 = now_ms();
  run();
  assert_true(now_ms() - t0 < 500);
}

static void test_failure_before_connecting_counts(void **state) {
  (void)state;
  /* connect() to the limited broadcast address fails at once
   * (ENETUNREACH): no connection ever exists, so no on_close. */
  W.hook_answer = 1;
  dx_options *o = client_options(10, 20, 3, 0);
  dx_options_should_reconnect(o, cl_hook);
  W.cl = dx_client_new(W.loop, "ws://255.255.255.255:9/", o);
  dx_options_free(o);
  assert_non_null(W.cl);
  assert_null(dx_client_conn(W.cl));
  /* Nothing is called back from inside dx_client_new(). */
  assert_int_equal(W.n_attempts + W.hook_calls, 0);
  run();
  assert_int_equal(W.closes, 0);
  assert_int_equal(W.hook_calls, 4); /* the first connection and 3 attempts */
  assert_int_equal(W.hook_code, 1006);
  assert_int_equal(W.hook_why, DX_WHY_TRANSPORT_ERROR);
  assert_int_equal(W.hook_status, 0);
  assert_int_equal(W.n_attempts, 3);
  assert_int_equal(W.attempt_delay[2], 20);
  assert_non_null(strstr(W.attempt_error, "255.255.255.255"));
  assert_int_equal(W.failed_calls, 1);
  assert_int_equal(W.failed_attempts, 3);
}

/* ---- dx_client_free() from inside every kind of callback ---- */

static void test_free_in_attempt(void **state) {
  (void)state;
  W.port = closed_port();
  W.free_in_attempt = 1;
  new_client(client_options(5000, 5000, 0, 0));
  uint64_t t0 = now_ms();
  run();
  assert_true(now_ms() - t0 < 1000);
  assert_int_equal(W.n_attempts, 1);
  assert_null(W.cl);
}

static void test_free_in_close(void **state) {
  (void)state;
  W.plan[0] = SRV_CLOSE_1012;
  start_server();
  W.free_in_close = 1;
  W.stop_on_close = 1;
  new_client(client_options(10, 40, 3, 0));
  run();
  drop_server_and_run();
  assert_int_equal(W.closes, 1);
  assert_int_equal(W.n_attempts, 0);
  assert_null(W.cl);
}

static void test_free_in_open(void **state) {
  (void)state;
  start_server();
  W.free_in_open = 1;
  W.stop_on_open = 1;
  new_client(client_options(10, 40, 3, 0));
  run();
  drop_server_and_run();
  assert_int_equal(W.opens, 1);
  assert_int_equal(W.closes, 0); /* cut without callbacks */
  assert_int_equal(W.n_attempts, 0);
}

static void test_free_in_message(void **state) {
  (void)state;
  start_server();
  W.send_on_open = 1;
  W.free_in_message = 1;
  new_client(client_options(10, 40, 3, 0));
  run();
  drop_server_and_run();
  assert_int_equal(W.echoes, 1);
  assert_int_equal(W.closes, 0);
  assert_int_equal(W.n_attempts, 0);
}

static void test_free_in_hook(void **state) {
  (void)state;
  W.plan[0] = SRV_CLOSE_1012;
  start_server();
  W.free_in_hook = 1;
  W.stop_on_close = 1;
  dx_options *o = client_options(10, 40, 3, 0);
  dx_options_should_reconnect(o, cl_hook);
  new_client(o);
  run();
  drop_server_and_run();
  assert_int_equal(W.hook_calls, 1);
  assert_int_equal(W.n_attempts, 0);
}

int main(void) {
  const struct CMUnitTest pure[] = {
      cmocka_unit_test(test_backoff_sequence_without_jitter),
      cmocka_unit_test(test_backoff_jitter_bounds),
      cmocka_unit_test(test_unit_draws_differ_by_seed),
      cmocka_unit_test(test_default_rule_table),
      cmocka_unit_test(test_option_setters_validate),
  };
#define LIVE(t) cmocka_unit_test_setup_teardown(t, world_setup, world_teardown)
  const struct CMUnitTest live[] = {
      LIVE(test_gives_up_after_max_attempts),
      LIVE(test_reconnects_after_1012_and_messages_flow),
      LIVE(test_no_reconnect_after_4001),
      LIVE(test_handshake_503_reconnects_403_does_not),
      LIVE(test_queue_order_and_limits),
      LIVE(test_queue_flush_under_backpressure),
      LIVE(test_relayed_text_still_checked),
      LIVE(test_close_while_waiting),
      LIVE(test_close_args_checked),
      LIVE(test_direct_dx_close_is_deliberate),
      LIVE(test_hook_overrides_default),
      LIVE(test_hook_can_refuse),
      LIVE(test_transport_drop_then_server_back),
      LIVE(test_unreachable_at_first_then_up),
      LIVE(test_new_refuses_what_never_works),
      LIVE(test_failure_before_connecting_counts),
      LIVE(test_free_in_attempt),
      LIVE(test_free_in_close),
      LIVE(test_free_in_open),
      LIVE(test_free_in_message),
      LIVE(test_free_in_hook),
  };
  int failed = cmocka_run_group_tests_name("reconnect: pure", pure, NULL, NULL);
  failed += cmocka_run_group_tests_name("reconnect: live", live, NULL, NULL);
  return failed;
}
