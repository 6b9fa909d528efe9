#include "eio/sio_json.h"

#include <stdint.h>
#include <string.h>

/* jansson's flags: duplicate keys refused (a JavaScript peer never writes
 * them; which one wins is where parsers disagree), any value at the top
 * (CONNECT_ERROR's data may be a string), "\u0000" admitted in strings (a
 * JavaScript string may hold it). */
#define JSON_FLAGS (JSON_REJECT_DUPLICATES | JSON_DECODE_ANY | JSON_ALLOW_NUL)

/* Deeper values go to jansson (which allows 2,048 levels): the bound keeps
 * this recursion's stack small whatever a peer sends. */
#define FAST_MAX_DEPTH 32

/* Integers of up to 18 digits cannot overflow json_int_t; longer ones,
 * rare, are jansson's (which reads one past 64 bits as a real, below). */
#define FAST_MAX_DIGITS 18

typedef struct {
  const char *p, *end;
} cursor;

static void skip_ws(cursor *c) {
  while (c->p < c->end &&
         (*c->p == ' ' || *c->p == '\n' || *c->p == '\r' || *c->p == '\t'))
    c->p++;
}

/* c->p just after an opening quote: a string without escapes or control
 * bytes (which JSON forbids raw) ends at the next quote. Sets its bytes and
 * moves past the quote; 0 if the string is outside the subset. */
static int plain_string(cursor *c, const char **s, size_t *len) {
  for (const char *q = c->p; q < c->end; q++) {
    unsigned char b = (unsigned char)*q;
    if (b == '"') {
      *s = c->p;
      *len = (size_t)(q - c->p);
      c->p = q + 1;
      return 1;
    }
    if (b == '\\' || b < 0x20) return 0;
  }
  return 0;
}

/* An integer in JSON's syntax; reals (a fraction or an exponent), leading
 * zeros, "-0" and long ones are left to jansson. */
static json_t *integer(cursor *c) {
  const char *q = c->p;
  int neg = *q == '-';
  if (neg) q++;
  const char *digits = q;
  uint64_t v = 0;
  while (q < c->end && *q >= '0' && *q <= '9' && q - digits < FAST_MAX_DIGITS + 1)
    v = v * 10 + (uint64_t)(*q++ - '0');
  size_t nd = (size_t)(q - digits);
  if (nd == 0 || nd > FAST_MAX_DIGITS || (nd > 1 && *digits == '0') ||
      (neg && v == 0))
    return NULL;
  if (q < c->end && (*q == '.' || *q == 'e' || *q == 'E')) return NULL;
  c->p = q;
  return json_integer(neg ? -(json_int_t)v : (json_int_t)v);
}

static int literal(cursor *c, const char *word, size_t n) {
  if ((size_t)(c->end - c->p) < n || memcmp(c->p, word, n) != 0) return 0;
  c->p += n;
  return 1;
}

static json_t *value(cursor *c, int depth);

/* After a member: 1 at the closing byte (consumed), 0 after a comma
 * (consumed, blanks skipped), -1 at anything else. */
static int next_member(cursor *c, char close) {
  skip_ws(c);
  if (c->p >= c->end) return -1;
  if (*c->p == close) {
    c->p++;
    return 1;
  }
  if (*c->p != ',') return -1;
  c->p++;
  skip_ws(c);
  return 0;
}

/* c->p at an opening bracket: moves past it and the blanks after; 1 if
 * the closing one follows at once (consumed too). */
static int opens_empty(cursor *c, char close) {
  c->p++;
  skip_ws(c);
  if (c->p < c->end && *c->p == close) {
    c->p++;
    return 1;
  }
  return 0;
}

/* c->p at an object member: its key (a string in the subset, not seen
 * before in o: a key seen twice is jansson's to refuse, with its error)
 * and the colon, blanks after it skipped. 0 if outside the subset. */
static int member_key(cursor *c, const json_t *o, const char **k, size_t *kl) {
  if (c->p >= c->end || *c->p != '"') return 0;
  c->p++;
  if (!plain_string(c, k, kl) || json_object_getn(o, *k, *kl)) return 0;
  skip_ws(c);
  if (c->p >= c->end || *c->p != ':') return 0;
  c->p++;
  skip_ws(c);
  return 1;
}

/* An array, or an object if obj, c->p at its opening bracket. */
static json_t *container(cursor *c, int depth, int obj) {
  char close = obj ? '}' : ']';
  json_t *v = obj ? json_object() : json_array();
  if (!v) return NULL;
  if (opens_empty(c, close)) return v;
  for (;;) {
    const char *k = NULL;
    size_t kl = 0;
    if (obj && !member_key(c, v, &k, &kl)) break;
    json_t *e = value(c, depth + 1);
    if (!e) break;
    /* The *_new calls drop e if they fail. The key has no NUL (no control
     * byte passes plain_string) and is valid UTF-8 (the caller's check),
     * as jansson's own keys are. */
    if (obj ? json_object_setn_new_nocheck(v, k, kl, e)
            : json_array_append_new(v, e))
      break;
    int r = next_member(c, close);
    if (r > 0) return v;
    if (r < 0) break;
  }
  json_decref(v);
  return NULL;
}

static json_t *value(cursor *c, int depth) {
  if (depth > FAST_MAX_DEPTH || c->p >= c->end) return NULL;
  switch (*c->p) {
    case '"': {
      const char *s;
      size_t n;
      c->p++;
      return plain_string(c, &s, &n) ? json_stringn_nocheck(s, n) : NULL;
    }
    case '[':
      return container(c, depth, 0);
    case '{':
      return container(c, depth, 1);
    case 't':
      return literal(c, "true", 4) ? json_true() : NULL;
    case 'f':
      return literal(c, "false", 5) ? json_false() : NULL;
    case 'n':
      return literal(c, "null", 4) ? json_null() : NULL;
    default:
      return *c->p == '-' || (*c->p >= '0' && *c->p <= '9') ? integer(c) : NULL;
  }
}

json_t *dx__sio_json_parse_fast(const char *p, size_t n) {
  cursor c = {p, p + n};
  skip_ws(&c);
  json_t *v = value(&c, 0);
  if (!v) return NULL;
  skip_ws(&c);
  if (c.p != c.end) {
    json_decref(v);
    return NULL;
  }
  return v;
}

json_t *dx__sio_json_parse(const char *p, size_t n) {
  json_t *v = dx__sio_json_parse_fast(p, n);
  if (v) return v;
  json_error_t err;
  v = json_loadb(p, n, JSON_FLAGS, &err);
  /* Integers are json_int_t (64 bits) to keep ids and counters exact; one
   * past that range is something JavaScript sent as a double, so read the
   * value again the way JavaScript reads it. A real out of a double's
   * range fails again. */
  if (!v && json_error_code(&err) == json_error_numeric_overflow)
    v = json_loadb(p, n, JSON_FLAGS | JSON_DECODE_INT_AS_REAL, &err);
  return v;
}
