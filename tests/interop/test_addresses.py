#!/usr/bin/python3
"""Host names with several addresses, and names that do not resolve.

On a stock Debian machine /etc/hosts gives `localhost` two addresses, ::1
first and then 127.0.0.1, and many servers listen on only one of them. The
client must try each address in the resolver's order until one answers.
This suite re-runs itself in a private mount namespace (unshare -m, as
root) with its own /etc/hosts bind-mounted over the real one:

    ::1        localhost dualhost
    127.0.0.1  localhost dualhost

so every child sees that file, whatever the machine's own says. Then:
- `duplex connect ws://localhost:P` reaches a `duplex serve` and a Python
  websockets server that listen on 127.0.0.1 only (::1 refuses first), and
  a `duplex serve --host ::1` (the first address answers);
- wss://localhost:P with the CA verified, after ::1 refused (the TLS state
  must survive the change of socket);
- nothing listening on either address: close 1006, why transport error,
  the reason names the last address (127.0.0.1, so ::1 came first) and
  says 2 addresses were tried;
- a name that does not resolve: `duplex connect` and `duplex serve --host`
  fail with the resolver's reason ("cannot resolve NAME: ..."), not an
  errno text such as "Invalid argument".

  /usr/bin/python3 tests/interop/test_addresses.py --duplex build/duplex
"""
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from interop_common import (DuplexServer, WsPeer, base_args, check,  # noqa: E402
                            expect_eq, make_certs, need_websockets, run_connect, run_main, say,
                            step)

HOSTS = "::1 localhost dualhost\n127.0.0.1 localhost dualhost\n"
NS_FLAG = "DX_TEST_HOSTS_NS"


def enter_namespace():
    """Re-executes this script in a mount namespace whose /etc/hosts is
    HOSTS. Returns only inside it."""
    if os.environ.get(NS_FLAG):
        with open("/etc/hosts") as f:
            if f.read() != HOSTS:
                print("FAIL: /etc/hosts was not replaced inside the namespace", flush=True)
                sys.exit(1)
        return
    unshare, mount = shutil.which("unshare"), shutil.which("mount")
    if not unshare or not mount or os.geteuid() != 0:
        print("FAIL: this suite needs root and unshare(1)/mount(8) (util-linux) to give "
              "its children their own /etc/hosts", flush=True)
        sys.exit(1)
    d = tempfile.mkdtemp(prefix="duplex-hosts-")
    hosts = os.path.join(d, "hosts")
    with open(hosts, "w") as f:
        f.write(HOSTS)
    inner = "mount --bind \"$0\" /etc/hosts && exec \"$@\""
    env = dict(os.environ, **{NS_FLAG: "1"})
    r = subprocess.run([unshare, "-m", "sh", "-c", inner, hosts, sys.executable] + sys.argv,
                       env=env)
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


def main(args):
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

    step("wss://localhost with the CA verified, after ::1 refused")
    certs = make_certs()
    with DuplexServer(args.duplex, tls=certs.server) as tls:
        echo_ok(args, "wss://localhost:%d/" % tls.port, "wss on 127.0.0.1",
                extra=("--ca", certs.ca))

    step("nothing listens on either address: both are tried, the last is named")
    port = free_port()
    res = run_connect(args.duplex, "ws://localhost:%d/" % port, ["x"])
    res.expect_failed(1006, "transport error", "refused on both addresses",
                      reason_has=("connect to 127.0.0.1:%d" % port, "Connection refused",
                                  "2 addresses tried"))

    step("a name that does not resolve: the resolver's reason, for connect and serve")
    res = run_connect(args.duplex, "ws://no-such-host.invalid:80/", ["x"])
    err = res.stderr.decode("utf-8", "replace")
    check("cannot resolve no-such-host.invalid: " in err,
          "connect to an unknown name: expected 'cannot resolve no-such-host.invalid: ...' "
          "on stderr, got %r" % err)
    check("Invalid argument" not in err, "connect to an unknown name: errno text in %r" % err)
    check(res.rc != 0, "connect to an unknown name: exit status 0")
    r = subprocess.run([args.duplex, "serve", "--host", "no-such-host.invalid", "--port", "0"],
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=20)
    err = r.stderr.decode("utf-8", "replace")
    say("  serve said: %s" % err.strip())
    check(r.returncode != 0, "serve --host no-such-host.invalid: exit status 0")
    check("cannot listen on no-such-host.invalid:0: cannot resolve no-such-host.invalid: " in err,
          "serve --host no-such-host.invalid: expected the resolver's reason, got %r" % err)


if __name__ == "__main__":
    a = base_args(__doc__).parse_args()
    enter_namespace()
    run_main(main, a)
