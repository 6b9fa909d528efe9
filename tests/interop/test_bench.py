#!/usr/bin/python3
"""duplex bench against real servers.

`duplex bench` (the load generator, src/cli/bench*.c) is pointed at
`duplex serve --port 0` and at a python3-websockets echo server started
here, in its three modes (echo, handshake, idle), with and without
permessage-deflate, and its --json result is checked: mode and parameters
as asked, counts above zero, every message sent echoed (or the lost and
unanswered counts saying why not), no errors, p50 <= p99. Idle mode with
--server-pid reports bytes per connection; without it says the memory is
unknown. wss:// with the test CA, a certificate nobody trusts, --insecure.
Failures: a port nobody listens on (exit 1, "connection refused"),
an HTTP server answering 404 (exit 1, the status named), a server that
declines compression, bad options (exit 2). The progress line: under a
pseudo-terminal a line rewritten with \\r each second (msg/s, p50, p99,
errors); through a pipe, nothing at all on stderr.

Durations are 1-2 s and connections few; nothing here asserts a rate or a
latency, only that they were measured.

  /usr/bin/python3 tests/interop/test_bench.py --duplex build/duplex
"""
import functools
import http.server
import json
import os
import pty
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from interop_common import (CheckFailed, DuplexServer, WsPeer, _die_with_parent,  # noqa: E402
                            base_args, check, check_no_sanitizer_report, expect_eq,
                            make_certs, need_websockets, run_main, say, short, step, track)

websockets = need_websockets()

RUN_TIMEOUT = 60.0


class Bench:
    """The result of one `duplex bench` run."""

    def __init__(self, rc, stdout, stderr):
        self.rc = rc
        self.stdout = stdout
        self.stderr = stderr

    def json(self, what):
        check(self.stdout.strip(), "%s: no JSON on stdout (exit %s, stderr %r)"
              % (what, self.rc, self.stderr))
        try:
            return json.loads(self.stdout)
        except ValueError as e:
            raise CheckFailed("%s: stdout is not one JSON object (%s): %s"
                              % (what, e, short(self.stdout, 400)))


def bench(duplex, url, *opts, timeout=RUN_TIMEOUT):
    cmd = [duplex, "bench", url] + [str(o) for o in opts]
    say("running: " + " ".join(cmd))
    try:
        done = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=timeout, preexec_fn=_die_with_parent)
    except subprocess.TimeoutExpired as e:  # run() has killed it
        raise CheckFailed("duplex bench did not exit within %.0f s; stderr %r"
                          % (timeout, (e.stderr or b"").decode("utf-8", "replace")))
    res = Bench(done.returncode, done.stdout.decode("utf-8", "replace"),
                done.stderr.decode("utf-8", "replace"))
    check_no_sanitizer_report(res.stderr, "duplex bench")
    for line in res.stdout.splitlines():
        say("  | " + line)
    for line in res.stderr.splitlines():
        say("  ! " + line)
    return res


def ok_run(duplex, what, url, *opts):
    """A run that must succeed: exit 0, stderr empty (no progress line
    without a terminal), the JSON result with no errors."""
    res = bench(duplex, url, "--json", *opts)
    expect_eq(res.rc, 0, what + ": exit status (stderr %r)" % res.stderr)
    expect_eq(res.stderr, "", what + ": stderr (no progress line when it is not a terminal)")
    j = res.json(what)
    expect_eq(j["url"], url, what + ": url")
    expect_eq(j["errors"], 0, what + ": errors (kinds: %r)" % (j.get("error_kinds"),))
    expect_eq(j["error_kinds"], {}, what + ": error kinds")
    return j


def check_latency(j, what, samples_key):
    lat = j["latency_us"]
    check(lat["samples"] > 0, "%s: no latency samples: %r" % (what, lat))
    check(0 < lat["p50"] <= lat["p99"] <= lat["max"],
          "%s: expected 0 < p50 <= p99 <= max, got %r" % (what, lat))
    if samples_key:
        expect_eq(lat["samples"], j[samples_key], what + ": one latency sample per " + samples_key)


