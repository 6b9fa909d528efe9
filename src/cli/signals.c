/* SIGINT/SIGTERM stop the loop; the command decides what happens next. */
#define _POSIX_C_SOURCE 200809L
#include "signals.h"

#include <errno.h>
#include <signal.h>
#include <stddef.h>

static dx_loop *volatile g_loop;
static volatile sig_atomic_t g_count;

static void on_signal(int sig) {
  (void)sig;
  /* The handler runs on the loop's thread, possibly between a failed
   * recv() and the check of its errno (EAGAIN): dx_loop_stop's write()
   * must not change what that check sees. */
  int saved = errno;
  dx_loop *loop = g_loop;
  if (g_count < 1000) g_count++;
  if (loop) dx_loop_stop(loop);
  errno = saved;
}

int cli_signals_install(dx_loop *loop) {
  struct sigaction sa = {0};
  g_count = 0;
  g_loop = loop;
  sigemptyset(&sa.sa_mask);
  sa.sa_handler = on_signal;
  /* SA_RESTART: a signal must not turn a blocking stdin read into EINTR
   * noise; the handler's only job is to stop the loop. */
  sa.sa_flags = SA_RESTART;
  if (sigaction(SIGINT, &sa, NULL) != 0 || sigaction(SIGTERM, &sa, NULL) != 0)
    return -1;
  sa.sa_handler = SIG_IGN;
  return sigaction(SIGPIPE, &sa, NULL);
}

int cli_signals_count(void) { return g_count; }

void cli_signals_forget_loop(void) { g_loop = NULL; }
