/* What the raw reference servers (raw_echo.c, raw_fanout.c) share: the
 * loopback listener and accepting a connection. Header-only: each is one
 * file built on its own. */
#ifndef BENCH_RAW_COMMON_H
#define BENCH_RAW_COMMON_H
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* accept4 */
#endif
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>

/* A non-blocking listener on HOST:PORT (IPv4), or exit: 2 with `usage`
 * for a bad address, 1 when it cannot be bound. */
static inline int raw_listen(int port, const char *host, const char *usage) {
  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  if (port <= 0 || port > 65535 || inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
    fprintf(stderr, "%s\n", usage);
    exit(2);
  }
  if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) || listen(lfd, SOMAXCONN)) {
    perror("bind/listen");
    exit(1);
  }
  return lfd;
}

/* The next queued connection, non-blocking with TCP_NODELAY; -1 when none
 * (EAGAIN, or EMFILE: retried on the next wake). */
static inline int raw_accept(int lfd) {
  int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (fd >= 0) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  return fd;
}
#endif
