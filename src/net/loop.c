/* An epoll event loop: one thread, level-triggered registrations, a binary
 * min-heap of timers, and two end-of-iteration task lists. */
#include "net/loop.h"

#include "net/batch.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stddef.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#define DX__MAX_EVENTS 256

/* A test hook between the moment another thread's dx_loop_stop() or
 * dx_loop_post() becomes visible to the loop and its write to the wake
 * descriptor. tests/unit/test_threads.c compiles this file with a hook that
 * sleeps there, to widen the window dx_loop_free() must not fall into;
 * every other build compiles nothing. */
#ifndef DX__TEST_WIDEN
#define DX__TEST_WIDEN() ((void)0)
#endif

typedef struct dx__watch {
  dx__io io;
  dx_loop *loop;
  dx_fd_cb cb;
  void *ud;
  struct dx__watch *next;
  dx__task release;
} dx__watch;

typedef struct dx__heap_entry {
  uint64_t due; /* loop time in ms */
  dx__timer *t;
} dx__heap_entry;

struct dx_loop {
  dx__loop_head head; /* first: dx__loop_now, dx__loop_rbuf */
  int epfd;
  int wakefd;           /* eventfd: dx_loop_stop from other threads/signals */
  atomic_int stop;      /* lock-free, so also safe from a signal handler */
  atomic_int wakers;    /* dx_loop_stop/dx_loop_post calls still using the loop */
  size_t refs;
  dx__heap_entry *heap;
  uint32_t nheap, capheap;
  uint32_t reserved;    /* heap slots promised by dx__timer_reserve */
  dx__task *tasks, **tasks_tail;
  dx__task *last, **last_tail;
  dx__task *next, **next_tail; /* for the next iteration: dx__task_queue_next */
  dx__watch *watches;
  /* The handles, by kind (dx__handle_add); unused kinds have cut NULL. */
  struct {
    dx__handle_cut cut;
    dx__handle *head;
  } kinds[DX__HANDLE_KINDS];
  void *servers;        /* dx__loop_servers */
  dx__io wake_io;
  dx__batch *batch;     /* dx__loop_batch: made at the first use */
  uint8_t batch_tried;  /* ... and tried only once where io_uring is not */
  void *spare;          /* dx__loop_spare, and how to free it */
  void (*spare_drop)(void *);
  /* dx_loop_post: the only state other threads touch, under `mu`. */
  pthread_mutex_t mu;
  struct dx__post *posted;
  size_t nposted, capposted;
};

typedef struct dx__post {
  dx_post_fn fn, drop;
  void *ud;
} dx__post;

static void run_tasks(dx_loop *l);

/* ---- callbacks by number ------------------------------------------------- */

_Atomic(dx__fn) dx__kinds[DX__KINDS];

uint8_t dx__kind(dx__fn fn) {
  /* Slots fill in order and never change: a function found is final, and
   * two threads adding at once agree through the compare-and-swap (the
   * loser finds the winner's function, or moves on to the next slot). */
  for (int k = 0; k < DX__KINDS; k++) {
    dx__fn cur = atomic_load(&dx__kinds[k]);
    if (!cur && atomic_compare_exchange_strong(&dx__kinds[k], &cur, fn)) return (uint8_t)k;
    if (cur == fn) return (uint8_t)k;
  }
  abort(); /* more functions than the library has: a programming error */
}

static uint64_t clock_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void on_wake(dx__io *io, uint32_t events) {
  (void)events;
  dx_loop *l = (dx_loop *)((char *)io - offsetof(dx_loop, wake_io));
  uint64_t v;
  while (read(io->fd, &v, sizeof v) > 0) {
  }
  /* Take the whole batch under the lock and run it outside, so a posted
   * function may post again (it runs next iteration) without deadlock. */
  pthread_mutex_lock(&l->mu);
  dx__post *batch = l->posted;
  size_t n = l->nposted;
  l->posted = NULL;
  l->nposted = l->capposted = 0;
  pthread_mutex_unlock(&l->mu);
  for (size_t i = 0; i < n; i++) batch[i].fn(l, batch[i].ud);
  free(batch);
}

