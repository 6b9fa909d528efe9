/* The Redis engine's own counters, beyond the engine interface: what the
 * tests and the logs need to say exactly what was delivered, skipped and
 * lost. */
#ifndef DX_PUBSUB_REDIS_H
#define DX_PUBSUB_REDIS_H
#include <stddef.h>
#include <stdint.h>

#include "pubsub/engine.h"

typedef struct dx__redis_stats {
  int state;            /* DX__ENGINE_DOWN / _CONNECTING / _UP */
  uint64_t attempts;    /* connection attempts started */
  uint64_t ups;         /* times the link came up (the first time included) */
  uint64_t published;   /* PUBLISH commands handed to the link */
  uint64_t confirmed;   /* of those, answered by Redis */
  uint64_t unconfirmed; /* of those, unanswered when the link dropped: they
                         * may or may not have reached Redis */
  uint64_t refused;     /* of those, answered with an error (ACL: NOPERM) */
  uint64_t lost_down;   /* publishes while the link was not up (DX_ECLOSED) */
  uint64_t lost_full;   /* publishes past the output bound (DX_EBUFFER) */
  uint64_t received;    /* messages from other nodes handed to the hub */
  uint64_t own;         /* this node's own messages back from Redis, skipped */
  uint64_t malformed;   /* messages on our channels that are no envelope */
  size_t topics;        /* topics this node wants (has subscribers for) */
  char last_error[200]; /* why the last attempt failed or the link dropped */
} dx__redis_stats;

/* Copies e's counters (e from dx__redis_engine_new), on e's loop thread. */
void dx__redis_engine_stats(dx__engine *e, dx__redis_stats *out);

/* Output not yet written to Redis past which a publish is refused with
 * DX_EBUFFER (counted in lost_full) instead of queued. */
#define DX__REDIS_MAX_PENDING ((size_t)8 << 20)

#endif
