/* TLS (OpenSSL 3) under the transport table. The SSL object talks to a BIO
 * of our own (below) rather than OpenSSL's socket BIO: reads go straight
 * from the non-blocking socket into OpenSSL's record buffer, and records
 * collect in a buffer of ours that this file sends, so the socket stays
 * ours (MSG_NOSIGNAL, one send() per batch of records, the FIN after the
 * last one) and the event loop sees the same fd semantics as plain TCP. */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "duplex_codes.h"
#include "net/tls.h"

/* Ciphertext the socket has not taken beyond which writev() stops
 * accepting plaintext: the owner's own queue is the place for backlog, and
 * a bounded buffer keeps the memory per connection predictable. */
#define TLS_WBIO_HIGH (64 * 1024)
/* The plaintext of one maximal TLS record. */
#define TLS_RECORD_MAX 16384
/* The most ciphertext `out` may hold. writev() stays below the mark plus
 * one record; this bounds what OpenSSL writes on its own from inside
 * SSL_read (a TLS 1.3 KeyUpdate answering update_requested, a
 * no_renegotiation alert), which no mark of ours stops: a peer that keeps
 * asking and never reads would otherwise grow `out` without end. */
#define TLS_OUT_MAX (TLS_WBIO_HIGH + 2 * TLS_RECORD_MAX)
/* What a connection that passed TLS_OUT_MAX is told. */
static const char out_full_reason[] = "the peer is not reading what TLS must send it";

struct dx__tls_ctx {
  SSL_CTX *ssl_ctx;
  int insecure;
};

typedef struct {
  const dx__transport_ops *ops; /* tls_ops: first, where dx__tr_ops looks */
  SSL *ssl;
  int fd;
  unsigned hs_done : 1;    /* handshake completed */
  unsigned peer_bytes : 1; /* the peer sent at least one byte */
  unsigned tcp_eof : 1;    /* recv() returned 0 */
  unsigned drained : 1;    /* a recv() in this call came back short */
  unsigned eagain : 1;     /* a recv() in this call said EAGAIN */
  unsigned notified : 1;   /* the peer's close_notify arrived */
  unsigned fin_wanted : 1; /* shutdown() called: FIN once `out` drains */
  unsigned fin_sent : 1;
  unsigned failed : 1; /* read/write side is dead; err/fault say why */
  unsigned oom : 1;    /* a record could not be buffered */
  unsigned full : 1;   /* a record would have passed TLS_OUT_MAX */
  int rdead;           /* errno of a failed recv(), 0 while it works */
  int wdead;           /* errno of a failed send(), 0 while sending works */
  /* Records not yet sent: bytes [off, len) of a block of cap bytes,
   * allocated when the first record is written and freed once the socket
   * has taken them all, so an idle connection holds none. */
  char *out;
  size_t off, len, cap;
  dx__tr_fault fault; /* for error() */
  char err[256]; /* "TLS handshake failed: " and a reason of up to 231 bytes */
} tls_state;

static size_t out_bytes(const tls_state *st) { return st->len - st->off; }

static void out_free(tls_state *st) {
  free(st->out);
  st->out = NULL;
  st->off = st->len = st->cap = 0;
}

/* ---- the BIO ------------------------------------------------------------- */

/* OpenSSL reads ciphertext here, straight from the socket. With read-ahead
 * on it asks for as much as its record buffer holds, so a recv() that
 * returns less has emptied the socket: the next one in the same read call
 * would only say EAGAIN, and is not made (the fd is level-triggered; what
 * arrives later wakes the loop again). */
static int bio_read(BIO *b, char *buf, int cap) {
  tls_state *st = BIO_get_data(b);
  BIO_clear_retry_flags(b);
  if (st->rdead) return -1; /* a socket error is reported once: keep it */
  if (st->tcp_eof) return 0;
  if (st->drained || cap <= 0) {
    BIO_set_retry_read(b);
    return -1;
  }
  for (;;) {
    ssize_t n = recv(st->fd, buf, (size_t)cap, 0);
    if (n > 0) {
      st->peer_bytes = 1;
      if (n < cap) st->drained = 1;
      return (int)n;
    }
    if (n == 0) {
      st->tcp_eof = 1;
      return 0;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      st->drained = st->eagain = 1;
      BIO_set_retry_read(b);
    } else {
      st->rdead = errno;
    }
    return -1;
  }
}

/* OpenSSL writes whole records here; they wait in `out` for flush_out(),
 * which sends all of one call's records at once. Never a partial write:
 * the high-water mark is enforced above, before SSL_write. */
