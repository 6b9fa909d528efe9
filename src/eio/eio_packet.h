/* Engine.IO v4 packets, sans-IO: bytes in, packets out, and back.
 *
 * What this layer does:
 *  - decodes one packet from a WebSocket message (a text frame is
 *    "<type><data>", a binary frame is a message packet as it is);
 *  - decodes an HTTP long-polling POST body: packets joined by the record
 *    separator 0x1e, binary messages as "b" + base64, the whole body
 *    checked before the first packet is handed out (a body is taken whole
 *    or refused whole), base64 decoded in place (no allocation);
 *  - keeps the session's outgoing packets in a FIFO and builds a polling
 *    GET body from its front within a byte budget (maxPayload), leaving
 *    the rest queued for the next GET;
 *  - writes the open packet's JSON and the HTTP error bodies
 *    {"code":N,"message":"..."} with the statuses the reference server
 *    uses.
 *
 * What it does not do: any I/O, any clock. The heartbeat (ping every
 * pingInterval, close after pingTimeout), the held GET of the polling
 * transport, the probe/upgrade swap of transports, the session table and
 * sids, and Socket.IO's namespaces and rooms belong to the next layers
 * (the transports and the session state machine), which call this one.
 * It never allocates except through the dx__alloc it is given, and holds
 * no global state: any thread may use it on its own objects. */
#ifndef DX_EIO_PACKET_H
#define DX_EIO_PACKET_H
#include <stddef.h>
#include <stdint.h>

#include "eio/eio_buf.h"

enum {
  DX__EIO_OPEN = 0,
  DX__EIO_CLOSE = 1,
  DX__EIO_PING = 2,
  DX__EIO_PONG = 3,
  DX__EIO_MESSAGE = 4,
  DX__EIO_UPGRADE = 5,
  DX__EIO_NOOP = 6
};

#define DX__EIO_SEPARATOR 0x1e /* between the packets of a polling payload */

typedef struct dx__eio_packet {
  uint8_t type;   /* DX__EIO_OPEN .. DX__EIO_NOOP */
  uint8_t binary; /* 1: a binary message (type is DX__EIO_MESSAGE) */
  /* The data after the type digit (text: UTF-8, possibly empty), or the
   * bytes of a binary message. Points into the buffer it was decoded
   * from, or into the queue (see dx__eio_queue_front). */
  const uint8_t *data;
  size_t len;
} dx__eio_packet;

/* ---- decoding ---------------------------------------------------------- */

/* One packet from one WebSocket message. `binary` says the frame was
 * binary: then the packet is a binary message of exactly those bytes. A
 * text frame (already valid UTF-8: the WebSocket session checked it) is
 * "<type><data>". "b"-prefixed base64 is refused here (DX__EIO_ETYPE): a
 * v4 client sends binary frames over WebSocket. out->data points into p.
 * Returns 0, DX__EIO_EEMPTY (an empty text frame) or DX__EIO_ETYPE. */
int dx__eio_decode_ws(const uint8_t *p, size_t n, int binary,
                      dx__eio_packet *out);

/* A POST body being read packet by packet. Fields private. */
typedef struct dx__eio_reader {
  uint8_t *p;
  size_t len, pos;
} dx__eio_reader;

/* Checks a whole POST body and readies r to hand out its packets. Errors,
 * each before any packet is handed out: DX_ETOOBIG (len > max_payload: the
 * transport answers 413, as the reference server does), DX_EUTF8,
 * DX__EIO_EEMPTY (an empty body, or an empty record: two separators in a
 * row, or one at either end), DX__EIO_ETYPE (a record starting with
 * anything but '0'-'6' or 'b'), DX__EIO_EBASE64 (after 'b': not canonical
 * padded base64 of the standard alphabet, non-zero pad bits included).
 * body is borrowed and will be written (base64 is decoded in place): it
 * must stay valid and unchanged by others until the last packet is used. */
int dx__eio_payload_begin(dx__eio_reader *r, uint8_t *body, size_t len,
                          size_t max_payload);
/* The next packet: 1 (out filled, data pointing into the body), or 0 at the
 * end. */
int dx__eio_payload_next(dx__eio_reader *r, dx__eio_packet *out);

/* ---- encoding ---------------------------------------------------------- */

/* The payload of the WebSocket frame carrying p: "<type><data>" for a text
 * frame, or, when p->binary, the bytes as they are for a binary frame.
 * Appended to out. 0, DX_EINVAL (a bad type, or binary other than a
 * message) or DX_ENOMEM. */
