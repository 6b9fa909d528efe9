#!/usr/bin/python3
"""permessage-deflate (RFC 7692) between duplex and Python websockets.

Our server <- websockets clients, one per negotiation variant:
server_no_context_takeover, client_no_context_takeover, both,
server_max_window_bits 9..15, client_max_window_bits 9..15, with and
without a value, and none. Each checks the Sec-WebSocket-Extensions of the
101 against the offer, then echoes 0 B, 1 B, 16 KiB of JSON-like text
(twice: context takeover), 1 MiB text, 1 MiB incompressible binary, 16 MiB
text and binary, and fragmented compressed messages.

Our server, seen through raw sockets: with server_max_window_bits=N its
compressed replies inflate with an N-bit window even when zlib checks every
distance; with server_no_context_takeover each reply inflates alone; short
replies go uncompressed. Offers it cannot accept (server_max_window_bits=8,
unknown or duplicate parameters, bad values) are declined: 101 without
Sec-WebSocket-Extensions, and the connection works uncompressed. A
decompression bomb (64 MiB / 256 MiB of zeros, ~64 / 256 KiB on the wire,
whole or fragmented) is closed with 1009 while the server's peak RSS grows
by far less than the inflated size.

Our client (client_peer, duplex connect) -> websockets servers that ask for
each parameter, and with our client asking for them; fragmented compressed
echoes from the server. A raw server answering with an extension or a
parameter we did not offer makes our client fail with 1010, why=handshake
failed.

  /usr/bin/python3 tests/interop/test_deflate.py --duplex build/duplex \
      --client-peer build/tests/interop/client_peer
"""
import asyncio
import dataclasses
import os
import socket
import sys
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from interop_common import (CheckFailed, DuplexServer, RawUpgradeServer, WsPeer,  # noqa: E402
                            base_args, check, expect_eq, need_websockets, parse_frames,
                            run_client_peer, run_connect, run_main, say, step)

websockets = need_websockets()
from websockets.exceptions import ConnectionClosed  # noqa: E402
from websockets.extensions.permessage_deflate import (  # noqa: E402
    ClientPerMessageDeflateFactory, ServerPerMessageDeflateFactory)
from websockets.frames import Frame  # noqa: E402
from websockets.headers import parse_extension  # noqa: E402
from test_server_python import (IO_TIMEOUT, MIB, close_ok, connect, echo,  # noqa: E402
                                echo_fragments, pattern_text)
from test_raw_malformed import (RFC_KEY, Conn, accept_for, expect_close_code,  # noqa: E402
                                expect_message, frame, parse_head)

PMD = "permessage-deflate"
KNOWN = ("server_no_context_takeover", "client_no_context_takeover", "server_max_window_bits",
         "client_max_window_bits")
TAIL = b"\x00\x00\xff\xff"