/* Other threads wake the loop in two steps: make the request visible (the
 * stop flag, the posted function) and write to the eventfd. The write must
 * come second, or the loop could consume it before it sees the request and
 * sleep on. But between the two steps the loop may wake for another reason,
 * see the request, return, and its owner free it at once: the write would
 * then read freed memory and land on whatever descriptor reused the
 * eventfd's number. So each such call counts itself in `wakers` before its
 * request becomes visible and uncounts itself after its last touch of the
 * loop, and dx_loop_free() waits for the count to reach zero. An atomic
 * counter, not the mutex, because dx_loop_stop() must stay
 * async-signal-safe; the wait lasts one write(2) (longer only if that
 * thread is preempted, hence sched_yield, not a busy spin). */
_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "dx_loop_stop needs lock-free atomics");

static void wake(dx_loop *l) {
  uint64_t one = 1;
  DX__TEST_WIDEN();
  ssize_t r = write(l->wakefd, &one, sizeof one);
  (void)r; /* a full counter (EAGAIN) still wakes the loop */
  atomic_fetch_sub(&l->wakers, 1); /* the last touch of l */
}

int dx_loop_post(dx_loop *l, dx_post_fn fn, void *ud) {
  return dx__loop_post_owned(l, fn, NULL, ud);
}

int dx__loop_post_owned(dx_loop *l, dx_post_fn fn, dx_post_fn drop, void *ud) {
  if (!l || !fn) return DX_EINVAL;
  atomic_fetch_add(&l->wakers, 1);
  pthread_mutex_lock(&l->mu);
  if (l->nposted == l->capposted) {
    size_t cap = l->capposted ? l->capposted * 2 : 16;
    dx__post *p = realloc(l->posted, cap * sizeof *p);
    if (!p) {
      pthread_mutex_unlock(&l->mu);
      atomic_fetch_sub(&l->wakers, 1);
      return DX_ENOMEM;
    }
    l->posted = p;
    l->capposted = cap;
  }
  l->posted[l->nposted++] = (dx__post){fn, drop, ud};
  pthread_mutex_unlock(&l->mu);
  wake(l);
  return 0;
}

dx_loop *dx_loop_new(void) {
  dx_loop *l = calloc(1, sizeof *l);
  if (!l) return NULL;
  l->epfd = epoll_create1(EPOLL_CLOEXEC);
  l->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  l->head.rbuf = malloc(DX__RBUF_SIZE);
  pthread_mutex_init(&l->mu, NULL);
  l->tasks_tail = &l->tasks;
  l->last_tail = &l->last;
  l->next_tail = &l->next;
  l->head.now = clock_ms();
  l->wake_io.fd = l->wakefd;
  dx__io_set_cb(&l->wake_io, on_wake);
  if (l->epfd < 0 || l->wakefd < 0 || !l->head.rbuf || dx__io_start(l, &l->wake_io, EPOLLIN)) {
    dx_loop_free(l);
    return NULL;
  }
  return l;
}

void dx_loop_free(dx_loop *l) {
  if (!l) return;
  /* A dx_loop_stop() or dx_loop_post() whose request the loop has already
   * seen may not have written to the eventfd yet (see wake()). */
  while (atomic_load(&l->wakers) > 0) sched_yield();
  dx__batch_flush(l->batch); /* before any of their sockets closes */
  /* The kind added last goes first: connections before the Redis engine
   * that a server's pub/sub set up before them. */
  for (int k = DX__HANDLE_KINDS; k-- > 0;)
    while (l->kinds[k].head) l->kinds[k].cut(l->kinds[k].head);
  /* Releases what the last iteration left queued, for this iteration or
   * the next. */
  do {
    if (l->next) {
      *l->tasks_tail = l->next;
      l->tasks_tail = l->next_tail;
      l->next = NULL;
      l->next_tail = &l->next;
    }
    run_tasks(l);
  } while (l->next);
  while (l->watches) {
    dx__watch *w = l->watches;
    l->watches = w->next;
    free(w);
  }
  if (l->epfd >= 0) close(l->epfd);
  if (l->wakefd >= 0) close(l->wakefd);
  /* Functions posted but never run: those that own something let go. */
  for (size_t i = 0; i < l->nposted; i++)
    if (l->posted[i].drop) l->posted[i].drop(NULL, l->posted[i].ud);
  dx__batch_free(l->batch);
  if (l->spare) l->spare_drop(l->spare);
  free(l->heap);
  free(l->head.rbuf);
  free(l->posted);
  pthread_mutex_destroy(&l->mu);
  free(l);
}

