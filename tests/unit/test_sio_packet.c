/* Socket.IO v5 packets (src/eio/sio_packet.h): the protocol document's
 * examples and sample session decoded and encoded back byte for byte,
 * every type both ways, binaries at depth, every decoder error, the
 * attachment rules (range, repeats, count, order), ids and numbers at and
 * past their bounds, invalid UTF-8 and JSON, what the encoder refuses, and
 * failed allocations at every step. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fail_alloc.h"

#include "eio/sio_packet.h"


typedef struct fixture {
  dx__sio_decoder d;
  dx__sio_encoded e;
  dx__sio_packet p;
} fixture;

static int setup(void **state) {
  fixture *f = calloc(1, sizeof *f);
  dx__sio_decoder_init(&f->d, &A, DX__SIO_MAX_ATTACHMENTS);
  dx__sio_encoded_init(&f->e, &A);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture *f = *state;
  fail_alloc_left = -1;
  dx__sio_packet_release(&f->p);
  dx__sio_decoder_free(&f->d);
  dx__sio_encoded_free(&f->e);
  free(f);
  return 0;
}

/* Decodes a NUL-terminated text into f->p (released first). */
static int text(fixture *f, const char *s) {
  dx__sio_packet_release(&f->p);
  return dx__sio_decode_text(&f->d, s, strlen(s), &f->p);
}

static int binary(fixture *f, const void *b, size_t n) {
  dx__sio_packet_release(&f->p);
  return dx__sio_decode_binary(&f->d, b, n, &f->p);
}

