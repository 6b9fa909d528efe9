/*
 * soak — many WebSocket clients that keep connecting, talking and ending,
 * for bench/soak.sh (churn) and bench/idle_cpu.sh (idle heartbeats).
 *
 * It speaks RFC 6455 itself over plain non-blocking sockets (frames built
 * and parsed with duplex's codec, src/proto/frame.h), so that it decides
 * exactly how each connection ends and knows what the server must have
 * seen. Each connection draws a plan when it starts:
 *   clean     close frame 1000, the server's close frame, the server's TCP
 *             close: the server must report "closed by peer";
 *   rst       TCP reset (SO_LINGER 0) with no close frame;
 *   fin       TCP close with no close frame (both: "transport close" or
 *             "transport error");
 *   silent    stops sending anything, pongs included: the server's heartbeat
 *             must end it ("ping timeout") within interval + timeout;
 *   proto     an unmasked frame: the server must answer close 1002
 *             ("protocol error");
 *   hs_abort  cut (reset or close) before the upgrade request is complete:
 *             the server must report neither an open nor a close.
 * While open, a connection answers the server's pings and sends messages
 * (some fragmented, with a ping in between) whose echoes are checked byte
 * for byte and in order. After each end it reconnects after 0-500 ms.
 *
 * --hostile H makes the first H connections hostile, in turn (slot % 4),
 * each with its own request path so the server's "open:" lines tell them
 * apart; every time, they stay with their plan:
 *   flood     upgrades with a small SO_RCVBUF, then sends 125-byte pings as
 *             fast as the socket takes them and never reads: the server has
 *             to stop reading at its output high-water mark and end it
 *             ("ping timeout", or the slow-consumer policy);
 *   blocked   upgrades with a small SO_RCVBUF, never reads, sends 4000-byte
 *             binary messages until the server holds about --blocked-kib of
 *             echoes in its own (user-space) output queue, then a close
 *             frame 1000 "blocked" and nothing more: the server must end it
 *             within its close timeout although its output never drains;
 *   halfopen  upgrades, then neither reads nor writes and keeps the socket
 *             (a peer that vanished without a FIN): "ping timeout";
 *   slowloris sends its upgrade request one byte every 500 ms: the server
 *             must drop it at its handshake timeout, logging nothing.
 * A hostile connection never reads, so the server's end may not reach it
 * (a FIN queued behind data it will not read); soak watches the server's
 * side of each one with sock_diag (NETLINK_SOCK_DIAG, an exact lookup every
 * 50 ms): once the server no longer holds it (gone, or orphaned: no inode)
 * or a FIN or reset arrives, the lifetime is taken, checked against the
 * plan's bound, and the socket is reset.
 *
 * --idle instead opens N connections, answers pings and does nothing else;
 * with --pid it measures the server's CPU time (utime + stime from
 * /proc/PID/stat) over --window seconds once all are open and settled.
 *
 * One key=value line goes to stdout at the end; progress and errors go to
 * stderr. Exit status 0 when nothing unexpected happened, 1 otherwise, 2 on
 * a usage error.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* getrandom */
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <dirent.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bench_stats.h" /* src/cli: CPU time of the server and of soak */
#include "proto/frame.h"

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24 /* Linux 4.2; older libc headers lack it */
#endif

#define BUF 4096     /* per-connection input, output and reassembly buffers */
#define MAX_MSG 1500 /* largest message sent; its echo always fits BUF */
#define MAX_SOURCES 250

/* ------------------------------------------------------------------ */
/* Options                                                             */
/* ------------------------------------------------------------------ */

static struct {
  const char *host;
  int port;
  int conns;
  double seconds;
  int idle;
  long pid;
  double settle, window;
  double spread;          /* idle: open the connections evenly over this */
  int min_life, max_life; /* ms an open connection lives (churn mode) */
  int max_wait;           /* ms before reconnecting */
  int burst;              /* handshakes in progress at once, at most */
  int sources;            /* 127.0.0.1 .. 127.0.0.N */
  int ping_interval, ping_timeout; /* the server's, in ms: bounds "silent" */
  int close_timeout, hs_timeout;   /* the server's, in ms: bound the hostile */
  int hostile;                     /* the first H connections are hostile */
  int hplan[16], nhplans;          /* their plans, in turn (slot % nhplans) */
  int blocked_kib;                 /* blocked: echoes to leave in the server */
  unsigned long seed;
} opt = {
    .host = "127.0.0.1",
    .port = 8080,
    .conns = 200,
    .seconds = 60,
    .settle = 5,
    .window = 60,
    .min_life = 500,
    .max_life = 5000,
    .max_wait = 500,
    .burst = 64,
    .sources = 1,
    .ping_interval = 1000,
    .ping_timeout = 1000,
    .close_timeout = 5000,
    .hs_timeout = 10000,
    .blocked_kib = 256,
};

static void usage(void) {
  fprintf(stderr,
          "usage: soak --port P [--host 127.0.0.1] [--conns N] [--seconds T]\n"
          "            [--life MIN_MS MAX_MS] [--max-wait MS] [--burst B]\n"
          "            [--sources K] [--ping INTERVAL_MS TIMEOUT_MS] [--seed S]\n"
          "            [--hostile H] [--close-timeout MS] [--handshake-timeout MS]\n"
          "            [--blocked-kib K] [--hostile-plans flood,blocked,halfopen,slowloris]\n"
          "       soak --idle --port P --conns N [--pid SERVERPID] [--settle S]\n"
          "            [--window S] [--spread S] [--burst B] [--sources K]\n"
          "Churn mode (default) runs T seconds, then closes everything cleanly.\n"
          "--ping gives the server's heartbeat settings (default 1000 1000), so a\n"
          "silent connection is known to be overdue. --sources spreads client\n"
          "sockets over 127.0.0.1..127.0.0.K (grown on its own when ports run out).\n"
          "--spread S (idle) opens the connections evenly over S seconds, so their\n"
          "heartbeats are spread evenly too, as with clients that come and go.\n"
          "--hostile H: the first H connections are hostile (flood, blocked,\n"
          "halfopen, slowloris in turn); the server's close timeout (5000) and\n"
          "handshake timeout (10000) bound how long they may live.\n");
}

/* ------------------------------------------------------------------ */
/* Time, randomness, errors                                            */
/* ------------------------------------------------------------------ */

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint64_t rng_state;
static uint64_t rng64(void) { /* xorshift64* */
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return rng_state * 0x2545F4914F6CDD1Dull;
}
/* Uniform in [lo, hi]. */
static uint64_t rng_range(uint64_t lo, uint64_t hi) {
  return hi <= lo ? lo : lo + rng64() % (hi - lo + 1);
}

static void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("soak: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  exit(2);
}

/* ------------------------------------------------------------------ */
/* Connections                                                         */
/* ------------------------------------------------------------------ */

enum plan {
  P_CLEAN, P_RST, P_FIN, P_SILENT, P_PROTO, P_ABORT, /* drawn at random */
  P_FLOOD, P_BLOCKED, P_HALFOPEN, P_LORIS,            /* hostile slots */
  P_NPLANS
};
#define P_FIRST_HOSTILE P_FLOOD
#define N_RANDOM P_FIRST_HOSTILE
static const char *const plan_name[P_NPLANS] = {
    "clean", "rst", "fin", "silent", "proto", "hs_abort",
    "flood", "blocked", "halfopen", "slowloris"};
/* Percent of the random connection attempts that draw each plan. */
static const int plan_weight[N_RANDOM] = {40, 17, 15, 10, 8, 10};
static int is_hostile(enum plan p) { return p >= P_FIRST_HOSTILE; }

