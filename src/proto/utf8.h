/* Incremental, fail-fast UTF-8 validation (RFC 3629): rejects overlongs,
 * surrogates (U+D800..DFFF) and code points past U+10FFFF at the first byte
 * that makes the sequence impossible, even when the sequence is split across
 * fragments or reads. */
#ifndef DX_PROTO_UTF8_H
#define DX_PROTO_UTF8_H
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* State between calls: 0 means "between characters". Start with 0. */
typedef uint32_t dx__utf8_state;

/* Validates p[0..n) continuing from *st. Returns 0 if every byte so far can
 * start or continue a valid sequence (the text may still end mid-sequence),
 * or DX_EUTF8 at the first impossible byte (*st is then undefined). */
int dx__utf8_feed(dx__utf8_state *st, const uint8_t *p, size_t n);

/* 1 when the text fed so far ends on a character boundary. */
static inline int dx__utf8_complete(dx__utf8_state st) { return st == 0; }

/* 1 when p[0..n) is all ASCII (so valid UTF-8), tested a word at a time
 * with no branch per word; 0 says only "not all ASCII". Inline: the common
 * short message is checked without a call. */
static inline int dx__utf8_is_ascii(const uint8_t *p, size_t n) {
  uint64_t acc = 0, w;
  if (n < 8) {
    for (size_t i = 0; i < n; i++) acc |= p[i];
    return !(acc & 0x80);
  }
  for (size_t i = 0; n - i >= 8; i += 8) {
    memcpy(&w, p + i, 8);
    acc |= w;
  }
  memcpy(&w, p + n - 8, 8); /* the tail, overlapping checked bytes */
  return !((acc | w) & 0x8080808080808080ull);
}

/* The exact whole-buffer check behind dx__utf8_validate. */
int dx__utf8_validate_exact(const uint8_t *p, size_t n);

/* Whole-buffer check: 0 or DX_EUTF8. Most texts are ASCII; only one with a
 * high bit somewhere pays for a call and the exact check. */
static inline int dx__utf8_validate(const uint8_t *p, size_t n) {
  return dx__utf8_is_ascii(p, n) ? 0 : dx__utf8_validate_exact(p, n);
}
#endif
