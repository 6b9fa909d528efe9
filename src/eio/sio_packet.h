/* Socket.IO v5 packets, sans-IO: the text of an Engine.IO message (and the
 * binary messages after it) in, packets out, and back.
 *
 * Format: <type>[<attachments>-][<namespace>,][<ack id>][<JSON data>],
 * the namespace left out for "/", every binary replaced in the JSON by
 * {"_placeholder":true,"num":k} and sent after the text as the k-th binary
 * Engine.IO message.
 *
 * What this layer does: decodes strictly (any malformed packet is an
 * error, which the session answers as the reference server does: it
 * closes the connection with the reason "parse error"), gathers the
 * announced attachments and puts each buffer where its placeholder was, at
 * any depth; encodes a packet and its binaries, placeholders and the
 * attachment count written for the caller. It checks what a packet of
 * each type may carry, both ways, with one set of rules (the reference
 * parser's, see sio_packet.c).
 *
 * What it does not do: any I/O or clock; namespaces (which exist, which a
 * client joined, the CONNECT handshake and its auth), rooms, ack ids'
 * bookkeeping and timeouts, and the Engine.IO session (heartbeat,
 * transports, upgrade): the next layers.
 *
 * JSON is jansson's json_t. A binary inside a value is a json_t of its own
 * made by dx__sio_binary_new and recognised by dx__sio_binary_get: an
 * object with one member whose key starts with the byte 0xFF. No JSON text
 * can produce that key (the parser admits only valid UTF-8, where 0xFF
 * never occurs), so a peer cannot forge a binary, and a binary travels
 * with its value: a handler may keep or pass on args[2] alone, binaries
 * included, reference-counted like any json_t, with no side table of
 * buffers to carry along and keep in step. Such a value is for this
 * encoder: json_dumps would write the key's raw byte.
 *
 * Allocation: the decoder's and encoder's own memory through the dx__alloc
 * given; json_t values through jansson's allocator (process-wide, set by
 * json_set_alloc_funcs if an embedder wants to). Nothing global of ours:
 * one decoder or encoder per thread at a time, values shared read-only. */
#ifndef DX_EIO_SIO_PACKET_H
#define DX_EIO_SIO_PACKET_H
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "eio/eio_buf.h"

enum {
  DX__SIO_CONNECT = 0,
  DX__SIO_DISCONNECT = 1,
  DX__SIO_EVENT = 2,
  DX__SIO_ACK = 3,
  DX__SIO_CONNECT_ERROR = 4,
  DX__SIO_BINARY_EVENT = 5,
  DX__SIO_BINARY_ACK = 6
};

#define DX__SIO_NO_ID (-1)
/* The largest ack id: 2^53 - 1, the largest integer a JavaScript number
 * holds exactly (the reference client's ids are numbers). */
#define DX__SIO_MAX_ID INT64_C(9007199254740991)
/* The reference parser's default bound on a packet's attachments. */
#define DX__SIO_MAX_ATTACHMENTS 10
/* How deep the encoder follows a value (the parser's own bound, jansson's
 * JSON_PARSER_MAX_DEPTH, is the same); deeper, or a cycle: DX_EINVAL. */
#define DX__SIO_MAX_DEPTH 2048

typedef struct dx__sio_packet {
  int type;         /* DX__SIO_*; a decoded binary packet is reported as
                       EVENT or ACK (with `attachments` set), as the
                       reference does; the encoder picks BINARY_* itself */
  const char *nsp;  /* the namespace, "/" when the packet named none */
  size_t nsp_len;
  int64_t id;       /* 0 .. DX__SIO_MAX_ID, or DX__SIO_NO_ID */
  json_t *data;     /* NULL when the packet has none */
  unsigned attachments; /* decoded: how many binaries it carried */
} dx__sio_packet;

/* ---- binaries inside a json_t ------------------------------------------ */

/* A new binary value holding a copy of p[0..n) (new reference; NULL on no
 * memory). Put it anywhere in a value given to dx__sio_encode. */
json_t *dx__sio_binary_new(const void *p, size_t n);
/* 1 when v is a binary value, with *p and *n set to its bytes (valid while
 * v lives); 0 otherwise (*p, *n untouched). */
int dx__sio_binary_get(const json_t *v, const uint8_t **p, size_t *n);

/* 1 when name[0..n) is an event name the protocol reserves ("connect",
 * "connect_error", "disconnect", "disconnecting", "newListener",
 * "removeListener"): neither side may send an EVENT with it. */
int dx__sio_reserved_event(const char *name, size_t n);

/* Releases p->data (json_decref) and clears it. */
void dx__sio_packet_release(dx__sio_packet *p);

/* ---- decoding ---------------------------------------------------------- */

/* One per connection (the attachments of a packet follow it on the same
 * Engine.IO session). Fields private. */
typedef struct dx__sio_decoder {
  const dx__alloc *alloc;
  unsigned max_attachments;
  dx__sio_packet pending; /* a binary packet waiting for its buffers */
  json_t **bins;          /* its buffers so far, as binary values */
  unsigned got;
  char *nsp;              /* the namespace of the last packet, NUL-ended */
  size_t nsp_cap;
} dx__sio_decoder;

