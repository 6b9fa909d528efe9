/*
 * wsbench — a single-threaded epoll load generator for echo servers.
 *
 * It speaks RFC 6455 as a client (masked frames, built with duplex's own
 * frame codec from src/proto/frame.h), or plain TCP with --raw, so the same
 * client and the same code path drive duplex, the libwebsockets reference
 * (lws_echo) and the raw epoll echo server (raw_echo).
 *
 * Modes (see bench/README.md for what each figure means):
 *   echo       N connections, P messages in flight on each, S-byte messages.
 *              Reports messages/s, MB/s of echoed payload (10^6 bytes, one
 *              direction) and latency p50/p99 from queueing a message to
 *              receiving the last byte of its echo.
 *   handshake  C concurrent loops of: connect, upgrade (101 checked), close
 *              handshake (1000), wait for the server's TCP close, close.
 *              With --raw: connect, send the same upgrade request bytes,
 *              read their echo, wait for the server's TCP close (raw_echo
 *              --close-after-request), close. Either way the server closes
 *              first and holds the TIME_WAIT. Reports cycles/s and latency.
 *   idle       N upgraded, idle connections; reads the server's VmRSS from
 *              /proc/PID/status before and after and reports the difference
 *              per connection. With --echo-once each connection first
 *              exchanges one message each way.
 *
 * Options that change what goes over the wire, in any mode:
 *   --deflate  offers permessage-deflate (RFC 7692), checks the server's
 *              answer, compresses every message it sends and inflates the
 *              echoes, with duplex's codec (src/proto/deflate.h).
 *   --json     text messages are JSON-like (arrays of objects with
 *              repeated keys), a few variants in rotation.
 *   --tls      wss://: OpenSSL on the same non-blocking epoll loop.
 *
 * One machine-readable line per run goes to stdout; diagnostics to stderr.
 * Exit status 0 on success, 1 on a failed run, 2 on a usage error.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* getrandom */
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
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

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "duplex.h" /* DX_E* */
#include "proto/deflate.h"
#include "proto/frame.h"

/* ------------------------------------------------------------------ */
/* Options                                                             */
/* ------------------------------------------------------------------ */

enum mode { M_ECHO, M_HANDSHAKE, M_IDLE };

static struct {
  const char *host;
  int port;
  const char *path;
  enum mode mode;
  int conns;
  int inflight;
  size_t size;
  double seconds;
  double warmup;
  double settle;
  int burst;
  int binary;
  int raw;
  int verify;
  long pid;
  int deflate;     /* offer permessage-deflate */
  int no_takeover; /* ... with no context takeover in both directions */
  int json;        /* JSON-like text payloads */
  int variants;    /* how many different messages rotate */
  int tls;
  int echo_once;   /* idle mode: one message each way before idling */
  int zlevel;      /* zlib level of our compressor, -1..9 */
} opt = {
    .host = "127.0.0.1",
    .port = 8080,
    .path = "/",
    .mode = M_ECHO,
    .conns = -1,
    .inflight = 1,
    .size = 20,
    .seconds = 5.0,
    .warmup = 1.0,
    .settle = 1.0,
    .burst = 128,
    .verify = 1,
    .pid = 0,
    .variants = 8,
    .zlevel = -1,
};

static void usage(void) {
  fprintf(stderr,
          "usage: wsbench [--host H] [--port P] [--path /] [--raw] --mode MODE ...\n"
          "  --mode echo      --conns N --inflight P --size S --seconds T\n"
          "                   [--warmup W] [--binary] [--no-verify] [--pid SERVERPID]\n"
          "  --mode handshake --seconds T [--conns CONCURRENCY] [--warmup W]\n"
          "  --mode idle      --conns N --pid SERVERPID [--settle S] [--burst B]\n"
          "                   [--echo-once --size S]\n"
          "--raw speaks plain TCP (for the raw echo reference) instead of WebSocket.\n"
          "--pid in echo/handshake mode also reports the server's CPU use.\n"
          "--deflate offers permessage-deflate; --deflate-no-takeover offers it with\n"
          "  server_no_context_takeover and client_no_context_takeover;\n"
          "  --deflate-level L (-1..9, default -1) is our compressor's zlib level.\n"
          "--json makes text messages JSON-like; --variants K of them rotate (8).\n"
          "--tls speaks TLS (wss://) without verifying the certificate.\n");
  exit(2);
}

/* ------------------------------------------------------------------ */
/* Small helpers                                                       */
/* ------------------------------------------------------------------ */

static void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "wsbench: ");
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  exit(1);
}

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Masking keys only have to be unpredictable to stop cache poisoning of
 * intermediaries; this is a load generator on loopback, not a security
 * boundary, so an xorshift64* seeded once from getrandom() is plenty and
 * costs a few cycles per frame. */
static uint64_t rng_state;
static void rng_seed(void) {
  if (getrandom(&rng_state, sizeof rng_state, 0) != sizeof rng_state)
    rng_state = now_ns();
  if (!rng_state) rng_state = 0x9E3779B97F4A7C15ull;
}
static uint32_t rng_u32(void) {
  uint64_t x = rng_state;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  rng_state = x;
  return (uint32_t)((x * 0x2545F4914F6CDD1Dull) >> 32);
}

/* Latency histogram, log-linear: exact below 64 ns, then 32 buckets per
 * power of two (about 3% resolution), enough for p50/p99. Values in ns. */
#define H_SUB_BITS 5
#define H_SUB (1u << H_SUB_BITS)
#define H_BUCKETS (H_SUB * 60)
static struct {
  uint64_t count;
  uint64_t max;
  uint64_t b[H_BUCKETS];
} hist;

static unsigned h_index(uint64_t v) {
  if (v < 2 * H_SUB) return (unsigned)v;
  unsigned msb = 63u - (unsigned)__builtin_clzll(v);
  unsigned shift = msb - H_SUB_BITS;
  return shift * H_SUB + (unsigned)(v >> shift);
}
static uint64_t h_value(unsigned idx) { /* midpoint of the bucket */
  if (idx < 2 * H_SUB) return idx;
  unsigned shift = idx / H_SUB - 1;
  uint64_t low = (uint64_t)(idx % H_SUB + H_SUB) << shift;
  return low + ((uint64_t)1 << shift) / 2;
}
static void hist_add(uint64_t v) {
  hist.b[h_index(v)]++;
  hist.count++;
  if (v > hist.max) hist.max = v;
}
static double hist_pct_us(double q) {
  if (!hist.count) return 0;
  uint64_t want = (uint64_t)(q * (double)hist.count + 0.999999);
  if (want < 1) want = 1;
  uint64_t seen = 0;
  for (unsigned i = 0; i < H_BUCKETS; i++) {
    seen += hist.b[i];
    if (seen >= want) return (double)h_value(i) / 1000.0;
  }
  return (double)hist.max / 1000.0;
}

/* CPU seconds used so far by process `pid` (utime + stime), or -1. */
static double proc_cpu_s(long pid) {
  char path[64], buf[1024];
  snprintf(path, sizeof path, "/proc/%ld/stat", pid);
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  char *p = strrchr(buf, ')'); /* the command name may contain spaces */
  if (!p) return -1;
  unsigned long ut = 0, st = 0;
  /* after ')': state(3) ... utime is field 14, stime 15 */
  if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
             &ut, &st) != 2)
    return -1;
  return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}
static double self_cpu_s(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
         (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* VmRSS of `pid` in KiB, or -1. */
static long proc_rss_kb(long pid) {
  char path[64], line[256];
  snprintf(path, sizeof path, "/proc/%ld/status", pid);
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  long kb = -1;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "VmRSS: %ld kB", &kb) == 1) break;
  fclose(f);
  return kb;
}

