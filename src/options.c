/* The options object: defaults, setters, and the deep copy an endpoint
 * keeps. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "endpoint.h"
#include "proto/handshake.h"

void dx__options_defaults(dx_options *o) {
  memset(o, 0, sizeof *o);
  o->max_message = 16u << 20;
  o->max_frame = 0; /* 0: same as max_message */
  o->max_header = 8192;
  o->handshake_timeout_ms = 10000;
  o->close_timeout_ms = 5000;
  o->defer_accept = 1;
  /* permessage-deflate is opt-in: it costs memory per connection and CPU
   * per message, which not every deployment wants. */
  o->pmd.enabled = 0;
  o->pmd.server_max_window_bits = 15;
  o->pmd.client_max_window_bits = 15;
  o->pmd.mem_level = 8;
  o->pmd.level = -1;
  o->pmd.threshold = 64;
  o->ping_interval_ms = 25000;
  o->ping_timeout_ms = 20000;
  o->high_water = 1u << 20;
  o->low_water = 256u << 10;
  o->max_buffered = 0; /* 0: twice the max message, see dx__default_max_buffered */
  o->slow_policy = DX_SLOW_CLOSE;
  o->reconnect_initial_ms = 1000;
  o->reconnect_max_ms = 5000;
  o->reconnect_randomization = 0.5;
  o->max_connections = 0; /* the descriptor limit (RLIMIT_NOFILE) is the cap */
  o->max_handshakes = DX__DEFAULT_MAX_HANDSHAKES;
  o->http_max_body = 1u << 20;
  o->http_request_ms = 10000;
  o->http_keepalive_ms = 5000;
}

dx__limits *dx__limits_new(void) {
  dx__limits *l = malloc(sizeof *l);
  if (!l) return NULL;
  atomic_init(&l->conns, 0);
  atomic_init(&l->handshakes, 0);
  atomic_init(&l->refs, 1);
  return l;
}

dx_options *dx_options_new(void) {
  dx_options *o = malloc(sizeof *o);
  if (!o) return NULL;
  dx__options_defaults(o);
  /* The counts every server made from this object shares. */
  if (!(o->limits = dx__limits_new())) {
    free(o);
    return NULL;
  }
  return o;
}

void dx__options_clear(dx_options *o) {
  if (o->limits && atomic_fetch_sub_explicit(&o->limits->refs, 1, memory_order_acq_rel) == 1)
    free(o->limits);
  o->limits = NULL;
  free(o->protocols.p);
  free(o->origins.p);
  free(o->tls_cert);
  free(o->tls_key);
  free(o->tls_ca);
  o->protocols = (dx__strlist){0};
  o->origins = (dx__strlist){0};
  o->tls_cert = o->tls_key = o->tls_ca = NULL;
}

void dx_options_free(dx_options *o) {
  if (!o) return;
  dx__options_clear(o);
  free(o);
}

static int copy_list(dx__strlist *dst, const dx__strlist *src) {
  *dst = (dx__strlist){0};
  if (!src->len) return 0;
  dst->p = malloc(src->len);
  if (!dst->p) return DX_ENOMEM;
  memcpy(dst->p, src->p, src->len);
  dst->len = src->len;
  return 0;
}

static int copy_str(char **dst, const char *src) {
  *dst = NULL;
  if (!src) return 0;
  *dst = strdup(src);
  return *dst ? 0 : DX_ENOMEM;
}

int dx__options_copy(dx_options *dst, const dx_options *src) {
  *dst = *src;
  /* Shared, not copied: see dx__limits. Taken first, as clearing gives it
   * back. */
  if (dst->limits) atomic_fetch_add_explicit(&dst->limits->refs, 1, memory_order_relaxed);
  dst->protocols = dst->origins = (dx__strlist){0};
  dst->tls_cert = dst->tls_key = dst->tls_ca = NULL;
  if (copy_list(&dst->protocols, &src->protocols) ||
      copy_list(&dst->origins, &src->origins) ||
      copy_str(&dst->tls_cert, src->tls_cert) ||
      copy_str(&dst->tls_key, src->tls_key) ||
      copy_str(&dst->tls_ca, src->tls_ca)) {
    dx__options_clear(dst);
    return DX_ENOMEM;
  }
  return 0;
}

static int list_add(dx__strlist *l, const char *name) {
  size_t n = strlen(name) + 1;
  char *p = realloc(l->p, l->len + n);
  if (!p) return DX_ENOMEM;
  memcpy(p + l->len, name, n);
  l->p = p;
  l->len += n;
  return 0;
}

void dx_options_on_open(dx_options *o, dx_on_open cb) { o->on_open = cb; }
void dx_options_on_message(dx_options *o, dx_on_message cb) { o->on_message = cb; }
void dx_options_on_close(dx_options *o, dx_on_close cb) { o->on_close = cb; }
void dx_options_on_ping(dx_options *o, dx_on_control cb) { o->on_ping = cb; }
void dx_options_on_pong(dx_options *o, dx_on_control cb) { o->on_pong = cb; }
void dx_options_on_accept(dx_options *o, dx_on_accept cb) { o->on_accept = cb; }
void dx_options_on_select_protocol(dx_options *o, dx_on_select_protocol cb) {
  o->on_select_protocol = cb;
}
void dx_options_set_user(dx_options *o, void *user) { o->user = user; }
void dx__options_set_sio(dx_options *o, struct dx_sio *io) { o->sio = io; }

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
  /* 0 once meant "no limit": a connection that never finishes its
   * handshake must still end. */
  if (ms == 0) return DX_EINVAL;
  o->handshake_timeout_ms = ms;
  return 0;
}

