/* The WebSocket session state machine (RFC 6455 §5, §7): frames in,
 * messages and control events out, frames queued for sending. */
#include "proto/session.h"

#include <string.h>

#include "duplex_codes.h"
#include "proto/deflate.h"

void dx__session_init(dx__session *s, const dx__session_config *cfg,
                      const dx__session_ops *ops) {
  memset(s, 0, sizeof *s);
  s->cfg = cfg;
  s->ops = ops;
}

void dx__session_deinit(dx__session *s) {
  /* Zeroed and never initialised (its owner failed before, e.g. at TLS
   * setup): it holds nothing, and has no allocator to name. */
  if (!s->ops) return;
  dx__pmd_free(s->pmd);
  s->pmd = NULL;
  if (s->rx) {
    dx__mem_free(&s->ops->alloc, s->rx->msg);
    dx__mem_free(&s->ops->alloc, s->rx);
  }
  dx__mem_free(&s->ops->alloc, s->out);
  if (s->rare) {
    dx__mem_free(&s->ops->alloc, s->rare->ctl);
    dx__mem_free(&s->ops->alloc, s->rare->recv_reason);
    dx__mem_free(&s->ops->alloc, s->rare->sent_reason);
    dx__mem_free(&s->ops->alloc, s->rare);
  }
  s->rx = NULL;
  s->rare = NULL;
  s->out = NULL;
}

dx__session *dx__session_new(const dx__session_config *cfg, const dx__session_ops *ops) {
  dx__session *s = dx__mem_alloc(&ops->alloc, sizeof *s);
  if (s) dx__session_init(s, cfg, ops);
  return s;
}

void dx__session_free(dx__session *s) {
  if (!s) return;
  const dx__alloc *a = &s->ops->alloc;
  dx__session_deinit(s);
  dx__mem_free(a, s);
}

int dx__close_code_valid(int code) {
  /* §7.4.1: 1004-1006 and 1015 are reserved, never on the wire; 1000-2999
   * is the protocol's range, of which 1000-1014 are assigned. */
  if (code >= 1000 && code <= 1014) return code != 1004 && code != 1005 && code != 1006;
  return code >= 3000 && code <= 4999;
}

/* ---- output ------------------------------------------------------------ */

/* The first output block: its header and this much room make 1032 bytes,
 * the largest request glibc's per-thread cache serves (see out_grow). */
enum { OUT_FIRST = 1032 - sizeof(dx__session_out) };

/* out_reserve's slow path: allocates, reclaims or grows the block. */
static __attribute__((noinline)) uint8_t *out_grow(dx__session *s, size_t n) {
  dx__session_out *o = s->out;
  if (o && o->off > 0) {
    /* Reclaim the written prefix before growing. */
    memmove(o->data, o->data + o->off, o->len - o->off);
    o->len -= o->off;
    o->off = 0;
  }
  if (!o || o->len + n > o->cap) {
    /* About 1 KiB first: a read event's replies to a pipelining peer (16
     * small messages) fit without two reallocs per flush; the buffer is
     * freed once written, so an idle connection still holds none. A block
     * is allocated and freed on almost every read, so its first size is
     * what glibc serves from its per-thread cache (requests of up to 1032
     * bytes): with 1024 bytes of room the 1048-byte block took the general
     * path, 330 instructions for the pair instead of about 100. */
    size_t len = o ? o->len : 0;
    size_t cap = o ? o->cap * 2 : OUT_FIRST;
    if (cap < len + n) cap = len + n;
    if (cap > SIZE_MAX - sizeof *o) return NULL;
    dx__session_out *p = s->ops->alloc.realloc(s->ops->alloc.ud, o, sizeof *o + cap);
    if (!p) return NULL;
    if (!o) p->off = p->len = 0;
    p->cap = cap;
    s->out = o = p;
  }
  return o->data + o->len;
}

/* Makes room for n more output bytes; returns where they go or NULL. The
 * room is usually there already (a send while others wait to be written):
 * one test, and the rest out of line. */
static inline uint8_t *out_reserve(dx__session *s, size_t n) {
  dx__session_out *o = s->out;
  if (o && n <= o->cap - o->len) return o->data + o->len;
  return out_grow(s, n);
}

