/* permessage-deflate (RFC 7692): server negotiation, the client's offer
 * and its check of the response (src/proto/pmd_negotiate.h), and the codec
 * (src/proto/deflate.h) — round trips, context takeover, split input, the
 * §7.2.3 examples, the size limit against a decompression bomb, corrupt
 * input, allocation failure and memory accounting. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <zlib.h>

#include "duplex.h"
#include "proto/deflate.h"

/* ------------------------------------------------------------------------ */
/* A counting allocator that can fail the i-th allocation                   */
/* ------------------------------------------------------------------------ */

typedef struct talloc {
  size_t live;    /* bytes handed out and not freed */
  size_t peak;    /* highest `live` seen */
  size_t blocks;  /* blocks live */
  size_t calls;   /* allocations and growths attempted */
  size_t fail_at; /* 1-based call to fail; 0 = never */
  int failed;     /* a failure was injected */
} talloc;

typedef union thdr {
  size_t n;
  max_align_t align;
} thdr;

static void *t_realloc(void *ud, void *p, size_t n) {
  talloc *t = ud;
  thdr *h = p ? (thdr *)p - 1 : NULL;
  if (n == 0) {
    if (h) {
      t->live -= h->n;
      t->blocks--;
      free(h);
    }
    return NULL;
  }
  t->calls++;
  if (t->fail_at && t->calls == t->fail_at) {
    t->failed = 1;
    return NULL;
  }
  size_t old = h ? h->n : 0;
  thdr *nh = realloc(h, sizeof *nh + n);
  if (nh == NULL)
    return NULL;
  nh->n = n;
  if (!h)
    t->blocks++;
  t->live = t->live - old + n;
  if (t->live > t->peak)
    t->peak = t->live;
  return nh + 1;
}

static dx__alloc talloc_of(talloc *t) {
  dx__alloc a = {t_realloc, t};
  return a;
}

/* ------------------------------------------------------------------------ */
/* Test data                                                                */
/* ------------------------------------------------------------------------ */

static uint64_t rng_state;
static uint64_t rnd(void) {
  /* xorshift64*: deterministic, so a failure reproduces. */
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return rng_state * 2685821657736338717ull;
}

static uint8_t *random_bytes(size_t n, uint64_t seed) {
  uint8_t *p = malloc(n ? n : 1);
  assert_non_null(p);
  rng_state = seed | 1;
  for (size_t i = 0; i < n; i++)
    p[i] = (uint8_t)(rnd() >> 56);
  return p;
}

/* Words and punctuation: compresses the way chat or JSON does. */
static uint8_t *text_bytes(size_t n, uint64_t seed) {
  static const char *const words[] = {
      "the",  "socket", "message", "frame", "deflate", "window", "server",
      "client", "{\"id\":", "\"type\":", "\"text\"", "hello", "world",
      "context", "takeover", "lorem", "ipsum", "dolor", "sit", "amet"};
  uint8_t *p = malloc(n ? n : 1);
  assert_non_null(p);
  rng_state = seed | 1;
  size_t i = 0;
  while (i < n) {
    const char *w = words[rnd() % (sizeof words / sizeof words[0])];
    for (size_t k = 0; w[k] && i < n; k++)
      p[i++] = (uint8_t)w[k];
    if (i < n)
      p[i++] = (rnd() % 7 == 0) ? '\n' : ' ';
  }
  return p;
}

/* ------------------------------------------------------------------------ */
/* A sink collecting decompressed bytes                                     */
/* ------------------------------------------------------------------------ */

typedef struct sinkbuf {
  uint8_t *p;
  size_t len, cap;
  size_t calls;
  size_t max_piece;
  int fail_with; /* returned from the sink when non-zero */
} sinkbuf;

static int sink_fn(void *ud, const uint8_t *p, size_t n) {
  sinkbuf *b = ud;
  assert_true(n > 0);
  b->calls++;
  if (n > b->max_piece)
    b->max_piece = n;
  if (b->fail_with)
    return b->fail_with;
  if (b->len + n > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n)
      cap *= 2;
    b->p = realloc(b->p, cap);
    assert_non_null(b->p);
    b->cap = cap;
  }
  memcpy(b->p + b->len, p, n);
  b->len += n;
  return 0;
}

static void sink_reset(sinkbuf *b) {
  b->len = 0;
  b->calls = 0;
  b->max_piece = 0;
}

static void sink_free(sinkbuf *b) {
  free(b->p);
  memset(b, 0, sizeof *b);
}

/* ------------------------------------------------------------------------ */
/* Negotiation helpers                                                      */
/* ------------------------------------------------------------------------ */

static dx__pmd_config defaults(void) {
  dx__pmd_config c;
  dx__pmd_config_defaults(&c);
  return c;
}

/* Server side of one handshake: the values are the header lines. */
static int negotiate(const dx__pmd_config *cfg, dx__pmd_params *p,
                     char resp[DX__PMD_HEADER_MAX], size_t n, ...) {
  const char *vals[8];
  size_t lens[8];
  va_list ap;
  va_start(ap, n);
  for (size_t i = 0; i < n; i++) {
    vals[i] = va_arg(ap, const char *);
    lens[i] = strlen(vals[i]);
  }
  va_end(ap);
  memset(p, 0xEE, sizeof *p);
  return dx__pmd_server_negotiate(cfg, vals, lens, n, p, resp,
                                  DX__PMD_HEADER_MAX);
}

static int verify(const dx__pmd_config *cfg, dx__pmd_params *p,
                  char why[128], size_t n, ...) {
  const char *vals[8];
  size_t lens[8];
  va_list ap;
  va_start(ap, n);
  for (size_t i = 0; i < n; i++) {
    vals[i] = va_arg(ap, const char *);
    lens[i] = strlen(vals[i]);
  }
  va_end(ap);
  memset(p, 0xEE, sizeof *p);
  return dx__pmd_client_verify(cfg, vals, lens, n, p, why, 128);
}

static void expect_params(const dx__pmd_params *p, int snct, int cnct,
                          int smwb, int cmwb) {
  assert_int_equal(p->server_no_context_takeover, snct);
  assert_int_equal(p->client_no_context_takeover, cnct);
  assert_int_equal(p->server_max_window_bits, smwb);
  assert_int_equal(p->client_max_window_bits, cmwb);
}

/* ------------------------------------------------------------------------ */
/* Server negotiation                                                       */
/* ------------------------------------------------------------------------ */

static void test_config_defaults(void **st) {
  (void)st;
  dx__pmd_config c;
  memset(&c, 0x55, sizeof c);
  dx__pmd_config_defaults(&c);
  assert_int_equal(c.enabled, 1);
  assert_int_equal(c.server_max_window_bits, 15);
  assert_int_equal(c.client_max_window_bits, 15);
  assert_int_equal(c.server_no_context_takeover, 0);
  assert_int_equal(c.client_no_context_takeover, 0);
  assert_int_equal(c.mem_level, 8);
  assert_int_equal(c.level, -1);
  assert_int_equal(c.threshold, 0);
}

static void test_server_disabled(void **st) {
  (void)st;
  dx__pmd_config c = defaults();
  c.enabled = 0;
  dx__pmd_params p;
  char resp[DX__PMD_HEADER_MAX] = "junk";
  assert_int_equal(negotiate(&c, &p, resp, 1, "permessage-deflate"), 0);
  assert_string_equal(resp, "");
  c = defaults();
  strcpy(resp, "junk");
  assert_int_equal(negotiate(&c, &p, resp, 0), 0);
  assert_string_equal(resp, "");
  assert_int_equal(negotiate(&c, &p, resp, 1, ""), 0);
  assert_int_equal(negotiate(&c, &p, resp, 1, " , ,\t"), 0);
  assert_int_equal(negotiate(&c, &p, resp, 1, "x-webkit-deflate-frame"), 0);
  assert_string_equal(resp, "");
}