static void raise_nofile(int need) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl)) return;
  rlim_t want = (rlim_t)need;
  if (rl.rlim_cur >= want) return;
  if (rl.rlim_max < want) { /* only root may raise the hard limit */
    struct rlimit hard = {want, want};
    if (setrlimit(RLIMIT_NOFILE, &hard) == 0) return;
  }
  rl.rlim_cur = rl.rlim_max < want ? rl.rlim_max : want;
  setrlimit(RLIMIT_NOFILE, &rl);
  if (rl.rlim_cur < want)
    fprintf(stderr, "wsbench: RLIMIT_NOFILE is %lu, %d wanted\n",
            (unsigned long)rl.rlim_cur, need);
}

/* ------------------------------------------------------------------ */
/* Connections                                                         */
/* ------------------------------------------------------------------ */

enum cstate {
  C_FREE,       /* no socket */
  C_CONNECTING, /* TCP connect in progress */
  C_TLS,        /* TLS handshake in progress (--tls) */
  C_UPGRADING,  /* request sent, waiting for the 101 */
  C_OPEN,       /* data flows */
  C_CLOSING,    /* our close frame (or FIN for --raw) sent */
  C_WAIT_EOF    /* close frames exchanged; the server closes TCP first */
};

/* The RFC 6455 §1.3 sample key, whose accept value is known: the server
 * must still compute it, which is what we check. */
#define WS_KEY "dGhlIHNhbXBsZSBub25jZQ=="
#define WS_ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
#define HS_MAX 4096 /* largest 101 response we accept */

struct conn {
  int fd;
  enum cstate state;
  uint64_t t_start;  /* handshake mode: when this cycle began */
  uint64_t deadline; /* 0, or when the current state times out */
  /* outgoing bytes not yet written: out[head..tail) */
  uint8_t *out;
  size_t head, tail, cap;
  /* the 101 response being read */
  char *hs;
  size_t hs_len;
  /* frame parser */
  uint8_t hdr[DX__FRAME_MAX_HEADER];
  uint8_t hdr_len;
  uint8_t in_frame; /* a header was parsed, payload bytes remain */
  uint8_t frame_op, frame_fin;
  uint8_t in_msg;   /* inside a (possibly fragmented) data message */
  uint8_t msg_op;
  uint8_t msg_z;    /* the current message is compressed (RSV1) */
  uint8_t msg_var;  /* which payload variant it must echo */
  uint64_t frame_left;
  uint64_t msg_len; /* payload bytes of the current message so far */
  uint64_t msg_wire; /* ... as they came over the wire (compressed) */
  uint8_t ctl[125];
  uint8_t ctl_len;
  /* raw mode: bytes of the current echoed message received */
  uint64_t raw_got;
  /* send timestamps and payload variants of messages in flight, a ring of
   * opt.inflight */
  uint64_t *sent;
  uint8_t *var;
  unsigned ring_head, ring_count;
  unsigned next_var;
  SSL *ssl;    /* --tls */
  dx__pmd *pmd; /* permessage-deflate, once the server accepted it */
};

static struct {
  int ep;
  struct conn *c;
  int nconns;
  uint8_t *payload[256]; /* the messages connections send, in rotation */
  int npayload;
  SSL_CTX *tls;
  dx__pmd_config pmd_cfg; /* what we offer */
  char tls_info[96];      /* protocol and cipher of the first connection */
  char *req;        /* upgrade request (also the --raw handshake request) */
  size_t req_len;
  uint8_t *rbuf;
  size_t rbuf_size;
  /* progress */
  int opened;    /* connections that reached C_OPEN (echo/idle) */
  int pending;   /* connections connecting or upgrading (idle pacing) */
  int started;   /* connections started (idle pacing) */
  int closed;    /* connections fully closed in the final phase */
  int measuring; /* samples count only while set */
  int stopping;  /* no new messages or cycles */
  uint64_t in_flight; /* echo messages sent and not yet echoed, all conns */
  uint64_t msgs;   /* echoes completed while measuring */
  uint64_t cycles; /* handshake cycles completed while measuring */
  uint64_t errors; /* failed handshake cycles */
  uint64_t no_close; /* handshake cycles where the server never closed TCP */
  /* data payload bytes while measuring, before and after compression */
  uint64_t tx_plain, tx_wire, rx_plain, rx_wire, rx_z;
  uint64_t woke; /* monotonic ns when epoll_wait last returned */
} B;

/* Timestamp for a message's latency: when the loop woke for the events that
 * led to it. One clock read per wake instead of two per message (they were
 * 8 % of the client's CPU at 20 B x 16 in flight, in both modes); the error
 * is the time one wake's work takes. With deflate the client's own
 * compression time must stay out of the figure, so the clock is read at the
 * send itself. */
static uint64_t msg_stamp(void) { return opt.deflate ? now_ns() : B.woke; }

static void conn_start(struct conn *c);
static void flush(struct conn *c);
static void on_connected(struct conn *c);

static void out_reserve(struct conn *c, size_t need) {
  if (c->tail + need <= c->cap) return;
  if (c->head) { /* compact */
    memmove(c->out, c->out + c->head, c->tail - c->head);
    c->tail -= c->head;
    c->head = 0;
    if (c->tail + need <= c->cap) return;
  }
  size_t ncap = c->cap ? c->cap : 256;
  while (ncap < c->tail + need) ncap *= 2;
  uint8_t *p = realloc(c->out, ncap);
  if (!p) die("out of memory");
  c->out = p;
  c->cap = ncap;
}

/* Queues one masked frame (client frames must be masked, RFC 6455 §5.3).
 * rsv is DX__RSV1 for a compressed message, else 0. */
static void queue_frame_rsv(struct conn *c, unsigned opcode, unsigned rsv,
                            const uint8_t *data, size_t len) {
  uint8_t key[4];
  uint32_t k = rng_u32();
  memcpy(key, &k, 4);
  out_reserve(c, DX__FRAME_MAX_HEADER + len);
  uint8_t *p = c->out + c->tail;
  size_t h = dx__frame_write_header(p, 1, rsv, opcode, key, len);
  dx__mask_copy(p + h, data, len, key, 0);
  c->tail += h + len;
}

static void queue_frame(struct conn *c, unsigned opcode, const uint8_t *data,
                        size_t len) {
  queue_frame_rsv(c, opcode, 0, data, len);
}

static void queue_bytes(struct conn *c, const void *data, size_t len) {
  out_reserve(c, len);
  memcpy(c->out + c->tail, data, len);
  c->tail += len;
}

static void queue_close(struct conn *c) {
  static const uint8_t code[2] = {1000 >> 8, 1000 & 0xFF};
  queue_frame(c, DX__OP_CLOSE, code, 2);
}

/* Queues the next echo message (the next variant in this connection's
 * rotation) and stamps its send time. With permessage-deflate every
 * message is compressed here: with context takeover its bytes depend on
 * what this connection sent before, so they cannot be prepared ahead. */
static void queue_msg(struct conn *c) {
  unsigned v = c->next_var;
  c->next_var = (c->next_var + 1) % (unsigned)B.npayload;
  const uint8_t *msg = B.payload[v];
  if (opt.raw) {
    queue_bytes(c, msg, opt.size);
  } else {
    unsigned op = opt.binary ? DX__OP_BINARY : DX__OP_TEXT;
    size_t wire = opt.size;
    if (c->pmd) {
      const uint8_t *z;
      int rc = dx__pmd_compress(c->pmd, msg, opt.size, &z, &wire);
      if (rc) die("compressing a message failed (%d)", rc);
      queue_frame_rsv(c, op, DX__RSV1, z, wire);
    } else {
      queue_frame(c, op, msg, opt.size);
    }
    if (B.measuring) {
      B.tx_plain += opt.size;
      B.tx_wire += wire;
    }
  }
  unsigned slot = (c->ring_head + c->ring_count) % (unsigned)opt.inflight;
  c->sent[slot] = msg_stamp(); /* after compressing: just before the send() */
  c->var[slot] = (uint8_t)v;
  c->ring_count++;
  B.in_flight++;
}

