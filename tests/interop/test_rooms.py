#!/usr/bin/python3
"""duplex serve --rooms <-> Python websockets clients (and raw sockets).

- Every message a member sends reaches every other member of its room
  exactly once, on either of the server's two threads, text as text and
  binary as binary; never the sender (unless --echo-self); never another
  room. Members that negotiated permessage-deflate read the published
  (uncompressed) frames like the others.
- One member's 500 messages arrive at every other member in order.
- A path outside /rooms/NAME gets 404.
- A member that never reads is closed with 1008 once --max-buffered bytes
  wait for it, and the member that reads gets every message.
- A member that leaves stops receiving; the room goes on for the others.
- POST /publish/ROOM (--publish-token) reaches the room's members; 401
  without the token; /metrics counts the publishes and deliveries.

  /usr/bin/python3 tests/interop/test_rooms.py --duplex build/duplex
"""
import asyncio
import os
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from interop_common import (CheckFailed, DuplexServer, base_args, check,  # noqa: E402
                            expect_eq, need_websockets, run_main, say, step)

websockets = need_websockets()
IO_TIMEOUT = 30.0


async def recv(ws, what):
    try:
        return await asyncio.wait_for(ws.recv(), IO_TIMEOUT)
    except asyncio.TimeoutError:
        raise CheckFailed("%s: nothing arrived within %.0f s" % (what, IO_TIMEOUT))


async def expect_quiet(ws, what):
    """Nothing more is queued for ws: a round trip through another member
    shows it (the server keeps each publisher's order)."""
    try:
        m = await asyncio.wait_for(ws.recv(), 0.3)
    except asyncio.TimeoutError:
        return
    raise CheckFailed("%s: an unexpected message arrived: %r" % (what, m))


async def members(server, room, n, **kw):
    return [await websockets.connect(server.url("/rooms/" + room), max_size=None, **kw)
            for _ in range(n)]


async def fanout(server):
    step("6 members of 'lobby' (some with permessage-deflate, some without), 2 of "
         "'other': each message reaches the other 5 once, never the sender or 'other'")
    lobby = (await members(server, "lobby", 3)
             + await members(server, "lobby", 3, compression=None))
    other = await members(server, "other", 2)
    for i, ws in enumerate(lobby):
        payload = ("from %d" % i) if i % 2 == 0 else bytes([0, i, 255])
        await ws.send(payload)
        for j, peer in enumerate(lobby):
            if j != i:
                expect_eq(await recv(peer, "member %d" % j), payload,
                          "member %d gets member %d's message" % (j, i))
    for j, ws in enumerate(lobby):
        await expect_quiet(ws, "member %d after the round" % j)
    for ws in other:
        await expect_quiet(ws, "a member of 'other'")

    step("1 KiB text messages (compressed once for the deflate members) reach every member "
         "intact, between short ones that go uncompressed")
    for k in range(50):
        long_text = ("%d:" % k) + "".join(chr(97 + (k * i) % 26) for i in range(1024))
        await lobby[k % 6].send(long_text)
        await lobby[k % 6].send("short %d" % k)
        for j, peer in enumerate(lobby):
            if j != k % 6:
                expect_eq(await recv(peer, "member %d" % j), long_text, "member %d, long %d" % (j, k))
                expect_eq(await recv(peer, "member %d" % j), "short %d" % k,
                          "member %d, short %d" % (j, k))

    step("one member's 500 messages arrive in order at every other member")
    for k in range(500):
        await lobby[0].send("n%d" % k)
    for j in range(1, 6):
        for k in range(500):
            expect_eq(await recv(lobby[j], "member %d" % j), "n%d" % k,
                      "member %d, message %d" % (j, k))

    step("a member that leaves gets nothing more; the room goes on")
    await lobby[5].close()
    await lobby[1].send("after leave")
    for j in (0, 2, 3, 4):
        expect_eq(await recv(lobby[j], "member %d" % j), "after leave", "member %d" % j)
    for ws in lobby[:5] + other:
        await ws.close()


async def echo_self(server):
    step("--echo-self: the sender gets its own message too")
    a, b = await members(server, "r", 2)
    await a.send("mine")
    expect_eq(await recv(a, "sender"), "mine", "the sender's copy")
    expect_eq(await recv(b, "other member"), "mine", "the other member's copy")
    await a.close()
    await b.close()


async def not_a_room(server):
    step("a path outside /rooms/NAME is refused with 404")
    for path in ("/", "/rooms/", "/rooms/a/b", "/chat"):
        try:
            ws = await websockets.connect(server.url(path))
            await ws.close()
            raise CheckFailed("%s was accepted" % path)
        except websockets.exceptions.InvalidStatusCode as e:
            expect_eq(e.status_code, 404, "status for " + path)


