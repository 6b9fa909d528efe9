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
 * With --uring (built where liburing is, Debian: liburing-dev) the echoes
 * of one epoll wake-up leave in one io_uring submission instead of one
 * send() each: what batching the writes would save a server whose system
 * calls are raw_echo's (bench/README.md, pipelined echo). Each read goes
 * into its own slice of an arena kept until the submission completed; what
 * a socket did not take is kept and written as without --uring.
 *
 * With --uring-both the reads of a wake-up are one submission as well
 * (each into its own 64 KiB slice, MSG_DONTWAIT: epoll said there is
 * data), then their echoes another: two io_uring_enter calls per wake-up
 * in place of a recv() and a send() per connection.
 *
 * usage: raw_echo [PORT] [HOST] [--close-after-request | --uring | --uring-both]
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

#ifdef DX_HAVE_LIBURING
#include <liburing.h>
#endif

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

/* What a write of p[0..n) did (w bytes, or -errno): keeps what the socket
 * did not take and stops reading until it is written. */
static void sent(struct conn *c, const uint8_t *p, ssize_t n, ssize_t w) {
  if (w < 0 && w != -EAGAIN && w != -EINTR) {
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
  memcpy(c->pending, p + w, c->len);
  set_events(c, EPOLLOUT); /* stop reading until this is written */
}

#ifdef DX_HAVE_LIBURING
/* --uring: a wake-up's reads each take a slice of the arena, and their
 * echoes one submission (at most one per connection and wake-up: fewer
 * than the ring's entries). */
enum { RING_ENTRIES = 512, ARENA = 16 * 1024 * 1024, SLICE_MIN = 64 * 1024 };
static struct io_uring ring;
static uint8_t *arena;
static size_t arena_used;
static unsigned queued;
typedef struct {
  struct conn *c;
  const uint8_t *p;
  ssize_t n;
} echo;
static echo echoes[RING_ENTRIES];

/* Submits what is queued and waits for `n` completions. */
static void submit_wait(unsigned n) {
  int r;
  do
    r = io_uring_submit_and_wait(&ring, n);
  while (r == -EINTR);
  if (r < 0) {
    fprintf(stderr, "raw_echo: io_uring_submit_and_wait: %s\n", strerror(-r));
    exit(1);
  }
}

static void uring_flush(void) {
  if (!queued) return;
  submit_wait(queued);
  for (unsigned seen = 0; seen < queued;) {
    struct io_uring_cqe *cqe;
    if (io_uring_wait_cqe(&ring, &cqe)) continue;
    echo *e = io_uring_cqe_get_data(cqe);
    int res = cqe->res;
    io_uring_cqe_seen(&ring, cqe);
    sent(e->c, e->p, e->n, res);
    seen++;
  }
  queued = 0;
  arena_used = 0;
}

static void on_readable_uring(struct conn *c) {
  if (queued == RING_ENTRIES || ARENA - arena_used < SLICE_MIN) uring_flush();
  uint8_t *p = arena + arena_used;
  ssize_t n = recv(c->fd, p, SLICE_MIN, 0);
  if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
    conn_free(c);
    return;
  }
  if (n < 0) return;
  arena_used += (size_t)n;
  echo *e = &echoes[queued++];
  *e = (echo){c, p, n};
  struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
  io_uring_prep_send(sqe, c->fd, p, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
  io_uring_sqe_set_data(sqe, e);
}
#endif

#ifdef DX_HAVE_LIBURING
/* --uring-both: the reads of one wake-up are one submission too (each into
 * its slice of the arena, MSG_DONTWAIT: epoll said there is data), then
 * their echoes another. Call for each readable connection, then
 * uring_reads_done() once. */
static void on_readable_uring_both(struct conn *c) {
  uint8_t *p = arena + arena_used;
  arena_used += SLICE_MIN;
  echo *e = &echoes[queued++];
  *e = (echo){c, p, 0};
  struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
  io_uring_prep_recv(sqe, c->fd, p, SLICE_MIN, MSG_DONTWAIT);
  io_uring_sqe_set_data(sqe, e);
}

static void uring_reads_done(void) {
  if (!queued) return;
  submit_wait(queued);
  unsigned reads = queued, sends = 0;
  for (unsigned seen = 0; seen < reads; seen++) {
    struct io_uring_cqe *cqe;
    while (io_uring_wait_cqe(&ring, &cqe)) {}
    echo *e = io_uring_cqe_get_data(cqe);
    int res = cqe->res;
    io_uring_cqe_seen(&ring, cqe);
    if (res == 0 || (res < 0 && res != -EAGAIN && res != -EINTR)) {
      conn_free(e->c);
      continue;
    }
    if (res < 0) continue;
    echo *s = &echoes[RING_ENTRIES / 2 + sends++];
    *s = (echo){e->c, e->p, res};
    struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
    io_uring_prep_send(sqe, s->c->fd, s->p, (size_t)res, MSG_NOSIGNAL | MSG_DONTWAIT);
    io_uring_sqe_set_data(sqe, s);
  }
  queued = sends;
  uring_flush();
}
#endif

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
  sent(c, buf, n, w < 0 ? -errno : w);
}

static void on_writable(struct conn *c) {
  int r = drain(c);
  if (r < 0 || (r > 0 && c->close_when_drained)) conn_free(c);
  else if (r > 0) set_events(c, EPOLLIN);
}

int main(int argc, char **argv) {
  int uring = 0;
  if (argc > 1 && !strcmp(argv[argc - 1], "--close-after-request")) {
    close_after_request = 1;
    argc--;
  } else if (argc > 1 && !strcmp(argv[argc - 1], "--uring")) {
    uring = 1;
    argc--;
  } else if (argc > 1 && !strcmp(argv[argc - 1], "--uring-both")) {
    uring = 2;
    argc--;
  }
#ifdef DX_HAVE_LIBURING
  if (uring && (io_uring_queue_init(RING_ENTRIES, &ring, 0) || !(arena = malloc(ARENA)))) {
    fprintf(stderr, "raw_echo: io_uring is not available here\n");
    return 1;
  }
#else
  if (uring) {
    fprintf(stderr, "raw_echo: built without liburing (Debian: liburing-dev)\n");
    return 1;
  }
#endif
  int port = argc > 1 ? atoi(argv[1]) : 8082;
  const char *host = argc > 2 ? argv[2] : "127.0.0.1";
  signal(SIGPIPE, SIG_IGN);
  int lfd = raw_listen(port, host, "usage: raw_echo [PORT] [IPV4-HOST] [--close-after-request | --uring | --uring-both]");
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
      } else if (uring) {
#ifdef DX_HAVE_LIBURING
        if (uring == 2) on_readable_uring_both(c);
        else on_readable_uring(c);
#endif
      } else {
        on_readable(c);
      }
    }
#ifdef DX_HAVE_LIBURING
    if (uring == 2) uring_reads_done();
    else uring_flush();
#endif
  }
}
