/* TLS (OpenSSL 3) under the transport table. The SSL object talks only to
 * a pair of memory BIOs; this file moves ciphertext between them and the
 * non-blocking socket itself, so the socket stays ours: no OpenSSL socket
 * BIO, no SIGPIPE, and the event loop sees the same fd semantics as plain
 * TCP. */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "duplex_codes.h"
#include "net/tls.h"

/* Ciphertext the socket has not taken beyond which writev() stops
 * accepting plaintext: the owner's own queue is the place for backlog, and
 * a bounded BIO keeps the memory per connection predictable. */
#define TLS_WBIO_HIGH (64 * 1024)
/* One maximal TLS record plus header and expansion. */
#define TLS_IO_CHUNK (16 * 1024 + 512)

struct dx__tls_ctx {
  SSL_CTX *ssl_ctx;
  int insecure;
};

typedef struct {
  SSL *ssl;
  BIO *rbio, *wbio; /* owned by ssl */
  int fd;
  unsigned hs_done : 1;    /* handshake completed */
  unsigned peer_bytes : 1; /* the peer sent at least one byte */
  unsigned tcp_eof : 1;    /* recv() returned 0 */
  unsigned notified : 1;   /* the peer's close_notify arrived */
  unsigned fin_wanted : 1; /* shutdown() called: FIN once the BIO drains */
  unsigned fin_sent : 1;
  unsigned failed : 1; /* read/write side is dead; err/fault say why */
  int wdead;           /* errno of a failed send(), 0 while sending works */
  dx__tr_fault fault;  /* for error() */
  char err[256]; /* "TLS handshake failed: " and a reason of up to 231 bytes */
} tls_state;

/* ---- errors ------------------------------------------------------------ */

/* OpenSSL's reason for the earliest queued error, or a fallback. The queue
 * is per thread and shared with the embedder, so it is always emptied. */
static void take_ssl_reason(char *buf, size_t cap, const char *fallback) {
  unsigned long e = ERR_peek_error();
  const char *r = e ? ERR_reason_error_string(e) : NULL;
  if (e && ERR_SYSTEM_ERROR(e))
    snprintf(buf, cap, "%s", strerror(ERR_GET_REASON(e))); /* an errno */
  else if (r)
    snprintf(buf, cap, "%s", r);
  else if (e)
    ERR_error_string_n(e, buf, cap);
  else
    snprintf(buf, cap, "%s", fallback);
  ERR_clear_error();
}

static void fail(tls_state *st, const char *what) {
  if (st->failed) return;
  st->failed = 1;
  if (st->hs_done) {
    st->fault = DX__TR_TLS_ERROR;
    snprintf(st->err, sizeof st->err, "TLS error: %s", what);
  } else {
    st->fault = DX__TR_TLS_HANDSHAKE_FAILED;
    snprintf(st->err, sizeof st->err, "TLS handshake failed: %s", what);
  }
}

static void fail_ssl(tls_state *st) {
  char reason[160];
  int r = ERR_GET_REASON(ERR_peek_error());
  int verify = r == SSL_R_CERTIFICATE_VERIFY_FAILED;
  take_ssl_reason(reason, sizeof reason, "unexpected end of TLS stream");
  /* What a TLS client reads from a plain-text server (an HTTP 400 to its
   * ClientHello) and a TLS server from a plain-text client (an HTTP
   * request) say nothing of the cause; name the likely one. */
  if (!st->hs_done && (r == SSL_R_WRONG_VERSION_NUMBER || r == SSL_R_PACKET_LENGTH_TOO_LONG ||
                       r == SSL_R_HTTP_REQUEST ||
                       r == SSL_R_HTTPS_PROXY_REQUEST)) {
    size_t n = strlen(reason);
    snprintf(reason + n, sizeof reason - n, "%s",
             SSL_is_server(st->ssl) ? " (is the client speaking TLS? ws:// to a wss:// port?)"
                                    : " (is the server speaking TLS? wss:// to a ws:// port?)");
  }
  long v = SSL_get_verify_result(st->ssl);
  if (verify && v != X509_V_OK) {
    /* "certificate verify failed" alone does not say which check. */
    char both[232];
    snprintf(both, sizeof both, "%s (%s)", reason, X509_verify_cert_error_string(v));
    fail(st, both);
  } else {
    fail(st, reason);
  }
}

