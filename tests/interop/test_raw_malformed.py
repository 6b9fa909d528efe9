#!/usr/bin/python3
"""duplex serve against hand-built bytes (plain sockets, no WebSocket library).

Handshake: every malformed upgrade request gets its exact HTTP status and a
one-line body (405 POST; 400 missing Host, bad Upgrade, bad Connection, bad
key, HTTP/1.0; 426 + `Sec-WebSocket-Version: 13` for version 8; 431 for a
head over 8 KiB), and the valid variants upgrade with the right accept key.

Frames: every protocol violation gets a close frame with the exact code
(1002 for RSV bits, reserved opcodes, bad control frames, unmasked frames,
bad fragmentation, a 64-bit length with the top bit set, bad close
payloads and codes; 1007 for invalid UTF-8, failing fast inside a
fragmented message; 1009 over --max-message), after which the server ends
TCP. The RFC 6455 section 5.7 example frames echo byte for byte, a ping
between fragments is answered, and after every case a fresh connection
still upgrades and echoes.

  /usr/bin/python3 tests/interop/test_raw_malformed.py --duplex build/duplex
"""
import base64
import hashlib
import os
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from interop_common import (CheckFailed, DuplexServer, base_args, check,  # noqa: E402
                            expect_eq, run_main, say, short, step)

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
RFC_KEY = "dGhlIHNhbXBsZSBub25jZQ=="          # RFC 6455 section 1.3
RFC_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
IO_TIMEOUT = 5.0
OP_NAMES = {0: "continuation", 1: "text", 2: "binary", 8: "close", 9: "ping", 10: "pong"}


class Eof(Exception):
    pass


def accept_for(key):
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


def mask_bytes(payload, key):
    return bytes(b ^ key[i & 3] for i, b in enumerate(payload))


def frame(opcode, payload=b"", fin=True, rsv=0, mask=True, key=None, length=None):
    """One client frame. `length` overrides the encoded payload length."""
    n = len(payload) if length is None else length
    b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
    mbit = 0x80 if mask else 0
    if n < 126:
        head = bytes([b0, mbit | n])
    elif n <= 0xFFFF:
        head = bytes([b0, mbit | 126]) + struct.pack("!H", n)
    else:
        head = bytes([b0, mbit | 127]) + struct.pack("!Q", n)
    if not mask:
        return head + payload
    key = key if key is not None else os.urandom(4)
    return head + key + mask_bytes(payload, key)


def close_payload(code, reason=b""):
    return struct.pack("!H", code) + reason


