/* redis:// URLs; see redis_url.h. */
#include "pubsub/redis_url.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "duplex_codes.h"
#include "proto/url.h"

#define FAIL(...) return (snprintf(why, cap, __VA_ARGS__), DX_EURL)

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Percent-decodes s[0..n) into out[0..ocap), NUL-terminated. 0, or -1 for
 * a malformed escape, -2 for an escaped NUL (AUTH takes it, but a C string
 * cannot hold it), -3 when it does not fit. */
static int unescape(const char *s, size_t n, char *out, size_t ocap) {
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    int c = (unsigned char)s[i];
    if (c == '%') {
      int hi = i + 1 < n ? hexval(s[i + 1]) : -1;
      int lo = i + 2 < n ? hexval(s[i + 2]) : -1;
      if (hi < 0 || lo < 0) return -1;
      c = hi << 4 | lo;
      if (c == 0) return -2;
      i += 2;
    }
    if (o + 1 >= ocap) return -3;
    out[o++] = (char)c;
  }
  out[o] = 0;
  return 0;
}

static int unescape_part(const char *what, const char *s, size_t n, char *out, size_t ocap,
                         char *why, unsigned cap) {
  switch (unescape(s, n, out, ocap)) {
  case -1: FAIL("the %s has a '%%' that is not followed by two hex digits (write '%%25' for '%%')", what);
  case -2: FAIL("the %s contains %%00 (a NUL byte), which is not supported", what);
  case -3: FAIL("the %s is longer than %zu bytes", what, ocap - 1);
  }
  return 0;
}

int dx__redis_url_parse(const char *url, dx__redis_url *u, char *why, unsigned cap) {
  memset(u, 0, sizeof *u);
  if (!strncasecmp(url, "rediss://", 9)) {
    snprintf(why, cap, "rediss:// (TLS to Redis) is not supported: this build's hiredis "
             "(0.14, Debian 12) has no TLS; use redis:// over a trusted network or a TLS tunnel");
    return DX_EUNSUPPORTED;
  }
  if (strncasecmp(url, "redis://", 8)) {
    const char *colon = strstr(url, "://");
    if (colon && colon - url < 16)
      FAIL("the scheme must be redis://, not %.*s://", (int)(colon - url), url);
    FAIL("it must start with redis:// (redis://[[user]:password@]host[:port][/db])");
  }
  const char *p = url + 8;
  /* The last '@' ends the user info, so a password may hold '@' or '/'
   * unescaped; the host, port and db never contain one. */
  const char *at = strrchr(p, '@');
  if (at) {
    const char *colon = memchr(p, ':', (size_t)(at - p));
    if (!colon)
      FAIL("the part before '@' needs a password: redis://:password@host or "
           "redis://user:password@host");
    if (unescape_part("user name", p, (size_t)(colon - p), u->user, sizeof u->user, why, cap) ||
        unescape_part("password", colon + 1, (size_t)(at - colon - 1), u->pass, sizeof u->pass,
                      why, cap))
      return DX_EURL;
    u->has_pass = 1;
    p = at + 1;
  }
  if (dx__url_host_port(&p, u->host, sizeof u->host, 6379, &u->port, why, cap)) return DX_EURL;
  if (*p == '/') {
    p++;
    if (*p) {
      char *end;
      if (*p < '0' || *p > '9') FAIL("the database must be a number (redis://host/0)");
      unsigned long db = strtoul(p, &end, 10);
      if (db > 1000000) FAIL("the database number %lu is out of range", db);
      u->db = (unsigned)db;
      p = end;
    }
  }
  if (*p == '?') FAIL("query parameters (?...) are not supported in a redis:// URL");
  if (*p) FAIL("unexpected '%c' after the host, port and database", *p);
  return 0;
}