/* A socket error is not a TLS failure: report it as TCP would. */
static void fail_socket(tls_state *st, int err) {
  if (st->failed) return;
  st->failed = 1;
  st->fault = DX__TR_SOCKET_ERROR;
  snprintf(st->err, sizeof st->err, "socket error: %s", strerror(err));
}

/* ---- ciphertext out ------------------------------------------------------ */

static void drop_wbio(tls_state *st, size_t n) {
  char scratch[4096];
  while (n) {
    int take = n < sizeof scratch ? (int)n : (int)sizeof scratch;
    int got = BIO_read(st->wbio, scratch, take);
    if (got <= 0) break;
    n -= (size_t)got;
  }
}

/* Sends what the wbio holds. 0 when it is empty (and the FIN is out if
 * one was asked for), 1 when the socket is full, -1 when sending failed:
 * then the write side is dead and its bytes are dropped. */
static int flush_wbio(tls_state *st) {
  if (st->wdead) {
    drop_wbio(st, BIO_ctrl_pending(st->wbio));
    return -1;
  }
  for (;;) {
    char *p = NULL;
    long len = BIO_get_mem_data(st->wbio, &p);
    if (len <= 0) break;
    ssize_t w = send(st->fd, p, (size_t)len, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return 1;
      st->wdead = errno;
      drop_wbio(st, BIO_ctrl_pending(st->wbio));
      return -1;
    }
    drop_wbio(st, (size_t)w);
  }
  if (st->fin_wanted && !st->fin_sent) {
    st->fin_sent = 1;
    shutdown(st->fd, SHUT_WR);
  }
  return 0;
}

static void note_progress(tls_state *st) {
  if (!st->hs_done && SSL_is_init_finished(st->ssl)) st->hs_done = 1;
}

/* ---- transport operations ------------------------------------------------ */

/* What a TCP EOF means: the end of the stream, except in the middle of a
 * handshake the peer had started, which is a failed handshake (a bare
 * connect-and-close, e.g. a health check, is just an end of stream). */
static ssize_t at_eof(tls_state *st) {
  if (!st->hs_done && st->peer_bytes) {
    fail(st, "connection closed by the peer");
    return DX_EIO;
  }
  return 0;
}

