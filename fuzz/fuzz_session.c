/* libFuzzer target for src/proto/session.c (both roles).
 *
 * Input layout (in the spirit of uWebSockets' fuzzing helpers, where the
 * input also decides how the wire bytes are chopped):
 *   byte 0  mode: bit 0 role (1 = client), bit 1 small limits, bit 2
 *           permessage-deflate negotiated, bit 3 fail an allocation in
 *           run C, bits 4-7 which one
 *   byte 1  bits 0-3: how many split bytes follow (0 = byte by byte);
 *           bits 4-7: seed for the actions of run C (bit 5: no context
 *           takeover; bit 6 without deflate: RSV2+RSV3 allowed)
 *   then    that many chunk sizes (0-255, used in turn)
 *   rest    what the peer sent
 *
 * Run A feeds the wire bytes at once; run B feeds them in the chosen chunks
 * with harmless sends (pings, messages) in between and must produce exactly
 * the same events, error and close code; run C also closes, drains output
 * in odd pieces and (optionally) fails one or every allocation from some
 * point on. In every run the callbacks check what they are given (text is
 * valid UTF-8, sizes within limits, close codes legal), and all the output
 * must be well-formed frames that a peer session of the other role accepts
 * without error. In run A without permessage-deflate (where inflated
 * bytes, not received ones, rightly fill the buffer), nothing is sent but
 * the session's own replies, so memory must follow the bytes received: no
 * allocation larger than 64 KiB or four times the bytes fed, whatever the frame
 * headers announce. Runs B and (for half the seeds) C keep a spare output
 * block as a loop does for its connections (dx__session_out_lend before
 * each feed, dx__session_out_return after it, dx__session_consumed_to when
 * draining), which must change nothing B is compared on, and every block
 * must come back. Any violation aborts. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "duplex.h"
#include "proto/deflate.h"
#include "proto/frame.h"
#include "proto/session.h"
#include "proto/utf8.h"

#include "fuzz_check.h"

typedef struct run {
  dx__session_config cfg; /* this run's own: how a callback finds the run */
  dx__session_ops ops;
  dx__session *s;
  dx__role role;
  int pmd;               /* permessage-deflate attached */
  dx__pmd_params params; /* as agreed, for the peer in check_output */
  uint64_t hash; /* FNV-1a over every event */
  size_t nev;
  /* allocator */
  long requests, fail_at, live;
  int sticky;
  size_t fed;        /* bytes given to dx__session_recv so far */
  int bound_alloc;   /* check each request against `fed` */
  /* everything written, in order */
  uint8_t *out;
  size_t out_len, out_cap;
  uint32_t rnd;
  int lend;    /* keep a spare output block, as conn.c does */
  void *spare; /* its slot */
} run;

static void mix(run *r, const void *p, size_t n) {
  const uint8_t *b = p;
  for (size_t i = 0; i < n; i++) {
    r->hash ^= b[i];
    r->hash *= UINT64_C(0x100000001b3);
  }
}

static void mix_event(run *r, int kind, int arg, const uint8_t *d, size_t n) {
  r->nev++;
  mix(r, &kind, sizeof kind);
  mix(r, &arg, sizeof arg);
  mix(r, &n, sizeof n);
  if (n) mix(r, d, n);
}

/* The run a session belongs to. */
static run *run_of(dx__session *s) {
  return (run *)((char *)dx__session_cfg(s) - offsetof(run, cfg));
}

static void on_message(dx__session *s, int opcode, uint8_t *data, size_t len) {
  run *r = run_of(s);
  CHECK(opcode == DX__OP_TEXT || opcode == DX__OP_BINARY);
  CHECK(len <= r->cfg.max_message);
  CHECK(len == 0 || data != NULL);
  if (opcode == DX__OP_TEXT) CHECK(dx__utf8_validate(data, len) == 0);
  mix_event(r, 1, opcode, data, len);
}

static void on_ping(dx__session *s, const uint8_t *data, size_t len) {
  CHECK(len <= 125);
  mix_event(run_of(s), 2, 0, data, len);
}

