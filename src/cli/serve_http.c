/* duplex serve's HTTP routes. Every worker (loop thread) answers through
 * the same serve_http: it is read-only once serving, but for the server
 * list (filled while the first workers already run, hence the atomic
 * count) and the draining flag. */
#include "serve_http.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "args.h"
#include "proto/utf8.h" /* the exact UTF-8 check the library makes of text */

#define MAX_SERVERS 64

struct serve_http {
  bool metrics;
  const char *token; /* NULL: no /publish */
  dx_http_static *files;
  dx_hub *hub;       /* --rooms' hub; NULL: publishing needs rooms */
  dx_server *servers[MAX_SERVERS];
  atomic_uint nservers;
  atomic_bool draining;
};

serve_http *serve_http_new(bool metrics, const char *publish_token, const char *static_dir) {
  serve_http *h = calloc(1, sizeof *h);
  if (!h) {
    cli_error("serve", "out of memory");
    return NULL;
  }
  h->metrics = metrics;
  h->token = publish_token;
  if (static_dir && !(h->files = dx_http_static_new(static_dir))) {
    cli_error("serve", "--static %s: %s", static_dir, strerror(errno));
    free(h);
    return NULL;
  }
  return h;
}

void serve_http_set_hub(serve_http *h, dx_hub *hub) { h->hub = hub; }

void serve_http_add_server(serve_http *h, dx_server *s) {
  unsigned n = atomic_load_explicit(&h->nservers, memory_order_relaxed);
  if (n == MAX_SERVERS) return;
  h->servers[n] = s;
  atomic_store_explicit(&h->nservers, n + 1, memory_order_release);
}

void serve_http_set_draining(serve_http *h) { atomic_store(&h->draining, true); }

void serve_http_free(serve_http *h) {
  if (!h) return;
  dx_http_static_free(h->files);
  free(h);
}

static const dx_http_field text_plain[] = {{"Content-Type", "text/plain; charset=utf-8"}};

static void respond_text(dx_http_request *r, int status, const char *body) {
  dx_http_respond(r, status, text_plain, 1, body, strlen(body));
}

/* 405 naming what the route takes. */
static void wrong_method(dx_http_request *r, const char *allow) {
  dx_http_field h[] = {{"Allow", allow}};
  char why[80];
  snprintf(why, sizeof why, "%s takes %s", dx_http_path(r), allow);
  dx_http_error(r, 405, why, h, 1);
}

static bool is_get_or_head(const dx_http_request *r) {
  return !strcmp(dx_http_method(r), "GET") || !strcmp(dx_http_method(r), "HEAD");
}

/* ---- /healthz ---- */

static void healthz(serve_http *h, dx_http_request *r) {
  if (!is_get_or_head(r)) return wrong_method(r, "GET, HEAD");
  if (atomic_load(&h->draining)) respond_text(r, 503, "draining\n");
  else respond_text(r, 200, "ok\n");
}

/* ---- /metrics ---- */

typedef struct text {
  char *p;
  size_t len, cap;
  bool failed;
} text;

__attribute__((format(printf, 2, 3))) static void put(text *t, const char *fmt, ...) {
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    size_t room = t->cap - t->len;
    int n = t->failed ? 0 : vsnprintf(t->p ? t->p + t->len : NULL, room, fmt, ap);
    va_end(ap);
    if (t->failed || n < 0) {
      t->failed = true;
      return;
    }
    if ((size_t)n < room) {
      t->len += (size_t)n;
      return;
    }
    size_t cap = t->cap ? t->cap * 2 : 4096;
    while (cap < t->len + (size_t)n + 1) cap *= 2;
    char *p = realloc(t->p, cap);
    if (!p) {
      t->failed = true;
      return;
    }
    t->p = p;
    t->cap = cap;
  }
}