/* Queues one frame; masked with a fresh key in the client role. */
static int queue_frame_rsv(dx__session *s, unsigned opcode, unsigned rsv,
                           const uint8_t *data, size_t len) {
  int client = s->cfg->role == DX__ROLE_CLIENT;
  uint8_t *p = out_reserve(s, DX__FRAME_MAX_HEADER + len);
  if (!p) return DX_ENOMEM;
  uint8_t key[4];
  if (client) s->cfg->random(s->cfg->random_ud, key, 4);
  size_t h = dx__frame_write_header(p, 1, rsv, opcode, client ? key : NULL, len);
  if (client)
    dx__mask_copy(p + h, data, len, key, 0);
  else if (len)
    memcpy(p + h, data, len);
  s->out->len += h + len;
  return 0;
}

static int queue_frame(dx__session *s, unsigned opcode, const uint8_t *data,
                       size_t len) {
  return queue_frame_rsv(s, opcode, 0, data, len);
}

void dx__session_set_pmd(dx__session *s, dx__pmd *pmd) {
  dx__pmd_free(s->pmd);
  s->pmd = pmd;
}

int dx__session_queue_raw(dx__session *s, const void *data, size_t len) {
  uint8_t *p = out_reserve(s, len);
  if (!p) return DX_ENOMEM;
  memcpy(p, data, len);
  s->out->len += len;
  return 0;
}

void dx__session_consumed(dx__session *s, size_t n) {
  dx__session_out *o = s->out;
  if (!o) return;
  o->off += n;
  if (o->off >= o->len) {
    /* Nothing pending: give the buffer back so an idle connection holds no
     * output memory. */
    dx__mem_free(&s->ops->alloc, o);
    s->out = NULL;
  }
}

void dx__session_out_take_empty(dx__session *s, void **spare) {
  dx__session_out *o = s->out;
  s->out = NULL;
  /* One that grew is freed: a slot holds at most the first size, however
   * large a message its last holder sent. */
  if (*spare || o->cap != OUT_FIRST) {
    dx__mem_free(&s->ops->alloc, o);
    return;
  }
  o->off = o->len = 0;
  *spare = o;
}

void dx__session_consumed_to(dx__session *s, size_t n, void **spare) {
  dx__session_out *o = s->out;
  if (!o) return;
  o->off += n;
  dx__session_out_return(s, spare);
}

void dx__session_out_free(const dx__session_ops *ops, void *block) {
  dx__mem_free(&ops->alloc, block);
}

/* ---- state ------------------------------------------------------------- */

int dx__session_pmd_window(const dx__session *s) {
  return s->pmd ? dx__pmd_send_window(s->pmd) : 0;
}

void dx__session_pmd_forget(dx__session *s) { dx__pmd_forget(s->pmd); }

int dx__session_close_sent(const dx__session *s) { return !!(s->flags & DX__SF_CLOSE_SENT); }
int dx__session_close_received(const dx__session *s) { return !!(s->flags & DX__SF_CLOSE_RECEIVED); }
int dx__session_sent_code(const dx__session *s) { return s->sent_code; }
int dx__session_received_code(const dx__session *s) { return s->recv_code; }
const char *dx__session_received_reason(const dx__session *s) {
  return s->rare && s->rare->recv_reason ? s->rare->recv_reason : "";
}
const char *dx__session_sent_reason(const dx__session *s) {
  return s->rare && s->rare->sent_reason ? s->rare->sent_reason : "";
}

/* The session's block of rarely needed state, allocated (zeroed) at the
 * first call; NULL when out of memory. */
static dx__session_rare *rare(dx__session *s) {
  if (!s->rare && (s->rare = dx__mem_alloc(&s->ops->alloc, sizeof *s->rare)))
    *s->rare = (dx__session_rare){0};
  return s->rare;
}

/* ---- sending ----------------------------------------------------------- */

int dx__session_send(dx__session *s, int opcode, const void *data, size_t len) {
  return dx__session_send_ex(s, opcode, data, len, 0);
}

