/* RFC 6455 §4 opening handshake: HTTP/1.x head scanning and parsing
 * (RFC 7230 §3), upgrade validation and response/request building.
 *
 * The parser is deliberately strict: it only has to understand what a
 * WebSocket peer sends, and every byte it lets through ends up in a pointer
 * handed to the application, so anything odd (control characters, obsolete
 * line folding, whitespace before a colon) is refused rather than guessed
 * at. It never reads outside buf[0..len) and never allocates. */
#include "proto/handshake.h"

#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "duplex_codes.h"
#include "proto/http_chars.h"

/* ------------------------------------------------------------------------ */
/* Character classes (ASCII only; no locale)                                */
/* ------------------------------------------------------------------------ */

static unsigned char lower(unsigned char c) {
  return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + ('a' - 'A')) : c;
}

static int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

static int is_ows(unsigned char c) { return c == ' ' || c == '\t'; }

/* tchar, field and target characters: proto/http_chars.h. */

static int ci_equal(const char *a, size_t alen, const char *b, size_t blen) {
  if (alen != blen)
    return 0;
  for (size_t i = 0; i < alen; i++)
    if (lower((unsigned char)a[i]) != lower((unsigned char)b[i]))
      return 0;
  return 1;
}

/* ------------------------------------------------------------------------ */
/* Finding the end of the head                                              */
/* ------------------------------------------------------------------------ */

size_t dx__http_head_end(const char *buf, size_t len, size_t last_len) {
  /* The head ends at the LF of an empty line: "\n\n" or "\n\r\n". That LF
   * cannot be among the bytes already scanned (the previous call would have
   * found it), so only LFs at or after last_len are candidates, and the look
   * back from one touches at most the 2 bytes before it (CRLFCRLF has its
   * first byte 3 before the final LF). */
  if (last_len > len)
    last_len = 0; /* caller's buffer shrank: nothing can be trusted */
  const char *p = buf + last_len;
  const char *end = buf + len;
  while (p < end) {
    const char *lf = memchr(p, '\n', (size_t)(end - p));
    if (lf == NULL)
      return 0;
    size_t i = (size_t)(lf - buf);
    if (i >= 1 && buf[i - 1] == '\n')
      return i + 1;
    if (i >= 2 && buf[i - 1] == '\r' && buf[i - 2] == '\n')
      return i + 1;
    p = lf + 1;
  }
  return 0;
}

/* ------------------------------------------------------------------------ */
/* Parsing                                                                  */
/* ------------------------------------------------------------------------ */

/* Consumes a CRLF or bare LF at *pp. Returns 1, or 0 if there is none. */
static int eat_eol(const char **pp, const char *end) {
  const char *p = *pp;
  if (p < end && *p == '\n') {
    *pp = p + 1;
    return 1;
  }
  if (end - p >= 2 && p[0] == '\r' && p[1] == '\n') {
    *pp = p + 2;
    return 1;
  }
  return 0;
}

/* Parses "HTTP/1.<digit>" at *pp. Only 1.x is spoken here; "HTTP/2.0" and
 * friends are malformed for our purposes. */
static int eat_version(const char **pp, const char *end, int *minor) {
  const char *p = *pp;
  if (end - p < 8 || memcmp(p, "HTTP/1.", 7) != 0 ||
      !is_digit((unsigned char)p[7]))
    return 0;
  *minor = p[7] - '0';
  *pp = p + 8;
  return 1;
}

/* Parses header lines and the blank line after them, which must end exactly
 * at `end` (the length dx__http_head_end measured). */
