/* Engine.IO sessions: their ids and table, the packets queued for the
 * client and the held GET they answer, the heartbeat and the other
 * timers, the Engine.IO packets that come in, and a session's making and
 * ending. */
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "eio/sio_internal.h"

/* ---------------------------------------------------------------------- */
/* Ids and the session table                                               */
/* ---------------------------------------------------------------------- */

/* A fresh id: 15 bytes from OpenSSL's CSPRNG in base64url (no padding):
 * unguessable, so a sid is the session's only credential on polling. */
int dx__sio_new_id(char out[SID_LEN + 1]) {
  unsigned char raw[SID_BYTES];
  if (RAND_bytes(raw, sizeof raw) != 1) return DX_EIO;
  EVP_EncodeBlock((unsigned char *)out, raw, sizeof raw);
  for (int i = 0; i < SID_LEN; i++) {
    if (out[i] == '+') out[i] = '-';
    else if (out[i] == '/') out[i] = '_';
  }
  out[SID_LEN] = 0;
  return 0;
}

static size_t hash_sid(const char *p, size_t n) {
  uint64_t h = 1469598103934665603ULL;
  for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)p[i]) * 1099511628211ULL;
  return (size_t)h;
}

sess *dx__sio_find_sess(dx_sio *io, const char *sid, size_t n) {
  if (!io->tab_cap || n != SID_LEN) return NULL;
  for (sess *s = io->tab[hash_sid(sid, n) & (io->tab_cap - 1)]; s; s = s->hnext)
    if (!memcmp(s->sid, sid, SID_LEN)) return s;
  return NULL;
}

static int table_add(dx_sio *io, sess *s) {
  if (io->n_sess + 1 > io->tab_cap) {
    size_t cap = io->tab_cap ? io->tab_cap * 2 : 64;
    sess **t = calloc(cap, sizeof *t);
    if (!t) return DX_ENOMEM;
    for (size_t i = 0; i < io->tab_cap; i++)
      for (sess *e = io->tab[i], *nx; e; e = nx) {
        nx = e->hnext;
        size_t b = hash_sid(e->sid, SID_LEN) & (cap - 1);
        e->hnext = t[b];
        t[b] = e;
      }
    free(io->tab);
    io->tab = t;
    io->tab_cap = cap;
  }
  size_t b = hash_sid(s->sid, SID_LEN) & (io->tab_cap - 1);
  s->hnext = io->tab[b];
  io->tab[b] = s;
  io->n_sess++;
  return 0;
}

static void table_remove(dx_sio *io, sess *s) {
  sess **pp = &io->tab[hash_sid(s->sid, SID_LEN) & (io->tab_cap - 1)];
  for (; *pp; pp = &(*pp)->hnext)
    if (*pp == s) {
      *pp = s->hnext;
      io->n_sess--;
      return;
    }
}

size_t dx_sio_sessions(const dx_sio *io) { return io ? io->n_sess : 0; }

/* ---------------------------------------------------------------------- */
/* Sending                                                                 */
/* ---------------------------------------------------------------------- */


int dx__sio_has_get(const sess *s) { return s->get.r || s->get.f; }
                    
                    
                    /* The close packet goes in a response of its own, after the one that
                    * carried the last packets: the official client handles a payload's
                    * close at once but its Socket.IO packets on the next tick, so a
                    * DISCONNECT sharing a response with the close would be reported as
                    * "transport close" (and the client would reconnect). The reference
                    * server sends it on the poll after the drain, too. */
                    static void close_packet(sess *s) {
  if (dx__eio_queue_push(&s->q, DX__EIO_CLOSE, 0, NULL, 0) == 0) s->close_queued = 1;
}

/* A packet for the client: straight onto the WebSocket once the session
 * has one, else onto the queue for the next poll (a held GET is answered
 * at the end of the iteration, so a burst of emits shares one response). */
int dx__sio_sess_send(sess *s, int type, int binary, const void *data, size_t len) {
  if (s->ws) {
    if (binary) return dx_send(s->ws, DX_BINARY, data, len) < 0 ? DX_ECLOSED : 0;
    dx__eio_buf *b = &s->io->scratch;
    b->len = 0;
    dx__eio_packet p = {.type = (uint8_t)type, .data = data, .len = len};
    int r = dx__eio_encode_ws(b, &p);
    if (r) return r;
    return dx_send(s->ws, DX_TEXT, b->data, b->len) < 0 ? DX_ECLOSED : 0;
  }
  /* A client that does not come for its packets must not make us hold
   * unbounded memory. Past the cap the packet is refused and the session
   * ends ("transport error", as a WebSocket peer that stops reading ends
   * with its slow-consumer close), at the end of the iteration: the caller
   * may be walking a list of sockets (a broadcast) that closing would
   * change under it. */
  size_t cap = dx__sio_max_buffered_of(&s->io->o);
  if (s->overflow || s->q.bytes > cap || len > cap - s->q.bytes) {
    if (!s->overflow) {
      s->overflow = 1;
      dx__task_queue(s->io->loop, &s->flush);
    }
    return DX_ECLOSED;
  }
  int r = dx__eio_queue_push(&s->q, type, binary, data, len);
  if (r) return r;
  if (dx__sio_has_get(s)) dx__task_queue(s->io->loop, &s->flush);
  return 0;
}

