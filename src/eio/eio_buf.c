#include "eio/eio_buf.h"

#include <string.h>

#include "proto/decimal.h"

const char *dx__eio_strerror(int err) {
  switch (err) {
#define DX__EIO_ERR_MSG(name, value, msg) case DX__##name: return msg;
    DX_EIO_ERRNO_MAP(DX__EIO_ERR_MSG)
#undef DX__EIO_ERR_MSG
    case DX_ENOMEM: return "out of memory";
    case DX_EINVAL: return "invalid argument";
    case DX_EUTF8: return "invalid UTF-8 in a text packet";
    case DX_ETOOBIG: return "payload exceeds maxPayload";
  }
  return "unknown error";
}

void dx__eio_buf_free(dx__eio_buf *b) {
  dx__mem_free(b->alloc, b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

uint8_t *dx__eio_buf_reserve(dx__eio_buf *b, size_t n) {
  if (n > SIZE_MAX - b->len) return NULL;
  if (b->len + n > b->cap) {
    /* Doubling keeps a body built packet by packet linear; 256 bytes
     * first holds most single Socket.IO packets in one allocation. */
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n) cap = cap > SIZE_MAX / 2 ? b->len + n : cap * 2;
    uint8_t *p = b->alloc->realloc(b->alloc->ud, b->data, cap);
    if (!p) return NULL;
    b->data = p;
    b->cap = cap;
  }
  return b->data + b->len;
}

int dx__eio_buf_append(dx__eio_buf *b, const void *p, size_t n) {
  if (n == 0) return 0;
  uint8_t *w = dx__eio_buf_reserve(b, n);
  if (!w) return DX_ENOMEM;
  memcpy(w, p, n);
  b->len += n;
  return 0;
}

int dx__eio_buf_put_int(dx__eio_buf *b, int64_t v) {
  /* Negated as unsigned, so INT64_MIN does not overflow. */
  uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
  uint8_t *w = dx__eio_buf_reserve(b, DX__DECIMAL_MAX + 1);
  if (!w) return DX_ENOMEM;
  if (v < 0) *w++ = '-';
  b->len += dx__decimal((char *)w, u) + (v < 0);
  return 0;
}

int dx__eio_buf_json_string(dx__eio_buf *b, const char *p, size_t n) {
  static const char hex[] = "0123456789abcdef";
  /* Worst case six bytes per input byte (\u00xx) plus the quotes; reserve
   * it once so the loop writes without checks and a failure changes
   * nothing. Strings here are bounded by maxPayload, so the product does
   * not overflow in practice; the check is for the contract. */
  if (n > (SIZE_MAX - 2) / 6) return DX_ENOMEM;
  uint8_t *w = dx__eio_buf_reserve(b, n * 6 + 2);
  if (!w) return DX_ENOMEM;
  uint8_t *start = w;
  *w++ = '"';
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)p[i];
    if (c >= 0x20 && c != '"' && c != '\\') {
      *w++ = c;
      continue;
    }
    *w++ = '\\';
    switch (c) {
      case '"': *w++ = '"'; break;
      case '\\': *w++ = '\\'; break;
      case '\b': *w++ = 'b'; break;
      case '\f': *w++ = 'f'; break;
      case '\n': *w++ = 'n'; break;
      case '\r': *w++ = 'r'; break;
      case '\t': *w++ = 't'; break;
      default:
        *w++ = 'u';
        *w++ = '0';
        *w++ = '0';
        *w++ = (uint8_t)hex[c >> 4];
        *w++ = (uint8_t)hex[c & 15];
    }
  }
  *w++ = '"';
  b->len += (size_t)(w - start);
  return 0;
}
