/* duplex serve --socketio: the chat demo's Socket.IO namespace (see
 * serve_sio.c for the events it takes). */
#ifndef DUPLEX_CLI_SERVE_SIO_H
#define DUPLEX_CLI_SERVE_SIO_H
#include <stdbool.h>

#include <duplex.h>
#include <duplex_sio.h>

/* A Socket.IO server on `loop` with the namespace /chat, ready for
 * dx_sio_attach. Its rooms go through `hub` (borrowed, must outlive it):
 * every loop whose server shares the hub, and every node with Redis.
 * quiet: no "sio: connect" / "sio: disconnect" lines on stderr. NULL after
 * reporting why (cli_error). Free with dx_sio_free. */
dx_sio *serve_sio_new(dx_loop *loop, dx_hub *hub, bool quiet);

/* When static_dir holds the demo page (socketio/index.html) but not the
 * client bundle it loads, says so on stderr and how to get it. */
void serve_sio_check_page(const char *static_dir);
#endif
