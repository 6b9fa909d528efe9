/* The load generator's WebSocket layer: the upgrade request and the check
 * of its response (src/proto/handshake.h), masked frames out and frames in
 * (src/proto/frame.h), permessage-deflate (src/proto/deflate.h). With
 * cfg->raw, plain TCP: a message is cfg->size bytes each way. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_engine.h"
#include "duplex.h" /* DX_E* */

int bench_ws_init(bench_ctx *b) {
  const bench_config *cfg = b->cfg;
  uint8_t raw[16];
  for (int i = 0; i < 16; i += 4) {
    uint32_t r = bench_rand(b);
    memcpy(raw + i, &r, 4);
  }
  /* One key for every connection: a nonce per connection only matters to
   * intermediaries that cache, and the server must compute the accept
   * value each time either way, which is what is checked. */
  dx__ws_make_key(raw, b->key);
  dx__ws_accept_key(b->key, strlen(b->key), b->accept);
  /* Our offer is the codec's own: permessage-deflate;
   * client_max_window_bits, plus both no_context_takeover parameters when
   * asked. */
  dx__pmd_config_defaults(&b->pmd_cfg);
  b->pmd_cfg.enabled = cfg->deflate;
  b->pmd_cfg.server_no_context_takeover = cfg->no_takeover;
  b->pmd_cfg.client_no_context_takeover = cfg->no_takeover;
  b->pmd_cfg.level = (int8_t)cfg->zlevel; /* our compressor only */
  char offer[DX__PMD_HEADER_MAX] = "";
  if (cfg->deflate && !dx__pmd_client_offer(&b->pmd_cfg, offer, sizeof offer)) {
    bench_fatal(b, "cannot write the permessage-deflate offer");
    return -1;
  }
  size_t cap = strlen(cfg->host_header) + strlen(cfg->path) + sizeof offer + 256;
  if (!(b->req = malloc(cap))) {
    bench_fatal(b, "out of memory");
    return -1;
  }
  b->req_len = dx__ws_build_request(b->req, cap, cfg->host_header, cfg->path, b->key,
                                    NULL, offer);
  if (!b->req_len) {
    bench_fatal(b, "cannot build the upgrade request (a path of visible ASCII "
                   "only, a host without control bytes)");
    return -1;
  }
  return 0;
}

void bench_ws_begin(bench_conn *c) {
  bench_ctx *b = c->b;
  if (b->cfg->raw) {
    if (b->cfg->mode == BENCH_HANDSHAKE) {
      bench_queue_bytes(c, b->req, b->req_len); /* echoed back, then we close */
      c->state = BC_OPEN;
      c->deadline = bench_now_ns() + b->timeout_ns;
    } else {
      bench_on_open(c);
    }
    bench_flush(c);
    return;
  }
  c->state = BC_UPGRADING;
  if (!c->hs && !(c->hs = malloc(BENCH_HS_MAX))) {
    bench_fatal(b, "out of memory");
    return;
  }
  bench_queue_bytes(c, b->req, b->req_len);
  bench_flush(c);
}

/* Queues one masked frame (client frames must be masked, RFC 6455 §5.3).
 * rsv is DX__RSV1 for a compressed message, else 0. */
static void queue_frame(bench_conn *c, unsigned opcode, unsigned rsv,
                        const uint8_t *data, size_t len) {
  uint32_t k = bench_rand(c->b);
  uint8_t key[4];
  memcpy(key, &k, 4);
  if (bench_out_reserve(c, DX__FRAME_MAX_HEADER + len) != 0) return;
  uint8_t *p = c->out + c->tail;
  size_t h = dx__frame_write_header(p, 1, rsv, opcode, key, len);
  dx__mask_copy(p + h, data, len, key, 0);
  c->tail += h + len;
}

void bench_queue_close(bench_conn *c) {
  static const uint8_t code[2] = {1000 >> 8, 1000 & 0xFF};
  queue_frame(c, DX__OP_CLOSE, 0, code, 2);
}

/* Queues the next message (the next variant in this connection's rotation)
 * and stamps its send time. With permessage-deflate every message is
 * compressed here: with context takeover its bytes depend on what this
 * connection sent before, so they cannot be prepared ahead. */