static json_t *J(const char *s) {
  json_error_t err;
  json_t *v = json_loads(s, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
  assert_non_null(v);
  return v;
}

/* f->p's data equals the JSON text (binaries excluded). */
static void assert_data(const fixture *f, const char *want) {
  if (!want) {
    assert_null(f->p.data);
    return;
  }
  json_t *w = J(want);
  assert_true(json_equal(f->p.data, w));
  json_decref(w);
}

static void assert_packet(const fixture *f, int type, const char *nsp,
                          int64_t id, const char *data) {
  assert_int_equal(f->p.type, type);
  assert_int_equal(f->p.nsp_len, strlen(nsp));
  assert_memory_equal(f->p.nsp, nsp, f->p.nsp_len);
  assert_int_equal(f->p.id, id);
  assert_data(f, data);
}

/* Encodes f->p back; its text must be `want`. */
static void assert_encodes_to(fixture *f, const char *want) {
  assert_int_equal(dx__sio_encode(&f->p, DX__SIO_MAX_ATTACHMENTS, &f->e), 0);
  assert_int_equal(f->e.text.len, strlen(want));
  assert_memory_equal(f->e.text.data, want, f->e.text.len);
}

/* The binary at v (NULL: fail) has exactly these bytes. */
static void assert_binary(const json_t *v, const void *bytes, size_t n) {
  const uint8_t *p;
  size_t len;
  assert_true(dx__sio_binary_get(v, &p, &len));
  assert_int_equal(len, n);
  assert_memory_equal(p, bytes, n);
}

/* ---- the document's examples ----------------------------------------- */

static void test_spec_examples(void **state) {
  fixture *f = *state;
  static const struct {
    const char *wire;
    int type;
    const char *nsp;
    int64_t id;
    const char *data;
  } plain[] = {
      {"0", DX__SIO_CONNECT, "/", -1, NULL},
      {"0/admin,{\"sid\":\"oSO0OpakMV_3jnilAAAA\"}", DX__SIO_CONNECT, "/admin", -1,
       "{\"sid\":\"oSO0OpakMV_3jnilAAAA\"}"},
      {"4{\"message\":\"Not authorized\"}", DX__SIO_CONNECT_ERROR, "/", -1,
       "{\"message\":\"Not authorized\"}"},
      {"2[\"foo\"]", DX__SIO_EVENT, "/", -1, "[\"foo\"]"},
      {"2/admin,[\"bar\"]", DX__SIO_EVENT, "/admin", -1, "[\"bar\"]"},
      {"212[\"foo\"]", DX__SIO_EVENT, "/", 12, "[\"foo\"]"},
      {"3/admin,13[\"bar\"]", DX__SIO_ACK, "/admin", 13, "[\"bar\"]"},
      {"1", DX__SIO_DISCONNECT, "/", -1, NULL},
      {"1/admin,", DX__SIO_DISCONNECT, "/admin", -1, NULL},
      /* The sample session's, less their Engine.IO "4". */
      {"0{\"sid\":\"wZX3oN0bSVIhsaknAAAI\"}", DX__SIO_CONNECT, "/", -1,
       "{\"sid\":\"wZX3oN0bSVIhsaknAAAI\"}"},
      {"2[\"hey\",\"Jude\"]", DX__SIO_EVENT, "/", -1, "[\"hey\",\"Jude\"]"},
      {"2[\"hello\"]", DX__SIO_EVENT, "/", -1, "[\"hello\"]"},
      {"0/admin,", DX__SIO_CONNECT, "/admin", -1, NULL},
      {"0/admin,{\"sid\":\"-G5j-67EZFp-q59rADQM\"}", DX__SIO_CONNECT, "/admin", -1,
       "{\"sid\":\"-G5j-67EZFp-q59rADQM\"}"},
      {"2/admin,1[\"tellme\"]", DX__SIO_EVENT, "/admin", 1, "[\"tellme\"]"},
  };
  for (size_t i = 0; i < sizeof plain / sizeof *plain; i++) {
    assert_int_equal(text(f, plain[i].wire), 1);
    assert_packet(f, plain[i].type, plain[i].nsp, plain[i].id, plain[i].data);
    assert_int_equal(f->p.attachments, 0);
    assert_encodes_to(f, plain[i].wire);
    assert_int_equal(f->e.n_att, 0);
  }

  /* Binary: the header, then the buffers, each where its placeholder was. */
  assert_int_equal(text(f, "51-[\"baz\",{\"_placeholder\":true,\"num\":0}]"), 0);
  assert_int_equal(dx__sio_decoder_awaiting(&f->d), 1);
  assert_int_equal(binary(f, "\x01\x02\x03\x04", 4), 1);
  assert_int_equal(f->p.type, DX__SIO_EVENT);
  assert_int_equal(f->p.attachments, 1);
  assert_binary(json_array_get(f->p.data, 1), "\x01\x02\x03\x04", 4);
  assert_encodes_to(f, "51-[\"baz\",{\"_placeholder\":true,\"num\":0}]");
  assert_int_equal(f->e.n_att, 1);
  assert_int_equal(f->e.att[0].n, 4);
  assert_memory_equal(f->e.att[0].p, "\x01\x02\x03\x04", 4);

  static const char two[] =
      "52-/admin,[\"baz\",{\"_placeholder\":true,\"num\":0},"
      "{\"_placeholder\":true,\"num\":1}]";
  assert_int_equal(text(f, two), 0);
  assert_int_equal(binary(f, "\x01\x02", 2), 0);
  assert_int_equal(dx__sio_decoder_awaiting(&f->d), 1);
  assert_int_equal(binary(f, "\x03\x04", 2), 1);
  assert_int_equal(f->p.nsp_len, 6);
  assert_memory_equal(f->p.nsp, "/admin", 6);
  assert_binary(json_array_get(f->p.data, 1), "\x01\x02", 2);
  assert_binary(json_array_get(f->p.data, 2), "\x03\x04", 2);
  assert_encodes_to(f, two);
  assert_int_equal(f->e.n_att, 2);
  assert_memory_equal(f->e.att[1].p, "\x03\x04", 2);

  static const char ack[] = "61-15[\"bar\",{\"_placeholder\":true,\"num\":0}]";
  assert_int_equal(text(f, ack), 0);
  assert_int_equal(binary(f, "\x01\x02\x03\x04", 4), 1);
  assert_int_equal(f->p.type, DX__SIO_ACK);
  assert_int_equal(f->p.id, 15);
  assert_encodes_to(f, ack);
  /* The sample session's BINARY_ACK. */
  static const char ack2[] = "61-/admin,1[{\"_placeholder\":true,\"num\":0}]";
  assert_int_equal(text(f, ack2), 0);
  assert_int_equal(binary(f, "", 0), 1);
  assert_binary(json_array_get(f->p.data, 0), "", 0);
  assert_encodes_to(f, ack2);
}

/* ---- every type, built and read back ---------------------------------- */

static void test_every_type_round_trip(void **state) {
  fixture *f = *state;
  static const struct {
    int type;
    int64_t id;
    const char *data;
  } cases[] = {
      {DX__SIO_CONNECT, -1, NULL},
      {DX__SIO_CONNECT, -1, "{\"token\":\"123\",\"n\":[1,2.5,true,null]}"},
      {DX__SIO_DISCONNECT, -1, NULL},
      {DX__SIO_EVENT, -1, "[\"chat\",\"h\\u00e9\\n\\u0000\",{\"a\":{}}]"},
      {DX__SIO_EVENT, 0, "[\"chat\"]"},
      {DX__SIO_EVENT, DX__SIO_MAX_ID, "[42,\"numeric name\"]"},
      {DX__SIO_ACK, 7, "[]"},
      {DX__SIO_ACK, 0, "[\"ok\",-1.5e-7]"},
      {DX__SIO_CONNECT_ERROR, -1, "{\"message\":\"no\",\"data\":{\"x\":1}}"},
      {DX__SIO_CONNECT_ERROR, -1, "\"a plain string\""},
  };
  static const char *const nsps[] = {"/", "/admin", "/\xc3\xa9/x?y=1"};
  for (size_t n = 0; n < 3; n++) {
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
      dx__sio_packet p = {cases[i].type, nsps[n], strlen(nsps[n]), cases[i].id,
                          cases[i].data ? J(cases[i].data) : NULL, 0};
      assert_int_equal(dx__sio_encode(&p, 0, &f->e), 0);
      assert_int_equal(f->e.text.data[0], '0' + cases[i].type);
      assert_int_equal(dx__sio_decode_text(&f->d, (const char *)f->e.text.data,
                                           f->e.text.len, &f->p),
                       1);
      assert_packet(f, cases[i].type, nsps[n], cases[i].id, cases[i].data);
      dx__sio_packet_release(&f->p);
      dx__sio_packet_release(&p);
    }
  }
  /* A NULL namespace is "/"; BINARY_EVENT without binaries goes out as a
   * plain EVENT (the reference refuses "50-"). */
  dx__sio_packet p = {DX__SIO_BINARY_EVENT, NULL, 0, -1, J("[\"x\"]"), 0};
  assert_int_equal(dx__sio_encode(&p, 0, &f->e), 0);
  assert_int_equal(f->e.text.len, 6);
  assert_memory_equal(f->e.text.data, "2[\"x\"]", 6);
  dx__sio_packet_release(&p);
}

