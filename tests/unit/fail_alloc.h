/* A dx__alloc for tests that fails on purpose: once fail_alloc_left
 * allocations have succeeded, the next ones return NULL (frees always
 * work); -1, the default, never fails. A test sets it, runs the step, and
 * sets it back to -1 (in a teardown, so a failed assertion cannot leave it
 * set for the next test). */
#ifndef DX_TEST_FAIL_ALLOC_H
#define DX_TEST_FAIL_ALLOC_H
#include <stdlib.h>

#include "proto/alloc.h"

static long fail_alloc_left = -1;

static void *fail_alloc_realloc(void *ud, void *p, size_t n) {
  (void)ud;
  if (n == 0) {
    free(p);
    return NULL;
  }
  if (fail_alloc_left == 0) return NULL;
  if (fail_alloc_left > 0) fail_alloc_left--;
  return realloc(p, n);
}

static const dx__alloc A = {fail_alloc_realloc, NULL};
#endif
