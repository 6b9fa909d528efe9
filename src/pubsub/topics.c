/* One loop's topic index and the connections' subscriptions: a topic lists
 * its members, a connection lists its topics, and each entry knows its
 * place in the other list, so subscribing, unsubscribing and a
 * connection's end cost O(1) per topic, and a publish O(1) per member.
 * Everything here runs on the loop's own thread. */
#include <stdlib.h>
#include <string.h>

#include "proto/deflate.h"
#include "proto/frame.h"
#include "pubsub/hub_internal.h"

static int valid_topic(const char *topic, size_t len) {
  return topic && len > 0 && len <= DX_TOPIC_MAX;
}

static dx__topic *topic_get(dx__local *lo, const char *name, size_t len, uint32_t hash) {
  dx__map_node *n = dx__map_get(&lo->topics, name, len, hash);
  return n ? (dx__topic *)n : NULL;
}

static void topic_drop(dx__local *lo, dx__topic *t) {
  dx__map_del(&lo->topics, &t->node);
  dx__hub_topic_removed(lo, t->name, t->node.len, t->node.hash);
  free(t->m);
  free(t);
}

/* Squeezes out the members that left during a fan-out. */
static void topic_compact(dx__topic *t) {
  uint32_t k = 0;
  for (uint32_t i = 0; i < t->n; i++) {
    if (!t->m[i].c) continue;
    t->m[k] = t->m[i];
    dx__subs *s = (dx__subs *)dx__conn_get_ext(t->m[k].c);
    s->s[t->m[k].slot].pos = k;
    k++;
  }
  t->n = k;
  t->holes = 0;
}

/* Takes member `pos` out of t (the connection's entry is the caller's). */
static void topic_remove(dx__local *lo, dx__topic *t, uint32_t pos) {
  if (t->busy) {
    /* A fan-out walks the array: leave a hole, no moves under it. */
    t->m[pos].c = NULL;
    t->holes++;
    return;
  }
  t->m[pos] = t->m[--t->n];
  if (pos < t->n) {
    dx__subs *s = (dx__subs *)dx__conn_get_ext(t->m[pos].c);
    s->s[t->m[pos].slot].pos = pos;
  }
  if (t->n == 0) topic_drop(lo, t);
}

/* Takes subscription `slot` out of the connection's list, and it out of
 * the topic. */
static void sub_remove(dx__subs *s, uint32_t slot) {
  struct dx__sub e = s->s[slot];
  s->s[slot] = s->s[--s->n];
  if (slot < s->n) s->s[slot].t->m[s->s[slot].pos].slot = slot;
  topic_remove(s->local, e.t, e.pos);
}

static void release(dx_conn *c) {
  dx__subs *s = (dx__subs *)dx__conn_get_ext(c);
  while (s->n) sub_remove(s, s->n - 1);
  free(s->s);
  free(s);
  dx__conn_set_ext(c, NULL);
}

static int grow(void **p, uint32_t *cap, size_t elem) {
  uint32_t ncap = *cap ? *cap * 2 : 4;
  if (ncap < *cap) return DX_ENOMEM;
  void *np = realloc(*p, (size_t)ncap * elem);
  if (!np) return DX_ENOMEM;
  *p = np;
  *cap = ncap;
  return 0;
}

/* The connection's entry for t, or -1 when it does not hold t: a walk of
 * the shorter of the two lists (a connection with many topics joining a
 * small room, or the reverse). */
static int64_t find_slot(const dx__subs *s, const dx__topic *t, const dx_conn *c) {
  if (s->n <= t->n) {
    for (uint32_t i = 0; i < s->n; i++)
      if (s->s[i].t == t) return i;
    return -1;
  }
  for (uint32_t i = 0; i < t->n; i++)
    if (t->m[i].c == c) return t->m[i].slot;
  return -1;
}

int dx_subscribe(dx_conn *c, const char *topic, size_t len) {
  if (!c || !valid_topic(topic, len)) return DX_EINVAL;
  struct dx_hub *h = dx__conn_options(c)->hub;
  if (!h || !dx__conn_server(c)) return DX_EINVAL;
  if (dx_conn_state(c) != DX_OPEN) return DX_ESTATE;
  dx__subs *s = (dx__subs *)dx__conn_get_ext(c);
  if (!s) {
    dx__local *lo = dx__hub_local(h, dx_conn_loop(c));
    if (!lo || !(s = calloc(1, sizeof *s))) return DX_ENOMEM;
    s->ext.release = release;
    s->local = lo;
    if (dx__conn_set_ext(c, &s->ext)) {
      free(s);
      return DX_ENOMEM;
    }
  }
  dx__local *lo = s->local;
  uint32_t hash = dx__map_hash(topic, len);
  dx__topic *t = topic_get(lo, topic, len, hash);
  if (t && find_slot(s, t, c) >= 0) return 0; /* a no-op */
  if (s->n == s->cap && grow((void **)&s->s, &s->cap, sizeof s->s[0])) return DX_ENOMEM;
  if (!t) {
    t = calloc(1, sizeof *t + len);
    if (!t) return DX_ENOMEM;
    memcpy(t->name, topic, len);
    t->node = (dx__map_node){t->name, (uint32_t)len, hash};
    if (dx__map_put(&lo->topics, &t->node)) {
      free(t);
      return DX_ENOMEM;
    }
    if (dx__hub_topic_added(lo, topic, len, hash)) {
      dx__map_del(&lo->topics, &t->node);
      free(t);
      return DX_ENOMEM;
    }
  }
  if (t->n == t->cap && grow((void **)&t->m, &t->cap, sizeof t->m[0])) {
    if (t->n == 0) topic_drop(lo, t);
    return DX_ENOMEM;
  }
  t->m[t->n] = (dx__member){c, s->n};
  s->s[s->n++] = (struct dx__sub){t, t->n++};
  return 0;
}

