/* The WebSocket transport: a direct WebSocket session, the upgrade of a
 * polling one (the probe, and its hand-off to the session's loop when it
 * reached another), and the WebSocket callbacks dx_sio_attach installs. */
#include "eio/sio_internal.h"

/* ---------------------------------------------------------------------- */
/* WebSocket connections                                                   */
/* ---------------------------------------------------------------------- */

static dx_sio *conn_route(const dx_conn *c) {
  const char *p = dx_conn_path(c);
  return dx__sio_route(dx__conn_sio(c), p, strlen(p));
}

static void conn_query(const dx_conn *c, query *q) {
  const char *p = dx_conn_path(c);
  const char *qs = strchr(p, '?');
  dx__sio_parse_query(qs ? qs + 1 : "", qs ? strlen(qs + 1) : 0, q);
}

/* ---- an upgrade that reached another loop than its session's ----------- */

/* On the session's loop: the connection arrives, and a server of this loop
 * attached to the Socket.IO server of the same hub adopts it; the upgrade
 * is then decided here (sio_accept again), as if this loop had accepted it:
 * a session gone meanwhile gets "Session ID unknown". When no server here
 * takes it (freed, shutting down) the connection is closed. */
static void handoff_arrive(dx_loop *loop, void *ud) {
  dx__handoff *h = ud;
  dx_hub *hub = dx__handoff_user(h);
  for (dx_server *srv = dx__loop_server_next(loop, NULL); srv;
       srv = dx__loop_server_next(loop, srv))
    for (dx_sio *io = dx__server_options(srv)->sio; io; io = io->chain)
      if (io->hub == hub && io->loop == loop && !io->freeing && dx__server_adopt(srv, h) == 0)
        return;
  dx__handoff_free(h);
}

/* The session's loop was freed before the connection's turn came. */
static void handoff_drop(dx_loop *loop, void *ud) {
  (void)loop;
  dx__handoff_free(ud);
}

typedef struct handoff_to {
  dx_sio *io;
  unsigned bit;
} handoff_to;

static int handoff_post(dx__handoff *h, void *ud) {
  handoff_to *t = ud;
  dx__handoff_set_user(h, t->io->hub);
  return dx__hub_post_tap(t->io->hub, t->bit, dx__sio_hub_tap, handoff_arrive, handoff_drop, h);
}

int dx__sio_ws_accept(dx_conn *c, const dx_request *req) {
  dx_sio *head = dx__conn_sio(c);
  size_t n;
  const char *path = dx_request_path(req, &n);
  dx_sio *io = dx__sio_route(head, path, n);
  if (!io) return head->app.accept ? head->app.accept(c, req) : 0;
  dx_conn_set_user(c, NULL);
  if (dx_conn_loop(c) != io->loop) return 500;
  const char *qs = memchr(path, '?', n);
  query q;
  dx__sio_parse_query(qs ? qs + 1 : "", qs ? n - (size_t)(qs + 1 - path) : 0, &q);
  /* A probe for another loop's session moves there, connection and all.
   * When that loop cannot be reached (its server is gone), the session is
   * unknown here: answered below. */
  handoff_to to = {io, 0};
  if (dx__sio_query_is(q.transport, q.transport_len, "websocket") && dx__sio_other_loop(io, &q, &to.bit)) {
    int r = dx__conn_hand_off(c, handoff_post, &to);
    if (r == 0 || dx_conn_state(c) == DX_CLOSED) return 0;
    if (r == DX_ENOMEM) return 503;
  }
  sess *s;
  int code = dx__sio_verify(io, &q, 1, &s);
  if (code < 0) return 0;
  /* Refused as the reference's abortUpgrade: 400 and the code's message. */
  const char *msg = "Bad request";
  dx__eio_http_error(code, &msg);
  dx__conn_refuse(c, 400, msg);
  return 400;
}

void dx__sio_ws_open(dx_conn *c) {
  dx_sio *io = conn_route(c), *head = dx__conn_sio(c);
  if (!io) {
    if (head->app.open) head->app.open(c);
    return;
  }
  query q;
  conn_query(c, &q);
  if (q.sid) { /* the probe of an upgrade */
    sess *s = dx__sio_find_sess(io, q.sid, q.sid_len);
    if (!s || s->dead || s->closing || s->probe || s->transport != T_POLLING) {
      dx_close(c, 1000, NULL);
      return;
    }
    s->probe = c;
    dx_conn_set_user(c, s);
    dx__timer_start(io->loop, &s->utimer, UPGRADE_TIMEOUT_MS);
    return;
  }
  sess *s = io->shutting ? NULL : dx__sio_sess_new(io, T_WS);
  if (!s) {
    dx_close(c, 1011, NULL);
    return;
  }
  dx_conn_set_user(c, s);
  /* Direct WebSocket: the open packet leaves as the first frame. */
  dx__eio_packet p;
  s->ws = c;
  while (dx__eio_queue_front(&s->q, &p)) {
    dx__eio_buf *b = &io->scratch;
    b->len = 0;
    if (!dx__eio_encode_ws(b, &p)) dx_send(c, DX_TEXT, b->data, b->len);
    dx__eio_queue_pop(&s->q);
  }
}

