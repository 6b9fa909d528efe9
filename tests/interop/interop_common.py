"""Shared harness for the duplex interop suites (Python side).

Runs `duplex serve` / `duplex connect` as child processes, prints every
check as it happens, and turns the first failed check into a non-zero exit
with a clear message. Every suite has a wall-clock watchdog so a hung peer
can never hang CTest: when it fires, the children are killed and the suite
exits with status 2.

Run with Debian's /usr/bin/python3 (it has python3-websockets).
"""
import argparse
import os
import re
import signal
import subprocess
import sys
import threading
import time

_children = []          # every Popen we started, killed by the watchdog
_children_lock = threading.Lock()
_servers = []           # every DuplexServer, for its stderr on failure


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


class DuplexServer:
    """`duplex serve` on 127.0.0.1 with a kernel-chosen port."""

    LISTEN_RE = re.compile(r"listening on (\S+):(\d+)")

    def __init__(self, duplex, extra=(), start_timeout=10.0):
        self.duplex = duplex
        self.cmd = [duplex, "serve", "--host", "127.0.0.1", "--port", "0"] + list(extra)
        self.start_timeout = start_timeout
        self.proc = None
        self.port = None
        self.stderr_lines = []
        self._ready = threading.Event()

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

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

    def url(self, path="/"):
        return "ws://127.0.0.1:%d%s" % (self.port, path)

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
                stdin_delay=0.0):
    """Runs `duplex connect URL`, feeding stdin_lines; returns ConnectResult.

    keep_stdin_open: do not send EOF, so the connection must be ended by the
    peer. stdin_delay: pause before closing stdin (lets echoes come back
    before our close starts, as a person typing would)."""
    cmd = [duplex, "connect", url]
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


def run_client_peer(peer, url, script, timeout=60.0):
    """Runs the C client_peer against url with a script; fails on non-zero."""
    cmd = [peer, url] + list(script)
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
