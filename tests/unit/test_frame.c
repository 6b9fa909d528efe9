/* Frame header parsing/serialization and payload masking (src/proto/frame.h)
 * against RFC 6455 §5.2 and the §5.7 example frames. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "duplex.h"
#include "proto/frame.h"

/* One §5.7 example: the wire bytes and what parsing them must yield. */
typedef struct example {
  const char *name;
  uint8_t *wire;
  size_t wire_len;
  int fin;
  unsigned opcode;
  int masked;
  uint8_t mask[4];
  size_t header_len;
  const uint8_t *payload; /* unmasked */
  size_t payload_len;
} example;

static const uint8_t HELLO[] = {'H', 'e', 'l', 'l', 'o'};

/* Builds an example from a header given as bytes and an unmasked payload,
 * masking the payload by hand (not with dx__mask) so the expectation does
 * not depend on the code under test. */
static example make_example(const char *name, const uint8_t *hdr,
                            size_t hdr_len, const uint8_t *payload,
                            size_t payload_len) {
  example e;
  memset(&e, 0, sizeof e);
  e.name = name;
  e.wire_len = hdr_len + payload_len;
  e.wire = malloc(e.wire_len ? e.wire_len : 1);
  assert_non_null(e.wire);
  memcpy(e.wire, hdr, hdr_len);
  e.fin = (hdr[0] & 0x80) != 0;
  e.opcode = hdr[0] & 0x0F;
  e.masked = (hdr[1] & 0x80) != 0;
  if (e.masked) memcpy(e.mask, hdr + hdr_len - 4, 4);
  for (size_t i = 0; i < payload_len; i++)
    e.wire[hdr_len + i] = payload[i] ^ (e.masked ? e.mask[i % 4] : 0);
  e.header_len = hdr_len;
  e.payload = payload;
  e.payload_len = payload_len;
  return e;
}

static uint8_t BIN256[256];
static uint8_t BIN64K[65536];

/* The §5.7 examples. The caller frees each .wire. */
static size_t rfc_examples(example *out) {
  static const uint8_t h_text[] = {0x81, 0x05};
  static const uint8_t h_masked_text[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d};
  static const uint8_t h_frag1[] = {0x01, 0x03};
  static const uint8_t h_frag2[] = {0x80, 0x02};
  static const uint8_t h_ping[] = {0x89, 0x05};
  static const uint8_t h_pong[] = {0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d};
  static const uint8_t h_256[] = {0x82, 0x7E, 0x01, 0x00};
  static const uint8_t h_64k[] = {0x82, 0x7F, 0, 0, 0, 0, 0, 0x01, 0, 0};
  for (size_t i = 0; i < sizeof BIN256; i++) BIN256[i] = (uint8_t)(i * 7 + 3);
  for (size_t i = 0; i < sizeof BIN64K; i++)
    BIN64K[i] = (uint8_t)((i * 31) ^ (i >> 8));
  size_t n = 0;
  out[n++] = make_example("unmasked text", h_text, 2, HELLO, 5);
  out[n++] = make_example("masked text", h_masked_text, 6, HELLO, 5);
  out[n++] = make_example("fragment 1", h_frag1, 2, HELLO, 3);
  out[n++] = make_example("fragment 2", h_frag2, 2, HELLO + 3, 2);
  out[n++] = make_example("unmasked ping", h_ping, 2, HELLO, 5);
  out[n++] = make_example("masked pong", h_pong, 6, HELLO, 5);
  out[n++] = make_example("256 binary", h_256, 4, BIN256, sizeof BIN256);
  out[n++] = make_example("64K binary", h_64k, 10, BIN64K, sizeof BIN64K);
  return n;
}