int dx_unsubscribe(dx_conn *c, const char *topic, size_t len) {
  if (!c || !valid_topic(topic, len)) return DX_EINVAL;
  dx__subs *s = (dx__subs *)dx__conn_get_ext(c);
  if (!s) return 0;
  dx__topic *t = topic_get(s->local, topic, len, dx__map_hash(topic, len));
  int64_t slot = t ? find_slot(s, t, c) : -1;
  if (slot >= 0) sub_remove(s, (uint32_t)slot);
  return 0;
}

size_t dx_conn_topics(const dx_conn *c) {
  const dx__subs *s = c ? (const dx__subs *)dx__conn_get_ext(c) : NULL;
  return s ? s->n : 0;
}

/* A frame of the message (a server's frames are unmasked, so the same
 * bytes suit every subscriber), one reference held by the caller. */
static dx__shbuf *frame_new(dx_msg_type type, const uint8_t *data, size_t len, int compressed) {
  dx__shbuf *b = malloc(sizeof *b + DX__FRAME_MAX_HEADER + len);
  if (!b) return NULL;
  unsigned op = type == DX_TEXT ? DX__OP_TEXT : DX__OP_BINARY;
  size_t h = dx__frame_write_header(b->data, 1, compressed ? DX__RSV1 : 0, op, NULL, len);
  if (len) memcpy(b->data + h, data, len);
  b->len = h + len;
  b->refs = 1;
  b->compressed = (uint8_t)compressed;
  return b;
}

/* The message compressed alone for window `bits`, framed; NULL when that
 * cannot be done (the caller sends it uncompressed instead). */
static dx__shbuf *frame_compressed(dx__local *lo, const dx_options *o, int bits,
                                   dx_msg_type type, const uint8_t *data, size_t len) {
  dx__pmd **zc = &lo->zc[bits - 8];
  if (!*zc) {
    dx__pmd_params p = {0, 0, (uint8_t)bits, 15};
    *zc = dx__pmd_new(&p, &o->pmd, 1, &dx__alloc_std);
    if (!*zc) return NULL;
  }
  dx__pmd_forget(*zc); /* alone: nothing before it may be referred to */
  const uint8_t *z;
  size_t zlen;
  if (dx__pmd_compress(*zc, data, len, &z, &zlen)) return NULL;
  return frame_new(type, z, zlen, 1);
}

size_t dx__topics_fanout(dx__local *lo, const char *topic, size_t tlen, dx_msg_type type,
                         const uint8_t *data, size_t len, const dx_conn *exclude) {
  dx__topic *t = topic_get(lo, topic, tlen, dx__map_hash(topic, tlen));
  if (!t) return 0;
  /* One frame per form the subscribers need: plain, and compressed for
   * each window a subscriber agreed (made when first needed). */
  dx__shbuf *plain = NULL, *z[8] = {0};
  uint8_t zfailed = 0; /* windows that could not compress: send plain */
  size_t delivered = 0, dropped = 0;
  t->busy++;
  uint32_t n = t->n; /* members who join meanwhile wait for the next one */
  for (uint32_t i = 0; i < n; i++) {
    dx_conn *c = t->m[i].c;
    if (!c || c == exclude) continue;
    int bits = dx__conn_deflate_window(c);
    dx__shbuf *b = NULL;
    if (bits && len >= dx__conn_options(c)->pmd.threshold && !(zfailed & (1u << (bits - 8)))) {
      dx__shbuf **zb = &z[bits - 8];
      if (!*zb && !(*zb = frame_compressed(lo, dx__conn_options(c), bits, type, data, len)))
        zfailed |= (uint8_t)(1u << (bits - 8));
      b = *zb;
    }
    if (!b && !plain) plain = frame_new(type, data, len, 0);
    if (!b) b = plain;
    int r = b ? dx__conn_send_shared(c, b) : DX_ENOMEM;
    if (r >= 0) delivered++;
    else if (r == DX_EBUFFER || r == DX_ENOMEM) dropped++;
  }
  t->busy--;
  if (!t->busy && t->holes) {
    topic_compact(t);
    if (t->n == 0) topic_drop(lo, t);
  }
  if (plain) dx__shbuf_unref(plain);
  for (int k = 0; k < 8; k++)
    if (z[k]) dx__shbuf_unref(z[k]);
  atomic_fetch_add_explicit(&lo->hub->deliveries, delivered, memory_order_relaxed);
  if (dropped) atomic_fetch_add_explicit(&lo->hub->slow_drops, dropped, memory_order_relaxed);
  return delivered;
}

void dx__topics_free(dx__local *lo) {
  for (int k = 0; k < 8; k++) dx__pmd_free(lo->zc[k]);
  for (uint32_t i = 0; i < lo->topics.cap; i++) {
    dx__topic *t = (dx__topic *)lo->topics.slot[i];
    if (!t) continue;
    free(t->m);
    free(t);
  }
  dx__map_free(&lo->topics);
}
