/* Tests for HTTP/1.1 request semantics (src/proto/http1.c): body framing,
 * persistence, targets, percent-decoding at every length, path
 * confinement, MIME types, dates and entity tags. Decoding runs against a
 * guard page, so a read past the input faults. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "duplex.h"
#include "proto/http1.h"

static dx__http_request parse(const char *head) {
  dx__http_request r;
  assert_int_equal(dx__http_parse_request(head, strlen(head), &r), 0);
  return r;
}

static void test_body_length(void **state) {
  (void)state;
  uint64_t len = 99;
  const char *why = NULL;
  dx__http_request r = parse("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  assert_int_equal(dx__http1_body_length(&r, &len, &why), 0);
  assert_int_equal(len, 0);
  r = parse("POST / HTTP/1.1\r\nContent-Length: 1234\r\n\r\n");
  assert_int_equal(dx__http1_body_length(&r, &len, &why), 0);
  assert_int_equal(len, 1234);
  r = parse("POST / HTTP/1.1\r\nContent-Length: 5\r\ncontent-length: 5\r\n\r\n");
  assert_int_equal(dx__http1_body_length(&r, &len, &why), 0);
  assert_int_equal(len, 5);
  r = parse("POST / HTTP/1.1\r\nContent-Length: 5\r\ncontent-length: 6\r\n\r\n");
  assert_int_equal(dx__http1_body_length(&r, &len, &why), 400);
  assert_non_null(strstr(why, "conflicting"));
  static const char *bad[] = {"-1", "1x", "", "5, 5", "+5", "99999999999999999999"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    char head[128];
    snprintf(head, sizeof head, "POST / HTTP/1.1\r\nContent-Length: %s\r\n\r\n", bad[i]);
    r = parse(head);
    assert_int_equal(dx__http1_body_length(&r, &len, &why), 400);
  }
  r = parse("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
  assert_int_equal(dx__http1_body_length(&r, &len, &why), 411);
  assert_non_null(strstr(why, "chunked"));
  r = parse("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n");
  assert_int_equal(dx__http1_body_length(&r, &len, &why), 400);
}

static void test_keep_alive_and_expect(void **state) {
  (void)state;
  dx__http_request r = parse("GET / HTTP/1.1\r\n\r\n");
  assert_int_equal(dx__http1_keep_alive(&r), 1);
  r = parse("GET / HTTP/1.1\r\nConnection: foo, Close\r\n\r\n");
  assert_int_equal(dx__http1_keep_alive(&r), 0);
  r = parse("GET / HTTP/1.0\r\n\r\n");
  assert_int_equal(dx__http1_keep_alive(&r), 0);
  r = parse("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
  assert_int_equal(dx__http1_keep_alive(&r), 1);
  r = parse("POST / HTTP/1.1\r\nExpect: 100-Continue\r\n\r\n");
  assert_int_equal(dx__http1_expects_continue(&r), 1);
  r = parse("POST / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n");
  assert_int_equal(dx__http1_expects_continue(&r), 0);
  r = parse("GET / HTTP/1.1\r\nUpgrade: h2c, WebSocket\r\n\r\n");
  assert_int_equal(dx__http1_wants_websocket(&r), 1);
  r = parse("GET / HTTP/1.1\r\nUpgrade: h2c\r\n\r\n");
  assert_int_equal(dx__http1_wants_websocket(&r), 0);
  r = parse("GET / HTTP/1.1\r\nUpgrade: h2c\r\nSec-WebSocket-Key: x\r\n\r\n");
  assert_int_equal(dx__http1_wants_websocket(&r), 1);
  r = parse("GET / HTTP/1.1\r\nsec-websocket-version: 13\r\n\r\n");
  assert_int_equal(dx__http1_wants_websocket(&r), 1);
}

static void split(const char *t, const char *path, const char *query) {
  const char *p, *q;
  size_t pl, ql;
  assert_int_equal(dx__http1_split_target(t, strlen(t), &p, &pl, &q, &ql), 0);
  assert_int_equal(pl, strlen(path));
  assert_memory_equal(p, path, pl);
  assert_int_equal(ql, strlen(query));
  assert_memory_equal(q, query, ql);
}

static void test_split_target(void **state) {
  (void)state;
  split("/", "/", "");
  split("/a/b?x=1&y", "/a/b", "x=1&y");
  split("/a?", "/a", "");
  split("/a?b?c", "/a", "b?c");
  split("*", "*", "");
  split("http://h:80/p/q?z", "/p/q", "z");
  split("http://h", "/", "");
  split("http://h?x", "/", "x");
  const char *p, *q;
  size_t pl, ql;
  assert_int_equal(dx__http1_split_target("a/b", 3, &p, &pl, &q, &ql), -1);
  assert_int_equal(dx__http1_split_target("http:/x", 7, &p, &pl, &q, &ql), -1);
}

/* Decodes s placed right before a PROT_NONE page. */
static long decode_guarded(const char *s, char *out, size_t cap) {
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  char *m = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  assert_true(m != MAP_FAILED);
  assert_int_equal(mprotect(m + page, page, PROT_NONE), 0);
  size_t n = strlen(s);
  memcpy(m + page - n, s, n);
  long r = dx__http1_decode(m + page - n, n, out, cap);
  munmap(m, 2 * page);
  return r;
}