void dx_loop_stop(dx_loop *l) {
  /* Only async-signal-safe operations: lock-free atomics and a write(2),
   * with errno kept, as a signal handler may interrupt code between a
   * failed call and its check of errno. */
  int saved = errno;
  atomic_fetch_add(&l->wakers, 1);
  atomic_store(&l->stop, 1);
  wake(l);
  errno = saved;
}

int dx__handle_add(dx_loop *l, dx__handle *h, dx__handle_cut cut) {
  int k = 0;
  while (k < DX__HANDLE_KINDS && l->kinds[k].cut && l->kinds[k].cut != cut) k++;
  if (k == DX__HANDLE_KINDS) return DX_ENOMEM;
  l->kinds[k].cut = cut;
  h->prev = NULL;
  h->next = l->kinds[k].head;
  if (h->next) h->next->prev = h;
  l->kinds[k].head = h;
  return 0;
}

void dx__handle_remove(dx_loop *l, dx__handle *h) {
  if (h->prev) {
    h->prev->next = h->next;
  } else {
    /* The head of its kind's list: which one, the few heads say. */
    for (int k = 0; k < DX__HANDLE_KINDS; k++)
      if (l->kinds[k].head == h) l->kinds[k].head = h->next;
  }
  if (h->next) h->next->prev = h->prev;
  h->prev = h->next = NULL;
}

dx__handle *dx__loop_handles(dx_loop *l, dx__handle_cut cut) {
  for (int k = 0; k < DX__HANDLE_KINDS; k++)
    if (l->kinds[k].cut == cut) return l->kinds[k].head;
  return NULL;
}
void **dx__loop_servers(dx_loop *l) { return &l->servers; }

void dx__loop_ref(dx_loop *l) { l->refs++; }
void dx__loop_unref(dx_loop *l) { l->refs--; }

dx__batch *dx__loop_batch(dx_loop *l) {
  if (!l->batch_tried) {
    l->batch_tried = 1;
    l->batch = dx__batch_new();
  }
  return l->batch;
}

void **dx__loop_spare(dx_loop *l, void (*drop)(void *)) {
  l->spare_drop = drop;
  return &l->spare;
}

/* ---- epoll --------------------------------------------------------------- */

int dx__io_start(dx_loop *l, dx__io *io, uint32_t events) {
  struct epoll_event ev = {.events = events, .data.ptr = io};
  if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, io->fd, &ev) < 0) return DX_EIO;
  io->events = (uint16_t)events;
  return 0;
}

int dx__io_update(dx_loop *l, dx__io *io, uint32_t events) {
  if (io->events == events) return 0;
  struct epoll_event ev = {.events = events, .data.ptr = io};
  if (epoll_ctl(l->epfd, EPOLL_CTL_MOD, io->fd, &ev) < 0) return DX_EIO;
  io->events = (uint16_t)events;
  return 0;
}

void dx__io_stop(dx_loop *l, dx__io *io) {
  epoll_ctl(l->epfd, EPOLL_CTL_DEL, io->fd, NULL);
  io->events = 0;
}

/* ---- timers: a binary min-heap ------------------------------------------ */
/* Each entry carries its deadline next to the timer pointer, so sifting
 * compares within the heap array and touches a timer (in its owner,
 * anywhere in memory) only to store its new position. With the deadline in
 * the timer, every level of a sift was a cache miss (perf, 10,000 idle
 * connections pinging every second: the heap went from 5.9 % to 3.1 % of
 * the server's CPU). It also takes 8 bytes out of every embedded timer. */

static void heap_set(dx_loop *l, uint32_t i, dx__heap_entry e) {
  l->heap[i] = e;
  e.t->idx = i;
}

static void sift_up(dx_loop *l, uint32_t i) {
  dx__heap_entry e = l->heap[i];
  while (i > 0) {
    uint32_t parent = (i - 1) / 2;
    if (l->heap[parent].due <= e.due) break;
    heap_set(l, i, l->heap[parent]);
    i = parent;
  }
  heap_set(l, i, e);
}

