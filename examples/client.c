/* A minimal WebSocket client: example_client [URL]
 * (default ws://127.0.0.1:9001/). Sends "hello", prints the reply, then
 * closes with 1000. Exits 0 after a reply and a clean close. */
#include <stdio.h>

#include <duplex.h>

static int got_reply, closed_cleanly;

static void on_open(dx_conn *c) { dx_send_text(c, "hello", 5); }

static void on_message(dx_conn *c, dx_msg_type type, const uint8_t *data,
                       size_t len) {
  if (type == DX_TEXT)
    printf("%.*s\n", (int)len, (const char *)data); /* not NUL-terminated */
  else
    printf("(%zu bytes of binary)\n", len);
  got_reply = 1;
  dx_close(c, DX_CLOSE_NORMAL, "bye");
}

static void on_close(dx_conn *c, int code, const char *reason, dx_why why,
                     int http_status) {
  (void)c; /* freed once this returns */
  fprintf(stderr, "closed: %d \"%s\" (%s)", code, reason, dx_why_name(why));
  if (http_status) fprintf(stderr, ", HTTP status %d", http_status);
  fputc('\n', stderr);
  closed_cleanly = code == DX_CLOSE_NORMAL &&
                   (why == DX_WHY_LOCAL || why == DX_WHY_PEER);
}

int main(int argc, char **argv) {
  const char *url = argc > 1 ? argv[1] : "ws://127.0.0.1:9001/";
  dx_loop *loop = dx_loop_new();
  dx_options *o = dx_options_new();
  if (!loop || !o) return 1;
  dx_options_on_open(o, on_open);
  dx_options_on_message(o, on_message);
  dx_options_on_close(o, on_close);
  dx_conn *c;
  int rc = dx_connect(loop, url, o, &c);
  dx_options_free(o);
  if (rc != 0) {
    fprintf(stderr, "%s: %s\n", url, *dx_last_error() ? dx_last_error() : dx_strerror(rc));
    dx_loop_free(loop);
    return 1;
  }
  dx_loop_run(loop); /* returns once the connection is gone */
  dx_loop_free(loop);
  return got_reply && closed_cleanly ? 0 : 1;
}
