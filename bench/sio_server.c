/* The duplex side of bench/socketio.sh: a Socket.IO server on one loop,
 * on the public API only, doing what bench/sio_ref.js does on the
 * reference (npm socket.io), event for event:
 *
 *   echo ...ARGS          acked with ARGS (nothing when no ack is asked)
 *   join ROOM             joins ROOM, acked with no arguments
 *   fanout ROOM PAYLOAD   "msg" PAYLOAD to every socket of ROOM
 *
 * Namespace "/" only; the reference's defaults otherwise (pingInterval
 * 25 s, pingTimeout 20 s, maxPayload 1 MB, no compression, both
 * transports). usage: sio_server PORT [HOST] (HOST 127.0.0.1; PORT 0:
 * any free one). Prints "listening on PORT" once it listens; SIGINT or
 * SIGTERM stops it (exit status 0). */
#define _POSIX_C_SOURCE 200809L /* sigaction */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <duplex.h>
#include <duplex_sio.h>

static dx_loop *loop;

/* Answers an ack; DX_EINVAL and DX_ENOMEM leave it ours to release. */
static void answer(dx_sio_ack *ack, const json_t *args) {
  int r = dx_sio_ack_send(ack, args);
  if (r == DX_EINVAL || r == DX_ENOMEM) dx_sio_ack_drop(ack);
}

static void on_echo(dx_sio_socket *s, const json_t *args, dx_sio_ack *ack, void *ud) {
  (void)s, (void)ud;
  if (ack) answer(ack, args);
}

static void on_join(dx_sio_socket *s, const json_t *args, dx_sio_ack *ack, void *ud) {
  (void)ud;
  const char *room = json_string_value(json_array_get(args, 0));
  if (room) dx_sio_join(s, room);
  if (!ack) return;
  answer(ack, NULL); /* NULL: no arguments */
}

static void on_fanout(dx_sio_socket *s, const json_t *args, dx_sio_ack *ack, void *ud) {
  (void)ud;
  if (ack) dx_sio_ack_drop(ack); /* the load client never asks */
  const char *room = json_string_value(json_array_get(args, 0));
  json_t *payload = json_array_get(args, 1);
  if (!room || !payload) return;
  json_t *out = json_pack("[O]", payload);
  if (out) dx_sio_emit_to(dx_sio_socket_nsp(s), room, NULL, "msg", out);
  json_decref(out);
}

static void on_connection(dx_sio_socket *s, const json_t *auth, void *ud) {
  (void)auth, (void)ud;
  dx_sio_on(s, "echo", on_echo, NULL);
  dx_sio_on(s, "join", on_join, NULL);
  dx_sio_on(s, "fanout", on_fanout, NULL);
}

static void on_signal(int sig) {
  (void)sig;
  dx_loop_stop(loop); /* async-signal-safe */
}

int main(int argc, char **argv) {
  int port = argc > 1 ? atoi(argv[1]) : 0;
  const char *host = argc > 2 ? argv[2] : "127.0.0.1";
  if (argc < 2 || argc > 3 || port < 0 || port > 65535) {
    fprintf(stderr, "usage: sio_server PORT [HOST]\n");
    return 2;
  }
  loop = dx_loop_new();
  dx_sio *io = loop ? dx_sio_new(loop, NULL) : NULL; /* the reference's defaults */
  dx_options *o = dx_options_new();
  if (!io || !o) return 1;
  dx_sio_nsp_on_connection(dx_sio_of(io, "/"), on_connection, NULL);
  dx_sio_attach(io, o); /* deflate is off unless asked for: as the reference */
  dx_server *srv = dx_server_new(loop, o);
  dx_options_free(o);
  if (!srv || dx_server_listen(srv, host, (uint16_t)port) != 0) {
    fprintf(stderr, "sio_server: cannot listen on %s:%d: %s\n", host, port, dx_last_error());
    return 1;
  }
  printf("listening on %u\n", dx_server_port(srv)); /* port 0: the one picked */
  fflush(stdout);
  struct sigaction sa = {.sa_handler = on_signal};
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  dx_loop_run(loop);
  dx_sio_shutdown(io);
  dx_server_free(srv);
  dx_sio_free(io);
  dx_loop_free(loop);
  return 0;
}
