/*
 * The load generator behind `duplex bench` (src/cli/bench.c) and
 * bench/wsbench (bench/wsbench.c): one single-threaded, edge-triggered
 * epoll loop driving many client connections to an echo server.
 *
 * It speaks RFC 6455 as a client with duplex's own sans-IO pieces (the
 * upgrade request and response from src/proto/handshake.h, masked frames
 * from src/proto/frame.h, permessage-deflate from src/proto/deflate.h), or
 * plain TCP (`raw`, for the raw echo reference), so one client and one code
 * path drive every server measured. TLS is OpenSSL on the same loop.
 *
 * Modes:
 *   echo       `conns` connections, `inflight` messages in flight on each,
 *              `size`-byte messages; every echo is checked (type, length
 *              and, with `verify`, content). Latency runs from queueing a
 *              message to parsing the last byte of its echo.
 *   handshake  `conns` concurrent loops of connect, upgrade (101 checked),
 *              close handshake (1000), the server's TCP close, close.
 *   idle       `conns` upgraded connections opened (at most `burst`
 *              handshakes at a time) and held for `duration_ms`; with a
 *              server PID, its VmRSS before and after.
 *   fanout     `conns` subscribers and one publisher, all on the same
 *              path (a room of `duplex serve --rooms`), opened like idle
 *              ones; then the publisher keeps `inflight` messages in
 *              flight, a message being in flight until every subscriber
 *              has it. Each carries its sequence number in its first 16
 *              bytes (hex); every delivery is checked (type, length, the
 *              next number in order for that subscriber, the bytes).
 *              Counts deliveries (messages received by subscribers).
 *
 * Files: bench_run.c (bench_run, the phases of each mode), bench_life.c
 * (what each mode does when a connection opens, fails, ends, times out),
 * bench_loop.c (the epoll loop and the progress tick), bench_conn.c
 * (sockets: connect, send, receive), bench_tls.c (the same over OpenSSL),
 * bench_ws.c (the upgrade, frames in and out), bench_payload.c (what is
 * sent), bench_stats.c (latency histogram, error kinds, /proc readers).
 */
#ifndef DUPLEX_CLI_BENCH_H
#define DUPLEX_CLI_BENCH_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

typedef enum { BENCH_ECHO, BENCH_HANDSHAKE, BENCH_IDLE, BENCH_FANOUT } bench_mode;

/* What the progress callback is shown once a second. */
typedef struct {
  bench_mode mode;
  uint64_t elapsed_ms;  /* since bench_run started */
  const char *phase;    /* "connecting", "warm-up", "measuring", "holding",
                           "closing" */
  double rate;          /* echoes/s or handshakes/s over the last second */
  unsigned held;        /* connections upgraded and open now */
  unsigned want;        /* connections asked for */
  double p50_us, p99_us; /* over the last second; 0 without samples */
  uint64_t errors;      /* so far */
} bench_progress;

typedef struct {
  bench_mode mode;
  /* Where: the address to connect to, and what the request says. */
  struct sockaddr_storage addr;
  socklen_t addr_len;
  const char *host_header;  /* Host: value ("example.com:8080") */
  const char *path;         /* request target, "/..." */
  bool raw;                 /* plain TCP instead of WebSocket */
  bool tls;                 /* wss:// */
  const char *tls_host;     /* SNI and the name checked; NULL for neither */
  const char *ca;           /* CA file; NULL: the system's */
  bool insecure;            /* no certificate check */
  const char *tls_groups;   /* key exchange groups offered, OpenSSL's
                               "X25519:P-256" form; NULL: OpenSSL's list */
  /* What: the load. */
  unsigned conns;           /* connections (handshake: concurrent cycles) */
  unsigned inflight;        /* echo: messages in flight per connection */
  unsigned burst;           /* idle: handshakes at a time */
  size_t size;              /* message size */
  bool binary;              /* binary messages (random bytes), else text */
  bool verify;              /* compare every echoed byte */
  bool deflate;             /* offer permessage-deflate; required */
  bool no_takeover;         /* ... with no context takeover both ways */
  int zlevel;               /* our compressor's zlib level, -1..9 */
  unsigned json_variants;   /* text is JSON-like, this many variants; 0: no */
  bool echo_once;           /* idle: one message each way before idling */
  /* How long: echo and handshake measure duration_ms after warmup_ms;
   * idle holds the connections duration_ms. */
  uint32_t duration_ms, warmup_ms;
  uint32_t timeout_ms;      /* connect + upgrade, one echo, close */
  long pid;                 /* the server's PID for CPU and memory; 0: none */
  bool strict;              /* echo/idle: the first connection error ends
                               the run (a figure with failures means
                               nothing to the benchmark scripts) */
  volatile sig_atomic_t *stop; /* when set (a signal handler), wind down */
  void (*progress)(const bench_progress *p, void *ud); /* once a second */
  void *progress_ud;
} bench_config;

/* fanout: message n carries n in its first BENCH_SEQ_LEN bytes, in hex;
 * messages are at least that long. */
#define BENCH_SEQ_LEN 16

#define BENCH_ERROR_KINDS 12

typedef struct {
  char name[112];  /* "connection refused", "handshake: HTTP 404 Not Found" */
  uint64_t count;
} bench_error;

typedef struct {
  double seconds;           /* the measured window (idle: the hold) */
  uint64_t msgs;            /* echo: echoes in the window; handshake: cycles;
                               fanout: messages every subscriber received */
  uint64_t deliveries;      /* fanout: messages subscribers received in the
                               window */
  /* echo, over the whole run: sent == echoed + lost + unanswered */
  uint64_t sent, echoed;
  uint64_t lost;            /* in flight on connections that failed */
  uint64_t unanswered;      /* not echoed within 1 s of the end */
  uint64_t no_close;        /* handshake: the server never closed TCP */
  double p50_us, p90_us, p99_us, max_us; /* echo: message round trips;
                                            handshake: cycles; idle: upgrades */
  uint64_t samples;
  double client_cpu;        /* CPU seconds per second */
  double server_cpu;        /* < 0: unknown */
  uint64_t tx_plain, tx_wire, rx_plain, rx_wire, rx_z; /* echo, measured */
  unsigned opened;          /* upgrades completed before the load started */
  unsigned held;            /* idle: still open at the end */
  unsigned first;           /* idle: open at rss_first_kb */
  long rss_before_kb, rss_first_kb, rss_after_kb; /* -1: unknown */
  double open_per_s;        /* idle: upgrades/s after the first tenth */
  char tls_info[96];        /* protocol/cipher/group of the first TLS connection */
  uint64_t errors;          /* failed connections or cycles */
  int n_kinds;
  bench_error kinds[BENCH_ERROR_KINDS]; /* most frequent first after the run */
  char fatal[256];          /* why the run as a whole failed; "" if not */
} bench_result;

/* Runs one benchmark. Returns 0 with *res filled, or -1 with res->fatal set
 * to a one-line reason (and the rest of *res as far as it got): the set-up
 * failed, nothing worked (no connection upgraded, no echo came back, no
 * handshake completed), or `strict` saw an error. cfg is only read. */
int bench_run(const bench_config *cfg, bench_result *res);

/* The name of a mode ("echo"). */
const char *bench_mode_name(bench_mode m);

#endif