static void test_server_each_param(void **st) {
  (void)st;
  dx__pmd_config c = defaults();
  dx__pmd_params p;
  char resp[DX__PMD_HEADER_MAX];

  assert_int_equal(negotiate(&c, &p, resp, 1, "permessage-deflate"), 1);
  assert_string_equal(resp, "permessage-deflate");
  expect_params(&p, 0, 0, 15, 15);

  assert_int_equal(negotiate(&c, &p, resp, 1,
                             "permessage-deflate; server_no_context_takeover"), 1);
  assert_string_equal(resp, "permessage-deflate; server_no_context_takeover");
  expect_params(&p, 1, 0, 15, 15);

  /* Echoed so our inflater may drop its window between messages. */
  assert_int_equal(negotiate(&c, &p, resp, 1,
                             "permessage-deflate; client_no_context_takeover"), 1);
  assert_string_equal(resp, "permessage-deflate; client_no_context_takeover");
  expect_params(&p, 0, 1, 15, 15);

  assert_int_equal(negotiate(&c, &p, resp, 1,
                             "permessage-deflate; server_max_window_bits=10"), 1);
  assert_string_equal(resp, "permessage-deflate; server_max_window_bits=10");
  expect_params(&p, 0, 0, 10, 15);

  assert_int_equal(negotiate(&c, &p, resp, 1,
                             "permessage-deflate; server_max_window_bits=15"), 1);
  assert_string_equal(resp, "permessage-deflate; server_max_window_bits=15");
  expect_params(&p, 0, 0, 15, 15);

  /* Without a value: the client merely supports it. */
  assert_int_equal(negotiate(&c, &p, resp, 1,
                             "permessage-deflate; client_max_window_bits"), 1);
  assert_string_equal(resp, "permessage-deflate");
  expect_params(&p, 0, 0, 15, 15);

  /* With a value: the client's promise, answered so our inflater can
   * size its window by it. */
  assert_int_equal(negotiate(&c, &p, resp, 1,
                             "permessage-deflate; client_max_window_bits=12"), 1);
  assert_string_equal(resp, "permessage-deflate; client_max_window_bits=12");
  expect_params(&p, 0, 0, 15, 12);

  assert_int_equal(
      negotiate(&c, &p, resp, 1,
                "permessage-deflate; client_max_window_bits=9; "
                "server_max_window_bits=11; client_no_context_takeover; "
                "server_no_context_takeover"),
      1);
  assert_string_equal(resp,
                      "permessage-deflate; server_no_context_takeover; "
                      "client_no_context_takeover; server_max_window_bits=11; "
                      "client_max_window_bits=9");
  expect_params(&p, 1, 1, 11, 9);
}

static void test_server_syntax_variants(void **st) {
  (void)st;
  dx__pmd_config c = defaults();
  dx__pmd_params p;
  char resp[DX__PMD_HEADER_MAX];

  /* Quoted values (RFC 6455 §9.1: quoted-string allowed, must then be a
   * token), a quoted-pair inside, whitespace everywhere it may be, and
   * names in any case. */
  assert_int_equal(negotiate(&c, &p, resp, 1,
                             "permessage-deflate;server_max_window_bits=\"10\""),
                   1);
  expect_params(&p, 0, 0, 10, 15);
  assert_int_equal(
      negotiate(&c, &p, resp, 1,
                "\t permessage-deflate \t; client_max_window_bits = \"1\\2\" ;"
                "  server_no_context_takeover  "),
      1);
  expect_params(&p, 1, 0, 15, 12);
  assert_int_equal(negotiate(&c, &p, resp, 1,
                             "PerMessage-Deflate; Server_Max_Window_Bits=9"), 1);
  expect_params(&p, 0, 0, 9, 15);
  assert_string_equal(resp, "permessage-deflate; server_max_window_bits=9");

  /* Empty list elements are allowed (RFC 7230 §7). */
  assert_int_equal(negotiate(&c, &p, resp, 1, " , ,permessage-deflate ,,"), 1);
  expect_params(&p, 0, 0, 15, 15);
}

static void test_server_offer_order(void **st) {
  (void)st;
  dx__pmd_config c = defaults();
  dx__pmd_params p;
  char resp[DX__PMD_HEADER_MAX];

  /* The first acceptable offer wins: the client lists its preferences. */
  assert_int_equal(
      negotiate(&c, &p, resp, 1,
                "permessage-deflate; server_max_window_bits=10, "
                "permessage-deflate; server_max_window_bits=12"),
      1);
  expect_params(&p, 0, 0, 10, 15);

  /* Unknown extensions first, one with a quoted comma and semicolon
   * that must not split it. */
  assert_int_equal(
      negotiate(&c, &p, resp, 1,
                "x-webkit-deflate-frame, foo; bar=\"a, permessage-deflate; b\"; "
                "baz, permessage-deflate; client_max_window_bits=11"),
      1);
  expect_params(&p, 0, 0, 15, 11);
  assert_string_equal(resp, "permessage-deflate; client_max_window_bits=11");

  /* Several header lines are one list. */
  assert_int_equal(negotiate(&c, &p, resp, 3, "x-foo", "",
                             "permessage-deflate; server_max_window_bits=13"),
                   1);
  expect_params(&p, 0, 0, 13, 15);
  assert_int_equal(negotiate(&c, &p, resp, 2,
                             "permessage-deflate; bogus",
                             "permessage-deflate; server_no_context_takeover"),
                   1);
  expect_params(&p, 1, 0, 15, 15);
}

/* Offers that must be declined, each alone (nothing accepted) and before
 * a plain offer (which must then be the one accepted). */
static void test_server_declines(void **st) {
  (void)st;
  static const char *const bad[] = {
      "permessage-deflate; foo",                       /* unknown param */
      "permessage-deflate; foo=1",
      "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
      "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
      "permessage-deflate; server_max_window_bits=10; server_max_window_bits=10",
      "permessage-deflate; client_max_window_bits; client_max_window_bits=10",
      "permessage-deflate; server_max_window_bits",    /* value required */
      "permessage-deflate; server_max_window_bits=16",
      "permessage-deflate; server_max_window_bits=7",
      "permessage-deflate; server_max_window_bits=0",
      "permessage-deflate; server_max_window_bits=08", /* leading zero */
      "permessage-deflate; server_max_window_bits=010",
      "permessage-deflate; server_max_window_bits=1a",
      "permessage-deflate; server_max_window_bits=-9",
      "permessage-deflate; server_max_window_bits=\"16\"",
      "permessage-deflate; server_max_window_bits=\"\"",
      "permessage-deflate; server_max_window_bits=\" 9\"",
      "permessage-deflate; server_max_window_bits=99999999999999999999",
      "permessage-deflate; client_max_window_bits=16",
      "permessage-deflate; client_max_window_bits=\"7\"",
      "permessage-deflate; server_no_context_takeover=1", /* takes no value */
      "permessage-deflate; client_no_context_takeover=\"\"",
      "permessage-deflate; server_max_window_bits=8",  /* binds our compressor */
      "permessage-deflate;",                           /* syntax */
      "permessage-deflate; ;",
      "permessage-deflate; =10",
      "permessage-deflate; server_max_window_bits=",
      "permessage-deflate server_no_context_takeover",
      "permessage-deflate; server_max_window_bits=10 10",
      "permessage-deflate; x=\"a\"b",
      "\"permessage-deflate\"",
      "permessage-deflate/1",
      "permessage-deflate; server_max_window_bits==10",
  };
  dx__pmd_config c = defaults();
  dx__pmd_params p;
  char resp[DX__PMD_HEADER_MAX];
  char both[256];
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    print_message("offer: %s\n", bad[i]);
    strcpy(resp, "junk");
    assert_int_equal(negotiate(&c, &p, resp, 1, bad[i]), 0);
    assert_string_equal(resp, "");
    snprintf(both, sizeof both, "%s, permessage-deflate; client_no_context_takeover",
             bad[i]);
    assert_int_equal(negotiate(&c, &p, resp, 1, both), 1);
    assert_string_equal(resp, "permessage-deflate; client_no_context_takeover");
    expect_params(&p, 0, 1, 15, 15);
  }
  /* An unterminated quote swallows the rest of its line, but not the next
   * header line. */
  assert_int_equal(negotiate(&c, &p, resp, 1,
                             "permessage-deflate; x=\"a, permessage-deflate"), 0);
  assert_int_equal(negotiate(&c, &p, resp, 2, "foo; x=\"a, permessage-deflate",
                             "permessage-deflate"),
                   1);
}

static void test_server_8_bits(void **st) {
  (void)st;
  dx__pmd_config c = defaults();
  dx__pmd_params p;
  char resp[DX__PMD_HEADER_MAX];
  /* The client asks our compressor for a 256-byte window, which zlib
   * cannot do: that offer is declined, the next one taken. */
  assert_int_equal(negotiate(&c, &p, resp, 1,
                             "permessage-deflate; server_max_window_bits=8"), 0);
  assert_int_equal(negotiate(&c, &p, resp, 1,
                             "permessage-deflate; server_max_window_bits=8, "
                             "permessage-deflate; server_max_window_bits=9"),
                   1);
  assert_string_equal(resp, "permessage-deflate; server_max_window_bits=9");
  expect_params(&p, 0, 0, 9, 15);
  /* The client promises to compress with 8: accepted and answered with
   * 8; our inflater uses 9, which reads anything an 8-bit window makes. */
  assert_int_equal(negotiate(&c, &p, resp, 1,
                             "permessage-deflate; client_max_window_bits=8"), 1);
  assert_string_equal(resp, "permessage-deflate; client_max_window_bits=8");
  expect_params(&p, 0, 0, 15, 9);
  /* A configured 8 is taken as 9. */
  c.server_max_window_bits = 8;
  assert_int_equal(negotiate(&c, &p, resp, 1, "permessage-deflate"), 1);
  assert_string_equal(resp, "permessage-deflate; server_max_window_bits=9");
  expect_params(&p, 0, 0, 9, 15);
}