static void conn_release(struct conn *c) {
  if (c->ssl) { /* no close_notify: the close handshake already happened */
    SSL_free(c->ssl);
    c->ssl = NULL;
  }
  dx__pmd_free(c->pmd);
  c->pmd = NULL;
  c->msg_z = 0;
  if (c->fd >= 0) close(c->fd); /* also leaves the epoll set */
  c->fd = -1;
  c->state = C_FREE;
  c->deadline = 0;
  c->head = c->tail = 0;
  c->hs_len = 0;
  c->hdr_len = c->in_frame = c->in_msg = 0;
  c->raw_got = 0;
  B.in_flight -= c->ring_count;
  c->ring_head = c->ring_count = 0;
}

/* A connection failed. Handshake mode counts it and starts over; the other
 * modes cannot produce a meaningful figure without it, except while
 * closing down. */
static void conn_fail(struct conn *c, const char *why) {
  if (B.stopping) {
    conn_release(c);
    B.closed++;
    return;
  }
  if (opt.mode == M_HANDSHAKE) {
    B.errors++;
    if (B.errors <= 5) fprintf(stderr, "wsbench: cycle failed: %s\n", why);
    if (B.errors > 1000 && B.errors > 10 * B.cycles)
      die("too many failed handshakes (last: %s)", why);
    conn_release(c);
    c->deadline = now_ns() + 10000000u; /* retried by check_deadlines */
    return;
  }
  die("connection %d: %s", (int)(c - B.c), why);
}

/* One connection (or cycle) is completely done. */
static void conn_done(struct conn *c) {
  conn_release(c);
  if (B.stopping) {
    B.closed++;
    return;
  }
  if (opt.mode == M_HANDSHAKE) {
    if (B.measuring) {
      hist_add(now_ns() - c->t_start);
      B.cycles++;
    }
    conn_start(c);
  }
}

static void on_open(struct conn *c) {
  c->state = C_OPEN;
  c->deadline = 0;
  switch (opt.mode) {
  case M_ECHO:
    B.opened++;
    if (B.opened == B.nconns) /* everyone starts together */
      for (int i = 0; i < B.nconns; i++) {
        for (int j = 0; j < opt.inflight; j++) queue_msg(&B.c[i]);
        if (&B.c[i] != c) flush(&B.c[i]);
      }
    break;
  case M_HANDSHAKE:
    queue_close(c);
    c->state = C_CLOSING;
    c->deadline = now_ns() + 2000000000u;
    break;
  case M_IDLE:
    if (opt.echo_once) { /* counted as open once its echo is back */
      queue_msg(c);
      c->deadline = now_ns() + 10000000000u;
      break;
    }
    B.opened++;
    B.pending--;
    break;
  }
}

static void conn_start(struct conn *c) {
  if (B.stopping) return;
  c->t_start = now_ns();
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) die("socket: %s", strerror(errno));
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  struct sockaddr_in sa = {.sin_family = AF_INET,
                           .sin_port = htons((uint16_t)opt.port)};
  if (inet_pton(AF_INET, opt.host, &sa.sin_addr) != 1)
    die("--host must be an IPv4 address: %s", opt.host);
  c->fd = fd;
  c->state = C_CONNECTING;
  c->deadline = c->t_start + 10000000000u;
  struct epoll_event ev = {
      .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = c};
  if (epoll_ctl(B.ep, EPOLL_CTL_ADD, fd, &ev)) die("epoll_ctl: %s", strerror(errno));
  if (connect(fd, (struct sockaddr *)&sa, sizeof sa) && errno != EINPROGRESS) {
    char why[96];
    snprintf(why, sizeof why, "connect: %s", strerror(errno));
    conn_fail(c, why);
  }
}

/* Moves the TLS handshake on; on completion goes on as plain TCP would. */
static void tls_step(struct conn *c) {
  ERR_clear_error();
  int r = SSL_do_handshake(c->ssl);
  if (r == 1) {
    if (!B.tls_info[0])
      snprintf(B.tls_info, sizeof B.tls_info, "%s/%s", SSL_get_version(c->ssl),
               SSL_get_cipher_name(c->ssl));
    on_connected(c);
    return;
  }
  int e = SSL_get_error(c->ssl, r);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return;
  char why[160];
  unsigned long code = ERR_get_error();
  snprintf(why, sizeof why, "TLS handshake failed: %s",
           code ? ERR_reason_error_string(code) : "connection closed");
  ERR_clear_error();
  conn_fail(c, why);
}

static void tls_start(struct conn *c) {
  if (!(c->ssl = SSL_new(B.tls))) die("SSL_new failed");
  SSL_set_fd(c->ssl, c->fd);
  SSL_set_connect_state(c->ssl);
  c->state = C_TLS;
  tls_step(c);
}

static void on_connected(struct conn *c) {
  if (opt.tls && !c->ssl) {
    tls_start(c);
    return;
  }
  if (opt.raw) {
    if (opt.mode == M_HANDSHAKE) {
      queue_bytes(c, B.req, B.req_len); /* echoed back, then we close */
      c->state = C_OPEN;
      c->deadline = now_ns() + 2000000000u;
      flush(c);
    } else {
      on_open(c);
      flush(c);
    }
    return;
  }
  c->state = C_UPGRADING;
  if (!c->hs && !(c->hs = malloc(HS_MAX))) die("out of memory");
  queue_bytes(c, B.req, B.req_len);
  flush(c);
}

/* SSL_write in partial-write mode: returns after each batch of records,
 * so it is called until the buffer is empty or OpenSSL wants the socket. */
static void tls_flush(struct conn *c) {
  while (c->fd >= 0 && c->head < c->tail) {
    size_t want = c->tail - c->head;
    int n = SSL_write(c->ssl, c->out + c->head, want > INT32_MAX ? INT32_MAX : (int)want);
    if (n > 0) {
      c->head += (size_t)n;
      continue;
    }
    int e = SSL_get_error(c->ssl, n);
    if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) return;
    char why[160];
    unsigned long code = ERR_get_error();
    snprintf(why, sizeof why, "SSL_write: %s",
             code ? ERR_reason_error_string(code) : strerror(errno));
    ERR_clear_error();
    conn_fail(c, why);
    return;
  }
  if (c->head == c->tail) c->head = c->tail = 0;
}

static void flush(struct conn *c) {
  if (c->ssl) {
    if (c->state != C_TLS) tls_flush(c);
    return;
  }
  while (c->fd >= 0 && c->head < c->tail) {
    size_t want = c->tail - c->head;
    ssize_t n = send(c->fd, c->out + c->head, want, MSG_NOSIGNAL);
    if (n > 0) {
      c->head += (size_t)n;
      if ((size_t)n < want) return; /* buffer full: EPOLLOUT edge follows */
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n < 0 && errno == EAGAIN) {
      return;
    } else {
      char why[96];
      snprintf(why, sizeof why, "send: %s", strerror(errno));
      conn_fail(c, why);
      return;
    }
  }
  if (c->head == c->tail) c->head = c->tail = 0;
}

/* ------------------------------------------------------------------ */
/* Input                                                               */
/* ------------------------------------------------------------------ */