/* How a hostile connection was seen to end. */
enum { H_RST, H_EOF, H_ORPHAN, H_NHOW };
static const char *const how_name[H_NHOW] = {"rst", "eof", "orphan"};

enum state {
  S_FREE,       /* done for good (shutting down) */
  S_WAIT,       /* no socket; (re)connects at `due` */
  S_CONNECTING, /* TCP connect in progress */
  S_UPGRADING,  /* request sent (or, for hs_abort, part of it) */
  S_OPEN,       /* upgraded; ends by its plan at `due` */
  S_CLOSING,    /* clean/proto: waiting for the close frame, then TCP close */
  S_SILENT,     /* silent: waiting for the server to cut us */
  S_HOSTILE     /* flood/blocked/halfopen, upgraded: until the server ends it */
};

typedef struct conn {
  int fd;
  enum state state;
  enum plan plan;
  unsigned idx, gen;   /* gen: attempt number, so contents differ per attempt */
  uint64_t due;        /* when the state's next step (or deadline) is */
  uint64_t msg_due;    /* OPEN: the next message or ping */
  uint32_t sent, echoed;
  int ping_out;        /* our ping awaits its pong */
  uint32_t ping_id;
  int got_close, close_code;
  uint32_t events;     /* registered with epoll; 0 = not registered */
  size_t in_len, out_len, msg_len;
  int msg_op;          /* opcode of the message being reassembled, or 0 */
  /* hostile plans */
  uint64_t t0;         /* when the plan's bound starts counting */
  uint64_t next_diag;  /* the next look at the server's side */
  uint64_t hsent;      /* bytes handed to the kernel (slowloris: request bytes) */
  uint64_t goal;       /* blocked: bytes of frames to send this round */
  uint64_t queued;     /* blocked: bytes of frames queued so far */
  uint64_t est_user;   /* blocked: the server's user-space queue, estimated */
  int hphase;          /* blocked: 0 stuffing, 1 close wanted, 2 close queued,
                          3 close sent */
  int seen_held;       /* sock_diag saw the server hold the socket */
  uint16_t lport;      /* our address (network order), for sock_diag */
  uint32_t laddr;
  uint8_t in[BUF], out[BUF], msg[BUF];
} conn;

static struct {
  int ep;
  conn *c;
  uint64_t start;
  int stopping;
  int handshaking; /* connections in S_CONNECTING or S_UPGRADING */
  int open_now, max_open;
  /* what the client saw and did */
  uint64_t attempts, opens, closes, ended[P_NPLANS], unexpected;
  uint64_t msgs, echoes, pings_rx, pings_tx, pongs_rx, addr_retries;
  uint64_t errors;
  /* hostile plans, by plan */
  int diag;                               /* NETLINK_SOCK_DIAG socket */
  uint32_t srv_addr;                      /* the server's address (network order) */
  uint64_t h_opens[P_NPLANS], h_how[P_NPLANS][H_NHOW];
  uint64_t h_max_ms[P_NPLANS], h_sum_ms[P_NPLANS], h_bytes[P_NPLANS];
  uint64_t blocked_early;                 /* ended before its close frame left */
  uint64_t blocked_user_min, blocked_user_max; /* est_user at the close frame */
  uint64_t loris_rx;                      /* bytes the server sent a slowloris */
  uint64_t diag_errors;
} G;

static volatile sig_atomic_t signalled;
static void on_signal(int sig) {
  (void)sig;
  signalled = 1;
}

static const char request_fmt[] =
    "GET %s HTTP/1.1\r\n"
    "Host: %s:%d\r\n"
    "Upgrade: websocket\r\n"
    "Connection: Upgrade\r\n"
    /* The sample nonce of RFC 6455 §1.3; its accept value is below. */
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Version: 13\r\n"
    "\r\n";
static const char expected_accept[] = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
/* The random plans ask for /soak, each hostile one for /soak/NAME. */
static char request[P_NPLANS][512];
static size_t request_len[P_NPLANS];

static void conn_error(conn *c, const char *fmt, ...) {
  G.errors++;
  if (G.errors > 20) return;
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "soak: conn %u (%s, t=%.1fs): ", c->idx, plan_name[c->plan],
          (double)(now_ms() - G.start) / 1000);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  if (G.errors == 20) fprintf(stderr, "soak: (further errors are only counted)\n");
}

static void set_events(conn *c, uint32_t ev) {
  if (c->events == ev) return;
  struct epoll_event e = {.events = ev, .data.ptr = c};
  if (epoll_ctl(G.ep, c->events ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, c->fd, &e) < 0)
    die("epoll_ctl: %s", strerror(errno));
  c->events = ev;
}

/* Closes the socket, with a reset instead of a FIN when `rst`. */
static void drop_socket(conn *c, int rst) {
  if (c->fd < 0) return;
  if (rst) {
    struct linger lg = {1, 0};
    setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  }
  close(c->fd); /* also leaves the epoll set */
  c->fd = -1;
  c->events = 0;
}

/* The connection is over: `expected` says whether it ended the way its plan
 * said (counted under the plan) or not (counted as unexpected). */
static void conn_end(conn *c, int expected, int rst) {
  int was_open = c->state == S_OPEN || c->state == S_CLOSING || c->state == S_SILENT ||
                 c->state == S_HOSTILE;
  if (c->state == S_CONNECTING || c->state == S_UPGRADING) G.handshaking--;
  drop_socket(c, rst);
  if (was_open) {
    G.closes++;
    G.open_now--;
  }
  if (expected)
    G.ended[c->plan]++;
  else if (was_open)
    G.unexpected++;
  c->state = G.stopping ? S_FREE : S_WAIT;
  c->due = now_ms() + rng_range(0, (uint64_t)opt.max_wait);
  c->in_len = c->out_len = c->msg_len = 0;
  c->msg_op = 0;
}

static void flush(conn *c) {
  while (c->out_len) {
    ssize_t n = send(c->fd, c->out, c->out_len, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) break;
      return; /* the read side reports the reset or close */
    }
    memmove(c->out, c->out + n, c->out_len - (size_t)n);
    c->out_len -= (size_t)n;
  }
  set_events(c, EPOLLIN | (c->out_len ? EPOLLOUT : 0));
}

/* Queues one frame, masked unless `unmasked` (the proto plan's offence).
 * Returns 0, or -1 when the output buffer is too full. */
static int queue_frame(conn *c, int fin, unsigned op, const void *data, size_t len,
                       int unmasked) {
  if (c->out_len + DX__FRAME_MAX_HEADER + len > BUF) return -1;
  uint8_t key[4];
  uint32_t k = (uint32_t)rng64();
  memcpy(key, &k, 4);
  uint8_t *p = c->out + c->out_len;
  size_t h = dx__frame_write_header(p, fin, 0, op, unmasked ? NULL : key, len);
  if (unmasked)
    memcpy(p + h, data, len);
  else
    dx__mask_copy(p + h, data, len, key, 0);
  c->out_len += h + len;
  return 0;
}

/* A close frame with `code` and the reason "bye" ("blocked" for that plan,
 * so the server's close lines tell them apart). */
static void queue_close(conn *c, int code) {
  const char *why = c->plan == P_BLOCKED ? "blocked" : "bye";
  uint8_t body[16] = {(uint8_t)(code >> 8), (uint8_t)code};
  size_t n = strlen(why);
  memcpy(body + 2, why, n);
  if (queue_frame(c, 1, DX__OP_CLOSE, body, 2 + n, 0) != 0)
    conn_error(c, "no room for a close frame");
}

