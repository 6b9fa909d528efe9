/* Engine.IO v4 packets (src/eio/eio_packet.h): every packet type both ways
 * over WebSocket and polling, the protocol document's own examples as test
 * vectors, payloads of mixed text and binary, GET bodies split at the byte
 * budget, every decoder error (each refused before any packet is handed
 * out), base64 at every length, the open packet and the HTTP error bodies,
 * and allocation failures that must leave queue and buffer as they were. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fail_alloc.h"

#include "eio/eio_packet.h"

#define LIT(s) (const uint8_t *)(s), sizeof(s) - 1
/* The buffer holds exactly the literal. */
#define ASSERT_BUF(b, lit)                                \
  do {                                                    \
    assert_int_equal((b)->len, sizeof(lit) - 1);          \
    assert_memory_equal((b)->data, lit, sizeof(lit) - 1); \
  } while (0)


/* Decodes a whole body into up to 16 packets, copying each out (the
 * reader's pointers are into `body`). Returns the count or the error. */
typedef struct got {
  int type, binary;
  uint8_t data[512];
  size_t len;
} got;

static int decode_body(const uint8_t *text, size_t len, size_t max, got *out) {
  uint8_t *body = malloc(len + 1);
  memcpy(body, text, len);
  dx__eio_reader r;
  int err = dx__eio_payload_begin(&r, body, len, max);
  int n = 0;
  dx__eio_packet p;
  while (!err && n < 16 && dx__eio_payload_next(&r, &p) == 1) {
    out[n].type = p.type;
    out[n].binary = p.binary;
    assert_true(p.len <= sizeof out[n].data);
    memcpy(out[n].data, p.data, p.len);
    out[n].len = p.len;
    n++;
  }
  free(body);
  return err ? err : n;
}

static void assert_got(const got *g, int type, int binary, const void *data,
                       size_t len) {
  assert_int_equal(g->type, type);
  assert_int_equal(g->binary, binary);
  assert_int_equal(g->len, len);
  assert_memory_equal(g->data, data, len);
}

/* A queue and an output buffer, freed after the test whatever its end
 * (the allocator made to fail again succeeds). */
typedef struct fixture {
  dx__eio_queue q;
  dx__eio_buf out;
} fixture;

static int setup(void **state) {
  fixture *f = malloc(sizeof *f);
  dx__eio_queue_init(&f->q, &A);
  dx__eio_buf_init(&f->out, &A);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture *f = *state;
  fail_alloc_left = -1;
  dx__eio_queue_clear(&f->q);
  dx__eio_buf_free(&f->out);
  free(f);
  return 0;
}

/* ---- the document's examples ---------------------------------------- */

static void test_spec_payload_examples(void **state) {
  (void)state;
  got g[16];
  /* "Packet encoding / HTTP long-polling", first example. */
  assert_int_equal(decode_body(LIT("4hello\x1e" "2\x1e" "4world"), 1000, g), 3);
  assert_got(&g[0], DX__EIO_MESSAGE, 0, "hello", 5);
  assert_got(&g[1], DX__EIO_PING, 0, "", 0);
  assert_got(&g[2], DX__EIO_MESSAGE, 0, "world", 5);
  /* Binary: "bAQIDBA==" is <01 02 03 04>. */
  assert_int_equal(decode_body(LIT("4hello\x1e" "bAQIDBA=="), 1000, g), 2);
  assert_got(&g[0], DX__EIO_MESSAGE, 0, "hello", 5);
  assert_got(&g[1], DX__EIO_MESSAGE, 1, "\x01\x02\x03\x04", 4);
  /* The v4 changelog's: multi-byte text, and <01 02 03> as "bAQID". */
  assert_int_equal(decode_body(LIT("4hello\x1e" "4\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac"), 1000, g), 2);
  assert_got(&g[1], DX__EIO_MESSAGE, 0, "\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac", 9);
  assert_int_equal(decode_body(LIT("4hello\x1e" "bAQID"), 1000, g), 2);
  assert_got(&g[1], DX__EIO_MESSAGE, 1, "\x01\x02\x03", 3);
  /* The sample session's POST: two Socket.IO events. */
  assert_int_equal(decode_body(LIT("42[\"hello\"]\x1e" "42[\"world\"]"), 1000, g), 2);
  assert_got(&g[0], DX__EIO_MESSAGE, 0, "2[\"hello\"]", 10);
  assert_got(&g[1], DX__EIO_MESSAGE, 0, "2[\"world\"]", 10);
}