static int parse_headers(const char *p, const char *end, dx__http_header *h,
                         size_t *num) {
  size_t n = 0;
  *num = 0;
  for (;;) {
    if (p >= end)
      return DX_EPROTO; /* ran out before the blank line */
    if (eat_eol(&p, end))
      break;
    if (n == DX__HTTP_MAX_HEADERS)
      return DX_EPROTO;
    const char *name = p;
    while (p < end && dx__http_is_tchar((unsigned char)*p))
      p++;
    /* Empty name, a bad byte in it, whitespace before the colon, or no
     * colon. A line starting with whitespace (obs-fold, RFC 7230 §3.2.4)
     * lands here too: a server may refuse it, and joining it to the
     * previous value would need a copy. */
    if (p == name || p >= end || *p != ':')
      return DX_EPROTO;
    size_t name_len = (size_t)(p - name);
    p++;
    while (p < end && is_ows((unsigned char)*p))
      p++;
    const char *value = p;
    while (p < end && dx__http_is_field_char((unsigned char)*p))
      p++;
    const char *vend = p;
    if (!eat_eol(&p, end))
      return DX_EPROTO; /* control byte, bare CR, or no line end */
    while (vend > value && is_ows((unsigned char)vend[-1]))
      vend--;
    h[n].name = name;
    h[n].name_len = name_len;
    h[n].value = value;
    h[n].value_len = (size_t)(vend - value);
    n++;
  }
  *num = n;
  return p == end ? 0 : DX_EPROTO;
}

int dx__http_parse_request(const char *buf, size_t len, dx__http_request *r) {
  const char *p = buf, *end = buf + len;
  r->num_headers = 0;

  r->method = p;
  while (p < end && dx__http_is_tchar((unsigned char)*p))
    p++;
  r->method_len = (size_t)(p - r->method);
  if (r->method_len == 0 || p >= end || *p != ' ')
    return DX_EPROTO;
  p++;

  r->path = p;
  while (p < end && dx__http_is_target_char((unsigned char)*p))
    p++;
  r->path_len = (size_t)(p - r->path);
  if (r->path_len == 0 || p >= end || *p != ' ')
    return DX_EPROTO;
  p++;

  if (!eat_version(&p, end, &r->minor_version) || !eat_eol(&p, end))
    return DX_EPROTO;
  return parse_headers(p, end, r->headers, &r->num_headers);
}

int dx__http_parse_response(const char *buf, size_t len,
                            dx__http_response *r) {
  const char *p = buf, *end = buf + len;
  r->num_headers = 0;

  if (!eat_version(&p, end, &r->minor_version))
    return DX_EPROTO;
  if (end - p < 4 || p[0] != ' ' || !is_digit((unsigned char)p[1]) ||
      !is_digit((unsigned char)p[2]) || !is_digit((unsigned char)p[3]))
    return DX_EPROTO;
  r->status = (p[1] - '0') * 100 + (p[2] - '0') * 10 + (p[3] - '0');
  p += 4;

  /* The reason phrase may be empty, and some servers then drop the SP
   * before it too; accept both (but not a 4th status digit). */
  r->reason = p;
  r->reason_len = 0;
  if (!eat_eol(&p, end)) {
    if (p >= end || *p != ' ')
      return DX_EPROTO;
    r->reason = ++p;
    while (p < end && dx__http_is_field_char((unsigned char)*p))
      p++;
    r->reason_len = (size_t)(p - r->reason);
    if (!eat_eol(&p, end))
      return DX_EPROTO;
  }
  return parse_headers(p, end, r->headers, &r->num_headers);
}

/* ------------------------------------------------------------------------ */
/* Header lookup                                                            */
/* ------------------------------------------------------------------------ */

const dx__http_header *dx__http_find(const dx__http_header *h, size_t n,
                                     const char *name) {
  size_t name_len = strlen(name);
  for (size_t i = 0; i < n; i++)
    if (ci_equal(h[i].name, h[i].name_len, name, name_len))
      return &h[i];
  return NULL;
}

static size_t count_named(const dx__http_header *h, size_t n,
                          const char *name) {
  size_t name_len = strlen(name), c = 0;
  for (size_t i = 0; i < n; i++)
    if (ci_equal(h[i].name, h[i].name_len, name, name_len))
      c++;
  return c;
}

