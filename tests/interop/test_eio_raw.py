#!/usr/bin/env python3
"""examples/socketio_conformance over raw HTTP and WebSocket bytes.

What the official client never sends, and what the Engine.IO protocol
gives a status or a reason for: the handshake's checks (EIO, transport,
method), bad sids, overlapping GETs, maxPayload (413), CORS and the
OPTIONS preflight, malformed Engine.IO and Socket.IO packets ("parse
error"), the upgrade by hand (2probe/3probe, the noop that releases the
held GET, 5, polling refused afterwards), the heartbeat on polling (the
server's ping, then "ping timeout") and connectTimeout. With three loops on
one port: polling requests and upgrade probes that reach another loop than
their session's, and probes for sessions that are gone. With
--max-buffered: a client that does not GET, past the cap.

  /usr/bin/python3 tests/interop/test_eio_raw.py \\
      --server build/examples/example_socketio_conformance [--threads-only]
"""
import argparse
import base64
import http.client
import json
import os
import re
import socket
import struct
import subprocess
import sys
import threading
import time

IO_S = 10


class CheckFailed(Exception):
    pass


def say(msg):
    print(msg, flush=True)


def check(cond, msg):
    if not cond:
        raise CheckFailed(msg)


class Server:
    """The example; its stdout lines collected by a thread."""

    def __init__(self, binary, extra=()):
        self.p = subprocess.Popen([binary, "0", "--test-hooks", *extra], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        self.lines = []
        self.cv = threading.Condition()
        self.stderr = ""
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()
        line = self.wait_line(r"^listening on \d+$")
        self.port = int(line.split()[-1])
        self.seen = 0

    def _read(self):
        for line in self.p.stdout:
            with self.cv:
                self.lines.append(line.rstrip("\n"))
                self.cv.notify_all()

    def _read_err(self):
        self.stderr = self.p.stderr.read()

    def mark(self):
        with self.cv:
            self.seen = len(self.lines)

    def wait_line(self, pattern, timeout=IO_S):
        rx = re.compile(pattern)
        end = time.monotonic() + timeout
        with self.cv:
            start = getattr(self, "seen", 0)
            while True:
                for i in range(start, len(self.lines)):
                    if rx.search(self.lines[i]):
                        self.seen = i + 1
                        return self.lines[i]
                left = end - time.monotonic()
                if left <= 0:
                    raise CheckFailed(f"no server line matching {pattern!r}; got {self.lines[start:]}")
                self.cv.wait(left)

    def stop(self):
        self.p.terminate()
        try:
            self.p.wait(IO_S)
        except subprocess.TimeoutExpired:
            self.p.kill()
            raise CheckFailed("the server did not stop on SIGTERM")
        time.sleep(0.1)
        if re.search(r"ERROR: (Address|Leak)Sanitizer|WARNING: ThreadSanitizer|runtime error:", self.stderr):
            raise CheckFailed("sanitizer report from the server:\n" + self.stderr)
        check(self.p.returncode == 0, f"server exit status {self.p.returncode}")


class Client:
    def __init__(self, port):
        self.port = port

    def request(self, method, query, body=None, headers=None, path="/socket.io/"):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=IO_S)
        c.request(method, path + ("?" + query if query is not None else ""), body=body,
                  headers=headers or {})
        r = c.getresponse()
        data = r.read()
        c.close()
        return r.status, dict((k.lower(), v) for k, v in r.getheaders()), data

    def start(self, method, query, body=None):
        """Sends a request and returns the connection, to read later."""
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=IO_S)
        c.request(method, "/socket.io/?" + query, body=body)
        return c

    def handshake(self):
        st, h, body = self.request("GET", "EIO=4&transport=polling")
        check(st == 200, f"handshake status {st}")
        check(body[:1] == b"0", f"handshake body {body!r}")
        o = json.loads(body[1:])
        return o

    def connect(self):
        """A new session joined to "/": its sid, and the body of the GET
        that brought the CONNECT answer."""
        sid = self.handshake()["sid"]
        check(self.post(sid, b"40") == (200, b"ok"), "POST 40")
        st, body = self.poll(sid)
        check(st == 200 and body.startswith(b"40{"), f"CONNECT answer {st} {body!r}")
        return sid, body

    def poll(self, sid):
        st, _, body = self.request("GET", f"EIO=4&transport=polling&sid={sid}")
        return st, body

    def post(self, sid, body):
        st, _, data = self.request("POST", f"EIO=4&transport=polling&sid={sid}", body=body)
        return st, data


