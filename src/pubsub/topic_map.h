/* A hash map from topic names (bytes) to objects that embed a
 * dx__map_node: open addressing with linear probing and backward-shift
 * deletion, so a lookup touches one or two cache lines and a removal
 * leaves no tombstones. Keys are owned by the objects, not the map. */
#ifndef DX_PUBSUB_TOPIC_MAP_H
#define DX_PUBSUB_TOPIC_MAP_H
#include <stddef.h>
#include <stdint.h>

typedef struct dx__map_node {
  const char *key;
  uint32_t len;
  uint32_t hash;
} dx__map_node;

typedef struct dx__map {
  dx__map_node **slot; /* cap slots, NULL when free */
  uint32_t cap, count; /* cap: 0 or a power of two */
} dx__map;

/* FNV-1a over the bytes (the map stores it in the node). */
uint32_t dx__map_hash(const char *key, size_t len);
/* The node with this key, NULL when none. */
dx__map_node *dx__map_get(const dx__map *m, const char *key, size_t len, uint32_t hash);
/* Inserts a node whose key is not in the map yet (node->hash set).
 * 0, or -1 when out of memory (the map is unchanged). */
int dx__map_put(dx__map *m, dx__map_node *node);
/* Removes a node that is in the map. */
void dx__map_del(dx__map *m, dx__map_node *node);
/* Frees the slot array (not the nodes). */
void dx__map_free(dx__map *m);
#endif
