#!/usr/bin/python3
"""duplex client <-> Python websockets server.

A python3-websockets server on 127.0.0.1 answers by path:
  /echo     echoes every message
  /kick     echoes the first message, then closes with 4001 "kicked"
  /bye      echoes the first message, then closes with 1001 "going away"
  /drop     echoes the first message, then drops TCP without a close frame
  /binary   answers the first message with binary 01 02 ff, then echoes
  /refuse   refuses the upgrade with HTTP 404
`duplex connect` is driven through stdin/stdout (text lines, a 65536-char
line, UTF-8, EOF -> close 1000, the stderr close line and exit status);
with --client-peer, the C program client_peer drives the client API for
binary messages, sizes up to 16 MiB, pings and close codes.

  /usr/bin/python3 tests/interop/test_client_python.py --duplex build/duplex \
      --client-peer build/tests/interop/client_peer
"""
import asyncio
import http
import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from interop_common import (CheckFailed, base_args, check, expect_eq,  # noqa: E402
                            run_client_peer, run_connect, run_main, say, short, step)

try:
    import websockets  # Debian python3-websockets
    from websockets.exceptions import ConnectionClosed
except ImportError:
    print("FAIL: python websockets is missing: run this suite with /usr/bin/python3 "
          "and apt-get install python3-websockets", flush=True)
    sys.exit(1)


class PeerServer:
    """A websockets server in its own thread and event loop."""

    def __init__(self):
        self.port = None
        self.loop = None
        self._ready = threading.Event()
        self._stop = None
        self.error = None
        self.seen_close = {}   # path -> (code, reason) of the client's close frame

    def start(self):
        threading.Thread(target=self._run, daemon=True).start()
        if not self._ready.wait(10) or self.port is None:
            raise CheckFailed("the websockets peer server did not start: %r" % self.error)
        say("websockets %s peer server on port %d" % (websockets.__version__, self.port))

    def url(self, path):
        return "ws://127.0.0.1:%d%s" % (self.port, path)

    def _run(self):
        try:
            asyncio.run(self._serve())
        except Exception as e:  # reported by start() or at the end
            self.error = e
            self._ready.set()

    async def _serve(self):
        self.loop = asyncio.get_running_loop()
        self._stop = self.loop.create_future()

        async def refuse(path, headers):
            if path == "/refuse":
                return http.HTTPStatus.NOT_FOUND, [], b"no such endpoint\n"
            return None

        async with websockets.serve(self._handler, "127.0.0.1", 0, max_size=None,
                                    ping_interval=None, process_request=refuse) as srv:
            self.port = srv.sockets[0].getsockname()[1]
            self._ready.set()
            await self._stop

    async def _handler(self, ws, path=None):
        path = path if path is not None else ws.path
        try:
            if path == "/binary":
                msg = await ws.recv()
                await ws.send(b"\x01\x02\xff")
                await ws.send(msg)
                async for msg in ws:
                    await ws.send(msg)
                return
            if path in ("/kick", "/bye", "/drop"):
                msg = await ws.recv()
                await ws.send(msg)
                if path == "/kick":
                    await ws.close(4001, "kicked")
                elif path == "/bye":
                    await ws.close(1001, "going away")
                else:
                    # Let the echo leave, then end TCP with no close frame.
                    await asyncio.sleep(0.2)
                    ws.transport.close()
                return
            async for msg in ws:
                await ws.send(msg)
        except ConnectionClosed:
            pass
        finally:
            if ws.close_rcvd is not None:
                self.seen_close[path] = (ws.close_rcvd.code, ws.close_rcvd.reason)

    def forget(self, path):
        self.seen_close.pop(path, None)

    def wait_close_seen(self, path, what, timeout=3.0):
        """The (code, reason) of the client's close frame on `path`; the
        handler records it asynchronously, so wait a little for it."""
        deadline = time.monotonic() + timeout
        while path not in self.seen_close:
            if time.monotonic() > deadline:
                raise CheckFailed("%s: the peer server never got a close frame" % what)
            time.sleep(0.02)
        return self.seen_close[path]

    def stop(self):
        if self.loop and self._stop and not self._stop.done():
            self.loop.call_soon_threadsafe(self._stop.set_result, None)


def expect_close(res, code, what, reason=None, why=None):
    check(res.close is not None, "%s: no `closed: code=C reason=\"R\" why=W` line on stderr; "
          "stderr was %r" % (what, res.stderr.decode("utf-8", "replace")))
    expect_eq(res.close[0], code, what + ": close code in the stderr close line")
    if reason is not None:
        expect_eq(res.close[1], reason, what + ": close reason in the stderr close line")
    if why is not None:
        expect_eq(res.close[2], why, what + ": why in the stderr close line")


