/* Tests for the RFC 6455 opening handshake (src/proto/handshake.c).
 *
 * Every head the parser sees is first copied so that its last byte sits
 * right before a PROT_NONE page: reading even one byte past the end faults
 * instead of passing silently. */
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
#include "proto/handshake.h"

/* ------------------------------------------------------------------------ */
/* Guard page                                                               */
/* ------------------------------------------------------------------------ */

static char *g_map;     /* two pages: [readable | PROT_NONE] */
static size_t g_page;

static int guard_setup(void **state) {
  (void)state;
  g_page = (size_t)sysconf(_SC_PAGESIZE);
  void *m = mmap(NULL, 2 * g_page, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED)
    return -1;
  g_map = m;
  if (mprotect(g_map + g_page, g_page, PROT_NONE) != 0)
    return -1;
  return 0;
}

static int guard_teardown(void **state) {
  (void)state;
  munmap(g_map, 2 * g_page);
  return 0;
}

/* Copies s[0..n) so that it ends at the guard page; returns the copy. */
static const char *at_guard(const char *s, size_t n) {
  assert_true(n <= g_page);
  char *p = g_map + g_page - n;
  memcpy(p, s, n);
  return p;
}

/* ------------------------------------------------------------------------ */
/* Helpers                                                                  */
/* ------------------------------------------------------------------------ */

/* RFC 6455 §1.3. */
#define RFC_KEY "dGhlIHNhbXBsZSBub25jZQ=="
#define RFC_ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
static const char RFC_REQUEST[] =
    "GET /chat HTTP/1.1\r\n"
    "Host: server.example.com\r\n"
    "Upgrade: websocket\r\n"
    "Connection: Upgrade\r\n"
    "Sec-WebSocket-Key: " RFC_KEY "\r\n"
    "Origin: http://example.com\r\n"
    "Sec-WebSocket-Protocol: chat, superchat\r\n"
    "Sec-WebSocket-Version: 13\r\n"
    "\r\n";

/* A valid request with one header line replaced: the lines below are
 * joined, skipping any equal to `drop`, then `add` (if any) is appended. */
static const char *const BASE_LINES[] = {
    "GET /chat HTTP/1.1",
    "Host: server.example.com",
    "Upgrade: websocket",
    "Connection: Upgrade",
    ("Sec-WebSocket-Key: " RFC_KEY),
    "Sec-WebSocket-Version: 13",
};

static size_t build_variant(char *out, size_t cap, const char *drop,
                            const char *add) {
  size_t n = 0;
  for (size_t i = 0; i < sizeof BASE_LINES / sizeof *BASE_LINES; i++) {
    if (drop && strcmp(BASE_LINES[i], drop) == 0)
      continue;
    n += (size_t)snprintf(out + n, cap - n, "%s\r\n", BASE_LINES[i]);
  }
  if (add)
    n += (size_t)snprintf(out + n, cap - n, "%s\r\n", add);
  n += (size_t)snprintf(out + n, cap - n, "\r\n");
  assert_true(n < cap);
  return n;
}

/* Scans, parses and checks a request head held at the guard page. Returns
 * the check status; fails the test if it does not parse. */
static int check_raw(const char *s, size_t n, char *why, size_t why_cap,
                     char accept[DX__WS_ACCEPT_LEN + 1]) {
  const char *p = at_guard(s, n);
  assert_int_equal(dx__http_head_end(p, n, 0), n);
  dx__http_request r;
  assert_int_equal(dx__http_parse_request(p, n, &r), 0);
  return dx__ws_check_request(&r, accept, why, why_cap);
}

static int check_str(const char *s, char *why, size_t why_cap) {
  char accept[DX__WS_ACCEPT_LEN + 1];
  return check_raw(s, strlen(s), why, why_cap, accept);
}

static int check_variant(const char *drop, const char *add, char *why,
                         size_t why_cap) {
  char buf[1024];
  size_t n = build_variant(buf, sizeof buf, drop, add);
  char accept[DX__WS_ACCEPT_LEN + 1];
  return check_raw(buf, n, why, why_cap, accept);
}

static int parse_req_str(const char *s, dx__http_request *r) {
  size_t n = strlen(s);
  return dx__http_parse_request(at_guard(s, n), n, r);
}

static int parse_resp_str(const char *s, dx__http_response *r) {
  size_t n = strlen(s);
  return dx__http_parse_response(at_guard(s, n), n, r);
}

static int check_resp_str(const char *s, const char *key, char *why,
                          size_t why_cap) {
  dx__http_response r;
  size_t n = strlen(s);
  const char *p = at_guard(s, n);
  assert_int_equal(dx__http_head_end(p, n, 0), n);
  assert_int_equal(dx__http_parse_response(p, n, &r), 0);
  return dx__ws_check_response(&r, key, why, why_cap);
}

static void assert_prefix(const char *s, const char *prefix) {
  if (strncmp(s, prefix, strlen(prefix)) != 0)
    fail_msg("\"%.40s\" does not start with \"%s\"", s, prefix);
}

static void assert_value(const dx__http_header *h, const char *want) {
  assert_non_null(h);
  assert_int_equal(h->value_len, strlen(want));
  assert_memory_equal(h->value, want, h->value_len);
}

/* Fields of the §1.3 request as parsed from p. */
static void assert_rfc_request(const dx__http_request *r) {
  assert_int_equal(r->method_len, 3);
  assert_memory_equal(r->method, "GET", 3);
  assert_int_equal(r->path_len, 5);
  assert_memory_equal(r->path, "/chat", 5);
  assert_int_equal(r->minor_version, 1);
  assert_int_equal(r->num_headers, 7);
  assert_value(dx__http_find(r->headers, r->num_headers, "host"),
               "server.example.com");
  assert_value(dx__http_find(r->headers, r->num_headers,
                             "SEC-WEBSOCKET-PROTOCOL"),
               "chat, superchat");
  char accept[DX__WS_ACCEPT_LEN + 1], why[128];
  assert_int_equal(dx__ws_check_request(r, accept, why, sizeof why), 0);
  assert_string_equal(accept, RFC_ACCEPT);
}

