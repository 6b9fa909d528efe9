/* HTTP/1.1 request semantics beyond the head: body framing, persistence,
 * targets, path decoding and confinement, dates and entity tags. */
#include "proto/http1.h"

#include <string.h>
#include <strings.h>

static int ci_is(const char *s, size_t len, const char *lit) {
  return strlen(lit) == len && strncasecmp(s, lit, len) == 0;
}

int dx__http1_body_length(const dx__http_request *r, uint64_t *len, const char **why) {
  int have_cl = 0, have_te = 0;
  uint64_t cl = 0;
  *len = 0;
  for (size_t i = 0; i < r->num_headers; i++) {
    const dx__http_header *h = &r->headers[i];
    if (ci_is(h->name, h->name_len, "Transfer-Encoding")) {
      have_te = 1;
    } else if (ci_is(h->name, h->name_len, "Content-Length")) {
      /* 1*DIGIT, and no more than 19 of them (no overflow). A list of
       * equal values ("5, 5") is refused too: nobody sends it honestly. */
      uint64_t v = 0;
      if (h->value_len == 0 || h->value_len > 19) goto bad_cl;
      for (size_t k = 0; k < h->value_len; k++) {
        unsigned char ch = (unsigned char)h->value[k];
        if (ch < '0' || ch > '9') goto bad_cl;
        v = v * 10 + (ch - '0');
      }
      if (have_cl && v != cl) {
        *why = "conflicting Content-Length headers";
        return 400;
      }
      have_cl = 1;
      cl = v;
    }
  }
  if (have_te && have_cl) {
    *why = "both Transfer-Encoding and Content-Length";
    return 400;
  }
  if (have_te) {
    *why = "a chunked (Transfer-Encoding) request body is not supported: send Content-Length";
    return 411;
  }
  *len = cl;
  return 0;
bad_cl:
  *why = "Content-Length is not a number";
  return 400;
}

/* 1 when any header named `name` lists `token`. */
static int any_token(const dx__http_request *r, const char *name, const char *token) {
  size_t nl = strlen(name);
  for (size_t i = 0; i < r->num_headers; i++) {
    const dx__http_header *h = &r->headers[i];
    if (h->name_len == nl && strncasecmp(h->name, name, nl) == 0 &&
        dx__http_has_token(h->value, h->value_len, token))
      return 1;
  }
  return 0;
}

int dx__http1_keep_alive(const dx__http_request *r) {
  if (any_token(r, "Connection", "close")) return 0;
  return r->minor_version >= 1 || any_token(r, "Connection", "keep-alive");
}

int dx__http1_expects_continue(const dx__http_request *r) {
  return r->minor_version >= 1 && any_token(r, "Expect", "100-continue");
}

int dx__http1_wants_websocket(const dx__http_request *r) {
  if (any_token(r, "Upgrade", "websocket")) return 1;
  /* A handshake with a part wrong (Upgrade: h2c beside a key) is still a
   * WebSocket client's, and is told what is wrong with it. */
  return dx__http_find(r->headers, r->num_headers, "Sec-WebSocket-Key") ||
         dx__http_find(r->headers, r->num_headers, "Sec-WebSocket-Version");
}

int dx__http1_split_target(const char *target, size_t len, const char **path,
                           size_t *plen, const char **query, size_t *qlen) {
  static const char root[] = "/";
  const char *p = target, *end = target + len;
  if (len == 1 && *p == '*') {
    *path = p;
    *plen = 1;
    *query = end;
    *qlen = 0;
    return 0;
  }
  if (len && *p != '/') {
    /* absolute-form: scheme "://" authority [path] */
    const char *sep = memchr(p, ':', len);
    if (!sep || end - sep < 3 || sep[1] != '/' || sep[2] != '/') return -1;
    p = sep + 3;
    while (p < end && *p != '/' && *p != '?') p++;
    if (p == end || *p == '?') {
      /* no path: "/" with whatever query follows */
      *path = root;
      *plen = 1;
      *query = p < end ? p + 1 : end;
      *qlen = p < end ? (size_t)(end - p - 1) : 0;
      return 0;
    }
  }
  if (p == end) return -1;
  const char *q = memchr(p, '?', (size_t)(end - p));
  *path = p;
  *plen = (size_t)((q ? q : end) - p);
  *query = q ? q + 1 : end;
  *qlen = q ? (size_t)(end - q - 1) : 0;
  return 0;
}

static int hexval(unsigned char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

long dx__http1_decode(const char *in, size_t len, char *out, size_t cap) {
  size_t n = 0;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)in[i];
    if (c == '%') {
      if (len - i < 3) return -1; /* fewer than two hex digits left */
      int hi = hexval((unsigned char)in[i + 1]), lo = hexval((unsigned char)in[i + 2]);
      if (hi < 0 || lo < 0) return -1;
      c = (unsigned char)(hi * 16 + lo);
      i += 2;
    }
    /* A NUL, escaped or not, would cut the C string short: a path that
     * looks checked but is not the one asked for. */
    if (c == 0) return -1;
    if (n + 1 >= cap) return -1;
    out[n++] = (char)c;
  }
  if (n >= cap) return -1;
  out[n] = '\0';
  return (long)n;
}

