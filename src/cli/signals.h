/* SIGINT/SIGTERM handling for commands that run a loop. */
#ifndef DUPLEX_CLI_SIGNALS_H
#define DUPLEX_CLI_SIGNALS_H

#include <duplex.h>

/* From now on SIGINT and SIGTERM call dx_loop_stop(loop) (documented as
 * async-signal-safe) and are counted; SIGPIPE is ignored so a closed stdout
 * or socket shows up as an error instead of killing the process. Returns 0,
 * or -1 with errno set. */
int cli_signals_install(dx_loop *loop);

/* How many SIGINT/SIGTERM arrived since cli_signals_install(). */
int cli_signals_count(void);

/* Forgets the loop (call before dx_loop_free()); later signals are only
 * counted, so cleanup is never cut short. */
void cli_signals_forget_loop(void);

#endif
