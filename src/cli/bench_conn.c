/* The load generator's sockets: non-blocking connect, buffered send,
 * edge-triggered receive. What the bytes mean is bench_ws.c's business,
 * what a failure means bench_life.c's. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench_engine.h"

int bench_out_reserve(bench_conn *c, size_t need) {
  if (c->tail + need <= c->cap) return 0;
  if (c->head) { /* compact */
    memmove(c->out, c->out + c->head, c->tail - c->head);
    c->tail -= c->head;
    c->head = 0;
    if (c->tail + need <= c->cap) return 0;
  }
  size_t ncap = c->cap ? c->cap : 256;
  while (ncap < c->tail + need) ncap *= 2;
  uint8_t *p = realloc(c->out, ncap);
  if (!p) {
    bench_fatal(c->b, "out of memory for %zu bytes of output", ncap);
    return -1;
  }
  c->out = p;
  c->cap = ncap;
  return 0;
}

void bench_queue_bytes(bench_conn *c, const void *data, size_t len) {
  if (bench_out_reserve(c, len) != 0) return;
  memcpy(c->out + c->tail, data, len);
  c->tail += len;
}

/* Gives up the socket and everything tied to it; the buffers stay for the
 * next cycle. Messages in flight are forgotten: the caller counts them. */
void bench_conn_release(bench_conn *c) {
  if (c->ssl) { /* no close_notify: the close handshake already happened */
    SSL_free(c->ssl);
    c->ssl = NULL;
  }
  dx__pmd_free(c->pmd);
  c->pmd = NULL;
  c->msg_z = 0;
  if (c->fd >= 0) close(c->fd); /* also leaves the epoll set */
  c->fd = -1;
  c->state = BC_FREE;
  c->deadline = 0;
  c->head = c->tail = 0;
  c->hs_len = 0;
  c->hdr_len = c->in_frame = c->in_msg = 0;
  c->raw_got = 0;
  c->b->in_flight -= c->ring_count;
  c->ring_head = c->ring_count = 0;
}

/* "connection refused" rather than "Connection refused": error kinds read
 * as part of a sentence. */
static void fail_errno(bench_conn *c, const char *what, int err) {
  char kind[96];
  if (err == ECONNREFUSED)
    snprintf(kind, sizeof kind, "connection refused");
  else
    snprintf(kind, sizeof kind, "%s: %s", what, strerror(err));
  bench_conn_fail(c, kind);
}

void bench_conn_start(bench_conn *c) {
  bench_ctx *b = c->b;
  if (b->stopping || b->failed) return;
  c->t_start = bench_now_ns();
  int fd = socket(b->cfg->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    /* Out of descriptors is this side's limit, not the server's failure. */
    bench_fatal(b, "socket: %s", strerror(errno));
    return;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  c->fd = fd;
  c->state = BC_CONNECTING;
  c->deadline = c->t_start + b->timeout_ns;
  struct epoll_event ev = {
      .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = c};
  if (epoll_ctl(b->ep, EPOLL_CTL_ADD, fd, &ev)) {
    bench_fatal(b, "epoll_ctl: %s", strerror(errno));
    bench_conn_release(c);
    return;
  }
  if (connect(fd, (const struct sockaddr *)&b->cfg->addr, b->cfg->addr_len) &&
      errno != EINPROGRESS)
    fail_errno(c, "connect", errno);
}

void bench_on_connected(bench_conn *c) {
  if (c->b->cfg->tls && !c->ssl) {
    bench_tls_start(c);
    return;
  }
  bench_ws_begin(c);
}

void bench_flush(bench_conn *c) {
  if (c->ssl) {
    if (c->state != BC_TLS) bench_tls_flush(c);
    return;
  }
  while (c->fd >= 0 && c->head < c->tail) {
    size_t want = c->tail - c->head;
    ssize_t n = send(c->fd, c->out + c->head, want, MSG_NOSIGNAL);
    if (n > 0) {
      c->head += (size_t)n;
      if ((size_t)n < want) return; /* buffer full: an EPOLLOUT edge follows */
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n < 0 && errno == EAGAIN) {
      return;
    } else {
      fail_errno(c, "send", errno);
      return;
    }
  }
  if (c->head == c->tail) c->head = c->tail = 0;
}

static void do_read(bench_conn *c, uint32_t ev) {
  bench_ctx *b = c->b;
  if (c->ssl) {
    bench_tls_read(c);
    return;
  }
  for (;;) {
    ssize_t n = recv(c->fd, b->rbuf, b->rbuf_size, 0);
    if (n > 0) {
      if (bench_consume(c, b->rbuf, (size_t)n) < 0) return;
      /* Edge-triggered: a short read drained the socket, unless the peer's
       * FIN or an error is pending, which must be read too. */
      if ((size_t)n < b->rbuf_size && !(ev & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)))
        break;
    } else if (n == 0) {
      bench_on_eof(c);
      return;
    } else if (errno == EINTR) {
      continue;
    } else if (errno == EAGAIN) {
      break;
    } else {
      fail_errno(c, "recv", errno);
      return;
    }
  }
  bench_flush(c);
}

void bench_on_event(bench_conn *c, uint32_t ev) {
  if (c->state == BC_CONNECTING) {
    int err = 0;
    socklen_t l = sizeof err;
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
    if (err) {
      fail_errno(c, "connect", err);
      return;
    }
    if (!(ev & EPOLLOUT)) return;
    bench_on_connected(c);
    return; /* nothing can have arrived before we sent */
  }
  if (c->state == BC_TLS) { /* either direction may move it on */
    bench_tls_step(c);
    if (c->fd < 0 || c->state == BC_TLS) return;
  }
  if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
    do_read(c, ev);
    if (c->fd < 0) return;
  }
  if (ev & EPOLLOUT) bench_flush(c);
}