def expect_error(got, status, code, what):
    st, h, body = got
    check(st == status, f"{what}: status {st}, expected {status} ({body!r})")
    try:
        j = json.loads(body)
    except ValueError:
        raise CheckFailed(f"{what}: body is not JSON: {body!r}")
    check(j.get("code") == code, f"{what}: code {j}, expected {code}")
    check(h.get("content-type", "").startswith("application/json"), f"{what}: content-type {h}")


class WS:
    """A minimal RFC 6455 client: text frames, masked, no fragmentation."""

    def __init__(self, port, query, path="/socket.io/", early=None):
        """early: a text frame sent in the same write as the request head."""
        self.s = socket.create_connection(("127.0.0.1", port), timeout=IO_S)
        key = base64.b64encode(os.urandom(16)).decode()
        req = (f"GET {path}?{query} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
               "Sec-WebSocket-Version: 13\r\n\r\n").encode()
        self.s.sendall(req + (self.frame(early) if early else b""))
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.s.recv(1)
            if not chunk:
                break
            head += chunk
        self.status = int(head.split(b" ")[1]) if head else 0
        self.buf = b""
        self.body = b""
        if self.status != 101:  # a refusal: its body, up to the server's close
            while True:
                chunk = self.s.recv(65536)
                if not chunk:
                    break
                self.body += chunk

    @staticmethod
    def frame(text, opcode=1):
        data = text.encode() if isinstance(text, str) else text
        mask = os.urandom(4)
        n = len(data)
        hdr = bytes([0x80 | opcode])
        if n < 126:
            hdr += bytes([0x80 | n])
        elif n < 65536:
            hdr += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            hdr += bytes([0x80 | 127]) + struct.pack("!Q", n)
        return hdr + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data))

    def send(self, text, opcode=1):
        self.s.sendall(self.frame(text, opcode))

    def _need(self, n):
        while len(self.buf) < n:
            chunk = self.s.recv(65536)
            if not chunk:
                raise EOFError
            self.buf += chunk

    def recv(self):
        """(opcode, payload) of the next frame."""
        self._need(2)
        op, n = self.buf[0] & 0x0F, self.buf[1] & 0x7F
        off = 2
        if n == 126:
            self._need(4)
            n = struct.unpack("!H", self.buf[2:4])[0]
            off = 4
        elif n == 127:
            self._need(10)
            n = struct.unpack("!Q", self.buf[2:10])[0]
            off = 10
        self._need(off + n)
        data = self.buf[off:off + n]
        self.buf = self.buf[off + n:]
        return op, data

    def recv_text(self):
        while True:
            op, data = self.recv()
            if op == 1:
                return data.decode()
            if op == 8:
                raise EOFError("close frame")

    def close(self):
        self.s.close()


def main(a):
    if not a.threads_only:
        srv = Server(a.server)
        cl = Client(srv.port)
        try:
            run(srv, cl)
        finally:
            if srv.p.poll() is None:
                srv.stop()
    srv = Server(a.server, ["--threads", "3", "--shared-port"])
    try:
        run_shared(srv, Client(srv.port))
    finally:
        if srv.p.poll() is None:
            srv.stop()
    if a.threads_only:
        return
    # --ping as the defaults, to check the port still comes from "0": the
    # option's value once fell through to the port (tests/interop/
    # test_socketio.js then listened on 5000, not a free port).
    srv = Server(a.server, ["--max-buffered", "100000", "--ping", "300,200"])
    try:
        check(srv.port != 300, "--ping's value taken for the port")
        run_cap(srv, Client(srv.port))
    finally:
        if srv.p.poll() is None:
            srv.stop()


