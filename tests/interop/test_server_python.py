#!/usr/bin/python3
"""duplex serve <-> Python websockets client.

Starts `duplex serve --port 0` (an echo server) and drives it with the
python3-websockets client: text and binary at the frame-length boundaries,
the 16 MiB default limit (exactly 16 MiB echoes, one byte more closes with
1009), fragmented messages, ping/pong with payload, every sendable close
code round-tripped, several clients at once, and SIGTERM.

  /usr/bin/python3 tests/interop/test_server_python.py --duplex build/duplex
"""
import asyncio
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from interop_common import (CheckFailed, DuplexServer, base_args, check,  # noqa: E402
                            expect_eq, run_main, say, step)

try:
    import websockets  # Debian python3-websockets
    from websockets.exceptions import ConnectionClosed
except ImportError:
    print("FAIL: python websockets is missing: run this suite with /usr/bin/python3 "
          "and apt-get install python3-websockets", flush=True)
    sys.exit(1)

MIB = 1024 * 1024
DEFAULT_MAX = 16 * MIB
IO_TIMEOUT = 30.0
CLOSE_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012,
               1013, 1014, 3000, 3999, 4000, 4999]


def pattern_bytes(n, seed=0):
    """n bytes covering every byte value, shifted by seed."""
    block = bytes((i + seed) & 0xFF for i in range(256))
    return (block * (n // 256 + 1))[:n]


def pattern_text(n, seed=0):
    """n bytes of ASCII text (1-byte chars so len == byte length)."""
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    a = alphabet[seed % len(alphabet):] + alphabet[:seed % len(alphabet)]
    return (a * (n // len(a) + 1))[:n]


async def connect(server, **kw):
    kw.setdefault("max_size", None)       # our side never limits the echo
    kw.setdefault("ping_interval", None)  # no keepalive pings: we count frames
    kw.setdefault("close_timeout", 10)
    return await asyncio.wait_for(websockets.connect(server.url("/"), **kw), IO_TIMEOUT)


async def echo(ws, msg, what):
    await asyncio.wait_for(ws.send(msg), IO_TIMEOUT)
    try:
        got = await asyncio.wait_for(ws.recv(), IO_TIMEOUT)
    except ConnectionClosed as e:
        raise CheckFailed("%s: connection closed instead of an echo: code=%s reason=%r"
                          % (what, e.code, e.reason))
    except asyncio.TimeoutError:
        raise CheckFailed("%s: no echo within %.0f s" % (what, IO_TIMEOUT))
    expect_eq(type(got), type(msg), what + " (message type: str=text, bytes=binary)")
    if got != msg:
        raise CheckFailed("%s: echo differs (sent %d, got %d units; first difference at %d)"
                          % (what, len(msg), len(got), first_diff(msg, got)))


def first_diff(a, b):
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return min(len(a), len(b))


async def close_ok(ws, what, code=1000, reason="bye"):
    t0 = time.monotonic()
    await asyncio.wait_for(ws.close(code, reason), IO_TIMEOUT)
    took = time.monotonic() - t0
    expect_eq(ws.close_code, code, what + ": close code echoed by the server")
    # The websockets client waits (close_timeout) for the server to drop TCP
    # first; a quick close means duplex closed its end after its reply.
    check(took < 3.0, "%s: closing handshake took %.1f s (server did not close TCP "
          "promptly after its close reply)" % (what, took))


async def t_sizes(server):
    ws = await connect(server)
    for n in (0, 1, 125, 126, 127, 65535, 65536, 65537, MIB):
        step("text message of %d bytes is echoed as text" % n)
        await echo(ws, pattern_text(n, n), "text %d" % n)
        step("binary message of %d bytes is echoed as binary" % n)
        await echo(ws, pattern_bytes(n, n), "binary %d" % n)
    step("multi-byte UTF-8 text is echoed unchanged")
    await echo(ws, "h\u00e9llo \u2713 \U0001F642 \u4e2d\u6587 \u0000 end", "utf-8 text")
    await close_ok(ws, "sizes")


async def t_default_limit(server):
    ws = await connect(server)
    step("binary message of exactly 16 MiB (the default max) is echoed")
    await echo(ws, pattern_bytes(DEFAULT_MAX, 7), "binary 16 MiB")
    step("text message of exactly 16 MiB is echoed")
    await echo(ws, pattern_text(DEFAULT_MAX, 3), "text 16 MiB")
    step("a 16 MiB message in 16 fragments is echoed")
    big = pattern_bytes(DEFAULT_MAX, 11)
    await echo_fragments(ws, [big[i:i + MIB] for i in range(0, DEFAULT_MAX, MIB)], big,
                         "16 MiB in fragments")
    await close_ok(ws, "16 MiB")

    for kind, msg in (("binary", pattern_bytes(DEFAULT_MAX + 1)),
                      ("text", pattern_text(DEFAULT_MAX + 1))):
        step("%s message of 16 MiB + 1 byte closes the connection with 1009" % kind)
        ws = await connect(server)
        try:
            await asyncio.wait_for(ws.send(msg), IO_TIMEOUT)
            got = await asyncio.wait_for(ws.recv(), IO_TIMEOUT)
            raise CheckFailed("16 MiB + 1 %s: got a message (%d units) instead of a close"
                              % (kind, len(got)))
        except ConnectionClosed:
            pass
        except asyncio.TimeoutError:
            raise CheckFailed("16 MiB + 1 %s: connection still open after %.0f s"
                              % (kind, IO_TIMEOUT))
        await asyncio.wait_for(ws.wait_closed(), IO_TIMEOUT)
        expect_eq(ws.close_code, 1009, "16 MiB + 1 %s: close code from the server" % kind)

    step("the same limit over fragments: 17 fragments of 1 MiB close with 1009")
    ws = await connect(server)
    try:
        await asyncio.wait_for(ws.send([pattern_bytes(MIB)] * 17), IO_TIMEOUT)
        await asyncio.wait_for(ws.recv(), IO_TIMEOUT)
        raise CheckFailed("17 MiB in fragments: got a message instead of a close")
    except ConnectionClosed:
        pass
    await asyncio.wait_for(ws.wait_closed(), IO_TIMEOUT)
    expect_eq(ws.close_code, 1009, "17 MiB in fragments: close code from the server")


async def echo_fragments(ws, frags, whole, what):
    await asyncio.wait_for(ws.send(frags), IO_TIMEOUT)
    try:
        got = await asyncio.wait_for(ws.recv(), IO_TIMEOUT)
    except ConnectionClosed as e:
        raise CheckFailed("%s: connection closed instead of an echo: code=%s reason=%r"
                          % (what, e.code, e.reason))
    expect_eq(type(got), type(whole), what + " (message type)")
    check(got == whole, "%s: reassembled echo differs (sent %d, got %d; first difference at %d)"
          % (what, len(whole), len(got), first_diff(whole, got)))


async def t_fragments(server):
    ws = await connect(server)
    step("text sent as 3 fragments comes back as one text message")
    await echo_fragments(ws, ["Hel", "lo, ", "world"], "Hello, world", "text fragments")
    step("text fragments with multi-byte characters come back whole")
    await echo_fragments(ws, ["\u00e9\u00e9", "\u2713", "\U0001F642!"],
                         "\u00e9\u00e9\u2713\U0001F642!", "utf-8 fragments")
    step("binary sent as 4 fragments (one empty) comes back as one binary message")
    parts = [b"\x00\x01", b"", pattern_bytes(300), b"\xff"]
    await echo_fragments(ws, parts, b"".join(parts), "binary fragments")
    step("200 small fragments are reassembled")
    parts = [pattern_bytes(i % 50 + 1, i) for i in range(200)]
    await echo_fragments(ws, parts, b"".join(parts), "200 fragments")
    step("fragments crossing 126 / 65536 length encodings are reassembled")
    parts = [pattern_bytes(125), pattern_bytes(126), pattern_bytes(65535), pattern_bytes(65536)]
    await echo_fragments(ws, parts, b"".join(parts), "boundary fragments")
    step("an unfragmented message after fragmented ones still echoes")
    await echo(ws, "after", "text after fragments")
    await close_ok(ws, "fragments")


async def t_ping(server):
    ws = await connect(server)
    for payload in (b"", b"hello", pattern_bytes(125, 5)):
        step("ping with %d-byte payload is answered by a pong with the same payload"
             % len(payload))
        waiter = await asyncio.wait_for(ws.ping(payload), IO_TIMEOUT)
        try:
            # websockets resolves the waiter only for a pong whose payload
            # equals the ping's.
            await asyncio.wait_for(waiter, 10)
        except asyncio.TimeoutError:
            raise CheckFailed("no pong carrying the %d-byte ping payload within 10 s"
                              % len(payload))
    step("ping between messages does not disturb echoing")
    waiter = await ws.ping(b"mid")
    await echo(ws, "after ping", "text after ping")
    await asyncio.wait_for(waiter, 10)
    step("an unsolicited pong is ignored (connection keeps echoing)")
    await ws.pong(b"unsolicited")
    await echo(ws, b"\x01\x02", "binary after unsolicited pong")
    await close_ok(ws, "ping")


async def t_close_codes(server):
    for code in CLOSE_CODES:
        reason = "reason for %d \u2713" % code
        step("close with code %d and a reason: the server echoes code %d" % (code, code))
        ws = await connect(server)
        await echo(ws, "before close %d" % code, "echo before close")
        await close_ok(ws, "close %d" % code, code, reason)
        say("  server replied code=%s reason=%r" % (ws.close_code, ws.close_reason))
    step("close with a 123-byte reason (the maximum) echoes the code")
    ws = await connect(server)
    await close_ok(ws, "close with 123-byte reason", 4321, "r" * 123)


async def t_concurrent(server):
    step("20 clients at once, each sends 50 messages, all echo in order")

    async def one(i):
        ws = await connect(server)
        for j in range(50):
            await ws.send("client %d message %d" % (i, j))
        for j in range(50):
            got = await asyncio.wait_for(ws.recv(), IO_TIMEOUT)
            expect_eq(got, "client %d message %d" % (i, j), "client %d echo %d" % (i, j))
        await close_ok(ws, "client %d" % i)

    await asyncio.gather(*(one(i) for i in range(20)))


async def t_abrupt_client(server):
    step("a client that drops TCP mid-message does not disturb the server")
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                 b"Sec-WebSocket-Version: 13\r\n\r\n\x82\xfe\x10\x00abcd")
    await writer.drain()
    await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), IO_TIMEOUT)
    writer.close()
    ws = await connect(server)
    await echo(ws, "still here", "echo after abrupt client")
    await close_ok(ws, "after abrupt client")


async def suite(server):
    await t_sizes(server)
    await t_fragments(server)
    await t_ping(server)
    await t_close_codes(server)
    await t_default_limit(server)
    await t_concurrent(server)
    await t_abrupt_client(server)


def main(args):
    say("websockets %s" % websockets.__version__)
    server = DuplexServer(args.duplex)
    server.start()
    try:
        asyncio.run(suite(server))
        server.check_alive("the suite")
        step("SIGTERM stops duplex serve within 5 s")
        rc = server.stop(require_clean=True)
        say("  duplex serve exited with status %s" % rc)
    finally:
        server.stop()


if __name__ == "__main__":
    a = base_args(__doc__).parse_args()
    run_main(main, a)
