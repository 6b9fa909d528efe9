/* The event loop's internals, shared by the transport and the endpoints:
 * epoll registrations (dx__io), a timer heap (dx__timer, embedded in its
 * owner so arming one never allocates), and end-of-iteration work lists. */
#ifndef DX_NET_LOOP_H
#define DX_NET_LOOP_H
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "duplex.h"

/* Callbacks by number. What the loop calls back (a registration, a
 * timer) holds a byte that names its function in one process-wide table
 * rather than an 8-byte pointer to it: every connection has three such
 * objects, all with the same few functions (bench/README.md, idle
 * memory). A function gets its number at its first dx__kind() and keeps
 * it; the library has fewer than 30 such functions, so the table cannot
 * fill (dx__kind aborts if it did). Any thread may call it. */
typedef void (*dx__fn)(void);
#define DX__KINDS 128
uint8_t dx__kind(dx__fn fn);
extern _Atomic(dx__fn) dx__kinds[DX__KINDS];
/* The function of number k (one load). */
static inline dx__fn dx__kind_fn(uint8_t k) {
  return atomic_load_explicit(&dx__kinds[k], memory_order_relaxed);
}

typedef struct dx__io dx__io;
typedef void (*dx__io_cb)(dx__io *io, uint32_t events);
struct dx__io {
  int fd;
  uint16_t events; /* what is registered with epoll (EPOLLIN/EPOLLOUT) */
  uint8_t cb;      /* dx__kind of the dx__io_cb called with its events */
};
/* Sets the function the loop calls with io's events. */
static inline void dx__io_set_cb(dx__io *io, dx__io_cb cb) { io->cb = dx__kind((dx__fn)cb); }

typedef struct dx__timer dx__timer;
typedef void (*dx__timer_cb)(dx__timer *t);
struct dx__timer {
  /* Both in one word: a connection embeds two timers, and with a 32-bit
   * position each took 8 bytes, 3 of them padding (bench/README.md, idle
   * memory). 24 bits hold DX__TIMER_MAX positions: 8 million connections
   * with both timers armed, on one loop. */
  uint32_t idx : 24; /* position in the heap; DX__TIMER_IDLE when not armed */
  uint32_t cb : 8;   /* dx__kind of the dx__timer_cb it fires */
};
#define DX__TIMER_IDLE 0xFFFFFFu
/* The most timers a loop's heap holds (positions 0 .. DX__TIMER_IDLE - 1). */
#define DX__TIMER_MAX DX__TIMER_IDLE

/* Work deferred to the end of the iteration (flushing corked output,
 * freeing closed connections). Embedded in its owner. `next` is NULL
 * while the task is not queued (on a list, the last one's is a sentinel),
 * so that a task takes two words, not three: a connection embeds two. */
typedef struct dx__task dx__task;
struct dx__task {
  dx__task *next;
  void (*run)(dx__task *t);
};
/* 1 while t waits on one of the loop's lists. */
static inline int dx__task_queued(const dx__task *t) { return t->next != NULL; }

/* Everything on a loop that dx_loop_free must be able to cut loose
 * (connections, Redis engines). Embedded in its owner. The loop keeps one
 * list per kind, a kind being the function that cuts it, so that a handle
 * holds no function pointer (every connection has one: bench/README.md,
 * idle memory) and a walk over one kind meets no other. */
typedef struct dx__handle dx__handle;
struct dx__handle {
  dx__handle *prev, *next;
};
/* Ends the handle's owner now, with no callbacks; it takes h off its list. */
typedef void (*dx__handle_cut)(dx__handle *h);
/* The number of kinds a loop can hold (the library has two). */
#define DX__HANDLE_KINDS 4
/* Puts h at the head of the list of handles that `cut` ends. 0, or
 * DX_ENOMEM when the loop holds DX__HANDLE_KINDS other kinds already. */
int dx__handle_add(dx_loop *l, dx__handle *h, dx__handle_cut cut);
void dx__handle_remove(dx_loop *l, dx__handle *h);
/* The first handle that `cut` ends (follow ->next); NULL when none. */
dx__handle *dx__loop_handles(dx_loop *l, dx__handle_cut cut);

/* Registers io->fd for `events` (EPOLLIN, EPOLLOUT: they fit io->events'
 * 16 bits) with io's callback (dx__io_set_cb). 0 or DX_EIO. */
