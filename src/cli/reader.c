/* Input readiness for the CLI; see reader.h. */
#include "reader.h"

#define PAUSE_POLL_MS 5

void cli_reader_init(cli_reader *r, dx_loop *loop, int fd,
                     void (*on_input)(void *ud), void *ud) {
  r->loop = loop;
  r->fd = fd;
  r->mode = CLI_READER_OFF;
  cli_timer_init(&r->timer, loop);
  r->on_input = on_input;
  r->ready = NULL;
  r->ud = ud;
}

static void on_watch(dx_loop *loop, int fd, void *ud) {
  (void)loop;
  (void)fd;
  cli_reader *r = ud;
  r->on_input(r->ud);
}

static void on_timer(cli_timer *t, void *ud) {
  cli_reader *r = ud;
  if (r->mode == CLI_READER_PAUSED) {
    if (r->ready(r->ud)) {
      cli_timer_stop(t);
      if (cli_reader_start(r) == 0) return;
      /* cannot resume: leave it paused and try again later */
      r->mode = CLI_READER_PAUSED;
    }
    cli_timer_start(t, PAUSE_POLL_MS, on_timer, r);
    return;
  }
  if (r->mode != CLI_READER_PUMPED) return;
  r->on_input(r->ud);
  /* on_input may have paused or stopped the reader. */
  if (r->mode == CLI_READER_PUMPED) cli_timer_start(t, 0, on_timer, r);
}

int cli_reader_start(cli_reader *r) {
  if (r->mode == CLI_READER_WATCHED || r->mode == CLI_READER_PUMPED)
    return 0;
  if (dx_loop_watch_fd(r->loop, r->fd, on_watch, r) == 0) {
    r->mode = CLI_READER_WATCHED;
    return 0;
  }
  if (cli_timer_start(&r->timer, 0, on_timer, r) == 0) {
    r->mode = CLI_READER_PUMPED;
    return 0;
  }
  r->mode = CLI_READER_OFF;
  return -1;
}

void cli_reader_pause(cli_reader *r, bool (*ready)(void *ud)) {
  if (r->mode == CLI_READER_OFF || r->mode == CLI_READER_PAUSED) return;
  /* Without a timer nothing would resume reading: then keep reading. */
  if (cli_timer_start(&r->timer, PAUSE_POLL_MS, on_timer, r) != 0) return;
  if (r->mode == CLI_READER_WATCHED) dx_loop_unwatch_fd(r->loop, r->fd);
  r->mode = CLI_READER_PAUSED;
  r->ready = ready;
}

void cli_reader_stop(cli_reader *r) {
  if (r->mode == CLI_READER_WATCHED) dx_loop_unwatch_fd(r->loop, r->fd);
  cli_timer_stop(&r->timer);
  r->mode = CLI_READER_OFF;
}
