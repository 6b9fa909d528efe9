/* duplex connect, stdin side: each line becomes a text message. */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "args.h"
#include "connect.h"

#define READ_CHUNK (64 * 1024)
/* Stop reading stdin while this much is queued for the socket, resume below
 * the low mark: a fast producer (`cat big | duplex connect`) must not grow
 * the send queue without bound. */
#define HIGH_WATER (1024 * 1024)
#define LOW_WATER (256 * 1024)

static void on_input(void *ud);

void connect_input_init(connect_ctx *ctx, size_t max_line,
                        unsigned linger_ms) {
  cli_reader_init(&ctx->input, ctx->loop, STDIN_FILENO, on_input, ctx);
  cli_lines_init(&ctx->lines, max_line);
  cli_timer_init(&ctx->linger, ctx->loop);
  ctx->linger_ms = linger_ms;
}

void connect_input_stop(connect_ctx *ctx) {
  ctx->input_done = true;
  ctx->lingering = false;
  cli_reader_stop(&ctx->input);
  cli_timer_stop(&ctx->linger);
}

void connect_input_pause(connect_ctx *ctx) {
  /* The pipe keeps what arrives meanwhile; input_done stays as it is. */
  cli_reader_stop(&ctx->input);
}

void connect_input_free(connect_ctx *ctx) {
  connect_input_stop(ctx);
  cli_lines_free(&ctx->lines);
}

void connect_input_start(connect_ctx *ctx) {
  /* stdin is only read from now on, so nothing is sent before the
   * connection is open; earlier input waits in the pipe or terminal. */
  if (ctx->input_done) return;
  ctx->input_started = true;
  if (cli_reader_start(&ctx->input) != 0) {
    cli_error("connect", "cannot read stdin: %s", strerror(errno));
    connect_fail(ctx, DX_CLOSE_GOING_AWAY, NULL);
  }
}

/* duplex drops messages that arrive after dx_close() (as browsers do), so
 * closing right at the end of stdin would lose the replies to the last
 * lines. Instead wait until our output is written and nothing has arrived
 * for --linger milliseconds. */
static void on_linger(cli_timer *t, void *ud) {
  connect_ctx *ctx = ud;
  if (!ctx->conn) return;
  if (dx_conn_buffered_amount(ctx->conn) > 0 &&
      cli_timer_start(t, ctx->linger_ms, on_linger, ctx) == 0)
    return;
  connect_input_stop(ctx);
  connect_close(ctx, DX_CLOSE_NORMAL, NULL);
}

void connect_input_activity(connect_ctx *ctx) {
  if (ctx->lingering)
    cli_timer_start(&ctx->linger, ctx->linger_ms, on_linger, ctx);
}

static void end_of_input(connect_ctx *ctx) {
  connect_input_stop(ctx);
  if (!ctx->conn) {
    /* --reconnect, between connections: stop trying. */
    if (ctx->client) connect_close(ctx, DX_CLOSE_NORMAL, NULL);
    return;
  }
  if (ctx->linger_ms > 0 &&
      cli_timer_start(&ctx->linger, ctx->linger_ms, on_linger, ctx) == 0) {
    ctx->lingering = true;
    return;
  }
  connect_close(ctx, DX_CLOSE_NORMAL, NULL);
}

static void send_line(connect_ctx *ctx, const char *line, size_t len) {
  ctx->line_no++;
  int rc = connect_send(ctx, line, len);
  /* DX_SEND_BACKPRESSURE is queued too; on_input pauses stdin itself. */
  if (rc >= 0) return;
  if (rc == DX_EUTF8) {
    cli_error("connect", "stdin line %lu is not valid UTF-8; not sent",
              ctx->line_no);
  } else if (rc == DX_ERECONNECTING || rc == DX_EBUFFER ||
             (rc == DX_ESTATE && ctx->client)) {
    /* --reconnect: no open connection now, but there may be one again. */
    cli_error("connect", "stdin line %lu dropped: %s", ctx->line_no,
              rc == DX_EBUFFER ? "the reconnect queue is full"
              : rc == DX_ESTATE ? "the connection is closing"
                                : "not connected (reconnecting)");
  } else if (rc == DX_ESTATE || rc == DX_ECLOSED) {
    connect_input_stop(ctx); /* closing already; on_close will follow */
  } else {
    cli_error("connect", "cannot send stdin line %lu: %s", ctx->line_no,
              dx_strerror(rc));
    connect_fail(ctx, DX_CLOSE_INTERNAL, "send failed");
  }
}

static bool drained(void *ud) {
  connect_ctx *ctx = ud;
  return !ctx->conn || dx_conn_buffered_amount(ctx->conn) <= LOW_WATER;
}

/* One read() per call, so stdin never needs O_NONBLOCK (it is shared with
 * the shell) and the loop is never blocked. */
static void on_input(void *ud) {
  connect_ctx *ctx = ud;
  size_t room, len;
  const char *line;
  /* --reconnect reads on between connections (lines are queued). */
  if (ctx->input_done || (!ctx->conn && !ctx->client)) return;
  char *p = cli_lines_room(&ctx->lines, READ_CHUNK, &room);
  if (!p) {
    cli_error("connect", "out of memory buffering stdin");
    connect_fail(ctx, DX_CLOSE_INTERNAL, "out of memory");
    return;
  }
  ssize_t n = read(ctx->input.fd, p, room);
  if (n < 0) {
    if (errno == EINTR || errno == EAGAIN) return;
    cli_error("connect", "reading stdin: %s", strerror(errno));
    connect_fail(ctx, DX_CLOSE_GOING_AWAY, NULL);
    return;
  }
  cli_lines_commit(&ctx->lines, (size_t)n);
  for (;;) {
    int got = cli_lines_next(&ctx->lines, &line, &len);
    if (got == 0) break;
    if (got < 0) {
      cli_error("connect", "stdin line %lu is longer than --max-message "
                "(%zu bytes)", ctx->line_no + 1, ctx->lines.max_line);
      connect_fail(ctx, DX_CLOSE_TOO_BIG, "line too long");
      return;
    }
    send_line(ctx, line, len);
    if (ctx->input_done || (!ctx->conn && !ctx->client)) return;
  }
  if (n == 0) {
    /* End of input: a last line without '\n' still counts. */
    if (cli_lines_rest(&ctx->lines, &line, &len)) send_line(ctx, line, len);
    if (!ctx->input_done) end_of_input(ctx);
    return;
  }
  if (ctx->conn && dx_conn_buffered_amount(ctx->conn) > HIGH_WATER)
    cli_reader_pause(&ctx->input, drained);
}
