#!/usr/bin/python3
"""duplex serve at its connection limits, as a client sees them.

--max-connections 3 (two threads, one limit for the process): three
WebSocket connections open; further upgrades get "503 Service Unavailable"
with Retry-After and the one-line reason "connection limit reached (3)",
and TCP ends; once one of the three has closed, a new upgrade is accepted.

--max-handshakes 2: two raw sockets that sent half a request hold the
handshake slots; a complete upgrade then gets 503 "handshake limit reached
(2)"; once one of the two finishes its request (and is upgraded), a new
upgrade is accepted, and once the other gives up, service is back for
everyone.

Connections refused at a limit never opened: duplex serve logs no open or
close line for them.

A flood past the limit: 40 clients that send an upgrade and do not hang up
after the 503 tie up at most 32 of the server's descriptors; the other 8
wait in the kernel's backlog and are answered 503 too once earlier ones
hang up. Nobody is dropped without an answer, and service resumes.

  /usr/bin/python3 tests/interop/test_limits.py --duplex build/duplex
"""
import base64
import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from interop_common import (CheckFailed, DuplexServer, base_args, check,  # noqa: E402
                            expect_eq, run_main, say, step)
from test_raw_malformed import (Conn, Eof, close_payload, expect_message,  # noqa: E402
                                frame, http_exchange, parse_head, request)


def new_key():
    return base64.b64encode(os.urandom(16)).decode()


def expect_refused(server, limit, what):
    """An upgrade request gets 503, Retry-After, the reason naming the
    limit as its one-line body, and the end of TCP (http_exchange)."""
    status, headers, body, line = http_exchange(server, request(key=new_key()), what)
    say("  got %r, Retry-After %r, body %r" % (line, headers.get("retry-after"), body))
    expect_eq(status, 503, what + ": status")
    expect_eq(line, "HTTP/1.1 503 Service Unavailable", what + ": status line")
    expect_eq(headers.get("retry-after"), "1", what + ": Retry-After")
    expect_eq(body, limit.encode() + b"\n", what + ": body (the reason)")


def open_ws(server, what):
    """A WebSocket connection that upgraded and echoes."""
    c = Conn(server.port)
    try:
        c.handshake(key=new_key())
        c.send(frame(1, b"hello"))
        expect_message(c, 1, b"hello", what)
    except (socket.timeout, Eof, ConnectionResetError) as e:
        c.close()
        raise CheckFailed("%s: no upgrade and echo (%s)" % (what, type(e).__name__))
    except CheckFailed:
        c.close()
        raise
    return c


def close_ws(c, what):
    """Closes with 1000 and waits for the reply and the server's FIN."""
    c.send(frame(8, close_payload(1000)))
    fr = c.read_frame()
    check(fr[2] == 8, "%s: expected a close reply" % what)
    c.expect_eof(what)
    c.close()


def t_max_connections(duplex):
    server = DuplexServer(duplex, ["--max-connections", "3", "--threads", "2"])
    server.start()
    conns = []
    try:
        step("--max-connections 3: three WebSocket connections open and echo")
        for i in range(3):
            conns.append(open_ws(server, "connection %d of 3" % (i + 1)))
        step("a 4th, 5th and 6th upgrade get 503 + Retry-After + 'connection limit "
             "reached (3)' (whichever of the 2 threads takes them)")
        for i in range(3):
            expect_refused(server, "connection limit reached (3)", "upgrade %d" % (i + 4))
        step("the three are untouched: each still echoes")
        for i, c in enumerate(conns):
            c.send(frame(1, b"still here"))
            expect_message(c, 1, b"still here", "connection %d after the refusals" % (i + 1))
        step("one closes; then a new upgrade is accepted")
        close_ws(conns.pop(0), "closing connection 1")
        # Its close line is logged after its slot is given back.
        server.wait_close(0, "connection 1's end")
        conns.append(open_ws(server, "a new connection after one closed"))
        step("and the limit holds again: the next upgrade gets 503")
        expect_refused(server, "connection limit reached (3)", "upgrade past the limit again")
        for i, c in enumerate(conns):
            close_ws(c, "closing connection %d" % (i + 1))
        server.wait_close(3, "the last connection's end")
        server.check_alive("the connection-limit checks")
    finally:
        for c in conns:
            c.close()
        server.stop()
    step("refused connections never opened: 4 open lines, 4 close lines")
    expect_eq(server.log_count("open: "), 4, "open lines logged")
    expect_eq(len(server.closes()), 4, "close lines logged")