static void sift_down(dx_loop *l, uint32_t i) {
  dx__heap_entry e = l->heap[i];
  for (;;) {
    uint32_t c = 2 * i + 1;
    if (c >= l->nheap) break;
    if (c + 1 < l->nheap && l->heap[c + 1].due < l->heap[c].due) c++;
    if (e.due <= l->heap[c].due) break;
    heap_set(l, i, l->heap[c]);
    i = c;
  }
  heap_set(l, i, e);
}

void dx__timer_stop(dx_loop *l, dx__timer *t) {
  if (t->idx == DX__TIMER_IDLE) return;
  uint32_t i = t->idx;
  t->idx = DX__TIMER_IDLE;
  dx__heap_entry last = l->heap[--l->nheap];
  if (i == l->nheap) return;
  heap_set(l, i, last);
  if (i > 0 && l->heap[(i - 1) / 2].due > last.due)
    sift_up(l, i);
  else
    sift_down(l, i);
}

/* Makes room for at least `want` heap entries. 0 or DX_ENOMEM. */
static int heap_grow(dx_loop *l, uint32_t want) {
  if (want <= l->capheap) return 0;
  if (want > DX__TIMER_MAX) return DX_ENOMEM; /* a position must fit dx__timer.idx */
  uint32_t cap = l->capheap ? l->capheap : 64;
  while (cap < want) cap *= 2;
  if (cap > DX__TIMER_MAX) cap = DX__TIMER_MAX;
  /* Not realloc: it would copy the whole old capacity, most of it slots
   * reserved for timers that are not armed (two per connection, one
   * armed while idle), and so touch pages nothing uses yet. Only the
   * armed entries are copied; the rest of the new array stays untouched
   * until a timer needs it (10,000 idle connections: 11 bytes each of
   * RSS, bench/README.md, idle memory). */
  dx__heap_entry *h = malloc(cap * sizeof *h);
  if (!h) return DX_ENOMEM;
  if (l->nheap) memcpy(h, l->heap, l->nheap * sizeof *h);
  free(l->heap);
  l->heap = h;
  l->capheap = cap;
  return 0;
}

int dx__timer_reserve(dx_loop *l, uint32_t n) {
  if (n > DX__TIMER_MAX - l->reserved || heap_grow(l, l->reserved + n)) return DX_ENOMEM;
  l->reserved += n;
  return 0;
}

void dx__timer_unreserve(dx_loop *l, uint32_t n) { l->reserved -= n; }

/* The loop running on this thread (dx__loop_current). */
static _Thread_local dx_loop *running;

int dx__timer_start(dx_loop *l, dx__timer *t, uint64_t ms) {
  dx__timer_stop(l, t);
  /* Outside its dx_loop_run (between runs: a drain started after a signal
   * stopped the loop), the loop's clock is as old as its last iteration;
   * a deadline counted from it would fire that much early. */
  if (running != l) l->head.now = clock_ms();
  if (l->nheap == l->capheap && heap_grow(l, l->nheap + 1)) return DX_ENOMEM;
  uint32_t i = l->nheap++;
  l->heap[i] = (dx__heap_entry){l->head.now + ms, t};
  sift_up(l, i);
  return 0;
}

static void run_timers(dx_loop *l) {
  while (l->nheap && l->heap[0].due <= l->head.now) {
    dx__timer *t = l->heap[0].t;
    dx__timer_stop(l, t);
    ((dx__timer_cb)dx__kind_fn(t->cb))(t);
  }
}

/* ---- tasks --------------------------------------------------------------- */

/* What the last task of a list points to: any non-NULL `next` means
 * queued. Never run, never written. */
static dx__task list_end;

static void queue_on(dx__task ***tail, dx__task *t) {
  if (t->next) return;
  t->next = &list_end;
  **tail = t;
  *tail = &t->next;
}
void dx__task_queue(dx_loop *l, dx__task *t) { queue_on(&l->tasks_tail, t); }
void dx__task_queue_last(dx_loop *l, dx__task *t) { queue_on(&l->last_tail, t); }
void dx__task_queue_next(dx_loop *l, dx__task *t) { queue_on(&l->next_tail, t); }

