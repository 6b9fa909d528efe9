/* The sans-IO WebSocket session (src/proto/session.h) in both roles: the
 * RFC 6455 §5.7 frames fed at every split point, every way a peer can break
 * the protocol (with the close code we must queue, read back off the wire),
 * the closing handshake, and allocation failure at every allocation.
 *
 * Frames are built and decoded by hand here, not with frame.c, so a bug
 * there cannot cancel itself out. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "duplex.h"
#include "proto/session.h"

/* ---- recorded events ---------------------------------------------------- */

enum { EV_MSG = 1, EV_PING, EV_PONG, EV_CLOSE };

typedef struct event {
  int kind;
  int arg; /* opcode for EV_MSG, code for EV_CLOSE */
  uint8_t *data;
  size_t len;
} event;

#define MAX_EVENTS 64

/* Counts live blocks and can fail the i-th request (or every request from
 * the i-th on), so every allocation failure path is reachable. */
typedef struct tracker {
  long live;       /* blocks allocated and not freed */
  long requests;   /* allocation/growth requests seen */
  long fail_at;    /* request index to fail, -1 for none */
  int fail_sticky; /* fail every request from fail_at on */
  size_t largest;  /* largest single request */
  size_t bytes;    /* bytes reserved now (the sizes asked for, summed) */
  size_t peak;     /* the most `bytes` ever was */
} tracker;

typedef struct ctx {
  dx__role role;
  dx__session_config cfg; /* this context's own: how a callback finds it */
  dx__session_ops ops;
  tracker t;
  dx__session *s;
  event ev[MAX_EVENTS];
  size_t nev;
  unsigned rnd_seed;
  long rnd_calls;
  /* Behaviour switches for the callbacks. */
  int echo_messages;   /* on_message sends the message back */
  int close_on_message; /* on_message starts the closing handshake */
  size_t base;          /* t.bytes once created: the session struct */
} ctx;

/* Each block carries the size it was asked for in front of it, so the
 * tracker knows how many bytes the session holds at any moment. */
typedef union blk {
  size_t n;
  max_align_t align;
} blk;

static void *track_realloc(void *ud, void *p, size_t n) {
  tracker *t = ud;
  blk *b = p ? (blk *)p - 1 : NULL;
  if (n == 0) {
    if (b) {
      t->bytes -= b->n;
      free(b);
      t->live--;
    }
    return NULL;
  }
  long idx = t->requests++;
  if (t->fail_at >= 0 && (idx == t->fail_at || (t->fail_sticky && idx > t->fail_at)))
    return NULL;
  if (n > t->largest) t->largest = n;
  size_t old = b ? b->n : 0;
  blk *q = realloc(b, sizeof *q + n);
  if (!q) return NULL;
  if (!b) t->live++;
  q->n = n;
  t->bytes = t->bytes - old + n;
  if (t->bytes > t->peak) t->peak = t->bytes;
  return q + 1;
}

static void record(ctx *c, int kind, int arg, const void *data, size_t len) {
  assert_true(c->nev < MAX_EVENTS);
  event *e = &c->ev[c->nev++];
  e->kind = kind;
  e->arg = arg;
  e->len = len;
  e->data = malloc(len + 1);
  assert_non_null(e->data);
  if (len) memcpy(e->data, data, len);
  e->data[len] = 0;
}

/* The context a session belongs to. */
static ctx *ctx_of(dx__session *s) {
  return (ctx *)((char *)dx__session_cfg(s) - offsetof(ctx, cfg));
}

static void cb_message(dx__session *s, int opcode, uint8_t *data, size_t len) {
  ctx *c = ctx_of(s);
  record(c, EV_MSG, opcode, data, len);
  if (c->echo_messages)
    assert_int_equal(dx__session_send(c->s, opcode, data, len), 0);
  if (c->close_on_message)
    assert_int_equal(dx__session_close(c->s, 1000, "done", 4), 0);
}
static void cb_ping(dx__session *s, const uint8_t *data, size_t len) {
  record(ctx_of(s), EV_PING, 0, data, len);
}
static void cb_pong(dx__session *s, const uint8_t *data, size_t len) {
  record(ctx_of(s), EV_PONG, 0, data, len);
}
static void cb_close(dx__session *s, int code, const char *reason, size_t len) {
  /* `reason` is `len` bytes of UTF-8, not NUL-terminated (record() copies
   * exactly len bytes, so ASan catches a pointer that does not hold them). */
  if (len) assert_non_null(reason);
  if (len && dx__utf8_validate((const uint8_t *)reason, len) != 0)
    fail_msg("on_close: reason is not valid UTF-8");
  record(ctx_of(s), EV_CLOSE, code, reason, len);
}

/* Deterministic "random" bytes for the client role's masking keys. */
static void fake_random(void *ud, uint8_t *out, size_t n) {
  ctx *c = ud;
  c->rnd_calls++;
  for (size_t i = 0; i < n; i++) {
    c->rnd_seed = c->rnd_seed * 1103515245u + 12345u;
    out[i] = (uint8_t)(c->rnd_seed >> 16);
  }
}

/* Sets up c (which must not move afterwards) and creates the session. */
static void ctx_init(ctx *c, dx__role role, uint64_t max_message,
                     uint64_t max_frame) {
  memset(c, 0, sizeof *c);
  c->role = role;
  c->t.fail_at = -1;
  c->cfg.role = role;
  c->cfg.max_message = max_message;
  c->cfg.max_frame = max_frame;
  c->cfg.allowed_rsv = 0;
  c->cfg.random = fake_random;
  c->cfg.random_ud = c;
  c->ops.cb.on_message = cb_message;
  c->ops.cb.on_ping = cb_ping;
  c->ops.cb.on_pong = cb_pong;
  c->ops.cb.on_close = cb_close;
  c->ops.alloc.realloc = track_realloc;
  c->ops.alloc.ud = &c->t;
  c->rnd_seed = 42;
  c->s = dx__session_new(&c->cfg, &c->ops);
  assert_non_null(c->s);
  c->base = c->t.bytes;
}

/* Bytes the session holds beyond its own struct, now and at most so far. */
static size_t held(const ctx *c) { return c->t.bytes - c->base; }
static size_t held_peak(const ctx *c) { return c->t.peak - c->base; }

#define MIB (UINT64_C(1) << 20)

static void ctx_events_free(ctx *c) {
  for (size_t i = 0; i < c->nev; i++) free(c->ev[i].data);
  c->nev = 0;
}

static void ctx_done(ctx *c) {
  dx__session_free(c->s);
  c->s = NULL;
  ctx_events_free(c);
  if (c->t.live != 0) fail_msg("%ld allocation(s) leaked", c->t.live);
}

/* ---- building peer frames by hand -------------------------------------- */

typedef struct bytes {
  uint8_t *p;
  size_t len, cap;
} bytes;

static void b_put(bytes *b, const void *d, size_t n) {
  if (b->len + n > b->cap) {
    b->cap = (b->len + n) * 2 + 64;
    b->p = realloc(b->p, b->cap);
    assert_non_null(b->p);
  }
  if (n) memcpy(b->p + b->len, d, n);
  b->len += n;
}

static void b_free(bytes *b) {
  free(b->p);
  memset(b, 0, sizeof *b);
}

/* Appends a frame as the peer of `role` would send it (masked when the peer
 * is a client), with an explicit first byte so tests can set any bits.
 * Returns the offset where the frame starts. `hlen` (if not NULL) receives
 * the header length. */
static size_t b_frame_raw(bytes *b, uint8_t b0, int masked, const void *payload,
                          size_t len, size_t *hlen) {
  static unsigned keyseed = 7;
  size_t start = b->len;
  uint8_t h[14];
  size_t n = 0;
  h[n++] = b0;
  uint8_t mbit = masked ? 0x80 : 0;
  if (len < 126) {
    h[n++] = (uint8_t)(mbit | len);
  } else if (len <= 0xFFFF) {
    h[n++] = mbit | 126;
    h[n++] = (uint8_t)(len >> 8);
    h[n++] = (uint8_t)len;
  } else {
    h[n++] = mbit | 127;
    for (int i = 7; i >= 0; i--) h[n++] = (uint8_t)((uint64_t)len >> (8 * i));
  }
  uint8_t key[4] = {0, 0, 0, 0};
  if (masked) {
    for (int i = 0; i < 4; i++) key[i] = (uint8_t)(keyseed = keyseed * 69069u + 1u) ^ 0x5A;
    memcpy(h + n, key, 4);
    n += 4;
  }
  b_put(b, h, n);
  size_t at = b->len;
  b_put(b, payload, len);
  for (size_t i = 0; i < len; i++) b->p[at + i] ^= key[i & 3];
  if (hlen) *hlen = n;
  return start;
}

/* A frame from the peer of `role`: masked iff we are the server. */
static size_t b_frame(bytes *b, dx__role role, int fin, unsigned op,
                      const void *payload, size_t len) {
  return b_frame_raw(b, (uint8_t)((fin ? 0x80 : 0) | op), role == DX__ROLE_SERVER,
                     payload, len, NULL);
}

static size_t b_close(bytes *b, dx__role role, int code, const char *reason,
                      size_t rlen) {
  uint8_t p[256];
  size_t n = 0;
  if (code >= 0) {
    p[n++] = (uint8_t)(code >> 8);
    p[n++] = (uint8_t)code;
    if (rlen) memcpy(p + n, reason, rlen);
    n += rlen;
  }
  return b_frame(b, role, 1, DX__OP_CLOSE, p, n);
}

/* ---- reading our output ------------------------------------------------- */

typedef struct oframe {
  int fin;
  unsigned rsv, op;
  int masked;
  uint8_t *data; /* unmasked payload, NUL-terminated copy */
  size_t len;
} oframe;

#define MAX_OUT 64

/* Decodes everything pending into frames, checking the role's masking rule
 * (a client masks every frame, a server none) and that the output is made
 * of whole frames, then consumes it. Returns the frame count. */
static size_t take_output(ctx *c, oframe *f) {
  const uint8_t *p;
  size_t n = dx__session_pending(c->s, &p);
  size_t pos = 0, count = 0;
  while (pos < n) {
    assert_true(count < MAX_OUT);
    assert_true(n - pos >= 2);
    oframe *o = &f[count++];
    o->fin = p[pos] >> 7;
    o->rsv = (p[pos] >> 4) & 7;
    o->op = p[pos] & 0xF;
    o->masked = p[pos + 1] >> 7;
    uint64_t len = p[pos + 1] & 0x7F;
    size_t h = 2;
    if (len == 126) {
      assert_true(n - pos >= 4);
      len = ((uint64_t)p[pos + 2] << 8) | p[pos + 3];
      assert_true(len >= 126); /* we must write minimal lengths */
      h = 4;
    } else if (len == 127) {
      assert_true(n - pos >= 10);
      len = 0;
      for (int i = 0; i < 8; i++) len = (len << 8) | p[pos + 2 + i];
      assert_true(len > 0xFFFF);
      h = 10;
    }
    uint8_t key[4] = {0, 0, 0, 0};
    if (o->masked) {
      assert_true(n - pos >= h + 4);
      memcpy(key, p + pos + h, 4);
      h += 4;
    }
    if (o->masked != (c->role == DX__ROLE_CLIENT))
      fail_msg("output frame %zu: masked=%d in the %s role", count - 1,
               o->masked, c->role == DX__ROLE_CLIENT ? "client" : "server");
    assert_true(n - pos - h >= len);
    o->len = (size_t)len;
    o->data = malloc(o->len + 1);
    assert_non_null(o->data);
    for (size_t i = 0; i < o->len; i++) o->data[i] = p[pos + h + i] ^ key[i & 3];
    o->data[o->len] = 0;
    assert_int_equal(o->rsv, 0);
    pos += h + o->len;
  }
  if (n) dx__session_consumed(c->s, n);
  const uint8_t *q;
  assert_int_equal(dx__session_pending(c->s, &q), 0);
  return count;
}

static void oframes_free(oframe *f, size_t n) {
  for (size_t i = 0; i < n; i++) free(f[i].data);
}

static int close_code_of(const oframe *o) {
  if (o->len < 2) return 0;
  return (o->data[0] << 8) | o->data[1];
}

/* ---- feeding ----------------------------------------------------------- */

/* dx__session_recv on a private, exactly sized copy (recv unmasks in place,
 * and ASan then catches any read past `len`). */
static ssize_t feed(ctx *c, const uint8_t *d, size_t n) {
  uint8_t *copy = malloc(n ? n : 1);
  assert_non_null(copy);
  if (n) memcpy(copy, d, n);
  ssize_t r = dx__session_recv(c->s, copy, n);
  free(copy);
  return r;
}

/* Feeds d in pieces ending at each cut (cuts ascending, last one n); every
 * piece must be accepted whole. */
