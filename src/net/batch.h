/* Small writes to many sockets in one system call: a heartbeat slot's
 * pings (10,000 connections every 2 s: 156 pings per wake-up) leave as one
 * io_uring submission instead of one send() each. On this kind of machine
 * a system call's entry and exit cost more than the 6 bytes' TCP work
 * (bench/README.md, "Heartbeats"; bench/raw_ping --uring).
 *
 * The loop owns one (dx__loop_batch) and flushes it after its timers ran;
 * the owner of a queued write flushes it before it touches that socket
 * again (writes, shutdown, close), so bytes never leave out of order and
 * no descriptor is closed under a queued write. Loop thread only. */
#ifndef DX_NET_BATCH_H
#define DX_NET_BATCH_H
#include <stddef.h>
#include <stdint.h>

#define DX__BATCH_MAX_BYTES 16 /* the largest write a batch copies */

typedef struct dx__batch dx__batch;

/* Runs from dx__batch_flush for every queued write, in queue order: res is
 * the bytes the socket took (len when all of them) or -errno; bytes/len are
 * the write's (so the owner can queue what was not taken). May queue tasks
 * and append to the owner's output; must not flush this batch. */
typedef void (*dx__batch_done)(void *ud, int res, const uint8_t *bytes, size_t len);

/* A batch, or NULL where io_uring is not available (an old kernel, a
 * seccomp filter, DX_IO_URING=0 in the environment): then callers write
 * themselves. */
dx__batch *dx__batch_new(void);
/* Flushes what is queued, then frees. NULL is fine. */
void dx__batch_free(dx__batch *b);
/* Queues a copy of len (<= DX__BATCH_MAX_BYTES) bytes for fd. 1 when
 * queued; 0 when b is NULL or len too large: the caller writes them. A
 * full batch is flushed first, so `done` for earlier writes may run inside
 * this call. */
int dx__batch_send(dx__batch *b, int fd, const void *p, size_t len, dx__batch_done done,
                   void *ud);
/* Submits every queued write, waits for all of them (a send to a socket
 * with room completes at once; one without room says EAGAIN) and runs
 * their `done`. Nothing to do when empty. */
void dx__batch_flush(dx__batch *b);
/* Writes queued and not yet flushed. */
size_t dx__batch_queued(const dx__batch *b);
#endif
