/* Threads: dx_loop_post from several threads at once, and dx_loop_stop from
 * a thread other than the loop's. scripts/test also builds this file alone
 * under ThreadSanitizer (build-tsan, -DDX_TSAN=ON), where any data race in
 * the loop's cross-thread paths fails it; in the other builds it still
 * checks delivery: every message exactly once, in each thread's order.
 *
 * The set-up: a server loop and a client loop, each on its own thread,
 * joined by NCONN connections. NPROD producer threads post messages to both
 * loops at once; the posted function runs on the loop's thread, finds the
 * connection by its id in that loop's registry (kept up to date by on_open,
 * on_message and on_close, which run on the same thread) and dx_send()s.
 * Whatever the peer loop receives is checked against what was posted.
 *
 * The last test frees a loop at once after another thread's dx_loop_stop or
 * dx_loop_post made it return. It compiles src/net/loop.c into this program
 * with a hook that sleeps inside those calls, between the moment the loop
 * can see the request and their write to the loop's eventfd, so a free
 * that does not wait for them is caught every round (see below). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "duplex.h"
#include "net/resolve.h"
#include "net/transport.h"

/* The loop with its race window widened (DX__TEST_WIDEN in src/net/loop.c),
 * for the threads that set widen_here. Its definitions take the place of
 * the library's loop.o, which the linker then never pulls in. */
#define WIDEN_US 2000
static _Thread_local int widen_here;
static _Atomic unsigned widened; /* proves the hook is compiled in */
static atomic_int loop_freed;     /* set once dx_loop_free() has returned */
static _Atomic unsigned too_late; /* the loop was freed before the write */
static void widen(void) {
  if (!widen_here) return;
  widened++;
  usleep(WIDEN_US);
  if (loop_freed) too_late++;
}
#define DX__TEST_WIDEN() widen()
#include "net/loop.c"

#define NCONN 3    /* connections between the two loops */
#define NPROD 4    /* producer threads */
#define NMSG 3000  /* messages each producer posts to each loop */
#define WAIT_S 120 /* generous: TSan slows everything down 5-15x */

/* ------------------------------------------------------------------------ */
/* Waiting with a deadline, so a lost message fails instead of hanging.     */
/* ------------------------------------------------------------------------ */

static pthread_mutex_t sync_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t sync_cv = PTHREAD_COND_INITIALIZER;
static int registered; /* connections entered in a registry (both sides) */
static int complete;   /* sides that received every message */
static int go;         /* producers may start */

static void sync_add(int *counter) {
  pthread_mutex_lock(&sync_mu);
  (*counter)++;
  pthread_cond_broadcast(&sync_cv);
  pthread_mutex_unlock(&sync_mu);
}

static struct timespec deadline_in(int seconds) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  ts.tv_sec += seconds;
  return ts;
}

/* Waits until *counter >= want; 0, or ETIMEDOUT. */
static int sync_wait(int *counter, int want, int seconds) {
  struct timespec dl = deadline_in(seconds);
  int rc = 0;
  pthread_mutex_lock(&sync_mu);
  while (*counter < want && rc == 0) rc = pthread_cond_timedwait(&sync_cv, &sync_mu, &dl);
  int ok = *counter >= want;
  pthread_mutex_unlock(&sync_mu);
  return ok ? 0 : ETIMEDOUT;
}

/* ------------------------------------------------------------------------ */
/* One side: a loop, its registry and what it received.                     */
/* Every field is touched only by the side's loop thread while it runs.     */
/* ------------------------------------------------------------------------ */

typedef struct side side;
typedef struct slot {
  side *s;
  unsigned id;
} slot;