/* ------------------------------------------------------------------------ */
/* Keys                                                                     */
/* ------------------------------------------------------------------------ */

static void test_accept_key_rfc_example(void **state) {
  (void)state;
  char out[DX__WS_ACCEPT_LEN + 1];
  dx__ws_accept_key(RFC_KEY, strlen(RFC_KEY), out);
  assert_string_equal(out, RFC_ACCEPT);
  /* A different key must give a different accept. */
  dx__ws_accept_key("AAAAAAAAAAAAAAAAAAAAAA==", 24, out);
  assert_int_equal(strlen(out), DX__WS_ACCEPT_LEN);
  assert_string_not_equal(out, RFC_ACCEPT);
  /* Odd lengths still hash (the client side hashes its own key)... */
  char key[65];
  memset(key, 'k', sizeof key);
  dx__ws_accept_key(key, 64, out);
  assert_int_equal(strlen(out), DX__WS_ACCEPT_LEN);
  /* ...but an absurdly long one gives "", which equals no accept. */
  dx__ws_accept_key(key, 65, out);
  assert_string_equal(out, "");
}

static void test_make_key_rfc_nonce(void **state) {
  (void)state;
  /* §1.3: the key is the base64 of the nonce "the sample nonce". */
  char out[DX__WS_KEY_LEN + 1];
  dx__ws_make_key((const uint8_t *)"the sample nonce", out);
  assert_string_equal(out, RFC_KEY);
}

/* ------------------------------------------------------------------------ */
/* Head scanning                                                            */
/* ------------------------------------------------------------------------ */

/* Feeds `req` split in two at every point, with the first part ending at
 * the guard page, then the whole with the hint, then parses it. */
static void split_points(const char *req) {
  size_t len = strlen(req);
  for (size_t k = 0; k < len; k++) {
    const char *part = at_guard(req, k);
    assert_int_equal(dx__http_head_end(part, k, 0), 0);
    const char *whole = at_guard(req, len);
    assert_int_equal(dx__http_head_end(whole, len, k), len);
    dx__http_request r;
    assert_int_equal(dx__http_parse_request(whole, len, &r), 0);
    assert_rfc_request(&r);
  }
}

static void test_head_end_every_split_point(void **state) {
  (void)state;
  split_points(RFC_REQUEST);
}

/* Same request with bare LF line ends, and with them mixed. */
static void to_lf(const char *in, char *out, int every_other) {
  int n = 0;
  for (; *in; in++) {
    if (*in == '\r' && (!every_other || (n++ & 1)))
      continue;
    *out++ = *in;
  }
  *out = '\0';
}

static void test_head_end_bare_lf_split_points(void **state) {
  (void)state;
  char buf[sizeof RFC_REQUEST];
  to_lf(RFC_REQUEST, buf, 0);
  assert_null(strchr(buf, '\r'));
  split_points(buf);
  to_lf(RFC_REQUEST, buf, 1);
  assert_non_null(strchr(buf, '\r'));
  assert_true(strlen(buf) < strlen(RFC_REQUEST));
  split_points(buf);
}

static void test_head_end_one_byte_at_a_time(void **state) {
  (void)state;
  size_t len = strlen(RFC_REQUEST);
  size_t found = 0;
  for (size_t n = 1; n <= len; n++) {
    const char *p = at_guard(RFC_REQUEST, n);
    size_t end = dx__http_head_end(p, n, n - 1);
    if (end) {
      found = end;
      assert_int_equal(n, len); /* not before the last byte arrived */
      dx__http_request r;
      assert_int_equal(dx__http_parse_request(p, end, &r), 0);
      assert_rfc_request(&r);
    }
  }
  assert_int_equal(found, len);
}

static void test_head_end_stops_at_head(void **state) {
  (void)state;
  /* A frame right behind the 101 (or pipelined data) is not part of it. */
  const char s[] = "HTTP/1.1 101 X\r\nA: b\r\n\r\n\x81\x02hi";
  size_t n = sizeof s - 1;
  assert_int_equal(dx__http_head_end(at_guard(s, n), n, 0), n - 4);
  /* "\n\r\n" and "\n\n" both end a head; a lone CRLF does not. */
  assert_int_equal(dx__http_head_end("a\n\r\n", 4, 0), 4);
  assert_int_equal(dx__http_head_end("a\n\n", 3, 0), 3);
  assert_int_equal(dx__http_head_end("a\r\nb\r\n", 6, 0), 0);
  assert_int_equal(dx__http_head_end("a\r\n\r", 4, 0), 0);
}

static void test_head_end_hint_skips_old_bytes(void **state) {
  (void)state;
  /* The hint promises bytes before last_len were scanned; a blank line
   * far back in them is therefore not looked at again... */
  const char s[] = "\n\nabcdefgh";
  assert_int_equal(dx__http_head_end(s, 10, 0), 2);
  assert_int_equal(dx__http_head_end(s, 10, 9), 0);
  /* ...but a terminator straddling the boundary is found from its tail. */
  const char t[] = "GET / HTTP/1.1\r\n\r\n";
  assert_int_equal(dx__http_head_end(t, 18, 15), 18);
  assert_int_equal(dx__http_head_end(t, 18, 17), 18);
  /* A hint past the end (caller bug) falls back to a full scan. */
  assert_int_equal(dx__http_head_end(t, 18, 1000), 18);
}

/* ------------------------------------------------------------------------ */
/* Parsing                                                                  */
/* ------------------------------------------------------------------------ */

static void test_parse_trims_values(void **state) {
  (void)state;
  dx__http_request r;
  assert_int_equal(parse_req_str("GET /a?b=c HTTP/1.1\r\n"
                                 "X-A:\t  spaced out \t \r\n"
                                 "X-Empty:\r\n"
                                 "X-Blank:   \r\n"
                                 "\r\n",
                                 &r),
                   0);
  assert_int_equal(r.path_len, 6);
  assert_memory_equal(r.path, "/a?b=c", 6);
  assert_int_equal(r.num_headers, 3);
  assert_value(&r.headers[0], "spaced out");
  assert_value(&r.headers[1], "");
  assert_value(&r.headers[2], "");
  assert_int_equal(r.headers[0].name_len, 3);
  assert_memory_equal(r.headers[0].name, "X-A", 3);
  assert_null(dx__http_find(r.headers, r.num_headers, "X-"));
  assert_null(dx__http_find(r.headers, r.num_headers, "X-AB"));
}