def run_cap(srv, cl):
    """dx_sio_options_set_max_buffered: 100000 bytes of packets queued."""
    say("CHECK: a polling client that does not GET: up to the cap its packets wait")
    sid, body = cl.connect()
    check(b'"auth"' in body, f"the auth event with the CONNECT answer: {body!r}")
    # Each "message" is answered with a message-back whose packet data,
    # 2["message-back","x..."], is 20 + 9900 = 9920 bytes, and its node in
    # the queue a few dozen more: ten fit in the cap, eleven do not.
    msg = b'42["message","' + b"x" * 9900 + b'"]'
    check(cl.post(sid, b"\x1e".join([msg] * 10)) == (200, b"ok"), "POST of 10 messages")
    st, body = cl.poll(sid)
    packets = body.split(b"\x1e")
    backs = [p for p in packets if p.startswith(b'42["message-back","xxx')]
    check(st == 200 and len(backs) == 10, f"the 10 answers in one GET: {st}, {len(backs)}")
    if b"2" in packets:
        check(cl.post(sid, b"3") == (200, b"ok"), "pong")
    say("CHECK: past the cap the session ends with transport error")
    srv.mark()
    check(cl.post(sid, b"\x1e".join([msg] * 11)) == (200, b"ok"), "POST of 11 messages")
    srv.wait_line(r"^disconnect / transport error$")
    expect_error(cl.request("GET", f"EIO=4&transport=polling&sid={sid}"), 400, 1, "GET after the cap")
    say("CHECK: empty messages count against the cap too (each one's bookkeeping)")
    # /engine.io/ echoes each message: 100000 empty ones, 2 bytes each in a
    # 200 KB POST, would be 100000 packets of no data queued. Were only
    # data counted, the cap would never be reached and every such POST
    # would add megabytes the client never fetches.
    st, _, body = cl.request("GET", "EIO=4&transport=polling", path="/engine.io/")
    esid = json.loads(body[1:])["sid"]
    srv.wait_line(r"^eio open " + re.escape(esid) + "$")
    q = f"EIO=4&transport=polling&sid={esid}"
    st, _, body = cl.request("POST", q, body=b"\x1e".join([b"4"] * 100000), path="/engine.io/")
    check((st, body) == (200, b"ok"), f"POST of empty messages: {st} {body!r}")
    srv.wait_line(r"^eio close " + re.escape(esid) + " transport error$")
    expect_error(cl.request("GET", q, path="/engine.io/"), 400, 1, "GET after the cap (empty messages)")
    say("CHECK: SIGTERM: clean exit")
    srv.stop()