static ssize_t tls_read(dx__transport *t, void *buf, size_t cap) {
  tls_state *st = t->impl;
  if (st->failed) return DX_EIO;
  if (st->notified) return 0;
  if (cap == 0) return DX_EINCOMPLETE;
  if (cap > INT_MAX) cap = INT_MAX;
  size_t got = 0;
  /* Returns fewer than cap bytes only when both the SSL object and the
   * socket are drained (or the stream ended), so a caller that stops at a
   * short read strands nothing behind a level-triggered fd. */
  while (got < cap) {
    ERR_clear_error();
    int r = SSL_read(st->ssl, (char *)buf + got, (int)(cap - got));
    int e = r > 0 ? SSL_ERROR_NONE : SSL_get_error(st->ssl, r);
    note_progress(st);
    /* Handshake records, alerts and tickets go out as soon as they exist;
     * a send failure here kills only the write side, so the read can still
     * surface the peer's alert or data. */
    flush_wbio(st);
    if (r > 0) {
      got += (size_t)r;
      continue;
    }
    if (e == SSL_ERROR_ZERO_RETURN) {
      st->notified = 1;
      return (ssize_t)got;
    }
    if (e != SSL_ERROR_WANT_READ) {
      if (e == SSL_ERROR_SSL || e == SSL_ERROR_SYSCALL)
        fail_ssl(st);
      else
        fail(st, "unexpected OpenSSL state");
      return DX_EIO;
    }
    /* SSL wants more ciphertext. */
    if (st->tcp_eof) return got ? (ssize_t)got : at_eof(st);
    char in[TLS_IO_CHUNK];
    ssize_t n = recv(st->fd, in, sizeof in, 0);
    if (n > 0) {
      st->peer_bytes = 1;
      if (BIO_write(st->rbio, in, (int)n) != (int)n) {
        ERR_clear_error();
        fail(st, "out of memory");
        return DX_EIO;
      }
      continue;
    }
    if (n == 0) {
      st->tcp_eof = 1;
      continue; /* let SSL look at what it has once more */
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return got ? (ssize_t)got : DX_EINCOMPLETE;
    fail_socket(st, errno);
    return DX_EIO;
  }
  return (ssize_t)got;
}

/* Advances the handshake from the write side (a client's first flight).
 * 1 when done, 0 when waiting for the peer, -1 on failure. */
static int drive_handshake(tls_state *st) {
  if (st->hs_done) return 1;
  ERR_clear_error();
  int r = SSL_do_handshake(st->ssl);
  int e = r == 1 ? SSL_ERROR_NONE : SSL_get_error(st->ssl, r);
  note_progress(st);
  if (flush_wbio(st) < 0) {
    fail_socket(st, st->wdead);
    return -1;
  }
  if (r == 1) return 1;
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return 0;
  fail_ssl(st);
  return -1;
}

static ssize_t tls_writev(dx__transport *t, const struct iovec *iov, int n) {
  tls_state *st = t->impl;
  if (st->failed) return DX_EIO;
  int f = flush_wbio(st);
  if (f < 0) {
    fail_socket(st, st->wdead);
    return DX_EIO;
  }
  if (n == 0) {
    /* Also starts a client's handshake, so the owner can kick it off
     * right after connect without any plaintext to send. */
    if (!st->hs_done && !st->fin_wanted && drive_handshake(st) < 0) return DX_EIO;
    return BIO_ctrl_pending(st->wbio) ? DX_EINCOMPLETE : 0;
  }
  int h = drive_handshake(st);
  if (h < 0) return DX_EIO;
  if (h == 0) return 0;
  /* Records collect in the wbio and go out in one send() at the end, or
   * whenever the high-water mark is reached, so small messages cost one
   * syscall per call rather than one per record. */
  size_t accepted = 0;
  for (int i = 0; i < n; i++) {
    const char *base = iov[i].iov_base;
    size_t len = iov[i].iov_len, off = 0;
    while (off < len) {
      if (BIO_ctrl_pending(st->wbio) >= TLS_WBIO_HIGH) {
        if (flush_wbio(st) < 0) goto dead;
        if (BIO_ctrl_pending(st->wbio) >= TLS_WBIO_HIGH) goto out;
      }
      size_t chunk = len - off < 16384 ? len - off : 16384;
      ERR_clear_error();
      int r = SSL_write(st->ssl, base + off, (int)chunk);
      if (r <= 0) {
        int e = SSL_get_error(st->ssl, r);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) goto out;
        fail_ssl(st);
        flush_wbio(st); /* an alert, if OpenSSL queued one */
        return DX_EIO;
      }
      off += (size_t)r;
      accepted += (size_t)r;
    }
  }
out:
  if (flush_wbio(st) < 0) goto dead;
  if (!accepted && BIO_ctrl_pending(st->wbio) >= TLS_WBIO_HIGH) return DX_EINCOMPLETE;
  return (ssize_t)accepted;
dead:
  fail_socket(st, st->wdead);
  return DX_EIO;
}

static size_t tls_pending(dx__transport *t) {
  tls_state *st = t->impl;
  if (!st || st->wdead) return 0;
  return BIO_ctrl_pending(st->wbio);
}

static void tls_shutdown(dx__transport *t) {
  tls_state *st = t->impl;
  if (st->fin_wanted) return;
  /* close_notify only on a live, established session; SSL_shutdown on an
   * unfinished handshake would just queue an error. */
  if (st->hs_done && !st->failed && !st->wdead) {
    ERR_clear_error();
    SSL_shutdown(st->ssl);
    ERR_clear_error();
  }
  st->fin_wanted = 1;
  /* If the socket is full the FIN waits for the record ahead of it: the
   * next writev(t, NULL, 0) that drains the BIO sends it. */
  flush_wbio(st);
}

static void tls_close(dx__transport *t) {
  tls_state *st = t->impl;
  if (st) {
    SSL_free(st->ssl);
    free(st);
    ERR_clear_error();
  }
  t->impl = NULL;
  if (t->io.fd >= 0) close(t->io.fd);
  t->io.fd = -1;
}

