/* ws:// and wss:// URLs; see url.h. */
#include "proto/url.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "duplex_codes.h"

#define FAIL(...) return (snprintf(why, cap, __VA_ARGS__), DX_EURL)

int dx__url_host_port(const char **pp, char *host, size_t hcap, unsigned dflt_port,
                      unsigned *port, char *why, unsigned cap) {
  const char *p = *pp, *h = p, *he;
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
  if (hlen >= hcap) FAIL("the host is longer than %zu bytes", hcap - 1);
  memcpy(host, h, hlen);
  host[hlen] = 0;
  *port = dflt_port;
  if (*p == ':') {
    char *end;
    unsigned long n = strtoul(p + 1, &end, 10);
    if (end == p + 1 || p[1] == '-' || p[1] == '+') FAIL("the port is not a number");
    if (n == 0 || n > 65535) FAIL("the port %.*s is out of range (1-65535)",
                                  (int)(end - p - 1), p + 1);
    *port = (unsigned)n;
    p = end;
  }
  *pp = p;
  return 0;
}

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
  if (dx__url_host_port(&p, u->host, sizeof u->host, u->tls ? 443 : 80, &u->port, why, cap))
    return DX_EURL;
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
