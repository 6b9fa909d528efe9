/* The load generator's internals, shared by its files (see bench.h for
 * which file does what). One bench_ctx per run; every connection points
 * back to it. */
#ifndef DUPLEX_CLI_BENCH_ENGINE_H
#define DUPLEX_CLI_BENCH_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "bench.h"
#include "bench_stats.h"
#include "proto/deflate.h"
#include "proto/frame.h"
#include "proto/handshake.h"

enum bench_cstate {
  BC_FREE,       /* no socket (a failed one may be waiting to retry) */
  BC_CONNECTING, /* TCP connect in progress */
  BC_TLS,        /* TLS handshake in progress */
  BC_UPGRADING,  /* request sent, waiting for the 101 */
  BC_OPEN,       /* data flows */
  BC_CLOSING,    /* our close frame (or FIN when raw) sent */
  BC_WAIT_EOF    /* close frames exchanged; the server closes TCP first */
};

#define BENCH_HS_MAX 4096 /* largest upgrade response accepted */

typedef struct bench_ctx bench_ctx;

typedef struct bench_conn {
  bench_ctx *b;
  int fd;
  enum bench_cstate state;
  bool counted;      /* counted in bench_ctx.opened */
  bool pending;      /* counted in bench_ctx.pending */
  bool down;         /* failed while the connections were being opened */
  uint64_t t_start;  /* when this connection (or cycle) began */
  uint64_t deadline; /* 0, or when the current state times out (or, in
                        BC_FREE, when to retry) */
  /* outgoing bytes not yet written: out[head..tail) */
  uint8_t *out;
  size_t head, tail, cap;
  /* the upgrade response being read */
  char *hs;
  size_t hs_len;
  /* frame parser */
  uint8_t hdr[DX__FRAME_MAX_HEADER];
  uint8_t hdr_len;
  uint8_t in_frame;  /* a header was parsed, payload bytes remain */
  uint8_t frame_op, frame_fin;
  uint8_t in_msg;    /* inside a (possibly fragmented) data message */
  uint8_t msg_op;
  uint8_t msg_z;     /* the current message is compressed (RSV1) */
  uint8_t msg_var;   /* which payload variant it must echo */
  uint64_t frame_left;
  uint64_t msg_len;  /* payload bytes of the current message so far */
  uint64_t msg_wire; /* ... as they came over the wire (compressed) */
  uint8_t ctl[125];
  uint8_t ctl_len;
  uint64_t raw_got;  /* raw: bytes of the current echo received */
  /* send times and payload variants of the messages in flight: a ring of
   * cfg->inflight */
  uint64_t *sent;
  uint8_t *var;
  unsigned ring_head, ring_count;
  unsigned next_var;
  SSL *ssl;
  dx__pmd *pmd;      /* permessage-deflate, once the server accepted it */
  uint64_t fan_next; /* fanout subscriber: the number of the message due */
} bench_conn;

