/* The options object: defaults and setters. */
#include <stdlib.h>

#include "endpoint.h"

dx_options *dx_options_new(void) {
  dx_options *o = malloc(sizeof *o);
  if (o) dx__options_defaults(o);
  return o;
}

void dx_options_free(dx_options *o) { free(o); }

void dx_options_on_open(dx_options *o, dx_on_open cb) { o->on_open = cb; }
void dx_options_on_message(dx_options *o, dx_on_message cb) { o->on_message = cb; }
void dx_options_on_close(dx_options *o, dx_on_close cb) { o->on_close = cb; }
void dx_options_on_ping(dx_options *o, dx_on_control cb) { o->on_ping = cb; }
void dx_options_on_pong(dx_options *o, dx_on_control cb) { o->on_pong = cb; }
void dx_options_on_accept(dx_options *o, dx_on_accept cb) { o->on_accept = cb; }
void dx_options_set_user(dx_options *o, void *user) { o->user = user; }

int dx_options_set_max_message(dx_options *o, uint64_t bytes) {
  /* A message must fit a size_t buffer. */
  if (bytes == 0 || bytes > (uint64_t)SIZE_MAX / 2) return DX_EINVAL;
  o->max_message = bytes;
  return 0;
}

int dx_options_set_max_frame(dx_options *o, uint64_t bytes) {
  if (bytes == 0) return DX_EINVAL;
  o->max_frame = bytes;
  return 0;
}

int dx_options_set_max_header(dx_options *o, size_t bytes) {
  /* Below ~256 bytes no browser's request fits; above 1 MiB is a DoS knob. */
  if (bytes < 256 || bytes > (1u << 20)) return DX_EINVAL;
  o->max_header = (uint32_t)bytes;
  return 0;
}

int dx_options_set_handshake_timeout(dx_options *o, uint32_t ms) {
  o->handshake_timeout_ms = ms;
  return 0;
}

int dx_options_set_close_timeout(dx_options *o, uint32_t ms) {
  if (ms == 0) return DX_EINVAL;
  o->close_timeout_ms = ms;
  return 0;
}
