#include "eio/sio_packet.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eio/sio_json.h"
#include "proto/utf8.h"

/* ------------------------------------------------------------------------ */
/* Binaries inside a json_t                                                  */
/* ------------------------------------------------------------------------ */

/* The one member's key of a binary value. 0xFF is never part of valid
 * UTF-8, which is all jansson's parser admits in a key, so only
 * dx__sio_binary_new makes such an object. */
static const char BIN_KEY[] = "\xff" "binary";
#define BIN_KEY_LEN (sizeof BIN_KEY - 1)

json_t *dx__sio_binary_new(const void *p, size_t n) {
  json_t *o = json_object();
  /* _nocheck: the bytes are not text, and jansson keeps them with their
   * length (NULs included). */
  json_t *s = json_stringn_nocheck(n ? (const char *)p : "", n);
  if (!o || !s || json_object_setn_new_nocheck(o, BIN_KEY, BIN_KEY_LEN, s)) {
    json_decref(o);
    return NULL; /* setn_new released s even on failure */
  }
  return o;
}

int dx__sio_binary_get(const json_t *v, const uint8_t **p, size_t *n) {
  if (!json_is_object(v) || json_object_size(v) != 1) return 0;
  json_t *s = json_object_getn(v, BIN_KEY, BIN_KEY_LEN);
  if (!json_is_string(s)) return 0;
  *p = (const uint8_t *)json_string_value(s);
  *n = json_string_length(s);
  return 1;
}

int dx__sio_reserved_event(const char *name, size_t n) {
  static const char *const reserved[] = {"connect",       "connect_error",
                                         "disconnect",    "disconnecting",
                                         "newListener",   "removeListener"};
  for (size_t i = 0; i < sizeof reserved / sizeof *reserved; i++)
    if (strlen(reserved[i]) == n && memcmp(reserved[i], name, n) == 0) return 1;
  return 0;
}

void dx__sio_packet_release(dx__sio_packet *p) {
  json_decref(p->data);
  p->data = NULL;
}

/* ------------------------------------------------------------------------ */
/* What each type may carry: one set of rules for both directions            */
/* ------------------------------------------------------------------------ */

/* The reference parser's rules, stricter where it is loose and no
 * reference peer sends otherwise: an id only on EVENT and ACK, and always
 * on ACK; data always on EVENT, ACK and CONNECT_ERROR. An event name may be
 * a number, as the reference decoder admits. Binaries (placeholders on the
 * wire) are objects here, so one cannot be an event's name. */
static int check_shape(int type, int64_t id, const json_t *data) {
  if (id != DX__SIO_NO_ID && type != DX__SIO_EVENT && type != DX__SIO_ACK)
    return DX__SIO_EID;
  switch (type) {
    case DX__SIO_CONNECT:
      return !data || json_is_object(data) ? 0 : DX__SIO_EDATA;
    case DX__SIO_DISCONNECT:
      return data ? DX__SIO_EDATA : 0;
    case DX__SIO_CONNECT_ERROR:
      return json_is_object(data) || json_is_string(data) ? 0 : DX__SIO_EDATA;
    case DX__SIO_ACK:
      if (id == DX__SIO_NO_ID) return DX__SIO_EID;
      return json_is_array(data) ? 0 : DX__SIO_EDATA;
    case DX__SIO_EVENT: {
      json_t *name = json_array_get(data, 0); /* NULL unless a non-empty array */
      if (json_is_number(name)) return 0;
      if (!json_is_string(name)) return DX__SIO_EDATA;
      return dx__sio_reserved_event(json_string_value(name),
                                    json_string_length(name))
                 ? DX__SIO_ERESERVED
                 : 0;
    }
  }
  return DX__SIO_ETYPE;
}

/* A placeholder's "num" as an index below `count` (an integer, or, when the
 * value was decoded with reals, an integral real). -1 otherwise. */