def json_like(n, seed=1):
    """n characters of JSON-like text (ASCII) whose first 5000 characters
    come again right after themselves: a match 5000 bytes back, which only a
    window of 13 bits or more may use."""
    out, i, x = [], 0, seed
    while i < min(n, 5000):
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
        name = "".join(chr(97 + (x >> s) % 26) for s in range(0, 24, 3))
        rec = '{"id":%d,"name":"%s","score":%d.%02d,"ok":%s},' % (
            len(out), name, x % 1000, (x >> 7) % 100, "true" if x & 1 else "false")
        out.append(rec)
        i += len(rec)
    head = "".join(out)[:5000]
    return (head * (n // 5000 + 1))[:n] if n else ""


def periodic(n, period=199):
    """Binary with a period short enough for a 9-bit window (zlib's longest
    distance there is 250 bytes), so it compresses well in every variant."""
    block = bytes((i * 37 + 11) & 0xFF for i in range(period))
    return (block * (n // period + 1))[:n]


def ext_params(value, what):
    """The one permessage-deflate element of a Sec-WebSocket-Extensions
    value, as {param: value or None}; fails on anything else."""
    try:
        elems = parse_extension(value)
    except Exception as e:
        raise CheckFailed("%s: cannot parse Sec-WebSocket-Extensions %r: %s" % (what, value, e))
    check(len(elems) == 1 and elems[0][0] == PMD,
          "%s: expected exactly one permessage-deflate, got %r" % (what, value))
    names = [p for p, _ in elems[0][1]]
    check(len(names) == len(set(names)), "%s: duplicate parameter in %r" % (what, value))
    check(all(p in KNOWN for p in names), "%s: unknown parameter in %r" % (what, value))
    return dict(elems[0][1])


def check_answer(offer, value, what):
    """RFC 7692 section 7 for the answer of duplex serve (defaults: 15-bit
    windows, context takeover both ways, so it adds nothing unasked) to a
    websockets offer made with ClientPerMessageDeflateFactory(**offer)."""
    check(value is not None, "%s: the 101 has no Sec-WebSocket-Extensions: the offer was "
          "declined" % what)
    got = ext_params(value, what)
    snct, cnct = offer.get("server_no_context_takeover"), offer.get("client_no_context_takeover")
    expect_eq("server_no_context_takeover" in got, bool(snct),
              what + ": server_no_context_takeover in the answer %r" % value)
    if not cnct:
        check("client_no_context_takeover" not in got,
              "%s: client_no_context_takeover unasked in %r" % (what, value))
    for p in KNOWN[:2]:
        check(got.get(p, None) is None, "%s: %s carries a value in %r" % (what, p, value))
    smwb = offer.get("server_max_window_bits")
    if smwb is None:
        check("server_max_window_bits" not in got,
              "%s: server_max_window_bits unasked in %r" % (what, value))
    else:
        v = got.get("server_max_window_bits")
        check(v is not None and v.isdigit() and 9 <= int(v) <= smwb,
              "%s: expected server_max_window_bits=9..%d (section 7.1.2.1), got %r"
              % (what, smwb, value))
    cmwb = offer.get("client_max_window_bits", True)
    if cmwb is None:
        check("client_max_window_bits" not in got, "%s: client_max_window_bits in %r although "
              "the offer had none (section 7.1.2.2)" % (what, value))
    elif "client_max_window_bits" in got:
        v = got["client_max_window_bits"]
        top = 15 if cmwb is True else cmwb
        check(v is not None and v.isdigit() and 8 <= int(v) <= top,
              "%s: expected client_max_window_bits=8..%d or none, got %r" % (what, top, value))
    return got


# ------------------------------------------------------ our server <- websockets

SERVER_VARIANTS = (
    [("offer with no parameters but client_max_window_bits", {}),
     ("client_max_window_bits not offered", {"client_max_window_bits": None}),
     ("server_no_context_takeover", {"server_no_context_takeover": True}),
     ("client_no_context_takeover", {"client_no_context_takeover": True}),
     ("both no_context_takeover", {"server_no_context_takeover": True,
                                   "client_no_context_takeover": True})]
    + [("server_max_window_bits=%d" % b, {"server_max_window_bits": b}) for b in range(9, 16)]
    + [("client_max_window_bits=%d" % b, {"client_max_window_bits": b}) for b in range(9, 16)]
    + [("client_max_window_bits without a value", {"client_max_window_bits": True})])


async def t_variant(server, name, offer):
    step("websockets offers permessage-deflate with %s: duplex serve accepts, answering per "
         "RFC 7692" % name)
    logged = server.log_count(" deflate=on ")
    ws = await connect(server, compression=None,
                       extensions=[ClientPerMessageDeflateFactory(**offer)])
    value = ws.response_headers.get("Sec-WebSocket-Extensions")
    got = check_answer(offer, value, name)
    say("  answer: %s" % value)
    check(len(ws.extensions) == 1, "%s: websockets did not activate the extension" % name)
    step("  %s: 0 B, 1 B, 16 KiB JSON-like text twice, 1 MiB text, 1 MiB incompressible, "
         "16 MiB text and binary, fragmented text and binary echo" % name)
    await echo(ws, "", name + ": empty text")
    await echo(ws, b"\x00", name + ": 1-byte binary")
    doc = json_like(16384)
    await echo(ws, doc, name + ": 16 KiB JSON-like text")
    await echo(ws, doc, name + ": the same 16 KiB again (context takeover)")
    await echo(ws, pattern_text(MIB, 3), name + ": 1 MiB text")
    await echo(ws, os.urandom(MIB), name + ": 1 MiB incompressible binary")
    await echo(ws, pattern_text(16 * MIB, 5), name + ": 16 MiB text")
    await echo(ws, periodic(16 * MIB), name + ": 16 MiB binary")
    await echo_fragments(ws, [doc[:5000], doc[5000:5001], doc[5001:12000], doc[12000:]], doc,
                         name + ": JSON-like text in 4 compressed fragments")
    blob = periodic(MIB, 97)
    await echo_fragments(ws, [blob[:1000], blob[1000:600000], blob[600000:]], blob,
                         name + ": 1 MiB binary in 3 compressed fragments")
    await close_ok(ws, name)
    server.expect_logged(" deflate=on ", logged, name)
    return got


def t_server_variants(args):
    server = DuplexServer(args.duplex)
    server.start()

    async def run():
        for name, offer in SERVER_VARIANTS:
            await t_variant(server, name, offer)
        step("websockets offers server_max_window_bits=8: duplex serve declines (zlib cannot "
             "deflate with 8 bits); the connection opens uncompressed")
        ws = await connect(server, compression=None,
                           extensions=[ClientPerMessageDeflateFactory(server_max_window_bits=8)])
        expect_eq(ws.response_headers.get("Sec-WebSocket-Extensions"), None,
                  "Sec-WebSocket-Extensions answering server_max_window_bits=8")
        expect_eq(ws.extensions, [], "extensions active after the decline")
        await echo(ws, json_like(16384), "16 KiB uncompressed after a declined offer")
        await close_ok(ws, "declined offer")
        step("websockets without compression: no Sec-WebSocket-Extensions, echoes work")
        ws = await connect(server, compression=None)
        expect_eq(ws.response_headers.get("Sec-WebSocket-Extensions"), None,
                  "Sec-WebSocket-Extensions with no offer")
        await echo(ws, pattern_text(MIB), "1 MiB uncompressed")
        await close_ok(ws, "no offer")

    asyncio.run(run())
    server.check_alive("the negotiation variants")
    return server


# --------------------------------------------------- our server, raw sockets

class _KeepCompressed:
    """Stands in for the extension in websockets' frame parser: keeps the
    payload as sent and remembers RSV1, so this suite inflates it itself."""
    name = PMD
    rsv1 = False

    def decode(self, fr, *, max_size=None):
        self.rsv1 = fr.rsv1
        return dataclasses.replace(fr, rsv1=False)


def read_frame_rsv1(c):
    """The next frame from a raw connection as (Frame, rsv1)."""
    keep = _KeepCompressed()

    def read_exact(n):
        return c.read_exact(n)
        yield  # a generator, as Frame.parse wants; never suspends

    parser = Frame.parse(read_exact, mask=False, max_size=None, extensions=[keep])
    try:
        next(parser)
    except StopIteration as done:
        return done.value, keep.rsv1
    raise CheckFailed("frame parser wanted more input than read_exact gave")


def inflate_strict(payload, bits, what, d=None):
    """Inflates one message as a peer with a `bits`-bit window must: output
    in 64-byte steps, so zlib checks each distance against that window
    rather than against what it produced in one call."""
    d = d or zlib.decompressobj(wbits=-bits)
    data, out = payload + TAIL, bytearray()
    try:
        while True:
            chunk = d.decompress(data, 64)
            out += chunk
            data = d.unconsumed_tail
            if not data and not chunk:
                return bytes(out)
    except zlib.error as e:
        raise CheckFailed("%s: the reply does not inflate with a %d-bit window: %s"
                          % (what, bits, e))


def raw_upgrade(port, extensions, what):
    """A raw connection upgraded with this Sec-WebSocket-Extensions offer
    (None: no header); returns (conn, the 101's headers)."""
    c = Conn(port)
    ext = "Sec-WebSocket-Extensions: %s\r\n" % extensions if extensions is not None else ""
    c.send(("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n%s\r\n"
            % (RFC_KEY, ext)).encode())
    try:
        status, headers, line = parse_head(c.read_head())
    except (socket.timeout, OSError) as e:
        c.close()
        raise CheckFailed("%s: no answer to the upgrade: %s" % (what, e))
    if status != 101:
        c.close()
        raise CheckFailed("%s: expected 101 (an unacceptable offer is declined, not refused), "
                          "got %r" % (what, line))
    expect_eq(headers.get("sec-websocket-accept"), accept_for(RFC_KEY), what + ": accept key")
    return c, headers


def echo_compressed(c, msg, what):
    """Sends msg uncompressed (a text frame); returns (payload, rsv1) of the
    echo frame."""
    c.send(frame(1, msg))
    try:
        fr, rsv1 = read_frame_rsv1(c)
    except socket.timeout:
        raise CheckFailed("%s: no echo within the timeout" % what)
    expect_eq((fr.opcode.value, fr.fin), (1, True), what + ": (opcode, fin) of the echo")
    return fr.data, rsv1


def t_raw_windows(server):
    doc = json_like(16384).encode()
    for bits in range(9, 16):
        what = "raw offer server_max_window_bits=%d" % bits
        step("%s: the 16 KiB reply is compressed (RSV1) and inflates with a strict %d-bit "
             "window" % (what, bits))
        c, headers = raw_upgrade(server.port, "%s; server_max_window_bits=%d" % (PMD, bits),
                                 what)
        try:
            got = ext_params(headers.get("sec-websocket-extensions"), what)
            expect_eq(got.get("server_max_window_bits"), str(bits),
                      what + ": server_max_window_bits in the answer")
            payload, rsv1 = echo_compressed(c, doc, what)
            check(rsv1, "%s: the 16 KiB reply was not compressed (RSV1 clear)" % what)
            expect_eq(inflate_strict(payload, bits, what), doc, what + ": inflated reply")
            say("  %d bytes on the wire" % len(payload))
        finally:
            c.close()

    for snct in (True, False):
        offer = PMD + ("; server_no_context_takeover" if snct else "")
        what = "raw offer %r" % offer
        step("%s: the same 16 KiB twice; %s" % (
            what, "each reply inflates with a fresh inflater" if snct else
            "the second reply refers back to the first (much smaller)"))
        c, headers = raw_upgrade(server.port, offer, what)
        try:
            got = ext_params(headers.get("sec-websocket-extensions"), what)
            expect_eq("server_no_context_takeover" in got, snct,
                      what + ": server_no_context_takeover in the answer")
            first, _ = echo_compressed(c, doc, what + " (first)")
            second, _ = echo_compressed(c, doc, what + " (second)")
            d = zlib.decompressobj(wbits=-15)
            expect_eq(inflate_strict(first, 15, what, d), doc, what + ": first reply")
            if snct:
                expect_eq(inflate_strict(second, 15, what + " (second, alone)"), doc,
                          what + ": second reply inflated on its own")
            else:
                expect_eq(inflate_strict(second, 15, what, d), doc,
                          what + ": second reply inflated with the first's context")
                check(len(second) * 4 < len(first), "%s: second reply %d bytes vs first %d: "
                      "context takeover unused" % (what, len(second), len(first)))
            say("  first reply %d bytes, second %d" % (len(first), len(second)))
            step("  short messages (under the 64-byte default threshold) echo uncompressed")
            payload, rsv1 = echo_compressed(c, b"short", what + " (short)")
            expect_eq((rsv1, payload), (False, b"short"), what + ": (RSV1, payload) of a "
                      "5-byte reply")
        finally:
            c.close()

    what = "raw: client-compressed messages with context takeover"
    step("%s (each of 3 refers back to the one before) inflate and echo" % what)
    c, _ = raw_upgrade(server.port, PMD, what)
    try:
        comp, inflater = zlib.compressobj(wbits=-15), zlib.decompressobj(wbits=-15)
        for i in range(3):
            body = comp.compress(doc) + comp.flush(zlib.Z_SYNC_FLUSH)
            check(body.endswith(TAIL), "zlib sync flush did not end with 00 00 ff ff")
            if i:
                check(len(body) * 4 < len(doc), "test setup: message %d is %d bytes "
                      "compressed, so it does not refer back" % (i + 1, len(body)))
            c.send(frame(1, body[:-4], rsv=4))
            fr, rsv1 = read_frame_rsv1(c)
            got = inflate_strict(fr.data, 15, what, inflater) if rsv1 else fr.data
            expect_eq(got, doc, "%s: echo of message %d" % (what, i + 1))
    finally:
        c.close()


def deflate_raw(data, finish=False):
    """data compressed on its own as a permessage-deflate payload: sync-
    flushed with 00 00 ff ff removed, or (finish) ended by a BFINAL block."""
    comp = zlib.compressobj(wbits=-15)
    body = comp.compress(data) + comp.flush(zlib.Z_FINISH if finish else zlib.Z_SYNC_FLUSH)
    return body if finish else body[:-4]


def expect_echo_any(c, want, what):
    """The next frame echoes want as text, compressed or not."""
    try:
        fr, rsv1 = read_frame_rsv1(c)
    except socket.timeout:
        raise CheckFailed("%s: no echo within the timeout" % what)
    got = inflate_strict(fr.data, 15, what) if rsv1 else fr.data
    expect_eq((fr.opcode.value, got), (1, want), what + ": (opcode, payload) of the echo")


def t_raw_frames(server):
    """Frame-level rules of RFC 7692 against duplex serve, on connections
    that negotiated permessage-deflate."""
    hello = b"Hello"
    bad = [
        ("RSV1 on a continuation frame", lambda c: c.send(
            frame(1, deflate_raw(b"abc"), fin=False, rsv=4) + frame(0, b"def", rsv=4)), 1002),
        ("RSV1 on a ping", lambda c: c.send(frame(9, b"p", rsv=4)), 1002),
        ("a compressed payload that is not deflate data", lambda c: c.send(
            frame(2, b"\xff\xfe\xfd\xfc" * 8, rsv=4)), 1007),
        ("compressed text that inflates to invalid UTF-8", lambda c: c.send(
            frame(1, deflate_raw(b"ok \xc3\x28 bad"), rsv=4)), 1007),
    ]
    for name, send, code in bad:
        step("raw, permessage-deflate on: %s -> close %d" % (name, code))
        c, _ = raw_upgrade(server.port, PMD, name)
        try:
            send(c)
            expect_close_code(c, code, name)
        finally:
            c.close()

    what = "raw: messages ended by a BFINAL block (RFC 7692 section 7.2.3.4)"
    step("%s: with a 00 padding byte, without, and a normal message after them all echo"
         % what)
    c, _ = raw_upgrade(server.port, PMD, what)
    try:
        c.send(frame(1, deflate_raw(hello, finish=True) + b"\x00", rsv=4))
        expect_echo_any(c, hello, what + " (BFINAL + 00)")
        c.send(frame(1, deflate_raw(b"Hello again", finish=True), rsv=4))
        expect_echo_any(c, b"Hello again", what + " (BFINAL)")
        c.send(frame(1, deflate_raw(b"and a sync-flushed one"), rsv=4))
        expect_echo_any(c, b"and a sync-flushed one", what + " (after BFINAL messages)")
    finally:
        c.close()

    what = "raw: an empty compressed message, and one split with an empty middle fragment"
    step(what + ": both echo")
    c, _ = raw_upgrade(server.port, PMD, what)
    try:
        c.send(frame(1, b"", rsv=4))
        expect_echo_any(c, b"", what + " (empty payload)")
        c.send(frame(1, b"\x00", rsv=4))
        expect_echo_any(c, b"", what + " (one empty stored block)")
        body = deflate_raw(hello)
        c.send(frame(1, body[:2], fin=False, rsv=4) + frame(0, b"", fin=False)
               + frame(0, body[2:]))
        expect_echo_any(c, hello, what + " (fragments)")
        c.send(frame(1, hello))
        expect_echo_any(c, hello, what + " (an uncompressed message between)")
    finally:
        c.close()
    server.check_alive("the raw frame cases")


DECLINED = [
    PMD + "; server_max_window_bits=8",
    PMD + "; unknown_param",
    PMD + "; server_max_window_bits=16",
    PMD + "; server_max_window_bits=7",
    PMD + "; server_max_window_bits",
    PMD + "; server_max_window_bits=abc",
    PMD + "; client_max_window_bits=16",
    PMD + "; server_no_context_takeover=1",
    PMD + "; server_no_context_takeover; server_no_context_takeover",
    "x-webkit-deflate-frame",
    "permessage-foo",
]

ACCEPTED = [
    # (offer, the parameters the answer must carry)
    (PMD + '; server_max_window_bits="10"', {"server_max_window_bits": "10"}),
    (PMD + "; server_max_window_bits=8, " + PMD + "; server_max_window_bits=11",
     {"server_max_window_bits": "11"}),
    (PMD + "; unknown_param, " + PMD, {}),
    ("x-webkit-deflate-frame, " + PMD + "; client_max_window_bits", {}),
]


def t_raw_decline(server):
    for offer in DECLINED:
        what = "raw offer %r" % offer
        step("%s is declined: 101 without Sec-WebSocket-Extensions, then an uncompressed "
             "echo" % what)
        c, headers = raw_upgrade(server.port, offer, what)
        try:
            expect_eq(headers.get("sec-websocket-extensions"), None,
                      what + ": Sec-WebSocket-Extensions in the 101")
            msg = json_like(200).encode()
            c.send(frame(1, msg))
            expect_message(c, 1, msg, what + ": echo (must not be compressed)")
        finally:
            c.close()
    for offer, want in ACCEPTED:
        what = "raw offer %r" % offer
        step("%s: the first acceptable offer is taken: answer with %r" % (what, want))
        c, headers = raw_upgrade(server.port, offer, what)
        try:
            got = ext_params(headers.get("sec-websocket-extensions"), what)
            expect_eq(got, want, what + ": parameters of the answer")
        finally:
            c.close()
    server.check_alive("the raw negotiation cases")


def bomb_payload(inflated):
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = bytes(MIB)
    body = b"".join(comp.compress(chunk) for _ in range(inflated // MIB))
    body += comp.flush(zlib.Z_SYNC_FLUSH)
    check(body.endswith(TAIL), "zlib sync flush did not end with 00 00 ff ff")
    return body[:-4]


def t_bomb(args):
    cases = [(["--max-message", "1M"], 64 * MIB, False, 8 * MIB),
             (["--max-message", "1M"], 64 * MIB, True, 8 * MIB),
             ([], 256 * MIB, False, 64 * MIB)]
    for extra, inflated, fragmented, bound in cases:
        what = "bomb: %d MiB of zeros%s, server %s" % (
            inflated // MIB, " in 8 fragments" if fragmented else "",
            " ".join(extra) or "with the default 16 MiB limit")
        body = bomb_payload(inflated)
        step("%s (%d KiB compressed, RSV1, masked) is closed with 1009; peak RSS grows by less "
             "than %d MiB" % (what, len(body) // 1024, bound // MIB))
        server = DuplexServer(args.duplex, extra)
        server.start()
        c, headers = raw_upgrade(server.port, PMD, what)
        try:
            check(headers.get("sec-websocket-extensions", "").startswith(PMD),
                  "%s: permessage-deflate not negotiated" % what)
            c.send(frame(1, b"warm-up"))
            expect_message(c, 1, b"warm-up", what + ": warm-up echo")
            before = server.memory_kib("VmHWM")
            if fragmented:
                k = len(body) // 8 + 1
                parts = [body[i:i + k] for i in range(0, len(body), k)]
                for i, p in enumerate(parts):
                    op, rsv = (2, 4) if i == 0 else (0, 0)
                    try:
                        c.send(frame(op, p, fin=i == len(parts) - 1, rsv=rsv))
                    except OSError:
                        break  # the server may close before the last fragment
            else:
                c.send(frame(2, body, rsv=4))
            expect_close_code(c, 1009, what)
            after = server.memory_kib("VmHWM")
            say("  peak RSS %d KiB before, %d KiB after (+%d KiB; the bomb inflates to %d MiB)"
                % (before, after, after - before, inflated // MIB))
            check((after - before) * 1024 < bound, "%s: peak RSS grew by %d KiB, expected under "
                  "%d MiB" % (what, after - before, bound // MIB))
        finally:
            c.close()
        server.check_alive(what)
        server.stop()


# ------------------------------------------------ our client -> websockets

PEER_SCRIPT = ["text:0", "binary:1", "json:16384", "json:16384", "text:1048576",
               "noise:1048576", "plain:70000", "binary:4194304", "ping:x"]

THEIR_SERVERS = (
    [("default", {}),
     ("server_no_context_takeover", {"server_no_context_takeover": True}),
     ("client_no_context_takeover", {"client_no_context_takeover": True}),
     ("both no_context_takeover", {"server_no_context_takeover": True,
                                   "client_no_context_takeover": True})]
    + [("server_max_window_bits=%d" % b, {"server_max_window_bits": b}) for b in range(9, 16)]
    + [("client_max_window_bits=%d" % b, {"client_max_window_bits": b}) for b in range(8, 16)])


def expect_in_answer(value, want, what):
    """want: {param: value-or-None} that the answer must carry."""
    got = ext_params(value, what)
    for p, v in want.items():
        check(p in got and (v is None or got[p] == str(v)),
              "%s: expected %s%s in the answer, got %r" % (what, p, "" if v is None else
                                                          "=%s" % v, value))


def t_client_variants(args):
    cp = args.client_peer
    for name, cfg in THEIR_SERVERS:
        with WsPeer(compression=None, extensions=[ServerPerMessageDeflateFactory(**cfg)]) as peer:
            for path in ("/", "/frag"):
                step("client_peer -> websockets server asking for %s%s: compressed echoes of "
                     "0 B to 4 MiB" % (name, ", echoing in 3 fragments" if path == "/frag"
                                       else ""))
                run_client_peer(cp, peer.url(path), PEER_SCRIPT, timeout=60,
                                opts=["--deflate", "--expect-compressed=1"])
                rec = peer.last(name)
                want = {k: (None if v is True else v) for k, v in cfg.items()}
                expect_in_answer(rec["response"].get("Sec-WebSocket-Extensions"), want, name)
    step("client_peer -> websockets (default): 16 MiB text and binary, compressed")
    with WsPeer() as peer:
        run_client_peer(cp, peer.url("/"), ["text:16777216", "binary:16777216"], timeout=120,
                        opts=["--deflate", "--expect-compressed=1"])


OUR_OFFERS = [
    (["--deflate-no-context=1,0"], {"server_no_context_takeover": None}),
    (["--deflate-no-context=0,1"], {"client_no_context_takeover": None}),
    (["--deflate-no-context=1,1"], {"server_no_context_takeover": None,
                                    "client_no_context_takeover": None}),
    (["--deflate-window=9,15"], {"server_max_window_bits": 9}),
    (["--deflate-window=12,15"], {"server_max_window_bits": 12}),
    (["--deflate-window=15,9"], {"client_max_window_bits": 9}),
    (["--deflate-window=10,11", "--deflate-no-context=1,1"],
     {"server_max_window_bits": 10, "client_max_window_bits": 11,
      "server_no_context_takeover": None, "client_no_context_takeover": None}),
]


def t_client_offers(args):
    with WsPeer() as peer:
        for opts, want in OUR_OFFERS:
            what = "client_peer %s" % " ".join(opts)
            step("%s: the offer carries %s; the websockets server accepts; echoes work"
                 % (what, want))
            run_client_peer(args.client_peer, peer.url("/frag"), PEER_SCRIPT, timeout=60,
                            opts=["--deflate", "--expect-compressed=1"] + opts)
            rec = peer.last(what)
            expect_in_answer(rec["request"].get("Sec-WebSocket-Extensions"), want,
                             what + " (our offer)")
            say("  offer %r, answer %r" % (rec["request"].get("Sec-WebSocket-Extensions"),
                                           rec["response"].get("Sec-WebSocket-Extensions")))
        step("duplex connect offers permessage-deflate by default and gets it")
        res = run_connect(args.duplex, peer.url("/"), [json_like(3000)], stdin_delay=0.5)
        expect_eq((res.rc, res.lines()), (0, [json_like(3000)]), "(exit status, echo)")
        offer = peer.last("duplex connect")["request"].get("Sec-WebSocket-Extensions")
        ext_params(offer, "duplex connect's offer")
        step("duplex connect --no-deflate offers nothing")
        run_connect(args.duplex, peer.url("/"), ["x"], stdin_delay=0.3, extra=["--no-deflate"])
        expect_eq(peer.last("duplex connect --no-deflate")["request"].get(
            "Sec-WebSocket-Extensions"), None, "Sec-WebSocket-Extensions with --no-deflate")


BAD_ANSWERS = [
    # (the server's answer, or a list of them (one header line each), duplex
    # connect options, what)
    (PMD + "; unknown_param", [], "a parameter we did not offer"),
    (PMD, ["--no-deflate"], "permessage-deflate although we offered nothing"),
    ("x-unknown-extension", [], "an extension we did not offer"),
    (PMD + ", " + PMD, [], "permessage-deflate twice"),
    (PMD + "; server_max_window_bits=16", [], "server_max_window_bits=16"),
    (PMD + "; server_no_context_takeover; server_no_context_takeover", [],
     "a duplicate parameter"),
    # Every line is checked, however many: the client once looked at the
    # first 16 only and opened with the 17th naming an extension.
    ([""] * 16 + ["x-unknown-extension"], [], "an extension we did not offer, in a 17th line"),
]


def t_client_bad_answers(args):
    for answer, extra, what in BAD_ANSWERS:
        lines = answer if isinstance(answer, list) else [answer]
        with RawUpgradeServer(["Sec-WebSocket-Extensions: " + a for a in lines]) as raw:
            step("a raw server answers %r (%s): duplex connect fails with 1010, why=handshake "
                 "failed, exit 1" % (answer, what))
            res = run_connect(args.duplex, raw.url("/"), ["never sent"], keep_stdin_open=True,
                              extra=extra)
            res.expect_failed(1010, "handshake failed", "answer %r" % answer)
            say("  reason: %s" % res.close[1])
            if args.client_peer:
                step("  client_peer fails the same way")
                opts = [] if extra else ["--deflate"]
                run_client_peer(args.client_peer, raw.url("/"), [], timeout=30, opts=opts + [
                    "--expect-fail=1010:handshake failed"])
            sent = raw.wait_done("answer %r" % answer)["after"]
            say("  the client sent %d byte(s) after the 101, then ended TCP" % len(sent))


def t_client_bomb(args):
    """Our client inflates what a server sends under --max-message too."""
    body = bomb_payload(64 * MIB)
    bomb = frame(2, body, rsv=4, mask=False)
    with RawUpgradeServer(["Sec-WebSocket-Extensions: " + PMD], send_after=bomb) as raw:
        step("a raw server sends 64 MiB of zeros deflated to %d KiB right after the 101: "
             "duplex connect --max-message 1M closes with 1009 (why=protocol error), exit 1"
             % (len(body) // 1024))
        res = run_connect(args.duplex, raw.url("/"), [], keep_stdin_open=True, timeout=30,
                          extra=["--max-message", "1M"])
        res.expect_failed(1009, "protocol error", "client bomb")
        frames, _ = parse_frames(raw.wait_done("client bomb")["after"])
        check(frames and frames[0][1] == 8 and frames[0][3],
              "client bomb: expected a masked close frame from the client, got %r"
              % [(op, masked, p[:8]) for _, op, p, masked, _ in frames])
        expect_eq(int.from_bytes(frames[0][2][:2], "big"), 1009,
                  "close code our client sent the bomb's server")


def t_corrupt_stream_reason(args):
    """The close reason tells an operator what went wrong."""
    server = DuplexServer(args.duplex)
    server.start()
    what = "raw: a binary message whose compressed payload is not deflate data"
    step("%s: close 1007 with a reason that does not blame UTF-8 (there is no text)" % what)
    c, _ = raw_upgrade(server.port, PMD, what)
    try:
        c.send(frame(2, b"\xff\xfe\xfd\xfc" * 8, rsv=4))
        fr, _ = read_frame_rsv1(c)
    finally:
        c.close()
    code, reason = int.from_bytes(fr.data[:2], "big"), fr.data[2:].decode("utf-8", "replace")
    say("  got close %d reason=%r" % (code, reason))
    expect_eq(code, 1007, what + ": close code")
    check("utf-8" not in reason.lower(), "%s: expected a reason about the compressed data, got "
          "%r" % (what, reason))


def t_limit_is_for_the_message(args):
    """An incompressible message of exactly --max-message bytes grows when
    deflated (stored blocks, or worse with a small window or memLevel); the
    limit is on the message (README: "after reassembly"), so it must echo."""
    server = DuplexServer(args.duplex, ["--max-message", "1M"])
    server.start()
    # (what, connect() arguments, the (window bits, memLevel) they deflate with)
    clients = [("websockets' default compression", {}, (15, 5)),
               ("ClientPerMessageDeflateFactory()",
                {"compression": None, "extensions": [ClientPerMessageDeflateFactory()]}, (15, 8)),
               ("client_max_window_bits=9",
                {"compression": None,
                 "extensions": [ClientPerMessageDeflateFactory(client_max_window_bits=9)]},
                (9, 8))]

    async def run():
        for name, kw, (bits, mem) in clients:
            ws = await connect(server, **kw)
            msg = os.urandom(MIB)
            comp = zlib.compressobj(6, zlib.DEFLATED, -bits, mem)
            wire = len(comp.compress(msg) + comp.flush(zlib.Z_SYNC_FLUSH)) - 4
            step("--max-message 1M, %s: an incompressible binary message of exactly 1 MiB "
                 "(%d bytes on the wire: window %d bits, memLevel %d) is echoed, not closed "
                 "with 1009" % (name, wire, bits, mem))
            await echo(ws, msg, "incompressible 1 MiB at a 1 MiB limit, " + name)
            step("  and 1 MiB + 1 byte (compressible) closes with 1009")
            try:
                await ws.send(pattern_text(MIB + 1))
                await asyncio.wait_for(ws.recv(), IO_TIMEOUT)
                raise CheckFailed("1 MiB + 1 at a 1 MiB limit: echoed instead of closed")
            except ConnectionClosed:
                pass
            expect_eq(ws.close_code, 1009, "close code for 1 MiB + 1 at a 1 MiB limit")

    asyncio.run(run())


def main(args):
    say("websockets %s, zlib %s" % (websockets.__version__, zlib.ZLIB_RUNTIME_VERSION))
    server = t_server_variants(args)
    t_raw_windows(server)
    t_raw_decline(server)
    t_raw_frames(server)
    server.check_alive("the raw cases")
    server.stop()
    t_bomb(args)
    if args.client_peer:
        t_client_variants(args)
        t_client_offers(args)
    else:
        say("NOTE: --client-peer not given; client API checks skipped")
    t_client_bad_answers(args)
    t_client_bomb(args)
    t_corrupt_stream_reason(args)
    t_limit_is_for_the_message(args)


if __name__ == "__main__":
    a = base_args(__doc__, need_peer=True).parse_args()
    run_main(main, a)