static void family(text *t, const char *name, const char *type, const char *help) {
  put(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void one(text *t, const char *name, const char *type, const char *help, uint64_t v) {
  family(t, name, type, help);
  put(t, "%s %llu\n", name, (unsigned long long)v);
}

/* "closed by peer" -> "closed_by_peer": a label value without spaces. */
static void why_label(char *out, size_t cap, dx_why why) {
  snprintf(out, cap, "%s", dx_why_name(why));
  for (char *p = out; *p; p++)
    if (*p == ' ') *p = '_';
}

static void put_hub_metrics(serve_http *h, text *t) {
  if (!h->hub) return;
  dx_hub_stats hs;
  dx_hub_get_stats(h->hub, &hs);
  one(t, "duplex_publishes_total", "counter", "Messages published (accepted by dx_publish).",
      hs.publishes);
  one(t, "duplex_deliveries_total", "counter", "Messages queued to subscribers, every loop.",
      hs.deliveries);
  one(t, "duplex_slow_consumer_drops_total", "counter",
      "Deliveries refused at a slow subscriber's output cap.", hs.slow_drops);
  one(t, "duplex_topics", "gauge", "Topics with at least one subscriber.", hs.topics);
  if (hs.engine_state >= 0) {
    static const char *states[] = {"down", "connecting", "up"};
    family(t, "duplex_redis_link", "gauge", "The Redis link's state (1 for the current one).");
    for (int i = 0; i < 3; i++)
      put(t, "duplex_redis_link{state=\"%s\"} %d\n", states[i], hs.engine_state == i);
    one(t, "duplex_redis_reconnects_total", "counter", "Times the Redis link came back.",
        hs.engine_reconnects);
    one(t, "duplex_redis_messages_received_total", "counter", "Messages from other nodes.",
        hs.remote_in);
    one(t, "duplex_redis_messages_sent_total", "counter", "Messages handed to Redis.",
        hs.remote_out);
    one(t, "duplex_redis_messages_lost_total", "counter", "Messages that could not reach Redis.",
        hs.remote_lost);
  }
}

static void metrics(serve_http *h, dx_http_request *r) {
  if (!is_get_or_head(r)) return wrong_method(r, "GET, HEAD");
  /* Every field is a uint64_t counter: they add up field by field. */
  _Static_assert(sizeof(dx_server_stats) == (4 + 2 + DX_WHY_COUNT + 1 + 4 + 1 + 6) * sizeof(uint64_t),
                 "dx_server_stats changed: check that it is still all uint64_t counters");
  dx_server_stats sum = {0};
  unsigned n = atomic_load_explicit(&h->nservers, memory_order_acquire);
  for (unsigned i = 0; i < n; i++) {
    dx_server_stats s;
    dx_server_get_stats(h->servers[i], &s);
    uint64_t *a = (uint64_t *)&sum;
    const uint64_t *b = (const uint64_t *)&s;
    for (size_t k = 0; k < sizeof s / sizeof(uint64_t); k++) a[k] += b[k];
  }
  text t = {0};
  one(&t, "duplex_draining", "gauge", "1 once the server drains (SIGTERM), else 0.",
      atomic_load(&h->draining));
  family(&t, "duplex_connections", "gauge", "Connections now, by state.");
  put(&t, "duplex_connections{state=\"connecting\"} %llu\n", (unsigned long long)sum.connecting);
  put(&t, "duplex_connections{state=\"open\"} %llu\n", (unsigned long long)sum.open);
  put(&t, "duplex_connections{state=\"closing\"} %llu\n", (unsigned long long)sum.closing);
  put(&t, "duplex_connections{state=\"http\"} %llu\n", (unsigned long long)sum.http);
  one(&t, "duplex_connections_accepted_total", "counter", "TCP connections accepted.",
      sum.accepted);
  one(&t, "duplex_connections_opened_total", "counter", "WebSocket connections opened.",
      sum.opened);
  family(&t, "duplex_connections_closed_total", "counter",
         "Connections that ended (WebSocket or failed handshake), by why.");
  for (int w = 0; w < DX_WHY_COUNT; w++) {
    char label[40];
    why_label(label, sizeof label, (dx_why)w);
    put(&t, "duplex_connections_closed_total{why=\"%s\"} %llu\n", label,
        (unsigned long long)sum.closed[w]);
  }
  one(&t, "duplex_http_connections_closed_total", "counter", "HTTP connections that ended.",
      sum.http_closed);
  one(&t, "duplex_messages_received_total", "counter", "WebSocket messages received.",
      sum.messages_in);
  one(&t, "duplex_messages_sent_total", "counter", "WebSocket messages sent.", sum.messages_out);
  one(&t, "duplex_received_bytes_total", "counter", "Payload bytes of the messages received.",
      sum.bytes_in);
  one(&t, "duplex_sent_bytes_total", "counter", "Payload bytes of the messages sent.",
      sum.bytes_out);
  one(&t, "duplex_http_requests_total", "counter", "HTTP requests handled.", sum.http_requests);
  family(&t, "duplex_http_responses_total", "counter", "HTTP responses, by status class.");
  for (int c = 1; c <= 5; c++)
    put(&t, "duplex_http_responses_total{class=\"%dxx\"} %llu\n", c,
        (unsigned long long)sum.http_responses[c]);
  put_hub_metrics(h, &t);
  static const dx_http_field type[] = {
      {"Content-Type", "text/plain; version=0.0.4; charset=utf-8"}};
  if (t.failed) dx_http_error(r, 500, "out of memory", NULL, 0);
  else dx_http_respond(r, 200, type, 1, t.p, t.len);
  free(t.p);
}

/* ---- /publish/<topic> ---- */

/* 1 when the request carries "Authorization: Bearer <token>". Compared
 * in time independent of where the first difference is. */
static bool authorized(const serve_http *h, const dx_http_request *r) {
  const char *a = dx_http_header(r, "Authorization");
  if (!a || strncasecmp(a, "Bearer ", 7)) return false;
  a += 7;
  while (*a == ' ') a++;
  size_t la = strlen(a), lt = strlen(h->token);
  unsigned diff = (unsigned)(la != lt);
  for (size_t i = 0; i < lt; i++) diff |= (unsigned char)(a[i < la ? i : 0] ^ h->token[i]);
  return diff == 0;
}

static void publish(serve_http *h, dx_http_request *r, const char *raw_topic) {
  if (strcmp(dx_http_method(r), "POST")) return wrong_method(r, "POST");
  if (!authorized(h, r)) {
    static const dx_http_field ch[] = {{"WWW-Authenticate", "Bearer realm=\"duplex\""}};
    dx_http_error(r, 401, "POST /publish needs \"Authorization: Bearer TOKEN\" (--publish-token)",
                  ch, 1);
    return;
  }
  char topic[DX_TOPIC_MAX + 1];
  long tlen = dx_http_path_decode(raw_topic, strlen(raw_topic), topic, sizeof topic);
  if (tlen <= 0) {
    char why[80];
    snprintf(why, sizeof why, "the topic must be 1 to %d bytes (percent-encoded)", DX_TOPIC_MAX);
    return (void)dx_http_error(r, 400, why, NULL, 0);
  }
  const char *ct = dx_http_header(r, "Content-Type");
  dx_msg_type type =
      ct && !strncasecmp(ct, "application/octet-stream", 24) ? DX_BINARY : DX_TEXT;
  size_t len;
  const uint8_t *body = dx_http_body(r, &len);
  if (type == DX_TEXT && dx__utf8_validate(body, len))
    return (void)dx_http_error(
        r, 400, "the body is not valid UTF-8 (send application/octet-stream for binary)", NULL, 0);
  if (h->hub) {
    int rc = dx_publish(h->hub, topic, (size_t)tlen, type, body, len, NULL);
    if (rc) return (void)dx_http_error(r, rc == DX_ENOMEM ? 503 : 400, dx_strerror(rc), NULL, 0);
    return (void)dx_http_respond(r, 204, NULL, 0, NULL, 0);
  }
  dx_http_error(r, 503, "publishing needs rooms (--rooms)", NULL, 0);
}

void serve_http_handle(serve_http *h, dx_http_request *r) {
  const char *path = dx_http_path(r);
  if (!strcmp(path, "/healthz")) return healthz(h, r);
  if (h->metrics && !strcmp(path, "/metrics")) return metrics(h, r);
  if (h->token && !strncmp(path, "/publish/", 9)) return publish(h, r, path + 9);
  if (h->files) return (void)dx_http_static_serve(h->files, r);
  dx_http_error(r, 404, "no such route", NULL, 0);
}