static long long placeholder_num(const json_t *num, unsigned count) {
  double r;
  if (json_is_integer(num)) {
    json_int_t k = json_integer_value(num);
    return k >= 0 && k < (json_int_t)count ? (long long)k : -1;
  }
  if (!json_is_real(num)) return -1;
  r = json_real_value(num);
  return r >= 0 && r < (double)count && r == floor(r) ? (long long)r : -1;
}

/* ------------------------------------------------------------------------ */
/* Decoding                                                                  */
/* ------------------------------------------------------------------------ */

void dx__sio_decoder_init(dx__sio_decoder *d, const dx__alloc *a,
                          unsigned max_attachments) {
  memset(d, 0, sizeof *d);
  d->alloc = a;
  d->max_attachments = max_attachments;
}

/* Drops a pending packet and its buffers. */
static void drop_pending(dx__sio_decoder *d) {
  if (d->bins) {
    for (unsigned i = 0; i < d->got; i++) json_decref(d->bins[i]);
    dx__mem_free(d->alloc, d->bins);
    d->bins = NULL;
  }
  d->got = 0;
  dx__sio_packet_release(&d->pending);
  d->pending.attachments = 0;
}

void dx__sio_decoder_free(dx__sio_decoder *d) {
  drop_pending(d);
  dx__mem_free(d->alloc, d->nsp);
  d->nsp = NULL;
  d->nsp_cap = 0;
}

unsigned dx__sio_decoder_awaiting(const dx__sio_decoder *d) {
  return d->bins ? d->pending.attachments - d->got : 0;
}

/* Walks a decoded value checking every object with a "_placeholder" key:
 * it must be exactly {"_placeholder":true,"num":k}, k below `count` and
 * seen once (seen[] has count bytes). Counts them in *found. */
static int scan_placeholders(const json_t *v, unsigned count, uint8_t *seen,
                             unsigned *found) {
  size_t i;
  json_t *e;
  if (json_is_array(v)) {
    json_array_foreach(v, i, e) {
      int err = scan_placeholders(e, count, seen, found);
      if (err) return err;
    }
    return 0;
  }
  if (!json_is_object(v)) return 0;
  json_t *flag = json_object_get(v, "_placeholder");
  if (flag) {
    long long k = placeholder_num(json_object_get(v, "num"), count);
    if (!json_is_true(flag) || json_object_size(v) != 2 || k < 0 || seen[k])
      return DX__SIO_EPLACEHOLDER;
    seen[k] = 1;
    (*found)++;
    return 0;
  }
  const char *key;
  json_object_foreach((json_t *)v, key, e) {
    int err = scan_placeholders(e, count, seen, found);
    if (err) return err;
  }
  return 0;
}

/* When e is a placeholder (already checked), hands over the reference to
 * its binary from bins[] and returns it; NULL otherwise. */
static json_t *take_binary(const json_t *e, json_t **bins, unsigned count) {
  if (!json_is_object(e) || !json_object_get(e, "_placeholder")) return NULL;
  long long k = placeholder_num(json_object_get(e, "num"), count);
  json_t *b = bins[k];
  bins[k] = NULL;
  return b;
}

/* Replaces every placeholder in v by its binary. */
static void fill_placeholders(json_t *v, json_t **bins, unsigned count) {
  size_t i;
  json_t *e, *b;
  if (json_is_array(v)) {
    json_array_foreach(v, i, e) {
      if ((b = take_binary(e, bins, count))) json_array_set_new(v, i, b);
      else fill_placeholders(e, bins, count);
    }
  } else if (json_is_object(v)) {
    for (void *it = json_object_iter(v); it; it = json_object_iter_next(v, it)) {
      e = json_object_iter_value(it);
      /* Sets the value under the same key, in place: the iteration goes on
       * unharmed. */
      if ((b = take_binary(e, bins, count))) json_object_iter_set_new(v, it, b);
      else fill_placeholders(e, bins, count);
    }
  }
}