/* Message `seq` of this connection attempt, reproducible so the echo can be
 * checked without keeping a copy: "idx/gen/seq " then letters. Most are
 * short; one in eight is up to MAX_MSG bytes. */
static size_t make_msg(const conn *c, uint32_t seq, uint8_t *out) {
  uint64_t h = ((uint64_t)c->idx << 40) ^ ((uint64_t)c->gen << 20) ^ seq;
  h = (h ^ (h >> 31)) * 0x9E3779B97F4A7C15ull;
  h ^= h >> 29;
  size_t len = (h & 7) == 0 ? (size_t)(h >> 8) % (MAX_MSG + 1) : (size_t)(h >> 8) % 64;
  int n = snprintf((char *)out, 40, "%u/%u/%u ", c->idx, c->gen, seq);
  if (len < (size_t)n) len = (size_t)n;
  for (size_t i = (size_t)n; i < len; i++) out[i] = (uint8_t)('a' + (h + i) % 26);
  return len;
}

/* Sends the next message (sometimes in two fragments around a ping of
 * ours) or a ping. */
static void send_traffic(conn *c) {
  if (c->out_len) return; /* the socket is behind; try again later */
  if (!c->ping_out && rng64() % 8 == 0) {
    uint8_t id[4];
    c->ping_id = (uint32_t)rng64();
    memcpy(id, &c->ping_id, 4);
    queue_frame(c, 1, DX__OP_PING, id, 4, 0);
    c->ping_out = 1;
    G.pings_tx++;
    return;
  }
  uint8_t m[MAX_MSG + 64];
  size_t len = make_msg(c, c->sent, m);
  if (len >= 2 && rng64() % 8 == 0) {
    size_t cut = (size_t)rng_range(1, len - 1);
    queue_frame(c, 0, DX__OP_TEXT, m, cut, 0);
    if (!c->ping_out) { /* control frames may come between fragments */
      uint8_t id[4];
      c->ping_id = (uint32_t)rng64();
      memcpy(id, &c->ping_id, 4);
      queue_frame(c, 1, DX__OP_PING, id, 4, 0);
      c->ping_out = 1;
      G.pings_tx++;
    }
    queue_frame(c, 1, DX__OP_CONT, m + cut, len - cut, 0);
  } else {
    queue_frame(c, 1, DX__OP_TEXT, m, len, 0);
  }
  c->sent++;
  G.msgs++;
}

/* ------------------------------------------------------------------ */
/* Hostile plans                                                       */
/* ------------------------------------------------------------------ */

/* The server's side of c, by an exact sock_diag lookup (its local address
 * is the server's, its peer ours). Returns 1 while the server holds the
 * socket (it has an inode: a descriptor refers to it), 0 once it is gone
 * or orphaned (closed, its FIN or data maybe still queued), -1 on error.
 * *rq and *wq get its unread input and its unacknowledged output. */
static int diag_server(const conn *c, uint32_t *rq, uint32_t *wq) {
  static uint32_t seq;
  struct {
    struct nlmsghdr nlh;
    struct inet_diag_req_v2 r;
  } req;
  memset(&req, 0, sizeof req);
  req.nlh.nlmsg_len = sizeof req;
  req.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  req.nlh.nlmsg_flags = NLM_F_REQUEST;
  req.nlh.nlmsg_seq = ++seq;
  req.r.sdiag_family = AF_INET;
  req.r.sdiag_protocol = IPPROTO_TCP;
  req.r.idiag_states = ~0u;
  req.r.id.idiag_sport = htons((uint16_t)opt.port);
  req.r.id.idiag_dport = c->lport;
  req.r.id.idiag_src[0] = G.srv_addr;
  req.r.id.idiag_dst[0] = c->laddr;
  req.r.id.idiag_cookie[0] = req.r.id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;
  if (send(G.diag, &req, sizeof req, 0) != (ssize_t)sizeof req) return -1;
  for (;;) {
    union {
      struct nlmsghdr h;
      char b[4096];
    } buf;
    ssize_t n = recv(G.diag, &buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < (ssize_t)sizeof(struct nlmsghdr)) return -1;
    struct nlmsghdr *h = &buf.h;
    if (h->nlmsg_seq != seq) continue; /* a stale answer */
    if (h->nlmsg_type == NLMSG_ERROR) {
      const struct nlmsgerr *e = NLMSG_DATA(h);
      return e->error == -ENOENT ? 0 : -1;
    }
    if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY) return -1;
    const struct inet_diag_msg *m = NLMSG_DATA(h);
    /* The lookup falls back to the listening socket once ours is gone. */
    if (m->idiag_state == 10 /* TCP_LISTEN */ || m->id.idiag_dport != c->lport) return 0;
    *rq = m->idiag_rqueue;
    *wq = m->idiag_wqueue;
    return m->idiag_inode != 0;
  }
}

/* The longest the server may take to end a hostile connection, in ms from
 * c->t0 (see each plan). The heartbeat's deadlines are rounded up by at
 * most 500 ms; deferred accept adds about 1 s to a handshake. */
static uint64_t hostile_bound(const conn *c) {
  uint64_t pi = (uint64_t)opt.ping_interval, pt = (uint64_t)opt.ping_timeout;
  switch (c->plan) {
    case P_FLOOD: /* from the upgrade: the queue fills, then a ping goes
                     unanswered (at worst the one after next) */
      return 2 * pi + pt + 2000;
    case P_BLOCKED: /* from the close frame; before it, like a flood */
      return c->hphase == 3 ? (uint64_t)opt.close_timeout + 1000 : 2 * pi + pt + 2000 + 10000;
    case P_HALFOPEN: /* from the upgrade, like "silent" */
      return pi + pt + 1000;
    case P_LORIS: /* from the first byte */
      return (uint64_t)opt.hs_timeout + 1000 + 1000;
    default:
      return 0;
  }
}

/* A hostile connection is over (the server's end seen as `how`). */
static void hostile_end(conn *c, int how, uint64_t now) {
  uint64_t life = now - c->t0;
  if (c->plan == P_BLOCKED && c->hphase != 3) {
    G.blocked_early++;
    if (G.blocked_early <= 5)
      fprintf(stderr, "soak: conn %u (blocked): ended before its close frame left (%s, %llu ms, "
              "%llu KiB sent)\n", c->idx, how_name[how], (unsigned long long)life,
              (unsigned long long)(c->hsent >> 10));
  }
  if (life > hostile_bound(c)) {
    conn_error(c, "the server took %llu ms to end it (bound %llu ms)", (unsigned long long)life,
               (unsigned long long)hostile_bound(c));
  }
  G.h_how[c->plan][how]++;
  G.h_sum_ms[c->plan] += life;
  if (life > G.h_max_ms[c->plan]) G.h_max_ms[c->plan] = life;
  G.h_bytes[c->plan] += c->hsent;
  conn_end(c, 1, 1); /* a reset also frees an orphan the server left */
}

/* Whether a FIN or reset already reached c, without reading. */
static int hostile_seen(conn *c) {
  struct pollfd p = {.fd = c->fd, .events = POLLRDHUP};
  if (poll(&p, 1, 0) <= 0) return -1;
  int err = 0;
  socklen_t len = sizeof err;
  getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
  if (err || (p.revents & POLLERR)) return H_RST;
  if (p.revents & (POLLRDHUP | POLLHUP)) return H_EOF;
  return -1;
}

