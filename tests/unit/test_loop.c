/* The loop's timer heap (src/net/loop.c): timers embedded in their owners,
 * armed, re-armed and stopped in a random order, must fire exactly once
 * each, never after being stopped, never before their deadline, and in
 * deadline order. Run on a real loop (dx_loop_run), so the heap is checked
 * the way connections use it.
 *
 * Also: dx_loop_stop keeps errno (it is called from signal handlers), even
 * when its write to the loop's eventfd fails. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "duplex.h"
#include "net/loop.h"

#define N 2000

typedef struct owner {
  dx__timer timer;
  uint64_t due;  /* the loop time it was last armed for */
  int armed;     /* what the test believes */
  int fired;
} owner;

static owner owners[N];
static dx_loop *loop;
static int remaining; /* armed timers that have not fired yet */
static uint64_t last_fire;
static int out_of_order, fired_unarmed, fired_early;

static void on_fire(dx__timer *t) {
  owner *o = (owner *)((char *)t - offsetof(owner, timer));
  uint64_t now = dx__loop_now(loop);
  if (!o->armed) fired_unarmed++;
  if (now < o->due) fired_early++;
  /* Timers due in the same iteration fire in deadline order. */
  if (o->due < last_fire) out_of_order++;
  last_fire = o->due;
  o->armed = 0;
  o->fired++;
  if (--remaining == 0) dx__loop_unref(loop);
}

static uint32_t rng = 12345;
static uint32_t next_rand(void) {
  rng ^= rng << 13;
  rng ^= rng >> 17;
  rng ^= rng << 5;
  return rng;
}

static void test_random_arm_stop_fire(void **state) {
  (void)state;
  loop = dx_loop_new();
  assert_non_null(loop);
  for (int i = 0; i < N; i++) dx__timer_init(&owners[i].timer, on_fire);
  /* Many operations on random timers: arm (or re-arm) with 0..60 ms, or
   * stop. The heap sees inserts, removals from the middle and updates. */
  for (int k = 0; k < 20 * N; k++) {
    owner *o = &owners[next_rand() % N];
    if (next_rand() % 4 == 0) {
      dx__timer_stop(loop, &o->timer);
      o->armed = 0;
    } else {
      uint64_t ms = next_rand() % 61;
      assert_int_equal(dx__timer_start(loop, &o->timer, ms), 0);
      o->due = dx__loop_now(loop) + ms;
      o->armed = 1;
    }
    assert_int_equal(dx__timer_active(&o->timer), o->armed);
  }
  for (int i = 0; i < N; i++) remaining += owners[i].armed;
  int expected = remaining;
  assert_true(expected > N / 2);
  dx__loop_ref(loop); /* dropped by the last timer */
  assert_int_equal(dx_loop_run(loop), 0);
  assert_int_equal(remaining, 0);
  assert_int_equal(fired_unarmed, 0);
  assert_int_equal(fired_early, 0);
  assert_int_equal(out_of_order, 0);
  int fired = 0;
  for (int i = 0; i < N; i++) {
    assert_true(owners[i].fired <= 1);
    assert_false(dx__timer_active(&owners[i].timer));
    fired += owners[i].fired;
  }
  assert_int_equal(fired, expected);
  dx_loop_free(loop);
}

/* A timer's heap position has 24 bits: a reservation that would take the
 * heap past DX__TIMER_MAX is refused with DX_ENOMEM (before any memory is
 * asked for), and one within it still succeeds afterwards. */
static void test_reserve_limit(void **state) {
  (void)state;
  dx_loop *l = dx_loop_new();
  assert_non_null(l);
  assert_int_equal(dx__timer_reserve(l, DX__TIMER_MAX + 1u), DX_ENOMEM);
  assert_int_equal(dx__timer_reserve(l, 2), 0);
  assert_int_equal(dx__timer_reserve(l, DX__TIMER_MAX - 1u), DX_ENOMEM);
  assert_int_equal(dx__timer_reserve(l, UINT32_MAX), DX_ENOMEM); /* no wrap */
  dx__timer t;
  dx__timer_init(&t, on_fire);
  assert_false(dx__timer_active(&t));
  assert_int_equal(dx__timer_start(l, &t, 1000), 0);
  assert_true(dx__timer_active(&t));
  dx__timer_stop(l, &t);
  assert_false(dx__timer_active(&t));
  dx__timer_unreserve(l, 2);
  dx_loop_free(l);
}

/* The eventfd descriptors this process has open, by number (-1 ends). */
static void eventfds(int *fds, int max) {
  int n = 0;
  DIR *d = opendir("/proc/self/fd");
  assert_non_null(d);
  struct dirent *e;
  while ((e = readdir(d)) && n < max - 1) {
    char target[64];
    ssize_t len = readlinkat(dirfd(d), e->d_name, target, sizeof target - 1);
    if (len < 0) continue;
    target[len] = '\0';
    if (strcmp(target, "anon_inode:[eventfd]") == 0) fds[n++] = atoi(e->d_name);
  }
  fds[n] = -1;
  closedir(d);
}

