/* libFuzzer target for src/eio/: the Engine.IO polling payload decoder and,
 * behind it as in a server, the Socket.IO packet decoder with its
 * placeholder reconstruction.
 *
 * Input: byte 0 the GET budget for re-encoding (0-255 bytes), byte 1 the
 * decoder's attachment bound (0-15), the rest a POST body.
 *
 * Checked: the body is refused with a documented code, or every packet it
 * yields is well-formed and the payload encoder writes the very same body
 * back (base64 is canonical, so there is one encoding), and cut at the
 * budget, the bodies join into it again. Each Engine.IO message is fed to
 * the Socket.IO decoder (text and binary, attachments after their header);
 * a decoded packet encodes, decodes back to the same packet, and encodes
 * to the same text again. Nothing leaks (LeakSanitizer), whatever the
 * order of errors. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "eio/eio_packet.h"
#include "eio/sio_packet.h"
#include "fuzz_check.h"

static int is_eio_error(int r) {
  return r == DX_ETOOBIG || r == DX_EUTF8 || r == DX__EIO_EEMPTY ||
         r == DX__EIO_ETYPE || r == DX__EIO_EBASE64;
}

static int is_sio_error(int r) {
  return (r <= DX__SIO_ETYPE && r >= DX__SIO_EORDER) || r == DX_EUTF8;
}

/* Equal as JSON values: numbers by value (an integral real is written as
 * an integer and read back as one, as in JavaScript), binaries by bytes. */
static int same(const json_t *a, const json_t *b) {
  if (json_is_number(a) && json_is_number(b)) {
    if (json_is_integer(a) && json_is_integer(b))
      return json_integer_value(a) == json_integer_value(b);
    return json_number_value(a) == json_number_value(b);
  }
  if (json_typeof(a) != json_typeof(b)) return 0;
  size_t i;
  json_t *e;
  const char *k;
  size_t kl;
  switch (json_typeof(a)) {
    case JSON_ARRAY:
      if (json_array_size(a) != json_array_size(b)) return 0;
      json_array_foreach(a, i, e) if (!same(e, json_array_get(b, i))) return 0;
      return 1;
    case JSON_OBJECT:
      if (json_object_size(a) != json_object_size(b)) return 0;
      json_object_keylen_foreach((json_t *)a, k, kl, e) {
        json_t *o = json_object_getn(b, k, kl);
        if (!o || !same(e, o)) return 0;
      }
      return 1;
    case JSON_STRING:
      return json_string_length(a) == json_string_length(b) &&
             memcmp(json_string_value(a), json_string_value(b),
                    json_string_length(a)) == 0;
    default:
      return 1; /* true, false, null */
  }
}

/* Feeds an encoded packet (text, then its attachments) to a decoder; it
 * must come out whole (out->nsp points into d). */
static void decode_encoded(dx__sio_decoder *d, const dx__sio_encoded *e,
                           dx__sio_packet *out) {
  int r = dx__sio_decode_text(d, (const char *)e->text.data, e->text.len, out);
  CHECK(r == (e->n_att ? 0 : 1));
  for (size_t i = 0; i < e->n_att; i++) {
    r = dx__sio_decode_binary(d, e->att[i].p, e->att[i].n, out);
    CHECK(r == (i + 1 == e->n_att ? 1 : 0));
  }
}

