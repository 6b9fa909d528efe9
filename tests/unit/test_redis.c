/* The Redis engine (src/pubsub/redis.c) against a real redis-server that
 * this test starts on a free port in a temporary directory (no
 * persistence), kills and restarts. Two engines ("nodes") A and B run on
 * one loop with a sink each that records what they deliver; redis-cli
 * looks at Redis from outside (PUBSUB NUMSUB) and injects messages.
 *
 *   - A's message reaches B, subscribed, and not A itself, also
 *     subscribed (its own node id is filtered); text, binary with NUL
 *     bytes, a topic with a NUL byte;
 *   - when B's last subscriber leaves, B unsubscribes (NUMSUB is 0) and a
 *     message to the topic reaches B no more; a subscribe/unsubscribe/
 *     subscribe within one iteration ends subscribed;
 *   - a malformed message on a channel is ignored and counted;
 *   - Redis down at start: DOWN, retrying, publishes refused (DX_ECLOSED,
 *     counted); once redis-server starts, UP with the topic subscribed
 *     while down;
 *   - Redis killed mid-run: DOWN, publishes refused; restarted: UP again,
 *     the topics subscribed again, deliveries resume;
 *   - Redis stopped (SIGSTOP: connected, silent): publishes past the
 *     output bound are refused (DX_EBUFFER, counted), the PING watchdog
 *     ends the link, what was sent and not answered is counted
 *     unconfirmed; continued (SIGCONT): UP again;
 *   - one message larger than that bound crosses when nothing waits;
 *   - requirepass and an ACL user (AUTH user pass) with a database work; a
 *     wrong password or none is reported (last_error) and retried, no crash;
 *   - rediss:// is DX_EUNSUPPORTED, a malformed URL DX_EURL;
 *   - the loop freed before the engine.
 *
 * No timing is asserted: each condition is waited for, up to 30 s (the
 * backoff tops out at 5 s). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "duplex.h"
#include "net/loop.h"
#include "pubsub/engine.h"
#include "pubsub/redis.h"

#define WAIT_MS 30000

/* ---- redis-server and redis-cli ------------------------------------------ */

static char dir[64];
static unsigned port;
static pid_t server = -1;
static const char *server_pass; /* requirepass of the running server, or NULL */

static unsigned free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof a;
  assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
  assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
  close(fd);
  return ntohs(a.sin_port);
}

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int port_open(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  int ok = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
  close(fd);
  return ok;
}

/* Starts redis-server on `port` (requirepass pass unless NULL) and waits
 * until it accepts connections. */
static void server_start(const char *pass) {
  char portstr[16], logpath[128];
  snprintf(portstr, sizeof portstr, "%u", port);
  snprintf(logpath, sizeof logpath, "%s/redis.log", dir);
  const char *argv[24] = {"redis-server", "--port", portstr, "--bind", "127.0.0.1", "-::1",
                          "--save", "", "--appendonly", "no", "--dir", dir,
                          "--daemonize", "no", "--logfile", logpath};
  int n = 16;
  if (pass) {
    argv[n++] = "--requirepass";
    argv[n++] = pass;
  }
  argv[n] = NULL;
  server = fork();
  assert_true(server >= 0);
  if (server == 0) {
    int null = open("/dev/null", O_RDWR);
    dup2(null, 0);
    dup2(null, 1);
    execvp("redis-server", (char **)argv);
    _exit(127);
  }
  server_pass = pass;
  uint64_t t0 = now_ms();
  while (!port_open()) {
    int st;
    if (waitpid(server, &st, WNOHANG) == server)
      fail_msg("redis-server exited at start (status %d); see %s", st, logpath);
    if (now_ms() - t0 > WAIT_MS) fail_msg("redis-server did not listen on %u", port);
    usleep(10000);
  }
}

/* SIGKILL: a crash, not a shutdown (no goodbye to the clients). */
static void server_kill(void) {
  if (server <= 0) return;
  kill(server, SIGKILL);
  waitpid(server, NULL, 0);
  server = -1;
}

