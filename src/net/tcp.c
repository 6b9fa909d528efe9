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

#include "duplex.h"
#include "net/transport.h"

static ssize_t tcp_read(dx__transport *t, void *buf, size_t cap) {
  for (;;) {
    ssize_t n = recv(t->fd, buf, cap, 0);
    if (n >= 0) return n;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return DX_EINCOMPLETE;
    return DX_EIO;
  }
}

static ssize_t tcp_writev(dx__transport *t, const struct iovec *iov, int n) {
  if (n == 0) return 0;
  /* send/sendmsg rather than write/writev: MSG_NOSIGNAL spares the embedder
   * SIGPIPE. One buffer (the common case) takes the cheaper send(). */
  struct msghdr m = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)n};
  for (;;) {
    ssize_t w = n == 1 ? send(t->fd, iov[0].iov_base, iov[0].iov_len, MSG_NOSIGNAL)
                       : sendmsg(t->fd, &m, MSG_NOSIGNAL);
    if (w >= 0) return w;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return DX_EINCOMPLETE;
    return DX_EIO;
  }
}

static void tcp_shutdown(dx__transport *t) { shutdown(t->fd, SHUT_WR); }

static void tcp_close(dx__transport *t) {
  if (t->fd >= 0) close(t->fd);
  t->fd = -1;
}

static size_t tcp_pending(dx__transport *t) {
  (void)t;
  return 0;
}

static int tcp_error(dx__transport *t, char *buf, size_t cap) {
  (void)t;
  snprintf(buf, cap, "socket error: %s", strerror(errno));
  return DX_CLOSE_ABNORMAL;
}

const dx__transport_ops dx__tcp_ops = {tcp_read, tcp_writev, tcp_pending,
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

int dx__tcp_listen(const char *host, unsigned port, int backlog, unsigned flags,
                   char *why, size_t cap) {
  if (host && !*host) host = NULL;
  struct addrinfo *res;
  if (resolve(host, port, 1, &res, why, cap)) return DX_EADDR;
  /* For the wildcard, take IPv6 first: with IPV6_V6ONLY off it serves
   * IPv4 too. */
  struct addrinfo *pick[2] = {NULL, NULL};
  for (struct addrinfo *a = res; a; a = a->ai_next) {
    if (a->ai_family == AF_INET6 && !pick[0]) pick[0] = a;
    if (a->ai_family == AF_INET && !pick[1]) pick[1] = a;
  }
  if (host) { pick[0] = res; pick[1] = NULL; }
  int fd = -1, err = 0;
  for (int i = 0; i < 2 && fd < 0; i++) {
    struct addrinfo *a = pick[i];
    if (!a) continue;
    fd = socket(a->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) { err = errno; continue; }
    int one = 1, zero = 0;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
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
    if (a->ai_family == AF_INET6 && !host)
      setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
    if (bind(fd, a->ai_addr, a->ai_addrlen) < 0 || listen(fd, backlog) < 0) {
      err = errno;
      close(fd);
      fd = -1;
    }
  }
  freeaddrinfo(res);
  if (fd < 0) {
    snprintf(why, cap, "%s", strerror(err));
    errno = err;
    return DX_EADDR;
  }
  return fd;
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
