/* The write batch (src/net/batch.c): many sockets' small writes in one
 * io_uring submission. What its users rely on:
 * - every queued write's bytes arrive, in order per socket, and `done`
 *   runs once for each with the bytes taken, in queue order;
 * - a socket without room says so (-EAGAIN, or a short count) through
 *   `done`, with the bytes, so the owner can queue the rest; nothing is
 *   written later behind its back;
 * - a peer that is gone gives -EPIPE or -ECONNRESET, not a signal;
 * - the caller's buffer may be reused at once (the batch copies);
 * - more writes than the ring holds flush on their own;
 * - DX_IO_URING=0 turns it off (dx__batch_new returns NULL and
 *   dx__batch_send 0: the caller writes itself).
 * Skipped, with a message, where the kernel refuses io_uring. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <liburing.h>

#include "net/batch.h"

typedef struct {
  int calls, res;
  uint8_t bytes[DX__BATCH_MAX_BYTES];
  size_t len;
  int order; /* the call's position among all `done` calls */
} result;

static int done_calls;

static void on_done(void *ud, int res, const uint8_t *bytes, size_t len) {
  result *r = ud;
  r->calls++;
  r->res = res;
  memcpy(r->bytes, bytes, len);
  r->len = len;
  r->order = done_calls++;
}

static dx__batch *new_or_skip(void) {
  dx__batch *b = dx__batch_new();
  if (!b) {
    fprintf(stderr, "io_uring is not available here: skipped\n");
    skip();
  }
  return b;
}

static void pair(int sv[2]) {
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  fcntl(sv[0], F_SETFL, O_NONBLOCK);
  fcntl(sv[1], F_SETFL, O_NONBLOCK);
}

static void test_writes_arrive_in_order(void **state) {
  (void)state;
  dx__batch *b = new_or_skip();
  enum { SOCKS = 40 };
  int sv[SOCKS][2];
  result r[SOCKS][2];
  memset(r, 0, sizeof r);
  done_calls = 0;
  for (int i = 0; i < SOCKS; i++) pair(sv[i]);
  char msg[DX__BATCH_MAX_BYTES];
  for (int k = 0; k < 2; k++)
    for (int i = 0; i < SOCKS; i++) {
      int n = snprintf(msg, sizeof msg, "%c%d", k ? 'b' : 'a', i);
      assert_int_equal(dx__batch_send(b, sv[i][0], msg, (size_t)n, on_done, &r[i][k]), 1);
      memset(msg, 'X', sizeof msg); /* the batch holds a copy */
    }
  assert_int_equal(dx__batch_queued(b), 2 * SOCKS);
  for (int i = 0; i < SOCKS; i++) { /* nothing leaves before the flush */
    char buf[64];
    assert_int_equal(recv(sv[i][1], buf, sizeof buf, 0), -1);
    assert_int_equal(errno, EAGAIN);
  }
  dx__batch_flush(b);
  assert_int_equal(dx__batch_queued(b), 0);
  for (int i = 0; i < SOCKS; i++) {
    char want[64], buf[64];
    int n = snprintf(want, sizeof want, "a%db%d", i, i);
    assert_int_equal(recv(sv[i][1], buf, sizeof buf, 0), n);
    assert_memory_equal(buf, want, (size_t)n);
    for (int k = 0; k < 2; k++) {
      assert_int_equal(r[i][k].calls, 1);
      assert_int_equal(r[i][k].res, (int)r[i][k].len);
      assert_int_equal(r[i][k].order, k * SOCKS + i);
    }
    close(sv[i][0]);
    close(sv[i][1]);
  }
  dx__batch_flush(b); /* empty: nothing runs */
  assert_int_equal(done_calls, 2 * SOCKS);
  dx__batch_free(b);
}

