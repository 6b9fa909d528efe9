#!/usr/bin/python3
"""What the `duplex` tool tells its user, checked as a user meets it.

duplex serve:
- one line at start: address, port, ws or wss, threads; one at the end: how
  many connections the drain closed and how many it cut;
- a port another process holds is refused (exit 1, "Address already in
  use"), also when both use several threads; `--reuseport` joins it, and
  the kernel then hands connections to both processes;
- `--host NAME` listens on every address of the name (here 127.0.0.1 and
  the name's other loopback address where it has one).

duplex connect:
- a URL it cannot use is exit 2 with one line that says what to change:
  http:// (with the ws:// spelling), a port out of range, a fragment;
- wss:// to a plain-text server names the likely cause;
- a clean close leaves stderr empty (exit 0); -v shows the close line; an
  abnormal close shows it anyway (exit 1).

The help and the README:
- `duplex version` is `duplex --version`;
- in every `--help`, option texts start in one column and no line passes
  79 columns;
- the README's synopsis names exactly the options `--help` lists, for
  every command.

  /usr/bin/python3 tests/interop/test_cli.py --duplex build/duplex
"""
import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from interop_common import (CheckFailed, DuplexServer, base_args, check, expect_eq,  # noqa: E402
                            need_websockets, run_connect, run_main, say, step, track,
                            _die_with_parent)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
START_RE = re.compile(r"^listening on (\S+):(\d+) \((wss?), (\d+) threads?(, port shared)?\)$")
STOP_RE = re.compile(r"^stopped: (\d+) connections? drained(?:, (\d+) cut)? \(of (\d+) open\)$")


def run(cmd, timeout=10, stdin=b""):
    say("running: " + " ".join(cmd))
    p = subprocess.run(cmd, input=stdin, capture_output=True, timeout=timeout,
                       preexec_fn=_die_with_parent)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def server(args, extra, host="127.0.0.1"):
    srv = DuplexServer(args.duplex, extra=list(extra))
    srv.cmd[srv.cmd.index("127.0.0.1")] = host
    return srv


def start_line(srv):
    m = START_RE.match(srv.stderr_lines[0]) if srv.stderr_lines else None
    check(m, "the first line of duplex serve: expected 'listening on HOST:PORT (ws, N "
          "threads)', got %r" % srv.stderr_lines[:1])
    return m


def stop_line(srv):
    rc = srv.stop(require_clean=True)
    expect_eq(rc, 0, "duplex serve's exit status after SIGTERM")
    last = srv.stderr_lines[-1] if srv.stderr_lines else ""
    m = STOP_RE.match(last)
    check(m, "the last line of duplex serve: expected 'stopped: N connections drained "
          "[, M cut] (of K open)', got %r" % last)
    return int(m.group(1)), int(m.group(2) or 0), int(m.group(3))


def t_start_stop(args, websockets):
    step("serve: the start line names address, port, ws, threads")
    with server(args, ["--threads", "2", "--quiet"]) as srv:
        m = start_line(srv)
        expect_eq((m.group(1), int(m.group(2)), m.group(3), m.group(4)),
                  ("127.0.0.1", srv.port, "ws", "2"), "start line fields")
        check(m.group(5) is None, "a server without --reuseport says 'port shared'")

        step("serve: SIGTERM with 3 open connections: all 3 drained (1001), said at the end")

        async def three():
            conns = [await websockets.connect(srv.url("/")) for _ in range(3)]
            srv.proc.send_signal(signal.SIGTERM)
            codes = []
            for ws in conns:
                await asyncio.wait_for(ws.wait_closed(), 10)
                codes.append(ws.close_code)
            return codes
        codes = asyncio.run(three())
        expect_eq(codes, [1001, 1001, 1001], "close codes the clients saw")
        expect_eq(stop_line(srv), (3, 0, 3), "(drained, cut, open) in the stop line")

    step("serve: a client that never answers the close is cut at the drain deadline")
    with server(args, ["--threads", "1", "--drain-timeout", "0.5", "--quiet"]) as srv:
        async def one_silent():
            good = await websockets.connect(srv.url("/"))
            silent = socket.create_connection(("127.0.0.1", srv.port))
            silent.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                           b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
            silent.settimeout(5)
            check(silent.recv(4096).startswith(b"HTTP/1.1 101"), "no 101 for the silent client")
            # From now on it reads nothing and answers nothing.
            srv.proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(good.wait_closed(), 10)
            return good.close_code, silent
        code, silent = asyncio.run(one_silent())
        expect_eq(code, 1001, "close code the answering client saw")
        expect_eq(stop_line(srv), (1, 1, 2), "(drained, cut, open) with one silent client")
        silent.close()

    step("serve --tls-cert: the start line says wss")
    from interop_common import make_certs
    certs = make_certs()
    with DuplexServer(args.duplex, extra=["--threads", "1"], tls=certs.server) as srv:
        m = start_line(srv)
        expect_eq((m.group(3), m.group(4)), ("wss", "1"), "scheme and threads in the start line")


