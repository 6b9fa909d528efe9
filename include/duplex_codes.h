/*
 * duplex — the codes: the DX_E* error table and the WebSocket close codes.
 *
 * duplex.h includes this header, so a program never needs to name it. It
 * stands alone (it declares no loop, server or connection) so that the
 * protocol core, which knows nothing of those, can use the codes too.
 */
#ifndef DUPLEX_CODES_H
#define DUPLEX_CODES_H

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------- */
/* Errors                                                                  */
/* ---------------------------------------------------------------------- */

/* X(name, value, message). One table generates the enum, dx_strerror() and
 * dx_err_name(). */
#define DX_ERRNO_MAP(X)                                                       \
  X(EINVAL, -1, "invalid argument")                                           \
  X(ENOMEM, -2, "out of memory")                                              \
  X(ESTATE, -3, "connection is not open")                                     \
  X(EPROTO, -4, "protocol error: the peer broke RFC 6455")                    \
  X(EUTF8, -5, "invalid UTF-8 in a text message or close reason")             \
  X(ETOOBIG, -6, "message or frame exceeds the configured limit")             \
  X(EHANDSHAKE, -7, "opening handshake failed")                               \
  X(EIO, -8, "socket error")                                                  \
  X(ECLOSED, -9, "connection closed")                                         \
  X(ETIMEDOUT, -10, "timed out")                                              \
  X(EADDR, -11, "cannot resolve, bind or connect to the address")             \
  X(EURL, -12, "malformed ws:// or wss:// URL")                               \
  X(EUNSUPPORTED, -13, "not supported by this build")                         \
  X(EINCOMPLETE, -14, "more input is needed")                                 \
  X(ECLOSECODE, -15, "close code may not be sent or received on the wire")    \
  X(ERECONNECTING, -16, "not connected: the client is reconnecting")          \
  X(EBUFFER, -17, "output buffer limit reached: message refused")

typedef enum {
  DX_OK = 0,
#define DX__ERR_ENUM(name, value, msg) DX_##name = value,
  DX_ERRNO_MAP(DX__ERR_ENUM)
#undef DX__ERR_ENUM
} dx_err;

/* A static, human-readable message for a DX_E* code; never NULL. */
const char *dx_strerror(int err);
/* The code's name ("DX_EPROTO"); never NULL. */
const char *dx_err_name(int err);

/* ---------------------------------------------------------------------- */
/* Close codes                                                             */
/* ---------------------------------------------------------------------- */

/* Close codes duplex names (any 1000-1014 or 3000-4999 may be used). */
enum {
  DX_CLOSE_NORMAL = 1000,
  DX_CLOSE_GOING_AWAY = 1001,
  DX_CLOSE_PROTOCOL_ERROR = 1002,
  DX_CLOSE_UNSUPPORTED = 1003,
  DX_CLOSE_NO_STATUS = 1005,   /* reported only, never sent */
  DX_CLOSE_ABNORMAL = 1006,    /* reported only, never sent */
  DX_CLOSE_INVALID_DATA = 1007,
  DX_CLOSE_POLICY = 1008,
  DX_CLOSE_TOO_BIG = 1009,
  DX_CLOSE_EXTENSION = 1010,
  DX_CLOSE_INTERNAL = 1011,
  DX_CLOSE_TLS = 1015          /* reported only, never sent */
};

#ifdef __cplusplus
}
#endif

#endif
