/* The server endpoint: listening sockets, accepting, and the server side
 * of the opening handshake. */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "endpoint.h"
#include "proto/handshake.h"
#include "server_internal.h"

#define DX__MAX_LISTENERS 8
#define DX__ACCEPT_BATCH 64

typedef struct dx__listener {
  dx__io io;
  dx_server *server;
} dx__listener;

struct dx_server {
  dx_loop *loop;
  dx__endpoint ep;
  dx__listener listeners[DX__MAX_LISTENERS];
  int nlisteners;
  uint16_t port;
  size_t nconns; /* connections in any state (they sit on the loop's list) */
};

struct dx_request {
  const dx__http_request *http;
};

static int server_on_head(dx_conn *c, const char *head, size_t len);

dx_server *dx_server_new(dx_loop *loop, const dx_options *o) {
  if (!loop) return NULL;
  dx_server *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  s->loop = loop;
  dx__endpoint_init(&s->ep, o, DX__ROLE_SERVER);
  s->ep.on_head = server_on_head;
  return s;
}

size_t dx_server_connections(const dx_server *s) { return s->nconns; }
uint16_t dx_server_port(const dx_server *s) { return s->port; }

void dx__server_detach(dx_server *s, dx_conn *c) {
  c->server = NULL;
  s->nconns--;
}

static void on_accept(dx__io *io, uint32_t events) {
  (void)events;
  dx__listener *li = (dx__listener *)io;
  dx_server *s = li->server;
  /* A bounded batch per wake-up keeps one busy listener from starving the
   * connections already open. */
  for (int i = 0; i < DX__ACCEPT_BATCH; i++) {
    int fd = accept4(io->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return; /* EAGAIN, or EMFILE & co: retried on the next wake-up */
    dx__tcp_tune(fd);
    dx_conn *c = calloc(1, sizeof *c);
    if (!c) {
      close(fd);
      continue;
    }
    if (dx__conn_start(c, s->loop, &s->ep, fd, EPOLLIN)) {
      close(fd);
      free(c);
      continue;
    }
    c->server = s;
    s->nconns++;
  }
}

int dx_server_listen(dx_server *s, const char *host, uint16_t port) {
  if (!s) return DX_EINVAL;
  if (s->nlisteners == DX__MAX_LISTENERS) return DX_EINVAL;
  int fd = dx__tcp_listen(host, port, 1024);
  if (fd < 0) return fd;
  dx__listener *li = &s->listeners[s->nlisteners];
  li->io.fd = fd;
  li->io.cb = on_accept;
  li->server = s;
  if (dx__io_start(s->loop, &li->io, EPOLLIN)) {
    int e = errno;
    close(fd);
    errno = e;
    return DX_EADDR;
  }
  s->nlisteners++;
  s->port = (uint16_t)dx__tcp_local_port(fd);
  dx__loop_ref(s->loop);
  return 0;
}

void dx_server_free(dx_server *s) {
  if (!s) return;
  for (int i = 0; i < s->nlisteners; i++) {
    dx__io_stop(s->loop, &s->listeners[i].io);
    close(s->listeners[i].io.fd);
    dx__loop_unref(s->loop);
  }
  /* Our connections sit on the loop's list among others (clients, other
   * servers'). A close callback may end further connections, so start over
   * from the head after each: finished ones have left the list. */
  dx__handle *h = dx__loop_handles(s->loop);
  while (h && s->nconns) {
    dx_conn *c = (dx_conn *)((char *)h - offsetof(dx_conn, handle));
    if (c->server != s) {
      h = h->next;
      continue;
    }
    dx__conn_finish(c, DX_WHY_SERVER_SHUTDOWN, DX_CLOSE_ABNORMAL, "server freed");
    h = dx__loop_handles(s->loop);
  }
  free(s);
}

/* ---- handshake ---------------------------------------------------------- */

void dx__server_refuse(dx_conn *c, int status, const char *why) {
  char buf[512];
  size_t n = dx__http_build_error(buf, sizeof buf, status, why);
  /* Whatever the client sends from now on is read only to be dropped. */
  c->phase = DX__P_LINGER;
  dx__timer_start(c->loop, &c->timer, c->ep->opt.close_timeout_ms);
  if (!n || dx__conn_write_raw(c, buf, n, 1))
    dx__conn_finish(c, DX_WHY_HANDSHAKE_FAILED, DX_CLOSE_ABNORMAL, why);
}

const char *dx_request_path(const dx_request *r, size_t *len) {
  if (len) *len = r->http->path_len;
  return r->http->path;
}

const char *dx_request_header(const dx_request *r, const char *name, size_t *len) {
  const dx__http_header *h = dx__http_find(r->http->headers, r->http->num_headers, name);
  if (!h) return NULL;
  if (len) *len = h->value_len;
  return h->value;
}

static int server_on_head(dx_conn *c, const char *head, size_t len) {
  dx__http_request req;
  char accept[DX__WS_ACCEPT_LEN + 1];
  char why[160];
  if (dx__http_parse_request(head, len, &req) != 0) {
    dx__server_refuse(c, 400, "malformed HTTP request");
    return -1;
  }
  int status = dx__ws_check_request(&req, accept, why, sizeof why);
  if (status) {
    dx__server_refuse(c, status, why);
    return -1;
  }
  c->path = strndup(req.path, req.path_len);
  if (!c->path) {
    dx__server_refuse(c, 500, "out of memory");
    return -1;
  }
  if (c->ep->opt.on_accept) {
    dx_request r = {&req};
    int refuse = c->ep->opt.on_accept(c, &r);
    if (c->phase == DX__P_DONE) return -1;
    if (refuse) {
      if (refuse < 400 || refuse > 599) refuse = 403;
      dx__server_refuse(c, refuse, "refused by the server");
      return -1;
    }
  }
  char resp[256];
  size_t n = dx__ws_build_response(resp, sizeof resp, accept, NULL);
  if (!n || dx__session_queue_raw(&c->sess, resp, n)) {
    dx__server_refuse(c, 500, "out of memory");
    return -1;
  }
  return 0;
}
