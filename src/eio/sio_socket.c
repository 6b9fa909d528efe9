/* Socket.IO sockets (one client in one namespace): packets out, the rooms
 * a socket joins (counted per loop for the hub), events and acks both
 * ways, disconnecting, and the Socket.IO packets that come in (CONNECT and
 * its auth among them). */
#include "eio/sio_internal.h"

/* ---------------------------------------------------------------------- */
/* Socket.IO packets out                                                   */
/* ---------------------------------------------------------------------- */

/* Encodes p and queues its text and attachments on s. */
/* Past this the loop's encoding buffer is given back after a send rather
 * than kept: one large emit must not pin its size for good. */
#define ENC_KEEP (64 * 1024)

/* Encodes into the loop's buffer, kept from one packet to the next (an
 * allocation and two or three reallocations fewer per packet), unless a
 * send is already using it. */
static int send_packet(sess *s, const dx__sio_packet *p) {
  dx_sio *io = s->io;
  dx__sio_encoded own, *e = &io->enc;
  int nested = io->enc_busy;
  if (nested) {
    e = &own;
    dx__sio_encoded_init(e, &dx__alloc_std);
  }
  io->enc_busy = 1;
  int r = dx__sio_encode(p, 0, e);
  if (!r) r = dx__sio_sess_send(s, DX__EIO_MESSAGE, 0, e->text.data, e->text.len);
  for (size_t i = 0; !r && i < e->n_att; i++)
    r = dx__sio_sess_send(s, DX__EIO_MESSAGE, 1, e->att[i].p, e->att[i].n);
  if (nested || e->text.cap > ENC_KEEP) dx__sio_encoded_free(e);
  /* The attachments point into p's data, which the caller owns. */
  e->n_att = 0;
  io->enc_busy = (uint8_t)nested;
  return r;
}

static int sock_packet(dx_sio_socket *k, int type, int64_t id, json_t *data) {
  dx__sio_packet p = {.type = type, .nsp = k->nsp->name, .nsp_len = strlen(k->nsp->name),
                      .id = id, .data = data};
  return send_packet(k->s, &p);
}

/* ["event", ...args] in *out, a new reference. 0, DX_EINVAL (a bad
 * argument) or DX_ENOMEM (jansson's allocations failed). */
int dx__sio_event_array(const char *event, const json_t *args, json_t **out) {
  *out = NULL;
  if (!event || (args && !json_is_array(args))) return DX_EINVAL;
  if (dx__sio_reserved_event(event, strlen(event))) return DX_EINVAL;
  json_t *a = json_array();
  if (!a || json_array_append_new(a, json_string(event)) ||
      (args && json_array_extend(a, (json_t *)args))) {
    json_decref(a);
    return DX_ENOMEM;
  }
  *out = a;
  return 0;
}

/* ---------------------------------------------------------------------- */
/* Rooms on the hub                                                        */
/* ---------------------------------------------------------------------- */

size_t dx__sio_room_topic(char *out, const char *nsp, const char *room) {
  size_t nl = strlen(nsp), rl = room ? strlen(room) : 0;
  if (TOPIC_PREFIX_LEN + nl + 1 + rl > DX_TOPIC_MAX) return 0;
  memcpy(out, TOPIC_PREFIX, TOPIC_PREFIX_LEN);
  memcpy(out + TOPIC_PREFIX_LEN, nsp, nl + 1);
  if (rl) memcpy(out + TOPIC_PREFIX_LEN + nl + 1, room, rl);
  return TOPIC_PREFIX_LEN + nl + 1 + rl;
}


/* One more (delta 1) or one fewer (-1) local socket in a room: the hub
 * learns of the room's first and last. 0 or DX_ENOMEM (nothing changed). */
static int room_count(dx_sio *io, const char *nsp, const char *room, int delta) {
  if (!io->hub) return 0;
  char t[DX_TOPIC_MAX];
  size_t n = dx__sio_room_topic(t, nsp, room);
  if (!n) return DX_EINVAL;
  uint32_t h = dx__map_hash(t, n);
  room_ref *r = (room_ref *)dx__map_get(&io->rooms, t, n, h);
  if (delta < 0) {
    if (r && --r->count == 0) {
      dx__map_del(&io->rooms, &r->node);
      dx__hub_topic_removed(io->lo, t, n, h);
      free(r);
    }
    return 0;
  }
  if (r) {
    r->count++;
    return 0;
  }
  if (!(r = calloc(1, sizeof *r + n))) return DX_ENOMEM;
  memcpy(r->name, t, n);
  r->node = (dx__map_node){r->name, (uint32_t)n, h};
  r->count = 1;
  if (dx__map_put(&io->rooms, &r->node)) {
    free(r);
    return DX_ENOMEM;
  }
  if (dx__hub_topic_added(io->lo, t, n, h)) {
    dx__map_del(&io->rooms, &r->node);
    free(r);
    return DX_ENOMEM;
  }
  return 0;
}