void bench_queue_msg(bench_conn *c) {
  bench_ctx *b = c->b;
  const bench_config *cfg = b->cfg;
  unsigned v = c->next_var;
  c->next_var = (c->next_var + 1) % b->npayload;
  const uint8_t *msg = b->payload[v];
  if (cfg->mode == BENCH_FANOUT) { /* message n says n */
    memcpy(b->fan_msg, msg, cfg->size);
    bench_seq_write(b->fan_msg, b->sent);
    msg = b->fan_msg;
  }
  if (cfg->raw) {
    bench_queue_bytes(c, msg, cfg->size);
  } else {
    unsigned op = cfg->binary ? DX__OP_BINARY : DX__OP_TEXT;
    size_t wire = cfg->size;
    if (c->pmd) {
      const uint8_t *z;
      if (dx__pmd_compress(c->pmd, msg, cfg->size, &z, &wire) != 0) {
        bench_fatal(b, "compressing a message failed: out of memory");
        return;
      }
      queue_frame(c, op, DX__RSV1, z, wire);
    } else {
      queue_frame(c, op, 0, msg, cfg->size);
    }
    if (b->measuring) {
      b->tx_plain += cfg->size;
      b->tx_wire += wire;
    }
  }
  unsigned slot = (c->ring_head + c->ring_count) % cfg->inflight;
  c->sent[slot] = bench_msg_stamp(b); /* after compressing: just before the send() */
  c->var[slot] = (uint8_t)v;
  c->ring_count++;
  b->in_flight++;
  b->sent++;
}

/* Inflated echo bytes arrive here, to be checked like uncompressed ones. */
static int inflate_sink(void *ud, const uint8_t *p, size_t n) {
  bench_conn *c = ud;
  const bench_config *cfg = c->b->cfg;
  if (c->msg_len + n > cfg->size) return 1;
  if (cfg->verify && memcmp(p, c->b->payload[c->msg_var] + c->msg_len, n)) return 2;
  c->msg_len += n;
  return 0;
}

static const char *inflate_error(int rc) {
  return rc == 2 ? "echo differs from the message sent"
         : rc == 1 || rc == DX_ETOOBIG ? "echo is longer than the message sent"
                                       : "echo cannot be inflated";
}

/* A complete control frame. Returns -1 when the connection is gone. */
static int on_control(bench_conn *c) {
  bench_ctx *b = c->b;
  switch (c->frame_op) {
    case DX__OP_PING:
      queue_frame(c, DX__OP_PONG, 0, c->ctl, c->ctl_len);
      return 0;
    case DX__OP_PONG:
      return 0;
    default: /* DX__OP_CLOSE */
      if (c->state == BC_OPEN) {
        if (!b->stopping) {
          unsigned code = c->ctl_len >= 2 ? (unsigned)(c->ctl[0] << 8 | c->ctl[1]) : 1005;
          bench_on_server_close(c, code);
          return -1;
        }
        bench_queue_close(c); /* answer it */
      }
      c->state = BC_WAIT_EOF;
      c->deadline = bench_now_ns() + 1000000000u;
      return 0;
  }
}

/* The first frame of a data message: is it an echo to check? An echo is
 * due while one of ours is in flight; an echo server sends nothing else.
 * Anything else (a server greeting an idle or closing connection) is read
 * and dropped. Returns -1 when the connection is gone. */
static int start_message(bench_conn *c, const dx__frame_header *h) {
  bench_ctx *b = c->b;
  if (c->in_msg) {
    bench_conn_fail(c, "protocol: new message inside a fragmented one");
    return -1;
  }
  c->in_msg = 1;
  c->msg_op = h->opcode;
  c->msg_len = c->msg_wire = 0;
  c->msg_z = h->rsv != 0;
  c->msg_var = c->ring_count ? c->var[c->ring_head] : 0;
  if (c->state == BC_OPEN && !c->ring_count && b->cfg->mode == BENCH_ECHO && !b->stopping) {
    bench_conn_fail(c, "unexpected message: none of ours was in flight");
    return -1;
  }
  return 0;
}

