"""Shared harness for the duplex interop suites (Python side).

Runs `duplex serve` / `duplex connect` as child processes, prints every
check as it happens, and turns the first failed check into a non-zero exit
with a clear message. Every suite has a wall-clock watchdog so a hung peer
can never hang CTest: when it fires, the children are killed and the suite
exits with status 2.

Run with Debian's /usr/bin/python3 (it has python3-websockets).
"""
import argparse
import asyncio
import base64
import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

_children = []          # every Popen we started, killed by the watchdog
_children_lock = threading.Lock()
_servers = []           # every DuplexServer, for its stderr on failure
_tempdirs = []          # removed when the suite ends
HERE = os.path.dirname(os.path.abspath(__file__))


class CheckFailed(Exception):
    """A check failed; the message says what was expected and what came."""


def say(msg):
    print(msg, flush=True)


def step(msg):
    say("CHECK: " + msg)


def check(cond, msg):
    if not cond:
        raise CheckFailed(msg)


def expect_eq(got, want, what):
    if got != want:
        raise CheckFailed("%s: expected %s, got %s" % (what, short(want), short(got)))


def short(v, limit=120):
    r = repr(v)
    if len(r) > limit:
        n = len(v) if hasattr(v, "__len__") else "?"
        r = r[:limit] + "...(len=%s)" % n
    return r


def base_args(description, need_peer=False):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--duplex", required=True, help="path to the duplex binary")
    if need_peer:
        p.add_argument("--client-peer", default=None,
                       help="path to the client_peer test program (C API)")
    p.add_argument("--timeout", type=float, default=240.0,
                   help="watchdog for the whole suite, seconds")
    return p


def start_watchdog(seconds):
    def fire():
        say("FAIL: suite watchdog: still running after %.0f s" % seconds)
        kill_children()
        os._exit(2)
    t = threading.Timer(seconds, fire)
    t.daemon = True
    t.start()
    return t


def _die_with_parent():
    """preexec_fn: the child gets SIGKILL if this harness dies (e.g. CTest's
    timeout kills it), so no `duplex serve` outlives its suite."""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def track(proc):
    with _children_lock:
        _children.append(proc)
    return proc


def kill_children():
    with _children_lock:
        procs = list(_children)
    for p in procs:
        if p.poll() is None:
            try:
                p.kill()
            except OSError:
                pass