/* The probe failed (a packet other than the ping "probe" and then "5"):
 * it is closed, and the session goes on polling, as in the reference
 * (socket.ts, maybeUpgrade), where only the probe's transport closes. */
static void probe_fail(sess *s) {
  dx_conn *c = s->probe;
  dx__timer_stop(s->io->loop, &s->utimer);
  s->probe = NULL;
  s->upgrading = 0;
  dx_conn_set_user(c, NULL);
  dx_close(c, 1000, NULL);
  /* Packets may have waited while the poll was answered with noops. */
  if (dx__sio_has_get(s) && s->q.count) dx__task_queue(s->io->loop, &s->flush);
}

/* The probe said "5": it becomes the transport, and what waited in the
 * queue follows on it, in order. */
static void finish_upgrade(sess *s) {
  dx__eio_packet p;
  if (dx__sio_has_get(s)) dx__sio_answer_get(s, 0);
  dx__timer_stop(s->io->loop, &s->utimer);
  s->ws = s->probe;
  s->probe = NULL;
  s->upgrading = 0;
  s->transport = T_WS;
  while (dx__eio_queue_front(&s->q, &p)) {
    if (p.binary) {
      dx_send(s->ws, DX_BINARY, p.data, p.len);
    } else {
      dx__eio_buf *b = &s->io->scratch;
      b->len = 0;
      if (!dx__eio_encode_ws(b, &p)) dx_send(s->ws, DX_TEXT, b->data, b->len);
    }
    dx__eio_queue_pop(&s->q);
  }
}

void dx__sio_ws_message(dx_conn *c, dx_msg_type type, const uint8_t *data, size_t len) {
  dx_sio *io = conn_route(c), *head = dx__conn_sio(c);
  if (!io) {
    if (head->app.message) head->app.message(c, type, data, len);
    return;
  }
  sess *s = dx_conn_user(c);
  if (!s || s->dead) return;
  dx__eio_packet p;
  int bad = 1;
  dx_sio_reason why = DX_SIO_TRANSPORT_ERROR;
  if (len <= io->o.max_payload) {
    bad = dx__eio_decode_ws(data, len, type == DX_BINARY, &p) != 0;
    why = DX_SIO_PARSE_ERROR;
  }
  if (c == s->probe) {
    if (!bad && p.type == DX__EIO_PING && p.len == 5 && !memcmp(p.data, "probe", 5)) {
      dx_send(c, DX_TEXT, "3probe", 6);
      s->upgrading = 1;
      /* Release the held poll so the client can pause polling and send
       * "5" (the reference sends noops until it does). */
      if (dx__sio_has_get(s)) dx__sio_answer_get(s, 0);
    } else if (!bad && p.type == DX__EIO_UPGRADE && s->upgrading) {
      finish_upgrade(s);
    } else {
      /* Anything else fails the probe alone, as in the reference: the
       * session is the polling transport's, and goes on there. */
      probe_fail(s);
    }
    return;
  }
  if (bad) dx__sio_sess_close(s, why, 0);
  else if (c == s->ws) dx__sio_handle_eio(s, &p);
}

void dx__sio_ws_close(dx_conn *c, int code, const char *reason, dx_why why, int status) {
  dx_sio *io = conn_route(c), *head = dx__conn_sio(c);
  if (!io) {
    if (head->app.close) head->app.close(c, code, reason, why, status);
    return;
  }
  sess *s = dx_conn_user(c);
  if (!s || s->dead) return;
  if (c == s->probe) { /* a failed probe: polling goes on */
    dx__timer_stop(io->loop, &s->utimer);
    s->probe = NULL;
    s->upgrading = 0;
    return;
  }
  if (c != s->ws) return;
  s->ws = NULL;
  dx_sio_reason r = DX_SIO_TRANSPORT_CLOSE;
  if (why == DX_WHY_TRANSPORT_ERROR || why == DX_WHY_PROTOCOL_ERROR || why == DX_WHY_INTERNAL_ERROR)
    r = DX_SIO_TRANSPORT_ERROR;
  else if (why == DX_WHY_PING_TIMEOUT)
    r = DX_SIO_PING_TIMEOUT;
  else if (why == DX_WHY_SERVER_SHUTDOWN)
    r = DX_SIO_SERVER_SHUTTING_DOWN;
  dx__sio_sess_close(s, r, 0);
}

