/* Polling requests that reached another loop than their session's (loops
 * sharing one port through SO_REUSEPORT): copied, posted to the session's
 * loop, handled there, and their answer posted back. */
#include "eio/sio_internal.h"

/* ---------------------------------------------------------------------- */
/* Polling requests that reached another loop than their session's         */
/* ---------------------------------------------------------------------- */

static void fwd_unref(fwd *f) {
  if (atomic_fetch_sub(&f->refs, 1) != 1) return;
  free(f->body);
  free(f);
}

/* A post of f that its loop, freed first, never ran: the reference the
 * post carried goes (every post of f carries one). */
static void fwd_drop(dx_loop *loop, void *ud) {
  (void)loop;
  fwd_unref(ud);
}

static void pending_unlink(dx_sio *io, fwd *f) {
  if (f->prev) f->prev->next = f->next;
  else io->pending = f->next;
  if (f->next) f->next->prev = f->prev;
  f->prev = f->next = NULL;
}

/* On `from`'s loop: the answer came back. */
static void fwd_back(dx_loop *loop, void *ud) {
  (void)loop;
  fwd *f = ud;
  dx_loop *l;
  dx_sio *io = dx__hub_tap_ud(f->hub, f->from, dx__sio_hub_tap, &l);
  if (io && !atomic_load(&f->aborted)) {
    pending_unlink(io, f);
    if (dx__sio_respond(io, f->r, f->status, f->type, f->body, f->len))
      dx_http_error(f->r, 500, NULL, NULL, 0);
    fwd_unref(f); /* from's */
  }
  fwd_unref(f); /* to's, which came with the answer */
}

/* On `to`'s loop: answers a forwarded request (its reference goes back
 * with the answer). */
void dx__sio_fwd_reply(fwd *f, int status, const char *type, const void *body, size_t len) {
  free(f->body);
  f->body = NULL;
  f->len = 0;
  if (len && (f->body = malloc(len))) {
    memcpy(f->body, body, len);
    f->len = len;
  } else if (len) {
    status = 500;
    type = "text/plain; charset=UTF-8";
  }
  f->status = status;
  f->type = type;
  if (dx__hub_post_tap(f->hub, f->from, dx__sio_hub_tap, fwd_back, fwd_drop, f)) fwd_unref(f);
}

/* On `to`'s loop: a request for one of its sessions. */
static void fwd_arrive(dx_loop *loop, void *ud) {
  (void)loop;
  fwd *f = ud;
  dx_loop *l;
  dx_sio *io = dx__hub_tap_ud(f->hub, f->to, dx__sio_hub_tap, &l);
  if (atomic_load(&f->aborted)) {
    fwd_unref(f);
    return;
  }
  preq q = {NULL, f};
  sess *s = io ? dx__sio_find_sess(io, f->sid, SID_LEN) : NULL;
  if (!s || s->dead) {
    dx__sio_reply_error(io, q, DX__EIO_ERR_UNKNOWN_SID);
    return;
  }
  if (s->transport != T_POLLING) dx__sio_reply_error(io, q, DX__EIO_ERR_BAD_REQUEST);
  else if (f->post) dx__sio_handle_post(s, q);
  else dx__sio_handle_get(s, q);
}

/* On `to`'s loop: the request's connection ended on `from`. */
static void fwd_gone(dx_loop *loop, void *ud) {
  (void)loop;
  fwd *f = ud;
  dx_loop *l;
  dx_sio *io = dx__hub_tap_ud(f->hub, f->to, dx__sio_hub_tap, &l);
  sess *s = io ? dx__sio_find_sess(io, f->sid, SID_LEN) : NULL;
  if (s && s->get.f == f) {
    s->get = (preq){0};
    fwd_unref(f); /* to's: it will not be answered */
    dx__sio_sess_close(s, DX_SIO_TRANSPORT_ERROR, 0);
  }
  fwd_unref(f); /* from's, which came with the news */
}

/* On `from`'s loop, from on_http_abort. */
void dx__sio_fwd_abort(dx_sio *io, fwd *f) {
  pending_unlink(io, f);
  atomic_store(&f->aborted, 1);
  if (dx__hub_post_tap(f->hub, f->to, dx__sio_hub_tap, fwd_gone, fwd_drop, f)) fwd_unref(f);
}

/* Hands a GET or POST for a session of loop `bit` over to that loop; the
 * answer comes back through fwd_back. 0, or -1 when it could not (no such
 * loop, no memory): the caller answers. */
int dx__sio_fwd_send(dx_sio *io, dx_http_request *r, unsigned bit, const char *sid, int post) {
  fwd *f = calloc(1, sizeof *f);
  size_t len = 0;
  const uint8_t *body = dx_http_body(r, &len);
  if (!f || (len && !(f->body = malloc(len)))) {
    free(f);
    return -1;
  }
  if (len) memcpy(f->body, body, len);
  f->len = len;
  atomic_init(&f->refs, 2);
  atomic_init(&f->aborted, 0);
  f->hub = io->hub;
  f->from = dx__hub_bit(io->lo);
  f->to = bit;
  f->r = r;
  f->post = post;
  memcpy(f->sid, sid, SID_LEN);
  if (dx__hub_post_tap(io->hub, bit, dx__sio_hub_tap, fwd_arrive, fwd_drop, f)) {
    free(f->body);
    free(f);
    return -1;
  }
  f->next = io->pending;
  if (io->pending) io->pending->prev = f;
  io->pending = f;
  return 0;
}