static void test_decode(void **state) {
  (void)state;
  char out[64];
  assert_int_equal(decode_guarded("/a%20b", out, sizeof out), 4);
  assert_string_equal(out, "/a b");
  assert_int_equal(decode_guarded("%2e%2E%2f", out, sizeof out), 3);
  assert_string_equal(out, "../");
  assert_int_equal(decode_guarded("plain", out, sizeof out), 5);
  /* every truncated or malformed escape, each ending at the guard page */
  static const char *bad[] = {"%", "%2", "a%", "a%4", "%zz", "%2g", "%00", "x%00y"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    assert_int_equal(decode_guarded(bad[i], out, sizeof out), -1);
  /* a raw NUL too (found by fuzz_http1) */
  assert_int_equal(dx__http1_decode("a\0b", 3, out, sizeof out), -1);
  /* exactly fitting, and one byte short (the NUL needs room) */
  assert_int_equal(decode_guarded("abc", out, 4), 3);
  assert_int_equal(decode_guarded("abc", out, 3), -1);
  assert_int_equal(decode_guarded("%41%42", out, 3), 2);
  assert_int_equal(decode_guarded("%41%42", out, 2), -1);
  /* the public wrapper is the same function */
  assert_int_equal(dx_http_path_decode("%7e", 3, out, sizeof out), 1);
  assert_string_equal(out, "~");
}

static void test_path_is_below(void **state) {
  (void)state;
  static const char *ok[] = {"/", "/a", "/a/b.txt", "//a", "/a/", "/..a", "/a..", "/.well-known/x",
                             "/a/.b"};
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
    assert_int_equal(dx__http1_path_is_below(ok[i]), 0);
  static const char *bad[] = {"/..", "/../x", "/a/../../x", "/a/..", "/.", "/./a", "/a/./b",
                              "a/b", "", "/a\\..\\b", "//..//x"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    assert_int_equal(dx__http1_path_is_below(bad[i]), -1);
}

static void test_mime(void **state) {
  (void)state;
  static const char *pairs[][2] = {
      {"/index.html", "text/html; charset=utf-8"}, {"/a.css", "text/css; charset=utf-8"},
      {"/a.js", "text/javascript; charset=utf-8"}, {"/a.mjs", "text/javascript; charset=utf-8"},
      {"/a.json", "application/json"},             {"/i.SVG", "image/svg+xml"},
      {"/p.png", "image/png"},                     {"/p.jpg", "image/jpeg"},
      {"/g.gif", "image/gif"},                     {"/favicon.ico", "image/x-icon"},
      {"/t.txt", "text/plain; charset=utf-8"},     {"/w.wasm", "application/wasm"},
      {"/f.woff2", "font/woff2"},                  {"/a.min.js.map", "application/json"},
      {"/noext", "application/octet-stream"},      {"/dir.d/noext", "application/octet-stream"},
      {"/.hidden", "application/octet-stream"},    {"/x.unknown", "application/octet-stream"},
  };
  for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++)
    assert_string_equal(dx__http1_mime_type(dx__http1_extension(pairs[i][0])), pairs[i][1]);
}

static void test_dates(void **state) {
  (void)state;
  char d[DX__HTTP_DATE_LEN + 1];
  dx__http1_format_date(784111777, d); /* RFC 7231's example */
  assert_string_equal(d, "Sun, 06 Nov 1994 08:49:37 GMT");
  time_t t;
  assert_int_equal(dx__http1_parse_date(d, &t), 0);
  assert_int_equal(t, 784111777);
  for (time_t x = 0; x < 4000000000; x += 86400 * 37 + 3671) {
    dx__http1_format_date(x, d);
    assert_int_equal(dx__http1_parse_date(d, &t), 0);
    assert_int_equal(t, x);
  }
  static const char *bad[] = {"Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994",
                              "Sun, 06 Nov 1994 08:49:37 UTC", "Sun, 06 Xyz 1994 08:49:37 GMT",
                              "Sun, 32 Nov 1994 08:49:37 GMT", "", "Sun, 06 Nov 1994 8:49:37 GMT"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    assert_int_equal(dx__http1_parse_date(bad[i], &t), -1);
}

static void test_etag(void **state) {
  (void)state;
  assert_int_equal(dx__http1_etag_match("\"a-1\"", "\"a-1\""), 1);
  assert_int_equal(dx__http1_etag_match("W/\"a-1\"", "\"a-1\""), 1);
  assert_int_equal(dx__http1_etag_match("\"x\", \"a-1\"", "\"a-1\""), 1);
  assert_int_equal(dx__http1_etag_match("\"x\",W/\"a-1\" ", "\"a-1\""), 1);
  assert_int_equal(dx__http1_etag_match("*", "\"a-1\""), 1);
  assert_int_equal(dx__http1_etag_match("\"a-2\"", "\"a-1\""), 0);
  assert_int_equal(dx__http1_etag_match("\"a-1", "\"a-1\""), 0);
  assert_int_equal(dx__http1_etag_match("", "\"a-1\""), 0);
  assert_int_equal(dx__http1_etag_match("a-1", "\"a-1\""), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_body_length), cmocka_unit_test(test_keep_alive_and_expect),
      cmocka_unit_test(test_split_target), cmocka_unit_test(test_decode),
      cmocka_unit_test(test_path_is_below), cmocka_unit_test(test_mime),
      cmocka_unit_test(test_dates), cmocka_unit_test(test_etag),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