static void hostile_events(conn *c) {
  uint32_t ev = EPOLLRDHUP;
  if (c->plan == P_LORIS) ev |= EPOLLIN;
  if (c->plan == P_FLOOD || c->out_len || (c->plan == P_BLOCKED && c->hphase < 3 &&
                                           (c->queued < c->goal || c->hphase == 1)))
    ev |= EPOLLOUT;
  set_events(c, ev);
}

/* Sends what the plan sends, as far as the socket takes it (at most 256 KiB
 * per call, so no connection hogs the loop). */
static void hostile_pump(conn *c) {
  static const uint8_t zeros[4000];
  uint8_t ping[125];
  size_t budget = 256 * 1024;
  for (;;) {
    if (!c->out_len) {
      if (c->plan == P_FLOOD) {
        memset(ping, 'p', sizeof ping);
        while (c->out_len + DX__FRAME_MAX_HEADER + sizeof ping <= BUF)
          queue_frame(c, 1, DX__OP_PING, ping, sizeof ping, 0);
      } else if (c->plan == P_BLOCKED && c->queued < c->goal) {
        queue_frame(c, 1, DX__OP_BINARY, zeros, sizeof zeros, 0);
        c->queued += c->out_len;
      } else if (c->plan == P_BLOCKED && c->hphase == 1) {
        queue_close(c, 1000);
        c->hphase = 2;
      } else {
        break;
      }
    }
    if (!budget) break;
    ssize_t n = send(c->fd, c->out, c->out_len, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      break; /* EAGAIN; or a reset, which epoll reports */
    }
    memmove(c->out, c->out + n, c->out_len - (size_t)n);
    c->out_len -= (size_t)n;
    c->hsent += (uint64_t)n;
    budget = (size_t)n >= budget ? 0 : budget - (size_t)n;
  }
  if (c->plan == P_BLOCKED && c->hphase == 2 && !c->out_len) {
    /* The close frame is in the kernel: the close timeout counts now. */
    c->hphase = 3;
    c->t0 = now_ms();
    c->due = c->t0 + hostile_bound(c);
    if (!G.blocked_user_min || c->est_user < G.blocked_user_min) G.blocked_user_min = c->est_user;
    if (c->est_user > G.blocked_user_max) G.blocked_user_max = c->est_user;
  }
  hostile_events(c);
}

/* Every 50 ms: has the server let go of c? A blocked connection still
 * stuffing decides here whether the server holds enough echoes of its own
 * (what it read, less what its kernel and ours hold) to send its close. */
static void hostile_poll(conn *c, uint64_t now) {
  c->next_diag = now + 50;
  uint32_t rq = 0, wq = 0;
  int held = diag_server(c, &rq, &wq);
  if (held < 0) {
    G.diag_errors++;
    return;
  }
  if (held) {
    c->seen_held = 1;
  } else if (c->seen_held) {
    int how = hostile_seen(c);
    hostile_end(c, how < 0 ? H_ORPHAN : how, now);
    return;
  }
  if (c->plan == P_BLOCKED && c->hphase == 0 && held && c->queued >= c->goal && !c->out_len) {
    /* Decide once this round has settled: all of it sent, acknowledged
     * and read by the server. */
    int ours_out = 0, ours_in = 0;
    ioctl(c->fd, SIOCOUTQ, &ours_out);
    ioctl(c->fd, FIONREAD, &ours_in);
    if (ours_out || rq) return;
    /* Its echo frames are 4 bytes shorter (no mask key) per 4008. What
     * its kernel holds (wq) and ours (ours_in) is not in its own queue. */
    uint64_t echoed = c->hsent / 4008 * 4004;
    uint64_t elsewhere = (uint64_t)wq + (uint64_t)ours_in;
    c->est_user = echoed > elsewhere ? echoed - elsewhere : 0;
    if (c->est_user >= (uint64_t)opt.blocked_kib * 1024) {
      c->hphase = 1;
    } else if (c->hsent > ((uint64_t)64 << 20)) {
      conn_error(c, "64 MiB sent and the server holds only %llu KiB of echoes",
                 (unsigned long long)(c->est_user >> 10));
      conn_end(c, 0, 1);
      return;
    } else {
      /* The server's kernel takes the first few MiB (its send buffer
       * grows to tcp_wmem's maximum); a round of blocked_kib overshoots
       * the goal by at most that, well under the 1 MiB at which the
       * server would stop reading (and never see the close frame). */
      c->goal += (uint64_t)opt.blocked_kib * 1024;
    }
    hostile_pump(c);
  }
}

/* epoll on a hostile connection: a FIN or reset (nothing is read), room to
 * send, or (slowloris) input. */
