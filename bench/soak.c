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
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
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
};

static void usage(void) {
  fprintf(stderr,
          "usage: soak --port P [--host 127.0.0.1] [--conns N] [--seconds T]\n"
          "            [--life MIN_MS MAX_MS] [--max-wait MS] [--burst B]\n"
          "            [--sources K] [--ping INTERVAL_MS TIMEOUT_MS] [--seed S]\n"
          "       soak --idle --port P --conns N [--pid SERVERPID] [--settle S]\n"
          "            [--window S] [--spread S] [--burst B] [--sources K]\n"
          "Churn mode (default) runs T seconds, then closes everything cleanly.\n"
          "--ping gives the server's heartbeat settings (default 1000 1000), so a\n"
          "silent connection is known to be overdue. --sources spreads client\n"
          "sockets over 127.0.0.1..127.0.0.K (grown on its own when ports run out).\n"
          "--spread S (idle) opens the connections evenly over S seconds, so their\n"
          "heartbeats are spread evenly too, as with clients that come and go.\n");
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

enum plan { P_CLEAN, P_RST, P_FIN, P_SILENT, P_PROTO, P_ABORT, P_NPLANS };
static const char *const plan_name[P_NPLANS] = {"clean", "rst", "fin",
                                                "silent", "proto", "hs_abort"};
/* Percent of connection attempts that draw each plan. */
static const int plan_weight[P_NPLANS] = {40, 17, 15, 10, 8, 10};

enum state {
  S_FREE,       /* done for good (shutting down) */
  S_WAIT,       /* no socket; (re)connects at `due` */
  S_CONNECTING, /* TCP connect in progress */
  S_UPGRADING,  /* request sent (or, for hs_abort, part of it) */
  S_OPEN,       /* upgraded; ends by its plan at `due` */
  S_CLOSING,    /* clean/proto: waiting for the close frame, then TCP close */
  S_SILENT      /* silent: waiting for the server to cut us */
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
} G;

static volatile sig_atomic_t signalled;
static void on_signal(int sig) {
  (void)sig;
  signalled = 1;
}

static const char request_fmt[] =
    "GET /soak HTTP/1.1\r\n"
    "Host: %s:%d\r\n"
    "Upgrade: websocket\r\n"
    "Connection: Upgrade\r\n"
    /* The sample nonce of RFC 6455 §1.3; its accept value is below. */
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Version: 13\r\n"
    "\r\n";
static const char expected_accept[] = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
static char request[512];
static size_t request_len;

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
  int was_open = c->state == S_OPEN || c->state == S_CLOSING || c->state == S_SILENT;
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

static void queue_close(conn *c, int code) {
  uint8_t body[5] = {(uint8_t)(code >> 8), (uint8_t)code, 'b', 'y', 'e'};
  if (queue_frame(c, 1, DX__OP_CLOSE, body, sizeof body, 0) != 0)
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

static void begin_close(conn *c);

static void on_upgraded(conn *c) {
  c->state = S_OPEN;
  G.handshaking--;
  G.opens++;
  if (++G.open_now > G.max_open) G.max_open = G.open_now;
  uint64_t now = now_ms();
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

static enum plan draw_plan(void) {
  if (opt.idle) return P_CLEAN;
  int r = (int)(rng64() % 100);
  for (int p = 0; p < P_NPLANS; p++) {
    if (r < plan_weight[p]) return (enum plan)p;
    r -= plan_weight[p];
  }
  return P_CLEAN;
}

static void conn_start(conn *c) {
  c->gen++;
  c->plan = draw_plan();
  c->sent = c->echoed = 0;
  c->ping_out = c->got_close = 0;
  c->in_len = c->out_len = c->msg_len = 0;
  c->msg_op = 0;
  G.attempts++;
  c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
  if (c->fd < 0) die("socket: %s (raise ulimit -n)", strerror(errno));
  int one = 1;
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
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
  c->state = S_UPGRADING;
  if (c->plan == P_ABORT) {
    /* Part of the request (maybe none of it), then a cut soon after. */
    size_t part = (size_t)rng_range(0, request_len - 1);
    memcpy(c->out, request, part);
    c->out_len = part;
    c->due = now_ms() + rng_range(0, 200);
  } else {
    memcpy(c->out, request, request_len);
    c->out_len = request_len;
    c->due = now_ms() + 10000;
  }
  flush(c);
}

/* Deadlines and the connections' own schedules. */
static void tick(uint64_t now) {
  for (int i = 0; i < opt.conns; i++) {
    conn *c = &G.c[i];
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
        if (c->plan == P_ABORT) {
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
    else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      usage();
      exit(0);
    } else {
      usage();
      die("unknown argument %s", a);
    }
#undef NEXT
  }
  if (opt.conns < 1 || opt.burst < 1 || opt.sources < 1 || opt.sources > MAX_SOURCES ||
      opt.min_life > opt.max_life)
    die("bad --conns, --burst, --sources or --life");
}

int main(int argc, char **argv) {
  parse_args(argc, argv);
  if (opt.seed)
    rng_state = opt.seed;
  else if (getrandom(&rng_state, sizeof rng_state, 0) != (ssize_t)sizeof rng_state)
    rng_state = (uint64_t)time(NULL);
  if (!rng_state) rng_state = 1;
  int n = snprintf(request, sizeof request, request_fmt, opt.host, opt.port);
  request_len = (size_t)n;

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
    /* What the server's close lines must add up to, by their why=. */
    printf(" expect_peer=%llu expect_protocol_error=%llu expect_ping_timeout=%llu "
           "expect_transport=%llu\n",
           (unsigned long long)G.ended[P_CLEAN], (unsigned long long)G.ended[P_PROTO],
           (unsigned long long)G.ended[P_SILENT],
           (unsigned long long)(G.ended[P_RST] + G.ended[P_FIN]));
  }
  return G.errors || G.opens != G.closes ? 1 : 0;
}