/* ---- binaries at depth ------------------------------------------------- */

static void test_placeholders_at_depth(void **state) {
  fixture *f = *state;
  /* Arrays in objects in arrays, the numbers out of order on the wire. */
  static const char wire[] =
      "53-/x,9[\"ev\",{\"a\":[1,{\"b\":[{\"_placeholder\":true,\"num\":2}]}],"
      "\"c\":{\"_placeholder\":true,\"num\":0}},[[{\"_placeholder\":true,"
      "\"num\":1}]],{\"_placeholderx\":1}]";
  assert_int_equal(text(f, wire), 0);
  assert_int_equal(dx__sio_decoder_awaiting(&f->d), 3);
  assert_int_equal(binary(f, "zero", 4), 0);
  assert_int_equal(binary(f, "one", 3), 0);
  assert_int_equal(binary(f, "t\0wo", 4), 1);
  json_t *o = json_array_get(f->p.data, 1);
  assert_binary(json_object_get(o, "c"), "zero", 4);
  json_t *deep = json_array_get(
      json_object_get(json_array_get(json_object_get(o, "a"), 1), "b"), 0);
  assert_binary(deep, "t\0wo", 4);
  assert_binary(json_array_get(json_array_get(json_array_get(f->p.data, 2), 0), 0),
                "one", 3);
  /* Encoded again, the binaries are numbered in the order written. */
  assert_encodes_to(
      f, "53-/x,9[\"ev\",{\"a\":[1,{\"b\":[{\"_placeholder\":true,\"num\":0}]}],"
         "\"c\":{\"_placeholder\":true,\"num\":1}},[[{\"_placeholder\":true,"
         "\"num\":2}]],{\"_placeholderx\":1}]");
  assert_int_equal(f->e.n_att, 3);
  assert_memory_equal(f->e.att[0].p, "t\0wo", 4);
  assert_memory_equal(f->e.att[1].p, "zero", 4);
  assert_memory_equal(f->e.att[2].p, "one", 3);

  /* Built by an application: binaries anywhere, counted for it. */
  json_t *v = json_pack("[s, {s: o, s: [i, o]}, o]", "up", "img",
                        dx__sio_binary_new("\x89PNG", 4), "more", 1,
                        dx__sio_binary_new("", 0), dx__sio_binary_new("x", 1));
  assert_non_null(v);
  dx__sio_packet p = {DX__SIO_EVENT, "/", 1, 3, v, 0};
  assert_int_equal(dx__sio_encode(&p, 0, &f->e), 0);
  static const char want[] =
      "53-3[\"up\",{\"img\":{\"_placeholder\":true,\"num\":0},\"more\":[1,"
      "{\"_placeholder\":true,\"num\":1}]},{\"_placeholder\":true,\"num\":2}]";
  assert_int_equal(f->e.text.len, sizeof want - 1);
  assert_memory_equal(f->e.text.data, want, sizeof want - 1);
  assert_int_equal(f->e.n_att, 3);
  assert_int_equal(f->e.att[1].n, 0);
  /* The binary's key cannot come from a peer: JSON text holding that
   * byte is not UTF-8, and an escaped \u00ff is another key. */
  assert_int_equal(text(f, "2[\"x\",{\"\xff" "binary\":\"abc\"}]"), DX_EUTF8);
  assert_int_equal(text(f, "2[\"x\",{\"\\u00ffbinary\":\"abc\"}]"), 1);
  const uint8_t *bp;
  size_t bn;
  assert_false(dx__sio_binary_get(json_array_get(f->p.data, 1), &bp, &bn));
  /* A binary is refused where the type takes none, and as a name. */
  dx__sio_packet_release(&p);
  p = (dx__sio_packet){DX__SIO_CONNECT, "/", 1, -1,
                       json_pack("{s:o}", "b", dx__sio_binary_new("x", 1)), 0};
  assert_int_equal(dx__sio_encode(&p, 0, &f->e), DX__SIO_EDATA);
  dx__sio_packet_release(&p);
  p = (dx__sio_packet){DX__SIO_EVENT, "/", 1, -1,
                       json_pack("[o]", dx__sio_binary_new("x", 1)), 0};
  assert_int_equal(dx__sio_encode(&p, 0, &f->e), DX__SIO_EDATA);
  dx__sio_packet_release(&p);
}

