#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# cfscache: load script: holds many idle connections to a server whose descriptor limit is below
# them, while one keep-alive client goes on asking for an object; prints what each side saw.
import argparse
import http.client
import json
import socket
import sys
import time


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--path", required=True, help="an object path served with 200")
    ap.add_argument("--conns", type=int, default=300)
    ap.add_argument("--seconds", type=float, default=6.0)
    a = ap.parse_args()
    if a.conns > 2000 or a.seconds > 60:
        sys.exit("bounded load only: at most 2000 connections and 60 s")

    keep = http.client.HTTPConnection("127.0.0.1", a.port, timeout=5)
    keep.request("GET", a.path)
    r = keep.getresponse()
    r.read()
    assert r.status == 200, r.status

    held = []
    t0 = time.monotonic()
    for _ in range(a.conns):
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect(("127.0.0.1", a.port))
        except BlockingIOError:
            pass
        held.append(s)
    ok = fail = 0
    codes = {}
    while time.monotonic() - t0 < a.seconds:
        try:
            keep.request("GET", a.path)
            r = keep.getresponse()
            r.read()
            codes[r.status] = codes.get(r.status, 0) + 1
            if r.status == 200:
                ok += 1
            else:
                fail += 1
        except (OSError, http.client.HTTPException) as e:
            codes[type(e).__name__] = codes.get(type(e).__name__, 0) + 1
            fail += 1
            keep = http.client.HTTPConnection("127.0.0.1", a.port, timeout=5)
        time.sleep(0.02)
    for s in held:
        s.close()
    # Once the flood is gone, a new connection is served again (within a bounded wait).
    fresh = None
    t1 = time.monotonic()
    while time.monotonic() - t1 < 10:
        try:
            c = http.client.HTTPConnection("127.0.0.1", a.port, timeout=2)
            c.request("GET", a.path)
            r = c.getresponse()
            r.read()
            if r.status == 200:
                fresh = round(time.monotonic() - t1, 3)
                break
        except (OSError, http.client.HTTPException):
            pass
        time.sleep(0.1)
    print(json.dumps({"keepalive_ok": ok, "keepalive_fail": fail, "codes": codes,
                      "fresh_after_s": fresh}))


if __name__ == "__main__":
    main()
