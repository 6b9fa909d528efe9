/* permessage-deflate (RFC 7692): negotiating the extension, the server's
 * choice among the client's offers and the client's offer and check of the
 * answer. Why a window of 8 is declined where it would bind our compressor:
 * the opening comment of deflate.c. */
#include "proto/pmd_negotiate.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "duplex_codes.h"
#include "proto/http_chars.h"

void dx__pmd_config_defaults(dx__pmd_config *c) {
  memset(c, 0, sizeof *c);
  c->enabled = 1;
  c->server_max_window_bits = 15;
  c->client_max_window_bits = 15;
  c->server_no_context_takeover = 0;
  c->client_no_context_takeover = 0;
  c->mem_level = 8;
  c->level = -1;
  c->threshold = 0;
}

/* ------------------------------------------------------------------------ */
/* Lexing Sec-WebSocket-Extensions (RFC 6455 §9.1, RFC 7230 §3.2.6)         */
/* ------------------------------------------------------------------------ */

typedef struct span {
  const char *p;
  size_t n;
} span;

typedef struct cursor {
  const char *p, *end;
} cursor;

/* A parameter value, unescaped. Only values of known parameters are ever
 * looked at, and the longest valid one is 2 digits, so a short buffer is
 * enough; `over` records that the value did not fit. */
typedef struct pvalue {
  char buf[8];
  size_t len;
  int over;
} pvalue;

static int is_ows(char c) { return c == ' ' || c == '\t'; }

static int span_is(span s, const char *lit) {
  size_t n = strlen(lit);
  if (s.n != n)
    return 0;
  for (size_t i = 0; i < n; i++) {
    char a = s.p[i], b = lit[i];
    if (a >= 'A' && a <= 'Z')
      a = (char)(a - 'A' + 'a');
    if (a != b)
      return 0;
  }
  return 1;
}

static void skip_ows(cursor *c) {
  while (c->p < c->end && is_ows(*c->p))
    c->p++;
}

static int read_token(cursor *c, span *t) {
  t->p = c->p;
  while (c->p < c->end && dx__http_is_tchar((unsigned char)*c->p))
    c->p++;
  t->n = (size_t)(c->p - t->p);
  return t->n > 0;
}

static void put_value(pvalue *v, char ch) {
  if (v->len < sizeof v->buf)
    v->buf[v->len++] = ch;
  else
    v->over = 1;
}

/* token / quoted-string. RFC 6455 §9.1: a quoted value must be a token
 * once unescaped; that is checked by whoever interprets the value. */
static int read_value(cursor *c, pvalue *v) {
  memset(v, 0, sizeof *v);
  if (c->p < c->end && *c->p == '"') {
    c->p++;
    while (c->p < c->end) {
      unsigned char ch = (unsigned char)*c->p;
      if (ch == '"') {
        c->p++;
        return 1;
      }
      if (ch == '\\') {
        if (c->p + 1 >= c->end)
          return 0;
        ch = (unsigned char)c->p[1];
        if (ch != '\t' && (ch < 0x20 || ch == 0x7f))
          return 0;
        put_value(v, (char)ch);
        c->p += 2;
        continue;
      }
      if (ch != '\t' && (ch < 0x20 || ch == 0x7f))
        return 0;
      put_value(v, (char)ch);
      c->p++;
    }
    return 0; /* unterminated */
  }
  span t;
  if (!read_token(c, &t))
    return 0;
  for (size_t i = 0; i < t.n; i++)
    put_value(v, t.p[i]);
  return 1;
}

/* After a syntax error: skip to just past the next ',' that is not inside
 * a quoted string, so the following element can still be read. */
static void skip_element(cursor *c) {
  int quoted = 0;
  while (c->p < c->end) {
    char ch = *c->p++;
    if (quoted) {
      if (ch == '\\' && c->p < c->end)
        c->p++;
      else if (ch == '"')
        quoted = 0;
    } else if (ch == '"') {
      quoted = 1;
    } else if (ch == ',') {
      return;
    }
  }
}

