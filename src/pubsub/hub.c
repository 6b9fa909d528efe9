/* The process-wide part of the pub/sub hub: which loops have subscribers
 * to which topic, the inboxes that carry publishes (and engine commands)
 * from any thread to a loop, and the engine that carries them to other
 * processes. One mutex guards all of it; it is held for lookups and queue
 * appends only, never while a loop delivers. */
#include <stdlib.h>
#include <string.h>

#include "pubsub/hub_internal.h"

#define RELAXED memory_order_relaxed

dx_hub *dx_hub_new(void) {
  dx_hub *h = calloc(1, sizeof *h);
  if (!h) return NULL;
  if (pthread_mutex_init(&h->mu, NULL)) {
    free(h);
    return NULL;
  }
  atomic_init(&h->engine_state, -1);
  return h;
}

static void msg_unref(dx__pubmsg *m) {
  if (atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel) == 1) free(m);
}

void dx_hub_free(dx_hub *h) {
  if (!h) return;
  if (h->engine) h->engine->ops->free(h->engine);
  for (unsigned i = 0; i < h->nlocals; i++) {
    dx__local *lo = h->locals[i];
    for (size_t k = 0; k < lo->nin; k++) msg_unref(lo->in[k].m);
    free(lo->in);
    dx__topics_free(lo);
    free(lo);
  }
  for (uint32_t i = 0; i < h->gtopics.cap; i++) free(h->gtopics.slot[i]);
  dx__map_free(&h->gtopics);
  pthread_mutex_destroy(&h->mu);
  free(h);
}

void dx_options_set_hub(dx_options *o, dx_hub *h) {
  if (o) o->hub = h;
}

/* ---- loops -------------------------------------------------------------- */

static dx__local *find_local(dx_hub *h, const dx_loop *loop) {
  for (unsigned i = 0; i < h->nlocals; i++)
    if (h->locals[i]->loop == loop) return h->locals[i];
  return NULL;
}

static dx__local *local_locked(dx_hub *h, dx_loop *loop) {
  dx__local *lo = find_local(h, loop);
  if (lo || h->nlocals == DX__HUB_MAX_LOOPS) return lo;
  if (!(lo = calloc(1, sizeof *lo))) return NULL;
  lo->hub = h;
  lo->loop = loop;
  lo->bit = h->nlocals;
  h->locals[h->nlocals++] = lo;
  return lo;
}

dx__local *dx__hub_local(dx_hub *h, dx_loop *loop) {
  pthread_mutex_lock(&h->mu);
  dx__local *lo = local_locked(h, loop);
  pthread_mutex_unlock(&h->mu);
  return lo;
}

int dx__hub_set_tap(dx_hub *h, dx_loop *loop, dx__hub_tap_fn fn, void *ud, dx__local **out) {
  pthread_mutex_lock(&h->mu);
  dx__local *lo = local_locked(h, loop);
  int r = !lo ? DX_ENOMEM : lo->tap ? DX_ESTATE : 0;
  if (!r) {
    lo->tap = fn;
    lo->tap_ud = ud;
    *out = lo;
  }
  pthread_mutex_unlock(&h->mu);
  return r;
}

void *dx__hub_tap_ud(dx_hub *h, unsigned bit, dx__hub_tap_fn fn, dx_loop **loop) {
  void *ud = NULL;
  pthread_mutex_lock(&h->mu);
  if (bit < h->nlocals && h->locals[bit]->tap == fn) {
    ud = h->locals[bit]->tap_ud;
    *loop = h->locals[bit]->loop;
  }
  pthread_mutex_unlock(&h->mu);
  return ud;
}

int dx__hub_post_tap(dx_hub *h, unsigned bit, dx__hub_tap_fn fn, dx_post_fn run,
                     dx_post_fn drop, void *ud) {
  int r = DX_ECLOSED;
  pthread_mutex_lock(&h->mu);
  if (bit < h->nlocals && h->locals[bit]->tap == fn)
    r = dx__loop_post_owned(h->locals[bit]->loop, run, drop, ud);
  pthread_mutex_unlock(&h->mu);
  return r;
}