int dx__io_start(dx_loop *l, dx__io *io, uint32_t events);
/* Changes the registered events (no syscall when they are unchanged). */
int dx__io_update(dx_loop *l, dx__io *io, uint32_t events);
/* Removes the registration (the fd is not closed). */
void dx__io_stop(dx_loop *l, dx__io *io);

static inline void dx__timer_init(dx__timer *t, dx__timer_cb cb) {
  t->idx = DX__TIMER_IDLE;
  t->cb = dx__kind((dx__fn)cb);
}
/* (Re)arms t to fire after ms milliseconds. 0 or DX_ENOMEM (heap growth,
 * or DX__TIMER_MAX timers armed), which cannot happen while every armed
 * timer has a reserved slot. */
int dx__timer_start(dx_loop *l, dx__timer *t, uint64_t ms);
/* Reserves heap room for n more timers, so that arming them later cannot
 * fail: an owner reserves its embedded timers when it is created (where a
 * failure can still be reported) and gives them back when it ends. 0 or
 * DX_ENOMEM (no memory, or more than DX__TIMER_MAX would be reserved). */
int dx__timer_reserve(dx_loop *l, uint32_t n);
void dx__timer_unreserve(dx_loop *l, uint32_t n);
void dx__timer_stop(dx_loop *l, dx__timer *t);
static inline int dx__timer_active(const dx__timer *t) { return t->idx != DX__TIMER_IDLE; }

/* Runs t->run at the end of this iteration (once, however often queued). */
void dx__task_queue(dx_loop *l, dx__task *t);
/* Runs t->run after the tasks queued so far and after the current event
 * batch: used to free objects that events later in the batch may name. */
void dx__task_queue_last(dx_loop *l, dx__task *t);
/* Runs t->run in the next iteration, after its events; that iteration
 * does not wait for events. Used to come back to work deferred for
 * fairness. */
void dx__task_queue_next(dx_loop *l, dx__task *t);

/* What the inline functions below read of a loop: the first member of
 * struct dx_loop, so that the message path reads it with no call. */
typedef struct dx__loop_head {
  uint64_t now;  /* loop time in ms */
  uint8_t *rbuf; /* DX__RBUF_SIZE bytes */
} dx__loop_head;
/* 256 KiB: large messages arrive in few reads, and one buffer serves every
 * connection on the loop. */
#define DX__RBUF_SIZE (256 * 1024)
/* The loop's shared receive buffer (every connection reads into it). */
static inline uint8_t *dx__loop_rbuf(dx_loop *l, size_t *cap) {
  *cap = DX__RBUF_SIZE;
  return ((dx__loop_head *)(void *)l)->rbuf;
}
/* The loop's write batch (net/batch.h), made at the first call; NULL where
 * io_uring is not available. Flushed by the loop after its timers ran. */
struct dx__batch *dx__loop_batch(dx_loop *l);
/* A slot for one spare block of memory the layer above keeps per loop
 * between uses (the connections' output block between reads: see
 * dx__session_out_lend), NULL at first; `drop` frees what is in it when
 * the loop is freed (every caller passes the same). Loop thread only. */
void **dx__loop_spare(dx_loop *l, void (*drop)(void *));
/* Loop time in ms (monotonic, updated once per iteration). */
static inline uint64_t dx__loop_now(const dx_loop *l) {
  return ((const dx__loop_head *)(const void *)l)->now;
}
/* The loop whose dx_loop_run() is on this thread's stack, NULL when none:
 * lets a thread-safe entry point tell "on this loop's thread, inside it"
 * from "any other thread". */
dx_loop *dx__loop_current(void);
/* dx_loop_post with a `drop` for the case fn never runs: dx_loop_free
 * calls drop(NULL, ud) for each such function still queued (fn and drop
 * are never both called), so what ud owns (a descriptor, memory) is not
 * lost with a loop that stopped before its turn came. 0 or DX_ENOMEM. */
int dx__loop_post_owned(dx_loop *l, dx_post_fn fn, dx_post_fn drop, void *ud);
/* A pointer the endpoint layer keeps per loop (the head of its list of
 * the loop's servers); NULL at first. Loop thread only. */
void **dx__loop_servers(dx_loop *l);
/* Handles that keep dx_loop_run() going (servers, connections, watches). */
void dx__loop_ref(dx_loop *l);
void dx__loop_unref(dx_loop *l);
#endif