static void feed_ok_cuts(ctx *c, const uint8_t *d, size_t n, const size_t *cuts,
                         size_t ncuts, const char *what) {
  size_t pos = 0;
  for (size_t i = 0; i < ncuts; i++) {
    ssize_t r = feed(c, d + pos, cuts[i] - pos);
    if (r != (ssize_t)(cuts[i] - pos))
      fail_msg("%s: recv of bytes [%zu,%zu) returned %zd", what, pos, cuts[i], r);
    pos = cuts[i];
  }
  assert_int_equal(pos, n);
}

/* ---- expected events ---------------------------------------------------- */

typedef struct want_ev {
  int kind, arg;
  const void *data;
  size_t len;
} want_ev;

static void check_events(ctx *c, const want_ev *w, size_t nw, const char *what) {
  if (c->nev != nw) {
    fail_msg("%s: %zu events, want %zu", what, c->nev, nw);
  }
  for (size_t i = 0; i < nw; i++) {
    const event *e = &c->ev[i];
    if (e->kind != w[i].kind || e->arg != w[i].arg || e->len != w[i].len ||
        (w[i].len && memcmp(e->data, w[i].data, w[i].len) != 0))
      fail_msg("%s: event %zu is kind %d arg %d len %zu, want kind %d arg %d "
               "len %zu (or different bytes)",
               what, i, e->kind, e->arg, e->len, w[i].kind, w[i].arg,
               w[i].len);
  }
}

/* ---- §5.7 examples at every split point --------------------------------- */

typedef struct scenario {
  const char *name;
  dx__role role;
  bytes in;
  want_ev ev[8];
  size_t nev;
  /* Expected output frames: opcode + payload. */
  unsigned out_op[4];
  const void *out_data[4];
  size_t out_len[4];
  size_t nout;
} scenario;

/* Runs one scenario fed as given by `cuts`, checking events and output. */
static void run_cuts(const scenario *sc, const size_t *cuts, size_t ncuts,
                     const char *how) {
  ctx c;
  ctx_init(&c, sc->role, 16 * MIB, 16 * MIB);
  char what[160];
  snprintf(what, sizeof what, "%s (%s)", sc->name, how);
  feed_ok_cuts(&c, sc->in.p, sc->in.len, cuts, ncuts, what);
  check_events(&c, sc->ev, sc->nev, what);
  oframe o[MAX_OUT];
  size_t no = take_output(&c, o);
  if (no != sc->nout) fail_msg("%s: %zu output frames, want %zu", what, no, sc->nout);
  for (size_t i = 0; i < no; i++) {
    assert_int_equal(o[i].fin, 1);
    assert_int_equal(o[i].op, sc->out_op[i]);
    assert_int_equal(o[i].len, sc->out_len[i]);
    if (o[i].len) assert_memory_equal(o[i].data, sc->out_data[i], o[i].len);
  }
  oframes_free(o, no);
  assert_int_equal(dx__session_state(c.s), DX__S_OPEN);
  ctx_done(&c);
}

static void run_scenario(const scenario *sc, int exhaustive) {
  size_t n = sc->in.len;
  size_t cuts[3];
  /* Whole. */
  cuts[0] = n;
  run_cuts(sc, cuts, 1, "whole");
  /* Two pieces at every split (sampled for the 64 KiB frame). */
  for (size_t k = 0; k <= n; k++) {
    if (!exhaustive && k > 40 && k + 40 < n && k % 4099 != 0) continue;
    cuts[0] = k;
    cuts[1] = n;
    char how[64];
    snprintf(how, sizeof how, "split at %zu", k);
    run_cuts(sc, cuts, 2, how);
  }
  /* Three pieces for the small inputs. */
  if (n <= 40) {
    for (size_t i = 1; i < n; i++) {
      for (size_t j = i; j < n; j++) {
        cuts[0] = i;
        cuts[1] = j;
        cuts[2] = n;
        char how[64];
        snprintf(how, sizeof how, "split at %zu and %zu", i, j);
        run_cuts(sc, cuts, 3, how);
      }
    }
  }
  /* Byte by byte. */
  size_t *all = malloc((n + 1) * sizeof *all);
  assert_non_null(all);
  for (size_t k = 0; k < n; k++) all[k] = k + 1;
  run_cuts(sc, all, n, "byte by byte");
  free(all);
}

static const uint8_t HELLO[] = "Hello";

static void test_rfc_examples(void **state) {
  (void)state;
  static uint8_t bin256[256], bin64k[65536];
  for (size_t i = 0; i < sizeof bin256; i++) bin256[i] = (uint8_t)(255 - i);
  for (size_t i = 0; i < sizeof bin64k; i++) bin64k[i] = (uint8_t)(i * 13 + (i >> 9));
  static const uint8_t masked_hello[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d,
                                         0x7f, 0x9f, 0x4d, 0x51, 0x58};
  static const uint8_t plain_hello[] = {0x81, 0x05, 'H', 'e', 'l', 'l', 'o'};
  static const uint8_t frag[] = {0x01, 0x03, 'H', 'e', 'l', 0x80, 0x02, 'l', 'o'};
  static const uint8_t ping[] = {0x89, 0x05, 'H', 'e', 'l', 'l', 'o'};
  static const uint8_t pong[] = {0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d,
                                 0x7f, 0x9f, 0x4d, 0x51, 0x58};
  static const uint8_t h256[] = {0x82, 0x7E, 0x01, 0x00};
  static const uint8_t h64k[] = {0x82, 0x7F, 0, 0, 0, 0, 0, 0x01, 0, 0};

  scenario sc[12];
  memset(sc, 0, sizeof sc);
  size_t n = 0;

  sc[n].name = "masked Hello to a server";
  sc[n].role = DX__ROLE_SERVER;
  b_put(&sc[n].in, masked_hello, sizeof masked_hello);
  sc[n].ev[0] = (want_ev){EV_MSG, DX__OP_TEXT, HELLO, 5};
  sc[n++].nev = 1;

  sc[n].name = "unmasked Hello to a client";
  sc[n].role = DX__ROLE_CLIENT;
  b_put(&sc[n].in, plain_hello, sizeof plain_hello);
  sc[n].ev[0] = (want_ev){EV_MSG, DX__OP_TEXT, HELLO, 5};
  sc[n++].nev = 1;

  sc[n].name = "fragmented Hello to a client";
  sc[n].role = DX__ROLE_CLIENT;
  b_put(&sc[n].in, frag, sizeof frag);
  sc[n].ev[0] = (want_ev){EV_MSG, DX__OP_TEXT, HELLO, 5};
  sc[n++].nev = 1;

  sc[n].name = "fragmented masked Hello to a server";
  sc[n].role = DX__ROLE_SERVER;
  b_frame(&sc[n].in, DX__ROLE_SERVER, 0, DX__OP_TEXT, "Hel", 3);
  b_frame(&sc[n].in, DX__ROLE_SERVER, 1, DX__OP_CONT, "lo", 2);
  sc[n].ev[0] = (want_ev){EV_MSG, DX__OP_TEXT, HELLO, 5};
  sc[n++].nev = 1;

  sc[n].name = "unmasked ping to a client";
  sc[n].role = DX__ROLE_CLIENT;
  b_put(&sc[n].in, ping, sizeof ping);
  sc[n].ev[0] = (want_ev){EV_PING, 0, HELLO, 5};
  sc[n].nev = 1;
  sc[n].out_op[0] = DX__OP_PONG;
  sc[n].out_data[0] = HELLO;
  sc[n].out_len[0] = 5;
  sc[n++].nout = 1;

  sc[n].name = "masked ping to a server";
  sc[n].role = DX__ROLE_SERVER;
  b_frame(&sc[n].in, DX__ROLE_SERVER, 1, DX__OP_PING, "Hello", 5);
  sc[n].ev[0] = (want_ev){EV_PING, 0, HELLO, 5};
  sc[n].nev = 1;
  sc[n].out_op[0] = DX__OP_PONG;
  sc[n].out_data[0] = HELLO;
  sc[n].out_len[0] = 5;
  sc[n++].nout = 1;

  sc[n].name = "masked pong to a server";
  sc[n].role = DX__ROLE_SERVER;
  b_put(&sc[n].in, pong, sizeof pong);
  sc[n].ev[0] = (want_ev){EV_PONG, 0, HELLO, 5};
  sc[n++].nev = 1;

  sc[n].name = "256-byte binary to a client";
  sc[n].role = DX__ROLE_CLIENT;
  b_put(&sc[n].in, h256, sizeof h256);
  b_put(&sc[n].in, bin256, sizeof bin256);
  sc[n].ev[0] = (want_ev){EV_MSG, DX__OP_BINARY, bin256, sizeof bin256};
  sc[n++].nev = 1;

  sc[n].name = "256-byte masked binary to a server";
  sc[n].role = DX__ROLE_SERVER;
  b_frame(&sc[n].in, DX__ROLE_SERVER, 1, DX__OP_BINARY, bin256, sizeof bin256);
  sc[n].ev[0] = (want_ev){EV_MSG, DX__OP_BINARY, bin256, sizeof bin256};
  sc[n++].nev = 1;

  sc[n].name = "64 KiB binary to a client";
  sc[n].role = DX__ROLE_CLIENT;
  b_put(&sc[n].in, h64k, sizeof h64k);
  b_put(&sc[n].in, bin64k, sizeof bin64k);
  sc[n].ev[0] = (want_ev){EV_MSG, DX__OP_BINARY, bin64k, sizeof bin64k};
  sc[n++].nev = 1;

  sc[n].name = "64 KiB masked binary to a server";
  sc[n].role = DX__ROLE_SERVER;
  b_frame(&sc[n].in, DX__ROLE_SERVER, 1, DX__OP_BINARY, bin64k, sizeof bin64k);
  sc[n].ev[0] = (want_ev){EV_MSG, DX__OP_BINARY, bin64k, sizeof bin64k};
  sc[n++].nev = 1;

  for (size_t i = 0; i < n; i++) {
    run_scenario(&sc[i], sc[i].in.len < 1000);
    b_free(&sc[i].in);
  }
}

/* Control frames between fragments are delivered at once, in order, and
 * the message still arrives whole. */
static void test_control_between_fragments(void **state) {
  (void)state;
  for (int role = 0; role <= 1; role++) {
    scenario sc;
    memset(&sc, 0, sizeof sc);
    sc.name = role ? "interleaved controls (client)" : "interleaved controls (server)";
    sc.role = (dx__role)role;
    b_frame(&sc.in, sc.role, 0, DX__OP_TEXT, "Hel", 3);
    b_frame(&sc.in, sc.role, 1, DX__OP_PING, "p1", 2);
    b_frame(&sc.in, sc.role, 1, DX__OP_PONG, "p2", 2);
    b_frame(&sc.in, sc.role, 0, DX__OP_CONT, "l", 1);
    b_frame(&sc.in, sc.role, 1, DX__OP_PING, "", 0);
    b_frame(&sc.in, sc.role, 0, DX__OP_CONT, "", 0);
    b_frame(&sc.in, sc.role, 1, DX__OP_CONT, "o", 1);
    b_frame(&sc.in, sc.role, 1, DX__OP_BINARY, "\xff", 1);
    sc.ev[0] = (want_ev){EV_PING, 0, "p1", 2};
    sc.ev[1] = (want_ev){EV_PONG, 0, "p2", 2};
    sc.ev[2] = (want_ev){EV_PING, 0, "", 0};
    sc.ev[3] = (want_ev){EV_MSG, DX__OP_TEXT, HELLO, 5};
    sc.ev[4] = (want_ev){EV_MSG, DX__OP_BINARY, "\xff", 1};
    sc.nev = 5;
    sc.out_op[0] = DX__OP_PONG;
    sc.out_data[0] = "p1";
    sc.out_len[0] = 2;
    sc.out_op[1] = DX__OP_PONG;
    sc.out_data[1] = "";
    sc.out_len[1] = 0;
    sc.nout = 2;
    run_scenario(&sc, 1);
    b_free(&sc.in);
  }
}

/* A text message whose characters straddle fragment edges is valid. */
static void test_utf8_across_fragments_valid(void **state) {
  (void)state;
  static const uint8_t text[] = "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5 \xf0\x9f\x98\x80";
  size_t tl = sizeof text - 1;
  for (size_t cut = 0; cut <= tl; cut++) {
    scenario sc;
    memset(&sc, 0, sizeof sc);
    sc.name = "text split inside characters";
    sc.role = DX__ROLE_CLIENT;
    b_frame(&sc.in, sc.role, 0, DX__OP_TEXT, text, cut);
    b_frame(&sc.in, sc.role, 1, DX__OP_CONT, text + cut, tl - cut);
    sc.ev[0] = (want_ev){EV_MSG, DX__OP_TEXT, text, tl};
    sc.nev = 1;
    size_t cuts[1] = {sc.in.len};
    run_cuts(&sc, cuts, 1, "whole");
    b_free(&sc.in);
  }
}