static void on_message_complete(struct conn *c) {
  if (opt.mode == M_HANDSHAKE || c->state != C_OPEN) return; /* drained on close */
  if (!c->ring_count) {
    conn_fail(c, "echo of a message never sent");
    return;
  }
  uint64_t sent = c->sent[c->ring_head];
  c->ring_head = (c->ring_head + 1) % (unsigned)opt.inflight;
  c->ring_count--;
  B.in_flight--;
  if (opt.mode == M_IDLE) { /* --echo-once: the exchange is done */
    B.opened++;
    B.pending--;
    c->deadline = 0;
    /* Nothing more is sent or compressed on it: the client's own memory
     * goes back (the server's is what is measured). */
    dx__pmd_free(c->pmd);
    c->pmd = NULL;
    if (c->head == c->tail) {
      free(c->out);
      c->out = NULL;
      c->cap = c->head = c->tail = 0;
    }
    return;
  }
  if (B.measuring) {
    hist_add(msg_stamp() - sent);
    B.msgs++;
    B.rx_plain += c->msg_len;
    B.rx_wire += c->msg_wire;
    B.rx_z += c->msg_z;
  }
  if (!B.stopping) queue_msg(c);
}

/* Inflated echo bytes arrive here, to be checked like uncompressed ones. */
static int inflate_sink(void *ud, const uint8_t *p, size_t n) {
  struct conn *c = ud;
  if (c->msg_len + n > opt.size) return 1;
  if (opt.verify && memcmp(p, B.payload[c->msg_var] + c->msg_len, n)) return 2;
  c->msg_len += n;
  return 0;
}

/* Handles a complete control frame. Returns -1 if the connection is gone. */
static int on_control(struct conn *c) {
  switch (c->frame_op) {
  case DX__OP_PING:
    queue_frame(c, DX__OP_PONG, c->ctl, c->ctl_len);
    return 0;
  case DX__OP_PONG:
    return 0;
  default: /* DX__OP_CLOSE */
    if (c->state == C_OPEN) {
      if (!B.stopping) {
        char why[64];
        unsigned code = c->ctl_len >= 2 ? (unsigned)(c->ctl[0] << 8 | c->ctl[1]) : 1005;
        snprintf(why, sizeof why, "server sent close %u", code);
        conn_fail(c, why);
        return -1;
      }
      queue_close(c); /* answer it */
    }
    c->state = C_WAIT_EOF;
    c->deadline = now_ns() + 1000000000u;
    return 0;
  }
}

/* Feeds WebSocket bytes from the server. Returns -1 if the connection is
 * gone. */
static int ws_consume(struct conn *c, const uint8_t *p, size_t len) {
  while (len) {
    if (c->state == C_WAIT_EOF) return 0; /* nothing may follow a close */
    if (!c->in_frame) {
      size_t take = sizeof c->hdr - c->hdr_len;
      if (take > len) take = len;
      memcpy(c->hdr + c->hdr_len, p, take);
      dx__frame_header h;
      int r = dx__frame_parse_header(c->hdr, c->hdr_len + take, &h);
      if (r < 0) {
        conn_fail(c, "malformed frame header from the server");
        return -1;
      }
      if (r == 0) { /* need more bytes */
        c->hdr_len = (uint8_t)(c->hdr_len + take);
        return 0;
      }
      size_t used = (size_t)r - c->hdr_len;
      p += used;
      len -= used;
      c->hdr_len = 0;
      /* RSV1 marks a compressed message: only on its first frame, and
       * only once permessage-deflate was agreed (RFC 7692 §6). */
      int z_ok = c->pmd && h.rsv == DX__RSV1 && !dx__opcode_is_control(h.opcode) &&
                 h.opcode != DX__OP_CONT;
      if (h.masked || (h.rsv && !z_ok)) {
        conn_fail(c, "server frame is masked or has unexpected RSV bits");
        return -1;
      }
      c->frame_op = h.opcode;
      c->frame_fin = h.fin;
      c->frame_left = h.len;
      c->in_frame = 1;
      if (dx__opcode_is_control(h.opcode)) {
        c->ctl_len = 0;
      } else if (h.opcode == DX__OP_CONT) {
        if (!c->in_msg) {
          conn_fail(c, "continuation frame outside a message");
          return -1;
        }
      } else {
        if (c->in_msg) {
          conn_fail(c, "new message inside a fragmented one");
          return -1;
        }
        if (opt.mode != M_ECHO && !(opt.mode == M_IDLE && opt.echo_once) &&
            !B.stopping) {
          conn_fail(c, "unexpected data message");
          return -1;
        }
        c->in_msg = 1;
        c->msg_op = h.opcode;
        c->msg_len = 0;
        c->msg_wire = 0;
        c->msg_z = h.rsv != 0;
        c->msg_var = c->ring_count ? c->var[c->ring_head] : 0;
      }
    } else {
      size_t take = c->frame_left < len ? (size_t)c->frame_left : len;
      if (dx__opcode_is_control(c->frame_op)) {
        memcpy(c->ctl + c->ctl_len, p, take);
        c->ctl_len = (uint8_t)(c->ctl_len + take);
      } else if (c->state == C_OPEN && c->msg_z) {
        c->msg_wire += take;
        int rc = dx__pmd_decompress(c->pmd, p, take, 0, opt.size, inflate_sink, c);
        if (rc) {
          conn_fail(c, rc == 2 ? "echoed payload differs from the one sent"
                       : rc == 1 || rc == DX_ETOOBIG
                           ? "echoed message is longer than the one sent"
                           : "cannot inflate the echo");
          return -1;
        }
      } else if (c->state == C_OPEN) {
        if (c->msg_len + take > opt.size) {
          conn_fail(c, "echoed message is longer than the one sent");
          return -1;
        }
        if (opt.verify && memcmp(p, B.payload[c->msg_var] + c->msg_len, take)) {
          conn_fail(c, "echoed payload differs from the one sent");
          return -1;
        }
        c->msg_len += take;
        c->msg_wire += take;
      }
      c->frame_left -= take;
      p += take;
      len -= take;
    }
    if (c->in_frame && !c->frame_left) { /* frame complete */
      c->in_frame = 0;
      if (dx__opcode_is_control(c->frame_op)) {
        if (on_control(c) < 0) return -1;
      } else if (c->frame_fin) {
        c->in_msg = 0;
        if (c->state == C_OPEN && c->msg_z) { /* the tail: 00 00 ff ff */
          int rc = dx__pmd_decompress(c->pmd, NULL, 0, 1, opt.size, inflate_sink, c);
          if (rc) {
            conn_fail(c, rc == 2 ? "echoed payload differs from the one sent"
                                 : "cannot inflate the echo");
            return -1;
          }
        }
        if (c->state == C_OPEN) {
          unsigned want = opt.binary ? DX__OP_BINARY : DX__OP_TEXT;
          if (c->msg_op != want || c->msg_len != opt.size) {
            conn_fail(c, "echo has the wrong type or length");
            return -1;
          }
          on_message_complete(c);
          if (c->fd < 0) return -1;
        }
      }
    }
  }
  return 0;
}

static int raw_consume(struct conn *c, const uint8_t *p, size_t len) {
  if (opt.mode == M_HANDSHAKE) {
    c->raw_got += len;
    if (c->raw_got > B.req_len) {
      conn_fail(c, "more bytes echoed than sent");
      return -1;
    }
    if (c->raw_got == B.req_len) { /* reply complete: the server closes */
      c->state = C_WAIT_EOF;
      c->deadline = now_ns() + 1000000000u;
    }
    return 0;
  }
  if (c->state != C_OPEN) return 0; /* draining after our FIN */
  while (len) {
    size_t take = opt.size - c->raw_got;
    if (take > len) take = len;
    const uint8_t *want = B.payload[c->ring_count ? c->var[c->ring_head] : 0];
    if (opt.verify && memcmp(p, want + c->raw_got, take)) {
      conn_fail(c, "echoed bytes differ from the ones sent");
      return -1;
    }
    c->raw_got += take;
    p += take;
    len -= take;
    if (c->raw_got == opt.size) {
      c->raw_got = 0;
      on_message_complete(c);
      if (c->fd < 0) return -1;
    }
  }
  return 0;
}

