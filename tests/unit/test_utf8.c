/* Incremental fail-fast UTF-8 validation (src/proto/utf8.h): every sample
 * is fed whole, at every split point and byte by byte; invalid samples must
 * fail exactly at the first byte that makes them impossible. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "duplex.h"
#include "proto/utf8.h"

typedef struct sample {
  const char *name;
  const char *bytes;
  size_t len;
  /* Index of the first impossible byte, or -1 when every byte is
   * acceptable. */
  long fail_at;
  /* When fail_at is -1: 1 if the text ends on a character boundary. */
  int complete;
} sample;

#define S(name, lit, fail, complete) {name, lit, sizeof(lit) - 1, fail, complete}

static const sample SAMPLES[] = {
    /* Valid. */
    S("empty", "", -1, 1),
    S("ascii", "Hello, world! \x7f\x01", -1, 1),
    S("2-byte", "\xc2\x80 \xc3\xa9 \xdf\xbf", -1, 1),
    S("3-byte", "\xe0\xa0\x80 \xe2\x82\xac \xef\xbf\xbd", -1, 1),
    S("U+FFFF", "\xef\xbf\xbf", -1, 1),
    S("U+D7FF U+E000", "\xed\x9f\xbf\xee\x80\x80", -1, 1),
    S("4-byte", "\xf0\x90\x80\x80 \xf0\x9f\x98\x80", -1, 1),
    S("U+10FFFF", "\xf4\x8f\xbf\xbf", -1, 1),
    S("kosme", "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", -1, 1),
    S("NUL", "a\0b", -1, 1),
    /* Truncated: acceptable so far, but not complete. */
    S("truncated 2", "ab\xc3", -1, 0),
    S("truncated 3/1", "\xe2", -1, 0),
    S("truncated 3/2", "\xe2\x82", -1, 0),
    S("truncated 4/1", "\xf0", -1, 0),
    S("truncated 4/2", "\xf0\x9f", -1, 0),
    S("truncated 4/3", "\xf0\x9f\x98", -1, 0),
    S("truncated U+10FFFF", "\xf4\x8f\xbf", -1, 0),
    S("autobahn 6.4.2 part 1", "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4",
      -1, 0),
    /* Invalid lead bytes fail on themselves. */
    S("overlong C0 80", "\xc0\x80", 0, 0),
    S("overlong C1 BF", "x\xc1\xbf", 1, 0),
    S("F5", "\xf5\x80\x80\x80", 0, 0),
    S("F8", "\xf8\x88\x80\x80\x80", 0, 0),
    S("FC", "\xfc\x84\x80\x80\x80\x80", 0, 0),
    S("FE", "\xfe", 0, 0),
    S("FF", "ab\xff", 2, 0),
    S("lone continuation", "\x80", 0, 0),
    S("lone continuation BF", "abc\xbf", 3, 0),
    S("continuation after complete 2-byte", "\xc3\xa9\x80", 2, 0),
    S("continuation after complete 4-byte", "\xf0\x9f\x98\x80\x80", 4, 0),
    /* The second byte decides overlongs, surrogates and > U+10FFFF. */
    S("overlong E0 80 80", "\xe0\x80\x80", 1, 0),
    S("overlong E0 9F BF", "\xe0\x9f\xbf", 1, 0),
    S("overlong F0 80 80 80", "\xf0\x80\x80\x80", 1, 0),
    S("overlong F0 8F BF BF", "\xf0\x8f\xbf\xbf", 1, 0),
    S("surrogate ED A0 80", "\xed\xa0\x80", 1, 0),
    S("surrogate ED BF BF", "\xed\xbf\xbf", 1, 0),
    S("surrogate pair", "\xed\xa0\x80\xed\xb0\x80", 1, 0),
    S("U+110000 F4 90 80 80", "\xf4\x90\x80\x80", 1, 0),
    S("F4 BF", "\xf4\xbf\xbf\xbf", 1, 0),
    /* A sequence cut short by a non-continuation byte. */
    S("2-byte then ASCII", "\xc3\x41", 1, 0),
    S("3-byte cut by ASCII", "\xe2\x82\x41", 2, 0),
    S("4-byte cut by lead", "\xf0\x9f\x98\xf0", 3, 0),
    S("3-byte cut by lead", "\xe2\xe2\x82\xac", 1, 0),
    /* Autobahn 6.4.x fail-fast: valid text, then U+110000, then more text. */
    S("autobahn 6.4.x",
      "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4\x90\x80\x80"
      "edited",
      12, 0),
};

static const char *verdict(int r) {
  return r == 0 ? "0" : r == DX_EUTF8 ? "DX_EUTF8" : "unexpected code";
}

/* Whole-buffer validation. */
static void test_validate(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof SAMPLES / sizeof SAMPLES[0]; i++) {
    const sample *s = &SAMPLES[i];
    uint8_t *buf = malloc(s->len ? s->len : 1);
    assert_non_null(buf);
    memcpy(buf, s->bytes, s->len);
    int want = (s->fail_at < 0 && s->complete) ? 0 : DX_EUTF8;
    int r = dx__utf8_validate(buf, s->len);
    if (r != want)
      fail_msg("%s: validate returned %s, want %s", s->name, verdict(r),
               verdict(want));
    free(buf);
  }
}