/* redis-cli's output for one command (args already quoted for the shell). */
static char *cli(const char *fmt, ...) {
  static char out[4096];
  char args[1024], cmd[1400];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(args, sizeof args, fmt, ap);
  va_end(ap);
  snprintf(cmd, sizeof cmd, "redis-cli -p %u %s%s%s %s 2>&1", port,
           server_pass ? "--no-auth-warning -a '" : "", server_pass ? server_pass : "",
           server_pass ? "'" : "", args);
  FILE *f = popen(cmd, "r");
  assert_non_null(f);
  size_t n = fread(out, 1, sizeof out - 1, f);
  out[n] = 0;
  pclose(f);
  return out;
}

/* How many subscribers Redis counts on channel "dx:" + topic. */
static long numsub(const char *topic) {
  char *o = cli("PUBSUB NUMSUB 'dx:%s'", topic);
  char *nl = strchr(o, '\n');
  return nl ? strtol(nl + 1, NULL, 10) : -1;
}

/* ---- nodes: an engine and what its sink saw -------------------------------- */

typedef struct node {
  dx__engine *e;
  int state, ups, downs;
  int deliveries;
  char topics[2048]; /* every delivered topic, each followed by '|' */
  char last_topic[64];
  size_t last_tlen;
  uint8_t last[256];
  size_t last_len;  /* of last: the first 256 bytes at most */
  size_t last_size; /* the whole message's */
  int last_type;
} node;

static void on_deliver(void *hub, const char *topic, size_t tlen, dx_msg_type type,
                       const uint8_t *data, size_t len) {
  node *n = hub;
  n->deliveries++;
  size_t used = strlen(n->topics);
  if (used + tlen + 2 < sizeof n->topics) {
    memcpy(n->topics + used, topic, tlen);
    n->topics[used + tlen] = '|';
    n->topics[used + tlen + 1] = 0;
  }
  n->last_tlen = tlen < sizeof n->last_topic ? tlen : sizeof n->last_topic;
  memcpy(n->last_topic, topic, n->last_tlen);
  n->last_len = len < sizeof n->last ? len : sizeof n->last;
  n->last_size = len;
  memcpy(n->last, data, n->last_len);
  n->last_type = type;
}

static void on_state(void *hub, int state) {
  node *n = hub;
  n->state = state;
  if (state == DX__ENGINE_UP) n->ups++;
  if (state == DX__ENGINE_DOWN) n->downs++;
}

static dx_loop *loop;

static void node_open(node *n, const char *url) {
  memset(n, 0, sizeof *n);
  n->state = DX__ENGINE_CONNECTING;
  dx__engine_sink sink = {on_deliver, on_state, n, NULL};
  int err = 0;
  n->e = dx__redis_engine_new(loop, url, &sink, &err);
  if (!n->e) fail_msg("engine for %s: %s (%s)", url, dx_err_name(err), dx_last_error());
}

static void node_close(node *n) {
  if (n->e) n->e->ops->free(n->e);
  n->e = NULL;
}

static dx__redis_stats stats(node *n) {
  dx__redis_stats s;
  dx__redis_engine_stats(n->e, &s);
  return s;
}

static int publish(node *n, const char *topic, size_t tlen, dx_msg_type type, const void *data,
                   size_t len) {
  return n->e->ops->publish(n->e, topic, tlen, type, data, len);
}
#define PUB(n, topic, text) publish(n, topic, strlen(topic), DX_TEXT, text, strlen(text))
#define SUB(n, topic) (n)->e->ops->subscribe((n)->e, topic, strlen(topic))
#define UNSUB(n, topic) (n)->e->ops->unsubscribe((n)->e, topic, strlen(topic))

/* A URL for the test's server; the last four stay valid (one call may
 * take two). */
static const char *url(const char *userinfo, const char *rest) {
  static char bufs[4][256];
  static unsigned next;
  char *b = bufs[next++ % 4];
  snprintf(b, sizeof bufs[0], "redis://%s127.0.0.1:%u%s", userinfo, port, rest);
  return b;
}

