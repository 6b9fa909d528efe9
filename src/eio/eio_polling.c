/* The polling transport: a request's query and what the reference's
 * verify() decides of it, the GET held and the POST handled, and the HTTP
 * callbacks dx_sio_attach installs. */
#include "eio/sio_internal.h"

/* ---------------------------------------------------------------------- */
/* Requests: the query and the routing                                     */
/* ---------------------------------------------------------------------- */


void dx__sio_parse_query(const char *q, size_t n, query *out) {
  memset(out, 0, sizeof *out);
  const char *end = q + n;
  while (q < end) {
    const char *amp = memchr(q, '&', (size_t)(end - q));
    if (!amp) amp = end;
    const char *eq = memchr(q, '=', (size_t)(amp - q));
    if (eq) {
      size_t kl = (size_t)(eq - q), vl = (size_t)(amp - eq - 1);
      if (kl == 3 && !memcmp(q, "EIO", 3) && !out->eio) out->eio = eq + 1, out->eio_len = vl;
      else if (kl == 9 && !memcmp(q, "transport", 9) && !out->transport)
        out->transport = eq + 1, out->transport_len = vl;
      else if (kl == 3 && !memcmp(q, "sid", 3) && !out->sid) out->sid = eq + 1, out->sid_len = vl;
    }
    q = amp + 1;
  }
}

int dx__sio_query_is(const char *p, size_t n, const char *lit) {
  return p && n == strlen(lit) && !memcmp(p, lit, n);
}

static int under_path(const dx_sio *io, const char *path, size_t n) {
  const char *q = memchr(path, '?', n);
  if (q) n = (size_t)(q - path);
  if (n >= io->path_len && !memcmp(path, io->o.path, io->path_len)) return 1;
  return n == io->path_len - 1 && !memcmp(path, io->o.path, n);
}

/* What the reference's verify() decides for a request, in its order:
 * -1 when it may go on, else the Engine.IO error code. */
int dx__sio_verify(dx_sio *io, const query *q, int upgrade, sess **out) {
  *out = NULL;
  int polling = dx__sio_query_is(q->transport, q->transport_len, "polling");
  int ws = dx__sio_query_is(q->transport, q->transport_len, "websocket");
  if ((!polling || !io->o.polling) && (!ws || !io->o.websocket))
    return DX__EIO_ERR_UNKNOWN_TRANSPORT;
  if (q->sid) {
    sess *s = dx__sio_find_sess(io, q->sid, q->sid_len);
    if (!s || s->dead) return DX__EIO_ERR_UNKNOWN_SID;
    if (upgrade) {
      if (!ws || s->transport != T_POLLING || s->upgrading || s->probe || s->closing)
        return DX__EIO_ERR_BAD_REQUEST;
    } else if (!polling || s->transport != T_POLLING) {
      return DX__EIO_ERR_BAD_REQUEST;
    }
    *out = s;
    return -1;
  }
  if (!dx__sio_query_is(q->eio, q->eio_len, "4")) return DX__EIO_ERR_UNSUPPORTED_PROTOCOL_VERSION;
  if (ws && !upgrade) return DX__EIO_ERR_BAD_REQUEST;
  if (io->shutting) return DX__EIO_ERR_FORBIDDEN;
  return -1;
}

void dx__sio_handle_post(sess *s, preq r) {
  dx_sio *io = s->io;
  size_t len = 0;
  const uint8_t *body = r.f ? r.f->body : dx_http_body(r.r, &len);
  if (r.f) len = r.f->len;
  if (len > io->o.max_payload) {
    dx__sio_reply(io, r, 413, "text/plain; charset=UTF-8", "Payload Too Large", 17);
    return;
  }
  /* The decoder writes base64 in place: a copy of ours. */
  uint8_t *copy = malloc(len ? len : 1);
  if (!copy) {
    dx__sio_reply(io, r, 500, "text/plain; charset=UTF-8", "500", 3);
    return;
  }
  if (len) memcpy(copy, body, len);
  dx__eio_reader rd;
  int bad = dx__eio_payload_begin(&rd, copy, len, io->o.max_payload);
  /* Answered before the packets are handled: a handler's emits may wait
   * for the next GET, never on this POST. */
  dx__sio_reply(io, r, 200, "text/html", "ok", 2);
  if (bad) {
    dx__sio_sess_close(s, DX_SIO_PARSE_ERROR, 0);
  } else {
    dx__eio_packet p;
    while (!s->closing && dx__eio_payload_next(&rd, &p)) dx__sio_handle_eio(s, &p);
  }
  free(copy);
}

