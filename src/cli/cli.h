/* Entry points of the duplex commands. Each takes argv with argv[0] set to
 * the command name and returns the process exit status (CLI_EXIT_*). */
#ifndef DUPLEX_CLI_H
#define DUPLEX_CLI_H

int cli_serve(int argc, char **argv);
int cli_connect(int argc, char **argv);
int cli_bench(int argc, char **argv);

#endif
