/* Calls back when a descriptor the CLI reads (stdin) has input, without
 * ever blocking the loop, and lets the caller pause reading while its
 * output backs up. */
#ifndef DUPLEX_CLI_READER_H
#define DUPLEX_CLI_READER_H

#include <stdbool.h>

#include <duplex.h>

#include "timer.h"

typedef enum {
  CLI_READER_OFF,
  CLI_READER_WATCHED,  /* dx_loop_watch_fd(): called while fd is readable */
  CLI_READER_PUMPED,   /* epoll refuses fd (regular file, /dev/null): reads
                          never block there, so call back every iteration */
  CLI_READER_PAUSED    /* waiting for ready() before reading again */
} cli_reader_mode;

typedef struct {
  dx_loop *loop;
  int fd;
  cli_reader_mode mode;
  cli_timer timer;  /* drives PUMPED and PAUSED */
  void (*on_input)(void *ud);  /* read fd once; never blocks */
  bool (*ready)(void *ud);     /* PAUSED: may reading resume? */
  void *ud;
} cli_reader;

void cli_reader_init(cli_reader *r, dx_loop *loop, int fd,
                     void (*on_input)(void *ud), void *ud);
/* Starts (or resumes) calling on_input. Returns 0 or -1. */
int cli_reader_start(cli_reader *r);
/* Stops calling on_input until ready(ud) returns true (polled every few
 * milliseconds), then starts again. */
void cli_reader_pause(cli_reader *r, bool (*ready)(void *ud));
/* Stops for good; safe from on_input and when already off. */
void cli_reader_stop(cli_reader *r);

#endif
