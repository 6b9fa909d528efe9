/* The progress line, the result table and the JSON object of `duplex
 * bench`; see bench_report.h. */
#include "bench_report.h"

#include <string.h>

/* A latency for people: "612 us", "1.53 ms", "2.10 s". */
static const char *human_us(char *buf, size_t size, double us) {
  if (us < 1000)
    snprintf(buf, size, "%.0f us", us);
  else if (us < 1e6)
    snprintf(buf, size, "%.2f ms", us / 1e3);
  else
    snprintf(buf, size, "%.2f s", us / 1e6);
  return buf;
}

void bench_report_progress(const bench_progress *p, void *ud) {
  FILE *out = ud;
  char a[32], b[32];
  fprintf(out, "\r%3llu s %-10s ", (unsigned long long)(p->elapsed_ms / 1000), p->phase);
  if (p->mode == BENCH_IDLE)
    fprintf(out, "held %u/%u", p->held, p->want);
  else
    fprintf(out, "%.0f %s", p->rate, p->mode == BENCH_ECHO ? "msg/s" : "handshakes/s");
  fprintf(out, "  p50 %s  p99 %s  errors %llu\033[K", human_us(a, sizeof a, p->p50_us),
          human_us(b, sizeof b, p->p99_us), (unsigned long long)p->errors);
  fflush(out);
}

void bench_report_progress_end(FILE *out) {
  fputs("\r\033[K", out);
  fflush(out);
}

static double per_s(uint64_t n, double secs) { return secs > 0 ? (double)n / secs : 0; }

/* ---------------------------------------------------------------- table */

static void row(FILE *out, const char *label) { fprintf(out, "%-14s", label); }

static void table_errors(FILE *out, const bench_result *r) {
  row(out, "errors");
  fprintf(out, "%llu", (unsigned long long)r->errors);
  for (int i = 0; i < r->n_kinds; i++)
    fprintf(out, "%s%s: %llu", i ? "; " : " (", r->kinds[i].name,
            (unsigned long long)r->kinds[i].count);
  fputs(r->n_kinds ? ")\n" : "\n", out);
}

static void table_latency(FILE *out, const char *label, const bench_result *r,
                          const char *what) {
  char a[32], b[32], c[32], d[32];
  row(out, label);
  if (!r->samples) {
    fputs("none measured\n", out);
    return;
  }
  fprintf(out, "p50 %s, p90 %s, p99 %s, max %s (%s)\n", human_us(a, sizeof a, r->p50_us),
          human_us(b, sizeof b, r->p90_us), human_us(c, sizeof c, r->p99_us),
          human_us(d, sizeof d, r->max_us), what);
}

static void table_cpu(FILE *out, const bench_result *r) {
  row(out, "cpu");
  fprintf(out, "client %.2f", r->client_cpu);
  if (r->server_cpu >= 0) fprintf(out, ", server %.2f", r->server_cpu);
  fputs(" (cores busy)\n", out);
}

static void table_echo(FILE *out, const bench_config *cfg, const bench_result *r) {
  row(out, "connections");
  fprintf(out, "%u opened of %u, %u message%s in flight on each\n", r->opened, cfg->conns,
          cfg->inflight, cfg->inflight == 1 ? "" : "s");
  row(out, "messages");
  fprintf(out, "%zu bytes, %s, compression %s\n", cfg->size, cfg->binary ? "binary" : "text",
          cfg->deflate ? "permessage-deflate" : "off");
  row(out, "duration");
  fprintf(out, "%.2f s measured, after %.2f s of warm-up\n", r->seconds, cfg->warmup_ms / 1e3);
  row(out, "echoes");
  fprintf(out, "%llu: %.0f msg/s, %.2f MB/s of payload each way\n",
          (unsigned long long)r->msgs, per_s(r->msgs, r->seconds),
          per_s(r->msgs, r->seconds) * (double)cfg->size / 1e6);
  row(out, "sent");
  fprintf(out, "%llu, echoed %llu", (unsigned long long)r->sent, (unsigned long long)r->echoed);
  if (r->lost || r->unanswered)
    fprintf(out, " (%llu in flight on connections that failed, %llu not echoed "
                 "within 1 s of the end)",
            (unsigned long long)r->lost, (unsigned long long)r->unanswered);
  fputs(cfg->verify ? ", each echo checked byte for byte\n" : "\n", out);
  if (cfg->deflate && r->tx_plain && r->rx_plain) {
    row(out, "compression");
    fprintf(out, "sent %.1f %%, received %.1f %% of the payload bytes\n",
            100.0 * (double)r->tx_wire / (double)r->tx_plain,
            100.0 * (double)r->rx_wire / (double)r->rx_plain);
  }
  table_latency(out, "latency", r, "send to echo");
}