def check_echo(duplex, what, url, conns, inflight, size, *extra):
    binary = "--binary" in extra
    deflate = "--deflate" in extra
    step("%s: echo, %d connections x %d in flight, %d-byte %s messages%s" % (
        what, conns, inflight, size, "binary" if binary else "text",
        ", permessage-deflate" if deflate else ""))
    j = ok_run(duplex, what, url, "--connections", conns, "--inflight", inflight, "--size", size,
               "--duration", 1, *extra)
    expect_eq(j["mode"], "echo", what + ": mode")
    p = j["parameters"]
    expect_eq((p["connections"], p["inflight"], p["size"], p["binary"], p["deflate"]),
              (conns, inflight, size, binary, deflate), what + ": parameters")
    expect_eq(p["duration_s"], 1.0, what + ": duration parameter")
    expect_eq(j["connections_opened"], conns, what + ": connections opened")
    check(j["messages"] > 0 and j["messages_per_s"] > 0,
          "%s: no messages measured: %r" % (what, j))
    check(j["seconds"] > 0.9, "%s: measured only %.2f s" % (what, j["seconds"]))
    # Every message sent came back (identical: the bench compares each
    # byte and would have counted an error), or the counts say where the
    # others went.
    expect_eq(j["sent"], j["echoed"] + j["lost"] + j["unanswered"],
              what + ": sent == echoed + lost + unanswered")
    expect_eq((j["lost"], j["unanswered"]), (0, 0), what + ": lost and unanswered messages")
    check(j["echoed"] >= j["messages"], "%s: fewer echoes (%d) than measured (%d)"
          % (what, j["echoed"], j["messages"]))
    check_latency(j, what, "messages")
    if deflate:
        check(0 < j["tx_ratio"] < 1 and 0 < j["rx_ratio"] < 1,
              "%s: compression did not shrink the messages: tx %.3f rx %.3f"
              % (what, j["tx_ratio"], j["rx_ratio"]))
    return j


def check_handshake(duplex, what, url, conns, *extra):
    step("%s: handshake mode, %d cycles at a time" % (what, conns))
    j = ok_run(duplex, what, url, "--mode", "handshake", "--connections", conns, "--duration", 1,
               *extra)
    expect_eq(j["mode"], "handshake", what + ": mode")
    expect_eq(j["parameters"]["connections"], conns, what + ": connections parameter")
    check(j["handshakes"] > 0 and j["handshakes_per_s"] > 0,
          "%s: no handshake completed: %r" % (what, j))
    check_latency(j, what, "handshakes")
    return j


# ------------------------------------------------------------ duplex serve

def t_duplex_serve(duplex, server):
    url = server.url("/")
    check_echo(duplex, "duplex serve", url, 4, 8, 100)
    check_echo(duplex, "duplex serve", url, 3, 2, 3000, "--binary")
    check_echo(duplex, "duplex serve", url, 2, 4, 2000, "--deflate")
    check_echo(duplex, "duplex serve", url, 2, 2, 5000, "--deflate", "--binary")
    check_handshake(duplex, "duplex serve", url, 4)

    step("duplex serve: idle, 50 connections held 1 s, memory from --server-pid")
    j = ok_run(duplex, "idle", url, "--mode", "idle", "--connections", 50, "--duration", 1,
               "--server-pid", server.proc.pid)
    expect_eq(j["mode"], "idle", "idle: mode")
    expect_eq(j["parameters"]["connections"], 50, "idle: connections parameter")
    expect_eq(j["parameters"]["server_pid"], server.proc.pid, "idle: server_pid parameter")
    expect_eq((j["connections_opened"], j["connections_held"]), (50, 50),
              "idle: connections opened and held")
    check(isinstance(j["server_bytes_per_connection"], (int, float)),
          "idle: no per-connection memory figure: %r" % (j,))
    rss = j["server_rss_kib"]
    check(rss["before"] > 0 and rss["after"] > 0, "idle: RSS figures: %r" % (rss,))
    check_latency(j, "idle", None)

    step("duplex serve: idle without --server-pid says the memory is unknown")
    j = ok_run(duplex, "idle, no pid", url, "--mode", "idle", "--connections", 10,
               "--duration", 1)
    expect_eq((j["connections_held"], j["server_bytes_per_connection"], j["server_rss_kib"]),
              (10, None, None), "idle, no pid: held, memory")
    check("unknown" in j.get("memory", ""), "idle, no pid: no word that the memory is "
          "unknown: %r" % (j,))

    step("duplex serve: the table (no --json) names the mode, the rate and the errors")
    res = bench(duplex, url, "--connections", 2, "--duration", 1)
    expect_eq((res.rc, res.stderr), (0, ""), "table run: exit status and stderr")
    rows = dict(line.split(None, 1) for line in res.stdout.splitlines() if line.strip())
    expect_eq(rows.get("mode"), "echo", "table: mode row")
    expect_eq(rows.get("url"), url, "table: url row")
    check("msg/s" in rows.get("echoes", ""), "table: no msg/s in the echoes row: %r" % rows)
    expect_eq(rows.get("errors"), "0", "table: errors row")
    server.check_alive("the bench runs")