static void flush_task(dx__task *t) {
  sess *s = CONTAINER(t, sess, flush);
  if (s->dead) return;
  if (s->overflow) dx__sio_sess_close(s, DX_SIO_TRANSPORT_ERROR, 0);
  else if (dx__sio_has_get(s)) dx__sio_answer_get(s, 1);
}

/* The CORS headers a polling response carries: none unless origins were
 * configured; "*" echoed as "*" (the request's Origin with credentials,
 * which browsers refuse to pair with "*"); an exact origin only when the
 * request's matches. */
size_t dx__sio_cors_headers(const dx_sio *io, dx_http_request *r, dx_http_field *h) {
  const char *origin = dx_http_header(r, "Origin");
  size_t n = 0;
  if (!io->o.n_cors) return 0;
  const char *allow = NULL;
  for (size_t i = 0; i < io->o.n_cors; i++) {
    if (!strcmp(io->o.cors[i], "*")) {
      allow = io->o.cors_credentials && origin ? origin : "*";
      break;
    }
    if (origin && !strcasecmp(io->o.cors[i], origin)) {
      allow = origin;
      break;
    }
  }
  if (!allow) return 0;
  h[n++] = (dx_http_field){"Access-Control-Allow-Origin", allow};
  if (strcmp(allow, "*")) h[n++] = (dx_http_field){"Vary", "Origin"};
  if (io->o.cors_credentials) h[n++] = (dx_http_field){"Access-Control-Allow-Credentials", "true"};
  return n;
}

int dx__sio_respond(dx_sio *io, dx_http_request *r, int status, const char *type,
                    const void *body, size_t len) {
  dx_http_field h[6];
  size_t n = dx__sio_cors_headers(io, r, h);
  if (type) h[n++] = (dx_http_field){"Content-Type", type};
  return dx_http_respond(r, status, h, n, body, len);
}

void dx__sio_respond_error(dx_sio *io, dx_http_request *r, int code) {
  dx__eio_buf b;
  dx__eio_buf_init(&b, &dx__alloc_std);
  int status = dx__eio_http_error(code, NULL);
  if (dx__eio_http_error_body(&b, code, NULL) == 0)
    dx__sio_respond(io, r, status, "application/json", b.data, b.len);
  else
    dx_http_error(r, 500, NULL, NULL, 0);
  dx__eio_buf_free(&b);
}


/* Answers a polling request, ours or forwarded. */
void dx__sio_reply(dx_sio *io, preq q, int status, const char *type, const void *body,
                   size_t len) {
  if (q.f) dx__sio_fwd_reply(q.f, status, type, body, len);
  else if (dx__sio_respond(io, q.r, status, type, body, len))
    dx_http_error(q.r, 500, NULL, NULL, 0);
}

void dx__sio_reply_error(dx_sio *io, preq q, int code) {
  if (q.r) {
    dx__sio_respond_error(io, q.r, code);
    return;
  }
  dx__eio_buf b;
  dx__eio_buf_init(&b, &dx__alloc_std);
  if (dx__eio_http_error_body(&b, code, NULL) == 0)
    dx__sio_fwd_reply(q.f, dx__eio_http_error(code, NULL), "application/json", b.data, b.len);
  else
    dx__sio_fwd_reply(q.f, 500, "text/plain; charset=UTF-8", "500", 3);
  dx__eio_buf_free(&b);
}

/* Answers the held GET: with what the queue holds (up to maxPayload), or
 * with a noop when with_queue is 0 or the queue is empty (releasing the
 * poll for an upgrade). A closing session whose close packet just left is
 * done with. */