int dx__http_has_token(const char *v, size_t len, const char *token) {
  size_t tlen = strlen(token);
  size_t i = 0;
  while (i < len) {
    size_t start = i;
    while (i < len && v[i] != ',')
      i++;
    size_t stop = i;
    while (start < stop && is_ows((unsigned char)v[start]))
      start++;
    while (stop > start && is_ows((unsigned char)v[stop - 1]))
      stop--;
    if (ci_equal(v + start, stop - start, token, tlen))
      return 1;
    i++; /* skip the comma */
  }
  return 0;
}

/* A list-valued header may be split over several lines (RFC 7230 §3.2.2:
 * "Connection: keep-alive" then "Connection: Upgrade" means both), so look
 * in every line with that name. */
static int any_has_token(const dx__http_header *h, size_t n, const char *name,
                         const char *token) {
  size_t name_len = strlen(name);
  for (size_t i = 0; i < n; i++)
    if (ci_equal(h[i].name, h[i].name_len, name, name_len) &&
        dx__http_has_token(h[i].value, h[i].value_len, token))
      return 1;
  return 0;
}

/* ------------------------------------------------------------------------ */
/* Keys                                                                     */
/* ------------------------------------------------------------------------ */

/* Longest key dx__ws_accept_key hashes; real keys are DX__WS_KEY_LEN. */
#define DX__WS_KEY_MAX 64

void dx__ws_accept_key(const char *key, size_t key_len,
                       char out[DX__WS_ACCEPT_LEN + 1]) {
  static const char guid[] = DX__WS_GUID;
  unsigned char in[DX__WS_KEY_MAX + sizeof guid - 1];
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int md_len = 0;

  out[0] = '\0'; /* an empty accept never equals a real one */
  if (key_len > DX__WS_KEY_MAX)
    return;
  memcpy(in, key, key_len);
  memcpy(in + key_len, guid, sizeof guid - 1);
  if (EVP_Digest(in, key_len + sizeof guid - 1, md, &md_len, EVP_sha1(),
                 NULL) != 1 ||
      md_len != 20)
    return;
  /* 20 bytes -> 28 chars + NUL, exactly DX__WS_ACCEPT_LEN + 1. */
  EVP_EncodeBlock((unsigned char *)out, md, (int)md_len);
}

void dx__ws_make_key(const uint8_t raw[16], char out[DX__WS_KEY_LEN + 1]) {
  EVP_EncodeBlock((unsigned char *)out, raw, 16); /* 24 chars + NUL */
}

static int is_b64(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || is_digit(c) ||
         c == '+' || c == '/';
}

/* 16 bytes encode to 22 base64 characters and "==". Non-zero pad bits in
 * the 22nd character are tolerated, as most decoders do. */
static int key_is_valid(const char *k, size_t len) {
  if (len != DX__WS_KEY_LEN || k[22] != '=' || k[23] != '=')
    return 0;
  for (size_t i = 0; i < 22; i++)
    if (!is_b64((unsigned char)k[i]))
      return 0;
  return 1;
}

/* ------------------------------------------------------------------------ */
/* Validation                                                               */
/* ------------------------------------------------------------------------ */

/* Copies a peer-supplied value into a reason, shortened and with anything
 * but printable ASCII replaced, so it is safe in a log line or a
 * text/plain body. */
