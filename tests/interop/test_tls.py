#!/usr/bin/python3
"""wss:// between duplex and Python websockets, both ways.

Certificates come from tests/certs/make.sh at run time (a test CA; a
server certificate for localhost / 127.0.0.1; one for wrong.example only;
a self-signed one).

duplex serve --tls-cert/--tls-key <- Python websockets client trusting the
test CA: text and binary up to 16 MiB (compressed, as negotiated by
default, and uncompressed), fragments, every sendable close code, 16 MiB + 1
closing with 1009, the IP address in the certificate, and a client that does
not trust the CA failing. 1 MiB echoes from `duplex bench` do not make the
server fault its pages in again for every message (a count of page faults).

duplex client (`duplex connect --ca`, and client_peer for the C API) ->
websockets server over TLS: echoes up to 16 MiB, pings, close codes. A
server whose certificate names another host, and a self-signed one, are
refused: exit 1, `why=transport error` code=1015 and a reason naming the
verification failure; --insecure accepts them.

Mismatches never hang: a ws:// client on a TLS port and a wss:// client on
a plaintext port fail within a few seconds, in both roles; a client that
never starts the TLS handshake is dropped by the server, and our client
gives up on a server that never answers it, within the 10 s handshake
timeout.

  /usr/bin/python3 tests/interop/test_tls.py --duplex build/duplex \
      --client-peer build/tests/interop/client_peer
"""
import asyncio
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from interop_common import (CheckFailed, DuplexServer, WsPeer, asan_process,  # noqa: E402
                            base_args, check, expect_eq, make_certs, need_websockets, run_client_peer,
                            run_connect, run_main, say, step, timed)

websockets = need_websockets()
from websockets.exceptions import ConnectionClosed  # noqa: E402
from test_server_python import (CLOSE_CODES, IO_TIMEOUT, MIB, close_ok,  # noqa: E402
                                connect, echo, echo_fragments, pattern_bytes,
                                pattern_text)

FAIL_WITHIN = 5.0
FAULTS_PER_MIB = 64  # the server's page faults per 1 MiB echo, at most (~500 unfixed)   # seconds a mismatched client may take to give up
LINES = ["hello over TLS", "h\u00e9llo \u2713 \U0001F642", "x" * 70000, "last"]
PEER_SCRIPT = ["text:0", "binary:1", "text:65536", "binary:65537", "text:1048576",
               "binary:16777216", "text:16777216", "ping:", "ping:tls", "close:1000:bye"]


# ------------------------------------------------ duplex serve <- websockets

async def t_server_echo(server, ctx):
    step("wss://localhost: the handshake completes with the test CA trusted, and "
         "permessage-deflate is negotiated (the default on both sides)")
    ws = await connect(server, ssl=ctx)
    exts = ws.response_headers.get_all("Sec-WebSocket-Extensions")
    check(len(exts) == 1 and exts[0].startswith("permessage-deflate"),
          "Sec-WebSocket-Extensions in the 101: expected one permessage-deflate, got %r" % exts)
    for n in (0, 1, 125, 126, 65535, 65536, MIB, 16 * MIB):
        step("over TLS: text of %d bytes echoes as text, binary of %d as binary" % (n, n))
        await echo(ws, pattern_text(n, n), "TLS text %d" % n)
        await echo(ws, pattern_bytes(n, n), "TLS binary %d" % n)
    step("over TLS: incompressible binary of 1 MiB echoes")
    await echo(ws, os.urandom(MIB), "TLS random binary 1 MiB")
    step("over TLS: a 4 MiB message in 4 fragments comes back whole")
    big = pattern_bytes(4 * MIB, 3)
    await echo_fragments(ws, [big[i:i + MIB] for i in range(0, len(big), MIB)], big,
                         "TLS fragments")
    await close_ok(ws, "TLS echo")

    step("over TLS without compression: 1 MiB and 16 MiB binary echo")
    ws = await connect(server, ssl=ctx, compression=None)
    expect_eq(ws.response_headers.get("Sec-WebSocket-Extensions"), None,
              "Sec-WebSocket-Extensions when the client offers none")
    await echo(ws, pattern_bytes(MIB, 5), "TLS uncompressed 1 MiB")
    await echo(ws, pattern_bytes(16 * MIB, 6), "TLS uncompressed 16 MiB")
    await close_ok(ws, "TLS uncompressed")

    step("wss://127.0.0.1: the IP address in the certificate verifies too")
    ws = await asyncio.wait_for(websockets.connect(server.url("/", host="127.0.0.1"), ssl=ctx,
                                                   max_size=None, ping_interval=None),
                                IO_TIMEOUT)
    await echo(ws, "by address", "TLS by IP address")
    await close_ok(ws, "TLS by IP address")


