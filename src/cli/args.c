/* Table-driven option parsing and --help rendering for the duplex tool. */
#include "args.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <limits.h>
#include <stdarg.h>
#include <string.h>

void cli_error(const char *cmd, const char *fmt, ...) {
  va_list ap;
  fprintf(stderr, "duplex%s%s: ", cmd ? " " : "", cmd ? cmd : "");
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
}

/* Parses an unsigned decimal prefix; *end points past the digits. Returns
 * -1 on no digits or overflow. */
static int parse_u64(const char *s, uint64_t *out, const char **end) {
  uint64_t v = 0;
  const char *p = s;
  if (!isdigit((unsigned char)*p)) return -1;
  for (; isdigit((unsigned char)*p); p++) {
    unsigned d = (unsigned)(*p - '0');
    if (v > (UINT64_MAX - d) / 10) return -1;
    v = v * 10 + d;
  }
  *out = v;
  *end = p;
  return 0;
}

int cli_parse_size(const char *text, uint64_t *out) {
  uint64_t v;
  const char *p;
  unsigned shift = 0;
  if (parse_u64(text, &v, &p) != 0) return -1;
  switch (tolower((unsigned char)*p)) {
    case 'k': shift = 10; p++; break;
    case 'm': shift = 20; p++; break;
    case 'g': shift = 30; p++; break;
    default: break;
  }
  /* Accept "64K", "64KB" and "64KiB" alike; all mean 64 * 1024. */
  if (shift && tolower((unsigned char)*p) == 'i' &&
      tolower((unsigned char)p[1]) == 'b')
    p += 2;
  else if (shift && tolower((unsigned char)*p) == 'b')
    p++;
  if (*p != '\0') return -1;
  if (shift && v > (UINT64_MAX >> shift)) return -1;
  *out = v << shift;
  return 0;
}

int cli_parse_port(const char *text, uint16_t *out) {
  uint64_t v;
  const char *end;
  if (parse_u64(text, &v, &end) != 0 || *end != '\0' || v > 65535) return -1;
  *out = (uint16_t)v;
  return 0;
}

static const cli_opt *find_opt(const cli_command *cmd, const char *name,
                               size_t len) {
  for (int i = 0; i < cmd->n_opts; i++) {
    const cli_opt *o = &cmd->opts[i];
    if (strlen(o->name) == len && memcmp(o->name, name, len) == 0) return o;
  }
  return NULL;
}

static int store_value(const cli_command *cmd, const cli_opt *o,
                       const char *value) {
  switch (o->kind) {
    case CLI_OPT_STRING:
      *(const char **)o->dest = value;
      return 0;
    case CLI_OPT_LIST: {
      cli_list *l = o->dest;
      if (l->n < CLI_LIST_MAX) {
        l->items[l->n++] = value;
        return 0;
      }
      cli_error(cmd->name, "--%s: at most %d times", o->name, CLI_LIST_MAX);
      return -1;
    }
    case CLI_OPT_PORT:
      if (cli_parse_port(value, (uint16_t *)o->dest) == 0) return 0;
      cli_error(cmd->name, "--%s: '%s' is not a port number (0-65535)",
                o->name, value);
      return -1;
    case CLI_OPT_SIZE:
      /* Every size duplex takes is a limit, and a zero limit is useless. */
      if (cli_parse_size(value, (uint64_t *)o->dest) == 0 &&
          *(uint64_t *)o->dest > 0)
        return 0;
      cli_error(cmd->name,
                "--%s: '%s' is not a size (1 or more bytes, optionally with "
                "K, M or G)", o->name, value);
      return -1;
    case CLI_OPT_UINT: {
      uint64_t v;
      const char *end;
      if (parse_u64(value, &v, &end) == 0 && *end == '\0' && v <= UINT_MAX) {
        *(unsigned *)o->dest = (unsigned)v;
        return 0;
      }
      cli_error(cmd->name, "--%s: '%s' is not a whole number", o->name,
                value);
      return -1;
    }
    case CLI_OPT_SECONDS: {
      /* Seconds with an optional fraction ("25", "0.5"), kept as ms. */
      char *end;
      errno = 0;
      double secs = strtod(value, &end);
      if (errno == 0 && end != value && *end == '\0' && secs >= 0 && secs <= 4294967.0) {
        *(uint32_t *)o->dest = (uint32_t)(secs * 1000.0 + 0.5);
        return 0;
      }
      cli_error(cmd->name, "--%s: '%s' is not a number of seconds", o->name, value);
      return -1;
    }
    case CLI_OPT_FLAG:
      break;
  }
  return -1;
}

static const cli_opt *find_short(const cli_command *cmd, char c) {
  for (int i = 0; i < cmd->n_opts; i++)
    if (cmd->opts[i].short_name && cmd->opts[i].short_name == c) return &cmd->opts[i];
  return NULL;
}

