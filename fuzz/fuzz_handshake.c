/* libFuzzer target for src/proto/handshake.c.
 *
 * Input: byte 0 mode (bit 0: treat the text as a response rather than a
 * request; bit 1: pass NULL for the accept output; bits 2-7: the `why`
 * capacity), byte 1 the step for the incremental head search, the rest
 * the text.
 *
 * Checked: dx__http_head_end fed incrementally agrees with one call and
 * never reads outside what it was promised (ASan poisoning: nothing past
 * `len`, nothing more than 3 bytes before `last_len`); a parsed head only
 * points into the buffer and respects the documented syntax; the check
 * functions return documented values and NUL-terminate `why`; and what
 * the build functions write parses back and passes the matching check
 * (a 101 built for an accepted request satisfies dx__ws_check_response, a
 * request built from fuzzed host/path satisfies dx__ws_check_request). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "duplex.h"
#include "proto/handshake.h"

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#include <sanitizer/asan_interface.h>
#define POISON(p, n) __asan_poison_memory_region((p), (n))
#define UNPOISON(p, n) __asan_unpoison_memory_region((p), (n))
#endif
#endif
#ifndef POISON
#define POISON(p, n) ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#include "fuzz_check.h"

static int within(const char *p, size_t n, const char *buf, size_t len) {
  return n == 0 || (p >= buf && p + n <= buf + len);
}

static int is_tchar(unsigned char c) {
  if (c >= '0' && c <= '9') return 1;
  if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') return 1;
  return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static int ci_eq(const char *a, size_t an, const char *b, size_t bn) {
  if (an != bn) return 0;
  for (size_t i = 0; i < an; i++) {
    unsigned char x = (unsigned char)a[i], y = (unsigned char)b[i];
    if (x >= 'A' && x <= 'Z') x += 32;
    if (y >= 'A' && y <= 'Z') y += 32;
    if (x != y) return 0;
  }
  return 1;
}

static void check_headers(const dx__http_header *h, size_t n, const char *buf,
                          size_t len) {
  CHECK(n <= DX__HTTP_MAX_HEADERS);
  for (size_t i = 0; i < n; i++) {
    CHECK(h[i].name_len > 0);
    CHECK(within(h[i].name, h[i].name_len, buf, len));
    CHECK(within(h[i].value, h[i].value_len, buf, len));
    for (size_t k = 0; k < h[i].name_len; k++) CHECK(is_tchar((unsigned char)h[i].name[k]));
    for (size_t k = 0; k < h[i].value_len; k++) {
      unsigned char c = (unsigned char)h[i].value[k];
      CHECK(c != '\r' && c != '\n' && c != 0);
    }
    if (h[i].value_len) {
      CHECK(h[i].value[0] != ' ' && h[i].value[0] != '\t');
      char last = h[i].value[h[i].value_len - 1];
      CHECK(last != ' ' && last != '\t');
    }
    /* dx__http_find needs a NUL-terminated name. */
    char name[256];
    if (h[i].name_len < sizeof name) {
      memcpy(name, h[i].name, h[i].name_len);
      name[h[i].name_len] = 0;
      const dx__http_header *f = dx__http_find(h, n, name);
      CHECK(f != NULL && f <= &h[i]);
      CHECK(ci_eq(f->name, f->name_len, name, h[i].name_len));
    }
  }
}

static void check_why(const char *why, size_t cap) {
  if (cap == 0) return;
  CHECK(memchr(why, 0, cap) != NULL);
}

/* dx__http_head_end in steps over a buffer where only [last-3, len) may
 * be read. Returns the head length found (0 if none). */
static size_t head_end_incremental(const char *text, size_t n, unsigned step) {
  char *buf = malloc(n ? n : 1);
  CHECK(buf);
  memcpy(buf, text, n);
  size_t last = 0, found = 0;
  size_t len = 0;
  while (len < n) {
    len += step;
    if (len > n) len = n;
    /* Poison what must not be read: everything at or past len, and the
     * already-scanned bytes more than 3 back. */
    if (n > len) POISON(buf + len, n - len);
    if (last > 3) POISON(buf, last - 3);
    size_t r = dx__http_head_end(buf, len, last);
    UNPOISON(buf, n);
    CHECK(r <= len);
    if (r) {
      found = r;
      break;
    }
    last = len;
    step = step * 3 % 41 + 1;
  }
  free(buf);
  return found;
}

static const char KEY[] = "dGhlIHNhbXBsZSBub25jZQ==";

