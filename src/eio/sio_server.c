/* The Socket.IO v5 server (Engine.IO v4 underneath): its settings, making
 * it and attaching it to a server's options, shutting it down and freeing
 * it, and plain Engine.IO's part of the API. The rest of it: the files
 * sio_internal.h lists (sessions, polling, forwarding between loops,
 * WebSocket and the upgrade, sockets, broadcasts); the packet codecs are
 * eio_packet.c and sio_packet.c. Everything goes through the public HTTP
 * and WebSocket API of duplex (dx_http_respond, dx_send) plus the loop's
 * embedded timers and end-of-iteration tasks. */
#include "eio/sio_internal.h"

/* ---------------------------------------------------------------------- */
/* Options                                                                 */
/* ---------------------------------------------------------------------- */

dx_sio_options *dx_sio_options_new(void) {
  dx_sio_options *o = calloc(1, sizeof *o);
  if (!o) return NULL;
  o->path = strdup("/socket.io/");
  if (!o->path) {
    free(o);
    return NULL;
  }
  o->ping_interval = 25000;
  o->ping_timeout = 20000;
  o->connect_timeout = 45000;
  o->max_payload = 1000000;
  o->polling = o->websocket = 1;
  return o;
}

static void options_clear(dx_sio_options *o) {
  free(o->path);
  for (size_t i = 0; i < o->n_cors; i++) free(o->cors[i]);
  free(o->cors);
}

void dx_sio_options_free(dx_sio_options *o) {
  if (!o) return;
  options_clear(o);
  free(o);
}

int dx_sio_options_set_path(dx_sio_options *o, const char *path) {
  size_t n = path ? strlen(path) : 0;
  if (!o || n < 2 || path[0] != '/' || path[n - 1] != '/' || strpbrk(path, "?# \t"))
    return DX_EINVAL;
  char *p = strdup(path);
  if (!p) return DX_ENOMEM;
  free(o->path);
  o->path = p;
  return 0;
}

int dx_sio_options_set_ping(dx_sio_options *o, uint32_t interval_ms, uint32_t timeout_ms) {
  if (!o || !interval_ms || !timeout_ms) return DX_EINVAL;
  o->ping_interval = interval_ms;
  o->ping_timeout = timeout_ms;
  return 0;
}

int dx_sio_options_set_max_payload(dx_sio_options *o, uint64_t bytes) {
  if (!o || !bytes || bytes > (UINT64_C(1) << 30)) return DX_EINVAL;
  o->max_payload = bytes;
  return 0;
}

int dx_sio_options_set_max_buffered(dx_sio_options *o, size_t bytes) {
  if (!o || !bytes) return DX_EINVAL;
  o->max_buffered = bytes;
  return 0;
}

/* The cap in force: the one set, or the larger of 16 MiB and two
 * maxPayloads (room for two full responses). */
size_t dx__sio_max_buffered_of(const dx_sio_options *o) {
  if (o->max_buffered) return o->max_buffered;
  uint64_t two = 2 * o->max_payload;
  return two > (16u << 20) ? (size_t)two : (size_t)16u << 20;
}

int dx_sio_options_set_connect_timeout(dx_sio_options *o, uint32_t ms) {
  if (!o || !ms) return DX_EINVAL;
  o->connect_timeout = ms;
  return 0;
}

int dx_sio_options_cors_origin(dx_sio_options *o, const char *origin) {
  if (!o || !origin || !*origin || strpbrk(origin, "\r\n")) return DX_EINVAL;
  char **v = realloc(o->cors, (o->n_cors + 1) * sizeof *v);
  if (!v) return DX_ENOMEM;
  o->cors = v;
  if (!(v[o->n_cors] = strdup(origin))) return DX_ENOMEM;
  o->n_cors++;
  return 0;
}

void dx_sio_options_cors_credentials(dx_sio_options *o, int on) {
  if (o) o->cors_credentials = on != 0;
}

void dx_sio_options_set_transports(dx_sio_options *o, int polling, int websocket) {
  if (!o) return;
  o->polling = polling != 0;
  o->websocket = websocket != 0;
}

static int options_copy(dx_sio_options *dst, const dx_sio_options *src) {
  memset(dst, 0, sizeof *dst);
  *dst = *src;
  dst->path = strdup(src->path);
  dst->cors = src->n_cors ? calloc(src->n_cors, sizeof *dst->cors) : NULL;
  dst->n_cors = 0;
  if (!dst->path || (src->n_cors && !dst->cors)) goto fail;
  for (size_t i = 0; i < src->n_cors; i++) {
    if (!(dst->cors[i] = strdup(src->cors[i]))) goto fail;
    dst->n_cors++;
  }
  return 0;
fail:
  options_clear(dst);
  return DX_ENOMEM;
}

static const char *const reason_names[] = {
  "server namespace disconnect", "client namespace disconnect",
  "server shutting down", "ping timeout", "transport close",
  "transport error", "parse error", "forced close"};

const char *dx_sio_reason_name(dx_sio_reason r) {
  if ((unsigned)r >= sizeof reason_names / sizeof *reason_names) return "unknown";
  return reason_names[r];
}

/* ---------------------------------------------------------------------- */
/* The server                                                              */
/* ---------------------------------------------------------------------- */