SANITIZER_MARKS = ("runtime error:", "ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                   "WARNING: AddressSanitizer")


def sanitizer_report(text):
    """The first line of a sanitizer report in text, or None. Lets a
    sanitizer build of duplex fail these suites even when UBSan recovers."""
    for line in text.splitlines():
        if any(m in line for m in SANITIZER_MARKS):
            return line.strip()
    return None


def check_no_sanitizer_report(text, who):
    line = sanitizer_report(text)
    if line:
        raise CheckFailed("sanitizer report from %s: %s" % (who, line))


def run_main(fn, args):
    """Runs fn(args); prints the verdict line and exits with its status."""
    start_watchdog(args.timeout)
    status = 0
    try:
        fn(args)
        for srv in _servers:
            srv.stop()
            check_no_sanitizer_report("\n".join(srv.stderr_lines), " ".join(srv.cmd))
    except CheckFailed as e:
        say("FAIL: %s" % e)
        status = 1
    except Exception as e:  # an unexpected error is a failure too
        import traceback
        traceback.print_exc()
        say("FAIL: unexpected %s: %s" % (type(e).__name__, e))
        status = 1
    finally:
        kill_children()
        for d in _tempdirs:
            shutil.rmtree(d, ignore_errors=True)
    if status != 0:
        for srv in _servers:
            if srv.stderr_lines:
                say("stderr of `%s` (last lines):" % " ".join(srv.cmd))
                for line in srv.stderr_lines[-15:]:
                    say("  ! " + line)
    if status == 0:
        say("PASS: all checks passed")
    sys.stdout.flush()
    os._exit(status)


class Started:
    """`with X(...) as x:` starts x and stops it at the end."""

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()


def need_websockets():
    """Debian's python3-websockets, or a FAIL line and exit 1 when this is a
    python without it (run the suites with /usr/bin/python3)."""
    try:
        import websockets
    except ImportError:
        say("FAIL: python websockets is missing: run this suite with /usr/bin/python3 "
            "and apt-get install python3-websockets")
        sys.exit(1)
    return websockets


def memory_kib(pid, field="VmRSS"):
    """A memory figure of process pid from /proc/PID/status, in KiB: VmRSS
    (now) or VmHWM (the peak so far)."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise CheckFailed("no %s in /proc/%d/status" % (field, pid))


def asan_process(pid):
    """1 when process pid runs with AddressSanitizer, whose quarantine keeps
    freed memory resident: its RSS says nothing about what the code holds."""
    with open("/proc/%d/maps" % pid) as f:
        return "libasan" in f.read()


# The per-connection end line of `duplex serve` (cli_put_close, src/cli/fmt.c).
SERVE_CLOSE_RE = re.compile(r'^close: code=(\d+) reason="(.*)" why=(.*?)\s*$')


class DuplexServer(Started):
    """`duplex serve` on 127.0.0.1 with a kernel-chosen port."""

    LISTEN_RE = re.compile(r"listening on (\S+):(\d+)")

    def __init__(self, duplex, extra=(), start_timeout=10.0, tls=None):
        """tls: a (certificate, key) pair of PEM files to serve wss:// with."""
        self.duplex = duplex
        self.tls = tls
        self.cmd = [duplex, "serve", "--host", "127.0.0.1", "--port", "0"] + list(extra)
        if tls:
            self.cmd += ["--tls-cert", tls[0], "--tls-key", tls[1]]
        self.start_timeout = start_timeout
        self.proc = None
        self.port = None
        self.stderr_lines = []
        self._ready = threading.Event()

    def start(self):
        say("starting: " + " ".join(self.cmd))
        _servers.append(self)
        self.proc = track(subprocess.Popen(
            self.cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, preexec_fn=_die_with_parent))
        # Drain stderr for the whole life of the server so a chatty server
        # never blocks on a full pipe; the listening line sets the port.
        self._drainer = threading.Thread(target=self._drain, daemon=True)
        self._drainer.start()
        if not self._ready.wait(self.start_timeout):
            rc = self.proc.poll()
            raise CheckFailed("duplex serve printed no 'listening on HOST:PORT' line within "
                              "%.0f s (exit status %s); stderr: %r"
                              % (self.start_timeout, rc, self.stderr_text()))
        if self.port is None:
            raise CheckFailed("duplex serve exited before listening (status %s); stderr: %r"
                              % (self.proc.poll(), self.stderr_text()))
        say("duplex serve is listening on port %d" % self.port)

    def _drain(self):
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.stderr_lines.append(line)
            if self.port is None:
                m = self.LISTEN_RE.search(line)
                if m:
                    self.port = int(m.group(2))
                    self._ready.set()
        self._ready.set()

    def stderr_text(self):
        return "\n".join(self.stderr_lines[-20:])

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def check_alive(self, what):
        if not self.alive():
            raise CheckFailed("duplex serve died (status %s) after %s; stderr tail: %r"
                              % (self.proc.poll(), what, self.stderr_text()))

    def url(self, path="/", host=None):
        """ws://127.0.0.1, or wss://localhost (the name the test
        certificates carry) when serving TLS."""
        if self.tls:
            return "wss://%s:%d%s" % (host or "localhost", self.port, path)
        return "ws://%s:%d%s" % (host or "127.0.0.1", self.port, path)

    def memory_kib(self, field="VmRSS"):
        """A memory figure of the server process (see memory_kib)."""
        return memory_kib(self.proc.pid, field)

    def log_count(self, text):
        """How often text occurs in what duplex serve logged so far. With
        several threads its open/close lines may interleave mid-line, so
        checks count a fragment such as ' deflate=on ' instead of reading
        whole lines."""
        return "\n".join(self.stderr_lines).count(text)

    def expect_logged(self, text, before, what, timeout=3.0):
        """Waits until text occurs more often than `before` times."""
        deadline = time.monotonic() + timeout
        while self.log_count(text) <= before:
            check(time.monotonic() < deadline, "%s: duplex serve did not log %r (stderr tail: "
                  "%r)" % (what, text, self.stderr_text()))
            time.sleep(0.02)

    def closes(self):
        """(code, reason, why) of each `close: ...` line logged so far."""
        return [(int(m.group(1)), m.group(2), m.group(3))
                for m in map(SERVE_CLOSE_RE.match, list(self.stderr_lines)) if m]

    def wait_close(self, seen, what, timeout=5.0, match=None):
        """The first close line after the first `seen` ones (waits for it),
        or the first of those that `match` accepts: a connection of an
        earlier step may log its close late, on a loaded machine."""
        deadline = time.monotonic() + timeout
        while True:
            found = [c for c in self.closes()[seen:] if match is None or match(c)]
            if found:
                return found[0]
            check(time.monotonic() < deadline, "%s: duplex serve logged no matching `close:` "
                  "line within %.1f s; stderr tail: %r" % (what, timeout, self.stderr_text()))
            time.sleep(0.02)

    def stop(self, require_clean=False, timeout=5.0):
        """SIGTERM, then wait; returns the exit status (kills on timeout)."""
        if self.proc is None:
            return None
        if self.proc.poll() is not None:
            self._drainer.join(2)
            return self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            if require_clean:
                raise CheckFailed("duplex serve did not exit within %.0f s of SIGTERM" % timeout)
            return None
        self._drainer.join(2)  # collect what it printed while exiting
        return rc


class ConnectResult:
    def __init__(self, rc, stdout, stderr):
        self.rc = rc
        self.stdout = stdout
        self.stderr = stderr
        self.close = parse_close_line(stderr)

    def lines(self):
        text = self.stdout.decode("utf-8", "replace")
        if text.endswith("\n"):
            text = text[:-1]
        return text.split("\n") if text else []

    def expect_failed(self, code, why, what, reason_has=(), rc=1):
        """The connection failed: exit status rc and a close line with this
        code and why, whose reason contains every string in reason_has."""
        err = self.stderr.decode("utf-8", "replace")
        check(self.close is not None, "%s: no `closed: code=C reason=\"R\" why=W` line on "
              "stderr; stderr was %r" % (what, err))
        expect_eq((self.close[0], self.close[2]), (code, why), what + ": (code, why) in the "
                  "close line %r" % (self.close,))
        for part in reason_has:
            check(part in self.close[1], "%s: expected the close reason to contain %r, got %r"
                  % (what, part, self.close[1]))
        expect_eq(self.rc, rc, what + ": exit status")
        expect_eq(self.lines(), [], what + ": stdout")


CLOSE_RE = re.compile(r'closed: code=(\d+) reason="(.*)" why=(.*?)\s*$')


def parse_close_line(stderr):
    """The last `closed: code=C reason="R" why=W` line as (C, R, W), or None."""
    found = None
    for line in stderr.decode("utf-8", "replace").splitlines():
        m = CLOSE_RE.search(line)
        if m:
            found = (int(m.group(1)), m.group(2), m.group(3))
    return found


def run_connect(duplex, url, stdin_lines, keep_stdin_open=False, timeout=30.0,
                stdin_delay=0.0, extra=()):
    """Runs `duplex connect URL`, feeding stdin_lines; returns ConnectResult.

    keep_stdin_open: do not send EOF, so the connection must be ended by the
    peer. stdin_delay: pause before closing stdin (lets echoes come back
    before our close starts, as a person typing would). extra: options such
    as --ca FILE or --protocol NAME."""
    # -v: the `closed:` line also on a clean close (the checks read it).
    cmd = [duplex, "connect", "-v"] + list(extra) + [url]
    say("running: %s  (%d stdin line(s)%s)" % (" ".join(cmd), len(stdin_lines),
                                              ", stdin kept open" if keep_stdin_open else ""))
    proc = track(subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, preexec_fn=_die_with_parent))
    out_chunks, err_chunks = [], []

    def pump(src, dst):
        while True:
            b = src.read1(65536) if hasattr(src, "read1") else src.read(65536)
            if not b:
                break
            dst.append(b)

    t_out = threading.Thread(target=pump, args=(proc.stdout, out_chunks), daemon=True)
    t_err = threading.Thread(target=pump, args=(proc.stderr, err_chunks), daemon=True)
    t_out.start()
    t_err.start()
    try:
        for line in stdin_lines:
            proc.stdin.write(line.encode("utf-8") + b"\n")
            proc.stdin.flush()
        if stdin_delay:
            time.sleep(stdin_delay)
        if not keep_stdin_open:
            proc.stdin.close()
    except BrokenPipeError:
        pass
    try:
        rc = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        t_out.join(2)
        t_err.join(2)
        raise CheckFailed("duplex connect %s did not exit within %.0f s; stdout so far %s, "
                          "stderr so far %r" % (url, timeout, short(b"".join(out_chunks)),
                                                b"".join(err_chunks).decode("utf-8", "replace")))
    finally:
        if keep_stdin_open and not proc.stdin.closed:
            try:
                proc.stdin.close()
            except BrokenPipeError:
                pass
    t_out.join(5)
    t_err.join(5)
    res = ConnectResult(rc, b"".join(out_chunks), b"".join(err_chunks))
    say("  exit status %s; close line %r" % (rc, res.close))
    check_no_sanitizer_report(res.stderr.decode("utf-8", "replace"), "duplex connect " + url)
    return res