/* ------------------------------------------------------------------------ */
/* One list element: an extension and its parameters                         */
/* ------------------------------------------------------------------------ */

enum { P_SNCT = 1, P_CNCT = 2, P_SMWB = 4, P_CMWB = 8 };
enum { F_NONE = 0, F_SYNTAX, F_UNKNOWN, F_DUP, F_VALUE };

typedef struct element {
  span name;
  int is_pmd;
  unsigned seen; /* P_* */
  int smwb;      /* server_max_window_bits, when seen */
  int cmwb;      /* client_max_window_bits, when seen; 0 = no value */
  int fault;     /* F_*: the first thing wrong with this element */
  span fault_param;
  pvalue fault_value;
  int fault_has_value;
} element;

/* 1*DIGIT without leading zeroes, 8..15 (RFC 7692 §7.1.2). */
static int parse_bits(const pvalue *v, int *out) {
  if (v->over || v->len == 0 || v->len > 2 || v->buf[0] < '1' || v->buf[0] > '9')
    return 0;
  int n = v->buf[0] - '0';
  if (v->len == 2) {
    if (v->buf[1] < '0' || v->buf[1] > '9')
      return 0;
    n = n * 10 + (v->buf[1] - '0');
  }
  if (n < 8 || n > 15)
    return 0;
  *out = n;
  return 1;
}

static void set_fault(element *e, int kind, span name, const pvalue *v) {
  if (e->fault != F_NONE)
    return;
  e->fault = kind;
  e->fault_param = name;
  e->fault_has_value = v != NULL;
  if (v)
    e->fault_value = *v;
}

static void apply_param(element *e, span name, const pvalue *v) {
  unsigned bit;
  if (span_is(name, "server_no_context_takeover"))
    bit = P_SNCT;
  else if (span_is(name, "client_no_context_takeover"))
    bit = P_CNCT;
  else if (span_is(name, "server_max_window_bits"))
    bit = P_SMWB;
  else if (span_is(name, "client_max_window_bits"))
    bit = P_CMWB;
  else {
    set_fault(e, F_UNKNOWN, name, v);
    return;
  }
  if (e->seen & bit) {
    set_fault(e, F_DUP, name, v);
    return;
  }
  e->seen |= bit;
  int ok = 1;
  if (bit == P_SNCT || bit == P_CNCT)
    ok = v == NULL; /* these parameters have no value */
  else if (bit == P_SMWB)
    ok = v != NULL && parse_bits(v, &e->smwb);
  else if (v != NULL)
    ok = parse_bits(v, &e->cmwb);
  else
    e->cmwb = 0;
  if (!ok)
    set_fault(e, F_VALUE, name, v);
}

/* Reads the next non-empty element of a comma-separated list (empty
 * elements are allowed, RFC 7230 §7). Returns 0 at the end of the list. A
 * malformed element is returned with fault F_SYNTAX, the cursor past it. */
static int next_element(cursor *c, element *e) {
  memset(e, 0, sizeof *e);
  for (;;) {
    skip_ows(c);
    if (c->p >= c->end)
      return 0;
    if (*c->p != ',')
      break;
    c->p++;
  }
  if (!read_token(c, &e->name))
    goto syntax;
  e->is_pmd = span_is(e->name, "permessage-deflate");
  for (;;) {
    skip_ows(c);
    if (c->p >= c->end)
      return 1;
    if (*c->p == ',') {
      c->p++;
      return 1;
    }
    if (*c->p != ';')
      goto syntax;
    c->p++;
    skip_ows(c);
    span pname;
    if (!read_token(c, &pname))
      goto syntax;
    skip_ows(c);
    pvalue v;
    int has_value = 0;
    if (c->p < c->end && *c->p == '=') {
      c->p++;
      skip_ows(c);
      if (!read_value(c, &v))
        goto syntax;
      has_value = 1;
    }
    if (e->is_pmd)
      apply_param(e, pname, has_value ? &v : NULL);
  }
syntax:
  e->fault = F_SYNTAX;
  skip_element(c);
  return 1;
}

/* ------------------------------------------------------------------------ */
/* Server                                                                   */
/* ------------------------------------------------------------------------ */