/* The literal §5.7 bytes, so a mistake in make_example cannot hide one. */
static void test_examples_literal_bytes(void **state) {
  (void)state;
  example ex[8];
  size_t n = rfc_examples(ex);
  assert_int_equal(n, 8);
  static const uint8_t masked[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d,
                                   0x7f, 0x9f, 0x4d, 0x51, 0x58};
  static const uint8_t plain[] = {0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f};
  static const uint8_t f1[] = {0x01, 0x03, 0x48, 0x65, 0x6c};
  static const uint8_t f2[] = {0x80, 0x02, 0x6c, 0x6f};
  static const uint8_t pong[] = {0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d,
                                 0x7f, 0x9f, 0x4d, 0x51, 0x58};
  assert_memory_equal(ex[0].wire, plain, sizeof plain);
  assert_memory_equal(ex[1].wire, masked, sizeof masked);
  assert_memory_equal(ex[2].wire, f1, sizeof f1);
  assert_memory_equal(ex[3].wire, f2, sizeof f2);
  assert_memory_equal(ex[5].wire, pong, sizeof pong);
  for (size_t i = 0; i < n; i++) free(ex[i].wire);
}

/* Every prefix shorter than the header returns 0; every longer one returns
 * the header length with the right fields, and the payload that follows
 * unmasks (with dx__mask) to the expected bytes. */
static void test_examples_parse_every_prefix(void **state) {
  (void)state;
  example ex[8];
  size_t n = rfc_examples(ex);
  for (size_t i = 0; i < n; i++) {
    const example *e = &ex[i];
    /* Copy each prefix into an exactly sized buffer so ASan catches reads
     * past `len`. Beyond the header only a few lengths are interesting. */
    for (size_t k = 0; k <= e->wire_len; k++) {
      if (k > e->header_len + 3 && k != e->wire_len) continue;
      uint8_t *buf = malloc(k ? k : 1);
      assert_non_null(buf);
      memcpy(buf, e->wire, k);
      dx__frame_header h;
      memset(&h, 0xAB, sizeof h);
      int r = dx__frame_parse_header(buf, k, &h);
      if (k < e->header_len) {
        if (r != 0) fail_msg("%s: prefix %zu returned %d, want 0", e->name, k, r);
      } else {
        if (r != (int)e->header_len)
          fail_msg("%s: prefix %zu returned %d, want %zu", e->name, k, r,
                   e->header_len);
        assert_int_equal(h.fin, e->fin);
        assert_int_equal(h.rsv, 0);
        assert_int_equal(h.opcode, e->opcode);
        assert_int_equal(h.masked, e->masked);
        assert_int_equal(h.header_len, e->header_len);
        assert_true(h.len == e->payload_len);
        if (e->masked) assert_memory_equal(h.mask, e->mask, 4);
      }
      free(buf);
    }
    /* Unmask the payload and compare. */
    dx__frame_header h;
    int r = dx__frame_parse_header(e->wire, e->wire_len, &h);
    assert_int_equal(r, (int)e->header_len);
    uint8_t *p = malloc(e->payload_len);
    assert_non_null(p);
    memcpy(p, e->wire + r, e->payload_len);
    if (h.masked) dx__mask(p, e->payload_len, h.mask, 0);
    assert_memory_equal(p, e->payload, e->payload_len);
    free(p);
  }
  for (size_t i = 0; i < n; i++) free(ex[i].wire);
}

/* Serializing each example (header + masked payload) reproduces the wire
 * bytes exactly. */
static void test_examples_serialize(void **state) {
  (void)state;
  example ex[8];
  size_t n = rfc_examples(ex);
  for (size_t i = 0; i < n; i++) {
    const example *e = &ex[i];
    uint8_t *out = malloc(DX__FRAME_MAX_HEADER + e->payload_len);
    assert_non_null(out);
    size_t hl = dx__frame_write_header(out, e->fin, 0, e->opcode,
                                       e->masked ? e->mask : NULL,
                                       e->payload_len);
    if (hl != e->header_len)
      fail_msg("%s: header length %zu, want %zu", e->name, hl, e->header_len);
    assert_int_equal(hl, dx__frame_header_size(e->payload_len, e->masked));
    if (e->masked)
      dx__mask_copy(out + hl, e->payload, e->payload_len, e->mask, 0);
    else
      memcpy(out + hl, e->payload, e->payload_len);
    assert_memory_equal(out, e->wire, e->wire_len);
    free(out);
  }
  for (size_t i = 0; i < n; i++) free(ex[i].wire);
}

