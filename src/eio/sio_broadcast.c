/* Namespaces, and broadcasts: to the sockets of a namespace or of rooms,
 * except rooms and a sender, encoded once; through the hub to every loop
 * and node with members. */
#include "eio/sio_internal.h"

/* ---------------------------------------------------------------------- */
/* Namespaces                                                              */
/* ---------------------------------------------------------------------- */

dx_sio_nsp *dx__sio_nsp_find(dx_sio *io, const char *name, size_t n) {
  for (dx_sio_nsp *ns = io->nsps; ns; ns = ns->next)
    if (strlen(ns->name) == n && !memcmp(ns->name, name, n)) return ns;
  return NULL;
}

dx_sio_nsp *dx_sio_of(dx_sio *io, const char *name) {
  if (!io || !name || name[0] != '/' || strchr(name, ',')) return NULL;
  dx_sio_nsp *ns = dx__sio_nsp_find(io, name, strlen(name));
  if (ns) return ns;
  if (!(ns = calloc(1, sizeof *ns)) || !(ns->name = strdup(name))) {
    free(ns);
    return NULL;
  }
  ns->io = io;
  ns->next = io->nsps;
  io->nsps = ns;
  return ns;
}

const char *dx_sio_nsp_name(const dx_sio_nsp *n) { return n->name; }

void dx_sio_nsp_on_auth(dx_sio_nsp *n, dx_sio_on_auth cb, void *ud) {
  if (!n) return;
  n->auth = cb;
  n->auth_ud = ud;
}

void dx_sio_nsp_on_connection(dx_sio_nsp *n, dx_sio_on_connection cb, void *ud) {
  if (!n) return;
  n->conn = cb;
  n->conn_ud = ud;
}

/* Who a broadcast is for, as bytes (rooms from the hub are not
 * NUL-terminated): the members of any of rooms (every socket of the
 * namespace when there are none), but those in any except room and the
 * socket whose id is except_id. */
#define MAX_TARGET_ROOMS 64
typedef struct filter {
  size_t n_rooms, n_except;
  const char *room[MAX_TARGET_ROOMS], *except[MAX_TARGET_ROOMS];
  size_t room_len[MAX_TARGET_ROOMS], except_len[MAX_TARGET_ROOMS];
  const char *except_id; /* NUL-terminated, or NULL */
} filter;

static int in_room_n(const dx_sio_socket *k, const char *room, size_t n) {
  for (size_t i = 0; i < k->n_rooms; i++)
    if (strlen(k->rooms[i]) == n && !memcmp(k->rooms[i], room, n)) return 1;
  return 0;
}

static int wanted(const dx_sio_socket *k, const filter *f) {
  if (f->except_id && !strcmp(k->id, f->except_id)) return 0;
  for (size_t i = 0; i < f->n_except; i++)
    if (in_room_n(k, f->except[i], f->except_len[i])) return 0;
  if (!f->n_rooms) return 1;
  for (size_t i = 0; i < f->n_rooms; i++)
    if (in_room_n(k, f->room[i], f->room_len[i])) return 1;
  return 0;
}

/* Sends an encoded broadcast to the members of n the filter wants: once
 * each, whatever number of its rooms they are in. */
static int deliver(dx_sio_nsp *n, const filter *f, const uint8_t *text, size_t tlen,
                   const dx__sio_attachment *att, size_t n_att) {
  int r = 0;
  for (dx_sio_socket *k = n->socks; k; k = k->nnext) {
    if (!dx__sio_can_send(k) || !wanted(k, f)) continue;
    if (dx__sio_sess_send(k->s, DX__EIO_MESSAGE, 0, text, tlen) == DX_ENOMEM) r = DX_ENOMEM;
    for (size_t i = 0; i < n_att; i++) dx__sio_sess_send(k->s, DX__EIO_MESSAGE, 1, att[i].p, att[i].n);
  }
  return r;
}

