/* redis:// URLs for the Redis engine (dx_hub_use_redis): parsed once, with
 * a reason a user can act on when the URL is wrong. Pure string work. */
#ifndef DX_PUBSUB_REDIS_URL_H
#define DX_PUBSUB_REDIS_URL_H

typedef struct dx__redis_url {
  char host[256];     /* without brackets */
  unsigned port;      /* 6379 when the URL has none */
  char user[256];     /* "" for none: AUTH password (the default user) */
  char pass[256];     /* "" with has_pass 0: no AUTH at all */
  int has_pass;
  unsigned db;        /* 0 when the URL has none: no SELECT */
} dx__redis_url;

/* Parses "redis://[[user]:password@]host[:port][/db]" into *u (user and
 * password percent-decoded; an IPv6 host in brackets). Returns 0; DX_EURL
 * with a one-line reason in why[0..cap); or DX_EUNSUPPORTED for rediss://
 * (TLS), which Debian 12's hiredis 0.14 cannot do, also with a reason. */
int dx__redis_url_parse(const char *url, dx__redis_url *u, char *why, unsigned cap);

#endif