static void test_spec_payload_encoding(void **state) {
  fixture *f = *state;
  dx__eio_queue *q = &f->q;
  dx__eio_buf *out = &f->out;
  assert_int_equal(dx__eio_queue_push(q, DX__EIO_MESSAGE, 0, "hello", 5), 0);
  assert_int_equal(dx__eio_queue_push(q, DX__EIO_PING, 0, NULL, 0), 0);
  assert_int_equal(dx__eio_queue_push(q, DX__EIO_MESSAGE, 0, "world", 5), 0);
  assert_int_equal(dx__eio_payload_encode(q, 1000, out), 3);
  ASSERT_BUF(out, "4hello\x1e" "2\x1e" "4world");
  out->len = 0;
  assert_int_equal(dx__eio_queue_push(q, DX__EIO_MESSAGE, 0, "hello", 5), 0);
  assert_int_equal(dx__eio_queue_push(q, DX__EIO_MESSAGE, 1, "\x01\x02\x03\x04", 4), 0);
  assert_int_equal(dx__eio_payload_encode(q, 1000, out), 2);
  ASSERT_BUF(out, "4hello\x1e" "bAQIDBA==");
  out->len = 0;
  assert_int_equal(dx__eio_queue_push(q, DX__EIO_MESSAGE, 1, "\x01\x02\x03", 3), 0);
  assert_int_equal(dx__eio_payload_encode(q, 1000, out), 1);
  assert_memory_equal(out->data, "bAQID", 5);
  /* The upgrade's probe and noop, and the empty queue. */
  out->len = 0;
  assert_int_equal(dx__eio_queue_push(q, DX__EIO_NOOP, 0, NULL, 0), 0);
  assert_int_equal(dx__eio_payload_encode(q, 1000, out), 1);
  assert_int_equal(out->len, 1);
  assert_int_equal(out->data[0], '6');
  assert_int_equal(dx__eio_payload_encode(q, 1000, out), 0);
  assert_int_equal(out->len, 1);
}

/* ---- every type, both transports ------------------------------------- */