/* Ping payloads of 0, 1 and 125 bytes get pongs with the same bytes; several
 * pings in one read get their pongs in order. */
static void test_ping_pong(void **state) {
  (void)state;
  uint8_t big[125];
  for (size_t i = 0; i < sizeof big; i++) big[i] = (uint8_t)(i * 3);
  static const size_t lens[] = {0, 1, 125};
  for (int role = 0; role <= 1; role++) {
    ctx c;
    ctx_init(&c, (dx__role)role, MIB, MIB);
    bytes in = {0};
    for (size_t i = 0; i < 3; i++) b_frame(&in, c.role, 1, DX__OP_PING, big, lens[i]);
    assert_int_equal(feed(&c, in.p, in.len), (ssize_t)in.len);
    oframe o[MAX_OUT];
    size_t no = take_output(&c, o);
    assert_int_equal(no, 3);
    for (size_t i = 0; i < 3; i++) {
      assert_int_equal(o[i].op, DX__OP_PONG);
      assert_int_equal(o[i].fin, 1);
      assert_int_equal(o[i].len, lens[i]);
      if (lens[i]) assert_memory_equal(o[i].data, big, lens[i]);
      assert_int_equal(c.ev[i].kind, EV_PING);
      assert_int_equal(c.ev[i].len, lens[i]);
    }
    if (role == DX__ROLE_CLIENT) assert_true(c.rnd_calls > 0);
    oframes_free(o, no);
    b_free(&in);
    ctx_done(&c);
  }
}

/* ---- sending ------------------------------------------------------------- */

static void test_send(void **state) {
  (void)state;
  /* Server: byte-exact, unmasked. */
  ctx c;
  ctx_init(&c, DX__ROLE_SERVER, MIB, MIB);
  assert_int_equal(dx__session_send(c.s, DX__OP_TEXT, "Hello", 5), 0);
  const uint8_t *p;
  size_t n = dx__session_pending(c.s, &p);
  static const uint8_t want[] = {0x81, 0x05, 'H', 'e', 'l', 'l', 'o'};
  assert_int_equal(n, sizeof want);
  assert_memory_equal(p, want, sizeof want);
  /* Consuming part leaves the rest. */
  dx__session_consumed(c.s, 3);
  n = dx__session_pending(c.s, &p);
  assert_int_equal(n, 4);
  assert_memory_equal(p, want + 3, 4);
  dx__session_consumed(c.s, 4);
  assert_int_equal(dx__session_pending(c.s, &p), 0);
  ctx_done(&c);

  /* Both roles: sizes around the length-encoding boundaries, consumed in
   * odd-sized pieces interleaved with more sends. */
  static const size_t sizes[] = {0, 125, 126, 65535, 65536, 70000};
  uint8_t *data = malloc(70000);
  assert_non_null(data);
  /* Printable ASCII, so the text messages are valid UTF-8. */
  for (size_t i = 0; i < 70000; i++) data[i] = (uint8_t)(0x20 + (i * 7 + (i >> 7)) % 95);
  for (int role = 0; role <= 1; role++) {
    ctx_init(&c, (dx__role)role, MIB, MIB);
    bytes all = {0};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
      assert_int_equal(dx__session_send(c.s, i % 2 ? DX__OP_BINARY : DX__OP_TEXT,
                                        data, sizes[i]), 0);
      /* Drain a little (not everything) to exercise the output buffer. */
      n = dx__session_pending(c.s, &p);
      size_t take = n / 3;
      b_put(&all, p, take);
      dx__session_consumed(c.s, take);
    }
    n = dx__session_pending(c.s, &p);
    b_put(&all, p, n);
    dx__session_consumed(c.s, n);
    /* Decode what was written with a second session in the opposite role:
     * it must see the same messages. */
    ctx peer;
    ctx_init(&peer, role ? DX__ROLE_SERVER : DX__ROLE_CLIENT, MIB, MIB);
    assert_int_equal(feed(&peer, all.p, all.len), (ssize_t)all.len);
    assert_int_equal(peer.nev, sizeof sizes / sizeof sizes[0]);
    for (size_t i = 0; i < peer.nev; i++) {
      assert_int_equal(peer.ev[i].kind, EV_MSG);
      assert_int_equal(peer.ev[i].arg, i % 2 ? DX__OP_BINARY : DX__OP_TEXT);
      assert_int_equal(peer.ev[i].len, sizes[i]);
      if (sizes[i]) assert_memory_equal(peer.ev[i].data, data, sizes[i]);
    }
    /* And the header bytes are the minimal encoding. */
    size_t hl = (role ? 4 : 0);
    assert_int_equal(all.len, (2 + hl) + (2 + hl + 125) + (4 + hl + 126) +
                                  (4 + hl + 65535) + (10 + hl + 65536) +
                                  (10 + hl + 70000));
    if (role == DX__ROLE_CLIENT) assert_true(c.rnd_calls > 0);
    b_free(&all);
    ctx_done(&peer);
    ctx_done(&c);
  }
  free(data);

  /* Bad arguments. */
  ctx_init(&c, DX__ROLE_SERVER, MIB, MIB);
  assert_int_equal(dx__session_send(c.s, DX__OP_PING, "x", 1), DX_EINVAL);
  assert_int_equal(dx__session_control(c.s, DX__OP_TEXT, "x", 1), DX_EINVAL);
  uint8_t big[126] = {0};
  assert_int_equal(dx__session_control(c.s, DX__OP_PING, big, 126), DX_EINVAL);
  assert_int_equal(dx__session_pending(c.s, &p), 0);
  assert_int_equal(dx__session_control(c.s, DX__OP_PING, big, 125), 0);
  assert_int_equal(dx__session_control(c.s, DX__OP_PONG, NULL, 0), 0);
  oframe o[MAX_OUT];
  size_t no = take_output(&c, o);
  assert_int_equal(no, 2);
  assert_int_equal(o[0].op, DX__OP_PING);
  assert_int_equal(o[0].len, 125);
  assert_int_equal(o[1].op, DX__OP_PONG);
  assert_int_equal(o[1].len, 0);
  oframes_free(o, no);
  ctx_done(&c);
}

/* dx__session_send_small, the inline path of a server's small frames:
 * it queues only where it is sure (a server, at most 125 bytes, room in
 * the block, the session open) and then writes exactly what
 * dx__session_send would; everywhere else it declines and queues nothing. */
/* A spare output block in an owner's slot: lent to a session with none,
 * queued into without an allocation, back in the slot once written (or
 * at once when nothing was queued), freed when the slot is taken or the
 * block grew, and freed with a session that ends holding it. */
static void test_spare_block(void **state) {
  (void)state;
  static const uint8_t hello[] = {0x81, 5, 'h', 'e', 'l', 'l', 'o'};
  const uint8_t *p;
  ctx c;
  ctx_init(&c, DX__ROLE_SERVER, MIB, MIB);
  void *spare = NULL;
  /* An empty slot lends nothing; a session with nothing queued returns
   * nothing. */
  dx__session_out_lend(c.s, &spare);
  dx__session_out_return(c.s, &spare);
  assert_null(spare);
  assert_int_equal(held(&c), 0);
  /* The first block comes from a send, and goes to the slot once written. */
  assert_int_equal(dx__session_send(c.s, DX__OP_TEXT, "hello", 5), 0);
  assert_int_equal(dx__session_pending(c.s, &p), sizeof hello);
  void *block = (void *)(p - offsetof(dx__session_out, data));
  dx__session_consumed_to(c.s, 3, &spare); /* part written: it stays */
  assert_null(spare);
  assert_int_equal(dx__session_pending(c.s, &p), sizeof hello - 3);
  assert_memory_equal(p, hello + 3, sizeof hello - 3);
  dx__session_out_return(c.s, &spare); /* output waits: it stays */
  assert_null(spare);
  dx__session_consumed_to(c.s, sizeof hello - 3, &spare);
  assert_ptr_equal(spare, block);
  assert_int_equal(dx__session_pending(c.s, &p), 0);
  assert_int_equal(c.t.live, 2); /* the session and the block in the slot */
  /* Lent: the frames go into it inline, with no allocation request. */
  long requests = c.t.requests;
  dx__session_out_lend(c.s, &spare);
  assert_null(spare);
  assert_int_equal(dx__session_send_small(c.s, DX__OP_TEXT, "hello", 5), 0);
  assert_int_equal(dx__session_send(c.s, DX__OP_TEXT, "hello", 5), 0);
  assert_int_equal(c.t.requests, requests);
  assert_int_equal(dx__session_pending(c.s, &p), 2 * sizeof hello);
  assert_ptr_equal(p, (uint8_t *)block + offsetof(dx__session_out, data));
  assert_memory_equal(p, hello, sizeof hello);
  assert_memory_equal(p + sizeof hello, hello, sizeof hello);
  /* A session that holds a block is lent nothing. */
  int other;
  void *mine = &other;
  dx__session_out_lend(c.s, &mine);
  assert_ptr_equal(mine, &other);
  dx__session_consumed_to(c.s, 2 * sizeof hello, &spare);
  assert_ptr_equal(spare, block);
  /* Lent and unused: back as it was. */
  dx__session_out_lend(c.s, &spare);
  dx__session_out_return(c.s, &spare);
  assert_ptr_equal(spare, block);
  assert_int_equal(c.t.requests, requests);
  /* A block that grew is freed, not kept. */
  uint8_t big[2000];
  memset(big, 'x', sizeof big);
  dx__session_out_lend(c.s, &spare);
  assert_int_equal(dx__session_send(c.s, DX__OP_BINARY, big, sizeof big), 0);
  assert_int_equal(dx__session_pending(c.s, &p), 4 + sizeof big);
  assert_int_equal(p[0], 0x82);
  assert_memory_equal(p + 4, big, sizeof big);
  dx__session_consumed_to(c.s, 4 + sizeof big, &spare);
  assert_null(spare);
  assert_int_equal(c.t.live, 1);
  /* With the slot taken, an emptied block is freed. */
  assert_int_equal(dx__session_send(c.s, DX__OP_TEXT, "hello", 5), 0);
  dx__session_consumed_to(c.s, sizeof hello, &spare);
  block = spare;
  assert_non_null(block);
  assert_int_equal(dx__session_send(c.s, DX__OP_TEXT, "hello", 5), 0);
  dx__session_consumed_to(c.s, sizeof hello, &spare);
  assert_ptr_equal(spare, block);
  assert_int_equal(c.t.live, 2);
  /* The owner frees what its slot holds. */
  dx__session_out_free(&c.ops, spare);
  spare = NULL;
  assert_int_equal(c.t.live, 1);
  /* A session that ends with a lent block, output still queued in it,
   * frees it (ctx_done counts the blocks; ASan sees a double free). */
  assert_int_equal(dx__session_send(c.s, DX__OP_TEXT, "hello", 5), 0);
  dx__session_consumed_to(c.s, sizeof hello, &spare);
  assert_non_null(spare);
  dx__session_out_lend(c.s, &spare);
  assert_int_equal(dx__session_send(c.s, DX__OP_TEXT, "hello", 5), 0);
  assert_null(spare);
  ctx_done(&c);
  dx__session_out_free(&c.ops, spare); /* NULL accepted */
}

