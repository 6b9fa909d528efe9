/*
 * raw_fanout — the fan-out reference of bench/fanout.sh: the physical
 * limit of a WebSocket fan-out on one thread. A single-threaded epoll
 * server that speaks just enough RFC 6455 to be driven by the same client
 * as `duplex serve --rooms`:
 *
 *  - the upgrade: reads the request head, answers 101 with the right
 *    Sec-WebSocket-Accept (OpenSSL SHA-1 + base64); a path that is not
 *    /rooms/NAME gets 404. Every /rooms/ path is the same one room.
 *  - frames in: masked, unfragmented, up to 16 MiB. A text or binary
 *    message is unmasked once, straight into this iteration's publish
 *    buffer behind its server frame header: what every other member of the
 *    room will be sent, byte for byte. Ping: pong. Close: the close is
 *    answered, the output drained, TCP closed. Anything else (no mask,
 *    fragments, RSV bits) ends the connection.
 *  - fan-out, as the best servers batch it: after the whole epoll batch,
 *    every member gets ONE write() (or one writev() behind a backlog) of
 *    all the frames published in the iteration. Only what the socket does
 *    not take is copied, into that member's backlog, written on EPOLLOUT.
 *    A member that published in the iteration gets the others' frames
 *    copied (rare here: one publisher). A backlog past 64 MiB closes the
 *    connection (a slow consumer).
 *
 * No UTF-8 check, no heartbeats, no limits beyond those: it bounds what
 * any WebSocket server can reach here, like raw_echo does for echo.
 *
 * usage: raw_fanout [PORT] [HOST]   (default 8083 on 127.0.0.1)
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* accept4 */
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "raw_common.h"

#define HEAD_MAX 8192
#define READ_SIZE (256 * 1024)
#define FRAME_MAX (16u << 20)
#define BACKLOG_MAX ((size_t)64 << 20)

enum { ST_HANDSHAKE, ST_OPEN, ST_CLOSING };

/* A growable byte buffer: data[off..len) is what is left. */
typedef struct {
  uint8_t *data;
  size_t off, len, cap;
} bytes;

typedef struct conn {
  int fd;
  int state;
  int dead;      /* closed this iteration; freed at its end */
  int in_room;   /* a member: room[pos] is this */
  int published; /* published in this iteration */
  uint32_t events;
  size_t pos;
  bytes in;      /* request head or frames not yet complete */
  bytes out;     /* backlog: what the socket did not take */
  struct conn *next_dead;
} conn;

/* One frame published in this iteration: pub.data[off..off+len). */
typedef struct {
  size_t off, len;
  conn *from;
} published;

static int ep;
static conn **room;
static size_t room_n, room_cap;
static bytes pub;            /* this iteration's frames, server-framed */
static published *frames;
static size_t nframes, frames_cap;
static conn *graveyard;

static int reserve(bytes *b, size_t more) {
  if (b->off && b->off == b->len) b->off = b->len = 0;
  if (b->len + more <= b->cap) return 0;
  if (b->off) { /* compact first */
    memmove(b->data, b->data + b->off, b->len - b->off);
    b->len -= b->off;
    b->off = 0;
    if (b->len + more <= b->cap) return 0;
  }
  size_t cap = b->cap ? b->cap : 4096;
  while (cap < b->len + more) cap *= 2;
  uint8_t *p = realloc(b->data, cap);
  if (!p) return -1;
  b->data = p;
  b->cap = cap;
  return 0;
}

static int append(bytes *b, const void *p, size_t n) {
  if (reserve(b, n)) return -1;
  memcpy(b->data + b->len, p, n);
  b->len += n;
  return 0;
}