int dx__session_send_ex(dx__session *s, int opcode, const void *data,
                        size_t len, int compress) {
  if (opcode != DX__OP_TEXT && opcode != DX__OP_BINARY) return DX_EINVAL;
  if (dx__session_state(s) != DX__S_OPEN) return DX_ESTATE;
  if (compress && s->pmd) {
    const uint8_t *z;
    size_t zlen;
    int r = dx__pmd_compress(s->pmd, data, len, &z, &zlen);
    if (r) return r;
    /* RFC 7692 §6: RSV1 marks the first (here: only) frame of a
     * compressed message. */
    r = queue_frame_rsv(s, (unsigned)opcode, DX__RSV1, z, zlen);
    dx__pmd_release_output(s->pmd); /* copied into the output queue */
    return r;
  }
  return queue_frame(s, (unsigned)opcode, data, len);
}

int dx__session_control(dx__session *s, int opcode, const void *data, size_t len) {
  if (opcode != DX__OP_PING && opcode != DX__OP_PONG) return DX_EINVAL;
  if (len > 125) return DX_EINVAL;
  if (s->flags & (DX__SF_CLOSE_SENT | DX__SF_FAILED)) return DX_ESTATE;
  return queue_frame(s, (unsigned)opcode, data, len);
}

static int send_close(dx__session *s, int code, const char *reason, size_t rlen) {
  uint8_t buf[125];
  size_t n = 0;
  if (code) {
    buf[0] = (uint8_t)(code >> 8);
    buf[1] = (uint8_t)code;
    if (rlen) memcpy(buf + 2, reason, rlen);
    n = 2 + rlen;
  }
  /* No payload without a code: NULL then, which also tells GCC's -O3
   * (a Release build with DX_WERROR) that the unset buf is never read. */
  int r = queue_frame(s, DX__OP_CLOSE, n ? buf : NULL, n);
  if (r == 0) {
    s->flags |= DX__SF_CLOSE_SENT;
    s->sent_code = (uint16_t)code;
  }
  return r;
}

int dx__session_close(dx__session *s, int code, const char *reason, size_t rlen) {
  if (s->flags & (DX__SF_CLOSE_SENT | DX__SF_FAILED)) return DX_ESTATE;
  if (code == 0 && rlen) return DX_EINVAL;
  if (code != 0 && !dx__close_code_valid(code)) return DX_ECLOSECODE;
  if (rlen > 123) return DX_EINVAL;
  if (rlen && dx__utf8_validate((const uint8_t *)reason, rlen)) return DX_EUTF8;
  /* Kept for the end of the connection, which reports it (the frame itself
   * may be long gone by then). Taken first, so that without memory nothing
   * is sent at all. */
  char *kept = NULL;
  if (rlen) {
    if (!rare(s) || !(kept = dx__mem_alloc(&s->ops->alloc, rlen + 1))) return DX_ENOMEM;
    memcpy(kept, reason, rlen);
    kept[rlen] = '\0';
  }
  int r = send_close(s, code, reason, rlen);
  if (r) {
    dx__mem_free(&s->ops->alloc, kept);
    return r;
  }
  if (kept) s->rare->sent_reason = kept;
  return 0;
}

const char *dx__session_fail_reason(const dx__session *s) {
  switch (s->sent_code) {
    case DX_CLOSE_PROTOCOL_ERROR: return "protocol error";
    case DX_CLOSE_INVALID_DATA:
      return (s->flags & DX__SF_BAD_DEFLATE) ? "invalid compressed data" : "invalid UTF-8";
    /* Two limits end in 1009: name the one to raise. */
    case DX_CLOSE_TOO_BIG: return (s->flags & DX__SF_FRAME_LIMIT) ? "frame too big" : "message too big";
    case DX_CLOSE_INTERNAL: return "out of memory";
    default: return "";
  }
}

/* Fails the connection (§7.1.7): queue a close with `code` if we have not
 * sent one, stop reading, and hand `err` back to the caller. */
static int fail(dx__session *s, int err, int code) {
  if (!(s->flags & DX__SF_CLOSE_SENT)) {
    /* 1007 covers both bad text and a corrupt deflate stream; say which. */
    if (code == DX_CLOSE_INVALID_DATA && err != DX_EUTF8) s->flags |= DX__SF_BAD_DEFLATE;
    s->sent_code = (uint16_t)code;
    const char *r = dx__session_fail_reason(s);
    send_close(s, code, r, strlen(r));
  }
  s->flags |= DX__SF_FAILED;
  if (s->rx) s->rx->in_frame = 0;
  return err;
}

