/* sio_load's Engine.IO v4 client (sio_load.h): WebSocket or long-polling,
 * as the official client speaks them without upgrading. Answers the
 * server's pings ('2' -> '3'), skips noops, fails the run on a close
 * packet or anything malformed. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proto/frame.h"
#include "proto/handshake.h"
#include "sio_load.h"

static int ep;
static struct sockaddr_in addr;
static char host_hdr[64];
static char ws_path[160], poll_path[160];
static uint64_t rng = 0x9e3779b97f4a7c15u;
static sl_client **dirty;
static size_t n_dirty, dirty_cap;

void sl_wire_init(int epfd, const sl_target *t) {
  ep = epfd;
  addr.sin_family = AF_INET;
  addr.sin_port = htons((uint16_t)t->port);
  if (inet_pton(AF_INET, t->host, &addr.sin_addr) != 1) sl_fail(NULL, "bad host %s", t->host);
  snprintf(host_hdr, sizeof host_hdr, "%s:%d", t->host, t->port);
  snprintf(ws_path, sizeof ws_path, "%s?EIO=4&transport=websocket", t->path);
  snprintf(poll_path, sizeof poll_path, "%s?EIO=4&transport=polling", t->path);
}

static uint64_t next_rand(void) { /* xorshift64*: masking keys */
  rng ^= rng >> 12, rng ^= rng << 25, rng ^= rng >> 27;
  return rng * 0x2545f4914f6cdd1du;
}

static uint8_t *buf_room(sl_buf *b, size_t need) {
  if (b->cap - b->len < need) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->len < need) cap *= 2;
    uint8_t *p = realloc(b->p, cap);
    if (!p) sl_fail(NULL, "out of memory");
    b->p = p, b->cap = cap;
  }
  return b->p + b->len;
}

static void buf_add(sl_buf *b, const void *p, size_t n) {
  memcpy(buf_room(b, n), p, n);
  b->len += n;
}

/* Drops b[0..n), keeping the rest at the front. */
static void buf_eat(sl_buf *b, size_t n) {
  memmove(b->p, b->p + n, b->len - n);
  b->len -= n;
}

static void mark_dirty(sl_client *c) {
  if (c->dirty) return;
  if (n_dirty == dirty_cap) {
    dirty_cap = dirty_cap ? 2 * dirty_cap : 1024;
    dirty = realloc(dirty, dirty_cap * sizeof *dirty);
    if (!dirty) sl_fail(NULL, "out of memory");
  }
  dirty[n_dirty++] = c;
  c->dirty = true;
}

/* ---- sockets ---------------------------------------------------------- */

static void tcp_open(sl_client *c, sl_tcp *t, int role) {
  t->cl = c;
  t->role = (uint8_t)role;
  t->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (t->fd < 0) sl_fail(c, "socket: %s", strerror(errno));
  int one = 1;
  setsockopt(t->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (connect(t->fd, (struct sockaddr *)&addr, sizeof addr) < 0 && errno != EINPROGRESS)
    sl_fail(c, "connect: %s", strerror(errno));
  t->state = ST_CONNECTING;
  struct epoll_event e = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = t};
  if (epoll_ctl(ep, EPOLL_CTL_ADD, t->fd, &e) < 0) sl_fail(c, "epoll_ctl: %s", strerror(errno));
}

static void tcp_write(sl_tcp *t) {
  while (t->out_head < t->out.len && t->state != ST_CONNECTING) {
    ssize_t n = send(t->fd, t->out.p + t->out_head, t->out.len - t->out_head, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return; /* EPOLLOUT resumes */
      if (errno == EINTR) continue;
      sl_fail(t->cl, "send: %s", strerror(errno));
    }
    t->out_head += (size_t)n;
  }
  if (t->out_head == t->out.len) t->out_head = t->out.len = 0;
}

/* Before it is opened again (sl_wire_event, an idle POST connection). */
static void tcp_close(sl_tcp *t) {
  if (t->fd >= 0 && t->state != ST_CLOSED) close(t->fd);
  t->fd = -1;
  t->state = ST_CLOSED;
  free(t->in.p), free(t->out.p);
  memset(&t->in, 0, sizeof t->in), memset(&t->out, 0, sizeof t->out);
  t->out_head = t->scanned = 0;
  t->busy = false;
}

/* ---- WebSocket -------------------------------------------------------- */

static char ws_key[DX__WS_KEY_LEN + 1];

static void ws_request(sl_tcp *t) {
  if (!ws_key[0]) {
    uint8_t raw[16];
    for (int i = 0; i < 16; i += 8) {
      uint64_t r = next_rand();
      memcpy(raw + i, &r, 8);
    }
    dx__ws_make_key(raw, ws_key);
  }
  char req[512];
  size_t n = dx__ws_build_request(req, sizeof req, host_hdr, ws_path, ws_key, NULL, NULL);
  if (!n) sl_fail(t->cl, "cannot build the upgrade request");
  buf_add(&t->out, req, n);
  t->state = ST_UPGRADING;
}

static void eio_packet(sl_client *c, const char *p, size_t n);