/* Each text decodes to its error, leaving nothing pending. */
typedef struct error_case {
  const char *wire;
  int err;
} error_case;

static void expect_errors(fixture *f, const error_case *cases, size_t n) {
  for (size_t i = 0; i < n; i++) {
    int r = text(f, cases[i].wire);
    if (r != cases[i].err) fail_msg("%s: %d, wanted %d", cases[i].wire, r, cases[i].err);
    assert_int_equal(dx__sio_decoder_awaiting(&f->d), 0);
  }
}

/* ---- the attachment rules --------------------------------------------- */

static void test_attachment_errors(void **state) {
  fixture *f = *state;
  static const error_case cases[] = {
      /* The count itself. */
      {"5", DX__SIO_EATTACH},
      {"5-[\"a\"]", DX__SIO_EATTACH},
      {"50-[\"a\"]", DX__SIO_EATTACH},
      {"501-[\"a\"]", DX__SIO_EATTACH},
      {"51[\"a\"]", DX__SIO_EATTACH},
      {"5x-[\"a\"]", DX__SIO_EATTACH},
      {"6-1-[\"a\"]", DX__SIO_EATTACH},
      {"511-[\"a\"]", DX__SIO_ETOOMANY},
      {"599999999999999999999999-[\"a\"]", DX__SIO_ETOOMANY},
      /* Placeholders: out of range, repeated, of the wrong shape. */
      {"51-[\"a\",{\"_placeholder\":true,\"num\":1}]", DX__SIO_EPLACEHOLDER},
      {"51-[\"a\",{\"_placeholder\":true,\"num\":-1}]", DX__SIO_EPLACEHOLDER},
      {"52-[\"a\",{\"_placeholder\":true,\"num\":0},{\"_placeholder\":true,\"num\":0}]",
       DX__SIO_EPLACEHOLDER},
      {"51-[\"a\",{\"_placeholder\":true,\"num\":\"0\"}]", DX__SIO_EPLACEHOLDER},
      {"51-[\"a\",{\"_placeholder\":true,\"num\":0.5}]", DX__SIO_EPLACEHOLDER},
      {"51-[\"a\",{\"_placeholder\":true}]", DX__SIO_EPLACEHOLDER},
      {"51-[\"a\",{\"_placeholder\":1,\"num\":0}]", DX__SIO_EPLACEHOLDER},
      {"51-[\"a\",{\"_placeholder\":true,\"num\":0,\"x\":1}]", DX__SIO_EPLACEHOLDER},
      /* In a packet that announced none. */
      {"2[\"a\",{\"_placeholder\":true,\"num\":0}]", DX__SIO_EPLACEHOLDER},
      /* Fewer placeholders than announced, or none. */
      {"52-[\"a\",{\"_placeholder\":true,\"num\":1}]", DX__SIO_ECOUNT},
      {"51-[\"a\"]", DX__SIO_ECOUNT},
      {"61-1[]", DX__SIO_ECOUNT},
      /* A placeholder as the event's name. */
      {"51-[{\"_placeholder\":true,\"num\":0}]", DX__SIO_EDATA},
  };
  expect_errors(f, cases, sizeof cases / sizeof *cases);
  /* Order: a binary when none is due; text while one is (the pending
   * packet is dropped, and the decoder is usable after). */
  assert_int_equal(binary(f, "x", 1), DX__SIO_EORDER);
  assert_int_equal(text(f, "51-[\"a\",{\"_placeholder\":true,\"num\":0}]"), 0);
  assert_int_equal(text(f, "2[\"b\"]"), DX__SIO_EORDER);
  assert_int_equal(dx__sio_decoder_awaiting(&f->d), 0);
  assert_int_equal(text(f, "2[\"b\"]"), 1);
  /* A decoder with a bound of its own. */
  dx__sio_decoder d2;
  dx__sio_decoder_init(&d2, &A, 2);
  dx__sio_packet p;
  static const char three[] = "53-[\"a\"]";
  assert_int_equal(dx__sio_decode_text(&d2, three, sizeof three - 1, &p),
                   DX__SIO_ETOOMANY);
  dx__sio_decoder_free(&d2);
  /* Freeing a decoder mid-packet frees what it gathered. */
  dx__sio_decoder_init(&d2, &A, 2);
  static const char two[] =
      "52-[\"a\",{\"_placeholder\":true,\"num\":1},{\"_placeholder\":true,\"num\":0}]";
  assert_int_equal(dx__sio_decode_text(&d2, two, sizeof two - 1, &p), 0);
  assert_int_equal(dx__sio_decode_binary(&d2, (const uint8_t *)"x", 1, &p), 0);
  dx__sio_decoder_free(&d2);
}