static dx__tr_fault tls_error(dx__transport *t, char *buf, size_t cap) {
  tls_state *st = t->impl;
  if (!st || !st->failed) {
    if (st && st->wdead) {
      snprintf(buf, cap, "socket error: %s", strerror(st->wdead));
      return DX__TR_SOCKET_ERROR;
    }
    snprintf(buf, cap, "TLS error");
    return DX__TR_TLS_ERROR;
  }
  snprintf(buf, cap, "%s", st->err);
  return st->fault;
}

static const dx__transport_ops tls_ops = {tls_read,     tls_writev, tls_pending,
                                          tls_shutdown, tls_close,  tls_error};

/* ---- contexts ------------------------------------------------------------ */

static const unsigned char alpn_http11[] = "\x08http/1.1";

static int select_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg) {
  (void)ssl;
  (void)arg;
  /* The client's list is length-prefixed names; pick http/1.1 if present,
   * otherwise go on without ALPN rather than refuse the client. */
  unsigned int i = 0;
  while (i < inlen) {
    unsigned int len = in[i];
    if (i + 1 + len > inlen) break;
    if (len == 8 && memcmp(in + i + 1, "http/1.1", 8) == 0) {
      *out = in + i + 1;
      *outlen = (unsigned char)len;
      return SSL_TLSEXT_ERR_OK;
    }
    i += 1 + len;
  }
  return SSL_TLSEXT_ERR_NOACK;
}

static SSL_CTX *new_ctx(const SSL_METHOD *m, char *err, size_t err_cap) {
  ERR_clear_error();
  SSL_CTX *c = SSL_CTX_new(m);
  if (!c) {
    char r[128];
    take_ssl_reason(r, sizeof r, "out of memory");
    snprintf(err, err_cap, "cannot create a TLS context: %s", r);
    return NULL;
  }
  SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
  /* Partial writes: one record per SSL_write, so backpressure works per
   * record. Moving buffer: a retried write may come from a new address.
   * Release buffers: idle connections hold no 34 KiB record buffers. */
  SSL_CTX_set_mode(c, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                          SSL_MODE_RELEASE_BUFFERS);
  /* Renegotiation would make writes wait for reads mid-stream. */
  SSL_CTX_set_options(c, SSL_OP_NO_RENEGOTIATION);
  return c;
}

static void ctx_fail(SSL_CTX *c, char *err, size_t err_cap, const char *what,
                     const char *file) {
  char r[128];
  take_ssl_reason(r, sizeof r, "unknown error");
  if (file)
    snprintf(err, err_cap, "%s %s: %s", what, file, r);
  else
    snprintf(err, err_cap, "%s: %s", what, r);
  SSL_CTX_free(c);
}

dx__tls_ctx *dx__tls_server_ctx(const char *cert_file, const char *key_file, char *err,
                                size_t err_cap) {
  if (!cert_file || !key_file) {
    snprintf(err, err_cap, "a TLS server needs a certificate and a private key");
    return NULL;
  }
  SSL_CTX *c = new_ctx(TLS_server_method(), err, err_cap);
  if (!c) return NULL;
  if (SSL_CTX_use_certificate_chain_file(c, cert_file) != 1) {
    ctx_fail(c, err, err_cap, "cannot load the certificate chain", cert_file);
    return NULL;
  }
  if (SSL_CTX_use_PrivateKey_file(c, key_file, SSL_FILETYPE_PEM) != 1) {
    ctx_fail(c, err, err_cap, "cannot load the private key", key_file);
    return NULL;
  }
  if (SSL_CTX_check_private_key(c) != 1) {
    ctx_fail(c, err, err_cap, "the private key does not match the certificate", NULL);
    return NULL;
  }
  SSL_CTX_set_alpn_select_cb(c, select_alpn, NULL);
  dx__tls_ctx *ctx = calloc(1, sizeof *ctx);
  if (!ctx) {
    SSL_CTX_free(c);
    snprintf(err, err_cap, "out of memory");
    return NULL;
  }
  ctx->ssl_ctx = c;
  return ctx;
}