/* Frames in t->in; returns when more bytes are needed. */
static void ws_read_frames(sl_tcp *t) {
  size_t off = 0;
  for (;;) {
    dx__frame_header h;
    int hl = dx__frame_parse_header(t->in.p + off, t->in.len - off, &h);
    if (hl < 0) sl_fail(t->cl, "malformed frame header");
    if (hl == 0 || t->in.len - off - (size_t)hl < h.len) break;
    const char *pl = (const char *)t->in.p + off + hl;
    if (!h.fin || h.masked || h.rsv) sl_fail(t->cl, "unexpected frame (fin %d, masked %d, rsv %d)", h.fin, h.masked, h.rsv);
    if (h.opcode == DX__OP_TEXT) eio_packet(t->cl, pl, (size_t)h.len);
    else if (h.opcode == DX__OP_CLOSE) sl_fail(t->cl, "the server closed the WebSocket");
    else if (h.opcode != DX__OP_PONG) sl_fail(t->cl, "unexpected opcode %u", h.opcode);
    off += (size_t)hl + (size_t)h.len;
  }
  if (off) buf_eat(&t->in, off);
}

static void ws_read(sl_tcp *t) {
  if (t->state == ST_UPGRADING) {
    size_t end = dx__http_head_end((const char *)t->in.p, t->in.len, t->scanned);
    if (!end) {
      t->scanned = t->in.len;
      return;
    }
    dx__http_response r;
    char why[160];
    if (dx__http_parse_response((const char *)t->in.p, end, &r) != 0)
      sl_fail(t->cl, "malformed upgrade response");
    if (dx__ws_check_response(&r, ws_key, why, sizeof why) != 0) sl_fail(t->cl, "upgrade: %s", why);
    buf_eat(&t->in, end);
    t->state = ST_OPEN;
  }
  ws_read_frames(t);
}

/* ---- long-polling ----------------------------------------------------- */

static void http_request(sl_tcp *t, const char *method, const sl_buf *body) {
  sl_client *c = t->cl;
  char head[384];
  int n;
  if (body)
    n = snprintf(head, sizeof head,
                 "%s %s&sid=%s HTTP/1.1\r\nHost: %s\r\nContent-Type: text/plain;charset=UTF-8\r\n"
                 "Content-Length: %zu\r\n\r\n",
                 method, poll_path, c->sid, host_hdr, body->len);
  else if (c->sid[0])
    n = snprintf(head, sizeof head, "%s %s&sid=%s HTTP/1.1\r\nHost: %s\r\n\r\n", method, poll_path,
                 c->sid, host_hdr);
  else
    n = snprintf(head, sizeof head, "%s %s HTTP/1.1\r\nHost: %s\r\n\r\n", method, poll_path, host_hdr);
  buf_add(&t->out, head, (size_t)n);
  if (body) buf_add(&t->out, body->p, body->len);
  t->busy = true;
  tcp_write(t);
}

/* A POST of everything queued, when none is in flight. */
static void post_queued(sl_client *c) {
  if (c->p.busy || !c->postq.len || c->p.state != ST_OPEN) return;
  http_request(&c->p, "POST", &c->postq);
  c->postq.len = 0;
}

/* The poll: a GET held until the server has packets. */
static void poll_get(sl_client *c) { http_request(&c->a, "GET", NULL); }

static void poll_payload(sl_client *c, const char *p, size_t n) {
  /* Packets are joined by the record separator \x1e. */
  while (n) {
    const char *sep = memchr(p, 0x1e, n);
    size_t k = sep ? (size_t)(sep - p) : n;
    eio_packet(c, p, k);
    if (!sep) break;
    p += k + 1, n -= k + 1;
  }
}

/* Parses one response off t->in, if complete: status 200, Content-Length
 * bodies only (both servers send them). */
static void http_read(sl_tcp *t) {
  while (t->in.len) {
    size_t end = dx__http_head_end((const char *)t->in.p, t->in.len, t->scanned);
    if (!end) {
      t->scanned = t->in.len; /* only while no head is found: a found one is found again */
      return;
    }
    dx__http_response r;
    if (dx__http_parse_response((const char *)t->in.p, end, &r) != 0) sl_fail(t->cl, "malformed HTTP response");
    const dx__http_header *cl = dx__http_find(r.headers, r.num_headers, "content-length");
    if (!cl) sl_fail(t->cl, "HTTP %d without Content-Length", r.status);
    size_t blen = (size_t)strtoull(cl->value, NULL, 10);
    if (t->in.len - end < blen) return;
    if (r.status != 200)
      sl_fail(t->cl, "HTTP %d on %s: %.*s", r.status, t->role == SL_GET ? "GET" : "POST", (int)blen,
              (const char *)t->in.p + end);
    if (!t->busy) sl_fail(t->cl, "an HTTP response nobody asked for");
    t->busy = false;
    sl_client *c = t->cl;
    const char *body = (const char *)t->in.p + end;
    if (t->role == SL_POST) {
      if (blen != 2 || memcmp(body, "ok", 2)) sl_fail(c, "POST answered %.*s", (int)blen, body);
    } else {
      poll_payload(c, body, blen);
      if (c->a.fd >= 0) poll_get(c); /* the next poll at once, as the client does */
    }
    buf_eat(&t->in, end + blen);
    t->scanned = 0;
    if (t->role == SL_POST) post_queued(c);
  }
}