struct side {
  dx_loop *loop;
  dx_server *server; /* server side only */
  slot slots[NCONN];
  dx_conn *reg[NCONN]; /* open connections by id; NULL when not open */
  /* The next sequence number expected from producer p on connection c:
   * producer p sends seq s on connection s % NCONN, in increasing order. */
  unsigned next[NCONN][NPROD];
  unsigned received;   /* well-formed data messages */
  unsigned misordered; /* duplicates, gaps, reordering */
  unsigned malformed;  /* unparsable, or for a connection it did not come on */
  unsigned no_conn;    /* a posted send found no open connection */
  unsigned send_err;   /* dx_send() failed */
  unsigned wrong_loop; /* a posted function ran on another loop */
  unsigned opens, closes;
  int run_rc;
  pthread_t thread;
};

static side server_side, client_side;

static void reg_add(side *s, slot *sl, dx_conn *c) {
  if (sl->id < NCONN && !s->reg[sl->id]) {
    s->reg[sl->id] = c;
    dx_conn_set_user(c, sl);
    sync_add(&registered);
  } else {
    s->malformed++;
  }
}

static void on_open(dx_conn *c) {
  side *s = dx_conn_user(c) == &server_side ? &server_side : &client_side;
  s->opens++;
  if (s == &client_side) {
    /* The client knows its id from dx_connect; the server learns it from
     * this hello, the first message on the connection. */
    slot *sl = dx_conn_user(c);
    char hello[32];
    int n = snprintf(hello, sizeof hello, "hello %u", sl->id);
    reg_add(s, sl, c);
    if (dx_send(c, DX_TEXT, hello, (size_t)n) < 0) s->send_err++;
  }
}

/* The side a connection belongs to, from its user pointer: the side itself
 * (server connection before its hello) or one of the side's slots. */
static side *side_of(dx_conn *c) {
  void *u = dx_conn_user(c);
  if (u == &server_side || u == &client_side) return u;
  return ((slot *)u)->s;
}

static void on_message(dx_conn *c, dx_msg_type type, const uint8_t *data, size_t len) {
  side *s = side_of(c);
  char text[512];
  if (type != DX_TEXT || len >= sizeof text) {
    s->malformed++;
    return;
  }
  memcpy(text, data, len);
  text[len] = '\0';
  unsigned id, prod, seq;
  if (dx_conn_user(c) == s) { /* server side, not registered yet */
    if (sscanf(text, "hello %u", &id) == 1 && id < NCONN)
      reg_add(s, &s->slots[id], c);
    else
      s->malformed++;
    return;
  }
  slot *sl = dx_conn_user(c);
  int used = 0;
  if (sscanf(text, "c=%u p=%u s=%u %n", &id, &prod, &seq, &used) != 3 || id != sl->id ||
      prod >= NPROD || seq >= NMSG) {
    s->malformed++;
    return;
  }
  /* The filler after the numbers must be intact: "x" repeated seq % 300. */
  size_t fill = strlen(text + used);
  if (fill != seq % 300 || strspn(text + used, "x") != fill) {
    s->malformed++;
    return;
  }
  if (seq != s->next[id][prod]) s->misordered++;
  s->next[id][prod] = seq + NCONN;
  if (++s->received == NPROD * NMSG) sync_add(&complete);
}

static void on_close(dx_conn *c, int code, const char *reason, dx_why why, int http_status) {
  (void)code, (void)reason, (void)why, (void)http_status;
  side *s = side_of(c);
  s->closes++;
  void *u = dx_conn_user(c);
  if (u != s) {
    slot *sl = u;
    if (s->reg[sl->id] == c) s->reg[sl->id] = NULL;
  }
}

/* ------------------------------------------------------------------------ */
/* Posting                                                                  */
/* ------------------------------------------------------------------------ */

typedef struct post_msg {
  side *to;
  unsigned conn, prod, seq;
} post_msg;

/* Runs on the loop thread of m->to: look the connection up, send. */
static void post_send(dx_loop *loop, void *ud) {
  post_msg *m = ud;
  side *s = m->to;
  if (loop != s->loop) s->wrong_loop++;
  dx_conn *c = s->reg[m->conn];
  if (!c) {
    s->no_conn++;
  } else {
    char text[512];
    int n = snprintf(text, sizeof text, "c=%u p=%u s=%u ", m->conn, m->prod, m->seq);
    size_t fill = m->seq % 300;
    memset(text + n, 'x', fill);
    if (dx_send(c, DX_TEXT, text, (size_t)n + fill) < 0) s->send_err++;
  }
  free(m);
}