/* Checks every Sec-WebSocket-Extensions line of the 101 head (NUL-
 * terminated in c->hs) against our offer. With --deflate the server must
 * have accepted permessage-deflate (and no context takeover, when that was
 * asked): otherwise the run would measure something else. Creates the
 * connection's codec. Returns -1, with the reason in c->hs, if not. */
static int check_extensions(struct conn *c) {
  const char *vals[8];
  size_t lens[8], n = 0;
  for (char *l = strstr(c->hs, "\r\n"); l; l = strstr(l + 2, "\r\n")) {
    if (strncasecmp(l + 2, "Sec-WebSocket-Extensions:", 25)) continue;
    if (n == 8) break;
    const char *v = l + 2 + 25;
    const char *e = strstr(v, "\r\n");
    vals[n] = v;
    lens[n++] = e ? (size_t)(e - v) : strlen(v);
  }
  dx__pmd_params params;
  char why[128];
  int r = dx__pmd_client_verify(&B.pmd_cfg, vals, lens, n, &params, why, sizeof why);
  if (r == 0 && opt.deflate) snprintf(why, sizeof why, "server declined permessage-deflate");
  if (r == 1 && opt.no_takeover && !params.server_no_context_takeover)
    snprintf(why, sizeof why, "server kept server context takeover");
  else if (r == 1 && !(c->pmd = dx__pmd_new(&params, &B.pmd_cfg, 0, &dx__alloc_std)))
    die("out of memory");
  if (c->pmd || (r == 0 && !opt.deflate)) return 0;
  snprintf(c->hs, HS_MAX, "%s", why);
  return -1;
}

/* Checks the upgrade response in c->hs once the head is complete. Returns
 * the offset of the first byte after it, 0 if incomplete, -1 if bad. */
static long check_101(struct conn *c) {
  c->hs[c->hs_len] = 0;
  char *end = strstr(c->hs, "\r\n\r\n");
  if (!end) return c->hs_len >= HS_MAX - 1 ? -1 : 0;
  *end = 0;
  if (strncmp(c->hs, "HTTP/1.1 101 ", 13) && strcmp(c->hs, "HTTP/1.1 101"))
    return -1;
  const char *accept = NULL;
  for (char *l = strstr(c->hs, "\r\n"); l; l = strstr(l + 2, "\r\n")) {
    if (!strncasecmp(l + 2, "Sec-WebSocket-Accept:", 21)) {
      accept = l + 2 + 21;
      break;
    }
  }
  if (!accept) return -1;
  while (*accept == ' ' || *accept == '\t') accept++;
  size_t alen = strlen(WS_ACCEPT);
  if (strncmp(accept, WS_ACCEPT, alen)) return -1;
  accept += alen;
  while (*accept == ' ' || *accept == '\t') accept++;
  if (*accept && strncmp(accept, "\r\n", 2)) return -1;
  if (check_extensions(c) < 0) return -1;
  return (end + 4) - c->hs;
}

/* Returns -1 if the connection is gone. */
static int consume(struct conn *c, const uint8_t *p, size_t len) {
  if (c->state == C_UPGRADING) {
    size_t room = HS_MAX - 1 - c->hs_len;
    size_t take = len < room ? len : room;
    memcpy(c->hs + c->hs_len, p, take);
    size_t before = c->hs_len;
    c->hs_len += take;
    long r = check_101(c);
    if (r < 0) {
      char why[160];
      char *nl = strchr(c->hs, '\r');
      if (nl) *nl = 0;
      snprintf(why, sizeof why, "upgrade refused or malformed: \"%.100s\"", c->hs);
      conn_fail(c, why);
      return -1;
    }
    if (r == 0) return 0;
    size_t used = (size_t)r - before;
    if (opt.mode == M_IDLE) { /* thousands of these: give the memory back */
      free(c->hs);
      c->hs = NULL;
    }
    on_open(c);
    if (c->fd < 0) return -1;
    p += used;
    len -= used;
    if (!len) return 0;
  }
  return opt.raw ? raw_consume(c, p, len) : ws_consume(c, p, len);
}

static void on_eof(struct conn *c) {
  if (c->state == C_WAIT_EOF || (opt.raw && c->state == C_CLOSING)) {
    conn_done(c);
    return;
  }
  conn_fail(c, "server closed the TCP connection");
}

/* SSL_read hands out at most one record at a time, so a short read says
 * nothing about the socket: read until OpenSSL wants more from it. */
static void tls_read(struct conn *c) {
  for (;;) {
    int n = SSL_read(c->ssl, B.rbuf, B.rbuf_size > INT32_MAX ? INT32_MAX : (int)B.rbuf_size);
    if (n > 0) {
      if (consume(c, B.rbuf, (size_t)n) < 0) return;
      continue;
    }
    int e = SSL_get_error(c->ssl, n);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) break;
    if (e == SSL_ERROR_ZERO_RETURN) { /* close_notify, or EOF (see tls_init) */
      on_eof(c);
      return;
    }
    char why[160];
    unsigned long code = ERR_get_error();
    snprintf(why, sizeof why, "SSL_read: %s",
             code ? ERR_reason_error_string(code) : strerror(errno));
    ERR_clear_error();
    conn_fail(c, why);
    return;
  }
  flush(c);
}

static void do_read(struct conn *c, uint32_t ev) {
  if (c->ssl) {
    tls_read(c);
    return;
  }
  for (;;) {
    ssize_t n = recv(c->fd, B.rbuf, B.rbuf_size, 0);
    if (n > 0) {
      if (consume(c, B.rbuf, (size_t)n) < 0) return;
      /* Edge-triggered: a short read drained the socket, unless the
       * peer's FIN or an error is pending, which must be read too. */
      if ((size_t)n < B.rbuf_size && !(ev & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)))
        break;
    } else if (n == 0) {
      on_eof(c);
      return;
    } else if (errno == EINTR) {
      continue;
    } else if (errno == EAGAIN) {
      break;
    } else {
      char why[96];
      snprintf(why, sizeof why, "recv: %s", strerror(errno));
      conn_fail(c, why);
      return;
    }
  }
  flush(c);
}

static void on_event(struct conn *c, uint32_t ev) {
  if (c->state == C_CONNECTING) {
    int err = 0;
    socklen_t l = sizeof err;
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
    if (err) {
      char why[96];
      snprintf(why, sizeof why, "connect: %s", strerror(err));
      conn_fail(c, why);
      return;
    }
    if (!(ev & EPOLLOUT)) return;
    on_connected(c);
    return; /* nothing can have arrived before we sent */
  }
  if (c->state == C_TLS) { /* either direction may move it on */
    tls_step(c);
    if (c->fd < 0 || c->state == C_TLS) return;
  }
  if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
    do_read(c, ev);
    if (c->fd < 0) return;
  }
  if (ev & EPOLLOUT) flush(c);
}

/* Times out connections stuck in a state; called a few times a second. */
static void check_deadlines(uint64_t now) {
  for (int i = 0; i < B.nconns; i++) {
    struct conn *c = &B.c[i];
    if (!c->deadline || now < c->deadline) continue;
    if (c->state == C_FREE) { /* a failed handshake cycle, backed off */
      c->deadline = 0;
      conn_start(c);
    } else if (c->state == C_WAIT_EOF) { /* server never closed TCP: we do */
      if (opt.mode == M_HANDSHAKE) B.no_close++;
      conn_done(c);
    } else if (c->state == C_CONNECTING) {
      conn_fail(c, "connect timed out");
    } else {
      conn_fail(c, "timed out");
    }
  }
}

