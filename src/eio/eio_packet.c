#include "eio/eio_packet.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "proto/utf8.h"

/* ------------------------------------------------------------------------ */
/* base64 (RFC 4648 §4, padded), strict                                      */
/* ------------------------------------------------------------------------ */

/* Our own codec rather than OpenSSL's EVP_DecodeBlock: that one skips
 * whitespace, accepts missing padding in some modes and cannot say how many
 * pad bytes it dropped, while a payload record must be refused unless it
 * is exactly what a v4 encoder writes. */

static const char b64_chars[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* The six bits of c, or -1. */
static int b64_val(unsigned char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

static size_t b64_len(size_t n) { return (n + 2) / 3 * 4; }

static void b64_encode(uint8_t *w, const uint8_t *p, size_t n) {
  size_t i = 0;
  for (; n - i >= 3; i += 3) {
    uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
    *w++ = (uint8_t)b64_chars[v >> 18];
    *w++ = (uint8_t)b64_chars[(v >> 12) & 63];
    *w++ = (uint8_t)b64_chars[(v >> 6) & 63];
    *w++ = (uint8_t)b64_chars[v & 63];
  }
  if (i < n) {
    uint32_t v = (uint32_t)p[i] << 16 | (n - i == 2 ? (uint32_t)p[i + 1] << 8 : 0);
    *w++ = (uint8_t)b64_chars[v >> 18];
    *w++ = (uint8_t)b64_chars[(v >> 12) & 63];
    *w++ = n - i == 2 ? (uint8_t)b64_chars[(v >> 6) & 63] : '=';
    *w++ = '=';
  }
}

/* Decodes s[0..n) to out, which may be s itself (three bytes are written
 * for every four read, after they are read). With out NULL it only checks.
 * Returns the decoded length, or -1 unless s is canonical padded base64:
 * a multiple of four, '=' only as the last one or two, zero pad bits. */
static ptrdiff_t b64_decode(uint8_t *out, const uint8_t *s, size_t n) {
  if (n % 4) return -1;
  size_t o = 0;
  for (size_t i = 0; i < n; i += 4) {
    int last = i + 4 == n;
    int pad = last ? (s[n - 1] == '=') + (s[n - 1] == '=' && s[n - 2] == '=') : 0;
    int v[4] = {0, 0, 0, 0};
    for (int k = 0; k < 4 - pad; k++)
      if ((v[k] = b64_val(s[i + k])) < 0) return -1;
    uint32_t bits = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 |
                    (uint32_t)v[2] << 6 | (uint32_t)v[3];
    if ((pad == 1 && (bits & 0xFF)) || (pad == 2 && (bits & 0xFFFF)))
      return -1; /* non-zero bits a canonical encoder leaves clear */
    uint8_t b[3] = {(uint8_t)(bits >> 16), (uint8_t)(bits >> 8), (uint8_t)bits};
    if (out) memcpy(out + o, b, (size_t)(3 - pad));
    o += (size_t)(3 - pad);
  }
  return (ptrdiff_t)o;
}

/* ------------------------------------------------------------------------ */
/* Decoding                                                                 */
/* ------------------------------------------------------------------------ */

static int is_type_char(uint8_t c) { return c >= '0' && c <= '6'; }

int dx__eio_decode_ws(const uint8_t *p, size_t n, int binary,
                      dx__eio_packet *out) {
  if (binary) {
    *out = (dx__eio_packet){DX__EIO_MESSAGE, 1, p, n};
    return 0;
  }
  if (n == 0) return DX__EIO_EEMPTY;
  if (!is_type_char(p[0])) return DX__EIO_ETYPE;
  *out = (dx__eio_packet){(uint8_t)(p[0] - '0'), 0, p + 1, n - 1};
  return 0;
}

/* One record of a payload, checked (decode 0) or decoded in place. */
static int record(uint8_t *p, size_t n, int decode, dx__eio_packet *out) {
  if (n == 0) return DX__EIO_EEMPTY;
  if (p[0] == 'b') {
    ptrdiff_t len = b64_decode(decode ? p + 1 : NULL, p + 1, n - 1);
    if (len < 0) return DX__EIO_EBASE64;
    if (out) *out = (dx__eio_packet){DX__EIO_MESSAGE, 1, p + 1, (size_t)len};
    return 0;
  }
  if (!is_type_char(p[0])) return DX__EIO_ETYPE;
  if (out) *out = (dx__eio_packet){(uint8_t)(p[0] - '0'), 0, p + 1, n - 1};
  return 0;
}

/* Length of the record starting at p[pos]: up to the next separator. */
static size_t record_len(const uint8_t *p, size_t len, size_t pos) {
  const uint8_t *sep = memchr(p + pos, DX__EIO_SEPARATOR, len - pos);
  return sep ? (size_t)(sep - (p + pos)) : len - pos;
}

int dx__eio_payload_begin(dx__eio_reader *r, uint8_t *body, size_t len,
                          size_t max_payload) {
  r->p = body;
  r->len = r->pos = 0;
  if (len > max_payload) return DX_ETOOBIG;
  if (len == 0) return DX__EIO_EEMPTY;
  /* A polling body is text (base64 included), so one pass validates every
   * record's UTF-8 at once. */
  if (dx__utf8_validate(body, len) != 0) return DX_EUTF8;
  /* Every record checked before any is handed out: a bad body is refused
   * whole, so the session never acts on the first half of one. A trailing
   * separator leaves an empty last record, refused like any other. */
  for (size_t pos = 0;;) {
    size_t n = record_len(body, len, pos);
    int err = record(body + pos, n, 0, NULL);
    if (err) return err;
    pos += n;
    if (pos == len) break;
    pos++; /* the separator */
    if (pos == len) return DX__EIO_EEMPTY;
  }
  r->len = len;
  return 0;
}

int dx__eio_payload_next(dx__eio_reader *r, dx__eio_packet *out) {
  if (r->pos >= r->len) return 0;
  size_t n = record_len(r->p, r->len, r->pos);
  /* Checked by dx__eio_payload_begin, so this cannot fail now. */
  record(r->p + r->pos, n, 1, out);
  r->pos += n + 1; /* past the separator, or past the end */
  return 1;
}

/* ------------------------------------------------------------------------ */
/* Encoding                                                                 */
/* ------------------------------------------------------------------------ */

static int packet_ok(int type, int binary) {
  return type >= DX__EIO_OPEN && type <= DX__EIO_NOOP &&
         (!binary || type == DX__EIO_MESSAGE);
}

int dx__eio_encode_ws(dx__eio_buf *out, const dx__eio_packet *p) {
  if (!packet_ok(p->type, p->binary)) return DX_EINVAL;
  size_t n = p->binary ? p->len : p->len + 1;
  uint8_t *w = dx__eio_buf_reserve(out, n);
  if (!w) return DX_ENOMEM;
  if (!p->binary) *w++ = (uint8_t)('0' + p->type);
  if (p->len) memcpy(w, p->data, p->len);
  out->len += n;
  return 0;
}

size_t dx__eio_record_size(const dx__eio_packet *p) {
  return 1 + (p->binary ? b64_len(p->len) : p->len);
}

/* Writes one record at w (dx__eio_record_size(p) bytes). */
static void write_record(uint8_t *w, const dx__eio_packet *p) {
  if (p->binary) {
    *w++ = 'b';
    b64_encode(w, p->data, p->len);
  } else {
    *w++ = (uint8_t)('0' + p->type);
    if (p->len) memcpy(w, p->data, p->len);
  }
}

/* ------------------------------------------------------------------------ */
/* The queue                                                                */
/* ------------------------------------------------------------------------ */

struct dx__eio_qnode {
  dx__eio_qnode *next;
  dx__eio_packet pkt; /* pkt.data points at bytes[] */
  uint8_t bytes[];
};

void dx__eio_queue_init(dx__eio_queue *q, const dx__alloc *a) {
  q->head = q->tail = NULL;
  q->count = q->bytes = 0;
  q->alloc = a;
}

void dx__eio_queue_pop(dx__eio_queue *q) {
  dx__eio_qnode *n = q->head;
  if (!n) return;
  q->head = n->next;
  if (!q->head) q->tail = NULL;
  q->count--;
  q->bytes -= sizeof *n + n->pkt.len;
  dx__mem_free(q->alloc, n);
}

void dx__eio_queue_clear(dx__eio_queue *q) {
  while (q->head) dx__eio_queue_pop(q);
}

int dx__eio_queue_push(dx__eio_queue *q, int type, int binary,
                       const void *data, size_t len) {
  if (!packet_ok(type, binary) || (len && !data)) return DX_EINVAL;
  if (!binary && dx__utf8_validate(data, len) != 0) return DX_EUTF8;
  if (len > SIZE_MAX - sizeof(dx__eio_qnode)) return DX_ENOMEM;
  dx__eio_qnode *n = dx__mem_alloc(q->alloc, sizeof *n + len);
  if (!n) return DX_ENOMEM;
  n->next = NULL;
  if (len) memcpy(n->bytes, data, len);
  n->pkt = (dx__eio_packet){(uint8_t)type, (uint8_t)(binary != 0), n->bytes, len};
  if (q->tail) q->tail->next = n;
  else q->head = n;
  q->tail = n;
  q->count++;
  /* The node counts too: a bound on data alone would let packets of no
   * data (an empty message echoed back) pile up without limit. */
  q->bytes += sizeof *n + len;
  return 0;
}

int dx__eio_queue_front(const dx__eio_queue *q, dx__eio_packet *out) {
  if (!q->head) return 0;
  *out = q->head->pkt;
  return 1;
}

int dx__eio_payload_encode(dx__eio_queue *q, size_t budget, dx__eio_buf *out) {
  /* First count what fits, so one reservation covers the whole body and a
   * failure leaves both the queue and out untouched. */
  size_t total = 0;
  int taken = 0;
  for (dx__eio_qnode *n = q->head; n; n = n->next) {
    size_t add = dx__eio_record_size(&n->pkt) + (taken ? 1 : 0);
    if (taken && (add > budget || total > budget - add)) break;
    total += add;
    taken++;
    if (taken == INT32_MAX) break;
  }
  if (taken == 0) return 0;
  uint8_t *w = dx__eio_buf_reserve(out, total);
  if (!w) return DX_ENOMEM;
  for (int i = 0; i < taken; i++) {
    if (i) *w++ = DX__EIO_SEPARATOR;
    write_record(w, &q->head->pkt);
    w += dx__eio_record_size(&q->head->pkt);
    dx__eio_queue_pop(q);
  }
  out->len += total;
  return taken;
}

/* ------------------------------------------------------------------------ */
/* The handshake and HTTP errors                                            */
/* ------------------------------------------------------------------------ */

/* The largest integer a JavaScript number holds exactly. */
#define JS_MAX_SAFE 9007199254740991ull

/* Appends a NUL-terminated ASCII piece of JSON; 0 or DX_ENOMEM. */
static int put(dx__eio_buf *b, const char *s) {
  return dx__eio_buf_append(b, s, strlen(s));
}

int dx__eio_open_json(dx__eio_buf *out, const dx__eio_open *o) {
  if (!o->sid || !o->sid[0] || o->max_payload > JS_MAX_SAFE) return DX_EINVAL;
  size_t sid_len = strlen(o->sid);
  if (dx__utf8_validate((const uint8_t *)o->sid, sid_len) != 0) return DX_EINVAL;
  size_t keep = out->len;
  char tail[160];
  snprintf(tail, sizeof tail,
           ",\"upgrades\":[%s],\"pingInterval\":%" PRIu32
           ",\"pingTimeout\":%" PRIu32 ",\"maxPayload\":%" PRIu64 "}",
           o->upgrade_websocket ? "\"websocket\"" : "", o->ping_interval,
           o->ping_timeout, o->max_payload);
  if (put(out, "{\"sid\":") || dx__eio_buf_json_string(out, o->sid, sid_len) ||
      put(out, tail)) {
    out->len = keep;
    return DX_ENOMEM;
  }
  return 0;
}

static const char *const http_error_messages[] = {
    "Transport unknown", "Session ID unknown", "Bad handshake method",
    "Bad request",       "Forbidden",          "Unsupported protocol version"};

int dx__eio_http_error(int code, const char **message) {
  if (code < 0 || code > DX__EIO_ERR_UNSUPPORTED_PROTOCOL_VERSION)
    return DX_EINVAL;
  if (message) *message = http_error_messages[code];
  return code == DX__EIO_ERR_FORBIDDEN ? 403 : 400;
}

int dx__eio_http_error_body(dx__eio_buf *out, int code, const char *message) {
  const char *std;
  if (dx__eio_http_error(code, &std) < 0) return DX_EINVAL;
  if (!message) message = std;
  size_t n = strlen(message);
  if (dx__utf8_validate((const uint8_t *)message, n) != 0) return DX_EINVAL;
  size_t keep = out->len;
  char head[32];
  snprintf(head, sizeof head, "{\"code\":%d,\"message\":", code);
  if (put(out, head) || dx__eio_buf_json_string(out, message, n) ||
      dx__eio_buf_putc(out, '}')) {
    out->len = keep;
    return DX_ENOMEM;
  }
  return 0;
}