int dx_options_set_close_timeout(dx_options *o, uint32_t ms) {
  if (ms == 0) return DX_EINVAL;
  o->close_timeout_ms = ms;
  return 0;
}

/* RFC 7230 token characters: what a subprotocol name may hold. */
int dx_options_add_protocol(dx_options *o, const char *name) {
  if (!name || !dx__http_is_token(name, strlen(name))) return DX_EINVAL;
  return list_add(&o->protocols, name);
}

int dx_options_allow_origin(dx_options *o, const char *pattern) {
  if (!pattern || !*pattern) return DX_EINVAL;
  for (const char *p = pattern; *p; p++)
    if ((unsigned char)*p <= 0x20 || *p == 0x7f) return DX_EINVAL;
  return list_add(&o->origins, pattern);
}

static int set_str(char **dst, const char *v) {
  char *c = NULL;
  if (v && !(c = strdup(v))) return DX_ENOMEM;
  free(*dst);
  *dst = c;
  return 0;
}

int dx_options_set_tls_cert(dx_options *o, const char *cert_file, const char *key_file) {
  if (!cert_file || !key_file) return DX_EINVAL;
  if (set_str(&o->tls_cert, cert_file) || set_str(&o->tls_key, key_file)) return DX_ENOMEM;
  return 0;
}

int dx_options_set_tls_ca(dx_options *o, const char *ca_file) {
  return set_str(&o->tls_ca, ca_file);
}

void dx_options_set_tls_insecure(dx_options *o, int insecure) { o->tls_insecure = !!insecure; }

int dx_options_set_deflate(dx_options *o, int enabled) {
  o->pmd.enabled = !!enabled;
  return 0;
}

int dx_options_set_deflate_window_bits(dx_options *o, int server_bits, int client_bits) {
  if (server_bits < 9 || server_bits > 15 || client_bits < 9 || client_bits > 15)
    return DX_EINVAL;
  o->pmd.server_max_window_bits = (uint8_t)server_bits;
  o->pmd.client_max_window_bits = (uint8_t)client_bits;
  return 0;
}

int dx_options_set_deflate_no_context_takeover(dx_options *o, int server, int client) {
  o->pmd.server_no_context_takeover = !!server;
  o->pmd.client_no_context_takeover = !!client;
  return 0;
}

int dx_options_set_deflate_memory(dx_options *o, int mem_level, int level) {
  if (mem_level < 1 || mem_level > 9 || level < -1 || level > 9) return DX_EINVAL;
  o->pmd.mem_level = (uint8_t)mem_level;
  o->pmd.level = (int8_t)level;
  return 0;
}

int dx_options_set_deflate_threshold(dx_options *o, size_t bytes) {
  if (bytes > UINT32_MAX) return DX_EINVAL;
  o->pmd.threshold = (uint32_t)bytes;
  return 0;
}

int dx_options_set_ping(dx_options *o, uint32_t interval_ms, uint32_t timeout_ms) {
  if (interval_ms && !timeout_ms) return DX_EINVAL;
  o->ping_interval_ms = interval_ms;
  o->ping_timeout_ms = timeout_ms;
  return 0;
}

int dx_options_set_watermarks(dx_options *o, size_t high, size_t low) {
  if (low > high) return DX_EINVAL;
  o->high_water = high;
  o->low_water = low;
  return 0;
}

void dx_options_on_drain(dx_options *o, dx_on_drain cb) { o->on_drain = cb; }

int dx_options_set_max_buffered(dx_options *o, size_t bytes, dx_slow_policy policy) {
  if (bytes == 0 || (policy != DX_SLOW_CLOSE && policy != DX_SLOW_CLOSE_RETRY &&
                     policy != DX_SLOW_DROP))
    return DX_EINVAL;
  o->max_buffered = bytes;
  o->slow_policy = policy;
  return 0;
}

int dx_options_set_reuseport(dx_options *o, dx_reuseport mode) {
  if (mode != DX_REUSEPORT_OFF && mode != DX_REUSEPORT_JOIN && mode != DX_REUSEPORT_OPEN)
    return DX_EINVAL;
  o->reuseport = (uint8_t)mode;
  return 0;
}

void dx_options_set_defer_accept(dx_options *o, int on) { o->defer_accept = !!on; }

int dx_options_set_idle_timeout(dx_options *o, uint32_t ms) {
  o->idle_timeout_ms = ms;
  return 0;
}

int dx_options_set_max_connections(dx_options *o, size_t n) {
  o->max_connections = n;
  return 0;
}

int dx_options_set_max_handshakes(dx_options *o, size_t n) {
  o->max_handshakes = n;
  return 0;
}
