/* hiredis on a dx_loop; see hiredis_loop.h. */
#include "pubsub/hiredis_loop.h"

#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <time.h>

#include "net/loop.h"

typedef struct dx__hiredis_ev {
  dx__io io;            /* first: the loop hands back &io */
  dx_loop *loop;
  redisAsyncContext *ac; /* NULL once hiredis has let go of us */
  uint32_t want;        /* EPOLLIN / EPOLLOUT, as hiredis asked */
  uint8_t registered;   /* the fd is in the epoll set */
  dx__task release;
} dx__hiredis_ev;

/* Registers exactly what hiredis wants. With nothing wanted the fd leaves
 * the epoll set instead of staying with no events: epoll always reports
 * EPOLLHUP and EPOLLERR, and level-triggered that would spin the loop on a
 * socket nobody reads. A failed registration (the kernel out of memory)
 * leaves the socket unwatched; the engine's connect timeout and PING
 * watchdog then end the link, so nothing hangs for good. */
static void apply(dx__hiredis_ev *h, uint32_t want) {
  h->want = want;
  if (!want) {
    if (h->registered) dx__io_stop(h->loop, &h->io);
    h->registered = 0;
  } else if (!h->registered) {
    h->registered = dx__io_start(h->loop, &h->io, want) == 0;
  } else {
    dx__io_update(h->loop, &h->io, want);
  }
}

static void add_read(void *p) { apply(p, ((dx__hiredis_ev *)p)->want | EPOLLIN); }
static void del_read(void *p) { apply(p, ((dx__hiredis_ev *)p)->want & ~(uint32_t)EPOLLIN); }
static void add_write(void *p) { apply(p, ((dx__hiredis_ev *)p)->want | EPOLLOUT); }
static void del_write(void *p) { apply(p, ((dx__hiredis_ev *)p)->want & ~(uint32_t)EPOLLOUT); }

static void release(dx__task *t) {
  free((char *)t - offsetof(dx__hiredis_ev, release));
}

/* hiredis is freeing its context (possibly from inside on_io below, or
 * more than once in some versions). The binding stays allocated until the
 * end of the loop iteration, because later events of the same epoll batch
 * may still name its dx__io. */
static void cleanup(void *p) {
  dx__hiredis_ev *h = p;
  if (!h->ac) return;
  apply(h, 0);
  h->ac = NULL;
  h->release.run = release;
  dx__task_queue_last(h->loop, &h->release);
}

/* hiredis 0.14 writes with write(2), which raises SIGPIPE on a socket the
 * peer has reset: that would kill a program that did not ignore it, and
 * duplex spares its embedder SIGPIPE everywhere else (send with
 * MSG_NOSIGNAL). So the write runs with SIGPIPE blocked in this thread,
 * and a SIGPIPE it raised is taken off the pending set before the mask is
 * restored (asked of sigpending, not errno: the callbacks hiredis runs
 * after a failed write make calls of their own). */
static void handle_write(redisAsyncContext *ac) {
  sigset_t pipe_set, old, pending;
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
  redisAsyncHandleWrite(ac);
  if (sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE)) {
    const struct timespec now = {0, 0};
    while (sigtimedwait(&pipe_set, NULL, &now) < 0 && errno == EINTR) {
    }
  }
  pthread_sigmask(SIG_SETMASK, &old, NULL);
}

static void on_io(dx__io *io, uint32_t events) {
  dx__hiredis_ev *h = (dx__hiredis_ev *)io;
  /* An error or hang-up goes to whichever side hiredis is waiting on: a
   * refused connect to the write side (that is how it learns of it), a
   * reset to the read side. Each call may free the context (cleanup then
   * clears h->ac). */
  const uint32_t bad = EPOLLERR | EPOLLHUP;
  if (h->ac && (h->want & EPOLLIN) && (events & (EPOLLIN | bad))) redisAsyncHandleRead(h->ac);
  if (h->ac && (h->want & EPOLLOUT) && (events & (EPOLLOUT | bad))) handle_write(h->ac);
}

int dx__hiredis_attach(dx_loop *l, redisAsyncContext *ac) {
  dx__hiredis_ev *h = calloc(1, sizeof *h);
  if (!h) return DX_ENOMEM;
  h->io.fd = ac->c.fd;
  dx__io_set_cb(&h->io, on_io);
  h->loop = l;
  h->ac = ac;
  ac->ev.data = h;
  ac->ev.addRead = add_read;
  ac->ev.delRead = del_read;
  ac->ev.addWrite = add_write;
  ac->ev.delWrite = del_write;
  ac->ev.cleanup = cleanup;
  return 0;
}