class Conn:
    """A raw TCP connection with a receive buffer and a frame reader."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self, timeout):
        self.sock.settimeout(timeout)
        try:
            chunk = self.sock.recv(1 << 20)
        except socket.timeout:
            raise
        if not chunk:
            raise Eof()
        self.buf += chunk

    def read_exact(self, n, timeout=IO_TIMEOUT):
        deadline = time.monotonic() + timeout
        while len(self.buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout()
            self._fill(left)
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_head(self, timeout=IO_TIMEOUT, limit=65536):
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in self.buf:
            check(len(self.buf) < limit, "HTTP head from the server is over %d bytes" % limit)
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout()
            self._fill(left)
        i = self.buf.index(b"\r\n\r\n") + 4
        head, self.buf = self.buf[:i], self.buf[i:]
        return head

    def read_frame(self, timeout=IO_TIMEOUT):
        """(fin, rsv, opcode, payload, raw header bytes); checks server rules."""
        h = self.read_exact(2, timeout)
        fin, rsv, op = h[0] >> 7, (h[0] >> 4) & 7, h[0] & 15
        masked, n = h[1] >> 7, h[1] & 127
        ext = b""
        if n == 126:
            ext = self.read_exact(2, timeout)
            n = struct.unpack("!H", ext)[0]
        elif n == 127:
            ext = self.read_exact(8, timeout)
            n = struct.unpack("!Q", ext)[0]
        check(not masked, "server sent a masked frame (opcode %d); servers must not mask" % op)
        check(rsv == 0, "server sent a frame with RSV bits %d set" % rsv)
        check(n <= 64 << 20, "server frame claims %d bytes" % n)
        payload = self.read_exact(n, timeout + n / 50e6)
        return fin, rsv, op, payload, h + ext

    def handshake(self, key=RFC_KEY, path="/"):
        self.send(("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                   "Sec-WebSocket-Version: 13\r\n\r\n" % (path, key)).encode())
        status, headers, _ = parse_head(self.read_head())
        expect_eq(status, 101, "handshake status")
        expect_eq(headers.get("sec-websocket-accept"), accept_for(key), "Sec-WebSocket-Accept")
        return headers

    def expect_eof(self, what, timeout=3.0, allow_reset=False):
        """The server must end TCP: recv returns 0 within timeout."""
        deadline = time.monotonic() + timeout
        extra = b""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise CheckFailed("%s: server did not close TCP within %.0f s (recv did not "
                                  "return 0)%s" % (what, timeout,
                                                   "; bytes after the close frame: %s"
                                                   % short(extra) if extra else ""))
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            except ConnectionResetError:
                if allow_reset:
                    say("  (TCP ended with a reset rather than FIN)")
                    return
                raise CheckFailed("%s: TCP was reset instead of closed (recv: ECONNRESET)"
                                  % what)
            if not chunk:
                check(not extra, "%s: server sent %s after its close frame"
                      % (what, short(extra)))
                return
            extra += chunk


def parse_head(head):
    text = head.decode("latin-1")
    lines = text.split("\r\n")
    parts = lines[0].split(" ", 2)
    check(len(parts) >= 2 and parts[0].startswith("HTTP/1."),
          "malformed status line %r" % lines[0])
    headers = {}
    for line in lines[1:]:
        if not line:
            continue
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(parts[1]), headers, lines[0]


def describe(fr):
    fin, rsv, op, payload, _ = fr
    name = OP_NAMES.get(op, "opcode %d" % op)
    if op == 8 and len(payload) >= 2:
        return "close frame code=%d reason=%r" % (struct.unpack("!H", payload[:2])[0],
                                                   payload[2:])
    return "%s frame (fin=%d, %d bytes: %s)" % (name, fin, len(payload), short(payload, 60))


def expect_close_code(c, code, what):
    """The next frame must be a close with `code`; then TCP must end."""
    try:
        fr = c.read_frame()
    except socket.timeout:
        raise CheckFailed("%s: expected a close frame with %d, got nothing within %.0f s"
                          % (what, code, IO_TIMEOUT))
    except Eof:
        raise CheckFailed("%s: expected a close frame with %d, but TCP ended without one"
                          % (what, code))
    except ConnectionResetError:
        raise CheckFailed("%s: expected a close frame with %d, but TCP was reset" % (what, code))
    fin, _, op, payload, _ = fr
    if op != 8:
        raise CheckFailed("%s: expected a close frame with %d, got a %s" % (what, code,
                                                                           describe(fr)))
    check(fin == 1, "%s: the close frame has FIN clear" % what)
    check(len(payload) >= 2, "%s: expected close code %d, got a close frame with %d-byte "
          "payload" % (what, code, len(payload)))
    got = struct.unpack("!H", payload[:2])[0]
    reason = payload[2:]
    if got != code:
        raise CheckFailed("%s: expected close code %d, got %d (reason %r)" % (what, code, got,
                                                                             reason))
    try:
        reason.decode("utf-8")
    except UnicodeDecodeError:
        raise CheckFailed("%s: the close reason is not UTF-8: %r" % (what, reason))
    say("  got close %d reason=%r" % (got, reason.decode("utf-8")))
    # Answer as a well-behaved client would, then the server must end TCP.
    # The server may already have closed (or may not read our reply before
    # closing), so a reset here is tolerated; silence is not.
    try:
        c.send(frame(8, close_payload(code)))
    except OSError:
        pass
    c.expect_eof(what + " (after the server's close frame)", allow_reset=True)


def expect_no_frame(c, what, wait=0.3):
    try:
        fr = c.read_frame(timeout=wait)
    except socket.timeout:
        return
    except (Eof, ConnectionResetError):
        raise CheckFailed("%s: server ended the connection too early" % what)
    raise CheckFailed("%s: expected nothing yet, got a %s" % (what, describe(fr)))


def expect_message(c, op, payload, what):
    try:
        fr = c.read_frame()
    except socket.timeout:
        raise CheckFailed("%s: no echo within %.0f s" % (what, IO_TIMEOUT))
    except (Eof, ConnectionResetError):
        raise CheckFailed("%s: connection ended instead of an echo" % what)
    fin, _, gop, gpayload, _ = fr
    if gop != op or not fin or gpayload != payload:
        raise CheckFailed("%s: expected %s frame with %s, got a %s"
                          % (what, OP_NAMES.get(op, op), short(payload, 60), describe(fr)))
    return fr


def fresh_echo(server, what):
    """After every case: the server still upgrades and echoes."""
    server.check_alive(what)
    c = Conn(server.port)
    try:
        c.handshake(key=base64.b64encode(os.urandom(16)).decode())
        msg = ("still alive after: " + what)[:120].encode()
        c.send(frame(1, msg))
        expect_message(c, 1, msg, "fresh connection after " + what)
        c.send(frame(8, close_payload(1000)))
        fr = c.read_frame()
        check(fr[2] == 8, "fresh connection after %s: expected a close reply, got %s"
              % (what, describe(fr)))
    except (socket.timeout, Eof, ConnectionResetError, ConnectionRefusedError) as e:
        raise CheckFailed("fresh connection after %s failed: %s" % (what, type(e).__name__))
    finally:
        c.close()


def frame_case(server, name, send, code):
    step("%s -> close %d" % (name, code))
    c = Conn(server.port)
    try:
        c.handshake()
        send(c)
        expect_close_code(c, code, name)
    finally:
        c.close()
    fresh_echo(server, name)


# --------------------------------------------------------------------- HTTP

def http_exchange(server, request, what):
    """Sends a raw request; returns (status, headers, body, status line)."""
    c = Conn(server.port)
    try:
        try:
            c.send(request)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may answer (and close) before reading it all
        try:
            head = c.read_head()
        except socket.timeout:
            raise CheckFailed("%s: no HTTP response within %.0f s" % (what, IO_TIMEOUT))
        except Eof:
            raise CheckFailed("%s: connection closed without an HTTP response" % what)
        except ConnectionResetError:
            raise CheckFailed("%s: connection reset before an HTTP response arrived" % what)
        status, headers, line = parse_head(head)
        body = b""
        if "content-length" in headers:
            try:
                body = c.read_exact(int(headers["content-length"]))
            except (socket.timeout, Eof):
                raise CheckFailed("%s: body shorter than Content-Length %s"
                                  % (what, headers["content-length"]))
        if status != 101:
            # Connection: close — the server must end TCP after the answer.
            c.expect_eof(what + " (after the error response)", allow_reset=True)
        return status, headers, body, line
    finally:
        c.close()


def request(method="GET", version="HTTP/1.1", host="127.0.0.1", upgrade="websocket",
            connection="Upgrade", key=RFC_KEY, ws_version="13", extra=""):
    lines = ["%s / %s" % (method, version)]
    if host is not None:
        lines.append("Host: " + host)
    if upgrade is not None:
        lines.append("Upgrade: " + upgrade)
    if connection is not None:
        lines.append("Connection: " + connection)
    if key is not None:
        lines.append("Sec-WebSocket-Key: " + key)
    if ws_version is not None:
        lines.append("Sec-WebSocket-Version: " + ws_version)
    return ("\r\n".join(lines) + "\r\n" + extra + "\r\n").encode()


def http_case(server, name, req, want_status, want_headers=None):
    wants = want_status if isinstance(want_status, tuple) else (want_status,)
    step("%s -> HTTP %s with a one-line body" % (name, " or ".join(map(str, wants))))
    status, headers, body, line = http_exchange(server, req, name)
    say("  got %r, body %r" % (line, body))
    check(status in wants, "%s: status: expected %s, got %d"
          % (name, " or ".join(map(str, wants)), status))
    if status == 426:
        expect_eq(headers.get("sec-websocket-version"), "13",
                  name + ": Sec-WebSocket-Version header of the 426")
    check("content-length" in headers, "%s: no Content-Length in the %d response" % (name,
                                                                                    status))
    check(body.endswith(b"\n") and body.count(b"\n") == 1 and len(body) > 1,
          "%s: body is not exactly one non-empty line: %r" % (name, body))
    for k, v in (want_headers or {}).items():
        expect_eq(headers.get(k.lower()), v, "%s: header %s" % (name, k))
    fresh_echo(server, name)


def t_handshake(server):
    step("a valid upgrade (RFC 6455 sample key) gets 101 and the RFC accept value")
    c = Conn(server.port)
    c.send(request())
    status, headers, line = parse_head(c.read_head())
    expect_eq(status, 101, "valid upgrade: status")
    expect_eq(headers.get("sec-websocket-accept"), RFC_ACCEPT, "Sec-WebSocket-Accept")
    check("websocket" in headers.get("upgrade", "").lower(), "101 lacks Upgrade: websocket")
    check("upgrade" in headers.get("connection", "").lower(), "101 lacks Connection: Upgrade")
    c.close()

    step("token lists and case are accepted: Connection: keep-alive, Upgrade / "
         "Upgrade: WebSocket")
    c = Conn(server.port)
    c.send(request(connection="keep-alive, Upgrade", upgrade="WebSocket"))
    status, _, line = parse_head(c.read_head())
    expect_eq(status, 101, "keep-alive, Upgrade: status (%s)" % line)
    c.close()

    # Not HTTP at all: answered at the first byte, not after the handshake
    # timeout (a TLS ClientHello starts with 0x16 and never holds CRLFCRLF).
    http_case(server, "a TLS ClientHello on the plaintext port",
              b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 32, 400)
    http_case(server, "bytes that cannot start a request line", b"\x00\x01garbage", 400)
    http_case(server, "POST instead of GET", request(method="POST"), 405)
    http_case(server, "missing Host", request(host=None), 400)
    http_case(server, "Upgrade: h2c", request(upgrade="h2c"), 400)
    http_case(server, "missing Upgrade", request(upgrade=None), 400)
    http_case(server, "Connection: keep-alive (no upgrade token)",
              request(connection="keep-alive"), 400)
    http_case(server, "missing Connection", request(connection=None), 400)
    http_case(server, "key of 15 bytes", request(key=base64.b64encode(b"x" * 15).decode()), 400)
    http_case(server, "key of 17 bytes", request(key=base64.b64encode(b"x" * 17).decode()), 400)
    http_case(server, "key that is not base64", request(key="!!!!!!!!!!!!!!!!!!!!!!=="), 400)
    http_case(server, "missing key", request(key=None), 400)
    http_case(server, "HTTP/1.0", request(version="HTTP/1.0"), 400)
    http_case(server, "Sec-WebSocket-Version: 8", request(ws_version="8"), 426,
              {"Sec-WebSocket-Version": "13"})
    # RFC 6455 4.2.1/4.2.2 allow either answer for a missing version header.
    http_case(server, "missing Sec-WebSocket-Version", request(ws_version=None), (400, 426))
    http_case(server, "request head of 9 KiB",
              request(extra="X-Filler: %s\r\n" % ("a" * 9000)), 431)
    step("request head over 8 KiB that never ends -> HTTP 431 without waiting for the end")
    http_case(server, "unterminated head of 8.5 KiB",
              b"GET / HTTP/1.1\r\nHost: x\r\nX-Filler: " + b"b" * 8700, 431)
    http_case(server, "garbage instead of a request", b"hello there\r\n\r\n", 400)


# ------------------------------------------------------------------- frames

def t_rfc_examples(server):
    c = Conn(server.port)
    c.handshake()
    step("RFC 5.7: masked text 'Hello' (81 85 37 fa 21 3d ...) echoes as 81 05 'Hello'")
    c.send(bytes.fromhex("818537fa213d7f9f4d5158"))
    fr = expect_message(c, 1, b"Hello", "RFC masked Hello")
    expect_eq(fr[4], bytes.fromhex("8105"), "echo header bytes for 'Hello'")

    step("RFC 5.7: fragmented 'Hel' + 'lo' (opcodes 01, 80; masked) echoes as 'Hello'")
    c.send(frame(1, b"Hel", fin=False) + frame(0, b"lo", fin=True))
    expect_message(c, 1, b"Hello", "RFC fragmented Hello")

    step("RFC 5.7: masked ping 'Hello' (89 85 37 fa ...) gets pong 8a 05 'Hello'")
    c.send(bytes.fromhex("898537fa213d7f9f4d5158"))
    fr = expect_message(c, 10, b"Hello", "RFC ping")
    expect_eq(fr[4] + fr[3], bytes.fromhex("8a05") + b"Hello", "pong bytes")

    step("RFC 5.7: 256-byte binary echoes with header 82 7e 01 00")
    data = bytes(range(256))
    c.send(frame(2, data))
    fr = expect_message(c, 2, data, "256-byte binary")
    expect_eq(fr[4], bytes.fromhex("827e0100"), "echo header for 256 bytes")

    step("RFC 5.7: 64 KiB binary echoes with header 82 7f 00 00 00 00 00 01 00 00")
    data = os.urandom(65536)
    c.send(frame(2, data))
    fr = expect_message(c, 2, data, "64 KiB binary")
    expect_eq(fr[4], bytes.fromhex("827f0000000000010000"), "echo header for 65536 bytes")

    step("RFC 5.7: unmasked text 'Hello' from a client (81 05 ...) -> close 1002")
    c.send(bytes.fromhex("810548656c6c6f"))
    expect_close_code(c, 1002, "unmasked RFC Hello")
    c.close()
    fresh_echo(server, "RFC examples")


def t_good_traffic(server):
    c = Conn(server.port)
    c.handshake()
    step("ping between fragments: pong with the same payload, then the message")
    c.send(frame(1, b"first ", fin=False))
    c.send(frame(9, b"between-fragments"))
    c.send(frame(0, b"second", fin=False))
    c.send(frame(0, b" third", fin=True))
    expect_message(c, 10, b"between-fragments", "pong between fragments")
    expect_message(c, 1, b"first second third", "message around a ping")

    step("unsolicited pong between fragments is ignored; message delivered")
    c.send(frame(2, b"\x01", fin=False) + frame(10, b"unsolicited") + frame(0, b"\x02"))
    expect_message(c, 2, b"\x01\x02", "message around an unsolicited pong")

    step("a text frame sent one byte at a time is echoed")
    data = frame(1, "byte by byte \u2713".encode())
    for i in range(len(data)):
        c.send(data[i:i + 1])
        time.sleep(0.005)
    expect_message(c, 1, "byte by byte \u2713".encode(), "byte-by-byte frame")

    step("50 messages in one write are echoed in order")
    c.send(b"".join(frame(1, b"msg %d" % i) for i in range(50)))
    for i in range(50):
        expect_message(c, 1, b"msg %d" % i, "pipelined message %d" % i)

    step("a UTF-8 character split across three fragments is accepted")
    c.send(frame(1, b"a\xf0\x9f", fin=False) + frame(0, b"\x99", fin=False)
           + frame(0, b"\x82b", fin=True))
    expect_message(c, 1, "a\U0001F642b".encode(), "split UTF-8 character")

    step("empty text, empty binary and empty fragments are echoed")
    c.send(frame(1, b""))
    expect_message(c, 1, b"", "empty text")
    c.send(frame(2, b""))
    expect_message(c, 2, b"", "empty binary")
    c.send(frame(1, b"", fin=False) + frame(0, b"", fin=False) + frame(0, b"x"))
    expect_message(c, 1, b"x", "empty fragments")

    step("client close 1000 'bye': server replies close 1000, then closes TCP (recv -> 0)")
    c.send(frame(8, close_payload(1000, b"bye")))
    fr = c.read_frame()
    check(fr[2] == 8, "expected the close reply, got a %s" % describe(fr))
    expect_eq(struct.unpack("!H", fr[3][:2])[0] if len(fr[3]) >= 2 else None, 1000,
              "code in the server's close reply")
    c.expect_eof("after the server's close reply")
    c.close()

    step("client close with no payload: the reply carries no code or a valid one, then EOF")
    c = Conn(server.port)
    c.handshake()
    c.send(frame(8, b""))
    fr = c.read_frame()
    check(fr[2] == 8, "expected the close reply, got a %s" % describe(fr))
    if len(fr[3]) >= 2:
        code = struct.unpack("!H", fr[3][:2])[0]
        check(code not in (1005, 1006, 1015), "server's close reply carries the reserved "
              "code %d" % code)
    else:
        expect_eq(len(fr[3]), 0, "length of the server's close reply payload")
    c.expect_eof("after the server's reply to an empty close")
    c.close()

    step("data after the client's close frame is ignored (no echo, just the reply)")
    c = Conn(server.port)
    c.handshake()
    c.send(frame(8, close_payload(1000)) + frame(1, b"too late"))
    fr = c.read_frame()
    check(fr[2] == 8, "expected the close reply first, got a %s" % describe(fr))
    c.expect_eof("after close followed by data", allow_reset=True)
    c.close()
    fresh_echo(server, "good traffic")


def t_bad_frames(server):
    for bit, name in ((4, "RSV1"), (2, "RSV2"), (1, "RSV3")):
        frame_case(server, "text frame with %s set" % name,
                   lambda c, bit=bit: c.send(frame(1, b"hi", rsv=bit)), 1002)
    frame_case(server, "ping with RSV1 set", lambda c: c.send(frame(9, b"p", rsv=4)), 1002)
    for op in (3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF):
        frame_case(server, "reserved opcode 0x%X" % op,
                   lambda c, op=op: c.send(frame(op, b"x")), 1002)
    frame_case(server, "ping with a 126-byte payload",
               lambda c: c.send(frame(9, b"p" * 126)), 1002)
    frame_case(server, "pong with a 126-byte payload",
               lambda c: c.send(frame(10, b"p" * 126)), 1002)
    frame_case(server, "close with a 126-byte payload",
               lambda c: c.send(frame(8, close_payload(1000, b"r" * 124))), 1002)
    frame_case(server, "fragmented ping (FIN=0)",
               lambda c: c.send(frame(9, b"p", fin=False)), 1002)
    frame_case(server, "fragmented close (FIN=0)",
               lambda c: c.send(frame(8, close_payload(1000), fin=False)), 1002)
    frame_case(server, "unmasked text frame",
               lambda c: c.send(frame(1, b"unmasked", mask=False)), 1002)
    frame_case(server, "unmasked ping",
               lambda c: c.send(frame(9, b"unmasked", mask=False)), 1002)
    frame_case(server, "continuation with no message (FIN=1)",
               lambda c: c.send(frame(0, b"orphan")), 1002)
    frame_case(server, "continuation with no message (FIN=0)",
               lambda c: c.send(frame(0, b"orphan", fin=False)), 1002)

    def continuation_after_message(c):
        c.send(frame(1, b"done"))
        expect_message(c, 1, b"done", "complete message before the stray continuation")
        c.send(frame(0, b"extra"))
    frame_case(server, "continuation after a complete message", continuation_after_message,
               1002)
    frame_case(server, "new text frame inside an unfinished fragmented message",
               lambda c: c.send(frame(1, b"part", fin=False) + frame(1, b"new")), 1002)
    frame_case(server, "new binary frame inside an unfinished text message",
               lambda c: c.send(frame(1, b"part", fin=False) + frame(2, b"new")), 1002)
    frame_case(server, "64-bit length with the top bit set",
               lambda c: c.send(bytes([0x82, 0xFF]) + struct.pack("!Q", 1 << 63)
                                + os.urandom(4)), 1002)
    frame_case(server, "64-bit length of 2^64-1",
               lambda c: c.send(bytes([0x82, 0xFF]) + b"\xff" * 8 + os.urandom(4)), 1002)


def t_bad_close(server):
    frame_case(server, "close frame with a 1-byte payload",
               lambda c: c.send(frame(8, b"\x03")), 1002)
    for code in (0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535):
        frame_case(server, "close code %d" % code,
                   lambda c, code=code: c.send(frame(8, close_payload(code, b"r"))), 1002)
    frame_case(server, "close reason that is not UTF-8",
               lambda c: c.send(frame(8, close_payload(1000, b"bad \xff\xfe"))), 1007)
    frame_case(server, "close reason ending mid-sequence",
               lambda c: c.send(frame(8, close_payload(1000, b"cut \xe2\x82"))), 1007)


def t_bad_utf8(server):
    for name, data in (("0xFF byte", b"ok \xff"),
                       ("overlong '/' (C0 AF)", b"\xc0\xaf"),
                       ("UTF-16 surrogate (ED A0 80)", b"\xed\xa0\x80"),
                       ("code point over U+10FFFF (F4 90 80 80)", b"\xf4\x90\x80\x80"),
                       ("lone continuation byte", b"a\x80b"),
                       ("message ending mid-sequence", b"ok \xe2\x82")):
        frame_case(server, "text with %s" % name,
                   lambda c, data=data: c.send(frame(1, data)), 1007)

    def split_f4_90(c):
        c.send(frame(1, b"ab\xf4", fin=False))
        # 0xF4 alone is a valid prefix: no verdict yet.
        expect_no_frame(c, "after a fragment ending in 0xF4")
        c.send(frame(0, b"\x90zz", fin=False))
        # The message is not finished, but 0xF4 0x90 can never be valid:
        # the close must come now, not at the end of the message.
    frame_case(server, "F4 | 90 split across fragments (message unfinished)", split_f4_90,
               1007)

    def invalid_in_later_fragment(c):
        c.send(frame(1, b"fine so far ", fin=False))
        expect_no_frame(c, "after a valid first fragment")
        c.send(frame(0, b"\xff", fin=False))
    frame_case(server, "invalid byte in a middle fragment (message unfinished)",
               invalid_in_later_fragment, 1007)

    def ends_mid_sequence(c):
        c.send(frame(1, b"ok \xe2", fin=False))
        c.send(frame(0, b"\x82", fin=False))
        expect_no_frame(c, "after fragments ending in E2 82")
        c.send(frame(0, b"", fin=True))
    frame_case(server, "fragmented message ending mid-sequence (E2 82 then FIN)",
               ends_mid_sequence, 1007)


def t_max_message(duplex):
    step("duplex serve --max-message 1000")
    with DuplexServer(duplex, ["--max-message", "1000"]) as server:
        c = Conn(server.port)
        c.handshake()
        step("exactly 1000 bytes (one frame and in 3 fragments) are echoed")
        data = os.urandom(1000)
        c.send(frame(2, data))
        expect_message(c, 2, data, "1000-byte binary")
        c.send(frame(2, data[:400], fin=False) + frame(0, data[400:700], fin=False)
               + frame(0, data[700:]))
        expect_message(c, 2, data, "1000 bytes in fragments")
        c.send(frame(1, b"t" * 1000))
        expect_message(c, 1, b"t" * 1000, "1000-byte text")
        c.close()
        frame_case(server, "1001-byte binary frame over --max-message 1000",
                   lambda c: c.send(frame(2, os.urandom(1001))), 1009)
        frame_case(server, "1001-byte text frame over --max-message 1000",
                   lambda c: c.send(frame(1, b"t" * 1001)), 1009)
        frame_case(server, "600 + 401 bytes in fragments over --max-message 1000",
                   lambda c: c.send(frame(2, b"a" * 600, fin=False)
                                    + frame(0, b"b" * 401)), 1009)
        frame_case(server, "a frame header announcing 1 MiB (payload never sent)",
                   lambda c: c.send(bytes([0x82, 0xFF]) + struct.pack("!Q", 1 << 20)
                                    + os.urandom(4)), 1009)


SECTIONS = [("handshake", t_handshake), ("rfc", t_rfc_examples), ("good", t_good_traffic),
            ("frames", t_bad_frames), ("close", t_bad_close), ("utf8", t_bad_utf8)]


def main(args):
    only = set(args.only.split(",")) if args.only else None
    server = DuplexServer(args.duplex)
    server.start()
    try:
        for name, fn in SECTIONS:
            if only is None or name in only:
                fn(server)
        server.check_alive("the suite")
    finally:
        server.stop()
    if only is None or "max" in only:
        t_max_message(args.duplex)


if __name__ == "__main__":
    p = base_args(__doc__)
    p.add_argument("--only", default=None,
                   help="comma-separated sections to run: %s,max"
                   % ",".join(n for n, _ in SECTIONS))
    run_main(main, p.parse_args())