static void expect_proto(const uint8_t *b, size_t n, const char *what) {
  uint8_t *buf = malloc(n);
  assert_non_null(buf);
  memcpy(buf, b, n);
  dx__frame_header h;
  int r = dx__frame_parse_header(buf, n, &h);
  if (r != DX_EPROTO) fail_msg("%s: returned %d, want DX_EPROTO", what, r);
  free(buf);
}

static void test_reserved_opcodes(void **state) {
  (void)state;
  static const unsigned reserved[] = {3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF};
  for (size_t i = 0; i < sizeof reserved / sizeof reserved[0]; i++) {
    for (int fin = 0; fin <= 1; fin++) {
      for (int masked = 0; masked <= 1; masked++) {
        uint8_t b[6] = {(uint8_t)((fin ? 0x80 : 0) | reserved[i]),
                        (uint8_t)((masked ? 0x80 : 0) | 1), 1, 2, 3, 4};
        char what[64];
        snprintf(what, sizeof what, "opcode %#x fin %d masked %d",
                 reserved[i], fin, masked);
        expect_proto(b, masked ? 6 : 2, what);
        /* The opcode is in the first byte: reported as soon as it is
         * there. */
        snprintf(what, sizeof what, "opcode %#x first byte only", reserved[i]);
        expect_proto(b, 1, what);
      }
    }
  }
  /* The defined opcodes parse. */
  static const unsigned ok[] = {0, 1, 2, 8, 9, 0xA};
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
    uint8_t b[2] = {(uint8_t)(0x80 | ok[i]), 0};
    dx__frame_header h;
    assert_int_equal(dx__frame_parse_header(b, 2, &h), 2);
    assert_int_equal(h.opcode, ok[i]);
  }
}

static void test_control_frame_rules(void **state) {
  (void)state;
  static const unsigned ctl[] = {8, 9, 0xA};
  for (size_t i = 0; i < 3; i++) {
    char what[64];
    /* FIN clear: a fragmented control frame. */
    uint8_t b1[2] = {(uint8_t)ctl[i], 0};
    snprintf(what, sizeof what, "control %#x without FIN", ctl[i]);
    expect_proto(b1, 2, what);
    snprintf(what, sizeof what, "control %#x without FIN, first byte only",
             ctl[i]);
    expect_proto(b1, 1, what);
    /* Payload 126 and 65536 (16- and 64-bit lengths). */
    uint8_t b2[4] = {(uint8_t)(0x80 | ctl[i]), 126, 0, 126};
    snprintf(what, sizeof what, "control %#x length 126", ctl[i]);
    expect_proto(b2, 4, what);
    uint8_t b3[10] = {(uint8_t)(0x80 | ctl[i]), 127, 0, 0, 0, 0, 0, 1, 0, 0};
    snprintf(what, sizeof what, "control %#x length 65536", ctl[i]);
    expect_proto(b3, 10, what);
    uint8_t b4[8] = {(uint8_t)(0x80 | ctl[i]), 0x80 | 126, 0xFF, 0xFF,
                     1, 2, 3, 4};
    snprintf(what, sizeof what, "masked control %#x length 65535", ctl[i]);
    expect_proto(b4, 8, what);
    /* 125 is the largest allowed. */
    uint8_t ok[2] = {(uint8_t)(0x80 | ctl[i]), 125};
    dx__frame_header h;
    assert_int_equal(dx__frame_parse_header(ok, 2, &h), 2);
    assert_true(h.len == 125);
    assert_int_equal(h.fin, 1);
  }
}