static void test_every_type_round_trip(void **state) {
  (void)state;
  dx__eio_buf out;
  dx__eio_buf_init(&out, &A);
  for (int type = DX__EIO_OPEN; type <= DX__EIO_NOOP; type++) {
    for (int with_data = 0; with_data < 2; with_data++) {
      const char *data = with_data ? "probe \xc3\xa9" : "";
      size_t len = strlen(data);
      /* WebSocket: a text frame "<type><data>". */
      out.len = 0;
      dx__eio_packet p = {(uint8_t)type, 0, (const uint8_t *)data, len};
      assert_int_equal(dx__eio_encode_ws(&out, &p), 0);
      assert_int_equal(out.len, len + 1);
      assert_int_equal(out.data[0], '0' + type);
      dx__eio_packet d;
      assert_int_equal(dx__eio_decode_ws(out.data, out.len, 0, &d), 0);
      assert_int_equal(d.type, type);
      assert_int_equal(d.binary, 0);
      assert_int_equal(d.len, len);
      assert_memory_equal(d.data, data, len);
      /* Polling: the same as one record. */
      dx__eio_queue q;
      dx__eio_queue_init(&q, &A);
      assert_int_equal(dx__eio_queue_push(&q, type, 0, data, len), 0);
      out.len = 0;
      assert_int_equal(dx__eio_payload_encode(&q, 100, &out), 1);
      assert_int_equal(out.len, dx__eio_record_size(&p));
      got g[16];
      assert_int_equal(decode_body(out.data, out.len, 100, g), 1);
      assert_got(&g[0], type, 0, data, len);
    }
  }
  /* A binary message: a binary frame of its bytes, and "b" + base64. */
  static const uint8_t bin[] = {0, 0xff, 0x1e, '4', 0x80};
  dx__eio_packet p = {DX__EIO_MESSAGE, 1, bin, sizeof bin};
  out.len = 0;
  assert_int_equal(dx__eio_encode_ws(&out, &p), 0);
  assert_int_equal(out.len, sizeof bin);
  assert_memory_equal(out.data, bin, sizeof bin);
  dx__eio_packet d;
  assert_int_equal(dx__eio_decode_ws(out.data, out.len, 1, &d), 0);
  assert_int_equal(d.type, DX__EIO_MESSAGE);
  assert_int_equal(d.binary, 1);
  assert_int_equal(d.len, sizeof bin);
  /* An empty binary frame is an empty binary message. */
  assert_int_equal(dx__eio_decode_ws(NULL, 0, 1, &d), 0);
  assert_int_equal(d.len, 0);
  assert_int_equal(d.binary, 1);
  /* Only a message may be binary; types stop at 6. */
  dx__eio_packet bad = {DX__EIO_PING, 1, bin, 1};
  assert_int_equal(dx__eio_encode_ws(&out, &bad), DX_EINVAL);
  bad = (dx__eio_packet){7, 0, bin, 1};
  assert_int_equal(dx__eio_encode_ws(&out, &bad), DX_EINVAL);
  dx__eio_buf_free(&out);
}

static void test_ws_decode_errors(void **state) {
  (void)state;
  dx__eio_packet d;
  assert_int_equal(dx__eio_decode_ws(LIT(""), 0, &d), DX__EIO_EEMPTY);
  assert_int_equal(dx__eio_decode_ws(LIT("7"), 0, &d), DX__EIO_ETYPE);
  assert_int_equal(dx__eio_decode_ws(LIT("x4"), 0, &d), DX__EIO_ETYPE);
  /* v4 clients send binary frames over WebSocket, never base64. */
  assert_int_equal(dx__eio_decode_ws(LIT("bAQID"), 0, &d), DX__EIO_ETYPE);
  assert_int_equal(dx__eio_decode_ws(LIT("2probe"), 0, &d), 0);
  assert_int_equal(d.type, DX__EIO_PING);
  assert_int_equal(d.len, 5);
}

/* ---- the polling decoder's errors ------------------------------------- */

