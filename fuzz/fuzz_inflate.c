/* libFuzzer target for the permessage-deflate codec in src/proto/deflate.c.
 *
 * Input: a 4-byte header, then the body.
 *   byte 0: bit 0 no context takeover for the inflated direction, bits 1-3
 *           the window (9 + value, capped at 15), bit 4 round-trip mode,
 *           bits 5-7 how many messages the body holds (1 + value): each
 *           but the last is a 2-byte big-endian length (clamped to what is
 *           left) and that many bytes; the last is the rest;
 *   byte 1: the per-message limit, (value + 1) * 61 bytes (61..15616);
 *   bytes 2-3: the seed for the split points.
 *
 * Inflate mode: the messages are taken as compressed payloads. Codec A gets each message in pieces (sizes
 * from the seed, empty pieces included); codec B gets it whole. Checked:
 * only documented results (0, DX_EPROTO, DX_ETOOBIG); the sink never sees
 * more than the limit and never more than 16 KiB at once; A and B agree on
 * every result and, on success, on every byte; nothing leaks.
 *
 * Round-trip mode: the body is plain messages, compressed by one codec
 * and inflated in pieces by its peer; they must come back unchanged. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "duplex.h"
#include "proto/deflate.h"

#include "fuzz_check.h"

typedef struct out {
  uint8_t *p;
  size_t len, cap;
  uint64_t limit;
} out;

static int sink(void *ud, const uint8_t *p, size_t n) {
  out *o = ud;
  CHECK(n > 0 && n <= 16384);
  CHECK(o->len + n <= o->limit);
  if (o->len + n > o->cap) {
    size_t cap = o->cap ? o->cap * 2 : 1024;
    while (cap < o->len + n)
      cap *= 2;
    o->p = realloc(o->p, cap);
    CHECK(o->p);
    o->cap = cap;
  }
  memcpy(o->p + o->len, p, n);
  o->len += n;
  return 0;
}

static uint32_t rng;
static uint32_t next(void) {
  rng = rng * 1103515245u + 12345u;
  return rng >> 16;
}

/* Feeds one message in pieces; returns the result. */
static int feed_split(dx__pmd *d, const uint8_t *m, size_t n, out *o) {
  size_t off = 0;
  while (off < n) {
    size_t piece = next() % 9 == 0 ? 0 : next() % (n - off + 1);
    int rc = dx__pmd_decompress(d, m + off, piece, 0, o->limit, sink, o);
    if (rc)
      return rc;
    off += piece;
  }
  return dx__pmd_decompress(d, NULL, 0, 1, o->limit, sink, o);
}

/* An exactly sized copy, so that reading past it is an ASan error. */
static uint8_t *dup(const uint8_t *p, size_t n) {
  uint8_t *c = malloc(n ? n : 1);
  CHECK(c);
  if (n)
    memcpy(c, p, n);
  return c;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 4)
    return 0;
  int nct = data[0] & 1;
  int bits = 9 + ((data[0] >> 1) & 7);
  if (bits > 15)
    bits = 15;
  int round_trip = (data[0] >> 4) & 1;
  size_t msgs = 1 + (size_t)(data[0] >> 5);
  uint64_t limit = ((uint64_t)data[1] + 1) * 61;
  rng = (uint32_t)data[2] << 8 | data[3];
  const uint8_t *body = data + 4;
  size_t len = size - 4;

  /* Where each message starts and ends in the body. */
  size_t from[8], to[8], at = 0;
  for (size_t i = 0; i < msgs; i++) {
    size_t n = len - at;
    if (i + 1 < msgs) {
      size_t want = 0;
      for (int k = 0; k < 2; k++)
        if (at < len)
          want = want << 8 | body[at++];
      n = len - at < want ? len - at : want;
    }
    from[i] = at;
    to[i] = at + n;
    at += n;
  }

  dx__pmd_params p;
  p.server_no_context_takeover = (uint8_t)nct;
  p.client_no_context_takeover = (uint8_t)nct;
  p.server_max_window_bits = (uint8_t)bits;
  p.client_max_window_bits = (uint8_t)bits;
  dx__pmd_config cfg;
  dx__pmd_config_defaults(&cfg);

  if (round_trip) {
    dx__pmd *tx = dx__pmd_new(&p, &cfg, 1, &dx__alloc_std);
    dx__pmd *rx = dx__pmd_new(&p, &cfg, 0, &dx__alloc_std);
    CHECK(tx && rx);
    for (size_t i = 0; i < msgs; i++) {
      size_t n = to[i] - from[i];
      uint8_t *m = dup(body + from[i], n);
      const uint8_t *z;
      size_t zlen;
      CHECK(dx__pmd_compress(tx, m, n, &z, &zlen) == 0);
      uint8_t *zc = dup(z, zlen);
      out o = {NULL, 0, 0, UINT64_MAX};
      CHECK(feed_split(rx, zc, zlen, &o) == 0);
      CHECK(o.len == n);
      CHECK(n == 0 || memcmp(o.p, m, n) == 0);
      free(o.p);
      free(zc);
      free(m);
    }
    dx__pmd_free(tx);
    dx__pmd_free(rx);
    return 0;
  }

  dx__pmd *a = dx__pmd_new(&p, &cfg, 1, &dx__alloc_std);
  dx__pmd *b = dx__pmd_new(&p, &cfg, 1, &dx__alloc_std);
  CHECK(a && b);
  for (size_t i = 0; i < msgs; i++) {
    size_t n = to[i] - from[i];
    uint8_t *m = dup(body + from[i], n);
    out oa = {NULL, 0, 0, limit}, ob = {NULL, 0, 0, limit};
    int ra = feed_split(a, m, n, &oa);
    int rb = dx__pmd_decompress(b, m, n, 1, limit, sink, &ob);
    CHECK(ra == 0 || ra == DX_EPROTO || ra == DX_ETOOBIG);
    if (ra != rb && bits < 15 && (ra == DX_EPROTO || rb == DX_EPROTO)) {
      /* A back-reference further back than the negotiated window: zlib
       * refuses it only when the bytes it names were produced by an earlier
       * inflate call, so the verdict depends on how the payload was split.
       * Both verdicts are fine for a peer that broke its window (it gets
       * failed, or its message decoded as it meant it); the two streams
       * have diverged, so stop comparing. */
      free(oa.p);
      free(ob.p);
      free(m);
      break;
    }
    if (ra != rb)
      fprintf(stderr, "message %zu: split %d, whole %d\n", i, ra, rb);
    CHECK(ra == rb);
    if (ra == 0) {
      CHECK(oa.len == ob.len);
      CHECK(oa.len == 0 || memcmp(oa.p, ob.p, oa.len) == 0);
    }
    CHECK(dx__pmd_memory(a) > 0);
    free(oa.p);
    free(ob.p);
    free(m);
  }
  dx__pmd_free(a);
  dx__pmd_free(b);
  return 0;
}