static void show(char *dst, size_t cap, const char *v, size_t len) {
  const size_t max = 40;
  size_t n = 0;
  if (cap == 0)
    return;
  for (size_t i = 0; i < len && i < max && n + 1 < cap; i++) {
    unsigned char c = (unsigned char)v[i];
    dst[n++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
  }
  if (len > max && n + 4 < cap) {
    memcpy(dst + n, "...", 3);
    n += 3;
  }
  dst[n] = '\0';
}

__attribute__((format(printf, 3, 4))) static void
set_why(char *why, size_t cap, const char *fmt, ...) {
  if (why == NULL || cap == 0)
    return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(why, cap, fmt, ap);
  va_end(ap);
}

/* Checks that exactly one `name` header exists; reports a 400 otherwise. */
static const dx__http_header *need_one(const dx__http_header *h, size_t n,
                                       const char *name, char *why,
                                       size_t cap) {
  size_t c = count_named(h, n, name);
  if (c == 0)
    set_why(why, cap, "missing %s header", name);
  else if (c > 1)
    set_why(why, cap, "duplicate %s header", name);
  return c == 1 ? dx__http_find(h, n, name) : NULL;
}

int dx__ws_check_request(const dx__http_request *r,
                         char accept[DX__WS_ACCEPT_LEN + 1], char *why,
                         size_t why_cap) {
  const dx__http_header *h = r->headers, *f;
  size_t n = r->num_headers;
  char shown[48];

  set_why(why, why_cap, "%s", "");
  if (accept)
    accept[0] = '\0';

  /* Methods are case-sensitive (RFC 7231 §4.1). */
  if (r->method_len != 3 || memcmp(r->method, "GET", 3) != 0) {
    show(shown, sizeof shown, r->method, r->method_len);
    set_why(why, why_cap, "method must be GET, not %s", shown);
    return 405;
  }
  if (r->minor_version < 1) {
    set_why(why, why_cap, "HTTP/1.1 or later is required, not HTTP/1.%d",
            r->minor_version);
    return 400;
  }
  /* RFC 7230 §5.4: no Host, or more than one, is a 400. */
  if (need_one(h, n, "Host", why, why_cap) == NULL)
    return 400;
  if (!any_has_token(h, n, "Upgrade", "websocket")) {
    set_why(why, why_cap, "%s",
            dx__http_find(h, n, "Upgrade")
                ? "Upgrade header must contain websocket"
                : "missing Upgrade header");
    return 400;
  }
  if (!any_has_token(h, n, "Connection", "upgrade")) {
    set_why(why, why_cap, "%s",
            dx__http_find(h, n, "Connection")
                ? "Connection header must contain upgrade"
                : "missing Connection header");
    return 400;
  }
  /* RFC 6455 §11.3.5: at most once in a request. */
  if ((f = need_one(h, n, "Sec-WebSocket-Version", why, why_cap)) == NULL)
    return 400;
  if (f->value_len != 2 || memcmp(f->value, "13", 2) != 0) {
    /* §4.4: answer 426 with the versions we do speak. */
    show(shown, sizeof shown, f->value, f->value_len);
    set_why(why, why_cap,
            "unsupported Sec-WebSocket-Version: %s (this server speaks 13)",
            shown);
    return 426;
  }
  /* §11.3.1: the key must not appear more than once. */
  if ((f = need_one(h, n, "Sec-WebSocket-Key", why, why_cap)) == NULL)
    return 400;
  if (!key_is_valid(f->value, f->value_len)) {
    set_why(why, why_cap, "%s", "Sec-WebSocket-Key must be base64 of 16 bytes");
    return 400;
  }
  if (accept)
    dx__ws_accept_key(f->value, f->value_len, accept);
  return 0;
}

int dx__ws_check_response(const dx__http_response *r, const char *key,
                          char *why, size_t why_cap) {
  const dx__http_header *h = r->headers, *f;
  size_t n = r->num_headers;
  char expect[DX__WS_ACCEPT_LEN + 1];
  char shown[48];

  set_why(why, why_cap, "%s", "");
  if (r->status != 101) {
    show(shown, sizeof shown, r->reason, r->reason_len);
    set_why(why, why_cap, "server answered %d%s%s", r->status,
            shown[0] ? " " : "", shown);
    return DX_EHANDSHAKE;
  }
  if (!any_has_token(h, n, "Upgrade", "websocket")) {
    set_why(why, why_cap, "%s",
            dx__http_find(h, n, "Upgrade")
                ? "Upgrade header must contain websocket"
                : "missing Upgrade header");
    return DX_EHANDSHAKE;
  }
  if (!any_has_token(h, n, "Connection", "upgrade")) {
    set_why(why, why_cap, "%s",
            dx__http_find(h, n, "Connection")
                ? "Connection header must contain upgrade"
                : "missing Connection header");
    return DX_EHANDSHAKE;
  }
  /* §11.3.3: the accept must not appear more than once. */
  if ((f = need_one(h, n, "Sec-WebSocket-Accept", why, why_cap)) == NULL)
    return DX_EHANDSHAKE;
  dx__ws_accept_key(key, strlen(key), expect);
  if (expect[0] == '\0' || f->value_len != DX__WS_ACCEPT_LEN ||
      memcmp(f->value, expect, DX__WS_ACCEPT_LEN) != 0) {
    set_why(why, why_cap, "%s", "Sec-WebSocket-Accept does not match the key");
    return DX_EHANDSHAKE;
  }
  return 0;
}

int dx__ws_check_protocol(const dx__http_response *r, const char *offered,
                          size_t offered_len, const char **chosen,
                          size_t *chosen_len, char *why, size_t why_cap) {
  const dx__http_header *h = r->headers;
  size_t n = r->num_headers;
  char shown[48];
  *chosen = NULL;
  *chosen_len = 0;
  if (count_named(h, n, "Sec-WebSocket-Protocol") == 0) return 0;
  const dx__http_header *f = need_one(h, n, "Sec-WebSocket-Protocol", why, why_cap);
  if (f == NULL) return DX_EHANDSHAKE;
  /* §4.1: the server selects one of the values we offered, or none. */
  for (size_t i = 0; i < offered_len;) {
    size_t l = strlen(offered + i);
    if (l == f->value_len && memcmp(offered + i, f->value, l) == 0) {
      *chosen = offered + i;
      *chosen_len = l;
      return 0;
    }
    i += l + 1;
  }
  show(shown, sizeof shown, f->value, f->value_len);
  set_why(why, why_cap, "Sec-WebSocket-Protocol: %s was not offered", shown);
  return DX_EHANDSHAKE;
}

/* ------------------------------------------------------------------------ */
/* Building                                                                 */
/* ------------------------------------------------------------------------ */

/* snprintf's result -> our convention: the length, or 0 when it did not fit
 * (including the NUL). */
static size_t fitted(int n, size_t cap) {
  return (n < 0 || (size_t)n >= cap) ? 0 : (size_t)n;
}

/* Rejects anything that could end a header line early or smuggle another
 * one in (CR, LF, other controls), and empty strings. */
static int safe_value(const char *s) {
  if (s == NULL || *s == '\0')
    return 0;
  for (; *s; s++)
    if (!dx__http_is_field_char((unsigned char)*s))
      return 0;
  return 1;
}

int dx__http_is_token(const char *s, size_t len) {
  if (s == NULL || len == 0)
    return 0;
  for (size_t i = 0; i < len; i++)
    if (!dx__http_is_tchar((unsigned char)s[i]))
      return 0;
  return 1;
}

static int is_token(const char *s) {
  return s != NULL && dx__http_is_token(s, strlen(s));
}

static int is_target(const char *s) {
  if (s == NULL || *s == '\0')
    return 0;
  for (; *s; s++)
    if (!dx__http_is_target_char((unsigned char)*s))
      return 0;
  return 1;
}

size_t dx__ws_build_response(char *out, size_t cap, const char *accept,
                             const char *protocol, const char *extensions) {
  if (accept == NULL || strlen(accept) != DX__WS_ACCEPT_LEN)
    return 0;
  if (protocol != NULL && *protocol == '\0')
    protocol = NULL;
  if (protocol != NULL && !is_token(protocol))
    return 0;
  if (extensions != NULL && *extensions == '\0')
    extensions = NULL;
  if (extensions != NULL && !safe_value(extensions))
    return 0;
  int n = snprintf(out, cap,
                   "HTTP/1.1 101 Switching Protocols\r\n"
                   "Upgrade: websocket\r\n"
                   "Connection: Upgrade\r\n"
                   "Sec-WebSocket-Accept: %s\r\n"
                   "%s%s%s"
                   "%s%s%s"
                   "\r\n",
                   accept, protocol ? "Sec-WebSocket-Protocol: " : "",
                   protocol ? protocol : "", protocol ? "\r\n" : "",
                   extensions ? "Sec-WebSocket-Extensions: " : "",
                   extensions ? extensions : "", extensions ? "\r\n" : "");
  return fitted(n, cap);
}

const char *dx__http_status_text(int status) {
  switch (status) {
  case 100: return "Continue";
  case 101: return "Switching Protocols";
  case 200: return "OK";
  case 204: return "No Content";
  case 301: return "Moved Permanently";
  case 304: return "Not Modified";
  case 400: return "Bad Request";
  case 401: return "Unauthorized";
  case 403: return "Forbidden";
  case 404: return "Not Found";
  case 405: return "Method Not Allowed";
  case 408: return "Request Timeout";
  case 411: return "Length Required";
  case 413: return "Content Too Large";
  case 414: return "URI Too Long";
  case 426: return "Upgrade Required";
  case 429: return "Too Many Requests";
  case 431: return "Request Header Fields Too Large";
  case 500: return "Internal Server Error";
  case 501: return "Not Implemented";
  case 502: return "Bad Gateway";
  case 503: return "Service Unavailable";
  case 504: return "Gateway Timeout";
  default: return "Error";
  }
}

size_t dx__http_build_error(char *out, size_t cap, int status,
                            const char *why) {
  if (status < 100 || status > 999)
    return 0;
  if (why == NULL)
    why = "";
  /* 426 must say which versions we speak (RFC 6455 §4.4); 405 must say
   * which methods are allowed (RFC 7231 §6.5.5). */
  const char *extra = status == 426   ? "Sec-WebSocket-Version: 13\r\n"
                      : status == 405 ? "Allow: GET\r\n"
                                      : "";
  int n = snprintf(out, cap,
                   "HTTP/1.1 %d %s\r\n"
                   "Content-Type: text/plain; charset=utf-8\r\n"
                   "Content-Length: %zu\r\n"
                   "Connection: close\r\n"
                   "%s"
                   "\r\n"
                   "%s\n",
                   status, dx__http_status_text(status), strlen(why) + 1, extra,
                   why);
  return fitted(n, cap);
}

size_t dx__ws_build_request(char *out, size_t cap, const char *host,
                            const char *path, const char *key,
                            const char *protocols, const char *extensions) {
  if (!safe_value(host) || !is_target(path) || key == NULL ||
      !key_is_valid(key, strlen(key)))
    return 0;
  if (protocols != NULL && *protocols == '\0')
    protocols = NULL;
  if (extensions != NULL && *extensions == '\0')
    extensions = NULL;
  if ((protocols && !safe_value(protocols)) || (extensions && !safe_value(extensions)))
    return 0;
  int n = snprintf(out, cap,
                   "GET %s HTTP/1.1\r\n"
                   "Host: %s\r\n"
                   "Upgrade: websocket\r\n"
                   "Connection: Upgrade\r\n"
                   "Sec-WebSocket-Key: %s\r\n"
                   "Sec-WebSocket-Version: 13\r\n"
                   "%s%s%s"
                   "%s%s%s"
                   "\r\n",
                   path, host, key, protocols ? "Sec-WebSocket-Protocol: " : "",
                   protocols ? protocols : "", protocols ? "\r\n" : "",
                   extensions ? "Sec-WebSocket-Extensions: " : "",
                   extensions ? extensions : "", extensions ? "\r\n" : "");
  return fitted(n, cap);
}