/* ---------------------------------------------------------------------- */
/* Sockets                                                                 */
/* ---------------------------------------------------------------------- */


void dx__sio_sock_free(dx_sio_socket *k) {
  for (handler *h = k->handlers, *nx; h; h = nx) {
    nx = h->next;
    free(h);
  }
  for (size_t i = 0; i < k->n_rooms; i++) free(k->rooms[i]);
  free(k->rooms);
  free(k);
}

static void nsp_unlink(dx_sio_socket *k) {
  if (k->nprev) k->nprev->nnext = k->nnext;
  else if (k->nsp->socks == k) k->nsp->socks = k->nnext;
  if (k->nnext) k->nnext->nprev = k->nprev;
  k->nprev = k->nnext = NULL;
}

/* The socket leaves: unlinked from its session and namespace, its pending
 * acks answered DX_ECLOSED, its handed-out acks orphaned, on_disconnect
 * told (when it was connected); freed at the end of the iteration. */
void dx__sio_sock_gone(dx_sio_socket *k, dx_sio_reason why) {
  if (k->gone) return;
  k->gone = 1;
  sess *s = k->s;
  for (dx_sio_socket **pp = &s->socks; *pp; pp = &(*pp)->snext)
    if (*pp == k) {
      *pp = k->snext;
      break;
    }
  nsp_unlink(k);
  for (dx_sio_ack *a = k->given; a; a = a->next) a->s = NULL;
  k->given = NULL;
  for (size_t i = 0; i < k->n_rooms; i++) {
    room_count(s->io, k->nsp->name, k->rooms[i], -1);
    free(k->rooms[i]);
  }
  k->n_rooms = 0;
  if (k->connected) room_count(s->io, k->nsp->name, NULL, -1);
  pending_ack *acks = k->acks;
  k->acks = NULL;
  int was = k->connected;
  k->connected = 0;
  for (pending_ack *a = acks, *nx; a; a = nx) {
    nx = a->next;
    dx__timer_stop(s->io->loop, &a->t);
    dx__timer_unreserve(s->io->loop, 1);
    a->cb(k, DX_ECLOSED, NULL, a->ud);
    free(a);
  }
  if (was && k->dcb) k->dcb(k, why, k->dud);
  k->dnext = s->io->dead_socks;
  s->io->dead_socks = k;
  dx__task_queue_last(s->io->loop, &s->io->reap);
}

static dx_sio_socket *sock_of(sess *s, const char *nsp, size_t n) {
  for (dx_sio_socket *k = s->socks; k; k = k->snext)
    if (strlen(k->nsp->name) == n && !memcmp(k->nsp->name, nsp, n)) return k;
  return NULL;
}

static int in_room(const dx_sio_socket *k, const char *room) {
  for (size_t i = 0; i < k->n_rooms; i++)
    if (!strcmp(k->rooms[i], room)) return 1;
  return 0;
}

int dx_sio_join(dx_sio_socket *k, const char *room) {
  if (!k || !room || !*room || strlen(room) > DX_TOPIC_MAX) return DX_EINVAL;
  if (k->gone) return DX_ECLOSED;
  if (in_room(k, room)) return 0;
  char **v = realloc(k->rooms, (k->n_rooms + 1) * sizeof *v);
  if (!v) return DX_ENOMEM;
  k->rooms = v;
  if (!(v[k->n_rooms] = strdup(room))) return DX_ENOMEM;
  int r = room_count(k->s->io, k->nsp->name, room, 1);
  if (r) {
    free(v[k->n_rooms]);
    return r;
  }
  k->n_rooms++;
  return 0;
}

int dx_sio_leave(dx_sio_socket *k, const char *room) {
  if (!k || !room) return DX_EINVAL;
  for (size_t i = 0; i < k->n_rooms; i++)
    if (!strcmp(k->rooms[i], room)) {
      room_count(k->s->io, k->nsp->name, room, -1);
      free(k->rooms[i]);
      k->rooms[i] = k->rooms[--k->n_rooms];
      return 0;
    }
  return 0;
}