static void test_parse_rejects_malformed(void **state) {
  (void)state;
  static const char *const bad[] = {
      "GET /chat HTTP/1.1\r\nHost : a\r\n\r\n",     /* space before colon */
      "GET /chat HTTP/1.1\r\nHost\t: a\r\n\r\n",    /* tab before colon */
      "GET /chat HTTP/1.1\r\nHost a\r\n\r\n",       /* no colon */
      "GET /chat HTTP/1.1\r\nHost\r\n\r\n",         /* no colon, no value */
      "GET /chat HTTP/1.1\r\n: a\r\n\r\n",          /* empty name */
      "GET /chat HTTP/1.1\r\nHo\x01st: a\r\n\r\n",  /* control in name */
      "GET /chat HTTP/1.1\r\nHo(st: a\r\n\r\n",     /* separator in name */
      "GET /chat HTTP/1.1\r\nHost: a\x01\r\n\r\n",  /* control in value */
      "GET /chat HTTP/1.1\r\nHost: a\x7f\r\n\r\n",  /* DEL in value */
      "GET /chat HTTP/1.1\r\nHost: a\rb\r\n\r\n",   /* bare CR in value */
      "GET /chat HTTP/1.1\r\nA: b\r\n c\r\n\r\n",   /* obs-fold */
      "GET /chat HTTP/1.1\r\nA: b\r\n\tc\r\n\r\n",  /* obs-fold, tab */
      " GET /chat HTTP/1.1\r\n\r\n",                /* leading space */
      "GET  /chat HTTP/1.1\r\n\r\n",                /* double space */
      "GET /chat  HTTP/1.1\r\n\r\n",                /* double space */
      "GET HTTP/1.1\r\n\r\n",                       /* no target */
      "GET /chat\r\n\r\n",                          /* HTTP/0.9 style */
      "GET /chat http/1.1\r\n\r\n",                 /* version case */
      "GET /chat HTTP/2.0\r\n\r\n",                 /* not 1.x */
      "GET /chat HTTP/1.\r\n\r\n",                  /* no minor */
      "GET /chat HTTP/1.1x\r\n\r\n",                /* junk after version */
      "GET /chat HTTP/1.1 \r\n\r\n",                /* space after version */
      "GET /ch\x01t HTTP/1.1\r\n\r\n",              /* control in target */
      "GET /chat HTTP/1.1\r\nHost: a\r\n",          /* no blank line */
      "GET /chat HTTP/1.1\r\nHost: a\r\n\r",        /* half a blank line */
      "GET /chat HTTP/1.1\r\n\r\nextra",            /* bytes past the head */
      "GET /chat HTTP/1.1\r\r\n\r\n",               /* CR CR LF */
      "",                                           /* nothing */
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    dx__http_request r;
    int rc = parse_req_str(bad[i], &r);
    if (rc != DX_EPROTO)
      fail_msg("case %zu parsed (rc %d): %s", i, rc, bad[i]);
  }
  /* A NUL inside a value (strlen cannot carry it). */
  const char nul[] = "GET / HTTP/1.1\r\nA: x\0y\r\n\r\n";
  dx__http_request r;
  assert_int_equal(
      dx__http_parse_request(at_guard(nul, sizeof nul - 1), sizeof nul - 1, &r),
      DX_EPROTO);
}

static void test_parse_header_limit(void **state) {
  (void)state;
  char buf[4096];
  dx__http_request r;
  for (size_t count = DX__HTTP_MAX_HEADERS - 1;
       count <= DX__HTTP_MAX_HEADERS + 1; count++) {
    size_t n = (size_t)snprintf(buf, sizeof buf, "GET / HTTP/1.1\r\n");
    for (size_t i = 0; i < count; i++)
      n += (size_t)snprintf(buf + n, sizeof buf - n, "X-%zu: %zu\r\n", i, i);
    n += (size_t)snprintf(buf + n, sizeof buf - n, "\r\n");
    assert_true(n < sizeof buf);
    int rc = dx__http_parse_request(at_guard(buf, n), n, &r);
    if (count <= DX__HTTP_MAX_HEADERS) {
      assert_int_equal(rc, 0);
      assert_int_equal(r.num_headers, count);
      char last[16];
      snprintf(last, sizeof last, "%zu", count - 1);
      assert_value(&r.headers[count - 1], last);
    } else {
      assert_int_equal(rc, DX_EPROTO);
    }
  }
}

