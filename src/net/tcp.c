/* Plain TCP (IPv4 and IPv6): the default transport. */
#include <errno.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "duplex_codes.h"
#include "net/transport.h"

ssize_t dx__tcp_read(dx__transport *t, void *buf, size_t cap) {
  for (;;) {
    ssize_t n = recv(t->io.fd, buf, cap, 0);
    if (n >= 0) return n;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return DX_EINCOMPLETE;
    return DX_EIO;
  }
}

ssize_t dx__tcp_writev(dx__transport *t, const struct iovec *iov, int n) {
  if (n == 0) return 0;
  /* send/sendmsg rather than write/writev: MSG_NOSIGNAL spares the embedder
   * SIGPIPE. One buffer (the common case) takes the cheaper send(). */
  struct msghdr m = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)n};
  for (;;) {
    ssize_t w = n == 1 ? send(t->io.fd, iov[0].iov_base, iov[0].iov_len, MSG_NOSIGNAL)
                       : sendmsg(t->io.fd, &m, MSG_NOSIGNAL);
    if (w >= 0) return w;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return DX_EINCOMPLETE;
    return DX_EIO;
  }
}

static void tcp_shutdown(dx__transport *t) { shutdown(t->io.fd, SHUT_WR); }

static void tcp_close(dx__transport *t) {
  if (t->io.fd >= 0) close(t->io.fd);
  t->io.fd = -1;
}

static size_t tcp_pending(dx__transport *t) {
  (void)t;
  return 0;
}

static dx__tr_fault tcp_error(dx__transport *t, char *buf, size_t cap) {
  (void)t;
  snprintf(buf, cap, "socket error: %s", strerror(errno));
  return DX__TR_SOCKET_ERROR;
}

const dx__transport_ops dx__tcp_ops = {dx__tcp_read, dx__tcp_writev, tcp_pending,
                                       tcp_shutdown, tcp_close, tcp_error};

void dx__tcp_tune(int fd) {
  int one = 1;
  /* WebSocket messages are latency-sensitive and we already coalesce
   * writes per loop iteration, so Nagle only adds delay. */
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

unsigned dx__tcp_local_port(int fd) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0) return 0;
  if (ss.ss_family == AF_INET) return ntohs(((struct sockaddr_in *)&ss)->sin_port);
  if (ss.ss_family == AF_INET6) return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
  return 0;
}

/* getaddrinfo() for host:port. 0 and *out, or DX_EADDR with a one-line
 * reason in why: the resolver's own words (gai_strerror), since errno says
 * nothing about a name that does not resolve. */
static int resolve(const char *host, unsigned port, int passive,
                   struct addrinfo **out, char *why, size_t cap) {
  char service[8];
  snprintf(service, sizeof service, "%u", port);
  struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
                           .ai_flags = passive ? AI_PASSIVE : AI_ADDRCONFIG};
  /* The wildcard: prefer IPv6 with v4-mapped addresses, one socket for both. */
  hints.ai_family = AF_UNSPEC;
  *out = NULL;
  int rc = getaddrinfo(host, service, &hints, out);
  if (rc == 0) return 0;
  int e = errno;
  snprintf(why, cap, "cannot resolve %s: %s", host ? host : "the wildcard address",
           rc == EAI_SYSTEM ? strerror(e) : gai_strerror(rc));
  errno = rc == EAI_SYSTEM ? e : EADDRNOTAVAIL;
  return DX_EADDR;
}

void dx__tcp_addr_text(const struct sockaddr *sa, char *buf, size_t cap) {
  char host[INET6_ADDRSTRLEN] = "?";
  unsigned port = 0;
  if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
    inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof host);
    port = ntohs(s6->sin6_port);
    snprintf(buf, cap, "[%s]:%u", host, port);
    return;
  }
  if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
    inet_ntop(AF_INET, &s4->sin_addr, host, sizeof host);
    port = ntohs(s4->sin_port);
  }
  snprintf(buf, cap, "%s:%u", host, port);
}

/* One listening socket on address a. port_set: the port to use instead of
 * a's (0 keeps a's), so that every address of a name shares the port the
 * first one picked. Returns the fd, or -1 with errno. */
static int listen_one(const struct addrinfo *a, int wildcard, unsigned port_set,
                      int backlog, unsigned flags) {
  struct sockaddr_storage ss;
  memcpy(&ss, a->ai_addr, a->ai_addrlen);
  if (port_set && a->ai_family == AF_INET6)
    ((struct sockaddr_in6 *)&ss)->sin6_port = htons((uint16_t)port_set);
  else if (port_set && a->ai_family == AF_INET)
    ((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)port_set);
  int fd = socket(a->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  int one = 1, zero = 0;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  /* SO_REUSEPORT before bind() joins whoever holds the port with it set
   * (any process of the same user). Set after bind() and before listen(),
   * the bind itself is exclusive (it fails if anyone holds the port, even
   * with SO_REUSEPORT) and the socket still becomes the first of a group
   * that later DX__LISTEN_REUSEPORT sockets can join. */
  if (flags & DX__LISTEN_REUSEPORT) setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
#ifdef TCP_DEFER_ACCEPT
  /* The kernel completes the TCP handshake but makes the connection
   * acceptable only once its first bytes (the HTTP request, or a TLS
   * ClientHello) arrive, or after about a second without any: the server
   * wakes once per connection instead of twice, and a client that
   * connects and says nothing costs no descriptor meanwhile. Best
   * effort: a kernel without it simply accepts at once. */
  if (flags & DX__LISTEN_DEFER) setsockopt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &one, sizeof one);
#endif
  if (a->ai_family == AF_INET6)
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, wildcard ? &zero : &one, sizeof one);
  if (bind(fd, (struct sockaddr *)&ss, a->ai_addrlen) < 0 ||
      ((flags & DX__LISTEN_OPEN) &&
       setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0) ||
      listen(fd, backlog) < 0) {
    int e = errno;
    close(fd);
    errno = e;
    return -1;
  }
  return fd;
}

