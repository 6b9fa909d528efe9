/* The RFC 6455 §4 opening handshake, sans-IO: find the end of an HTTP head,
 * parse it in place (zero-copy: every pointer points into the caller's
 * buffer), validate an upgrade request or response, and build the bytes to
 * send. Nothing here allocates. */
#ifndef DX_PROTO_HANDSHAKE_H
#define DX_PROTO_HANDSHAKE_H
#include <stddef.h>
#include <stdint.h>

#define DX__HTTP_MAX_HEADERS 64
#define DX__WS_KEY_LEN 24    /* base64 of 16 bytes, without NUL */
#define DX__WS_ACCEPT_LEN 28 /* base64 of a SHA-1, without NUL */
#define DX__WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

typedef struct dx__http_header {
  const char *name;
  size_t name_len;
  const char *value; /* leading and trailing spaces/tabs trimmed */
  size_t value_len;
} dx__http_header;

typedef struct dx__http_request {
  const char *method;
  size_t method_len;
  const char *path;
  size_t path_len;
  int minor_version; /* 1 for HTTP/1.1 */
  dx__http_header headers[DX__HTTP_MAX_HEADERS];
  size_t num_headers;
} dx__http_request;

typedef struct dx__http_response {
  int minor_version;
  int status;
  const char *reason;
  size_t reason_len;
  dx__http_header headers[DX__HTTP_MAX_HEADERS];
  size_t num_headers;
} dx__http_response;

/* Looks for the blank line ending an HTTP head in buf[0..len). `last_len` is
 * the length of buf at the previous call (0 the first time), so bytes
 * already scanned are not scanned again: only the new bytes, looking back
 * at most 3 bytes into the old ones, are examined (a last_len above len
 * counts as 0). Returns the length of the head including the final
 * CRLFCRLF, or 0 when it is not complete yet. Bare LF line ends are
 * accepted too. Bytes after the head (e.g. a first frame) are left alone. */
size_t dx__http_head_end(const char *buf, size_t len, size_t last_len);

/* Parses a complete request head buf[0..len) (as measured by
 * dx__http_head_end: the blank line must end exactly at len). Returns 0, or
 * DX_EPROTO when it is not a well-formed HTTP/1.x request head or has more
 * than DX__HTTP_MAX_HEADERS headers. Strict: header names must be tokens
 * followed directly by ':', values may not hold control bytes (other than
 * HTAB) or bare CRs, and obsolete line folding is refused. HTTP/1.0 parses
 * (dx__ws_check_request refuses it with a reason). */
int dx__http_parse_request(const char *buf, size_t len, dx__http_request *r);
/* Same for a response head ("HTTP/1.1 101 Switching Protocols"). */
int dx__http_parse_response(const char *buf, size_t len, dx__http_response *r);

/* The first header named `name` (case-insensitive), or NULL. */
const dx__http_header *dx__http_find(const dx__http_header *h, size_t n,
                                     const char *name);
/* 1 when the comma-separated list v[0..len) contains `token`
 * (case-insensitive, surrounding whitespace ignored), else 0. */
int dx__http_has_token(const char *v, size_t len, const char *token);
/* 1 when s[0..len) is a non-empty RFC 7230 token (what a subprotocol name
 * must be), else 0. */
int dx__http_is_token(const char *s, size_t len);

/* accept = base64(SHA-1(key + GUID)); writes DX__WS_ACCEPT_LEN chars + NUL.
 * A key over 64 bytes (never valid) or a libcrypto failure writes "",
 * which matches no accept value. */
void dx__ws_accept_key(const char *key, size_t key_len,
                       char out[DX__WS_ACCEPT_LEN + 1]);
/* base64 of 16 random bytes; writes DX__WS_KEY_LEN chars + NUL. */
void dx__ws_make_key(const uint8_t raw[16], char out[DX__WS_KEY_LEN + 1]);