size_t dx_sio_socket_rooms(const dx_sio_socket *k) { return k ? k->n_rooms : 0; }

const char *dx_sio_socket_room(const dx_sio_socket *k, size_t i) {
  return k && i < k->n_rooms ? k->rooms[i] : NULL;
}

int dx_sio_on(dx_sio_socket *k, const char *event, dx_sio_on_event cb, void *ud) {
  if (!k || !event) return DX_EINVAL;
  for (handler **pp = &k->handlers; *pp; pp = &(*pp)->next)
    if (!strcmp((*pp)->name, event)) {
      if (cb) {
        (*pp)->cb = cb;
        (*pp)->ud = ud;
      } else {
        handler *h = *pp;
        *pp = h->next;
        free(h);
      }
      return 0;
    }
  if (!cb) return 0;
  size_t n = strlen(event);
  handler *h = malloc(sizeof *h + n + 1);
  if (!h) return DX_ENOMEM;
  memcpy(h->name, event, n + 1);
  h->cb = cb;
  h->ud = ud;
  h->next = k->handlers;
  k->handlers = h;
  return 0;
}

void dx_sio_socket_on_disconnect(dx_sio_socket *k, dx_sio_on_disconnect cb, void *ud) {
  if (!k) return;
  k->dcb = cb;
  k->dud = ud;
}

int dx__sio_can_send(const dx_sio_socket *k) {
  return k && k->connected && !k->gone && !k->s->closing && !k->s->overflow;
}

int dx_sio_emit(dx_sio_socket *k, const char *event, const json_t *args) {
  if (!k) return DX_EINVAL;
  if (!dx__sio_can_send(k)) return DX_ECLOSED;
  json_t *a;
  int r = dx__sio_event_array(event, args, &a);
  if (r) return r;
  r = sock_packet(k, DX__SIO_EVENT, DX__SIO_NO_ID, a);
  json_decref(a);
  return r == DX_ENOMEM || r == DX_ECLOSED || r == 0 ? r : DX_EINVAL;
}

static void ack_timeout(dx__timer *t) {
  pending_ack *a = CONTAINER(t, pending_ack, t);
  dx_sio_socket *k = a->s;
  for (pending_ack **pp = &k->acks; *pp; pp = &(*pp)->next)
    if (*pp == a) {
      *pp = a->next;
      break;
    }
  dx__timer_unreserve(k->s->io->loop, 1);
  a->cb(k, DX_ETIMEDOUT, NULL, a->ud);
  free(a);
}

int dx_sio_emit_ack(dx_sio_socket *k, const char *event, const json_t *args,
                    uint32_t timeout_ms, dx_sio_on_ack cb, void *ud) {
  if (!k || !cb) return DX_EINVAL;
  if (!dx__sio_can_send(k)) return DX_ECLOSED;
  json_t *a;
  int r = dx__sio_event_array(event, args, &a);
  if (r) return r;
  pending_ack *p = calloc(1, sizeof *p);
  dx_loop *loop = k->s->io->loop;
  if (!p || dx__timer_reserve(loop, 1)) {
    free(p);
    json_decref(a);
    return DX_ENOMEM;
  }
  p->s = k;
  p->id = k->next_id++;
  p->cb = cb;
  p->ud = ud;
  dx__timer_init(&p->t, ack_timeout);
  r = sock_packet(k, DX__SIO_EVENT, p->id, a);
  json_decref(a);
  if (r) {
    dx__timer_unreserve(loop, 1);
    free(p);
    return r == DX_ENOMEM || r == DX_ECLOSED ? r : DX_EINVAL;
  }
  if (timeout_ms) dx__timer_start(loop, &p->t, timeout_ms);
  p->next = k->acks;
  k->acks = p;
  return 0;
}

static void ack_unlink(dx_sio_ack *a) {
  if (!a->s) return;
  if (a->prev) a->prev->next = a->next;
  else a->s->given = a->next;
  if (a->next) a->next->prev = a->prev;
}