int dx__http1_path_is_below(const char *path) {
  if (path[0] != '/') return -1;
  if (strchr(path, '\\')) return -1;
  const char *p = path;
  while (*p) {
    while (*p == '/') p++;
    const char *s = p;
    while (*p && *p != '/') p++;
    size_t n = (size_t)(p - s);
    if ((n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.')) return -1;
  }
  return 0;
}

const char *dx__http1_extension(const char *path) {
  const char *slash = strrchr(path, '/');
  const char *seg = slash ? slash + 1 : path;
  const char *dot = strrchr(seg, '.');
  return dot && dot != seg ? dot + 1 : "";
}

const char *dx__http1_mime_type(const char *ext) {
  static const struct {
    const char *ext, *type;
  } types[] = {
      {"html", "text/html; charset=utf-8"},
      {"htm", "text/html; charset=utf-8"},
      {"css", "text/css; charset=utf-8"},
      {"js", "text/javascript; charset=utf-8"},
      {"mjs", "text/javascript; charset=utf-8"},
      {"json", "application/json"},
      {"map", "application/json"},
      {"txt", "text/plain; charset=utf-8"},
      {"md", "text/markdown; charset=utf-8"},
      {"csv", "text/csv; charset=utf-8"},
      {"xml", "application/xml"},
      {"svg", "image/svg+xml"},
      {"png", "image/png"},
      {"jpg", "image/jpeg"},
      {"jpeg", "image/jpeg"},
      {"gif", "image/gif"},
      {"webp", "image/webp"},
      {"avif", "image/avif"},
      {"ico", "image/x-icon"},
      {"wasm", "application/wasm"},
      {"woff", "font/woff"},
      {"woff2", "font/woff2"},
      {"ttf", "font/ttf"},
      {"otf", "font/otf"},
      {"pdf", "application/pdf"},
      {"mp4", "video/mp4"},
      {"webm", "video/webm"},
      {"mp3", "audio/mpeg"},
      {"ogg", "audio/ogg"},
      {"wav", "audio/wav"},
      {"zip", "application/zip"},
      {"gz", "application/gzip"},
  };
  for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
    if (strcasecmp(ext, types[i].ext) == 0) return types[i].type;
  return "application/octet-stream";
}

static const char wdays[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

void dx__http1_format_date(time_t t, char out[DX__HTTP_DATE_LEN + 1]) {
  struct tm tm;
  gmtime_r(&t, &tm);
  /* Not strftime: its names follow the locale, HTTP's are English. */
  static const char digits[] = "0123456789";
  char *o = out;
  memcpy(o, wdays[tm.tm_wday], 3);
  o += 3;
  *o++ = ',';
  *o++ = ' ';
  *o++ = digits[tm.tm_mday / 10];
  *o++ = digits[tm.tm_mday % 10];
  *o++ = ' ';
  memcpy(o, months[tm.tm_mon], 3);
  o += 3;
  *o++ = ' ';
  int y = tm.tm_year + 1900;
  if (y < 0) y = 0;
  if (y > 9999) y = 9999;
  *o++ = digits[y / 1000];
  *o++ = digits[y / 100 % 10];
  *o++ = digits[y / 10 % 10];
  *o++ = digits[y % 10];
  *o++ = ' ';
  int f[3] = {tm.tm_hour, tm.tm_min, tm.tm_sec};
  for (int i = 0; i < 3; i++) {
    *o++ = digits[f[i] / 10];
    *o++ = digits[f[i] % 10];
    *o++ = i < 2 ? ':' : ' ';
  }
  memcpy(o, "GMT", 4);
}

static int num(const char *s, int n) {
  int v = 0;
  for (int i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9') return -1;
    v = v * 10 + (s[i] - '0');
  }
  return v;
}

int dx__http1_parse_date(const char *s, time_t *t) {
  /* "Sun, 06 Nov 1994 08:49:37 GMT" */
  if (strlen(s) != DX__HTTP_DATE_LEN || s[3] != ',' || s[4] != ' ' || s[7] != ' ' ||
      s[11] != ' ' || s[16] != ' ' || s[19] != ':' || s[22] != ':' || s[25] != ' ' ||
      strcmp(s + 26, "GMT") != 0)
    return -1;
  int mon = -1;
  for (int i = 0; i < 12; i++)
    if (memcmp(s + 8, months[i], 3) == 0) mon = i;
  int day = num(s + 5, 2), year = num(s + 12, 4), hh = num(s + 17, 2), mm = num(s + 20, 2),
      ss = num(s + 23, 2);
  if (mon < 0 || day < 1 || day > 31 || year < 1970 || hh < 0 || hh > 23 || mm < 0 || mm > 59 ||
      ss < 0 || ss > 60)
    return -1;
  struct tm tm = {0};
  tm.tm_year = year - 1900;
  tm.tm_mon = mon;
  tm.tm_mday = day;
  tm.tm_hour = hh;
  tm.tm_min = mm;
  tm.tm_sec = ss;
  *t = timegm(&tm);
  return 0;
}

int dx__http1_etag_match(const char *inm, const char *etag) {
  /* Weak comparison: "W/" prefixes do not matter, the opaque tags must be
   * equal, quotes included. */
  if (etag[0] == 'W' && etag[1] == '/') etag += 2;
  size_t el = strlen(etag);
  const char *p = inm;
  for (;;) {
    while (*p == ' ' || *p == '\t' || *p == ',') p++;
    if (!*p) return 0;
    if (*p == '*') return 1;
    if (p[0] == 'W' && p[1] == '/') p += 2;
    const char *s = p;
    if (*p == '"') {
      p++;
      while (*p && *p != '"') p++;
      if (*p == '"') p++;
    } else {
      while (*p && *p != ',' && *p != ' ' && *p != '\t') p++;
    }
    if ((size_t)(p - s) == el && memcmp(s, etag, el) == 0) return 1;
  }
}