/* Reads a canonical decimal number at p[*i..n): at least one digit, no
 * leading zero unless it is "0". The value saturates at UINT64_MAX.
 * Returns 0 with *v set, -1 when there is no digit or a leading zero. */
static int read_number(const char *p, size_t n, size_t *i, uint64_t *v) {
  size_t s = *i;
  uint64_t x = 0;
  while (*i < n && p[*i] >= '0' && p[*i] <= '9') {
    unsigned dg = (unsigned)(p[*i] - '0');
    x = x > (UINT64_MAX - dg) / 10 ? UINT64_MAX : x * 10 + dg;
    (*i)++;
  }
  if (*i == s || (p[s] == '0' && *i - s > 1)) return -1;
  *v = x;
  return 0;
}

static int is_json_start(char c) { return c == '[' || c == '{' || c == '"'; }
static int is_digit(char c) { return c >= '0' && c <= '9'; }

/* Keeps a NUL-terminated copy of the namespace in d. */
static int keep_nsp(dx__sio_decoder *d, const char *p, size_t n) {
  if (n + 1 > d->nsp_cap) {
    char *s = d->alloc->realloc(d->alloc->ud, d->nsp, n + 1);
    if (!s) return DX_ENOMEM;
    d->nsp = s;
    d->nsp_cap = n + 1;
  }
  memcpy(d->nsp, p, n);
  d->nsp[n] = '\0';
  return 0;
}

/* The header and data of one text message, into *pk (data a new
 * reference). */
static int parse_text(dx__sio_decoder *d, const char *p, size_t n,
                      dx__sio_packet *pk) {
  size_t i = 1;
  uint64_t v;
  *pk = (dx__sio_packet){0, "/", 1, DX__SIO_NO_ID, NULL, 0};
  if (n == 0 || p[0] < '0' || p[0] > '6') return DX__SIO_ETYPE;
  pk->type = p[0] - '0';

  if (pk->type == DX__SIO_BINARY_EVENT || pk->type == DX__SIO_BINARY_ACK) {
    if (read_number(p, n, &i, &v) || i == n || p[i] != '-' || v == 0)
      return DX__SIO_EATTACH;
    if (v > d->max_attachments) return DX__SIO_ETOOMANY;
    pk->attachments = (unsigned)v;
    i++;
  }

  if (i < n && p[i] == '/') {
    /* Up to the comma, or to the end (the reference accepts "1/admin"). */
    const char *comma = memchr(p + i, ',', n - i);
    size_t len = comma ? (size_t)(comma - (p + i)) : n - i;
    int err = keep_nsp(d, p + i, len);
    if (err) return err;
    pk->nsp = d->nsp;
    pk->nsp_len = len;
    i += len + (comma != NULL);
  } else if (i < n && !is_digit(p[i]) && !is_json_start(p[i])) {
    return DX__SIO_ENSP;
  }

  if (i < n && is_digit(p[i])) {
    if (read_number(p, n, &i, &v) || v > (uint64_t)DX__SIO_MAX_ID)
      return DX__SIO_EID;
    pk->id = (int64_t)v;
  } else if (i < n && !is_json_start(p[i])) {
    return DX__SIO_EID;
  }

  if (i < n) {
    pk->data = dx__sio_json_parse(p + i, n - i);
    if (!pk->data) return DX__SIO_EJSON;
  }
  if (pk->type == DX__SIO_BINARY_EVENT) pk->type = DX__SIO_EVENT;
  if (pk->type == DX__SIO_BINARY_ACK) pk->type = DX__SIO_ACK;
  return check_shape(pk->type, pk->id, pk->data);
}