static void test_full_socket_and_gone_peer(void **state) {
  (void)state;
  dx__batch *b = new_or_skip();
  int full[2], gone[2];
  pair(full);
  pair(gone);
  char fill[4096];
  memset(fill, 'f', sizeof fill);
  while (send(full[0], fill, sizeof fill, MSG_DONTWAIT) > 0) {
  }
  while (send(full[0], fill, 1, MSG_DONTWAIT) > 0) {
  }
  close(gone[1]);
  result rf = {0}, rg = {0};
  assert_int_equal(dx__batch_send(b, full[0], "ping!!", 6, on_done, &rf), 1);
  assert_int_equal(dx__batch_send(b, gone[0], "ping!!", 6, on_done, &rg), 1);
  dx__batch_flush(b); /* does not block on the full socket */
  assert_int_equal(rf.calls, 1);
  assert_true(rf.res == -EAGAIN || (rf.res >= 0 && rf.res < 6));
  assert_int_equal(rf.len, 6);
  assert_memory_equal(rf.bytes, "ping!!", 6);
  assert_int_equal(rg.calls, 1);
  assert_true(rg.res == -EPIPE || rg.res == -ECONNRESET);
  /* Nothing of the refused write leaves later: drain the full socket, and
   * the last bytes are the filler's. */
  char buf[8192];
  ssize_t n, last = 0;
  char tail = 0;
  while ((n = recv(full[1], buf, sizeof buf, 0)) > 0) {
    last = n;
    tail = buf[n - 1];
  }
  assert_true(last > 0);
  if (rf.res <= 0) assert_int_equal(tail, 'f');
  dx__batch_free(b);
  close(full[0]);
  close(full[1]);
  close(gone[0]);
}

static void test_more_than_the_ring(void **state) {
  (void)state;
  dx__batch *b = new_or_skip();
  /* Ten sockets, a hundred writes each: a Unix socket counts each write's
   * buffer, so one socket would fill before a thousand. */
  enum { SOCKS = 10, EACH = 100, WRITES = SOCKS * EACH };
  int sv[SOCKS][2];
  static result r[WRITES];
  memset(r, 0, sizeof r);
  done_calls = 0;
  for (int s = 0; s < SOCKS; s++) pair(sv[s]);
  for (int i = 0; i < WRITES; i++)
    assert_int_equal(dx__batch_send(b, sv[i % SOCKS][0], &i, sizeof i, on_done, &r[i]), 1);
  dx__batch_flush(b);
  for (int i = 0; i < WRITES; i++) {
    int got;
    assert_int_equal(recv(sv[i % SOCKS][1], &got, sizeof got, 0), (ssize_t)sizeof got);
    assert_int_equal(got, i);
    assert_int_equal(r[i].calls, 1);
    assert_int_equal(r[i].res, (int)sizeof got);
    assert_int_equal(r[i].order, i);
  }
  assert_int_equal(dx__batch_send(b, sv[0][0], "x", DX__BATCH_MAX_BYTES + 1, on_done, &r[0]), 0);
  dx__batch_free(b);
  for (int s = 0; s < SOCKS; s++) {
    close(sv[s][0]);
    close(sv[s][1]);
  }
}

/* io_uring_submit_and_wait, wrapped (tests/CMakeLists.txt): fails with
 * submit_error instead of submitting while that is set; while submit_only
 * is set, hands the kernel only that many of the queued entries, as a
 * kernel short of memory for requests does (the rest stay prepared in the
 * ring, unsubmitted), and returns that count. */
int __real_io_uring_submit_and_wait(struct io_uring *ring, unsigned wait_nr);
int __wrap_io_uring_submit_and_wait(struct io_uring *ring, unsigned wait_nr);
static int submit_error;
static unsigned submit_only;
int __wrap_io_uring_submit_and_wait(struct io_uring *ring, unsigned wait_nr) {
  if (submit_error) return submit_error;
  if (!submit_only) return __real_io_uring_submit_and_wait(ring, wait_nr);
  unsigned held = ring->sq.sqe_tail - ring->sq.sqe_head - submit_only;
  ring->sq.sqe_tail -= held;
  int r = __real_io_uring_submit_and_wait(ring, submit_only);
  ring->sq.sqe_tail += held;
  return r;
}

/* A submission the kernel refuses: every owner hears the error with its
 * bytes, in queue order, none of them reaches the socket, and the batch
 * takes nothing more (its callers write for themselves), down to its free
 * (which must not close the ring a second time: ASan). */
