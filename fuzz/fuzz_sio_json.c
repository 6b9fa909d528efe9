/* libFuzzer target for src/eio/sio_json.c: the fast path that reads the
 * common subset of JSON straight into jansson values.
 *
 * Input: any bytes, taken as the JSON data of a Socket.IO packet. As in
 * the decoder, only valid UTF-8 gets this far.
 *
 * Checked: whenever the fast path gives a value, jansson's own parser,
 * with the flags the decoder uses, gives an equal one (json_equal: same
 * types, integers by value, objects by key and value, strings by bytes).
 * Text outside the subset is jansson's alone, so nothing is checked then
 * but that the whole parse neither crashes nor leaks. */
#include <stdint.h>
#include <stdlib.h>

#include "eio/sio_json.h"
#include "fuzz_check.h"
#include "proto/utf8.h"

#define JSON_FLAGS (JSON_REJECT_DUPLICATES | JSON_DECODE_ANY | JSON_ALLOW_NUL)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (dx__utf8_validate(data, size) != 0) return 0;
  const char *p = (const char *)data;
  json_t *fast = dx__sio_json_parse_fast(p, size);
  if (fast) {
    json_error_t err;
    json_t *ref = json_loadb(p, size, JSON_FLAGS, &err);
    CHECK(ref != NULL);
    CHECK(json_equal(fast, ref));
    json_decref(ref);
    json_decref(fast);
  }
  json_decref(dx__sio_json_parse(p, size));
  return 0;
}
