/* libFuzzer target for the permessage-deflate negotiation in
 * src/proto/pmd_negotiate.c.
 *
 * Input: byte 0 picks the server's and the client's settings (see
 * config_from), the rest is header text split into up to 8
 * Sec-WebSocket-Extensions lines at each '\n'. Each line is an exactly
 * sized heap copy, so reading past it is an ASan error.
 *
 * Checked:
 *  - the server: 0 or 1; resp NUL-terminated, "" on 0; on 1 the agreed
 *    windows are 9..15 and the response, checked by a client that offered
 *    the most (the defaults), is accepted with the same parameters (the
 *    client keeps a chosen client_max_window_bits=8 as 8, the server
 *    inflates it with 9). Deterministic: a second call agrees.
 *  - the client, reading the same lines as a response: 1, 0 or
 *    DX_EHANDSHAKE; a reason that is NUL-terminated printable ASCII and
 *    non-empty exactly on failure; windows in range on success; never
 *    more than it asked for.
 *  - the client's own offer for the chosen settings is accepted by a
 *    server with default settings. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "duplex.h"
#include "proto/deflate.h"

#include "fuzz_check.h"

#define MAX_LINES 8

/* Bits of b: 0 server_no_context_takeover, 1 client_no_context_takeover,
 * 2-3 server window (15, 12, 9, 8), 4-5 client window (same), 6 enabled
 * (inverted: 0 means enabled), 7 unused here. */
static dx__pmd_config config_from(uint8_t b) {
  static const uint8_t bits[4] = {15, 12, 9, 8};
  dx__pmd_config c;
  dx__pmd_config_defaults(&c);
  c.server_no_context_takeover = b & 1;
  c.client_no_context_takeover = (b >> 1) & 1;
  c.server_max_window_bits = bits[(b >> 2) & 3];
  c.client_max_window_bits = bits[(b >> 4) & 3];
  c.enabled = !((b >> 6) & 1);
  return c;
}

static void check_printable(const char *s, size_t cap) {
  size_t n = strnlen(s, cap);
  CHECK(n < cap);
  for (size_t i = 0; i < n; i++)
    CHECK(s[i] >= 0x20 && s[i] < 0x7f);
}