static void test_payload_errors(void **state) {
  (void)state;
  got g[16];
  /* Empty body, empty records anywhere. */
  assert_int_equal(decode_body(LIT(""), 100, g), DX__EIO_EEMPTY);
  assert_int_equal(decode_body(LIT("\x1e"), 100, g), DX__EIO_EEMPTY);
  assert_int_equal(decode_body(LIT("\x1e" "4a"), 100, g), DX__EIO_EEMPTY);
  assert_int_equal(decode_body(LIT("4a\x1e"), 100, g), DX__EIO_EEMPTY);
  assert_int_equal(decode_body(LIT("4a\x1e\x1e" "4b"), 100, g), DX__EIO_EEMPTY);
  /* Unknown types. */
  assert_int_equal(decode_body(LIT("7"), 100, g), DX__EIO_ETYPE);
  assert_int_equal(decode_body(LIT("4a\x1e" "9b"), 100, g), DX__EIO_ETYPE);
  assert_int_equal(decode_body(LIT("B"), 100, g), DX__EIO_ETYPE);
  assert_int_equal(decode_body(LIT(" 4"), 100, g), DX__EIO_ETYPE);
  /* Bad base64: length, alphabet, padding, pad bits, URL alphabet,
   * whitespace. */
  assert_int_equal(decode_body(LIT("bAQID"), 100, g), 1); /* 3 bytes */
  assert_int_equal(decode_body(LIT("bAQI="), 100, g), 1);  /* 2 bytes */
  assert_got(&g[0], DX__EIO_MESSAGE, 1, "\x01\x02", 2);
  assert_int_equal(decode_body(LIT("bAQ=="), 100, g), 1);  /* 1 byte */
  assert_got(&g[0], DX__EIO_MESSAGE, 1, "\x01", 1);
  assert_int_equal(decode_body(LIT("bAQI"), 100, g), DX__EIO_EBASE64); /* unpadded */
  assert_int_equal(decode_body(LIT("bAQI=="), 100, g), DX__EIO_EBASE64);
  assert_int_equal(decode_body(LIT("b"), 100, g), 1);    /* empty binary */
  assert_int_equal(g[0].len, 0);
  assert_int_equal(g[0].binary, 1);
  static const char *const bad64[] = {
      "bAQIDB", "bAQIDBA", "bAQIDBA=", "bAQ=", "bA===", "b====", "bAQ=DBA==",
      "bA=ID", "bAQJ=", "bAR==", "bAQ-_", "bAQ I", "bAQI\n", "b=AAA",
      "bAQIDBA==A"};
  for (size_t i = 0; i < sizeof bad64 / sizeof *bad64; i++)
    assert_int_equal(decode_body((const uint8_t *)bad64[i], strlen(bad64[i]), 100, g),
                     DX__EIO_EBASE64);
  /* Over maxPayload: the bound is on the body's bytes, inclusive. */
  assert_int_equal(decode_body(LIT("4hello"), 6, g), 1);
  assert_int_equal(decode_body(LIT("4hello"), 5, g), DX_ETOOBIG);
  /* Not UTF-8. */
  assert_int_equal(decode_body(LIT("4\xc3"), 100, g), DX_EUTF8);
  assert_int_equal(decode_body(LIT("4a\x1e" "4\xed\xa0\x80"), 100, g), DX_EUTF8);
}

/* A body bad at its end hands out nothing, not its first packets. */
static void test_payload_all_or_nothing(void **state) {
  (void)state;
  uint8_t body[] = "4first\x1e" "bAQIDBA==\x1e" "4third\x1e" "8";
  dx__eio_reader r;
  assert_int_equal(dx__eio_payload_begin(&r, body, sizeof body - 1, 100),
                   DX__EIO_ETYPE);
  dx__eio_packet p;
  assert_int_equal(dx__eio_payload_next(&r, &p), 0);
  /* And the body was not decoded in place by the check. */
  assert_memory_equal(body, "4first\x1e" "bAQIDBA==", 16);
}

/* ---- base64 at every length ------------------------------------------ */

static void test_base64_every_length(void **state) {
  fixture *f = *state;
  dx__eio_queue *q = &f->q;
  dx__eio_buf *out = &f->out;
  uint8_t bytes[300];
  for (size_t i = 0; i < sizeof bytes; i++) bytes[i] = (uint8_t)(i * 151 + 7);
  for (size_t n = 0; n <= sizeof bytes; n++) {
    out->len = 0;
    assert_int_equal(dx__eio_queue_push(q, DX__EIO_MESSAGE, 1, bytes, n), 0);
    assert_int_equal(dx__eio_queue_push(q, DX__EIO_MESSAGE, 0, "x", 1), 0);
    assert_int_equal(dx__eio_payload_encode(q, SIZE_MAX, out), 2);
    assert_int_equal(out->len, 1 + (n + 2) / 3 * 4 + 1 + 2);
    got g[16];
    assert_int_equal(decode_body(out->data, out->len, out->len, g), 2);
    assert_got(&g[0], DX__EIO_MESSAGE, 1, bytes, n);
    assert_got(&g[1], DX__EIO_MESSAGE, 0, "x", 1);
  }
}

