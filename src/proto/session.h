/* The WebSocket session after the opening handshake, sans-IO: bytes in
 * (dx__session_recv), bytes out (dx__session_pending/consumed), events out
 * (callbacks). One implementation serves both roles; the role decides the
 * masking rules. It never touches a socket, clock or thread, and allocates
 * only through the allocator it was given. */
#ifndef DX_PROTO_SESSION_H
#define DX_PROTO_SESSION_H
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>

#include "alloc.h"

typedef enum { DX__ROLE_SERVER = 0, DX__ROLE_CLIENT = 1 } dx__role;

#include "deflate.h"
#include "frame.h"
#include "utf8.h"

typedef struct dx__session dx__session;

/* The events a session reports. Each gets the session itself: its owner
 * finds its own state from it (an owner that embeds the session, as a
 * connection does, by its offset), so a session holds no pointer for it. */
typedef struct dx__session_callbacks {
  /* A complete text (opcode 1, valid UTF-8) or binary (2) message. `data`
   * may point into the buffer given to dx__session_recv (unmasked in place)
   * or into the session's reassembly buffer; valid until the callback
   * returns. The callee may send, but must not free the session. */
  void (*on_message)(dx__session *s, int opcode, uint8_t *data, size_t len);
  /* A ping (its pong is already queued) or an unsolicited/answering pong. */
  void (*on_ping)(dx__session *s, const uint8_t *data, size_t len);
  void (*on_pong)(dx__session *s, const uint8_t *data, size_t len);
  /* The peer's close frame arrived (code 1005 when it carried none). The
   * reply, if one was due, is already queued. `reason` is valid UTF-8 of
   * `len` bytes, not NUL-terminated, valid until the callback returns. */
  void (*on_close)(dx__session *s, int code, const char *reason, size_t len);
} dx__session_callbacks;

/* What every session of one kind shares and never changes: its events and
 * its allocator. One table for all of them (a connection's is static), so
 * that a session holds one pointer for both, and can free its memory
 * through it even after its dx__session_config is gone (see
 * dx__session_deinit). */
typedef struct dx__session_ops {
  dx__session_callbacks cb;
  dx__alloc alloc;
} dx__session_ops;

typedef struct dx__session_config {
  dx__role role;
  uint64_t max_message; /* reassembled size limit; over it: 1009 */
  uint64_t max_frame;   /* single frame limit; over it: 1009 */
  unsigned allowed_rsv; /* RSV bits an extension negotiated (DX__RSV1...) */
  /* Client role: fills out[0..n) with unpredictable bytes (masking keys). */
  void (*random)(void *ud, uint8_t *out, size_t n);
  void *random_ud;
} dx__session_config;

/* Session states (numbered as dx_ready_state). */
enum { DX__S_OPEN = 1, DX__S_CLOSING = 2, DX__S_CLOSED = 3 };

/* Bits of dx__session.flags. */
enum {
  DX__SF_CLOSE_SENT = 1,
  DX__SF_CLOSE_RECEIVED = 2,
  DX__SF_FAILED = 4,    /* we failed the connection; input is ignored */
  DX__SF_COMPRESSED = 8, /* the open message came with RSV1 (deflated) */
  DX__SF_BAD_DEFLATE = 16, /* we failed it for a corrupt deflate stream */
  DX__SF_FRAME_LIMIT = 32  /* we failed it for a frame over max_frame */
};

/* Pending output: one block, its counts and its bytes, allocated when a
 * frame is queued and freed once all of it is written, so that an idle
 * session holds a NULL pointer for it rather than four words. */
typedef struct dx__session_out {
  size_t off, len, cap; /* data[off..len) waits; cap bytes of room */
  uint8_t data[];
} dx__session_out;

/* What a session needs rarely, behind one pointer allocated at the first
 * need (a control frame split across reads, a close with a reason) and
 * kept until the session is freed: an idle session holds a NULL pointer
 * instead of three. */
typedef struct dx__session_rare {
  uint8_t *ctl;       /* a control payload split across reads */
  char *recv_reason;  /* NUL-terminated, allocated only when non-empty */
  char *sent_reason;  /* dx__session_close's, likewise */
} dx__session_rare;

/* The state of a frame or message that is not all in yet: a header split
 * across reads, a payload still coming, a message in several frames. A
 * session holds it behind a pointer that is NULL between messages (an
 * idle connection's case): dx__session_recv works on a block on its stack
 * and copies it to the heap only when its input ends mid-frame or
 * mid-message, and frees that copy once the message is done. */
typedef struct dx__session_rx {
  dx__frame_header fh;     /* header of the frame being read */
  uint64_t frame_got;      /* payload bytes of it read so far */
  uint8_t *msg;            /* reassembly buffer (NULL when none open) */
  size_t msg_len, msg_cap;
  uint8_t hdr[DX__FRAME_MAX_HEADER]; /* a header split across reads */
  uint8_t hdr_len;
  uint8_t in_frame;        /* 1 while reading a payload */
  uint8_t discard;         /* 1: drop this frame's payload (we sent close) */
  uint8_t msg_opcode;      /* opcode of the open fragmented message, or 0 */
  dx__utf8_state utf8;     /* validator state of the open text message */
} dx__session_rx;