void dx__sio_handle_get(sess *s, preq r) {
  if (dx__sio_has_get(s)) {
    /* A second GET while one is held: the reference fails the session
     * ("transport error") and answers the newcomer 400. */
    dx__sio_reply(s->io, r, 400, NULL, NULL, 0);
    dx__sio_sess_close(s, DX_SIO_TRANSPORT_ERROR, 0);
    return;
  }
  s->get = r;
  if (s->q.count) dx__sio_answer_get(s, 1);
  else if (s->upgrading) dx__sio_answer_get(s, 0);
}

/* The loop a sid names, when it is another one of this hub's. */
int dx__sio_other_loop(const dx_sio *io, const query *q, unsigned *bit) {
  if (!io->lo || q->sid_len != SID_LEN) return 0;
  const char *c = memchr(DX__SIO_B64URL, q->sid[0], 64);
  if (!c || (unsigned)(c - DX__SIO_B64URL) == dx__hub_bit(io->lo)) return 0;
  *bit = (unsigned)(c - DX__SIO_B64URL);
  return 1;
}

/* The server, of those attached to one dx_options (a chain, newest
 * first), whose path holds `path`; NULL when none does. */
dx_sio *dx__sio_route(dx_sio *head, const char *path, size_t n) {
  for (dx_sio *io = head; io; io = io->chain)
    if (under_path(io, path, n)) return io;
  return NULL;
}

void dx__sio_http(dx_http_request *r) {
  dx_sio *head = dx__http_sio(r);
  const char *path = dx_http_path(r);
  dx_sio *io = dx__sio_route(head, path, strlen(path));
  if (!io) {
    if (head->app.http) head->app.http(r);
    else dx_http_error(r, 404, NULL, NULL, 0);
    return;
  }
  const char *m = dx_http_method(r);
  if (!strcmp(m, "OPTIONS")) {
    dx_http_field h[8];
    size_t n = dx__sio_cors_headers(io, r, h);
    const char *ask = dx_http_header(r, "Access-Control-Request-Headers");
    h[n++] = (dx_http_field){"Access-Control-Allow-Methods", "GET,HEAD,PUT,PATCH,POST,DELETE"};
    if (ask) h[n++] = (dx_http_field){"Access-Control-Allow-Headers", ask};
    dx_http_respond(r, 204, h, n, NULL, 0);
    return;
  }
  if (dx_http_loop(r) != io->loop) {
    dx_http_error(r, 500, "this Socket.IO server runs on another loop", NULL, 0);
    return;
  }
  const char *qs = dx_http_query(r);
  query q;
  dx__sio_parse_query(qs, strlen(qs), &q);
  unsigned bit;
  if ((!strcmp(m, "GET") || !strcmp(m, "POST")) && dx__sio_query_is(q.transport, q.transport_len, "polling") &&
      dx__sio_other_loop(io, &q, &bit)) {
    if (dx__sio_fwd_send(io, r, bit, q.sid, !strcmp(m, "POST"))) dx__sio_respond_error(io, r, DX__EIO_ERR_UNKNOWN_SID);
    return;
  }
  sess *s;
  int code = dx__sio_verify(io, &q, 0, &s);
  if (code >= 0) {
    dx__sio_respond_error(io, r, code);
    return;
  }
  int get = !strcmp(m, "GET"), post = !strcmp(m, "POST");
  if (!s) { /* the handshake */
    if (!get) {
      dx__sio_respond_error(io, r, DX__EIO_ERR_BAD_HANDSHAKE_METHOD);
      return;
    }
    s = dx__sio_sess_new(io, T_POLLING);
    if (!s) {
      dx_http_error(r, 500, NULL, NULL, 0);
      return;
    }
    dx__sio_handle_get(s, (preq){r, NULL});
    return;
  }
  if (get) dx__sio_handle_get(s, (preq){r, NULL});
  else if (post) dx__sio_handle_post(s, (preq){r, NULL});
  else dx__sio_respond_error(io, r, DX__EIO_ERR_BAD_REQUEST);
}

/* A held GET whose connection ended: the client went away ("transport
 * error", as the reference's "poll connection closed prematurely"). */
void dx__sio_http_abort(dx_http_request *r) {
  dx_sio *head = dx__http_sio(r);
  const char *path = dx_http_path(r);
  dx_sio *io = dx__sio_route(head, path, strlen(path));
  if (!io) {
    if (head->app.abort) head->app.abort(r);
    return;
  }
  const char *qs = dx_http_query(r);
  query q;
  dx__sio_parse_query(qs, strlen(qs), &q);
  sess *s = q.sid ? dx__sio_find_sess(io, q.sid, q.sid_len) : NULL;
  for (fwd *f = io->pending; f; f = f->next)
    if (f->r == r) {
      dx__sio_fwd_abort(io, f);
      return;
    }
  if (!s || s->get.r != r) return;
  s->get = (preq){0};
  dx__sio_sess_close(s, DX_SIO_TRANSPORT_ERROR, 0);
}