def t_connect_echo(duplex, peer):
    lines = ["hello", "h\u00e9llo \u2713 \U0001F642 \u4e2d\u6587", "x" * 65536,
             "tab\there", "last line"]
    # EOF only after the echoes are back: the websockets server answers a
    # close frame before its handler has echoed messages queued ahead of it,
    # so an immediate EOF is checked in the Node suite, whose ws server
    # echoes in wire order.
    for delay in (1.0,):
        peer.forget("/echo")
        step("duplex connect: %d lines round-trip through the echo server, EOF %s"
             % (len(lines), "after 1 s" if delay else "right away"))
        res = run_connect(duplex, peer.url("/echo"), lines, stdin_delay=delay)
        got = res.lines()
        if got != lines:
            raise CheckFailed("echoed lines (EOF %s): expected %d lines %s, got %d lines %s"
                              % ("after 1 s" if delay else "right away", len(lines),
                                 short(lines), len(got), short(got)))
        step("  the 65536-char line came back intact; exit status 0; close line code=1000")
        expect_eq(res.rc, 0, "exit status after a clean close on EOF")
        expect_close(res, 1000, "EOF close")
        step("  the peer server received close code 1000 from duplex connect")
        seen = peer.wait_close_seen("/echo", "EOF close")
        expect_eq(seen[0], 1000, "close code the server received")


def t_connect_binary(duplex, peer):
    step("a binary message from the server is printed on its own line as binary:... hex")
    res = run_connect(duplex, peer.url("/binary"), ["go"], stdin_delay=1.0)
    got = res.lines()
    check(len(got) == 2, "expected 2 stdout lines (binary, then the echo), got %s" % short(got))
    check(got[0].startswith("binary:") and "0102ff" in got[0],
          "binary message line: expected 'binary:' and the hex 0102ff, got %r" % got[0])
    expect_eq(got[1], "go", "text echo after the binary message")
    expect_eq(res.rc, 0, "exit status")


def t_connect_kick(duplex, peer):
    step("server closes with 4001 \"kicked\": duplex connect reports it and exits non-zero")
    res = run_connect(duplex, peer.url("/kick"), ["knock knock"], keep_stdin_open=True)
    expect_eq(res.lines(), ["knock knock"], "echo before the kick")
    expect_close(res, 4001, "kick", reason="kicked", why="closed by peer")
    check(res.rc > 0, "exit status after a 4001 close: expected a non-zero "
          "exit, got %s" % res.rc)

    step("server closes with 1001 \"going away\": duplex connect exits 0")
    res = run_connect(duplex, peer.url("/bye"), ["hi"], keep_stdin_open=True)
    expect_eq(res.lines(), ["hi"], "echo before the 1001 close")
    expect_close(res, 1001, "1001 close", reason="going away", why="closed by peer")
    expect_eq(res.rc, 0, "exit status after a clean 1001 close from the server")


def t_connect_drop(duplex, peer):
    step("server drops TCP without a close frame: code 1006, why transport close, non-zero")
    res = run_connect(duplex, peer.url("/drop"), ["ping me"], keep_stdin_open=True)
    expect_eq(res.lines(), ["ping me"], "echo before the drop")
    expect_close(res, 1006, "drop", why="transport close")
    check(res.rc > 0, "exit status after a dropped connection: expected a non-zero "
          "exit, got %s" % res.rc)


def t_connect_failures(duplex, peer):
    step("handshake refused with 404: duplex connect exits non-zero")
    res = run_connect(duplex, peer.url("/refuse"), ["never sent"], keep_stdin_open=True)
    check(res.rc > 0, "exit status after a 404 handshake: expected a non-zero "
          "exit, got %s" % res.rc)
    expect_eq(res.lines(), [], "stdout after a refused handshake")

    step("nothing listening: duplex connect exits non-zero")
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # a port that was just free; nobody listens on it
    res = run_connect(duplex, "ws://127.0.0.1:%d/" % port, [], keep_stdin_open=True)
    check(res.rc > 0, "exit status when the connection is refused: expected a non-zero "
          "exit, got %s" % res.rc)


def t_client_peer(cp, peer):
    sizes = [0, 1, 125, 126, 127, 65535, 65536, 65537]
    script = (["text:%d" % n for n in sizes] + ["binary:%d" % n for n in sizes]
              + ["binary:1048576", "text:1048576", "binary:16777216", "text:16777216",
                 "ping:", "ping:hello", "ping:" + "p" * 125, "text:5",
                 "close:1000:bye"])
    step("client API: text and binary of sizes %s, 1 MiB and 16 MiB, pings, close 1000"
         % sizes)
    run_client_peer(cp, peer.url("/echo"), script, timeout=120)
    for code in (1001, 3000, 4999):
        step("client API: dx_close(%d) completes with the server's reply" % code)
        # A path of its own (any other path echoes): the previous
        # connection's handler may record its close a little later.
        path = "/echo-%d" % code
        run_client_peer(cp, peer.url(path), ["binary:10", "close:%d:code %d" % (code, code)])
        seen = peer.wait_close_seen(path, "dx_close(%d)" % code)
        expect_eq(seen, (code, "code %d" % code),
                  "close code and reason the server received for dx_close(%d)" % code)
    step("client API: server-initiated 4001 \"kicked\" reaches on_close (why=peer)")
    run_client_peer(cp, peer.url("/kick"), ["binary:300", "expect-close:4001:kicked"])


def main(args):
    peer = PeerServer()
    peer.start()
    try:
        t_connect_echo(args.duplex, peer)
        t_connect_binary(args.duplex, peer)
        t_connect_kick(args.duplex, peer)
        t_connect_drop(args.duplex, peer)
        t_connect_failures(args.duplex, peer)
        if args.client_peer:
            t_client_peer(args.client_peer, peer)
        else:
            say("NOTE: --client-peer not given; client API checks skipped")
    finally:
        peer.stop()


if __name__ == "__main__":
    a = base_args(__doc__, need_peer=True).parse_args()
    run_main(main, a)
