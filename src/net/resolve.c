/* Host-name resolution on a thread per request (see resolve.h). */
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

#include "duplex.h"
#include "net/transport.h"

struct dx__resolve {
  atomic_int refs;  /* the thread's and the owner's */
  atomic_int done;  /* the thread has stored its answer (release/acquire) */
  int efd;          /* written by the thread; the owner watches a dup of it */
  unsigned port;
  int rc;
  struct addrinfo *res;
  char why[300];
  char host[];
};

static void unref(dx__resolve *r) {
  if (atomic_fetch_sub_explicit(&r->refs, 1, memory_order_acq_rel) != 1) return;
  if (r->res) freeaddrinfo(r->res);
  close(r->efd);
  free(r);
}

static void *run(void *arg) {
  dx__resolve *r = arg;
  r->rc = dx__tcp_resolve(r->host, r->port, &r->res, r->why, sizeof r->why);
  atomic_store_explicit(&r->done, 1, memory_order_release);
  uint64_t one = 1;
  /* Cannot fail short of a bug: the counter is far from overflowing. */
  ssize_t w = write(r->efd, &one, sizeof one);
  (void)w;
  unref(r);
  return NULL;
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
  if (*fd < 0) goto fail;
  pthread_attr_t attr;
  if (pthread_attr_init(&attr)) goto fail_fd;
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  /* The thread takes no signals: they stay with the embedder's threads
   * (duplex serve waits for SIGTERM with sigwait, for one). */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  pthread_t t;
  int e = pthread_create(&t, &attr, run, r);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  pthread_attr_destroy(&attr);
  if (e == 0) return r;
fail_fd:
  close(*fd);
  *fd = -1;
fail:
  if (r->efd >= 0) close(r->efd);
  free(r);
  return NULL;
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
  if (r) unref(r);
}
