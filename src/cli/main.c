/* duplex: command dispatch, top-level --help and --version. */
#include <stdio.h>
#include <string.h>

#include <duplex.h>

#include "args.h"
#include "cli.h"
#include "malloc_policy.h"

typedef struct {
  const char *name;
  int (*run)(int argc, char **argv);
  const char *summary;
} command;

static const command commands[] = {
    {"serve", cli_serve, "run a WebSocket echo server"},
    {"connect", cli_connect,
     "connect to a ws:// URL; stdin lines out, messages to stdout"},
    {"bench", cli_bench, "load-test a WebSocket echo server"},
};
#define N_COMMANDS (sizeof commands / sizeof commands[0])

static void print_usage(FILE *out) {
  fputs("usage: duplex <command> [options]\n"
        "       duplex <command> --help\n"
        "       duplex --version\n\n"
        "A WebSocket (RFC 6455) tool built on the duplex library.\n\n"
        "commands:\n",
        out);
  for (size_t i = 0; i < N_COMMANDS; i++)
    fprintf(out, "  %-12s %s\n", commands[i].name, commands[i].summary);
  fprintf(out, "  %-12s %s\n", "help [CMD]", "show this help, or CMD's");
  fprintf(out, "  %-12s %s\n\n", "version", "print the version");
  fputs("options:\n"
        "  -h, --help     show this help and exit\n"
        "  -V, --version  print the version and exit\n\n"
        "exit status: 0 success, 1 failure (for connect: the connection did "
        "not close\ncleanly), 2 bad command line.\n",
        out);
}

static const command *find_command(const char *name) {
  for (size_t i = 0; i < N_COMMANDS; i++)
    if (strcmp(commands[i].name, name) == 0) return &commands[i];
  return NULL;
}

static int unknown_command(const char *name) {
  cli_error(NULL, "unknown command '%s' (see 'duplex --help')", name);
  return CLI_EXIT_USAGE;
}

int main(int argc, char **argv) {
  /* One write(2) per line: serve's open/close lines come from several
   * threads and are read by programs; unbuffered, a line left in pieces. */
  setvbuf(stderr, NULL, _IOLBF, 0);
  cli_malloc_policy();
  if (argc < 2) {
    print_usage(stderr);
    return CLI_EXIT_USAGE;
  }
  const char *first = argv[1];
  if (strcmp(first, "--help") == 0 || strcmp(first, "-h") == 0 ||
      (strcmp(first, "help") == 0 && argc == 2)) {
    print_usage(stdout);
    return CLI_EXIT_OK;
  }
  if (strcmp(first, "--version") == 0 || strcmp(first, "-V") == 0 ||
      (strcmp(first, "version") == 0 && argc == 2)) {
    printf("duplex %d.%d.%d\n", DX_VERSION_MAJOR, DX_VERSION_MINOR,
           DX_VERSION_PATCH);
    return CLI_EXIT_OK;
  }
  if (strcmp(first, "help") == 0) {
    /* "duplex help serve" is "duplex serve --help". */
    const command *c = find_command(argv[2]);
    if (!c) return unknown_command(argv[2]);
    char help_flag[] = "--help";
    char *sub_argv[] = {argv[2], help_flag, NULL};
    return c->run(2, sub_argv);
  }
  const command *c = find_command(first);
  if (!c) return unknown_command(first);
  return c->run(argc - 1, argv + 1);
}
