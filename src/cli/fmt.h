/* Output helpers shared by the duplex commands. */
#ifndef DUPLEX_CLI_FMT_H
#define DUPLEX_CLI_FMT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <duplex.h>

/* Writes s with '"', '\\' and control bytes escaped (\", \\, \n, \xHH), so
 * a close reason always stays on one line and inside its quotes. */
void cli_put_escaped(FILE *out, const char *s);

/* Writes up to `max` bytes of data as lowercase hex without separators. */
void cli_put_hex(FILE *out, const uint8_t *data, size_t len, size_t max);

/* Formats host:port into buf (truncating if needed) and returns buf: ""
 * becomes "*" (every address) and an IPv6 literal is bracketed
 * ("[::1]:8080"). */
const char *cli_hostport(char *buf, size_t size, const char *host,
                         unsigned port);

/* Writes `<label>: code=C reason="R" why=W` and a newline; W comes from
 * dx_why_name(). */
void cli_put_close(FILE *out, const char *label, int code, const char *reason,
                   dx_why why);

#endif