static int contains(const int *fds, int fd) {
  for (; *fds >= 0; fds++)
    if (*fds == fd) return 1;
  return 0;
}

static int stop_lost;
static void on_guard(dx__timer *t) {
  (void)t;
  stop_lost = 1;
  dx__loop_unref(loop);
}

#define SENTINEL 4242 /* no errno value */

static void test_stop_keeps_errno(void **state) {
  (void)state;
  int before[64], after[64];
  eventfds(before, 64);
  loop = dx_loop_new();
  assert_non_null(loop);
  eventfds(after, 64);
  int wakefd = -1;
  for (int i = 0; after[i] >= 0; i++)
    if (!contains(before, after[i])) wakefd = after[i];
  assert_true(wakefd >= 0);

  /* The write succeeds. */
  errno = SENTINEL;
  dx_loop_stop(loop);
  assert_int_equal(errno, SENTINEL);
  uint64_t v;
  assert_int_equal(read(wakefd, &v, sizeof v), sizeof v);
  assert_int_equal(v, 1);

  /* The write fails: the counter is at its maximum, so adding 1 is EAGAIN. */
  v = UINT64_MAX - 1;
  assert_int_equal(write(wakefd, &v, sizeof v), sizeof v);
  errno = SENTINEL;
  dx_loop_stop(loop);
  assert_int_equal(errno, SENTINEL);
  assert_int_equal(read(wakefd, &v, sizeof v), sizeof v);
  assert_int_equal(v, UINT64_MAX - 1); /* the stop's write did not land */

  /* The stop is kept all the same: dx_loop_run() returns at once although
   * something (a reference) would keep it going. The timer only ends the
   * run should the stop have been lost, so a failure cannot hang. */
  dx__timer guard;
  dx__timer_init(&guard, on_guard);
  assert_int_equal(dx__timer_start(loop, &guard, 60000), 0);
  dx__loop_ref(loop);
  assert_int_equal(dx_loop_run(loop), 0);
  assert_int_equal(stop_lost, 0);
  dx__timer_stop(loop, &guard);
  dx_loop_free(loop);
}

/* dx__loop_post_owned: a function that runs is not dropped; one still
 * queued when the loop is freed is dropped, once, with a NULL loop. */
static int ran, dropped;
static dx_loop *drop_loop_seen = (dx_loop *)1;
static void owned_run(dx_loop *l, void *ud) {
  (void)l;
  ran += *(int *)ud;
  dx_loop_stop(l);
}
static void owned_drop(dx_loop *l, void *ud) {
  drop_loop_seen = l;
  dropped += *(int *)ud;
}

static void test_post_owned_drop(void **state) {
  (void)state;
  int one = 1, ten = 10;
  loop = dx_loop_new();
  assert_non_null(loop);
  assert_int_equal(dx__loop_post_owned(loop, owned_run, owned_drop, &one), 0);
  dx__loop_ref(loop); /* something to run for until the posted stop */
  assert_int_equal(dx_loop_run(loop), 0);
  dx__loop_unref(loop);
  assert_int_equal(ran, 1);
  assert_int_equal(dropped, 0);
  /* Posted, never run: dropped by dx_loop_free. */
  assert_int_equal(dx__loop_post_owned(loop, owned_run, owned_drop, &ten), 0);
  assert_int_equal(dx_loop_post(loop, owned_run, &ten), 0); /* no drop: forgotten */
  dx_loop_free(loop);
  assert_int_equal(ran, 1);
  assert_int_equal(dropped, 10);
  assert_null(drop_loop_seen);
}


/* Handles of two kinds on one loop: each kind's list holds only its own,
 * removal from the head, middle and tail keeps them walkable, a fifth kind
 * is refused, and dx_loop_free cuts every handle still on, the kind added
 * last first. */
typedef struct {
  dx__handle h;
  int kind, id;
} kind_handle;
static int cut_log[8], ncut;
static dx_loop *cut_loop;
static void cut_kind(dx__handle *h, int kind) {
  kind_handle *k = (kind_handle *)h;
  k->kind = kind;
  cut_log[ncut++] = k->id;
  dx__handle_remove(cut_loop, h);
}
/* Different bodies, so that no two are folded into one address. */
static void cut_a(dx__handle *h) { cut_kind(h, 'a'); }
static void cut_b(dx__handle *h) { cut_kind(h, 'b'); }
static void cut_c(dx__handle *h) { cut_kind(h, 'c'); }
static void cut_d(dx__handle *h) { cut_kind(h, 'd'); }
static void cut_e(dx__handle *h) { cut_kind(h, 'e'); }

static int ids(dx_loop *l, dx__handle_cut cut, int *out) {
  int n = 0;
  for (dx__handle *h = dx__loop_handles(l, cut); h; h = h->next) out[n++] = ((kind_handle *)h)->id;
  return n;
}