void dx__hub_clear_tap(dx__local *lo) {
  pthread_mutex_lock(&lo->hub->mu);
  lo->tap = NULL;
  lo->tap_ud = NULL;
  pthread_mutex_unlock(&lo->hub->mu);
}

/* ---- inboxes ------------------------------------------------------------ */

static void drain(dx_loop *loop, void *ud);

/* Appends to a loop's inbox (hub->mu held), taking a reference to m, and
 * wakes the loop when the inbox was empty. 0 or DX_ENOMEM. */
static int inbox_push(dx__local *lo, uint8_t kind, dx__pubmsg *m) {
  if (lo->nin == lo->capin) {
    size_t cap = lo->capin ? lo->capin * 2 : 16;
    dx__inbox_item *in = realloc(lo->in, cap * sizeof *in);
    if (!in) return DX_ENOMEM;
    lo->in = in;
    lo->capin = cap;
  }
  if (!lo->posted) {
    /* One wake-up carries everything queued until the loop drains. */
    if (dx_loop_post(lo->loop, drain, lo)) return DX_ENOMEM;
    lo->posted = 1;
  }
  atomic_fetch_add_explicit(&m->refs, 1, RELAXED);
  lo->in[lo->nin++] = (dx__inbox_item){kind, m};
  return 0;
}

static void engine_publish(dx_hub *h, const dx__pubmsg *m) {
  int r = h->engine->ops->publish(h->engine, m->topic, m->tlen, m->type, m->data, m->len);
  atomic_fetch_add_explicit(r ? &h->remote_lost : &h->remote_out, 1, RELAXED);
}

/* Runs on the inbox's loop: everything queued for it, in order. */
static void drain(dx_loop *loop, void *ud) {
  (void)loop;
  dx__local *lo = ud;
  dx_hub *h = lo->hub;
  pthread_mutex_lock(&h->mu);
  dx__inbox_item *in = lo->in;
  size_t n = lo->nin;
  lo->in = NULL;
  lo->nin = lo->capin = 0;
  lo->posted = 0;
  pthread_mutex_unlock(&h->mu);
  for (size_t i = 0; i < n; i++) {
    dx__pubmsg *m = in[i].m;
    switch (in[i].kind) {
      case DX__IN_DELIVER:
        dx__topics_fanout(lo, m->topic, m->tlen, m->type, m->data, m->len, NULL);
        if (lo->tap) lo->tap(lo->tap_ud, m->topic, m->tlen, m->type, m->data, m->len);
        break;
      case DX__IN_ENGINE_PUB: engine_publish(h, m); break;
      case DX__IN_ENGINE_SUB: h->engine->ops->subscribe(h->engine, m->topic, m->tlen); break;
      case DX__IN_ENGINE_UNSUB: h->engine->ops->unsubscribe(h->engine, m->topic, m->tlen); break;
    }
    msg_unref(m);
  }
  free(in);
}

static dx__pubmsg *msg_new(const char *topic, size_t tlen, dx_msg_type type, const void *data,
                           size_t len) {
  dx__pubmsg *m = malloc(sizeof *m + tlen + len);
  if (!m) return NULL;
  atomic_init(&m->refs, 1);
  m->type = type;
  m->tlen = (uint32_t)tlen;
  m->len = len;
  memcpy(m->topic, topic, tlen);
  m->data = (uint8_t *)m->topic + tlen;
  if (len) memcpy(m->data, data, len);
  return m;
}

/* ---- process-wide topics ------------------------------------------------ */

/* Tells the engine (hub->mu held); a failure to queue means the engine
 * misses the change until its next reconnect re-subscribes: logged. */
static void engine_cmd(dx_hub *h, uint8_t kind, const char *name, size_t len) {
  if (!h->engine_local) return; /* no engine, or its loop was freed */
  dx__pubmsg *m = msg_new(name, len, DX_TEXT, NULL, 0);
  if (m && inbox_push(h->engine_local, kind, m) == 0) {
    msg_unref(m);
    return;
  }
  if (m) msg_unref(m);
  atomic_fetch_add_explicit(&h->remote_lost, 1, RELAXED);
}