def t_port_in_use(args):
    for threads in ("1", "2"):
        step("serve: a second duplex serve (--threads %s) on a port in use exits 1, "
             "'Address already in use'" % threads)
        with server(args, ["--threads", "2", "--quiet"]) as first:
            rc, _, err = run([args.duplex, "serve", "--host", "127.0.0.1", "--port",
                              str(first.port), "--threads", threads])
            expect_eq(rc, 1, "exit status of the second server")
            lines = err.strip().splitlines()
            expect_eq(len(lines), 1, "lines on the second server's stderr (%r)" % err)
            check("Address already in use" in lines[0] and str(first.port) in lines[0],
                  "expected the port and 'Address already in use', got %r" % lines[0])
            first.check_alive("the first server, after the second was refused")

    step("serve --reuseport joins a port another duplex serve holds; connections reach both")
    with server(args, ["--threads", "1"]) as first:
        # The later --port wins over DuplexServer's own --port 0.
        second = server(args, ["--threads", "1", "--reuseport", "--port", str(first.port)])
        with second:
            m = start_line(second)
            expect_eq(int(m.group(2)), first.port, "the second server's port")
            check(m.group(5) == ", port shared", "expected 'port shared' in %r"
                  % second.stderr_lines[0])
            for _ in range(40):
                s = socket.create_connection(("127.0.0.1", first.port))
                s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                          b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                          b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
                check(s.recv(4096).startswith(b"HTTP/1.1 101"), "no 101 from the shared port")
                s.close()
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and (first.log_count("open: ") +
                                                   second.log_count("open: ")) < 40:
                time.sleep(0.05)
            a, b = first.log_count("open: "), second.log_count("open: ")
            say("  the first server opened %d, the second %d" % (a, b))
            expect_eq(a + b, 40, "connections opened by the two servers together")
            check(a > 0 and b > 0, "the kernel gave all 40 connections to one server "
                  "(%d and %d): is the port really shared?" % (a, b))


def t_host_name(args):
    step("serve --host localhost listens on every address localhost has, one port")
    addrs = sorted({ai[4][0] for ai in socket.getaddrinfo("localhost", 1, 0,
                                                        socket.SOCK_STREAM)})
    say("  localhost is %s here" % ", ".join(addrs))
    with server(args, ["--threads", "1", "--quiet"], host="localhost") as srv:
        m = start_line(srv)
        expect_eq(m.group(1), "localhost", "host in the start line")
        for a in addrs:
            fam = socket.AF_INET6 if ":" in a else socket.AF_INET
            s = socket.socket(fam)
            s.settimeout(5)
            try:
                s.connect((a, srv.port))
            except OSError as e:
                raise CheckFailed("connect to %s port %d (an address of localhost): %s"
                                  % (a, srv.port, e))
            s.close()


def t_connect_messages(args):
    step("connect: URL mistakes are exit 2 with one line that says what to change")
    cases = [
        ("http://x", "try ws://x"),
        ("https://example.com/chat", "try wss://example.com/chat"),
        ("ws://x:99999/", "port 99999 is out of range (1-65535)"),
        ("ws://x:0/", "out of range"),
        ("ftp://x/", "not ftp://"),
        ("ws://x/#frag", "no fragment"),
        ("ws:///path", "no host"),
    ]
    for url, want in cases:
        rc, out, err = run([args.duplex, "connect", url])
        expect_eq(rc, 2, "exit status for %s" % url)
        lines = err.strip().splitlines()
        expect_eq(len(lines), 1, "stderr lines for %s (%r)" % (url, err))
        check(lines[0].startswith("duplex connect: invalid URL '%s': " % url) and want in lines[0],
              "for %s expected 'invalid URL' and %r, got %r" % (url, want, lines[0]))

    with server(args, ["--threads", "1", "--quiet"]) as plain:
        step("connect: wss:// to a plain-text server names the likely cause")
        res = run_connect(args.duplex, "wss://127.0.0.1:%d/" % plain.port, ["x"])
        res.expect_failed(1015, "transport error", "wss:// to ws://",
                          reason_has=("wrong version number", "is the server speaking TLS?"))

        step("connect: a clean close leaves stderr empty and exits 0")
        rc, out, err = run([args.duplex, "connect", "ws://127.0.0.1:%d/" % plain.port],
                           stdin=b"hello\n")
        expect_eq((rc, out, err), (0, "hello\n", ""), "(status, stdout, stderr)")

        step("connect -v: the close line on a clean close too")
        rc, out, err = run([args.duplex, "connect", "-v", "ws://127.0.0.1:%d/" % plain.port],
                           stdin=b"hello\n")
        expect_eq(rc, 0, "exit status with -v")
        expect_eq(err.strip(), 'closed: code=1000 reason="" why=closed locally', "stderr with -v")

    step("connect: an abnormal end prints the close line without -v, exit 1")
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    rc, out, err = run([args.duplex, "connect", "ws://127.0.0.1:%d/" % port])
    expect_eq(rc, 1, "exit status for a refused connection")
    check(re.search(r'^closed: code=1006 reason=".*Connection refused.*" why=transport error$',
                    err, re.M), "expected a close line naming 'Connection refused', got %r" % err)