/* ---- header, id and data errors ---------------------------------------- */

static void test_decode_errors(void **state) {
  fixture *f = *state;
  static const error_case cases[] = {
      {"", DX__SIO_ETYPE},
      {"7", DX__SIO_ETYPE},
      {"a[\"x\"]", DX__SIO_ETYPE},
      {"-1", DX__SIO_ETYPE},
      /* The namespace must start with "/". */
      {"2admin,[\"x\"]", DX__SIO_ENSP},
      {"0admin", DX__SIO_ENSP},
      {"2 [\"x\"]", DX__SIO_ENSP},
      /* After the namespace: an id or the data. */
      {"2/admin,x1[\"x\"]", DX__SIO_EID},
      {"2/admin,-1[\"x\"]", DX__SIO_EID},
      /* Ids: canonical, in range, only where the type takes one. */
      {"201[\"x\"]", DX__SIO_EID},
      {"29007199254740992[\"x\"]", DX__SIO_EID},
      {"299999999999999999999999[\"x\"]", DX__SIO_EID},
      {"01{}", DX__SIO_EID},
      {"11", DX__SIO_EID},
      {"41{\"message\":\"x\"}", DX__SIO_EID},
      {"3[]", DX__SIO_EID},
      {"3/admin,[]", DX__SIO_EID},
      /* JSON. */
      {"2[\"x\"", DX__SIO_EJSON},
      {"2[\"x\"]]", DX__SIO_EJSON},
      {"2[\"x\",]", DX__SIO_EJSON},
      {"2{\"a\":1,\"a\":2}", DX__SIO_EJSON},
      {"2[\"x\",{\"a\":1,\"a\":2}]", DX__SIO_EJSON},
      {"2[\"\\ud800\"]", DX__SIO_EJSON},
      {"2[\"x\",1e400]", DX__SIO_EJSON},
      {"2[\"x\",NaN]", DX__SIO_EJSON},
      {"2[\"x\"]\x01", DX__SIO_EJSON},
      /* Data the type does not take. */
      {"0[]", DX__SIO_EDATA},
      {"0\"s\"", DX__SIO_EDATA},
      {"1{}", DX__SIO_EDATA},
      {"1/admin,{}", DX__SIO_EDATA},
      {"2", DX__SIO_EDATA},
      {"2/admin,", DX__SIO_EDATA},
      {"212", DX__SIO_EDATA},
      {"2[]", DX__SIO_EDATA},
      {"2{\"a\":1}", DX__SIO_EDATA},
      {"2\"foo\"", DX__SIO_EDATA},
      {"2[null]", DX__SIO_EDATA},
      {"2[[\"x\"]]", DX__SIO_EDATA},
      {"2[true]", DX__SIO_EDATA},
      {"31{}", DX__SIO_EDATA},
      {"31", DX__SIO_EDATA},
      {"4", DX__SIO_EDATA},
      {"4[]", DX__SIO_EDATA},
      /* Reserved event names. */
      {"2[\"connect\"]", DX__SIO_ERESERVED},
      {"2[\"connect_error\",1]", DX__SIO_ERESERVED},
      {"2/admin,[\"disconnect\"]", DX__SIO_ERESERVED},
      {"25[\"disconnecting\"]", DX__SIO_ERESERVED},
      {"2[\"newListener\"]", DX__SIO_ERESERVED},
      {"2[\"removeListener\"]", DX__SIO_ERESERVED},
      /* Invalid UTF-8 anywhere. */
      {"2[\"\xc3\x28\"]", DX_EUTF8},
      {"2/\xff,[\"x\"]", DX_EUTF8},
      {"2[\"\xed\xa0\x80\"]", DX_EUTF8},
  };
  expect_errors(f, cases, sizeof cases / sizeof *cases);
  /* The reserved names only as an event's name, and only exactly. */
  assert_int_equal(text(f, "2[\"connected\"]"), 1);
  assert_int_equal(text(f, "2[\"x\",\"connect\"]"), 1);
  assert_int_equal(text(f, "3/admin,1[\"disconnect\"]"), 1);
  /* A namespace ended by the end of the text, as the reference reads it. */
  assert_int_equal(text(f, "1/admin"), 1);
  assert_packet(f, DX__SIO_DISCONNECT, "/admin", -1, NULL);
  /* A namespace with a NUL in it stays whole. */
  static const char nul[] = "2/a\0b,[\"x\"]";
  dx__sio_packet_release(&f->p);
  assert_int_equal(dx__sio_decode_text(&f->d, nul, sizeof nul - 1, &f->p), 1);
  assert_int_equal(f->p.nsp_len, 4);
  assert_memory_equal(f->p.nsp, "/a\0b", 4);
}

