/* A one-shot millisecond timer for the CLI, built from a timerfd watched
 * with dx_loop_watch_fd() (duplex.h has no public timer). */
#ifndef DUPLEX_CLI_TIMER_H
#define DUPLEX_CLI_TIMER_H

#include <duplex.h>

typedef struct cli_timer cli_timer;
typedef void (*cli_timer_cb)(cli_timer *t, void *ud);

struct cli_timer {
  dx_loop *loop;
  int fd;  /* -1 when idle */
  cli_timer_cb cb;
  void *ud;
};

void cli_timer_init(cli_timer *t, dx_loop *loop);
/* (Re)arms the timer to call cb once after ms milliseconds. Returns 0, or a
 * negative DX_E* code / -1 with errno when the timerfd cannot be made. */
int cli_timer_start(cli_timer *t, unsigned ms, cli_timer_cb cb, void *ud);
/* Disarms it and releases the descriptor (which, being watched, keeps
 * dx_loop_run() going until then); safe when idle and from cb. */
void cli_timer_stop(cli_timer *t);

#endif