/* Whether the payload of the current message is checked: as an echo, or
 * as a subscriber's next delivery. */
static bool checking(const bench_conn *c) {
  if (c->b->cfg->mode == BENCH_FANOUT) return c->state == BC_OPEN && c != c->b->pub;
  return c->state == BC_OPEN && c->ring_count > 0;
}

/* Whether p[0..take) is what the subscriber's next message holds at
 * c->msg_len: its number (always checked: order, loss, duplicates), then
 * the payload (unless --no-verify). */
static bool fan_matches(const bench_conn *c, const uint8_t *p, size_t take) {
  size_t off = c->msg_len;
  if (off < BENCH_SEQ_LEN) {
    uint8_t seq[BENCH_SEQ_LEN];
    bench_seq_write(seq, c->fan_next);
    size_t n = take < BENCH_SEQ_LEN - off ? take : BENCH_SEQ_LEN - off;
    if (memcmp(p, seq + off, n)) return false;
    p += n;
    off += n;
    take -= n;
  }
  return !take || !c->b->cfg->verify || !memcmp(p, c->b->payload[0] + off, take);
}

/* Whether p[0..take) is what the current message holds at c->msg_len. */
static bool matches(const bench_conn *c, const uint8_t *p, size_t take) {
  if (c->b->cfg->mode == BENCH_FANOUT) return fan_matches(c, p, take);
  return !memcmp(p, c->b->payload[c->msg_var] + c->msg_len, take);
}

/* Payload bytes of the current data frame. Returns -1 when gone. */
static int data_bytes(bench_conn *c, const uint8_t *p, size_t take) {
  const bench_config *cfg = c->b->cfg;
  if (!checking(c)) return 0;
  c->msg_wire += take;
  if (c->msg_z) {
    int rc = dx__pmd_decompress(c->pmd, p, take, 0, cfg->size, inflate_sink, c);
    if (rc) {
      bench_conn_fail(c, inflate_error(rc));
      return -1;
    }
    return 0;
  }
  if (c->msg_len + take > cfg->size) {
    bench_conn_fail(c, "echo is longer than the message sent");
    return -1;
  }
  if ((cfg->verify || cfg->mode == BENCH_FANOUT) && !matches(c, p, take)) {
    bench_conn_fail(c, cfg->mode == BENCH_FANOUT
                           ? "delivery differs from the next message published"
                           : "echo differs from the message sent");
    return -1;
  }
  c->msg_len += take;
  return 0;
}

/* The last frame of a data message is complete. Returns -1 when gone. */
static int end_message(bench_conn *c) {
  const bench_config *cfg = c->b->cfg;
  c->in_msg = 0;
  if (!checking(c)) return 0;
  if (c->msg_z) { /* the tail: 00 00 ff ff */
    int rc = dx__pmd_decompress(c->pmd, NULL, 0, 1, cfg->size, inflate_sink, c);
    if (rc) {
      bench_conn_fail(c, inflate_error(rc));
      return -1;
    }
  }
  unsigned want = cfg->binary ? DX__OP_BINARY : DX__OP_TEXT;
  if (c->msg_op != want || c->msg_len != cfg->size) {
    bench_conn_fail(c, c->msg_op != want ? "echo has the wrong type"
                                         : "echo is shorter than the message sent");
    return -1;
  }
  if (cfg->mode == BENCH_FANOUT) bench_on_delivery(c);
  else bench_on_echo(c);
  return c->fd < 0 ? -1 : 0;
}

/* A frame header arrived. Returns -1 when the connection is gone. */
static int start_frame(bench_conn *c, const dx__frame_header *h) {
  /* RSV1 marks a compressed message: only on its first frame, and only
   * once permessage-deflate was agreed (RFC 7692 §6). */
  int z_ok = c->pmd && h->rsv == DX__RSV1 && !dx__opcode_is_control(h->opcode) &&
             h->opcode != DX__OP_CONT;
  if (h->masked || (h->rsv && !z_ok)) {
    bench_conn_fail(c, "protocol: server frame masked or with unexpected RSV bits");
    return -1;
  }
  c->frame_op = h->opcode;
  c->frame_fin = h->fin;
  c->frame_left = h->len;
  c->in_frame = 1;
  if (dx__opcode_is_control(h->opcode)) {
    c->ctl_len = 0;
    return 0;
  }
  if (h->opcode == DX__OP_CONT) {
    if (c->in_msg) return 0;
    bench_conn_fail(c, "protocol: continuation frame outside a message");
    return -1;
  }
  return start_message(c, h);
}