/* The session's fields are private to session.c; the struct is visible only
 * so an owner can embed it (dx__session_init) and save an allocation per
 * connection. */
struct dx__session {
  /* Both borrowed, and shared by many sessions: an idle connection's
   * bytes are what it holds per session (bench/README.md, idle memory). */
  const struct dx__session_config *cfg; /* until dx__session_deinit */
  const dx__session_ops *ops;           /* until the memory is freed */
  dx__session_rx *rx;      /* a frame or message under way: NULL between them */
  dx__session_out *out;    /* pending output, NULL when none */
  dx__session_rare *rare;  /* split control frame, close reasons: NULL until needed */
  dx__pmd *pmd;            /* permessage-deflate state, when negotiated */
  uint16_t sent_code, recv_code; /* closing */
  uint8_t flags;           /* DX__SF_* */
};

/* Initialises a session in caller-provided memory. cfg and ops are
 * borrowed: cfg must outlive every other call on the session, ops its
 * dx__session_deinit too. Cannot fail. */
void dx__session_init(dx__session *s, const dx__session_config *cfg,
                      const dx__session_ops *ops);
/* Frees what the session allocated (not the struct itself). Reads ops,
 * never cfg: an owner may free the config first (a server ends, its
 * connections' memory goes at the end of the loop iteration). A zeroed
 * session that was never initialised is accepted (and holds nothing). */
void dx__session_deinit(dx__session *s);

/* Returns NULL when out of memory (dx__session_init in memory from
 * ops->alloc). */
dx__session *dx__session_new(const dx__session_config *cfg, const dx__session_ops *ops);
void dx__session_free(dx__session *s);
/* The config the session was made with: lets an owner that gives each
 * session a config of its own (tests, fuzzers) find itself from the
 * session in a callback. */
static inline const dx__session_config *dx__session_cfg(const dx__session *s) { return s->cfg; }

/* Feeds received bytes; they may be modified (unmasked in place). Returns
 * len when everything was consumed, or a negative code when the peer broke
 * the protocol: DX_EPROTO (1002 queued; 1007 for a corrupt compressed message),
 * DX_EUTF8 (1007 queued), DX_ETOOBIG
 * (1009 queued), DX_ENOMEM (1011 queued when possible). After an error the
 * session is CLOSING and ignores further input; flush the output and close
 * the transport. Input after the peer's close frame is ignored. */
ssize_t dx__session_recv(dx__session *s, uint8_t *in, size_t len);

/* Queues a data message (opcode DX__OP_TEXT or DX__OP_BINARY) as one frame.
 * Returns 0, DX_ESTATE when not OPEN, DX_ENOMEM. Text is not validated
 * here. */
int dx__session_send(dx__session *s, int opcode, const void *data,
                     size_t len);
/* The common case of dx__session_send, inline: a server's frame of at most
 * 125 bytes (an unmasked header of two bytes) when the output block has
 * room for it already, as it has for every echo after the first of a read
 * that carried several messages. Returns 0 when it queued the frame, 1
 * when dx__session_send_ex must take the message (any other case,
 * including every error). opcode is DX__OP_TEXT or DX__OP_BINARY. */
static inline int dx__session_send_small(dx__session *s, int opcode, const void *data,
                                         size_t len) {
  dx__session_out *o = s->out;
  if (!o || len > 125 || len + 2 > o->cap - o->len || s->flags || s->cfg->role != DX__ROLE_SERVER)
    return 1;
  uint8_t *p = o->data + o->len;
  p[0] = (uint8_t)(0x80 | opcode);
  p[1] = (uint8_t)len;
  memcpy(p + 2, data, len);
  o->len += len + 2;
  return 0;
}
/* Same, compressing the message when `compress` is set and
 * permessage-deflate was negotiated (dx__session_set_pmd). DX_ENOMEM also
 * when compression ran out of memory. */
int dx__session_send_ex(dx__session *s, int opcode, const void *data,
                        size_t len, int compress);
/* Hands the session the negotiated permessage-deflate codec (it takes
 * ownership and frees it with the session). Allows RSV1 on the first frame
 * of data messages and inflates them, counting the inflated size against
 * max_message (1009 past it) and a corrupt stream as 1007. */
void dx__session_set_pmd(dx__session *s, dx__pmd *pmd);

/* Queues a ping or pong (len <= 125). 0, DX_ESTATE, DX_EINVAL, DX_ENOMEM. */
int dx__session_control(dx__session *s, int opcode, const void *data,
                        size_t len);
/* Queues our close frame (code 0 = no payload). 0, DX_ESTATE when a close
 * was already sent, DX_ECLOSECODE, DX_EINVAL, DX_EUTF8, DX_ENOMEM. */