/* ---- GET bodies within the budget ------------------------------------- */

static void test_payload_budget(void **state) {
  fixture *f = *state;
  dx__eio_queue *q = &f->q;
  dx__eio_buf *out = &f->out;
  /* Records of 6, 9 ("b" + 8) and 6 bytes; separators 1 each. */
  dx__eio_queue_push(q, DX__EIO_MESSAGE, 0, "hello", 5);
  dx__eio_queue_push(q, DX__EIO_MESSAGE, 1, "\x01\x02\x03\x04", 4);
  dx__eio_queue_push(q, DX__EIO_MESSAGE, 0, "world", 5);
  assert_int_equal(q->count, 3);
  /* 14 bytes of data, and each packet's node: what a bound must count, or
   * packets of no data would cost nothing. */
  assert_true(q->bytes > 14 + 3 * sizeof(void *));
  /* 6 + 1 + 9 = 16 fits exactly in 16; the third would need 23. */
  assert_int_equal(dx__eio_payload_encode(q, 16, out), 2);
  ASSERT_BUF(out, "4hello\x1e" "bAQIDBA==");
  assert_int_equal(q->count, 1);
  /* The rest waits for the next GET. */
  out->len = 0;
  assert_int_equal(dx__eio_payload_encode(q, 16, out), 1);
  assert_memory_equal(out->data, "4world", 6);
  assert_int_equal(q->count, 0);
  assert_int_equal(q->bytes, 0);
  /* One byte short of two packets: one goes. */
  dx__eio_queue_push(q, DX__EIO_MESSAGE, 0, "hello", 5);
  dx__eio_queue_push(q, DX__EIO_MESSAGE, 0, "world", 5);
  out->len = 0;
  assert_int_equal(dx__eio_payload_encode(q, 12, out), 1);
  assert_int_equal(out->len, 6);
  /* A packet larger than the budget still goes, alone. */
  dx__eio_queue_clear(q);
  dx__eio_queue_push(q, DX__EIO_MESSAGE, 0, "0123456789", 10);
  dx__eio_queue_push(q, DX__EIO_MESSAGE, 0, "a", 1);
  out->len = 0;
  assert_int_equal(dx__eio_payload_encode(q, 4, out), 1);
  assert_int_equal(out->len, 11);
  out->len = 0;
  assert_int_equal(dx__eio_payload_encode(q, 0, out), 1);
  assert_memory_equal(out->data, "4a", 2);
  /* Many small packets: each body within budget, all in order. */
  char data[16];
  for (int i = 0; i < 100; i++) {
    snprintf(data, sizeof data, "%03d", i);
    dx__eio_queue_push(q, DX__EIO_MESSAGE, 0, data, 3);
  }
  int seen = 0;
  while (q->count) {
    out->len = 0;
    int n = dx__eio_payload_encode(q, 50, out);
    assert_true(n > 0);
    assert_true(out->len <= 50);
    got g[16];
    assert_int_equal(decode_body(out->data, out->len, 50, g), n);
    for (int i = 0; i < n; i++) {
      snprintf(data, sizeof data, "%03d", seen++);
      assert_got(&g[i], DX__EIO_MESSAGE, 0, data, 3);
    }
  }
  assert_int_equal(seen, 100);
}