static void on_pong(dx__session *s, const uint8_t *data, size_t len) {
  CHECK(len <= 125);
  mix_event(run_of(s), 3, 0, data, len);
}

static void on_close(dx__session *s, int code, const char *reason, size_t len) {
  CHECK(code == DX_CLOSE_NO_STATUS || dx__close_code_valid(code));
  CHECK(len == 0 || reason != NULL);
  CHECK(len <= 123);
  /* `len` bytes of UTF-8, not NUL-terminated: validating exactly those
   * bytes makes ASan catch a pointer that does not hold them. */
  CHECK(dx__utf8_validate((const uint8_t *)reason, len) == 0);
  mix_event(run_of(s), 4, code, (const uint8_t *)reason, len);
}

static void *fuzz_realloc(void *ud, void *p, size_t n) {
  run *r = ud;
  if (n == 0) {
    if (p) {
      free(p);
      r->live--;
    }
    return NULL;
  }
  long idx = r->requests++;
  if (r->fail_at >= 0 && (idx == r->fail_at || (r->sticky && idx > r->fail_at)))
    return NULL;
  /* A header announcing a megabyte is a few bytes: it must not buy one. */
  if (r->bound_alloc) CHECK(n <= 65536 || n <= 4 * r->fed);
  void *q = realloc(p, n);
  if (q && !p) r->live++;
  return q;
}

static void fake_random(void *ud, uint8_t *out, size_t n) {
  run *r = ud;
  for (size_t i = 0; i < n; i++) {
    r->rnd = r->rnd * 1664525u + 1013904223u;
    out[i] = (uint8_t)(r->rnd >> 24);
  }
}

static int run_start(run *r, uint8_t mode, uint8_t seed, long fail_at,
                     int sticky) {
  memset(r, 0, sizeof *r);
  r->role = (mode & 1) ? DX__ROLE_CLIENT : DX__ROLE_SERVER;
  r->cfg.role = r->role;
  r->cfg.max_message = (mode & 2) ? 300 : 1 << 20;
  r->cfg.max_frame = (mode & 2) ? 200 : 1 << 20;
  r->cfg.allowed_rsv = (!(mode & 4) && (seed & 4)) ? DX__RSV2 | DX__RSV3 : 0;
  r->cfg.random = fake_random;
  r->cfg.random_ud = r;
  r->ops.cb.on_message = on_message;
  r->ops.cb.on_ping = on_ping;
  r->ops.cb.on_pong = on_pong;
  r->ops.cb.on_close = on_close;
  r->ops.alloc.realloc = fuzz_realloc;
  r->ops.alloc.ud = r;
  r->fail_at = fail_at;
  r->sticky = sticky;
  r->hash = UINT64_C(0xcbf29ce484222325);
  r->rnd = 12345;
  r->s = dx__session_new(&r->cfg, &r->ops);
  if (!r->s) {
    CHECK(fail_at >= 0 && r->live == 0);
    return 0;
  }
  if (mode & 4) {
    /* Small windows keep zlib's memory (and the fuzzer's time) down. */
    r->params.server_no_context_takeover = (seed >> 1) & 1;
    r->params.client_no_context_takeover = (seed >> 1) & 1;
    r->params.server_max_window_bits = 9 + (seed & 1) * 6;
    r->params.client_max_window_bits = 9 + (seed & 1) * 6;
    dx__pmd *d = dx__pmd_new(&r->params, NULL, r->role == DX__ROLE_SERVER,
                             &r->ops.alloc);
    if (d) {
      dx__session_set_pmd(r->s, d);
      r->pmd = 1;
    } else {
      CHECK(fail_at >= 0);
    }
  }
  return 1;
}

/* Moves up to `max` pending bytes into the output log. */
static void drain(run *r, size_t max) {
  const uint8_t *p;
  size_t n = dx__session_pending(r->s, &p);
  if (n > max) n = max;
  if (!n) return;
  if (r->out_len + n > r->out_cap) {
    r->out_cap = (r->out_len + n) * 2;
    r->out = realloc(r->out, r->out_cap);
    CHECK(r->out);
  }
  memcpy(r->out + r->out_len, p, n);
  r->out_len += n;
  if (r->lend)
    dx__session_consumed_to(r->s, n, &r->spare);
  else
    dx__session_consumed(r->s, n);
}