# ------------------------------------------------------- python websockets

class KickPeer(WsPeer):
    """Echoes the first message, then closes with 4001."""

    async def _handler(self, ws, path=None):
        from websockets.exceptions import ConnectionClosed
        try:
            await ws.send(await ws.recv())
            await ws.close(4001, "kicked")
        except ConnectionClosed:
            pass


class SilentPeer(WsPeer):
    """Reads every message and answers none."""

    async def _handler(self, ws, path=None):
        from websockets.exceptions import ConnectionClosed
        try:
            async for _ in ws:
                pass
        except ConnectionClosed:
            pass


def t_python_server(duplex):
    with WsPeer() as peer:  # compression="deflate" is websockets' default
        url = peer.url("/")
        check_echo(duplex, "python websockets", url, 3, 4, 200)
        check_echo(duplex, "python websockets", url, 2, 2, 4000, "--binary")
        n = len(peer.conns)
        j = check_echo(duplex, "python websockets", url, 2, 2, 2000, "--deflate")
        rec = peer.conns[n]
        check("permessage-deflate" in rec["request"].get("Sec-WebSocket-Extensions", ""),
              "python websockets: the bench did not offer permessage-deflate: %r"
              % (rec["request"],))
        check("permessage-deflate" in rec["response"].get("Sec-WebSocket-Extensions", ""),
              "python websockets: the server did not accept permessage-deflate")
        check_handshake(duplex, "python websockets", url, 3)
        closes = [c["close"] for c in peer.conns if c["close"] is not None]
        check(closes and all(c[0] == 1000 for c in closes),
              "python websockets: the bench should close with 1000: %r" % (closes[:5],))

    step("a server that echoes one message, then closes with 4001: the errors are named, "
         "the messages lost with the connections counted")
    with KickPeer() as peer:
        res = bench(duplex, peer.url("/"), "--json", "--connections", 2, "--inflight", 4,
                    "--duration", 1)
        expect_eq(res.rc, 0, "kicked: exit status (some echoes came back)")
        j = res.json("kicked")
        kinds = j["error_kinds"]
        check(j["errors"] > 0 and kinds.get("closed by server with code 4001") == j["errors"],
              "kicked: expected every error to be 'closed by server with code 4001': %r" % kinds)
        check(j["echoed"] > 0 and j["lost"] > 0, "kicked: expected echoes and lost messages: %r"
              % (j,))
        expect_eq(j["sent"], j["echoed"] + j["lost"] + j["unanswered"],
                  "kicked: sent == echoed + lost + unanswered")

    step("a server that never echoes: echo timeouts, and nothing worked (exit 1)")
    with SilentPeer() as peer:
        res = bench(duplex, peer.url("/"), "--connections", 2, "--duration", 1,
                    "--timeout", 0.4)
        expect_failure(res, "silent", 1, "no echo came back", "echo timeout")

    step("python websockets without compression: --deflate fails, naming why")
    with WsPeer(compression=None) as peer:
        res = bench(duplex, peer.url("/"), "--deflate", "--connections", 2, "--duration", 1)
        expect_failure(res, "declined compression", 1, "declined permessage-deflate")