static void test_handle_kinds(void **state) {
  (void)state;
  dx_loop *l = dx_loop_new();
  assert_non_null(l);
  cut_loop = l;
  kind_handle a[3] = {{.id = 1}, {.id = 2}, {.id = 3}}, b[2] = {{.id = 11}, {.id = 12}};
  assert_null(dx__loop_handles(l, cut_a));
  assert_int_equal(dx__handle_add(l, &b[0].h, cut_b), 0);
  for (int i = 0; i < 3; i++) assert_int_equal(dx__handle_add(l, &a[i].h, cut_a), 0);
  assert_int_equal(dx__handle_add(l, &b[1].h, cut_b), 0);
  int got[8];
  assert_int_equal(ids(l, cut_a, got), 3);
  assert_int_equal(got[0], 3); /* most recent first */
  assert_int_equal(got[2], 1);
  assert_int_equal(ids(l, cut_b, got), 2);
  assert_int_equal(got[0], 12);
  assert_int_equal(got[1], 11);
  dx__handle_remove(l, &a[1].h); /* middle */
  assert_int_equal(ids(l, cut_a, got), 2);
  assert_int_equal(got[0] * 10 + got[1], 31);
  dx__handle_remove(l, &a[2].h); /* head */
  assert_int_equal(ids(l, cut_a, got), 1);
  assert_int_equal(got[0], 1);
  dx__handle_remove(l, &b[0].h); /* tail */
  assert_int_equal(ids(l, cut_b, got), 1);
  assert_int_equal(got[0], 12);
  /* Two kinds more fit, a fifth does not; a refused handle is on no list. */
  kind_handle c = {.id = 21}, d = {.id = 31}, e = {.id = 41};
  assert_int_equal(dx__handle_add(l, &c.h, cut_c), 0);
  assert_int_equal(dx__handle_add(l, &d.h, cut_d), 0);
  assert_int_equal(dx__handle_add(l, &e.h, cut_e), DX_ENOMEM);
  assert_null(dx__loop_handles(l, cut_e));
  /* Left: a1 (kind a), b12 (b), c21 (c), d31 (d); cut d, c, a, b. */
  dx__handle_remove(l, &a[0].h);
  assert_int_equal(dx__handle_add(l, &a[0].h, cut_a), 0); /* the kind stays */
  ncut = 0;
  dx_loop_free(l);
  assert_int_equal(ncut, 4);
  assert_int_equal(cut_log[0], 31);
  assert_int_equal(cut_log[1], 21);
  assert_int_equal(cut_log[2], 1);
  assert_int_equal(cut_log[3], 12);
  assert_int_equal(a[0].kind, 'a');
  assert_int_equal(b[1].kind, 'b');
}

/* A callback's number is given at its first use and kept: two functions
 * get two numbers, each maps back to its function, and a timer fires the
 * function it was given. */
static int kind_fired;
static dx_loop *kind_loop;
static void kind_fire(int v) {
  kind_fired += v;
  if (kind_fired == 11) dx__loop_unref(kind_loop); /* both fired: done */
}
static void kind_timer_a(dx__timer *t) { (void)t; kind_fire(1); }
static void kind_timer_b(dx__timer *t) { (void)t; kind_fire(10); }

static void test_kinds(void **state) {
  (void)state;
  uint8_t a = dx__kind((dx__fn)kind_timer_a), b = dx__kind((dx__fn)kind_timer_b);
  assert_int_not_equal(a, b);
  assert_int_equal(dx__kind((dx__fn)kind_timer_a), a);
  assert_true(dx__kind_fn(a) == (dx__fn)kind_timer_a);
  assert_true(dx__kind_fn(b) == (dx__fn)kind_timer_b);
  dx_loop *l = kind_loop = dx_loop_new();
  assert_non_null(l);
  dx__timer ta, tb;
  dx__timer_init(&ta, kind_timer_a);
  dx__timer_init(&tb, kind_timer_b);
  assert_int_equal(ta.cb, a);
  assert_int_equal(tb.cb, b);
  assert_int_equal(dx__timer_start(l, &ta, 1), 0);
  assert_int_equal(dx__timer_start(l, &tb, 2), 0);
  dx__loop_ref(l); /* dropped once both fired */
  kind_fired = 0;
  assert_int_equal(dx_loop_run(l), 0);
  assert_int_equal(kind_fired, 11); /* each timer called its own function once */
  dx_loop_free(l);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_handle_kinds),
      cmocka_unit_test(test_kinds),
      cmocka_unit_test(test_post_owned_drop),
      cmocka_unit_test(test_random_arm_stop_fire),
      cmocka_unit_test(test_reserve_limit),
      cmocka_unit_test(test_stop_keeps_errno),
  };
  return cmocka_run_group_tests_name("loop", tests, NULL, NULL);
}