static int bio_write(BIO *b, const char *buf, int n) {
  tls_state *st = BIO_get_data(b);
  BIO_clear_retry_flags(b);
  if (n <= 0) return 0;
  size_t need = (size_t)n;
  if (out_bytes(st) + need > TLS_OUT_MAX) {
    st->full = 1;
    return -1;
  }
  if (st->len + need > st->cap) {
    if (st->off) { /* the sent prefix makes room first */
      memmove(st->out, st->out + st->off, st->len - st->off);
      st->len -= st->off;
      st->off = 0;
    }
    if (st->len + need > st->cap) {
      size_t cap = st->cap ? st->cap : 4096;
      while (cap < st->len + need) cap *= 2;
      char *p = realloc(st->out, cap);
      if (!p) {
        st->oom = 1;
        return -1;
      }
      st->out = p;
      st->cap = cap;
    }
  }
  memcpy(st->out + st->len, buf, need);
  st->len += need;
  return n;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr) {
  (void)num;
  (void)ptr;
  tls_state *st = BIO_get_data(b);
  switch (cmd) {
    case BIO_CTRL_FLUSH: return 1; /* flush_out() sends, after the SSL call */
    case BIO_CTRL_WPENDING: return st ? (long)out_bytes(st) : 0;
    case BIO_CTRL_EOF: return st ? st->tcp_eof : 0;
    default: return 0; /* PENDING: nothing is held on the read side */
  }
}

static BIO_METHOD *bio_method;
static pthread_once_t bio_once = PTHREAD_ONCE_INIT;

/* One method for the process, never freed: a BIO points at its method for
 * as long as it lives, and a connection may outlive the context it was
 * made with (a hand-off to another endpoint). */
static void bio_method_init(void) {
  BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "duplex socket");
  if (m && BIO_meth_set_read(m, bio_read) && BIO_meth_set_write(m, bio_write) &&
      BIO_meth_set_ctrl(m, bio_ctrl)) {
    bio_method = m;
    return;
  }
  BIO_meth_free(m);
}

/* OpenSSL's error queue must be empty before an SSL call for
 * SSL_get_error() to be right. It is emptied after every failure here, so
 * it is almost always empty already: peeking costs far less than
 * ERR_clear_error()'s walk over all its slots. */
static void clear_errors(void) {
  if (ERR_peek_error()) ERR_clear_error();
}

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

/* Sends what `out` holds. 0 when it is empty (and the FIN is out if one
 * was asked for), 1 when the socket is full, -1 when sending failed: then
 * the write side is dead and its bytes are dropped. */
static int flush_out(tls_state *st) {
  if (st->wdead) {
    out_free(st);
    return -1;
  }
  while (out_bytes(st)) {
    ssize_t w = send(st->fd, st->out + st->off, out_bytes(st), MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return 1;
      st->wdead = errno;
      out_free(st);
      return -1;
    }
    st->off += (size_t)w;
  }
  if (st->out) out_free(st);
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
  st->drained = st->eagain = 0;
  /* Returns fewer than cap bytes only when both the SSL object and the
   * socket are drained (or the stream ended), so a caller that stops at a
   * short read strands nothing behind a level-triggered fd. */
  while (got < cap) {
    clear_errors();
    int r = SSL_read(st->ssl, (char *)buf + got, (int)(cap - got));
    int e = r > 0 ? SSL_ERROR_NONE : SSL_get_error(st->ssl, r);
    /* Handshake records, alerts and tickets go out as soon as they exist;
     * a send failure here kills only the write side, so the read can still
     * surface the peer's alert or data. */
    note_progress(st);
    if (out_bytes(st)) flush_out(st);
    if (r > 0) {
      got += (size_t)r;
      continue;
    }
    if (e == SSL_ERROR_ZERO_RETURN) {
      st->notified = 1;
      /* With bytes to return, the end is the next read's to report; but
       * the caller stops at this short read and waits for readiness, which
       * a peer that sent close_notify and then waits for ours (no FIN)
       * never gives. Nothing after close_notify is read any more: shut
       * our receiving side, and the socket stays readable until closed. */
      if (got) shutdown(st->fd, SHUT_RD);
      return (ssize_t)got;
    }
    if (e == SSL_ERROR_WANT_READ) {
      /* The socket is empty (see bio_read). With nothing to return, ask
       * it once more rather than infer it: EAGAIN, or an end of stream
       * that came with the last bytes, which the caller must see now. */
      if (got || st->eagain) return got ? (ssize_t)got : DX_EINCOMPLETE;
      st->drained = 0;
      continue;
    }
    if (st->rdead) {
      ERR_clear_error();
      fail_socket(st, st->rdead);
      return DX_EIO;
    }
    if (st->full) {
      ERR_clear_error();
      fail(st, out_full_reason);
      return DX_EIO;
    }
    if (st->tcp_eof) {
      /* SSL needed more than the stream had: its end, whatever SSL makes
       * of it (OpenSSL 3 calls it an unexpected EOF). */
      ERR_clear_error();
      return got ? (ssize_t)got : at_eof(st);
    }
    if (st->oom) {
      ERR_clear_error();
      fail(st, "out of memory");
      return DX_EIO;
    }
    if (e == SSL_ERROR_SSL || e == SSL_ERROR_SYSCALL)
      fail_ssl(st);
    else
      fail(st, "unexpected OpenSSL state");
    return DX_EIO;
  }
  return (ssize_t)got;
}

