/* One-shot CLI timer on a timerfd; see timer.h. */
#include "timer.h"

#include <stdint.h>
#include <sys/timerfd.h>
#include <unistd.h>

void cli_timer_init(cli_timer *t, dx_loop *loop) {
  t->loop = loop;
  t->fd = -1;
  t->cb = NULL;
  t->ud = NULL;
}

static void on_ready(dx_loop *loop, int fd, void *ud) {
  cli_timer *t = ud;
  uint64_t expirations;
  (void)loop;
  /* Non-blocking: a spurious wake-up just returns EAGAIN. */
  if (read(fd, &expirations, sizeof expirations) != sizeof expirations)
    return;
  /* One-shot: a timerfd without an interval stays quiet until re-armed. */
  t->cb(t, t->ud);
}

int cli_timer_start(cli_timer *t, unsigned ms, cli_timer_cb cb, void *ud) {
  if (t->fd < 0) {
    int fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (fd < 0) return -1;
    int rc = dx_loop_watch_fd(t->loop, fd, on_ready, t);
    if (rc != 0) {
      close(fd);
      return rc;
    }
    t->fd = fd;
  }
  t->cb = cb;
  t->ud = ud;
  /* An all-zero it_value would disarm, so 0 ms becomes 1 ns. */
  struct itimerspec when = {
      .it_value = {.tv_sec = ms / 1000,
                   .tv_nsec = ms ? (long)(ms % 1000) * 1000000L : 1}};
  if (timerfd_settime(t->fd, 0, &when, NULL) != 0) {
    cli_timer_stop(t);
    return -1;
  }
  return 0;
}

void cli_timer_stop(cli_timer *t) {
  if (t->fd < 0) return;
  dx_loop_unwatch_fd(t->loop, t->fd);
  close(t->fd);
  t->fd = -1;
}