int dx_sio_ack_send(dx_sio_ack *a, const json_t *args) {
  if (!a || (args && !json_is_array(args))) return DX_EINVAL;
  int r = DX_ECLOSED;
  if (a->s && dx__sio_can_send(a->s)) {
    json_t *empty = args ? NULL : json_array();
    r = sock_packet(a->s, DX__SIO_ACK, a->id, args ? (json_t *)args : empty);
    json_decref(empty);
    if (r == DX_ENOMEM) return r;
    if (r && r != DX_ECLOSED) return DX_EINVAL;
  }
  ack_unlink(a);
  free(a);
  return r;
}

void dx_sio_ack_drop(dx_sio_ack *a) {
  if (!a) return;
  ack_unlink(a);
  free(a);
}

int dx_sio_disconnect(dx_sio_socket *k, int close) {
  if (!k || k->gone) return DX_ECLOSED;
  /* From on_auth the socket is not connected yet: as in the reference
   * (socket.disconnect() does nothing on a socket not connected), nothing
   * happens, and what on_auth returns still answers the CONNECT. Dropping
   * the socket there left the client with no answer at all. */
  if (!close && !k->connected) return DX_ECLOSED;
  sess *s = k->s;
  if (close) {
    /* Every namespace of the client is told first (the official client
     * does not reconnect after "io server disconnect"), then the session
     * ends. */
    for (dx_sio_socket *e = s->socks; e && !s->closing; e = e->snext)
      if (e->connected) sock_packet(e, DX__SIO_DISCONNECT, DX__SIO_NO_ID, NULL);
    dx__sio_sess_close(s, DX_SIO_FORCED_CLOSE, 1);
    return 0;
  }
  if (k->connected && !s->closing) sock_packet(k, DX__SIO_DISCONNECT, DX__SIO_NO_ID, NULL);
  dx__sio_sock_gone(k, DX_SIO_SERVER_NAMESPACE_DISCONNECT);
  return 0;
}

const char *dx_sio_socket_id(const dx_sio_socket *k) { return k->id; }
dx_sio_nsp *dx_sio_socket_nsp(const dx_sio_socket *k) { return k->nsp; }
const char *dx_sio_socket_transport(const dx_sio_socket *k) {
  return k->s->transport == T_WS ? "websocket" : "polling";
}
void *dx_sio_socket_user(const dx_sio_socket *k) { return k->user; }
void dx_sio_socket_set_user(dx_sio_socket *k, void *user) { k->user = user; }

json_t *dx_sio_binary(const void *p, size_t n) { return dx__sio_binary_new(p, n); }
int dx_sio_binary_get(const json_t *v, const uint8_t **p, size_t *n) {
  return dx__sio_binary_get(v, p, n);
}

/* ---------------------------------------------------------------------- */
/* Socket.IO packets in                                                    */
/* ---------------------------------------------------------------------- */

static void connect_error(sess *s, const char *nsp, size_t nsp_len, const char *message,
                          json_t *data) {
  json_t *o = json_object();
  if (o) {
    json_object_set_new(o, "message", json_string(message ? message : "not authorized"));
    if (data) json_object_set(o, "data", data);
    dx__sio_packet p = {.type = DX__SIO_CONNECT_ERROR, .nsp = nsp, .nsp_len = nsp_len,
                        .id = DX__SIO_NO_ID, .data = o};
    send_packet(s, &p);
    json_decref(o);
  }
}