static void test_queue_rules_and_no_memory(void **state) {
  fixture *f = *state;
  dx__eio_queue *q = &f->q;
  dx__eio_buf *out = &f->out;
  assert_int_equal(dx__eio_queue_push(q, 7, 0, "a", 1), DX_EINVAL);
  assert_int_equal(dx__eio_queue_push(q, -1, 0, "a", 1), DX_EINVAL);
  assert_int_equal(dx__eio_queue_push(q, DX__EIO_PONG, 1, "a", 1), DX_EINVAL);
  assert_int_equal(dx__eio_queue_push(q, DX__EIO_MESSAGE, 0, "\xff", 1), DX_EUTF8);
  assert_int_equal(dx__eio_queue_push(q, DX__EIO_MESSAGE, 0, NULL, 3), DX_EINVAL);
  fail_alloc_left = 0;
  assert_int_equal(dx__eio_queue_push(q, DX__EIO_MESSAGE, 0, "a", 1), DX_ENOMEM);
  fail_alloc_left = -1;
  assert_int_equal(q->count, 0);
  dx__eio_packet p;
  assert_int_equal(dx__eio_queue_front(q, &p), 0);
  dx__eio_queue_pop(q); /* harmless when empty */

  dx__eio_queue_push(q, DX__EIO_MESSAGE, 0, "hello", 5);
  dx__eio_queue_push(q, DX__EIO_PING, 0, NULL, 0);
  assert_int_equal(dx__eio_queue_front(q, &p), 1);
  assert_int_equal(p.type, DX__EIO_MESSAGE);
  assert_memory_equal(p.data, "hello", 5);
  /* No memory for the body: queue and buffer as they were. */
  dx__eio_buf_append(out, "kept", 4);
  out->cap = out->len; /* so the body must allocate */
  fail_alloc_left = 0;
  assert_int_equal(dx__eio_payload_encode(q, 1 << 20, out), DX_ENOMEM);
  fail_alloc_left = -1;
  assert_int_equal(q->count, 2);
  assert_int_equal(out->len, 4);
  assert_int_equal(dx__eio_payload_encode(q, 1 << 20, out), 2);
  assert_memory_equal(out->data, "kept4hello\x1e" "2", 12);
}

/* ---- the handshake and HTTP errors ------------------------------------- */

static void test_open_packet(void **state) {
  (void)state;
  dx__eio_buf out;
  dx__eio_buf_init(&out, &A);
  /* The document's example, byte for byte as the reference writes it. */
  dx__eio_open o = {"lv_VI97HAXpY6yYWAAAC", 1, 25000, 20000, 1000000};
  assert_int_equal(dx__eio_open_json(&out, &o), 0);
  ASSERT_BUF(&out,
             "{\"sid\":\"lv_VI97HAXpY6yYWAAAC\",\"upgrades\":[\"websocket\"],"
             "\"pingInterval\":25000,\"pingTimeout\":20000,\"maxPayload\":1000000}");
  /* A WebSocket session has nothing to upgrade to; numbers at their ends. */
  out.len = 0;
  o = (dx__eio_open){"a\"b\\", 0, UINT32_MAX, 0, 9007199254740991ull};
  assert_int_equal(dx__eio_open_json(&out, &o), 0);
  ASSERT_BUF(&out,
             "{\"sid\":\"a\\\"b\\\\\",\"upgrades\":[],\"pingInterval\":4294967295,"
             "\"pingTimeout\":0,\"maxPayload\":9007199254740991}");
  out.len = 0;
  o.max_payload++;
  assert_int_equal(dx__eio_open_json(&out, &o), DX_EINVAL);
  o = (dx__eio_open){"", 1, 1, 1, 1};
  assert_int_equal(dx__eio_open_json(&out, &o), DX_EINVAL);
  o.sid = NULL;
  assert_int_equal(dx__eio_open_json(&out, &o), DX_EINVAL);
  o.sid = "\xc0\xaf";
  assert_int_equal(dx__eio_open_json(&out, &o), DX_EINVAL);
  assert_int_equal(out.len, 0);
  /* No memory part way: out as it was. */
  dx__eio_buf_free(&out);
  o = (dx__eio_open){"lv_VI97HAXpY6yYWAAAC", 1, 25000, 20000, 1000000};
  dx__eio_buf_append(&out, "x", 1);
  out.cap = out.len; /* force the next append to allocate */
  fail_alloc_left = 0;
  assert_int_equal(dx__eio_open_json(&out, &o), DX_ENOMEM);
  fail_alloc_left = -1;
  assert_int_equal(out.len, 1);
  dx__eio_buf_free(&out);
}