static void test_parse_response(void **state) {
  (void)state;
  dx__http_response r;
  assert_int_equal(parse_resp_str("HTTP/1.1 404 Not Found\r\nA: b\r\n\r\n", &r),
                   0);
  assert_int_equal(r.status, 404);
  assert_int_equal(r.minor_version, 1);
  assert_int_equal(r.reason_len, 9);
  assert_memory_equal(r.reason, "Not Found", 9);
  assert_int_equal(r.num_headers, 1);
  /* Empty reason, with and without its SP. */
  assert_int_equal(parse_resp_str("HTTP/1.1 101 \r\n\r\n", &r), 0);
  assert_int_equal(r.reason_len, 0);
  assert_int_equal(parse_resp_str("HTTP/1.1 101\n\n", &r), 0);
  assert_int_equal(r.status, 101);
  assert_int_equal(r.reason_len, 0);

  static const char *const bad[] = {
      "HTTP/1.1 10 Short\r\n\r\n",  "HTTP/1.1 1011 Long\r\n\r\n",
      "HTTP/1.1 1x1 X\r\n\r\n",     "HTTP/2 101 X\r\n\r\n",
      "HTTP/1.1  101 X\r\n\r\n",    "ICY 200 OK\r\n\r\n",
      "HTTP/1.1 101 X\x01\r\n\r\n", "HTTP/1.1 101 X\r\nBad Name: v\r\n\r\n",
      "HTTP/1.1 101 X\r\n",
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
    if (parse_resp_str(bad[i], &r) != DX_EPROTO)
      fail_msg("response case %zu parsed: %s", i, bad[i]);
}

static void test_has_token(void **state) {
  (void)state;
  static const char *const yes[] = {
      "upgrade", "Upgrade", "UPGRADE", "keep-alive, Upgrade",
      "keep-alive,upgrade", "  upgrade  ", "a,,upgrade,", "upgrade,keep-alive",
      "x,\tUpgrade\t,y",
  };
  static const char *const no[] = {
      "", "upgrades", "up grade", "keep-alive", "upgrade-ish", "xupgrade",
      ",", "upgrad",
  };
  for (size_t i = 0; i < sizeof yes / sizeof *yes; i++)
    if (!dx__http_has_token(yes[i], strlen(yes[i]), "upgrade"))
      fail_msg("\"%s\" should contain upgrade", yes[i]);
  for (size_t i = 0; i < sizeof no / sizeof *no; i++)
    if (dx__http_has_token(no[i], strlen(no[i]), "upgrade"))
      fail_msg("\"%s\" should not contain upgrade", no[i]);
  /* The length bounds the list: the token past it is not seen. */
  assert_false(dx__http_has_token("a, upgrade", 3, "upgrade"));
}

/* ------------------------------------------------------------------------ */
/* Server: request validation                                               */
/* ------------------------------------------------------------------------ */

static void test_check_request_rfc_example(void **state) {
  (void)state;
  char why[128], accept[DX__WS_ACCEPT_LEN + 1];
  assert_int_equal(check_raw(RFC_REQUEST, strlen(RFC_REQUEST), why, sizeof why,
                             accept),
                   0);
  assert_string_equal(accept, RFC_ACCEPT);
  assert_string_equal(why, "");
}

/* One malformed-request case: what changes, the status, and the words the
 * reason must contain. */
struct bad_req {
  const char *drop, *add;
  int status;
  const char *why1, *why2;
};

static void run_bad(const struct bad_req *c) {
  char why[160];
  int st = check_variant(c->drop, c->add, why, sizeof why);
  if (st != c->status)
    fail_msg("drop [%s] add [%s]: status %d, want %d (%s)",
             c->drop ? c->drop : "", c->add ? c->add : "", st, c->status, why);
  if (strstr(why, c->why1) == NULL || (c->why2 && !strstr(why, c->why2)))
    fail_msg("drop [%s] add [%s]: reason \"%s\" lacks \"%s\"/\"%s\"",
             c->drop ? c->drop : "", c->add ? c->add : "", why, c->why1,
             c->why2 ? c->why2 : "");
  assert_null(strchr(why, '\n')); /* one line */
}

static void test_check_request_failures(void **state) {
  (void)state;
  static const struct bad_req cases[] = {
      /* The method and HTTP version are in the request line, tested in
       * test_check_request_method_and_version. */
      {"Host: server.example.com", NULL, 400, "missing Host", NULL},
      {NULL, "Host: other.example.com", 400, "Host", "duplicate"},
      {"Upgrade: websocket", NULL, 400, "Upgrade", NULL},
      {"Upgrade: websocket", "Upgrade: h2c", 400,
       "Upgrade header must contain websocket", NULL},
      {"Upgrade: websocket", "Upgrade: websockets", 400, "Upgrade", NULL},
      {"Connection: Upgrade", NULL, 400, "Connection", NULL},
      {"Connection: Upgrade", "Connection: keep-alive", 400,
       "Connection header must contain upgrade", NULL},
      {"Connection: Upgrade", "Connection: upgraded", 400, "Connection", NULL},
      {"Sec-WebSocket-Version: 13", NULL, 400, "Sec-WebSocket-Version",
       "missing"},
      {"Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8", 426,
       "unsupported Sec-WebSocket-Version: 8 (this server speaks 13)", NULL},
      {"Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 13, 8", 426,
       "Sec-WebSocket-Version", NULL},
      {"Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 013", 426,
       "Sec-WebSocket-Version", NULL},
      {NULL, "Sec-WebSocket-Version: 13", 400, "Sec-WebSocket-Version",
       "duplicate"},
      {"Sec-WebSocket-Key: " RFC_KEY, NULL, 400, "Sec-WebSocket-Key",
       "missing"},
      {NULL, "Sec-WebSocket-Key: " RFC_KEY, 400, "Sec-WebSocket-Key",
       "duplicate"},
      {"Sec-WebSocket-Key: " RFC_KEY, "Sec-WebSocket-Key: ", 400,
       "Sec-WebSocket-Key must be base64 of 16 bytes", NULL},
      /* 23 and 25 characters */
      {"Sec-WebSocket-Key: " RFC_KEY,
       "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=", 400, "Sec-WebSocket-Key",
       NULL},
      {"Sec-WebSocket-Key: " RFC_KEY,
       "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ===", 400,
       "Sec-WebSocket-Key", NULL},
      /* 24 characters, but 18 and 17 bytes */
      {"Sec-WebSocket-Key: " RFC_KEY,
       "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQab", 400,
       "Sec-WebSocket-Key", NULL},
      {"Sec-WebSocket-Key: " RFC_KEY,
       "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQa=", 400,
       "Sec-WebSocket-Key", NULL},
      /* not base64 at all */
      {"Sec-WebSocket-Key: " RFC_KEY,
       "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZ!==", 400,
       "Sec-WebSocket-Key", NULL},
      {"Sec-WebSocket-Key: " RFC_KEY,
       "Sec-WebSocket-Key: dGhlIHNhbXBsZ SBub25jZ==", 400,
       "Sec-WebSocket-Key", NULL},
      {"Sec-WebSocket-Key: " RFC_KEY,
       "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25j=Q==", 400,
       "Sec-WebSocket-Key", NULL},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
    run_bad(&cases[i]);
}

static void test_check_request_method_and_version(void **state) {
  (void)state;
  char why[160];
  /* The request line is the first line, so build these by hand. */
  static const char rest[] = "Host: h\r\nUpgrade: websocket\r\n"
                             "Connection: Upgrade\r\n"
                             "Sec-WebSocket-Key: " RFC_KEY "\r\n"
                             "Sec-WebSocket-Version: 13\r\n\r\n";
  char buf[512];
  static const char *const not_get[] = {"POST", "get", "HEAD", "GETS", "PUT"};
  for (size_t i = 0; i < sizeof not_get / sizeof *not_get; i++) {
    snprintf(buf, sizeof buf, "%s /chat HTTP/1.1\r\n%s", not_get[i], rest);
    assert_int_equal(check_str(buf, why, sizeof why), 405);
    assert_non_null(strstr(why, "method must be GET"));
    assert_non_null(strstr(why, not_get[i]));
  }
  snprintf(buf, sizeof buf, "GET /chat HTTP/1.0\r\n%s", rest);
  assert_int_equal(check_str(buf, why, sizeof why), 400);
  assert_non_null(strstr(why, "HTTP/1.1"));
  assert_non_null(strstr(why, "HTTP/1.0"));
  /* A later 1.x is fine. */
  snprintf(buf, sizeof buf, "GET /chat HTTP/1.2\r\n%s", rest);
  assert_int_equal(check_str(buf, why, sizeof why), 0);
}

static void test_check_request_precedence(void **state) {
  (void)state;
  char why[160];
  /* Everything wrong: the method wins. */
  assert_int_equal(check_str("PUT / HTTP/1.0\r\nSec-WebSocket-Version: 8\r\n\r\n",
                             why, sizeof why),
                   405);
  /* Then the HTTP version. */
  assert_int_equal(check_str("GET / HTTP/1.0\r\nSec-WebSocket-Version: 8\r\n\r\n",
                             why, sizeof why),
                   400);
  assert_non_null(strstr(why, "HTTP/1.0"));
  /* Then Host, before Upgrade/Connection/Version. */
  assert_int_equal(check_str("GET / HTTP/1.1\r\nSec-WebSocket-Version: 8\r\n\r\n",
                             why, sizeof why),
                   400);
  assert_non_null(strstr(why, "Host"));
  /* Upgrade before Connection. */
  assert_int_equal(check_str("GET / HTTP/1.1\r\nHost: h\r\n\r\n", why,
                             sizeof why),
                   400);
  assert_non_null(strstr(why, "Upgrade"));
  assert_null(strstr(why, "Connection"));
  /* Connection before the version. */
  assert_int_equal(check_str("GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket"
                             "\r\nSec-WebSocket-Version: 8\r\n\r\n",
                             why, sizeof why),
                   400);
  assert_non_null(strstr(why, "Connection"));
  /* The version (426) before a broken key. */
  assert_int_equal(check_str("GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket"
                             "\r\nConnection: upgrade\r\n"
                             "Sec-WebSocket-Key: nope\r\n"
                             "Sec-WebSocket-Version: 8\r\n\r\n",
                             why, sizeof why),
                   426);
  /* A missing version before a missing key. */
  assert_int_equal(check_str("GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket"
                             "\r\nConnection: upgrade\r\n\r\n",
                             why, sizeof why),
                   400);
  assert_non_null(strstr(why, "Sec-WebSocket-Version"));
}

static void test_check_request_variations_accepted(void **state) {
  (void)state;
  char why[160], accept[DX__WS_ACCEPT_LEN + 1];
  static const char *const ok[] = {
      /* case and comma lists */
      "host: h\r\nupgrade: WebSocket\r\nconnection: keep-alive, Upgrade\r\n"
      "sec-websocket-key: " RFC_KEY "\r\nsec-websocket-version: 13\r\n\r\n",
      "HOST: h\r\nUPGRADE: WEBSOCKET\r\nCONNECTION: UPGRADE\r\n"
      "SEC-WEBSOCKET-KEY: " RFC_KEY "\r\nSEC-WEBSOCKET-VERSION: 13\r\n\r\n",
      "Host: h\r\nUpgrade: foo/2, websocket\r\nConnection: Upgrade,keep-alive\r\n"
      "Sec-WebSocket-Key:" RFC_KEY "\r\nSec-WebSocket-Version:\t13 \r\n\r\n",
      /* Connection split across two lines */
      "Host: h\r\nConnection: keep-alive\r\nUpgrade: websocket\r\n"
      "Connection: Upgrade\r\nSec-WebSocket-Key:   " RFC_KEY "  \r\n"
      "Sec-WebSocket-Version: 13\r\n\r\n",
      /* bare LF, extra headers, empty Origin */
      "Host: h:8080\nUpgrade: websocket\nConnection: Upgrade\nOrigin:\n"
      "Sec-WebSocket-Key: " RFC_KEY "\nSec-WebSocket-Version: 13\n"
      "Sec-WebSocket-Extensions: permessage-deflate\n\n",
  };
  for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
    char buf[1024];
    int n = snprintf(buf, sizeof buf, "GET /chat?x=1 HTTP/1.1\r\n%s", ok[i]);
    int st = check_raw(buf, (size_t)n, why, sizeof why, accept);
    if (st != 0)
      fail_msg("variation %zu refused with %d: %s", i, st, why);
    assert_string_equal(accept, RFC_ACCEPT);
  }
}

static void test_check_request_quotes_safely(void **state) {
  (void)state;
  char why[160];
  /* A hostile version value is quoted shortened and printable only. */
  char add[256];
  snprintf(add, sizeof add, "Sec-WebSocket-Version: 9\x80\x80%0100d", 0);
  int st = check_variant("Sec-WebSocket-Version: 13", add, why, sizeof why);
  assert_int_equal(st, 426);
  assert_true(strlen(why) < 120);
  for (const char *p = why; *p; p++)
    assert_true(*p >= 0x20 && *p < 0x7f);
  assert_non_null(strstr(why, "9??"));
  assert_non_null(strstr(why, "...")); /* marks the cut */
  /* A tiny reason buffer is still NUL-terminated and not overrun. */
  char small[8];
  memset(small, 'Z', sizeof small);
  st = check_variant("Host: server.example.com", NULL, small, 6);
  assert_int_equal(st, 400);
  assert_int_equal(strlen(small), 5);
  assert_int_equal(small[6], 'Z');
}

/* ------------------------------------------------------------------------ */
/* Server: building                                                         */
/* ------------------------------------------------------------------------ */

/* Parses an error response and checks its framing: the Content-Length
 * header counts exactly the body, which is `why` + "\n". */
static const dx__http_response *parse_error_response(const char *out,
                                                     size_t n, int status,
                                                     const char *why) {
  static dx__http_response r;
  const char *p = at_guard(out, n);
  size_t head = dx__http_head_end(p, n, 0);
  assert_true(head > 0 && head < n);
  assert_int_equal(dx__http_parse_response(p, head, &r), 0);
  assert_int_equal(r.status, status);
  assert_int_equal(r.minor_version, 1);
  const char *text = dx__http_status_text(status);
  assert_int_equal(r.reason_len, strlen(text));
  assert_memory_equal(r.reason, text, r.reason_len);
  char cl[32];
  snprintf(cl, sizeof cl, "%zu", n - head);
  assert_value(dx__http_find(r.headers, r.num_headers, "Content-Length"), cl);
  assert_int_equal(n - head, strlen(why) + 1);
  assert_memory_equal(p + head, why, strlen(why));
  assert_int_equal(p[n - 1], '\n');
  assert_value(dx__http_find(r.headers, r.num_headers, "Content-Type"),
               "text/plain; charset=utf-8");
  assert_value(dx__http_find(r.headers, r.num_headers, "Connection"), "close");
  return &r;
}

static void test_build_error_426(void **state) {
  (void)state;
  char out[512];
  const char *why =
      "unsupported Sec-WebSocket-Version: 8 (this server speaks 13)";
  size_t n = dx__http_build_error(out, sizeof out, 426, why);
  assert_true(n > 0);
  assert_int_equal(strlen(out), n);
  assert_prefix(out, "HTTP/1.1 426 Upgrade Required\r\n");
  assert_non_null(strstr(out, "\r\nSec-WebSocket-Version: 13\r\n"));
  const dx__http_response *r = parse_error_response(out, n, 426, why);
  assert_value(dx__http_find(r->headers, r->num_headers,
                             "Sec-WebSocket-Version"),
               "13");
}

static void test_build_error_others(void **state) {
  (void)state;
  char out[512];
  size_t n = dx__http_build_error(out, sizeof out, 400, "missing Host header");
  assert_true(n > 0);
  const dx__http_response *r =
      parse_error_response(out, n, 400, "missing Host header");
  assert_null(dx__http_find(r->headers, r->num_headers,
                            "Sec-WebSocket-Version"));
  assert_null(dx__http_find(r->headers, r->num_headers, "Allow"));
  assert_prefix(out, "HTTP/1.1 400 Bad Request\r\n");

  n = dx__http_build_error(out, sizeof out, 405, "method must be GET");
  r = parse_error_response(out, n, 405, "method must be GET");
  assert_value(dx__http_find(r->headers, r->num_headers, "Allow"), "GET");

  /* Empty and NULL reasons give a one-byte body. */
  n = dx__http_build_error(out, sizeof out, 503, "");
  parse_error_response(out, n, 503, "");
  n = dx__http_build_error(out, sizeof out, 503, NULL);
  parse_error_response(out, n, 503, "");

  /* Every cap too small (no room for the NUL) gives 0; the exact one fits. */
  size_t need = dx__http_build_error(out, sizeof out, 426, "x");
  for (size_t cap = 0; cap <= need; cap++)
    assert_int_equal(dx__http_build_error(out, cap, 426, "x"), 0);
  assert_int_equal(dx__http_build_error(out, need + 1, 426, "x"), need);

  assert_int_equal(dx__http_build_error(out, sizeof out, 42, "x"), 0);
  assert_int_equal(dx__http_build_error(out, sizeof out, 1000, "x"), 0);
}

static void test_status_text(void **state) {
  (void)state;
  static const struct {
    int status;
    const char *text;
  } t[] = {
      /* Every status duplex itself sends has its phrase on the status line
       * (204 from /publish, 301 and 304 from static files, 411 for a
       * chunked body), not "Error". */
      {100, "Continue"},
      {204, "No Content"},
      {301, "Moved Permanently"},
      {304, "Not Modified"},
      {411, "Length Required"},
      {400, "Bad Request"},
      {403, "Forbidden"},
      {404, "Not Found"},
      {405, "Method Not Allowed"},
      {408, "Request Timeout"},
      {426, "Upgrade Required"},
      {429, "Too Many Requests"},
      {431, "Request Header Fields Too Large"},
      {500, "Internal Server Error"},
      {503, "Service Unavailable"},
      {599, "Error"},
      {0, "Error"},
  };
  for (size_t i = 0; i < sizeof t / sizeof *t; i++)
    assert_string_equal(dx__http_status_text(t[i].status), t[i].text);
}

static void test_build_response(void **state) {
  (void)state;
  char out[512];
  size_t n = dx__ws_build_response(out, sizeof out, RFC_ACCEPT, NULL, NULL);
  const char *want = "HTTP/1.1 101 Switching Protocols\r\n"
                     "Upgrade: websocket\r\n"
                     "Connection: Upgrade\r\n"
                     "Sec-WebSocket-Accept: " RFC_ACCEPT "\r\n"
                     "\r\n";
  assert_int_equal(n, strlen(want));
  assert_memory_equal(out, want, n);
  /* It is what a client accepts for the RFC key. */
  char why[128];
  assert_int_equal(check_resp_str(out, RFC_KEY, why, sizeof why), 0);

  n = dx__ws_build_response(out, sizeof out, RFC_ACCEPT, "chat", NULL);
  want = "HTTP/1.1 101 Switching Protocols\r\n"
         "Upgrade: websocket\r\n"
         "Connection: Upgrade\r\n"
         "Sec-WebSocket-Accept: " RFC_ACCEPT "\r\n"
         "Sec-WebSocket-Protocol: chat\r\n"
         "\r\n";
  assert_int_equal(n, strlen(want));
  assert_memory_equal(out, want, n);

  /* Too small, bad accept, header injection through the protocol. */
  for (size_t cap = 0; cap <= n; cap++)
    assert_int_equal(dx__ws_build_response(out, cap, RFC_ACCEPT, "chat", NULL), 0);
  assert_int_equal(dx__ws_build_response(out, sizeof out, "short", NULL, NULL), 0);
  assert_int_equal(
      dx__ws_build_response(out, sizeof out, RFC_ACCEPT, "a\r\nSet-Cookie: x", NULL),
      0);
  assert_int_equal(dx__ws_build_response(out, sizeof out, RFC_ACCEPT, "a b", NULL),
                   0);
}

/* ------------------------------------------------------------------------ */
/* Client                                                                   */
/* ------------------------------------------------------------------------ */

static void test_build_request_round_trip(void **state) {
  (void)state;
  char out[512];
  char key[DX__WS_KEY_LEN + 1];
  const uint8_t raw[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
                           0xff};
  dx__ws_make_key(raw, key);
  size_t n = dx__ws_build_request(out, sizeof out, "example.com:8080",
                                  "/ws?room=1", key, NULL, NULL);
  assert_true(n > 0);
  assert_int_equal(strlen(out), n);
  assert_prefix(out, "GET /ws?room=1 HTTP/1.1\r\n");
  char line[64];
  snprintf(line, sizeof line, "\r\nSec-WebSocket-Key: %s\r\n", key);
  assert_non_null(strstr(out, line));
  assert_non_null(strstr(out, "\r\nHost: example.com:8080\r\n"));
  assert_non_null(strstr(out, "\r\nUpgrade: websocket\r\n"));
  assert_non_null(strstr(out, "\r\nConnection: Upgrade\r\n"));
  assert_non_null(strstr(out, "\r\nSec-WebSocket-Version: 13\r\n\r\n"));

  /* Our server accepts our client, and our client accepts its answer. */
  char why[128], accept[DX__WS_ACCEPT_LEN + 1], expect[DX__WS_ACCEPT_LEN + 1];
  assert_int_equal(check_raw(out, n, why, sizeof why, accept), 0);
  dx__ws_accept_key(key, strlen(key), expect);
  assert_string_equal(accept, expect);
  char resp[512];
  assert_true(dx__ws_build_response(resp, sizeof resp, accept, NULL, NULL) > 0);
  assert_int_equal(check_resp_str(resp, key, why, sizeof why), 0);

  for (size_t cap = 0; cap <= n; cap++)
    assert_int_equal(dx__ws_build_request(out, cap, "example.com:8080",
                                          "/ws?room=1", key, NULL, NULL),
                     0);
  /* Injection and empty fields are refused. */
  assert_int_equal(
      dx__ws_build_request(out, sizeof out, "h\r\nX: y", "/", key, NULL, NULL), 0);
  assert_int_equal(dx__ws_build_request(out, sizeof out, "h", "/ a", key, NULL, NULL), 0);
  assert_int_equal(dx__ws_build_request(out, sizeof out, "", "/", key, NULL, NULL), 0);
  assert_int_equal(dx__ws_build_request(out, sizeof out, "h", "", key, NULL, NULL), 0);
  assert_int_equal(dx__ws_build_request(out, sizeof out, "h", "/", "abc", NULL, NULL), 0);
}

static void test_check_response_non_101(void **state) {
  (void)state;
  char why[128];
  assert_int_equal(check_resp_str("HTTP/1.1 404 Not Found\r\n"
                                  "Content-Length: 0\r\n\r\n",
                                  RFC_KEY, why, sizeof why),
                   DX_EHANDSHAKE);
  assert_string_equal(why, "server answered 404 Not Found");
  assert_int_equal(check_resp_str("HTTP/1.1 200 OK\r\n"
                                  "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                                  "Sec-WebSocket-Accept: " RFC_ACCEPT
                                  "\r\n\r\n",
                                  RFC_KEY, why, sizeof why),
                   DX_EHANDSHAKE);
  assert_string_equal(why, "server answered 200 OK");
  assert_int_equal(
      check_resp_str("HTTP/1.1 503\r\n\r\n", RFC_KEY, why, sizeof why),
      DX_EHANDSHAKE);
  assert_string_equal(why, "server answered 503");
}

static void test_check_response_headers(void **state) {
  (void)state;
  static const struct {
    const char *resp;
    const char *why_has;
  } bad[] = {
      {"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
       "Sec-WebSocket-Accept: " RFC_ACCEPT "\r\n\r\n",
       "missing Upgrade header"},
      {"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n"
       "Connection: Upgrade\r\nSec-WebSocket-Accept: " RFC_ACCEPT "\r\n\r\n",
       "Upgrade header must contain websocket"},
      {"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
       "Sec-WebSocket-Accept: " RFC_ACCEPT "\r\n\r\n",
       "missing Connection header"},
      {"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
       "Connection: close\r\nSec-WebSocket-Accept: " RFC_ACCEPT "\r\n\r\n",
       "Connection header must contain upgrade"},
      {"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
       "Connection: Upgrade\r\n\r\n",
       "missing Sec-WebSocket-Accept"},
      /* wrong accept: rotated, first letter's case changed, last letter
       * changed, truncated, listed twice */
      {"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
       "Connection: Upgrade\r\n"
       "Sec-WebSocket-Accept: 3pPLMBiTxaQ9kYGzzhZRbK+xOo=s\r\n\r\n",
       "Sec-WebSocket-Accept"},
      {"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
       "Connection: Upgrade\r\n"
       "Sec-WebSocket-Accept: S3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
       "Sec-WebSocket-Accept"},
      {"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
       "Connection: Upgrade\r\n"
       "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOp=\r\n\r\n",
       "Sec-WebSocket-Accept"},
      {"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
       "Connection: Upgrade\r\n"
       "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo\r\n\r\n",
       "Sec-WebSocket-Accept"},
      {"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
       "Connection: Upgrade\r\n"
       "Sec-WebSocket-Accept: " RFC_ACCEPT ", " RFC_ACCEPT "\r\n\r\n",
       "Sec-WebSocket-Accept"},
      {"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
       "Connection: Upgrade\r\nSec-WebSocket-Accept: " RFC_ACCEPT "\r\n"
       "Sec-WebSocket-Accept: " RFC_ACCEPT "\r\n\r\n",
       "duplicate Sec-WebSocket-Accept"},
  };
  char why[160];
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    int rc = check_resp_str(bad[i].resp, RFC_KEY, why, sizeof why);
    if (rc != DX_EHANDSHAKE)
      fail_msg("response %zu accepted", i);
    if (strstr(why, bad[i].why_has) == NULL)
      fail_msg("response %zu: reason \"%s\" lacks \"%s\"", i, why,
               bad[i].why_has);
  }
  /* The right accept for a different key is wrong for this one. */
  assert_int_equal(check_resp_str("HTTP/1.1 101 Switching Protocols\r\n"
                                  "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                                  "Sec-WebSocket-Accept: " RFC_ACCEPT
                                  "\r\n\r\n",
                                  "AAAAAAAAAAAAAAAAAAAAAA==", why, sizeof why),
                   DX_EHANDSHAKE);
  assert_non_null(strstr(why, "Sec-WebSocket-Accept"));
  /* Case and list variations of Upgrade/Connection are fine. */
  assert_int_equal(check_resp_str("HTTP/1.1 101 OK\n"
                                  "upgrade: WebSocket\n"
                                  "CONNECTION: keep-alive,UPGRADE\n"
                                  "sec-websocket-accept:  " RFC_ACCEPT " \n\n",
                                  RFC_KEY, why, sizeof why),
                   0);
}