typedef struct producer {
  unsigned index;
  pthread_t thread;
  unsigned post_err; /* read by the main thread after the join */
} producer;

static void *produce(void *arg) {
  producer *p = arg;
  pthread_mutex_lock(&sync_mu);
  while (!go) pthread_cond_wait(&sync_cv, &sync_mu);
  pthread_mutex_unlock(&sync_mu);
  side *to[2] = {&server_side, &client_side};
  for (unsigned seq = 0; seq < NMSG; seq++) {
    for (int k = 0; k < 2; k++) {
      post_msg *m = malloc(sizeof *m);
      if (!m) {
        p->post_err++;
        continue;
      }
      *m = (post_msg){to[k], seq % NCONN, p->index, seq};
      if (dx_loop_post(to[k]->loop, post_send, m) != 0) {
        free(m);
        p->post_err++;
      }
    }
    /* Let the loops run between bursts, so batches are sometimes small
     * and posting overlaps with the loop draining its queue. */
    if (seq % 64 == 63) sched_yield();
  }
  return NULL;
}

static void *run_side(void *arg) {
  side *s = arg;
  s->run_rc = dx_loop_run(s->loop);
  return NULL;
}

/* Joins t; 0, or ETIMEDOUT when it is still running after `seconds`. */
static int join_within(pthread_t t, int seconds) {
  struct timespec dl = deadline_in(seconds);
  return pthread_timedjoin_np(t, NULL, &dl);
}

/* ------------------------------------------------------------------------ */
/* Tests                                                                    */
/* ------------------------------------------------------------------------ */