static void test_send_small(void **state) {
  (void)state;
  uint8_t data[126];
  for (size_t i = 0; i < sizeof data; i++) data[i] = (uint8_t)('a' + i % 26);
  const uint8_t *p;
  ctx c;
  ctx_init(&c, DX__ROLE_SERVER, MIB, MIB);
  /* No block yet: declined, nothing allocated. */
  long requests = c.t.requests;
  assert_int_equal(dx__session_send_small(c.s, DX__OP_TEXT, data, 5), 1);
  assert_int_equal(dx__session_pending(c.s, &p), 0);
  assert_int_equal(c.t.requests, requests);
  /* With a block: lengths 0, 1, 125 go inline, 126 does not. */
  assert_int_equal(dx__session_send(c.s, DX__OP_BINARY, data, 3), 0);
  requests = c.t.requests;
  assert_int_equal(dx__session_send_small(c.s, DX__OP_TEXT, data, 0), 0);
  assert_int_equal(dx__session_send_small(c.s, DX__OP_BINARY, data, 1), 0);
  assert_int_equal(dx__session_send_small(c.s, DX__OP_TEXT, data, 125), 0);
  assert_int_equal(dx__session_send_small(c.s, DX__OP_TEXT, data, 126), 1);
  assert_int_equal(c.t.requests, requests);
  size_t n = dx__session_pending(c.s, &p);
  assert_int_equal(n, (2 + 3) + 2 + (2 + 1) + (2 + 125));
  static const uint8_t head[] = {0x82, 3, 'a', 'b', 'c', 0x81, 0, 0x82, 1, 'a', 0x81, 125};
  assert_memory_equal(p, head, sizeof head);
  assert_memory_equal(p + sizeof head, data, 125);
  /* A block with no room left for the frame: declined. */
  while (dx__session_send_small(c.s, DX__OP_BINARY, data, 125) == 0) {
  }
  n = dx__session_pending(c.s, &p);
  assert_int_equal(c.t.requests, requests);
  assert_int_equal(dx__session_send(c.s, DX__OP_BINARY, data, 125), 0);
  assert_true(dx__session_pending(c.s, &p) == n + 127);
  dx__session_consumed(c.s, n + 127);
  /* Closing: declined, and dx__session_send says why. */
  assert_int_equal(dx__session_send(c.s, DX__OP_TEXT, data, 1), 0);
  assert_int_equal(dx__session_close(c.s, 1000, NULL, 0), 0);
  n = dx__session_pending(c.s, &p);
  assert_int_equal(dx__session_send_small(c.s, DX__OP_TEXT, data, 1), 1);
  assert_int_equal(dx__session_send(c.s, DX__OP_TEXT, data, 1), DX_ESTATE);
  assert_int_equal(dx__session_pending(c.s, &p), n);
  ctx_done(&c);

  /* A client masks its frames: never inline. */
  ctx_init(&c, DX__ROLE_CLIENT, MIB, MIB);
  assert_int_equal(dx__session_send(c.s, DX__OP_TEXT, data, 1), 0);
  n = dx__session_pending(c.s, &p);
  assert_int_equal(dx__session_send_small(c.s, DX__OP_TEXT, data, 1), 1);
  assert_int_equal(dx__session_pending(c.s, &p), n);
  ctx_done(&c);
}

/* A message callback may send (the header allows it): the echo is queued
 * and later frames in the same read still arrive. */
static void test_send_from_callback(void **state) {
  (void)state;
  for (int role = 0; role <= 1; role++) {
    ctx c;
    ctx_init(&c, (dx__role)role, MIB, MIB);
    c.echo_messages = 1;
    bytes in = {0};
    b_frame(&in, c.role, 1, DX__OP_TEXT, "one", 3);
    b_frame(&in, c.role, 0, DX__OP_BINARY, "tw", 2);
    b_frame(&in, c.role, 1, DX__OP_CONT, "o", 1);
    b_frame(&in, c.role, 1, DX__OP_TEXT, "three", 5);
    assert_int_equal(feed(&c, in.p, in.len), (ssize_t)in.len);
    assert_int_equal(c.nev, 3);
    oframe o[MAX_OUT];
    size_t no = take_output(&c, o);
    assert_int_equal(no, 3);
    assert_string_equal((char *)o[0].data, "one");
    assert_int_equal(o[1].op, DX__OP_BINARY);
    assert_string_equal((char *)o[1].data, "two");
    assert_string_equal((char *)o[2].data, "three");
    oframes_free(o, no);
    b_free(&in);
    ctx_done(&c);
  }
}

/* ---- protocol violations -------------------------------------------------- */

/* One way to break the protocol: the input, the error and close code it
 * must produce, and the range of byte offsets at which the error may be
 * reported (the offending byte .. the last byte that completes what must be
 * seen). Events before the bad frame are `nev_before`. */
typedef struct bad_case {
  char name[96];
  dx__role role;
  bytes in;
  int err, code;
  size_t fail_lo, fail_hi;
  size_t nev_before;
  uint64_t max_message, max_frame;
  const char *reason; /* the close reason, when not the code's usual one */
} bad_case;

/* After a failure: exactly one close frame with `code` at the end of the
 * output (pongs may come before it), state not OPEN, nothing more accepted
 * or queued, and no message delivered after the failure. */
static void check_failed(ctx *c, const bad_case *bc, const char *how) {
  oframe o[MAX_OUT];
  size_t no = take_output(c, o);
  size_t closes = 0;
  for (size_t i = 0; i < no; i++) closes += o[i].op == DX__OP_CLOSE;
  if (closes != 1 || o[no - 1].op != DX__OP_CLOSE)
    fail_msg("%s (%s): %zu close frames queued, want exactly one, last",
             bc->name, how, closes);
  if (close_code_of(&o[no - 1]) != bc->code)
    fail_msg("%s (%s): close code %d queued, want %d", bc->name, how,
             close_code_of(&o[no - 1]), bc->code);
  /* A close reason we send must be valid UTF-8 too. */
  if (o[no - 1].len > 2)
    assert_int_equal(dx__utf8_validate(o[no - 1].data + 2, o[no - 1].len - 2), 0);
  /* And it names what went wrong: the peer reads only the frame. */
  const char *reason = bc->reason          ? bc->reason
                       : bc->code == 1002 ? "protocol error"
                       : bc->code == 1007 ? "invalid UTF-8"
                       : bc->code == 1009 ? "message too big"
                                          : NULL;
  if (reason && (o[no - 1].len < 2 || strcmp((char *)o[no - 1].data + 2, reason) != 0))
    fail_msg("%s (%s): close reason \"%s\", want \"%s\"", bc->name, how,
             o[no - 1].len >= 2 ? (char *)o[no - 1].data + 2 : "", reason);
  oframes_free(o, no);
  if (dx__session_state(c->s) == DX__S_OPEN)
    fail_msg("%s (%s): still OPEN after the error", bc->name, how);
  assert_int_equal(dx__session_close_sent(c->s), 1);
  assert_int_equal(dx__session_sent_code(c->s), bc->code);
  if (c->nev != bc->nev_before)
    fail_msg("%s (%s): %zu events, want %zu", bc->name, how, c->nev,
             bc->nev_before);
  /* Further input is ignored: a valid message and a ping. */
  bytes more = {0};
  b_frame(&more, c->role, 1, DX__OP_TEXT, "late", 4);
  b_frame(&more, c->role, 1, DX__OP_PING, "late", 4);
  ssize_t r = feed(c, more.p, more.len);
  b_free(&more);
  if (r < 0 && r != bc->err)
    fail_msg("%s (%s): input after the error returned %zd", bc->name, how, r);
  if (c->nev != bc->nev_before)
    fail_msg("%s (%s): input after the error produced events", bc->name, how);
  const uint8_t *p;
  if (dx__session_pending(c->s, &p) != 0)
    fail_msg("%s (%s): input after the error queued output", bc->name, how);
  /* And we may not send any more. */
  assert_int_equal(dx__session_send(c->s, DX__OP_TEXT, "x", 1), DX_ESTATE);
  assert_int_equal(dx__session_pending(c->s, &p), 0);
}

static void run_bad(bad_case *bc) {
  uint64_t mm = bc->max_message ? bc->max_message : MIB;
  uint64_t mf = bc->max_frame ? bc->max_frame : mm;
  size_t n = bc->in.len;
  assert_true(bc->fail_lo <= bc->fail_hi && bc->fail_hi < n);
  ctx c;

  /* Whole. */
  ctx_init(&c, bc->role, mm, mf);
  ssize_t r = feed(&c, bc->in.p, n);
  if (r != bc->err)
    fail_msg("%s (whole): recv returned %zd, want %d", bc->name, r, bc->err);
  check_failed(&c, bc, "whole");
  ctx_done(&c);

  /* Byte by byte: accepted up to fail_lo, rejected by fail_hi. */
  ctx_init(&c, bc->role, mm, mf);
  size_t k;
  for (k = 0; k < n; k++) {
    r = feed(&c, bc->in.p + k, 1);
    if (r != 1) break;
  }
  if (k == n) fail_msg("%s (byte by byte): never failed", bc->name);
  if (r != bc->err)
    fail_msg("%s (byte by byte): byte %zu returned %zd, want %d", bc->name, k,
             r, bc->err);
  if (k < bc->fail_lo || k > bc->fail_hi)
    fail_msg("%s (byte by byte): failed at byte %zu, want %zu..%zu", bc->name,
             k, bc->fail_lo, bc->fail_hi);
  check_failed(&c, bc, "byte by byte");
  ctx_done(&c);

  /* Two pieces at every split. */
  for (size_t cut = 0; cut <= n; cut++) {
    ctx_init(&c, bc->role, mm, mf);
    char how[48];
    snprintf(how, sizeof how, "split at %zu", cut);
    ssize_t r1 = feed(&c, bc->in.p, cut);
    if (cut > bc->fail_hi) {
      if (r1 != bc->err)
        fail_msg("%s (%s): first piece returned %zd, want %d", bc->name, how,
                 r1, bc->err);
    } else if (cut <= bc->fail_lo) {
      if (r1 != (ssize_t)cut)
        fail_msg("%s (%s): first piece returned %zd, want %zu", bc->name, how,
                 r1, cut);
      ssize_t r2 = feed(&c, bc->in.p + cut, n - cut);
      if (r2 != bc->err)
        fail_msg("%s (%s): second piece returned %zd, want %d", bc->name, how,
                 r2, bc->err);
    } else {
      if (r1 == (ssize_t)cut) r1 = feed(&c, bc->in.p + cut, n - cut);
      if (r1 != bc->err)
        fail_msg("%s (%s): returned %zd, want %d", bc->name, how, r1, bc->err);
    }
    check_failed(&c, bc, how);
    ctx_done(&c);
  }
}

/* Builders for the cases. Each appends the offending frame to bc->in and
 * sets the failure range relative to it. */
static void bad_init(bad_case *bc, dx__role role, const char *fmt, ...) {
  memset(bc, 0, sizeof *bc);
  bc->role = role;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(bc->name, sizeof bc->name, fmt, ap);
  va_end(ap);
  snprintf(bc->name + strlen(bc->name), sizeof bc->name - strlen(bc->name),
           " [%s]", role == DX__ROLE_CLIENT ? "client" : "server");
}

/* The whole header of the frame starting at `start` may be needed. */
static void fail_in_header(bad_case *bc, size_t start, size_t hlen, size_t lo) {
  bc->fail_lo = start + lo;
  bc->fail_hi = start + hlen - 1;
}

static void test_masking_rules(void **state) {
  (void)state;
  bad_case bc;
  size_t hl;
  /* A server gets an unmasked frame: the MASK bit is in byte 1. */
  bad_init(&bc, DX__ROLE_SERVER, "unmasked frame from a client");
  size_t at = b_frame_raw(&bc.in, 0x81, 0, "Hello", 5, &hl);
  bc.err = DX_EPROTO;
  bc.code = 1002;
  fail_in_header(&bc, at, hl, 1);
  run_bad(&bc);
  b_free(&bc.in);
  /* Also after a good message and for a control frame. */
  bad_init(&bc, DX__ROLE_SERVER, "unmasked ping after a message");
  b_frame(&bc.in, DX__ROLE_SERVER, 1, DX__OP_BINARY, "ok", 2);
  at = b_frame_raw(&bc.in, 0x89, 0, "", 0, &hl);
  bc.err = DX_EPROTO;
  bc.code = 1002;
  bc.nev_before = 1;
  fail_in_header(&bc, at, hl, 1);
  run_bad(&bc);
  b_free(&bc.in);
  /* A client gets a masked frame (the §5.7 masked Hello). */
  bad_init(&bc, DX__ROLE_CLIENT, "masked frame from a server");
  at = b_frame_raw(&bc.in, 0x81, 1, "Hello", 5, &hl);
  bc.err = DX_EPROTO;
  bc.code = 1002;
  fail_in_header(&bc, at, hl, 1);
  run_bad(&bc);
  b_free(&bc.in);
}

static void test_rsv_bits(void **state) {
  (void)state;
  static const unsigned ops[] = {DX__OP_TEXT, DX__OP_BINARY, DX__OP_PING,
                                 DX__OP_PONG, DX__OP_CLOSE};
  for (int role = 0; role <= 1; role++) {
    for (unsigned rsv = 1; rsv < 8; rsv++) {
      for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        bad_case bc;
        size_t hl;
        bad_init(&bc, (dx__role)role, "RSV %u on opcode %u", rsv, ops[i]);
        size_t at = b_frame_raw(&bc.in, (uint8_t)(0x80 | (rsv << 4) | ops[i]),
                                role == DX__ROLE_SERVER, "", 0, &hl);
        bc.err = DX_EPROTO;
        bc.code = 1002;
        fail_in_header(&bc, at, hl, 0);
        run_bad(&bc);
        b_free(&bc.in);
      }
      /* On a continuation frame of an open message. */
      bad_case bc;
      size_t hl;
      bad_init(&bc, (dx__role)role, "RSV %u on a continuation", rsv);
      b_frame(&bc.in, (dx__role)role, 0, DX__OP_TEXT, "a", 1);
      size_t at = b_frame_raw(&bc.in, (uint8_t)(0x80 | (rsv << 4)),
                              role == DX__ROLE_SERVER, "b", 1, &hl);
      bc.err = DX_EPROTO;
      bc.code = 1002;
      fail_in_header(&bc, at, hl, 0);
      run_bad(&bc);
      b_free(&bc.in);
    }
  }
}

