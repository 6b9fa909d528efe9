#!/usr/bin/python3
"""Subprotocol selection and the Origin allow-list.

Subprotocols, duplex serve --protocol chat --protocol superchat --protocol
v2.json: the server picks the first protocol in the client's offer that it
speaks (Python websockets clients and raw requests, the offer spread over
several header lines or padded with spaces); none when nothing overlaps or
nothing is offered, and a server with no --protocol picks none: the 101
then has no Sec-WebSocket-Protocol. Our client (duplex connect --protocol,
client_peer) gets the server's pick, also from a websockets server; it fails
the connection (1002, why=handshake failed) when a raw server picks a
protocol it did not offer, picks one when it offered none, or names two.

Origin, duplex serve --origin https://app.example.com --origin
'*.example.org' --origin 'https://*.example.net': exact matches
(case-insensitive), wildcards for subdomains of any scheme or of one
scheme; anything else gets 403 with a one-line body (raw requests and the
websockets client); a request without Origin is accepted, and a server
without --origin accepts any Origin.

  /usr/bin/python3 tests/interop/test_protocol_origin.py --duplex build/duplex \
      --client-peer build/tests/interop/client_peer
"""
import asyncio
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from interop_common import (CheckFailed, DuplexServer, RawUpgradeServer, WsPeer,  # noqa: E402
                            base_args, check, expect_eq, need_websockets, run_client_peer,
                            run_connect, run_main, say, step)

websockets = need_websockets()
from websockets.exceptions import InvalidStatusCode  # noqa: E402
from test_server_python import IO_TIMEOUT, close_ok, connect, echo  # noqa: E402
from test_raw_malformed import http_case, http_exchange, request  # noqa: E402

SPOKEN = ["chat", "superchat", "v2.json"]

# (the client's offer, what the server must pick or None)
PICKS = [
    (["superchat", "chat"], "superchat"),
    (["chat", "superchat"], "chat"),
    (["other", "v2.json", "chat"], "v2.json"),
    (["other", "another"], None),
    ([], None),
]

# (the Sec-WebSocket-Protocol header lines of a raw request, the pick)
RAW_PICKS = [
    (["other, chat", "superchat"], "chat"),
    (["other", "superchat, chat"], "superchat"),
    (["  other ,  superchat  "], "superchat"),
    (["other,v2.json"], "v2.json"),
    (["chatty, superchatx, v2"], None),
]


def t_server_protocols(args):
    server = DuplexServer(args.duplex, [a for p in SPOKEN for a in ("--protocol", p)])
    server.start()

    async def run():
        for offer, pick in PICKS:
            step("duplex serve speaking %s, websockets offers %s: the 101 carries %s"
                 % (SPOKEN, offer, pick or "no Sec-WebSocket-Protocol"))
            logged = server.log_count(' protocol="%s" ' % (pick or ""))
            ws = await connect(server, subprotocols=offer or None)
            expect_eq(ws.response_headers.get_all("Sec-WebSocket-Protocol"),
                      [pick] if pick else [], "Sec-WebSocket-Protocol in the 101 for %s" % offer)
            expect_eq(ws.subprotocol, pick, "subprotocol websockets reports for %s" % offer)
            await echo(ws, "with %s" % pick, "echo under subprotocol %s" % pick)
            await close_ok(ws, "subprotocol %s" % pick)
            server.expect_logged(' protocol="%s" ' % (pick or ""), logged, "pick %s" % pick)
    asyncio.run(run())

    for lines, pick in RAW_PICKS:
        step("raw request with Sec-WebSocket-Protocol lines %r: the 101 carries %s"
             % (lines, pick or "none"))
        extra = "".join("Sec-WebSocket-Protocol: %s\r\n" % l for l in lines)
        status, headers, _, line = http_exchange(server, request(extra=extra), "raw %r" % lines)
        expect_eq(status, 101, "status for the raw offer %r (%s)" % (lines, line))
        expect_eq(headers.get("sec-websocket-protocol"), pick,
                  "Sec-WebSocket-Protocol in the 101 for %r" % lines)

    step("duplex connect --protocol superchat --protocol chat: the server logs superchat")
    logged = server.log_count(' protocol="superchat" ')
    res = run_connect(args.duplex, server.url("/"), ["hi"], stdin_delay=0.3,
                      extra=["--protocol", "superchat", "--protocol", "chat"])
    expect_eq((res.rc, res.lines()), (0, ["hi"]), "(exit status, echo)")
    server.expect_logged(' protocol="superchat" ', logged, "duplex connect --protocol")
    if args.client_peer:
        for offer, pick in PICKS:
            step("client_peer offering %s: dx_conn_protocol() is \"%s\"" % (offer, pick or ""))
            run_client_peer(args.client_peer, server.url("/"), ["text:10"], opts=[
                "--protocol=" + p for p in offer] + ["--expect-protocol=" + (pick or "")])
    server.check_alive("the subprotocol checks")

    step("duplex serve without --protocol: an offer of chat gets no subprotocol")
    bare = DuplexServer(args.duplex)
    bare.start()

    async def run_bare():
        ws = await connect(bare, subprotocols=["chat"])
        expect_eq(ws.response_headers.get("Sec-WebSocket-Protocol"), None,
                  "Sec-WebSocket-Protocol from a server speaking none")
        await close_ok(ws, "no subprotocol spoken")
    asyncio.run(run_bare())
    return bare