/* Decides one syntactically valid offer. Returns 0 to decline it, else 1
 * with the agreed parameters and the window values to answer with (0 =
 * leave the parameter out of the response). */
static int server_decide(const dx__pmd_config *cfg, const element *e,
                         dx__pmd_params *p, int *send_smwb, int *send_cmwb) {
  int our_max = dx__pmd_cfg_bits(cfg->server_max_window_bits);
  int their_max = dx__pmd_cfg_bits(cfg->client_max_window_bits);

  /* server_max_window_bits binds our compressor; 8 cannot be honoured
   * (see the top of the file), so the offer is declined. */
  int s = our_max;
  if (e->seen & P_SMWB) {
    if (e->smwb == 8)
      return 0;
    if (e->smwb < s)
      s = e->smwb;
  }
  /* RFC 7692 §7.1.2.1: a server must answer a server_max_window_bits it
   * was asked, and may announce a smaller window unasked. */
  *send_smwb = ((e->seen & P_SMWB) || s < 15) ? s : 0;

  /* client_max_window_bits binds the client's compressor, and only when
   * the offer carries it (§7.1.2.2). Without it, limiting the client is
   * impossible, so a server configured to do so declines. A value in the
   * offer is the client's own promise; answering with it lets our inflater
   * use that window instead of 15. */
  int c = 15;
  if (e->seen & P_CMWB) {
    c = their_max;
    if (e->cmwb && e->cmwb < c)
      c = e->cmwb;
  } else if (their_max < 15) {
    return 0;
  }
  *send_cmwb = c < 15 ? c : 0; /* 8 included: the client promised it */

  p->server_max_window_bits = (uint8_t)s;
  /* A client compressing with 8 is inflated with 9: a superset. */
  p->client_max_window_bits = (uint8_t)(c < 9 ? 9 : c);
  /* A server may always add either no_context_takeover (§7.1.1); a
   * client's own client_no_context_takeover is echoed so our inflater can
   * drop its window between messages. */
  p->server_no_context_takeover =
      (uint8_t)((e->seen & P_SNCT) || cfg->server_no_context_takeover);
  p->client_no_context_takeover =
      (uint8_t)((e->seen & P_CNCT) || cfg->client_no_context_takeover);
  return 1;
}

int dx__pmd_server_negotiate(const dx__pmd_config *cfg,
                             const char *const *values, const size_t *lens,
                             size_t n, dx__pmd_params *out, char *resp,
                             size_t resp_cap) {
  if (resp && resp_cap)
    resp[0] = '\0';
  if (cfg == NULL || !cfg->enabled || values == NULL || lens == NULL)
    return 0;
  for (size_t i = 0; i < n; i++) {
    if (values[i] == NULL)
      continue;
    cursor c = {values[i], values[i] + lens[i]};
    element e;
    while (next_element(&c, &e)) {
      if (!e.is_pmd || e.fault != F_NONE)
        continue; /* not ours, or an offer we cannot read: declined */
      dx__pmd_params p;
      int smwb, cmwb;
      if (!server_decide(cfg, &e, &p, &smwb, &cmwb))
        continue;
      char buf[DX__PMD_HEADER_MAX];
      int len = snprintf(buf, sizeof buf, "permessage-deflate%s%s",
                         p.server_no_context_takeover
                             ? "; server_no_context_takeover" : "",
                         p.client_no_context_takeover
                             ? "; client_no_context_takeover" : "");
      if (smwb)
        len += snprintf(buf + len, sizeof buf - (size_t)len,
                        "; server_max_window_bits=%d", smwb);
      if (cmwb)
        len += snprintf(buf + len, sizeof buf - (size_t)len,
                        "; client_max_window_bits=%d", cmwb);
      if (resp == NULL || (size_t)len >= resp_cap)
        return 0; /* the caller's buffer cannot carry the answer */
      memcpy(resp, buf, (size_t)len + 1);
      if (out)
        *out = p;
      return 1;
    }
  }
  return 0;
}

