#!/usr/bin/python3
"""Hostile peers: every connection bounded in memory and in time.

Output a peer makes us queue counts against the cap:
- a client floods pings with a tiny receive buffer and never reads: the
  server stops reading it (the kernel pushes back: the flooder's sends
  block), its queued output stays below the high-water mark plus one read
  (256 KiB),
  and with a cap below that mark the slow-consumer policy fires (1008).
- dx_ping past the cap is refused with DX_EBUFFER.

Every state has a deadline, counted once from leaving OPEN:
- a server whose peer sent a close frame while our output could not drain;
- a server after a protocol failure with blocked output;
- a client whose server sent its close frame and then trickles a byte every
  200 ms: it ends at the close timeout all the same;
- a handshake timeout of 0 is refused when set.

Option values cannot break a connection later:
- a max message of 2^63 - 1 leaves the default output cap at its largest,
  not wrapped to a few bytes (a 100-byte send succeeds);
- 16 subprotocols of 80 bytes each all reach the wire whole (the offer
  once went through a 1 KiB buffer and was cut);
- an offered subprotocol that is not a token gets 400 with a reason (a
  hook could otherwise pick it, and the 101 could not carry it: 500).

A completed close is a clean close:
- the server closes with 1000 after the client's reply, then resets TCP: the
  client reports 1000 "closed by peer", not 1006; `duplex connect
  --reconnect` does not reconnect.

  /usr/bin/python3 tests/interop/test_hostile.py --duplex build/duplex \
      --lifecycle-peer build/tests/interop/lifecycle_peer
"""
import os
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from interop_common import (DuplexServer, RawUpgradeServer, base_args, check,  # noqa: E402
                            expect_eq, record_until_eof, run_connect, run_main, say, step)
from test_raw_malformed import close_payload, frame, http_exchange, request  # noqa: E402
from test_lifecycle import (Peer, WHY_LOCAL, WHY_PEER, WHY_PROTO, expect_close,  # noqa: E402
                            raw_client, served_client)

CLOSE_MS = 1000  # the close timeout given to every peer here
SLACK = 2.0      # how late a deadline may be met on a loaded machine, seconds


def flood_pings(c, seconds, patience=1.0):
    """Sends 125-byte pings without reading anything back, for `seconds`
    or until the socket stays unwritable for `patience` seconds (the kernel
    pushing back). Returns (bytes sent, whether sending was blocked at the
    end)."""
    ping = frame(9, b"p" * 125)
    burst = ping * 64
    c.sock.setblocking(False)
    sent, blocked_since = 0, None
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            n = c.sock.send(burst)
            sent += n
            blocked_since = None
        except BlockingIOError:
            blocked_since = blocked_since or time.monotonic()
            if time.monotonic() - blocked_since > patience:
                return sent, True
            time.sleep(0.01)
        except (BrokenPipeError, ConnectionResetError):
            return sent, False
    return sent, False


def t_ping_flood_paused(args):
    step("a ping flooder that never reads: the server stops reading it; its output stays "
         "near the high-water mark (64 KiB here), and the flooder's sends block")
    p, c = served_client(args, ["--watermarks=65536,16384", "--quiet-pings",
                                "--close-timeout=%d" % CLOSE_MS], rcvbuf=4096)
    rss0 = p.rss_kib()
    sent, blocked = flood_pings(c, 8.0)
    say("  the flooder sent %d bytes of pings, then %s" % (sent, "was blocked for 1 s"
                                                           if blocked else "stopped"))
    check(blocked, "the flooder could send for 8 s (%d bytes): the server kept reading a "
          "peer that reads none of its pongs" % sent)
    st = p.command("stats", "stats", "stats while paused")
    buffered = st["buffered"]
    say("  the server holds %d bytes of output for it; RSS grew %d KiB" %
        (buffered, p.rss_kib() - rss0))
    # One read (the loop's 256 KiB buffer) of 131-byte pings makes less
    # than 256 KiB of pongs.
    check(buffered <= 65536 + 256 * 1024, "queued output %d bytes: more than the high-water "
          "mark plus one read" % buffered)
    expect_eq(st["state"], 1, "the connection is still OPEN (paused, not closed)")
    c.close()
    p.finish()