/* One feed of the whole sample. */
static void test_feed_whole(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof SAMPLES / sizeof SAMPLES[0]; i++) {
    const sample *s = &SAMPLES[i];
    dx__utf8_state st = 0;
    int r = dx__utf8_feed(&st, (const uint8_t *)s->bytes, s->len);
    if (s->fail_at >= 0) {
      if (r != DX_EUTF8) fail_msg("%s: feed returned %s", s->name, verdict(r));
    } else {
      if (r != 0) fail_msg("%s: feed returned %s", s->name, verdict(r));
      if (dx__utf8_complete(st) != s->complete)
        fail_msg("%s: complete %d, want %d", s->name, dx__utf8_complete(st),
                 s->complete);
    }
  }
}

/* Byte by byte: every byte before fail_at is accepted, the byte at fail_at
 * is rejected. Each byte lives in its own 1-byte heap block so an
 * implementation that peeks ahead is caught by ASan. */
static void test_feed_byte_by_byte(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof SAMPLES / sizeof SAMPLES[0]; i++) {
    const sample *s = &SAMPLES[i];
    dx__utf8_state st = 0;
    for (size_t k = 0; k < s->len; k++) {
      uint8_t *b = malloc(1);
      assert_non_null(b);
      *b = (uint8_t)s->bytes[k];
      int r = dx__utf8_feed(&st, b, 1);
      free(b);
      int want = (s->fail_at >= 0 && (long)k == s->fail_at) ? DX_EUTF8 : 0;
      if (r != want)
        fail_msg("%s: byte %zu (0x%02x) returned %s, want %s", s->name, k,
                 (unsigned)(uint8_t)s->bytes[k], verdict(r), verdict(want));
      if (r != 0) break;
      /* Between bytes, "complete" is true exactly on character
       * boundaries; after a whole valid prefix it can be checked against
       * validate() of that prefix. */
      if (s->fail_at < 0 || (long)k < s->fail_at) {
        int boundary = dx__utf8_validate((const uint8_t *)s->bytes, k + 1) == 0;
        if (dx__utf8_complete(st) != boundary)
          fail_msg("%s: after byte %zu complete=%d, validate says %d", s->name,
                   k, dx__utf8_complete(st), boundary);
      }
    }
    if (s->fail_at < 0)
      assert_int_equal(dx__utf8_complete(st), s->complete);
  }
}

/* Two feeds split at every point (including empty first/second parts),
 * each in its own exactly-sized buffer. */
static void test_feed_every_split(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof SAMPLES / sizeof SAMPLES[0]; i++) {
    const sample *s = &SAMPLES[i];
    for (size_t cut = 0; cut <= s->len; cut++) {
      uint8_t *a = malloc(cut ? cut : 1), *b = malloc(s->len - cut + 1);
      assert_non_null(a);
      assert_non_null(b);
      memcpy(a, s->bytes, cut);
      memcpy(b, s->bytes + cut, s->len - cut);
      dx__utf8_state st = 0;
      int r1 = dx__utf8_feed(&st, a, cut);
      int first_fails = s->fail_at >= 0 && s->fail_at < (long)cut;
      if (r1 != (first_fails ? DX_EUTF8 : 0))
        fail_msg("%s: split %zu: first part returned %s", s->name, cut,
                 verdict(r1));
      if (!first_fails) {
        int r2 = dx__utf8_feed(&st, b, s->len - cut);
        if (r2 != (s->fail_at >= 0 ? DX_EUTF8 : 0))
          fail_msg("%s: split %zu: second part returned %s", s->name, cut,
                   verdict(r2));
        if (s->fail_at < 0)
          assert_int_equal(dx__utf8_complete(st), s->complete);
      }
      free(a);
      free(b);
    }
  }
}

/* The Autobahn 6.4.1/6.4.2 fragmentations: the first part is accepted and
 * the part carrying the impossible byte fails (6.4.2 splits right after the
 * F4 lead byte, so 0x90 alone must fail). */
static void test_autobahn_fragments(void **state) {
  (void)state;
  static const uint8_t kosme[] = {0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xcf,
                                  0x83, 0xce, 0xbc, 0xce, 0xb5};
  static const uint8_t bad[] = {0xf4, 0x90, 0x80, 0x80};
  dx__utf8_state st = 0;
  assert_int_equal(dx__utf8_feed(&st, kosme, sizeof kosme), 0);
  assert_true(dx__utf8_complete(st));
  assert_int_equal(dx__utf8_feed(&st, bad, sizeof bad), DX_EUTF8);

  st = 0;
  assert_int_equal(dx__utf8_feed(&st, kosme, sizeof kosme), 0);
  assert_int_equal(dx__utf8_feed(&st, bad, 1), 0);
  assert_false(dx__utf8_complete(st));
  assert_int_equal(dx__utf8_feed(&st, bad + 1, 1), DX_EUTF8);
}