static void on_connect(sess *s, dx__sio_packet *p) {
  dx_sio *io = s->io;
  dx_sio_nsp *ns = io->shutting ? NULL : dx__sio_nsp_find(io, p->nsp, p->nsp_len);
  if (!ns) {
    connect_error(s, p->nsp, p->nsp_len, "Invalid namespace", NULL);
    return;
  }
  if (sock_of(s, p->nsp, p->nsp_len)) return; /* already there: as the reference */
  dx_sio_socket *k = calloc(1, sizeof *k);
  if (!k || dx__sio_new_id(k->id)) {
    free(k);
    connect_error(s, p->nsp, p->nsp_len, "Internal error", NULL);
    return;
  }
  k->s = s;
  k->nsp = ns;
  k->snext = s->socks;
  s->socks = k;
  json_t *auth = p->data ? json_incref(p->data) : json_object();
  if (ns->auth) {
    const char *msg = NULL;
    json_t *data = NULL;
    if (ns->auth(k, auth, &msg, &data, ns->auth_ud)) {
      if (!k->gone && !s->closing) connect_error(s, p->nsp, p->nsp_len, msg, data);
      json_decref(data);
      json_decref(auth);
      dx__sio_sock_gone(k, DX_SIO_SERVER_NAMESPACE_DISCONNECT);
      return;
    }
    json_decref(data);
  }
  if (k->gone || s->closing) {
    json_decref(auth);
    return;
  }
  /* The answer, the socket's own room and the namespace's count, before
   * it counts as connected: when memory runs out for any of them it never
   * connects (no on_connection), and the session ends, as the client
   * could not be told otherwise. */
  json_t *ans = json_pack("{ss}", "sid", k->id);
  int r = ans ? sock_packet(k, DX__SIO_CONNECT, DX__SIO_NO_ID, ans) : DX_ENOMEM;
  json_decref(ans);
  if (!r) r = dx_sio_join(k, k->id);
  if (!r) r = room_count(io, ns->name, NULL, 1);
  if (r) {
    json_decref(auth);
    dx__sio_sock_gone(k, DX_SIO_SERVER_NAMESPACE_DISCONNECT);
    dx__sio_sess_close(s, DX_SIO_TRANSPORT_ERROR, 0);
    return;
  }
  k->connected = 1;
  k->nnext = ns->socks;
  if (ns->socks) ns->socks->nprev = k;
  ns->socks = k;
  dx__timer_stop(io->loop, &s->ctimer);
  if (ns->conn) ns->conn(k, auth, ns->conn_ud);
  json_decref(auth);
}

static void on_event(dx_sio_socket *k, dx__sio_packet *p) {
  json_t *name = json_array_get(p->data, 0);
  const char *ev = json_is_string(name) ? json_string_value(name) : NULL;
  handler *h = NULL, *any = NULL;
  for (handler *e = k->handlers; e; e = e->next) {
    if (ev && !strcmp(e->name, ev)) h = e;
    if (!strcmp(e->name, "*")) any = e;
  }
  if (!h) h = any;
  if (!h) return;
  json_t *args;
  if (h == any) {
    args = json_incref(p->data);
  } else if (p->data->refcount == 1) {
    /* The packet's array is ours alone: its first element, the name, is
     * dropped in place (ev is not read again) rather than the arguments
     * copied into a new array, two allocations per event fewer. */
    json_array_remove(p->data, 0);
    args = json_incref(p->data);
  } else {
    args = json_array();
    for (size_t i = 1; args && i < json_array_size(p->data); i++)
      if (json_array_append(args, json_array_get(p->data, i))) {
        json_decref(args);
        args = NULL;
      }
  }
  dx_sio_ack *a = NULL;
  if (args && p->id != DX__SIO_NO_ID && !(a = calloc(1, sizeof *a))) {
    json_decref(args);
    args = NULL;
  }
  if (!args) {
    /* Out of memory: the event cannot be handed over whole, and dropping
     * it would leave a client waiting for its ack for ever. */
    dx__sio_sess_close(k->s, DX_SIO_TRANSPORT_ERROR, 0);
    return;
  }
  if (a) {
    a->s = k;
    a->id = p->id;
    a->next = k->given;
    if (k->given) k->given->prev = a;
    k->given = a;
  }
  h->cb(k, args, a, h->ud);
  json_decref(args);
}

static void on_ack(dx_sio_socket *k, dx__sio_packet *p) {
  for (pending_ack **pp = &k->acks; *pp; pp = &(*pp)->next)
    if ((*pp)->id == p->id) {
      pending_ack *a = *pp;
      *pp = a->next;
      dx__timer_stop(k->s->io->loop, &a->t);
      dx__timer_unreserve(k->s->io->loop, 1);
      a->cb(k, 0, p->data, a->ud);
      free(a);
      return;
    }
}

void dx__sio_handle_packet(sess *s, dx__sio_packet *p) {
  dx_sio_socket *k = p->type == DX__SIO_CONNECT ? NULL : sock_of(s, p->nsp, p->nsp_len);
  switch (p->type) {
  case DX__SIO_CONNECT:
    on_connect(s, p);
    break;
  case DX__SIO_DISCONNECT:
    if (k) dx__sio_sock_gone(k, DX_SIO_CLIENT_NAMESPACE_DISCONNECT);
    break;
  case DX__SIO_EVENT:
    if (k && k->connected) on_event(k, p);
    break;
  case DX__SIO_ACK:
    if (k && k->connected) on_ack(k, p);
    break;
  default: /* CONNECT_ERROR is the server's to send */
    dx__sio_sess_close(s, DX_SIO_PARSE_ERROR, 0);
  }
}