int dx__session_close(dx__session *s, int code, const char *reason,
                      size_t reason_len);

/* Queues raw bytes ahead of any later frame (the 101 response, so it leaves
 * in the same write as frames sent from the open callback). 0 or
 * DX_ENOMEM. */
int dx__session_queue_raw(dx__session *s, const void *data, size_t len);

/* Bytes waiting to be written: sets *out and returns their count (0 when
 * none). Valid until the next call that queues or consumes. Inline: a
 * flush asks two or three times. */
static inline size_t dx__session_pending(dx__session *s, const uint8_t **out) {
  dx__session_out *o = s->out;
  *out = o ? o->data + o->off : NULL;
  return o ? o->len - o->off : 0;
}
/* Marks n pending bytes as written. Once all are, the output block is
 * freed: an idle session holds none. */
void dx__session_consumed(dx__session *s, size_t n);

/* An owner of many sessions that share one allocator on one thread (a
 * loop's connections) can keep one emptied output block in a slot of its
 * own and lend it to whichever session reads next: a read and its replies
 * then cost no allocation and no free, and the first reply of a read goes
 * inline (dx__session_send_small) like the others. The slot holds NULL or
 * a block of the first size that no session holds; its owner frees what
 * is left in it with dx__session_out_free. */

/* Gives the block in *spare, if any, to a session that holds none (it is
 * then the session's own: queued into, grown, freed with the session like
 * any other) and empties the slot. Does nothing when the session holds a
 * block. Inline: once per read. */
static inline void dx__session_out_lend(dx__session *s, void **spare) {
  if (s->out || !*spare) return;
  s->out = (dx__session_out *)*spare;
  *spare = NULL;
}
/* dx__session_out_return's work once the block is known to be empty. */
void dx__session_out_take_empty(dx__session *s, void **spare);
/* When the session's block holds nothing waiting, takes it from the
 * session: into *spare when the slot is empty and the block is of the
 * first size (one that grew is not kept), otherwise freed. Leaves a block
 * that holds output. Inline: once per read. */
static inline void dx__session_out_return(dx__session *s, void **spare) {
  if (s->out && s->out->off >= s->out->len) dx__session_out_take_empty(s, spare);
}
/* dx__session_consumed, except that a block emptied by it goes back as
 * dx__session_out_return says instead of being freed. */
void dx__session_consumed_to(dx__session *s, size_t n, void **spare);
/* Frees a block from a spare slot (NULL accepted) through the allocator
 * of `ops`, which must be the one its sessions shared. */
void dx__session_out_free(const dx__session_ops *ops, void *block);

/* DX__S_OPEN, DX__S_CLOSING (a close was sent or received) or DX__S_CLOSED
 * (both were). Inline: every send asks. */
static inline int dx__session_state(const dx__session *s) {
  int both = DX__SF_CLOSE_SENT | DX__SF_CLOSE_RECEIVED;
  if ((s->flags & both) == both) return DX__S_CLOSED;
  if (s->flags & (both | DX__SF_FAILED)) return DX__S_CLOSING;
  return DX__S_OPEN;
}
/* Bytes queued and not yet consumed: what dx__session_pending() would
 * return, without handing them out. Inline: every send asks. */
static inline size_t dx__session_out_bytes(const dx__session *s) {
  return s->out ? s->out->len - s->out->off : 0;
}
/* 1 when permessage-deflate was negotiated (dx__session_set_pmd). Inline:
 * every send asks. */
static inline int dx__session_has_pmd(const dx__session *s) { return s->pmd != NULL; }
/* The window permessage-deflate agreed for what we send (8-15), 0 when it
 * was not negotiated. Messages compressed alone with that window (no
 * reference to earlier ones) suit this session: see
 * dx__session_pmd_forget. */
int dx__session_pmd_window(const dx__session *s);
/* A message compressed elsewhere was queued: our compressor's next message
 * must not refer to what came before it (a no-op without
 * permessage-deflate). */
void dx__session_pmd_forget(dx__session *s);
/* 1 when we sent a close frame / received one. */
int dx__session_close_sent(const dx__session *s);
int dx__session_close_received(const dx__session *s);
/* The code in the close frame we sent (0 when none or none sent), and the
 * reason dx__session_close sent with it (NUL-terminated; "" when none, or
 * when the session failed the connection: see dx__session_fail_reason). */
int dx__session_sent_code(const dx__session *s);
const char *dx__session_sent_reason(const dx__session *s);
/* The received close code (1005 if none) and its reason (NUL-terminated). */
int dx__session_received_code(const dx__session *s);
const char *dx__session_received_reason(const dx__session *s);

/* The reason text the session sent when it failed the connection
 * ("protocol error", "invalid UTF-8", "invalid compressed data", "message
 * too big", "out of memory"); "" when it did not fail it. */
const char *dx__session_fail_reason(const dx__session *s);

/* 1 when `code` may appear in a close frame (RFC 6455 §7.4). */
int dx__close_code_valid(int code);
#endif