/* ---- driving the loop ----------------------------------------------------- */

static dx__timer spin_timer;
static void on_spin(dx__timer *t) {
  (void)t;
  dx_loop_stop(loop);
}

/* Runs the loop for about ms milliseconds. */
static void spin(uint64_t ms) {
  dx__timer_start(loop, &spin_timer, ms);
  dx_loop_run(loop);
}

#define WAIT_FOR(cond)                                                                   \
  do {                                                                                   \
    uint64_t t0_ = now_ms();                                                             \
    while (!(cond)) {                                                                    \
      if (now_ms() - t0_ > WAIT_MS) fail_msg("line %d: timed out waiting for %s", __LINE__, #cond); \
      spin(20);                                                                          \
    }                                                                                    \
  } while (0)

/* Nodes A and B on the running server (URLs a_url, b_url), both UP. */
static void open_pair(node *a, const char *a_url, node *b, const char *b_url) {
  node_open(a, a_url);
  node_open(b, b_url);
  WAIT_FOR(a->state == DX__ENGINE_UP && b->state == DX__ENGINE_UP);
}

static int setup(void **state) {
  (void)state;
  port = free_port();
  loop = dx_loop_new();
  assert_non_null(loop);
  dx__loop_ref(loop); /* the engines do not keep a loop running */
  dx__timer_init(&spin_timer, on_spin);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  server_kill();
  if (loop) {
    dx__timer_stop(loop, &spin_timer);
    dx__loop_unref(loop);
    dx_loop_free(loop);
  }
  loop = NULL;
  return 0;
}

/* ---- the cases ------------------------------------------------------------ */

static void test_between_nodes(void **state) {
  (void)state;
  server_start(NULL);
  node a, b;
  open_pair(&a, url("", ""), &b, url("", "/0"));
  SUB(&a, "room");
  SUB(&b, "room");
  SUB(&b, "marker");
  WAIT_FOR(numsub("room") == 2 && numsub("marker") == 1);

  /* A's text reaches B, and A skips its own echo. */
  assert_int_equal(PUB(&a, "room", "hello"), 0);
  WAIT_FOR(b.deliveries == 1 && stats(&a).own == 1);
  assert_int_equal(a.deliveries, 0);
  assert_int_equal(b.last_type, DX_TEXT);
  assert_int_equal(b.last_len, 5);
  assert_memory_equal(b.last, "hello", 5);
  assert_string_equal(b.topics, "room|");

  /* Binary bytes, NULs included, and a topic with a NUL byte. */
  static const uint8_t bin[] = {0, 'a', 0, 0xff, 0x80, 0, '\r', '\n'};
  const char nul_topic[] = {'r', 0, 'x'};
  b.e->ops->subscribe(b.e, nul_topic, sizeof nul_topic);
  assert_int_equal(publish(&a, "room", 4, DX_BINARY, bin, sizeof bin), 0);
  WAIT_FOR(b.deliveries == 2);
  assert_int_equal(b.last_type, DX_BINARY);
  assert_int_equal(b.last_len, sizeof bin);
  assert_memory_equal(b.last, bin, sizeof bin);
  /* Publish to the NUL topic until B has subscribed at Redis (we cannot
   * name the channel to redis-cli). */
  for (uint64_t t0 = now_ms(); b.deliveries == 2; spin(50)) {
    if (now_ms() - t0 > WAIT_MS) fail_msg("the topic with a NUL byte never reached B");
    assert_int_equal(publish(&a, nul_topic, sizeof nul_topic, DX_TEXT, "z", 1), 0);
  }
  assert_int_equal(b.last_tlen, sizeof nul_topic);
  assert_memory_equal(b.last_topic, nul_topic, sizeof nul_topic);
  b.e->ops->unsubscribe(b.e, nul_topic, sizeof nul_topic);
  int before = b.deliveries;

  /* B's last subscriber leaves: B leaves the channel, and a message to it
   * no longer reaches B (the marker, published after it by the same
   * connection, arrives after it would have). */
  UNSUB(&b, "room");
  WAIT_FOR(numsub("room") == 1);
  b.topics[0] = 0;
  assert_int_equal(PUB(&a, "room", "not for b"), 0);
  assert_int_equal(PUB(&a, "marker", "m1"), 0);
  WAIT_FOR(strstr(b.topics, "marker|") != NULL);
  assert_string_equal(b.topics, "marker|");
  assert_int_equal(b.deliveries, before + 1);

  /* Subscribe, unsubscribe and subscribe again within one iteration: it
   * ends subscribed, and messages arrive (hiredis 0.14 would drop the
   * channel's callback if the second SUBSCRIBE were sent before the
   * UNSUBSCRIBE was confirmed). */
  SUB(&b, "churn");
  UNSUB(&b, "churn");
  SUB(&b, "churn");
  WAIT_FOR(numsub("churn") == 1);
  spin(100);
  assert_int_equal(numsub("churn"), 1);
  b.topics[0] = 0;
  assert_int_equal(PUB(&a, "churn", "c"), 0);
  WAIT_FOR(strstr(b.topics, "churn|") != NULL);

  /* Malformed messages on a channel B holds: ignored and counted. */
  b.topics[0] = 0;
  cli("PUBLISH dx:marker 'not an envelope'");
  cli("PUBLISH dx:marker \"$(printf '\\001ABCDEFGH\\001\\377\\376')\""); /* text, bad UTF-8 */
  cli("PUBLISH dx:marker \"$(printf '\\001ABCDEFGH\\003x')\"");         /* unknown type */
  WAIT_FOR(stats(&b).malformed == 3);
  assert_string_equal(b.topics, "");
  /* A well-formed envelope from another node is delivered. */
  cli("PUBLISH dx:marker \"$(printf '\\001ABCDEFGH\\001hi there')\"");
  WAIT_FOR(strstr(b.topics, "marker|") != NULL);
  assert_int_equal(b.last_len, 8);
  assert_memory_equal(b.last, "hi there", 8);

  dx__redis_stats sa = stats(&a);
  assert_int_equal(sa.lost_down + sa.lost_full + sa.unconfirmed + sa.refused, 0);
  node_close(&a);
  node_close(&b);
}

static void test_down_at_start(void **state) {
  (void)state;
  node a, b;
  node_open(&a, url("", ""));
  node_open(&b, url("", ""));
  SUB(&b, "early");
  WAIT_FOR(b.downs >= 1 && stats(&b).attempts >= 3 && a.downs >= 1);
  assert_int_not_equal(b.state, DX__ENGINE_UP);
  assert_non_null(strstr(stats(&b).last_error, "refused"));
  assert_int_equal(PUB(&a, "early", "lost"), DX_ECLOSED);
  assert_int_equal(stats(&a).lost_down, 1);

  server_start(NULL);
  WAIT_FOR(a.state == DX__ENGINE_UP && b.state == DX__ENGINE_UP);
  assert_int_equal(numsub("early"), 1); /* subscribed before UP */
  assert_int_equal(PUB(&a, "early", "now"), 0);
  WAIT_FOR(b.deliveries == 1);
  assert_memory_equal(b.last, "now", 3);
  node_close(&a);
  node_close(&b);
}

static void test_restart_mid_run(void **state) {
  (void)state;
  server_start(NULL);
  node a, b;
  open_pair(&a, url("", ""), &b, url("", ""));
  SUB(&b, "t");
  SUB(&b, "u");
  WAIT_FOR(numsub("t") == 1);
  assert_int_equal(PUB(&a, "t", "one"), 0);
  WAIT_FOR(b.deliveries == 1);

  server_kill();
  WAIT_FOR(a.state != DX__ENGINE_UP && b.state != DX__ENGINE_UP);
  assert_int_equal(PUB(&a, "t", "lost 1"), DX_ECLOSED);
  assert_int_equal(PUB(&a, "t", "lost 2"), DX_ECLOSED);
  assert_int_equal(stats(&a).lost_down, 2);
  UNSUB(&b, "u"); /* left while down: not subscribed again */
  SUB(&b, "v");   /* came while down: subscribed on reconnect */
  spin(300);      /* a failed attempt or two */

  server_start(NULL);
  WAIT_FOR(a.ups == 2 && b.ups == 2);
  assert_int_equal(numsub("t"), 1);
  assert_int_equal(numsub("u"), 0);
  assert_int_equal(numsub("v"), 1);
  assert_int_equal(PUB(&a, "t", "two"), 0);
  assert_int_equal(PUB(&a, "v", "three"), 0);
  WAIT_FOR(b.deliveries == 3);
  assert_string_equal(b.topics, "t|t|v|");
  assert_int_equal(stats(&b).topics, 2);
  node_close(&a);
  node_close(&b);
}

static void test_stuck(void **state) {
  (void)state;
  server_start(NULL);
  node a, b;
  open_pair(&a, url("", ""), &b, url("", ""));
  SUB(&b, "s");
  WAIT_FOR(numsub("s") == 1);

  kill(server, SIGSTOP);
  /* 64 KiB messages until the unwritten output passes the bound: what the
   * kernel's buffers hold has left, the rest waits in hiredis. */
  static uint8_t big[64 * 1024];
  memset(big, 'b', sizeof big);
  int sent = 0;
  for (uint64_t t0 = now_ms(); stats(&a).lost_full == 0; spin(5)) {
    if (now_ms() - t0 > WAIT_MS) fail_msg("the output bound was never reached");
    for (int i = 0; i < 16; i++) {
      int r = publish(&a, "s", 1, DX_BINARY, big, sizeof big);
      if (r == 0) sent++;
      else assert_int_equal(r, DX_EBUFFER);
    }
  }
  dx__redis_stats sa = stats(&a);
  assert_true((uint64_t)sent * sizeof big >= DX__REDIS_MAX_PENDING / 2);
  assert_int_equal(sa.published, sent);
  /* Silent Redis: the watchdog ends both links. */
  WAIT_FOR(a.downs >= 1 && b.downs >= 1);
  sa = stats(&a);
  assert_non_null(strstr(sa.last_error, "PING"));
  assert_int_equal(sa.confirmed + sa.unconfirmed, sa.published);
  assert_true(sa.unconfirmed > 0);

  kill(server, SIGCONT);
  WAIT_FOR(a.ups == 2 && b.ups == 2);
  int before = b.deliveries; /* some unconfirmed ones may have arrived after all */
  assert_int_equal(PUB(&a, "s", "after"), 0);
  WAIT_FOR(b.deliveries > before && b.last_len == 5);
  assert_memory_equal(b.last, "after", 5);
  node_close(&a);
  node_close(&b);
}

/* A message larger than the bound on unwritten output (a client may send
 * one up to its max_message, 16 MiB by default) still crosses: the bound
 * refuses publishes once that much waits, not one that alone is larger
 * while nothing waits. */
static void test_big_message(void **state) {
  (void)state;
  server_start(NULL);
  node a, b;
  open_pair(&a, url("", ""), &b, url("", ""));
  SUB(&b, "big");
  WAIT_FOR(numsub("big") == 1);
  size_t n = DX__REDIS_MAX_PENDING + (1 << 20);
  uint8_t *big = malloc(n);
  assert_non_null(big);
  for (size_t i = 0; i < n; i++) big[i] = (uint8_t)(i * 7);
  assert_int_equal(publish(&a, "big", 3, DX_BINARY, big, n), 0);
  WAIT_FOR(b.deliveries == 1);
  assert_int_equal(b.last_size, n);
  assert_memory_equal(b.last, big, sizeof b.last);
  free(big);
  /* Once it has left, the next one is taken too. */
  WAIT_FOR(stats(&a).confirmed == 1);
  assert_int_equal(PUB(&a, "big", "after"), 0);
  WAIT_FOR(b.deliveries == 2);
  assert_int_equal(b.last_size, 5);
  assert_memory_equal(b.last, "after", 5);
  assert_int_equal(stats(&a).lost_full, 0);
  node_close(&a);
  node_close(&b);
}

static void test_auth(void **state) {
  (void)state;
  server_start("s3cret");
  cli("ACL SETUSER alice on '>w@nder' '~*' '&*' '+@all'");
  node a, b, wrong, none;
  node_open(&wrong, url(":nope@", ""));
  node_open(&none, url("", ""));
  open_pair(&a, url(":s3cret@", ""), &b, url("alice:w%40nder@", "/1"));
  SUB(&b, "secure");
  WAIT_FOR(numsub("secure") == 1);
  assert_int_equal(PUB(&a, "secure", "x"), 0);
  WAIT_FOR(b.deliveries == 1);

  /* A wrong password and none: reported, retried, never UP. */
  WAIT_FOR(stats(&wrong).attempts >= 3 && stats(&none).attempts >= 3);
  assert_int_equal(wrong.ups + none.ups, 0);
  assert_non_null(strstr(stats(&wrong).last_error, "authentication failed"));
  assert_non_null(strstr(stats(&wrong).last_error, "WRONGPASS"));
  assert_non_null(strstr(stats(&none).last_error, "NOAUTH"));
  assert_int_equal(PUB(&wrong, "secure", "x"), DX_ECLOSED);
  node_close(&wrong);
  node_close(&none);
  node_close(&a);
  node_close(&b);
}

static void test_urls(void **state) {
  (void)state;
  dx__engine_sink sink = {on_deliver, on_state, NULL, NULL};
  int err = 0;
  assert_null(dx__redis_engine_new(loop, "rediss://127.0.0.1:6380", &sink, &err));
  assert_int_equal(err, DX_EUNSUPPORTED);
  assert_non_null(strstr(dx_last_error(), "TLS"));
  assert_null(dx__redis_engine_new(loop, "redis://host:0", &sink, &err));
  assert_int_equal(err, DX_EURL);
  assert_non_null(strstr(dx_last_error(), "port"));
}

/* A name resolved off the loop (localhost: ::1 and/or 127.0.0.1), and the
 * loop freed while the engine is still up: dx_loop_free cuts it loose and
 * the engine is freed after. */
static void test_name_and_loop_first(void **state) {
  (void)state;
  server_start(NULL);
  node a;
  char u[64];
  snprintf(u, sizeof u, "redis://localhost:%u", port);
  node_open(&a, u);
  SUB(&a, "x");
  WAIT_FOR(a.state == DX__ENGINE_UP && numsub("x") == 1);
  dx__timer_stop(loop, &spin_timer);
  dx__loop_unref(loop);
  dx_loop_free(loop);
  loop = NULL;
  node_close(&a);
}

int main(void) {
  if (system("command -v redis-server >/dev/null && command -v redis-cli >/dev/null") != 0) {
    fprintf(stderr, "test_redis: FAILED: redis-server and redis-cli are needed: "
                    "run scripts/deps.sh test (apt-get install redis-server)\n");
    return 1;
  }
  snprintf(dir, sizeof dir, "/tmp/duplex-redis.XXXXXX");
  if (!mkdtemp(dir)) {
    perror("mkdtemp");
    return 1;
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_between_nodes, setup, teardown),
      cmocka_unit_test_setup_teardown(test_down_at_start, setup, teardown),
      cmocka_unit_test_setup_teardown(test_restart_mid_run, setup, teardown),
      cmocka_unit_test_setup_teardown(test_stuck, setup, teardown),
      cmocka_unit_test_setup_teardown(test_big_message, setup, teardown),
      cmocka_unit_test_setup_teardown(test_auth, setup, teardown),
      cmocka_unit_test_setup_teardown(test_urls, setup, teardown),
      cmocka_unit_test_setup_teardown(test_name_and_loop_first, setup, teardown),
  };
  int failed = cmocka_run_group_tests(tests, NULL, NULL);
  char rm[128];
  snprintf(rm, sizeof rm, "rm -rf '%s'", dir);
  if (system(rm) != 0) fprintf(stderr, "test_redis: could not remove %s\n", dir);
  return failed;
}