static void set_events(conn *c, uint32_t events) {
  if (c->events == events) return;
  c->events = events;
  struct epoll_event ev = {.events = events, .data.ptr = c};
  epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static void room_leave(conn *c) {
  if (!c->in_room) return;
  conn *last = room[--room_n];
  room[c->pos] = last;
  last->pos = c->pos;
  c->in_room = 0;
}

/* Closes now; the memory goes at the end of the iteration, since events
 * later in the batch may still point at it. */
static void kill_conn(conn *c) {
  if (c->dead) return;
  room_leave(c);
  close(c->fd);
  c->dead = 1;
  c->next_dead = graveyard;
  graveyard = c;
}

static void bury(void) {
  while (graveyard) {
    conn *c = graveyard;
    graveyard = c->next_dead;
    free(c->in.data);
    free(c->out.data);
    free(c);
  }
}

/* Writes the backlog and then `extra` (extra_n bytes, none of them queued
 * yet) with one writev; what the socket does not take of extra joins the
 * backlog. Then: waits for writability while a backlog is left, closes a
 * closing connection that has none. */
static void write_out(conn *c, const uint8_t *extra, size_t extra_n) {
  struct iovec iov[2];
  int k = 0;
  size_t backlog = c->out.len - c->out.off;
  if (backlog) iov[k++] = (struct iovec){c->out.data + c->out.off, backlog};
  if (extra_n) iov[k++] = (struct iovec){(void *)extra, extra_n};
  ssize_t w = 0;
  if (k) {
    w = writev(c->fd, iov, k);
    if (w < 0 && errno != EAGAIN && errno != EINTR) {
      kill_conn(c);
      return;
    }
    if (w < 0) w = 0;
  }
  size_t from_backlog = (size_t)w < backlog ? (size_t)w : backlog;
  c->out.off += from_backlog;
  size_t from_extra = (size_t)w - from_backlog;
  if (from_extra < extra_n) {
    if (c->out.len - c->out.off + extra_n - from_extra > BACKLOG_MAX ||
        append(&c->out, extra + from_extra, extra_n - from_extra)) {
      kill_conn(c); /* a slow consumer, or out of memory */
      return;
    }
  }
  if (c->out.off == c->out.len) {
    c->out.off = c->out.len = 0;
    if (c->state == ST_CLOSING) {
      kill_conn(c);
      return;
    }
    set_events(c, EPOLLIN);
  } else {
    set_events(c, EPOLLIN | EPOLLOUT);
  }
}

/* Queues one unmasked server frame to c's own backlog (control replies). */
static int queue_frame(bytes *b, unsigned opcode, const uint8_t *payload, size_t n) {
  uint8_t h[10];
  size_t hl = 2;
  h[0] = (uint8_t)(0x80 | opcode);
  if (n < 126) {
    h[1] = (uint8_t)n;
  } else if (n < 65536) {
    h[1] = 126;
    h[2] = (uint8_t)(n >> 8);
    h[3] = (uint8_t)n;
    hl = 4;
  } else {
    h[1] = 127;
    for (int i = 0; i < 8; i++) h[2 + i] = (uint8_t)((uint64_t)n >> (56 - 8 * i));
    hl = 10;
  }
  if (append(b, h, hl)) return -1;
  return payload && n ? append(b, payload, n) : 0;
}

static void unmask(uint8_t *dst, const uint8_t *src, size_t n, const uint8_t key[4]) {
  for (size_t i = 0; i < n; i++) dst[i] = src[i] ^ key[i & 3];
}

/* One complete frame from c: header h (hl bytes), payload p (masked). */
static int on_frame(conn *c, unsigned b0, const uint8_t key[4], const uint8_t *p, size_t n) {
  unsigned op = b0 & 0x0F;
  if ((b0 & 0x70) || !(b0 & 0x80)) return -1; /* RSV bits, fragments */
  if (op == 0x1 || op == 0x2) {
    if (c->state != ST_OPEN) return 0;
    /* Framed for the server side, unmasked straight into place. */
    size_t start = pub.len;
    if (queue_frame(&pub, op, NULL, n) || reserve(&pub, n)) return -1;
    unmask(pub.data + pub.len, p, n, key);
    pub.len += n;
    if (nframes == frames_cap) {
      size_t cap = frames_cap ? frames_cap * 2 : 64;
      published *f = realloc(frames, cap * sizeof *f);
      if (!f) return -1;
      frames = f;
      frames_cap = cap;
    }
    frames[nframes++] = (published){start, pub.len - start, c};
    c->published = 1;
    return 0;
  }
  uint8_t ctl[125];
  if (n > 125) return -1;
  unmask(ctl, p, n, key);
  if (op == 0x9) { /* ping: pong */
    if (c->state == ST_OPEN && queue_frame(&c->out, 0xA, ctl, n)) return -1;
    return 0;
  }
  if (op == 0xA) return 0;
  if (op == 0x8) { /* close: answered with the same code, then TCP closes */
    if (c->state == ST_OPEN) {
      if (queue_frame(&c->out, 0x8, ctl, n >= 2 ? 2 : 0)) return -1;
      c->state = ST_CLOSING;
      room_leave(c);
    }
    return 0;
  }
  return -1;
}

/* Parses the complete frames in p[0..len). Returns the bytes used (the
 * rest is an incomplete frame), or -1 when the connection must end. */
static long parse_frames(conn *c, const uint8_t *p, size_t len) {
  size_t used = 0;
  while (len - used >= 2 && c->state == ST_OPEN) {
    const uint8_t *h = p + used;
    size_t avail = len - used;
    if (!(h[1] & 0x80)) return -1; /* client frames are masked */
    uint64_t n = h[1] & 0x7F;
    size_t hl = 2;
    if (n == 126) {
      if (avail < 4) break;
      n = (uint64_t)h[2] << 8 | h[3];
      hl = 4;
    } else if (n == 127) {
      if (avail < 10) break;
      n = 0;
      for (int i = 0; i < 8; i++) n = n << 8 | h[2 + i];
      hl = 10;
    }
    if (n > FRAME_MAX) return -1;
    if (avail < hl + 4 + n) break;
    if (on_frame(c, h[0], h + hl, h + hl + 4, (size_t)n)) return -1;
    used += hl + 4 + (size_t)n;
  }
  return (long)used;
}

/* Bytes read on an open connection: parsed where they lie when nothing is
 * left over from before, else behind the leftover in c->in. 0, or -1. */
static int feed(conn *c, const uint8_t *p, size_t len) {
  bytes *b = &c->in;
  if (b->len > b->off) {
    if (append(b, p, len)) return -1;
    long used = parse_frames(c, b->data + b->off, b->len - b->off);
    if (used < 0) return -1;
    b->off += (size_t)used;
    if (b->off == b->len) b->off = b->len = 0;
    return 0;
  }
  long used = parse_frames(c, p, len);
  if (used < 0) return -1;
  return (size_t)used < len ? append(b, p + used, len - (size_t)used) : 0;
}

static const char *header(const char *head, const char *name, size_t *len) {
  size_t nl = strlen(name);
  for (const char *p = strstr(head, "\r\n"); p && p[2]; p = strstr(p + 2, "\r\n")) {
    const char *line = p + 2;
    if (strncasecmp(line, name, nl) || line[nl] != ':') continue;
    const char *v = line + nl + 1;
    while (*v == ' ' || *v == '\t') v++;
    const char *e = strstr(v, "\r\n");
    while (e > v && (e[-1] == ' ' || e[-1] == '\t')) e--;
    *len = (size_t)(e - v);
    return v;
  }
  return NULL;
}

/* The request head is c->in.data[0..head_len): answers it. */
static int upgrade(conn *c, size_t head_len) {
  char head[HEAD_MAX + 1];
  if (head_len > HEAD_MAX) return -1;
  memcpy(head, c->in.data, head_len);
  head[head_len] = 0;
  size_t klen;
  const char *key = header(head, "Sec-WebSocket-Key", &klen);
  int room_path = !strncmp(head, "GET /rooms/", 11) && head[11] && head[11] != ' ';
  if (!key || !klen || klen > 64 || !room_path) {
    static const char nf[] = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    if (append(&c->out, nf, sizeof nf - 1)) return -1;
    c->state = ST_CLOSING;
    return 0;
  }
  static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  char cat[64 + sizeof guid];
  memcpy(cat, key, klen);
  memcpy(cat + klen, guid, sizeof guid - 1);
  unsigned char sha[SHA_DIGEST_LENGTH];
  SHA1((const unsigned char *)cat, klen + sizeof guid - 1, sha);
  char accept[32];
  EVP_EncodeBlock((unsigned char *)accept, sha, SHA_DIGEST_LENGTH);
  char resp[256];
  int n = snprintf(resp, sizeof resp,
                   "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
                   accept);
  if (append(&c->out, resp, (size_t)n)) return -1;
  c->state = ST_OPEN;
  if (room_n == room_cap) {
    size_t cap = room_cap ? room_cap * 2 : 1024;
    conn **r = realloc(room, cap * sizeof *r);
    if (!r) return -1;
    room = r;
    room_cap = cap;
  }
  c->pos = room_n;
  room[room_n++] = c;
  c->in_room = 1;
  /* frames may follow the head in the same read */
  size_t rest = c->in.len - head_len;
  c->in.off = c->in.len = 0;
  if (!rest) return 0;
  uint8_t *tmp = malloc(rest); /* feed() may keep part of it in c->in */
  if (!tmp) return -1;
  memcpy(tmp, c->in.data + head_len, rest);
  int rc = feed(c, tmp, rest);
  free(tmp);
  return rc;
}

static uint8_t rbuf[READ_SIZE];

static void on_readable(conn *c) {
  ssize_t n = recv(c->fd, rbuf, sizeof rbuf, 0);
  if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
    kill_conn(c);
    return;
  }
  if (n < 0) return;
  int rc = 0;
  if (c->state == ST_HANDSHAKE) {
    size_t before = c->in.len;
    if (append(&c->in, rbuf, (size_t)n)) {
      kill_conn(c);
      return;
    }
    /* the blank line may straddle two reads */
    size_t from = before > 3 ? before - 3 : 0;
    uint8_t *end = memmem(c->in.data + from, c->in.len - from, "\r\n\r\n", 4);
    if (end) rc = upgrade(c, (size_t)(end + 4 - c->in.data));
    else if (c->in.len > HEAD_MAX) rc = -1;
  } else if (c->state == ST_OPEN) {
    rc = feed(c, rbuf, (size_t)n);
  } /* closing: input is dropped */
  if (rc) {
    kill_conn(c);
    return;
  }
  if (c->out.len > c->out.off) write_out(c, NULL, 0); /* replies of its own */
}