/* ---- receiving --------------------------------------------------------- */

/* Checks a new frame header against the connection's state (the rules that
 * the stateless header parser cannot know). Returns 0 or a fail() result. */
static int on_header(dx__session *s) {
  dx__session_rx *r = s->rx;
  const dx__frame_header *h = &r->fh;
  const dx__session_config *cfg = s->cfg;
  unsigned allowed = cfg->allowed_rsv;
  /* RSV1 means "compressed" only on the first frame of a data message of a
   * connection that negotiated permessage-deflate (RFC 7692 §6.1). */
  if (s->pmd && (h->opcode == DX__OP_TEXT || h->opcode == DX__OP_BINARY)) allowed |= DX__RSV1;
  if (h->rsv & ~allowed) return fail(s, DX_EPROTO, DX_CLOSE_PROTOCOL_ERROR);
  /* §5.1: clients always mask, servers never do. */
  int want_mask = cfg->role == DX__ROLE_SERVER;
  if (h->masked != want_mask) return fail(s, DX_EPROTO, DX_CLOSE_PROTOCOL_ERROR);
  /* Deflate can grow incompressible data (seen: +0.25 % from common
   * encoders), so a compressed frame carrying a message of exactly the limit
   * is let through with room to spare. Its payload is streamed into the
   * inflater, never buffered, and the inflated size is checked exactly. */
  uint64_t max_frame = cfg->max_frame;
  int deflated = s->pmd && ((h->rsv & DX__RSV1) ||
                            (h->opcode == DX__OP_CONT && (s->flags & DX__SF_COMPRESSED)));
  if (deflated) max_frame += max_frame / 8 + 1024;
  if (h->len > max_frame && !dx__opcode_is_control(h->opcode)) {
    s->flags |= DX__SF_FRAME_LIMIT;
    return fail(s, DX_ETOOBIG, DX_CLOSE_TOO_BIG);
  }

  r->discard = 0;
  if (dx__opcode_is_control(h->opcode)) return 0;
  if (h->opcode == DX__OP_CONT) {
    if (!r->msg_opcode) return fail(s, DX_EPROTO, DX_CLOSE_PROTOCOL_ERROR);
  } else {
    if (r->msg_opcode) return fail(s, DX_EPROTO, DX_CLOSE_PROTOCOL_ERROR);
    r->msg_opcode = h->opcode;
    r->msg_len = 0;
    r->utf8 = 0;
    if ((h->rsv & DX__RSV1) && s->pmd)
      s->flags |= DX__SF_COMPRESSED;
    else
      s->flags &= (uint8_t)~DX__SF_COMPRESSED;
  }
  /* Refuse before buffering anything: an oversized message costs us only
   * its header. (A compressed payload is bounded as it inflates instead.) */
  if (!(s->flags & DX__SF_COMPRESSED) && h->len > cfg->max_message - r->msg_len)
    return fail(s, DX_ETOOBIG, DX_CLOSE_TOO_BIG);
  /* §1.4: after sending a close we only wait for the peer's close. */
  if (s->flags & DX__SF_CLOSE_SENT) r->discard = 1;
  return 0;
}