int dx__hub_topic_added(dx__local *lo, const char *name, size_t len, uint32_t hash) {
  dx_hub *h = lo->hub;
  int r = 0;
  pthread_mutex_lock(&h->mu);
  dx__gtopic *g = (dx__gtopic *)dx__map_get(&h->gtopics, name, len, hash);
  if (!g) {
    g = calloc(1, sizeof *g + len);
    if (g) {
      memcpy(g->name, name, len);
      g->node = (dx__map_node){g->name, (uint32_t)len, hash};
    }
    if (!g || dx__map_put(&h->gtopics, &g->node)) {
      free(g);
      r = DX_ENOMEM;
      goto out;
    }
    engine_cmd(h, DX__IN_ENGINE_SUB, name, len);
  }
  g->loops |= 1ull << lo->bit;
out:
  pthread_mutex_unlock(&h->mu);
  return r;
}

void dx__hub_topic_removed(dx__local *lo, const char *name, size_t len, uint32_t hash) {
  dx_hub *h = lo->hub;
  pthread_mutex_lock(&h->mu);
  dx__gtopic *g = (dx__gtopic *)dx__map_get(&h->gtopics, name, len, hash);
  if (g) {
    g->loops &= ~(1ull << lo->bit);
    if (!g->loops) {
      dx__map_del(&h->gtopics, &g->node);
      free(g);
      engine_cmd(h, DX__IN_ENGINE_UNSUB, name, len);
    }
  }
  pthread_mutex_unlock(&h->mu);
}

/* ---- publishing --------------------------------------------------------- */

/* Delivers on every loop with subscribers (the calling thread's own loop
 * at once) and, when `forward`, hands the message to the engine. */
static int publish(dx_hub *h, const char *topic, size_t tlen, dx_msg_type type, const void *data,
                   size_t len, const dx_conn *exclude, int forward) {
  dx__pubmsg *m = msg_new(topic, tlen, type, data, len);
  if (!m) return DX_ENOMEM;
  dx_loop *cur = dx__loop_current();
  dx__local *here = NULL;
  int r = 0;
  pthread_mutex_lock(&h->mu);
  dx__gtopic *g = (dx__gtopic *)dx__map_get(&h->gtopics, topic, tlen, dx__map_hash(topic, tlen));
  uint64_t loops = g ? g->loops : 0;
  for (unsigned i = 0; loops && i < h->nlocals; i++) {
    if (!(loops & (1ull << i))) continue;
    dx__local *lo = h->locals[i];
    /* The calling loop delivers at once, unless its inbox still holds
     * earlier messages that must go first. */
    if (lo->loop == cur && lo->nin == 0) {
      here = lo;
      continue;
    }
    if (inbox_push(lo, DX__IN_DELIVER, m)) r = DX_ENOMEM;
  }
  if (forward && h->engine) {
    /* With the engine's loop freed, nothing reaches the engine any more:
     * lost, as while its link is down. */
    int pr = h->engine_local ? inbox_push(h->engine_local, DX__IN_ENGINE_PUB, m) : DX_ECLOSED;
    if (pr) atomic_fetch_add_explicit(&h->remote_lost, 1, RELAXED);
    if (pr == DX_ENOMEM) r = DX_ENOMEM;
  }
  pthread_mutex_unlock(&h->mu);
  if (here) {
    dx__topics_fanout(here, topic, tlen, type, m->data, len, exclude);
    if (here->tap) here->tap(here->tap_ud, topic, tlen, type, m->data, len);
  }
  msg_unref(m);
  return r;
}

int dx_publish(dx_hub *h, const char *topic, size_t tlen, dx_msg_type type, const void *data,
               size_t len, const dx_conn *exclude) {
  if (!h || !topic || tlen == 0 || tlen > DX_TOPIC_MAX || (type != DX_TEXT && type != DX_BINARY) ||
      (!data && len))
    return DX_EINVAL;
  int r = publish(h, topic, tlen, type, data, len, exclude, 1);
  if (r == 0) atomic_fetch_add_explicit(&h->publishes, 1, RELAXED);
  return r;
}