static void test_http_errors(void **state) {
  (void)state;
  static const struct {
    int code, status;
    const char *message;
  } table[] = {{0, 400, "Transport unknown"},
               {1, 400, "Session ID unknown"},
               {2, 400, "Bad handshake method"},
               {3, 400, "Bad request"},
               {4, 403, "Forbidden"},
               {5, 400, "Unsupported protocol version"}};
  dx__eio_buf out;
  dx__eio_buf_init(&out, &A);
  for (size_t i = 0; i < sizeof table / sizeof *table; i++) {
    const char *m = NULL;
    assert_int_equal(dx__eio_http_error(table[i].code, &m), table[i].status);
    assert_string_equal(m, table[i].message);
    assert_int_equal(dx__eio_http_error(table[i].code, NULL), table[i].status);
    char want[128];
    snprintf(want, sizeof want, "{\"code\":%d,\"message\":\"%s\"}", table[i].code,
             table[i].message);
    out.len = 0;
    assert_int_equal(dx__eio_http_error_body(&out, table[i].code, NULL), 0);
    assert_int_equal(out.len, strlen(want));
    assert_memory_equal(out.data, want, out.len);
  }
  assert_int_equal(dx__eio_http_error(-1, NULL), DX_EINVAL);
  assert_int_equal(dx__eio_http_error(6, NULL), DX_EINVAL);
  assert_int_equal(dx__eio_http_error_body(&out, 6, NULL), DX_EINVAL);
  /* An allowRequest hook's own message, escaped. */
  out.len = 0;
  assert_int_equal(dx__eio_http_error_body(&out, 4, "no \"token\"\n\x01"), 0);
  ASSERT_BUF(&out, "{\"code\":4,\"message\":\"no \\\"token\\\"\\n\\u0001\"}");
  assert_int_equal(dx__eio_http_error_body(&out, 4, "\xff"), DX_EINVAL);
  dx__eio_buf_free(&out);
}

static void test_strerror(void **state) {
  (void)state;
  assert_string_equal(dx__eio_strerror(DX__EIO_EBASE64),
                      "bad base64 in a binary Engine.IO packet");
  assert_string_equal(dx__eio_strerror(DX_ETOOBIG), "payload exceeds maxPayload");
  assert_string_equal(dx__eio_strerror(12345), "unknown error");
  /* Every code distinct and named. */
  static const int codes[] = {DX__EIO_EEMPTY, DX__EIO_ETYPE, DX__EIO_EBASE64,
                              DX_ETOOBIG, DX_EUTF8};
  for (size_t i = 0; i < sizeof codes / sizeof *codes; i++) {
    assert_string_not_equal(dx__eio_strerror(codes[i]), "unknown error");
    for (size_t j = 0; j < i; j++) assert_int_not_equal(codes[i], codes[j]);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_spec_payload_examples),
      cmocka_unit_test_setup_teardown(test_spec_payload_encoding, setup, teardown),
      cmocka_unit_test(test_every_type_round_trip),
      cmocka_unit_test(test_ws_decode_errors),
      cmocka_unit_test(test_payload_errors),
      cmocka_unit_test(test_payload_all_or_nothing),
      cmocka_unit_test_setup_teardown(test_base64_every_length, setup, teardown),
      cmocka_unit_test_setup_teardown(test_payload_budget, setup, teardown),
      cmocka_unit_test_setup_teardown(test_queue_rules_and_no_memory, setup, teardown),
      cmocka_unit_test(test_open_packet),
      cmocka_unit_test(test_http_errors),
      cmocka_unit_test(test_strerror),
  };
  return cmocka_run_group_tests_name("eio_packet", tests, NULL, NULL);
}