int dx__sio_decode_text(dx__sio_decoder *d, const char *p, size_t n,
                        dx__sio_packet *out) {
  if (d->bins) {
    drop_pending(d);
    return DX__SIO_EORDER;
  }
  if (dx__utf8_validate((const uint8_t *)p, n) != 0) return DX_EUTF8;
  dx__sio_packet pk;
  int err = parse_text(d, p, n, &pk);
  unsigned count = pk.attachments;
  /* Placeholders are checked now, before any buffer comes, so a bad one
   * ends the connection at once; a packet without attachments may hold
   * none. */
  if (!err) {
    uint8_t none = 0;
    uint8_t *seen = count ? dx__mem_alloc(d->alloc, count) : &none;
    unsigned found = 0;
    if (!seen) {
      err = DX_ENOMEM;
    } else {
      if (count) memset(seen, 0, count);
      err = scan_placeholders(pk.data, count, seen, &found);
      if (!err && found != count) err = DX__SIO_ECOUNT;
      if (count) dx__mem_free(d->alloc, seen);
    }
  }
  if (err) {
    dx__sio_packet_release(&pk);
    return err;
  }
  if (count == 0) {
    *out = pk;
    return 1;
  }
  d->bins = dx__mem_alloc(d->alloc, count * sizeof *d->bins);
  if (!d->bins) {
    dx__sio_packet_release(&pk);
    return DX_ENOMEM;
  }
  d->pending = pk;
  d->got = 0;
  return 0;
}

int dx__sio_decode_binary(dx__sio_decoder *d, const uint8_t *p, size_t n,
                          dx__sio_packet *out) {
  if (!d->bins) return DX__SIO_EORDER;
  json_t *b = dx__sio_binary_new(p, n);
  if (!b) {
    drop_pending(d);
    return DX_ENOMEM;
  }
  d->bins[d->got++] = b;
  if (d->got < d->pending.attachments) return 0;
  fill_placeholders(d->pending.data, d->bins, d->got);
  dx__mem_free(d->alloc, d->bins);
  d->bins = NULL;
  d->got = 0;
  *out = d->pending;
  d->pending.data = NULL;
  d->pending.attachments = 0;
  return 1;
}

/* ------------------------------------------------------------------------ */
/* Encoding                                                                  */
/* ------------------------------------------------------------------------ */

void dx__sio_encoded_init(dx__sio_encoded *e, const dx__alloc *a) {
  dx__eio_buf_init(&e->text, a);
  e->att = NULL;
  e->n_att = e->cap_att = 0;
}

void dx__sio_encoded_free(dx__sio_encoded *e) {
  dx__mem_free(e->text.alloc, e->att);
  dx__eio_buf_free(&e->text);
  e->att = NULL;
  e->n_att = e->cap_att = 0;
}

/* Counts the binaries in v and checks what the writer would find later,
 * so nothing is written for a value that cannot go out. */
static int count_binaries(const json_t *v, int depth, size_t *count) {
  const uint8_t *bp;
  size_t bn, i;
  json_t *e;
  if (depth > DX__SIO_MAX_DEPTH) return DX_EINVAL;
  if (dx__sio_binary_get(v, &bp, &bn)) {
    (*count)++;
    return 0;
  }
  if (json_is_array(v)) {
    json_array_foreach(v, i, e) {
      int err = count_binaries(e, depth + 1, count);
      if (err) return err;
    }
  } else if (json_is_object(v)) {
    if (json_object_get(v, "_placeholder")) return DX__SIO_EPLACEHOLDER;
    const char *key;
    size_t key_len;
    json_object_keylen_foreach((json_t *)v, key, key_len, e) {
      if (dx__utf8_validate((const uint8_t *)key, key_len)) return DX_EINVAL;
      int err = count_binaries(e, depth + 1, count);
      if (err) return err;
    }
  } else if (json_is_string(v)) {
    if (dx__utf8_validate((const uint8_t *)json_string_value(v),
                          json_string_length(v)))
      return DX_EINVAL;
  }
  return 0;
}