static int poll_once(int timeout_ms) {
  struct epoll_event evs[512];
  int n = epoll_wait(B.ep, evs, 512, timeout_ms);
  B.woke = now_ns();
  if (n < 0) {
    if (errno == EINTR) return 0;
    die("epoll_wait: %s", strerror(errno));
  }
  for (int i = 0; i < n; i++) {
    struct conn *c = evs[i].data.ptr;
    if (c->fd >= 0) on_event(c, evs[i].events);
  }
  return n;
}

/* Runs the loop until `until` (monotonic ns), checking deadlines. If
 * `done` is given, returns early once it is true. */
static void run_until(uint64_t until, int (*done)(void)) {
  static uint64_t next_check;
  for (;;) {
    uint64_t now = now_ns();
    if (now >= until || (done && done())) return;
    if (now >= next_check) {
      check_deadlines(now);
      next_check = now + 100000000u;
    }
    uint64_t left_ms = (until - now) / 1000000u + 1;
    poll_once(left_ms > 100 ? 100 : (int)left_ms);
  }
}

static int all_open(void) { return B.opened == B.nconns; }
static int all_closed(void) { return B.closed >= B.nconns; }
static int none_in_flight(void) { return B.in_flight == 0; }

/* Stops generating load, lets the echoes in flight arrive (up to 1 s), then
 * closes every connection politely: a close frame (WebSocket) or a FIN
 * (raw), and waits up to 2 s for the server to close its side. */
static void shut_down(void) {
  B.stopping = 1;
  run_until(now_ns() + 1000000000u, none_in_flight);
  B.closed = 0;
  for (int i = 0; i < B.nconns; i++) {
    struct conn *c = &B.c[i];
    if (c->fd < 0) {
      B.closed++;
    } else if (c->state == C_OPEN) {
      if (opt.raw) {
        shutdown(c->fd, SHUT_WR);
      } else {
        queue_close(c);
        flush(c);
      }
      if (c->fd >= 0) {
        c->state = C_CLOSING;
        c->deadline = 0;
      }
    } else if (c->state != C_WAIT_EOF) {
      conn_release(c);
      B.closed++;
    }
  }
  run_until(now_ns() + 2000000000u, all_closed);
  for (int i = 0; i < B.nconns; i++)
    if (B.c[i].fd >= 0) conn_release(&B.c[i]);
}

/* ------------------------------------------------------------------ */
/* Modes                                                               */
/* ------------------------------------------------------------------ */

static void setup(int nconns, size_t out_cap, size_t rbuf) {
  B.ep = epoll_create1(EPOLL_CLOEXEC);
  if (B.ep < 0) die("epoll_create1: %s", strerror(errno));
  B.nconns = nconns;
  B.c = calloc((size_t)nconns, sizeof *B.c);
  B.rbuf_size = rbuf;
  B.rbuf = malloc(rbuf);
  if (!B.c || !B.rbuf) die("out of memory");
  for (int i = 0; i < nconns; i++) {
    struct conn *c = &B.c[i];
    c->fd = -1;
    if (out_cap) {
      c->cap = out_cap;
      if (!(c->out = malloc(out_cap))) die("out of memory");
    }
    if (opt.mode == M_ECHO || opt.echo_once) {
      c->sent = malloc(sizeof(uint64_t) * (size_t)opt.inflight);
      c->var = malloc((size_t)opt.inflight);
      if (!c->sent || !c->var) die("out of memory");
      /* Connections start at different points of the rotation, so the
       * server sees every variant at any moment. */
      c->next_var = (unsigned)i % (unsigned)B.npayload;
    }
  }
}

static const char *transport(void) { return opt.raw ? "raw" : opt.tls ? "wss" : "ws"; }

/* What the output line needs to say about --json, --deflate and --tls. */
static void print_wire_options(void) {
  if (opt.json) printf(" json=%d", B.npayload);
  if (opt.deflate) printf(" deflate=%s", opt.no_takeover ? "no-takeover" : "takeover");
  if (opt.deflate) printf(" client_level=%d", opt.zlevel);
  if (opt.tls) printf(" tls=%s", B.tls_info[0] ? B.tls_info : "?");
}

static void run_echo(void) {
  size_t per_msg = opt.size + DX__FRAME_MAX_HEADER;
  setup(opt.conns, per_msg * (size_t)opt.inflight + 512,
        opt.size >= 65536 ? 256 * 1024 : 64 * 1024);
  for (int i = 0; i < B.nconns; i++) conn_start(&B.c[i]);
  run_until(now_ns() + 30000000000u, all_open);
  if (!all_open()) die("only %d of %d connections opened in 30 s", B.opened, B.nconns);

  run_until(now_ns() + (uint64_t)(opt.warmup * 1e9), NULL);
  memset(&hist, 0, sizeof hist);
  B.msgs = 0;
  B.tx_plain = B.tx_wire = B.rx_plain = B.rx_wire = B.rx_z = 0;
  B.measuring = 1;
  double srv0 = opt.pid ? proc_cpu_s(opt.pid) : -1, cli0 = self_cpu_s();
  uint64_t t0 = now_ns();
  run_until(t0 + (uint64_t)(opt.seconds * 1e9), NULL);
  uint64_t t1 = now_ns();
  B.measuring = 0;
  double srv1 = opt.pid ? proc_cpu_s(opt.pid) : -1, cli1 = self_cpu_s();
  double secs = (double)(t1 - t0) / 1e9;
  shut_down();

  double mps = (double)B.msgs / secs;
  printf("mode=echo transport=%s conns=%d inflight=%d size=%zu binary=%d "
         "seconds=%.2f msgs=%llu msgs_per_s=%.0f mb_per_s=%.2f p50_us=%.1f "
         "p99_us=%.1f max_us=%.1f client_cpu=%.2f",
         transport(), opt.conns, opt.inflight, opt.size, opt.binary, secs,
         (unsigned long long)B.msgs, mps, mps * (double)opt.size / 1e6,
         hist_pct_us(0.50), hist_pct_us(0.99), (double)hist.max / 1000.0,
         (cli1 - cli0) / secs);
  if (srv0 >= 0 && srv1 >= 0) printf(" server_cpu=%.2f", (srv1 - srv0) / secs);
  print_wire_options();
  if (opt.deflate && B.tx_plain && B.rx_plain)
    printf(" tx_ratio=%.3f rx_ratio=%.3f rx_compressed=%.3f",
           (double)B.tx_wire / (double)B.tx_plain, (double)B.rx_wire / (double)B.rx_plain,
           B.msgs ? (double)B.rx_z / (double)B.msgs : 0.0);
  printf("\n");
}

