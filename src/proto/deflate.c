/* permessage-deflate (RFC 7692): the per-connection codec (the negotiation
 * is pmd_negotiate.c's).
 *
 * Window bits and zlib, checked against zlib 1.2.13 (tests/unit/
 * test_deflate.c, test_8_bit_windows, asserts each point):
 *  - deflateInit2() refuses windowBits -8 (Z_STREAM_ERROR): a raw deflater
 *    cannot be given a 256-byte window at all (the zlib wrapper quietly
 *    turns 8 into 9; raw streams get an error).
 *  - inflateInit2(-8) is accepted, but nothing needs it: a 512-byte window
 *    holds every distance an 8-bit peer may use (<= 256), so our inflater
 *    uses 9 where the peer agreed to 8. An 8-bit inflater really does
 *    reject distances above 256 once its output is read in pieces.
 *  - So 8 is a problem only where it binds OUR compressor:
 *      server: a client offer with server_max_window_bits=8 is declined
 *              (the next offer is tried; no compression is a valid outcome);
 *      client: the server chose client_max_window_bits=8 in its response.
 *              The client cannot decline any more, so instead of failing a
 *              valid handshake it compresses at level 0: stored blocks hold
 *              no back-references, which fits any window.
 *    (zlib's 9-bit deflater happens never to reach back more than 250
 *    bytes, its window less MIN_LOOKAHEAD, so its output would suit an
 *    8-bit peer; 300 random trials agreed. That is zlib's internals, not
 *    its documented contract, so nothing here relies on it.)
 */
#include "proto/deflate.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <zlib.h>

#include "duplex_codes.h"

/* Decompressed bytes are produced into a stack buffer of this size and
 * handed to the sink, so a message is never held whole by the codec and
 * the size limit is checked at least every CHUNK bytes. */
#define DX__PMD_CHUNK 16384

/* zlib counts in uInt; larger inputs are fed in pieces of this size. */
#define DX__PMD_ZMAX (1u << 30)

static const uint8_t TAIL[4] = {0x00, 0x00, 0xff, 0xff};

/* ------------------------------------------------------------------------ */
/* The codec                                                                */
/* ------------------------------------------------------------------------ */

struct dx__pmd {
  dx__alloc alloc;
  size_t held; /* bytes currently allocated through alloc, this included */
  z_stream def, inf;
  uint8_t def_live, inf_live;
  uint8_t def_bits, inf_bits; /* windowBits for deflateInit2/inflateInit2 */
  uint8_t def_reset, inf_reset; /* no context takeover for that direction */
  uint8_t stored;               /* our window is 8: level 0, stored blocks */
  int level, mem_level;
  uint8_t *out; /* the last compressed message */
  size_t out_cap;
  /* The message being decompressed. */
  uint8_t in_msg;
  uint8_t ended; /* the inflater met a block with BFINAL set */
  uint64_t produced, consumed;
};

/* zlib allocates through these: each block is prefixed with its size so
 * dx__pmd_memory can count what is live. */
typedef union zhdr {
  size_t n;
  max_align_t align;
} zhdr;

static voidpf z_alloc(voidpf opaque, uInt items, uInt size) {
  dx__pmd *d = opaque;
  if (size != 0 && items > (SIZE_MAX - sizeof(zhdr)) / size)
    return Z_NULL;
  size_t n = (size_t)items * size;
  zhdr *h = dx__mem_alloc(&d->alloc, sizeof *h + n);
  if (h == NULL)
    return Z_NULL;
  h->n = sizeof *h + n;
  d->held += h->n;
  return h + 1;
}

static void z_free(voidpf opaque, voidpf p) {
  dx__pmd *d = opaque;
  if (p == NULL)
    return;
  zhdr *h = (zhdr *)p - 1;
  d->held -= h->n;
  dx__mem_free(&d->alloc, h);
}