def minor_faults(pid):
    with open("/proc/%d/stat" % pid) as f:
        return int(f.read().rsplit(")", 1)[1].split()[7])  # minflt, field 10


def t_server_no_refaulting(args, certs):
    """A 1 MiB echo over TLS must reuse the server's memory rather than
    fault fresh pages in each time: with glibc's default thresholds a
    freed megabyte went back to the kernel, ~500 faults per echo and 5x the
    CPU (src/cli/malloc_policy.c). A count, not a time. The client is
    `duplex bench`: a client as slow as Python's lets glibc's own dynamic
    thresholds settle, and shows nothing."""
    server = DuplexServer(args.duplex, tls=certs.server, extra=["--threads", "1", "--quiet"])
    server.start()
    if asan_process(server.proc.pid):
        say("  (skipped under ASan: its allocator is not glibc's)")
        server.stop()
        return
    step("over TLS, one thread: 4 clients echo 1 MiB messages (duplex bench) for 1 s, then for 2 s "
         "more at most %d page faults per echo in the server (its buffers are reused, "
         "not faulted in again)" % FAULTS_PER_MIB)
    cmd = [args.duplex, "bench", server.url("/"), "--ca", certs.ca, "--quiet", "--json",
           "--mode", "echo", "--connections", "4", "--size", str(MIB), "--binary"]
    subprocess.run(cmd + ["--duration", "1"], check=True, stdout=subprocess.DEVNULL,
                   timeout=60)
    before = minor_faults(server.proc.pid)
    out = subprocess.run(cmd + ["--duration", "2"], check=True, stdout=subprocess.PIPE,
                         timeout=60).stdout
    faults = minor_faults(server.proc.pid) - before
    echoed = json.loads(out)["messages"]
    check(echoed > 0, "duplex bench echoed no message: %s" % out)
    per = faults / echoed
    say("  %d page faults over %d echoes of 1 MiB: %.1f each" % (faults, echoed, per))
    check(per <= FAULTS_PER_MIB, "the server faulted %.1f pages per 1 MiB echo over TLS "
          "(at most %d expected)" % (per, FAULTS_PER_MIB))
    server.check_alive("1 MiB echoes over TLS")
    server.stop()


async def t_server_close_codes(server, ctx):
    for code in CLOSE_CODES:
        step("over TLS: close %d with a reason is echoed by the server" % code)
        ws = await connect(server, ssl=ctx)
        await echo(ws, "before %d" % code, "TLS echo before close")
        await close_ok(ws, "TLS close %d" % code, code, "reason %d" % code)

    step("over TLS: a 16 MiB + 1 byte message closes with 1009")
    ws = await connect(server, ssl=ctx, compression=None)
    try:
        await asyncio.wait_for(ws.send(pattern_bytes(16 * MIB + 1)), IO_TIMEOUT)
        got = await asyncio.wait_for(ws.recv(), IO_TIMEOUT)
        raise CheckFailed("TLS 16 MiB + 1: got a message of %d bytes instead of a close"
                          % len(got))
    except ConnectionClosed:
        pass
    await asyncio.wait_for(ws.wait_closed(), IO_TIMEOUT)
    expect_eq(ws.close_code, 1009, "TLS 16 MiB + 1: close code from the server")


