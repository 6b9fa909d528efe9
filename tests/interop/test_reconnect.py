#!/usr/bin/python3
"""duplex connect --reconnect <-> a Python websockets server.

A python3-websockets server on 127.0.0.1 answers by path (the n-th
connection to a path is counted from 1):
  /echo          echoes every message
  /drop-once     1st: echoes one message, then drops TCP (no close frame);
                 later: echoes (/drop-once-SUFFIX: the same, counted apart)
  /restart-once  1st: echoes one message, then closes with 1012; later: echoes
  /kick          echoes one message, then closes with 4001 "kicked"
  /503-once      1st: refuses the upgrade with HTTP 503; later: echoes
  /403           refuses the upgrade with HTTP 403
`duplex connect --reconnect` is driven line by line through stdin while its
stdout (messages) and stderr (close, reconnecting, reconnected lines) are
watched as they come, with short --reconnect-delay values so every case
ends within seconds. Attempt delays are checked against the backoff bounds
(+-50% of min(MAX, MIN * 2^(n-1))) and against the time that really passed.

  /usr/bin/python3 tests/interop/test_reconnect.py --duplex build/duplex
"""
import asyncio
import http
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from interop_common import (CheckFailed, _die_with_parent, base_args, check,  # noqa: E402
                            check_no_sanitizer_report, expect_eq, run_main, say,
                            short, step, track)

try:
    import websockets  # Debian python3-websockets
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
        self.lock = threading.Lock()
        self.hits = {}   # path -> handshakes seen (refused ones included)

    def start(self):
        threading.Thread(target=self._run, daemon=True).start()
        if not self._ready.wait(10) or self.port is None:
            raise CheckFailed("the websockets peer server did not start: %r" % self.error)
        say("websockets %s peer server on port %d" % (websockets.__version__, self.port))

    def url(self, path):
        return "ws://127.0.0.1:%d%s" % (self.port, path)

    def count(self, path):
        with self.lock:
            return self.hits.get(path, 0)

    def _hit(self, path):
        with self.lock:
            self.hits[path] = self.hits.get(path, 0) + 1
            return self.hits[path]

    def _run(self):
        try:
            asyncio.run(self._serve())
        except Exception as e:  # reported by start()
            self.error = e
            self._ready.set()

    async def _serve(self):
        self.loop = asyncio.get_running_loop()
        self._stop = self.loop.create_future()

        async def process_request(path, headers):
            n = self._hit(path)
            if path == "/403" or (path == "/503-once" and n == 1):
                status = http.HTTPStatus.FORBIDDEN if path == "/403" else \
                    http.HTTPStatus.SERVICE_UNAVAILABLE
                return status, [], b"not now\n"
            return None

        async with websockets.serve(self._handler, "127.0.0.1", 0, ping_interval=None,
                                    process_request=process_request) as srv:
            self.port = srv.sockets[0].getsockname()[1]
            self._ready.set()
            await self._stop

    async def _handler(self, ws, path=None):
        path = path if path is not None else ws.path
        n = self.count(path)
        try:
            drop = path.startswith("/drop-once")  # /drop-once-x: a fresh count
            if ((drop or path == "/restart-once") and n == 1) or path == "/kick":
                await ws.send(await ws.recv())
                if path == "/kick":
                    await ws.close(4001, "kicked")
                elif path == "/restart-once":
                    await ws.close(1012, "restarting")
                else:
                    await asyncio.sleep(0.2)  # let the echo leave first
                    ws.transport.close()      # FIN, no close frame
                return
            async for msg in ws:
                await ws.send(msg)
        except websockets.exceptions.ConnectionClosed:
            pass

    def stop(self):
        if self.loop and self._stop and not self._stop.done():
            self.loop.call_soon_threadsafe(self._stop.set_result, None)


ATTEMPT_RE = re.compile(r"^reconnecting: attempt (\d+) in (\d+) ms \(after (.*)\)$")
CLOSE_RE = re.compile(r'^closed: code=(\d+) reason="(.*)" why=(.*)$')