cli_parse_result cli_parse(const cli_command *cmd, int argc, char **argv,
                           char **pos, int *n_pos) {
  bool options_done = false;
  *n_pos = 0;
  for (int i = 1; i < argc; i++) {
    const char *arg = argv[i];
    if (options_done || arg[0] != '-' || arg[1] == '\0') {
      if (*n_pos >= cmd->max_pos) {
        cli_error(cmd->name, "unexpected argument '%s' (see 'duplex %s "
                  "--help')", arg, cmd->name);
        return CLI_PARSE_ERROR;
      }
      pos[(*n_pos)++] = argv[i];
      continue;
    }
    if (strcmp(arg, "--") == 0) {
      options_done = true;
      continue;
    }
    if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
      cli_print_help(cmd, stdout);
      return CLI_PARSE_HELP;
    }
    const char *name = arg + 2;
    const char *eq = strchr(name, '=');
    size_t name_len = eq ? (size_t)(eq - name) : strlen(name);
    const cli_opt *o = arg[1] == '-'   ? find_opt(cmd, name, name_len)
                       : arg[2] == '\0' ? find_short(cmd, arg[1])
                                         : NULL;
    if (arg[1] != '-') eq = NULL; /* "-v": no "=value" form */
    if (!o) {
      cli_error(cmd->name, "unknown option '%.*s' (see 'duplex %s --help')",
                (int)(eq ? (size_t)(eq - arg) : strlen(arg)), arg, cmd->name);
      return CLI_PARSE_ERROR;
    }
    if (o->kind == CLI_OPT_FLAG) {
      if (eq) {
        cli_error(cmd->name, "--%s takes no value", o->name);
        return CLI_PARSE_ERROR;
      }
      *(bool *)o->dest = true;
      if (o->given) *o->given = true;
      continue;
    }
    const char *value;
    if (eq) {
      value = eq + 1;
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      cli_error(cmd->name, "--%s needs a value (%s)", o->name, o->metavar);
      return CLI_PARSE_ERROR;
    }
    if (store_value(cmd, o, value) != 0) return CLI_PARSE_ERROR;
    if (o->given) *o->given = true;
  }
  if (*n_pos < cmd->min_pos) {
    cli_error(cmd->name, "missing argument: %s (see 'duplex %s --help')",
              cmd->args, cmd->name);
    return CLI_PARSE_ERROR;
  }
  return CLI_PARSE_OK;
}

/* "  -v, --name METAVAR" as it starts an option's help line. */
static int option_label(const cli_opt *o, char *buf, size_t cap) {
  char shrt[8] = "    ";
  if (o->short_name) snprintf(shrt, sizeof shrt, "-%c, ", o->short_name);
  return snprintf(buf, cap, "%s--%s%s%s", shrt, o->name, o->metavar ? " " : "",
                  o->metavar ? o->metavar : "");
}

/* Writes text word-wrapped within 79 columns, the first line starting at
 * column *col, the rest at column indent. */
static void put_wrapped(FILE *out, const char *text, int *col, int indent) {
  while (*text) {
    size_t word = strcspn(text, " ");
    if (*col > indent && *col + 1 + (int)word > 79) {
      fprintf(out, "\n%*s", indent, "");
      *col = indent;
    } else if (*col > indent) {
      fputc(' ', out);
      (*col)++;
    }
    fwrite(text, 1, word, out);
    *col += (int)word;
    text += word;
    while (*text == ' ') text++;
  }
}

void cli_print_help(const cli_command *cmd, FILE *out) {
  fprintf(out, "usage: duplex %s [options]%s%s\n\n%s\n\noptions:\n",
          cmd->name, cmd->args[0] ? " " : "", cmd->args, cmd->summary);
  /* Help texts start in one column, just right of the longest label that
   * is not too long; a longer label gets its help on the next line. */
  int width = 14; /* "-h, --help" */
  char label[96];
  for (int i = 0; i < cmd->n_opts; i++) {
    int n = option_label(&cmd->opts[i], label, sizeof label);
    if (n > width && n <= 30) width = n;
  }
  int indent = 2 + width + 2;
  for (int i = 0; i < cmd->n_opts; i++) {
    const cli_opt *o = &cmd->opts[i];
    int n = option_label(o, label, sizeof label);
    int col = fprintf(out, "  %s", label);
    if (n > width) {
      fprintf(out, "\n%*s", indent, "");
    } else {
      fprintf(out, "%*s", indent - col, "");
    }
    col = indent;
    put_wrapped(out, o->help, &col, indent);
    if (o->def) {
      /* The default stays whole on a line of its own when it can. */
      char def[160];
      int dn = snprintf(def, sizeof def, "(default: %s)", o->def);
      if (col + 1 + dn > 79 && dn <= 79 - indent) {
        fprintf(out, "\n%*s", indent, "");
        col = indent;
      }
      put_wrapped(out, def, &col, indent);
    }
    fputc('\n', out);
  }
  fprintf(out, "  %-*s  %s\n", width, "-h, --help", "show this help and exit");
  if (cmd->details) fprintf(out, "\n%s", cmd->details);
}
