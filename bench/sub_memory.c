/*
 * sub_memory — the server side of the subscription-memory figure
 * (bench/fanout.sh, issue 12 §5): what a subscription costs, in bytes per
 * connection per topic.
 *
 * One thread, one loop, one hub; every connection that opens is subscribed
 * to TOPICS topics, the same ones for everybody ("t0", "t1", ...): with
 * N connections the hub holds TOPICS topics of N members each. No
 * permessage-deflate, no heartbeats, messages ignored. The client is
 * `wsbench --mode idle --pid PID`, which reads this process's VmRSS before
 * and after opening the connections. The difference between a run with
 * TOPICS = 10 and one with TOPICS = 1, over N x 9, is the cost of one
 * more subscription. On SIGINT/SIGTERM it says how many connections it
 * held at most, how many subscriptions failed, and its VmRSS, and exits.
 *
 * usage: sub_memory PORT TOPICS   (listens on 127.0.0.1)
 */
#define _POSIX_C_SOURCE 200809L /* sigaction */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <duplex.h>

static dx_loop *loop;
static int topics;
static size_t open_conns, peak, failed;

static void on_open(dx_conn *c) {
  if (++open_conns > peak) peak = open_conns;
  for (int t = 0; t < topics; t++) {
    char name[16];
    int n = snprintf(name, sizeof name, "t%d", t);
    if (dx_subscribe(c, name, (size_t)n) != 0) failed++;
  }
}

static void on_close(dx_conn *c, int code, const char *reason, dx_why why, int status) {
  (void)c, (void)code, (void)reason, (void)why, (void)status;
  open_conns--;
}

static void on_message(dx_conn *c, dx_msg_type type, const uint8_t *data, size_t len) {
  (void)c, (void)type, (void)data, (void)len;
}

static void on_signal(int sig) {
  (void)sig;
  dx_loop_stop(loop);
}

static long rss_kb(void) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long kb = -1;
  while (f && fgets(line, sizeof line, f))
    if (!strncmp(line, "VmRSS:", 6)) kb = strtol(line + 6, NULL, 10);
  if (f) fclose(f);
  return kb;
}

int main(int argc, char **argv) {
  char *e1 = NULL, *e2 = NULL;
  long port = argc == 3 ? strtol(argv[1], &e1, 10) : -1;
  long t = argc == 3 ? strtol(argv[2], &e2, 10) : -1;
  if (argc != 3 || *e1 || *e2 || port < 1 || port > 65535 || t < 0 || t > 1000) {
    fprintf(stderr, "usage: sub_memory PORT TOPICS\n");
    return 2;
  }
  topics = (int)t;
  loop = dx_loop_new();
  dx_hub *hub = dx_hub_new();
  dx_options *o = dx_options_new();
  if (!loop || !hub || !o) return 1;
  dx_options_set_hub(o, hub);
  dx_options_on_open(o, on_open);
  dx_options_on_close(o, on_close);
  dx_options_on_message(o, on_message);
  dx_options_set_deflate(o, 0);
  dx_options_set_ping(o, 0, 0);
  dx_options_set_max_handshakes(o, 0);
  dx_server *s = dx_server_new(loop, o);
  dx_options_free(o);
  if (!s || dx_server_listen(s, "127.0.0.1", (uint16_t)port) != 0) {
    fprintf(stderr, "sub_memory: cannot listen on %ld: %s\n", port, dx_last_error());
    return 1;
  }
  struct sigaction sa = {.sa_handler = on_signal};
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  dx_loop_run(loop);
  fprintf(stderr, "sub_memory: topics=%d peak_connections=%zu failed_subscribes=%zu "
          "vmrss_kb=%ld\n", topics, peak, failed, rss_kb());
  dx_server_free(s);
  dx_loop_free(loop);
  dx_hub_free(hub);
  return failed ? 1 : 0;
}