static int on_close_frame(dx__session *s, const uint8_t *p, size_t len) {
  int code = DX_CLOSE_NO_STATUS;
  if (len == 1) return fail(s, DX_EPROTO, DX_CLOSE_PROTOCOL_ERROR);
  if (len >= 2) {
    code = (p[0] << 8) | p[1];
    if (!dx__close_code_valid(code)) return fail(s, DX_EPROTO, DX_CLOSE_PROTOCOL_ERROR);
    if (dx__utf8_validate(p + 2, len - 2)) return fail(s, DX_EUTF8, DX_CLOSE_INVALID_DATA);
  }
  s->flags |= DX__SF_CLOSE_RECEIVED;
  s->recv_code = (uint16_t)code;
  size_t rlen = len > 2 ? len - 2 : 0;
  char *kept = rlen && rare(s) ? dx__mem_alloc(&s->ops->alloc, rlen + 1) : NULL;
  if (kept) {
    memcpy(kept, p + 2, rlen);
    kept[rlen] = '\0';
    s->rare->recv_reason = kept;
  }
  /* Echo the code (§5.5.1) unless we already sent our own close. */
  int echo_failed = !(s->flags & DX__SF_CLOSE_SENT) &&
                    send_close(s, code == DX_CLOSE_NO_STATUS ? 0 : code, NULL, 0) != 0;
  /* The callback gets the reason from the frame itself, so a failed copy
   * above costs only the later dx__session_received_reason(). */
  if (s->ops->cb.on_close) s->ops->cb.on_close(s, code, rlen ? (const char *)p + 2 : "", rlen);
  if (echo_failed) {
    /* No memory for the echo: the session is over all the same, and the
     * owner closes the transport now instead of at the close timeout. */
    s->flags |= DX__SF_FAILED;
    return DX_ENOMEM;
  }
  return 0;
}

static int on_control(dx__session *s, const uint8_t *p, size_t len) {
  dx__session_rx *r = s->rx;
  switch (r->fh.opcode) {
    case DX__OP_PING:
      if (!(s->flags & DX__SF_CLOSE_SENT)) {
        int e = queue_frame(s, DX__OP_PONG, p, len);
        if (e) return fail(s, e, DX_CLOSE_INTERNAL);
      }
      if (s->ops->cb.on_ping) s->ops->cb.on_ping(s, p, len);
      return 0;
    case DX__OP_PONG:
      if (s->ops->cb.on_pong) s->ops->cb.on_pong(s, p, len);
      return 0;
    default:
      return on_close_frame(s, p, len);
  }
}

static int deliver(dx__session *s, uint8_t *p, size_t len) {
  dx__session_rx *r = s->rx;
  int op = r->msg_opcode;
  if (op == DX__OP_TEXT && !dx__utf8_complete(r->utf8))
    return fail(s, DX_EUTF8, DX_CLOSE_INVALID_DATA);
  r->msg_opcode = 0;
  r->msg_len = 0;
  if (s->ops->cb.on_message) s->ops->cb.on_message(s, op, p, len);
  /* The buffer is released after every message: an idle connection holds
   * no reassembly memory, and the next message grows one as its bytes come. */
  dx__mem_free(&s->ops->alloc, r->msg);
  r->msg = NULL;
  r->msg_cap = 0;
  return 0;
}

/* The reassembly buffer's first size: room for the usual fragmented or
 * split message without a second allocation, and small enough that a
 * header announcing megabytes costs no more than this until they come. */
enum { MSG_FIRST = 4096 };

/* Appends to the reassembly buffer, growing it with the bytes that arrived,
 * never with the bytes announced: a header is 2 to 14 bytes, so sizing the
 * buffer from its length would let a peer commit max_message of our memory
 * per connection for a handful of bytes. The buffer doubles (MSG_FIRST
 * first), or takes four times a piece that arrived whole, so it never
 * holds more than four times what arrived (or MSG_FIRST), and a large
 * frame arriving in pieces costs a logarithmic number of reallocations. `end` is where the message is known to end (the announced
 * end of its final frame) or UINT64_MAX: the last doubling stops there, so
 * a message of exactly the announced size ends with no slack. */