void dx__sio_answer_get(sess *s, int with_queue) {
  preq r = s->get;
  dx__eio_buf b;
  dx__eio_buf_init(&b, &dx__alloc_std);
  int took = 0;
  if (with_queue) took = dx__eio_payload_encode(&s->q, s->io->o.max_payload, &b);
  if (took <= 0) {
    b.len = 0;
    if (dx__eio_buf_putc(&b, '0' + DX__EIO_NOOP)) took = -1;
  }
  s->get = (preq){0};
  if (b.len) dx__sio_reply(s->io, r, 200, "text/plain; charset=UTF-8", b.data, b.len);
  else dx__sio_reply(s->io, r, 500, "text/plain; charset=UTF-8", "500", 3);
  dx__eio_buf_free(&b);
  if (s->closing && !s->dead && !s->q.count) {
    if (s->close_queued) dx__sio_sess_close(s, DX_SIO_TRANSPORT_CLOSE, 0);
    else close_packet(s);
  }
}

/* ---------------------------------------------------------------------- */
/* Engine.IO packets in                                                    */
/* ---------------------------------------------------------------------- */

static void arm_ping(sess *s) {
  s->wait_pong = 0;
  dx__timer_start(s->io->loop, &s->hb, s->io->o.ping_interval);
}

static void hb_fire(dx__timer *t) {
  sess *s = CONTAINER(t, sess, hb);
  if (s->wait_pong) {
    dx__sio_sess_close(s, DX_SIO_PING_TIMEOUT, 0);
    return;
  }
  s->wait_pong = 1;
  dx__timer_start(s->io->loop, &s->hb, s->io->o.ping_timeout);
  dx__sio_sess_send(s, DX__EIO_PING, 0, NULL, 0);
}

static void ctimer_fire(dx__timer *t) {
  sess *s = CONTAINER(t, sess, ctimer);
  /* Either connectTimeout with no namespace joined, or the linger of a
   * closing polling session whose client never came for its close
   * packet. */
  if (s->closing) dx__sio_sess_close(s, DX_SIO_TRANSPORT_CLOSE, 0);
  else if (!s->socks) dx__sio_sess_close(s, DX_SIO_TRANSPORT_CLOSE, 1);
}

/* The probe did not finish the upgrade in time: it is closed, and the
 * session goes on polling. */
static void utimer_fire(dx__timer *t) {
  sess *s = CONTAINER(t, sess, utimer);
  dx_conn *c = s->probe;
  s->probe = NULL;
  s->upgrading = 0;
  if (c) {
    dx_conn_set_user(c, NULL);
    dx_close(c, 1000, NULL);
  }
  if (dx__sio_has_get(s) && s->q.count) dx__task_queue(s->io->loop, &s->flush);
}

void dx__sio_handle_eio(sess *s, const dx__eio_packet *p) {
  dx__sio_packet out;
  int r;
  switch (p->type) {
  case DX__EIO_PONG:
    if (s->wait_pong) arm_ping(s);
    return;
  case DX__EIO_CLOSE:
    dx__sio_sess_close(s, DX_SIO_TRANSPORT_CLOSE, 0);
    return;
  case DX__EIO_MESSAGE:
    if (s->io->raw) {
      s->io->raw((dx_eio_session *)s, p->binary ? DX_BINARY : DX_TEXT, p->data, p->len,
                 s->io->raw_ud);
      return;
    }
    if (p->binary) r = dx__sio_decode_binary(&s->dec, p->data, p->len, &out);
    else r = dx__sio_decode_text(&s->dec, (const char *)p->data, p->len, &out);
    if (r < 0) {
      dx__sio_sess_close(s, DX_SIO_PARSE_ERROR, 0);
      return;
    }
    if (r == 1) {
      dx__sio_handle_packet(s, &out);
      dx__sio_packet_release(&out);
    }
    return;
  case DX__EIO_PING: /* a v4 client does not ping outside the probe */
  case DX__EIO_UPGRADE:
  case DX__EIO_NOOP:
    return;
  default:
    dx__sio_sess_close(s, DX_SIO_PARSE_ERROR, 0);
  }
}

/* ---------------------------------------------------------------------- */
/* Sessions                                                                */
/* ---------------------------------------------------------------------- */

