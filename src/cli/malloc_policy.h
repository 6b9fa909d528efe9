/* The allocator policy of duplex's programs (serve, connect, bench, and
 * bench/wsbench): see malloc_policy.c for why. */
#ifndef DX_CLI_MALLOC_POLICY_H
#define DX_CLI_MALLOC_POLICY_H

/* Call once at start, before any thread exists. Does nothing outside glibc
 * or when GLIBC_TUNABLES already sets either threshold. */
void cli_malloc_policy(void);

#endif
