/* A minimal WebSocket echo server: example_echo_server [PORT] (default 9001).
 * Every message goes back to its sender with the same type. Ctrl-C stops. */
#define _POSIX_C_SOURCE 200809L /* sigaction */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include <duplex.h>

static dx_loop *loop;

static void on_message(dx_conn *c, dx_msg_type type, const uint8_t *data,
                       size_t len) {
  dx_send(c, type, data, len); /* data is copied; fails only if closing */
}

static void on_signal(int sig) {
  (void)sig;
  dx_loop_stop(loop); /* async-signal-safe */
}

int main(int argc, char **argv) {
  char *end = NULL;
  long port = argc > 1 ? strtol(argv[1], &end, 10) : 9001;
  if ((end && *end) || port < 0 || port > 65535) {
    fprintf(stderr, "usage: %s [PORT]\n", argv[0]);
    return 2;
  }
  loop = dx_loop_new();
  dx_options *o = dx_options_new();
  if (!loop || !o) return 1;
  dx_options_on_message(o, on_message);
  dx_server *s = dx_server_new(loop, o); /* copies the options */
  dx_options_free(o);
  int rc = s ? dx_server_listen(s, NULL, (uint16_t)port) : DX_ENOMEM;
  if (rc != 0) {
    /* dx_last_error() names the cause ("Address already in use"); the
     * code alone only says which kind of failure. */
    fprintf(stderr, "cannot listen on port %ld: %s\n", port,
            *dx_last_error() ? dx_last_error() : dx_strerror(rc));
    if (s) dx_server_free(s);
    dx_loop_free(loop);
    return 1;
  }
  struct sigaction sa = {.sa_handler = on_signal};
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  printf("echo server on ws://127.0.0.1:%u/\n", dx_server_port(s));
  fflush(stdout);
  dx_loop_run(loop);
  dx_server_free(s); /* servers go before their loop */
  dx_loop_free(loop);
  return 0;
}
