#!/usr/bin/env python3
"""Writes the seed corpora in fuzz/corpus/<target>/ (deterministic).

The layouts follow the headers of fuzz_frame.c, fuzz_session.c and
fuzz_handshake.c. Run from anywhere: python3 fuzz/gen_corpus.py

It (re)writes only its own seed files, by name, and never deletes a file:
the corpus directories also hold what fuzzing runs found and merged (files
named by their SHA-1), and the inflate and deflate_offer corpora, which it
has no seeds for. A seed dropped from this script stays on disk until it is
removed by hand (git rm).
"""
import os
import struct
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
KEY = b"\x37\xfa\x21\x3d"


def frame(op, payload=b"", fin=True, mask=None, rsv=0, len_form=None):
    """One frame; mask is a 4-byte key or None. len_form forces 16/64."""
    b0 = (0x80 if fin else 0) | (rsv << 4) | op
    n = len(payload)
    mbit = 0x80 if mask else 0
    if len_form == 64 or (len_form is None and n > 0xFFFF):
        head = bytes([b0, mbit | 127]) + struct.pack(">Q", n)
    elif len_form == 16 or (len_form is None and n >= 126):
        head = bytes([b0, mbit | 126]) + struct.pack(">H", n)
    else:
        head = bytes([b0, mbit | n])
    if mask:
        payload = bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
        head += mask
    return head + payload


def close_payload(code, reason=b""):
    return struct.pack(">H", code) + reason


RFC_EXAMPLES = {
    "rfc_text": bytes.fromhex("810548656c6c6f"),
    "rfc_masked_text": bytes.fromhex("818537fa213d7f9f4d5158"),
    "rfc_frag1": bytes.fromhex("010348656c"),
    "rfc_frag2": bytes.fromhex("80026c6f"),
    "rfc_ping": bytes.fromhex("890548656c6c6f"),
    "rfc_masked_pong": bytes.fromhex("8a8537fa213d7f9f4d5158"),
    "rfc_256": bytes.fromhex("827e0100") + bytes(range(256)),
    "rfc_64k_header": bytes.fromhex("827f0000000000010000"),
}


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def frame_corpus():
    for name, b in RFC_EXAMPLES.items():
        write("frame", "parse_" + name, b"\x00" + b[:32])
    write("frame", "parse_top_bit", b"\x00" + bytes.fromhex("827f8000000000000000"))
    write("frame", "parse_reserved_op", b"\x00\x83\x00")
    write("frame", "parse_ctl_nofin", b"\x00\x09\x00")
    write("frame", "parse_ctl_126", b"\x00\x89\x7e\x00\x7e")
    write("frame", "parse_nonminimal16", b"\x00\x82\x7e\x00\x05")
    write("frame", "parse_nonminimal64", b"\x00\x82\x7f" + struct.pack(">Q", 5))
    write("frame", "parse_rsv", b"\x00\xf1\x80" + KEY)
    # Round-trip material: flags, key, 8 length bytes, payload.
    for i, flags in enumerate([0x01, 0x13, 0x93, 0x25, 0x8F, 0xA1]):
        body = bytes([flags]) + KEY + struct.pack(">Q", i * 0x1234567 + i) + bytes(range(i * 9))
        write("frame", "roundtrip_%d" % i, b"\x01" + body)


def session_input(role_client, frames, splits=(), mode_bits=0, seed=0):
    """mode byte, split count/seed byte, split sizes, wire bytes."""
    mode = (1 if role_client else 0) | mode_bits
    return bytes([mode, (seed << 4) | len(splits)]) + bytes(splits) + b"".join(frames)


def deflate_messages(msgs, wbits=15, takeover=True):
    """RFC 7692 payloads: raw deflate, sync-flushed, 00 00 ff ff removed."""
    out = []
    c = zlib.compressobj(6, zlib.DEFLATED, -wbits)
    for m in msgs:
        if not takeover:
            c = zlib.compressobj(6, zlib.DEFLATED, -wbits)
        z = c.compress(m) + c.flush(zlib.Z_SYNC_FLUSH)
        assert z.endswith(b"\x00\x00\xff\xff")
        out.append(z[:-4])
    return out