static void test_server_config_limits(void **st) {
  (void)st;
  dx__pmd_params p;
  char resp[DX__PMD_HEADER_MAX];
  dx__pmd_config c = defaults();

  /* Our own window: announced even unasked, the smaller of ours and the
   * client's wins. */
  c.server_max_window_bits = 10;
  assert_int_equal(negotiate(&c, &p, resp, 1, "permessage-deflate"), 1);
  assert_string_equal(resp, "permessage-deflate; server_max_window_bits=10");
  expect_params(&p, 0, 0, 10, 15);
  assert_int_equal(negotiate(&c, &p, resp, 1,
                             "permessage-deflate; server_max_window_bits=12"), 1);
  expect_params(&p, 0, 0, 10, 15);
  assert_int_equal(negotiate(&c, &p, resp, 1,
                             "permessage-deflate; server_max_window_bits=9"), 1);
  expect_params(&p, 0, 0, 9, 15);

  /* The client's window: only an offer carrying client_max_window_bits
   * lets us bind it; other offers are declined. */
  c = defaults();
  c.client_max_window_bits = 10;
  assert_int_equal(negotiate(&c, &p, resp, 1, "permessage-deflate"), 0);
  assert_int_equal(negotiate(&c, &p, resp, 1,
                             "permessage-deflate, "
                             "permessage-deflate; client_max_window_bits"),
                   1);
  assert_string_equal(resp, "permessage-deflate; client_max_window_bits=10");
  expect_params(&p, 0, 0, 15, 10);
  assert_int_equal(negotiate(&c, &p, resp, 1,
                             "permessage-deflate; client_max_window_bits=12"), 1);
  expect_params(&p, 0, 0, 15, 10);
  assert_int_equal(negotiate(&c, &p, resp, 1,
                             "permessage-deflate; client_max_window_bits=9"), 1);
  assert_string_equal(resp, "permessage-deflate; client_max_window_bits=9");
  expect_params(&p, 0, 0, 15, 9);

  /* No context takeover: a server may add either unasked. */
  c = defaults();
  c.server_no_context_takeover = 1;
  c.client_no_context_takeover = 1;
  assert_int_equal(negotiate(&c, &p, resp, 1, "permessage-deflate"), 1);
  assert_string_equal(resp, "permessage-deflate; server_no_context_takeover; "
                            "client_no_context_takeover");
  expect_params(&p, 1, 1, 15, 15);

  /* A response that does not fit is no acceptance. */
  const char *v = "permessage-deflate";
  size_t l = strlen(v);
  char small[10] = "junk";
  assert_int_equal(dx__pmd_server_negotiate(&c, &v, &l, 1, &p, small,
                                            sizeof small),
                   0);
  assert_string_equal(small, "");
}

/* ------------------------------------------------------------------------ */
/* Client offer and verification                                            */
/* ------------------------------------------------------------------------ */

static void test_client_offer(void **st) {
  (void)st;
  char buf[DX__PMD_HEADER_MAX];
  dx__pmd_config c = defaults();
  size_t n = dx__pmd_client_offer(&c, buf, sizeof buf);
  assert_string_equal(buf, "permessage-deflate; client_max_window_bits");
  assert_int_equal(n, strlen(buf));

  c.server_no_context_takeover = 1;
  c.client_no_context_takeover = 1;
  c.server_max_window_bits = 10;
  c.client_max_window_bits = 12;
  n = dx__pmd_client_offer(&c, buf, sizeof buf);
  assert_string_equal(buf,
                      "permessage-deflate; server_no_context_takeover; "
                      "client_no_context_takeover; server_max_window_bits=10; "
                      "client_max_window_bits=12");
  assert_int_equal(n, strlen(buf));
  /* Exactly enough room, then one byte short. */
  assert_int_equal(dx__pmd_client_offer(&c, buf, n + 1), n);
  assert_int_equal(dx__pmd_client_offer(&c, buf, n), 0);
  assert_string_equal(buf, "");

  c.enabled = 0;
  strcpy(buf, "junk");
  assert_int_equal(dx__pmd_client_offer(&c, buf, sizeof buf), 0);
  assert_string_equal(buf, "");
}

static void test_client_verify_accepts(void **st) {
  (void)st;
  dx__pmd_config c = defaults();
  dx__pmd_params p;
  char why[128];

  assert_int_equal(verify(&c, &p, why, 0), 0);
  assert_int_equal(verify(&c, &p, why, 1, ""), 0);
  assert_int_equal(verify(&c, &p, why, 2, " ", ","), 0);

  assert_int_equal(verify(&c, &p, why, 1, "permessage-deflate"), 1);
  expect_params(&p, 0, 0, 15, 15);
  /* Things a server may add unasked. */
  assert_int_equal(verify(&c, &p, why, 1,
                          "permessage-deflate; server_no_context_takeover"), 1);
  expect_params(&p, 1, 0, 15, 15);
  assert_int_equal(verify(&c, &p, why, 1,
                          "permessage-deflate; client_no_context_takeover"), 1);
  expect_params(&p, 0, 1, 15, 15);
  assert_int_equal(verify(&c, &p, why, 1,
                          "permessage-deflate; server_max_window_bits=10"), 1);
  expect_params(&p, 0, 0, 10, 15);
  /* We offered client_max_window_bits, so the server may bind us. */
  assert_int_equal(verify(&c, &p, why, 1,
                          "permessage-deflate; client_max_window_bits=\"11\""), 1);
  expect_params(&p, 0, 0, 15, 11);
  /* The server's 8 binds our inflater: 9 reads it. */
  assert_int_equal(verify(&c, &p, why, 1,
                          "permessage-deflate; server_max_window_bits=8"), 1);
  expect_params(&p, 0, 0, 9, 15);
  /* The server's 8 for our compressor: kept as 8 (stored blocks). */
  assert_int_equal(verify(&c, &p, why, 1,
                          "permessage-deflate; client_max_window_bits=8"), 1);
  expect_params(&p, 0, 0, 15, 8);

  /* What we asked for, granted or bettered. */
  c.server_no_context_takeover = 1;
  c.server_max_window_bits = 12;
  c.client_max_window_bits = 11;
  c.client_no_context_takeover = 1;
  assert_int_equal(
      verify(&c, &p, why, 1,
             " permessage-deflate ;server_max_window_bits=10; "
             "server_no_context_takeover"),
      1);
  /* Our compressor keeps the promises of the offer: 11 bits, no
   * takeover, even though the server did not repeat them. */
  expect_params(&p, 1, 1, 10, 11);
  assert_int_equal(verify(&c, &p, why, 2, "",
                          "permessage-deflate; server_max_window_bits=12; "
                          "server_no_context_takeover; "
                          "client_max_window_bits=9"),
                   1);
  expect_params(&p, 1, 1, 12, 9);
}

static void test_client_verify_rejects(void **st) {
  (void)st;
  struct {
    const char *resp;
    const char *why; /* a part of the reason */
  } cases[] = {
      {"x-webkit-deflate-frame", "x-webkit-deflate-frame"},
      {"permessage-deflate, x-foo", "x-foo"},
      {"permessage-deflate, permessage-deflate", "more than once"},
      {"permessage-deflate; foo", "unknown"},
      {"permessage-deflate; foo=\"bar\"", "foo"},
      {"permessage-deflate; server_no_context_takeover; server_no_context_takeover",
       "twice"},
      {"permessage-deflate; client_max_window_bits=10; client_max_window_bits=10",
       "twice"},
      {"permessage-deflate; server_max_window_bits=16", "8..15"},
      {"permessage-deflate; server_max_window_bits=7", "8..15"},
      {"permessage-deflate; server_max_window_bits=\"012\"", "8..15"},
      {"permessage-deflate; server_max_window_bits", "without a value"},
      {"permessage-deflate; client_max_window_bits", "without a value"},
      {"permessage-deflate; client_max_window_bits=99", "8..15"},
      {"permessage-deflate; server_no_context_takeover=1", "no value"},
      {"permessage-deflate;", "malformed"},
      {"permessage-deflate; x=\"unterminated", "malformed"},
      {"permessage-deflate x", "malformed"},
  };
  dx__pmd_config c = defaults();
  dx__pmd_params p;
  char why[128];
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    print_message("response: %s\n", cases[i].resp);
    assert_int_equal(verify(&c, &p, why, 1, cases[i].resp), DX_EHANDSHAKE);
    print_message("  why: %s\n", why);
    assert_non_null(strstr(why, cases[i].why));
  }
  /* Twice across two header lines. */
  assert_int_equal(verify(&c, &p, why, 2, "permessage-deflate",
                          "permessage-deflate"),
                   DX_EHANDSHAKE);
  assert_non_null(strstr(why, "more than once"));

  /* Against what we asked for. */
  c.server_max_window_bits = 10;
  assert_int_equal(verify(&c, &p, why, 1,
                          "permessage-deflate; server_max_window_bits=11"),
                   DX_EHANDSHAKE);
  assert_non_null(strstr(why, "server_max_window_bits=11"));
  assert_int_equal(verify(&c, &p, why, 1, "permessage-deflate"), DX_EHANDSHAKE);
  assert_non_null(strstr(why, "server_max_window_bits=10"));
  c = defaults();
  c.client_max_window_bits = 10;
  assert_int_equal(verify(&c, &p, why, 1,
                          "permessage-deflate; client_max_window_bits=11"),
                   DX_EHANDSHAKE);
  assert_non_null(strstr(why, "client_max_window_bits=11"));
  c = defaults();
  c.server_no_context_takeover = 1;
  assert_int_equal(verify(&c, &p, why, 1, "permessage-deflate"), DX_EHANDSHAKE);
  assert_non_null(strstr(why, "server_no_context_takeover"));

  /* Nothing was offered at all. */
  c = defaults();
  c.enabled = 0;
  assert_int_equal(verify(&c, &p, why, 1, "permessage-deflate"), DX_EHANDSHAKE);
  assert_non_null(strstr(why, "did not offer"));

  /* Peer bytes in the reason are shortened and made printable. */
  c = defaults();
  assert_int_equal(verify(&c, &p, why, 1,
                          "x-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
                   DX_EHANDSHAKE);
  assert_true(strlen(why) < 100);
  assert_non_null(strstr(why, "x-aaaaaaaa"));
  assert_non_null(strstr(why, "..."));
  assert_int_equal(verify(&c, &p, why, 1,
                          "permessage-deflate; server_max_window_bits=\"\x80\xff\x01\""),
                   DX_EHANDSHAKE); /* \x01: a bad quoted string */
  assert_int_equal(verify(&c, &p, why, 1,
                          "permessage-deflate; server_max_window_bits=\"1\x80\xff\""),
                   DX_EHANDSHAKE);
  print_message("  why: %s\n", why);
  assert_non_null(strstr(why, "1??"));
  for (const char *q = why; *q; q++)
    assert_true(*q >= 0x20 && *q < 0x7f);
  /* why may be absent. */
  const char *v = "x-foo";
  size_t l = strlen(v);
  assert_int_equal(dx__pmd_client_verify(&c, &v, &l, 1, &p, NULL, 0),
                   DX_EHANDSHAKE);
}

