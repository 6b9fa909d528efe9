/* The Socket.IO layer's shared pieces, sans-IO: the error codes of both
 * codecs (one table, like DX_ERRNO_MAP), a growable byte buffer that
 * allocates only through the dx__alloc it was given, and the one JSON
 * string writer that every JSON text this layer builds goes through (the
 * open packet, the HTTP error bodies, Socket.IO packets). */
#ifndef DX_EIO_BUF_H
#define DX_EIO_BUF_H
#include <stddef.h>
#include <stdint.h>

#include "duplex_codes.h"
#include "proto/alloc.h"

/* X(name, value, message). Values -100 to -149 are this layer's, apart
 * from the DX_E* table; the codecs also return DX_ENOMEM, DX_EINVAL,
 * DX_EUTF8 and DX_ETOOBIG from it. Every DX__SIO_E* means "parse error"
 * to the session: the reference server closes the connection for any. */
#define DX_EIO_ERRNO_MAP(X)                                                  \
  X(EIO_EEMPTY, -100, "empty Engine.IO packet")                             \
  X(EIO_ETYPE, -101, "unknown Engine.IO packet type")                       \
  X(EIO_EBASE64, -102, "bad base64 in a binary Engine.IO packet")           \
  X(SIO_ETYPE, -110, "unknown Socket.IO packet type")                       \
  X(SIO_EATTACH, -111, "malformed Socket.IO attachment count")              \
  X(SIO_ETOOMANY, -112, "too many Socket.IO binary attachments")            \
  X(SIO_ENSP, -113, "malformed Socket.IO namespace")                        \
  X(SIO_EID, -114, "malformed or misplaced Socket.IO ack id")               \
  X(SIO_EJSON, -115, "invalid JSON in a Socket.IO packet")                  \
  X(SIO_EDATA, -116, "Socket.IO payload of the wrong shape for its type")   \
  X(SIO_ERESERVED, -117, "reserved Socket.IO event name")                   \
  X(SIO_EPLACEHOLDER, -118, "bad binary placeholder (shape, num or repeat)") \
  X(SIO_ECOUNT, -119, "attachment count differs from the placeholders")     \
  X(SIO_EORDER, -120, "text where an attachment was due, or the reverse")

enum {
#define DX__EIO_ERR_ENUM(name, value, msg) DX__##name = value,
  DX_EIO_ERRNO_MAP(DX__EIO_ERR_ENUM)
#undef DX__EIO_ERR_ENUM
};

/* A static message for one of the codes above or of the DX_E* codes the
 * codecs return; never NULL ("unknown error" for others: use dx_strerror). */
const char *dx__eio_strerror(int err);

typedef struct dx__eio_buf {
  uint8_t *data;
  size_t len, cap;
  const dx__alloc *alloc; /* borrowed: must outlive the buffer */
} dx__eio_buf;

static inline void dx__eio_buf_init(dx__eio_buf *b, const dx__alloc *a) {
  b->data = NULL;
  b->len = b->cap = 0;
  b->alloc = a;
}
/* Frees the storage; the buffer may be used again (it is empty). */
void dx__eio_buf_free(dx__eio_buf *b);
/* Makes room for n more bytes; returns where they go, or NULL (no memory,
 * the buffer unchanged). */
uint8_t *dx__eio_buf_reserve(dx__eio_buf *b, size_t n);
/* Appends; 0 or DX_ENOMEM (the buffer unchanged). */
int dx__eio_buf_append(dx__eio_buf *b, const void *p, size_t n);
static inline int dx__eio_buf_putc(dx__eio_buf *b, char c) {
  /* The encoder writes most punctuation a byte at a time: no call while
   * there is room. */
  if (b->len < b->cap) {
    b->data[b->len++] = (uint8_t)c;
    return 0;
  }
  return dx__eio_buf_append(b, &c, 1);
}
/* Appends v in decimal ("-12", "0"); 0 or DX_ENOMEM (the buffer
 * unchanged). Packet ids, counts and integers are written per packet:
 * snprintf's format parsing was 5 % of a Socket.IO server's CPU on an
 * acked echo. */
int dx__eio_buf_put_int(dx__eio_buf *b, int64_t v);
/* Appends p[0..n) as a quoted JSON string: '"' and '\\' and the controls
 * below 0x20 escaped (the short forms where JSON has them, \u00xx for the
 * others, NUL included), everything else as it is. p must be valid UTF-8
 * (the caller checks: a peer's text has been). 0 or DX_ENOMEM; on failure
 * the buffer is left as it was. */
int dx__eio_buf_json_string(dx__eio_buf *b, const char *p, size_t n);
#endif