static void test_posts_from_many_threads(void **state) {
  (void)state;
  memset(&server_side, 0, sizeof server_side);
  memset(&client_side, 0, sizeof client_side);
  registered = complete = go = 0;
  for (unsigned i = 0; i < NCONN; i++) {
    server_side.slots[i] = (slot){&server_side, i};
    client_side.slots[i] = (slot){&client_side, i};
    for (unsigned p = 0; p < NPROD; p++) server_side.next[i][p] = client_side.next[i][p] = i;
  }

  dx_options *o = dx_options_new();
  assert_non_null(o);
  dx_options_on_open(o, on_open);
  dx_options_on_message(o, on_message);
  dx_options_on_close(o, on_close);

  server_side.loop = dx_loop_new();
  client_side.loop = dx_loop_new();
  assert_non_null(server_side.loop);
  assert_non_null(client_side.loop);
  dx_options_set_user(o, &server_side);
  server_side.server = dx_server_new(server_side.loop, o);
  assert_non_null(server_side.server);
  assert_int_equal(dx_server_listen(server_side.server, "127.0.0.1", 0), 0);
  char url[64];
  /* By name, so each connection's resolver thread (src/net/resolve.c) runs
   * under ThreadSanitizer too. */
  snprintf(url, sizeof url, "ws://localhost:%u/", dx_server_port(server_side.server));
  /* Neither loop runs yet, so this thread may still act for both. */
  dx_options_set_user(o, &client_side);
  for (unsigned i = 0; i < NCONN; i++) {
    dx_conn *c;
    assert_int_equal(dx_connect(client_side.loop, url, o, &c), 0);
    dx_conn_set_user(c, &client_side.slots[i]);
  }
  dx_options_free(o);

  assert_int_equal(pthread_create(&server_side.thread, NULL, run_side, &server_side), 0);
  assert_int_equal(pthread_create(&client_side.thread, NULL, run_side, &client_side), 0);
  producer prods[NPROD];
  memset(prods, 0, sizeof prods);
  for (unsigned p = 0; p < NPROD; p++) {
    prods[p].index = p;
    assert_int_equal(pthread_create(&prods[p].thread, NULL, produce, &prods[p]), 0);
  }

  /* Both registries full, then every producer starts at once. */
  int reg_rc = sync_wait(&registered, 2 * NCONN, WAIT_S);
  pthread_mutex_lock(&sync_mu);
  go = 1;
  pthread_cond_broadcast(&sync_cv);
  pthread_mutex_unlock(&sync_mu);
  for (unsigned p = 0; p < NPROD; p++) assert_int_equal(join_within(prods[p].thread, WAIT_S), 0);
  int done_rc = reg_rc ? reg_rc : sync_wait(&complete, 2, WAIT_S);

  /* Stopped from this thread while both loops still have work that would
   * keep them running (a listening server, open connections). */
  dx_loop_stop(server_side.loop);
  dx_loop_stop(client_side.loop);
  int sj = join_within(server_side.thread, 10);
  int cj = join_within(client_side.thread, 10);
  if (sj || cj) {
    /* A loop that ignored the stop cannot be freed safely; fail loudly. */
    fail_msg("dx_loop_stop from another thread did not stop the %s loop",
             sj ? "server" : "client");
  }

  side *sides[2] = {&server_side, &client_side};
  for (int k = 0; k < 2; k++) {
    side *s = sides[k];
    print_message("%s: received %u/%u, misordered %u, malformed %u, no_conn %u, send_err %u\n",
                  k ? "client" : "server", s->received, NPROD * NMSG, s->misordered,
                  s->malformed, s->no_conn, s->send_err);
  }
  assert_int_equal(reg_rc, 0);
  assert_int_equal(done_rc, 0);
  for (unsigned p = 0; p < NPROD; p++) assert_int_equal(prods[p].post_err, 0);
  for (int k = 0; k < 2; k++) {
    side *s = sides[k];
    assert_int_equal(s->run_rc, 0);
    assert_int_equal(s->wrong_loop, 0);
    assert_int_equal(s->no_conn, 0);
    assert_int_equal(s->send_err, 0);
    assert_int_equal(s->malformed, 0);
    assert_int_equal(s->misordered, 0);
    assert_int_equal(s->received, NPROD * NMSG);
    assert_int_equal(s->opens, NCONN);
    assert_int_equal(s->closes, 0);
    /* Exactly once: each (connection, producer) stream ended just past the
     * last sequence number sent on it. */
    for (unsigned c = 0; c < NCONN; c++)
      for (unsigned p = 0; p < NPROD; p++) {
        unsigned last = NMSG - 1 - (NMSG - 1 + NCONN - c) % NCONN;
        assert_int_equal(s->next[c][p], last + NCONN);
      }
  }

  /* The loop threads are gone (joined), so this thread may free. */
  dx_server_free(server_side.server);
  assert_int_equal(server_side.closes, NCONN);
  dx_loop_free(server_side.loop);
  dx_loop_free(client_side.loop);
}

/* dx_loop_stop from another thread at any moment relative to dx_loop_run:
 * before it starts (the request is kept), while it blocks in epoll, or
 * while it is busy. It must return every time, and be reusable after. */
typedef struct stopper {
  dx_loop *loop;
  unsigned delay_us;
} stopper;

static void *stop_later(void *arg) {
  stopper *st = arg;
  if (st->delay_us) usleep(st->delay_us);
  dx_loop_stop(st->loop);
  return NULL;
}

typedef struct runner {
  dx_loop *loop;
  int rc;
} runner;

static void *run_loop(void *arg) {
  runner *r = arg;
  r->rc = dx_loop_run(r->loop);
  return NULL;
}