def run_client_peer(peer, url, script, timeout=60.0, opts=()):
    """Runs the C client_peer against url with a script and options (such
    as --ca=FILE, --deflate, --expect-fail=...); fails on non-zero. Returns
    its output."""
    cmd = [peer] + list(opts) + [url] + list(script)
    say("running: %s" % " ".join(cmd))
    proc = track(subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT,
                                  preexec_fn=_die_with_parent))
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        raise CheckFailed("client_peer did not finish within %.0f s; output: %s"
                          % (timeout, out.decode("utf-8", "replace")))
    text = out.decode("utf-8", "replace")
    for line in text.splitlines():
        say("  | " + line)
    check_no_sanitizer_report(text, "client_peer")
    if proc.returncode != 0:
        raise CheckFailed("client_peer exited with status %d (script %s)"
                          % (proc.returncode, " ".join(script)))
    return text


# ------------------------------------------------------------ certificates

class Certs:
    """Throwaway certificates from tests/certs/make.sh (see there): .ca, and
    (certificate, key) pairs .server (localhost, 127.0.0.1, ::1), .wrong
    (wrong.example only) and .self_signed (localhost, trusted by nobody)."""

    def __init__(self, d):
        self.dir = d
        self.ca = os.path.join(d, "ca.pem")
        pair = lambda n: (os.path.join(d, n + ".pem"), os.path.join(d, n + ".key"))  # noqa: E731
        self.server, self.wrong, self.self_signed = pair("server"), pair("wrong"), pair("self")

    def client_context(self):
        """An ssl client context trusting only the test CA (host names checked)."""
        import ssl
        return ssl.create_default_context(cafile=self.ca)

    @staticmethod
    def server_context(pair):
        import ssl
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(*pair)
        return ctx