static int same_addr(const struct addrinfo *a, const struct addrinfo *b) {
  return a->ai_family == b->ai_family && a->ai_addrlen == b->ai_addrlen &&
         memcmp(a->ai_addr, b->ai_addr, a->ai_addrlen) == 0;
}

int dx__tcp_listen(const char *host, unsigned port, int backlog, unsigned flags,
                   int *fds, int max, char *why, size_t cap) {
  if (host && !*host) host = NULL;
  struct addrinfo *res;
  if (resolve(host, port, 1, &res, why, cap)) return DX_EADDR;
  int n = 0, err = 0, tried = 0;
  char where[INET6_ADDRSTRLEN + 16] = "";
  if (!host) {
    /* The wildcard: one IPv6 socket with IPv4 mapped serves both; IPv4
     * alone where the machine has no IPv6. */
    struct addrinfo *pick[2] = {NULL, NULL};
    for (struct addrinfo *a = res; a; a = a->ai_next) {
      if (a->ai_family == AF_INET6 && !pick[0]) pick[0] = a;
      if (a->ai_family == AF_INET && !pick[1]) pick[1] = a;
    }
    for (int i = 0; i < 2 && n == 0; i++) {
      if (!pick[i]) continue;
      int fd = listen_one(pick[i], 1, 0, backlog, flags);
      if (fd >= 0) fds[n++] = fd;
      else err = errno, dx__tcp_addr_text(pick[i]->ai_addr, where, sizeof where);
      /* The next family is a fallback only where this one is missing. */
      if (fd < 0 && err != EAFNOSUPPORT && err != EADDRNOTAVAIL) break;
    }
  } else {
    /* A name: every address it has ("localhost" is ::1 and 127.0.0.1 on a
     * stock Debian), so a client reaches the server whichever it tries.
     * An address the machine lacks (no IPv6) is skipped; any other failure
     * fails the whole call. */
    unsigned port_set = port;
    for (struct addrinfo *a = res; a; a = a->ai_next) {
      int dup = 0;
      for (struct addrinfo *b = res; b != a && !dup; b = b->ai_next) dup = same_addr(a, b);
      if (dup) continue;
      if (n == max) break;
      tried++;
      int fd = listen_one(a, 0, port_set, backlog, flags);
      if (fd >= 0) {
        fds[n++] = fd;
        if (!port_set) port_set = dx__tcp_local_port(fd);
        continue;
      }
      err = errno;
      dx__tcp_addr_text(a->ai_addr, where, sizeof where);
      if (err == EAFNOSUPPORT || err == EADDRNOTAVAIL) continue;
      while (n > 0) close(fds[--n]);
      break;
    }
  }
  freeaddrinfo(res);
  if (n == 0) {
    if (!err) err = EADDRNOTAVAIL;
    /* Name the address only where a name had several. */
    if (tried > 1) snprintf(why, cap, "%s: %s", where, strerror(err));
    else snprintf(why, cap, "%s", strerror(err));
    errno = err;
    return DX_EADDR;
  }
  return n;
}

int dx__tcp_resolve(const char *host, unsigned port, struct addrinfo **out,
                    char *why, size_t cap) {
  return resolve(host, port, 0, out, why, cap);
}

int dx__tcp_connect_next(struct addrinfo **next, const struct addrinfo **used) {
  int err = EADDRNOTAVAIL;
  for (struct addrinfo *a; (a = *next) != NULL;) {
    *next = a->ai_next;
    if (used) *used = a;
    int fd = socket(a->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      err = errno;
      continue;
    }
    if (connect(fd, a->ai_addr, a->ai_addrlen) < 0 && errno != EINPROGRESS) {
      err = errno;
      close(fd);
      continue;
    }
    dx__tcp_tune(fd);
    return fd;
  }
  errno = err;
  return DX_EADDR;
}

int dx__tcp_connect(const char *host, unsigned port) {
  struct addrinfo *res;
  char why[160];
  if (dx__tcp_resolve(host, port, &res, why, sizeof why)) return DX_EADDR;
  struct addrinfo *next = res;
  int fd = dx__tcp_connect_next(&next, NULL);
  int e = errno;
  freeaddrinfo(res);
  errno = e;
  return fd;
}