static void on_hostile_event(conn *c, uint32_t ev) {
  uint64_t now = now_ms();
  if (c->plan == P_LORIS && (ev & EPOLLIN)) {
    uint8_t b[512];
    ssize_t n = recv(c->fd, b, sizeof b, 0);
    if (n > 0) {
      if (!G.loris_rx) conn_error(c, "the server answered a partial request: %.*s", (int)n, b);
      G.loris_rx += (uint64_t)n;
      return;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    hostile_end(c, n < 0 ? H_RST : H_EOF, now);
    return;
  }
  if (ev & (EPOLLERR | EPOLLHUP | EPOLLRDHUP)) {
    int how = hostile_seen(c);
    hostile_end(c, how < 0 ? H_EOF : how, now);
    return;
  }
  if (ev & EPOLLOUT) hostile_pump(c);
}

/* Upgraded: the hostile plan starts. */
static void hostile_upgraded(conn *c, uint64_t now) {
  G.h_opens[c->plan]++;
  c->state = S_HOSTILE;
  c->in_len = 0; /* never read again */
  c->t0 = now;
  c->next_diag = now; /* look at once: the server holds it now */
  c->hsent = c->queued = c->est_user = 0;
  c->goal = c->plan == P_BLOCKED ? (uint64_t)opt.blocked_kib * 1024 : 0;
  c->hphase = 0;
  c->due = now + hostile_bound(c);
  hostile_pump(c);
}

/* Slowloris: connected; the request leaves one byte every 500 ms. */
static void loris_step(conn *c, uint64_t now) {
  if (c->hsent >= request_len[P_LORIS]) {
    conn_error(c, "the whole request went out a byte at a time and was not refused");
    conn_end(c, 0, 1);
    return;
  }
  ssize_t n = send(c->fd, request[P_LORIS] + c->hsent, 1, MSG_NOSIGNAL);
  if (n == 1) c->hsent++;
  else if (n < 0 && errno != EAGAIN && errno != EINTR) {
    hostile_end(c, H_RST, now);
    return;
  }
  c->msg_due = now + 500;
}

static void begin_close(conn *c);

static void on_upgraded(conn *c) {
  c->state = S_OPEN;
  G.handshaking--;
  G.opens++;
  if (++G.open_now > G.max_open) G.max_open = G.open_now;
  uint64_t now = now_ms();
  if (is_hostile(c->plan)) {
    hostile_upgraded(c, now);
    return;
  }
  c->due = opt.idle ? UINT64_MAX : now + rng_range((uint64_t)opt.min_life, (uint64_t)opt.max_life);
  c->msg_due = now + rng_range(50, 1000);
  if (G.stopping) begin_close(c);
}

/* The plan's end, when an open connection's life is over. */
static void end_by_plan(conn *c) {
  switch (c->plan) {
    case P_CLEAN:
      begin_close(c);
      break;
    case P_RST:
    case P_FIN:
      conn_end(c, 1, c->plan == P_RST);
      break;
    case P_SILENT:
      /* From here on nothing is sent. The server pings within an interval
       * and gives up a timeout later; allow a second of slack. */
      c->state = S_SILENT;
      c->out_len = 0;
      c->due = now_ms() + (uint64_t)opt.ping_interval + (uint64_t)opt.ping_timeout + 1000;
      break;
    case P_PROTO: {
      /* Client frames must be masked (RFC 6455 §5.1): the server has to
       * fail the connection with 1002. */
      static const char x[] = "unmasked";
      queue_frame(c, 1, DX__OP_TEXT, x, sizeof x - 1, 1);
      flush(c);
      c->state = S_CLOSING;
      c->got_close = 0;
      c->due = now_ms() + 5000;
      break;
    }
    default:
      conn_error(c, "no end for this plan");
      conn_end(c, 0, 0);
  }
}

/* Starts the closing handshake (clean plan, or everyone when stopping). */
static void begin_close(conn *c) {
  c->plan = P_CLEAN;
  queue_close(c, 1000);
  flush(c);
  c->state = S_CLOSING;
  c->got_close = 0;
  c->due = now_ms() + 5000;
}

static void check_echo(conn *c, int op, const uint8_t *p, size_t len) {
  uint8_t want[MAX_MSG + 64];
  if (op != DX__OP_TEXT) {
    conn_error(c, "echo came back with opcode %d", op);
    return;
  }
  if (c->echoed >= c->sent) {
    conn_error(c, "a message nobody sent (%zu bytes)", len);
    return;
  }
  size_t wlen = make_msg(c, c->echoed, want);
  if (wlen != len || memcmp(want, p, len) != 0) {
    conn_error(c, "echo %u differs (%zu bytes, expected %zu)", c->echoed, len, wlen);
    c->echoed = c->sent; /* one report per connection is enough */
    return;
  }
  c->echoed++;
  G.echoes++;
}

/* One complete frame from the server. Returns 0, or -1 when the connection
 * ended while handling it. */
static int on_frame(conn *c, const dx__frame_header *h, const uint8_t *p) {
  if (c->state == S_SILENT) return 0; /* hears nothing, says nothing */
  switch (h->opcode) {
    case DX__OP_PING:
      G.pings_rx++;
      if (c->state == S_OPEN && queue_frame(c, 1, DX__OP_PONG, p, (size_t)h->len, 0) != 0)
        conn_error(c, "no room for a pong");
      return 0;
    case DX__OP_PONG:
      if (c->ping_out && h->len == 4 && memcmp(p, &c->ping_id, 4) == 0) {
        c->ping_out = 0;
        G.pongs_rx++;
      } else {
        conn_error(c, "a pong that answers no ping of ours");
      }
      return 0;
    case DX__OP_TEXT:
    case DX__OP_BINARY:
      if (c->msg_op) {
        conn_error(c, "a new message inside a fragmented one");
        conn_end(c, 0, 1);
        return -1;
      }
      if (h->fin) {
        check_echo(c, h->opcode, p, (size_t)h->len);
        return 0;
      }
      /* The first fragment: appended like a continuation. */
      c->msg_op = h->opcode;
      c->msg_len = 0;
      /* fall through */
    case DX__OP_CONT:
      if (!c->msg_op || c->msg_len + h->len > BUF) {
        conn_error(c, "bad continuation frame");
        conn_end(c, 0, 1);
        return -1;
      }
      memcpy(c->msg + c->msg_len, p, (size_t)h->len);
      c->msg_len += (size_t)h->len;
      if (h->fin) {
        check_echo(c, c->msg_op, c->msg, c->msg_len);
        c->msg_op = 0;
      }
      return 0;
    case DX__OP_CLOSE: {
      int code = h->len >= 2 ? p[0] << 8 | p[1] : 1005;
      if (c->state != S_CLOSING) {
        conn_error(c, "the server closed an open connection (code %d)", code);
        conn_end(c, 0, 0);
        return -1;
      }
      c->got_close = 1;
      c->close_code = code;
      int want = c->plan == P_PROTO ? 1002 : 1000;
      if (code != want) conn_error(c, "close code %d, expected %d", code, want);
      /* The server echoes what it read before our close frame first. */
      if (c->plan == P_CLEAN && c->echoed != c->sent)
        conn_error(c, "%u echo(es) missing before the close frame", c->sent - c->echoed);
      if (c->plan == P_PROTO) { /* the server started it: answer it */
        queue_close(c, 1002);
        flush(c);
      }
      return 0;
    }
    default:
      conn_error(c, "opcode %u from the server", h->opcode);
      conn_end(c, 0, 1);
      return -1;
  }
}

/* Parses every complete frame in c->in. Returns -1 when the connection
 * ended. */
static int on_frames(conn *c) {
  size_t off = 0;
  for (;;) {
    dx__frame_header h;
    int r = dx__frame_parse_header(c->in + off, c->in_len - off, &h);
    if (r == 0) break;
    if (r < 0 || h.masked || h.rsv || h.len > BUF - DX__FRAME_MAX_HEADER) {
      conn_error(c, "malformed frame from the server");
      conn_end(c, 0, 1);
      return -1;
    }
    if (c->in_len - off < (size_t)r + h.len) break;
    if (on_frame(c, &h, c->in + off + r) < 0) return -1;
    off += (size_t)r + (size_t)h.len;
  }
  memmove(c->in, c->in + off, c->in_len - off);
  c->in_len -= off;
  if (c->out_len) flush(c);
  return 0;
}

/* The 101 response, once complete. Returns -1 when the connection ended. */
static int on_response(conn *c) {
  uint8_t *end = memmem(c->in, c->in_len, "\r\n\r\n", 4);
  if (!end) {
    if (c->in_len == BUF) {
      conn_error(c, "response head too long");
      conn_end(c, 0, 1);
      return -1;
    }
    return 0;
  }
  size_t head = (size_t)(end - c->in) + 4;
  char *h = (char *)c->in;
  h[head - 1] = '\0'; /* the last \n of the head; frames start after it */
  int ok = strncmp(h, "HTTP/1.1 101 ", 13) == 0;
  char *acc = ok ? strcasestr(h, "\r\nSec-WebSocket-Accept:") : NULL;
  if (acc) {
    acc += 23;
    acc += strspn(acc, " \t");
    ok = strncmp(acc, expected_accept, sizeof expected_accept - 1) == 0;
  } else {
    ok = 0;
  }
  if (!ok) {
    conn_error(c, "upgrade refused: %.40s", h);
    conn_end(c, 0, 1);
    return -1;
  }
  memmove(c->in, c->in + head, c->in_len - head);
  c->in_len -= head;
  on_upgraded(c);
  if (c->state != S_OPEN && c->state != S_CLOSING) return -1;
  return on_frames(c);
}

/* EOF or reset from the server. */
static void on_eof(conn *c, int err) {
  switch (c->state) {
    case S_CLOSING:
      if (!c->got_close) conn_error(c, "TCP closed (%s) before the close frame", err ? strerror(err) : "EOF");
      conn_end(c, c->got_close, 0);
      break;
    case S_SILENT:
      conn_end(c, 1, 0);
      break;
    case S_OPEN:
      conn_error(c, "the server cut an open connection (%s)", err ? strerror(err) : "EOF");
      conn_end(c, 0, 0);
      break;
    default:
      conn_error(c, "the server cut the connection during the handshake (%s)",
                 err ? strerror(err) : "EOF");
      conn_end(c, 0, 0);
  }
}

static void on_readable(conn *c) {
  if (c->in_len == BUF) { /* cannot happen: a whole frame always fits */
    conn_error(c, "input buffer full");
    conn_end(c, 0, 1);
    return;
  }
  ssize_t n = recv(c->fd, c->in + c->in_len, BUF - c->in_len, 0);
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
  if (n <= 0) {
    on_eof(c, n < 0 ? errno : 0);
    return;
  }
  c->in_len += (size_t)n;
  if (c->state == S_UPGRADING) {
    if (c->plan == P_ABORT) { /* nothing should come before the request is whole */
      conn_error(c, "the server answered a partial request");
      conn_end(c, 0, 1);
      return;
    }
    on_response(c);
  } else if (c->state == S_OPEN || c->state == S_CLOSING || c->state == S_SILENT) {
    on_frames(c);
  }
}

static enum plan draw_plan(const conn *c) {
  if (opt.idle) return P_CLEAN;
  if ((int)c->idx < opt.hostile) return (enum plan)opt.hplan[c->idx % (unsigned)opt.nhplans];
  int r = (int)(rng64() % 100);
  for (int p = 0; p < N_RANDOM; p++) {
    if (r < plan_weight[p]) return (enum plan)p;
    r -= plan_weight[p];
  }
  return P_CLEAN;
}

static void conn_start(conn *c) {
  c->gen++;
  c->plan = draw_plan(c);
  c->sent = c->echoed = 0;
  c->ping_out = c->got_close = 0;
  c->in_len = c->out_len = c->msg_len = 0;
  c->msg_op = 0;
  c->seen_held = 0;
  c->hsent = 0;
  c->hphase = 0;
  G.attempts++;
  c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
  if (c->fd < 0) die("socket: %s (raise ulimit -n)", strerror(errno));
  int one = 1;
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (c->plan == P_FLOOD || c->plan == P_BLOCKED) {
    /* Set before connect(), so the window we offer stays small: the
     * server's output backs up at once. The flooder's own send buffer is
     * kept small too, so what it has in flight stays bounded. */
    int rcv = 4096, snd = 65536;
    setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv);
    if (c->plan == P_FLOOD) setsockopt(c->fd, SOL_SOCKET, SO_SNDBUF, &snd, sizeof snd);
  }
  if (opt.sources > 1) {
    /* The port is picked at connect() time, per destination, so each
     * source address has the whole ephemeral range to itself. */
    setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    struct sockaddr_in src = {.sin_family = AF_INET};
    src.sin_addr.s_addr = htonl(0x7F000001u + (uint32_t)(G.attempts % (uint64_t)opt.sources));
    if (bind(c->fd, (struct sockaddr *)&src, sizeof src) < 0)
      die("bind to a 127.0.0.x source: %s", strerror(errno));
  }
  struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons((uint16_t)opt.port)};
  if (inet_pton(AF_INET, opt.host, &dst.sin_addr) != 1) die("--host must be an IPv4 address");
  if (connect(c->fd, (struct sockaddr *)&dst, sizeof dst) < 0 && errno != EINPROGRESS) {
    int e = errno;
    drop_socket(c, 0);
    if (e == EADDRNOTAVAIL && opt.sources < MAX_SOURCES) {
      /* Ephemeral ports ran out for this source: add another one. */
      opt.sources++;
      G.addr_retries++;
      if (G.addr_retries <= 5)
        fprintf(stderr, "soak: out of ports; now using %d source addresses\n", opt.sources);
      c->state = S_WAIT;
      c->due = now_ms() + 10;
      return;
    }
    G.errors++;
    fprintf(stderr, "soak: connect: %s\n", strerror(e));
    c->state = S_WAIT;
    c->due = now_ms() + 100;
    return;
  }
  c->state = S_CONNECTING;
  c->due = now_ms() + 10000;
  G.handshaking++;
  set_events(c, EPOLLOUT);
}

