#!/usr/bin/python3
"""Two `duplex serve --rooms --redis` nodes sharing rooms through a real
redis-server that this test starts, kills and restarts (Python websockets
members on both nodes).

- A message sent on one node reaches the room's members on both nodes,
  exactly once (a node does not deliver its own message a second time
  when Redis hands it back), both ways, text and binary.
- Redis killed: each node logs the lost link and keeps its rooms working
  locally; what crosses nodes meanwhile is lost (Redis pub/sub keeps
  nothing), and the node counts it.
- Redis restarted on the same port: both nodes reconnect and subscribe
  their rooms again, and messages cross again.
- Redis down when a node starts: the node serves local rooms, and joins
  the others once Redis is up.
- requirepass: the right password works; a wrong one is logged as an
  authentication failure, the node keeps serving locally and retrying.

  /usr/bin/python3 tests/interop/test_rooms_redis.py --duplex build/duplex
"""
import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from interop_common import (CheckFailed, DuplexServer, base_args, check,  # noqa: E402
                            expect_eq, need_websockets, run_main, say, step, track)

websockets = need_websockets()
IO_TIMEOUT = 20.0


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Redis:
    """redis-server on 127.0.0.1:port in a temporary directory, no
    persistence; started and killed at will."""

    def __init__(self, port, password=None):
        self.port = port
        self.password = password
        self.dir = tempfile.mkdtemp(prefix="dx-redis-")
        self.proc = None

    def start(self):
        exe = shutil.which("redis-server")
        check(exe is not None, "redis-server is missing: apt-get install redis-server "
              "(scripts/deps.sh test installs it)")
        cmd = [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no", "--dir", self.dir]
        if self.password:
            cmd += ["--requirepass", self.password]
        say("starting: " + " ".join(cmd))
        self.proc = track(subprocess.Popen(cmd, stdout=subprocess.DEVNULL,
                                           stderr=subprocess.DEVNULL))
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                check(time.monotonic() < deadline, "redis-server did not start listening")
                time.sleep(0.05)

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def cleanup(self):
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def node(duplex, redis_url, extra=()):
    srv = DuplexServer(duplex, ["--rooms", "--threads", "2", "--redis", redis_url] + list(extra))
    srv.start()
    return srv


async def recv(ws, what):
    try:
        return await asyncio.wait_for(ws.recv(), IO_TIMEOUT)
    except asyncio.TimeoutError:
        raise CheckFailed("%s: nothing arrived within %.0f s" % (what, IO_TIMEOUT))


async def quiet(ws, what, wait=0.5):
    try:
        m = await asyncio.wait_for(ws.recv(), wait)
    except asyncio.TimeoutError:
        return
    raise CheckFailed("%s: an unexpected message arrived: %r" % (what, m))


def wait_logged(srv, text, before, what, timeout=IO_TIMEOUT):
    srv.expect_logged(text, before, what, timeout=timeout)


async def drain(ws):
    """Reads until the member has been quiet for half a second."""
    while True:
        try:
            await asyncio.wait_for(ws.recv(), 0.5)
        except asyncio.TimeoutError:
            return


async def until_crosses(a, b, what):
    """Sends probes from a until b receives one (the nodes' subscriptions
    reach Redis asynchronously); then drains a's side."""
    deadline = time.monotonic() + IO_TIMEOUT
    k = 0
    while True:
        k += 1
        await a.send("probe %d" % k)
        try:
            m = await asyncio.wait_for(b.recv(), 0.3)
            if m.startswith("probe"):
                # later probes may still be on their way: let them land
                while True:
                    try:
                        await asyncio.wait_for(b.recv(), 0.3)
                    except asyncio.TimeoutError:
                        return
        except asyncio.TimeoutError:
            check(time.monotonic() < deadline, what + ": no message crossed the nodes")


async def both_ways(n1, n2, tag):
    a1 = await websockets.connect(n1.url("/rooms/lobby"))
    a2 = await websockets.connect(n1.url("/rooms/lobby"))
    b1 = await websockets.connect(n2.url("/rooms/lobby"))
    await until_crosses(a1, b1, tag)
    await drain(a2)
    await a1.send("one")
    expect_eq(await recv(b1, "node 2's member"), "one", tag + ": node 1 -> node 2")
    expect_eq(await recv(a2, "node 1's other member"), "one", tag + ": node 1 -> node 1")
    await b1.send(b"\x00two")
    expect_eq(await recv(a1, "node 1's member"), b"\x00two", tag + ": node 2 -> node 1")
    expect_eq(await recv(a2, "node 1's other member"), b"\x00two", tag + ": node 2 -> node 1")
    await quiet(a1, tag + ": node 1's sender (no copy back from Redis)")
    await quiet(a2, tag + ": node 1's other member (exactly once)")
    await quiet(b1, tag + ": node 2's sender")
    return a1, a2, b1


async def scenario(args):
    port = free_port()
    redis = Redis(port)
    try:
        redis.start()
        url = "redis://127.0.0.1:%d" % port
        step("two nodes share room 'lobby': both ways, exactly once")
        n1, n2 = node(args.duplex, url), node(args.duplex, url)
        a1, a2, b1 = await both_ways(n1, n2, "at start")

        step("Redis killed: each node logs the lost link and keeps its rooms working locally")
        lost1, lost2 = n1.log_count("redis: "), n2.log_count("redis: ")
        redis.kill()
        wait_logged(n1, "redis: ", lost1, "node 1 after the kill")
        wait_logged(n2, "redis: ", lost2, "node 2 after the kill")
        await a1.send("local only")
        expect_eq(await recv(a2, "node 1's other member"), "local only", "local delivery, Redis down")
        await quiet(b1, "node 2 while Redis is down (the message is lost)")
        n1.check_alive("Redis killed")
        n2.check_alive("Redis killed")

        step("Redis restarted on the same port: both nodes reconnect and re-subscribe")
        redis.start()
        await until_crosses(a1, b1, "after the restart")
        await drain(a2)
        await b1.send("back")
        expect_eq(await recv(a1, "node 1"), "back", "node 2 -> node 1 after the restart")
        expect_eq(await recv(a2, "node 1"), "back", "node 2 -> node 1 after the restart")
        say("  node 1 said: %r" % [l for l in n1.stderr_lines if l.startswith("redis:")][-4:])
        for ws in (a1, a2, b1):
            await ws.close()
        n1.stop()
        n2.stop()

        step("Redis down when a node starts: local rooms work; it joins once Redis is up")
        redis.kill()
        n3 = node(args.duplex, url)
        c1 = await websockets.connect(n3.url("/rooms/x"))
        c2 = await websockets.connect(n3.url("/rooms/x"))
        await c1.send("alone")
        expect_eq(await recv(c2, "node 3's member"), "alone", "local delivery before Redis exists")
        redis.start()
        n4 = node(args.duplex, url)
        d1 = await websockets.connect(n4.url("/rooms/x"))
        await drain(c2)
        await until_crosses(d1, c1, "node 3 once Redis came up")
        for ws in (c1, c2, d1):
            await ws.close()
        n3.stop()
        n4.stop()
    finally:
        redis.cleanup()

    step("requirepass: the right password shares rooms; a wrong one is logged and "
         "the node still serves locally")
    port = free_port()
    redis = Redis(port, password="s3cret")
    try:
        redis.start()
        good = "redis://:s3cret@127.0.0.1:%d" % port
        n1, n2 = node(args.duplex, good), node(args.duplex, good)
        a1, a2, b1 = await both_ways(n1, n2, "with the password")
        for ws in (a1, a2, b1):
            await ws.close()
        bad = node(args.duplex, "redis://:wrong@127.0.0.1:%d" % port)
        bad.expect_logged("WRONGPASS", 0, "a node with the wrong password", timeout=IO_TIMEOUT)
        e1 = await websockets.connect(bad.url("/rooms/lobby"))
        e2 = await websockets.connect(bad.url("/rooms/lobby"))
        await e1.send("still here")
        expect_eq(await recv(e2, "the wrong-password node's member"), "still here",
                  "local delivery with a refused password")
        await e1.close()
        await e2.close()
        for s in (n1, n2, bad):
            s.check_alive("the password checks")
            s.stop()
    finally:
        redis.cleanup()


def main(args):
    asyncio.run(scenario(args))


if __name__ == "__main__":
    run_main(main, base_args(__doc__).parse_args())
