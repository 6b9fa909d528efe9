/* ws:// and wss:// URLs; see url.h. */
#include "proto/url.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "duplex_codes.h"

#define FAIL(...) return (snprintf(why, cap, __VA_ARGS__), DX_EURL)

int dx__url_parse(const char *url, dx__url *u, char *why, unsigned cap) {
  memset(u, 0, sizeof *u);
  const char *p;
  if (!strncasecmp(url, "ws://", 5)) {
    p = url + 5;
  } else if (!strncasecmp(url, "wss://", 6)) {
    p = url + 6;
    u->tls = 1;
  } else if (!strncasecmp(url, "http://", 7) || !strncasecmp(url, "https://", 8)) {
    /* The likeliest slip: the page's address instead of the socket's. */
    int s = url[4] == 's' || url[4] == 'S';
    FAIL("the scheme must be ws:// or wss://, not %s:// (try %s%s)", s ? "https" : "http",
         s ? "wss://" : "ws://", url + (s ? 8 : 7));
  } else {
    const char *colon = strstr(url, "://");
    if (colon && colon - url < 16)
      FAIL("the scheme must be ws:// or wss://, not %.*s://", (int)(colon - url), url);
    FAIL("it must start with ws:// or wss:// (ws://host[:port][/path])");
  }
  const char *h = p, *he;
  if (*p == '[') {
    he = strchr(p, ']');
    if (!he) FAIL("the IPv6 address has no closing ']'");
    h = p + 1;
    p = he + 1;
  } else {
    p += strcspn(p, ":/?#");
    he = p;
  }
  size_t hlen = (size_t)(he - h);
  if (hlen == 0) FAIL("it has no host");
  if (hlen >= sizeof u->host) FAIL("the host is longer than %zu bytes", sizeof u->host - 1);
  memcpy(u->host, h, hlen);
  u->port = u->tls ? 443 : 80;
  if (*p == ':') {
    char *end;
    unsigned long port = strtoul(p + 1, &end, 10);
    if (end == p + 1 || p[1] == '-' || p[1] == '+') FAIL("the port is not a number");
    if (port == 0 || port > 65535) FAIL("the port %.*s is out of range (1-65535)",
                                        (int)(end - p - 1), p + 1);
    u->port = (unsigned)port;
    p = end;
  }
  if (*p && *p != '/' && *p != '?') FAIL("unexpected '%c' after the host and port", *p);
  if (strchr(p, '#')) FAIL("a WebSocket URL has no fragment (#...)"); /* §3 */
  u->path = p;
  int v6 = strchr(u->host, ':') != NULL;
  int dflt = u->port == (u->tls ? 443u : 80u);
  snprintf(u->host_hdr, sizeof u->host_hdr, v6 ? "[%s]" : "%s", u->host);
  if (!dflt) {
    size_t n = strlen(u->host_hdr);
    snprintf(u->host_hdr + n, sizeof u->host_hdr - n, ":%u", u->port);
  }
  return 0;
}