def t_ping_flood_cap(args):
    step("a ping flooder against a 16 KiB cap (below the high-water mark): the policy "
         "fires, close 1008, and the connection ends within the close timeout")
    p, c = served_client(args, ["--max-buffered=16384,close", "--quiet-pings",
                                "--close-timeout=%d" % CLOSE_MS], rcvbuf=4096)
    t0 = time.monotonic()
    # --quiet-pings: with a line per ping, a harness that reads them slowly
    # (its flooder thread holds the GIL) stalls the server on its stdout,
    # and its timers with it: not the pushback this case is about.
    threading.Thread(target=flood_pings, args=(c, 10.0, 10.0), daemon=True).start()
    ev = p.closed("ping flood past the cap", timeout=10.0)
    took = time.monotonic() - t0
    say("  ended %.2f s after the flood began" % took)
    expect_close(ev, 1008, WHY_LOCAL, "ping flood past the cap",
                 reason="slow consumer: output buffer limit reached")
    c.close()
    p.finish()


def t_ping_cap(args):
    step("dx_ping past the cap: DX_EBUFFER, nothing queued")
    p, c = served_client(args, ["--max-buffered=40000000,drop"], rcvbuf=4096)
    p.command("send 16000000", "send", "16 MB that fill the kernel's buffers")
    # One write: lifecycle_peer runs these in one loop iteration, so no
    # flush between them moves bytes from our queue to the kernel.
    n = len(p.lines)
    p.send("burst 400000 100\nstats\nping " + "y" * 100 + "\nstats")
    r = p.event("burst", "burst up to the cap", after=n)[2]
    say("  %r" % (r,))
    check(r["other"] >= 1, "no send was refused: the cap was not reached (%r)" % (r,))
    i, _, before = p.event("stats", "stats before the ping", after=n)
    ping = p.event("ping-call", "dx_ping past the cap", after=n)[2]
    after = p.event("stats", "stats after the ping", after=i + 1)[2]
    expect_eq(ping["rc"], "DX_EBUFFER", "dx_ping's code past the cap")
    expect_eq(after["buffered"], before["buffered"], "bytes queued after the refused ping")
    c.close()
    p.finish()


def t_close_blocked(args):
    step("server: the peer sends a close frame while our output cannot drain -> on_close "
         "within the close timeout")
    p, c = served_client(args, ["--close-timeout=%d" % CLOSE_MS], rcvbuf=4096)
    p.command("send 4000000", "send", "queue 4 MB the client never reads")
    c.send(frame(8, close_payload(1000)))
    t0 = time.monotonic()
    ev = p.closed("close received, output blocked", timeout=CLOSE_MS / 1000 + SLACK + 3)
    took = time.monotonic() - t0
    say("  on_close %.2f s after the peer's close" % took)
    check(took <= CLOSE_MS / 1000 + SLACK, "on_close came %.2f s after the close frame; the "
          "close timeout is %.1f s" % (took, CLOSE_MS / 1000))
    expect_eq(ev["why"], WHY_PEER, "why, peer closed first")
    c.close()
    p.finish()

    step("server: a protocol failure while our output cannot drain -> on_close within the "
         "close timeout")
    p, c = served_client(args, ["--close-timeout=%d" % CLOSE_MS], rcvbuf=4096)
    p.command("send 4000000", "send", "queue 4 MB the client never reads")
    c.send(frame(3, b"reserved opcode"))
    t0 = time.monotonic()
    ev = p.closed("protocol error, output blocked", timeout=CLOSE_MS / 1000 + SLACK + 3)
    took = time.monotonic() - t0
    say("  on_close %.2f s after the bad frame" % took)
    check(took <= CLOSE_MS / 1000 + SLACK, "on_close came %.2f s after the bad frame" % took)
    expect_close(ev, 1002, WHY_PROTO, "protocol error with blocked output")
    c.close()
    p.finish()


def t_handshake_timeout_zero(args):
    step("a handshake timeout of 0 is refused when set (it used to mean 'forever')")
    import subprocess
    p = subprocess.run([args.lifecycle_peer, "server", "--handshake-timeout=0"],
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=10)
    out = (p.stdout + p.stderr).decode("utf-8", "replace").strip()
    say("  exit %d: %r" % (p.returncode, out))
    expect_eq(p.returncode, 1, "lifecycle_peer's exit status")
    check("dx_options_set_handshake_timeout returned DX_EINVAL" in out,
          "expected dx_options_set_handshake_timeout to refuse 0 with DX_EINVAL, got %r" % out)