dx__pmd *dx__pmd_new(const dx__pmd_params *p, const dx__pmd_config *cfg,
                     int is_server, const dx__alloc *a) {
  if (p == NULL || a == NULL)
    return NULL;
  dx__pmd *d = dx__mem_alloc(a, sizeof *d);
  if (d == NULL)
    return NULL;
  memset(d, 0, sizeof *d);
  d->alloc = *a;
  d->held = sizeof *d;
  int ours = is_server ? p->server_max_window_bits : p->client_max_window_bits;
  int theirs = is_server ? p->client_max_window_bits : p->server_max_window_bits;
  d->stored = ours == 8;
  d->def_bits = (uint8_t)dx__pmd_cfg_bits((uint8_t)ours);
  d->inf_bits = (uint8_t)dx__pmd_cfg_bits((uint8_t)theirs);
  d->def_reset = is_server ? p->server_no_context_takeover
                           : p->client_no_context_takeover;
  d->inf_reset = is_server ? p->client_no_context_takeover
                           : p->server_no_context_takeover;
  d->level = Z_DEFAULT_COMPRESSION;
  d->mem_level = 8;
  if (cfg) {
    if (cfg->level >= -1 && cfg->level <= 9)
      d->level = cfg->level;
    if (cfg->mem_level >= 1 && cfg->mem_level <= 9)
      d->mem_level = cfg->mem_level;
  }
  if (d->stored) {
    /* Level 0 never searches for matches, so the smallest hash tables
     * will do. */
    d->level = 0;
    d->mem_level = 1;
  }
  return d;
}

static void def_close(dx__pmd *d) {
  if (d->def_live) {
    deflateEnd(&d->def);
    d->def_live = 0;
  }
}

static void inf_close(dx__pmd *d) {
  if (d->inf_live) {
    inflateEnd(&d->inf);
    d->inf_live = 0;
  }
  d->ended = 0;
}

void dx__pmd_free(dx__pmd *d) {
  if (d == NULL)
    return;
  def_close(d);
  inf_close(d);
  dx__alloc a = d->alloc;
  dx__mem_free(&a, d->out);
  dx__mem_free(&a, d);
}

size_t dx__pmd_memory(const dx__pmd *d) { return d ? d->held : 0; }

static int zerr(int r) { return r == Z_MEM_ERROR ? DX_ENOMEM : DX_EINVAL; }

static int def_open(dx__pmd *d) {
  memset(&d->def, 0, sizeof d->def);
  d->def.zalloc = z_alloc;
  d->def.zfree = z_free;
  d->def.opaque = d;
  int r = deflateInit2(&d->def, d->level, Z_DEFLATED, -(int)d->def_bits,
                       d->mem_level, Z_DEFAULT_STRATEGY);
  if (r != Z_OK)
    return zerr(r);
  d->def_live = 1;
  return 0;
}

static int inf_open(dx__pmd *d) {
  memset(&d->inf, 0, sizeof d->inf);
  d->inf.zalloc = z_alloc;
  d->inf.zfree = z_free;
  d->inf.opaque = d;
  int r = inflateInit2(&d->inf, -(int)d->inf_bits);
  if (r != Z_OK)
    return zerr(r);
  d->inf_live = 1;
  d->ended = 0;
  return 0;
}

/* Resizes the output buffer to exactly `cap` bytes. */
static int out_resize(dx__pmd *d, size_t cap) {
  if (cap == d->out_cap)
    return 0;
  uint8_t *p = d->alloc.realloc(d->alloc.ud, d->out, cap);
  if (p == NULL)
    return DX_ENOMEM;
  d->held = d->held - d->out_cap + cap;
  d->out = p;
  d->out_cap = cap;
  return 0;
}

