/* ws:// and wss:// URLs (RFC 6455 §3): parsed once, for the client and for
 * the tool's load generator, with a reason a user can act on when the URL
 * is wrong. Pure string work: no resolver, no allocation. */
#ifndef DX_PROTO_URL_H
#define DX_PROTO_URL_H
#include <stddef.h>

typedef struct dx__url {
  int tls;             /* wss:// */
  char host[256];      /* without brackets */
  char host_hdr[300];  /* the Host header's value: the port only when not the default */
  unsigned port;       /* 1-65535; 80 or 443 when the URL has none */
  const char *path;    /* "/..." or "?..." inside the URL, or "" */
} dx__url;

/* Parses url into *u. Returns 0, or DX_EURL with a one-line reason in
 * why[0..cap): the scheme (with the ws:// spelling of an http(s):// URL),
 * a missing host, a port out of range, a fragment, ... */
int dx__url_parse(const char *url, dx__url *u, char *why, unsigned cap);

/* The host[:port] part at *pp, up to the first ':', '/', '?' or '#' after
 * it (an IPv6 address in brackets, copied without them), for every URL
 * scheme duplex reads (ws://, redis://). Copies the host NUL-terminated into
 * host[0..hcap), sets *port (dflt_port when none is given), advances *pp
 * past them and returns 0; or DX_EURL with a one-line reason in why. */
int dx__url_host_port(const char **pp, char *host, size_t hcap, unsigned dflt_port,
                      unsigned *port, char *why, unsigned cap);

#endif