static void run_end(run *r) {
  dx__session_free(r->s);
  r->s = NULL;
  dx__session_out_free(&r->ops, r->spare);
  r->spare = NULL;
  CHECK(r->live == 0); /* everything the session allocated came back */
  free(r->out);
  r->out = NULL;
}

/* The result of recv is len or one of the documented errors; after an
 * error the session is no longer OPEN. */
static ssize_t feed(run *r, const uint8_t *d, size_t n, int may_enomem) {
  uint8_t *copy = malloc(n ? n : 1);
  CHECK(copy);
  if (n) memcpy(copy, d, n);
  r->fed += n;
  if (r->lend) {
    /* Lending changes where output goes, never what is pending. */
    const uint8_t *p;
    size_t before = dx__session_pending(r->s, &p);
    dx__session_out_lend(r->s, &r->spare);
    CHECK(dx__session_pending(r->s, &p) == before);
  }
  ssize_t got = dx__session_recv(r->s, copy, n);
  if (r->lend) dx__session_out_return(r->s, &r->spare);
  free(copy);
  if (got < 0) {
    CHECK(got == DX_EPROTO || got == DX_EUTF8 || got == DX_ETOOBIG ||
          (may_enomem && got == DX_ENOMEM));
    CHECK(dx__session_state(r->s) != DX__S_OPEN);
  } else {
    CHECK((size_t)got == n);
  }
  return got;
}

/* Decodes our whole output independently: whole frames, masked iff we are
 * a client, no RSV, legal opcodes, controls <= 125 bytes, close frames
 * with a legal code and UTF-8 reason, nothing but controls after our
 * close (and no second close). Then a peer session must accept it all. */
static void check_output(const run *r) {
  const uint8_t *p = r->out;
  size_t n = r->out_len, pos = 0;
  int closed = 0;
  while (pos < n) {
    CHECK(n - pos >= 2);
    unsigned op = p[pos] & 0xF;
    /* RSV1 only on data frames of a deflate connection; never RSV2/3. */
    CHECK((p[pos] & 0x30) == 0);
    if (p[pos] & 0x40) CHECK(r->pmd && (op == 1 || op == 2));
    CHECK(op == 0 || op == 1 || op == 2 || op == 8 || op == 9 || op == 10);
    CHECK(p[pos] & 0x80); /* we never fragment */
    int masked = p[pos + 1] >> 7;
    CHECK(masked == (r->role == DX__ROLE_CLIENT));
    uint64_t len = p[pos + 1] & 0x7F;
    size_t h = 2;
    if (len == 126) {
      CHECK(n - pos >= 4);
      len = ((uint64_t)p[pos + 2] << 8) | p[pos + 3];
      CHECK(len >= 126);
      h = 4;
    } else if (len == 127) {
      CHECK(n - pos >= 10);
      len = 0;
      for (int i = 0; i < 8; i++) len = (len << 8) | p[pos + 2 + i];
      CHECK(len > 0xFFFF);
      h = 10;
    }
    uint8_t key[4] = {0, 0, 0, 0};
    if (masked) {
      CHECK(n - pos >= h + 4);
      memcpy(key, p + pos + h, 4);
      h += 4;
    }
    CHECK(n - pos - h >= len);
    if (op & 8) CHECK(len <= 125);
    if (op == 8 || op == 1 || op == 2) CHECK(!closed);
    if (op == 8) {
      closed = 1;
      uint8_t pl[125];
      for (size_t i = 0; i < len; i++) pl[i] = p[pos + h + i] ^ key[i & 3];
      CHECK(len != 1);
      if (len >= 2) {
        CHECK(dx__close_code_valid((pl[0] << 8) | pl[1]));
        CHECK(dx__utf8_validate(pl + 2, len - 2) == 0);
      }
    }
    pos += h + (size_t)len;
  }
  CHECK(pos == n);

  /* The peer: the other role, generous limits, the same agreement. */
  run peer;
  CHECK(run_start(&peer, r->role == DX__ROLE_CLIENT ? 0 : 1, 0, -1, 0));
  if (r->pmd) {
    dx__pmd *d = dx__pmd_new(&r->params, NULL, r->role != DX__ROLE_SERVER,
                             &peer.ops.alloc);
    CHECK(d);
    dx__session_set_pmd(peer.s, d);
  }
  peer.cfg.max_message = peer.cfg.max_frame = 1 << 20;
  CHECK(feed(&peer, r->out, r->out_len, 0) == (ssize_t)r->out_len);
  run_end(&peer);
}

