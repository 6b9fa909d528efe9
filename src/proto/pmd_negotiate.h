/* permessage-deflate (RFC 7692), sans-IO: negotiating the extension in the
 * opening handshake (Sec-WebSocket-Extensions, both roles). What it agrees
 * on (dx__pmd_params) builds the codec of deflate.h. */
#ifndef DX_PROTO_PMD_NEGOTIATE_H
#define DX_PROTO_PMD_NEGOTIATE_H
#include <stddef.h>
#include <stdint.h>

/* Room for any header value this module writes (server response, client
 * offer; the longest is about 130 bytes), NUL included. */
#define DX__PMD_HEADER_MAX 192

/* What one side is willing to do (from the user's options). */
typedef struct dx__pmd_config {
  uint8_t enabled;
  /* Largest LZ77 window (9..15) this side lets the *server* and the
   * *client* compress with. A server asking a client for less sends
   * client_max_window_bits=N; a client asking the server for less sends
   * server_max_window_bits=N. 0 means 15; 8 is taken as 9: zlib's raw
   * deflate refuses an 8-bit window (deflateInit2 fails). A peer's 8 is
   * inflated with 9 (a superset). Where 8 would bind our compressor: a
   * server declines that offer and tries the next; a client, which can no
   * longer decline, compresses with stored blocks (level 0), which hold no
   * back-references. deflate.c has the details and the evidence. A server
   * limiting the client (< 15) declines offers without
   * client_max_window_bits, since only that lets it bind the client. */
  uint8_t server_max_window_bits;
  uint8_t client_max_window_bits;
  /* Ask for no context takeover in either direction. */
  uint8_t server_no_context_takeover;
  uint8_t client_no_context_takeover;
  uint8_t mem_level;  /* zlib memLevel 1..9 for our compressor (default 8) */
  int8_t level;       /* zlib level -1..9 (default -1 = Z_DEFAULT_COMPRESSION) */
  uint32_t threshold; /* messages shorter than this go uncompressed */
} dx__pmd_config;

/* What was agreed for one connection. Window bits are 9..15, with one
 * exception: on a client whose server chose client_max_window_bits=8,
 * client_max_window_bits is 8 and dx__pmd_new then compresses at level 0
 * (stored blocks). A client that asked for client_no_context_takeover has
 * it set whatever the server answered (it resets its own compressor). */
typedef struct dx__pmd_params {
  uint8_t server_no_context_takeover;
  uint8_t client_no_context_takeover;
  uint8_t server_max_window_bits;
  uint8_t client_max_window_bits;
} dx__pmd_params;

/* Fills a config with the defaults: enabled, 15/15 bits, context takeover
 * both ways, memLevel 8, level -1, threshold 0. The threshold is for the
 * caller: dx__pmd_compress compresses whatever it is given. */
void dx__pmd_config_defaults(dx__pmd_config *c);

/* The window a configured value stands for: 9..15 as given, 8 (which zlib
 * cannot compress with) as 9, anything else (0 = unset, > 15) as 15. Both
 * the negotiation and the codec read a config through it. */
static inline int dx__pmd_cfg_bits(uint8_t v) {
  if (v == 8)
    return 9;
  return (v >= 9 && v <= 15) ? v : 15;
}

/* Server: reads every Sec-WebSocket-Extensions value the client sent
 * (values[i][0..lens[i]), each a comma-separated list of offers, quoted
 * parameter values allowed) and accepts the first permessage-deflate offer
 * it can honour. Unknown extensions and offers it cannot accept (unknown or
 * duplicate parameters, bad values) are skipped, never an error. Returns 1
 * and fills *out and resp (the response header value, NUL-terminated) when
 * it accepted one; 0 when none was acceptable or cfg->enabled is 0 (resp is
 * then ""). */
int dx__pmd_server_negotiate(const dx__pmd_config *cfg,
                             const char *const *values, const size_t *lens,
                             size_t n, dx__pmd_params *out, char *resp,
                             size_t resp_cap);

/* Client: writes our offer (a header value, NUL-terminated) and returns its
 * length; 0 if cap is too small or cfg->enabled is 0. One offer, always
 * with client_max_window_bits (with a value when we limit ourselves), so
 * servers that want to limit the client can accept it. */
size_t dx__pmd_client_offer(const dx__pmd_config *cfg, char *out, size_t cap);

/* Client: checks the server's Sec-WebSocket-Extensions values against what
 * we offered. Returns 1 with *out filled when permessage-deflate was
 * accepted, 0 when the server accepted no extension, or DX_EHANDSHAKE with a
 * one-line reason in why (an extension we did not offer, a parameter we did
 * not offer or allow, a bad value, a duplicate) — the connection must then
 * fail (RFC 6455 §9.1: 1010 from a client). */
int dx__pmd_client_verify(const dx__pmd_config *cfg,
                          const char *const *values, const size_t *lens,
                          size_t n, dx__pmd_params *out, char *why,
                          size_t why_cap);
#endif
