#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# cfscache: load script: a client asks for a large object, never reads the answer, and pushes
# "pipelined" bytes as fast as the server takes them; prints how many it took, as JSON.
import argparse
import json
import socket
import sys
import time


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--path", required=True, help="a large object")
    ap.add_argument("--conns", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--token", default=None)
    a = ap.parse_args()
    if a.conns > 100 or a.seconds > 30:
        sys.exit("bounded load only: at most 100 connections and 30 s")
    socks = []
    for _ in range(a.conns):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(("127.0.0.1", a.port))
        auth = f"Authorization: Bearer {a.token}\r\n" if a.token else ""
        s.sendall(f"GET {a.path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}\r\n".encode())
        s.setblocking(False)
        socks.append(s)
    junk = b"x" * 65536
    sent = 0
    t0 = time.monotonic()
    while time.monotonic() - t0 < a.seconds:
        moved = False
        for s in socks:
            try:
                sent += s.send(junk)
                moved = True
            except BlockingIOError:
                pass
            except OSError:
                pass
        if not moved:
            time.sleep(0.01)
    print(json.dumps({"accepted_bytes": sent}))
    for s in socks:
        s.close()


if __name__ == "__main__":
    main()
