#!/usr/bin/python3
"""Host names: several addresses, names that do not resolve, slow DNS.

On a stock Debian machine /etc/hosts gives `localhost` two addresses, ::1
first and then 127.0.0.1, and many servers listen on only one of them. The
client must try each address in the resolver's order until one answers.
This suite re-runs itself in a private mount namespace (unshare -m, as
root) with its own /etc/hosts bind-mounted over the real one:

    ::1        localhost dualhost
    127.0.0.1  localhost dualhost

and its own /etc/resolv.conf naming a DNS server this suite runs on
127.53.0.1:53 (UDP): it answers NXDOMAIN to every query except for names
under slow.test, which it never answers (the resolver waits 10 s). So
every child sees those files, whatever the machine's own say. Then:
- `duplex connect ws://localhost:P` reaches a `duplex serve` and a Python
  websockets server that listen on 127.0.0.1 only (::1 refuses first), and
  a `duplex serve --host ::1` (the first address answers);
- wss://localhost:P with the CA verified, after ::1 refused (the TLS state
  must survive the change of socket);
- ::1 black-holed (a listener whose backlog is full drops further SYNs),
  127.0.0.1 serving: the ::1 attempt is abandoned after its share of the
  10 s handshake timeout (5 s of it) and 127.0.0.1 answers;
- nothing listening on either address: close 1006, why transport error,
  the reason names the last address (127.0.0.1, so ::1 came first) and
  says 2 addresses were tried;
- a name that does not resolve: `duplex connect` and `duplex serve --host`
  fail with the resolver's reason ("cannot resolve NAME: ..."), not an
  errno text such as "Invalid argument";
- a name whose DNS server never answers: the client's loop keeps running
  (names are resolved off the loop's thread): SIGINT to `duplex connect`
  ends the attempt at once ("connection attempt aborted", why closed
  locally) instead of after the resolver's 10 s.

  /usr/bin/python3 tests/interop/test_addresses.py --duplex build/duplex
"""
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from interop_common import (CheckFailed, DuplexServer, WsPeer, base_args, check,  # noqa: E402
                            expect_eq, make_certs, need_websockets, run_connect, run_main, say,
                            step)

HOSTS = "::1 localhost dualhost\n127.0.0.1 localhost dualhost\n"
DNS_ADDR = "127.53.0.1"
RESOLV = "nameserver %s\noptions timeout:10 attempts:1\n" % DNS_ADDR
NS_FLAG = "DX_TEST_HOSTS_NS"


def enter_namespace():
    """Re-executes this script in a mount namespace whose /etc/hosts is
    HOSTS. Returns only inside it."""
    if os.environ.get(NS_FLAG):
        for path, want in (("/etc/hosts", HOSTS), ("/etc/resolv.conf", RESOLV)):
            with open(path) as f:
                if f.read() != want:
                    print("FAIL: %s was not replaced inside the namespace" % path, flush=True)
                    sys.exit(1)
        return
    unshare, mount = shutil.which("unshare"), shutil.which("mount")
    if not unshare or not mount or os.geteuid() != 0:
        print("FAIL: this suite needs root and unshare(1)/mount(8) (util-linux) to give "
              "its children their own /etc/hosts", flush=True)
        sys.exit(1)
    d = tempfile.mkdtemp(prefix="duplex-hosts-")
    hosts, resolv = os.path.join(d, "hosts"), os.path.join(d, "resolv.conf")
    with open(hosts, "w") as f:
        f.write(HOSTS)
    with open(resolv, "w") as f:
        f.write(RESOLV)
    inner = ("mount --bind \"$0\" /etc/hosts && mount --bind \"$1\" /etc/resolv.conf && "
             "shift && exec \"$@\"")
    env = dict(os.environ, **{NS_FLAG: "1"})
    r = subprocess.run([unshare, "-m", "sh", "-c", inner, hosts, resolv, sys.executable]
                       + sys.argv, env=env)
    shutil.rmtree(d, ignore_errors=True)
    sys.exit(r.returncode)


def echo_ok(args, url, what, extra=()):
    res = run_connect(args.duplex, url, ["hello " + what], stdin_delay=0.3, extra=extra)
    expect_eq(res.lines(), ["hello " + what], what + ": echoed lines")
    check(res.close is not None and res.close[0] == 1000,
          "%s: expected a clean close 1000, got %r" % (what, res.close))
    expect_eq(res.rc, 0, what + ": exit status")


def free_port():
    """A port nothing listens on, on either loopback address."""
    import socket
    s = socket.socket(socket.AF_INET6)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def qname(packet):
    """The first question's name in a DNS query, lower-case, or None."""
    labels, i = [], 12
    while i < len(packet):
        n = packet[i]
        if n == 0:
            return ".".join(labels).lower(), i + 5  # name, end of the question
        if n & 0xC0:
            return None
        labels.append(packet[i + 1:i + 1 + n].decode("ascii", "replace"))
        i += 1 + n
    return None


