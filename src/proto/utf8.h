/* Incremental, fail-fast UTF-8 validation (RFC 3629): rejects overlongs,
 * surrogates (U+D800..DFFF) and code points past U+10FFFF at the first byte
 * that makes the sequence impossible, even when the sequence is split across
 * fragments or reads. */
#ifndef DX_PROTO_UTF8_H
#define DX_PROTO_UTF8_H
#include <stddef.h>
#include <stdint.h>

/* State between calls: 0 means "between characters". Start with 0. */
typedef uint32_t dx__utf8_state;

/* Validates p[0..n) continuing from *st. Returns 0 if every byte so far can
 * start or continue a valid sequence (the text may still end mid-sequence),
 * or DX_EUTF8 at the first impossible byte (*st is then undefined). */
int dx__utf8_feed(dx__utf8_state *st, const uint8_t *p, size_t n);

/* 1 when the text fed so far ends on a character boundary. */
static inline int dx__utf8_complete(dx__utf8_state st) { return st == 0; }

/* Whole-buffer check: 0 or DX_EUTF8. */
int dx__utf8_validate(const uint8_t *p, size_t n);
#endif