static int msg_append(dx__session *s, const uint8_t *p, size_t n, uint64_t end,
                      const uint8_t *mask, uint64_t mask_off) {
  dx__session_rx *r = s->rx;
  if (n > r->msg_cap - r->msg_len) {
    uint64_t need = (uint64_t)r->msg_len + n;
    uint64_t cap = r->msg_cap ? (uint64_t)r->msg_cap * 2 : MSG_FIRST;
    /* A large piece that arrived whole says the rest is flowing: room for
     * four times it saves the reallocations (each a copy, and fresh pages
     * to fault in) that a 1 MiB message arriving in reads of 256 KiB
     * would otherwise cost, still in proportion to what arrived. */
    if (cap < 4 * (uint64_t)n) cap = 4 * (uint64_t)n;
    if (cap > end) cap = end;
    if (cap > s->cfg->max_message) cap = s->cfg->max_message;
    /* The limits were checked (at the header, or by the inflater as it
     * counts), so `need` is within them; never give less than it. */
    if (cap < need) cap = need;
    if (cap != (size_t)cap) return DX_ENOMEM; /* a 32-bit build */
    uint8_t *m = s->ops->alloc.realloc(s->ops->alloc.ud, r->msg, (size_t)cap);
    if (!m) return DX_ENOMEM;
    r->msg = m;
    r->msg_cap = (size_t)cap;
  }
  /* Unmasking while copying reads the payload once instead of twice. (An
   * empty piece may come with no buffer yet: touch nothing.) */
  if (n == 0) return 0;
  if (mask)
    dx__mask_copy(r->msg + r->msg_len, p, n, mask, mask_off);
  else
    memcpy(r->msg + r->msg_len, p, n);
  r->msg_len += n;
  return 0;
}

/* Inflated bytes of a compressed message: validated and reassembled. */
static int inflate_sink(void *ud, const uint8_t *p, size_t n) {
  dx__session *s = ud;
  dx__session_rx *r = s->rx;
  if (r->msg_opcode == DX__OP_TEXT && dx__utf8_feed(&r->utf8, p, n)) return DX_EUTF8;
  /* The inflated size is known only at the end. */
  return msg_append(s, p, n, UINT64_MAX, NULL, 0);
}

static int on_compressed_payload(dx__session *s, uint8_t *p, size_t n, int last) {
  dx__session_rx *r = s->rx;
  int end = last && r->fh.fin;
  /* The limit is for the whole message: the codec counts across calls. */
  int e = dx__pmd_decompress(s->pmd, p, n, end, s->cfg->max_message, inflate_sink, s);
  switch (e) {
    case 0: break;
    case DX_ETOOBIG: return fail(s, e, DX_CLOSE_TOO_BIG);
    case DX_EUTF8: return fail(s, e, DX_CLOSE_INVALID_DATA);
    case DX_ENOMEM: return fail(s, e, DX_CLOSE_INTERNAL);
    default: return fail(s, DX_EPROTO, DX_CLOSE_INVALID_DATA); /* corrupt stream */
  }
  if (!end) return 0;
  /* Always hand out a valid pointer, even for an empty message. */
  return deliver(s, r->msg ? r->msg : p, r->msg_len);
}

/* Consumes payload bytes p[0..n) of the current frame, still masked when
 * the frame is: each path unmasks where it is cheapest (in place, or while
 * copying into the reassembly buffer). */
static int on_payload(dx__session *s, uint8_t *p, size_t n) {
  dx__session_rx *r = s->rx;
  const dx__frame_header *h = &r->fh;
  int whole = r->frame_got == 0 && n == h->len; /* the frame is all here */
  int last = r->frame_got + n == h->len;
  const uint8_t *mask = h->masked ? h->mask : NULL;

  if (r->discard && !dx__opcode_is_control(h->opcode)) {
    /* Dropped, but the message structure still counts: a later frame must
     * be judged against it. */
    if (last && h->fin) r->msg_opcode = 0;
    return 0;
  }
  /* Fast path: a whole unfragmented message is delivered where it lies. */
  int in_place = whole && h->fin && r->msg_len == 0 && !(s->flags & DX__SF_COMPRESSED);
  if (mask && (in_place || dx__opcode_is_control(h->opcode) || (s->flags & DX__SF_COMPRESSED)))
    dx__mask(p, n, mask, r->frame_got);
  if (dx__opcode_is_control(h->opcode)) {
    if (whole) return on_control(s, p, n);
    dx__session_rare *rs = rare(s);
    if (!rs || (!rs->ctl && !(rs->ctl = dx__mem_alloc(&s->ops->alloc, 125))))
      return fail(s, DX_ENOMEM, DX_CLOSE_INTERNAL);
    memcpy(rs->ctl + r->frame_got, p, n);
    if (!last) return 0;
    /* The block stays put (never reallocated), so rs is still valid after
     * on_control, which may store the close reason in it. */
    int e = on_control(s, rs->ctl, (size_t)h->len);
    dx__mem_free(&s->ops->alloc, rs->ctl);
    rs->ctl = NULL;
    return e;
  }
  if (s->flags & DX__SF_COMPRESSED) return on_compressed_payload(s, p, n, last);
  if (in_place) {
    if (r->msg_opcode == DX__OP_TEXT && dx__utf8_feed(&r->utf8, p, n))
      return fail(s, DX_EUTF8, DX_CLOSE_INVALID_DATA);
    return deliver(s, p, n);
  }
  size_t old = r->msg_len;
  /* The final frame says where the message ends; an earlier one does not. */
  uint64_t end = h->fin ? r->msg_len + (h->len - r->frame_got) : UINT64_MAX;
  if (msg_append(s, p, n, end, mask, r->frame_got))
    return fail(s, DX_ENOMEM, DX_CLOSE_INTERNAL);
  if (n && r->msg_opcode == DX__OP_TEXT && dx__utf8_feed(&r->utf8, r->msg + old, n))
    return fail(s, DX_EUTF8, DX_CLOSE_INVALID_DATA);
  /* An empty message never allocated a buffer; hand out a valid pointer. */
  if (last && h->fin) return deliver(s, r->msg ? r->msg : p, r->msg_len);
  return 0;
}

