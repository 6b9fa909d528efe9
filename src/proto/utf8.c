/* Incremental UTF-8 validation with a fail-fast guarantee: the state carries
 * the exact range the next byte must fall in, so an overlong form, a
 * surrogate or a code point past U+10FFFF is rejected at its second byte,
 * not when the sequence completes (Autobahn 6.x expects this). */
#include "proto/utf8.h"

#include <string.h>

#include "duplex_codes.h"

/* State layout: bits 0-7 bytes still needed, 8-15 lowest and 16-23 highest
 * allowed value of the next byte. 0 is "between characters". */
#define ST(need, lo, hi) ((uint32_t)(need) | ((uint32_t)(lo) << 8) | ((uint32_t)(hi) << 16))

static uint32_t lead_state(uint8_t b) {
  if (b >= 0xC2 && b <= 0xDF) return ST(1, 0x80, 0xBF);
  if (b == 0xE0) return ST(2, 0xA0, 0xBF);      /* no overlongs */
  if (b == 0xED) return ST(2, 0x80, 0x9F);      /* no surrogates */
  if (b >= 0xE1 && b <= 0xEF) return ST(2, 0x80, 0xBF);
  if (b == 0xF0) return ST(3, 0x90, 0xBF);      /* no overlongs */
  if (b >= 0xF1 && b <= 0xF3) return ST(3, 0x80, 0xBF);
  if (b == 0xF4) return ST(3, 0x80, 0x8F);      /* not past U+10FFFF */
  return 0;                                      /* 0x80-0xC1, 0xF5-0xFF */
}

int dx__utf8_feed(dx__utf8_state *st, const uint8_t *p, size_t n) {
  uint32_t s = *st;
  size_t i = 0;
  while (i < n) {
    if (s == 0) {
      /* ASCII fast path, eight bytes at a time. */
      while (n - i >= 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        if (w & 0x8080808080808080ull) break;
        i += 8;
      }
      if (i < n && n >= 8 && n - i < 8) {
        /* A short ASCII tail: test the last eight bytes as one word (it
         * overlaps bytes already checked, which is harmless: a high bit
         * there only sends us to the bytewise path). */
        uint64_t w;
        memcpy(&w, p + n - 8, 8);
        if (!(w & 0x8080808080808080ull)) i = n;
      }
      if (i == n) break;
      uint8_t b = p[i++];
      if (b < 0x80) continue;
      s = lead_state(b);
      if (s == 0) return DX_EUTF8;
      continue;
    }
    uint8_t b = p[i++];
    unsigned lo = (s >> 8) & 0xFF, hi = (s >> 16) & 0xFF;
    if (b < lo || b > hi) return DX_EUTF8;
    unsigned need = (s & 0xFF) - 1;
    s = need ? ST(need, 0x80, 0xBF) : 0;
  }
  *st = s;
  return 0;
}

int dx__utf8_validate_exact(const uint8_t *p, size_t n) {
  dx__utf8_state st = 0;
  if (dx__utf8_feed(&st, p, n) != 0 || !dx__utf8_complete(st)) return DX_EUTF8;
  return 0;
}