def help_of(args, cmd):
    rc, out, err = run([args.duplex, cmd, "--help"])
    expect_eq(rc, 0, "exit status of duplex %s --help" % cmd)
    return out


def commands(args):
    rc, out, _ = run([args.duplex, "--help"])
    expect_eq(rc, 0, "exit status of duplex --help")
    names = re.findall(r"^  ([a-z]+)\s{2,}", out.split("commands:")[1].split("options:")[0],
                       re.M)
    check("serve" in names and "connect" in names, "commands in --help: %r" % names)
    return [n for n in names if n not in ("help", "version")]


def help_options(text):
    """{name} of every option line in a --help text: '  -v, --name ...' or '      --name'."""
    opts = set()
    for line in text.split("options:\n", 1)[1].split("\n\n", 1)[0].splitlines():
        m = re.match(r"^  (?:-\w, |    )?--([a-z][a-z-]*)", line)
        if m:
            opts.add(m.group(1))
    return opts


def t_help(args):
    step("`duplex version` prints what `duplex --version` prints")
    rc1, v1, _ = run([args.duplex, "version"])
    rc2, v2, _ = run([args.duplex, "--version"])
    expect_eq((rc1, v1), (0, v2), "duplex version vs --version")
    check(re.match(r"^duplex \d+\.\d+\.\d+\n$", v1), "version line: %r" % v1)

    for cmd in commands(args):
        step("duplex %s --help: texts in one column, no line past 79 columns" % cmd)
        text = help_of(args, cmd)
        for line in text.splitlines():
            check(len(line) <= 79, "%s --help: a line of %d columns: %r" % (cmd, len(line), line))
        body = text.split("options:\n", 1)[1].split("\n\n", 1)[0].splitlines()
        cols = set()
        for line in body:
            m = re.match(r"^(  (?:-\w, |    )?--[a-z-]+(?: \S+)?|  -h, --help)( +)(\S)", line)
            if m:
                cols.add(len(m.group(1)) + len(m.group(2)))
            elif line.strip():
                # A continuation, or a label too long to share its line.
                check(line.startswith(" " * 8), "%s --help: unexpected line %r" % (cmd, line))
        expect_eq(len(cols), 1, "%s --help: columns where option texts start (%r)"
                  % (cmd, sorted(cols)))


def readme_synopsis():
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    m = re.search(r"<!-- synopsis:.*?-->\s*```\n(.*?)```", text, re.S)
    check(m, "README.md: no synopsis block after a '<!-- synopsis:' comment")
    per = {}
    cur = None
    for line in m.group(1).splitlines():
        m2 = re.match(r"^duplex ([a-z]+)", line)
        if m2:
            cur = m2.group(1)
        if cur:
            per.setdefault(cur, set()).update(re.findall(r"--([a-z][a-z-]*)", line))
    return per


def t_readme(args):
    syn = readme_synopsis()
    for cmd in commands(args):
        step("README's synopsis of `duplex %s` names exactly the options of its --help" % cmd)
        check(cmd in syn, "README.md's synopsis has no `duplex %s` line" % cmd)
        in_help = help_options(help_of(args, cmd)) - {"help"}
        in_readme = syn[cmd] - {"help"}
        missing = sorted(in_help - in_readme)
        extra = sorted(in_readme - in_help)
        check(not missing and not extra,
              "duplex %s: options in --help but not in the README: %s; in the README but "
              "not in --help: %s" % (cmd, missing or "none", extra or "none"))


def main(args):
    websockets = need_websockets()
    t_help(args)
    t_connect_messages(args)
    t_port_in_use(args)
    t_host_name(args)
    t_start_stop(args, websockets)
    t_readme(args)


if __name__ == "__main__":
    run_main(main, base_args(__doc__).parse_args())
