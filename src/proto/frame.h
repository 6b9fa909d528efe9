/* RFC 6455 §5.2 frame headers: parse, serialize, and (un)mask payloads.
 * Stateless; the session keeps the message-level rules. */
#ifndef DX_PROTO_FRAME_H
#define DX_PROTO_FRAME_H
#include <stddef.h>
#include <stdint.h>
#include <string.h>

enum {
  DX__OP_CONT = 0x0,
  DX__OP_TEXT = 0x1,
  DX__OP_BINARY = 0x2,
  DX__OP_CLOSE = 0x8,
  DX__OP_PING = 0x9,
  DX__OP_PONG = 0xA
};

#define DX__FRAME_MAX_HEADER 14 /* 2 + 8 (64-bit length) + 4 (mask) */
#define DX__RSV1 0x4
#define DX__RSV2 0x2
#define DX__RSV3 0x1

typedef struct dx__frame_header {
  uint8_t fin;      /* 1 if FIN is set */
  uint8_t rsv;      /* RSV1..3 as bits 2..0 (DX__RSV1 = 0x4) */
  uint8_t opcode;
  uint8_t masked;   /* 1 if MASK is set */
  uint8_t mask[4];  /* masking key when masked */
  uint8_t header_len; /* bytes the header occupied on the wire */
  uint64_t len;     /* payload length */
} dx__frame_header;

static inline int dx__opcode_is_control(unsigned op) { return (op & 0x8) != 0; }

/* Parses a frame header from in[0..len). Returns the header length (2..14)
 * when complete, 0 when more bytes are needed, or DX_EPROTO when the header
 * itself is malformed: reserved opcode (3-7, 0xB-0xF), a control frame with
 * FIN clear or payload over 125 bytes, or a 64-bit length with the top bit
 * set. Each is reported as soon as the byte that shows it has arrived.
 * Non-minimal length encodings are accepted. RSV and masking rules depend on
 * the session and are not checked here. */
int dx__frame_parse_header(const uint8_t *in, size_t len, dx__frame_header *h);

/* Writes a header into out (room for DX__FRAME_MAX_HEADER bytes) and returns
 * its length. `mask` NULL writes an unmasked header. Inline: every frame
 * sent calls it, mostly with constant fin and mask. */
static inline size_t dx__frame_write_header(uint8_t *out, int fin, unsigned rsv,
                              unsigned opcode, const uint8_t *mask,
                              uint64_t len) {
  size_t n = 2;
  out[0] = (uint8_t)((fin ? 0x80 : 0) | ((rsv & 7) << 4) | (opcode & 0xF));
  uint8_t mbit = mask ? 0x80 : 0;
  if (len < 126) {
    out[1] = (uint8_t)(mbit | len);
  } else if (len <= 0xFFFF) {
    out[1] = mbit | 126;
    out[2] = (uint8_t)(len >> 8);
    out[3] = (uint8_t)len;
    n = 4;
  } else {
    out[1] = mbit | 127;
    for (int i = 0; i < 8; i++) out[2 + i] = (uint8_t)(len >> (56 - 8 * i));
    n = 10;
  }
  if (mask) {
    memcpy(out + n, mask, 4);
    n += 4;
  }
  return n;
}

/* Header size for a payload of len bytes. */
static inline size_t dx__frame_header_size(uint64_t len, int masked) {
  return (len < 126 ? 2 : len <= 0xFFFF ? 4 : 10) + (masked ? 4 : 0);
}

/* XORs data with key, starting at byte `offset` of the payload (so a payload
 * can be unmasked in pieces). Works eight bytes at a time. */
void dx__mask(uint8_t *data, size_t len, const uint8_t key[4], uint64_t offset);
/* Copies src to dst XORing with key (dst and src may be the same). */
void dx__mask_copy(uint8_t *dst, const uint8_t *src, size_t len,
                   const uint8_t key[4], uint64_t offset);

#endif