/* Every code point from U+0000 to U+10FFFF encoded by hand validates
 * (surrogates excluded); each surrogate fails at its second byte. */
static size_t encode(uint32_t cp, uint8_t *o) {
  if (cp < 0x80) { o[0] = (uint8_t)cp; return 1; }
  if (cp < 0x800) {
    o[0] = (uint8_t)(0xC0 | (cp >> 6));
    o[1] = (uint8_t)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    o[0] = (uint8_t)(0xE0 | (cp >> 12));
    o[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
    o[2] = (uint8_t)(0x80 | (cp & 0x3F));
    return 3;
  }
  o[0] = (uint8_t)(0xF0 | (cp >> 18));
  o[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
  o[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
  o[3] = (uint8_t)(0x80 | (cp & 0x3F));
  return 4;
}

static void test_all_code_points(void **state) {
  (void)state;
  uint8_t b[4];
  for (uint32_t cp = 0; cp <= 0x10FFFF; cp++) {
    size_t n = encode(cp, b);
    int surrogate = cp >= 0xD800 && cp <= 0xDFFF;
    int r = dx__utf8_validate(b, n);
    if (r != (surrogate ? DX_EUTF8 : 0))
      fail_msg("U+%04X: validate returned %s", (unsigned)cp, verdict(r));
    if (surrogate) {
      dx__utf8_state st = 0;
      assert_int_equal(dx__utf8_feed(&st, b, 1), 0);
      assert_int_equal(dx__utf8_feed(&st, b + 1, 1), DX_EUTF8);
    }
  }
  /* Every 2-byte lead/continuation pair: C2..DF + 80..BF is the valid set. */
  for (unsigned l = 0x80; l <= 0xFF; l++) {
    for (unsigned c = 0; c <= 0xFF; c++) {
      uint8_t p[2] = {(uint8_t)l, (uint8_t)c};
      int valid = l >= 0xC2 && l <= 0xDF && c >= 0x80 && c <= 0xBF;
      if ((dx__utf8_validate(p, 2) == 0) != valid)
        fail_msg("%02X %02X: validate disagrees (valid=%d)", l, c, valid);
    }
  }
}

/* A long valid text validates in chunks of every size 1..17 (exercises any
 * word-at-a-time ASCII fast path across chunk edges). */
static void test_long_text_chunks(void **state) {
  (void)state;
  uint8_t text[1000];
  size_t n = 0;
  uint32_t cps[] = {'a', 0xE9, 0x20AC, 0x1F600, 'z', 'y', 'x', 'w', 0x10FFFF};
  for (size_t i = 0; n + 4 <= sizeof text; i++)
    n += encode(cps[i % 9], text + n);
  for (size_t chunk = 1; chunk <= 17; chunk++) {
    dx__utf8_state st = 0;
    for (size_t pos = 0; pos < n; pos += chunk) {
      size_t m = n - pos < chunk ? n - pos : chunk;
      assert_int_equal(dx__utf8_feed(&st, text + pos, m), 0);
    }
    assert_true(dx__utf8_complete(st));
  }
  /* One bad byte at every position is caught. */
  for (size_t pos = 0; pos < n; pos += 7) {
    uint8_t copy[sizeof text];
    memcpy(copy, text, n);
    copy[pos] = 0xFF;
    assert_int_equal(dx__utf8_validate(copy, n), DX_EUTF8);
  }
}

/* Short mostly-ASCII texts, the common message: the validator may test the
 * last eight bytes as one word, overlapping bytes it has already seen. A bad
 * byte, a truncated sequence or a valid one at every position of texts of
 * every length 1..40 gets the right answer. */
static void test_short_ascii_tails(void **state) {
  (void)state;
  for (size_t n = 1; n <= 40; n++) {
    uint8_t t[48];
    for (size_t pos = 0; pos < n; pos++) {
      memset(t, 'a', n);
      t[pos] = 0x80; /* a lone continuation byte */
      assert_int_equal(dx__utf8_validate(t, n), DX_EUTF8);
      t[pos] = 0xC3; /* a lead byte: valid only with its continuation */
      if (pos + 1 < n) {
        assert_int_equal(dx__utf8_validate(t, n), DX_EUTF8); /* 'a' follows */
        t[pos + 1] = 0xA9;
        assert_int_equal(dx__utf8_validate(t, n), 0);
      } else {
        assert_int_equal(dx__utf8_validate(t, n), DX_EUTF8); /* truncated */
      }
    }
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_validate),
      cmocka_unit_test(test_feed_whole),
      cmocka_unit_test(test_feed_byte_by_byte),
      cmocka_unit_test(test_feed_every_split),
      cmocka_unit_test(test_autobahn_fragments),
      cmocka_unit_test(test_all_code_points),
      cmocka_unit_test(test_long_text_chunks),
      cmocka_unit_test(test_short_ascii_tails),
  };
  return cmocka_run_group_tests_name("utf8", tests, NULL, NULL);
}
