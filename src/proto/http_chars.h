/* HTTP's character classes (RFC 7230; ASCII only, no locale) as one
 * 256-entry table built at compile time, shared by the head parser and the
 * permessage-deflate negotiation.
 *
 * Why a table: every byte of every request head goes through these tests.
 * tchar's punctuation was a strchr per byte ("Content-Length" has one), and
 * the branches of the range tests cost more than one load; with the table a
 * header byte is a load and a test. */
#ifndef DX_PROTO_HTTP_CHARS_H
#define DX_PROTO_HTTP_CHARS_H
#include <stdint.h>

enum {
  DX__HC_TCHAR = 1,  /* RFC 7230 §3.2.6 tchar: token characters */
  DX__HC_FIELD = 2,  /* field-vchar / obs-text, SP, HTAB: inside a header
                        value or reason phrase (no CR, LF, NUL, controls,
                        DEL) */
  DX__HC_TARGET = 4, /* request-target: visible ASCII (RFC 3986) */
};

#define DX__HC_IS_TCHAR(c)                                                  \
  (((c) >= 'a' && (c) <= 'z') || ((c) >= 'A' && (c) <= 'Z') ||             \
   ((c) >= '0' && (c) <= '9') || (c) == '!' || (c) == '#' || (c) == '$' ||  \
   (c) == '%' || (c) == '&' || (c) == '\'' || (c) == '*' || (c) == '+' ||   \
   (c) == '-' || (c) == '.' || (c) == '^' || (c) == '_' || (c) == '`' ||    \
   (c) == '|' || (c) == '~')
#define DX__HC_CLASS(c)                                                     \
  ((DX__HC_IS_TCHAR(c) ? DX__HC_TCHAR : 0) |                                \
   (((c) == '\t' || ((c) >= 0x20 && (c) != 0x7f)) ? DX__HC_FIELD : 0) |     \
   (((c) > 0x20 && (c) < 0x7f) ? DX__HC_TARGET : 0))
#define DX__HC_ROW(b)                                                       \
  DX__HC_CLASS(b), DX__HC_CLASS(b + 1), DX__HC_CLASS(b + 2),                \
      DX__HC_CLASS(b + 3), DX__HC_CLASS(b + 4), DX__HC_CLASS(b + 5),        \
      DX__HC_CLASS(b + 6), DX__HC_CLASS(b + 7), DX__HC_CLASS(b + 8),        \
      DX__HC_CLASS(b + 9), DX__HC_CLASS(b + 10), DX__HC_CLASS(b + 11),      \
      DX__HC_CLASS(b + 12), DX__HC_CLASS(b + 13), DX__HC_CLASS(b + 14),     \
      DX__HC_CLASS(b + 15)

static const uint8_t dx__http_chars[256] = {
    DX__HC_ROW(0x00), DX__HC_ROW(0x10), DX__HC_ROW(0x20), DX__HC_ROW(0x30),
    DX__HC_ROW(0x40), DX__HC_ROW(0x50), DX__HC_ROW(0x60), DX__HC_ROW(0x70),
    DX__HC_ROW(0x80), DX__HC_ROW(0x90), DX__HC_ROW(0xa0), DX__HC_ROW(0xb0),
    DX__HC_ROW(0xc0), DX__HC_ROW(0xd0), DX__HC_ROW(0xe0), DX__HC_ROW(0xf0)};

static inline int dx__http_is_tchar(unsigned char c) {
  return dx__http_chars[c] & DX__HC_TCHAR;
}
static inline int dx__http_is_field_char(unsigned char c) {
  return dx__http_chars[c] & DX__HC_FIELD;
}
static inline int dx__http_is_target_char(unsigned char c) {
  return dx__http_chars[c] & DX__HC_TARGET;
}

#endif
