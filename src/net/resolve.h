/* Host-name resolution off the loop's thread. getaddrinfo() can block for
 * seconds (a slow or unreachable DNS server); a client connecting by name
 * must not stop every other connection on its loop meanwhile. Requests
 * queue (FIFO) for at most DX__RESOLVE_THREADS detached threads, process-
 * wide, which run getaddrinfo() and signal each request's eventfd, which
 * the loop watches; a thread never touches a loop, so the owner may give
 * up on a request (and the loop may go away) at any time. Bounded because
 * a thread each would let a burst of connects to a dead DNS server start
 * thousands of threads (each with its stack) that all wait for nothing;
 * queued, the ones behind wait instead, under their handshake timeout. */
#ifndef DX_NET_RESOLVE_H
#define DX_NET_RESOLVE_H
#include <netdb.h>
#include <stddef.h>

/* Names resolved at once in the process, at most. */
#define DX__RESOLVE_THREADS 8

typedef struct dx__resolve dx__resolve;

/* Starts resolving host:port for connecting. Returns the request and, in
 * *fd, a close-on-exec descriptor of the caller's own that becomes readable
 * once the answer is in (the request may wait in the queue first); NULL
 * when out of memory or descriptors (resolve synchronously then). */
dx__resolve *dx__resolve_start(const char *host, unsigned port, int *fd);
/* Once *fd was readable (call once): 0 and *out, which the caller frees
 * with freeaddrinfo(); or DX_EADDR with a one-line reason in why. */
int dx__resolve_result(dx__resolve *r, struct addrinfo **out, char *why, size_t cap);
/* The owner is done with r (answered or not); it is freed once its thread
 * has finished too. The owner closes its own *fd. */
void dx__resolve_release(dx__resolve *r);

/* For the tests: resolver threads running now, the most that ever ran at
 * once, and requests waiting for one (each may be NULL). */
void dx__resolve_stats(unsigned *live, unsigned *peak, size_t *waiting);
/* What the threads call to resolve (dx__tcp_resolve); a test may set it
 * before any request, to hold the threads busy. */
extern int (*dx__resolve_fn)(const char *host, unsigned port, struct addrinfo **out,
                             char *why, size_t cap);
#endif
