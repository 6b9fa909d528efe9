/* The load generator's sockets over TLS: OpenSSL on the same non-blocking
 * loop, driven by the socket's readiness. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "bench_engine.h"

/* The client context: TLS 1.2 or later; the system's CAs (or cfg->ca) and
 * the host name checked unless cfg->insecure; writes that may return after
 * part of the buffer and be retried from a buffer that has moved (ours is
 * compacted). */
int bench_tls_init(bench_ctx *b) {
  const bench_config *cfg = b->cfg;
  if (!(b->tls = SSL_CTX_new(TLS_client_method()))) {
    bench_fatal(b, "cannot create a TLS context");
    return -1;
  }
  SSL_CTX_set_min_proto_version(b->tls, TLS1_2_VERSION);
  if (cfg->insecure) {
    SSL_CTX_set_verify(b->tls, SSL_VERIFY_NONE, NULL);
  } else {
    SSL_CTX_set_verify(b->tls, SSL_VERIFY_PEER, NULL);
    int ok = cfg->ca ? SSL_CTX_load_verify_locations(b->tls, cfg->ca, NULL)
                     : SSL_CTX_set_default_verify_paths(b->tls);
    if (ok != 1) {
      unsigned long e = ERR_get_error();
      bench_fatal(b, "cannot load %s: %s", cfg->ca ? cfg->ca : "the system's CAs",
                  e ? ERR_reason_error_string(e) : "unknown error");
      return -1;
    }
  }
  /* The client's offer decides the group: OpenSSL's server takes the
   * first one it supports, in the client's order. */
  if (cfg->tls_groups && SSL_CTX_set1_groups_list(b->tls, cfg->tls_groups) != 1) {
    ERR_clear_error();
    bench_fatal(b, "unknown TLS group in %s", cfg->tls_groups);
    return -1;
  }
  SSL_CTX_set_mode(b->tls, SSL_MODE_ENABLE_PARTIAL_WRITE |
                               SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  /* Without read-ahead OpenSSL reads each record's 5-byte header and its
   * body with two recv() calls; with it, whatever the socket holds at
   * once. The client's cost is not what is measured: keep it low. */
  SSL_CTX_set_read_ahead(b->tls, 1);
  /* A server that closes TCP without close_notify after the WebSocket close
   * handshake is not an error here: read it as EOF. */
  SSL_CTX_set_options(b->tls, SSL_OP_IGNORE_UNEXPECTED_EOF);
  return 0;
}

/* Names the OpenSSL error just seen, for an error kind. */
static void tls_fail(bench_conn *c, const char *what) {
  char kind[160];
  unsigned long code = ERR_get_error();
  long vr = SSL_get_verify_result(c->ssl);
  if (vr != X509_V_OK && c->state == BC_TLS)
    snprintf(kind, sizeof kind, "TLS: certificate: %s", X509_verify_cert_error_string(vr));
  else
    snprintf(kind, sizeof kind, "TLS: %s: %s", what,
             code ? ERR_reason_error_string(code)
                  : errno ? strerror(errno) : "connection closed");
  ERR_clear_error();
  bench_conn_fail(c, kind);
}

void bench_tls_step(bench_conn *c) {
  bench_ctx *b = c->b;
  ERR_clear_error();
  int r = SSL_do_handshake(c->ssl);
  if (r == 1) {
    if (!b->res->tls_info[0]) {
      int group = SSL_get_negotiated_group(c->ssl);
      snprintf(b->res->tls_info, sizeof b->res->tls_info, "%s/%s/%s",
               SSL_get_version(c->ssl), SSL_get_cipher_name(c->ssl),
               group ? OBJ_nid2sn(group) : "?");
    }
    bench_on_connected(c);
    return;
  }
  int e = SSL_get_error(c->ssl, r);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return;
  tls_fail(c, "handshake");
}

void bench_tls_start(bench_conn *c) {
  bench_ctx *b = c->b;
  const char *name = b->cfg->tls_host;
  if (!(c->ssl = SSL_new(b->tls))) {
    bench_fatal(b, "out of memory for a TLS connection");
    return;
  }
  SSL_set_fd(c->ssl, c->fd);
  SSL_set_connect_state(c->ssl);
  if (name) {
    unsigned char ip[16];
    bool literal = inet_pton(AF_INET, name, ip) == 1 || inet_pton(AF_INET6, name, ip) == 1;
    if (literal) {
      X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), name);
    } else {
      SSL_set_tlsext_host_name(c->ssl, name); /* SNI is for names only */
      SSL_set1_host(c->ssl, name);
    }
  }
  c->state = BC_TLS;
  bench_tls_step(c);
}

/* SSL_write in partial-write mode returns after each batch of records, so
 * it is called until the buffer is empty or OpenSSL wants the socket. */
void bench_tls_flush(bench_conn *c) {
  while (c->fd >= 0 && c->head < c->tail) {
    size_t want = c->tail - c->head;
    ERR_clear_error();
    int n = SSL_write(c->ssl, c->out + c->head, want > INT32_MAX ? INT32_MAX : (int)want);
    if (n > 0) {
      c->head += (size_t)n;
      continue;
    }
    int e = SSL_get_error(c->ssl, n);
    if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) return;
    tls_fail(c, "write");
    return;
  }
  if (c->head == c->tail) c->head = c->tail = 0;
}

/* SSL_read hands out at most one record at a time, so a short read says
 * nothing about the socket: read until OpenSSL wants more from it. */
void bench_tls_read(bench_conn *c) {
  bench_ctx *b = c->b;
  for (;;) {
    ERR_clear_error();
    int n = SSL_read(c->ssl, b->rbuf, b->rbuf_size > INT32_MAX ? INT32_MAX : (int)b->rbuf_size);
    if (n > 0) {
      if (bench_consume(c, b->rbuf, (size_t)n) < 0) return;
      continue;
    }
    int e = SSL_get_error(c->ssl, n);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) break;
    if (e == SSL_ERROR_ZERO_RETURN) { /* close_notify, or EOF (see above) */
      bench_on_eof(c);
      return;
    }
    tls_fail(c, "read");
    return;
  }
  bench_flush(c);
}
