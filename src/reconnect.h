/* The reconnecting client's pure parts (src/reconnect.c), exposed so the
 * unit tests can check the backoff and the default rule exactly. */
#ifndef DX_RECONNECT_H
#define DX_RECONNECT_H
#include <stdint.h>

#include "duplex.h"

/* The delay before attempt n (1, 2, ...; 0 counts as 1):
 * min(max_ms, initial_ms * 2^(n-1)), moved by randomization * u of itself,
 * u in [-1, 1] (a uniform draw), rounded to the nearest ms. */
uint32_t dx__reconnect_delay(uint32_t initial_ms, uint32_t max_ms,
                             double randomization, unsigned n, double u);
/* A uniform draw in [-1, 1) from a splitmix64 state. */
double dx__reconnect_unit(uint64_t *state);
/* The default rule of duplex.h: 1 to reconnect after a connection that
 * ended with these values (and that this side did not close), else 0. */
int dx__reconnect_default(int code, dx_why why, int http_status);
#endif
