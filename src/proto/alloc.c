#include "proto/alloc.h"

#include <stdlib.h>

void *dx__std_realloc(void *ud, void *p, size_t n) {
  (void)ud;
  if (n == 0) {
    free(p);
    return NULL;
  }
  /* malloc directly for a new block: realloc(NULL) costs a call more, and
   * a block is allocated on almost every read (session output). */
  return p ? realloc(p, n) : malloc(n);
}

const dx__alloc dx__alloc_std = {dx__std_realloc, NULL};
