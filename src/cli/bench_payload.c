/* What the load generator sends: one message of cfg->size bytes, or with
 * json_variants, that many JSON-like ones in rotation. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_engine.h"

/* JSON-like text: an array of records with the same keys and values drawn
 * from small vocabularies plus numbers, the way API responses and event
 * streams look. Keys and vocabulary repeat within a message (what deflate
 * finds without context takeover) and across variants (what context
 * takeover adds); ids, scores, times and word order differ, so neither is
 * close to 100 %. A fixed seed per variant keeps the bytes the same from
 * run to run and server to server. */
static unsigned gen(uint64_t *state, unsigned n) { /* splitmix64 into [0, n) */
  uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return (unsigned)((z ^ (z >> 31)) % n);
}

static const char *const names[] = {
    "alice", "bruno", "chen", "dalia", "emeka", "fatima", "goran", "hana",
    "ivan", "jun", "kofi", "lena", "mateo", "nadia", "oskar", "priya"};
static const char *const roles[] = {"viewer", "editor", "admin", "owner", "guest"};
static const char *const tags[] = {"alpha", "beta", "ops", "billing", "mobile", "web",
                                   "eu", "us", "apac", "trial", "vip", "legacy"};
static const char *const words[] = {
    "order", "shipped", "delayed", "refund", "invoice", "customer", "warehouse",
    "priority", "update", "address", "payment", "failed", "retry", "confirmed",
    "package", "return", "label", "carrier", "tracking", "note", "account",
    "review", "pending", "approved", "limit", "quota", "session", "device",
    "login", "token", "expired", "renewed"};
#define NEL(a) (sizeof(a) / sizeof(a)[0])
#define PICK(s, a) (a)[gen((s), NEL(a))]

/* One record; returns its length (buf has room for 512 bytes). */
static int json_record(uint64_t *s, char *buf) {
  const char *who = PICK(s, names);
  unsigned suffix = gen(s, 100);
  int n = snprintf(buf, 512,
                   "{\"id\":%u,\"user\":\"%s.%u\",\"email\":\"%s.%u@example.org\","
                   "\"active\":%s,\"role\":\"%s\",\"score\":%u.%02u,"
                   "\"tags\":[\"%s\",\"%s\"],\"created\":\"2024-%02u-%02uT%02u:%02u:%02uZ\","
                   "\"geo\":{\"lat\":%d.%04u,\"lon\":%d.%04u},\"note\":\"",
                   100000 + gen(s, 900000), who, suffix, who, suffix,
                   gen(s, 4) ? "true" : "false", PICK(s, roles), gen(s, 100), gen(s, 100),
                   PICK(s, tags), PICK(s, tags), 1 + gen(s, 12), 1 + gen(s, 28),
                   gen(s, 24), gen(s, 60), gen(s, 60), (int)gen(s, 180) - 90, gen(s, 10000),
                   (int)gen(s, 360) - 180, gen(s, 10000));
  for (unsigned w = 0, nw = 3 + gen(s, 6); w < nw; w++)
    n += snprintf(buf + n, (size_t)(512 - n), "%s%s", w ? " " : "", PICK(s, words));
  n += snprintf(buf + n, (size_t)(512 - n), "\"}");
  return n;
}

/* Fills out[0..size) with "[record,record,...]", padded with spaces before
 * the closing bracket to exactly size bytes (JSON allows the whitespace). */
static void json_fill(uint8_t *out, size_t size, unsigned variant) {
  uint64_t state = 0x5EED0000u + variant;
  size_t len = 0;
  out[len++] = '[';
  char rec[512];
  for (;;) {
    int n = json_record(&state, rec);
    size_t need = (len > 1 ? 1 : 0) + (size_t)n + 1; /* comma, record, ']' */
    if (len + need > size) break;
    if (len > 1) out[len++] = ',';
    memcpy(out + len, rec, (size_t)n);
    len += (size_t)n;
  }
  while (len < size - 1) out[len++] = ' ';
  out[len] = ']';
}

int bench_payload_make(bench_ctx *b) {
  const bench_config *cfg = b->cfg;
  size_t size = cfg->size ? cfg->size : 1;
  b->npayload = cfg->json_variants ? cfg->json_variants : 1;
  for (unsigned v = 0; v < b->npayload; v++) {
    uint8_t *p = malloc(size);
    if (!p) {
      bench_fatal(b, "out of memory for a %zu-byte message", size);
      return -1;
    }
    b->payload[v] = p;
    if (cfg->json_variants) {
      json_fill(p, size, v);
    } else {
      /* Text is ASCII, so valid UTF-8; binary is random, so a server cannot
       * get away with treating it as text. */
      for (size_t i = 0; i < size; i++)
        p[i] = cfg->binary && !cfg->raw ? (uint8_t)bench_rand(b) : (uint8_t)('a' + i % 26);
    }
  }
  return 0;
}

void bench_payload_free(bench_ctx *b) {
  for (unsigned v = 0; v < b->npayload; v++) free(b->payload[v]);
  b->npayload = 0;
}

void bench_seq_write(uint8_t *dst, uint64_t n) {
  static const char hex[] = "0123456789abcdef";
  for (int i = BENCH_SEQ_LEN - 1; i >= 0; i--, n >>= 4) dst[i] = (uint8_t)hex[n & 15];
}
