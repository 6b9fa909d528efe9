#!/usr/bin/env python3
"""Out of file descriptors: `duplex serve` under `ulimit -n 40` with 80
connections waiting must not spin (the listener stays readable while accept
fails with EMFILE), and must serve again once descriptors are free."""
import argparse
import os
import re
import socket
import subprocess
import sys
import time


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def cpu_ms(pid):
    fields = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 // os.sysconf("SC_CLK_TCK")


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--duplex", required=True)
    args = ap.parse_args()
    cmd = "ulimit -n 40; exec %s serve --threads 1 --quiet --port 0 --host 127.0.0.1 " \
          "--ping-interval 0" % args.duplex
    p = subprocess.Popen(["bash", "-c", cmd], stderr=subprocess.PIPE, text=True)
    try:
        line = p.stderr.readline()
        if "listening on" not in line:
            fail("server did not start: %r" % line)
        m = re.search(r"listening on \S+:(\d+)", line)
        if not m:
            fail("no port in the listening line: %r" % line)
        port = int(m.group(1))
        print("CHECK: 80 connections against a 40-descriptor limit")
        socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(80)]
        time.sleep(1.0)
        c0 = cpu_ms(p.pid)
        time.sleep(2.0)
        used = cpu_ms(p.pid) - c0
        print("  server CPU over 2 s at the limit: %d ms" % used)
        if used > 300:
            fail("the server spins while out of descriptors: %d ms of CPU in 2 s" % used)
        print("CHECK: descriptors freed -> a new client is upgraded")
        for s in socks:
            s.close()
        time.sleep(0.5)
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                  b"Sec-WebSocket-Version: 13\r\n\r\n")
        status = s.recv(200).split(b"\r\n")[0]
        if status != b"HTTP/1.1 101 Switching Protocols":
            fail("after the limit: expected 101, got %r" % status)
        s.close()
        print("PASS: all checks passed")
    finally:
        p.terminate()
        p.wait(timeout=10)


if __name__ == "__main__":
    main()