int dx__pmd_compress(dx__pmd *d, const uint8_t *in, size_t len,
                     const uint8_t **out, size_t *out_len) {
  if (out)
    *out = NULL;
  if (out_len)
    *out_len = 0;
  if (d == NULL || out == NULL || out_len == NULL || (in == NULL && len))
    return DX_EINVAL;
  int rc;
  if (len == 0) {
    /* The empty message is one empty stored block, 00 [00 00 ff ff]. Our
     * output always ends byte-aligned (every message ends in a sync
     * flush), so it can go between any two messages without zlib, which
     * would produce nothing at all for a second flush in a row. */
    if ((rc = out_resize(d, 1)) != 0)
      return rc;
    d->out[0] = 0x00;
    *out = d->out;
    *out_len = 1;
    return 0;
  }
  if (!d->def_live && (rc = def_open(d)) != 0)
    return rc;
  z_stream *s = &d->def;
  /* deflateBound covers a finished stream; the sync flush adds at most an
   * empty stored block (5 bytes) and a partial byte. */
  uLong bound = deflateBound(s, (uLong)len);
  size_t cap = (bound < len || bound > SIZE_MAX - 64) ? SIZE_MAX : bound + 64;
  if ((rc = out_resize(d, cap)) != 0)
    goto fail;
  size_t used = 0, left = len;
  const uint8_t *p = in;
  for (;;) {
    uInt piece = left > DX__PMD_ZMAX ? DX__PMD_ZMAX : (uInt)left;
    int flush = piece == left ? Z_SYNC_FLUSH : Z_NO_FLUSH;
    s->next_in = (Bytef *)(uintptr_t)p;
    s->avail_in = piece;
    do {
      if (d->out_cap - used < 64) {
        size_t grow = d->out_cap / 2 < 4096 ? 4096 : d->out_cap / 2;
        if (d->out_cap > SIZE_MAX - grow) {
          rc = DX_ENOMEM;
          goto fail;
        }
        if ((rc = out_resize(d, d->out_cap + grow)) != 0)
          goto fail;
      }
      size_t room = d->out_cap - used;
      s->next_out = d->out + used;
      s->avail_out = room > DX__PMD_ZMAX ? DX__PMD_ZMAX : (uInt)room;
      uInt before = s->avail_out;
      int r = deflate(s, flush);
      used += before - s->avail_out;
      if (r != Z_OK && r != Z_BUF_ERROR) {
        rc = zerr(r);
        goto fail;
      }
    } while (s->avail_out == 0 || s->avail_in != 0);
    p += piece;
    left -= piece;
    if (flush == Z_SYNC_FLUSH)
      break;
  }
  /* RFC 7692 §7.2.1: the sync flush ends in an empty stored block,
   * 00 00 ff ff, which the receiver puts back. */
  if (used < 4 || memcmp(d->out + used - 4, TAIL, 4) != 0) {
    rc = DX_EINVAL;
    goto fail;
  }
  used -= 4;
  /* Hold no more than this message needs until the next call; a large
   * message's worst-case buffer would otherwise stay with an idle
   * connection. Shrinking cannot fail in practice; if it does, keep the
   * larger buffer. */
  if (d->out_cap - used > 4096)
    (void)out_resize(d, used ? used : 1);
  if (d->def_reset)
    def_close(d); /* the next message starts from nothing anyway */
  *out = d->out;
  *out_len = used;
  return 0;
fail:
  /* Dropping the stream is always safe for the peer: a fresh compressor
   * never refers to anything the peer has not seen. */
  def_close(d);
  return rc;
}

void dx__pmd_forget(dx__pmd *d) {
  if (d && d->def_live)
    deflateReset(&d->def);
}

int dx__pmd_send_window(const dx__pmd *d) { return d->stored ? 8 : d->def_bits; }

void dx__pmd_release_output(dx__pmd *d) {
  if (!d || !d->out) return;
  d->alloc.realloc(d->alloc.ud, d->out, 0);
  d->held -= d->out_cap;
  d->out = NULL;
  d->out_cap = 0;
}

/* The inflater met the end of a block with BFINAL set but the message goes
 * on. RFC 7692 §7.2.3.4: the next block follows, and with context
 * takeover it may still refer to what came before, so the window is
 * carried over into a fresh stream. */
static int inf_restart(dx__pmd *d) {
  z_stream *s = &d->inf;
  uInt n = 0;
  uint8_t *win = NULL;
  if (inflateGetDictionary(s, NULL, &n) != Z_OK)
    return DX_EINVAL;
  if (n) {
    win = dx__mem_alloc(&d->alloc, n);
    if (win == NULL)
      return DX_ENOMEM;
    inflateGetDictionary(s, win, &n);
  }
  int r = inflateReset(s);
  if (r == Z_OK && n)
    r = inflateSetDictionary(s, win, n);
  dx__mem_free(&d->alloc, win);
  if (r != Z_OK)
    return zerr(r);
  d->ended = 0;
  return 0;
}

/* Inflates what is in d->inf.next_in. `tail` is set for the 00 00 ff ff
 * appended at the end of the message: it is read with Z_BLOCK so that
 * inflate stops on the block boundary and data_type tells whether the
 * message ended where a block did. */