/* Subprotocol and extension offers appear in the request, and the client
 * accepts only a subprotocol it offered. */
static void test_subprotocol_offer_and_check(void **state) {
  (void)state;
  char out[512], why[160];
  char key[DX__WS_KEY_LEN + 1];
  const uint8_t raw[16] = {0};
  dx__ws_make_key(raw, key);
  size_t n = dx__ws_build_request(out, sizeof out, "h", "/", key, "chat, superchat",
                                  "permessage-deflate; client_max_window_bits");
  assert_true(n > 0);
  assert_non_null(strstr(out, "\r\nSec-WebSocket-Protocol: chat, superchat\r\n"));
  assert_non_null(strstr(out, "\r\nSec-WebSocket-Extensions: permessage-deflate; "
                              "client_max_window_bits\r\n"));
  assert_int_equal(dx__ws_build_request(out, sizeof out, "h", "/", key, "a\r\nX: y", NULL), 0);

  n = dx__ws_build_response(out, sizeof out, RFC_ACCEPT, "chat", "permessage-deflate");
  assert_true(n > 0);
  assert_non_null(strstr(out, "\r\nSec-WebSocket-Extensions: permessage-deflate\r\n"));

  static const char offered[] = "chat\0superchat";
  const struct {
    const char *proto_lines;
    int rc;
    const char *chosen;
  } cases[] = {
      {"", 0, NULL},
      {"Sec-WebSocket-Protocol: superchat\r\n", 0, "superchat"},
      {"Sec-WebSocket-Protocol: chat\r\n", 0, "chat"},
      {"Sec-WebSocket-Protocol: Chat\r\n", DX_EHANDSHAKE, NULL}, /* case-sensitive */
      {"Sec-WebSocket-Protocol: mqtt\r\n", DX_EHANDSHAKE, NULL},
      {"Sec-WebSocket-Protocol: chat, superchat\r\n", DX_EHANDSHAKE, NULL},
      {"Sec-WebSocket-Protocol: chat\r\nSec-WebSocket-Protocol: chat\r\n",
       DX_EHANDSHAKE, NULL},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    char head[512];
    int hn = snprintf(head, sizeof head,
                      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                      "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n%s\r\n",
                      RFC_ACCEPT, cases[i].proto_lines);
    dx__http_response r;
    assert_int_equal(dx__http_parse_response(head, (size_t)hn, &r), 0);
    const char *chosen;
    size_t chosen_len;
    int rc = dx__ws_check_protocol(&r, offered, sizeof offered, &chosen,
                                   &chosen_len, why, sizeof why);
    if (rc != cases[i].rc) fail_msg("case %zu: rc %d, want %d", i, rc, cases[i].rc);
    if (rc) {
      assert_non_null(strstr(why, "Sec-WebSocket-Protocol"));
    } else if (cases[i].chosen) {
      assert_int_equal(chosen_len, strlen(cases[i].chosen));
      assert_memory_equal(chosen, cases[i].chosen, chosen_len);
    } else {
      assert_null(chosen);
    }
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_subprotocol_offer_and_check),
      cmocka_unit_test(test_accept_key_rfc_example),
      cmocka_unit_test(test_make_key_rfc_nonce),
      cmocka_unit_test(test_head_end_every_split_point),
      cmocka_unit_test(test_head_end_bare_lf_split_points),
      cmocka_unit_test(test_head_end_one_byte_at_a_time),
      cmocka_unit_test(test_head_end_stops_at_head),
      cmocka_unit_test(test_head_end_hint_skips_old_bytes),
      cmocka_unit_test(test_parse_trims_values),
      cmocka_unit_test(test_parse_rejects_malformed),
      cmocka_unit_test(test_parse_header_limit),
      cmocka_unit_test(test_parse_response),
      cmocka_unit_test(test_has_token),
      cmocka_unit_test(test_check_request_rfc_example),
      cmocka_unit_test(test_check_request_failures),
      cmocka_unit_test(test_check_request_method_and_version),
      cmocka_unit_test(test_check_request_precedence),
      cmocka_unit_test(test_check_request_variations_accepted),
      cmocka_unit_test(test_check_request_quotes_safely),
      cmocka_unit_test(test_build_error_426),
      cmocka_unit_test(test_build_error_others),
      cmocka_unit_test(test_status_text),
      cmocka_unit_test(test_build_response),
      cmocka_unit_test(test_build_request_round_trip),
      cmocka_unit_test(test_check_response_non_101),
      cmocka_unit_test(test_check_response_headers),
  };
  return cmocka_run_group_tests(tests, guard_setup, guard_teardown);
}
