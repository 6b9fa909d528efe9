/* Line splitting for stdin; see lines.h. */
#include "lines.h"

#include <stdlib.h>
#include <string.h>

void cli_lines_init(cli_lines *l, size_t max_line) {
  memset(l, 0, sizeof *l);
  l->max_line = max_line;
}

void cli_lines_free(cli_lines *l) {
  free(l->buf);
  memset(l, 0, sizeof *l);
}

char *cli_lines_room(cli_lines *l, size_t want, size_t *room) {
  /* Drop consumed lines first so the buffer only ever holds one partial
   * line plus the latest read. */
  if (l->start > 0) {
    memmove(l->buf, l->buf + l->start, l->len - l->start);
    l->len -= l->start;
    l->start = 0;
  }
  if (l->cap - l->len < want) {
    size_t cap = l->cap ? l->cap : want;
    while (cap - l->len < want) {
      if (cap > (size_t)-1 / 2) return NULL;
      cap *= 2;
    }
    char *p = realloc(l->buf, cap);
    if (!p) return NULL;
    l->buf = p;
    l->cap = cap;
  }
  *room = l->cap - l->len;
  return l->buf + l->len;
}

void cli_lines_commit(cli_lines *l, size_t n) { l->len += n; }

int cli_lines_next(cli_lines *l, const char **line, size_t *len) {
  size_t from = l->start + l->scanned;
  char *nl = from < l->len ? memchr(l->buf + from, '\n', l->len - from) : NULL;
  if (!nl) {
    l->scanned = l->len - l->start;
    return l->scanned > l->max_line ? -1 : 0;
  }
  size_t n = (size_t)(nl - (l->buf + l->start));
  if (n > l->max_line) return -1;
  *line = l->buf + l->start;
  *len = n;
  l->start += n + 1;
  l->scanned = 0;
  return 1;
}

int cli_lines_rest(cli_lines *l, const char **line, size_t *len) {
  size_t n = l->len - l->start;
  if (n == 0) return 0;
  *line = l->buf + l->start;
  *len = n;
  l->start = l->len;
  l->scanned = 0;
  return 1;
}
