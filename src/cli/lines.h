/* Splits a byte stream (stdin) into lines without a fixed length limit
 * other than the one given, so a 64 KiB or 16 MiB line works. */
#ifndef DUPLEX_CLI_LINES_H
#define DUPLEX_CLI_LINES_H

#include <stddef.h>

typedef struct {
  char *buf;
  size_t start;    /* first byte not yet returned as a line */
  size_t scanned;  /* bytes from start already known to hold no '\n' */
  size_t len;      /* bytes in buf */
  size_t cap;
  size_t max_line; /* longest line accepted, newline excluded */
} cli_lines;

void cli_lines_init(cli_lines *l, size_t max_line);
void cli_lines_free(cli_lines *l);

/* Returns room for at least `want` more bytes (read() into it, then call
 * cli_lines_commit()) and stores its size in *room; NULL when out of
 * memory. */
char *cli_lines_room(cli_lines *l, size_t want, size_t *room);
void cli_lines_commit(cli_lines *l, size_t n);

/* Takes the next complete line (without its '\n'). Returns 1 and sets
 * *line and *len (valid until the next cli_lines_room()), 0 when no complete
 * line is buffered, or -1 when the partial line is already longer than
 * max_line. */
int cli_lines_next(cli_lines *l, const char **line, size_t *len);

/* At end of input: takes the final line that had no '\n'. Returns 1 with
 * *line and *len set, or 0 when nothing is left. */
int cli_lines_rest(cli_lines *l, const char **line, size_t *len);

#endif