static void run_handshake(void) {
  setup(opt.conns, 512, 16 * 1024);
  for (int i = 0; i < B.nconns; i++) conn_start(&B.c[i]);
  run_until(now_ns() + (uint64_t)(opt.warmup * 1e9), NULL);
  memset(&hist, 0, sizeof hist);
  B.cycles = 0;
  uint64_t err0 = B.errors;
  B.measuring = 1;
  double srv0 = opt.pid ? proc_cpu_s(opt.pid) : -1, cli0 = self_cpu_s();
  uint64_t t0 = now_ns();
  run_until(t0 + (uint64_t)(opt.seconds * 1e9), NULL);
  uint64_t t1 = now_ns();
  B.measuring = 0;
  double srv1 = opt.pid ? proc_cpu_s(opt.pid) : -1, cli1 = self_cpu_s();
  double secs = (double)(t1 - t0) / 1e9;
  B.stopping = 1; /* cycles in progress are abandoned */
  for (int i = 0; i < B.nconns; i++)
    if (B.c[i].fd >= 0) conn_release(&B.c[i]);
  if (!B.cycles) die("no handshake completed (%llu errors)", (unsigned long long)B.errors);

  printf("mode=handshake transport=%s conns=%d seconds=%.2f handshakes=%llu "
         "handshakes_per_s=%.0f p50_us=%.1f p99_us=%.1f max_us=%.1f errors=%llu "
         "server_no_close=%llu client_cpu=%.2f",
         transport(), opt.conns, secs, (unsigned long long)B.cycles,
         (double)B.cycles / secs, hist_pct_us(0.50), hist_pct_us(0.99),
         (double)hist.max / 1000.0, (unsigned long long)(B.errors - err0),
         (unsigned long long)B.no_close, (cli1 - cli0) / secs);
  if (srv0 >= 0 && srv1 >= 0) printf(" server_cpu=%.2f", (srv1 - srv0) / secs);
  print_wire_options();
  printf("\n");
}

static int idle_target;
static int idle_ready(void) { return B.opened >= idle_target; }

/* Opens connections until `target` are upgraded, at most --burst
 * handshakes at a time so the listen backlog never overflows (a dropped SYN
 * costs a 1 s retransmit, not memory), then lets the server settle. */
static void idle_open(int target, uint64_t give_up) {
  idle_target = target;
  while (!idle_ready()) {
    while (B.started < target && B.pending < opt.burst) {
      B.pending++;
      conn_start(&B.c[B.started++]);
    }
    uint64_t now = now_ns();
    if (now > give_up) die("only %d of %d connections opened", B.opened, target);
    run_until(now + 5000000u, idle_ready);
  }
}

static long rss_after_settle(double settle) {
  run_until(now_ns() + (uint64_t)(settle * 1e9), NULL);
  long kb = proc_rss_kb(opt.pid);
  if (kb < 0) die("cannot read /proc/%ld/status: server gone?", opt.pid);
  return kb;
}

/* Two figures: the whole RSS growth per connection, and the marginal cost
 * between the first tenth and all N, which leaves out one-time costs the
 * first connections trigger (buffers, tables allocated on first use). */
static void run_idle(void) {
  if (!opt.pid) die("--mode idle needs --pid SERVERPID");
  setup(opt.conns, 0, 16 * 1024);
  long before = proc_rss_kb(opt.pid);
  if (before < 0) die("cannot read /proc/%ld/status", opt.pid);
  uint64_t t0 = now_ns(), give_up = t0 + 120000000000u;
  int first = opt.conns / 10;
  long at_first = before;
  if (first > 0) {
    idle_open(first, give_up);
    at_first = rss_after_settle(opt.settle / 4);
  }
  uint64_t t1 = now_ns();
  idle_open(opt.conns, give_up);
  double open_s = (double)(now_ns() - t1) / 1e9;
  long after = rss_after_settle(opt.settle);
  int alive = 0;
  for (int i = 0; i < B.nconns; i++) alive += B.c[i].fd >= 0;
  if (alive != B.nconns) die("%d of %d idle connections were closed", B.nconns - alive, B.nconns);
  /* A plain TCP close is enough here: the figures are already taken. */
  for (int i = 0; i < B.nconns; i++) conn_release(&B.c[i]);
  printf("mode=idle transport=%s conns=%d rss_before_kb=%ld rss_first_tenth_kb=%ld "
         "rss_after_kb=%ld bytes_per_conn=%.0f marginal_bytes_per_conn=%.0f "
         "open_per_s=%.0f",
         transport(), opt.conns, before, at_first, after,
         (double)(after - before) * 1024.0 / opt.conns,
         (double)(after - at_first) * 1024.0 / (opt.conns - first),
         (opt.conns - first) / (open_s > 0 ? open_s : 1e-9));
  if (opt.echo_once) printf(" echo_once=%zu", opt.size);
  print_wire_options();
  printf("\n");
}

/* ------------------------------------------------------------------ */
/* Payloads                                                            */
/* ------------------------------------------------------------------ */

/* JSON-like text for --json: an array of records with the same keys and
 * values drawn from small vocabularies plus numbers, the way API responses
 * and event streams look. Keys and vocabulary repeat within a message
 * (what deflate finds without context takeover) and across variants (what
 * context takeover adds); ids, scores, times and word order differ, so
 * neither is close to 100%. A fixed seed per variant keeps the bytes the
 * same from run to run and server to server. */