async def slow_member(server):
    step("a member that never reads is closed with 1008 past --max-buffered; "
         "the member that reads gets all 2048 messages of 16 KiB")
    # A raw member with a tiny receive buffer that never reads.
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", server.port))
    s.sendall(b"GET /rooms/slow HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
              b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
              b"Sec-WebSocket-Version: 13\r\n\r\n")
    closes = len(server.closes())
    fast, sender = await members(server, "slow", 2, compression=None)
    msg = b"z" * 16384

    got = [0]

    async def read_all():
        for k in range(2048):
            m = await recv(fast, "the reading member")
            check(m == msg, "message %d arrived changed" % k)
            got[0] += 1
    reader = asyncio.ensure_future(read_all())
    # The sender keeps at most 8 messages (128 KiB) ahead of the reader, so
    # the reader is never the slow one; the silent member falls behind by
    # everything the kernel does not hold for it.
    for k in range(2048):
        while k - got[0] >= 8 and not reader.done():
            await asyncio.sleep(0.001)
        await sender.send(msg)
    await reader
    # The slow member is the one the server closes itself; a member of the
    # step before may still log its peer's close meanwhile.
    code, reason, why = server.wait_close(closes, "the slow member", timeout=IO_TIMEOUT,
                                          match=lambda c: c[2] != "closed by peer")
    say("  the server closed the slow member: code=%d reason=%r why=%s" % (code, reason, why))
    expect_eq(code, 1008, "close code for the slow member")
    expect_eq(why, "closed locally", "why")
    expect_eq(reason, "slow consumer: output buffer limit reached", "the reason on_close reports")
    s.close()
    await fast.close()
    await sender.close()


def http(port, method, path, body=b"", headers=()):
    """One HTTP/1.1 request with Connection: close; (status, body)."""
    s = socket.create_connection(("127.0.0.1", port), IO_TIMEOUT)
    head = "%s %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: %d\r\n" % (
        method, path, len(body))
    head += "".join("%s: %s\r\n" % h for h in headers)
    s.sendall(head.encode() + b"\r\n" + body)
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    status = int(data.split(b" ", 2)[1])
    return status, data.split(b"\r\n\r\n", 1)[1]


def metric(port, name):
    status, body = http(port, "GET", "/metrics")
    expect_eq(status, 200, "GET /metrics")
    for line in body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise CheckFailed("no %s in /metrics: %r" % (name, body[:400]))


async def publish_endpoint(server):
    step("POST /publish/ROOM with the bearer token reaches the room's members (text and "
         "binary); 401 without it; /metrics counts publishes and deliveries")
    a, b = await members(server, "news", 2)
    other = (await members(server, "other", 1))[0]
    before = metric(server.port, "duplex_deliveries_total")
    status, _ = http(server.port, "POST", "/publish/news", b"hello all",
                     [("Authorization", "Bearer t0ken")])
    expect_eq(status, 204, "POST /publish/news with the token")
    for ws in (a, b):
        expect_eq(await recv(ws, "a member of news"), "hello all", "published text")
    status, _ = http(server.port, "POST", "/publish/news", b"\x00\x01",
                     [("Authorization", "Bearer t0ken"),
                      ("Content-Type", "application/octet-stream")])
    expect_eq(status, 204, "POST /publish/news, binary")
    expect_eq(await recv(a, "a member of news"), b"\x00\x01", "published binary")
    expect_eq(await recv(b, "a member of news"), b"\x00\x01", "published binary")
    status, _ = http(server.port, "POST", "/publish/news", b"nope")
    expect_eq(status, 401, "POST /publish/news without the token")
    status, _ = http(server.port, "POST", "/publish/news", b"nope",
                     [("Authorization", "Bearer wrong")])
    expect_eq(status, 401, "POST /publish/news with a wrong token")
    await quiet_all([a, b, other])
    after = metric(server.port, "duplex_deliveries_total")
    expect_eq(after - before, 4, "duplex_deliveries_total grew by the 4 deliveries")
    check(metric(server.port, "duplex_publishes_total") >= 2, "duplex_publishes_total counts them")
    for ws in (a, b, other):
        await ws.close()


async def quiet_all(wss):
    for ws in wss:
        await expect_quiet(ws, "after the publishes")


def main(args):
    with DuplexServer(args.duplex, ["--rooms", "--threads", "2", "--max-buffered", "256K"]) as srv:
        asyncio.run(fanout(srv))
        asyncio.run(not_a_room(srv))
        asyncio.run(slow_member(srv))
        srv.check_alive("the room checks")
    with DuplexServer(args.duplex, ["--rooms", "--echo-self", "--quiet"]) as srv:
        asyncio.run(echo_self(srv))
    with DuplexServer(args.duplex, ["--rooms", "--quiet", "--threads", "2", "--metrics",
                                    "--publish-token", "t0ken"]) as srv:
        asyncio.run(publish_endpoint(srv))


if __name__ == "__main__":
    run_main(main, base_args(__doc__).parse_args())
