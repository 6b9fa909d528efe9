/* The hub's pieces, shared by hub.c (the process-wide part: loops, the
 * cross-thread inboxes, the engine) and topics.c (one loop's topic index
 * and the connections' subscriptions). */
#ifndef DX_PUBSUB_HUB_INTERNAL_H
#define DX_PUBSUB_HUB_INTERNAL_H
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "duplex.h"
#include "endpoint.h"
#include "pubsub/engine.h"
#include "pubsub/topic_map.h"

/* The most loops one hub serves: a topic's loops are a 64-bit mask. */
#define DX__HUB_MAX_LOOPS 64

/* One publish on its way between threads: the topic and payload, not yet
 * framed (each loop frames it once). Reference-counted atomically because
 * several loops' inboxes hold it. */
typedef struct dx__pubmsg {
  atomic_uint refs;
  dx_msg_type type;
  uint32_t tlen;
  size_t len;
  uint8_t *data; /* after the topic, in the same allocation */
  char topic[];
} dx__pubmsg;

typedef void (*dx__hub_tap_fn)(void *ud, const char *topic, size_t tlen, dx_msg_type type,
                               const uint8_t *data, size_t len);

/* What an inbox entry asks of its loop. */
enum {
  DX__IN_DELIVER = 0,   /* fan the message out to this loop's subscribers */
  DX__IN_ENGINE_PUB,    /* hand it to the engine (this is the engine's loop) */
  DX__IN_ENGINE_SUB,    /* the engine subscribes to m->topic */
  DX__IN_ENGINE_UNSUB   /* ... unsubscribes */
};
typedef struct dx__inbox_item {
  uint8_t kind;
  dx__pubmsg *m;
} dx__inbox_item;

typedef struct dx__member {
  dx_conn *c;    /* NULL: left during a fan-out (compacted after it) */
  uint32_t slot; /* its entry in the connection's dx__subs */
} dx__member;

/* A topic with subscribers on one loop. */
typedef struct dx__topic {
  dx__map_node node; /* key: name */
  uint32_t n, cap;   /* members */
  uint32_t busy;     /* fan-outs in progress over it */
  uint32_t holes;    /* members set to NULL while busy */
  dx__member *m;
  char name[];
} dx__topic;

/* The hub on one loop. `topics` belongs to the loop's thread; the inbox
 * to whoever holds hub->mu. */
typedef struct dx__local {
  struct dx_hub *hub;
  dx_loop *loop;
  unsigned bit;      /* its index in hub->locals: the bit in topic masks */
  dx__map topics;    /* dx__topic by name */
  dx__inbox_item *in;
  size_t nin, capin;
  int posted;        /* a drain is posted to the loop and has not run yet */
  /* Compressors for published messages, one per window (8-15) that some
   * subscriber agreed, made on first need: each message is compressed
   * alone, once per window, whatever the number of subscribers. */
  struct dx__pmd *zc[8];
  /* A subscriber that is not a connection (the Socket.IO rooms of this
   * loop, src/eio/): it sees every message delivered on this loop, to
   * topics it registered with dx__hub_topic_added. Loop thread only. */
  dx__hub_tap_fn tap;
  void *tap_ud;
} dx__local;

/* A connection's subscriptions (its dx__conn_ext). */
typedef struct dx__subs {
  dx__conn_ext ext;
  dx__local *local;
  uint32_t n, cap;
  struct dx__sub {
    dx__topic *t;
    uint32_t pos; /* its index in t->m */
  } *s;
} dx__subs;

/* A topic with subscribers somewhere in the process (under hub->mu). */
typedef struct dx__gtopic {
  dx__map_node node;
  uint64_t loops; /* the loops (bits) where it has subscribers */
  char name[];
} dx__gtopic;

struct dx_hub {
  pthread_mutex_t mu;
  dx__local *locals[DX__HUB_MAX_LOOPS];
  unsigned nlocals;
  dx__map gtopics;
  dx__engine *engine;
  dx__local *engine_local; /* the engine's loop */
  dx__engine_sink sink;    /* what the engine calls back */
  atomic_uint_fast64_t publishes, deliveries, slow_drops, remote_in, remote_out,
      remote_lost, engine_reconnects;
  atomic_int engine_state;
  int engine_was_up;
};

/* ---- hub.c ---- */
/* The hub's state on `loop`, created on first use. NULL when out of memory
 * or past DX__HUB_MAX_LOOPS. Any thread. */
dx__local *dx__hub_local(struct dx_hub *h, dx_loop *loop);
/* The loop's first subscriber to a topic came / its last one left: records
 * it process-wide, and tells the engine on the process's first / last.
 * 0 or DX_ENOMEM (first only). */
int dx__hub_topic_added(dx__local *lo, const char *name, size_t len, uint32_t hash);
void dx__hub_topic_removed(dx__local *lo, const char *name, size_t len, uint32_t hash);

/* Sets the loop's tap (see dx__local), creating the loop's hub state. 0,
 * DX_ESTATE (it has one), DX_ENOMEM. On the loop's thread, before the
 * tap's topics are added. */
int dx__hub_set_tap(struct dx_hub *h, dx_loop *loop, dx__hub_tap_fn fn, void *ud,
                    dx__local **out);

/* The ud of the tap `fn` of the loop whose bit is `bit`, and that loop in
 * *loop; NULL when that loop has no such tap (never had, or its owner went
 * away). Any thread. */
void *dx__hub_tap_ud(struct dx_hub *h, unsigned bit, dx__hub_tap_fn fn, dx_loop **loop);
/* Posts run(loop, ud) (drop(NULL, ud) if that loop is freed first, see
 * dx__loop_post_owned) to the loop whose bit is `bit`, if its tap is still
 * `fn`; under the hub's lock, so the tap's owner cannot go away (and its
 * loop be freed) between the check and the post. 0, DX_ECLOSED (no such
 * tap), DX_ENOMEM. Any thread. */
int dx__hub_post_tap(struct dx_hub *h, unsigned bit, dx__hub_tap_fn fn, dx_post_fn run,
                     dx_post_fn drop, void *ud);
/* The loop's bit (its index in the hub). */
static inline unsigned dx__hub_bit(const dx__local *lo) { return lo->bit; }

/* Removes it (the tap's owner goes away), on the loop's thread. */
void dx__hub_clear_tap(dx__local *lo);

/* ---- topics.c ---- */
/* Queues one frame of the message to every subscriber of the topic on this
 * loop but `exclude`. Returns the number of deliveries; counts drops. */
size_t dx__topics_fanout(dx__local *lo, const char *topic, size_t tlen, dx_msg_type type,
                         const uint8_t *data, size_t len, const dx_conn *exclude);
/* Frees the loop's topic index (hub teardown; no connection holds any). */
void dx__topics_free(dx__local *lo);
#endif