def make_certs():
    """Generates the test certificates into a temporary folder removed when
    the suite ends."""
    d = tempfile.mkdtemp(prefix="duplex-certs-")
    _tempdirs.append(d)
    script = os.path.join(HERE, "..", "certs", "make.sh")
    try:
        r = subprocess.run(["sh", script, d], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise CheckFailed("tests/certs/make.sh failed: %s" % e)
    if r.returncode != 0:
        raise CheckFailed("tests/certs/make.sh exited with %d: %s"
                          % (r.returncode, r.stdout.decode("utf-8", "replace")[-2000:]))
    return Certs(d)


# ------------------------------------------------------------ peer servers

class WsPeer(Started):
    """A python3-websockets server in its own thread and event loop. It
    echoes every message; on /frag it echoes a message of 3 or more units as
    3 fragments. Each connection is recorded in .conns as a dict: path,
    request (the client's headers), response (the server's), subprotocol,
    close (the (code, reason) the client sent, when it did). serve_kw go to
    websockets.serve: ssl=, extensions=, compression=, subprotocols=."""

    def __init__(self, **serve_kw):
        self.serve_kw = serve_kw
        self.port = None
        self.loop = None
        self._stop = None
        self._ready = threading.Event()
        self.error = None
        self.conns = []

    def start(self):
        threading.Thread(target=self._run, daemon=True).start()
        if not self._ready.wait(10) or self.port is None:
            raise CheckFailed("the websockets peer server did not start: %r" % self.error)
        shown = ", ".join("%s=%s" % (k, _describe(v)) for k, v in sorted(self.serve_kw.items()))
        say("websockets peer server on port %d (%s)" % (self.port, shown or "defaults"))
        return self

    def url(self, path="/"):
        if self.serve_kw.get("ssl") is not None:
            return "wss://localhost:%d%s" % (self.port, path)
        return "ws://127.0.0.1:%d%s" % (self.port, path)

    def _run(self):
        try:
            asyncio.run(self._serve())
        except Exception as e:  # reported by start()
            self.error = e
            self._ready.set()

    async def _serve(self):
        import websockets
        self.loop = asyncio.get_running_loop()
        self._stop = self.loop.create_future()
        kw = dict(max_size=None, ping_interval=None)
        kw.update(self.serve_kw)
        async with websockets.serve(self._handler, "127.0.0.1", 0, **kw) as srv:
            self.port = srv.sockets[0].getsockname()[1]
            self._ready.set()
            await self._stop

    async def _handler(self, ws, path=None):
        from websockets.exceptions import ConnectionClosed
        rec = {"path": path if path is not None else ws.path, "request": ws.request_headers,
               "response": ws.response_headers, "subprotocol": ws.subprotocol,
               "close": None}
        self.conns.append(rec)
        try:
            async for msg in ws:
                if rec["path"] == "/frag" and len(msg) >= 3:
                    k = len(msg) // 3
                    await ws.send([msg[:k], msg[k:2 * k], msg[2 * k:]])
                else:
                    await ws.send(msg)
        except ConnectionClosed:
            pass
        finally:
            if ws.close_rcvd is not None:
                rec["close"] = (ws.close_rcvd.code, ws.close_rcvd.reason)

    def last(self, what, timeout=3.0):
        """The most recent connection's record (waits for one to appear)."""
        deadline = time.monotonic() + timeout
        while not self.conns:
            check(time.monotonic() < deadline, "%s: the peer server saw no connection" % what)
            time.sleep(0.02)
        return self.conns[-1]

    def wait_close(self, what, timeout=3.0):
        """(code, reason) of the close frame the last client sent."""
        deadline = time.monotonic() + timeout
        while self.last(what)["close"] is None:
            check(time.monotonic() < deadline, "%s: the peer server never got a close frame"
                  % what)
            time.sleep(0.02)
        return self.last(what)["close"]

    def stop(self):
        if self.loop and self._stop and not self._stop.done():
            self.loop.call_soon_threadsafe(self._stop.set_result, None)


def _describe(v):
    """A short form of a websockets.serve argument: TLS for an SSL context,
    a factory's class and its set attributes."""
    if isinstance(v, (list, tuple)):
        return "[%s]" % ", ".join(_describe(x) for x in v)
    if type(v).__name__ == "SSLContext":
        return "TLS"
    if hasattr(v, "__dict__"):
        return "%s(%s)" % (type(v).__name__, ", ".join(
            "%s=%r" % kv for kv in sorted(vars(v).items()) if kv[1] not in (None, False)))
    return repr(v)


WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class RawUpgradeServer:
    """A hand-written server that answers every upgrade request with a valid
    101 (right Sec-WebSocket-Accept) plus the given header lines, e.g. an
    extension or subprotocol the client did not offer. Each request is
    recorded in .requests: head (the request, as text), after (the bytes
    the client sent after the 101, until it ended TCP or 10 s passed), eof
    (whether it ended TCP) and done (set once the server closed its end)."""

    def __init__(self, header_lines, send_after=b"", reply=None, then=None):
        """send_after: bytes (frames) sent right behind the 101. reply: bytes
        sent instead of the 101 (b"": never answer). then(sock, record):
        what to do after the answer instead of record_until_eof; the socket
        is closed when it returns."""
        self.header_lines = list(header_lines)
        self.send_after = send_after
        self.reply = reply
        self.then = then or record_until_eof
        self.requests = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.sock.close()

    def url(self, path="/"):
        return "ws://127.0.0.1:%d%s" % (self.port, path)

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        rec = {"head": "", "after": b"", "eof": False, "done": threading.Event()}
        self.requests.append(rec)
        c.settimeout(10)
        buf = b""
        try:
            while b"\r\n\r\n" not in buf:
                chunk = c.recv(65536)
                if not chunk:
                    return
                buf += chunk
            head, _, rest = buf.partition(b"\r\n\r\n")
            rec["head"] = head.decode("latin-1")
            key = re.search(r"(?im)^sec-websocket-key:\s*(\S+)", rec["head"])
            accept = base64.b64encode(hashlib.sha1(
                (key.group(1) if key else "").encode() + WS_GUID).digest()).decode()
            if self.reply is None:
                c.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                           "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n%s\r\n"
                           % (accept, "".join(h + "\r\n" for h in self.header_lines))
                           ).encode() + self.send_after)
            else:
                c.sendall(self.reply)
            rec["after"] = rest
            self.then(c, rec)
        except OSError:
            pass
        finally:
            c.close()
            rec["done"].set()

    def wait_done(self, what, timeout=10.0):
        """The record of the last connection, once the server closed it."""
        deadline = time.monotonic() + timeout
        while not self.requests:
            check(time.monotonic() < deadline, "%s: the raw server saw no connection" % what)
            time.sleep(0.02)
        check(self.requests[-1]["done"].wait(max(0, deadline - time.monotonic())),
              "%s: the raw server's connection did not end within %.0f s" % (what, timeout))
        return self.requests[-1]

    def request_header(self, name, i=-1):
        """A header of request i (the last by default), None when absent."""
        m = re.search(r"(?im)^%s:\s*(.*?)\s*$" % re.escape(name), self.requests[i]["head"])
        return m.group(1) if m else None