/* RSV bits an extension negotiated (cfg.allowed_rsv) are accepted. With no
 * permessage-deflate state attached the session cannot interpret them, so
 * the payload arrives unchanged; only for RSV1 (the bit permessage-deflate
 * uses) failing the connection is also acceptable, but then as the header
 * documents for DX_EPROTO: with a 1002 close. */
static void test_allowed_rsv_without_extension_state(void **state) {
  (void)state;
  for (int role = 0; role <= 1; role++) {
    for (unsigned rsv = 1; rsv < 8; rsv++) {
      ctx c;
      ctx_init(&c, (dx__role)role, MIB, MIB);
      c.cfg.allowed_rsv = rsv; /* borrowed by the session: takes effect */
      bytes in = {0};
      b_frame_raw(&in, (uint8_t)(0x80 | (rsv << 4) | DX__OP_BINARY),
                  role == DX__ROLE_SERVER, "\x01\x02\x03", 3, NULL);
      b_frame_raw(&in, (uint8_t)((rsv << 4) | DX__OP_TEXT),
                  role == DX__ROLE_SERVER, "ab", 2, NULL);
      b_frame(&in, (dx__role)role, 1, DX__OP_CONT, "c", 1);
      ssize_t r = feed(&c, in.p, in.len);
      if (r < 0 && (rsv & DX__RSV1)) {
        if (r != DX_EPROTO)
          fail_msg("allowed_rsv %u, role %d: recv returned %zd", rsv, role, r);
        oframe o[MAX_OUT];
        size_t no = take_output(&c, o);
        int code = no ? close_code_of(&o[no - 1]) : -1;
        oframes_free(o, no);
        if (code != 1002)
          fail_msg("allowed_rsv %u, role %d: DX_EPROTO returned but close "
                   "code %d queued (header: DX_EPROTO means 1002)", rsv, role,
                   code);
        assert_int_equal(c.nev, 0);
      } else {
        if (r != (ssize_t)in.len)
          fail_msg("allowed_rsv %u, role %d: recv returned %zd", rsv, role, r);
        want_ev w[2] = {{EV_MSG, DX__OP_BINARY, "\x01\x02\x03", 3},
                        {EV_MSG, DX__OP_TEXT, "abc", 3}};
        check_events(&c, w, 2, "allowed RSV");
      }
      b_free(&in);
      ctx_done(&c);
    }
  }
}

static void test_reserved_opcodes(void **state) {
  (void)state;
  static const unsigned ops[] = {3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF};
  for (int role = 0; role <= 1; role++) {
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
      bad_case bc;
      size_t hl;
      bad_init(&bc, (dx__role)role, "reserved opcode %#x", ops[i]);
      size_t at = b_frame_raw(&bc.in, (uint8_t)(0x80 | ops[i]),
                              role == DX__ROLE_SERVER, "xyz", 3, &hl);
      bc.err = DX_EPROTO;
      bc.code = 1002;
      fail_in_header(&bc, at, hl, 0);
      run_bad(&bc);
      b_free(&bc.in);
    }
  }
}

static void test_fragmentation_rules(void **state) {
  (void)state;
  for (int role = 0; role <= 1; role++) {
    dx__role r = (dx__role)role;
    int m = r == DX__ROLE_SERVER;
    bad_case bc;
    size_t hl, at;

    bad_init(&bc, r, "continuation with no message");
    at = b_frame_raw(&bc.in, 0x80, m, "x", 1, &hl);
    bc.err = DX_EPROTO;
    bc.code = 1002;
    fail_in_header(&bc, at, hl, 0);
    run_bad(&bc);
    b_free(&bc.in);

    bad_init(&bc, r, "unfinished continuation with no message");
    at = b_frame_raw(&bc.in, 0x00, m, "x", 1, &hl);
    bc.err = DX_EPROTO;
    bc.code = 1002;
    fail_in_header(&bc, at, hl, 0);
    run_bad(&bc);
    b_free(&bc.in);

    bad_init(&bc, r, "continuation after a complete message");
    b_frame(&bc.in, r, 1, DX__OP_TEXT, "done", 4);
    at = b_frame_raw(&bc.in, 0x80, m, "x", 1, &hl);
    bc.err = DX_EPROTO;
    bc.code = 1002;
    bc.nev_before = 1;
    fail_in_header(&bc, at, hl, 0);
    run_bad(&bc);
    b_free(&bc.in);

    static const uint8_t pairs[][2] = {{DX__OP_TEXT, DX__OP_TEXT},
                                       {DX__OP_TEXT, DX__OP_BINARY},
                                       {DX__OP_BINARY, DX__OP_TEXT},
                                       {DX__OP_BINARY, DX__OP_BINARY}};
    for (size_t i = 0; i < 4; i++) {
      for (int fin = 0; fin <= 1; fin++) {
        bad_init(&bc, r, "opcode %u (fin %d) inside a fragmented %u", pairs[i][1],
                 fin, pairs[i][0]);
        b_frame(&bc.in, r, 0, pairs[i][0], "ab", 2);
        b_frame(&bc.in, r, 1, DX__OP_PING, "", 0); /* a control is fine */
        at = b_frame_raw(&bc.in, (uint8_t)((fin ? 0x80 : 0) | pairs[i][1]), m,
                         "cd", 2, &hl);
        bc.err = DX_EPROTO;
        bc.code = 1002;
        bc.nev_before = 1; /* the ping */
        fail_in_header(&bc, at, hl, 0);
        run_bad(&bc);
        b_free(&bc.in);
      }
    }
  }
}

static void test_control_frame_rules(void **state) {
  (void)state;
  for (int role = 0; role <= 1; role++) {
    dx__role r = (dx__role)role;
    int m = r == DX__ROLE_SERVER;
    static const unsigned ctl[] = {DX__OP_PING, DX__OP_PONG, DX__OP_CLOSE};
    for (size_t i = 0; i < 3; i++) {
      bad_case bc;
      size_t hl, at;
      bad_init(&bc, r, "fragmented control %#x", ctl[i]);
      at = b_frame_raw(&bc.in, (uint8_t)ctl[i], m, "", 0, &hl);
      bc.err = DX_EPROTO;
      bc.code = 1002;
      fail_in_header(&bc, at, hl, 0);
      run_bad(&bc);
      b_free(&bc.in);

      bad_init(&bc, r, "control %#x with 126 bytes", ctl[i]);
      uint8_t payload[126];
      memset(payload, 0, sizeof payload);
      payload[0] = 0x03; /* 1000 for the close case */
      payload[1] = 0xE8;
      at = b_frame_raw(&bc.in, (uint8_t)(0x80 | ctl[i]), m, payload, 126, &hl);
      bc.err = DX_EPROTO;
      bc.code = 1002;
      fail_in_header(&bc, at, hl, 1);
      run_bad(&bc);
      b_free(&bc.in);
    }
  }
}

/* Appends a frame whose length takes `bits` (7, 16 or 64) whatever its
 * size, so a short payload can come in a longer form than it needs. */
static void b_frame_enc(bytes *b, uint8_t b0, int masked, const void *payload,
                        size_t len, int bits) {
  uint8_t h[14] = {b0}, key[4] = {0x9a, 0x05, 0xe3, 0x71};
  size_t n = 2;
  uint8_t mbit = masked ? 0x80 : 0;
  if (bits == 7) {
    h[1] = (uint8_t)(mbit | len);
  } else if (bits == 16) {
    h[1] = mbit | 126;
    h[n++] = (uint8_t)(len >> 8);
    h[n++] = (uint8_t)len;
  } else {
    h[1] = mbit | 127;
    for (int i = 7; i >= 0; i--) h[n++] = (uint8_t)((uint64_t)len >> (8 * i));
  }
  if (masked) {
    memcpy(h + n, key, 4);
    n += 4;
  }
  b_put(b, h, n);
  size_t at = b->len;
  b_put(b, payload, len);
  if (masked)
    for (size_t i = 0; i < len; i++) b->p[at + i] ^= key[i & 3];
}

/* §5.2 asks for the minimal length encoding, but the parser accepts longer
 * ones (frame.h): a short message with a 16- or 64-bit length, whole (the
 * fast path takes the 16-bit form) or split anywhere, arrives unchanged,
 * unmasked with the key after the longer header. A 64-bit length with the
 * top bit set is refused with 1002 at the byte that holds it. */
static void test_length_encodings(void **state) {
  (void)state;
  static const uint8_t text[] = "h\xc3\xa9llo w\xe2\x82\xacrld \xf0\x9f\x98\x80!";
  uint8_t bin[300];
  for (size_t i = 0; i < sizeof bin; i++) bin[i] = (uint8_t)(i * 29 + 3);
  for (int role = 0; role <= 1; role++) {
    dx__role r = (dx__role)role;
    int m = r == DX__ROLE_SERVER;
    static const int forms[] = {16, 64};
    for (size_t f = 0; f < 2; f++) {
      scenario sc;
      memset(&sc, 0, sizeof sc);
      sc.name = forms[f] == 16 ? "16-bit lengths for short frames" : "64-bit lengths";
      sc.role = r;
      b_frame_enc(&sc.in, 0x81, m, HELLO, 5, forms[f]);
      b_frame_enc(&sc.in, 0x81, m, text, sizeof text - 1, forms[f]);
      b_frame_enc(&sc.in, 0x82, m, bin, 125, forms[f]);
      b_frame_enc(&sc.in, 0x82, m, "", 0, forms[f]);
      b_frame_enc(&sc.in, 0x82, m, bin, sizeof bin, 64); /* 300 in 64 bits */
      b_frame_enc(&sc.in, 0x01, m, "ab", 2, forms[f]);
      b_frame_enc(&sc.in, 0x89, m, "pi", 2, 7);
      b_frame_enc(&sc.in, 0x80, m, "c", 1, forms[f]);
      sc.ev[0] = (want_ev){EV_MSG, DX__OP_TEXT, HELLO, 5};
      sc.ev[1] = (want_ev){EV_MSG, DX__OP_TEXT, text, sizeof text - 1};
      sc.ev[2] = (want_ev){EV_MSG, DX__OP_BINARY, bin, 125};
      sc.ev[3] = (want_ev){EV_MSG, DX__OP_BINARY, "", 0};
      sc.ev[4] = (want_ev){EV_MSG, DX__OP_BINARY, bin, sizeof bin};
      sc.ev[5] = (want_ev){EV_PING, 0, "pi", 2};
      sc.ev[6] = (want_ev){EV_MSG, DX__OP_TEXT, "abc", 3};
      sc.nev = 7;
      sc.out_op[0] = DX__OP_PONG;
      sc.out_data[0] = "pi";
      sc.out_len[0] = 2;
      sc.nout = 1;
      run_scenario(&sc, 1);
      b_free(&sc.in);
    }

    /* The top bit of a 64-bit length, after a message that took the fast
     * path and on a continuation. */
    for (int cont = 0; cont <= 1; cont++) {
      bad_case bc;
      bad_init(&bc, r, "64-bit length with the top bit set%s",
               cont ? " on a continuation" : "");
      b_frame(&bc.in, r, 1, DX__OP_TEXT, "ok", 2);
      if (cont) b_frame(&bc.in, r, 0, DX__OP_BINARY, "ab", 2);
      size_t at = bc.in.len;
      uint8_t h[14] = {cont ? 0x80 : 0x82, (uint8_t)((m ? 0x80 : 0) | 127), 0x80, 0, 0,
                       0, 0, 0, 0, 5, 1, 2, 3, 4};
      b_put(&bc.in, h, m ? 14 : 10);
      b_put(&bc.in, "hello", 5);
      bc.err = DX_EPROTO;
      bc.code = 1002;
      bc.nev_before = 1;
      bc.fail_lo = bc.fail_hi = at + 2;
      run_bad(&bc);
      b_free(&bc.in);
    }
  }
}

/* ---- UTF-8 -------------------------------------------------------------- */

static const uint8_t KOSME[] = {0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xcf,
                                0x83, 0xce, 0xbc, 0xce, 0xb5};