static void test_length_top_bit(void **state) {
  (void)state;
  uint8_t b[14] = {0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 0};
  expect_proto(b, 10, "64-bit length 2^63");
  memset(b + 2, 0xFF, 8);
  expect_proto(b, 10, "64-bit length 2^64-1");
  b[1] = 0x80 | 127;
  expect_proto(b, 14, "masked 64-bit length 2^64-1");
  /* The top bit is in the third byte: reported as soon as it arrives,
   * while shorter prefixes are merely incomplete. */
  for (size_t k = 0; k < 10; k++) {
    dx__frame_header h;
    int r = dx__frame_parse_header(b, k, &h);
    if (r != (k < 3 ? 0 : DX_EPROTO))
      fail_msg("top bit: prefix %zu returned %d", k, r);
  }
  /* 2^63-1 is the largest legal length. */
  uint8_t ok[10] = {0x82, 127, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF};
  dx__frame_header h;
  assert_int_equal(dx__frame_parse_header(ok, 10, &h), 10);
  assert_true(h.len == UINT64_C(0x7FFFFFFFFFFFFFFF));
}

/* Non-minimal lengths are accepted (the header documents this) and RSV bits
 * are reported, not judged. */
static void test_nonminimal_and_rsv(void **state) {
  (void)state;
  dx__frame_header h;
  uint8_t a[4] = {0x82, 126, 0, 5};
  assert_int_equal(dx__frame_parse_header(a, 4, &h), 4);
  assert_true(h.len == 5);
  assert_int_equal(h.header_len, 4);
  uint8_t b[10] = {0x82, 127, 0, 0, 0, 0, 0, 0, 0, 5};
  assert_int_equal(dx__frame_parse_header(b, 10, &h), 10);
  assert_true(h.len == 5);
  for (unsigned rsv = 0; rsv < 8; rsv++) {
    uint8_t c[2] = {(uint8_t)(0x80 | (rsv << 4) | 1), 0};
    assert_int_equal(dx__frame_parse_header(c, 2, &h), 2);
    assert_int_equal(h.rsv, rsv);
    assert_int_equal(h.opcode, 1);
    assert_int_equal(h.fin, 1);
  }
}

/* write_header picks the minimal length encoding and round-trips through
 * parse_header for every boundary length, with and without a mask. */
static void test_write_boundaries(void **state) {
  (void)state;
  static const uint64_t lens[] = {0, 1, 125, 126, 127, 65535, 65536,
                                  UINT64_C(0xFFFFFFFF), UINT64_C(0x100000000),
                                  UINT64_C(0x7FFFFFFFFFFFFFFF)};
  static const uint8_t key[4] = {0xde, 0xad, 0xbe, 0xef};
  for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
    for (int masked = 0; masked <= 1; masked++) {
      for (unsigned rsv = 0; rsv < 8; rsv += 3) {
        uint8_t out[DX__FRAME_MAX_HEADER + 2];
        memset(out, 0xCC, sizeof out);
        size_t n = dx__frame_write_header(out, 0, rsv, DX__OP_BINARY,
                                          masked ? key : NULL, lens[i]);
        size_t want = (lens[i] < 126 ? 2 : lens[i] <= 0xFFFF ? 4 : 10) +
                      (masked ? 4 : 0);
        assert_int_equal(n, want);
        assert_int_equal(dx__frame_header_size(lens[i], masked), want);
        assert_int_equal(out[n], 0xCC); /* nothing written past it */
        /* Check the bytes by hand. */
        assert_int_equal(out[0], (rsv << 4) | DX__OP_BINARY);
        assert_int_equal(out[1] & 0x80, masked ? 0x80 : 0);
        if (lens[i] < 126) {
          assert_int_equal(out[1] & 0x7F, lens[i]);
        } else if (lens[i] <= 0xFFFF) {
          assert_int_equal(out[1] & 0x7F, 126);
          assert_int_equal((out[2] << 8) | out[3], lens[i]);
        } else {
          assert_int_equal(out[1] & 0x7F, 127);
          uint64_t v = 0;
          for (int b = 0; b < 8; b++) v = (v << 8) | out[2 + b];
          assert_true(v == lens[i]);
        }
        if (masked) assert_memory_equal(out + n - 4, key, 4);
        dx__frame_header h;
        assert_int_equal(dx__frame_parse_header(out, n, &h), (int)n);
        assert_true(h.len == lens[i]);
        assert_int_equal(h.fin, 0);
        assert_int_equal(h.rsv, rsv);
        assert_int_equal(h.masked, masked);
        assert_int_equal(h.header_len, n);
      }
    }
  }
  /* FIN and the control opcodes. */
  uint8_t out[DX__FRAME_MAX_HEADER];
  assert_int_equal(dx__frame_write_header(out, 1, 0, DX__OP_CLOSE, NULL, 2), 2);
  assert_int_equal(out[0], 0x88);
  assert_int_equal(out[1], 0x02);
}

