/* Throwaway certificates for a unit test: tests/certs/make.sh (CMake
 * passes its path as DX_CERTS_SCRIPT) run into a fresh directory under
 * /tmp, so no key is ever committed. Included by the tests that need
 * them; one directory per test program. */
#ifndef DX_TEST_CERTS_H
#define DX_TEST_CERTS_H
#include <stdio.h>
#include <stdlib.h>

static char certs_dir[64];

/* The path of one of the files made (ca.pem, server.key, ...): each call's
 * buffer stays valid for the next seven calls. */
static inline const char *cert(const char *name) {
  static char bufs[8][128];
  static int next;
  char *b = bufs[next++ % 8];
  snprintf(b, sizeof bufs[0], "%s/%s", certs_dir, name);
  return b;
}

/* Makes them in /tmp/dx-TAG-XXXXXX. 0, or -1 after saying why on stderr. */
static inline int certs_make(const char *tag) {
  snprintf(certs_dir, sizeof certs_dir, "/tmp/dx-%s-XXXXXX", tag);
  if (!mkdtemp(certs_dir)) {
    perror("mkdtemp");
    return -1;
  }
  char cmd[1024];
  /* Quiet unless it fails: then its log says why (openssl missing?). */
  snprintf(cmd, sizeof cmd, "sh '%s' '%s' >'%s/make.log' 2>&1 || { cat '%s/make.log' >&2; exit 1; }",
           DX_CERTS_SCRIPT, certs_dir, certs_dir, certs_dir);
  if (system(cmd) != 0) {
    fprintf(stderr, "cannot make test certificates in %s with %s\n", certs_dir, DX_CERTS_SCRIPT);
    return -1;
  }
  return 0;
}

/* Removes the directory. 0, or -1. */
static inline int certs_remove(void) {
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", certs_dir);
  return system(cmd) == 0 ? 0 : -1;
}

/* cmocka group set-up and tear-down for a program that needs nothing else:
 * cmocka_run_group_tests(tests, certs_group_setup, certs_group_teardown). */
static inline int certs_group_setup(void **state) {
  (void)state;
  return certs_make("unit");
}
static inline int certs_group_teardown(void **state) {
  (void)state;
  return certs_remove();
}
#endif
