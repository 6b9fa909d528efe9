/* State shared by the two halves of `duplex connect`: connect.c (the
 * command, the connection's callbacks, stdout) and connect_input.c (stdin
 * lines to text messages). With --reconnect the connection belongs to a
 * dx_client, and sending and closing go through it (connect_send,
 * connect_close). */
#ifndef DUPLEX_CLI_CONNECT_H
#define DUPLEX_CLI_CONNECT_H

#include <stdbool.h>
#include <stddef.h>

#include <duplex.h>

#include "args.h"
#include "lines.h"
#include "reader.h"
#include "timer.h"

typedef struct {
  dx_loop *loop;
  dx_conn *conn;       /* NULL once on_close has run; --reconnect: the open
                          connection, NULL while (re)connecting */
  dx_client *client;   /* --reconnect only */
  bool input_started;  /* --reconnect: stdin is read (from the first open) */
  bool close_seen;     /* --reconnect: on_close ran since the last attempt */
  int last_code;       /* --reconnect: how that connection ended */
  dx_why last_why;
  int last_status;
  bool failed;         /* a local error: exit 1 whatever the close says */
  bool clean;          /* on_close reported a clean close */
  bool verbose;        /* -v: report a clean close too */
  /* stdin side (connect_input.c) */
  cli_reader input;
  cli_lines lines;
  bool input_done;     /* EOF, error, or no longer wanted */
  bool lingering;      /* stdin ended; closing once replies stop coming */
  unsigned linger_ms;
  cli_timer linger;
  unsigned long line_no;
} connect_ctx;

/* Command-line settings of the connection. */
typedef struct {
  uint64_t max_message;
  cli_list protocols;
  bool no_deflate;
  bool insecure;
  const char *ca;
  bool reconnect;
  uint32_t delay_min_ms, delay_max_ms;
  unsigned max_attempts;  /* 0: unlimited */
  uint64_t queue_bytes;
  uint32_t ping_ms, ping_timeout_ms;
} connect_opts;

/* connect.c: a local failure; stops input and closes with `code`. */
void connect_fail(connect_ctx *ctx, int code, const char *reason);
/* connect.c: sends a stdin line (dx_send, or dx_client_send with
 * --reconnect); returns their codes. */
int connect_send(connect_ctx *ctx, const char *line, size_t len);
/* connect.c: closes deliberately (with --reconnect also between attempts:
 * no reconnection follows). */
void connect_close(connect_ctx *ctx, int code, const char *reason);

/* connect_input.c */
void connect_input_init(connect_ctx *ctx, size_t max_line, unsigned linger_ms);
/* The connection is open: start sending stdin lines. */
void connect_input_start(connect_ctx *ctx);
/* A message arrived (while lingering this postpones the close). */
void connect_input_activity(connect_ctx *ctx);
/* Stops reading stdin and any pending close; idempotent. */
void connect_input_stop(connect_ctx *ctx);
/* --reconnect: stops reading stdin for now (the connection ended); a
 * later connect_input_start() resumes. */
void connect_input_pause(connect_ctx *ctx);
void connect_input_free(connect_ctx *ctx);

#endif
