/* HTTP/1.1 on a server's port: the requests that are not WebSocket
 * upgrades. A connection whose first head is not an upgrade is handed here
 * (through the dx__http_ops table the options carry) and serves requests
 * one at a time: keep-alive, pipelining (later requests wait in the input
 * buffer), the limits (431, 413, 411, 408, the keep-alive idle close), and
 * the response API, including bodies produced as the socket drains. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "endpoint.h"
#include "proto/decimal.h"
#include "proto/handshake.h"
#include "proto/http1.h"

/* Bytes of a streamed body produced per round, and what may sit in our
 * queue before the next round waits for the socket. */
#define DX__HTTP_CHUNK (64 * 1024)
/* A response head built on the stack up to this size (larger: heap). */
#define DX__HTTP_HEAD_STACK 2048

struct dx_http_request {
  struct dx__http_conn *hc;
  char *buf; /* owned: the head (NULs written into it) and the body */
  size_t head_len;
  size_t body_len;
  const char *path, *query;
  dx__http_request parsed;
};

typedef struct dx__http_conn {
  dx_conn *c;
  uint8_t *in; /* input not yet handed over as a request: in[in_off..in_off+in_len) */
  size_t in_off, in_len, in_cap;
  size_t scanned;   /* bytes of the input already searched for the head's end */
  size_t head_len;  /* the next request's head is the input's first head_len bytes (0: not yet) */
  uint64_t body_len; /* and its body follows */
  dx_http_request req; /* the request with the application (busy) */
  dx_http_producer body;   /* a body being produced (streaming) */
  uint64_t body_left;
  uint8_t *chunk;
  uint8_t busy : 1;      /* req handed to on_http, its response not all produced */
  uint8_t with_app : 1;  /* req is the application's to answer */
  uint8_t streaming : 1; /* body.read still owes body_left bytes */
  uint8_t dispatching : 1; /* inside the loop that hands requests over */
  uint8_t close_after : 1; /* the current response is the last */
  uint8_t head_only : 1;   /* the current request is a HEAD */
  uint8_t eof : 1;         /* the peer ended its direction */
  uint8_t draining : 1;    /* the server drains: no request after the current one */
  uint8_t timing : 1;      /* c->timer is the request timer (else keep-alive or off) */
  uint8_t continued : 1;   /* "100 Continue" sent for the head in[0..head_len) */
} dx__http_conn;

static const dx__http_ops http_ops;

/* ---- options ------------------------------------------------------------ */

void dx_options_on_http(dx_options *o, dx_on_http cb) {
  o->on_http = cb;
  o->http_ops = cb ? &http_ops : NULL;
}

void dx_options_on_http_abort(dx_options *o, dx_on_http_abort cb) { o->on_http_abort = cb; }

int dx_options_set_http_limits(dx_options *o, size_t max_body, uint32_t request_ms,
                               uint32_t keepalive_ms) {
  if (!o || !request_ms || !keepalive_ms || max_body > (1u << 30)) return DX_EINVAL;
  o->http_max_body = max_body;
  o->http_request_ms = request_ms;
  o->http_keepalive_ms = keepalive_ms;
  return 0;
}

/* ---- responses ------------------------------------------------------------ */

/* "Date:" wants the time of the response; formatting it once a second per
 * thread is enough. */
static const char *date_now(void) {
  static __thread time_t last;
  static __thread char text[DX__HTTP_DATE_LEN + 1];
  time_t now = time(NULL);
  if (now != last || !text[0]) {
    dx__http1_format_date(now, text);
    last = now;
  }
  return text;
}

static int is_field_value(const char *s) {
  for (; *s; s++)
    if ((unsigned char)*s < 0x20 ? *s != '\t' : *s == 0x7f) return 0;
  return 1;
}

/* Checks the application's headers: 0, or DX_EINVAL. *close is set when
 * one of them is "Connection: close". */
static int check_headers(const dx_http_field *h, size_t n, int *close) {
  if (n && !h) return DX_EINVAL;
  for (size_t i = 0; i < n; i++) {
    if (!h[i].name || !h[i].value || !dx__http_is_token(h[i].name, strlen(h[i].name)) ||
        !is_field_value(h[i].value))
      return DX_EINVAL;
    if (!strcasecmp(h[i].name, "Content-Length") || !strcasecmp(h[i].name, "Transfer-Encoding"))
      return DX_EINVAL;
    if (!strcasecmp(h[i].name, "Connection")) {
      if (strcasecmp(h[i].value, "close")) return DX_EINVAL;
      *close = 1;
    }
  }
  return 0;
}

