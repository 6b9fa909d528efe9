/* TLS under the transport table: OpenSSL 3 through memory BIOs, so the
 * socket I/O stays ours (non-blocking, corked) and the session never knows
 * TLS is there. */
#ifndef DX_NET_TLS_H
#define DX_NET_TLS_H
#include "net/transport.h"

typedef struct dx__tls_ctx dx__tls_ctx;

/* A server context: certificate chain and private key (PEM files), TLS 1.2
 * and 1.3 only, ALPN "http/1.1" selected when the client offers it. SNI is
 * accepted (one certificate serves every name). Returns NULL and a one-line
 * reason (with OpenSSL's own) in err on failure. */
dx__tls_ctx *dx__tls_server_ctx(const char *cert_file, const char *key_file,
                                char *err, size_t err_cap);
/* A client context: verifies the server's certificate against ca_file, or
 * the system CA store when ca_file is NULL; `insecure` turns verification
 * off (self-signed test servers only). TLS 1.2+, ALPN "http/1.1". NULL on
 * failure, with a reason in err and, when code is not NULL, *code set to
 * DX_EINVAL (the CA file or store cannot be used) or DX_ENOMEM. */
dx__tls_ctx *dx__tls_client_ctx(const char *ca_file, int insecure, char *err,
                                size_t err_cap, int *code);
void dx__tls_ctx_free(dx__tls_ctx *ctx);

/* Puts TLS on a connected non-blocking socket: t->io.fd = fd, t->impl the
 * TLS state (dx__tr_ops(t) its table from then on). A client passes the host name
 * (SNI, and checked against the certificate unless insecure); a server
 * passes NULL. 0, or DX_ENOMEM. The context must outlive the transport. */
int dx__tls_start(dx__transport *t, dx__tls_ctx *ctx, int fd, int is_server,
                  const char *host);
#endif