dx__tls_ctx *dx__tls_client_ctx(const char *ca_file, int insecure, char *err,
                                size_t err_cap, int *code) {
  int dummy;
  if (!code) code = &dummy;
  /* Out of memory, unless it is the CA file or store (below). */
  *code = DX_ENOMEM;
  SSL_CTX *c = new_ctx(TLS_client_method(), err, err_cap);
  if (!c) return NULL;
  if (insecure) {
    SSL_CTX_set_verify(c, SSL_VERIFY_NONE, NULL);
  } else {
    SSL_CTX_set_verify(c, SSL_VERIFY_PEER, NULL);
    if (ca_file) {
      if (SSL_CTX_load_verify_locations(c, ca_file, NULL) != 1) {
        ctx_fail(c, err, err_cap, "cannot load CA certificates from", ca_file);
        *code = DX_EINVAL;
        return NULL;
      }
    } else if (SSL_CTX_set_default_verify_paths(c) != 1) {
      ctx_fail(c, err, err_cap, "cannot load the system CA store", NULL);
      *code = DX_EINVAL;
      return NULL;
    }
  }
  /* Note the inverted convention: 0 is success here. */
  if (SSL_CTX_set_alpn_protos(c, alpn_http11, sizeof alpn_http11 - 1) != 0) {
    ctx_fail(c, err, err_cap, "cannot set ALPN", NULL);
    return NULL;
  }
  dx__tls_ctx *ctx = calloc(1, sizeof *ctx);
  if (!ctx) {
    SSL_CTX_free(c);
    snprintf(err, err_cap, "out of memory");
    return NULL;
  }
  ctx->ssl_ctx = c;
  ctx->insecure = insecure != 0;
  return ctx;
}

void dx__tls_ctx_free(dx__tls_ctx *ctx) {
  if (!ctx) return;
  SSL_CTX_free(ctx->ssl_ctx);
  free(ctx);
}

/* ---- per connection ------------------------------------------------------ */

/* Sets the name the server's certificate must carry. IP literals (also in
 * URL brackets) are matched against IP SANs and are never sent as SNI
 * (RFC 6066 §3). 1 on success. */
static int set_peer_name(SSL *ssl, const char *host, int verify) {
  char ip[64];
  size_t len = strlen(host);
  const char *lit = host;
  if (len >= 2 && host[0] == '[' && host[len - 1] == ']' && len - 2 < sizeof ip) {
    memcpy(ip, host + 1, len - 2);
    ip[len - 2] = '\0';
    lit = ip;
  }
  unsigned char addr[16];
  if (inet_pton(AF_INET, lit, addr) == 1 || inet_pton(AF_INET6, lit, addr) == 1) {
    if (!verify) return 1;
    return X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), lit) == 1;
  }
  if (SSL_set_tlsext_host_name(ssl, host) != 1) return 0;
  if (!verify) return 1;
  SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
  return SSL_set1_host(ssl, host) == 1;
}

int dx__tls_start(dx__transport *t, dx__tls_ctx *ctx, int fd, int is_server,
                  const char *host) {
  tls_state *st = calloc(1, sizeof *st);
  if (!st) return DX_ENOMEM;
  ERR_clear_error();
  st->ssl = SSL_new(ctx->ssl_ctx);
  BIO *rb = BIO_new(BIO_s_mem()), *wb = BIO_new(BIO_s_mem());
  if (!st->ssl || !rb || !wb) goto nomem;
  SSL_set_bio(st->ssl, rb, wb); /* the SSL owns both from here */
  st->rbio = rb;
  st->wbio = wb;
  rb = wb = NULL;
  if (is_server) {
    SSL_set_accept_state(st->ssl);
  } else {
    SSL_set_connect_state(st->ssl);
    if (host && *host && !set_peer_name(st->ssl, host, !ctx->insecure)) goto nomem;
  }
  st->fd = fd;
  t->ops = &tls_ops;
  t->io.fd = fd;
  t->impl = st;
  return 0;
nomem:
  BIO_free(rb);
  BIO_free(wb);
  SSL_free(st->ssl);
  free(st);
  ERR_clear_error();
  return DX_ENOMEM;
}