static void table_handshake(FILE *out, const bench_config *cfg, const bench_result *r) {
  row(out, "concurrency");
  fprintf(out, "%u cycles at a time: connect, upgrade, close handshake\n", cfg->conns);
  row(out, "duration");
  fprintf(out, "%.2f s measured, after %.2f s of warm-up\n", r->seconds, cfg->warmup_ms / 1e3);
  row(out, "handshakes");
  fprintf(out, "%llu: %.0f handshakes/s\n", (unsigned long long)r->msgs,
          per_s(r->msgs, r->seconds));
  if (r->no_close) {
    row(out, "server close");
    fprintf(out, "%llu cycles where the server did not close TCP within 1 s\n",
            (unsigned long long)r->no_close);
  }
  table_latency(out, "latency", r, "a whole cycle");
}

static void table_idle(FILE *out, const bench_config *cfg, const bench_result *r) {
  row(out, "connections");
  fprintf(out, "%u asked, %u upgraded, %u held by the server for %.2f s\n", cfg->conns,
          r->opened, r->held, r->seconds);
  table_latency(out, "upgrade", r, "connect to 101");
  row(out, "server memory");
  if (r->rss_before_kb < 0 || r->rss_after_kb < 0 || !r->held) {
    fputs("unknown (give --server-pid PID of a server on this machine)\n", out);
    return;
  }
  fprintf(out, "VmRSS %ld KiB before, %ld KiB after: %.0f bytes per connection",
          r->rss_before_kb, r->rss_after_kb,
          (double)(r->rss_after_kb - r->rss_before_kb) * 1024.0 / r->held);
  if (r->held > r->first && r->first)
    fprintf(out, " (%.0f past the first %u)",
            (double)(r->rss_after_kb - r->rss_first_kb) * 1024.0 / (r->held - r->first),
            r->first);
  fputc('\n', out);
}

void bench_report_table(FILE *out, const char *url, const bench_config *cfg,
                        const bench_result *r) {
  row(out, "mode");
  fprintf(out, "%s\n", bench_mode_name(cfg->mode));
  row(out, "url");
  fprintf(out, "%s", url);
  if (r->tls_info[0]) fprintf(out, " (%s)", r->tls_info);
  fputc('\n', out);
  switch (cfg->mode) {
    case BENCH_ECHO: table_echo(out, cfg, r); break;
    case BENCH_HANDSHAKE: table_handshake(out, cfg, r); break;
    case BENCH_IDLE: table_idle(out, cfg, r); break;
    case BENCH_FANOUT: break; /* bench/wsbench's alone: never asked for here */
  }
  if (cfg->mode != BENCH_IDLE) table_cpu(out, r);
  table_errors(out, r);
}

/* ----------------------------------------------------------------- JSON */

static void json_str(FILE *out, const char *s) {
  fputc('"', out);
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (*p == '"' || *p == '\\')
      fprintf(out, "\\%c", *p);
    else if (*p < 0x20)
      fprintf(out, "\\u%04x", *p);
    else
      fputc(*p, out);
  }
  fputc('"', out);
}

static void json_key(FILE *out, const char *k) {
  json_str(out, k);
  fputc(':', out);
}

static void json_u(FILE *out, const char *k, unsigned long long v) {
  json_key(out, k);
  fprintf(out, "%llu,", v);
}

static void json_num(FILE *out, const char *k, double v) {
  json_key(out, k);
  fprintf(out, "%.3f,", v);
}

static void json_bool(FILE *out, const char *k, bool v) {
  json_key(out, k);
  fputs(v ? "true," : "false,", out);
}

static void json_latency(FILE *out, const bench_result *r) {
  json_key(out, "latency_us");
  fprintf(out, "{\"p50\":%.1f,\"p90\":%.1f,\"p99\":%.1f,\"max\":%.1f,\"samples\":%llu},",
          r->p50_us, r->p90_us, r->p99_us, r->max_us, (unsigned long long)r->samples);
}