static int ws_consume(bench_conn *c, const uint8_t *p, size_t len) {
  while (len) {
    if (c->state == BC_WAIT_EOF) return 0; /* nothing may follow a close */
    if (!c->in_frame) {
      size_t take = sizeof c->hdr - c->hdr_len;
      if (take > len) take = len;
      memcpy(c->hdr + c->hdr_len, p, take);
      dx__frame_header h;
      int r = dx__frame_parse_header(c->hdr, c->hdr_len + take, &h);
      if (r < 0) {
        bench_conn_fail(c, "protocol: malformed frame header");
        return -1;
      }
      if (r == 0) { /* need more bytes */
        c->hdr_len = (uint8_t)(c->hdr_len + take);
        return 0;
      }
      size_t used = (size_t)r - c->hdr_len;
      p += used;
      len -= used;
      c->hdr_len = 0;
      if (start_frame(c, &h) < 0) return -1;
    } else {
      size_t take = c->frame_left < len ? (size_t)c->frame_left : len;
      if (dx__opcode_is_control(c->frame_op)) {
        memcpy(c->ctl + c->ctl_len, p, take);
        c->ctl_len = (uint8_t)(c->ctl_len + take);
      } else if (data_bytes(c, p, take) < 0) {
        return -1;
      }
      c->frame_left -= take;
      p += take;
      len -= take;
    }
    if (c->in_frame && !c->frame_left) { /* frame complete */
      c->in_frame = 0;
      if (dx__opcode_is_control(c->frame_op)) {
        if (on_control(c) < 0) return -1;
      } else if (c->frame_fin && end_message(c) < 0) {
        return -1;
      }
    }
  }
  return 0;
}

static int raw_consume(bench_conn *c, const uint8_t *p, size_t len) {
  bench_ctx *b = c->b;
  size_t size = b->cfg->size;
  if (b->cfg->mode == BENCH_HANDSHAKE) {
    c->raw_got += len;
    if (c->raw_got > b->req_len) {
      bench_conn_fail(c, "more bytes echoed than sent");
      return -1;
    }
    if (c->raw_got == b->req_len) { /* reply complete: the server closes */
      c->state = BC_WAIT_EOF;
      c->deadline = bench_now_ns() + 1000000000u;
    }
    return 0;
  }
  if (c->state != BC_OPEN) return 0; /* draining after our FIN */
  while (len) {
    size_t take = size - c->raw_got;
    if (take > len) take = len;
    const uint8_t *want = b->payload[c->ring_count ? c->var[c->ring_head] : 0];
    if (b->cfg->verify && memcmp(p, want + c->raw_got, take)) {
      bench_conn_fail(c, "echo differs from the bytes sent");
      return -1;
    }
    c->raw_got += take;
    p += take;
    len -= take;
    if (c->raw_got == size) {
      c->raw_got = 0;
      bench_on_echo(c);
      if (c->fd < 0) return -1;
    }
  }
  return 0;
}

/* The server's Sec-WebSocket-Extensions against our offer: with
 * cfg->deflate the server must have accepted permessage-deflate (and no
 * context takeover, when that was asked), or the run would measure
 * something else. Creates the connection's codec. 0, or -1 with the
 * reason in why. */