/* ------------------------------------------------------------------------ */
/* Client                                                                   */
/* ------------------------------------------------------------------------ */

/* What a client offers for a config; the offer and the check of the
 * response are both derived from it, so they cannot drift apart. */
typedef struct plan {
  int snct, cnct;
  int smwb; /* server_max_window_bits asked for, 0 = not offered */
  int cmwb; /* client_max_window_bits (always offered): 0 = without value */
} plan;

static plan client_plan(const dx__pmd_config *cfg) {
  plan pl;
  pl.snct = cfg->server_no_context_takeover != 0;
  pl.cnct = cfg->client_no_context_takeover != 0;
  int s = dx__pmd_cfg_bits(cfg->server_max_window_bits);
  pl.smwb = s < 15 ? s : 0;
  /* Always offered: a server that wants to limit the client's window can
   * only do so when the offer carries it (§7.1.2.2), and would otherwise
   * have to decline. With a value it is our promise to use no more. */
  int c = dx__pmd_cfg_bits(cfg->client_max_window_bits);
  pl.cmwb = c < 15 ? c : 0;
  return pl;
}

size_t dx__pmd_client_offer(const dx__pmd_config *cfg, char *out, size_t cap) {
  if (out && cap)
    out[0] = '\0';
  if (cfg == NULL || !cfg->enabled || out == NULL)
    return 0;
  plan pl = client_plan(cfg);
  char buf[DX__PMD_HEADER_MAX];
  int len = snprintf(buf, sizeof buf, "permessage-deflate%s%s",
                     pl.snct ? "; server_no_context_takeover" : "",
                     pl.cnct ? "; client_no_context_takeover" : "");
  if (pl.smwb)
    len += snprintf(buf + len, sizeof buf - (size_t)len,
                    "; server_max_window_bits=%d", pl.smwb);
  if (pl.cmwb)
    len += snprintf(buf + len, sizeof buf - (size_t)len,
                    "; client_max_window_bits=%d", pl.cmwb);
  else
    len += snprintf(buf + len, sizeof buf - (size_t)len,
                    "; client_max_window_bits");
  if ((size_t)len >= cap)
    return 0;
  memcpy(out, buf, (size_t)len + 1);
  return (size_t)len;
}

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static void set_why(char *why, size_t cap, const char *fmt, ...) {
  if (why == NULL || cap == 0)
    return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(why, cap, fmt, ap);
  va_end(ap);
}

/* Peer bytes for a reason line: at most 32, printable ASCII only. */
static void shown(char out[40], const char *p, size_t n) {
  size_t k = 0;
  for (size_t i = 0; i < n && k < 32; i++) {
    unsigned char ch = (unsigned char)p[i];
    out[k++] = (ch >= 0x20 && ch < 0x7f && ch != '"') ? (char)ch : '?';
  }
  if (n > 32) {
    memcpy(out + k, "...", 3);
    k += 3;
  }
  out[k] = '\0';
}

static int fail_param(const element *e, char *why, size_t cap) {
  char name[40], val[40];
  shown(name, e->fault_param.p, e->fault_param.n);
  switch (e->fault) {
  case F_UNKNOWN:
    set_why(why, cap, "server sent unknown permessage-deflate parameter %s",
            name);
    break;
  case F_DUP:
    set_why(why, cap, "server sent permessage-deflate parameter %s twice",
            name);
    break;
  default:
    if (!e->fault_has_value) {
      set_why(why, cap, "server sent permessage-deflate %s without a value",
              name);
    } else {
      shown(val, e->fault_value.buf, e->fault_value.len);
      set_why(why, cap, "server sent permessage-deflate %s=%s%s: %s", name,
              val, e->fault_value.over ? "..." : "",
              (span_is(e->fault_param, "server_no_context_takeover") ||
               span_is(e->fault_param, "client_no_context_takeover"))
                  ? "it takes no value"
                  : "not a window size 8..15");
    }
    break;
  }
  return DX_EHANDSHAKE;
}