static void on_writable(conn *c) {
  if (c->state != S_CONNECTING) {
    flush(c);
    return;
  }
  int err = 0;
  socklen_t len = sizeof err;
  getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
  if (err) {
    conn_error(c, "connect: %s", strerror(err));
    conn_end(c, 0, 0);
    return;
  }
  struct sockaddr_in me;
  socklen_t mlen = sizeof me;
  if (getsockname(c->fd, (struct sockaddr *)&me, &mlen) == 0) {
    c->lport = me.sin_port;
    c->laddr = me.sin_addr.s_addr;
  }
  c->state = S_UPGRADING;
  if (c->plan == P_LORIS) {
    uint64_t now = now_ms();
    c->t0 = c->next_diag = now;
    c->hsent = 0;
    c->seen_held = 0;
    c->due = now + hostile_bound(c);
    hostile_events(c);
    loris_step(c, now);
    return;
  }
  if (c->plan == P_ABORT) {
    /* Part of the request (maybe none of it), then a cut soon after. */
    size_t part = (size_t)rng_range(0, request_len[P_ABORT] - 1);
    memcpy(c->out, request[P_ABORT], part);
    c->out_len = part;
    c->due = now_ms() + rng_range(0, 200);
  } else {
    memcpy(c->out, request[c->plan], request_len[c->plan]);
    c->out_len = request_len[c->plan];
    c->due = now_ms() + 10000;
  }
  flush(c);
}

/* Deadlines and the connections' own schedules. */
static void tick(uint64_t now) {
  for (int i = 0; i < opt.conns; i++) {
    conn *c = &G.c[i];
    int hostile_wait = c->state == S_HOSTILE || (c->state == S_UPGRADING && c->plan == P_LORIS);
    if (hostile_wait && c->next_diag <= now) {
      hostile_poll(c, now);
      if (c->state != S_HOSTILE && c->state != S_UPGRADING) continue;
    }
    if (c->state == S_UPGRADING && c->plan == P_LORIS && c->msg_due <= now) {
      loris_step(c, now);
      if (c->state != S_UPGRADING) continue;
    }
    if (c->due > now && !(c->state == S_OPEN && c->msg_due <= now)) continue;
    switch (c->state) {
      case S_FREE:
        break;
      case S_WAIT:
        if (G.stopping)
          c->state = S_FREE;
        else if (G.handshaking < opt.burst)
          conn_start(c);
        break;
      case S_CONNECTING:
        conn_error(c, "connect timed out");
        conn_end(c, 0, 1);
        break;
      case S_UPGRADING:
        if (c->plan == P_LORIS) {
          conn_error(c, "the server did not drop a slowloris handshake within %llu ms",
                     (unsigned long long)hostile_bound(c));
          conn_end(c, 0, 1);
        } else if (c->plan == P_ABORT) {
          G.handshaking--; /* conn_end would count it, but not as an error */
          c->state = S_WAIT;
          drop_socket(c, rng64() & 1);
          G.ended[P_ABORT]++;
          c->due = now + rng_range(0, (uint64_t)opt.max_wait);
          if (G.stopping) c->state = S_FREE;
        } else {
          conn_error(c, "no 101 within 10 s");
          conn_end(c, 0, 1);
        }
        break;
      case S_OPEN:
        if (c->due <= now) {
          end_by_plan(c);
        } else if (!opt.idle) {
          send_traffic(c);
          flush(c);
          c->msg_due = now + rng_range(100, 1000);
        } else {
          c->msg_due = UINT64_MAX;
        }
        break;
      case S_CLOSING:
        conn_error(c, "no close handshake within 5 s (close frame %s)",
                   c->got_close ? "received" : "missing");
        conn_end(c, 0, 1);
        break;
      case S_SILENT:
        conn_error(c, "the server did not end a silent connection within %d ms",
                   opt.ping_interval + opt.ping_timeout + 1000);
        conn_end(c, 0, 1);
        break;
      case S_HOSTILE:
        conn_error(c, "the server did not end it within %llu ms%s",
                   (unsigned long long)hostile_bound(c),
                   c->plan == P_BLOCKED && c->hphase != 3 ? " (still sending)" : "");
        conn_end(c, 0, 1);
        break;
    }
  }
}

