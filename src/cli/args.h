/*
 * Option parsing shared by every `duplex` command.
 *
 * A command describes its options in a table (name, kind, help text,
 * default as shown in --help, destination). cli_parse() fills the
 * destinations and cli_print_help() renders the same table, so --help can
 * never drift from what the parser accepts.
 */
#ifndef DUPLEX_CLI_ARGS_H
#define DUPLEX_CLI_ARGS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/* Exit statuses used by every command. */
enum {
  CLI_EXIT_OK = 0,
  CLI_EXIT_FAIL = 1,   /* runtime failure: address in use, unclean close */
  CLI_EXIT_USAGE = 2   /* bad command line */
};

typedef enum {
  CLI_OPT_FLAG,    /* dest: bool *; takes no value */
  CLI_OPT_STRING,  /* dest: const char ** (points into argv) */
  CLI_OPT_PORT,    /* dest: uint16_t *; 0-65535 */
  CLI_OPT_SIZE,    /* dest: uint64_t *; > 0 bytes, K/M/G (KiB-based) */
  CLI_OPT_UINT,    /* dest: unsigned *; decimal 0-UINT_MAX */
  CLI_OPT_LIST,    /* dest: cli_list *; repeatable string */
  CLI_OPT_SECONDS  /* dest: uint32_t * (milliseconds); "2.5" seconds */
} cli_opt_kind;

#define CLI_LIST_MAX 16
typedef struct {
  const char *items[CLI_LIST_MAX]; /* point into argv */
  int n;
} cli_list;

typedef struct {
  const char *name;     /* long name without the leading "--" */
  cli_opt_kind kind;
  const char *metavar;  /* placeholder in --help ("PORT"); NULL for flags */
  const char *help;     /* one line */
  const char *def;      /* default as shown in --help; NULL for none */
  void *dest;
  char short_name;      /* 'v' for "-v" as well as the long name; 0: none */
  bool *given;          /* set to true when the option appears; NULL: not kept */
} cli_opt;

typedef struct {
  const char *name;       /* "serve" */
  const char *args;       /* positional arguments in the usage line, or "" */
  const char *summary;    /* one line */
  const char *details;    /* paragraphs printed after the options, or NULL */
  const cli_opt *opts;
  int n_opts;
  int min_pos, max_pos;   /* how many positional arguments are accepted */
} cli_command;

typedef enum {
  CLI_PARSE_OK = 0,
  CLI_PARSE_HELP,   /* --help was given; help is already on stdout */
  CLI_PARSE_ERROR   /* a one-line error is already on stderr */
} cli_parse_result;

/* Parses argv[1..argc-1] (argv[0] is the command name) against cmd.
 * Options may be given as "--name value" or "--name=value"; "--" ends the
 * options. Positional arguments are stored in pos[0..*n_pos-1]. */
cli_parse_result cli_parse(const cli_command *cmd, int argc, char **argv,
                           char **pos, int *n_pos);

/* Prints "duplex <name> <usage>", the summary, every option with its
 * default, then the details. */
void cli_print_help(const cli_command *cmd, FILE *out);

/* "4096", "64K", "16M", "1G" (suffixes are KiB-based, case-insensitive, an
 * optional trailing "B" or "iB" is allowed). Returns 0, or -1 when the text
 * is not a size or does not fit in 64 bits. */
int cli_parse_size(const char *text, uint64_t *out);

/* Decimal 0-65535. Returns 0 or -1. */
int cli_parse_port(const char *text, uint16_t *out);

/* Prints "duplex <cmd>: <message>\n" to stderr, printf-style. */
void cli_error(const char *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