/* Reads a frame header, from `in` directly when it holds a whole one, else
 * through r->hdr. Returns input bytes used, or a negative code. */
static ssize_t read_header(dx__session *s, const uint8_t *in, size_t len) {
  dx__session_rx *r = s->rx;
  if (r->hdr_len == 0) {
    int k = dx__frame_parse_header(in, len, &r->fh);
    if (k < 0) return fail(s, k, DX_CLOSE_PROTOCOL_ERROR);
    if (k > 0) return k;
  }
  size_t old = r->hdr_len;
  size_t take = sizeof r->hdr - old;
  if (take > len) take = len;
  memcpy(r->hdr + old, in, take);
  int k = dx__frame_parse_header(r->hdr, old + take, &r->fh);
  if (k < 0) return fail(s, k, DX_CLOSE_PROTOCOL_ERROR);
  if (k == 0) {
    r->hdr_len = (uint8_t)(old + take);
    return (ssize_t)take;
  }
  r->hdr_len = 0;
  return (ssize_t)((size_t)k - old);
}

/* The common case, taken without the general frame machinery and with
 * no state kept between calls: a whole frame of at most 65,535 bytes that
 * is a complete text or binary message (FIN set, no RSV bit, the role's
 * masking), with no frame or message under way (s->rx NULL), nothing sent
 * or received that changes the rules (flags == 0), and the whole of it in
 * `in`. Returns the bytes it consumed, 0 when the general path must take
 * the frame (including every frame it would fail), or a negative fail()
 * result for bad text. The general path is the reference: the fuzzers
 * feed each input whole (here) and split (there) and compare the events. */
static inline __attribute__((always_inline)) ssize_t whole_message(dx__session *s, uint8_t *in,
                                                                   size_t len) {
  unsigned b0 = in[0], b1 = in[1];
  if (b0 != (0x80 | DX__OP_TEXT) && b0 != (0x80 | DX__OP_BINARY)) return 0;
  size_t n = b1 & 0x7F;
  unsigned masked = b1 >> 7;
  if (masked != (s->cfg->role == DX__ROLE_SERVER)) return 0;
  size_t h = masked ? 6 : 2;
  if (n > 125) {
    /* A 16-bit length; a 64-bit one (127) is for the general path. */
    if (n == 127 || len < 4) return 0;
    n = (size_t)in[2] << 8 | in[3];
    h += 2;
  }
  if (len < h + n || n > s->cfg->max_frame || n > s->cfg->max_message) return 0;
  uint8_t *p = in + h;
  /* Up to 125 bytes, unmasked and tested for ASCII in one pass, and only
   * text with a high bit somewhere pays for the exact UTF-8 check; longer
   * ones are unmasked in bulk and checked by the validator's own fast
   * path. */
  int text = b0 == (0x80 | DX__OP_TEXT), bad;
  if (n <= 125) {
    int ascii = masked ? !dx__unmask_hibits(p, n, p - 4) : dx__utf8_is_ascii(p, n);
    bad = text && !ascii && dx__utf8_validate_exact(p, n);
  } else {
    if (masked) dx__mask(p, n, p - 4, 0);
    bad = text && dx__utf8_validate(p, n);
  }
  if (bad)
    return fail(s, DX_EUTF8, DX_CLOSE_INVALID_DATA);
  if (s->ops->cb.on_message) s->ops->cb.on_message(s, (int)(b0 & 0xF), p, n);
  return (ssize_t)(h + n);
}