/* Advances the handshake from the write side (a client's first flight).
 * 1 when done, 0 when waiting for the peer, -1 on failure. */
static int drive_handshake(tls_state *st) {
  if (st->hs_done) return 1;
  clear_errors();
  int r = SSL_do_handshake(st->ssl);
  int e = r == 1 ? SSL_ERROR_NONE : SSL_get_error(st->ssl, r);
  note_progress(st);
  if (flush_out(st) < 0) {
    fail_socket(st, st->wdead);
    return -1;
  }
  if (r == 1) return 1;
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return 0;
  if (st->tcp_eof || st->rdead) {
    /* The stream ended or failed under the handshake: the fd stays
     * readable, and tls_read says which (at_eof, fail_socket). */
    ERR_clear_error();
    return 0;
  }
  fail_ssl(st);
  return -1;
}

static ssize_t tls_writev(dx__transport *t, const struct iovec *iov, int n) {
  tls_state *st = t->impl;
  if (st->failed) return DX_EIO;
  st->drained = st->eagain = 0; /* the handshake may read */
  int f = flush_out(st);
  if (f < 0) {
    fail_socket(st, st->wdead);
    return DX_EIO;
  }
  if (n == 0) {
    /* Also starts a client's handshake, so the owner can kick it off
     * right after connect without any plaintext to send. */
    if (!st->hs_done && !st->fin_wanted && drive_handshake(st) < 0) return DX_EIO;
    return out_bytes(st) ? DX_EINCOMPLETE : 0;
  }
  int h = drive_handshake(st);
  if (h < 0) return DX_EIO;
  if (h == 0) return 0;
  /* Records collect in `out` and go out in one send() at the end, or
   * whenever the high-water mark is reached, so small messages cost one
   * syscall per call rather than one per record. */
  size_t accepted = 0;
  for (int i = 0; i < n; i++) {
    const char *base = iov[i].iov_base;
    size_t len = iov[i].iov_len, off = 0;
    while (off < len) {
      if (out_bytes(st) >= TLS_WBIO_HIGH) {
        if (flush_out(st) < 0) goto dead;
        if (out_bytes(st) >= TLS_WBIO_HIGH) goto out;
      }
      size_t chunk = len - off < TLS_RECORD_MAX ? len - off : TLS_RECORD_MAX;
      clear_errors();
      int r = SSL_write(st->ssl, base + off, (int)chunk);
      if (r <= 0) {
        int e = SSL_get_error(st->ssl, r);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) goto out;
        if (st->oom || st->full) {
          ERR_clear_error();
          fail(st, st->oom ? "out of memory" : out_full_reason);
        } else {
          fail_ssl(st);
        }
        flush_out(st); /* an alert, if OpenSSL queued one */
        return DX_EIO;
      }
      off += (size_t)r;
      accepted += (size_t)r;
    }
  }
out:
  if (flush_out(st) < 0) goto dead;
  if (!accepted && out_bytes(st) >= TLS_WBIO_HIGH) return DX_EINCOMPLETE;
  return (ssize_t)accepted;
dead:
  fail_socket(st, st->wdead);
  return DX_EIO;
}

static size_t tls_pending(dx__transport *t) {
  tls_state *st = t->impl;
  if (!st || st->wdead) return 0;
  return out_bytes(st);
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
   * next writev(t, NULL, 0) that drains `out` sends it. */
  flush_out(st);
}

static void tls_close(dx__transport *t) {
  tls_state *st = t->impl;
  if (st) {
    SSL_free(st->ssl);
    free(st->out);
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
  /* Read-ahead: each recv() takes whatever the socket holds (up to a
   * record buffer), not a record header and then its body; bio_read relies
   * on it to know when the socket is empty. */
  SSL_CTX_set_read_ahead(c, 1);
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
  pthread_once(&bio_once, bio_method_init);
  if (!bio_method) return DX_ENOMEM;
  tls_state *st = calloc(1, sizeof *st);
  if (!st) return DX_ENOMEM;
  ERR_clear_error();
  st->ssl = SSL_new(ctx->ssl_ctx);
  BIO *b = BIO_new(bio_method);
  if (!st->ssl || !b) goto nomem;
  BIO_set_data(b, st);
  BIO_set_init(b, 1);
  SSL_set_bio(st->ssl, b, b); /* one reference, for both directions: the SSL's */
  b = NULL;
  if (is_server) {
    SSL_set_accept_state(st->ssl);
  } else {
    SSL_set_connect_state(st->ssl);
    if (host && *host && !set_peer_name(st->ssl, host, !ctx->insecure)) goto nomem;
  }
  st->fd = fd;
  st->ops = &tls_ops;
  t->io.fd = fd;
  t->impl = st;
  return 0;
nomem:
  BIO_free(b);
  SSL_free(st->ssl);
  free(st);
  ERR_clear_error();
  return DX_ENOMEM;
}
