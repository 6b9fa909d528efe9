/* HTTP/1.1 beyond the head parser (handshake.h), sans-IO: how long a
 * request's body is, whether the connection persists, splitting and
 * decoding the request target, checking a decoded path stays below its
 * root, HTTP dates and entity-tag matching. Nothing here allocates or
 * touches a file. */
#ifndef DX_PROTO_HTTP1_H
#define DX_PROTO_HTTP1_H
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "proto/handshake.h"

/* The request's body length (RFC 7230 §3.3.3) into *len (0: no body).
 * Returns 0, or the status to refuse it with and a static reason in *why:
 * 411 for Transfer-Encoding (chunked bodies are not read here), 400 for
 * both Transfer-Encoding and Content-Length (a smuggling attempt), several
 * Content-Length values that differ, or one that is not a number. */
int dx__http1_body_length(const dx__http_request *r, uint64_t *len, const char **why);

/* 1 when the connection may carry another request after this one:
 * HTTP/1.1 unless "Connection: close", HTTP/1.0 only with
 * "Connection: keep-alive". */
int dx__http1_keep_alive(const dx__http_request *r);

/* 1 when the request asks for "Expect: 100-continue". */
int dx__http1_expects_continue(const dx__http_request *r);

/* 1 when the request is a WebSocket handshake (valid or not), not one
 * for an HTTP handler: an Upgrade header lists websocket, or it carries a
 * Sec-WebSocket-Key or Sec-WebSocket-Version header. */
int dx__http1_wants_websocket(const dx__http_request *r);

/* Splits a request target into its path and query: origin-form
 * ("/p?q"), absolute-form ("http://h/p?q": the path from the first "/"
 * after the authority, "/" when none) and "*". (*path, *plen) and (*query, *qlen)
 * point into target; the query excludes the "?" (qlen 0 when none).
 * Returns 0, or -1 for a target of no known form. */
int dx__http1_split_target(const char *target, size_t len, const char **path,
                           size_t *plen, const char **query, size_t *qlen);

/* Percent-decodes in[0..len) into out[0..cap), NUL-terminated. Returns the
 * decoded length, or -1 when it does not fit (with its NUL), an escape is
 * malformed, or it decodes to a NUL byte. */
long dx__http1_decode(const char *in, size_t len, char *out, size_t cap);

/* Checks a decoded absolute path ("/a/b.txt") names something below a
 * root: no "." or ".." segment, no backslash (never a separator here, but
 * one elsewhere). Empty segments ("//") are allowed. Returns 0 or -1. */
int dx__http1_path_is_below(const char *path);

/* The extension of the last segment of a path ("js" for "/a/b.min.js"),
 * or "" when it has none. */
const char *dx__http1_extension(const char *path);

/* The MIME type for an extension (case-insensitive), with "; charset=utf-8"
 * for text; "application/octet-stream" when unknown. */
const char *dx__http1_mime_type(const char *ext);

/* An HTTP date (IMF-fixdate, RFC 7231 §7.1.1.1): "Sun, 06 Nov 1994
 * 08:49:37 GMT", 29 characters plus a NUL. */
#define DX__HTTP_DATE_LEN 29
void dx__http1_format_date(time_t t, char out[DX__HTTP_DATE_LEN + 1]);
/* Parses an IMF-fixdate. 0 and *t, or -1 (another or a malformed form:
 * the caller then ignores the header, as RFC 7232 asks). */
int dx__http1_parse_date(const char *s, time_t *t);

/* 1 when an If-None-Match value ("*", or a list of entity tags, weak ones
 * included) matches `etag` under the weak comparison (RFC 7232 §2.3.2,
 * §3.2), else 0. */
int dx__http1_etag_match(const char *if_none_match, const char *etag);
#endif