/* Frames through the general path, on the state s->rx points to (a block
 * on dx__session_recv's stack, or one kept from an earlier call). */
static ssize_t recv_frames(dx__session *s, uint8_t *in, size_t len) {
  dx__session_rx *r = s->rx;
  size_t pos = 0;
  while (pos < len) {
    if (s->flags & (DX__SF_FAILED | DX__SF_CLOSE_RECEIVED)) return (ssize_t)len;
    if (!r->in_frame && !r->hdr_len && !r->msg_opcode && !s->flags && len - pos >= 2) {
      ssize_t k = whole_message(s, in + pos, len - pos);
      if (k < 0) return k;
      if (k > 0) {
        pos += (size_t)k;
        continue;
      }
    }
    if (!r->in_frame) {
      ssize_t k = read_header(s, in + pos, len - pos);
      if (k < 0) return k;
      pos += (size_t)k;
      if (r->hdr_len) break; /* header still incomplete */
      int e = on_header(s);
      if (e) return e;
      r->in_frame = 1;
      r->frame_got = 0;
      if (r->fh.len > 0) continue;
    }
    size_t n = len - pos;
    if (n > r->fh.len - r->frame_got) n = (size_t)(r->fh.len - r->frame_got);
    uint8_t *p = in + pos;
    /* Mark the frame done before its events run, so a callback that sends
     * or closes sees a consistent session. */
    uint64_t got = r->frame_got;
    if (got + n == r->fh.len) r->in_frame = 0;
    int e = on_payload(s, p, n);
    r->frame_got = got + n;
    if (e) return e;
    pos += n;
  }
  return (ssize_t)len;
}

/* After recv_frames: a frame or message still under way keeps its state
 * on the heap (copied there from `local` the first time); otherwise the
 * state goes, so that a session between messages holds none. Without
 * memory for the copy the connection fails (1011). Returns `ret`, or
 * DX_ENOMEM. */
static ssize_t settle_rx(dx__session *s, dx__session_rx *local, ssize_t ret) {
  dx__session_rx *r = s->rx;
  int under_way = (r->in_frame || r->hdr_len || r->msg_opcode) &&
                  !(s->flags & (DX__SF_FAILED | DX__SF_CLOSE_RECEIVED));
  if (under_way) {
    if (r != local) return ret;
    dx__session_rx *kept = dx__mem_alloc(&s->ops->alloc, sizeof *kept);
    if (kept) {
      *kept = *local;
      s->rx = kept;
      return ret;
    }
    ret = fail(s, DX_ENOMEM, DX_CLOSE_INTERNAL);
  }
  dx__mem_free(&s->ops->alloc, r->msg);
  if (r != local) dx__mem_free(&s->ops->alloc, r);
  s->rx = NULL;
  return ret;
}

ssize_t dx__session_recv(dx__session *s, uint8_t *in, size_t len) {
  if (s->rx) return settle_rx(s, NULL, recv_frames(s, in, len));
  /* Between messages: whole messages straight from the input, with no
   * state to keep. */
  size_t pos = 0;
  while (!s->flags && len - pos >= 2) {
    ssize_t k = whole_message(s, in + pos, len - pos);
    if (k < 0) return k;
    if (k == 0) break;
    pos += (size_t)k;
  }
  if (pos == len || (s->flags & (DX__SF_FAILED | DX__SF_CLOSE_RECEIVED))) return (ssize_t)len;
  dx__session_rx local = {0};
  s->rx = &local;
  ssize_t ret = recv_frames(s, in + pos, len - pos);
  return settle_rx(s, &local, ret < 0 ? ret : (ssize_t)len);
}