static void test_utf8_fail_fast(void **state) {
  (void)state;
  for (int role = 0; role <= 1; role++) {
    dx__role r = (dx__role)role;
    bad_case bc;
    size_t hl, at;

    /* Autobahn 6.4.1: three fragments; the second holds F4 90 80 80. The
     * error must come with the 0x90 byte, before the fragment ends. */
    bad_init(&bc, r, "6.4.1 U+110000 in the second fragment");
    b_frame(&bc.in, r, 0, DX__OP_TEXT, KOSME, sizeof KOSME);
    at = b_frame_raw(&bc.in, 0x00, r == DX__ROLE_SERVER, "\xf4\x90\x80\x80", 4, &hl);
    b_frame(&bc.in, r, 1, DX__OP_CONT, "edited", 6);
    bc.err = DX_EUTF8;
    bc.code = 1007;
    bc.fail_lo = bc.fail_hi = at + hl + 1;
    run_bad(&bc);
    b_free(&bc.in);

    /* Autobahn 6.4.2: the F4 ends the first fragment, 0x90 is the second. */
    bad_init(&bc, r, "6.4.2 0x90 alone in the second fragment");
    uint8_t part1[sizeof KOSME + 1];
    memcpy(part1, KOSME, sizeof KOSME);
    part1[sizeof KOSME] = 0xf4;
    b_frame(&bc.in, r, 0, DX__OP_TEXT, part1, sizeof part1);
    at = b_frame_raw(&bc.in, 0x00, r == DX__ROLE_SERVER, "\x90", 1, &hl);
    b_frame(&bc.in, r, 1, DX__OP_CONT, "\x80\x80" "edited", 8);
    bc.err = DX_EUTF8;
    bc.code = 1007;
    bc.fail_lo = bc.fail_hi = at + hl;
    run_bad(&bc);
    b_free(&bc.in);

    /* Autobahn 6.4.3/6.4.4: one frame, fed in chops. */
    bad_init(&bc, r, "6.4.3 U+110000 inside one frame");
    uint8_t whole[sizeof KOSME + 4 + 6];
    memcpy(whole, KOSME, sizeof KOSME);
    memcpy(whole + sizeof KOSME, "\xf4\x90\x80\x80" "edited", 10);
    at = b_frame_raw(&bc.in, 0x81, r == DX__ROLE_SERVER, whole, sizeof whole, &hl);
    bc.err = DX_EUTF8;
    bc.code = 1007;
    bc.fail_lo = bc.fail_hi = at + hl + sizeof KOSME + 1;
    run_bad(&bc);
    b_free(&bc.in);

    /* A surrogate and an overlong in a single frame. */
    bad_init(&bc, r, "surrogate ED A0 80");
    at = b_frame_raw(&bc.in, 0x81, r == DX__ROLE_SERVER, "ab\xed\xa0\x80", 5, &hl);
    bc.err = DX_EUTF8;
    bc.code = 1007;
    bc.fail_lo = bc.fail_hi = at + hl + 3;
    run_bad(&bc);
    b_free(&bc.in);

    bad_init(&bc, r, "overlong C0 80");
    at = b_frame_raw(&bc.in, 0x81, r == DX__ROLE_SERVER, "\xc0\x80", 2, &hl);
    bc.err = DX_EUTF8;
    bc.code = 1007;
    bc.fail_lo = bc.fail_hi = at + hl;
    run_bad(&bc);
    b_free(&bc.in);

    /* A message that ends mid-character: only known at the end of the
     * final frame. */
    bad_init(&bc, r, "text ends inside a character");
    at = b_frame_raw(&bc.in, 0x81, r == DX__ROLE_SERVER, "ab\xe2\x82", 4, &hl);
    bc.err = DX_EUTF8;
    bc.code = 1007;
    bc.fail_lo = bc.fail_hi = bc.in.len - 1;
    run_bad(&bc);
    b_free(&bc.in);

    bad_init(&bc, r, "text ends inside a character, empty final fragment");
    b_frame(&bc.in, r, 0, DX__OP_TEXT, "ab\xe2", 3);
    at = b_frame_raw(&bc.in, 0x80, r == DX__ROLE_SERVER, "", 0, &hl);
    bc.err = DX_EUTF8;
    bc.code = 1007;
    bc.fail_lo = bc.fail_hi = bc.in.len - 1;
    run_bad(&bc);
    b_free(&bc.in);
  }
  /* Binary messages are not UTF-8 checked. */
  ctx c;
  ctx_init(&c, DX__ROLE_CLIENT, MIB, MIB);
  bytes in = {0};
  b_frame(&in, c.role, 1, DX__OP_BINARY, "\xf4\x90\xc0", 3);
  assert_int_equal(feed(&c, in.p, in.len), (ssize_t)in.len);
  assert_int_equal(c.nev, 1);
  b_free(&in);
  ctx_done(&c);
}

/* ---- size limits ------------------------------------------------------------ */

static void test_max_message(void **state) {
  (void)state;
  uint8_t *data = calloc(1, 4096);
  assert_non_null(data);
  for (int role = 0; role <= 1; role++) {
    dx__role r = (dx__role)role;
    int m = r == DX__ROLE_SERVER;
    bad_case bc;
    size_t hl, at;

    /* One frame over the message limit: refused at its header. */
    bad_init(&bc, r, "single frame of 101 > max_message 100");
    at = b_frame_raw(&bc.in, 0x82, m, data, 101, &hl);
    bc.err = DX_ETOOBIG;
    bc.code = 1009;
    bc.max_message = 100;
    bc.max_frame = 1000;
    fail_in_header(&bc, at, hl, 1);
    run_bad(&bc);
    b_free(&bc.in);

    /* Over the frame limit, under the message limit. */
    bad_init(&bc, r, "frame of 51 > max_frame 50");
    at = b_frame_raw(&bc.in, 0x82, m, data, 51, &hl);
    bc.err = DX_ETOOBIG;
    bc.code = 1009;
    bc.max_message = 1000;
    bc.max_frame = 50;
    bc.reason = "frame too big"; /* names the limit that was passed */
    fail_in_header(&bc, at, hl, 1);
    run_bad(&bc);
    b_free(&bc.in);

    /* Across fragments: 60 + 41 > 100, refused at the second header. */
    bad_init(&bc, r, "fragments 60 + 41 > max_message 100");
    b_frame(&bc.in, r, 0, DX__OP_TEXT, data, 60);
    at = b_frame_raw(&bc.in, 0x80, m, data, 41, &hl);
    bc.err = DX_ETOOBIG;
    bc.code = 1009;
    bc.max_message = 100;
    bc.max_frame = 100;
    fail_in_header(&bc, at, hl, 1);
    run_bad(&bc);
    b_free(&bc.in);

    /* Across many small fragments with controls in between. */
    bad_init(&bc, r, "ten fragments of 11 > max_message 100");
    b_frame(&bc.in, r, 0, DX__OP_BINARY, data, 11);
    for (int i = 0; i < 8; i++) {
      b_frame(&bc.in, r, 0, DX__OP_CONT, data, 11);
      b_frame(&bc.in, r, 1, DX__OP_PONG, "", 0);
    }
    at = b_frame_raw(&bc.in, 0x80, m, data, 11, &hl);
    bc.err = DX_ETOOBIG;
    bc.code = 1009;
    bc.max_message = 100;
    bc.max_frame = 100;
    bc.nev_before = 8;
    fail_in_header(&bc, at, hl, 1);
    run_bad(&bc);
    b_free(&bc.in);

    /* Exactly at the limits is fine, fragmented or not. */
    ctx c;
    ctx_init(&c, r, 100, 100);
    bytes in = {0};
    b_frame(&in, r, 1, DX__OP_BINARY, data, 100);
    b_frame(&in, r, 0, DX__OP_TEXT, data, 50);
    b_frame(&in, r, 1, DX__OP_CONT, data, 50);
    assert_int_equal(feed(&c, in.p, in.len), (ssize_t)in.len);
    assert_int_equal(c.nev, 2);
    assert_int_equal(c.ev[0].len, 100);
    assert_int_equal(c.ev[1].len, 100);
    b_free(&in);
    /* The limit is per message: the next one starts from zero. */
    b_frame(&in, r, 0, DX__OP_BINARY, data, 99);
    b_frame(&in, r, 1, DX__OP_CONT, data, 1);
    assert_int_equal(feed(&c, in.p, in.len), (ssize_t)in.len);
    assert_int_equal(c.nev, 3);
    b_free(&in);
    ctx_done(&c);
  }

  /* Nothing of an oversized frame is buffered: with a 1 MiB limit, headers
   * announcing 2 MiB and 2^62 bytes fail on their own (no payload sent),
   * and no allocation near the announced size is attempted. */
  static const uint64_t huge[] = {2 * MIB, UINT64_C(1) << 62};
  for (int role = 0; role <= 1; role++) {
    for (size_t i = 0; i < 2; i++) {
      for (int frag = 0; frag <= 1; frag++) {
        ctx c;
        ctx_init(&c, (dx__role)role, MIB, huge[i] > 4 * MIB ? MIB : 4 * MIB);
        uint8_t h[20];
        size_t n = 0;
        if (frag) {
          bytes pre = {0};
          b_frame(&pre, c.role, 0, DX__OP_BINARY, data, 1000);
          assert_int_equal(feed(&c, pre.p, pre.len), (ssize_t)pre.len);
          b_free(&pre);
          h[n++] = 0x80;
        } else {
          h[n++] = 0x82;
        }
        h[n++] = (uint8_t)((role == DX__ROLE_SERVER ? 0x80 : 0) | 127);
        for (int b = 7; b >= 0; b--) h[n++] = (uint8_t)(huge[i] >> (8 * b));
        if (role == DX__ROLE_SERVER) {
          memcpy(h + n, "\x01\x02\x03\x04", 4);
          n += 4;
        }
        ssize_t r = feed(&c, h, n);
        if (r != DX_ETOOBIG)
          fail_msg("header announcing %llu bytes (role %d, frag %d): recv "
                   "returned %zd, want DX_ETOOBIG",
                   (unsigned long long)huge[i], role, frag, r);
        if (c.t.largest >= MIB)
          fail_msg("an allocation of %zu bytes was attempted", c.t.largest);
        oframe o[MAX_OUT];
        size_t no = take_output(&c, o);
        assert_int_equal(no, 1);
        assert_int_equal(close_code_of(&o[0]), 1009);
        oframes_free(o, no);
        ctx_done(&c);
      }
    }
  }
  free(data);
}

/* ---- memory follows the bytes received ----------------------------------- */

#define KIB ((size_t)1 << 10)

/* Feeds the frames of one message (`in`, headers included; the message is
 * data[0..size) with opcode `op`) to a fresh server-role session: first
 * `first` bytes, then the rest in pieces of `piece` bytes, the way a socket
 * delivers a large message. After every piece, what the session holds must
 * follow the payload received so far, not what the headers announced: at
 * most 64 KiB or four times the bytes fed. The message must arrive intact,
 * having cost at most four times its size at any moment and a logarithmic
 * number of allocation requests, and be released once delivered. */
static void check_memory_follows(const bytes *in, size_t first, size_t piece,
                                 int op, const uint8_t *data, size_t size,
                                 const char *what) {
  ctx c;
  ctx_init(&c, DX__ROLE_SERVER, 16 * MIB, 16 * MIB);
  size_t pos = 0;
  while (pos < in->len) {
    size_t want = pos ? piece : first;
    size_t n = in->len - pos < want ? in->len - pos : want;
    assert_int_equal(feed(&c, in->p + pos, n), (ssize_t)n);
    pos += n;
    size_t bound = 4 * pos > 64 * KIB ? 4 * pos : 64 * KIB;
    if (held(&c) > bound)
      fail_msg("%s: %zu bytes reserved after %zu bytes received (at most "
               "%zu allowed)", what, held(&c), pos, bound);
    if (pos == n)
      print_message("%s: %zu bytes received, %zu reserved\n", what, pos, held(&c));
  }
  assert_int_equal(c.nev, 1);
  assert_int_equal(c.ev[0].arg, op);
  assert_int_equal(c.ev[0].len, size);
  assert_memory_equal(c.ev[0].data, data, size);
  size_t peak = held_peak(&c);
  if (peak > 4 * size) fail_msg("%s: peak %zu bytes for %zu", what, peak, size);
  /* Doubling from a few KiB to 16 MiB: a dozen requests, not thousands. */
  if (c.t.requests > 16) fail_msg("%s: %ld allocation requests", what, c.t.requests);
  print_message("%s: peak %zu bytes, %ld requests\n", what, peak, c.t.requests);
  assert_int_equal(held(&c), 0); /* released with the message */
  ctx_done(&c);
}

/* A header announcing 16 MiB and ten payload bytes (14 + 10 bytes on the
 * wire) must not make the session reserve 16 MiB: the reassembly buffer
 * grows with the bytes that arrive (doubling), capped by the limits. The
 * same for a message in several frames, and a frame delivered whole still
 * costs no allocation at all (delivered in place). */