/* ---- numbers ------------------------------------------------------------ */

static void test_huge_numbers(void **state) {
  fixture *f = *state;
  /* The largest id, and the smallest. */
  assert_int_equal(text(f, "29007199254740991[\"x\"]"), 1);
  assert_int_equal(f->p.id, DX__SIO_MAX_ID);
  assert_int_equal(text(f, "30[]"), 1);
  assert_int_equal(f->p.id, 0);
  /* 64-bit integers stay exact. */
  assert_int_equal(text(f, "2[\"x\",9223372036854775807,-9223372036854775808]"), 1);
  assert_true(json_integer_value(json_array_get(f->p.data, 1)) == INT64_MAX);
  assert_true(json_integer_value(json_array_get(f->p.data, 2)) == INT64_MIN);
  assert_encodes_to(f, "2[\"x\",9223372036854775807,-9223372036854775808]");
  /* The integer writer's edges: zero, one digit, a carry, negatives; and
   * the largest ack id. */
  assert_int_equal(text(f, "39007199254740991[0,-1,9,10,-10,1000000]"), 1);
  assert_encodes_to(f, "39007199254740991[0,-1,9,10,-10,1000000]");
  /* Past them (JavaScript writes 1e20 as digits), the value is read with
   * reals, as JavaScript reads it. */
  assert_int_equal(text(f, "2[\"x\",100000000000000000000,7]"), 1);
  assert_true(json_is_real(json_array_get(f->p.data, 1)));
  assert_true(json_real_value(json_array_get(f->p.data, 1)) == 1e20);
  assert_true(json_real_value(json_array_get(f->p.data, 2)) == 7.0);
  assert_encodes_to(f, "2[\"x\",1e+20,7]");
  /* A placeholder's num read as a real still counts. */
  assert_int_equal(text(f, "51-[\"x\",{\"_placeholder\":true,\"num\":0},"
                           "99999999999999999999]"),
                   0);
  assert_int_equal(binary(f, "b", 1), 1);
  assert_binary(json_array_get(f->p.data, 1), "b", 1);
  /* Reals written the shortest way that reads back exactly. */
  dx__sio_packet_release(&f->p);
  f->p = (dx__sio_packet){DX__SIO_EVENT, "/", 1, -1,
                          json_pack("[s,f,f,f,f,f,f,f,f,f,f,f,f,f]", "r", 0.1, 1.5, -0.0, 1e21,
                                    1.0 / 3, 5e-324, 1.5e-5, 1e-7, 123456.789e3,
                                    1.2345678901234568e+20, -2.5e-300,
                                    0x1p63 - 1024, 0x1p63),
                          0};
  assert_encodes_to(
      f, "2[\"r\",0.1,1.5,0,1e+21,0.3333333333333333,5e-324,0.000015,1e-7,"
         "123456789,1.2345678901234568e+20,-2.5e-300,9223372036854775000,"
         "9.223372036854776e+18]");
  dx__sio_packet_release(&f->p);
  assert_int_equal(dx__sio_decode_text(&f->d, (const char *)f->e.text.data,
                                       f->e.text.len, &f->p),
                   1);
  assert_true(json_real_value(json_array_get(f->p.data, 5)) == 1.0 / 3);
}

