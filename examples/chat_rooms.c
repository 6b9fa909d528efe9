/* Chat rooms on two threads: example_chat_rooms [PORT] (default 9002).
 * A client connects to ws://127.0.0.1:PORT/ROOM and every message it sends
 * reaches the other clients of ROOM, whichever thread's loop they are on.
 * A third thread, which runs no loop, announces the time in room "clock"
 * every 10 s: dx_publish is safe from any thread. Ctrl-C stops. */
#define _POSIX_C_SOURCE 200809L /* sigaction, nanosleep */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <duplex.h>

#define THREADS 2

static dx_hub *hub;
static dx_loop *loops[THREADS];
static atomic_int stopping;

/* The room is the path without its leading '/' ("/" alone is "lobby"). */
static const char *room(dx_conn *c, size_t *len) {
  const char *p = dx_conn_path(c) + 1;
  *len = strcspn(p, "?");
  if (*len == 0) {
    *len = 5;
    return "lobby";
  }
  return p;
}

static void on_open(dx_conn *c) {
  size_t len;
  const char *r = room(c, &len);
  if (dx_subscribe(c, r, len) != 0) dx_close(c, DX_CLOSE_INTERNAL, "cannot join");
}

static void on_message(dx_conn *c, dx_msg_type type, const uint8_t *data, size_t len) {
  size_t rlen;
  const char *r = room(c, &rlen);
  /* Framed once, queued to every member but the sender, on every loop. */
  dx_publish(hub, r, rlen, type, data, len, c);
}

static void *run(void *loop) {
  dx_loop_run(loop);
  return NULL;
}

static void *clock_thread(void *arg) {
  (void)arg;
  while (!atomic_load(&stopping)) {
    char msg[64];
    time_t now = time(NULL);
    size_t n = strftime(msg, sizeof msg, "it is %H:%M:%S", localtime(&now));
    dx_publish(hub, "clock", 5, DX_TEXT, msg, n, NULL);
    struct timespec ts = {0, 100 * 1000 * 1000};
    for (int i = 0; i < 100 && !atomic_load(&stopping); i++) nanosleep(&ts, NULL);
  }
  return NULL;
}

static void on_signal(int sig) {
  (void)sig;
  atomic_store(&stopping, 1);
  for (int i = 0; i < THREADS; i++) dx_loop_stop(loops[i]); /* async-signal-safe */
}

int main(int argc, char **argv) {
  long port = argc > 1 ? strtol(argv[1], NULL, 10) : 9002;
  hub = dx_hub_new();
  dx_options *o = dx_options_new();
  if (!hub || !o) return 1;
  dx_options_set_hub(o, hub); /* the servers' connections may subscribe */
  dx_options_on_open(o, on_open);
  dx_options_on_message(o, on_message);
  dx_server *srv[THREADS];
  for (int i = 0; i < THREADS; i++) {
    /* One loop per thread on one port: the first opens it to the others. */
    dx_options_set_reuseport(o, i ? DX_REUSEPORT_JOIN : DX_REUSEPORT_OPEN);
    loops[i] = dx_loop_new();
    srv[i] = loops[i] ? dx_server_new(loops[i], o) : NULL;
    int rc = srv[i] ? dx_server_listen(srv[i], "127.0.0.1", (uint16_t)port) : DX_ENOMEM;
    if (rc) {
      fprintf(stderr, "cannot listen on port %ld: %s\n", port,
              *dx_last_error() ? dx_last_error() : dx_strerror(rc));
      return 1;
    }
    port = dx_server_port(srv[i]); /* port 0: the others take the one picked */
  }
  dx_options_free(o);
  struct sigaction sa = {.sa_handler = on_signal};
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  printf("chat rooms on ws://127.0.0.1:%ld/ROOM\n", port);
  fflush(stdout);
  pthread_t th[THREADS], clk;
  for (int i = 1; i < THREADS; i++) pthread_create(&th[i], NULL, run, loops[i]);
  pthread_create(&clk, NULL, clock_thread, NULL);
  dx_loop_run(loops[0]);
  for (int i = 1; i < THREADS; i++) pthread_join(th[i], NULL);
  pthread_join(clk, NULL);
  for (int i = 0; i < THREADS; i++) dx_server_free(srv[i]);
  dx_hub_free(hub); /* after the servers, once no loop runs */
  for (int i = 0; i < THREADS; i++) dx_loop_free(loops[i]);
  return 0;
}