/* Every combination of client and server settings: the client's offer,
 * negotiated by the server, verified by the client, must give both sides
 * the same parameters. */
static void test_offer_negotiate_verify(void **st) {
  (void)st;
  static const uint8_t cbits[] = {15, 12, 9};
  int combos = 0;
  for (int cs = 0; cs < 4; cs++)
    for (int ss = 0; ss < 4; ss++)
      for (size_t a = 0; a < 3; a++)
        for (size_t b = 0; b < 3; b++)
          for (size_t x = 0; x < 3; x++)
            for (size_t y = 0; y < 3; y++) {
              dx__pmd_config cc = defaults(), sc = defaults();
              cc.server_no_context_takeover = cs & 1;
              cc.client_no_context_takeover = (cs >> 1) & 1;
              sc.server_no_context_takeover = ss & 1;
              sc.client_no_context_takeover = (ss >> 1) & 1;
              cc.server_max_window_bits = cbits[a];
              cc.client_max_window_bits = cbits[b];
              sc.server_max_window_bits = cbits[x];
              sc.client_max_window_bits = cbits[y];
              char offer[DX__PMD_HEADER_MAX], resp[DX__PMD_HEADER_MAX];
              char why[128];
              assert_true(dx__pmd_client_offer(&cc, offer, sizeof offer) > 0);
              dx__pmd_params sp, cp;
              assert_int_equal(negotiate(&sc, &sp, resp, 1, offer), 1);
              int rc = verify(&cc, &cp, why, 1, resp);
              if (rc != 1)
                print_message("offer %s\nresp %s\nwhy %s\n", offer, resp, why);
              assert_int_equal(rc, 1);
              assert_memory_equal(&sp, &cp, sizeof sp);
              int ws = cbits[a] < cbits[x] ? cbits[a] : cbits[x];
              int wc = cbits[b] < cbits[y] ? cbits[b] : cbits[y];
              expect_params(&sp, (cs | ss) & 1, ((cs | ss) >> 1) & 1, ws, wc);
              combos++;
            }
  assert_int_equal(combos, 4 * 4 * 81);
}

/* ------------------------------------------------------------------------ */
/* Codec helpers                                                            */
/* ------------------------------------------------------------------------ */

typedef struct pair {
  talloc ta;
  dx__alloc a;
  dx__pmd *server, *client;
  dx__pmd_params params;
} pair;

/* A connected pair of codecs with the given parameters on both sides. */
static void pair_open(pair *pr, int snct, int cnct, int sbits, int cbits,
                      const dx__pmd_config *cfg) {
  memset(pr, 0, sizeof *pr);
  pr->a = talloc_of(&pr->ta);
  pr->params.server_no_context_takeover = (uint8_t)snct;
  pr->params.client_no_context_takeover = (uint8_t)cnct;
  pr->params.server_max_window_bits = (uint8_t)sbits;
  pr->params.client_max_window_bits = (uint8_t)cbits;
  pr->server = dx__pmd_new(&pr->params, cfg, 1, &pr->a);
  pr->client = dx__pmd_new(&pr->params, cfg, 0, &pr->a);
  assert_non_null(pr->server);
  assert_non_null(pr->client);
}

static void pair_close(pair *pr) {
  dx__pmd_free(pr->server);
  dx__pmd_free(pr->client);
  assert_int_equal(pr->ta.live, 0);
  assert_int_equal(pr->ta.blocks, 0);
}

/* Compresses with `from`, returns a malloc'ed copy of the payload. */
static uint8_t *squeeze(dx__pmd *from, const uint8_t *msg, size_t len,
                        size_t *out_len) {
  const uint8_t *out = NULL;
  assert_int_equal(dx__pmd_compress(from, msg, len, &out, out_len), 0);
  assert_true(out != NULL || *out_len == 0);
  uint8_t *copy = malloc(*out_len ? *out_len : 1);
  assert_non_null(copy);
  if (*out_len)
    memcpy(copy, out, *out_len);
  /* Never the flush marker: it was removed. */
  if (*out_len >= 4)
    assert_memory_not_equal(copy + *out_len - 4, "\x00\x00\xff\xff", 4);
  return copy;
}

/* Feeds a payload to `to` in pieces: cut points from `seed` (0 = whole). */
static int inflate_pieces(dx__pmd *to, const uint8_t *z, size_t zlen,
                          uint64_t seed, uint64_t limit, sinkbuf *sb) {
  size_t off = 0;
  rng_state = seed | 1;
  while (seed && off < zlen) {
    size_t piece = (size_t)(rnd() % 64);
    if (rnd() % 4 == 0)
      piece = (size_t)(rnd() % (zlen - off + 1));
    if (piece > zlen - off)
      piece = zlen - off;
    int rc = dx__pmd_decompress(to, z + off, piece, 0, limit, sink_fn, sb);
    if (rc)
      return rc;
    off += piece;
  }
  return dx__pmd_decompress(to, z + off, zlen - off, 1, limit, sink_fn, sb);
}

/* One message from `from` to `to`; returns the compressed size. */
static size_t send_one(dx__pmd *from, dx__pmd *to, const uint8_t *msg,
                       size_t len, uint64_t split_seed) {
  size_t zlen;
  uint8_t *z = squeeze(from, msg, len, &zlen);
  sinkbuf sb = {0};
  assert_int_equal(inflate_pieces(to, z, zlen, split_seed, UINT64_MAX, &sb), 0);
  assert_int_equal(sb.len, len);
  if (len)
    assert_memory_equal(sb.p, msg, len);
  assert_true(sb.max_piece <= 16384);
  sink_free(&sb);
  free(z);
  return zlen;
}

/* Decompresses a fixed payload with a fresh codec (no context). */
static int inflate_fixed(dx__pmd *to, const uint8_t *z, size_t zlen,
                         sinkbuf *sb) {
  sink_reset(sb);
  return dx__pmd_decompress(to, z, zlen, 1, UINT64_MAX, sink_fn, sb);
}

/* ------------------------------------------------------------------------ */
/* Codec                                                                    */
/* ------------------------------------------------------------------------ */