static void count_response(dx__http_conn *hc, int status) {
  dx__count(&dx__endpoint_stats(hc->c->ep)->http_responses[status / 100], 1);
}

/* Queues a response head. 0 or DX_ENOMEM (nothing queued). */
/* A response head being written into a buffer sized beforehand (no
 * bound checks per piece: queue_head counts every byte it will write). */
typedef struct {
  char *p;
  size_t o;
} head_writer;

static void put(head_writer *w, const char *s, size_t n) {
  memcpy(w->p + w->o, s, n);
  w->o += n;
}
static void put_str(head_writer *w, const char *s) { put(w, s, strlen(s)); }
static void put_num(head_writer *w, uint64_t v) { w->o += dx__decimal(w->p + w->o, v); }

static int queue_head(dx__http_conn *hc, int status, const dx_http_field *h, size_t n,
                      uint64_t len, int close) {
  /* Written piece by piece rather than by snprintf, whose format parsing
   * was a tenth of a Socket.IO polling server's instructions. The fixed
   * part (status line up to the reason, Date, Content-Length, Connection,
   * the blank line) fits in 160 bytes beside the reason. */
  const char *reason = dx__http_status_text(status);
  size_t need = 160 + strlen(reason);
  for (size_t i = 0; i < n; i++) need += strlen(h[i].name) + strlen(h[i].value) + 4;
  char stack[DX__HTTP_HEAD_STACK];
  char *buf = need <= sizeof stack ? stack : malloc(need);
  if (!buf) return DX_ENOMEM;
  int keep_alive_10 = !close && hc->req.parsed.minor_version == 0;
  head_writer w = {buf, 0};
  put_str(&w, "HTTP/1.1 ");
  put_num(&w, (uint64_t)status);
  put(&w, " ", 1);
  put_str(&w, reason);
  put_str(&w, "\r\nDate: ");
  put_str(&w, date_now());
  put(&w, "\r\n", 2);
  for (size_t i = 0; i < n; i++) {
    if (!strcasecmp(h[i].name, "Connection")) continue; /* ours follows */
    put_str(&w, h[i].name);
    put(&w, ": ", 2);
    put_str(&w, h[i].value);
    put(&w, "\r\n", 2);
  }
  /* 1xx, 204 and 304 carry no body and no length (RFC 7230 §3.3.2). */
  if (status != 204 && status != 304) {
    put_str(&w, "Content-Length: ");
    put_num(&w, len);
    put(&w, "\r\n", 2);
  }
  if (close) put_str(&w, "Connection: close\r\n");
  else if (keep_alive_10) put_str(&w, "Connection: keep-alive\r\n");
  put(&w, "\r\n", 2);
  int r = dx__conn_write_raw(hc->c, buf, w.o, 0);
  if (buf != stack) free(buf);
  return r ? DX_ENOMEM : 0;
}

/* The request's response is all queued: the connection ends after it, or
 * waits for (or goes on with) the next request. */
static void response_done(dx__http_conn *hc) {
  hc->busy = hc->with_app = hc->streaming = 0;
  free(hc->req.buf);
  hc->req.buf = NULL;
  free(hc->chunk);
  hc->chunk = NULL;
  if (hc->close_after) {
    dx__conn_end_after_output(hc->c);
    return;
  }
  /* The next request (pipelined, or to come) is taken up once this
   * response has left our queue: see on_writable. */
  dx__conn_want_flush(hc->c);
}

/* Starts the response of the request the application holds. */
static int respond(dx_http_request *r, int status, const dx_http_field *h, size_t n,
                   uint64_t len, const void *body, const dx_http_producer *stream) {
  if (!r || !r->hc || status < 200 || status > 599 || (!body && !stream && len)) return DX_EINVAL;
  dx__http_conn *hc = r->hc;
  if (!hc->with_app) return DX_EINVAL;
  /* Ending already (out of memory mid-response, or reading failed): the
   * abort callback follows, and nothing more may be queued. */
  if (hc->c->phase != DX__P_HTTP) return DX_ECLOSED;
  int close = 0;
  if (check_headers(h, n, &close)) return DX_EINVAL;
  close = close || !dx__http1_keep_alive(&r->parsed) || hc->draining || hc->eof;
  int bodyless = hc->head_only || status == 204 || status == 304;
  if (queue_head(hc, status, h, n, len, close)) return DX_ENOMEM;
  if (!bodyless && body && len && dx__conn_write_raw(hc->c, body, len, 0)) {
    /* The head went out alone: the stream is broken, end it. */
    dx__conn_end_after_output(hc->c);
    return DX_ENOMEM;
  }
  count_response(hc, status);
  hc->with_app = 0;
  hc->close_after = (uint8_t)close;
  if (stream && !bodyless && len) {
    hc->body = *stream;
    hc->body_left = len;
    hc->streaming = 1;
    dx__conn_want_flush(hc->c); /* the first piece is produced once the head left */
    return 0;
  }
  if (stream && stream->release) stream->release(stream->ud);
  response_done(hc);
  return 0;
}

