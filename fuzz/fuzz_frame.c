/* libFuzzer target for src/proto/frame.c.
 *
 * Input: byte 0 selects the check, the rest is its material.
 *   even: dx__frame_parse_header on the bytes, compared with an
 *         independent reading of RFC 6455 §5.2 (and every prefix of them);
 *   odd:  a header built from the bytes is written, parsed back and must
 *         round-trip; then a payload is masked in fuzzer-chosen pieces and
 *         compared with a byte-by-byte XOR.
 * Any disagreement aborts, which libFuzzer reports as a crash. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "duplex.h"
#include "proto/frame.h"

#include "fuzz_check.h"

static int reserved_op(unsigned op) { return (op >= 3 && op <= 7) || op >= 0xB; }

/* The header length the first two bytes announce. */
static size_t full_header_len(const uint8_t *b) {
  unsigned l7 = b[1] & 0x7F;
  return 2 + (l7 == 126 ? 2 : l7 == 127 ? 8 : 0) + ((b[1] & 0x80) ? 4 : 0);
}

/* 1 when the visible bytes already break a rule parse_header checks. */
static int visibly_bad(const uint8_t *b, size_t n) {
  if (n >= 1) {
    unsigned op = b[0] & 0xF;
    if (reserved_op(op)) return 1;
    if ((op & 8) && !(b[0] & 0x80)) return 1;
  }
  if (n >= 2) {
    unsigned op = b[0] & 0xF, l7 = b[1] & 0x7F;
    if ((op & 8) && l7 == 127) return 1; /* a 64-bit length is never <= 125 */
    if (l7 == 127 && n >= 3 && (b[2] & 0x80)) return 1;
    if ((op & 8) && l7 == 126 && n >= 4 && ((b[2] << 8) | b[3]) > 125) return 1;
  }
  return 0;
}

/* A control frame whose length uses the 16-bit form for a value <= 125:
 * non-minimal (§5.2 says the minimal form MUST be used), so refusing it
 * is as acceptable as reading it. */
static int either_way(const uint8_t *b, size_t n) {
  return n >= 2 && (b[0] & 8) && (b[1] & 0x7F) == 126;
}

static void check_parse(const uint8_t *data, size_t size) {
  if (size > 32) size = 32;
  /* An exactly sized copy, so reading past `size` is an ASan error. */
  uint8_t *buf = malloc(size ? size : 1);
  CHECK(buf);
  memcpy(buf, data, size);
  dx__frame_header h;
  int r = dx__frame_parse_header(buf, size, &h);
  CHECK(r == 0 || r == DX_EPROTO || (r >= 2 && r <= DX__FRAME_MAX_HEADER));

  int complete = size >= 2 && size >= full_header_len(buf);
  int bad_all = visibly_bad(buf, complete ? full_header_len(buf) : size);
  int tolerated = either_way(buf, size);
  if (r == DX_EPROTO) {
    /* Only for a real violation among the bytes given. */
    CHECK(bad_all || tolerated);
  } else if (r == 0) {
    /* Incomplete, and nothing visible was wrong once the header could be
     * judged (the header documents failing as early as possible, but an
     * incomplete verdict on a short prefix is tolerated here; the unit
     * tests hold the exact timing). */
    CHECK(!complete);
  } else {
    CHECK(complete && !bad_all);
    size_t want = full_header_len(buf);
    CHECK((size_t)r == want);
    CHECK(h.header_len == r);
    CHECK(h.fin == (buf[0] >> 7));
    CHECK(h.rsv == ((buf[0] >> 4) & 7));
    CHECK(h.opcode == (buf[0] & 0xF));
    CHECK(h.masked == (buf[1] >> 7));
    uint64_t len = buf[1] & 0x7F;
    if (len == 126) len = ((uint64_t)buf[2] << 8) | buf[3];
    else if (len == 127) {
      len = 0;
      for (int i = 2; i < 10; i++) len = (len << 8) | buf[i];
    }
    CHECK(h.len == len);
    CHECK(h.len >> 63 == 0);
    if (h.masked) CHECK(memcmp(h.mask, buf + r - 4, 4) == 0);
    if (h.opcode & 8) CHECK(h.fin && h.len <= 125);
    /* Another read of the same bytes agrees. */
    dx__frame_header h3;
    CHECK(dx__frame_parse_header(buf, size, &h3) == r && h3.len == h.len);
    CHECK(!reserved_op(h.opcode));
    /* Shorter prefixes never succeed. */
    for (size_t k = 0; k < (size_t)r; k++) {
      dx__frame_header h2;
      int r2 = dx__frame_parse_header(buf, k, &h2);
      CHECK(r2 == 0);
    }
  }
  free(buf);
}

