/* A byte stream under a WebSocket connection, behind a small table of
 * functions so TLS (through memory BIOs) can slide under it later without
 * the endpoints knowing. */
#ifndef DX_NET_TRANSPORT_H
#define DX_NET_TRANSPORT_H
#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

typedef struct dx__transport dx__transport;

typedef struct dx__transport_ops {
  /* > 0 bytes read; 0 at end of stream; DX_EINCOMPLETE when it would
   * block; DX_EIO on error (errno kept). */
  ssize_t (*read)(dx__transport *t, void *buf, size_t cap);
  /* Bytes written (possibly fewer than offered); DX_EINCOMPLETE when it
   * would block; DX_EIO on error. */
  ssize_t (*writev)(dx__transport *t, const struct iovec *iov, int n);
  /* Ends our direction of the stream (TCP FIN). */
  void (*shutdown)(dx__transport *t);
  /* Releases the stream and its descriptor. */
  void (*close)(dx__transport *t);
} dx__transport_ops;

struct dx__transport {
  const dx__transport_ops *ops;
  int fd;
};

extern const dx__transport_ops dx__tcp_ops;

/* Non-blocking, close-on-exec listening socket on host:port (host NULL or
 * "" binds the IPv6 wildcard with IPv4 mapped, or IPv4 if IPv6 is absent).
 * Returns the fd, or DX_EADDR with errno kept. */
int dx__tcp_listen(const char *host, unsigned port, int backlog);
/* Starts a non-blocking connect to host:port (resolved synchronously).
 * Returns the fd, or DX_EADDR. */
int dx__tcp_connect(const char *host, unsigned port);
/* The local port of a socket, 0 on error. */
unsigned dx__tcp_local_port(int fd);
/* Per-connection socket options (TCP_NODELAY). */
void dx__tcp_tune(int fd);
#endif
