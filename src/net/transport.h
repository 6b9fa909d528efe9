/* A byte stream under a WebSocket connection, behind a small table of
 * functions so TLS (OpenSSL, through a BIO of ours on the socket) slides under it without the
 * endpoints or the protocol core knowing. */
#ifndef DX_NET_TRANSPORT_H
#define DX_NET_TRANSPORT_H
#include <stddef.h>
#include <netdb.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "net/loop.h"

typedef struct dx__transport dx__transport;

/* What failed, as error() reports it: a fact about the stream. Which close
 * code and which `why` it means is the connection's business (conn.c). */
typedef enum {
  DX__TR_SOCKET_ERROR = 1,     /* the socket failed (send, recv) */
  DX__TR_TLS_HANDSHAKE_FAILED, /* TLS failed before its handshake finished */
  DX__TR_TLS_ERROR             /* TLS failed after it */
} dx__tr_fault;

typedef struct dx__transport_ops {
  /* > 0 plaintext bytes read; 0 at end of stream; DX_EINCOMPLETE when
   * nothing can be read now; DX_EIO on error (see error()). A TLS transport
   * advances its handshake here and may write handshake records itself. */
  ssize_t (*read)(dx__transport *t, void *buf, size_t cap);
  /* Plaintext bytes accepted (possibly fewer than offered, possibly 0 while
   * a TLS handshake waits for the peer: retry after the next read);
   * DX_EINCOMPLETE when the socket is full (wait for writability); DX_EIO on
   * error. Called with n == 0 it only pushes bytes the transport itself
   * holds (see pending()). */
  ssize_t (*writev)(dx__transport *t, const struct iovec *iov, int n);
  /* Bytes the transport holds that the socket has not taken yet (TLS
   * records); 0 for plain TCP. While non-zero, the owner waits for
   * writability and calls writev(t, NULL, 0). */
  size_t (*pending)(dx__transport *t);
  /* Ends our direction of the stream (TLS close_notify, then TCP FIN). */
  void (*shutdown)(dx__transport *t);
  /* Releases the stream and its descriptor. */
  void (*close)(dx__transport *t);
  /* After DX_EIO: what failed, and a one-line description into buf. */
  dx__tr_fault (*error)(dx__transport *t, char *buf, size_t cap);
} dx__transport_ops;

struct dx__transport {
  /* The descriptor, and its registration with the loop, which the owner
   * makes (dx__io_start with io.cb set): one fd for both, not a copy in
   * each (an idle connection's bytes, bench/README.md). */
  dx__io io;
  /* NULL for plain TCP, whose functions are dx__tcp_ops; else the state of
   * the layer on top (TLS), whose first member points to its table. So a
   * connection holds no table pointer of its own (bench/README.md). */
  void *impl;
};

extern const dx__transport_ops dx__tcp_ops;
/* The functions t's stream goes through. */
static inline const dx__transport_ops *dx__tr_ops(const dx__transport *t) {
  return t->impl ? *(const dx__transport_ops *const *)t->impl : &dx__tcp_ops;
}
/* dx__tcp_ops's read and writev, for the calls below. */
ssize_t dx__tcp_read(dx__transport *t, void *buf, size_t cap);
ssize_t dx__tcp_writev(dx__transport *t, const struct iovec *iov, int n);
/* ops->read, ops->writev and ops->pending, with plain TCP's called
 * directly (pending: 0): the message path's calls. */
static inline ssize_t dx__tr_read(dx__transport *t, void *buf, size_t cap) {
  return t->impl ? dx__tr_ops(t)->read(t, buf, cap) : dx__tcp_read(t, buf, cap);
}
static inline ssize_t dx__tr_writev(dx__transport *t, const struct iovec *iov, int n) {
  return t->impl ? dx__tr_ops(t)->writev(t, iov, n) : dx__tcp_writev(t, iov, n);
}
static inline size_t dx__tr_pending(dx__transport *t) {
  return t->impl ? dx__tr_ops(t)->pending(t) : 0;
}

/* Non-blocking, close-on-exec listening sockets on host:port. host NULL
 * or "" binds one socket, the IPv6 wildcard with IPv4 mapped (or IPv4
 * where IPv6 is absent); a name or address binds every address it resolves
 * to (addresses the machine lacks are skipped), all on one port (port 0:
 * the one the first bind picked), at most max of them. Returns how many
 * descriptors it put in fds[], or DX_EADDR with errno kept and a one-line
 * reason in why[0..cap) (the resolver's words for a name that does not
 * resolve, else the socket error). flags: DX__LISTEN_* below. */
#define DX__LISTEN_REUSEPORT 1u /* SO_REUSEPORT before bind: join the port's group */
#define DX__LISTEN_DEFER 2u     /* TCP_DEFER_ACCEPT: see dx_options_set_defer_accept */
#define DX__LISTEN_OPEN 4u      /* bind exclusively, then SO_REUSEPORT: start a group */
int dx__tcp_listen(const char *host, unsigned port, int backlog, unsigned flags,
                   int *fds, int max, char *why, size_t cap);
/* Resolves host:port for connecting (blocks while the resolver works).
 * 0 and *out, which the caller frees with freeaddrinfo(); or DX_EADDR with
 * a one-line reason in why. */
int dx__tcp_resolve(const char *host, unsigned port, struct addrinfo **out,
                    char *why, size_t cap);
/* Starts a non-blocking connect to the first address from *next on that
 * takes one and moves *next past it. *used (if given) is the address of
 * the last attempt: the one connecting, or the last that failed. Returns
 * the fd, or DX_EADDR with errno from the last failure when none is left. */
int dx__tcp_connect_next(struct addrinfo **next, const struct addrinfo **used);
/* Resolves and starts a connect to the first address that takes one
 * (tests use it). Returns the fd, or DX_EADDR. */
int dx__tcp_connect(const char *host, unsigned port);
/* "127.0.0.1:80" or "[::1]:80". */
void dx__tcp_addr_text(const struct sockaddr *sa, char *buf, size_t cap);
/* The local port of a socket, 0 on error. */
unsigned dx__tcp_local_port(int fd);
/* Per-connection socket options (TCP_NODELAY). */
void dx__tcp_tune(int fd);
#endif