struct bench_ctx {
  const bench_config *cfg;
  bench_result *res;
  int ep;
  bench_conn *c;
  unsigned nconns;
  uint8_t *payload[256]; /* the messages connections send, in rotation */
  unsigned npayload;
  SSL_CTX *tls;
  dx__pmd_config pmd_cfg;  /* what we offer */
  char key[DX__WS_KEY_LEN + 1];
  char accept[DX__WS_ACCEPT_LEN + 1]; /* what the server must answer */
  char *req;               /* the upgrade request (raw: the handshake bytes) */
  size_t req_len;
  uint8_t *rbuf;
  size_t rbuf_size;
  uint64_t timeout_ns;
  uint64_t t0;             /* when the run began */
  uint64_t rng;            /* xorshift64* state for masking keys */
  /* connections */
  unsigned opened;   /* upgraded and open now */
  unsigned ever;     /* upgrades completed, all run long */
  unsigned pending;  /* connecting or upgrading (idle pacing) */
  unsigned started;  /* idle: connections started so far */
  unsigned down;     /* failed while opening, not retried yet */
  unsigned closed;   /* closed in the final phase */
  bool loading;      /* echo: the load has started (late opens join in) */
  bool measuring;    /* samples count only while set */
  bool stopping;     /* no new messages or cycles */
  bool failed;       /* res->fatal is set: wind down */
  const char *phase;
  /* counters (echo: messages; handshake: cycles) */
  uint64_t in_flight;
  uint64_t msgs;     /* completed while measuring */
  uint64_t events;   /* completed, all run long (the progress rate) */
  uint64_t sent, echoed, lost;
  uint64_t no_close;
  uint64_t tx_plain, tx_wire, rx_plain, rx_wire, rx_z;
  bench_hist hist;   /* while measuring */
  bench_hist tick;   /* since the last progress tick */
  uint64_t next_tick, tick_events;
  uint64_t next_check;
  uint64_t woke;     /* when epoll_wait last returned */
  /* fanout: the publisher is c[subs], after the subscribers */
  bench_conn *pub;
  unsigned subs;
  uint32_t *fan_got;   /* subscribers that received message n, at n % inflight */
  uint64_t fan_done;   /* messages every subscriber received */
  uint64_t deliveries; /* while measuring */
  uint8_t *fan_msg;    /* the message being published */
};

/* bench_run.c: the run as a whole failed; the loop stops at once. */
void bench_fatal(bench_ctx *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
uint32_t bench_rand(bench_ctx *b);

/* bench_loop.c */
/* Runs the loop until `until` (monotonic ns), a fatal error, the stop flag
 * or, when given, done(b). */
void bench_run_until(bench_ctx *b, uint64_t until, bool (*done)(bench_ctx *b));

/* bench_life.c: what each mode does at each turn of a connection. */
void bench_conn_fail(bench_conn *c, const char *kind);
void bench_conn_done(bench_conn *c);
void bench_on_open(bench_conn *c);
void bench_on_echo(bench_conn *c);  /* a complete, checked echo */
/* fanout: a subscriber received its next message, checked. */
void bench_on_delivery(bench_conn *c);
void bench_on_eof(bench_conn *c);
void bench_on_server_close(bench_conn *c, unsigned code);
void bench_check_deadlines(bench_ctx *b, uint64_t now);
/* The latency timestamp of a message (see bench_life.c). */
uint64_t bench_msg_stamp(bench_ctx *b);

/* bench_conn.c: the socket. */
void bench_conn_start(bench_conn *c);
void bench_conn_release(bench_conn *c);
void bench_on_connected(bench_conn *c);
void bench_flush(bench_conn *c);
void bench_on_event(bench_conn *c, uint32_t ev);
/* Room for `need` more bytes at out + tail; -1 (and a fatal error) when
 * memory ran out. */
int bench_out_reserve(bench_conn *c, size_t need);
void bench_queue_bytes(bench_conn *c, const void *data, size_t len);

/* bench_tls.c */
int bench_tls_init(bench_ctx *b);
void bench_tls_start(bench_conn *c);
void bench_tls_step(bench_conn *c);
void bench_tls_flush(bench_conn *c);
void bench_tls_read(bench_conn *c);

/* bench_ws.c: the WebSocket (or raw) layer. */
int bench_ws_init(bench_ctx *b);
void bench_ws_begin(bench_conn *c);  /* the socket is connected */
/* Feeds bytes from the server. Returns -1 when the connection is gone. */
int bench_consume(bench_conn *c, const uint8_t *p, size_t len);
void bench_queue_msg(bench_conn *c);
void bench_queue_close(bench_conn *c);

/* bench_payload.c: fills b->payload / b->npayload. 0, or -1 (fatal). */
int bench_payload_make(bench_ctx *b);
/* fanout: message n carries n in its first BENCH_SEQ_LEN bytes. */
void bench_seq_write(uint8_t *dst, uint64_t n);
void bench_payload_free(bench_ctx *b);

#endif