/* RFC 7692 §7.2.3. */
static void test_rfc_examples(void **st) {
  (void)st;
  static const uint8_t hello1[] = {0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00};
  static const uint8_t hello2[] = {0xf2, 0x00, 0x11, 0x00, 0x00};
  static const uint8_t stored[] = {0x00, 0x05, 0x00, 0xfa, 0xff, 0x48,
                                   0x65, 0x6c, 0x6c, 0x6f, 0x00};
  static const uint8_t bfinal[] = {0xf3, 0x48, 0xcd, 0xc9,
                                   0xc9, 0x07, 0x00, 0x00};
  static const uint8_t two[] = {0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff,
                                0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00};
  pair pr;
  pair_open(&pr, 0, 0, 15, 15, NULL);
  sinkbuf sb = {0};

  /* §7.2.3.1 and §7.2.3.2: the second "Hello" refers to the first. */
  assert_int_equal(inflate_fixed(pr.client, hello1, sizeof hello1, &sb), 0);
  assert_int_equal(sb.len, 5);
  assert_memory_equal(sb.p, "Hello", 5);
  assert_int_equal(inflate_fixed(pr.client, hello2, sizeof hello2, &sb), 0);
  assert_int_equal(sb.len, 5);
  assert_memory_equal(sb.p, "Hello", 5);
  /* §7.2.3.3 stored block, §7.2.3.5 two blocks, §7.2.3.4 BFINAL — and a
   * message after the BFINAL one still decodes, with its context. */
  assert_int_equal(inflate_fixed(pr.client, stored, sizeof stored, &sb), 0);
  assert_memory_equal(sb.p, "Hello", 5);
  assert_int_equal(inflate_fixed(pr.client, two, sizeof two, &sb), 0);
  assert_int_equal(sb.len, 5);
  assert_memory_equal(sb.p, "Hello", 5);
  assert_int_equal(inflate_fixed(pr.client, bfinal, sizeof bfinal, &sb), 0);
  assert_int_equal(sb.len, 5);
  assert_memory_equal(sb.p, "Hello", 5);
  assert_int_equal(inflate_fixed(pr.client, hello2, sizeof hello2, &sb), 0);
  assert_memory_equal(sb.p, "Hello", 5);
  assert_int_equal(inflate_fixed(pr.client, bfinal, sizeof bfinal, &sb), 0);
  assert_memory_equal(sb.p, "Hello", 5);
  /* A BFINAL block without the trailing empty block: only our own tail
   * follows it, which is fine. */
  assert_int_equal(inflate_fixed(pr.client, bfinal, sizeof bfinal - 1, &sb), 0);
  assert_memory_equal(sb.p, "Hello", 5);
  assert_int_equal(inflate_fixed(pr.client, hello1, sizeof hello1, &sb), 0);
  assert_memory_equal(sb.p, "Hello", 5);

  /* Our compressor produces the very bytes of §7.2.3.1 and §7.2.3.2. */
  const uint8_t *out;
  size_t n;
  assert_int_equal(dx__pmd_compress(pr.server, (const uint8_t *)"Hello", 5, &out, &n), 0);
  assert_int_equal(n, sizeof hello1);
  assert_memory_equal(out, hello1, n);
  assert_int_equal(dx__pmd_compress(pr.server, (const uint8_t *)"Hello", 5, &out, &n), 0);
  assert_int_equal(n, sizeof hello2);
  assert_memory_equal(out, hello2, n);
  sink_free(&sb);
  pair_close(&pr);

  /* Without context takeover the second "Hello" is the first again, and
   * hello2 is unreadable for a fresh inflater (nothing to refer to). */
  pair_open(&pr, 1, 1, 15, 15, NULL);
  for (int i = 0; i < 2; i++) {
    assert_int_equal(dx__pmd_compress(pr.server, (const uint8_t *)"Hello", 5, &out, &n), 0);
    assert_int_equal(n, sizeof hello1);
    assert_memory_equal(out, hello1, n);
  }
  assert_int_equal(inflate_fixed(pr.client, hello1, sizeof hello1, &sb), 0);
  assert_int_equal(inflate_fixed(pr.client, hello2, sizeof hello2, &sb), DX_EPROTO);
  sink_free(&sb);
  pair_close(&pr);
}

/* Round trips: sizes 0..1 MiB, text and random data, every combination
 * of no_context_takeover, window bits 9..15, both directions, several
 * messages in a row, split at random points. */
static void test_round_trip_matrix(void **st) {
  (void)st;
  static const size_t sizes[] = {0, 1, 125, 16384, 1 << 20};
  uint8_t *data[2][5];
  for (size_t s = 0; s < 5; s++) {
    data[0][s] = text_bytes(sizes[s], 1000 + s);
    data[1][s] = random_bytes(sizes[s], 2000 + s);
  }
  size_t trips = 0;
  for (int bits = 9; bits <= 15; bits++)
    for (int nct = 0; nct < 4; nct++) {
      pair pr;
      /* Different windows each way, to catch a side using the wrong one. */
      int other = bits == 15 ? 9 : bits + 1;
      pair_open(&pr, nct & 1, nct >> 1, bits, other, NULL);
      for (size_t s = 0; s < 5; s++)
        for (int kind = 0; kind < 2; kind++) {
          /* 1 MiB only at a few windows: it is the slow part. */
          if (sizes[s] == (1 << 20) && bits != 9 && bits != 12 && bits != 15)
            continue;
          uint64_t seed = (uint64_t)(bits * 100 + nct * 10 + (int)s) * 2 + kind;
          send_one(pr.server, pr.client, data[kind][s], sizes[s], seed);
          send_one(pr.client, pr.server, data[kind][s], sizes[s], seed + 7);
          /* And once more whole, so the next message meets the context
           * the previous ones left. */
          send_one(pr.server, pr.client, data[kind][s], sizes[s], 0);
          send_one(pr.client, pr.server, data[kind][s], sizes[s], 0);
          trips += 4;
        }
      pair_close(&pr);
    }
  print_message("%zu round trips\n", trips);
  for (size_t s = 0; s < 5; s++) {
    free(data[0][s]);
    free(data[1][s]);
  }
}

/* Context takeover really reuses the window: the second identical message
 * is a handful of back-references. Without it, it costs the same again. */
static void test_context_takeover(void **st) {
  (void)st;
  uint8_t *msg = text_bytes(2000, 77);
  uint8_t *small = text_bytes(200, 78); /* fits a 9-bit window */
  for (int bits = 9; bits <= 15; bits += 6)
    for (int nct = 0; nct < 4; nct++) {
      pair pr;
      pair_open(&pr, nct & 1, nct >> 1, bits, bits, NULL);
      const uint8_t *m = bits == 9 ? small : msg;
      size_t len = bits == 9 ? 200 : 2000;
      /* server -> client is bound by server_no_context_takeover */
      size_t a = send_one(pr.server, pr.client, m, len, 0);
      size_t b = send_one(pr.server, pr.client, m, len, 3);
      size_t c = send_one(pr.client, pr.server, m, len, 0);
      size_t d = send_one(pr.client, pr.server, m, len, 5);
      print_message("bits %d snct %d cnct %d: s->c %zu then %zu, c->s %zu then %zu\n",
                    bits, nct & 1, nct >> 1, a, b, c, d);
      if (nct & 1)
        assert_int_equal(b, a);
      else
        assert_true(b * 8 < a);
      if (nct >> 1)
        assert_int_equal(d, c);
      else
        assert_true(d * 8 < c);
      pair_close(&pr);
    }
  free(msg);
  free(small);
}

/* The inflater's context follows the agreed parameter, not a guess: a
 * peer keeping context sends a message that only a decompressor keeping
 * context can read. */
static void test_takeover_binds_decompressor(void **st) {
  (void)st;
  uint8_t *msg = text_bytes(1000, 5);
  pair keep, reset;
  pair_open(&keep, 0, 0, 15, 15, NULL);
  pair_open(&reset, 1, 1, 15, 15, NULL);
  size_t z1, z2;
  uint8_t *a = squeeze(keep.server, msg, 1000, &z1);
  uint8_t *b = squeeze(keep.server, msg, 1000, &z2);
  sinkbuf sb = {0};
  /* The resetting side reads the first, then fails on the second, which
   * refers back to a window it dropped. */
  assert_int_equal(inflate_fixed(reset.client, a, z1, &sb), 0);
  assert_int_equal(inflate_fixed(reset.client, b, z2, &sb), DX_EPROTO);
  assert_int_equal(inflate_fixed(keep.client, a, z1, &sb), 0);
  assert_int_equal(inflate_fixed(keep.client, b, z2, &sb), 0);
  assert_int_equal(sb.len, 1000);
  assert_memory_equal(sb.p, msg, 1000);
  sink_free(&sb);
  free(a);
  free(b);
  free(msg);
  pair_close(&keep);
  pair_close(&reset);
}

/* Decompression fed at every split point, byte by byte, and in three
 * pieces, with context carried across the messages. */