static void test_stop_from_another_thread(void **state) {
  (void)state;
  dx_loop *loop = dx_loop_new();
  assert_non_null(loop);
  /* A listening server keeps the loop running: only a stop ends it. */
  dx_server *srv = dx_server_new(loop, NULL);
  assert_non_null(srv);
  assert_int_equal(dx_server_listen(srv, "127.0.0.1", 0), 0);
  for (unsigned i = 0; i < 60; i++) {
    runner r = {loop, -1};
    stopper st = {loop, (i % 6) * 400}; /* 0 .. 2 ms */
    pthread_t tr, ts;
    assert_int_equal(pthread_create(&tr, NULL, run_loop, &r), 0);
    assert_int_equal(pthread_create(&ts, NULL, stop_later, &st), 0);
    assert_int_equal(join_within(ts, 10), 0);
    if (join_within(tr, 10) != 0) fail_msg("round %u: the loop did not stop", i);
    assert_int_equal(r.rc, 0);
  }
  dx_server_free(srv);
  dx_loop_free(loop);
}

/* The documented pattern: another thread stops the loop (or posts a
 * function that stops it), the owner sees dx_loop_run() return and frees
 * the loop at once. The other thread is still inside dx_loop_stop() or
 * dx_loop_post(), asleep in the widened window before its write to the
 * eventfd. dx_loop_free() must not return before that write: the hook
 * checks, after its sleep, that the loop was not freed meanwhile. If it
 * was, the write reads the freed loop (ASan: heap-use-after-free; TSan: a
 * race with free), and when the freed memory still holds the eventfd's
 * number its 8 bytes land on whatever holds that number now: here a pipe,
 * dup2()ed there right after the free, which must stay empty. No timing is
 * asserted: the sleep only makes a wrong order likely. The loop is kept
 * busy (a posted function that posts itself again), so it sees the request
 * before the write that would otherwise be what wakes it. */
#define ROUNDS 100

typedef struct waker {
  dx_loop *loop;
  int post;     /* dx_loop_post a function that stops, else dx_loop_stop */
  int post_rc;
} waker;

static void spin(dx_loop *loop, void *ud) {
  (void)ud;
  dx_loop_post(loop, spin, NULL);
}

static void stop_here(dx_loop *loop, void *ud) {
  (void)ud;
  dx_loop_stop(loop);
}

static void never_readable(dx_loop *loop, int fd, void *ud) { (void)loop, (void)fd, (void)ud; }

static void *wake_and_leave(void *arg) {
  waker *w = arg;
  widen_here = 1;
  if (w->post)
    w->post_rc = dx_loop_post(w->loop, stop_here, NULL);
  else
    dx_loop_stop(w->loop);
  return NULL;
}

static void test_free_right_after_stop(void **state) {
  (void)state;
  int keep[2]; /* watched, never written: keeps dx_loop_run() going */
  assert_int_equal(pipe2(keep, O_CLOEXEC), 0);
  int landed = 0, post_err = 0;
  widened = too_late = 0;
  for (unsigned i = 0; i < ROUNDS; i++) {
    dx_loop *loop = dx_loop_new();
    assert_non_null(loop);
    assert_int_equal(dx_loop_watch_fd(loop, keep[0], never_readable, NULL), 0);
    assert_int_equal(dx_loop_post(loop, spin, NULL), 0);
    /* Made while the eventfd is open, so neither end takes its number. */
    int trap[2];
    assert_int_equal(pipe2(trap, O_NONBLOCK | O_CLOEXEC), 0);
    loop_freed = 0;
    waker w = {loop, (int)(i % 2), 0};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, wake_and_leave, &w), 0);
    assert_int_equal(dx_loop_run(loop), 0);
    int wakefd = loop->wakefd;
    dx_loop_free(loop);
    loop_freed = 1;
    assert_int_equal(dup2(trap[1], wakefd), wakefd);
    assert_int_equal(join_within(t, WAIT_S), 0);
    uint64_t v;
    if (read(trap[0], &v, sizeof v) >= 0) landed++;
    post_err += w.post_rc != 0;
    close(wakefd);
    close(trap[0]);
    close(trap[1]);
  }
  close(keep[0]);
  close(keep[1]);
  print_message("%u rounds: freed before the write %u, late writes landed %d\n",
                ROUNDS, (unsigned)too_late, landed);
  assert_int_equal(widened, ROUNDS);
  assert_int_equal(too_late, 0);
  assert_int_equal(post_err, 0);
  assert_int_equal(landed, 0);
}