/* A real as JSON.stringify writes it (ECMAScript Number::toString): the
 * fewest significant digits that read back as the same double (most reals
 * in use, 0.1 or 1.5, take one or two tries), in plain decimals from 1e-6
 * up to 2^63 and as d.ddde+N / d.ddde-N outside, -0 as 0. JavaScript
 * writes plain digits up to 1e21; we stop at 2^63 so that a value we write
 * never holds an integer past int64, which would make our own decoder read
 * the whole value again with reals and round its other integers. JSON has no
 * infinities or NaN: JSON.stringify writes null for them, and so do we
 * (jansson makes none, but a value may come from elsewhere). */
static int write_real(dx__eio_buf *b, double r) {
  char s[40], out[64];
  int prec = 1, n = 0;
  if (!isfinite(r)) return dx__eio_buf_append(b, "null", 4);
  if (r == 0) return dx__eio_buf_putc(b, '0');
  for (; prec < 17; prec++) {
    snprintf(s, sizeof s, "%.*e", prec - 1, r);
    if (strtod(s, NULL) == r) break;
  }
  snprintf(s, sizeof s, "%.*e", prec - 1, r);
  /* s is [-]d[.ddd]e±XX: gather the digits and the exponent. */
  const char *m = s;
  if (*m == '-') out[n++] = *m++;
  char dig[20];
  int nd = 0;
  for (; *m != 'e'; m++)
    if (*m != '.') dig[nd++] = *m;
  int e = atoi(m + 1);
  if (e >= 0 && fabs(r) < 0x1p63) { /* 123, 1.5, 1152921504606847000 */
    for (int k = 0; k < nd || k <= e; k++) {
      if (k == e + 1) out[n++] = '.';
      out[n++] = k < nd ? dig[k] : '0';
    }
  } else if (e < 0 && e >= -6) { /* 0.000015 */
    out[n++] = '0';
    out[n++] = '.';
    for (int k = -1; k > e; k--) out[n++] = '0';
    for (int k = 0; k < nd; k++) out[n++] = dig[k];
  } else { /* 1e+21, 1.5e-7 */
    out[n++] = dig[0];
    if (nd > 1) out[n++] = '.';
    for (int k = 1; k < nd; k++) out[n++] = dig[k];
    n += snprintf(out + n, sizeof out - (size_t)n, "e%c%d", e < 0 ? '-' : '+',
                  e < 0 ? -e : e);
  }
  return dx__eio_buf_append(b, out, (size_t)n);
}

static int write_value(dx__sio_encoded *e, const json_t *v);

/* The attachment list grows as binaries are met; counted beforehand, so
 * this reserves once. */
static int add_attachment(dx__sio_encoded *e, const uint8_t *p, size_t n) {
  if (e->n_att == e->cap_att) {
    size_t cap = e->cap_att ? e->cap_att * 2 : 4;
    dx__sio_attachment *a =
        e->text.alloc->realloc(e->text.alloc->ud, e->att, cap * sizeof *a);
    if (!a) return DX_ENOMEM;
    e->att = a;
    e->cap_att = cap;
  }
  e->att[e->n_att++] = (dx__sio_attachment){p, n};
  return 0;
}