def run_shared(srv, cl):
    """Three loops on one port: every request on a fresh connection, so the
    kernel spreads them, and those for another loop's session are forwarded."""
    say("CHECK: --threads 3 on one port: a polling session whatever loop each request reaches")
    for n in range(3):
        sid, _ = cl.connect()
        for i in range(12):
            check(cl.post(sid, b'421["message-with-ack",%d]' % i) == (200, b"ok"), f"POST {i}")
            while True:
                st, body = cl.poll(sid)
                check(st == 200, f"poll {i}: {st} {body!r}")
                if body == b"2":
                    check(cl.post(sid, b"3") == (200, b"ok"), "pong")
                    continue
                check(body == b"431[%d]" % i, f"ack {i}: {body!r}")
                break
        srv.mark()
        check(cl.post(sid, b"41") == (200, b"ok"), "DISCONNECT")
        srv.wait_line(r"^disconnect / client namespace disconnect$")
    say("CHECK: two GETs at once on different loops: 400, the session fails")
    sid = cl.handshake()["sid"]
    check(cl.post(sid, b"40") == (200, b"ok"), "POST 40")
    cl.poll(sid)
    srv.mark()
    held = [cl.start("GET", f"EIO=4&transport=polling&sid={sid}")]
    time.sleep(0.05)
    st, body = cl.poll(sid)
    check(st == 400, f"second GET: {st} {body!r}")
    r = held[0].getresponse()
    check(r.status == 200 and r.read() == b"1", "the held GET gets the close packet")
    srv.wait_line(r"^disconnect / transport error$")
    say("CHECK: a held GET whose connection ends: transport error, from any loop")
    for _ in range(4):
        sid = cl.handshake()["sid"]
        check(cl.post(sid, b"40") == (200, b"ok"), "POST 40")
        cl.poll(sid)
        srv.mark()
        c = cl.start("GET", f"EIO=4&transport=polling&sid={sid}")
        time.sleep(0.05)
        c.sock.shutdown(socket.SHUT_RDWR)
        c.close()
        srv.wait_line(r"^disconnect / transport error$")
        expect_error(cl.request("GET", f"EIO=4&transport=polling&sid={sid}"), 400, 1, "after abort")
    say("CHECK: --threads 3: a polling session's upgrade, whatever loop its probe reaches")
    # Each probe is a fresh connection the kernel gives to any of the three
    # loops: 15 that all land on their session's loop by luck would happen
    # once in 3^15. Half of them send "2probe" in the same write as the
    # request head: bytes read with the head move along with it.
    for n in range(15):
        sid, _ = cl.connect()
        ws = WS(srv.port, f"EIO=4&transport=websocket&sid={sid}", early="2probe" if n % 2 else None)
        check(ws.status == 101, f"probe {n} ({sid[0]}): status {ws.status} {ws.body!r}")
        if n % 2 == 0:
            ws.send("2probe")
        check(ws.recv_text() == "3probe", f"probe {n}: 3probe")
        ws.send("5")
        ws.send('42["message","up %d"]' % n)
        while True:
            t = ws.recv_text()
            if t == "2":
                ws.send("3")
                continue
            check(t == '42["message-back","up %d"]' % n, f"probe {n}: over the upgraded ws: {t!r}")
            break
        expect_error(cl.request("GET", f"EIO=4&transport=polling&sid={sid}"), 400, 3,
                     "poll after the upgrade")
        srv.mark()
        ws.close()
        srv.wait_line(r"^disconnect / transport close$")
    say("CHECK: --threads 3: probes whose client hangs up at once; the sessions poll on")
    for n in range(8):
        sid, _ = cl.connect()
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=IO_S)
        key = base64.b64encode(os.urandom(16)).decode()
        s.sendall((f"GET /socket.io/?EIO=4&transport=websocket&sid={sid} HTTP/1.1\r\nHost: x\r\n"
                   f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                   "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        s.close()
        check(cl.post(sid, b'42["message","still %d"]' % n) == (200, b"ok"), f"POST after probe {n}")
        while True:
            st, body = cl.poll(sid)
            check(st == 200, f"poll after probe {n}: {st} {body!r}")
            if b'42["message-back","still %d"]' % n in body.split(b"\x1e"):
                break
            check(body == b"2" or body == b"6", f"poll after probe {n}: {body!r}")
            if body == b"2":
                check(cl.post(sid, b"3") == (200, b"ok"), "pong")
    say("CHECK: --threads 3: a probe for a session gone, or for a loop that does not exist")
    sid = cl.handshake()["sid"]
    check(cl.post(sid, b"1") == (200, b"ok"), "close packet")
    for q in [sid, "B" + sid[1:], "C" + sid[1:], "Z" + sid[1:]] * 3:
        w = WS(srv.port, f"EIO=4&transport=websocket&sid={q}")
        check(w.status == 400 and w.body.startswith(b"Session ID unknown"),
              f"probe for {q}: {w.status} {w.body!r}")
        w.close()
    say("CHECK: SIGTERM with three loops: clean exit")
    srv.stop()


def run(srv, cl):
    say("CHECK: the handshake's open packet")
    o = cl.handshake()
    check(re.fullmatch(r"[A-Za-z0-9_-]{20}", o["sid"]) is not None, f"sid {o['sid']!r}")
    check(o["upgrades"] == ["websocket"] and o["pingInterval"] == 300 and
          o["pingTimeout"] == 200 and o["maxPayload"] == 1000000, f"open packet {o}")

    say("CHECK: handshake errors: EIO, transport, method, bad sid")
    expect_error(cl.request("GET", "EIO=3&transport=polling"), 400, 5, "EIO=3")
    expect_error(cl.request("GET", "transport=polling"), 400, 5, "no EIO")
    expect_error(cl.request("GET", "EIO=4&transport=carrier-pigeon"), 400, 0, "unknown transport")
    expect_error(cl.request("GET", "EIO=4"), 400, 0, "no transport")
    expect_error(cl.request("POST", "EIO=4&transport=polling", body=b"40"), 400, 2, "POST handshake")
    expect_error(cl.request("GET", "EIO=4&transport=polling&sid=nosuchsid"), 400, 1, "bad sid")
    expect_error(cl.request("GET", "EIO=4&transport=websocket"), 400, 3, "websocket over plain GET")
    expect_error(cl.request("PUT", f"EIO=4&transport=polling&sid={o['sid']}"), 400, 3, "PUT")

    say("CHECK: CORS headers and the OPTIONS preflight")
    st, h, _ = cl.request("OPTIONS", "EIO=4&transport=polling",
                          headers={"Origin": "http://a.example", "Access-Control-Request-Method": "POST",
                                   "Access-Control-Request-Headers": "content-type"})
    check(st == 204, f"preflight status {st}")
    check(h.get("access-control-allow-origin") == "*", f"preflight headers {h}")
    check("POST" in h.get("access-control-allow-methods", ""), f"preflight methods {h}")
    check(h.get("access-control-allow-headers") == "content-type", f"preflight allow-headers {h}")
    st, h, _ = cl.request("GET", "EIO=4&transport=polling", headers={"Origin": "http://a.example"})
    check(h.get("access-control-allow-origin") == "*", f"GET CORS {h}")

    say("CHECK: other paths reach the application's own HTTP and WebSocket callbacks")
    st, _, _ = cl.request("GET", None, path="/elsewhere")
    check(st == 404, f"/elsewhere: {st}")
    st, _, body = cl.request("GET", None, path="/hello")
    check((st, body) == (200, b"hello"), f"/hello: {st} {body!r}")
    st, _, body = cl.request("GET", None, path="/socket.iox")
    check(st == 404, f"/socket.iox is not under /socket.io/: {st}")
    w = WS(srv.port, "x=1", path="/plain")
    check(w.status == 101, f"plain WebSocket: {w.status}")
    w.send("2probe")  # Engine.IO text means nothing here: echoed as it is
    check(w.recv_text() == "2probe", "plain WebSocket echo")
    w.close()

    say("CHECK: CONNECT over polling, an event, its ack")
    sid = cl.handshake()["sid"]
    check(cl.post(sid, b"40{\"k\":1}") == (200, b"ok"), "POST 40")
    st, body = cl.poll(sid)
    recs = body.split(b"\x1e")
    check(st == 200 and recs[0].startswith(b"40{\"sid\":"), f"CONNECT answer {body!r}")
    check(b'42["auth",{"k":1}]' in recs, f"auth event {recs}")
    check(cl.post(sid, b'421["message-with-ack","x",{"y":[1]}]') == (200, b"ok"), "POST event")
    st, body = cl.poll(sid)
    check(body == b'431["x",{"y":[1]}]', f"ack {body!r}")
    say("CHECK: a binary attachment posted as b<base64>")
    att = bytes(range(256))
    payload = b'451-["message",{"_placeholder":true,"num":0}]\x1eb' + base64.b64encode(att)
    check(cl.post(sid, payload) == (200, b"ok"), "POST binary")
    st, body = cl.poll(sid)
    recs = body.split(b"\x1e")
    check(recs[0] == b'451-["message-back",{"_placeholder":true,"num":0}]', f"binary back {recs[:1]}")
    check(base64.b64decode(recs[1][1:]) == att, "attachment back")

    say("CHECK: two GETs at once: 400 for the second, the session fails")
    srv.mark()
    held = cl.start("GET", f"EIO=4&transport=polling&sid={sid}")
    time.sleep(0.05)
    st, body = cl.poll(sid)
    check(st == 400, f"second GET: {st} {body!r}")
    r = held.getresponse()
    check(r.status == 200 and r.read() == b"1", "the held GET gets the close packet")
    srv.wait_line(r"^disconnect / transport error$")
    expect_error(cl.request("GET", f"EIO=4&transport=polling&sid={sid}"), 400, 1, "after overlap")

    say("CHECK: maxPayload: 413 for a larger POST; the session goes on")
    sid = cl.handshake()["sid"]
    check(cl.post(sid, b"40") == (200, b"ok"), "POST 40")
    cl.poll(sid)
    st, _ = cl.post(sid, b"4" + b"x" * 1000000)
    check(st == 413, f"oversized POST: {st}")
    check(cl.post(sid, b'42["message",1]') == (200, b"ok"), "POST after 413")
    st, body = cl.poll(sid)
    check(b'42["message-back",1]' in body.split(b"\x1e"), f"after 413: {body!r}")

    say("CHECK: malformed packets end the session with parse error")
    for bad in [b"9", b"4{", b'42["connect"]', b'451-["a"]', b"b!!!!", b"\x1e"]:
        sid = cl.handshake()["sid"]
        check(cl.post(sid, b"40") == (200, b"ok"), "POST 40")
        cl.poll(sid)
        srv.mark()
        st, _ = cl.post(sid, bad)
        check(st == 200, f"malformed {bad!r}: POST status {st}")
        if bad != b'451-["a"]':  # that one is only an incomplete header
            srv.wait_line(r"^disconnect / parse error$")
            st, body = cl.poll(sid)
            check(st == 400 or body == b"1", f"after {bad!r}: {st} {body!r}")

    say("CHECK: the upgrade by hand: 2probe, 3probe, the noop, 5, polling refused")
    sid = cl.handshake()["sid"]
    check(cl.post(sid, b"40") == (200, b"ok"), "POST 40")
    cl.poll(sid)
    held = cl.start("GET", f"EIO=4&transport=polling&sid={sid}")
    time.sleep(0.05)
    ws = WS(srv.port, f"EIO=4&transport=websocket&sid={sid}")
    check(ws.status == 101, f"probe status {ws.status}")
    ws.send("2probe")
    check(ws.recv_text() == "3probe", "3probe")
    r = held.getresponse()
    check(r.read() == b"6", "the held GET is released with a noop")
    ws.send("5")
    time.sleep(0.05)
    expect_error(cl.request("GET", f"EIO=4&transport=polling&sid={sid}"), 400, 3, "poll after upgrade")
    expect_error(cl.request("POST", f"EIO=4&transport=polling&sid={sid}", body=b"3"), 400, 3,
                 "POST after upgrade")
    ws.send('42["message","over ws"]')
    while True:
        t = ws.recv_text()
        if t == "2":
            ws.send("3")
            continue
        check(t == '42["message-back","over ws"]', f"over the upgraded ws: {t!r}")
        break
    second = WS(srv.port, f"EIO=4&transport=websocket&sid={sid}")
    check(second.status == 400, f"a second probe after the upgrade: {second.status}")
    second.close()
    srv.mark()
    ws.close()
    # This session's end is logged before the next step counts disconnects
    # (a slow server, under ASan, logged it after that step's mark).
    srv.wait_line(r"^disconnect / transport close$")

    say("CHECK: a probe that says something else than 2probe then 5: the probe closes, polling goes on")
    # The reference closes only the probe (socket.ts maybeUpgrade: any
    # other packet, or an error of the probe's transport, closes it); the
    # session and its sockets are not the probe's to end.
    sid, _ = cl.connect()
    srv.mark()
    for n, bad in enumerate(["5", "3probe", '42["message","on the probe"]', "x", b"\x01"]):
        ws = WS(srv.port, f"EIO=4&transport=websocket&sid={sid}")
        check(ws.status == 101, f"probe {bad!r}: status {ws.status}")
        if bad != "5":  # "5" before the probe's ping; the others after it
            ws.send("2probe")
            check(ws.recv_text() == "3probe", f"probe {bad!r}: 3probe")
        ws.send(bad, opcode=2 if isinstance(bad, bytes) else 1)
        try:  # up to the server's close frame, or the end of the connection
            while ws.recv()[0] != 8:
                pass
        except (EOFError, OSError):
            pass
        ws.close()
        check(cl.post(sid, b'42["message","after probe %d"]' % n) == (200, b"ok"), f"POST after {bad!r}")
        while True:
            st, body = cl.poll(sid)
            check(st == 200, f"poll after probe {bad!r}: {st} {body!r}")
            recs = body.split(b"\x1e")
            if b'42["message-back","after probe %d"]' % n in recs:
                break
            check(set(recs) <= {b"2", b"6"}, f"poll after probe {bad!r}: {body!r}")
            if b"2" in recs:
                check(cl.post(sid, b"3") == (200, b"ok"), "pong")
    check(not any(l.startswith("disconnect") for l in srv.lines[srv.seen:]),
          f"a bad probe ended the session: {srv.lines[srv.seen:]}")
    check(cl.post(sid, b"41") == (200, b"ok"), "DISCONNECT")

    say("CHECK: a direct WebSocket, and refused upgrades")
    ws = WS(srv.port, "EIO=4&transport=websocket")
    check(ws.status == 101, f"direct status {ws.status}")
    op = json.loads(ws.recv_text()[1:])
    check(op["upgrades"] == [], f"direct open packet {op}")
    ws.send("40")
    check(ws.recv_text().startswith('40{"sid":'), "CONNECT over ws")
    srv.mark()
    ws.send("4{not json")
    srv.wait_line(r"^disconnect / parse error$")
    ws.close()
    say("CHECK: maxPayload on WebSocket: a larger message ends the session")
    ws = WS(srv.port, "EIO=4&transport=websocket")
    ws.recv_text()
    ws.send("40")
    check(ws.recv_text().startswith('40{"sid":'), "CONNECT over ws")
    # The heartbeat (300 ms + 200 ms here) runs meanwhile and this client
    # answers no ping: on a loaded machine the timeout can end the session
    # before the message is read, and then the limit went untested. Try
    # again, a few times, rather than fail on the machine's load.
    for attempt in range(5):
        srv.mark()
        ws.send('42["message","' + "x" * 1000000 + '"]')
        why = srv.wait_line(r"^disconnect / (transport error|ping timeout)$")
        ws.close()
        if why.endswith("transport error"):
            break
        check(attempt < 4, "ping timeout won the race every time")
        ws = WS(srv.port, "EIO=4&transport=websocket")
        ws.recv_text()
        ws.send("40")
        check(ws.recv_text().startswith('40{"sid":'), "CONNECT over ws")
    for q in ["EIO=3&transport=websocket", "EIO=4&transport=websocket&sid=nosuchsid"]:
        w = WS(srv.port, q)
        check(w.status == 400, f"{q}: {w.status}")
        w.close()

    say("CHECK: heartbeat on polling: the server pings, then ping timeout")
    sid = cl.handshake()["sid"]
    check(cl.post(sid, b"40") == (200, b"ok"), "POST 40")
    cl.poll(sid)
    srv.mark()
    t0 = time.monotonic()
    st, body = cl.poll(sid)
    check(body == b"2", f"ping expected, got {body!r}")
    # Only a lower bound: no load makes a timer fire early, any load can
    # make it late.
    check(time.monotonic() - t0 > 0.2, "the ping came before pingInterval")
    # No pong: the next poll is held until the timeout ends the session.
    st, body = cl.poll(sid)
    check(body == b"1", f"the held poll gets the close packet: {body!r}")
    srv.wait_line(r"^disconnect / ping timeout$")
    expect_error(cl.request("GET", f"EIO=4&transport=polling&sid={sid}"), 400, 1, "after ping timeout")
    say("CHECK: the pong keeps it alive")
    sid = cl.handshake()["sid"]
    check(cl.post(sid, b"40") == (200, b"ok"), "POST 40")
    cl.poll(sid)
    for _ in range(3):
        st, body = cl.poll(sid)
        check(body == b"2", f"ping {body!r}")
        check(cl.post(sid, b"3") == (200, b"ok"), "pong")
    check(cl.post(sid, b"41") == (200, b"ok"), "DISCONNECT")

    say("CHECK: connectTimeout: no CONNECT within 1000 ms closes the session")
    sid = cl.handshake()["sid"]
    t0 = time.monotonic()
    while True:
        st, body = cl.poll(sid)
        if body == b"2":
            cl.post(sid, b"3")
            continue
        break
    check(st == 200 and body == b"1", f"close packet expected: {st} {body!r}")
    check(time.monotonic() - t0 > 0.9, f"closed after {time.monotonic() - t0:.2f} s, before connectTimeout")

    say("CHECK: /engine.io/ echoes text and binary, over polling and WebSocket")
    srv.mark()
    st, h, body = cl.request("GET", "EIO=4&transport=polling", path="/engine.io/")
    check(st == 200 and body[:1] == b"0", f"engine.io handshake {st} {body!r}")
    esid = json.loads(body[1:])["sid"]
    srv.wait_line(r"^eio open " + re.escape(esid) + "$")
    q = f"EIO=4&transport=polling&sid={esid}"
    st, _, data = cl.request("POST", q, body=b"4h\xc3\xa9llo\x1eb" + base64.b64encode(b"\x00\xff"),
                             path="/engine.io/")
    check((st, data) == (200, b"ok"), f"engine.io POST {st} {data!r}")
    st, _, data = cl.request("GET", q, path="/engine.io/")
    check(data == b"4h\xc3\xa9llo\x1ebAP8=", f"engine.io echo {data!r}")
    t0 = time.monotonic()
    while time.monotonic() - t0 < 1.3:  # past connectTimeout, which plain Engine.IO has not
        st, _, data = cl.request("GET", q, path="/engine.io/")
        check(st == 200 and data == b"2", f"engine.io: a ping expected, got {st} {data!r}")
        st, _, data = cl.request("POST", q, body=b"3", path="/engine.io/")
        check(st == 200, f"engine.io pong: {st}")
    say("CHECK: /engine.io/ sessions: on_open, and on_close once with the reason")
    check(cl.request("POST", q, body=b"1", path="/engine.io/")[0] == 200, "engine.io close packet")
    srv.wait_line(r"^eio close " + re.escape(esid) + " transport close$")
    ws = WS(srv.port, "EIO=4&transport=websocket", path="/engine.io/")
    check(ws.status == 101, f"engine.io upgrade {ws.status}")
    check(ws.recv_text().startswith("0{"), "engine.io open over ws")
    ws.send("4text")
    check(ws.recv_text() == "4text", "engine.io ws text echo")
    ws.send(b"\x01\x02", opcode=2)
    op, data = ws.recv()
    while op == 1:  # a ping may come first
        ws.send("3")
        op, data = ws.recv()
    check(op == 2 and data == b"\x01\x02", f"engine.io ws binary echo {op} {data!r}")
    srv.mark()
    ws.close()
    srv.wait_line(r"^eio close \S+ transport close$")

    say("CHECK: SIGTERM: clean exit")
    srv.stop()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", required=True)
    ap.add_argument("--timeout", type=float, default=240)
    ap.add_argument("--threads-only", action="store_true",
                    help="only the three loops on one port (scripts/test runs it under TSan)")
    args = ap.parse_args()
    dog = threading.Timer(args.timeout, lambda: (say("FAIL: suite watchdog"), os._exit(2)))
    dog.daemon = True
    dog.start()
    try:
        main(args)
    except CheckFailed as e:
        say(f"FAIL: {e}")
        sys.exit(1)
    say("PASS: all checks passed")
