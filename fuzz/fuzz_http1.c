/* libFuzzer target for src/proto/http1.c (the HTTP/1.1 request semantics
 * the HTTP layer uses after the head parser).
 *
 * Input: byte 0 the output capacity for decoding (1..256), the rest the
 * text, used three ways: as a request head (when it holds one that
 * parses), as a percent-encoded path, and as a header value (a date, an
 * If-None-Match list).
 *
 * Checked: every function returns a documented value; a body length is
 * only given with status 0 and a reason only with a refusal; a split
 * target's path and query lie inside the target; decoding writes a
 * NUL-terminated string of the length it returns, within the capacity,
 * with no NUL inside; a path accepted as below its root has no "." or
 * ".." segment; a parsed date formats to a date that parses to the same
 * time; an entity tag always matches itself and "*". Inputs sit exactly
 * at the end of a heap block, so ASan catches any read past them. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "duplex.h"
#include "fuzz_check.h"
#include "proto/http1.h"

static int has_dot_segment(const char *p) {
  for (const char *s = p; *s;) {
    while (*s == '/') s++;
    const char *e = s;
    while (*e && *e != '/') e++;
    if ((e - s == 1 && s[0] == '.') || (e - s == 2 && s[0] == '.' && s[1] == '.')) return 1;
    s = e;
  }
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  size_t cap = (size_t)data[0] + 1;
  const char *text = (const char *)data + 1;
  size_t len = size - 1;
  char *exact = malloc(len ? len : 1); /* no byte to spare: over-reads fault */
  if (!exact) return 0;
  memcpy(exact, text, len);

  /* As a request head. */
  size_t head = dx__http_head_end(exact, len, 0);
  dx__http_request r;
  if (head && dx__http_parse_request(exact, head, &r) == 0) {
    uint64_t body = 7;
    const char *why = NULL;
    int st = dx__http1_body_length(&r, &body, &why);
    CHECK(st == 0 || st == 400 || st == 411);
    CHECK(st ? why != NULL && body == 0 : why == NULL);
    int k = dx__http1_keep_alive(&r), e = dx__http1_expects_continue(&r),
        w = dx__http1_wants_websocket(&r);
    CHECK((k | e | w) <= 1);
    const char *p, *q;
    size_t pl, ql;
    if (dx__http1_split_target(r.path, r.path_len, &p, &pl, &q, &ql) == 0) {
      CHECK(pl >= 1);
      CHECK((p >= r.path && p + pl <= r.path + r.path_len) || (pl == 1 && p[0] == '/'));
      CHECK(q >= r.path && q + ql <= r.path + r.path_len);
    }
  }

  /* As a path. */
  char *out = malloc(cap);
  if (out) {
    long n = dx__http1_decode(exact, len, out, cap);
    CHECK(n >= -1);
    if (n >= 0) {
      CHECK((size_t)n < cap && strlen(out) == (size_t)n);
      if (dx__http1_path_is_below(out) == 0) CHECK(out[0] == '/' && !has_dot_segment(out));
      const char *mime = dx__http1_mime_type(dx__http1_extension(out));
      CHECK(mime && *mime);
    }
    free(out);
  }

  /* As a header value. */
  char *value = malloc(len + 1);
  if (value) {
    memcpy(value, text, len);
    value[len] = '\0';
    time_t t, t2;
    if (dx__http1_parse_date(value, &t) == 0) {
      char again[DX__HTTP_DATE_LEN + 1];
      dx__http1_format_date(t, again);
      CHECK(dx__http1_parse_date(again, &t2) == 0 && t2 == t);
    }
    int m = dx__http1_etag_match(value, "\"fuzz-1\"");
    CHECK(m == 0 || m == 1);
    /* A lone quoted tag matches itself, and "*" matches anything. */
    const char *end = len >= 2 && value[0] == '"' ? strchr(value + 1, '"') : NULL;
    if (end && end[1] == '\0') CHECK(dx__http1_etag_match(value, value) == 1);
    CHECK(dx__http1_etag_match("*", value) == 1);
    free(value);
  }
  free(exact);
  return 0;
}