/* Resolver threads stay within their bound however many loops connect by
 * name at once. NLOOPS loops, each on its own thread, start NRESOLVE
 * connects to "localhost" between them (a port nothing listens on: each
 * ends refused, after its name resolved). The resolver is held at a gate
 * until the test has seen the bound reached with the rest queued; two
 * more connects are then made and given up (dx_close) while queued, which
 * must leave the queue without a lookup. Opened, every request completes:
 * exactly NRESOLVE lookups, and never more threads than the bound. */
#define NLOOPS 4
#define NRESOLVE 50

static pthread_mutex_t gate_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cv = PTHREAD_COND_INITIALIZER;
static int gate_open;
static unsigned in_lookup, most_in_lookup, lookups;

static int gated_resolve(const char *host, unsigned port, struct addrinfo **out, char *why,
                         size_t cap) {
  pthread_mutex_lock(&gate_mu);
  lookups++;
  if (++in_lookup > most_in_lookup) most_in_lookup = in_lookup;
  pthread_cond_broadcast(&gate_cv);
  while (!gate_open) pthread_cond_wait(&gate_cv, &gate_mu);
  in_lookup--;
  pthread_mutex_unlock(&gate_mu);
  return dx__tcp_resolve(host, port, out, why, cap);
}

typedef struct connector {
  dx_loop *loop;
  char url[64];
  unsigned n;          /* connects to start */
  unsigned closes;     /* on_close calls (this loop's thread only) */
  unsigned not_refused; /* of those, ones that did not end refused */
  unsigned aborted;    /* given up while queued */
  int rc;
  pthread_t thread;
} connector;

static void resolve_on_close(dx_conn *c, int code, const char *reason, dx_why why, int st) {
  (void)code, (void)st;
  connector *k = dx_conn_user(c);
  k->closes++;
  if (strcmp(reason, "connection attempt aborted") == 0) {
    k->aborted++;
    return;
  }
  /* Resolved, then refused on both addresses. */
  if (why != DX_WHY_TRANSPORT_ERROR || !strstr(reason, "refused")) {
    print_message("unexpected end: why=%s reason=%s\n", dx_why_name(why), reason);
    k->not_refused++;
  }
}

static dx_options *resolve_options(connector *k) {
  dx_options *o = dx_options_new();
  assert_non_null(o);
  dx_options_on_close(o, resolve_on_close);
  dx_options_set_user(o, k);
  dx_options_set_handshake_timeout(o, WAIT_S * 1000);
  return o;
}

static void *connect_and_run(void *arg) {
  connector *k = arg;
  dx_options *o = resolve_options(k);
  for (unsigned i = 0; i < k->n; i++) {
    dx_conn *c;
    if (dx_connect(k->loop, k->url, o, &c) != 0) k->not_refused++;
  }
  dx_options_free(o);
  k->rc = dx_loop_run(k->loop); /* returns once its connections are gone */
  return NULL;
}

/* Posted to loop 0 once the queue is full: two more, given up at once. */
static int aborts_done;
static void connect_and_abort(dx_loop *loop, void *ud) {
  connector *k = ud;
  dx_options *o = resolve_options(k);
  for (int i = 0; i < 2; i++) {
    dx_conn *c;
    if (dx_connect(loop, k->url, o, &c) == 0) dx_close(c, DX_CLOSE_NORMAL, NULL);
    else k->not_refused++;
  }
  dx_options_free(o);
  sync_add(&aborts_done);
}

/* Polls the resolver until live threads and waiting requests are as
 * given; 0, or ETIMEDOUT. */