static void json_parameters(FILE *out, const bench_config *cfg) {
  json_key(out, "parameters");
  fputc('{', out);
  json_u(out, "connections", cfg->conns);
  if (cfg->mode == BENCH_ECHO) {
    json_u(out, "inflight", cfg->inflight);
    json_u(out, "size", cfg->size);
    json_bool(out, "binary", cfg->binary);
  }
  json_bool(out, "deflate", cfg->deflate);
  json_num(out, "duration_s", cfg->duration_ms / 1e3);
  if (cfg->mode != BENCH_IDLE) json_num(out, "warmup_s", cfg->warmup_ms / 1e3);
  json_num(out, "timeout_s", cfg->timeout_ms / 1e3);
  json_key(out, "server_pid");
  if (cfg->pid)
    fprintf(out, "%ld}", cfg->pid);
  else
    fputs("null}", out);
  fputc(',', out);
}

static void json_echo(FILE *out, const bench_config *cfg, const bench_result *r) {
  double rate = per_s(r->msgs, r->seconds);
  json_u(out, "connections_opened", r->opened);
  json_num(out, "seconds", r->seconds);
  json_u(out, "messages", r->msgs);
  json_num(out, "messages_per_s", rate);
  json_num(out, "mb_per_s", rate * (double)cfg->size / 1e6);
  json_u(out, "sent", r->sent);
  json_u(out, "echoed", r->echoed);
  json_u(out, "lost", r->lost);
  json_u(out, "unanswered", r->unanswered);
  if (cfg->deflate && r->tx_plain && r->rx_plain) {
    json_num(out, "tx_ratio", (double)r->tx_wire / (double)r->tx_plain);
    json_num(out, "rx_ratio", (double)r->rx_wire / (double)r->rx_plain);
  }
  json_latency(out, r);
}

static void json_handshake(FILE *out, const bench_result *r) {
  json_num(out, "seconds", r->seconds);
  json_u(out, "handshakes", r->msgs);
  json_num(out, "handshakes_per_s", per_s(r->msgs, r->seconds));
  json_u(out, "server_no_close", r->no_close);
  json_latency(out, r);
}

static void json_idle(FILE *out, const bench_result *r) {
  json_u(out, "connections_opened", r->opened);
  json_u(out, "connections_held", r->held);
  json_num(out, "seconds", r->seconds);
  json_latency(out, r);
  bool known = r->rss_before_kb >= 0 && r->rss_after_kb >= 0 && r->held;
  json_key(out, "server_rss_kib");
  if (known)
    fprintf(out, "{\"before\":%ld,\"first\":%ld,\"after\":%ld},", r->rss_before_kb,
            r->rss_first_kb, r->rss_after_kb);
  else
    fputs("null,", out);
  json_key(out, "server_bytes_per_connection");
  if (known)
    fprintf(out, "%.0f,", (double)(r->rss_after_kb - r->rss_before_kb) * 1024.0 / r->held);
  else
    fputs("null,\"memory\":\"unknown: no --server-pid\",", out);
}

void bench_report_json(FILE *out, const char *url, const bench_config *cfg,
                       const bench_result *r) {
  fputc('{', out);
  json_key(out, "mode");
  json_str(out, bench_mode_name(cfg->mode));
  fputc(',', out);
  json_key(out, "url");
  json_str(out, url);
  fputc(',', out);
  json_parameters(out, cfg);
  switch (cfg->mode) {
    case BENCH_ECHO: json_echo(out, cfg, r); break;
    case BENCH_HANDSHAKE: json_handshake(out, r); break;
    case BENCH_IDLE: json_idle(out, r); break;
    case BENCH_FANOUT: break; /* bench/wsbench's alone */
  }
  if (cfg->mode != BENCH_IDLE) {
    json_num(out, "client_cpu", r->client_cpu);
    json_key(out, "server_cpu");
    if (r->server_cpu >= 0)
      fprintf(out, "%.3f,", r->server_cpu);
    else
      fputs("null,", out);
  }
  if (r->tls_info[0]) {
    json_key(out, "tls");
    json_str(out, r->tls_info);
    fputc(',', out);
  }
  json_u(out, "errors", r->errors);
  json_key(out, "error_kinds");
  fputc('{', out);
  for (int i = 0; i < r->n_kinds; i++) {
    if (i) fputc(',', out);
    json_key(out, r->kinds[i].name);
    fprintf(out, "%llu", (unsigned long long)r->kinds[i].count);
  }
  fputs("}}\n", out);
}