static int check_extensions(bench_conn *c, const dx__http_response *r, char *why,
                            size_t why_cap) {
  bench_ctx *b = c->b;
  const char *vals[16];
  size_t lens[16], n = 0;
  const dx__http_header *h = r->headers, *end = h + r->num_headers;
  /* Every Sec-WebSocket-Extensions line: each find starts past the last. */
  while (n < 16 && (h = dx__http_find(h, (size_t)(end - h), "Sec-WebSocket-Extensions"))) {
    vals[n] = h->value;
    lens[n++] = h->value_len;
    h++;
  }
  dx__pmd_params params;
  int v = dx__pmd_client_verify(&b->pmd_cfg, vals, lens, n, &params, why, why_cap);
  if (v < 0) return -1;
  if (v == 0 && b->cfg->deflate) {
    snprintf(why, why_cap, "server declined permessage-deflate");
    return -1;
  }
  if (v == 1 && b->cfg->no_takeover && !params.server_no_context_takeover) {
    snprintf(why, why_cap, "server kept server context takeover");
    return -1;
  }
  if (v == 1 && !(c->pmd = dx__pmd_new(&params, &b->pmd_cfg, 0, &dx__alloc_std))) {
    bench_fatal(b, "out of memory");
    return -1;
  }
  return 0;
}

/* The usual answer, checked without hashing: dx__ws_check_response
 * computes the accept value (SHA-1 through EVP) on every call, about 5 %
 * of the client's CPU in handshake mode, and ours is the same for every
 * connection. Anything else goes to dx__ws_check_response for its reason.
 * (Laxer in one way: a second Sec-WebSocket-Accept is not looked for.) */
static bool upgrade_ok(const bench_ctx *b, const dx__http_response *r) {
  const dx__http_header *h = r->headers;
  size_t n = r->num_headers;
  const dx__http_header *up = dx__http_find(h, n, "Upgrade");
  const dx__http_header *conn = dx__http_find(h, n, "Connection");
  const dx__http_header *acc = dx__http_find(h, n, "Sec-WebSocket-Accept");
  return r->status == 101 && up && conn && acc &&
         dx__http_has_token(up->value, up->value_len, "websocket") &&
         dx__http_has_token(conn->value, conn->value_len, "upgrade") &&
         acc->value_len == DX__WS_ACCEPT_LEN &&
         memcmp(acc->value, b->accept, DX__WS_ACCEPT_LEN) == 0;
}

/* The upgrade response head c->hs[0..head_len) is complete: 0 when it
 * accepts the upgrade, else the connection is failed and -1 returned. */
static int check_response(bench_conn *c, size_t head_len) {
  dx__http_response r;
  char why[160], kind[200];
  if (dx__http_parse_response(c->hs, head_len, &r) != 0) {
    bench_conn_fail(c, "handshake: malformed HTTP response");
    return -1;
  }
  if ((upgrade_ok(c->b, &r) || dx__ws_check_response(&r, c->b->key, why, sizeof why) == 0) &&
      check_extensions(c, &r, why, sizeof why) == 0)
    return 0;
  if (c->b->failed) return -1; /* out of memory */
  /* A refusal is named by its status ("server answered 404 Not Found"). */
  snprintf(kind, sizeof kind, "handshake: %s", why);
  bench_conn_fail(c, kind);
  return -1;
}

/* Bytes of the upgrade response. Returns how many belong to it (the rest
 * are frames), 0 when more are needed, -1 when the connection is gone. */
static long upgrade_bytes(bench_conn *c, const uint8_t *p, size_t len) {
  size_t room = BENCH_HS_MAX - c->hs_len;
  size_t take = len < room ? len : room;
  memcpy(c->hs + c->hs_len, p, take);
  size_t before = c->hs_len;
  c->hs_len += take;
  size_t head = dx__http_head_end(c->hs, c->hs_len, before);
  if (!head) {
    if (c->hs_len < BENCH_HS_MAX) return 0;
    bench_conn_fail(c, "handshake: response head over 4 KiB");
    return -1;
  }
  if (check_response(c, head) < 0) return -1;
  return (long)(head - before);
}

int bench_consume(bench_conn *c, const uint8_t *p, size_t len) {
  if (c->state == BC_UPGRADING) {
    long used = upgrade_bytes(c, p, len);
    if (used <= 0) return (int)used;
    if (c->b->cfg->mode == BENCH_IDLE) { /* thousands of these: give the memory back */
      free(c->hs);
      c->hs = NULL;
    }
    bench_on_open(c);
    if (c->fd < 0) return -1;
    p += used;
    len -= (size_t)used;
    if (!len) return 0;
  }
  return c->b->cfg->raw ? raw_consume(c, p, len) : ws_consume(c, p, len);
}