static void check_request_text(const char *buf, size_t head, uint8_t mode) {
  dx__http_request req;
  memset(&req, 0xA5, sizeof req);
  int r = dx__http_parse_request(buf, head, &req);
  CHECK(r == 0 || r == DX_EPROTO);
  if (r != 0) return;
  CHECK(req.method_len > 0 && within(req.method, req.method_len, buf, head));
  CHECK(req.path_len > 0 && within(req.path, req.path_len, buf, head));
  CHECK(req.minor_version >= 0 && req.minor_version <= 9);
  check_headers(req.headers, req.num_headers, buf, head);

  size_t why_cap = (size_t)(mode >> 2);
  char why[64];
  char accept[DX__WS_ACCEPT_LEN + 1];
  memset(accept, 'x', sizeof accept);
  int want_accept = !(mode & 2);
  int st = dx__ws_check_request(&req, want_accept ? accept : NULL,
                                why_cap ? why : NULL, why_cap);
  CHECK(st == 0 || st == 400 || st == 405 || st == 426);
  check_why(why, why_cap);
  char out[1024];
  if (st != 0) {
    /* The error response we would send parses back with that status. */
    char reason[64] = "";
    if (why_cap) memcpy(reason, why, why_cap);
    size_t n = dx__http_build_error(out, sizeof out, st, reason);
    CHECK(n > 0 && n < sizeof out && out[n] == 0);
    size_t he = dx__http_head_end(out, n, 0);
    CHECK(he > 0 && he <= n);
    dx__http_response resp;
    CHECK(dx__http_parse_response(out, he, &resp) == 0);
    CHECK(resp.status == st);
    return;
  }
  /* Accepted: the key is there and valid, the 101 we build passes the
   * client's check for that key. */
  const dx__http_header *k = dx__http_find(req.headers, req.num_headers,
                                           "Sec-WebSocket-Key");
  CHECK(k && k->value_len == DX__WS_KEY_LEN);
  char key[DX__WS_KEY_LEN + 1];
  memcpy(key, k->value, DX__WS_KEY_LEN);
  key[DX__WS_KEY_LEN] = 0;
  char acc2[DX__WS_ACCEPT_LEN + 1];
  dx__ws_accept_key(key, DX__WS_KEY_LEN, acc2);
  CHECK(strlen(acc2) == DX__WS_ACCEPT_LEN);
  if (want_accept) CHECK(memcmp(accept, acc2, sizeof acc2) == 0);
  size_t n = dx__ws_build_response(out, sizeof out, acc2, NULL, NULL);
  CHECK(n > 0 && out[n] == 0);
  CHECK(dx__http_head_end(out, n, 0) == n);
  dx__http_response resp;
  CHECK(dx__http_parse_response(out, n, &resp) == 0);
  CHECK(resp.status == 101);
  char w[128];
  CHECK(dx__ws_check_response(&resp, key, w, sizeof w) == 0);
  /* And not for another key. */
  if (strcmp(key, KEY) != 0)
    CHECK(dx__ws_check_response(&resp, KEY, w, sizeof w) == DX_EHANDSHAKE);
}

static void check_response_text(const char *buf, size_t head, uint8_t mode) {
  dx__http_response resp;
  memset(&resp, 0xA5, sizeof resp);
  int r = dx__http_parse_response(buf, head, &resp);
  CHECK(r == 0 || r == DX_EPROTO);
  if (r != 0) return;
  /* Three digits. (000-099 are not HTTP status codes, but a response
   * carrying one fails dx__ws_check_response anyway.) */
  CHECK(resp.status >= 0 && resp.status <= 999);
  CHECK(resp.minor_version >= 0 && resp.minor_version <= 9);
  CHECK(within(resp.reason, resp.reason_len, buf, head));
  check_headers(resp.headers, resp.num_headers, buf, head);
  size_t why_cap = (size_t)(mode >> 2);
  char why[64];
  int st = dx__ws_check_response(&resp, KEY, why_cap ? why : NULL, why_cap);
  CHECK(st == 0 || st == DX_EHANDSHAKE);
  check_why(why, why_cap);
  if (st == 0) CHECK(resp.status == 101);
}

/* A request built from fuzzed host and path either is refused by the
 * builder or parses back and passes the server's check. */
static void check_build_request(const uint8_t *d, size_t n) {
  if (n < 18) return;
  char key[DX__WS_KEY_LEN + 1];
  dx__ws_make_key(d, key);
  CHECK(strlen(key) == DX__WS_KEY_LEN);
  d += 16;
  n -= 16;
  size_t hl = d[0] % 40;
  d++;
  n--;
  if (hl > n) hl = n;
  char host[64], path[256];
  memcpy(host, d, hl);
  host[hl] = 0;
  size_t pl = n - hl < sizeof path - 1 ? n - hl : sizeof path - 1;
  memcpy(path, d + hl, pl);
  path[pl] = 0;
  char out[512];
  size_t len = dx__ws_build_request(out, sizeof out, host, path, key, NULL, NULL);
  if (len == 0) return;
  CHECK(len < sizeof out && out[len] == 0);
  CHECK(dx__http_head_end(out, len, 0) == len);
  dx__http_request req;
  CHECK(dx__http_parse_request(out, len, &req) == 0);
  CHECK(req.path_len == strlen(path) && memcmp(req.path, path, req.path_len) == 0);
  char acc[DX__WS_ACCEPT_LEN + 1];
  char why[128];
  int st = dx__ws_check_request(&req, acc, why, sizeof why);
  if (st != 0) {
    fprintf(stderr, "built request refused (%d: %s):\n%s\n", st, why, out);
    abort();
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2) return 0;
  uint8_t mode = data[0];
  unsigned step = data[1] % 64 + 1;
  const char *text = (const char *)data + 2;
  size_t n = size - 2;

  /* One call over an exact copy, then incrementally: they agree, and the
   * head ends at an LF with no earlier end. */
  char *copy = malloc(n ? n : 1);
  CHECK(copy);
  memcpy(copy, text, n);
  size_t head = dx__http_head_end(copy, n, 0);
  CHECK(head <= n);
  if (head) {
    CHECK(copy[head - 1] == '\n');
    CHECK(dx__http_head_end(copy, head - 1, 0) == 0);
  }
  CHECK(head_end_incremental(text, n, step) == head);
  /* A last_len past len (the caller's buffer shrank) counts as 0. */
  CHECK(dx__http_head_end(copy, n, n + 1 + step) == head);

  if (head) {
    /* Parse over an exactly sized copy of the head. */
    char *h = malloc(head);
    CHECK(h);
    memcpy(h, copy, head);
    if (mode & 1)
      check_response_text(h, head, mode);
    else
      check_request_text(h, head, mode);
    free(h);
  }
  size_t tl = n < 200 ? n : 200;
  int t = dx__http_has_token(copy, tl, "websocket");
  CHECK(t == 0 || t == 1);
  free(copy);

  check_build_request(data + 2, n);
  return 0;
}