static void test_memory_follows_bytes(void **state) {
  (void)state;
  const size_t size = (size_t)(16 * MIB);
  uint8_t *data = malloc(size);
  assert_non_null(data);
  for (size_t i = 0; i < size; i++) data[i] = (uint8_t)(i * 31 + (i >> 13));

  /* One frame: its 14-byte header and ten payload bytes, then the rest. */
  bytes in = {0};
  b_frame(&in, DX__ROLE_SERVER, 1, DX__OP_BINARY, data, size);
  check_memory_follows(&in, 14 + 10, 64 * KIB, DX__OP_BINARY, data, size,
                       "one 16 MiB frame");
  b_free(&in);

  /* Four frames of 4 MiB, each header announcing its own frame. */
  const size_t q = size / 4;
  for (size_t i = 0; i < 4; i++)
    b_frame(&in, DX__ROLE_SERVER, i == 3, i ? DX__OP_CONT : DX__OP_BINARY,
            data + i * q, q);
  check_memory_follows(&in, 14 + 10, 64 * KIB, DX__OP_BINARY, data, size,
                       "four 4 MiB fragments");
  b_free(&in);

  /* A text message in 1000 fragments of 1 KiB, each arriving whole: the
   * buffer still doubles rather than growing 1000 times. */
  uint8_t *text = malloc(1000 * KIB);
  assert_non_null(text);
  memset(text, 'a', 1000 * KIB);
  for (size_t i = 0; i < 1000; i++)
    b_frame(&in, DX__ROLE_SERVER, i == 999, i ? DX__OP_CONT : DX__OP_TEXT,
            text + i * KIB, KIB);
  check_memory_follows(&in, KIB + 8, KIB + 8, DX__OP_TEXT, text, 1000 * KIB,
                       "1000 text fragments of 1 KiB");
  b_free(&in);
  free(text);

  /* A split frame whose size is known and small gets exactly that: a
   * 100-byte frame in two pieces reserves 100 bytes, once. */
  {
    ctx c;
    ctx_init(&c, DX__ROLE_SERVER, 16 * MIB, 16 * MIB);
    b_frame(&in, DX__ROLE_SERVER, 1, DX__OP_BINARY, data, 100);
    assert_int_equal(feed(&c, in.p, 50), 50);
    assert_int_equal(feed(&c, in.p + 50, in.len - 50), (ssize_t)(in.len - 50));
    assert_int_equal(c.nev, 1);
    assert_memory_equal(c.ev[0].data, data, 100);
    /* The session, the state of the frame under way (kept from the first
     * piece to the second), the buffer. */
    assert_int_equal(c.t.requests, 3);
    assert_int_equal(held_peak(&c), 100 + sizeof(dx__session_rx));
    assert_int_equal(held(&c), 0); /* both gone with the message */
    b_free(&in);
    ctx_done(&c);
  }

  /* The fast path is untouched: a whole 16 MiB frame in one piece is
   * delivered where it lies, with no allocation. */
  {
    ctx c;
    ctx_init(&c, DX__ROLE_SERVER, 16 * MIB, 16 * MIB);
    b_frame(&in, DX__ROLE_SERVER, 1, DX__OP_BINARY, data, size);
    assert_int_equal(feed(&c, in.p, in.len), (ssize_t)in.len);
    assert_int_equal(c.nev, 1);
    assert_memory_equal(c.ev[0].data, data, size);
    assert_int_equal(c.t.requests, 1); /* the session only */
    b_free(&in);
    ctx_done(&c);
  }
  free(data);
}

/* ---- closing handshake ---------------------------------------------------- */

static void test_close_codes_table(void **state) {
  (void)state;
  for (int code = -5; code < 70000; code++) {
    int want = (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
               (code >= 3000 && code <= 4999);
    if (dx__close_code_valid(code) != want)
      fail_msg("dx__close_code_valid(%d) = %d, want %d", code,
               dx__close_code_valid(code), want);
  }
}

static void test_bad_close_frames(void **state) {
  (void)state;
  static const int bad_codes[] = {0, 1, 999, 1004, 1005, 1006, 1015, 1016,
                                  1100, 2000, 2999, 5000, 65535};
  for (int role = 0; role <= 1; role++) {
    dx__role r = (dx__role)role;
    int m = r == DX__ROLE_SERVER;
    bad_case bc;
    size_t hl, at;

    bad_init(&bc, r, "close with a 1-byte payload");
    at = b_frame_raw(&bc.in, 0x88, m, "\x03", 1, &hl);
    bc.err = DX_EPROTO;
    bc.code = 1002;
    bc.fail_lo = at + 1;
    bc.fail_hi = bc.in.len - 1;
    run_bad(&bc);
    b_free(&bc.in);

    for (size_t i = 0; i < sizeof bad_codes / sizeof bad_codes[0]; i++) {
      bad_init(&bc, r, "close code %d", bad_codes[i]);
      at = b_close(&bc.in, r, bad_codes[i], "why", 3);
      bc.err = DX_EPROTO;
      bc.code = 1002;
      bc.fail_lo = at + (m ? 6 : 2) + 1; /* second code byte */
      bc.fail_hi = bc.in.len - 1;
      run_bad(&bc);
      b_free(&bc.in);
    }

    bad_init(&bc, r, "close reason with invalid UTF-8");
    at = b_close(&bc.in, r, 1000, "ok\xf4\x90zz", 6);
    bc.err = DX_EUTF8;
    bc.code = 1007;
    bc.fail_lo = at + (m ? 6 : 2) + 2 + 3; /* the 0x90 */
    bc.fail_hi = bc.in.len - 1;
    run_bad(&bc);
    b_free(&bc.in);

    bad_init(&bc, r, "close reason ending inside a character");
    b_close(&bc.in, r, 1000, "ok\xe2\x82", 4);
    bc.err = DX_EUTF8;
    bc.code = 1007;
    bc.fail_lo = bc.fail_hi = bc.in.len - 1;
    run_bad(&bc);
    b_free(&bc.in);
  }
}

/* The peer closes first: on_close gets its code and reason, the same code
 * is echoed, the state is CLOSED, and later input is ignored. */
static void test_peer_closes(void **state) {
  (void)state;
  static const int good[] = {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010,
                             1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999};
  char reason123[124];
  memset(reason123, 'r', 123);
  reason123[123] = 0;
  for (int role = 0; role <= 1; role++) {
    dx__role r = (dx__role)role;
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
      for (int variant = 0; variant < 3; variant++) {
        const char *reason = variant == 0 ? "" : variant == 1 ? "bye \xce\xba" : reason123;
        size_t rlen = strlen(reason);
        bytes in = {0};
        b_close(&in, r, good[i], reason, rlen);
        /* Everything after the close is ignored. */
        b_frame(&in, r, 1, DX__OP_TEXT, "after", 5);
        b_frame(&in, r, 1, DX__OP_PING, "after", 5);
        b_frame_raw(&in, 0xFF, 0, "junk", 4, NULL);
        for (size_t cut = 0; cut <= in.len; cut += (variant == 2 ? 17 : 1)) {
          ctx c;
          ctx_init(&c, r, MIB, MIB);
          size_t cuts[2] = {cut, in.len};
          feed_ok_cuts(&c, in.p, in.len, cuts, 2, "peer close");
          want_ev w = {EV_CLOSE, good[i], reason, rlen};
          check_events(&c, &w, 1, "peer close");
          oframe o[MAX_OUT];
          size_t no = take_output(&c, o);
          assert_int_equal(no, 1);
          assert_int_equal(o[0].op, DX__OP_CLOSE);
          if (close_code_of(&o[0]) != good[i])
            fail_msg("echoed close code %d, want %d", close_code_of(&o[0]), good[i]);
          oframes_free(o, no);
          assert_int_equal(dx__session_state(c.s), DX__S_CLOSED);
          assert_int_equal(dx__session_close_received(c.s), 1);
          assert_int_equal(dx__session_close_sent(c.s), 1);
          assert_int_equal(dx__session_received_code(c.s), good[i]);
          assert_int_equal(dx__session_sent_code(c.s), good[i]);
          assert_string_equal(dx__session_received_reason(c.s), reason);
          /* Nothing may be sent now. */
          assert_int_equal(dx__session_send(c.s, DX__OP_TEXT, "x", 1), DX_ESTATE);
          assert_int_equal(dx__session_close(c.s, 1000, NULL, 0), DX_ESTATE);
          const uint8_t *p;
          assert_int_equal(dx__session_pending(c.s, &p), 0);
          ctx_done(&c);
        }
        b_free(&in);
      }
    }
    /* A close without a code: reported as 1005, answered by a close that
     * does not carry 1005 (an empty one, or 1000). */
    ctx c;
    ctx_init(&c, r, MIB, MIB);
    bytes in = {0};
    b_close(&in, r, -1, NULL, 0);
    assert_int_equal(feed(&c, in.p, in.len), (ssize_t)in.len);
    want_ev w = {EV_CLOSE, 1005, "", 0};
    check_events(&c, &w, 1, "empty close");
    assert_int_equal(dx__session_received_code(c.s), 1005);
    assert_string_equal(dx__session_received_reason(c.s), "");
    oframe o[MAX_OUT];
    size_t no = take_output(&c, o);
    assert_int_equal(no, 1);
    assert_int_equal(o[0].op, DX__OP_CLOSE);
    assert_true(o[0].len == 0 || (o[0].len == 2 && close_code_of(&o[0]) == 1000));
    oframes_free(o, no);
    assert_int_equal(dx__session_state(c.s), DX__S_CLOSED);
    b_free(&in);
    ctx_done(&c);
  }
}

/* We close first: our frame carries the code and reason, sending is over,
 * data frames the peer still sends are ignored (not delivered, not an
 * error), and the peer's close completes the handshake without a second
 * close from us. */
static void test_we_close(void **state) {
  (void)state;
  for (int role = 0; role <= 1; role++) {
    dx__role r = (dx__role)role;
    ctx c;
    ctx_init(&c, r, MIB, MIB);
    assert_int_equal(dx__session_close(c.s, 4001, "bye", 3), 0);
    oframe o[MAX_OUT];
    size_t no = take_output(&c, o);
    assert_int_equal(no, 1);
    assert_int_equal(o[0].op, DX__OP_CLOSE);
    assert_int_equal(o[0].len, 5);
    assert_int_equal(close_code_of(&o[0]), 4001);
    assert_memory_equal(o[0].data + 2, "bye", 3);
    oframes_free(o, no);
    assert_int_equal(dx__session_state(c.s), DX__S_CLOSING);
    assert_int_equal(dx__session_close_sent(c.s), 1);
    assert_int_equal(dx__session_close_received(c.s), 0);
    assert_int_equal(dx__session_sent_code(c.s), 4001);

    /* Sending is over: DX_ESTATE, nothing queued. */
    const uint8_t *p;
    assert_int_equal(dx__session_send(c.s, DX__OP_TEXT, "x", 1), DX_ESTATE);
    assert_int_equal(dx__session_send(c.s, DX__OP_BINARY, "x", 1), DX_ESTATE);
    assert_int_equal(dx__session_close(c.s, 1000, NULL, 0), DX_ESTATE);
    assert_int_equal(dx__session_pending(c.s, &p), 0);

    /* The peer had messages in flight: two whole ones and a fragmented
     * one, then its close. */
    bytes in = {0};
    b_frame(&in, r, 1, DX__OP_TEXT, "in flight 1", 11);
    b_frame(&in, r, 1, DX__OP_BINARY, "in flight 2", 11);
    b_frame(&in, r, 0, DX__OP_TEXT, "in ", 3);
    b_frame(&in, r, 1, DX__OP_CONT, "flight 3", 8);
    b_frame(&in, r, 1, DX__OP_PONG, "pong", 4);
    b_close(&in, r, 1000, "ok", 2);
    ssize_t got = feed(&c, in.p, in.len);
    if (got != (ssize_t)in.len)
      fail_msg("role %d: data after our close: recv returned %zd, want %zu",
               role, got, in.len);
    for (size_t i = 0; i < c.nev; i++)
      if (c.ev[i].kind == EV_MSG)
        fail_msg("role %d: message %zu delivered after our close", role, i);
    assert_int_equal(c.ev[c.nev - 1].kind, EV_CLOSE);
    assert_int_equal(c.ev[c.nev - 1].arg, 1000);
    assert_int_equal(dx__session_state(c.s), DX__S_CLOSED);
    assert_int_equal(dx__session_received_code(c.s), 1000);
    assert_int_equal(dx__session_sent_code(c.s), 4001);
    assert_int_equal(dx__session_pending(c.s, &p), 0); /* no second close */
    b_free(&in);
    ctx_done(&c);
  }
}

/* A message callback that starts the closing handshake: later messages in
 * the same read are not delivered. */
static void test_close_from_callback(void **state) {
  (void)state;
  ctx c;
  ctx_init(&c, DX__ROLE_SERVER, MIB, MIB);
  c.close_on_message = 1;
  bytes in = {0};
  b_frame(&in, c.role, 1, DX__OP_TEXT, "first", 5);
  b_frame(&in, c.role, 1, DX__OP_TEXT, "second", 6);
  b_frame(&in, c.role, 1, DX__OP_TEXT, "third", 5);
  ssize_t got = feed(&c, in.p, in.len);
  if (got != (ssize_t)in.len) fail_msg("recv returned %zd, want %zu", got, in.len);
  assert_int_equal(c.nev, 1);
  assert_int_equal(dx__session_state(c.s), DX__S_CLOSING);
  b_free(&in);
  ctx_done(&c);
}