typedef struct outcome {
  ssize_t err; /* first negative recv result, 0 when none */
  uint64_t hash;
  size_t nev;
  int state, sent_code, close_received;
} outcome;

static outcome finish(run *r, ssize_t err) {
  outcome o;
  o.err = err;
  o.hash = r->hash;
  o.nev = r->nev;
  o.state = dx__session_state(r->s);
  o.sent_code = dx__session_sent_code(r->s);
  o.close_received = dx__session_close_received(r->s);
  return o;
}

/* Text we may send: valid UTF-8 taken from a fixed palette. */
static const char *const TEXTS[] = {"", "hi", "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5",
                                    "\xf0\x9f\x98\x80", "0123456789abcdef0123456789"};

static uint32_t next(uint32_t *x) {
  *x ^= *x << 13;
  *x ^= *x >> 17;
  *x ^= *x << 5;
  return *x;
}

/* The i-th chunk: split bytes in turn (0 counts as 1, after an empty
 * recv in run B), or 1 byte at a time when there are none. */
static size_t chunk_size(const uint8_t *splits, size_t nsplit, size_t i) {
  if (!nsplit) return 1;
  size_t c = splits[i % nsplit];
  return c ? c : 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2) return 0;
  uint8_t mode = data[0];
  size_t nsplit = data[1] & 0xF;
  uint8_t seed4 = data[1] >> 4;
  uint32_t seed = (uint32_t)seed4 * 2654435761u + 1;
  if (size < 2 + nsplit) return 0;
  const uint8_t *splits = data + 2;
  const uint8_t *wire = data + 2 + nsplit;
  size_t n = size - 2 - nsplit;

  /* Run A: everything at once. */
  run a;
  CHECK(run_start(&a, mode, seed4, -1, 0));
  a.bound_alloc = !a.pmd;
  ssize_t ra = feed(&a, wire, n, 0);
  drain(&a, SIZE_MAX);
  outcome oa = finish(&a, ra < 0 ? ra : 0);
  check_output(&a);
  run_end(&a);

  /* Run B: in chunks, with sends that cannot change what is received. */
  run b;
  CHECK(run_start(&b, mode, seed4, -1, 0));
  b.lend = 1;
  ssize_t rb = 0;
  uint32_t x = seed;
  for (size_t pos = 0, i = 0; pos < n; i++) {
    size_t chunk = chunk_size(splits, nsplit, i);
    if (chunk > n - pos) chunk = n - pos;
    if (chunk == 1 && nsplit) CHECK(feed(&b, wire + pos, 0, 0) == 0);
    ssize_t got = feed(&b, wire + pos, chunk, 0);
    pos += chunk;
    if (got < 0) {
      rb = got;
      break;
    }
    switch (next(&x) % 8) {
      case 0: {
        int e = dx__session_control(b.s, DX__OP_PING, "b", 1);
        CHECK(e == 0 || e == DX_ESTATE);
        break;
      }
      case 1: {
        const char *t = TEXTS[next(&x) % 5];
        int e = dx__session_send(b.s, DX__OP_TEXT, t, strlen(t));
        CHECK(e == 0 || e == DX_ESTATE);
        break;
      }
      case 2: {
        int e = dx__session_send_ex(b.s, DX__OP_BINARY, wire, pos > 300 ? 300 : pos,
                                    (int)(x & 1));
        CHECK(e == 0 || e == DX_ESTATE);
        break;
      }
      case 3:
        drain(&b, next(&x) % 64);
        break;
      default:
        break;
    }
  }
  drain(&b, SIZE_MAX);
  outcome ob = finish(&b, rb);
  check_output(&b);
  run_end(&b);
  /* The split must not change what happened. One exception: an inflated
   * message that is both too big and invalid UTF-8 may be reported as
   * either, depending on how much the inflater produced per call (it
   * stops at the limit before handing over that output), so with
   * permessage-deflate only the failure itself must agree. */
  int pmd_either = (mode & 4) && oa.err != ob.err &&
                   (oa.err == DX_ETOOBIG || oa.err == DX_EUTF8) &&
                   (ob.err == DX_ETOOBIG || ob.err == DX_EUTF8);
  /* With a 9-bit window zlib accepts a distance past the window when the
   * data it points at was produced in the same inflate call (or lies
   * within the call's output plus the window), so a peer that breaks its
   * window limit is caught or not depending on the split: one run fails
   * with a corrupt stream (EPROTO, 1007) where the other delivers the
   * message zlib could still rebuild and fails later (or not at all).
   * Both are acceptable answers to a peer that broke its agreement (the
   * same inputs with a 15-bit window agree across splits), so with a
   * 9-bit window the two runs are not compared once either saw a protocol
   * failure; run C's checks still apply. */
  int pmd_window = (mode & 4) && !(seed4 & 1) &&
                   (oa.err == DX_EPROTO || ob.err == DX_EPROTO);
  if (pmd_window) goto run_c;
  CHECK(oa.err == ob.err || pmd_either);
  CHECK(oa.nev == ob.nev);
  CHECK(oa.hash == ob.hash);
  CHECK(oa.state == ob.state);
  CHECK(oa.sent_code == ob.sent_code || pmd_either);
  CHECK(oa.close_received == ob.close_received);