/* ---- what the encoder refuses ------------------------------------------ */

static void test_encode_refusals(void **state) {
  fixture *f = *state;
  static const struct {
    int type;
    const char *nsp;
    int64_t id;
    const char *data;
    int err;
  } cases[] = {
      {7, "/", -1, NULL, DX__SIO_ETYPE},
      {-1, "/", -1, NULL, DX__SIO_ETYPE},
      {DX__SIO_EVENT, "admin", -1, "[\"x\"]", DX__SIO_ENSP},
      {DX__SIO_EVENT, "/a,b", -1, "[\"x\"]", DX__SIO_ENSP},
      {DX__SIO_EVENT, "", -1, "[\"x\"]", DX__SIO_ENSP},
      {DX__SIO_EVENT, "/", -2, "[\"x\"]", DX__SIO_EID},
      {DX__SIO_EVENT, "/", DX__SIO_MAX_ID + 1, "[\"x\"]", DX__SIO_EID},
      {DX__SIO_CONNECT, "/", 1, NULL, DX__SIO_EID},
      {DX__SIO_ACK, "/", -1, "[]", DX__SIO_EID},
      {DX__SIO_EVENT, "/", -1, "[\"disconnect\"]", DX__SIO_ERESERVED},
      {DX__SIO_EVENT, "/", -1, "[]", DX__SIO_EDATA},
      {DX__SIO_EVENT, "/", -1, NULL, DX__SIO_EDATA},
      {DX__SIO_DISCONNECT, "/", -1, "{}", DX__SIO_EDATA},
      {DX__SIO_CONNECT, "/", -1, "[]", DX__SIO_EDATA},
      {DX__SIO_CONNECT_ERROR, "/", -1, NULL, DX__SIO_EDATA},
      {DX__SIO_EVENT, "/", -1, "[\"x\",{\"y\":{\"_placeholder\":true,\"num\":0}}]",
       DX__SIO_EPLACEHOLDER},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    dx__sio_packet p = {cases[i].type, cases[i].nsp, strlen(cases[i].nsp), cases[i].id,
                        cases[i].data ? J(cases[i].data) : NULL, 0};
    int r = dx__sio_encode(&p, 0, &f->e);
    if (r != cases[i].err) fail_msg("case %zu: %d, wanted %d", i, r, cases[i].err);
    assert_int_equal(f->e.text.len, 0);
    dx__sio_packet_release(&p);
  }
  /* Not UTF-8: a string, a key, the namespace. */
  dx__sio_packet p = {DX__SIO_EVENT, "/", 1, -1,
                      json_pack("[s,o]", "x", json_stringn_nocheck("\xff", 1)), 0};
  assert_int_equal(dx__sio_encode(&p, 0, &f->e), DX_EINVAL);
  dx__sio_packet_release(&p);
  json_t *o = json_object();
  json_object_setn_new_nocheck(o, "\xc3", 1, json_true());
  p = (dx__sio_packet){DX__SIO_EVENT, "/", 1, -1, json_pack("[s,o]", "x", o), 0};
  assert_int_equal(dx__sio_encode(&p, 0, &f->e), DX_EINVAL);
  p.nsp = "/\xff";
  p.nsp_len = 2;
  json_array_remove(p.data, 1);
  assert_int_equal(dx__sio_encode(&p, 0, &f->e), DX_EINVAL);
  dx__sio_packet_release(&p);
  /* Too many binaries for the bound given; none without one. */
  json_t *v = json_pack("[s]", "many");
  for (int i = 0; i < 11; i++) json_array_append_new(v, dx__sio_binary_new("b", 1));
  p = (dx__sio_packet){DX__SIO_EVENT, "/", 1, -1, v, 0};
  assert_int_equal(dx__sio_encode(&p, DX__SIO_MAX_ATTACHMENTS, &f->e), DX__SIO_ETOOMANY);
  assert_int_equal(dx__sio_encode(&p, 0, &f->e), 0);
  assert_int_equal(f->e.n_att, 11);
  assert_memory_equal(f->e.text.data, "511-[", 5);
  dx__sio_packet_release(&p);
  /* Nesting past the bound (or a cycle) is refused, not followed. */
  v = json_array();
  json_t *inner = v;
  for (int i = 0; i < DX__SIO_MAX_DEPTH + 1; i++) {
    json_t *a = json_array();
    json_array_append_new(inner, a);
    inner = a;
  }
  p = (dx__sio_packet){DX__SIO_ACK, "/", 1, 1, v, 0};
  assert_int_equal(dx__sio_encode(&p, 0, &f->e), DX_EINVAL);
  dx__sio_packet_release(&p);
}

