/* Host-name resolution off the loop's thread. getaddrinfo() can block for
 * seconds (a slow or unreachable DNS server); a client connecting by name
 * must not stop every other connection on its loop meanwhile. Each request
 * runs getaddrinfo() on a detached thread of its own and signals an eventfd
 * the loop watches; the thread never touches the loop, so the owner may
 * give up on a request (and the loop may go away) at any time. */
#ifndef DX_NET_RESOLVE_H
#define DX_NET_RESOLVE_H
#include <netdb.h>

typedef struct dx__resolve dx__resolve;

/* Starts resolving host:port for connecting. Returns the request and, in
 * *fd, a close-on-exec descriptor of the caller's own that becomes readable
 * once the answer is in; NULL when no memory or no thread could be had
 * (resolve synchronously then). */
dx__resolve *dx__resolve_start(const char *host, unsigned port, int *fd);
/* Once *fd was readable (call once): 0 and *out, which the caller frees
 * with freeaddrinfo(); or DX_EADDR with a one-line reason in why. */
int dx__resolve_result(dx__resolve *r, struct addrinfo **out, char *why, size_t cap);
/* The owner is done with r (answered or not); it is freed once its thread
 * has finished too. The owner closes its own *fd. */
void dx__resolve_release(dx__resolve *r);
#endif