run_c:;
  /* Run C: closes, odd drains, and optionally allocation failure. */
  long fail_at = (mode & 8) ? (long)(mode >> 4) : -1;
  int sticky = (mode & 8) && (seed & 1);
  run c;
  if (!run_start(&c, mode, seed4, fail_at, sticky)) return 0;
  c.lend = (seed >> 1) & 1;
  x = seed ^ 0xA5A5A5A5u;
  for (size_t pos = 0, i = 0; pos < n; i++) {
    size_t chunk = chunk_size(splits, nsplit, i);
    if (chunk > n - pos) chunk = n - pos;
    ssize_t got = feed(&c, wire + pos, chunk, fail_at >= 0);
    pos += chunk;
    if (got < 0) break;
    uint32_t act = next(&x) % 16;
    if (act == 0) {
      static const int codes[] = {0, 1000, 1001, 1011, 3000, 4999, 1005, 999};
      int code = codes[next(&x) % 8];
      const char *t = code ? TEXTS[next(&x) % 5] : "";
      int was_sent = dx__session_close_sent(c.s);
      int e = dx__session_close(c.s, code, t, strlen(t));
      if (code == 1005 || code == 999) {
        CHECK(e == DX_ECLOSECODE || e == DX_ESTATE);
      } else if (e == 0) {
        CHECK(!was_sent && dx__session_close_sent(c.s));
        CHECK(dx__session_sent_code(c.s) == code);
      } else {
        CHECK(e == DX_ESTATE || e == DX_ENOMEM);
      }
    } else if (act == 1) {
      int e = dx__session_send_ex(c.s, (x & 2) ? DX__OP_TEXT : DX__OP_BINARY,
                                  (x & 2) ? (const uint8_t *)TEXTS[x % 5] : wire,
                                  (x & 2) ? strlen(TEXTS[x % 5]) : chunk, (int)(x & 1));
      CHECK(e == 0 || e == DX_ESTATE || e == DX_ENOMEM);
      if (dx__session_close_sent(c.s)) CHECK(e == DX_ESTATE);
    } else if (act == 2) {
      int e = dx__session_control(c.s, DX__OP_PONG, wire, chunk > 125 ? 125 : chunk);
      CHECK(e == 0 || e == DX_ESTATE || e == DX_ENOMEM);
    } else if (act < 8) {
      drain(&c, next(&x) % 40);
    }
  }
  drain(&c, SIZE_MAX);
  check_output(&c);
  run_end(&c);
  return 0;
}