static uint64_t gen_state;
static unsigned gen(unsigned n) { /* splitmix64, reduced to [0, n) */
  uint64_t z = (gen_state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return (unsigned)((z ^ (z >> 31)) % n);
}

static const char *const names[] = {
    "alice", "bruno", "chen", "dalia", "emeka", "fatima", "goran", "hana",
    "ivan", "jun", "kofi", "lena", "mateo", "nadia", "oskar", "priya"};
static const char *const roles[] = {"viewer", "editor", "admin", "owner", "guest"};
static const char *const tags[] = {"alpha", "beta", "ops", "billing", "mobile", "web",
                                   "eu", "us", "apac", "trial", "vip", "legacy"};
static const char *const words[] = {
    "order", "shipped", "delayed", "refund", "invoice", "customer", "warehouse",
    "priority", "update", "address", "payment", "failed", "retry", "confirmed",
    "package", "return", "label", "carrier", "tracking", "note", "account",
    "review", "pending", "approved", "limit", "quota", "session", "device",
    "login", "token", "expired", "renewed"};
#define NEL(a) (sizeof(a) / sizeof(a)[0])

/* One record; returns its length (buf has room for 512 bytes). */
static int json_record(char *buf) {
  const char *who = names[gen(NEL(names))];
  unsigned suffix = gen(100);
  int n = snprintf(buf, 512,
                   "{\"id\":%u,\"user\":\"%s.%u\",\"email\":\"%s.%u@example.org\","
                   "\"active\":%s,\"role\":\"%s\",\"score\":%u.%02u,"
                   "\"tags\":[\"%s\",\"%s\"],\"created\":\"2024-%02u-%02uT%02u:%02u:%02uZ\","
                   "\"geo\":{\"lat\":%d.%04u,\"lon\":%d.%04u},\"note\":\"",
                   100000 + gen(900000), who, suffix, who, suffix,
                   gen(4) ? "true" : "false", roles[gen(NEL(roles))], gen(100), gen(100),
                   tags[gen(NEL(tags))], tags[gen(NEL(tags))], 1 + gen(12), 1 + gen(28),
                   gen(24), gen(60), gen(60), (int)gen(180) - 90, gen(10000),
                   (int)gen(360) - 180, gen(10000));
  for (unsigned w = 0, nw = 3 + gen(6); w < nw; w++)
    n += snprintf(buf + n, (size_t)(512 - n), "%s%s", w ? " " : "", words[gen(NEL(words))]);
  n += snprintf(buf + n, (size_t)(512 - n), "\"}");
  return n;
}

/* Fills out[0..size) with "[record,record,...]", padded with spaces before
 * the closing bracket to exactly size bytes (JSON allows the whitespace). */
static void json_fill(uint8_t *out, size_t size, unsigned variant) {
  gen_state = 0x5EED0000u + variant;
  size_t len = 0;
  out[len++] = '[';
  char rec[512];
  for (;;) {
    int n = json_record(rec);
    size_t need = (len > 1 ? 1 : 0) + (size_t)n + 1; /* comma, record, ']' */
    if (len + need > size) break;
    if (len > 1) out[len++] = ',';
    memcpy(out + len, rec, (size_t)n);
    len += (size_t)n;
  }
  while (len < size - 1) out[len++] = ' ';
  out[len] = ']';
}

static void make_payloads(void) {
  size_t psize = opt.size ? opt.size : 1;
  B.npayload = opt.json ? opt.variants : 1;
  for (int v = 0; v < B.npayload; v++) {
    uint8_t *p = malloc(psize);
    if (!p) die("out of memory");
    if (opt.json) {
      json_fill(p, psize, (unsigned)v);
    } else {
      /* Text payloads are ASCII so they are valid UTF-8; binary ones are
       * random so a server cannot get away with treating them as text. */
      for (size_t i = 0; i < psize; i++)
        p[i] = opt.binary && !opt.raw ? (uint8_t)rng_u32() : (uint8_t)('a' + i % 26);
    }
    B.payload[v] = p;
  }
}

/* The client context for --tls: no certificate check (a benchmark on
 * loopback), TLS 1.2 or later, writes that may return after part of the
 * buffer and be retried from a buffer that has moved (ours is compacted). */
static void tls_init(void) {
  B.tls = SSL_CTX_new(TLS_client_method());
  if (!B.tls) die("SSL_CTX_new failed");
  SSL_CTX_set_min_proto_version(B.tls, TLS1_2_VERSION);
  SSL_CTX_set_verify(B.tls, SSL_VERIFY_NONE, NULL);
  SSL_CTX_set_mode(B.tls, SSL_MODE_ENABLE_PARTIAL_WRITE |
                              SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  /* Without read-ahead OpenSSL reads each record's 5-byte header and its
   * body with two recv() calls; with it, whatever the socket holds at
   * once. The client's cost is not what is measured: keep it low. */
  SSL_CTX_set_read_ahead(B.tls, 1);
  /* A server that closes TCP without close_notify after the WebSocket
   * close handshake is not an error here: read it as EOF. */
  SSL_CTX_set_options(B.tls, SSL_OP_IGNORE_UNEXPECTED_EOF);
}

/* ------------------------------------------------------------------ */

static double parse_num(const char *s, const char *name) {
  char *end;
  double v = strtod(s, &end);
  if (end == s || *end || v < 0) {
    fprintf(stderr, "wsbench: bad value for %s: %s\n", name, s);
    usage();
  }
  return v;
}

int main(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    int has = i + 1 < argc;
#define ARG(name) (!strcmp(a, name) && (has || (usage(), 0)))
    if (ARG("--host")) opt.host = argv[++i];
    else if (ARG("--port")) opt.port = (int)parse_num(argv[++i], a);
    else if (ARG("--path")) opt.path = argv[++i];
    else if (ARG("--mode")) {
      const char *m = argv[++i];
      if (!strcmp(m, "echo")) opt.mode = M_ECHO;
      else if (!strcmp(m, "handshake")) opt.mode = M_HANDSHAKE;
      else if (!strcmp(m, "idle")) opt.mode = M_IDLE;
      else usage();
    }
    else if (ARG("--conns")) opt.conns = (int)parse_num(argv[++i], a);
    else if (ARG("--inflight")) opt.inflight = (int)parse_num(argv[++i], a);
    else if (ARG("--size")) opt.size = (size_t)parse_num(argv[++i], a);
    else if (ARG("--seconds")) opt.seconds = parse_num(argv[++i], a);
    else if (ARG("--warmup")) opt.warmup = parse_num(argv[++i], a);
    else if (ARG("--settle")) opt.settle = parse_num(argv[++i], a);
    else if (ARG("--burst")) opt.burst = (int)parse_num(argv[++i], a);
    else if (ARG("--pid")) opt.pid = (long)parse_num(argv[++i], a);
    else if (!strcmp(a, "--binary")) opt.binary = 1;
    else if (!strcmp(a, "--raw")) opt.raw = 1;
    else if (!strcmp(a, "--no-verify")) opt.verify = 0;
    else if (!strcmp(a, "--deflate")) opt.deflate = 1;
    else if (!strcmp(a, "--deflate-no-takeover")) opt.deflate = opt.no_takeover = 1;
    else if (ARG("--deflate-level")) opt.zlevel = atoi(argv[++i]);
    else if (!strcmp(a, "--json")) opt.json = 1;
    else if (ARG("--variants")) opt.variants = (int)parse_num(argv[++i], a);
    else if (!strcmp(a, "--tls")) opt.tls = 1;
    else if (!strcmp(a, "--echo-once")) opt.echo_once = 1;
    else usage();
#undef ARG
  }
  if (opt.conns < 0) opt.conns = opt.mode == M_HANDSHAKE ? 16 : opt.mode == M_IDLE ? 1000 : 1;
  if (opt.conns < 1 || opt.inflight < 1 || opt.burst < 1 || opt.port < 1 ||
      opt.port > 65535 || opt.seconds <= 0)
    usage();
  if (opt.mode == M_ECHO && opt.size < 1) usage();
  if (opt.variants < 1 || opt.variants > (int)NEL(B.payload)) usage();
  if (opt.zlevel < -1 || opt.zlevel > 9) usage();
  if (opt.echo_once && (opt.mode != M_IDLE || opt.size < 1)) usage();
  if (opt.mode == M_IDLE) opt.inflight = 1;
  if (opt.json && (opt.binary || opt.size < 2)) {
    fprintf(stderr, "wsbench: --json is text and needs --size of at least 2\n");
    usage();
  }
  if (opt.raw && (opt.deflate || opt.tls)) {
    fprintf(stderr, "wsbench: --raw goes with neither --deflate nor --tls\n");
    usage();
  }
  signal(SIGPIPE, SIG_IGN);
  rng_seed();
  raise_nofile(opt.conns + 64);
  make_payloads();
  if (opt.tls) tls_init();

  /* Our offer: the codec's own, i.e. permessage-deflate;
   * client_max_window_bits, plus the two no_context_takeover parameters
   * with --deflate-no-takeover. */
  dx__pmd_config_defaults(&B.pmd_cfg);
  B.pmd_cfg.enabled = (uint8_t)opt.deflate;
  B.pmd_cfg.server_no_context_takeover = (uint8_t)opt.no_takeover;
  B.pmd_cfg.client_no_context_takeover = (uint8_t)opt.no_takeover;
  B.pmd_cfg.level = (int8_t)opt.zlevel; /* our compressor only */
  char ext[DX__PMD_HEADER_MAX + 40] = "";
  if (opt.deflate) {
    char offer[DX__PMD_HEADER_MAX];
    if (!dx__pmd_client_offer(&B.pmd_cfg, offer, sizeof offer)) die("no deflate offer");
    snprintf(ext, sizeof ext, "Sec-WebSocket-Extensions: %s\r\n", offer);
  }

  char req[1024];
  int n = snprintf(req, sizeof req,
                   "GET %s HTTP/1.1\r\n"
                   "Host: %s:%d\r\n"
                   "Upgrade: websocket\r\n"
                   "Connection: Upgrade\r\n"
                   "Sec-WebSocket-Key: " WS_KEY "\r\n"
                   "Sec-WebSocket-Version: 13\r\n"
                   "%s"
                   "\r\n",
                   opt.path, opt.host, opt.port, ext);
  if (n < 0 || (size_t)n >= sizeof req) die("--path too long");
  B.req = req;
  B.req_len = (size_t)n;

  switch (opt.mode) {
  case M_ECHO: run_echo(); break;
  case M_HANDSHAKE: run_handshake(); break;
  case M_IDLE: run_idle(); break;
  }
  return 0;
}
