/* The interface between the hub (src/pubsub/hub.c) and an engine that
 * carries its topics to other processes: the in-process default needs no
 * engine at all; the Redis engine (redis.c) is the one implementation.
 *
 * Threading: every call below, in both directions, happens on the engine's
 * loop thread (the loop given to dx_hub_use_redis). The hub posts to that
 * loop when a publish or a subscription change comes from another one. */
#ifndef DX_PUBSUB_ENGINE_H
#define DX_PUBSUB_ENGINE_H
#include <stddef.h>
#include <stdint.h>

#include "duplex.h"

typedef struct dx__engine dx__engine;

/* What an engine reports back to the hub that owns it. */
typedef struct dx__engine_sink {
  /* A message another node published (never one of this node's own: the
   * engine filters those by node id). `data` is valid until it returns. */
  void (*deliver)(void *hub, const char *topic, size_t tlen, dx_msg_type type,
                  const uint8_t *data, size_t len);
  /* The link changed state (DX__ENGINE_*): the hub counts it. While Redis
   * stays away, DOWN and CONNECTING alternate at every attempt; the engine
   * already logs each change worth a line (one line, repeats suppressed),
   * so the hub need not log them again. */
  void (*state)(void *hub, int state);
  void *hub;
  /* The engine's loop was freed first (dx_loop_free cut the engine loose):
   * from now on the hub must post nothing to that loop and call nothing
   * of the engine's but free. Runs on the thread freeing the loop, which
   * is not running, so it may be any thread; NULL: not told. */
  void (*gone)(void *hub);
} dx__engine_sink;

enum { DX__ENGINE_DOWN = 0, DX__ENGINE_CONNECTING = 1, DX__ENGINE_UP = 2 };

typedef struct dx__engine_ops {
  /* Sends a message to the other nodes. 0 when handed to the link (it may
   * still be lost if the link drops before Redis has it), DX_ECLOSED when
   * the link is down, DX_EBUFFER when Redis is not keeping up (the output
   * waiting for it passed the engine's bound), DX_EINVAL (an empty topic,
   * one longer than DX_TOPIC_MAX, or an unknown type), DX_ENOMEM. The hub
   * counts every non-zero return as lost. */
  int (*publish)(dx__engine *e, const char *topic, size_t tlen, dx_msg_type type,
                 const uint8_t *data, size_t len);
  /* This node's first subscriber to a topic came / its last one left. The
   * engine remembers the set and subscribes it again after a reconnect. */
  void (*subscribe)(dx__engine *e, const char *topic, size_t tlen);
  void (*unsubscribe)(dx__engine *e, const char *topic, size_t tlen);
  /* Closes the link and frees the engine (no sink call after it). Not from
   * inside a sink callback. Also valid after the engine's loop was freed
   * (dx_loop_free cut the link loose then). */
  void (*free)(dx__engine *e);
} dx__engine_ops;

struct dx__engine {
  const dx__engine_ops *ops;
};

/* A Redis engine on `loop` for url (see dx_hub_use_redis): returns it
 * already connecting in the background, or NULL with *err set to DX_EURL,
 * DX_EUNSUPPORTED or DX_ENOMEM (and a one-line reason through
 * dx__set_last_error). Call it on the loop's thread, or before the loop
 * runs; no sink call comes before it returns (the first attempt starts in
 * the loop's next iteration). The engine does not keep the loop running
 * (no dx__loop_ref). */
dx__engine *dx__redis_engine_new(dx_loop *loop, const char *url,
                                 const dx__engine_sink *sink, int *err);
#endif