/* Reference XOR, byte by byte. */
static void ref_mask(uint8_t *d, size_t n, const uint8_t key[4], uint64_t off) {
  for (size_t i = 0; i < n; i++) d[i] ^= key[(off + i) & 3];
}

static void fill(uint8_t *p, size_t n, unsigned seed) {
  for (size_t i = 0; i < n; i++) p[i] = (uint8_t)(seed + i * 131 + (i >> 3));
}

/* dx__mask at every buffer alignment, payload offset and length 0..64,
 * including huge offsets; bytes around the range stay untouched. */
static void test_mask_vs_reference(void **state) {
  (void)state;
  static const uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};
  static const uint64_t offsets[] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 13,
                                     UINT64_C(0x100000001),
                                     UINT64_C(0xFFFFFFFFFFFFFFF0)};
  uint8_t got[64 + 32], want[64 + 32];
  for (size_t align = 0; align < 8; align++) {
    for (size_t o = 0; o < sizeof offsets / sizeof offsets[0]; o++) {
      for (size_t len = 0; len <= 64; len++) {
        fill(got, sizeof got, (unsigned)(align + len));
        memcpy(want, got, sizeof got);
        dx__mask(got + 8 + align, len, key, offsets[o]);
        ref_mask(want + 8 + align, len, key, offsets[o]);
        if (memcmp(got, want, sizeof got) != 0)
          fail_msg("dx__mask align %zu offset %llu len %zu differs", align,
                   (unsigned long long)offsets[o], len);
      }
    }
  }
}

/* Unmasking in arbitrary pieces equals unmasking at once. */
static void test_mask_in_pieces(void **state) {
  (void)state;
  static const uint8_t key[4] = {1, 2, 4, 8};
  uint8_t whole[300], pieces[300];
  fill(whole, sizeof whole, 9);
  memcpy(pieces, whole, sizeof whole);
  dx__mask(whole, sizeof whole, key, 0);
  size_t pos = 0, step = 1;
  while (pos < sizeof pieces) {
    size_t n = step;
    if (n > sizeof pieces - pos) n = sizeof pieces - pos;
    dx__mask(pieces + pos, n, key, pos);
    pos += n;
    step = step % 11 + 2;
  }
  assert_memory_equal(whole, pieces, sizeof whole);
}