/* ---- Engine.IO -------------------------------------------------------- */

/* Queues the Engine.IO packet of type `type` ('3' pong, '4' message)
 * with body p[0..n): in a masked text frame, written in place without a
 * copy of the body, or appended to the next POST. */
static void eio_send(sl_client *c, char type, const char *p, size_t n) {
  if (c->polling) {
    if (c->postq.len) buf_add(&c->postq, "\x1e", 1);
    buf_add(&c->postq, &type, 1);
    buf_add(&c->postq, p, n);
  } else {
    sl_tcp *t = &c->a;
    uint64_t r = next_rand();
    uint8_t key[4];
    memcpy(key, &r, 4);
    uint8_t *dst = buf_room(&t->out, DX__FRAME_MAX_HEADER + 1 + n);
    size_t h = dx__frame_write_header(dst, 1, 0, DX__OP_TEXT, key, n + 1);
    dst[h] = (uint8_t)type;
    dx__mask(dst + h, 1, key, 0);
    dx__mask_copy(dst + h + 1, (const uint8_t *)p, n, key, 1);
    t->out.len += h + 1 + n;
  }
  mark_dirty(c);
}

void sl_wire_send(sl_client *c, const char *pkt, size_t n) { eio_send(c, '4', pkt, n); }

/* The open packet: 0{"sid":"...",...}. Polling needs the sid. */
static void eio_open(sl_client *c, const char *p, size_t n) {
  const char *k = memmem(p, n, "\"sid\":\"", 7);
  if (!k) sl_fail(c, "open packet without a sid: %.*s", (int)n, p);
  k += 7;
  const char *e = memchr(k, '"', n - (size_t)(k - p));
  if (!e || (size_t)(e - k) >= sizeof c->sid) sl_fail(c, "bad sid in %.*s", (int)n, p);
  memcpy(c->sid, k, (size_t)(e - k));
  c->sid[e - k] = 0;
  c->opened = true;
  if (c->polling) tcp_open(c, &c->p, SL_POST); /* the GET connection polls on */
  sl_on_open(c);
}

static void eio_packet(sl_client *c, const char *p, size_t n) {
  if (!n) sl_fail(c, "empty Engine.IO packet");
  switch (p[0]) {
    case '4': sl_on_packet(c, p + 1, n - 1); break;
    case '2': eio_send(c, '3', "", 0); break; /* ping -> pong */
    case '6': break;                            /* noop */
    case '0':
      if (c->opened) sl_fail(c, "a second open packet");
      eio_open(c, p, n);
      break;
    case '1': sl_fail(c, "the server closed the session");
    default: sl_fail(c, "unexpected Engine.IO packet %.*s", (int)(n < 40 ? n : 40), p);
  }
}

/* ---- the loop's side -------------------------------------------------- */

void sl_wire_start(sl_client *c) {
  c->a.fd = c->p.fd = -1;
  tcp_open(c, &c->a, c->polling ? SL_GET : SL_WS);
}

static void on_connected(sl_tcp *t) {
  int err = 0;
  socklen_t len = sizeof err;
  getsockopt(t->fd, SOL_SOCKET, SO_ERROR, &err, &len);
  if (err) sl_fail(t->cl, "connect: %s", strerror(err));
  sl_client *c = t->cl;
  t->state = ST_OPEN;
  if (t->role == SL_WS) ws_request(t);
  else if (t->role == SL_GET) poll_get(c); /* the handshake, later the polls */
  else post_queued(c);
}

void sl_wire_event(sl_tcp *t, uint32_t ev) {
  if (t->state == ST_CONNECTING) {
    if (!(ev & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
    on_connected(t);
  }
  if (ev & EPOLLIN) {
    for (;;) {
      uint8_t *dst = buf_room(&t->in, 16384);
      ssize_t n = recv(t->fd, dst, t->in.cap - t->in.len, 0);
      if (n > 0) {
        t->in.len += (size_t)n;
        if (t->role == SL_WS) ws_read(t);
        else http_read(t);
        continue;
      }
      if (n == 0 && t->role == SL_POST && !t->busy && t->out.len == 0) {
        /* an idle keep-alive connection the server let go (Node's
         * keepAliveTimeout is 5 s): the next POST goes on a new one */
        tcp_close(t);
        tcp_open(t->cl, t, SL_POST);
        return;
      }
      if (n == 0) sl_fail(t->cl, "the server closed the connection");
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      if (errno != EINTR) sl_fail(t->cl, "recv: %s", strerror(errno));
    }
  } else if (ev & (EPOLLERR | EPOLLHUP | EPOLLRDHUP)) {
    sl_fail(t->cl, "connection error");
  }
  tcp_write(t);
}

void sl_wire_flush_all(void) {
  for (size_t i = 0; i < n_dirty; i++) {
    sl_client *c = dirty[i];
    c->dirty = false;
    if (c->polling) post_queued(c);
    else tcp_write(&c->a);
  }
  n_dirty = 0;
}