def t_client_protocols(args):
    with WsPeer(subprotocols=["chat", "superchat"]) as peer:
        for offer in (["superchat", "chat"], ["chat"], ["nope", "superchat"], ["nope"]):
            step("client_peer offering %s to a websockets server speaking chat and superchat: "
                 "it reports the server's pick" % offer)
            out = run_client_peer(args.client_peer, peer.url("/"), ["text:100"],
                                  opts=["--protocol=" + p for p in offer])
            rec = peer.last("client_peer %s" % offer)
            expect_eq(rec["request"].get("Sec-WebSocket-Protocol"), ", ".join(offer),
                      "our offer as the server saw it")
            pick = rec["subprotocol"] or ""
            check(pick == "" or pick in offer, "the peer picked %r, not in %s" % (pick, offer))
            check('protocol="%s"' % pick in out, "client_peer did not report protocol=\"%s\" "
                  "(the peer's pick); output: %s" % (pick, out))
            say("  the peer picked %r" % pick)

    cases = [("evil", ["chat"], "a subprotocol we did not offer"),
             ("chat", [], "a subprotocol although we offered none"),
             ("chat, superchat", ["chat", "superchat"], "two subprotocols")]
    for answer, offer, what in cases:
        with RawUpgradeServer(["Sec-WebSocket-Protocol: " + answer]) as raw:
            step("a raw server answers Sec-WebSocket-Protocol: %s (%s): our client fails with "
                 "1002, why=handshake failed" % (answer, what))
            res = run_connect(args.duplex, raw.url("/"), ["never sent"], keep_stdin_open=True,
                              extra=[a for p in offer for a in ("--protocol", p)])
            res.expect_failed(1002, "handshake failed", "answer %r" % answer)
            say("  reason: %s" % res.close[1])
            expect_eq(raw.request_header("Sec-WebSocket-Protocol"),
                      ", ".join(offer) if offer else None, "our offer as the raw server saw it")
            if args.client_peer:
                run_client_peer(args.client_peer, raw.url("/"), [], timeout=30, opts=[
                    "--protocol=" + p for p in offer] + ["--expect-fail=1002:handshake failed"])


ALLOWED = ["https://app.example.com", "*.example.org", "https://*.example.net"]

# (Origin, accepted?)
ORIGINS = [
    ("https://app.example.com", True),
    ("HTTPS://App.Example.COM", True),
    ("http://app.example.com", False),
    ("https://app.example.com:8443", False),
    ("https://app.example.com.evil.com", False),
    ("https://evil.com", False),
    ("https://a.example.org", True),
    ("HTTPS://A.Example.ORG", True),
    ("http://a.b.example.org", True),
    ("https://example.org", False),
    ("https://evilexample.org", False),
    ("https://a.example.org.evil.com", False),
    ("https://x.example.net", True),
    ("Https://X.EXAMPLE.net", True),
    ("http://x.example.net", False),
    ("null", False),
]


def t_origin(args, bare):
    server = DuplexServer(args.duplex, [a for o in ALLOWED for a in ("--origin", o)])
    server.start()
    for origin, ok in ORIGINS:
        req = request(extra="Origin: %s\r\n" % origin)
        if ok:
            step("Origin %s is allowed by %s: 101" % (origin, ALLOWED))
            status, _, _, line = http_exchange(server, req, "Origin " + origin)
            expect_eq(status, 101, "status for Origin %s (%s)" % (origin, line))
        else:
            http_case(server, "Origin %s (allowed: %s)" % (origin, ALLOWED), req, 403)

    step("a request without Origin (not a browser) is accepted")
    status, _, _, line = http_exchange(server, request(), "no Origin")
    expect_eq(status, 101, "status without Origin (%s)" % line)

    async def run():
        step("websockets client with origin=https://a.example.org connects and echoes")
        ws = await connect(server, origin="https://a.example.org")
        await echo(ws, "allowed", "echo from an allowed Origin")
        await close_ok(ws, "allowed Origin")
        step("websockets client with origin=https://evil.com is refused with 403")
        try:
            ws = await asyncio.wait_for(websockets.connect(server.url("/"),
                                                           origin="https://evil.com"),
                                        IO_TIMEOUT)
            await ws.close()
            raise CheckFailed("Origin https://evil.com: the handshake succeeded")
        except InvalidStatusCode as e:
            expect_eq(e.status_code, 403, "status the websockets client got")
        step("a server without --origin accepts Origin https://evil.com")
        ws = await asyncio.wait_for(websockets.connect(bare.url("/"), origin="https://evil.com"),
                                    IO_TIMEOUT)
        await echo(ws, "anyone", "echo on a server without an Origin list")
        await close_ok(ws, "no Origin list")
    asyncio.run(run())
    server.check_alive("the Origin checks")


def main(args):
    say("websockets %s" % websockets.__version__)
    bare = t_server_protocols(args)
    if args.client_peer:
        t_client_protocols(args)
    else:
        say("NOTE: --client-peer not given; client API checks skipped")
    t_origin(args, bare)


if __name__ == "__main__":
    a = base_args(__doc__, need_peer=True).parse_args()
    run_main(main, a)