int dx_http_respond(dx_http_request *r, int status, const dx_http_field *h, size_t n,
                    const void *body, size_t len) {
  return respond(r, status, h, n, len, body, NULL);
}

int dx_http_respond_body(dx_http_request *r, int status, const dx_http_field *h, size_t n,
                         uint64_t len, const dx_http_producer *body) {
  int rc = body && body->read ? respond(r, status, h, n, len, NULL, body) : DX_EINVAL;
  if (rc && body && body->release) body->release(body->ud);
  return rc;
}

/* "413 Content Too Large: request body of N bytes exceeds M bytes\n" */
static size_t error_text(char *out, size_t cap, int status, const char *why) {
  int n = snprintf(out, cap, "%d %s%s%s\n", status, dx__http_status_text(status),
                   why ? ": " : "", why ? why : "");
  return n < 0 ? 0 : (size_t)n >= cap ? cap - 1 : (size_t)n;
}

int dx_http_error(dx_http_request *r, int status, const char *why, const dx_http_field *h,
                  size_t n) {
  char text[512];
  size_t len = error_text(text, sizeof text, status, why);
  dx_http_field hs[16];
  if (n > 15) return DX_EINVAL;
  hs[0] = (dx_http_field){"Content-Type", "text/plain; charset=utf-8"};
  if (n) {
    if (!h) return DX_EINVAL;
    memcpy(hs + 1, h, n * sizeof *h);
  }
  return dx_http_respond(r, status, hs, n + 1, text, len);
}

/* A limit or a malformed request, answered by duplex itself: the status,
 * the limit named in one line, and the end of the connection. */