/* max_attachments: the most binaries one packet may announce
 * (DX__SIO_MAX_ATTACHMENTS is the reference's). The allocator is
 * borrowed. */
void dx__sio_decoder_init(dx__sio_decoder *d, const dx__alloc *a,
                          unsigned max_attachments);
/* Frees all it holds, a half-received packet included. */
void dx__sio_decoder_free(dx__sio_decoder *d);
/* How many binary messages the pending packet still waits for (0: none). */
unsigned dx__sio_decoder_awaiting(const dx__sio_decoder *d);

/* Feeds the data of one Engine.IO text message. Returns 1 with *out filled
 * (a complete packet: out->data is a new reference the caller releases,
 * out->nsp valid until the next call on d), 0 when it was the header of a
 * binary packet (its buffers are to come through dx__sio_decode_binary),
 * or an error, after which d holds no pending packet:
 *   DX_EUTF8 (not UTF-8), DX__SIO_ETYPE (empty, or a type other than 0-6),
 *   DX__SIO_EATTACH (a binary type without "<n>-", n a canonical number
 *   from 1), DX__SIO_ETOOMANY (n over max_attachments), DX__SIO_ENSP
 *   (something other than "/", an id or JSON after the type), DX__SIO_EID
 *   (something other than an id or JSON after the namespace; an id with a
 *   leading zero, over DX__SIO_MAX_ID, on a type that takes none, or
 *   missing on an ACK), DX__SIO_EJSON (invalid JSON: syntax, invalid UTF-8
 *   escapes, duplicate keys, nesting over 2048, a number over a double's
 *   range), DX__SIO_EDATA (data the type does not allow: CONNECT not an
 *   object, DISCONNECT with data, EVENT not a non-empty array starting
 *   with a string or number name, ACK not an array, CONNECT_ERROR not an
 *   object or string, EVENT or ACK without data), DX__SIO_ERESERVED (an
 *   EVENT named with a reserved name), DX__SIO_EPLACEHOLDER (an object
 *   with a "_placeholder" key that is not exactly {"_placeholder":true,
 *   "num":k} with k below the count and not seen before, or any in a
 *   packet that announced no attachments), DX__SIO_ECOUNT (fewer
 *   placeholders than announced), DX__SIO_EORDER (text while attachments
 *   were due), DX_ENOMEM.
 * Integers beyond 64 bits (JavaScript writes numbers from 2^63 to 1e21 as
 * digits) make the whole value decode with reals, as JavaScript reads it. */
int dx__sio_decode_text(dx__sio_decoder *d, const char *p, size_t n,
                        dx__sio_packet *out);
/* Feeds one Engine.IO binary message. Returns 1 with *out filled when it
 * was the last attachment (every placeholder replaced by its binary), 0
 * when more are due, DX__SIO_EORDER when none was, or DX_ENOMEM (after an
 * error d holds no pending packet). p is copied. */
int dx__sio_decode_binary(dx__sio_decoder *d, const uint8_t *p, size_t n,
                          dx__sio_packet *out);

/* ---- encoding ---------------------------------------------------------- */

typedef struct dx__sio_attachment {
  const uint8_t *p; /* borrowed from the packet's data: valid while it lives */
  size_t n;
} dx__sio_attachment;

typedef struct dx__sio_encoded {
  dx__eio_buf text;        /* the packet's text (to send as the data of an
                              Engine.IO message packet, "4" before it) */
  dx__sio_attachment *att; /* then these, each its own binary message */
  size_t n_att, cap_att;
} dx__sio_encoded;

void dx__sio_encoded_init(dx__sio_encoded *e, const dx__alloc *a);
void dx__sio_encoded_free(dx__sio_encoded *e);

/* Encodes p into e (replacing what e held). p->type is CONNECT,
 * DISCONNECT, EVENT, ACK or CONNECT_ERROR (BINARY_* are taken as EVENT and
 * ACK): an EVENT or ACK whose data holds binaries goes out as BINARY_EVENT
 * or BINARY_ACK with them as attachments in the order written. p->nsp NULL
 * means "/". JSON is written compact, strings in UTF-8 as they are, reals
 * in the shortest form that reads back exactly, so the reference decoder
 * gets what JSON.stringify would have sent. Returns 0, or what the decoder
 * would answer for the packet (DX__SIO_ETYPE, DX__SIO_EID, DX__SIO_EDATA,
 * DX__SIO_ERESERVED, DX__SIO_EPLACEHOLDER for data holding a
 * "_placeholder" key of its own, DX__SIO_ETOOMANY past max_attachments, 0
 * for no bound), DX__SIO_ENSP (a namespace not starting with "/" or
 * holding a comma), DX_EINVAL (a string or key that is not UTF-8, nesting
 * over DX__SIO_MAX_DEPTH), DX_ENOMEM. */
int dx__sio_encode(const dx__sio_packet *p, unsigned max_attachments,
                   dx__sio_encoded *e);
#endif