async def t_server_refused_clients(server, ctx):
    step("a client trusting only the system CAs refuses the test certificate")
    try:
        ws = await asyncio.wait_for(websockets.connect(server.url("/")), IO_TIMEOUT)
        await ws.close()
        raise CheckFailed("a client without the test CA connected: certificate not verified?")
    except ssl.SSLCertVerificationError as e:
        say("  refused as expected: %s" % e.verify_message)

    step("a plaintext ws:// client on the TLS port fails within %.0f s" % FAIL_WITHIN)
    await expect_quick_failure(server.url("/").replace("wss://", "ws://"), {},
                               "ws:// client on the wss:// port")
    step("  the TLS server still serves wss:// afterwards")
    ws = await connect(server, ssl=ctx)
    await echo(ws, "still fine", "wss:// after a plaintext client")
    await close_ok(ws, "wss:// after a plaintext client")


async def expect_quick_failure(url, kw, what):
    """A websockets client on url must fail (any error) within FAIL_WITHIN."""
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    try:
        ws = await asyncio.wait_for(websockets.connect(url, open_timeout=None, **kw),
                                    FAIL_WITHIN)
        await ws.close()
        raise CheckFailed("%s: the handshake succeeded" % what)
    except asyncio.TimeoutError:
        raise CheckFailed("%s: still not failed after %.0f s (hangs)" % (what, FAIL_WITHIN))
    except CheckFailed:
        raise
    except Exception as e:  # any failure will do, as long as it is quick
        say("  failed after %.2f s: %s: %s" % (loop.time() - t0, type(e).__name__, e))


def t_server(args, certs):
    ctx = certs.client_context()
    server = DuplexServer(args.duplex, tls=certs.server)
    server.start()
    asyncio.run(t_server_echo(server, ctx))
    asyncio.run(t_server_close_codes(server, ctx))
    asyncio.run(t_server_refused_clients(server, ctx))
    server.expect_logged(" deflate=on ", 0, "the TLS connections")
    t_server_no_refaulting(args, certs)

    step("duplex connect --ca against duplex serve over TLS")
    res = run_connect(args.duplex, server.url("/"), LINES, stdin_delay=0.5,
                      extra=["--ca", certs.ca])
    expect_eq(res.lines(), LINES, "lines echoed over TLS")
    expect_eq(res.rc, 0, "exit status")
    if args.client_peer:
        step("client_peer --ca against duplex serve over TLS (compressed)")
        run_client_peer(args.client_peer, server.url("/"), PEER_SCRIPT, timeout=120,
                        opts=["--ca=" + certs.ca, "--deflate", "--expect-compressed=1"])
    server.check_alive("the TLS server checks")

    step("a wss:// client on a plaintext duplex serve fails within %.0f s" % FAIL_WITHIN)
    plain = DuplexServer(args.duplex)
    plain.start()
    asyncio.run(expect_quick_failure("wss://localhost:%d/" % plain.port, {"ssl": ctx},
                                     "wss:// client on a ws:// port"))
    plain.check_alive("a TLS client on the plaintext port")
    return server, plain


# -------------------------------------------- duplex client -> websockets

