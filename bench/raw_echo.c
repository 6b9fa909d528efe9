/*
 * raw_echo — a plain TCP echo server on epoll, single-threaded: the
 * reference for "the machine's limit" (no WebSocket framing, no masking, no
 * handshake). Whatever arrives is written straight back; when the socket
 * will not take it all, the rest is kept and reading stops until it drains,
 * so a fast client gets TCP back-pressure instead of unbounded buffering.
 *
 * With --close-after-request the server also closes a connection once what
 * it echoed ends with a blank line ("\r\n\r\n"): the reference for the
 * handshake row, where wsbench --raw sends a request the size of an HTTP
 * upgrade and, as with a WebSocket close handshake (RFC 6455 §7.1.1), the
 * server closes TCP first and so holds the TIME_WAIT.
 *
 * usage: raw_echo [PORT] [HOST] [--close-after-request]
 *        (default 8082 on 127.0.0.1)
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* accept4 */
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "raw_common.h"

#define BUF_SIZE (256 * 1024)

struct conn {
  int fd;
  int close_when_drained;
  uint32_t last4; /* the last four bytes received, for --close-after-request */
  size_t off, len; /* pending[off..len) still to be written */
  uint8_t *pending;
};

static int ep;
static int close_after_request;
static uint8_t buf[BUF_SIZE];

static void conn_free(struct conn *c) {
  close(c->fd);
  free(c->pending);
  free(c);
}

static void set_events(struct conn *c, uint32_t events) {
  struct epoll_event ev = {.events = events, .data.ptr = c};
  epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

/* Writes what is pending. Returns 1 when drained, 0 when blocked, -1 on
 * error. */
static int drain(struct conn *c) {
  while (c->off < c->len) {
    ssize_t n = send(c->fd, c->pending + c->off, c->len - c->off, MSG_NOSIGNAL);
    if (n > 0) c->off += (size_t)n;
    else if (n < 0 && errno == EINTR) continue;
    else if (n < 0 && errno == EAGAIN) return 0;
    else return -1;
  }
  free(c->pending); /* only needed under back-pressure: give it back */
  c->pending = NULL;
  c->off = c->len = 0;
  return 1;
}

/* Level-triggered EPOLLIN: one read per wake-up keeps connections fair. */
static void on_readable(struct conn *c) {
  ssize_t n = recv(c->fd, buf, sizeof buf, 0);
  if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
    conn_free(c);
    return;
  }
  if (n < 0) return;
  if (close_after_request) {
    for (ssize_t i = 0; i < n; i++) c->last4 = c->last4 << 8 | buf[i];
    c->close_when_drained = c->last4 == 0x0D0A0D0Au;
  }
  ssize_t w = send(c->fd, buf, (size_t)n, MSG_NOSIGNAL);
  if (w < 0 && errno != EAGAIN && errno != EINTR) {
    conn_free(c);
    return;
  }
  if (w < 0) w = 0;
  if (w == n) {
    if (c->close_when_drained) conn_free(c);
    return;
  }
  c->len = (size_t)(n - w);
  c->off = 0;
  if (!(c->pending = malloc(c->len))) {
    conn_free(c);
    return;
  }
  memcpy(c->pending, buf + w, c->len);
  set_events(c, EPOLLOUT); /* stop reading until this is written */
}

static void on_writable(struct conn *c) {
  int r = drain(c);
  if (r < 0 || (r > 0 && c->close_when_drained)) conn_free(c);
  else if (r > 0) set_events(c, EPOLLIN);
}

int main(int argc, char **argv) {
  if (argc > 1 && !strcmp(argv[argc - 1], "--close-after-request")) {
    close_after_request = 1;
    argc--;
  }
  int port = argc > 1 ? atoi(argv[1]) : 8082;
  const char *host = argc > 2 ? argv[2] : "127.0.0.1";
  signal(SIGPIPE, SIG_IGN);
  int lfd = raw_listen(port, host, "usage: raw_echo [PORT] [IPV4-HOST] [--close-after-request]");
  ep = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL};
  epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev);

  struct epoll_event evs[256];
  for (;;) {
    int n = epoll_wait(ep, evs, 256, -1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      perror("raw_echo: epoll_wait");
      return 1;
    }
    for (int i = 0; i < n; i++) {
      struct conn *c = evs[i].data.ptr;
      if (!c) { /* the listener: accept everything queued */
        for (;;) {
          int fd = raw_accept(lfd);
          if (fd < 0) break;
          struct conn *nc = calloc(1, sizeof *nc);
          if (!nc) {
            close(fd);
            continue;
          }
          nc->fd = fd;
          struct epoll_event ev = {.events = EPOLLIN, .data.ptr = nc};
          epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
        }
      } else if (c->pending) {
        on_writable(c);
      } else {
        on_readable(c);
      }
    }
  }
}