dx_sio *dx_sio_new(dx_loop *loop, const dx_sio_options *o) {
  if (!loop) return NULL;
  dx_sio *io = calloc(1, sizeof *io);
  if (!io) return NULL;
  dx_sio_options *def = o ? NULL : dx_sio_options_new();
  if ((!o && !def) || options_copy(&io->o, o ? o : def)) {
    dx_sio_options_free(def);
    free(io);
    return NULL;
  }
  dx_sio_options_free(def);
  io->loop = loop;
  io->raw = io->o.raw;
  io->raw_ud = io->o.raw_ud;
  io->path_len = strlen(io->o.path);
  io->reap.run = dx__sio_reap_task;
  dx__eio_buf_init(&io->scratch, &dx__alloc_std);
  dx__sio_encoded_init(&io->enc, &dx__alloc_std);
  if (!dx_sio_of(io, "/")) {
    dx_sio_free(io);
    return NULL;
  }
  return io;
}

int dx_sio_attach(dx_sio *io, dx_options *o) {
  if (!io || !o || io->attached) return DX_EINVAL;
  if (o->sio) {
    /* A second server on the same options (another path): it goes first
     * in the chain, and the application's callbacks are the ones the
     * first attach kept (o's are the trampolines by now). */
    dx_sio *prev = o->sio;
    for (dx_sio *e = prev; e; e = e->chain)
      if (!strcmp(e->o.path, io->o.path)) return DX_EINVAL;
    io->app = prev->app;
    io->chain = prev;
    io->attached = 1;
    dx__options_set_sio(o, io);
    if (o->http_max_body < io->o.max_payload)
      dx_options_set_http_limits(o, io->o.max_payload, o->http_request_ms, o->http_keepalive_ms);
    return 0;
  }
  io->attached = 1;
  io->app.http = o->on_http;
  io->app.abort = o->on_http_abort;
  io->app.accept = o->on_accept;
  io->app.open = o->on_open;
  io->app.message = o->on_message;
  io->app.close = o->on_close;
  dx_options_on_http(o, dx__sio_http);
  dx_options_on_http_abort(o, dx__sio_http_abort);
  dx_options_on_accept(o, dx__sio_ws_accept);
  dx_options_on_open(o, dx__sio_ws_open);
  dx_options_on_message(o, dx__sio_ws_message);
  dx_options_on_close(o, dx__sio_ws_close);
  if (o->http_max_body < io->o.max_payload)
    dx_options_set_http_limits(o, io->o.max_payload, o->http_request_ms, o->http_keepalive_ms);
  if (o->max_message < io->o.max_payload + 1) dx_options_set_max_message(o, io->o.max_payload + 1);
  dx__options_set_sio(o, io);
  return 0;
}

int dx_sio_shutdown(dx_sio *io) {
  if (!io || io->shutting) return DX_ESTATE;
  io->shutting = 1;
  for (size_t i = 0; i < io->tab_cap; i++)
    for (sess *s = io->tab[i], *nx; s; s = nx) {
      nx = s->hnext;
      dx__sio_sess_close(s, DX_SIO_SERVER_SHUTTING_DOWN, 1);
    }
  return 0;
}

void dx_sio_free(dx_sio *io) {
  if (!io) return;
  if (!io->shutting) dx_sio_shutdown(io);
  /* What lingers for its close packet goes now. */
  for (size_t i = 0; i < io->tab_cap; i++)
    while (io->tab[i]) dx__sio_sess_close(io->tab[i], DX_SIO_SERVER_SHUTTING_DOWN, 0);
  /* The hub is let go now (it may be freed before the loop is): no
   * socket is left in any room, and the tap is removed. */
  if (io->lo) {
    dx__hub_clear_tap(io->lo);
    for (uint32_t i = 0; i < io->rooms.cap; i++)
      if (io->rooms.slot[i]) {
        room_ref *r = (room_ref *)io->rooms.slot[i];
        dx__hub_topic_removed(io->lo, r->name, r->node.len, r->node.hash);
        free(r);
      }
    dx__map_free(&io->rooms);
    io->lo = NULL;
    io->hub = NULL;
  }
  /* The memory goes with the reap task, after this iteration's tasks that
   * may still name a session (dx_loop_free runs it too when the loop does
   * not turn again). */
  io->freeing = 1;
  dx__task_queue_last(io->loop, &io->reap);
}

void dx__sio_io_free(dx_sio *io) {
  for (dx_sio_nsp *n = io->nsps, *nx; n; n = nx) {
    nx = n->next;
    free(n->name);
    free(n);
  }
  free(io->tab);
  dx__eio_buf_free(&io->scratch);
  dx__sio_encoded_free(&io->enc);
  options_clear(&io->o);
  free(io);
}

/* ---------------------------------------------------------------------- */
/* Plain Engine.IO                                                         */
/* ---------------------------------------------------------------------- */

void dx_sio_options_engine_only(dx_sio_options *o, dx_eio_on_message cb, void *ud) {
  if (!o) return;
  o->raw = cb;
  o->raw_ud = ud;
}

int dx_eio_send(dx_eio_session *es, dx_msg_type type, const void *data, size_t len) {
  sess *s = (sess *)es;
  if (!s || (type != DX_TEXT && type != DX_BINARY) || (len && !data)) return DX_EINVAL;
  if (s->closing || s->dead || s->overflow) return DX_ECLOSED;
  int r = dx__sio_sess_send(s, DX__EIO_MESSAGE, type == DX_BINARY, data, len);
  return r == DX_EUTF8 ? DX_EUTF8 : r;
}

void dx_sio_options_engine_events(dx_sio_options *o, dx_eio_on_open open, dx_eio_on_close close,
                                  void *ud) {
  if (!o) return;
  o->raw_open = open;
  o->raw_close = close;
  o->raw_events_ud = ud;
}

const char *dx_eio_session_id(const dx_eio_session *es) { return ((const sess *)es)->sid; }