int dx__eio_encode_ws(dx__eio_buf *out, const dx__eio_packet *p);

/* Bytes p takes as one record of a polling payload, separator not counted:
 * 1 + len for text, 1 + base64 length for binary. */
size_t dx__eio_record_size(const dx__eio_packet *p);

/* ---- the outgoing queue ------------------------------------------------ */

typedef struct dx__eio_qnode dx__eio_qnode;

/* A FIFO of packets waiting for a transport. Each packet is copied into
 * one allocation of its own when queued. Fields private. */
typedef struct dx__eio_queue {
  dx__eio_qnode *head, *tail;
  size_t count;           /* packets queued */
  size_t bytes;           /* bytes held (data and nodes), for a caller's bound */
  const dx__alloc *alloc; /* borrowed: must outlive the queue */
} dx__eio_queue;

void dx__eio_queue_init(dx__eio_queue *q, const dx__alloc *a);
/* Frees every queued packet. */
void dx__eio_queue_clear(dx__eio_queue *q);
/* Queues a copy of a packet. 0, DX_EINVAL (type out of range, binary other
 * than a message), DX_EUTF8 (text data that is not UTF-8: every text
 * packet must go in a text frame or a text body) or DX_ENOMEM (nothing
 * queued). */
int dx__eio_queue_push(dx__eio_queue *q, int type, int binary,
                       const void *data, size_t len);
/* The oldest packet, pointing into the queue until it is popped: 1, or 0
 * when the queue is empty. */
int dx__eio_queue_front(const dx__eio_queue *q, dx__eio_packet *out);
void dx__eio_queue_pop(dx__eio_queue *q);

/* A polling GET body from the front of the queue: as many packets as fit
 * in `budget` bytes (separators and base64 counted), at least one even if
 * alone it is larger (it could never be sent otherwise; the client takes
 * it, its maxPayload bounds what it sends, not what it reads). Appended to
 * out; the packets taken are popped. Returns how many were taken (0 when
 * the queue is empty: the transport holds the GET), or DX_ENOMEM with
 * nothing taken and out as it was. */
int dx__eio_payload_encode(dx__eio_queue *q, size_t budget, dx__eio_buf *out);

/* ---- the handshake and HTTP errors ------------------------------------- */

typedef struct dx__eio_open {
  const char *sid;          /* the session id, NUL-terminated, not empty */
  int upgrade_websocket;    /* 1: "upgrades":["websocket"] (a polling
                               session may upgrade); 0: [] */
  uint32_t ping_interval;   /* ms */
  uint32_t ping_timeout;    /* ms */
  uint64_t max_payload;     /* bytes, at most 2^53 - 1 (a JS number) */
} dx__eio_open;

/* Appends the open packet's JSON (the data of a DX__EIO_OPEN packet):
 * {"sid":..,"upgrades":[..],"pingInterval":..,"pingTimeout":..,
 * "maxPayload":..}. 0, DX_EINVAL (no sid, a sid that is not UTF-8,
 * max_payload too large) or DX_ENOMEM (out as it was). */
int dx__eio_open_json(dx__eio_buf *out, const dx__eio_open *o);

/* The Engine.IO HTTP error codes. */
enum {
  DX__EIO_ERR_UNKNOWN_TRANSPORT = 0,
  DX__EIO_ERR_UNKNOWN_SID = 1,
  DX__EIO_ERR_BAD_HANDSHAKE_METHOD = 2,
  DX__EIO_ERR_BAD_REQUEST = 3,
  DX__EIO_ERR_FORBIDDEN = 4,
  DX__EIO_ERR_UNSUPPORTED_PROTOCOL_VERSION = 5
};

/* The HTTP status a polling request refused with `code` gets (403 for
 * Forbidden, 400 for the others, as the reference server answers), and in
 * *message (if not NULL) the code's standard message ("Transport
 * unknown"...). DX_EINVAL for a code outside 0-5. The body is
 * dx__eio_http_error_body's, sent as Content-Type: application/json. (A
 * refused WebSocket upgrade is answered 400 with the message as text.) */
int dx__eio_http_error(int code, const char **message);
/* Appends {"code":N,"message":"..."}; message NULL means the standard one
 * (the reference lets an allowRequest hook give its own, e.g. for 4).
 * 0, DX_EINVAL (code outside 0-5, message not UTF-8) or DX_ENOMEM. */
int dx__eio_http_error_body(dx__eio_buf *out, int code, const char *message);
#endif