static void test_split_points(void **st) {
  (void)st;
  uint8_t *msg = text_bytes(3000, 11);
  pair pr;
  pair_open(&pr, 0, 0, 15, 15, NULL);
  /* One message per split point: the receiver keeps context, so every
   * message after the first is mostly back-references. */
  for (int round = 0; round < 2; round++) {
    size_t zlen;
    uint8_t *z = squeeze(pr.server, msg, 3000, &zlen);
    for (size_t k = 0; k <= zlen; k++) {
      sinkbuf sb = {0};
      /* Each split point needs its own receiver in the same state: use a
       * fresh pair that has seen the same history. */
      pair rx;
      pair_open(&rx, 0, 0, 15, 15, NULL);
      if (round == 1) {
        size_t z0;
        pair tmp;
        pair_open(&tmp, 0, 0, 15, 15, NULL);
        uint8_t *first = squeeze(tmp.server, msg, 3000, &z0);
        assert_int_equal(inflate_fixed(rx.client, first, z0, &sb), 0);
        sink_reset(&sb);
        free(first);
        pair_close(&tmp);
      }
      assert_int_equal(dx__pmd_decompress(rx.client, z, k, 0, UINT64_MAX, sink_fn, &sb), 0);
      assert_int_equal(dx__pmd_decompress(rx.client, z + k, zlen - k, 1, UINT64_MAX, sink_fn, &sb), 0);
      assert_int_equal(sb.len, 3000);
      assert_memory_equal(sb.p, msg, 3000);
      sink_free(&sb);
      pair_close(&rx);
    }
    /* Byte by byte, with empty pieces in between. */
    pair rx;
    pair_open(&rx, 0, 0, 15, 15, NULL);
    sinkbuf sb = {0};
    if (round == 1) {
      pair tmp;
      pair_open(&tmp, 0, 0, 15, 15, NULL);
      size_t z0;
      uint8_t *first = squeeze(tmp.server, msg, 3000, &z0);
      assert_int_equal(inflate_fixed(rx.client, first, z0, &sb), 0);
      sink_reset(&sb);
      free(first);
      pair_close(&tmp);
    }
    for (size_t k = 0; k < zlen; k++) {
      assert_int_equal(dx__pmd_decompress(rx.client, z + k, 1, 0, UINT64_MAX, sink_fn, &sb), 0);
      assert_int_equal(dx__pmd_decompress(rx.client, z, 0, 0, UINT64_MAX, sink_fn, &sb), 0);
    }
    assert_int_equal(dx__pmd_decompress(rx.client, NULL, 0, 1, UINT64_MAX, sink_fn, &sb), 0);
    assert_int_equal(sb.len, 3000);
    assert_memory_equal(sb.p, msg, 3000);
    sink_free(&sb);
    pair_close(&rx);
    free(z);
  }
  pair_close(&pr);

  /* Three pieces at every pair of cut points, for the RFC's two-block
   * message (a block boundary inside). */
  static const uint8_t two[] = {0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff,
                                0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00};
  for (size_t i = 0; i <= sizeof two; i++)
    for (size_t j = i; j <= sizeof two; j++) {
      pair_open(&pr, 0, 0, 15, 15, NULL);
      sinkbuf sb = {0};
      assert_int_equal(dx__pmd_decompress(pr.client, two, i, 0, 100, sink_fn, &sb), 0);
      assert_int_equal(dx__pmd_decompress(pr.client, two + i, j - i, 0, 100, sink_fn, &sb), 0);
      assert_int_equal(dx__pmd_decompress(pr.client, two + j, sizeof two - j, 1, 100, sink_fn, &sb), 0);
      assert_int_equal(sb.len, 5);
      assert_memory_equal(sb.p, "Hello", 5);
      sink_free(&sb);
      pair_close(&pr);
    }
  free(msg);
}

