/* permessage-deflate (RFC 7692), sans-IO: the per-connection codec,
 * compressing and decompressing whole messages with zlib, which allocates
 * through the dx__alloc it is given. Negotiating the extension is
 * pmd_negotiate.h's; the codec is built from what it agreed. */
#ifndef DX_PROTO_DEFLATE_H
#define DX_PROTO_DEFLATE_H
#include <stddef.h>
#include <stdint.h>

#include "alloc.h"
#include "pmd_negotiate.h"

typedef struct dx__pmd dx__pmd;

/* is_server selects which agreed parameters bind our compressor (server_*
 * for a server) and our decompressor. cfg (may be NULL) gives level and
 * memLevel. zlib streams are created lazily, on first use, so an idle
 * connection holds no zlib memory; with no context takeover for a
 * direction, that direction's stream is freed after every message rather
 * than reset, so between messages it holds none either. The allocator is
 * copied. NULL on no memory. */
dx__pmd *dx__pmd_new(const dx__pmd_params *p, const dx__pmd_config *cfg,
                     int is_server, const dx__alloc *a);
void dx__pmd_free(dx__pmd *d);

/* Compresses one whole message. On success returns 0 and sets *out and *out_len
 * to the compressed payload with the trailing 00 00 ff ff removed; the
 * buffer belongs to d and is valid until the next call. Resets the context
 * afterwards when no context takeover applies to our direction. DX_ENOMEM
 * on failure; the compressor then starts afresh, which a peer keeping
 * context can still read, so the connection may go on. */
int dx__pmd_compress(dx__pmd *d, const uint8_t *in, size_t len,
                     const uint8_t **out, size_t *out_len);

/* The next message starts from nothing, as after a reset: for when
 * something compressed elsewhere went to the peer in between (a published
 * message), so the peer's window no longer holds what our compressor
 * remembers. Keeps the zlib state (deflateReset, no allocation). */
void dx__pmd_forget(dx__pmd *d);
/* The window our compressor was agreed, 8 to 15 (8: stored blocks). */
int dx__pmd_send_window(const dx__pmd *d);
/* Frees the buffer dx__pmd_compress returned (the caller has copied it), so
 * an idle connection holds no compressed output. */
void dx__pmd_release_output(dx__pmd *d);

/* Decompresses part of a compressed message. `in` is the next piece of the
 * payload as it arrives (any split, empty pieces allowed); `fin` is 1 with
 * the last piece (the 00 00 ff ff tail is appended internally). Decompressed
 * bytes go to sink(ud, p, n) as they are produced, at most 16 KiB at a
 * time; a non-zero return from sink stops and is returned. Fails with
 * DX_ETOOBIG as soon as the total for this message would exceed `limit`
 * (the sink has then received no more than limit bytes; pass UINT64_MAX
 * for none), DX_EPROTO for a corrupt stream or a message that does not end
 * on a block boundary, DX_ENOMEM. A message with an empty payload is the
 * empty message. Blocks with BFINAL set are allowed (RFC 7692 §7.2.3.4).
 * After fin, resets the context when no context takeover applies to the
 * peer's direction. After any error the message is abandoned and the
 * inflater dropped: with context takeover the connection must then fail. */
int dx__pmd_decompress(dx__pmd *d, const uint8_t *in, size_t len, int fin,
                       uint64_t limit,
                       int (*sink)(void *ud, const uint8_t *p, size_t n),
                       void *ud);

/* Bytes currently held through the allocator by this codec: the dx__pmd
 * itself (a few hundred bytes), zlib's state and the last compressed
 * message (for the memory table in the docs). */
size_t dx__pmd_memory(const dx__pmd *d);
#endif