/* ---- the engine -------------------------------------------------------- */

/* Another node's message (on the engine's loop): delivered here, never
 * handed back to the engine. */
static void engine_deliver(void *hub, const char *topic, size_t tlen, dx_msg_type type,
                           const uint8_t *data, size_t len) {
  dx_hub *h = hub;
  atomic_fetch_add_explicit(&h->remote_in, 1, RELAXED);
  if (publish(h, topic, tlen, type, data, len, NULL, 0))
    atomic_fetch_add_explicit(&h->slow_drops, 1, RELAXED); /* no memory to pass it on */
}

static void engine_state(void *hub, int state) {
  dx_hub *h = hub;
  atomic_store_explicit(&h->engine_state, state, RELAXED);
  if (state != DX__ENGINE_UP) return;
  if (h->engine_was_up) atomic_fetch_add_explicit(&h->engine_reconnects, 1, RELAXED);
  h->engine_was_up = 1; /* the engine's loop thread only */
}

/* The engine's loop is being freed (the hub stays): from now on nothing
 * is posted to it, since that loop's memory is about to go, and what
 * would have gone to the engine is counted as lost. Under the lock, so a
 * post in progress on another thread finishes first. */
static void engine_gone(void *hub) {
  dx_hub *h = hub;
  pthread_mutex_lock(&h->mu);
  h->engine_local = NULL;
  atomic_store_explicit(&h->engine_state, DX__ENGINE_DOWN, RELAXED);
  pthread_mutex_unlock(&h->mu);
}

int dx_hub_use_redis(dx_hub *h, dx_loop *loop, const char *url) {
  if (!h || !loop || !url) return DX_EINVAL;
  pthread_mutex_lock(&h->mu);
  int busy = h->engine != NULL || h->sink.hub != NULL;
  dx__local *lo = busy ? NULL : local_locked(h, loop);
  if (lo) h->sink = (dx__engine_sink){engine_deliver, engine_state, h, engine_gone};
  pthread_mutex_unlock(&h->mu);
  if (busy) return DX_ESTATE;
  if (!lo) return DX_ENOMEM;
  int err = 0;
  dx__engine *e = dx__redis_engine_new(loop, url, &h->sink, &err);
  pthread_mutex_lock(&h->mu);
  if (!e) {
    h->sink.hub = NULL;
    pthread_mutex_unlock(&h->mu);
    return err ? err : DX_ENOMEM;
  }
  h->engine = e;
  h->engine_local = lo;
  atomic_store_explicit(&h->engine_state, DX__ENGINE_CONNECTING, RELAXED);
  /* Topics that have subscribers already: the engine learns them now. */
  for (uint32_t i = 0; i < h->gtopics.cap; i++) {
    dx__gtopic *g = (dx__gtopic *)h->gtopics.slot[i];
    if (g) engine_cmd(h, DX__IN_ENGINE_SUB, g->name, g->node.len);
  }
  pthread_mutex_unlock(&h->mu);
  return 0;
}

void dx_hub_get_stats(dx_hub *h, dx_hub_stats *out) {
  out->publishes = atomic_load_explicit(&h->publishes, RELAXED);
  out->deliveries = atomic_load_explicit(&h->deliveries, RELAXED);
  out->slow_drops = atomic_load_explicit(&h->slow_drops, RELAXED);
  out->remote_in = atomic_load_explicit(&h->remote_in, RELAXED);
  out->remote_out = atomic_load_explicit(&h->remote_out, RELAXED);
  out->remote_lost = atomic_load_explicit(&h->remote_lost, RELAXED);
  out->engine_reconnects = atomic_load_explicit(&h->engine_reconnects, RELAXED);
  out->engine_state = atomic_load_explicit(&h->engine_state, RELAXED);
  pthread_mutex_lock(&h->mu);
  out->topics = h->gtopics.count;
  pthread_mutex_unlock(&h->mu);
}
