/* CHECK(cond): the fuzz targets' invariant check. Unlike assert() it stays
 * on in every build and aborts, which libFuzzer reports as a crash with the
 * input that caused it. */
#ifndef DX_FUZZ_CHECK_H
#define DX_FUZZ_CHECK_H
#include <stdio.h>
#include <stdlib.h>

#define CHECK(cond)                                                        \
  do {                                                                     \
    if (!(cond)) {                                                         \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__,    \
              #cond);                                                      \
      abort();                                                             \
    }                                                                      \
  } while (0)
#endif