def t_client_echo(args, certs, peer):
    step("duplex connect --ca: lines round-trip through a websockets wss:// server")
    res = run_connect(args.duplex, peer.url("/"), LINES, stdin_delay=1.0,
                      extra=["--ca", certs.ca])
    expect_eq(res.lines(), LINES, "lines echoed by the wss:// peer")
    expect_eq(res.rc, 0, "exit status")
    expect_eq(peer.wait_close("duplex connect over TLS"), (1000, ""),
              "close frame the peer received")
    if not args.client_peer:
        say("NOTE: --client-peer not given; client API checks skipped")
        return
    step("client_peer --ca: text and binary to 16 MiB, pings, close 1000 over TLS")
    run_client_peer(args.client_peer, peer.url("/"), PEER_SCRIPT, timeout=120,
                    opts=["--ca=" + certs.ca])
    expect_eq(peer.wait_close("client_peer over TLS"), (1000, "bye"),
              "close frame the peer received")
    for code in (1001, 3000, 4999):
        step("client_peer --ca: dx_close(%d) reaches the wss:// peer" % code)
        run_client_peer(args.client_peer, peer.url("/"),
                        ["binary:10", "close:%d:c%d" % (code, code)], opts=["--ca=" + certs.ca])
        expect_eq(peer.wait_close("dx_close(%d) over TLS" % code), (code, "c%d" % code),
                  "close frame the peer received")
    step("client_peer --ca --deflate: compressed echoes over TLS")
    run_client_peer(args.client_peer, peer.url("/frag"),
                    ["json:16384", "json:16384", "binary:1048576", "text:1048576"],
                    opts=["--ca=" + certs.ca, "--deflate", "--expect-compressed=1"])


def verify_failure(args, certs, url, what, reason_has, extra=()):
    """duplex connect and client_peer must both refuse url: 1015, transport
    error, a reason with 'certificate verify failed' and reason_has."""
    step("duplex connect: %s is refused (exit 1, 1015, why=transport error, reason names "
         "%r)" % (what, reason_has))
    res = run_connect(args.duplex, url, ["never sent"], keep_stdin_open=True,
                      extra=list(extra))
    res.expect_failed(1015, "transport error", what,
                      reason_has=("certificate verify failed", reason_has))
    if args.client_peer:
        step("client_peer: %s is refused the same way" % what)
        opts = [o + "=" + v for o, v in zip(extra[::2], extra[1::2])]
        run_client_peer(args.client_peer, url, [], opts=opts + [
            "--expect-fail=1015:transport error:" + reason_has])


def t_client_verification(args, certs):
    with WsPeer(ssl=certs.server_context(certs.wrong)) as peer:
        verify_failure(args, certs, peer.url("/"), "a certificate for wrong.example reached "
                       "as localhost", "hostname mismatch", extra=("--ca", certs.ca))
        step("duplex connect --insecure accepts the wrong.example certificate")
        res = run_connect(args.duplex, peer.url("/"), ["insecure ok"], stdin_delay=0.5,
                          extra=["--insecure"])
        expect_eq((res.rc, res.lines()), (0, ["insecure ok"]), "(exit status, echoed lines)")
    with WsPeer(ssl=certs.server_context(certs.self_signed)) as peer:
        # OpenSSL 3 spells it "self-signed", 1.1 "self signed".
        verify_failure(args, certs, peer.url("/"), "a self-signed certificate (test CA "
                       "trusted)", "self", extra=("--ca", certs.ca))
        verify_failure(args, certs, peer.url("/"), "a self-signed certificate (system CAs)",
                       "self")
        step("duplex connect --insecure accepts the self-signed certificate")
        res = run_connect(args.duplex, peer.url("/"), ["self-signed ok"], stdin_delay=0.5,
                          extra=["--insecure"])
        expect_eq((res.rc, res.lines()), (0, ["self-signed ok"]), "(exit status, echoed lines)")
        if args.client_peer:
            step("client_peer --insecure accepts the self-signed certificate")
            run_client_peer(args.client_peer, peer.url("/"), ["binary:100000", "text:5"],
                            opts=["--insecure"])


def quick_connect_failure(args, url, what, code, why, extra=()):
    step("duplex connect: %s fails within %.0f s: exit 1, code %d, why=%s"
         % (what, FAIL_WITHIN, code, why))
    res, took = timed(run_connect, args.duplex, url, ["never sent"], keep_stdin_open=True,
                      timeout=30.0, extra=list(extra))
    say("  gave up after %.2f s" % took)
    check(took < FAIL_WITHIN, "%s: took %.1f s to fail (limit %.0f s)" % (what, took,
                                                                       FAIL_WITHIN))
    res.expect_failed(code, why, what)