/* Server: checks an upgrade request. Returns 0 when it is a valid RFC 6455
 * upgrade (and writes the accept value), otherwise the HTTP status to
 * answer with (400, 405, 426) and a one-line reason in why[0..why_cap)
 * naming the method, version or header at fault. Checked in this order:
 * method GET (405), HTTP/1.1+ (400), exactly one Host (400), Upgrade
 * lists websocket (400), Connection lists upgrade (400), exactly one
 * Sec-WebSocket-Version (400) that is 13 (426), exactly one
 * Sec-WebSocket-Key that is base64 of 16 bytes (400). Peer bytes quoted in
 * `why` are shortened and reduced to printable ASCII. `accept` may be NULL;
 * `why` may be NULL when why_cap is 0. */
int dx__ws_check_request(const dx__http_request *r,
                         char accept[DX__WS_ACCEPT_LEN + 1], char *why,
                         size_t why_cap);

/* Server: writes the 101 response into out[0..cap), NUL-terminated.
 * `protocol` (NULL or "" for none) is the chosen subprotocol, `extensions`
 * (NULL or "" for none) the Sec-WebSocket-Extensions value. Returns its
 * length (without the NUL), or 0 if cap is too small (it must hold the NUL
 * too), `accept` is not DX__WS_ACCEPT_LEN chars, `protocol` is not an
 * RFC 7230 token or `extensions` holds control bytes. */
size_t dx__ws_build_response(char *out, size_t cap, const char *accept,
                             const char *protocol, const char *extensions);

/* Server: writes an error response, NUL-terminated: status line,
 * Content-Type: text/plain, Content-Length, Connection: close,
 * `Sec-WebSocket-Version: 13` when the status is 426, `Allow: GET` when it
 * is 405, and `why` (NULL means "") plus "\n" as the body. Returns its
 * length (without the NUL), or 0 if cap is too small (it must hold the NUL
 * too) or status is not 100-999. */
size_t dx__http_build_error(char *out, size_t cap, int status,
                            const char *why);

/* The standard reason phrase ("Bad Request") for a status; "Error" when
 * unknown. */
const char *dx__http_status_text(int status);

/* Client: writes the upgrade request, NUL-terminated. `host` is the Host
 * header value (with ":port" when not the default), `path` the request
 * target including any query, `key` from dx__ws_make_key. Returns its
 * length (without the NUL), or 0 if cap is too small (it must hold the NUL
 * too), host is empty or holds control bytes, path is empty or holds
 * anything but visible ASCII, or key is not a valid key. `protocols` (a
 * comma-separated list) and `extensions` are the Sec-WebSocket-Protocol and
 * Sec-WebSocket-Extensions values to offer (NULL or "" for none; control
 * bytes make it return 0). */
size_t dx__ws_build_request(char *out, size_t cap, const char *host,
                            const char *path, const char *key,
                            const char *protocols, const char *extensions);

/* Client: checks the server's response to a request sent with `key`.
 * Returns 0 when the upgrade succeeded, otherwise DX_EHANDSHAKE with a
 * one-line reason in why[0..why_cap) (for a non-101 status: "server
 * answered 404 Not Found"; otherwise the header at fault). Upgrade must
 * list websocket, Connection must list upgrade, and exactly one
 * Sec-WebSocket-Accept must match. Subprotocol and extensions are not
 * judged here: see dx__ws_check_protocol and dx__pmd_client_verify. */
int dx__ws_check_response(const dx__http_response *r, const char *key,
                          char *why, size_t why_cap);

/* Client: the subprotocol the server chose. `offered` is our offer as
 * NUL-separated names (offered_len bytes in all). Returns 0 with *chosen
 * pointing into `offered` (or NULL when the server chose none), or
 * DX_EHANDSHAKE with a reason when it chose one we did not offer or sent
 * the header twice. */
int dx__ws_check_protocol(const dx__http_response *r, const char *offered,
                          size_t offered_len, const char **chosen,
                          size_t *chosen_len, char *why, size_t why_cap);
#endif