static void check_sio_packet(const dx__sio_packet *p) {
  CHECK(p->type >= DX__SIO_CONNECT && p->type <= DX__SIO_CONNECT_ERROR);
  CHECK(p->id >= DX__SIO_NO_ID && p->id <= DX__SIO_MAX_ID);
  CHECK(p->nsp_len >= 1 && p->nsp[0] == '/' && !memchr(p->nsp, ',', p->nsp_len));
  dx__sio_encoded e1, e2;
  dx__sio_encoded_init(&e1, &dx__alloc_std);
  dx__sio_encoded_init(&e2, &dx__alloc_std);
  CHECK(dx__sio_encode(p, 0, &e1) == 0);
  CHECK(e1.n_att == p->attachments);
  dx__sio_decoder d;
  dx__sio_decoder_init(&d, &dx__alloc_std, (unsigned)e1.n_att);
  dx__sio_packet q;
  decode_encoded(&d, &e1, &q);
  CHECK(q.type == p->type && q.id == p->id && q.attachments == p->attachments);
  CHECK(q.nsp_len == p->nsp_len && memcmp(q.nsp, p->nsp, p->nsp_len) == 0);
  CHECK((q.data == NULL) == (p->data == NULL));
  if (p->data) CHECK(same(p->data, q.data));
  CHECK(dx__sio_encode(&q, 0, &e2) == 0);
  CHECK(e2.text.len == e1.text.len &&
        memcmp(e2.text.data, e1.text.data, e1.text.len) == 0);
  dx__sio_packet_release(&q);
  dx__sio_decoder_free(&d);
  dx__sio_encoded_free(&e1);
  dx__sio_encoded_free(&e2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2) return 0;
  size_t budget = data[0];
  unsigned max_att = data[1] & 15;
  const uint8_t *text = data + 2;
  size_t n = size - 2;
  /* A bound around n, on both sides of it. */
  long m = (long)n + (data[1] >> 4) - 8;
  size_t max_payload = m < 0 ? 0 : (size_t)m;

  uint8_t *body = malloc(n ? n : 1);
  CHECK(body);
  memcpy(body, text, n);
  dx__eio_reader r;
  int err = dx__eio_payload_begin(&r, body, n, max_payload);
  if (err) {
    CHECK(is_eio_error(err));
    CHECK(err != DX_ETOOBIG || n > max_payload);
    free(body);
    return 0;
  }
  CHECK(n <= max_payload);

  dx__eio_queue q;
  dx__eio_queue_init(&q, &dx__alloc_std);
  dx__sio_decoder d;
  dx__sio_decoder_init(&d, &dx__alloc_std, max_att);
  int sio_dead = 0;
  dx__eio_packet p;
  while (dx__eio_payload_next(&r, &p) == 1) {
    CHECK(p.type <= DX__EIO_NOOP);
    CHECK(!p.binary || p.type == DX__EIO_MESSAGE);
    CHECK(p.len == 0 || (p.data >= body && p.data + p.len <= body + n));
    CHECK(dx__eio_queue_push(&q, p.type, p.binary, p.data, p.len) == 0);
    if (p.type != DX__EIO_MESSAGE || sio_dead) continue;
    dx__sio_packet sp;
    int sr = p.binary ? dx__sio_decode_binary(&d, p.data, p.len, &sp)
                      : dx__sio_decode_text(&d, (const char *)p.data, p.len, &sp);
    if (sr < 0) {
      CHECK(is_sio_error(sr));
      CHECK(dx__sio_decoder_awaiting(&d) == 0);
      sio_dead = 1; /* a server closes the connection: "parse error" */
    } else if (sr == 1) {
      check_sio_packet(&sp);
      dx__sio_packet_release(&sp);
    }
  }
  dx__sio_decoder_free(&d);

  /* The queue re-encodes to the very body, whole and cut at the budget. */
  dx__eio_buf out;
  dx__eio_buf_init(&out, &dx__alloc_std);
  size_t count = q.count;
  int taken = 0;
  while (q.count) {
    if (out.len) CHECK(dx__eio_buf_putc(&out, DX__EIO_SEPARATOR) == 0);
    size_t before = out.len;
    int k = dx__eio_payload_encode(&q, budget, &out);
    CHECK(k >= 1);
    CHECK(k == 1 || out.len - before <= budget);
    taken += k;
  }
  CHECK((size_t)taken == count);
  CHECK(out.len == n && memcmp(out.data, text, n) == 0);
  dx__eio_buf_free(&out);
  dx__eio_queue_clear(&q);
  free(body);
  return 0;
}