def record_until_eof(c, rec, stop=None):
    """Appends what the peer sends on socket c to rec["after"] until it ends
    TCP (then rec["eof"] is True) or stop(rec["after"]) is true."""
    while not (stop and stop(rec["after"])):
        chunk = c.recv(65536)
        if not chunk:
            rec["eof"] = True
            return
        rec["after"] += chunk


def parse_frames(data):
    """Splits bytes into WebSocket frames: ([(fin, opcode, payload, masked,
    header)], the bytes of an unfinished frame at the end). Masked payloads
    come unmasked; header includes the masking key."""
    frames, i = [], 0
    while len(data) - i >= 2:
        b0, b1 = data[i], data[i + 1]
        n, j = b1 & 127, i + 2
        if n >= 126:
            size = 2 if n == 126 else 8
            if len(data) - j < size:
                break
            n = int.from_bytes(data[j:j + size], "big")
            j += size
        key = data[j:j + 4] if b1 & 0x80 else b""
        j += len(key)
        if (b1 & 0x80 and len(key) < 4) or len(data) - j < n:
            break
        payload = data[j:j + n]
        if key:
            payload = bytes(b ^ key[k & 3] for k, b in enumerate(payload))
        frames.append((b0 >> 7, b0 & 15, payload, bool(key), data[i:j]))
        i = j + n
    return frames, data[i:]