static int inf_run(dx__pmd *d, int tail, uint64_t limit,
                   int (*sink)(void *, const uint8_t *, size_t), void *ud) {
  z_stream *s = &d->inf;
  uint8_t buf[DX__PMD_CHUNK];
  for (;;) {
    if (d->ended) {
      if (s->avail_in == 0)
        return 0;
      if (tail) {
        /* Nothing but our own tail after the final block: the peer simply
         * did not append the empty block. Nothing to read. */
        s->avail_in = 0;
        return 0;
      }
      int rc = inf_restart(d);
      if (rc)
        return rc;
    }
    /* Never let zlib produce more than one byte beyond the limit: room + 1
     * bytes of space tell "exactly at the limit" from "over it". */
    uint64_t room = limit - d->produced;
    size_t cap = room < DX__PMD_CHUNK ? (size_t)room + 1 : DX__PMD_CHUNK;
    s->next_out = buf;
    s->avail_out = (uInt)cap;
    uInt in_before = s->avail_in;
    int r = inflate(s, tail ? Z_BLOCK : Z_SYNC_FLUSH);
    size_t have = cap - s->avail_out;
    if (have > room)
      return DX_ETOOBIG;
    if (have) {
      d->produced += have;
      int rc = sink(ud, buf, have);
      if (rc)
        return rc;
    }
    switch (r) {
    case Z_STREAM_END:
      d->ended = 1;
      continue;
    case Z_OK:
    case Z_BUF_ERROR:
      break;
    case Z_MEM_ERROR:
      return DX_ENOMEM;
    default: /* Z_DATA_ERROR; Z_NEED_DICT cannot happen on a raw stream */
      return DX_EPROTO;
    }
    if (s->avail_in == 0 && s->avail_out != 0)
      return 0;
    if (have == 0 && s->avail_in == in_before && r == Z_BUF_ERROR)
      return DX_EPROTO; /* no progress possible: cannot happen, but never spin */
  }
}

static int inf_feed(dx__pmd *d, const uint8_t *in, size_t len, int tail,
                    uint64_t limit,
                    int (*sink)(void *, const uint8_t *, size_t), void *ud) {
  int rc;
  if (!d->inf_live && (rc = inf_open(d)) != 0)
    return rc;
  while (len > 0) {
    uInt piece = len > DX__PMD_ZMAX ? DX__PMD_ZMAX : (uInt)len;
    d->inf.next_in = (Bytef *)(uintptr_t)in;
    d->inf.avail_in = piece;
    if ((rc = inf_run(d, tail, limit, sink, ud)) != 0)
      return rc;
    in += piece;
    len -= piece;
  }
  return 0;
}

int dx__pmd_decompress(dx__pmd *d, const uint8_t *in, size_t len, int fin,
                       uint64_t limit,
                       int (*sink)(void *ud, const uint8_t *p, size_t n),
                       void *ud) {
  if (d == NULL || sink == NULL || (in == NULL && len))
    return DX_EINVAL;
  if (!d->in_msg) {
    d->in_msg = 1;
    d->produced = 0;
    d->consumed = 0;
  }
  int rc = 0;
  if (len) {
    d->consumed += len;
    if ((rc = inf_feed(d, in, len, 0, limit, sink, ud)) != 0)
      goto fail;
  }
  if (!fin)
    return 0;
  d->in_msg = 0;
  /* A compressed message with no payload at all: some senders send an
   * empty message that way. There is nothing to inflate (the tail alone
   * would be a truncated block). */
  if (d->consumed == 0)
    return 0;
  if ((rc = inf_feed(d, TAIL, sizeof TAIL, 1, limit, sink, ud)) != 0)
    goto fail;
  /* 128 in data_type: inflate stopped right after a block. Anything else
   * means the message was cut inside a block. */
  if (!d->ended && !(d->inf.data_type & 128)) {
    rc = DX_EPROTO;
    goto fail;
  }
  if (d->inf_reset)
    inf_close(d); /* the next message starts from nothing */
  return 0;
fail:
  /* The message is abandoned and the inflater with it: its state is
   * mid-message and of no use to the next one. */
  d->in_msg = 0;
  inf_close(d);
  return rc;
}