class Client:
    """`duplex connect --reconnect ...` with stdin kept open; its stdout and
    stderr lines are collected with the time they arrived."""

    def __init__(self, duplex, url, extra=()):
        self.cmd = [duplex, "connect", "-v", "--reconnect"] + list(extra) + [url]
        say("running: " + " ".join(self.cmd))
        self.t0 = time.monotonic()
        self.proc = track(subprocess.Popen(self.cmd, stdin=subprocess.PIPE,
                                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                           preexec_fn=_die_with_parent))
        self.cond = threading.Condition()
        self.out, self.err = [], []   # (time, line)
        for src, dst in ((self.proc.stdout, self.out), (self.proc.stderr, self.err)):
            threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src, dst):
        for raw in src:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self.cond:
                dst.append((time.monotonic(), line))
                self.cond.notify_all()
        with self.cond:
            dst.append((time.monotonic(), None))  # EOF mark
            self.cond.notify_all()

    def send(self, line):
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def close_stdin(self):
        self.proc.stdin.close()

    def _wait(self, lines, pred, what, timeout):
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for t, line in lines:
                    if line is not None and pred(line):
                        return t, line
                left = deadline - time.monotonic()
                if left <= 0 or (lines and lines[-1][1] is None):
                    raise CheckFailed("%s: not seen within %.1f s; stdout %s; stderr %s"
                                      % (what, timeout, short(self.stdout_lines(), 400),
                                         short(self.stderr_lines(), 800)))
                self.cond.wait(left)

    def wait_out(self, text, timeout=10.0):
        return self._wait(self.out, lambda l: l == text, "stdout line %r" % text, timeout)

    def wait_err(self, regex, timeout=10.0):
        r = re.compile(regex)
        return self._wait(self.err, lambda l: r.search(l), "stderr line /%s/" % regex, timeout)

    def wait_exit(self, timeout=15.0):
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise CheckFailed("duplex connect did not exit within %.0f s; stderr %s"
                              % (timeout, short(self.stderr_lines(), 800)))
        with self.cond:  # both pipes drained
            self.cond.wait_for(lambda: self.out and self.out[-1][1] is None and
                               self.err and self.err[-1][1] is None, 5)
        if not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()
            except BrokenPipeError:
                pass
        check_no_sanitizer_report("\n".join(self.stderr_lines()), "duplex connect")
        say("  exit status %s after %.2f s" % (rc, time.monotonic() - self.t0))
        return rc

    def stdout_lines(self):
        return [l for _, l in self.out if l is not None]

    def stderr_lines(self):
        return [l for _, l in self.err if l is not None]

    def attempts(self):
        """[(time, attempt, delay_ms, after)] from the reconnecting lines."""
        got = []
        for t, line in self.err:
            m = line is not None and ATTEMPT_RE.match(line)
            if m:
                got.append((t, int(m.group(1)), int(m.group(2)), m.group(3)))
        return got

    def closes(self):
        return [CLOSE_RE.match(l).groups() for l in self.stderr_lines() if CLOSE_RE.match(l)]


def backoff_bounds(n, lo_ms, hi_ms):
    base = min(hi_ms, lo_ms * 2 ** (n - 1))
    return base // 2, base + base // 2 + 1  # +-50%, rounding


def expect_attempt(a, n, lo_ms, hi_ms, after_re):
    t, got_n, delay, after = a
    expect_eq(got_n, n, "attempt number")
    lo, hi = backoff_bounds(n, lo_ms, hi_ms)
    check(lo <= delay <= hi, "attempt %d: delay %d ms outside [%d, %d] (--reconnect-delay %d:%d)"
          % (n, delay, lo, hi, lo_ms, hi_ms))
    check(re.search(after_re, after), "attempt %d: expected (after /%s/), got (after %s)"
          % (n, after_re, after))
    return delay


def no_line(c, regex, what):
    r = re.compile(regex)
    bad = [l for l in c.stderr_lines() if r.search(l)]
    check(not bad, "%s: unexpected stderr line %r" % (what, bad[:1]))


# ---- cases -----------------------------------------------------------------

def t_drop(duplex, peer):
    step("server drops TCP: attempt line (delay within bounds), reconnected, messages flow")
    c = Client(duplex, peer.url("/drop-once"), ["--reconnect-delay", "100:800"])
    c.send("one")
    c.wait_out("one")
    t_closed, _ = c.wait_err(r"^closed: code=1006 .*why=transport close$")
    c.wait_err(r"^reconnecting: attempt 1 ")
    a = c.attempts()[0]
    delay = expect_attempt(a, 1, 100, 800, r"^code=1006 why=transport close$")
    t_back, _ = c.wait_err(r"^reconnected after 1 attempt$")
    check(t_back - t_closed >= delay / 1000.0 - 0.02,
          "reconnected %.3f s after the drop, before the %d ms delay ran out"
          % (t_back - t_closed, delay))
    c.send("two")
    c.wait_out("two")
    c.close_stdin()
    rc = c.wait_exit()
    expect_eq(c.stdout_lines(), ["one", "two"], "stdout across the reconnection")
    expect_eq(c.closes()[-1][0], "1000", "last close code (end of stdin)")
    expect_eq(rc, 0, "exit status after a clean close on EOF")
    expect_eq(peer.count("/drop-once"), 2, "connections the server saw")


