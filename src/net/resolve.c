/* Host-name resolution on a bounded set of threads (see resolve.h). */
#include "net/resolve.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "duplex_codes.h"
#include "net/transport.h"

struct dx__resolve {
  atomic_int refs;  /* the owner's, and the queue's (then its thread's) */
  atomic_int done;  /* the thread has stored its answer (release/acquire) */
  int efd;          /* written by the thread; the owner watches a dup of it */
  unsigned port;
  int rc;
  struct addrinfo *res;
  dx__resolve *prev, *next; /* in the queue (under `lock`) while queued */
  int queued;               /* under `lock` */
  char why[300];
  char host[];
};

/* The process's resolver: requests wait in `queue` (FIFO) for one of at
 * most DX__RESOLVE_THREADS threads. A thread takes requests until the
 * queue is empty, then ends; so the threads are as many as the work
 * needs, none lingers idle, and a thread is started only when a request
 * comes with fewer than the bound running. Everything here is under
 * `lock`: several loops on several threads resolve at once. */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
  dx__resolve *head, *tail;
  unsigned live, peak; /* threads running; the most ever (for the tests) */
  size_t waiting;
} pool;

/* What a thread calls to resolve; tests replace it to hold threads busy. */
int (*dx__resolve_fn)(const char *host, unsigned port, struct addrinfo **out, char *why,
                      size_t cap) = dx__tcp_resolve;

static void unref(dx__resolve *r) {
  if (atomic_fetch_sub_explicit(&r->refs, 1, memory_order_acq_rel) != 1) return;
  if (r->res) freeaddrinfo(r->res);
  close(r->efd);
  free(r);
}

/* Under lock. */
static void unlink_queued(dx__resolve *r) {
  if (r->prev) r->prev->next = r->next;
  else pool.head = r->next;
  if (r->next) r->next->prev = r->prev;
  else pool.tail = r->prev;
  r->prev = r->next = NULL;
  r->queued = 0;
  pool.waiting--;
}

static void answer(dx__resolve *r) {
  r->rc = dx__resolve_fn(r->host, r->port, &r->res, r->why, sizeof r->why);
  atomic_store_explicit(&r->done, 1, memory_order_release);
  uint64_t one = 1;
  /* Cannot fail short of a bug: the counter is far from overflowing. */
  ssize_t w = write(r->efd, &one, sizeof one);
  (void)w;
  unref(r); /* the reference the queue handed over */
}

/* A resolver thread: answers queued requests, oldest first, until none is
 * left. It counts itself out under the same lock that queues requests, so
 * a request is never queued with no thread to take it. */
static void *run(void *arg) {
  (void)arg;
  for (;;) {
    pthread_mutex_lock(&lock);
    dx__resolve *r = pool.head;
    if (!r) {
      pool.live--;
      pthread_mutex_unlock(&lock);
      return NULL;
    }
    unlink_queued(r);
    pthread_mutex_unlock(&lock);
    answer(r);
  }
}

/* Starts a resolver thread (its place in pool.live already taken). 0, or
 * the pthread_create error. */
static int start_thread(void) {
  pthread_attr_t attr;
  int e = pthread_attr_init(&attr);
  if (e) return e;
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  /* The thread takes no signals: they stay with the embedder's threads
   * (duplex serve waits for SIGTERM with sigwait, for one). */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  pthread_t t;
  e = pthread_create(&t, &attr, run, NULL);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  pthread_attr_destroy(&attr);
  return e;
}

dx__resolve *dx__resolve_start(const char *host, unsigned port, int *fd) {
  size_t n = strlen(host) + 1;
  dx__resolve *r = calloc(1, sizeof *r + n);
  if (!r) return NULL;
  memcpy(r->host, host, n);
  r->port = port;
  atomic_init(&r->refs, 2);
  atomic_init(&r->done, 0);
  r->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  *fd = r->efd >= 0 ? fcntl(r->efd, F_DUPFD_CLOEXEC, 0) : -1;
  if (*fd < 0) {
    if (r->efd >= 0) close(r->efd);
    free(r);
    return NULL;
  }
  pthread_mutex_lock(&lock);
  r->prev = pool.tail;
  if (pool.tail) pool.tail->next = r;
  else pool.head = r;
  pool.tail = r;
  r->queued = 1;
  pool.waiting++;
  int spawn = pool.live < DX__RESOLVE_THREADS;
  if (spawn && ++pool.live > pool.peak) pool.peak = pool.live;
  pthread_mutex_unlock(&lock);
  if (!spawn || start_thread() == 0) return r;
  /* No thread to be had (a thread limit, no memory). Threads already
   * running will take the queue, ours included. With none, this thread
   * becomes the resolver for what is queued (ours among it), blocking its
   * loop as a synchronous getaddrinfo() would: late, but every request is
   * answered. It keeps the place in pool.live it took. */
  pthread_mutex_lock(&lock);
  int alone = pool.live == 1;
  if (!alone) pool.live--;
  pthread_mutex_unlock(&lock);
  if (alone) run(NULL);
  return r;
}

int dx__resolve_result(dx__resolve *r, struct addrinfo **out, char *why, size_t cap) {
  *out = NULL;
  if (!atomic_load_explicit(&r->done, memory_order_acquire)) {
    snprintf(why, cap, "resolver answered nothing");
    return DX_EADDR;
  }
  if (r->rc) {
    snprintf(why, cap, "%s", r->why);
    return r->rc;
  }
  *out = r->res;
  r->res = NULL;
  return 0;
}

void dx__resolve_release(dx__resolve *r) {
  if (!r) return;
  /* Still waiting: it leaves the queue (no thread will spend a lookup on
   * it), and the queue's reference goes with it. */
  pthread_mutex_lock(&lock);
  int was_queued = r->queued;
  if (was_queued) unlink_queued(r);
  pthread_mutex_unlock(&lock);
  if (was_queued) unref(r);
  unref(r);
}

void dx__resolve_stats(unsigned *live, unsigned *peak, size_t *waiting) {
  pthread_mutex_lock(&lock);
  if (live) *live = pool.live;
  if (peak) *peak = pool.peak;
  if (waiting) *waiting = pool.waiting;
  pthread_mutex_unlock(&lock);
}
