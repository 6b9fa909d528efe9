/* The allocator the protocol core is given: it never calls malloc itself,
 * so tests can fail the i-th allocation and embedders can pool memory. */
#ifndef DX_PROTO_ALLOC_H
#define DX_PROTO_ALLOC_H
#include <stddef.h>

typedef struct dx__alloc {
  /* realloc semantics: p NULL allocates, n 0 frees (returns NULL). Returns
   * NULL on failure, leaving p untouched. */
  void *(*realloc)(void *ud, void *p, size_t n);
  void *ud;
} dx__alloc;

/* The C library's allocator, and its function (for a table that embeds an
 * allocator by value: dx__alloc_std is no constant expression). */
extern const dx__alloc dx__alloc_std;
void *dx__std_realloc(void *ud, void *p, size_t n);

static inline void *dx__mem_alloc(const dx__alloc *a, size_t n) {
  return a->realloc(a->ud, NULL, n);
}
static inline void dx__mem_free(const dx__alloc *a, void *p) {
  if (p) a->realloc(a->ud, p, 0);
}
#endif
