#!/usr/bin/python3
"""duplex serve's memory follows the bytes a peer sent, not the bytes its
frame headers announced.

50 raw connections to `duplex serve --threads 1` each complete the upgrade
and send only a frame header announcing 16 MiB (the default --max-message)
and 10 payload bytes: 24 bytes on the wire. Then the server's memory must
have grown by less than 200 KiB per connection, where a server that sizes
its reassembly buffer from the header reserves 16 MiB each (800 MiB for
the 50).

Which figure: VmData (private writable memory, /proc/PID/status), because
that is what a reservation commits. VmRSS does not show the fault: glibc
hands a 16 MiB request out as fresh mmap'd (or top-of-heap) pages that stay
out of RSS until written, and only the 10 bytes are written. RSS is checked
too (< 200 KiB per connection, skipped under ASan, whose quarantine keeps
freed memory resident), so a buffer that is zeroed or touched would fail as
well. Then one connection sends the rest of its 16 MiB message, which must
echo back intact.

No timing is asserted: the figures are read after a round trip on a fresh
connection, which the one-thread server can answer only after its loop has
read the 50 connections' bytes (they were in its sockets first).

  /usr/bin/python3 tests/interop/test_memory.py --duplex build/duplex
"""
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from interop_common import (DuplexServer, asan_process, base_args, check,  # noqa: E402
                            expect_eq, run_main, say, step)
from test_raw_malformed import Conn, frame  # noqa: E402

CONNS = 50
ANNOUNCED = 16 << 20          # duplex serve's default --max-message
SENT = 10                     # payload bytes actually sent
LIMIT_KIB = 200               # allowed growth per connection


def fast_mask(payload, key):
    """payload XOR the repeated 4-byte key (fast enough for 16 MiB)."""
    keys = (key * (len(payload) // 4 + 1))[:len(payload)]
    x = int.from_bytes(payload, "little") ^ int.from_bytes(keys, "little")
    return x.to_bytes(len(payload), "little")


def barrier(server):
    """An echo round trip on a fresh connection: once it comes back, the
    one-thread server has read what was already waiting in its sockets."""
    c = Conn(server.port)
    try:
        c.handshake()
        c.send(frame(2, b"barrier"))
        fin, _, op, payload, _ = c.read_frame()
        expect_eq((fin, op, payload), (1, 2, b"barrier"), "barrier echo")
    finally:
        c.close()


def memory(server):
    return server.memory_kib("VmData"), server.memory_kib("VmRSS")


def main(args):
    server = DuplexServer(args.duplex, extra=["--threads", "1", "--quiet"])
    server.start()
    asan = asan_process(server.proc.pid)
    payload = bytes((i * 31 + (i >> 13)) & 0xFF for i in range(1 << 16)) * (ANNOUNCED >> 16)
    key = b"\x11\x22\x33\x44"
    masked = fast_mask(payload, key)
    head = bytes([0x82, 0x80 | 127]) + struct.pack("!Q", ANNOUNCED) + key

    step("%d connections upgrade; then the server's VmData and VmRSS" % CONNS)
    conns = []
    for _ in range(CONNS):
        c = Conn(server.port)
        c.handshake()
        conns.append(c)
    barrier(server)
    data0, rss0 = memory(server)
    say("  before: VmData %d KiB, VmRSS %d KiB" % (data0, rss0))

    step("each sends a header announcing %d bytes and %d payload bytes" % (ANNOUNCED, SENT))
    for c in conns:
        c.send(head + masked[:SENT])
    barrier(server)
    server.check_alive("the partial frames")
    data1, rss1 = memory(server)
    per_data = (data1 - data0) / CONNS
    per_rss = (rss1 - rss0) / CONNS
    say("  after: VmData %d KiB (+%.1f KiB per connection), VmRSS %d KiB (+%.1f KiB per "
        "connection)" % (data1, per_data, rss1, per_rss))
    check(per_data < LIMIT_KIB,
          "VmData grew by %.0f KiB per connection for %d bytes received each (%d announced): "
          "the server reserves memory for bytes that have not arrived"
          % (per_data, SENT, ANNOUNCED))
    if asan:
        say("  (ASan build: VmRSS not checked)")
    else:
        check(per_rss < LIMIT_KIB, "VmRSS grew by %.0f KiB per connection for %d bytes "
              "received each" % (per_rss, SENT))

    step("one connection sends the rest: its 16 MiB message echoes intact")
    c = conns[0]
    c.send(masked[SENT:])
    fin, _, op, echoed, _ = c.read_frame(timeout=30.0)
    expect_eq((fin, op, len(echoed)), (1, 2, ANNOUNCED), "the echo's (fin, opcode, length)")
    check(echoed == payload, "the echoed 16 MiB differ from what was sent")
    for c in conns:
        c.close()
    server.check_alive("the suite")


if __name__ == "__main__":
    run_main(main, base_args(__doc__).parse_args())