static uint64_t take_u64(const uint8_t **p, size_t *n) {
  uint64_t v = 0;
  for (int i = 0; i < 8 && *n; i++, (*p)++, (*n)--) v = (v << 8) | **p;
  return v;
}

static void check_roundtrip_and_mask(const uint8_t *data, size_t size) {
  if (size < 14) return;
  const uint8_t *p = data;
  size_t n = size;
  uint8_t flags = *p++;
  n--;
  int fin = flags & 1;
  unsigned rsv = (flags >> 1) & 7;
  unsigned op = (flags >> 4) & 0xF;
  int masked = (flags >> 4) & 1;
  uint8_t key[4];
  memcpy(key, p, 4);
  p += 4;
  n -= 4;
  uint64_t len = take_u64(&p, &n);
  /* Spread lengths over all three encodings. */
  switch (len & 3) {
    case 0: len = (len >> 2) % 126; break;
    case 1: len = 126 + (len >> 2) % (65536 - 126); break;
    case 2: len = 65536 + (len >> 2) % (UINT64_C(1) << 40); break;
    default: len >>= 2; break; /* up to 2^62 */
  }

  uint8_t out[DX__FRAME_MAX_HEADER + 1];
  out[DX__FRAME_MAX_HEADER] = 0xEE;
  size_t hl = dx__frame_write_header(out, fin, rsv, op, masked ? key : NULL, len);
  CHECK(hl == dx__frame_header_size(len, masked));
  CHECK(out[DX__FRAME_MAX_HEADER] == 0xEE);
  dx__frame_header h;
  int r = dx__frame_parse_header(out, hl, &h);
  int valid = !reserved_op(op) && (!(op & 8) || (fin && len <= 125));
  if (!valid) {
    CHECK(r == DX_EPROTO);
  } else {
    CHECK(r == (int)hl);
    CHECK(h.fin == fin && h.rsv == rsv && h.opcode == op && h.masked == masked);
    CHECK(h.len == len);
    if (masked) CHECK(memcmp(h.mask, key, 4) == 0);
  }

  /* Masking: the rest of the input is the payload; unmask it in pieces
   * whose sizes come from the payload's own bytes, starting at a fuzzed
   * offset, and compare with the reference. */
  if (n < 1) return;
  uint64_t off = flags * UINT64_C(0x9E3779B97F4A7C15) >> 32;
  size_t plen = n;
  uint8_t *a = malloc(plen), *b = malloc(plen), *c = malloc(plen);
  CHECK(a && b && c);
  memcpy(a, p, plen);
  memcpy(b, p, plen);
  for (size_t i = 0; i < plen; i++) b[i] ^= key[(off + i) & 3];
  size_t pos = 0;
  while (pos < plen) {
    size_t piece = (size_t)(p[pos] % 23) + 1;
    if (piece > plen - pos) piece = plen - pos;
    dx__mask(a + pos, piece, key, off + pos);
    pos += piece;
  }
  CHECK(memcmp(a, b, plen) == 0);
  /* mask_copy into a separate buffer at an odd alignment, then in place. */
  uint8_t *d = malloc(plen + 7);
  CHECK(d);
  dx__mask_copy(d + (flags & 7), p, plen, key, off);
  CHECK(memcmp(d + (flags & 7), b, plen) == 0);
  memcpy(c, p, plen);
  dx__mask_copy(c, c, plen, key, off);
  CHECK(memcmp(c, b, plen) == 0);
  /* dx__unmask_hibits: a whole payload from phase 0, its key right in
   * front as in a frame, in an exactly sized buffer; nonzero exactly when
   * an unmasked byte has its high bit. */
  uint8_t *e = malloc(plen + 4);
  CHECK(e);
  memcpy(e, key, 4);
  memcpy(e + 4, p, plen);
  uint64_t hi = dx__unmask_hibits(e + 4, plen, e);
  int any = 0;
  for (size_t i = 0; i < plen; i++) {
    uint8_t u = p[i] ^ key[i & 3];
    CHECK(e[4 + i] == u);
    any |= u >> 7;
  }
  CHECK((hi != 0) == any);
  CHECK(memcmp(e, key, 4) == 0);
  free(e);
  free(a);
  free(b);
  free(c);
  free(d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  if (data[0] & 1)
    check_roundtrip_and_mask(data + 1, size - 1);
  else
    check_parse(data + 1, size - 1);
  return 0;
}