/* End of the iteration: every member gets the frames published in it, in
 * one write. Downwards, so a member that leaves (swapped with the last)
 * has been served already. */
static void fan_out(void) {
  if (!nframes) return;
  for (size_t i = room_n; i-- > 0;) {
    conn *c = room[i];
    if (!c->published) {
      write_out(c, pub.data, pub.len);
      continue;
    }
    /* It published too: everyone else's frames, copied. */
    c->published = 0;
    int bad = 0;
    for (size_t f = 0; f < nframes && !bad; f++)
      if (frames[f].from != c) bad = append(&c->out, pub.data + frames[f].off, frames[f].len);
    if (bad) kill_conn(c);
    else write_out(c, NULL, 0);
  }
  for (size_t f = 0; f < nframes; f++) frames[f].from->published = 0;
  nframes = 0;
  pub.off = pub.len = 0;
  if (pub.cap > (16u << 20)) { /* one huge burst: give the memory back */
    free(pub.data);
    pub = (bytes){0};
  }
}

int main(int argc, char **argv) {
  int port = argc > 1 ? atoi(argv[1]) : 8083;
  const char *host = argc > 2 ? argv[2] : "127.0.0.1";
  signal(SIGPIPE, SIG_IGN);
  int lfd = raw_listen(port, host, "usage: raw_fanout [PORT] [IPV4-HOST]");
  ep = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL};
  epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev);

  struct epoll_event evs[512];
  for (;;) {
    int n = epoll_wait(ep, evs, 512, -1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      perror("raw_fanout: epoll_wait");
      return 1;
    }
    for (int i = 0; i < n; i++) {
      conn *c = evs[i].data.ptr;
      if (!c) { /* the listener: accept everything queued */
        for (;;) {
          int fd = raw_accept(lfd);
          if (fd < 0) break;
          conn *nc = calloc(1, sizeof *nc);
          if (!nc) {
            close(fd);
            continue;
          }
          nc->fd = fd;
          nc->events = EPOLLIN;
          struct epoll_event ev = {.events = EPOLLIN, .data.ptr = nc};
          epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
        }
        continue;
      }
      if (c->dead) continue;
      if (evs[i].events & EPOLLOUT) write_out(c, NULL, 0);
      if (!c->dead && (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) on_readable(c);
    }
    fan_out();
    bury();
  }
}