static void fail(dx__http_conn *hc, int status, const char *why) {
  char text[300];
  size_t len = error_text(text, sizeof text, status, why);
  char head[200];
  int n = snprintf(head, sizeof head,
                   "HTTP/1.1 %d %s\r\nDate: %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
                   "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                   status, dx__http_status_text(status), date_now(), len);
  count_response(hc, status);
  hc->close_after = 1;
  if (!dx__conn_write_raw(hc->c, head, (size_t)n, 0)) dx__conn_write_raw(hc->c, text, len, 0);
  dx__conn_end_after_output(hc->c);
}

/* ---- the request accessors ----------------------------------------------- */

const char *dx_http_method(const dx_http_request *r) { return r->parsed.method; }
const char *dx_http_path(const dx_http_request *r) { return r->path; }
const char *dx_http_query(const dx_http_request *r) { return r->query; }
int dx_http_minor_version(const dx_http_request *r) { return r->parsed.minor_version; }
void *dx_http_user(const dx_http_request *r) { return dx_conn_user(r->hc->c); }
dx_loop *dx_http_loop(const dx_http_request *r) { return dx_conn_loop(r->hc->c); }
struct dx_sio *dx__http_sio(const dx_http_request *r) { return dx__conn_sio(r->hc->c); }

const char *dx_http_header(const dx_http_request *r, const char *name) {
  for (size_t i = 0; i < r->parsed.num_headers; i++)
    if (!strcasecmp(r->parsed.headers[i].name, name)) return r->parsed.headers[i].value;
  return NULL;
}

int dx_http_header_at(const dx_http_request *r, size_t i, const char **name, const char **value) {
  if (i >= r->parsed.num_headers) return 0;
  *name = r->parsed.headers[i].name;
  *value = r->parsed.headers[i].value;
  return 1;
}

const uint8_t *dx_http_body(const dx_http_request *r, size_t *len) {
  if (len) *len = r->body_len;
  return r->body_len ? (const uint8_t *)r->buf + r->head_len : NULL;
}

long dx_http_path_decode(const char *in, size_t len, char *out, size_t cap) {
  return dx__http1_decode(in, len, out, cap);
}

/* ---- reading requests ------------------------------------------------------ */

static const dx_options *opts(const dx__http_conn *hc) { return &hc->c->ep->opt; }

static int append(dx__http_conn *hc, const uint8_t *p, size_t n) {
  if (!n) return 0;
  if (hc->in_off + hc->in_len + n > hc->in_cap && hc->in_off) {
    /* Requests taken from the front leave a gap, closed here once per
     * read rather than once per request. */
    memmove(hc->in, hc->in + hc->in_off, hc->in_len);
    hc->in_off = 0;
  }
  if (hc->in_len + n > hc->in_cap) {
    size_t cap = hc->in_cap ? hc->in_cap : 1024;
    while (cap < hc->in_len + n) cap *= 2;
    uint8_t *q = realloc(hc->in, cap);
    if (!q) return DX_ENOMEM;
    hc->in = q;
    hc->in_cap = cap;
  }
  memcpy(hc->in + hc->in_off + hc->in_len, p, n);
  hc->in_len += n;
  return 0;
}

/* The request in[0..total) becomes hc->req, its strings NUL-terminated in
 * place; what follows stays in hc->in. 0, or DX_ENOMEM. */
static int take_request(dx__http_conn *hc, size_t total) {
  dx_http_request *r = &hc->req;
  char *buf;
  if (total == hc->in_len) { /* the usual case: hand the buffer over */
    if (hc->in_off) memmove(hc->in, hc->in + hc->in_off, total);
    buf = (char *)hc->in;
    hc->in = NULL;
    hc->in_off = hc->in_len = hc->in_cap = 0;
  } else {
    /* Pipelined requests behind it stay where they are: moving them to
     * the front for each request taken cost a read's worth of copying per
     * request (quadratic in the requests a read brings). */
    if (!(buf = malloc(total))) return DX_ENOMEM;
    memcpy(buf, hc->in + hc->in_off, total);
    hc->in_off += total;
    hc->in_len -= total;
  }
  hc->scanned = 0;
  r->hc = hc;
  r->buf = buf;
  r->head_len = hc->head_len;
  r->body_len = (size_t)hc->body_len;
  hc->head_len = 0;
  hc->body_len = 0;
  hc->continued = 0;
  /* Parsed again at its new address (it parsed before, so it parses now). */
  dx__http_request *p = &r->parsed;
  dx__http_parse_request(buf, r->head_len, p);
  const char *path, *query;
  size_t plen, qlen;
  dx__http1_split_target(p->path, p->path_len, &path, &plen, &query, &qlen);
  /* Every string ends where a delimiter was: a space, ':', CR or LF, '?'. */
  buf[(p->method - buf) + p->method_len] = '\0';
  for (size_t i = 0; i < p->num_headers; i++) {
    dx__http_header *h = &p->headers[i];
    buf[(h->name - buf) + h->name_len] = '\0';
    buf[(h->value - buf) + h->value_len] = '\0';
  }
  buf[(p->path - buf) + p->path_len] = '\0';
  if (qlen || (query > p->path && query[-1] == '?')) {
    buf[(query - buf) - 1] = '\0';
    r->query = query;
  } else {
    r->query = "";
  }
  r->path = path; /* "/" (static) for an absolute-form target without one */
  if (path >= buf && path < buf + r->head_len) buf[(path - buf) + plen] = '\0';
  return 0;
}

static void arm(dx__http_conn *hc, int request_timer) {
  const dx_options *o = opts(hc);
  hc->timing = (uint8_t)request_timer;
  dx__timer_start(dx__conn_loop(hc->c), &hc->c->timer,
                  request_timer ? o->http_request_ms : o->http_keepalive_ms);
}

/* Checks the head in[0..head_len): 0 to go on, else it was refused. */
static int accept_head(dx__http_conn *hc, size_t head_len) {
  dx__http_request req;
  const char *why;
  char text[160];
  if (dx__http_parse_request((const char *)hc->in + hc->in_off, head_len, &req)) {
    fail(hc, 400, "malformed HTTP request");
    return -1;
  }
  const char *path, *query;
  size_t plen, qlen;
  if (dx__http1_split_target(req.path, req.path_len, &path, &plen, &query, &qlen)) {
    fail(hc, 400, "malformed request target");
    return -1;
  }
  /* RFC 7230 §5.4: an HTTP/1.1 request names exactly one Host. */
  size_t hosts = 0;
  for (size_t i = 0; i < req.num_headers; i++)
    hosts += req.headers[i].name_len == 4 && !strncasecmp(req.headers[i].name, "Host", 4);
  if (req.minor_version >= 1 && hosts != 1) {
    fail(hc, 400, hosts ? "more than one Host header" : "missing Host header");
    return -1;
  }
  if (dx__http1_wants_websocket(&req)) {
    fail(hc, 400, "a WebSocket upgrade must be the first request of its connection");
    return -1;
  }
  uint64_t len;
  int st = dx__http1_body_length(&req, &len, &why);
  if (st) {
    fail(hc, st, why);
    return -1;
  }
  if (len > opts(hc)->http_max_body) {
    snprintf(text, sizeof text, "request body of %llu bytes exceeds %zu bytes",
             (unsigned long long)len, opts(hc)->http_max_body);
    fail(hc, 413, text);
    return -1;
  }
  hc->head_len = head_len;
  hc->body_len = len;
  if (len && hc->in_len < head_len + len && dx__http1_expects_continue(&req)) {
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
    count_response(hc, 100);
    dx__conn_write_raw(hc->c, cont, sizeof cont - 1, 0);
  }
  return 0;
}

/* Hands over the requests waiting in the input, one at a time, while the
 * application answers them at once; stops at one it keeps, at an
 * incomplete one, or when our output is above its high-water mark (the
 * peer is not reading its responses: stop reading its requests). */
static void dispatch(dx__http_conn *hc) {
  dx_conn *c = hc->c;
  if (hc->dispatching) return;
  hc->dispatching = 1;
  while (c->phase == DX__P_HTTP && !hc->busy && !hc->close_after) {
    if (dx_conn_buffered_amount(c) > opts(hc)->high_water) break;
    if (!hc->head_len) {
      size_t end = dx__http_head_end((const char *)hc->in + hc->in_off, hc->in_len, hc->scanned);
      hc->scanned = hc->in_len;
      if (!end) {
        size_t limit = opts(hc)->max_header;
        if (hc->in_len >= limit) {
          char text[80];
          snprintf(text, sizeof text, "request head exceeds %zu bytes", limit);
          fail(hc, 431, text);
        } else if (hc->eof || hc->draining) {
          /* Nothing more will come (or is wanted) but a partial head. */
          if (hc->in_len == 0 || hc->eof) dx__conn_end_after_output(c);
          else if (!hc->timing) arm(hc, 1);
        } else if (hc->in_len && !hc->timing) {
          arm(hc, 1); /* a request began: its time runs */
        }
        break;
      }
      if (end > opts(hc)->max_header) {
        char text[80];
        snprintf(text, sizeof text, "request head exceeds %u bytes", opts(hc)->max_header);
        fail(hc, 431, text);
        break;
      }
      if (accept_head(hc, end)) break;
    }
    if (hc->in_len < hc->head_len + hc->body_len) {
      if (hc->eof) dx__conn_end_after_output(c);
      else if (!hc->timing) arm(hc, 1);
      break;
    }
    if (take_request(hc, hc->head_len + (size_t)hc->body_len)) {
      fail(hc, 500, "out of memory");
      break;
    }
    dx__timer_stop(dx__conn_loop(c), &c->timer);
    hc->timing = 0;
    hc->busy = hc->with_app = 1;
    hc->close_after = 0;
    hc->head_only = strcmp(hc->req.parsed.method, "HEAD") == 0;
    dx__count(&dx__endpoint_stats(c->ep)->http_requests, 1);
    opts(hc)->on_http(&hc->req);
  }
  if (c->phase == DX__P_HTTP && !hc->busy && !hc->in_len && !hc->close_after && !hc->eof) {
    if (hc->draining) dx__conn_end_after_output(c);
    else arm(hc, 0); /* idle between requests: the keep-alive time runs */
  }
  /* Bytes of later requests wait while one is being answered, or while
   * the peer leaves its answers unread (our output above the high-water
   * mark), up to a head's worth; reading on would only fill memory. */
  if (c->phase == DX__P_HTTP && !hc->eof) {
    int stalled = hc->busy || dx_conn_buffered_amount(c) > opts(hc)->high_water;
    dx__conn_pause_input(c, stalled && hc->in_len >= opts(hc)->max_header);
  }
  /* A callback may have ended the connection (dx_server_free): its state
   * is gone then. */
  if (c->http) hc->dispatching = 0;
}

/* ---- the hooks the connection calls ---------------------------------------- */

static void http_input(dx_conn *c, const uint8_t *buf, size_t n) {
  dx__http_conn *hc = c->http;
  if (append(hc, buf, n)) {
    fail(hc, 500, "out of memory");
    return;
  }
  if (!hc->busy) dispatch(hc);
  else if (hc->in_len >= opts(hc)->max_header) dx__conn_pause_input(c, 1);
}

static void http_begin(dx_conn *c, const char *head, size_t head_len, const uint8_t *rest,
                       size_t n) {
  dx__http_conn *hc = calloc(1, sizeof *hc);
  if (!hc) {
    dx__conn_finish(c, DX_WHY_INTERNAL_ERROR, DX_CLOSE_ABNORMAL, "out of memory");
    return;
  }
  hc->c = c;
  c->http = hc;
  /* The first head was read under the handshake timeout; its body (if
   * any) has the request time from now. */
  dx__timer_stop(dx__conn_loop(c), &c->timer);
  if (append(hc, (const uint8_t *)head, head_len) || append(hc, rest, n)) {
    fail(hc, 500, "out of memory");
    return;
  }
  dispatch(hc);
}

/* Produces the next pieces of a streamed body while our queue is empty. */
static void http_writable(dx_conn *c) {
  dx__http_conn *hc = c->http;
  if (!hc->streaming) {
    if (!hc->busy) dispatch(hc);
    return;
  }
  if (!hc->chunk && !(hc->chunk = malloc(DX__HTTP_CHUNK))) {
    dx__conn_finish(c, DX_WHY_INTERNAL_ERROR, DX_CLOSE_ABNORMAL, "out of memory");
    return;
  }
  size_t want = hc->body_left < DX__HTTP_CHUNK ? (size_t)hc->body_left : DX__HTTP_CHUNK;
  long got = hc->body.read(hc->body.ud, hc->chunk, want);
  if (c->phase == DX__P_DONE) return;
  if (got <= 0 || (size_t)got > want || dx__conn_write_raw(c, hc->chunk, (size_t)got, 0)) {
    /* The promised length cannot be kept: the client must see the
     * response end short, not a different one. */
    dx__conn_finish(c, DX_WHY_TRANSPORT_ERROR, DX_CLOSE_ABNORMAL,
                    "HTTP response body could not be produced");
    return;
  }
  hc->body_left -= (uint64_t)got;
  if (hc->body_left) return;
  hc->streaming = 0;
  if (hc->body.release) hc->body.release(hc->body.ud);
  hc->body.release = NULL;
  response_done(hc);
}

static void http_timer(dx_conn *c) {
  dx__http_conn *hc = c->http;
  if (hc->busy) return;
  if (hc->timing) {
    char text[80];
    snprintf(text, sizeof text, "request not received within %u ms", opts(hc)->http_request_ms);
    fail(hc, 408, text);
    return;
  }
  /* Idle for the keep-alive time: close without a word (RFC 7230 §6.5),
   * unless a response is still on its way out. */
  if (dx_conn_buffered_amount(c)) arm(hc, 0);
  else dx__conn_end_after_output(c);
}

static void http_eof(dx_conn *c) {
  dx__http_conn *hc = c->http;
  if (hc->with_app) {
    /* The client left while the application holds its request (a long
     * poll): nobody will read the answer. Requests it sent before it
     * stopped writing are still answered below. */
    dx__conn_finish(c, DX_WHY_TRANSPORT_CLOSE, DX_CLOSE_ABNORMAL, "client closed the connection");
    return;
  }
  hc->eof = 1;
  /* Level-triggered: an EOF keeps the socket readable. */
  dx__conn_pause_input(c, 1);
  if (!hc->busy) dispatch(hc);
}

static void http_drain(dx_conn *c) {
  dx__http_conn *hc = c->http;
  hc->draining = 1;
  if (!hc->busy && !hc->in_len) dx__conn_end_after_output(c);
}

static void http_end(dx_conn *c, int silent) {
  dx__http_conn *hc = c->http;
  int held = hc->with_app;
  hc->with_app = 0; /* answering it from the abort callback is refused */
  if (held && !silent && c->ep->opt.on_http_abort) c->ep->opt.on_http_abort(&hc->req);
  if (hc->streaming && hc->body.release) hc->body.release(hc->body.ud);
  dx__count(&dx__endpoint_stats(c->ep)->http_closed, 1);
  free(hc->req.buf);
  free(hc->chunk);
  free(hc->in);
  free(hc);
  c->http = NULL;
}

static const dx__http_ops http_ops = {http_begin, http_input, http_writable, http_timer,
                                      http_eof,   http_drain, http_end};