static int resolver_reaches(unsigned live, size_t waiting) {
  for (int i = 0; i < WAIT_S * 100; i++) {
    unsigned l;
    size_t w;
    dx__resolve_stats(&l, NULL, &w);
    if (l == live && w == waiting) return 0;
    usleep(10000);
  }
  return ETIMEDOUT;
}

static void test_resolver_threads_bounded(void **state) {
  (void)state;
  /* A port nothing listens on (taken, then let go). */
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t al = sizeof a;
  assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
  assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &al), 0);
  close(fd);
  dx__resolve_fn = gated_resolve; /* before any thread: they read it */
  connector ks[NLOOPS];
  memset(ks, 0, sizeof ks);
  for (unsigned i = 0; i < NLOOPS; i++) {
    ks[i].loop = dx_loop_new();
    assert_non_null(ks[i].loop);
    snprintf(ks[i].url, sizeof ks[i].url, "ws://localhost:%u/", (unsigned)ntohs(a.sin_port));
    ks[i].n = NRESOLVE / NLOOPS + (i < NRESOLVE % NLOOPS);
    assert_int_equal(pthread_create(&ks[i].thread, NULL, connect_and_run, &ks[i]), 0);
  }
  /* Every thread holds a lookup at the gate; the rest wait in the queue. */
  if (resolver_reaches(DX__RESOLVE_THREADS, NRESOLVE - DX__RESOLVE_THREADS)) {
    unsigned l;
    size_t w;
    dx__resolve_stats(&l, NULL, &w);
    fail_msg("the resolver never held %d lookups with %d waiting (now %u threads, %zu "
             "waiting, %u lookups at the gate)", DX__RESOLVE_THREADS,
             NRESOLVE - DX__RESOLVE_THREADS, l, w, in_lookup);
  }
  assert_int_equal(dx_loop_post(ks[0].loop, connect_and_abort, &ks[0]), 0);
  assert_int_equal(sync_wait(&aborts_done, 1, WAIT_S), 0);
  /* The two given up leave the queue (with their memory, at the end of
   * loop 0's iteration), while the gate still holds every thread. */
  if (resolver_reaches(DX__RESOLVE_THREADS, NRESOLVE - DX__RESOLVE_THREADS))
    fail_msg("requests given up while queued stayed in the queue");
  unsigned peak;
  pthread_mutex_lock(&gate_mu);
  gate_open = 1;
  pthread_cond_broadcast(&gate_cv);
  pthread_mutex_unlock(&gate_mu);
  unsigned closes = 0, bad = 0, aborted = 0;
  for (unsigned i = 0; i < NLOOPS; i++) {
    if (join_within(ks[i].thread, WAIT_S) != 0) fail_msg("loop %u never finished", i);
    assert_int_equal(ks[i].rc, 0);
    closes += ks[i].closes;
    bad += ks[i].not_refused;
    aborted += ks[i].aborted;
    dx_loop_free(ks[i].loop);
  }
  /* The threads end once the queue is empty. */
  assert_int_equal(resolver_reaches(0, 0), 0);
  dx__resolve_stats(NULL, &peak, NULL);
  dx__resolve_fn = dx__tcp_resolve;
  print_message("%u lookups, at most %u at once, %u resolver threads at most\n", lookups,
                most_in_lookup, peak);
  assert_int_equal(closes, NRESOLVE + 2);
  assert_int_equal(aborted, 2);
  assert_int_equal(bad, 0);
  assert_int_equal(lookups, NRESOLVE);
  assert_int_equal(most_in_lookup, DX__RESOLVE_THREADS);
  assert_int_equal(peak, DX__RESOLVE_THREADS);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_posts_from_many_threads),
      cmocka_unit_test(test_stop_from_another_thread),
      cmocka_unit_test(test_free_right_after_stop),
      cmocka_unit_test(test_resolver_threads_bounded),
  };
  return cmocka_run_group_tests_name("threads", tests, NULL, NULL);
}