static void test_mask_copy(void **state) {
  (void)state;
  static const uint8_t key[4] = {0xa5, 0x5a, 0xff, 0x00};
  uint8_t src[64 + 16], dst[64 + 32], want[64 + 32], inplace[64 + 16];
  for (size_t salign = 0; salign < 4; salign++) {
    for (size_t dalign = 0; dalign < 8; dalign++) {
      for (uint64_t off = 0; off < 5; off++) {
        for (size_t len = 0; len <= 64; len++) {
          fill(src, sizeof src, (unsigned)len);
          memset(dst, 0x77, sizeof dst);
          memset(want, 0x77, sizeof want);
          memcpy(want + 8 + dalign, src + salign, len);
          ref_mask(want + 8 + dalign, len, key, off);
          uint8_t src_before[sizeof src];
          memcpy(src_before, src, sizeof src);
          dx__mask_copy(dst + 8 + dalign, src + salign, len, key, off);
          if (memcmp(dst, want, sizeof dst) != 0)
            fail_msg("dx__mask_copy salign %zu dalign %zu off %llu len %zu",
                     salign, dalign, (unsigned long long)off, len);
          assert_memory_equal(src, src_before, sizeof src); /* src intact */
          /* dst == src */
          memcpy(inplace, src, sizeof src);
          dx__mask_copy(inplace + salign, inplace + salign, len, key, off);
          assert_memory_equal(inplace + salign, want + 8 + dalign, len);
        }
      }
    }
  }
}

/* dx__unmask_hibits against a byte-by-byte XOR, for every payload length
 * a small frame can have (0..125) and a few beyond, at every alignment of
 * the payload, with the key just before it as in a frame: the bytes come
 * out unmasked, nothing outside them changes, and the result is nonzero
 * exactly when some unmasked byte has its high bit set (tried with no such
 * byte, and with one at each position in turn). */
static void test_unmask_hibits(void **state) {
  (void)state;
  static const uint8_t keys[][4] = {{0x37, 0xfa, 0x21, 0x3d}, {0, 0, 0, 0}, {0x80, 1, 0x7f, 0xff}};
  uint8_t plain[140], buf[4 + 8 + 140 + 8], want[sizeof buf];
  for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
    for (size_t len = 0; len <= 140; len++) {
      for (size_t align = 0; align < 8; align++) {
        for (long high = -1; high < (long)len; high++) {
          for (size_t i = 0; i < len; i++) plain[i] = (uint8_t)(0x20 + (i * 7 + len) % 95);
          if (high >= 0) plain[high] = (uint8_t)(0x80 | plain[high]);
          memset(buf, 0xCC, sizeof buf);
          uint8_t *key = buf + align, *p = key + 4;
          memcpy(key, keys[k], 4);
          for (size_t i = 0; i < len; i++) p[i] = plain[i] ^ keys[k][i & 3];
          memcpy(want, buf, sizeof buf);
          memcpy(want + align + 4, plain, len);
          uint64_t hi = dx__unmask_hibits(p, len, key);
          if (memcmp(buf, want, sizeof buf) != 0)
            fail_msg("dx__unmask_hibits key %zu len %zu align %zu: wrong bytes", k, len, align);
          if ((hi != 0) != (high >= 0))
            fail_msg("dx__unmask_hibits key %zu len %zu high at %ld: returned %llx", k, len,
                     high, (unsigned long long)hi);
          /* One position with a high bit is enough for the long lengths. */
          if (len > 40 && high >= 0) break;
        }
      }
    }
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_examples_literal_bytes),
      cmocka_unit_test(test_examples_parse_every_prefix),
      cmocka_unit_test(test_examples_serialize),
      cmocka_unit_test(test_reserved_opcodes),
      cmocka_unit_test(test_control_frame_rules),
      cmocka_unit_test(test_length_top_bit),
      cmocka_unit_test(test_nonminimal_and_rsv),
      cmocka_unit_test(test_write_boundaries),
      cmocka_unit_test(test_mask_vs_reference),
      cmocka_unit_test(test_mask_in_pieces),
      cmocka_unit_test(test_mask_copy),
      cmocka_unit_test(test_unmask_hibits),
  };
  return cmocka_run_group_tests_name("frame", tests, NULL, NULL);
}
