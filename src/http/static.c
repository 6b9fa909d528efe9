/* Static files below a root directory: GET and HEAD, MIME types, ETag and
 * Last-Modified with 304, "/" and "dir/" serving index.html, bodies
 * streamed from the file as the socket drains. Paths are confined to the
 * root twice over: the decoded path may hold no "." or ".." segment, and
 * the file is opened with openat2(RESOLVE_BENEATH) from the root's
 * descriptor, which follows symbolic links only while they stay below it
 * (where the kernel lacks openat2, the opened file's real path is checked
 * against the root's instead). */
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "duplex.h"
#include "proto/http1.h"

/* The longest decoded path served. */
#define DX__STATIC_PATH_MAX 2048

struct dx_http_static {
  int dirfd;
  char *real; /* the root's real path, for the fallback check */
};

dx_http_static *dx_http_static_new(const char *root) {
  dx_http_static *st = calloc(1, sizeof *st);
  if (!st) {
    errno = ENOMEM;
    return NULL;
  }
  st->dirfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (st->dirfd < 0 || !(st->real = realpath(root, NULL))) {
    int e = errno;
    if (st->dirfd >= 0) close(st->dirfd);
    free(st);
    errno = e;
    return NULL;
  }
  return st;
}

void dx_http_static_free(dx_http_static *st) {
  if (!st) return;
  close(st->dirfd);
  free(st->real);
  free(st);
}

/* 1 when fd's real path is the root or below it. */
static int fd_is_below(const dx_http_static *st, int fd) {
  char link[64], target[4096];
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  ssize_t n = readlink(link, target, sizeof target - 1);
  if (n < 0) return 0;
  target[n] = '\0';
  size_t rl = strlen(st->real);
  if (strncmp(target, st->real, rl) != 0) return 0;
  return target[rl] == '\0' || target[rl] == '/' || (rl == 1 && st->real[0] == '/');
}

/* Opens rel (relative, no "."/".." segments) below the root, following
 * symbolic links only while they stay below it. A descriptor, or -1. */
static int open_below(const dx_http_static *st, const char *rel) {
  static int no_openat2;
  if (!*rel) rel = ".";
  if (!__atomic_load_n(&no_openat2, __ATOMIC_RELAXED)) {
    struct open_how how = {0};
    how.flags = O_RDONLY | O_CLOEXEC | O_NONBLOCK;
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
    long fd = syscall(SYS_openat2, st->dirfd, rel, &how, sizeof how);
    if (fd >= 0 || errno != ENOSYS) return (int)fd;
    __atomic_store_n(&no_openat2, 1, __ATOMIC_RELAXED);
  }
  /* O_NONBLOCK: a FIFO below the root must not block the loop on open. */
  int fd = openat(st->dirfd, rel, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd >= 0 && !fd_is_below(st, fd)) {
    close(fd);
    errno = EXDEV;
    return -1;
  }
  return fd;
}

typedef struct file_body {
  int fd;
  off_t off;
} file_body;

static long file_read(void *ud, uint8_t *buf, size_t cap) {
  file_body *f = ud;
  ssize_t n = pread(f->fd, buf, cap, f->off);
  if (n <= 0) return -1; /* shrank under us: the length promised is wrong */
  f->off += n;
  return (long)n;
}

static void file_release(void *ud) {
  file_body *f = ud;
  close(f->fd);
  free(f);
}

static int not_found(dx_http_request *r) {
  return dx_http_error(r, 404, "no such file", NULL, 0);
}

int dx_http_static_serve(const dx_http_static *st, dx_http_request *r) {
  const char *m = dx_http_method(r);
  int head = !strcmp(m, "HEAD");
  if (!head && strcmp(m, "GET")) {
    static const dx_http_field allow[] = {{"Allow", "GET, HEAD"}};
    return dx_http_error(r, 405, "static files take GET and HEAD", allow, 1);
  }
  const char *raw = dx_http_path(r);
  char path[DX__STATIC_PATH_MAX + sizeof "index.html"];
  long len = dx__http1_decode(raw, strlen(raw), path, DX__STATIC_PATH_MAX);
  /* Refused paths get 404, not 403: what lies outside the root, or
   * whether a path could name it, is none of the client's business. */
  if (len < 0 || dx__http1_path_is_below(path)) return not_found(r);
  if (path[len - 1] == '/') {
    memcpy(path + len, "index.html", sizeof "index.html");
    len += (long)sizeof "index.html" - 1;
  }
  const char *rel = path;
  while (*rel == '/') rel++;
  int fd = open_below(st, rel);
  if (fd < 0) return not_found(r);
  struct stat sb;
  if (fstat(fd, &sb)) {
    close(fd);
    return not_found(r);
  }
  if (S_ISDIR(sb.st_mode)) {
    /* "/dir": its relative links want "/dir/". */
    close(fd);
    char loc[DX__STATIC_PATH_MAX + 3];
    const char *q = dx_http_query(r);
    /* One leading slash only: "//sub/" (or "/\sub/") in a Location is
     * read by browsers as another host named "sub". */
    const char *p = raw;
    while (*p == '/' || *p == '\\') p++;
    int n = snprintf(loc, sizeof loc, "/%s/%s%s", p, *q ? "?" : "", q);
    if (n < 0 || (size_t)n >= sizeof loc) return not_found(r);
    dx_http_field h[] = {{"Location", loc}};
    return dx_http_error(r, 301, "a directory: see its path with a slash", h, 1);
  }
  if (!S_ISREG(sb.st_mode)) {
    close(fd);
    return not_found(r);
  }
  char etag[64], modified[DX__HTTP_DATE_LEN + 1];
  snprintf(etag, sizeof etag, "\"%llx-%llx\"", (unsigned long long)sb.st_size,
           (unsigned long long)sb.st_mtim.tv_sec * 1000000000ull +
               (unsigned long long)sb.st_mtim.tv_nsec);
  dx__http1_format_date(sb.st_mtim.tv_sec, modified);
  dx_http_field h[] = {{"Content-Type", dx__http1_mime_type(dx__http1_extension(path))},
                       {"ETag", etag},
                       {"Last-Modified", modified},
                       {"X-Content-Type-Options", "nosniff"}};
  /* RFC 7232 §6: If-None-Match decides when present; If-Modified-Since
   * only without it. */
  const char *inm = dx_http_header(r, "If-None-Match");
  const char *ims = dx_http_header(r, "If-Modified-Since");
  time_t since;
  int fresh = inm ? dx__http1_etag_match(inm, etag)
                  : ims && !dx__http1_parse_date(ims, &since) && sb.st_mtim.tv_sec <= since;
  if (fresh) {
    close(fd);
    return dx_http_respond(r, 304, h + 1, 2, NULL, 0);
  }
  file_body *f = malloc(sizeof *f);
  if (!f) {
    close(fd);
    return DX_ENOMEM;
  }
  f->fd = fd;
  f->off = 0;
  dx_http_producer body = {file_read, file_release, f};
  (void)head; /* dx_http_respond_body leaves the body out of a HEAD response */
  return dx_http_respond_body(r, 200, h, sizeof h / sizeof h[0], (uint64_t)sb.st_size, &body);
}