/* Starts shutting down: no new connections; open ones close cleanly. */
static void stop_all(void) {
  G.stopping = 1;
  for (int i = 0; i < opt.conns; i++) {
    conn *c = &G.c[i];
    if (c->state == S_OPEN) begin_close(c);
    else if (c->state == S_WAIT) c->state = S_FREE;
  }
}

static int all_free(void) {
  for (int i = 0; i < opt.conns; i++)
    if (G.c[i].state != S_FREE) return 0;
  return 1;
}

/* ------------------------------------------------------------------ */
/* Main                                                                */
/* ------------------------------------------------------------------ */

/* Descriptors this process has open. */
static int count_fds(void) {
  DIR *d = opendir("/proc/self/fd");
  if (!d) return -1;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)))
    if (e->d_name[0] != '.') n++;
  closedir(d);
  return n;
}

static int arg_int(const char *s, const char *name) {
  char *end;
  long v = strtol(s, &end, 10);
  if (*s == '\0' || *end != '\0' || v < 0 || v > 100000000) die("%s: not a number: %s", name, s);
  return (int)v;
}
static double arg_double(const char *s, const char *name) {
  char *end;
  double v = strtod(s, &end);
  if (*s == '\0' || *end != '\0' || v < 0) die("%s: not a number: %s", name, s);
  return v;
}

static void parse_args(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
#define NEXT() (i + 1 < argc ? argv[++i] : (die("%s needs a value", a), ""))
    if (!strcmp(a, "--host")) opt.host = NEXT();
    else if (!strcmp(a, "--port")) opt.port = arg_int(NEXT(), a);
    else if (!strcmp(a, "--conns")) opt.conns = arg_int(NEXT(), a);
    else if (!strcmp(a, "--seconds")) opt.seconds = arg_double(NEXT(), a);
    else if (!strcmp(a, "--idle")) opt.idle = 1;
    else if (!strcmp(a, "--pid")) opt.pid = arg_int(NEXT(), a);
    else if (!strcmp(a, "--settle")) opt.settle = arg_double(NEXT(), a);
    else if (!strcmp(a, "--window")) opt.window = arg_double(NEXT(), a);
    else if (!strcmp(a, "--spread")) opt.spread = arg_double(NEXT(), a);
    else if (!strcmp(a, "--life")) {
      opt.min_life = arg_int(NEXT(), a);
      opt.max_life = arg_int(NEXT(), a);
    } else if (!strcmp(a, "--max-wait")) opt.max_wait = arg_int(NEXT(), a);
    else if (!strcmp(a, "--burst")) opt.burst = arg_int(NEXT(), a);
    else if (!strcmp(a, "--sources")) opt.sources = arg_int(NEXT(), a);
    else if (!strcmp(a, "--ping")) {
      opt.ping_interval = arg_int(NEXT(), a);
      opt.ping_timeout = arg_int(NEXT(), a);
    } else if (!strcmp(a, "--seed")) opt.seed = (unsigned long)arg_int(NEXT(), a);
    else if (!strcmp(a, "--hostile")) opt.hostile = arg_int(NEXT(), a);
    else if (!strcmp(a, "--close-timeout")) opt.close_timeout = arg_int(NEXT(), a);
    else if (!strcmp(a, "--handshake-timeout")) opt.hs_timeout = arg_int(NEXT(), a);
    else if (!strcmp(a, "--blocked-kib")) opt.blocked_kib = arg_int(NEXT(), a);
    else if (!strcmp(a, "--hostile-plans")) {
      char list[256];
      snprintf(list, sizeof list, "%s", NEXT());
      opt.nhplans = 0;
      for (char *t = strtok(list, ","); t; t = strtok(NULL, ",")) {
        int p = P_FIRST_HOSTILE;
        while (p < P_NPLANS && strcmp(t, plan_name[p])) p++;
        if (p == P_NPLANS || opt.nhplans == 16) die("--hostile-plans: no hostile plan %s", t);
        opt.hplan[opt.nhplans++] = p;
      }
    }
    else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      usage();
      exit(0);
    } else {
      usage();
      die("unknown argument %s", a);
    }
#undef NEXT
  }
  if (!opt.nhplans)
    for (int p = P_FIRST_HOSTILE; p < P_NPLANS; p++) opt.hplan[opt.nhplans++] = p;
  if (opt.conns < 1 || opt.burst < 1 || opt.sources < 1 || opt.sources > MAX_SOURCES ||
      opt.min_life > opt.max_life || opt.hostile > opt.conns || (opt.idle && opt.hostile))
    die("bad --conns, --burst, --sources, --life or --hostile");
}