static int write_value(dx__sio_encoded *e, const json_t *v) {
  dx__eio_buf *b = &e->text;
  const uint8_t *bp;
  size_t bn, i;
  json_t *el;
  int err = 0;
  if (dx__sio_binary_get(v, &bp, &bn)) {
    int64_t num = (int64_t)e->n_att;
    if ((err = add_attachment(e, bp, bn))) return err;
    static const char ph[] = "{\"_placeholder\":true,\"num\":";
    if ((err = dx__eio_buf_append(b, ph, sizeof ph - 1)) || (err = dx__eio_buf_put_int(b, num)))
      return err;
    return dx__eio_buf_putc(b, '}');
  }
  switch (json_typeof(v)) {
    case JSON_OBJECT: {
      const char *key;
      size_t key_len;
      int first = 1;
      if ((err = dx__eio_buf_putc(b, '{'))) return err;
      json_object_keylen_foreach((json_t *)v, key, key_len, el) {
        if ((!first && (err = dx__eio_buf_putc(b, ','))) ||
            (err = dx__eio_buf_json_string(b, key, key_len)) ||
            (err = dx__eio_buf_putc(b, ':')) || (err = write_value(e, el)))
          return err;
        first = 0;
      }
      return dx__eio_buf_putc(b, '}');
    }
    case JSON_ARRAY:
      if ((err = dx__eio_buf_putc(b, '['))) return err;
      json_array_foreach(v, i, el) {
        if ((i && (err = dx__eio_buf_putc(b, ','))) || (err = write_value(e, el)))
          return err;
      }
      return dx__eio_buf_putc(b, ']');
    case JSON_STRING:
      return dx__eio_buf_json_string(b, json_string_value(v), json_string_length(v));
    case JSON_INTEGER:
      return dx__eio_buf_put_int(b, (int64_t)json_integer_value(v));
    case JSON_REAL:
      return write_real(b, json_real_value(v));
    case JSON_TRUE:
      return dx__eio_buf_append(b, "true", 4);
    case JSON_FALSE:
      return dx__eio_buf_append(b, "false", 5);
    case JSON_NULL:
      return dx__eio_buf_append(b, "null", 4);
  }
  return DX_EINVAL;
}

int dx__sio_encode(const dx__sio_packet *p, unsigned max_attachments,
                   dx__sio_encoded *e) {
  int type = p->type;
  const char *nsp = p->nsp ? p->nsp : "/";
  size_t nsp_len = p->nsp ? p->nsp_len : 1;
  size_t count = 0;
  int err;

  e->text.len = 0;
  e->n_att = 0;
  if (type == DX__SIO_BINARY_EVENT) type = DX__SIO_EVENT;
  if (type == DX__SIO_BINARY_ACK) type = DX__SIO_ACK;
  if (type < DX__SIO_CONNECT || type > DX__SIO_CONNECT_ERROR) return DX__SIO_ETYPE;
  if (p->id < DX__SIO_NO_ID || p->id > DX__SIO_MAX_ID) return DX__SIO_EID;
  if (nsp_len == 0 || nsp[0] != '/' || memchr(nsp, ',', nsp_len))
    return DX__SIO_ENSP;
  if (dx__utf8_validate((const uint8_t *)nsp, nsp_len)) return DX_EINVAL;
  if ((err = check_shape(type, p->id, p->data))) return err;
  if (p->data && (err = count_binaries(p->data, 0, &count))) return err;
  if (count && type != DX__SIO_EVENT && type != DX__SIO_ACK) return DX__SIO_EDATA;
  if (max_attachments && count > max_attachments) return DX__SIO_ETOOMANY;

  /* <type>[<attachments>-] */
  if (count) {
    if ((err = dx__eio_buf_putc(&e->text, (char)('0' + type + 3))) || /* 5 or 6 */
        (err = dx__eio_buf_put_int(&e->text, (int64_t)count)) ||
        (err = dx__eio_buf_putc(&e->text, '-')))
      goto fail;
  } else if ((err = dx__eio_buf_putc(&e->text, (char)('0' + type)))) {
    goto fail;
  }
  /* [<namespace>,] */
  if (nsp_len != 1 &&
      ((err = dx__eio_buf_append(&e->text, nsp, nsp_len)) ||
       (err = dx__eio_buf_putc(&e->text, ','))))
    goto fail;
  /* [<id>] */
  if (p->id != DX__SIO_NO_ID && (err = dx__eio_buf_put_int(&e->text, p->id))) goto fail;
  if (p->data && (err = write_value(e, p->data))) goto fail;
  return 0;
fail:
  e->text.len = 0;
  e->n_att = 0;
  return err;
}