# --------------------------------------------------------------------- TLS

def t_tls(duplex):
    certs = make_certs()
    with DuplexServer(duplex, extra=["--quiet"], tls=certs.server) as server:
        url = server.url("/")  # wss://localhost:P/
        j = check_echo(duplex, "wss", url, 2, 2, 300, "--ca", certs.ca)
        check(j.get("tls", "").startswith("TLSv1."), "wss: no TLS version in %r" % (j,))
        check_handshake(duplex, "wss", url, 2, "--ca", certs.ca)
        step("wss: a certificate nobody trusts fails, naming the certificate; --insecure "
             "does not check it")
        res = bench(duplex, url, "--connections", 2, "--duration", 1)
        expect_failure(res, "untrusted certificate", 1, "certificate")
        ok_run(duplex, "--insecure", url, "--connections", 2, "--duration", 1, "--insecure")


# ---------------------------------------------------------------- failures

def expect_failure(res, what, rc, *words):
    """Exit rc, nothing on stdout, one line on stderr holding every word."""
    expect_eq(res.rc, rc, what + ": exit status (stderr %r)" % res.stderr)
    expect_eq(res.stdout, "", what + ": stdout")
    lines = res.stderr.splitlines()
    expect_eq(len(lines), 1, what + ": lines on stderr (%r)" % res.stderr)
    check(lines[0].startswith("duplex bench: "), "%s: the line should start with "
          "'duplex bench: ': %r" % (what, lines[0]))
    for w in words:
        check(w in lines[0], "%s: expected %r in %r" % (what, w, lines[0]))


class NotFoundServer:
    """python's http.server on 127.0.0.1, serving an empty folder: every
    upgrade request gets 404."""

    def __enter__(self):
        self.dir = tempfile.mkdtemp()

        class Quiet(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *args):
                pass
        handler = functools.partial(Quiet, directory=self.dir)
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        os.rmdir(self.dir)


def t_failures(duplex):
    # A socket bound but not listening: connecting to it is refused, and no
    # one else can take the port meanwhile.
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    try:
        for mode in ("echo", "handshake", "idle"):
            step("%s mode against a port nobody listens on: exit 1, 'connection refused'" % mode)
            res = bench(duplex, "ws://127.0.0.1:%d/" % port, "--mode", mode,
                        "--connections", 3, "--duration", 1)
            expect_failure(res, "refused (%s)" % mode, 1, "connection refused")
    finally:
        s.close()

    with NotFoundServer() as httpd:
        for mode in ("echo", "handshake"):
            step("%s mode against an HTTP server answering 404: exit 1, the status named" % mode)
            res = bench(duplex, "ws://127.0.0.1:%d/nothing" % httpd.port, "--mode", mode,
                        "--connections", 2, "--duration", 1)
            expect_failure(res, "404 (%s)" % mode, 1, "404")

    for opts, words in ((["--connections", "0"], ["--connections"]),
                        (["--mode", "storm"], ["--mode", "storm"]),
                        (["--frobnicate"], ["--frobnicate"]),
                        (["--size", "12Q"], ["--size"]),
                        (["--mode", "idle", "--inflight", "4"], ["--inflight"]),
                        (["--duration", "soon"], ["--duration"])):
        step("bad option %s: exit 2 with a one-line reason" % " ".join(opts))
        res = bench(duplex, "ws://127.0.0.1:9/", *opts)
        expect_failure(res, " ".join(opts), 2, *words)
    step("a URL that is not ws:// or wss://: exit 2")
    res = bench(duplex, "http://127.0.0.1:9/")
    expect_failure(res, "http URL", 2, "ws://")


# ---------------------------------------------------------------- progress