class LineProc:
    """A child process whose stdin stays open (for commands) and whose
    output lines (stdout and stderr together) are kept in .lines as (time
    they arrived, text), echoed with a "  | " prefix."""

    def __init__(self, cmd):
        self.cmd = list(cmd)
        say("running: " + " ".join(self.cmd))
        self.t0 = time.monotonic()
        self.proc = track(subprocess.Popen(self.cmd, stdin=subprocess.PIPE,
                                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                           preexec_fn=_die_with_parent))
        self.lines = []
        self.ended = False
        self.cond = threading.Condition()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            say("  | " + line)
            with self.cond:
                self.lines.append((time.monotonic(), line))
                self.cond.notify_all()
        with self.cond:
            self.ended = True
            self.cond.notify_all()

    def text(self):
        return "\n".join(l for _, l in self.lines)

    def send(self, line):
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def wait(self, regex, what, timeout=5.0, after=0):
        """(index, time, match) of the first line from index `after` on that
        matches regex; fails after timeout or when the output ended."""
        r = re.compile(regex)
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for i in range(after, len(self.lines)):
                    m = r.search(self.lines[i][1])
                    if m:
                        return i, self.lines[i][0], m
                left = deadline - time.monotonic()
                if left <= 0 or self.ended:
                    raise CheckFailed("%s: no line /%s/ from %s within %.1f s%s; its output: %s"
                                      % (what, regex, os.path.basename(self.cmd[0]), timeout,
                                         " (it exited)" if self.ended else "",
                                         short(self.text(), 1500)))
                self.cond.wait(left)

    def wait_exit(self, timeout=10.0):
        """Closes stdin and waits; returns the exit status (fails on a
        timeout or a sanitizer report)."""
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise CheckFailed("%s did not exit within %.0f s" % (" ".join(self.cmd), timeout))
        with self.cond:
            self.cond.wait_for(lambda: self.ended, 5)
        check_no_sanitizer_report(self.text(), os.path.basename(self.cmd[0]))
        return rc


def timed(fn, *a, **kw):
    """(fn(*a, **kw), seconds it took)."""
    t0 = time.monotonic()
    r = fn(*a, **kw)
    return r, time.monotonic() - t0
