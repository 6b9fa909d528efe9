/* See topic_map.h. */
#include "topic_map.h"

#include <stdlib.h>
#include <string.h>

uint32_t dx__map_hash(const char *key, size_t len) {
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < len; i++) h = (h ^ (uint8_t)key[i]) * 16777619u;
  return h;
}

static int same(const dx__map_node *n, const char *key, size_t len, uint32_t hash) {
  return n->hash == hash && n->len == len && memcmp(n->key, key, len) == 0;
}

dx__map_node *dx__map_get(const dx__map *m, const char *key, size_t len, uint32_t hash) {
  if (!m->cap) return NULL;
  uint32_t mask = m->cap - 1;
  for (uint32_t i = hash & mask;; i = (i + 1) & mask) {
    dx__map_node *n = m->slot[i];
    if (!n) return NULL;
    if (same(n, key, len, hash)) return n;
  }
}

static void place(dx__map_node **slot, uint32_t mask, dx__map_node *n) {
  uint32_t i = n->hash & mask;
  while (slot[i]) i = (i + 1) & mask;
  slot[i] = n;
}

int dx__map_put(dx__map *m, dx__map_node *node) {
  /* At most half full: probes stay short. */
  if ((m->count + 1) * 2 > m->cap) {
    uint32_t cap = m->cap ? m->cap * 2 : 16;
    if (cap < m->cap) return -1;
    dx__map_node **slot = calloc(cap, sizeof *slot);
    if (!slot) return -1;
    for (uint32_t i = 0; i < m->cap; i++)
      if (m->slot[i]) place(slot, cap - 1, m->slot[i]);
    free(m->slot);
    m->slot = slot;
    m->cap = cap;
  }
  place(m->slot, m->cap - 1, node);
  m->count++;
  return 0;
}

void dx__map_del(dx__map *m, dx__map_node *node) {
  uint32_t mask = m->cap - 1;
  uint32_t i = node->hash & mask;
  while (m->slot[i] != node) i = (i + 1) & mask;
  /* Backward shift: pull each later node of the run into the hole when
   * its home slot does not lie between the hole and it (cyclically). */
  for (uint32_t j = (i + 1) & mask; m->slot[j]; j = (j + 1) & mask) {
    uint32_t home = m->slot[j]->hash & mask;
    int stays = i <= j ? (i < home && home <= j) : (i < home || home <= j);
    if (stays) continue;
    m->slot[i] = m->slot[j];
    i = j;
  }
  m->slot[i] = NULL;
  m->count--;
}

void dx__map_free(dx__map *m) {
  free(m->slot);
  m->slot = NULL;
  m->cap = m->count = 0;
}
