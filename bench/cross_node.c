/* Cross-node pub/sub through Redis, as a client sees it: one connection
 * publishes to room R on node A (duplex serve --rooms --redis), another is
 * a member of R on node B, both in this process on one loop, so every
 * publish→deliver time is measured with one clock.
 *
 *   cross_node latency URL_A URL_B RATE SECONDS SIZE
 *       publishes RATE messages/s (a timerfd paces them) for SECONDS and
 *       prints "sent N delivered N lost N p50_us X p99_us Y max_us Z"
 *   cross_node peak URL_A URL_B WINDOW SECONDS SIZE
 *       keeps WINDOW messages in flight (publish on every delivery) and
 *       prints "delivered N in S s: R msg/s"
 *
 * Each payload starts with a sequence number and the send time (8 bytes
 * each); deliveries must come in order (a gap counts as lost). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <duplex.h>

static struct {
  int peak;
  double rate, secs;
  size_t size, window;
  dx_loop *loop;
  dx_conn *pub, *sub;
  int open;
  uint64_t sent, delivered, next_seq, lost;
  uint64_t t_start, t_end;
  uint64_t *lat; /* µs, one per delivery */
  size_t nlat, caplat;
  uint8_t *buf;
  int tfd;
} B;

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void publish_one(void) {
  uint64_t seq = B.sent++, t = now_ns();
  memcpy(B.buf, &seq, 8);
  memcpy(B.buf + 8, &t, 8);
  dx_send(B.pub, DX_BINARY, B.buf, B.size);
}

static void finish(void) {
  dx_close(B.pub, DX_CLOSE_NORMAL, NULL);
  dx_close(B.sub, DX_CLOSE_NORMAL, NULL);
  if (B.tfd >= 0) dx_loop_unwatch_fd(B.loop, B.tfd);
}

static void on_tick(dx_loop *loop, int fd, void *ud) {
  (void)loop, (void)ud;
  uint64_t n;
  if (read(fd, &n, sizeof n) != sizeof n) return;
  uint64_t t = now_ns();
  if (t < B.t_end) {
    uint64_t due = (uint64_t)((double)(t - B.t_start) / 1e9 * B.rate);
    while (B.sent < due) publish_one();
  } else {
    /* Leave a second for the last deliveries. */
    struct itimerspec it = {{0, 0}, {1, 0}};
    timerfd_settime(fd, 0, &it, NULL);
    if (t >= B.t_end + 900000000u) finish();
  }
}

static void start(void) {
  B.t_start = now_ns();
  B.t_end = B.t_start + (uint64_t)(B.secs * 1e9);
  if (B.peak) {
    for (size_t i = 0; i < B.window; i++) publish_one();
    return;
  }
  B.tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  struct itimerspec it = {{0, 1000000}, {0, 1000000}}; /* every ms */
  timerfd_settime(B.tfd, 0, &it, NULL);
  dx_loop_watch_fd(B.loop, B.tfd, on_tick, NULL);
}

static void on_open(dx_conn *c) {
  (void)c;
  /* The member joins first; give node B's subscription time to reach
   * Redis before the first publish (a real subscription is asynchronous). */
  if (++B.open == 2) {
    struct timespec ts = {0, 300 * 1000 * 1000};
    nanosleep(&ts, NULL);
    start();
  }
}

static void on_message(dx_conn *c, dx_msg_type type, const uint8_t *data, size_t len) {
  (void)type;
  if (c != B.sub || len < 16) return;
  uint64_t seq, t;
  memcpy(&seq, data, 8);
  memcpy(&t, data + 8, 8);
  if (seq != B.next_seq) B.lost += seq > B.next_seq ? seq - B.next_seq : 0;
  B.next_seq = seq + 1;
  B.delivered++;
  if (B.nlat == B.caplat) {
    B.caplat = B.caplat ? B.caplat * 2 : 4096;
    B.lat = realloc(B.lat, B.caplat * sizeof *B.lat);
  }
  B.lat[B.nlat++] = (now_ns() - t) / 1000;
  if (B.peak) {
    if (now_ns() < B.t_end) publish_one();
    else if (B.delivered + B.lost >= B.sent) finish();
  }
}

static int cmp(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  if (argc != 7 || (strcmp(argv[1], "latency") && strcmp(argv[1], "peak"))) {
    fprintf(stderr, "usage: %s latency|peak URL_A URL_B RATE|WINDOW SECONDS SIZE\n", argv[0]);
    return 2;
  }
  B.peak = strcmp(argv[1], "peak") == 0;
  B.rate = atof(argv[4]);
  B.window = (size_t)atol(argv[4]);
  B.secs = atof(argv[5]);
  B.size = (size_t)atol(argv[6]);
  B.tfd = -1;
  if (B.size < 16) B.size = 16;
  B.buf = calloc(1, B.size);
  B.loop = dx_loop_new();
  dx_options *o = dx_options_new();
  dx_options_on_open(o, on_open);
  dx_options_on_message(o, on_message);
  dx_options_set_ping(o, 0, 0);
  if (dx_connect(B.loop, argv[3], o, &B.sub) || dx_connect(B.loop, argv[2], o, &B.pub)) {
    fprintf(stderr, "cannot connect: %s\n", dx_last_error());
    return 1;
  }
  dx_options_free(o);
  dx_loop_run(B.loop);
  double secs = (double)(now_ns() - B.t_start) / 1e9;
  if (B.peak) {
    printf("delivered %" PRIu64 " in %.2f s: %.0f msg/s (lost %" PRIu64 ")\n", B.delivered,
           B.secs, (double)B.delivered / B.secs, B.lost);
  } else {
    qsort(B.lat, B.nlat, sizeof *B.lat, cmp);
    uint64_t p50 = B.nlat ? B.lat[B.nlat / 2] : 0, p99 = B.nlat ? B.lat[B.nlat * 99 / 100] : 0;
    printf("sent %" PRIu64 " delivered %" PRIu64 " lost %" PRIu64 " p50_us %" PRIu64
           " p99_us %" PRIu64 " max_us %" PRIu64 " (%.1f s)\n",
           B.sent, B.delivered, B.sent - B.delivered, p50, p99, B.nlat ? B.lat[B.nlat - 1] : 0,
           secs);
  }
  dx_loop_free(B.loop);
  free(B.lat);
  free(B.buf);
  return B.delivered ? 0 : 1;
}