def half_request(server):
    """A raw socket that sent the first half of an upgrade request."""
    c = Conn(server.port)
    req = request(key=new_key())
    c.send(req[:len(req) // 2])
    return c, req[len(req) // 2:]


def t_max_handshakes(duplex):
    # One thread: its listener's queue is FIFO, so the two half requests
    # are taken (and hold their slots) before any later connection. (Two
    # loops have a queue each, and may take a later one first.)
    server = DuplexServer(duplex, ["--max-handshakes", "2", "--threads", "1"])
    server.start()
    held = []
    opened = []
    try:
        step("--max-handshakes 2: two sockets send half a request each and hold the slots")
        a, a_rest = half_request(server)
        b, b_rest = half_request(server)
        held = [a, b]
        step("a complete upgrade now gets 503 + Retry-After + 'handshake limit reached (2)'")
        expect_refused(server, "handshake limit reached (2)", "upgrade while 2 handshakes wait")
        expect_refused(server, "handshake limit reached (2)", "a second upgrade while they wait")
        step("one of the two finishes its request: it is upgraded (it held a slot)")
        a.send(a_rest)
        status, _, _ = parse_head(a.read_head())
        expect_eq(status, 101, "the half request, finished: status")
        opened.append(held.pop(0))
        step("its slot is free: a new upgrade is accepted")
        opened.append(open_ws(server, "upgrade after one handshake finished"))
        step("the other gives up (closes TCP): service is back for everyone")
        b.close()
        held = []
        # The server learns of that close when it reads it; a client told
        # 503 meanwhile is told to retry, and does.
        deadline = time.monotonic() + 5
        while True:
            c = Conn(server.port)
            c.send(request(key=new_key()))
            status, headers, _ = parse_head(c.read_head())
            if status == 101:
                opened.append(c)
                break
            c.close()
            expect_eq((status, headers.get("retry-after")), (503, "1"),
                      "an upgrade while the server learns of the close")
            check(time.monotonic() < deadline, "the server never gave back the slot of a "
                  "connection that closed during its handshake")
            time.sleep(0.1)
        step("both slots free: two more complete upgrades are accepted at once")
        opened.append(open_ws(server, "upgrade 1 of 2 with both slots free"))
        opened.append(open_ws(server, "upgrade 2 of 2 with both slots free"))
        server.check_alive("the handshake-limit checks")
    finally:
        for c in held + opened:
            c.close()
        server.stop()


def socket_fds(pid):
    """How many sockets process pid holds."""
    n = 0
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            n += os.readlink("/proc/%d/fd/%s" % (pid, fd)).startswith("socket:")
        except OSError:
            pass
    return n


def read_503(c, limit, what):
    try:
        status, headers, _ = parse_head(c.read_head())
    except (socket.timeout, Eof, ConnectionResetError) as e:
        raise CheckFailed("%s: no HTTP answer (%s)" % (what, type(e).__name__))
    expect_eq((status, headers.get("retry-after")), (503, "1"), what + ": status, Retry-After")
    expect_eq(c.read_exact(int(headers["content-length"])), limit.encode() + b"\n",
              what + ": body")


def t_refusal_flood(duplex):
    server = DuplexServer(duplex, ["--max-connections", "1", "--threads", "1", "--quiet"])
    server.start()
    ws, flood = None, []
    try:
        ws = open_ws(server, "the one connection allowed")
        base = socket_fds(server.proc.pid)
        step("40 upgrades past --max-connections 1 that keep TCP open after the answer")
        flood = [Conn(server.port) for _ in range(40)]
        for c in flood:
            c.send(request(key=new_key()))
        for i, c in enumerate(flood[:32]):
            read_503(c, "connection limit reached (1)", "flood client %d" % (i + 1))
        held = socket_fds(server.proc.pid) - base
        step("the server holds at most 32 of them (it holds %d); the rest wait in the "
             "kernel" % held)
        check(held <= 32, "the server holds %d refused connections at once, more than 32"
              % held)
        step("as the first 32 hang up, the other 8 are answered 503 as well")
        for c in flood[:32]:
            c.close()
        for i, c in enumerate(flood[32:]):
            read_503(c, "connection limit reached (1)", "flood client %d" % (i + 33))
            c.close()
        step("the allowed connection still echoes; once it closes, a new one opens")
        ws.send(frame(1, b"after the flood"))
        expect_message(ws, 1, b"after the flood", "the allowed connection after the flood")
        close_ws(ws, "closing the allowed connection")
        ws = None
        # No close line with --quiet: retry while the server still counts it.
        deadline = time.monotonic() + 5
        while True:
            c = Conn(server.port)
            c.send(request(key=new_key()))
            status, headers, _ = parse_head(c.read_head())
            c.close()
            if status == 101:
                break
            expect_eq((status, headers.get("retry-after")), (503, "1"),
                      "an upgrade while the server learns of the close")
            check(time.monotonic() < deadline, "the slot of the closed connection never "
                  "came back")
            time.sleep(0.1)
        server.check_alive("the flood")
    finally:
        for c in flood + ([ws] if ws else []):
            c.close()
        server.stop()


def main(args):
    t_max_connections(args.duplex)
    t_max_handshakes(args.duplex)
    t_refusal_flood(args.duplex)


if __name__ == "__main__":
    run_main(main, base_args(__doc__).parse_args())