def t_queue(duplex, peer):
    step("a line typed while disconnected is queued and sent once reconnected")
    c = Client(duplex, peer.url("/drop-once-q"), ["--reconnect-delay", "400:800"])
    c.send("first")
    c.wait_out("first")
    c.wait_err(r"^reconnecting: attempt 1 ")
    c.send("while away")
    c.wait_err(r"^reconnected after 1 attempt$")
    c.wait_out("while away")
    c.close_stdin()
    expect_eq(c.wait_exit(), 0, "exit status")
    expect_eq(c.stdout_lines(), ["first", "while away"], "stdout")

    step("with --reconnect-queue 0 that line is dropped with a warning")
    c = Client(duplex, peer.url("/drop-once-r"),
               ["--reconnect-delay", "400:800", "--reconnect-queue", "0"])
    c.send("first")
    c.wait_out("first")
    c.wait_err(r"^reconnecting: attempt 1 ")
    c.send("while away")
    c.wait_err(r"stdin line 2 dropped: not connected \(reconnecting\)")
    c.wait_err(r"^reconnected after 1 attempt$")
    c.send("after")
    c.wait_out("after")
    c.close_stdin()
    expect_eq(c.wait_exit(), 0, "exit status")
    expect_eq(c.stdout_lines(), ["first", "after"], "stdout")


def t_restart(duplex, peer):
    step("server closes with 1012: reconnects")
    c = Client(duplex, peer.url("/restart-once"), ["--reconnect-delay", "50:400"])
    c.send("hi")
    c.wait_out("hi")
    c.wait_err(r'^closed: code=1012 reason="restarting" why=closed by peer$')
    c.wait_err(r"^reconnected after 1 attempt$")
    expect_attempt(c.attempts()[0], 1, 50, 400, r"^code=1012 why=closed by peer$")
    c.send("again")
    c.wait_out("again")
    c.close_stdin()
    expect_eq(c.wait_exit(), 0, "exit status")


def t_kick(duplex, peer):
    step("server closes with 4001: no reconnection; exits by itself (stdin still open)")
    c = Client(duplex, peer.url("/kick"), ["--reconnect-delay", "50:400"])
    c.send("hi")
    c.wait_out("hi")
    rc = c.wait_exit(10)
    expect_eq(c.closes(), [("4001", "kicked", "closed by peer")], "close lines")
    no_line(c, r"^reconnect", "after 4001")
    check(rc == 1, "exit status after 4001: expected 1, got %s" % rc)
    expect_eq(peer.count("/kick"), 1, "connections the server saw")


def t_server_down(duplex):
    step("nothing listening: attempts go on with growing delays, then give up")
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    c = Client(duplex, "ws://127.0.0.1:%d/" % port,
               ["--reconnect-delay", "50:400", "--reconnect-attempts", "5"])
    rc = c.wait_exit(20)
    att = c.attempts()
    expect_eq([a[1] for a in att], [1, 2, 3, 4, 5], "attempt numbers")
    delays = [expect_attempt(a, a[1], 50, 400, r"why=transport error|cannot connect")
              for a in att]
    # The delay really passed between one announcement and the next: the
    # next is only made after the attempt before has failed.
    for i in range(1, len(att)):
        gap = att[i][0] - att[i - 1][0]
        check(gap >= delays[i - 1] / 1000.0 - 0.02,
              "attempt %d announced %.3f s after attempt %d, whose delay was %d ms"
              % (i + 1, gap, i, delays[i - 1]))
    # Growing: each base doubles until MAX; with +-50% jitter only the
    # bases are strictly ordered, so compare across two steps.
    check(delays[2] > delays[0] and delays[3] > delays[1],
          "delays do not grow: %s" % delays)
    c.wait_err(r"^reconnect: gave up after 5 attempts$", 1)
    expect_eq(rc, 1, "exit status after giving up")
    expect_eq(len(c.closes()), 6, "close lines (the first connection and 5 attempts)")