static void test_empty_message(void **st) {
  (void)st;
  pair pr;
  pair_open(&pr, 0, 0, 15, 15, NULL);
  sinkbuf sb = {0};
  const uint8_t *out;
  size_t n;
  /* Compressing nothing gives a payload that inflates to nothing: an
   * empty stored block, also between messages that keep context, and
   * without creating zlib state. */
  for (int i = 0; i < 3; i++) {
    assert_int_equal(dx__pmd_compress(pr.server, NULL, 0, &out, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(out[0], 0x00);
    assert_true(dx__pmd_memory(pr.server) < 1024);
    assert_int_equal(inflate_fixed(pr.client, out, n, &sb), 0);
    assert_int_equal(sb.len, 0);
    assert_int_equal(sb.calls, 0);
  }
  send_one(pr.server, pr.client, (const uint8_t *)"Hello", 5, 0);
  send_one(pr.server, pr.client, NULL, 0, 0);
  send_one(pr.server, pr.client, (const uint8_t *)"Hello", 5, 0);
  send_one(pr.server, pr.client, NULL, 0, 0);
  send_one(pr.server, pr.client, NULL, 0, 0);
  /* An empty payload is the empty message too, in any number of empty
   * pieces. */
  assert_int_equal(inflate_fixed(pr.client, NULL, 0, &sb), 0);
  assert_int_equal(sb.len, 0);
  assert_int_equal(dx__pmd_decompress(pr.client, NULL, 0, 0, 0, sink_fn, &sb), 0);
  assert_int_equal(dx__pmd_decompress(pr.client, NULL, 0, 1, 0, sink_fn, &sb), 0);
  /* And the context is intact afterwards. */
  send_one(pr.server, pr.client, (const uint8_t *)"Hello", 5, 0);
  send_one(pr.server, pr.client, (const uint8_t *)"Hello", 5, 0);
  sink_free(&sb);
  pair_close(&pr);
}

/* A small payload that inflates to 10 MiB must stop at the limit: the
 * sink never sees more than `limit` bytes and nothing near 10 MiB is
 * ever allocated. */
static void test_bomb(void **st) {
  (void)st;
  size_t big = 10u << 20;
  uint8_t *zeros = calloc(big, 1);
  assert_non_null(zeros);
  pair pr;
  pair_open(&pr, 0, 0, 15, 15, NULL);
  size_t zlen;
  uint8_t *z = squeeze(pr.server, zeros, big, &zlen);
  print_message("10 MiB of zeros -> %zu bytes\n", zlen);
  assert_true(zlen < 16384);
  free(zeros);

  static const uint64_t limits[] = {0, 1, 1000, 16383, 16384, 16385, 1 << 20};
  for (size_t i = 0; i < sizeof limits / sizeof limits[0]; i++)
    for (uint64_t seed = 0; seed < 3; seed++) {
      pair rx;
      pair_open(&rx, 0, 0, 15, 15, NULL);
      sinkbuf sb = {0};
      int rc = inflate_pieces(rx.client, z, zlen, seed, limits[i], &sb);
      assert_int_equal(rc, DX_ETOOBIG);
      assert_true(sb.len <= limits[i]);
      /* Bounded work: the sink got all it was allowed, give or take one
       * chunk. */
      assert_true(sb.len + 16384 >= limits[i]);
      /* Nothing message-sized was allocated: zlib's state only. */
      assert_true(rx.ta.peak < 100000);
      /* The codec is usable again afterwards (a fresh context). */
      sink_reset(&sb);
      size_t hz;
      pair fresh;
      pair_open(&fresh, 0, 0, 15, 15, NULL);
      uint8_t *h = squeeze(fresh.server, (const uint8_t *)"Hello", 5, &hz);
      assert_int_equal(inflate_fixed(rx.client, h, hz, &sb), 0);
      assert_memory_equal(sb.p, "Hello", 5);
      free(h);
      pair_close(&fresh);
      sink_free(&sb);
      pair_close(&rx);
    }
  /* Exactly at the limit passes; one byte under fails. */
  pair rx;
  pair_open(&rx, 0, 0, 15, 15, NULL);
  sinkbuf sb = {0};
  uint64_t total = 0;
  /* Count without keeping: a limit-sized sink. */
  sb.cap = 0;
  assert_int_equal(inflate_pieces(rx.client, z, zlen, 0, big, &sb), 0);
  total = sb.len;
  assert_int_equal(total, big);
  sink_free(&sb);
  pair_close(&rx);
  pair_open(&rx, 0, 0, 15, 15, NULL);
  assert_int_equal(inflate_pieces(rx.client, z, zlen, 9, big - 1, &sb), DX_ETOOBIG);
  assert_true(sb.len <= big - 1);
  sink_free(&sb);
  pair_close(&rx);
  free(z);
  pair_close(&pr);
}

static void test_corrupt_input(void **st) {
  (void)st;
  static const struct {
    const char *name;
    const uint8_t *b;
    size_t n;
  } bad[] = {
      {"reserved block type 11", (const uint8_t *)"\x07\x00", 2},
      {"stored LEN/NLEN mismatch", (const uint8_t *)"\x00\x05\x00\x00\x00Hello", 10},
      {"distance too far back", (const uint8_t *)"\xf2\x00\x11\x00\x00", 5},
      {"cut inside a fixed block", (const uint8_t *)"\xf2\x48\xcd", 3},
      {"cut inside a stored block", (const uint8_t *)"\x00\xff\x00\x00\xff\x48", 6},
      {"cut inside a stored header", (const uint8_t *)"\x00\x05", 2},
      {"invalid dynamic header", (const uint8_t *)"\xfc\xff\xff\xff\xff", 5},
      {"garbage", (const uint8_t *)"\xff\xff\xff\xff\xff\xff\xff\xff", 8},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    print_message("%s\n", bad[i].name);
    for (int takeover = 0; takeover < 2; takeover++) {
      pair pr;
      pair_open(&pr, !takeover, !takeover, 15, 15, NULL);
      sinkbuf sb = {0};
      assert_int_equal(inflate_fixed(pr.client, bad[i].b, bad[i].n, &sb), DX_EPROTO);
      /* Byte by byte too. */
      int rc = 0;
      sink_reset(&sb);
      for (size_t k = 0; k < bad[i].n && rc == 0; k++)
        rc = dx__pmd_decompress(pr.client, bad[i].b + k, 1, 0, 1000, sink_fn, &sb);
      if (rc == 0)
        rc = dx__pmd_decompress(pr.client, NULL, 0, 1, 1000, sink_fn, &sb);
      assert_int_equal(rc, DX_EPROTO);
      /* Usable afterwards. */
      send_one(pr.server, pr.client, (const uint8_t *)"Hello", 5, 0);
      sink_free(&sb);
      pair_close(&pr);
    }
  }
}

static void test_sink_error(void **st) {
  (void)st;
  uint8_t *msg = text_bytes(50000, 3);
  pair pr;
  pair_open(&pr, 0, 0, 15, 15, NULL);
  size_t zlen;
  uint8_t *z = squeeze(pr.server, msg, 50000, &zlen);
  sinkbuf sb = {0};
  sb.fail_with = 4242;
  assert_int_equal(inflate_fixed(pr.client, z, zlen, &sb), 4242);
  assert_int_equal(sb.calls, 1);
  /* Pieces: the error comes back from whichever call met it. */
  sb.fail_with = DX_EUTF8;
  sink_reset(&sb);
  assert_int_equal(inflate_pieces(pr.client, z, zlen, 1, UINT64_MAX, &sb), DX_EUTF8);
  sink_free(&sb);
  free(z);
  free(msg);
  pair_close(&pr);
}

/* ------------------------------------------------------------------------ */
/* 8-bit windows                                                            */
/* ------------------------------------------------------------------------ */

/* Inflates raw deflate data with zlib directly, handing it little output
 * space per call so that back-references must come from the window. */
static int raw_inflate(int wbits, const uint8_t *z, size_t zlen, uint8_t *out,
                       size_t cap, size_t *got) {
  static const uint8_t tail[4] = {0, 0, 0xff, 0xff};
  uint8_t *in = malloc(zlen + 4);
  assert_non_null(in);
  memcpy(in, z, zlen);
  memcpy(in + zlen, tail, 4);
  z_stream s;
  memset(&s, 0, sizeof s);
  assert_int_equal(inflateInit2(&s, -wbits), Z_OK);
  s.next_in = in;
  s.avail_in = (uInt)(zlen + 4);
  *got = 0;
  int r;
  do {
    s.next_out = out + *got;
    s.avail_out = (uInt)(cap - *got < 16 ? cap - *got : 16);
    r = inflate(&s, Z_SYNC_FLUSH);
    *got = (size_t)(s.next_out - out);
  } while ((r == Z_OK) && (s.avail_in > 0 || s.avail_out == 0) && *got < cap);
  inflateEnd(&s);
  free(in);
  return r == Z_DATA_ERROR ? -1 : 0;
}

/* Random bytes, then the same bytes again `dist` later, three times. */
static uint8_t *repeats(size_t dist, size_t *n) {
  uint8_t *r = random_bytes(dist, dist);
  uint8_t *p = malloc(dist * 3);
  assert_non_null(p);
  for (int i = 0; i < 3; i++)
    memcpy(p + (size_t)i * dist, r, dist);
  free(r);
  *n = dist * 3;
  return p;
}

/* Compresses with zlib directly at window 15 (distances up to `dist`). */
static uint8_t *raw_deflate(const uint8_t *p, size_t n, size_t *zlen) {
  z_stream s;
  memset(&s, 0, sizeof s);
  assert_int_equal(deflateInit2(&s, 9, Z_DEFLATED, -15, 9, Z_DEFAULT_STRATEGY), Z_OK);
  uLong cap = deflateBound(&s, n) + 16;
  uint8_t *z = malloc(cap);
  assert_non_null(z);
  s.next_in = (Bytef *)(uintptr_t)p;
  s.avail_in = (uInt)n;
  s.next_out = z;
  s.avail_out = (uInt)cap;
  assert_int_equal(deflate(&s, Z_SYNC_FLUSH), Z_OK);
  *zlen = cap - s.avail_out - 4; /* without 00 00 ff ff */
  deflateEnd(&s);
  return z;
}

/* The facts behind the 8-bit decisions in deflate.c, and our behaviour. */
static void test_8_bit_windows(void **st) {
  (void)st;
  z_stream s;
  /* 1. zlib refuses a raw deflater with a 256-byte window outright... */
  memset(&s, 0, sizeof s);
  assert_int_equal(deflateInit2(&s, 6, Z_DEFLATED, -8, 8, Z_DEFAULT_STRATEGY),
                   Z_STREAM_ERROR);
  /* ...but takes a raw inflater with one. */
  memset(&s, 0, sizeof s);
  assert_int_equal(inflateInit2(&s, -8), Z_OK);
  inflateEnd(&s);

  /* 2. An 8-bit window really is 256 bytes: distance 256 inflates, 300
   * does not (the output is taken 16 bytes at a time, so references must
   * come from the window). A 9-bit window reads both: what an 8-bit peer
   * may send, a 9-bit inflater always reads. */
  uint8_t out[1024];
  size_t got, n, zlen;
  uint8_t *p = repeats(256, &n);
  uint8_t *z = raw_deflate(p, n, &zlen);
  assert_int_equal(raw_inflate(8, z, zlen, out, sizeof out, &got), 0);
  assert_int_equal(got, n);
  assert_memory_equal(out, p, n);
  assert_int_equal(raw_inflate(9, z, zlen, out, sizeof out, &got), 0);
  assert_int_equal(got, n);
  free(p);
  free(z);
  p = repeats(300, &n);
  z = raw_deflate(p, n, &zlen);
  assert_int_equal(raw_inflate(8, z, zlen, out, sizeof out, &got), -1);
  assert_int_equal(raw_inflate(9, z, zlen, out, sizeof out, &got), 0);
  assert_int_equal(got, n);
  assert_memory_equal(out, p, n);

  /* 3. Our inflater for a peer that agreed to 8 (negotiated as 9) reads
   * such data in pieces. */
  dx__pmd_config cfg = defaults();
  dx__pmd_params params;
  char resp[DX__PMD_HEADER_MAX];
  assert_int_equal(negotiate(&cfg, &params, resp, 1,
                             "permessage-deflate; client_max_window_bits=8"), 1);
  talloc ta = {0};
  dx__alloc a = talloc_of(&ta);
  dx__pmd *server = dx__pmd_new(&params, &cfg, 1, &a);
  assert_non_null(server);
  sinkbuf sb = {0};
  assert_int_equal(inflate_pieces(server, z, zlen, 4, UINT64_MAX, &sb), 0);
  assert_int_equal(sb.len, n);
  assert_memory_equal(sb.p, p, n);
  dx__pmd_free(server);
  free(p);
  free(z);

  /* 4. A client bound to 8 by the server sends stored blocks: readable by
   * a true 8-bit inflater, whatever distances the data would invite. */
  assert_int_equal(verify(&cfg, &params, resp, 1,
                          "permessage-deflate; client_max_window_bits=8"), 1);
  dx__pmd *client = dx__pmd_new(&params, &cfg, 0, &a);
  assert_non_null(client);
  for (size_t dist = 100; dist <= 300; dist += 50) {
    p = repeats(dist, &n);
    for (int msgno = 0; msgno < 2; msgno++) {
      z = squeeze(client, p, n, &zlen);
      assert_true(zlen >= n); /* stored: no compression */
      assert_int_equal(raw_inflate(8, z, zlen, out, sizeof out, &got), 0);
      assert_int_equal(got, n);
      assert_memory_equal(out, p, n);
      free(z);
    }
    free(p);
  }
  dx__pmd_free(client);
  sink_free(&sb);
  assert_int_equal(ta.live, 0);
}

/* ------------------------------------------------------------------------ */
/* Options, memory, allocation failure                                      */
/* ------------------------------------------------------------------------ */

static void test_level_and_mem_level(void **st) {
  (void)st;
  uint8_t *msg = text_bytes(100000, 9);
  size_t sizes[3];
  size_t mem[3];
  static const int8_t levels[] = {0, 1, 9};
  for (int i = 0; i < 3; i++) {
    dx__pmd_config cfg = defaults();
    cfg.level = levels[i];
    pair pr;
    pair_open(&pr, 0, 0, 15, 15, &cfg);
    sizes[i] = send_one(pr.server, pr.client, msg, 100000, 0);
    pair_close(&pr);
  }
  print_message("level 0/1/9: %zu %zu %zu bytes\n", sizes[0], sizes[1], sizes[2]);
  assert_true(sizes[0] >= 100000);
  assert_true(sizes[1] < sizes[0] / 2);
  assert_true(sizes[2] < sizes[1]);

  static const uint8_t mls[] = {1, 8, 9};
  for (int i = 0; i < 3; i++) {
    dx__pmd_config cfg = defaults();
    cfg.mem_level = mls[i];
    pair pr;
    pair_open(&pr, 0, 0, 15, 15, &cfg);
    send_one(pr.server, pr.client, msg, 100000, 0);
    mem[i] = dx__pmd_memory(pr.server);
    pair_close(&pr);
  }
  print_message("memLevel 1/8/9: %zu %zu %zu bytes\n", mem[0], mem[1], mem[2]);
  assert_true(mem[0] < mem[1]);
  assert_true(mem[1] < mem[2]);

  /* Out-of-range options fall back to the defaults rather than failing. */
  dx__pmd_config cfg = defaults();
  cfg.level = 42;
  cfg.mem_level = 0;
  pair pr;
  pair_open(&pr, 0, 0, 0, 99, &cfg);
  send_one(pr.server, pr.client, msg, 100000, 0);
  send_one(pr.client, pr.server, msg, 100000, 0);
  pair_close(&pr);
  free(msg);
}

/* zlib state is created on first use; dx__pmd_memory matches what the
 * allocator holds; and the table for the docs. */
static void test_memory(void **st) {
  (void)st;
  static const struct {
    const char *name;
    int snct, cnct, bits;
    uint8_t mem_level;
  } rows[] = {
      {"default (15/15, memLevel 8, takeover)", 0, 0, 15, 8},
      {"no context takeover both ways", 1, 1, 15, 8},
      {"window bits 9", 0, 0, 9, 8},
      {"memLevel 1", 0, 0, 15, 1},
  };
  uint8_t *msg = text_bytes(4096, 21);
  for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
    dx__pmd_config cfg = defaults();
    cfg.mem_level = rows[i].mem_level;
    pair pr;
    pair_open(&pr, rows[i].snct, rows[i].cnct, rows[i].bits, rows[i].bits, &cfg);
    size_t idle = dx__pmd_memory(pr.server);
    /* Lazy: a new codec holds itself and nothing else. */
    assert_true(idle < 1024);
    assert_int_equal(pr.ta.live, dx__pmd_memory(pr.server) + dx__pmd_memory(pr.client));
    assert_int_equal(pr.ta.blocks, 2);
    size_t before = pr.ta.peak;
    send_one(pr.server, pr.client, msg, 4096, 0);
    size_t peak_s2c = pr.ta.peak - before;
    send_one(pr.client, pr.server, msg, 4096, 0);
    size_t held = dx__pmd_memory(pr.server);
    assert_int_equal(pr.ta.live, held + dx__pmd_memory(pr.client));
    /* The same message compressed the same way: both sides hold alike. */
    assert_int_equal(held, dx__pmd_memory(pr.client));
    print_message("%-40s idle %5zu  after 1 msg each way %7zu  (peak while "
                  "sending %7zu)\n",
                  rows[i].name, idle, held, peak_s2c);
    if (rows[i].snct && rows[i].cnct)
      assert_true(held < idle + 8192); /* no zlib state between messages */
    else
      assert_true(held > 10000);
    pair_close(&pr);
  }
  /* A large message's output buffer is not kept at its worst-case size. */
  uint8_t *big = text_bytes(1 << 20, 22);
  pair pr;
  pair_open(&pr, 1, 1, 15, 15, NULL);
  size_t zlen;
  uint8_t *z = squeeze(pr.server, big, 1 << 20, &zlen);
  /* No zlib state (no takeover), and an output buffer near the compressed
   * size rather than the 1 MiB worst case. */
  print_message("1 MiB of text -> %zu bytes; held afterwards %zu\n", zlen,
                dx__pmd_memory(pr.server));
  assert_true(dx__pmd_memory(pr.server) < 1024 + zlen + 4096);
  assert_true(zlen < 400000);
  free(z);
  free(big);
  free(msg);
  pair_close(&pr);
}

/* Fails every allocation in turn during a scenario that touches every
 * allocating path; each run must end in DX_ENOMEM or success, never a
 * crash, and leave nothing allocated. What succeeds must still be right:
 * compressed messages are read by a healthy peer that keeps context, also
 * after a failed message (the compressor then starts afresh, which the
 * peer can still read). */
static void test_alloc_failures(void **st) {
  (void)st;
  uint8_t *msg = text_bytes(40000, 31);
  /* Payloads from a healthy peer: a normal message, and one whose final
   * block is followed by more (the restart path keeps the window). */
  pair src;
  pair_open(&src, 0, 0, 15, 15, NULL);
  size_t z1len;
  uint8_t *z1 = squeeze(src.server, msg, 40000, &z1len);
  pair_close(&src);
  static const uint8_t bfinal_then_more[] = {0xf3, 0x48, 0xcd, 0xc9, 0xc9,
                                             0x07, 0x00, 0x00};
  size_t runs = 0, injected_failures_seen = 0;
  for (size_t fail_at = 1;; fail_at++) {
    talloc ta = {0};
    ta.fail_at = fail_at;
    dx__alloc a = talloc_of(&ta);
    dx__pmd_params p = {0, 0, 15, 15};
    int fails = 0;
    for (int role = 0; role < 2; role++) {
      dx__pmd *d = dx__pmd_new(&p, NULL, role, &a);
      if (d == NULL) {
        fails++;
        continue;
      }
      dx__pmd *peer = dx__pmd_new(&p, NULL, !role, &dx__alloc_std);
      assert_non_null(peer);
      sinkbuf sb = {0};
      const uint8_t *out;
      size_t n;
      for (int k = 0; k < 3; k++) {
        size_t len = 40000 / (size_t)(k + 1);
        int rc = dx__pmd_compress(d, msg, len, &out, &n);
        assert_true(rc == 0 || rc == DX_ENOMEM);
        fails += rc != 0;
        if (rc == 0) {
          sink_reset(&sb);
          assert_int_equal(inflate_fixed(peer, out, n, &sb), 0);
          assert_int_equal(sb.len, len);
          assert_memory_equal(sb.p, msg, len);
        }
      }
      sink_reset(&sb);
      int rc = inflate_pieces(d, z1, z1len, 5, UINT64_MAX, &sb);
      assert_true(rc == 0 || rc == DX_ENOMEM);
      if (rc == 0) {
        assert_int_equal(sb.len, 40000);
        assert_memory_equal(sb.p, msg, 40000);
      }
      fails += rc != 0;
      for (int k = 0; k < 2; k++) {
        rc = inflate_fixed(d, bfinal_then_more, sizeof bfinal_then_more, &sb);
        /* After an earlier failure the context may be gone; the BFINAL
         * message needs none. */
        assert_true(rc == 0 || rc == DX_ENOMEM);
        if (rc == 0) {
          assert_int_equal(sb.len, 5);
          assert_memory_equal(sb.p, "Hello", 5);
        }
        fails += rc != 0;
      }
      sink_free(&sb);
      dx__pmd_free(peer);
      dx__pmd_free(d);
    }
    assert_int_equal(ta.live, 0);
    assert_int_equal(ta.blocks, 0);
    runs++;
    if (!ta.failed) {
      assert_int_equal(fails, 0);
      break;
    }
    /* The only allocation whose failure is not reported is shrinking the
     * output buffer, which keeps the larger one. */
    injected_failures_seen += fails > 0;
  }
  print_message("%zu allocation-failure runs, %zu reported DX_ENOMEM\n", runs,
                injected_failures_seen);
  assert_true(runs > 10);
  assert_true(injected_failures_seen + 6 >= runs - 1);
  free(z1);
  free(msg);
}

static void test_bad_arguments(void **st) {
  (void)st;
  dx__pmd_params p = {0, 0, 15, 15};
  talloc ta = {0};
  dx__alloc a = talloc_of(&ta);
  assert_null(dx__pmd_new(NULL, NULL, 1, &a));
  assert_null(dx__pmd_new(&p, NULL, 1, NULL));
  dx__pmd *d = dx__pmd_new(&p, NULL, 1, &a);
  assert_non_null(d);
  const uint8_t *out = (const uint8_t *)"x";
  size_t n = 7;
  assert_int_equal(dx__pmd_compress(d, NULL, 5, &out, &n), DX_EINVAL);
  assert_null(out);
  assert_int_equal(n, 0);
  assert_int_equal(dx__pmd_decompress(d, NULL, 5, 1, 10, sink_fn, NULL), DX_EINVAL);
  assert_int_equal(dx__pmd_decompress(d, (const uint8_t *)"x", 1, 1, 10, NULL, NULL),
                   DX_EINVAL);
  assert_int_equal(dx__pmd_memory(NULL), 0);
  dx__pmd_free(NULL);
  dx__pmd_free(d);
  assert_int_equal(ta.live, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_config_defaults),
      cmocka_unit_test(test_server_disabled),
      cmocka_unit_test(test_server_each_param),
      cmocka_unit_test(test_server_syntax_variants),
      cmocka_unit_test(test_server_offer_order),
      cmocka_unit_test(test_server_declines),
      cmocka_unit_test(test_server_8_bits),
      cmocka_unit_test(test_server_config_limits),
      cmocka_unit_test(test_client_offer),
      cmocka_unit_test(test_client_verify_accepts),
      cmocka_unit_test(test_client_verify_rejects),
      cmocka_unit_test(test_offer_negotiate_verify),
      cmocka_unit_test(test_rfc_examples),
      cmocka_unit_test(test_round_trip_matrix),
      cmocka_unit_test(test_context_takeover),
      cmocka_unit_test(test_takeover_binds_decompressor),
      cmocka_unit_test(test_split_points),
      cmocka_unit_test(test_empty_message),
      cmocka_unit_test(test_bomb),
      cmocka_unit_test(test_corrupt_input),
      cmocka_unit_test(test_sink_error),
      cmocka_unit_test(test_8_bit_windows),
      cmocka_unit_test(test_level_and_mem_level),
      cmocka_unit_test(test_memory),
      cmocka_unit_test(test_alloc_failures),
      cmocka_unit_test(test_bad_arguments),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