static void put32(dx__eio_buf *b, size_t v, int *err) {
  uint8_t x[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
  if (dx__eio_buf_append(b, x, 4)) *err = DX_ENOMEM;
}

static void put_list(dx__eio_buf *b, const char *const *v, const size_t *lens, size_t n, int *err) {
  put32(b, n, err);
  for (size_t i = 0; !*err && i < n; i++) {
    put32(b, lens[i], err);
    if (!*err && dx__eio_buf_append(b, v[i], lens[i])) *err = DX_ENOMEM;
  }
}

/* A broadcast through the hub: one binary message, [1 byte: an excluded
 * id follows][its 20 bytes][the rooms][the except rooms][u32 text
 * length][text] then [u32 length][bytes] per attachment, a list being a
 * u32 count then each as u32 length and bytes, big-endian. To one room's
 * topic when it names one room, else to the namespace's, which every loop
 * with members of the namespace hears; every such loop (this one included,
 * in the order the hub keeps) delivers it to its own sockets (hub_tap). */
static int publish_room(dx_sio *io, dx_sio_nsp *n, const filter *f, const dx__sio_encoded *e) {
  char t[DX_TOPIC_MAX + 1], room[DX_TOPIC_MAX + 1];
  if (f->n_rooms == 1) {
    memcpy(room, f->room[0], f->room_len[0]);
    room[f->room_len[0]] = 0;
  }
  size_t tl = dx__sio_room_topic(t, n->name, f->n_rooms == 1 ? room : NULL);
  if (!tl) return DX_EINVAL;
  dx__eio_buf b;
  dx__eio_buf_init(&b, &dx__alloc_std);
  int err = dx__eio_buf_putc(&b, f->except_id ? 1 : 0);
  if (f->except_id && !err) err = dx__eio_buf_append(&b, f->except_id, SID_LEN);
  put_list(&b, f->room, f->room_len, f->n_rooms, &err);
  put_list(&b, f->except, f->except_len, f->n_except, &err);
  put32(&b, e->text.len, &err);
  if (!err) err = dx__eio_buf_append(&b, e->text.data, e->text.len);
  for (size_t i = 0; !err && i < e->n_att; i++) {
    put32(&b, e->att[i].n, &err);
    if (!err) err = dx__eio_buf_append(&b, e->att[i].p, e->att[i].n);
  }
  if (!err) err = dx_publish(io->hub, t, tl, DX_BINARY, b.data, b.len, NULL);
  dx__eio_buf_free(&b);
  return err;
}

static int get32(const uint8_t **p, const uint8_t *end, size_t *v) {
  if (end - *p < 4) return -1;
  *v = (size_t)(*p)[0] << 24 | (size_t)(*p)[1] << 16 | (size_t)(*p)[2] << 8 | (*p)[3];
  *p += 4;
  return (size_t)(end - *p) < *v ? -1 : 0;
}

static int get_list(const uint8_t **p, const uint8_t *end, const char **v, size_t *lens,
                    size_t *n) {
  if (get32(p, end, n) || *n > MAX_TARGET_ROOMS) return -1;
  for (size_t i = 0; i < *n; i++) {
    if (get32(p, end, &lens[i])) return -1;
    v[i] = (const char *)*p;
    *p += lens[i];
  }
  return 0;
}

/* A broadcast arriving from the hub (from this loop, another one, or
 * another node): checked whole, then delivered to this loop's members. */
void dx__sio_hub_tap(void *ud, const char *topic, size_t tlen, dx_msg_type type,
                     const uint8_t *data, size_t len) {
  dx_sio *io = ud;
  if (type != DX_BINARY || tlen < TOPIC_PREFIX_LEN || memcmp(topic, TOPIC_PREFIX, TOPIC_PREFIX_LEN))
    return;
  const char *nsp = topic + TOPIC_PREFIX_LEN;
  const char *nul = memchr(nsp, 0, tlen - TOPIC_PREFIX_LEN);
  dx_sio_nsp *n = nul ? dx__sio_nsp_find(io, nsp, (size_t)(nul - nsp)) : NULL;
  const uint8_t *p = data, *end = data + len;
  char except[SID_LEN + 1];
  filter f = {0};
  if (!n || p == end) return;
  if (*p++) {
    if (end - p < SID_LEN) return;
    memcpy(except, p, SID_LEN);
    except[SID_LEN] = 0;
    f.except_id = except;
    p += SID_LEN;
  }
  size_t text_len, k = 0;
  if (get_list(&p, end, f.room, f.room_len, &f.n_rooms) ||
      get_list(&p, end, f.except, f.except_len, &f.n_except) || get32(&p, end, &text_len))
    return;
  const uint8_t *text = p;
  p += text_len;
  /* A broadcast may carry any number of binaries (the application's, not
   * a client's, so no decoder's cap applies): past what the stack holds
   * the list grows on the heap. A fixed list dropped such a broadcast for
   * every member, though dx_sio_broadcast had returned 0. */
  dx__sio_attachment stack[DX__SIO_MAX_ATTACHMENTS * 8], *att = stack;
  size_t cap = sizeof stack / sizeof *stack;
  while (p < end) {
    size_t al;
    if (get32(&p, end, &al)) goto out;
    if (k == cap) {
      dx__sio_attachment *v = malloc(2 * cap * sizeof *v);
      if (!v) goto out; /* no memory to deliver it whole: nobody gets part of it */
      memcpy(v, att, k * sizeof *v);
      if (att != stack) free(att);
      att = v;
      cap *= 2;
    }
    att[k++] = (dx__sio_attachment){p, al};
    p += al;
  }
  deliver(n, &f, text, text_len, att, k);
out:
  if (att != stack) free(att);
}

int dx_sio_use_hub(dx_sio *io, dx_hub *h) {
  if (!io || !h) return DX_EINVAL;
  if (io->hub || io->n_sess) return DX_ESTATE;
  int r = dx__hub_set_tap(h, io->loop, dx__sio_hub_tap, io, &io->lo);
  if (!r) io->hub = h;
  return r;
}

static int fill_list(const char *const *v, size_t n, const char **out, size_t *lens) {
  if (n > MAX_TARGET_ROOMS || (n && !v)) return DX_EINVAL;
  for (size_t i = 0; i < n; i++) {
    if (!v[i] || !*v[i] || (lens[i] = strlen(v[i])) > DX_TOPIC_MAX) return DX_EINVAL;
    out[i] = v[i];
  }
  return 0;
}

int dx_sio_broadcast(dx_sio_nsp *n, const dx_sio_target *t, const char *event,
                     const json_t *args) {
  filter f = {0};
  if (!n) return DX_EINVAL;
  if (t) {
    if (fill_list(t->rooms, t->n_rooms, f.room, f.room_len) ||
        fill_list(t->except_rooms, t->n_except_rooms, f.except, f.except_len))
      return DX_EINVAL;
    f.n_rooms = t->n_rooms;
    f.n_except = t->n_except_rooms;
    f.except_id = t->except ? t->except->id : NULL;
  }
  json_t *a;
  int r = dx__sio_event_array(event, args, &a);
  if (r) return r;
  dx__sio_encoded e;
  dx__sio_encoded_init(&e, &dx__alloc_std);
  dx__sio_packet p = {.type = DX__SIO_EVENT, .nsp = n->name, .nsp_len = strlen(n->name),
                      .id = DX__SIO_NO_ID, .data = a};
  r = dx__sio_encode(&p, 0, &e);
  json_decref(a);
  if (r) {
    dx__sio_encoded_free(&e);
    return r == DX_ENOMEM ? r : DX_EINVAL;
  }
  /* Encoded once; the same text and attachments go to every member. */
  if (n->io->hub) r = publish_room(n->io, n, &f, &e);
  else r = deliver(n, &f, e.text.data, e.text.len, e.att, e.n_att);
  dx__sio_encoded_free(&e);
  return r;
}

int dx_sio_emit_to(dx_sio_nsp *n, const char *room, const dx_sio_socket *except,
                   const char *event, const json_t *args) {
  dx_sio_target t = {.rooms = room ? &room : NULL, .n_rooms = room ? 1 : 0, .except = except};
  return dx_sio_broadcast(n, &t, event, args);
}