def trickle_after_close(c, rec):
    """RawUpgradeServer `then`: sends its close frame, reads the client's
    reply, then sends one byte every 200 ms for 10 s without closing TCP."""
    c.sendall(frame(8, close_payload(1000), mask=False))
    c.settimeout(0.2)
    end = time.monotonic() + 10
    while time.monotonic() < end:
        try:
            if not c.recv(4096):
                return
        except socket.timeout:
            pass
        except OSError:
            return
        try:
            c.sendall(b"\x00")
        except OSError:
            return


def reset_after_close(c, rec):
    """RawUpgradeServer `then`: closes with 1000, waits for the client's
    reply, then resets TCP instead of closing it."""
    c.sendall(frame(8, close_payload(1000), mask=False))
    record_until_eof(c, rec, stop=lambda data: len(data) >= 8)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def t_client_trickle(args):
    step("client: the server sent its close frame and trickles a byte every 200 ms -> "
         "on_close at the close timeout all the same")
    with RawUpgradeServer([], then=trickle_after_close) as srv:
        p = Peer(args.lifecycle_peer, "client", ["--ping=0,0", "--close-timeout=%d" % CLOSE_MS],
                 srv.url())
        p.event("open", "open")
        t0 = time.monotonic()
        ev = p.closed("trickling server", timeout=CLOSE_MS / 1000 + SLACK + 5)
        took = time.monotonic() - t0
        say("  on_close %.2f s after open" % took)
        check(took <= CLOSE_MS / 1000 + SLACK, "on_close %.2f s after the server's close: "
              "the trickle stretched the close timeout" % took)
        expect_eq((ev["code"], ev["why"]), (1000, WHY_PEER), "(code, why)")
        p.finish()


def t_clean_then_reset(args):
    step("client: the server closes with 1000, gets our reply, then resets TCP -> 1000 "
         "'closed by peer', not 1006")
    with RawUpgradeServer([], then=reset_after_close) as srv:
        p = Peer(args.lifecycle_peer, "client", ["--ping=0,0"], srv.url())
        expect_close(p.closed("close then reset"), 1000, WHY_PEER, "close then reset")
        p.finish()

    step("duplex connect --reconnect: a server that closes with 1000 then resets is not "
         "reconnected to")
    with RawUpgradeServer([], then=reset_after_close) as srv:
        res = run_connect(args.duplex, srv.url(), [], keep_stdin_open=True, timeout=15,
                          extra=["--reconnect", "--reconnect-delay", "100:200"])
        say("  stderr: %r" % res.stderr.decode("utf-8", "replace"))
        expect_eq(len(srv.requests), 1, "upgrade requests the server got")
        check(b"reconnecting" not in res.stderr, "the client reconnected after a clean 1000")
        expect_eq(res.rc, 0, "exit status")


def t_option_values(args):
    step("max message 2^63 - 1: the default output cap does not wrap; a 100-byte send works")
    p, c = served_client(args, ["--max-message=9223372036854775807"])
    r = p.command("send 100", "send", "100 bytes")
    expect_eq(r["rc"], "OK", "dx_send of 100 bytes")
    c.close()
    p.finish()

    step("16 subprotocols of 80 bytes: every name reaches the wire whole")
    names = ["p%02d-" % i + "x" * 75 for i in range(16)]
    with RawUpgradeServer([]) as srv:
        extra = []
        for n in names:
            extra += ["--protocol", n]
        run_connect(args.duplex, srv.url(), [], timeout=10, extra=extra)
        got = srv.request_header("Sec-WebSocket-Protocol", 0)
        say("  the offer is %d bytes" % len(got or ""))
        expect_eq([x.strip() for x in (got or "").split(",")], names,
                  "the subprotocols in the request")

    step("an offered subprotocol that is not a token: 400 with a one-line reason")
    with DuplexServer(args.duplex, ["--threads", "1", "--protocol", "chat"]) as srv:
        status, _, body, _ = http_exchange(
            srv, request(extra='Sec-WebSocket-Protocol: chat, "quoted"\r\n'), "non-token")
        say("  %d %r" % (status, body))
        expect_eq(status, 400, "status for a non-token subprotocol")
        check(b"not a token" in body, "reason: %r" % body)


def main(args):
    t_handshake_timeout_zero(args)
    t_option_values(args)
    t_ping_cap(args)
    t_ping_flood_paused(args)
    t_ping_flood_cap(args)
    t_close_blocked(args)
    t_client_trickle(args)
    t_clean_then_reset(args)


if __name__ == "__main__":
    ap = base_args(__doc__)
    ap.add_argument("--lifecycle-peer", required=True)
    run_main(main, ap.parse_args())