/* ---- failed allocations ------------------------------------------------- */

/* Every allocation of a binary packet's decode and encode failed in turn:
 * each failure is DX_ENOMEM with nothing pending, then it succeeds. */
static void test_no_memory(void **state) {
  fixture *f = *state;
  static const char wire[] =
      "52-/admin,7[\"a\",{\"k\":{\"_placeholder\":true,\"num\":0}},"
      "{\"_placeholder\":true,\"num\":1}]";
  int ok = 0;
  for (long i = 0; !ok && i < 50; i++) {
    dx__sio_decoder_free(&f->d);
    dx__sio_decoder_init(&f->d, &A, DX__SIO_MAX_ATTACHMENTS);
    fail_alloc_left = i;
    int r = text(f, wire);
    if (r == 0) r = binary(f, "0", 1);
    if (r == 0) r = binary(f, "1", 1);
    fail_alloc_left = -1;
    if (r == DX_ENOMEM) {
      assert_int_equal(dx__sio_decoder_awaiting(&f->d), 0);
      continue;
    }
    assert_int_equal(r, 1);
    ok = 1;
  }
  assert_true(ok);
  ok = 0;
  for (long i = 0; !ok && i < 50; i++) {
    dx__sio_encoded_free(&f->e);
    fail_alloc_left = i;
    int r = dx__sio_encode(&f->p, 0, &f->e);
    fail_alloc_left = -1;
    if (r == DX_ENOMEM) {
      assert_int_equal(f->e.text.len, 0);
      assert_int_equal(f->e.n_att, 0);
      continue;
    }
    assert_int_equal(r, 0);
    ok = 1;
  }
  assert_true(ok);
  assert_int_equal(f->e.text.len, sizeof wire - 1);
  assert_memory_equal(f->e.text.data, wire, sizeof wire - 1);
}

static void test_strerror(void **state) {
  (void)state;
  static const int codes[] = {
      DX__SIO_ETYPE,  DX__SIO_EATTACH,   DX__SIO_ETOOMANY, DX__SIO_ENSP,
      DX__SIO_EID,    DX__SIO_EJSON,     DX__SIO_EDATA,    DX__SIO_ERESERVED,
      DX__SIO_EPLACEHOLDER, DX__SIO_ECOUNT, DX__SIO_EORDER};
  for (size_t i = 0; i < sizeof codes / sizeof *codes; i++) {
    assert_string_not_equal(dx__eio_strerror(codes[i]), "unknown error");
    for (size_t j = 0; j < i; j++) assert_int_not_equal(codes[i], codes[j]);
  }
  assert_true(dx__sio_reserved_event("connect", 7));
  assert_false(dx__sio_reserved_event("connect", 6));
  assert_false(dx__sio_reserved_event("", 0));
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void) {
  const struct CMUnitTest tests[] = {
      T(test_spec_examples),        T(test_every_type_round_trip),
      T(test_placeholders_at_depth), T(test_attachment_errors),
      T(test_decode_errors),        T(test_huge_numbers),
      T(test_encode_refusals),      T(test_no_memory),
      T(test_strerror),
  };
  return cmocka_run_group_tests_name("sio_packet", tests, NULL, NULL);
}
