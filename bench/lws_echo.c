/*
 * lws_echo — the libwebsockets reference echo server for bench/run.sh.
 * One service thread, like duplex serve. Each message is reassembled, queued
 * per connection and echoed with its own type, from the WRITEABLE callback
 * only; a message over TX_CHUNK goes out as TX_CHUNK fragments. rx buffer,
 * tx packet and service buffer are 64 KiB: with lws's 4 KiB default the
 * 1 MiB row runs at a third of the speed (idle memory is the same).
 *
 * usage: lws_echo [PORT]      (default 8081; all interfaces)
 */
#include <libwebsockets.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#ifndef TX_CHUNK
#define TX_CHUNK 65536
#endif
struct msg { struct msg *next; size_t len, sent; int binary; unsigned char *buf; };
struct pss { struct msg *head, *tail, *cur; }; /* cur: being reassembled */
static volatile sig_atomic_t stop;
static struct lws_context *ctx;

static int cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len) {
  struct pss *p = user;
  switch (reason) {
  case LWS_CALLBACK_RECEIVE: {
    struct msg *m = p->cur;
    if (!m) {
      if (!(m = p->cur = calloc(1, sizeof *m))) return -1;
      m->binary = lws_frame_is_binary(wsi);
    }
    unsigned char *nb = realloc(m->buf, LWS_PRE + m->len + len);
    if (!nb) return -1;
    memcpy(nb + LWS_PRE + m->len, in, len);
    m->buf = nb, m->len += len;
    if (!lws_is_final_fragment(wsi)) break;
    p->cur = NULL; /* complete: queue it */
    if (p->tail) p->tail->next = m; else p->head = m;
    p->tail = m;
    lws_callback_on_writable(wsi);
    break;
  }
  case LWS_CALLBACK_SERVER_WRITEABLE: /* several writes are allowed while
                                        nothing is left buffered by lws */
    while (p->head && !lws_partial_buffered(wsi)) {
      struct msg *m = p->head;
      size_t n = m->len - m->sent < TX_CHUNK ? m->len - m->sent : TX_CHUNK;
      int last = m->sent + n == m->len;
      int flags = lws_write_ws_flags(m->binary ? LWS_WRITE_BINARY : LWS_WRITE_TEXT, !m->sent, last);
      /* lws puts the header in the LWS_PRE bytes before the fragment, over
       * bytes already sent (or copied by lws if the send was short) */
      if (lws_write(wsi, m->buf + LWS_PRE + m->sent, n, (enum lws_write_protocol)flags) < (int)n) return -1;
      m->sent += n;
      if (last) {
        if (!(p->head = m->next)) p->tail = NULL;
        free(m->buf), free(m);
      }
    }
    if (p->head) lws_callback_on_writable(wsi);
    break;
  case LWS_CALLBACK_CLOSED:
    while (p->head) { struct msg *m = p->head; p->head = m->next; free(m->buf), free(m); }
    if (p->cur) free(p->cur->buf), free(p->cur);
    p->tail = p->cur = NULL;
    break;
  default: break;
  }
  return 0;
}

static const struct lws_protocols protocols[] = {
  {"echo", cb, sizeof(struct pss), TX_CHUNK, 0, NULL, TX_CHUNK},
  {NULL, NULL, 0, 0, 0, NULL, 0}};

/* lws_service() retries an interrupted poll, so wake it through its pipe */
static void on_signal(int sig) { (void)sig; stop = 1; if (ctx) lws_cancel_service(ctx); }

int main(int argc, char **argv) {
  struct lws_context_creation_info info;
  memset(&info, 0, sizeof info);
  info.port = argc > 1 ? atoi(argv[1]) : 8081;
  info.protocols = protocols;
  info.pt_serv_buf_size = TX_CHUNK;
  info.options = LWS_SERVER_OPTION_DISABLE_IPV6;
  signal(SIGINT, on_signal), signal(SIGTERM, on_signal);
  lws_set_log_level(LLL_ERR | LLL_WARN, NULL);
  if (!(ctx = lws_create_context(&info))) return 1;
  while (!stop && lws_service(ctx, 0) >= 0) {}
  lws_context_destroy(ctx);
  return 0;
}
