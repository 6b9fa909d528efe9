#include "proto/alloc.h"

#include <stdlib.h>

void *dx__std_realloc(void *ud, void *p, size_t n) {
  (void)ud;
  if (n == 0) {
    free(p);
    return NULL;
  }
  return realloc(p, n);
}

const dx__alloc dx__alloc_std = {dx__std_realloc, NULL};