static void run_list(dx__task **head, dx__task ***tail) {
  /* Tasks may queue further tasks (a flush that finishes a connection
   * queues its release); keep going until the list is empty. */
  while (*head) {
    dx__task *t = *head;
    *head = t->next == &list_end ? NULL : t->next;
    if (!*head) *tail = head;
    t->next = NULL;
    t->run(t);
  }
}

static void run_tasks(dx_loop *l) {
  run_list(&l->tasks, &l->tasks_tail);
  run_list(&l->last, &l->last_tail);
  /* Releasing may have queued more output elsewhere. */
  run_list(&l->tasks, &l->tasks_tail);
}

/* ---- running ------------------------------------------------------------ */

dx_loop *dx__loop_current(void) { return running; }

int dx_loop_run(dx_loop *l) {
  struct epoll_event evs[DX__MAX_EVENTS];
  dx_loop *outer = running;
  running = l;
  l->head.now = clock_ms();
  run_tasks(l);
  while (!l->stop && l->refs > 0) {
    /* Work left for this iteration by the last one (a connection that
     * used up its read budget) runs after this batch of events, and the
     * wait for them does not block. */
    int timeout = l->next ? 0 : -1;
    if (l->next) {
      *l->tasks_tail = l->next;
      l->tasks_tail = l->next_tail;
      l->next = NULL;
      l->next_tail = &l->next;
    }
    if (timeout && l->nheap) {
      uint64_t due = l->heap[0].due;
      uint64_t wait = due <= l->head.now ? 0 : due - l->head.now;
      timeout = (int)(wait > 0x7fffffff ? 0x7fffffff : wait);
    }
    int n = epoll_wait(l->epfd, evs, DX__MAX_EVENTS, timeout);
    if (n < 0 && errno != EINTR) {
      running = outer;
      return DX_EIO;
    }
    l->head.now = clock_ms();
    for (int i = 0; i < n; i++) {
      dx__io *io = evs[i].data.ptr;
      ((dx__io_cb)dx__kind_fn(io->cb))(io, evs[i].events);
    }
    run_timers(l);
    /* The writes the timers queued (a heartbeat slot's pings) leave in one
     * system call, before any task can write behind them. */
    if (dx__batch_queued(l->batch)) dx__batch_flush(l->batch);
    run_tasks(l);
  }
  /* Cleared on the way out, not on the way in: a stop requested before
   * dx_loop_run (a signal in between) is not lost. */
  l->stop = 0;
  running = outer;
  return 0;
}

/* ---- fd watches (for the caller's own descriptors, e.g. stdin) ---------- */

static void on_watch(dx__io *io, uint32_t events) {
  (void)events;
  dx__watch *w = (dx__watch *)io;
  if (w->cb) w->cb(w->loop, io->fd, w->ud);
}

static void release_watch(dx__task *t) {
  free((dx__watch *)((char *)t - offsetof(dx__watch, release)));
}

int dx_loop_watch_fd(dx_loop *l, int fd, dx_fd_cb cb, void *ud) {
  if (fd < 0 || !cb) return DX_EINVAL;
  for (dx__watch *w = l->watches; w; w = w->next)
    if (w->io.fd == fd) return DX_EINVAL;
  dx__watch *w = calloc(1, sizeof *w);
  if (!w) return DX_ENOMEM;
  w->io.fd = fd;
  dx__io_set_cb(&w->io, on_watch);
  w->loop = l;
  w->cb = cb;
  w->ud = ud;
  if (dx__io_start(l, &w->io, EPOLLIN)) {
    free(w);
    return DX_EIO;
  }
  w->next = l->watches;
  l->watches = w;
  dx__loop_ref(l);
  return 0;
}

int dx_loop_unwatch_fd(dx_loop *l, int fd) {
  for (dx__watch **p = &l->watches; *p; p = &(*p)->next) {
    dx__watch *w = *p;
    if (w->io.fd != fd) continue;
    dx__io_stop(l, &w->io);
    *p = w->next;
    /* The watch may be unwatched from its own callback while later events
     * of this batch still name it; free it at the end of the iteration. */
    w->cb = NULL;
    w->release.run = release_watch;
    dx__task_queue_last(l, &w->release);
    dx__loop_unref(l);
    return 0;
  }
  return DX_EINVAL;
}