/* Checks the accepted permessage-deflate element against our plan. */
static int client_check(const dx__pmd_config *cfg, const element *e,
                        dx__pmd_params *p, char *why, size_t cap) {
  plan pl = client_plan(cfg);
  if (e->fault != F_NONE)
    return fail_param(e, why, cap);

  /* RFC 7692 §7.1.1.1: a server accepting an offer with
   * server_no_context_takeover must include it. It may add it unasked. */
  if (pl.snct && !(e->seen & P_SNCT)) {
    set_why(why, cap, "%s",
            "server did not accept the server_no_context_takeover we asked for");
    return DX_EHANDSHAKE;
  }
  /* §7.1.2.1: it must answer a server_max_window_bits we asked for with
   * the same or less; it may send one unasked. */
  int s = 15;
  if (e->seen & P_SMWB) {
    if (pl.smwb && e->smwb > pl.smwb) {
      set_why(why, cap,
              "server chose server_max_window_bits=%d, more than the %d we "
              "asked for", e->smwb, pl.smwb);
      return DX_EHANDSHAKE;
    }
    s = e->smwb;
  } else if (pl.smwb) {
    set_why(why, cap,
            "server did not accept the server_max_window_bits=%d we asked for",
            pl.smwb);
    return DX_EHANDSHAKE;
  }
  /* §7.1.2.2: client_max_window_bits only if offered (we always offer
   * it), always with a value, and no more than a value we offered. */
  int c = pl.cmwb ? pl.cmwb : 15;
  if (e->seen & P_CMWB) {
    if (e->cmwb == 0) {
      set_why(why, cap, "%s",
              "server sent client_max_window_bits without a value");
      return DX_EHANDSHAKE;
    }
    if (pl.cmwb && e->cmwb > pl.cmwb) {
      set_why(why, cap,
              "server chose client_max_window_bits=%d, more than the %d we "
              "offered", e->cmwb, pl.cmwb);
      return DX_EHANDSHAKE;
    }
    c = e->cmwb;
  }
  /* The server's window binds our inflater: 8 is inflated with 9. Our
   * compressor's 8 stays 8: the codec then sends stored blocks. */
  p->server_max_window_bits = (uint8_t)(s < 9 ? 9 : s);
  p->client_max_window_bits = (uint8_t)c;
  p->server_no_context_takeover = (uint8_t)((e->seen & P_SNCT) != 0);
  /* We promised not to take over context when we asked for it, so our
   * compressor resets whatever the server answered. */
  p->client_no_context_takeover = (uint8_t)((e->seen & P_CNCT) || pl.cnct);
  return 1;
}

int dx__pmd_client_verify(const dx__pmd_config *cfg,
                          const char *const *values, const size_t *lens,
                          size_t n, dx__pmd_params *out, char *why,
                          size_t why_cap) {
  set_why(why, why_cap, "%s", "");
  if (values == NULL || lens == NULL)
    n = 0;
  int found = 0;
  dx__pmd_params p;
  memset(&p, 0, sizeof p);
  for (size_t i = 0; i < n; i++) {
    if (values[i] == NULL)
      continue;
    cursor c = {values[i], values[i] + lens[i]};
    element e;
    while (next_element(&c, &e)) {
      char name[40];
      if (e.fault == F_SYNTAX) {
        set_why(why, why_cap, "%s", "malformed Sec-WebSocket-Extensions");
        return DX_EHANDSHAKE;
      }
      if (!e.is_pmd) {
        shown(name, e.name.p, e.name.n);
        set_why(why, why_cap,
                "server accepted extension %s, which we did not offer", name);
        return DX_EHANDSHAKE;
      }
      if (cfg == NULL || !cfg->enabled) {
        set_why(why, why_cap, "%s",
                "server accepted permessage-deflate, which we did not offer");
        return DX_EHANDSHAKE;
      }
      if (found) {
        set_why(why, why_cap, "%s",
                "server accepted permessage-deflate more than once");
        return DX_EHANDSHAKE;
      }
      int rc = client_check(cfg, &e, &p, why, why_cap);
      if (rc != 1)
        return rc;
      found = 1;
    }
  }
  if (found && out)
    *out = p;
  return found;
}
