#!/usr/bin/env python3
"""bench/ws_echo.py: the Python `websockets` reference, an echo server for the
idle-memory rows of bench/README.md (issue 14). Every message goes back with
its type.

usage: python3 bench/ws_echo.py PORT [HOST] [--no-deflate]
                                [--tls-cert FILE --tls-key FILE]

websockets' own defaults otherwise (they shape the figures): permessage-
deflate is accepted when offered (15-bit windows, context takeover; the
zlib streams are created when the extension is negotiated), a ping every
20 s, and asyncio's default event loop on one thread.
"""
import argparse
import asyncio
import ssl
import sys

import websockets


async def echo(ws, _path=None):
    # A peer's protocol error or a dropped connection ends the loop;
    # nothing to log.
    try:
        async for msg in ws:
            await ws.send(msg)
    except websockets.ConnectionClosed:
        pass


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("port", type=int)
    ap.add_argument("host", nargs="?", default="127.0.0.1")
    ap.add_argument("--no-deflate", action="store_true")
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    a = ap.parse_args()
    ctx = None
    if a.tls_cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(a.tls_cert, a.tls_key)
    async with websockets.serve(echo, a.host, a.port, ssl=ctx,
                                compression=None if a.no_deflate else "deflate",
                                max_size=64 * 1024 * 1024):
        print(f"listening on {a.host}:{a.port} (websockets {websockets.__version__})",
              file=sys.stderr, flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
