/* The JSON of a Socket.IO packet's data, read into jansson values.
 *
 * Why not jansson's json_loadb alone: its lexer reads the text a byte at a
 * time through a callback, checks UTF-8 again and copies every token into
 * a growing buffer. On a short event (`["echo","twenty bytes of text."]`)
 * that was 6,400 instructions, 40 % of all a polling server spends on the
 * event (callgrind, bench/README.md). Most events are made of plain
 * strings, integers and literals in arrays and objects, so this file reads
 * that subset itself, straight into the same jansson values; any text
 * outside it (an escape in a string, a real number, a key seen twice, too
 * deep, or anything malformed) goes to json_loadb, which decides. jansson
 * stays the only judge of what is valid and of every error.
 *
 * fuzz/fuzz_sio_json.c checks that both paths give equal values, or both
 * fail, on any input. */
#ifndef DX_EIO_SIO_JSON_H
#define DX_EIO_SIO_JSON_H
#include <jansson.h>
#include <stddef.h>

/* The value of the JSON text p[0..n) (any type at the top), a new
 * reference, or NULL if it is not valid JSON (or memory ran out). p must
 * be valid UTF-8: the caller has checked the whole packet. The flags are
 * jansson's JSON_REJECT_DUPLICATES | JSON_DECODE_ANY | JSON_ALLOW_NUL; an
 * integer beyond 64 bits is read as a real, as JavaScript would. */
json_t *dx__sio_json_parse(const char *p, size_t n);

/* The fast path alone, for the fuzzer's comparison: the value, or NULL
 * when the text is outside the subset or memory ran out. */
json_t *dx__sio_json_parse_fast(const char *p, size_t n);

#endif