sess *dx__sio_sess_new(dx_sio *io, int transport) {
  sess *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  if (dx__sio_new_id(s->sid) || dx__timer_reserve(io->loop, SESS_TIMERS)) {
    free(s);
    return NULL;
  }
  /* On a hub, the sid's first character names the session's loop, so a
   * polling request that reaches another loop is forwarded to it. */
  if (io->lo) s->sid[0] = DX__SIO_B64URL[dx__hub_bit(io->lo)];
  s->timers = 1;
  s->io = io;
  s->transport = transport;
  dx__eio_queue_init(&s->q, &dx__alloc_std);
  dx__sio_decoder_init(&s->dec, &dx__alloc_std, DX__SIO_MAX_ATTACHMENTS);
  dx__timer_init(&s->hb, hb_fire);
  dx__timer_init(&s->ctimer, ctimer_fire);
  dx__timer_init(&s->utimer, utimer_fire);
  s->flush.run = flush_task;
  if (table_add(io, s)) {
    dx__timer_unreserve(io->loop, SESS_TIMERS);
    dx__sio_decoder_free(&s->dec);
    free(s);
    return NULL;
  }
  /* The open packet first, then the heartbeat and connectTimeout. */
  dx__eio_buf b;
  dx__eio_buf_init(&b, &dx__alloc_std);
  dx__eio_open op = {.sid = s->sid,
                     .upgrade_websocket = transport == T_POLLING && io->o.websocket,
                     .ping_interval = io->o.ping_interval,
                     .ping_timeout = io->o.ping_timeout,
                     .max_payload = io->o.max_payload};
  int r = dx__eio_open_json(&b, &op);
  if (!r) r = dx__eio_queue_push(&s->q, DX__EIO_OPEN, 0, b.data, b.len);
  dx__eio_buf_free(&b);
  if (r) {
    table_remove(io, s);
    dx__timer_unreserve(io->loop, SESS_TIMERS);
    dx__sio_decoder_free(&s->dec);
    dx__eio_queue_clear(&s->q);
    free(s);
    return NULL;
  }
  arm_ping(s);
  if (!io->raw) dx__timer_start(io->loop, &s->ctimer, io->o.connect_timeout);
  if (io->raw && io->o.raw_open) {
    s->opened = 1;
    io->o.raw_open((dx_eio_session *)s, io->o.raw_events_ud);
  }
  return s;
}

static void sess_free(sess *s) {
  dx__eio_queue_clear(&s->q);
  dx__sio_decoder_free(&s->dec);
  free(s);
}

void dx__sio_reap_task(dx__task *t) {
  dx_sio *io = CONTAINER(t, dx_sio, reap);
  while (io->dead_socks) {
    dx_sio_socket *k = io->dead_socks;
    io->dead_socks = k->dnext;
    dx__sio_sock_free(k);
  }
  while (io->dead) {
    sess *s = io->dead;
    io->dead = s->dnext;
    sess_free(s);
  }
  if (io->freeing) dx__sio_io_free(io);
}

/* Ends a session: every socket told `why`, then the transport let go. With
 * tell_client, a polling client still gets what was queued and a close
 * packet on its next GET (the session lingers for it, at most
 * pingInterval + pingTimeout), and a WebSocket one is closed after its
 * queued output; otherwise the session goes at once. */
void dx__sio_sess_close(sess *s, dx_sio_reason why, int tell_client) {
  if (s->dead) return;
  dx_sio *io = s->io;
  if (!s->closing) {
    s->closing = 1;
    while (s->socks) dx__sio_sock_gone(s->socks, why);
    if (s->opened) {
      s->opened = 0;
      if (io->o.raw_close) io->o.raw_close((dx_eio_session *)s, why, io->o.raw_events_ud);
    }
    if (s->dead) return; /* a callback closed it for good meanwhile */
    if (tell_client && !s->ws) {
      dx__timer_stop(io->loop, &s->hb);
      dx__timer_start(io->loop, &s->ctimer, (uint64_t)io->o.ping_interval + io->o.ping_timeout);
      if (!s->q.count) close_packet(s);
      if (dx__sio_has_get(s)) dx__sio_answer_get(s, 1); /* it ends the session once "1" left */
      return;
    }
  }
  s->dead = 1;
  table_remove(io, s);
  dx__timer_stop(io->loop, &s->hb);
  dx__timer_stop(io->loop, &s->ctimer);
  dx__timer_stop(io->loop, &s->utimer);
  dx__timer_unreserve(io->loop, SESS_TIMERS);
  if (dx__sio_has_get(s)) { /* a held poll learns the session is over */
    preq r = s->get;
    s->get = (preq){0};
    dx__sio_reply(io, r, 200, "text/plain; charset=UTF-8", "1", 1);
  }
  if (s->ws) {
    dx_conn_set_user(s->ws, NULL);
    if (dx_conn_state(s->ws) == DX_OPEN) dx_close(s->ws, 1000, NULL);
  }
  if (s->probe) {
    dx_conn_set_user(s->probe, NULL);
    if (dx_conn_state(s->probe) == DX_OPEN) dx_close(s->probe, 1000, NULL);
  }
  s->ws = s->probe = NULL;
  s->dnext = io->dead;
  io->dead = s;
  dx__task_queue_last(io->loop, &io->reap);
}

