/* glibc's malloc, left to itself, gives a freed block of a megabyte or so
 * back to the kernel (munmap, or a trim of the heap's top), and the next
 * message of that size faults every page in again. A server echoing
 * 1 MiB messages over TLS paid ~450 page faults per MB for it: 6.7 ms of
 * server CPU per MB instead of ~1.3 (bench/README.md, "TLS", 1 MiB row).
 * The plain path mostly escaped only because its timing let glibc's
 * dynamic thresholds settle.
 *
 * A program, not the library, owns this choice: mallopt() is process-wide,
 * and an application embedding duplex may have its own allocator. So the
 * programs set it, and the README ("Large messages and malloc") tells
 * library users to do the same.
 *
 * The trade: blocks under 8 MiB come from the heap and stay reusable, and
 * up to 32 MiB of freed memory per arena is kept rather than returned. */
#include "malloc_policy.h"

#include <stdlib.h>
#include <string.h>

#ifdef __GLIBC__
#include <malloc.h>
#endif

enum {
  MMAP_THRESHOLD = 8 << 20,
  TRIM_THRESHOLD = 32 << 20,
};

void cli_malloc_policy(void) {
#ifdef __GLIBC__
  /* A user who tuned malloc through the environment keeps their choice. */
  const char *t = getenv("GLIBC_TUNABLES");
  if (t && (strstr(t, "malloc.mmap_threshold") || strstr(t, "malloc.trim_threshold")))
    return;
  mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD);
  mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD);
#endif
}