static void test_failed_submission(void **state) {
  (void)state;
  dx__batch *b = new_or_skip();
  int sv[2];
  pair(sv);
  result r[3] = {{0}};
  done_calls = 0;
  for (int i = 0; i < 3; i++)
    assert_int_equal(dx__batch_send(b, sv[0], &i, sizeof i, on_done, &r[i]), 1);
  submit_error = -EBUSY;
  dx__batch_flush(b);
  submit_error = 0;
  for (int i = 0; i < 3; i++) {
    assert_int_equal(r[i].calls, 1);
    assert_int_equal(r[i].res, -EBUSY);
    assert_int_equal(r[i].len, sizeof i);
    int got;
    memcpy(&got, r[i].bytes, sizeof got);
    assert_int_equal(got, i);
    assert_int_equal(r[i].order, i);
  }
  char c;
  assert_int_equal(recv(sv[1], &c, 1, 0), -1);
  assert_int_equal(errno, EAGAIN);
  assert_int_equal(dx__batch_send(b, sv[0], "x", 1, on_done, &r[0]), 0);
  assert_int_equal(dx__batch_queued(b), 0);
  dx__batch_free(b);
  close(sv[0]);
  close(sv[1]);
}

/* The kernel takes 2 of 4 writes: those two arrive and their owners hear
 * so; the other two owners hear -EIO with their bytes (to write them
 * themselves), none of their bytes ever reaches the socket, and the batch
 * takes nothing more. Before, the flush waited for four completions and
 * never returned (the alarm ends the test then). */
static void test_partial_submission(void **state) {
  (void)state;
  dx__batch *b = new_or_skip();
  int sv[2];
  pair(sv);
  result r[4] = {{0}};
  done_calls = 0;
  for (int i = 0; i < 4; i++)
    assert_int_equal(dx__batch_send(b, sv[0], &i, sizeof i, on_done, &r[i]), 1);
  submit_only = 2;
  alarm(10);
  dx__batch_flush(b);
  alarm(0);
  submit_only = 0;
  for (int i = 0; i < 4; i++) {
    assert_int_equal(r[i].calls, 1);
    assert_int_equal(r[i].res, i < 2 ? (int)sizeof i : -EIO);
    assert_int_equal(r[i].len, sizeof i);
    int got;
    memcpy(&got, r[i].bytes, sizeof got);
    assert_int_equal(got, i);
    assert_int_equal(r[i].order, i);
  }
  assert_int_equal(dx__batch_send(b, sv[0], "x", 1, on_done, &r[0]), 0);
  dx__batch_free(b);
  int wire[3];
  assert_int_equal(recv(sv[1], wire, sizeof wire, 0), 2 * (int)sizeof(int));
  assert_int_equal(wire[0], 0);
  assert_int_equal(wire[1], 1);
  char c;
  assert_int_equal(recv(sv[1], &c, 1, 0), -1);
  assert_int_equal(errno, EAGAIN);
  close(sv[0]);
  close(sv[1]);
}

static void test_env_turns_it_off(void **state) {
  (void)state;
  setenv("DX_IO_URING", "0", 1);
  dx__batch *b = dx__batch_new();
  unsetenv("DX_IO_URING");
  assert_null(b);
  result r = {0};
  assert_int_equal(dx__batch_send(NULL, 0, "x", 1, on_done, &r), 0);
  assert_int_equal(dx__batch_queued(NULL), 0);
  dx__batch_flush(NULL);
  dx__batch_free(NULL);
  assert_int_equal(r.calls, 0);
}

int main(void) {
  signal(SIGPIPE, SIG_DFL); /* a SIGPIPE would end the test: there must be none */
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_writes_arrive_in_order),
      cmocka_unit_test(test_full_socket_and_gone_peer),
      cmocka_unit_test(test_more_than_the_ring),
      cmocka_unit_test(test_failed_submission),
      cmocka_unit_test(test_partial_submission),
      cmocka_unit_test(test_env_turns_it_off),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
