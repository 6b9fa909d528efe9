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

/* A masking key as a 32-bit word whose memory order starts at key[r] (the
 * phase of payload byte r, r < 4): XOR it onto four bytes of the payload
 * that start at a position congruent to r modulo 4. */
static inline uint32_t dx__mask_word(const uint8_t key[4], unsigned r) {
  uint32_t k;
  memcpy(&k, key, 4);
  unsigned sh = (r & 3) * 8;
  if (!sh) return k;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  return (k << sh) | (k >> (32 - sh));
#else
  return (k >> sh) | (k << (32 - sh));
#endif
}

/* Unmasks a whole payload p[0..n) in place (its first byte at phase 0 of
 * key) and returns the OR of its unmasked bytes' high bits, spread over a
 * word: 0 means every byte is ASCII, so text needs no further UTF-8 check.
 * One pass instead of an unmasking pass and a UTF-8 pass; inline, for the
 * small messages of a chatty peer (the general path uses dx__mask). key
 * may lie just before p (as in a frame); it is read before p is written.
 *
 * The last eight (or four) bytes are unmasked first, from the masked
 * input, and stored last: the whole words before them may run into those
 * bytes, and the final store then writes the same values again, so no
 * byte-wise tail is needed. */
static inline uint64_t dx__unmask_hibits(uint8_t *p, size_t n, const uint8_t key[4]) {
  uint32_t k0 = dx__mask_word(key, 0);
  uint64_t kw = ((uint64_t)k0 << 32) | k0;
  uint64_t acc = 0;
  if (n >= 8) {
    uint32_t kt = dx__mask_word(key, (unsigned)(n - 8));
    uint64_t t;
    memcpy(&t, p + n - 8, 8);
    t ^= ((uint64_t)kt << 32) | kt;
    for (size_t i = 0; i + 8 < n; i += 8) {
      uint64_t w;
      memcpy(&w, p + i, 8);
      w ^= kw;
      acc |= w;
      memcpy(p + i, &w, 8);
    }
    memcpy(p + n - 8, &t, 8);
    acc |= t;
  } else if (n >= 4) {
    uint32_t t, w;
    memcpy(&t, p + n - 4, 4);
    t ^= dx__mask_word(key, (unsigned)(n - 4));
    memcpy(&w, p, 4);
    w ^= k0;
    memcpy(p, &w, 4);
    memcpy(p + n - 4, &t, 4);
    acc = w | t;
  } else {
    for (size_t i = 0; i < n; i++) {
      p[i] ^= key[i];
      acc |= p[i];
    }
  }
  return acc & 0x8080808080808080ull;
}

#endif