def t_client_mismatch(args, certs, tls_server, plain_server):
    tls_fails = (1015, "transport error")   # TLS said no: wrong version number
    http_fails = (1006, "handshake failed")  # no HTTP answer, the TLS server hung up
    with WsPeer() as plain_peer:
        quick_connect_failure(args, "wss://localhost:%d/" % plain_peer.port,
                              "wss:// to a plaintext websockets server", *tls_fails,
                              extra=["--ca", certs.ca])
    with WsPeer(ssl=certs.server_context(certs.server)) as tls_peer:
        quick_connect_failure(args, "ws://localhost:%d/" % tls_peer.port,
                              "ws:// to a TLS websockets server", *http_fails)
    quick_connect_failure(args, "wss://localhost:%d/" % plain_server.port,
                          "wss:// to a plaintext duplex serve", *tls_fails,
                          extra=["--ca", certs.ca])
    quick_connect_failure(args, "ws://localhost:%d/" % tls_server.port,
                          "ws:// to a TLS duplex serve", *http_fails)
    server = DuplexServer(args.duplex, tls=certs.wrong)
    server.start()
    verify_failure(args, certs, server.url("/"), "duplex serve with the wrong.example "
                   "certificate", "hostname mismatch", extra=("--ca", certs.ca))
    server.check_alive("clients refusing its certificate")


def t_silence(args, certs, tls_server):
    """Neither role waits forever for a TLS handshake that never comes: the
    handshake timeout (10 s by default) ends it."""
    limit = 15.0
    result = {}

    def silent_client():
        s = socket.create_connection(("127.0.0.1", tls_server.port))
        s.settimeout(limit)
        t0 = time.monotonic()
        try:
            result["data"] = s.recv(1)
        except socket.timeout:
            result["data"] = None
        except ConnectionResetError:
            result["data"] = b""
        result["took"] = time.monotonic() - t0
        s.close()

    step("a client that connects to the TLS port and sends nothing is dropped within %.0f s, "
         "while (at the same time) duplex connect to a TCP server that never answers the TLS "
         "handshake gives up within %.0f s" % (limit, limit))
    t = threading.Thread(target=silent_client, daemon=True)
    t.start()
    mute = socket.socket()
    mute.bind(("127.0.0.1", 0))
    mute.listen(4)  # the kernel completes connects; nobody ever reads or writes
    try:
        res, took = timed(run_connect, args.duplex, "wss://localhost:%d/" % mute.getsockname()[1],
                          ["never sent"], keep_stdin_open=True, timeout=limit + 15,
                          extra=["--ca", certs.ca])
    finally:
        mute.close()
    say("  duplex connect gave up after %.1f s" % took)
    check(took < limit, "duplex connect to a mute server took %.1f s to give up" % took)
    res.expect_failed(1006, "handshake failed", "wss:// to a mute server",
                      reason_has=("timed out",))
    t.join(limit + 5)
    check(result.get("data") is not None, "duplex serve --tls-cert kept a silent connection open "
          "for %.0f s" % limit)
    expect_eq(result["data"], b"", "what duplex serve sent a client that never sent a "
              "ClientHello")
    say("  duplex serve dropped the silent client after %.1f s" % result["took"])
    tls_server.check_alive("a silent client")


def main(args):
    say("websockets %s, %s" % (websockets.__version__, ssl.OPENSSL_VERSION))
    certs = make_certs()
    tls_server, plain_server = t_server(args, certs)
    with WsPeer(ssl=certs.server_context(certs.server)) as peer:
        t_client_echo(args, certs, peer)
    t_client_verification(args, certs)
    t_client_mismatch(args, certs, tls_server, plain_server)
    t_silence(args, certs, tls_server)
    for s in (tls_server, plain_server):
        s.check_alive("the suite")


if __name__ == "__main__":
    a = base_args(__doc__, need_peer=True).parse_args()
    run_main(main, a)
