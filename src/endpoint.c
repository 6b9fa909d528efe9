/* What a server's connections share (or a client connection owns): the
 * options copy, the session settings, the TLS context; and the random
 * bytes every client draws masking keys from. */
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>

#include "endpoint.h"
#include "net/resolve.h"

/* ---- randomness ------------------------------------------------------- */

void dx__random(void *ud, uint8_t *out, size_t n) {
  (void)ud;
  /* RAND_bytes per 4-byte masking key would cost a lock and a DRBG call per
   * frame; draw a block at a time instead. Per thread, so no locking. */
  static __thread uint8_t pool[512];
  static __thread size_t left;
  while (n) {
    if (left == 0) {
      if (RAND_bytes(pool, sizeof pool) != 1) abort(); /* no entropy: unsafe to go on */
      left = sizeof pool;
    }
    size_t k = n < left ? n : left;
    memcpy(out, pool + sizeof pool - left, k);
    /* Never hand out the same bytes twice. */
    memset(pool + sizeof pool - left, 0, k);
    left -= k;
    out += k;
    n -= k;
  }
}

/* ---- endpoints --------------------------------------------------------- */

int dx__endpoint_init(dx__endpoint *ep, const dx_options *o, const dx__conn_owner *owner,
                      char *err, size_t err_cap) {
  memset(ep, 0, sizeof *ep);
  if (o) {
    if (dx__options_copy(&ep->opt, o)) return DX_ENOMEM;
  } else {
    dx__options_defaults(&ep->opt);
  }
  ep->owner = owner;
  ep->scfg.role = owner->role;
  ep->scfg.max_message = ep->opt.max_message;
  ep->scfg.max_frame = ep->opt.max_frame ? ep->opt.max_frame : ep->opt.max_message;
  ep->scfg.random = dx__random;
  const dx_options *eo = &ep->opt;
  if (owner->role == DX__ROLE_SERVER && eo->tls_cert) {
    ep->tls = dx__tls_server_ctx(eo->tls_cert, eo->tls_key, err, err_cap);
    if (!ep->tls) {
      dx__options_clear(&ep->opt);
      return DX_EINVAL;
    }
  }
  return 0;
}

void dx__endpoint_deinit(dx__endpoint *ep) {
  dx__tls_ctx_free(ep->tls);
  ep->tls = NULL;
  dx__resolve_release(ep->resolving);
  ep->resolving = NULL;
  if (ep->addrs) freeaddrinfo(ep->addrs);
  ep->addrs = ep->next_addr = NULL;
  ep->cur_addr = NULL;
  dx__options_clear(&ep->opt);
}