def t_local_close(duplex, peer):
    step("end of stdin closes with 1000: no reconnection")
    c = Client(duplex, peer.url("/echo"), ["--reconnect-delay", "50:400"])
    c.send("x")
    c.wait_out("x")
    c.close_stdin()
    rc = c.wait_exit()
    expect_eq(c.closes(), [("1000", "", "closed locally")], "close lines")
    no_line(c, r"^reconnect", "after a local close")
    expect_eq(rc, 0, "exit status")
    expect_eq(peer.count("/echo"), 1, "connections the server saw")

    step("end of stdin while waiting to reconnect calls the attempt off")
    c = Client(duplex, peer.url("/drop-once-e"), ["--reconnect-delay", "3000:3000"])
    c.send("x")
    c.wait_out("x")
    t_att, _ = c.wait_err(r"^reconnecting: attempt 1 ")
    delay = c.attempts()[0][2]
    c.close_stdin()
    rc = c.wait_exit(10)
    check(time.monotonic() - t_att < delay / 1000.0,
          "exit took %.2f s after EOF; the attempt due after %d ms should have been "
          "called off" % (time.monotonic() - t_att, delay))
    no_line(c, r"^reconnected", "after EOF while waiting")
    expect_eq(peer.count("/drop-once-e"), 1, "connections the server saw")
    expect_eq(rc, 1, "exit status (the last connection was dropped)")

    step("SIGTERM while waiting to reconnect: exits at once")
    c = Client(duplex, peer.url("/drop-once-s"), ["--reconnect-delay", "3000:3000"])
    c.send("x")
    c.wait_out("x")
    t_att, _ = c.wait_err(r"^reconnecting: attempt 1 ")
    delay = c.attempts()[0][2]
    c.proc.send_signal(signal.SIGTERM)
    rc = c.wait_exit(10)
    check(time.monotonic() - t_att < delay / 1000.0,
          "exit took %.2f s after SIGTERM; the attempt was due after %d ms"
          % (time.monotonic() - t_att, delay))
    expect_eq(peer.count("/drop-once-s"), 1, "connections the server saw")
    expect_eq(rc, 1, "exit status")


def t_handshake(duplex, peer):
    step("handshake refused with 503: reconnects")
    c = Client(duplex, peer.url("/503-once"), ["--reconnect-delay", "50:400"])
    c.wait_err(r"^handshake failed: HTTP 503$")
    c.wait_err(r"^reconnected after 1 attempt$")
    expect_attempt(c.attempts()[0], 1, 50, 400, r"^code=1006 why=handshake failed status=503$")
    c.send("in")
    c.wait_out("in")
    c.close_stdin()
    expect_eq(c.wait_exit(), 0, "exit status")

    step("handshake refused with 403: no reconnection")
    c = Client(duplex, peer.url("/403"), ["--reconnect-delay", "50:400"])
    rc = c.wait_exit(10)
    c.wait_err(r"^handshake failed: HTTP 403$", 1)
    no_line(c, r"^reconnect", "after 403")
    expect_eq(rc, 1, "exit status")
    expect_eq(peer.count("/403"), 1, "handshakes the server saw")


def t_usage(duplex):
    step("reconnect options are checked")
    for args in (["--reconnect", "--reconnect-delay", "10:5"],
                 ["--reconnect", "--reconnect-delay", "0:5"],
                 ["--reconnect", "--reconnect-delay", "10"],
                 ["--reconnect", "--reconnect-queue", "lots"],
                 ["--reconnect-attempts", "3"],
                 ["--reconnect-queue", "1M"]):
        p = subprocess.run([duplex, "connect"] + args + ["ws://127.0.0.1:1/"],
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=10)
        expect_eq(p.returncode, 2, "exit status for %s" % " ".join(args))
    p = subprocess.run([duplex, "connect", "--reconnect", "http://x/"],
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=10)
    expect_eq(p.returncode, 2, "exit status for a bad URL with --reconnect")


def main(args):
    peer = PeerServer()
    peer.start()
    try:
        t_usage(args.duplex)
        t_drop(args.duplex, peer)
        t_queue(args.duplex, peer)
        t_restart(args.duplex, peer)
        t_kick(args.duplex, peer)
        t_handshake(args.duplex, peer)
        t_local_close(args.duplex, peer)
        t_server_down(args.duplex)
    finally:
        peer.stop()


if __name__ == "__main__":
    a = base_args(__doc__).parse_args()
    run_main(main, a)