static int window_ok(int bits) { return bits >= 9 && bits <= 15; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1)
    return 0;
  dx__pmd_config cfg = config_from(data[0]);
  /* The server swaps which half of the byte means what, so the two sides
   * are not always configured alike. */
  dx__pmd_config scfg = config_from((uint8_t)((data[0] >> 4) | (data[0] << 4)));
  scfg.enabled = cfg.enabled;

  char *lines[MAX_LINES];
  size_t lens[MAX_LINES];
  size_t n = 0;
  const char *text = (const char *)data + 1;
  size_t left = size - 1, start = 0;
  for (size_t i = 0; i <= left && n < MAX_LINES; i++) {
    if (i == left || text[i] == '\n') {
      size_t len = i - start;
      lines[n] = malloc(len ? len : 1);
      CHECK(lines[n]);
      memcpy(lines[n], text + start, len);
      lens[n++] = len;
      start = i + 1;
    }
  }
  const char *const *vals = (const char *const *)lines;

  /* Server. */
  dx__pmd_params sp, sp2;
  char resp[DX__PMD_HEADER_MAX], resp2[DX__PMD_HEADER_MAX];
  memset(resp, 'x', sizeof resp);
  int r = dx__pmd_server_negotiate(&scfg, vals, lens, n, &sp, resp, sizeof resp);
  CHECK(r == 0 || r == 1);
  check_printable(resp, sizeof resp);
  int r2 = dx__pmd_server_negotiate(&scfg, vals, lens, n, &sp2, resp2,
                                    sizeof resp2);
  CHECK(r2 == r);
  CHECK(strcmp(resp, resp2) == 0);
  if (r == 0) {
    CHECK(resp[0] == '\0');
  } else {
    CHECK(scfg.enabled);
    CHECK(memcmp(&sp, &sp2, sizeof sp) == 0);
    CHECK(strncmp(resp, "permessage-deflate", 18) == 0);
    CHECK(window_ok(sp.server_max_window_bits));
    CHECK(window_ok(sp.client_max_window_bits));
    CHECK(sp.server_no_context_takeover <= 1);
    CHECK(sp.client_no_context_takeover <= 1);
    /* Never more than the server's own settings allow (8 counts as 9). */
    int smax = scfg.server_max_window_bits < 9 ? 9 : scfg.server_max_window_bits;
    int cmax = scfg.client_max_window_bits < 9 ? 9 : scfg.client_max_window_bits;
    CHECK(sp.server_max_window_bits <= smax);
    CHECK(sp.client_max_window_bits <= cmax);
    if (scfg.server_no_context_takeover)
      CHECK(sp.server_no_context_takeover);
    if (scfg.client_no_context_takeover)
      CHECK(sp.client_no_context_takeover);

    /* A client that offered the most accepts the answer and agrees. */
    dx__pmd_config most;
    dx__pmd_config_defaults(&most);
    const char *rv = resp;
    size_t rl = strlen(resp);
    dx__pmd_params cp;
    char why[128];
    int v = dx__pmd_client_verify(&most, &rv, &rl, 1, &cp, why, sizeof why);
    if (v != 1)
      fprintf(stderr, "response %s refused: %s\n", resp, why);
    CHECK(v == 1);
    CHECK(cp.server_no_context_takeover == sp.server_no_context_takeover);
    CHECK(cp.client_no_context_takeover == sp.client_no_context_takeover);
    CHECK(cp.server_max_window_bits == sp.server_max_window_bits);
    if (cp.client_max_window_bits == 8)
      CHECK(sp.client_max_window_bits == 9);
    else
      CHECK(cp.client_max_window_bits == sp.client_max_window_bits);
  }

  /* Client, reading the lines as a response. */
  dx__pmd_params cp;
  char why[96];
  memset(why, 'x', sizeof why);
  int v = dx__pmd_client_verify(&cfg, vals, lens, n, &cp, why, sizeof why);
  CHECK(v == 1 || v == 0 || v == DX_EHANDSHAKE);
  check_printable(why, sizeof why);
  CHECK((v == DX_EHANDSHAKE) == (why[0] != '\0'));
  if (v == 1) {
    CHECK(cfg.enabled);
    CHECK(window_ok(cp.server_max_window_bits));
    CHECK(window_ok(cp.client_max_window_bits) || cp.client_max_window_bits == 8);
    int smax = cfg.server_max_window_bits < 9 ? 9 : cfg.server_max_window_bits;
    int cmax = cfg.client_max_window_bits < 9 ? 9 : cfg.client_max_window_bits;
    CHECK(cp.server_max_window_bits <= smax);
    CHECK(cp.client_max_window_bits <= cmax);
    if (cfg.server_no_context_takeover)
      CHECK(cp.server_no_context_takeover);
    if (cfg.client_no_context_takeover)
      CHECK(cp.client_no_context_takeover);
  }
  /* A tiny reason buffer is still NUL-terminated. */
  char tiny[3];
  memset(tiny, 'x', sizeof tiny);
  (void)dx__pmd_client_verify(&cfg, vals, lens, n, &cp, tiny, sizeof tiny);
  CHECK(strnlen(tiny, sizeof tiny) < sizeof tiny);

  /* Our own offer is acceptable to a default server. */
  char offer[DX__PMD_HEADER_MAX];
  size_t ol = dx__pmd_client_offer(&cfg, offer, sizeof offer);
  CHECK((ol > 0) == (cfg.enabled != 0));
  if (ol) {
    dx__pmd_config def;
    dx__pmd_config_defaults(&def);
    const char *ov = offer;
    CHECK(dx__pmd_server_negotiate(&def, &ov, &ol, 1, &sp, resp, sizeof resp) == 1);
  }

  for (size_t i = 0; i < n; i++)
    free(lines[i]);
  return 0;
}