def session_corpus():
    for client in (False, True):
        tag = "client" if client else "server"
        m = None if client else KEY  # the peer masks when we are the server

        def f(op, payload=b"", **kw):
            return frame(op, payload, mask=m, **kw)

        cases = {
            "hello": [f(1, b"Hello")],
            "frag": [f(1, b"Hel", fin=False), f(0, b"lo")],
            "ping": [f(9, b"Hello")],
            "pong": [f(10, b"Hello")],
            "bin256": [f(2, bytes(range(256)))],
            "interleaved": [f(1, b"Hel", fin=False), f(9, b"p"), f(0, b"l", fin=False),
                            f(10, b""), f(0, b"o")],
            "close": [f(8, close_payload(1000, b"bye"))],
            "close_empty": [f(8)],
            "close_then_data": [f(8, close_payload(1001)), f(1, b"late")],
            "close_bad_code": [f(8, close_payload(1005))],
            "close_1byte": [f(8, b"\x03")],
            "close_bad_utf8": [f(8, close_payload(1000, b"\xf4\x90"))],
            "utf8_641": [f(1, "κόσμε".encode(), fin=False), f(0, b"\xf4\x90\x80\x80", fin=False),
                         f(0, b"edited")],
            "utf8_split_char": [f(1, b"\xce", fin=False), f(0, b"\xba")],
            "utf8_truncated": [f(1, b"ab\xe2\x82")],
            "rsv1": [f(1, b"x", rsv=4)],
            "reserved_op": [f(3, b"x")],
            "cont_no_msg": [f(0, b"x")],
            "data_in_frag": [f(1, b"a", fin=False), f(2, b"b")],
            "nonminimal": [f(2, b"abc", len_form=16)],
            "wrong_mask": [frame(1, b"Hello", mask=(KEY if client else None))],
            "many": [f(1, b"m%d" % i) for i in range(10)] + [f(8, close_payload(1000))],
            "big_header": [bytes([0x82, (0x80 if m else 0) | 127]) + struct.pack(">Q", 1 << 40)
                           + (m or b"")],
            # A header announcing the whole limit (1 MiB) and 10 payload
            # bytes; likewise a continuation announcing 512 KiB. Memory
            # must follow the 10 bytes, not the announcement.
            "announced_1m": [bytes([0x82, (0x80 if m else 0) | 127]) + struct.pack(">Q", 1 << 20)
                             + (m or b"") + bytes(range(10))],
            "announced_frag": [f(2, b"abc", fin=False),
                               bytes([0x00, (0x80 if m else 0) | 127]) + struct.pack(">Q", 1 << 19)
                               + (m or b"") + bytes(range(10))],
        }
        for name, frames in cases.items():
            write("session", "%s_%s" % (tag, name), session_input(client, frames))
        # permessage-deflate (mode bit 2). seed 1: 15-bit windows with
        # context takeover; seed 3: no context takeover.
        hello, again = deflate_messages([b"Hello", b"Hello again, Hello"])
        pmd_cases = {
            "pmd_hello": (1, [f(1, hello, rsv=4)]),
            "pmd_takeover": (1, [f(1, hello, rsv=4), f(1, again, rsv=4)]),
            "pmd_frag": (1, [f(2, hello[:2], rsv=4, fin=False), f(0, hello[2:])]),
            "pmd_mixed": (1, [f(1, b"plain"), f(1, hello, rsv=4), f(9, b"p")]),
            "pmd_empty": (1, [f(2, b"", rsv=4), f(2, b"\x00", rsv=4)]),
            "pmd_no_takeover": (3, [f(1, deflate_messages([b"abcabcabc"], takeover=False)[0], rsv=4)]),
            "pmd_corrupt": (1, [f(1, b"\xff\xff\xff", rsv=4)]),
            "pmd_rsv1_on_cont": (1, [f(1, hello[:2], rsv=4, fin=False), f(0, hello[2:], rsv=4)]),
            "pmd_bad_utf8": (1, [f(1, deflate_messages([b"\xf4\x90\x80\x80"])[0], rsv=4)]),
            "pmd_bomb": (1, [f(2, deflate_messages([bytes(100000)])[0], rsv=4)]),
        }
        for name, (seed, frames) in pmd_cases.items():
            write("session", "%s_%s" % (tag, name),
                  session_input(client, frames, mode_bits=4, seed=seed))
        # Chopped and with small limits / allocation failure.
        write("session", tag + "_hello_chopped",
              session_input(client, cases["interleaved"], splits=(1, 2, 3, 5)))
        write("session", tag + "_big_small_limits",
              session_input(client, [f(2, bytes(250)), f(2, bytes(100), fin=False), f(0, bytes(250))],
                            mode_bits=2))
        write("session", tag + "_close_alloc_fail",
              session_input(client, [f(1, b"x", fin=False), f(0, b"y"), f(8, close_payload(1000, b"reason"))],
                            splits=(3,), mode_bits=8 | (3 << 4), seed=1))


def handshake_corpus():
    req = (b"GET /chat HTTP/1.1\r\n"
           b"Host: server.example.com\r\n"
           b"Upgrade: websocket\r\n"
           b"Connection: Upgrade\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
           b"Origin: http://example.com\r\n"
           b"Sec-WebSocket-Protocol: chat, superchat\r\n"
           b"Sec-WebSocket-Version: 13\r\n\r\n")
    resp = (b"HTTP/1.1 101 Switching Protocols\r\n"
            b"Upgrade: websocket\r\n"
            b"Connection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n")
    variants = {
        "req_rfc": req,
        "req_lf": req.replace(b"\r\n", b"\n"),
        "req_keepalive": req.replace(b"Connection: Upgrade", b"Connection: keep-alive, Upgrade"),
        "req_v8": req.replace(b"Version: 13", b"Version: 8"),
        "req_post": req.replace(b"GET", b"POST", 1),
        "req_http10": req.replace(b"HTTP/1.1", b"HTTP/1.0", 1),
        "req_no_key": req.replace(b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", b""),
        "req_bad_key": req.replace(b"dGhlIHNhbXBsZSBub25jZQ==", b"short"),
        "req_two_hosts": req.replace(b"Host:", b"Host: a\r\nHost:"),
        "req_with_frame": req + bytes.fromhex("818537fa213d7f9f4d5158"),
        "req_query": req.replace(b"/chat", b"/chat?room=1&x=%20"),
        "req_fold": req.replace(b"Origin: http://example.com", b"Origin: a\r\n b"),
    }
    for name, text in variants.items():
        for mode, step in ((0x00, 0), (0xFC, 6)):
            write("handshake", "%s_%02x" % (name, mode), bytes([mode, step]) + text)
    resps = {
        "resp_rfc": resp,
        "resp_404": b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
        "resp_bad_accept": resp.replace(b"s3pPL", b"AAAAA"),
        "resp_ext": resp.replace(b"\r\n\r\n", b"\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n"),
        "resp_lf": resp.replace(b"\r\n", b"\n"),
    }
    for name, text in resps.items():
        write("handshake", name, bytes([0x81, 3]) + text)


def main():
    frame_corpus()
    session_corpus()
    handshake_corpus()


if __name__ == "__main__":
    main()