def fake_dns():
    """A UDP DNS server on DNS_ADDR:53: NXDOMAIN for everything, silence for
    names under slow.test. Returns the list of names it was asked."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind((DNS_ADDR, 53))
    except OSError as e:
        raise CheckFailed("cannot run the test DNS server on %s:53: %s" % (DNS_ADDR, e))
    asked = []

    def serve():
        while True:
            pkt, peer = s.recvfrom(2048)
            q = qname(pkt)
            if not q:
                continue
            name, end = q
            asked.append(name)
            if name == "slow.test" or name.endswith(".slow.test"):
                continue
            # Same id; QR, opcode 0, RD copied, RA, RCODE 3 (NXDOMAIN); the
            # question echoed, no records.
            flags = bytes([0x80 | (pkt[2] & 0x01), 0x83])
            s.sendto(pkt[:2] + flags + b"\x00\x01\x00\x00\x00\x00\x00\x00" + pkt[12:end],
                     peer)
    threading.Thread(target=serve, daemon=True).start()
    return asked


def main(args):
    asked = fake_dns()
    step("a `duplex serve` on 127.0.0.1 only is reached through localhost (::1 refuses first)")
    with DuplexServer(args.duplex) as srv:
        echo_ok(args, "ws://localhost:%d/" % srv.port, "duplex serve on 127.0.0.1")
        echo_ok(args, "ws://dualhost:%d/" % srv.port, "dualhost")

    step("a Python websockets server on 127.0.0.1 only, through localhost")
    need_websockets()
    with WsPeer() as peer:
        echo_ok(args, "ws://localhost:%d/" % peer.port, "websockets on 127.0.0.1")

    step("a `duplex serve --host ::1`: the first address answers")
    v6 = DuplexServer(args.duplex)
    v6.cmd[v6.cmd.index("127.0.0.1")] = "::1"
    with v6:
        echo_ok(args, "ws://localhost:%d/" % v6.port, "duplex serve on ::1")

    step("a `duplex serve --host dualhost` listens on both of its addresses, one port")
    both = DuplexServer(args.duplex)
    both.cmd[both.cmd.index("127.0.0.1")] = "dualhost"
    with both:
        check(both.port > 0, "no port from %r" % both.stderr_text())
        echo_ok(args, "ws://[::1]:%d/" % both.port, "duplex serve --host dualhost, on ::1")
        echo_ok(args, "ws://127.0.0.1:%d/" % both.port,
                "duplex serve --host dualhost, on 127.0.0.1")

    step("wss://localhost with the CA verified, after ::1 refused")
    certs = make_certs()
    with DuplexServer(args.duplex, tls=certs.server) as tls:
        echo_ok(args, "wss://localhost:%d/" % tls.port, "wss on 127.0.0.1",
                extra=("--ca", certs.ca))

    step("::1 drops our SYN (a full backlog), 127.0.0.1 serves: the first attempt is "
         "abandoned after its share of the handshake timeout")
    with DuplexServer(args.duplex) as srv:
        hole = socket.socket(socket.AF_INET6)
        hole.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        try:
            hole.bind(("::1", srv.port))
        except OSError as e:
            raise CheckFailed("cannot bind [::1]:%d for the black hole: %s" % (srv.port, e))
        hole.listen(0)
        filler = socket.create_connection(("::1", srv.port), timeout=5)  # fills the backlog
        t0 = time.monotonic()
        echo_ok(args, "ws://localhost:%d/" % srv.port, "black-holed ::1")
        took = time.monotonic() - t0
        say("  took %.1f s (the ::1 attempt's share: 5 s)" % took)
        check(took >= 4.5, "the black-holed ::1 attempt was left after %.1f s, before its "
              "5 s share: did it connect?" % took)
        filler.close()
        hole.close()

    step("nothing listens on either address: both are tried, the last is named")
    port = free_port()
    res = run_connect(args.duplex, "ws://localhost:%d/" % port, ["x"])
    res.expect_failed(1006, "transport error", "refused on both addresses",
                      reason_has=("connect to 127.0.0.1:%d" % port, "Connection refused",
                                  "2 addresses tried"))

    step("a name that does not resolve: the resolver's reason, for connect and serve")
    res = run_connect(args.duplex, "ws://no-such-host.invalid:80/", ["x"])
    res.expect_failed(1006, "transport error", "connect to an unknown name",
                      reason_has=("cannot resolve no-such-host.invalid: Name or service not known",))
    check("no-such-host.invalid" in asked,
          "the test DNS server was never asked for no-such-host.invalid (asked: %r)" % asked)
    r = subprocess.run([args.duplex, "serve", "--host", "no-such-host.invalid", "--port", "0"],
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=20)
    err = r.stderr.decode("utf-8", "replace")
    say("  serve said: %s" % err.strip())
    check(r.returncode != 0, "serve --host no-such-host.invalid: exit status 0")
    check("cannot listen on no-such-host.invalid:0: cannot resolve no-such-host.invalid: "
          "Name or service not known" in err,
          "serve --host no-such-host.invalid: expected the resolver's reason, got %r" % err)

    step("a DNS server that never answers does not stall the client's loop")
    cmd = [args.duplex, "connect", "-v", "ws://slow.test:80/"]
    say("running: %s; SIGINT after 0.5 s" % " ".join(cmd))
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    time.sleep(0.5)
    check("slow.test" in asked, "the test DNS server was not asked for slow.test within "
          "0.5 s (asked: %r)" % asked)
    t0 = time.monotonic()
    p.send_signal(signal.SIGINT)
    try:
        out, err = p.communicate(timeout=5)
    except subprocess.TimeoutExpired:
        p.kill()
        raise CheckFailed("duplex connect did not exit within 5 s of SIGINT while its "
                          "resolver waited for DNS (10 s): the loop is blocked")
    took = time.monotonic() - t0
    err = err.decode("utf-8", "replace")
    say("  exit status %d after %.2f s; stderr %r" % (p.returncode, took, err.strip()))
    check('reason="connection attempt aborted" why=closed locally' in err,
          "SIGINT while resolving: expected the attempt aborted and why=closed locally, "
          "got %r" % err)


if __name__ == "__main__":
    a = base_args(__doc__).parse_args()
    enter_namespace()
    run_main(main, a)