int main(int argc, char **argv) {
  parse_args(argc, argv);
  if (opt.seed)
    rng_state = opt.seed;
  else if (getrandom(&rng_state, sizeof rng_state, 0) != (ssize_t)sizeof rng_state)
    rng_state = (uint64_t)time(NULL);
  if (!rng_state) rng_state = 1;
  for (int p = 0; p < P_NPLANS; p++) {
    char path[64];
    snprintf(path, sizeof path, is_hostile((enum plan)p) ? "/soak/%s" : "/soak", plan_name[p]);
    int n = snprintf(request[p], sizeof request[p], request_fmt, path, opt.host, opt.port);
    request_len[p] = (size_t)n;
  }

  /* One descriptor per connection, plus a margin. */
  struct rlimit rl;
  getrlimit(RLIMIT_NOFILE, &rl);
  rlim_t need = (rlim_t)opt.conns + 64;
  if (rl.rlim_cur < need) {
    rl.rlim_cur = need <= rl.rlim_max ? need : rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < need)
      die("ulimit -n allows %lu descriptors; %d connections need %lu",
          (unsigned long)rl.rlim_cur, opt.conns, (unsigned long)need);
  }
  signal(SIGPIPE, SIG_IGN);
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);

  G.ep = epoll_create1(EPOLL_CLOEXEC);
  G.c = calloc((size_t)opt.conns, sizeof *G.c);
  if (G.ep < 0 || !G.c) die("out of memory");
  G.diag = -1;
  if (inet_pton(AF_INET, opt.host, &G.srv_addr) != 1) die("--host must be an IPv4 address");
  if (opt.hostile) {
    G.diag = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
    if (G.diag < 0) die("NETLINK_SOCK_DIAG: %s", strerror(errno));
  }
  /* Every socket soak opens must be closed again by the end. */
  int fds0 = count_fds();
  G.start = now_ms();
  for (int i = 0; i < opt.conns; i++) {
    G.c[i].idx = (unsigned)i;
    G.c[i].fd = -1;
    G.c[i].state = S_WAIT;
    G.c[i].due = G.start + (uint64_t)(opt.spread * 1000.0 * i / opt.conns);
    G.c[i].msg_due = UINT64_MAX;
  }

  /* Churn ends at start + seconds. Idle: ready when all are open, then
   * settle, then the measured window. */
  uint64_t end = opt.idle ? UINT64_MAX : G.start + (uint64_t)(opt.seconds * 1000);
  uint64_t t_ready = 0, t0 = 0, t_report = G.start + 10000, drain_until = 0;
  double srv0 = 0, self0 = 0, srv1 = 0, self1 = 0, window_s = 0;
  uint64_t pings0 = 0, pings1 = 0;
  uint64_t closes0 = 0, closes1 = 0;
  int measured = 0;
  struct epoll_event evs[256];
  for (;;) {
    int k = epoll_wait(G.ep, evs, 256, 10);
    if (k < 0 && errno != EINTR) die("epoll_wait: %s", strerror(errno));
    for (int i = 0; i < k; i++) {
      conn *c = evs[i].data.ptr;
      if (c->fd < 0) continue;
      if (c->state == S_HOSTILE || (c->state == S_UPGRADING && c->plan == P_LORIS)) {
        on_hostile_event(c, evs[i].events);
        continue;
      }
      if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
        if (c->state == S_CONNECTING)
          on_writable(c);
        else
          on_readable(c);
      }
      if (c->fd >= 0 && (evs[i].events & EPOLLOUT)) on_writable(c);
    }
    uint64_t now = now_ms();
    tick(now);

    if (!G.stopping && (signalled || now >= end)) {
      if (signalled) fprintf(stderr, "soak: signalled; closing everything\n");
      stop_all();
      drain_until = now + 15000;
    }
    if (opt.idle && !G.stopping) {
      if (!t_ready && G.open_now == opt.conns) {
        t_ready = now;
        fprintf(stderr, "soak: ready: %d connections open after %.1f s\n", opt.conns,
                (double)(now - G.start) / 1000);
      }
      if (t_ready && !t0 && now >= t_ready + (uint64_t)(opt.settle * 1000)) {
        t0 = now;
        /* CPU seconds (utime + stime), from bench_stats.c, in ms. */
        srv0 = opt.pid ? bench_proc_cpu_s(opt.pid) * 1000 : 0;
        self0 = bench_self_cpu_s() * 1000;
        pings0 = G.pings_rx;
        closes0 = G.closes;
        fprintf(stderr, "soak: measuring for %.0f s\n", opt.window);
      }
      if (t0 && now >= t0 + (uint64_t)(opt.window * 1000)) {
        srv1 = opt.pid ? bench_proc_cpu_s(opt.pid) * 1000 : 0;
        self1 = bench_self_cpu_s() * 1000;
        pings1 = G.pings_rx;
        closes1 = G.closes;
        window_s = (double)(now - t0) / 1000;
        measured = 1;
        stop_all();
        drain_until = now + 30000;
      }
    }
    if (now >= t_report && !G.stopping) {
      fprintf(stderr, "soak: t=%.0fs open=%d opens=%llu closes=%llu pings=%llu errors=%llu\n",
              (double)(now - G.start) / 1000, G.open_now, (unsigned long long)G.opens,
              (unsigned long long)G.closes, (unsigned long long)G.pings_rx,
              (unsigned long long)G.errors);
      t_report += 10000;
    }
    if (G.stopping && all_free()) break;
    if (G.stopping && now >= drain_until) {
      int left = 0;
      for (int i = 0; i < opt.conns; i++) left += G.c[i].state != S_FREE;
      fprintf(stderr, "soak: %d connection(s) still not done after the drain\n", left);
      G.errors++;
      break;
    }
  }

  int fds_left = count_fds() - fds0;
  if (fds_left)
    fprintf(stderr, "soak: %d descriptor(s) still open at the end\n", fds_left);
  if (opt.idle) {
    if (!measured) {
      fprintf(stderr, "soak: stopped before the measurement finished\n");
      G.errors++;
    }
    double srv = srv1 - srv0, self = self1 - self0;
    uint64_t pings = pings1 - pings0;
    double w = window_s > 0 ? window_s : 1;
    printf("mode=idle conns=%d window_s=%.1f server_cpu_ms=%.0f server_ms_per_s=%.2f "
           "server_ms_per_s_per_10k=%.2f pings=%llu pings_per_s=%.1f us_per_ping=%.1f "
           "client_ms_per_s=%.2f lost=%llu opens=%llu closes=%llu errors=%llu\n",
           opt.conns, window_s, opt.pid ? srv : -1.0, opt.pid ? srv / w : -1.0,
           opt.pid ? srv / w * 10000.0 / opt.conns : -1.0, (unsigned long long)pings,
           (double)pings / w, pings && opt.pid ? srv * 1000.0 / (double)pings : 0.0, self / w,
           (unsigned long long)(closes1 - closes0), (unsigned long long)G.opens,
           (unsigned long long)G.closes, (unsigned long long)G.errors);
  } else {
    printf("mode=soak conns=%d ran_s=%.0f attempts=%llu opens=%llu closes=%llu "
           "max_open=%d",
           opt.conns, (double)(now_ms() - G.start) / 1000, (unsigned long long)G.attempts,
           (unsigned long long)G.opens, (unsigned long long)G.closes, G.max_open);
    for (int p = 0; p < P_NPLANS; p++)
      printf(" %s=%llu", plan_name[p], (unsigned long long)G.ended[p]);
    printf(" unexpected=%llu msgs=%llu echoes=%llu pings_rx=%llu pings_tx=%llu "
           "pongs_rx=%llu errors=%llu",
           (unsigned long long)G.unexpected, (unsigned long long)G.msgs,
           (unsigned long long)G.echoes, (unsigned long long)G.pings_rx,
           (unsigned long long)G.pings_tx, (unsigned long long)G.pongs_rx,
           (unsigned long long)G.errors);
    /* The hostile plans: opens (as the server must log them, by path),
     * how each end was seen, lifetimes (ms, from each plan's start) and
     * bytes sent. */
    for (int p = P_FIRST_HOSTILE; p < P_NPLANS; p++) {
      uint64_t n = G.ended[p];
      printf(" %s_opens=%llu", plan_name[p], (unsigned long long)G.h_opens[p]);
      for (int h = 0; h < H_NHOW; h++)
        printf(" %s_%s=%llu", plan_name[p], how_name[h], (unsigned long long)G.h_how[p][h]);
      printf(" %s_max_ms=%llu %s_mean_ms=%llu %s_kib=%llu", plan_name[p],
             (unsigned long long)G.h_max_ms[p], plan_name[p],
             (unsigned long long)(n ? G.h_sum_ms[p] / n : 0), plan_name[p],
             (unsigned long long)(G.h_bytes[p] >> 10));
    }
    printf(" blocked_early=%llu blocked_userq_kib_min=%llu blocked_userq_kib_max=%llu "
           "slowloris_rx=%llu diag_errors=%llu fds_left=%d",
           (unsigned long long)G.blocked_early, (unsigned long long)(G.blocked_user_min >> 10),
           (unsigned long long)(G.blocked_user_max >> 10), (unsigned long long)G.loris_rx,
           (unsigned long long)G.diag_errors, fds_left);
    /* What the server's close lines must add up to, by their why=: the
     * clean plan's close (reason "bye") and a blocked one's ("blocked") are
     * "closed by peer"; a flood ends by ping timeout or as a slow consumer
     * ("closed locally"), and so does a blocked one whose close frame the
     * server never read. */
    printf(" expect_peer=%llu expect_protocol_error=%llu expect_ping_timeout=%llu "
           "expect_transport=%llu expect_hostile_open=%llu expect_hostile_timeout=%llu\n",
           (unsigned long long)G.ended[P_CLEAN], (unsigned long long)G.ended[P_PROTO],
           (unsigned long long)(G.ended[P_SILENT] + G.ended[P_HALFOPEN]),
           (unsigned long long)(G.ended[P_RST] + G.ended[P_FIN]),
           (unsigned long long)(G.h_opens[P_FLOOD] + G.h_opens[P_BLOCKED]),
           (unsigned long long)(G.ended[P_SILENT] + G.ended[P_HALFOPEN] + G.ended[P_FLOOD]));
  }
  return G.errors || G.opens != G.closes || fds_left ? 1 : 0;
}
