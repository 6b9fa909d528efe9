/* io_uring behind dx__batch (batch.h says what for). The writes' bytes are
 * copied into the batch, so the caller's buffer may go at once; sends are
 * MSG_DONTWAIT, so a full socket answers EAGAIN instead of parking the
 * write in the kernel's worker threads. */
#include "net/batch.h"

#include <errno.h>
#include <liburing.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

enum { BATCH_ENTRIES = 256 }; /* one heartbeat slot of 16,000 connections */

typedef struct {
  uint8_t bytes[DX__BATCH_MAX_BYTES];
  uint8_t len;
  dx__batch_done done;
  void *ud;
} entry;

struct dx__batch {
  struct io_uring ring;
  unsigned n;       /* entries queued */
  unsigned flushing : 1;
  unsigned broken : 1; /* a submission failed: the ring is gone, callers write */
  entry e[BATCH_ENTRIES];
};

dx__batch *dx__batch_new(void) {
  const char *env = getenv("DX_IO_URING");
  if (env && strcmp(env, "0") == 0) return NULL;
  dx__batch *b = malloc(sizeof *b);
  if (!b) return NULL;
  b->n = 0;
  b->flushing = b->broken = 0;
  if (io_uring_queue_init(BATCH_ENTRIES, &b->ring, 0) < 0) {
    free(b);
    return NULL;
  }
  return b;
}

void dx__batch_free(dx__batch *b) {
  if (!b) return;
  dx__batch_flush(b);
  if (!b->broken) io_uring_queue_exit(&b->ring);
  free(b);
}

size_t dx__batch_queued(const dx__batch *b) { return b ? b->n : 0; }

int dx__batch_send(dx__batch *b, int fd, const void *p, size_t len, dx__batch_done done,
                   void *ud) {
  if (!b || len > DX__BATCH_MAX_BYTES || b->flushing || b->broken) return 0;
  if (b->n == BATCH_ENTRIES) dx__batch_flush(b);
  struct io_uring_sqe *sqe = io_uring_get_sqe(&b->ring);
  if (!sqe) return 0; /* cannot happen: the ring has room for every entry */
  entry *e = &b->e[b->n++];
  memcpy(e->bytes, p, len);
  e->len = (uint8_t)len;
  e->done = done;
  e->ud = ud;
  io_uring_prep_send(sqe, fd, e->bytes, len, MSG_NOSIGNAL | MSG_DONTWAIT);
  io_uring_sqe_set_data(sqe, e);
  return 1;
}

/* The kernel's word on some entries is lost, and one left in the ring
 * could leave later, inside another write's bytes, or complete into an
 * entry reused by the next flush. Close the ring (what it still holds
 * never leaves) and let every owner write its bytes itself from now on. */
static void give_up(dx__batch *b) {
  io_uring_queue_exit(&b->ring);
  b->broken = 1;
}

void dx__batch_flush(dx__batch *b) {
  if (!b || !b->n || b->flushing) return;
  b->flushing = 1;
  unsigned n = b->n, seen = 0;
  int r;
  do
    r = io_uring_submit_and_wait(&b->ring, n);
  while (r == -EINTR);
  if (r < 0) give_up(b); /* the kernel took none of them, or some */
  /* It may also take fewer than all (short of memory for requests): only
   * those complete, and waiting for the others would never return. */
  unsigned taken = r < 0 ? 0 : (unsigned)r < n ? (unsigned)r : n;
  /* Results in queue order, whatever order they completed in: a result
   * lives in its entry until every one is in. */
  static const int unset = 1 << 30;
  int res[BATCH_ENTRIES];
  for (unsigned i = 0; i < n; i++) res[i] = r < 0 ? r : unset;
  while (r >= 0 && seen < taken) {
    struct io_uring_cqe *cqe;
    int w = io_uring_wait_cqe(&b->ring, &cqe);
    if (w == -EINTR) continue;
    if (w < 0) { /* the rest are -EIO: their owners write them again */
      give_up(b);
      break;
    }
    entry *e = io_uring_cqe_get_data(cqe);
    res[e - b->e] = cqe->res;
    io_uring_cqe_seen(&b->ring, cqe);
    seen++;
  }
  /* The ones not taken are still in the ring, where a later submission
   * would send them behind their owners' rewrites: close it. */
  if (taken < n && !b->broken) give_up(b);
  b->n = 0;
  for (unsigned i = 0; i < n; i++)
    b->e[i].done(b->e[i].ud, res[i] == unset ? -EIO : res[i], b->e[i].bytes, b->e[i].len);
  b->flushing = 0;
}