def run_on_pty(cmd, timeout=RUN_TIMEOUT):
    """Runs cmd with stderr on a pseudo-terminal (stdout a pipe); returns
    (exit status, what the terminal showed, stdout)."""
    master, slave = pty.openpty()
    say("running (stderr on a pty): " + " ".join(cmd))
    proc = track(subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=slave, preexec_fn=_die_with_parent))
    os.close(slave)
    shown = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r, _, _ = select.select([master], [], [], 0.2)
        if r:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the child closed its side
                break
            if not chunk:
                break
            shown += chunk
        elif proc.poll() is not None:
            break
    os.close(master)
    out = proc.stdout.read().decode("utf-8", "replace")
    try:
        rc = proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise CheckFailed("duplex bench on a pty did not exit")
    return rc, shown.decode("utf-8", "replace"), out


def t_progress(duplex, server):
    url = server.url("/")
    cases = (("echo", ["--connections", "2", "--inflight", "2"], "msg/s"),
             ("handshake", ["--mode", "handshake", "--connections", "2"], "handshakes/s"))
    for mode, opts, rate in cases:
        step("%s on a terminal: one line rewritten in place each second (%s, p50, p99, "
             "errors)" % (mode, rate))
        rc, shown, out = run_on_pty([duplex, "bench", url, "--duration", "2.5"] + opts)
        say("  terminal showed: %r" % shown)
        expect_eq(rc, 0, "%s on a pty: exit status" % mode)
        check_no_sanitizer_report(shown, "duplex bench")
        updates = [u for u in shown.split("\r") if rate in u]
        check(len(updates) >= 2, "%s on a pty: expected at least 2 progress updates with %r, "
              "each after a \\r; the terminal showed %r" % (mode, rate, shown))
        for u in updates:
            for word in ("p50", "p99", "errors 0"):
                check(word in u, "%s on a pty: %r missing from the progress line %r"
                      % (mode, word, u))
            check("\n" not in u, "%s on a pty: the progress line %r holds a newline: it "
                  "should be rewritten in place" % (mode, u))
        check("\n" not in shown, "%s on a pty: a progress line was ended with a newline; "
              "the terminal showed %r" % (mode, shown))
        check(out.startswith("mode") and rate in out,
              "%s on a pty: the table should still go to stdout: %r" % (mode, out))

    step("--quiet on a terminal: no progress line")
    rc, shown, out = run_on_pty([duplex, "bench", url, "--duration", "1.2", "--quiet",
                                 "--connections", "2"])
    expect_eq((rc, shown), (0, ""), "--quiet on a pty: exit status and what the terminal showed")


def main(args):
    say("websockets %s" % websockets.__version__)
    with DuplexServer(args.duplex, extra=["--quiet"]) as server:
        t_duplex_serve(args.duplex, server)
        t_progress(args.duplex, server)
        server.check_alive("every bench run")
    t_python_server(args.duplex)
    t_tls(args.duplex)
    t_failures(args.duplex)


PTY_NS_FLAG = "DUPLEX_TEST_BENCH_PTY_NS"


def ensure_pty():
    """The progress check needs a pseudo-terminal. A chroot that bind-mounts
    /dev without its devpts (a fresh debootstrap root, say) has /dev/ptmx
    but no /dev/pts, and openpty fails with "out of pty devices". As root,
    re-run this script in a private mount namespace with a devpts instance
    of its own; anything else is a failure that says what is missing."""
    try:
        m, s = pty.openpty()
        os.close(m)
        os.close(s)
        return
    except OSError as e:
        err = e
    unshare, mount = shutil.which("unshare"), shutil.which("mount")
    if os.environ.get(PTY_NS_FLAG) or os.geteuid() != 0 or not unshare or not mount:
        print("FAIL: cannot open a pseudo-terminal (%s) for the progress-line check: mount "
              "devpts on /dev/pts, or run as root with unshare(1)" % err, flush=True)
        sys.exit(1)
    inner = ("mount -t devpts -o newinstance,ptmxmode=0666 devpts /dev/pts && "
             "mount --bind /dev/pts/ptmx /dev/ptmx && exec \"$@\"")
    env = dict(os.environ, **{PTY_NS_FLAG: "1"})
    r = subprocess.run([unshare, "-m", "sh", "-c", inner, "sh", sys.executable] + sys.argv,
                       env=env)
    sys.exit(r.returncode)


if __name__ == "__main__":
    a = base_args(__doc__).parse_args()
    ensure_pty()
    run_main(main, a)
