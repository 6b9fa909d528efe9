/* sio_load — the load client of bench/socketio.sh (see sio_load.c for the
 * modes and the figures). Two layers, one file each:
 *
 *   sio_wire.c   an Engine.IO v4 client over WebSocket (masked frames from
 *                duplex's codec) or over HTTP long-polling (a GET held
 *                open and a POST, each on its own keep-alive connection):
 *                opens the session, answers pings, and hands Socket.IO
 *                packets (the text after the '4') up.
 *   sio_load.c   Socket.IO on top (CONNECT, events, acks), the modes, the
 *                epoll loop, the measurements and the output line.
 *
 * One thread, edge-triggered epoll. Every descriptor's epoll data points
 * to its sl_tcp. */
#ifndef BENCH_SIO_LOAD_H
#define BENCH_SIO_LOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
  uint8_t *p;
  size_t len, cap;
} sl_buf;

enum sl_role { SL_WS, SL_GET, SL_POST };
enum sl_tstate {
  ST_CLOSED,
  ST_CONNECTING, /* TCP connect in progress */
  ST_UPGRADING,  /* WebSocket: request sent, awaiting the 101 */
  ST_OPEN        /* WebSocket frames flow / HTTP: ready for a request */
};

typedef struct sl_client sl_client;

/* One TCP connection. */
typedef struct sl_tcp {
  sl_client *cl;
  int fd;
  uint8_t role, state;
  bool busy;       /* HTTP: a request awaits its response */
  size_t scanned;  /* head bytes already searched for the blank line */
  sl_buf in, out;
  size_t out_head; /* out[out_head..len) is not written yet */
} sl_tcp;

/* One Socket.IO client (one Engine.IO session). */
struct sl_client {
  unsigned idx;
  bool polling;
  bool opened;       /* Engine.IO open packet received */
  bool ready;        /* Socket.IO CONNECT answered */
  bool dirty;        /* queued output: on the flush list */
  sl_tcp a;          /* the WebSocket, or the polling GET */
  sl_tcp p;          /* polling: the POST connection */
  char sid[32];      /* polling: the Engine.IO session id */
  sl_buf postq;      /* polling: packets awaiting the next POST */
  /* sio_load.c's */
  uint32_t next_id;  /* the next ack id */
  unsigned head, count; /* echo: the ring of messages in flight */
  uint64_t *sent_at;
  uint32_t *ids;
  uint64_t fan_next; /* fanout subscriber: the number of the message due */
  bool joined;
};

/* ---- sio_wire.c ---- */
typedef struct {
  const char *host;  /* numeric IPv4 */
  int port;
  const char *path;  /* "/socket.io/" */
} sl_target;

void sl_wire_init(int epfd, const sl_target *t);
/* Starts the Engine.IO session: connects (and upgrades, or polls). */
void sl_wire_start(sl_client *c);
/* Queues a Socket.IO packet (without the Engine.IO '4'). */
void sl_wire_send(sl_client *c, const char *pkt, size_t n);
/* Writes what every client queued since the last call. */
void sl_wire_flush_all(void);
/* Handles epoll events for one connection. */
void sl_wire_event(sl_tcp *t, uint32_t ev);

/* ---- sio_load.c: what the wire calls ---- */
/* The Engine.IO session is open: time for the Socket.IO CONNECT. */
void sl_on_open(sl_client *c);
/* A Socket.IO packet arrived (the text after the Engine.IO '4'). */
void sl_on_packet(sl_client *c, const char *p, size_t n);
/* The run fails: prints why and exits 1 (a figure with errors means
 * nothing to the scripts). */
void sl_fail(sl_client *c, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));

#endif
