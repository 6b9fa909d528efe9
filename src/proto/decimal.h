/* Writes unsigned integers in decimal without the printf machinery: the
 * numbers of every response (a Content-Length, a status, a packet id) are
 * written per message, and snprintf's format parsing cost a tenth of a
 * Socket.IO polling server's instructions. */
#ifndef DX_PROTO_DECIMAL_H
#define DX_PROTO_DECIMAL_H
#include <stddef.h>
#include <stdint.h>

/* The most digits dx__decimal writes: those of 2^64 - 1. */
#define DX__DECIMAL_MAX 20

/* Writes v's digits at out (no sign, no NUL); returns how many. */
static inline size_t dx__decimal(char out[DX__DECIMAL_MAX], uint64_t v) {
  char tmp[DX__DECIMAL_MAX]; /* backwards */
  size_t n = 0;
  do {
    tmp[n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  for (size_t i = 0; i < n; i++) out[i] = tmp[n - 1 - i];
  return n;
}
#endif