static void test_close_arguments(void **state) {
  (void)state;
  char long_reason[125];
  memset(long_reason, 'a', sizeof long_reason);
  for (int role = 0; role <= 1; role++) {
    ctx c;
    ctx_init(&c, (dx__role)role, MIB, MIB);
    const uint8_t *p;
    assert_int_equal(dx__session_close(c.s, 1005, NULL, 0), DX_ECLOSECODE);
    assert_int_equal(dx__session_close(c.s, 1006, NULL, 0), DX_ECLOSECODE);
    assert_int_equal(dx__session_close(c.s, 999, NULL, 0), DX_ECLOSECODE);
    assert_int_equal(dx__session_close(c.s, 5000, NULL, 0), DX_ECLOSECODE);
    assert_int_equal(dx__session_close(c.s, 1000, long_reason, 124), DX_EINVAL);
    assert_int_equal(dx__session_close(c.s, 1000, "\xc0\x80", 2), DX_EUTF8);
    assert_int_equal(dx__session_close(c.s, 1000, "\xe2\x82", 2), DX_EUTF8);
    assert_int_equal(dx__session_pending(c.s, &p), 0);
    assert_int_equal(dx__session_state(c.s), DX__S_OPEN);
    assert_int_equal(dx__session_close_sent(c.s), 0);
    assert_string_equal(dx__session_sent_reason(c.s), "");
    /* 123 bytes is the most a close reason can hold. */
    assert_int_equal(dx__session_close(c.s, 1000, long_reason, 123), 0);
    oframe o[MAX_OUT];
    size_t no = take_output(&c, o);
    assert_int_equal(no, 1);
    assert_int_equal(o[0].len, 125);
    oframes_free(o, no);
    /* Kept after the frame left: the end of the connection reports it. */
    assert_int_equal(strlen(dx__session_sent_reason(c.s)), 123);
    assert_memory_equal(dx__session_sent_reason(c.s), long_reason, 123);
    ctx_done(&c);

    /* Code 0: a close frame with no payload. */
    ctx_init(&c, (dx__role)role, MIB, MIB);
    assert_int_equal(dx__session_close(c.s, 0, NULL, 0), 0);
    no = take_output(&c, o);
    assert_int_equal(no, 1);
    assert_int_equal(o[0].op, DX__OP_CLOSE);
    assert_int_equal(o[0].len, 0);
    oframes_free(o, no);
    assert_int_equal(dx__session_sent_code(c.s), 0);
    assert_string_equal(dx__session_sent_reason(c.s), "");
    assert_int_equal(dx__session_close_sent(c.s), 1);
    ctx_done(&c);

    /* No memory to keep the reason: nothing is sent, the session stays
     * OPEN, and a later close may succeed. */
    ctx_init(&c, (dx__role)role, MIB, MIB);
    long live = c.t.live;
    c.t.fail_at = c.t.requests;
    assert_int_equal(dx__session_close(c.s, 4000, "bye", 3), DX_ENOMEM);
    assert_int_equal(dx__session_pending(c.s, &p), 0);
    assert_int_equal(dx__session_state(c.s), DX__S_OPEN);
    assert_int_equal(dx__session_close_sent(c.s), 0);
    assert_int_equal(c.t.live, live);
    c.t.fail_at = -1;
    assert_int_equal(dx__session_close(c.s, 4000, "bye", 3), 0);
    assert_int_equal(dx__session_sent_code(c.s), 4000);
    assert_string_equal(dx__session_sent_reason(c.s), "bye");
    no = take_output(&c, o);
    assert_int_equal(no, 1);
    oframes_free(o, no);
    ctx_done(&c);
  }
}

/* ---- nothing held between messages -------------------------------------- */

/* The state of a frame or message under way lives in a block of its own,
 * allocated only when input ends inside one, and freed when it is done:
 * a session between messages holds nothing (an idle connection's memory,
 * bench/README.md). Frames that arrive whole, up to 64 KiB, cost no
 * allocation at all. */
static void test_state_only_mid_message(void **state) {
  (void)state;
  for (int role = 0; role <= 1; role++) {
    ctx c;
    ctx_init(&c, (dx__role)role, MIB, MIB);
    uint8_t data[3000];
    for (size_t i = 0; i < sizeof data; i++) data[i] = (uint8_t)(i * 7);
    bytes in = {0};
    /* Whole frames of 20 B, 1 KiB (a 16-bit length) and 3000 B. */
    size_t sizes[] = {20, 1024, sizeof data};
    for (size_t i = 0; i < 3; i++) b_frame(&in, (dx__role)role, 1, DX__OP_BINARY, data, sizes[i]);
    long requests = c.t.requests;
    assert_int_equal(feed(&c, in.p, in.len), (ssize_t)in.len);
    assert_int_equal(c.t.requests, requests);
    assert_int_equal(c.nev, 3);
    for (size_t i = 0; i < 3; i++) assert_int_equal(c.ev[i].len, sizes[i]);
    b_free(&in);

    /* One byte of a header, then the rest: the state is held only in
     * between. */
    b_frame(&in, (dx__role)role, 1, DX__OP_BINARY, data, 1024);
    assert_int_equal(feed(&c, in.p, 1), 1);
    assert_int_equal(held(&c), sizeof(dx__session_rx));
    assert_int_equal(feed(&c, in.p + 1, in.len - 1), (ssize_t)(in.len - 1));
    assert_int_equal(c.nev, 4);
    assert_memory_equal(c.ev[3].data, data, 1024);
    assert_int_equal(held(&c), 0);
    b_free(&in);

    /* A message in two frames that arrive together, then whole frames
     * behind it in the same read: nothing is kept after it. */
    b_frame(&in, (dx__role)role, 0, DX__OP_TEXT, "ab", 2);
    b_frame(&in, (dx__role)role, 1, DX__OP_CONT, "cd", 2);
    b_frame(&in, (dx__role)role, 1, DX__OP_TEXT, "ef", 2);
    assert_int_equal(feed(&c, in.p, in.len), (ssize_t)in.len);
    assert_int_equal(c.nev, 6);
    assert_int_equal(c.ev[4].len, 4);
    assert_memory_equal(c.ev[4].data, "abcd", 4);
    assert_memory_equal(c.ev[5].data, "ef", 2);
    assert_int_equal(held(&c), 0);
    b_free(&in);
    ctx_done(&c);
  }
}

/* ---- allocation failure ------------------------------------------------------ */

/* A scenario touching every allocation the session makes: reassembly, a
 * control frame split across reads, pongs, sends, close with a reason.
 * Returns 1 if it ran to the end with no allocation failure seen. */
static int alloc_scenario(dx__role role, long fail_at, int sticky) {
  ctx c;
  memset(&c, 0, sizeof c);
  c.role = role;
  c.t.fail_at = fail_at;
  c.t.fail_sticky = sticky;
  c.cfg.role = role;
  c.cfg.max_message = MIB;
  c.cfg.max_frame = MIB;
  c.cfg.random = fake_random;
  c.cfg.random_ud = &c;
  c.ops.cb.on_message = cb_message;
  c.ops.cb.on_ping = cb_ping;
  c.ops.cb.on_pong = cb_pong;
  c.ops.cb.on_close = cb_close;
  c.ops.alloc.realloc = track_realloc;
  c.ops.alloc.ud = &c.t;
  c.s = dx__session_new(&c.cfg, &c.ops);
  if (!c.s) {
    assert_int_equal(c.t.live, 0);
    return 0;
  }
  int clean = 1;
  bytes in = {0};
  uint8_t big[3000];
  memset(big, 'q', sizeof big);
  b_frame(&in, role, 0, DX__OP_TEXT, "frag", 4);
  b_frame(&in, role, 1, DX__OP_PING, "ping!", 5);
  b_frame(&in, role, 0, DX__OP_CONT, big, sizeof big);
  b_frame(&in, role, 1, DX__OP_CONT, "end", 3);
  b_frame(&in, role, 1, DX__OP_BINARY, big, 200);
  b_close(&in, role, 1001, "going away", 10);
  /* Cut in a few places, including inside the ping and the close. */
  size_t cuts[] = {3, 10, 11, 50, 2000, in.len - 5, in.len};
  size_t pos = 0;
  for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
    ssize_t r = feed(&c, in.p + pos, cuts[i] - pos);
    if (r < 0) {
      if (r != DX_ENOMEM) fail_msg("fail_at %ld: recv returned %zd", fail_at, r);
      assert_int_not_equal(dx__session_state(c.s), DX__S_OPEN);
      clean = 0;
      break;
    }
    assert_int_equal(r, (ssize_t)(cuts[i] - pos));
    pos = cuts[i];
    /* Interleave sends (they may fail with ENOMEM, or ESTATE once
     * closing). */
    int s = dx__session_send(c.s, DX__OP_BINARY, big, 100 * i);
    if (s == DX_ENOMEM) clean = 0;
    else if (s != 0 && s != DX_ESTATE) fail_msg("send returned %d", s);
    s = dx__session_control(c.s, DX__OP_PING, "p", 1);
    if (s == DX_ENOMEM) clean = 0;
    else if (s != 0 && s != DX_ESTATE) fail_msg("control returned %d", s);
    if (i == 2) {
      /* Write out the first queued frame only, so the output buffer is
       * both consumed from the front and grown later. */
      const uint8_t *p;
      size_t n = dx__session_pending(c.s, &p);
      if (n >= 2) {
        size_t f = 2 + (p[1] & 0x7F) + ((p[1] & 0x80) ? 4 : 0);
        assert_true((p[1] & 0x7F) < 126 && f <= n);
        dx__session_consumed(c.s, f);
      }
    }
  }
  /* Whatever happened, pending output is whole frames (or empty), and any
   * close frame we queued carries a sane code. */
  oframe o[MAX_OUT];
  size_t no = take_output(&c, o);
  for (size_t i = 0; i < no; i++) {
    if (o[i].op == DX__OP_CLOSE) {
      int code = close_code_of(&o[i]);
      assert_true(code == 1001 || code == 1011);
    }
  }
  oframes_free(o, no);
  /* Any close event carries what the peer sent. */
  for (size_t i = 0; i < c.nev; i++) {
    if (c.ev[i].kind == EV_CLOSE) assert_int_equal(c.ev[i].arg, 1001);
    if (c.ev[i].kind == EV_MSG)
      assert_true(c.ev[i].len == 3007 || c.ev[i].len == 200);
  }
  /* No failure was injected when the run made fewer requests. */
  int attempted = fail_at >= c.t.requests;
  if (attempted) assert_true(clean);
  b_free(&in);
  ctx_done(&c); /* asserts nothing leaked */
  return attempted;
}

static void test_alloc_failures(void **state) {
  (void)state;
  for (int role = 0; role <= 1; role++) {
    /* Find how many requests a clean run makes, then fail each one. */
    long i;
    for (i = 0; i < 1000; i++) {
      alloc_scenario((dx__role)role, i, 1);
      if (alloc_scenario((dx__role)role, i, 0)) break;
    }
    assert_true(i > 0 && i < 1000);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_rfc_examples),
      cmocka_unit_test(test_control_between_fragments),
      cmocka_unit_test(test_utf8_across_fragments_valid),
      cmocka_unit_test(test_ping_pong),
      cmocka_unit_test(test_send),
      cmocka_unit_test(test_send_small),
      cmocka_unit_test(test_spare_block),
      cmocka_unit_test(test_send_from_callback),
      cmocka_unit_test(test_masking_rules),
      cmocka_unit_test(test_rsv_bits),
      cmocka_unit_test(test_allowed_rsv_without_extension_state),
      cmocka_unit_test(test_reserved_opcodes),
      cmocka_unit_test(test_fragmentation_rules),
      cmocka_unit_test(test_control_frame_rules),
      cmocka_unit_test(test_length_encodings),
      cmocka_unit_test(test_utf8_fail_fast),
      cmocka_unit_test(test_max_message),
      cmocka_unit_test(test_memory_follows_bytes),
      cmocka_unit_test(test_state_only_mid_message),
      cmocka_unit_test(test_close_codes_table),
      cmocka_unit_test(test_bad_close_frames),
      cmocka_unit_test(test_peer_closes),
      cmocka_unit_test(test_we_close),
      cmocka_unit_test(test_close_from_callback),
      cmocka_unit_test(test_close_arguments),
      cmocka_unit_test(test_alloc_failures),
  };
  return cmocka_run_group_tests_name("session", tests, NULL, NULL);
}
