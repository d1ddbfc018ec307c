#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# cfscache: load script: slowloris. Many connections send a request head (or a TLS ClientHello)
# one byte per interval and reconnect when closed, while a normal client keeps asking for an
# object over new connections; prints what both sides saw as JSON.
import argparse
import http.client
import json
import selectors
import socket
import ssl
import sys
import threading
import time


def normal_client(a, stop, res):
    ctx = ssl._create_unverified_context() if a.tls else None
    while not stop.is_set():
        t = time.monotonic()
        try:
            if a.tls:
                c = http.client.HTTPSConnection("127.0.0.1", a.port, timeout=a.client_timeout,
                                                context=ctx)
            else:
                c = http.client.HTTPConnection("127.0.0.1", a.port, timeout=a.client_timeout)
            c.request("GET", a.path)
            r = c.getresponse()
            r.read()
            c.close()
            key = str(r.status)
        except (OSError, http.client.HTTPException) as e:
            key = type(e).__name__
        res["codes"][key] = res["codes"].get(key, 0) + 1
        res["worst_s"] = max(res["worst_s"], time.monotonic() - t)
        time.sleep(0.05)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--path", required=True)
    ap.add_argument("--slow", type=int, default=100, help="slow connections kept open")
    ap.add_argument("--seconds", type=float, default=12.0)
    ap.add_argument("--interval", type=float, default=1.0, help="seconds between bytes")
    ap.add_argument("--tls", action="store_true", help="drip a TLS ClientHello instead")
    ap.add_argument("--client-timeout", type=float, default=5.0)
    a = ap.parse_args()
    if a.slow > 2000 or a.seconds > 60:
        sys.exit("bounded load only: at most 2000 connections and 60 s")

    if a.tls:
        # A TLS record header and the start of a ClientHello, then never the rest.
        drip = bytes([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03]) + b"\0" * 500
    else:
        drip = (f"GET {a.path} HTTP/1.1\r\nHost: 127.0.0.1\r\n").encode() + b"X-Slow: " + b"a" * 4000

    sel = selectors.DefaultSelector()
    conns = {}  # socket -> [opened, bytes sent]
    lifetimes = []

    def open_one():
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect(("127.0.0.1", a.port))
        except BlockingIOError:
            pass
        except OSError:
            s.close()
            return
        conns[s] = [time.monotonic(), 0]
        sel.register(s, selectors.EVENT_READ)

    def closed(s):
        lifetimes.append(time.monotonic() - conns[s][0])
        sel.unregister(s)
        s.close()
        del conns[s]

    res = {"codes": {}, "worst_s": 0.0}
    stop = threading.Event()
    th = threading.Thread(target=normal_client, args=(a, stop, res))
    t0 = time.monotonic()
    for _ in range(a.slow):
        open_one()
    th.start()
    next_drip = time.monotonic()
    while time.monotonic() - t0 < a.seconds:
        timeout = max(0.0, next_drip - time.monotonic())
        for key, _ in sel.select(timeout):
            s = key.fileobj
            try:
                if not s.recv(4096):
                    closed(s)
            except OSError:
                closed(s)
        if time.monotonic() >= next_drip:
            next_drip += a.interval
            for s, st in list(conns.items()):
                try:
                    s.send(drip[st[1] % len(drip):st[1] % len(drip) + 1])
                    st[1] += 1
                except BlockingIOError:
                    pass
                except OSError:
                    closed(s)
            # Closed ones come back on the next tick: the attack never lets go.
            for _ in range(a.slow - len(conns)):
                open_one()
    stop.set()
    th.join()
    now = time.monotonic()
    oldest = max((now - st[0] for st in conns.values()), default=0.0)
    # Connections opened in the last tick count as young: "longest" is what survived longest.
    print(json.dumps({
        "normal": res["codes"],
        "normal_ok": res["codes"].get("200", 0),
        "normal_fail": sum(v for k, v in res["codes"].items() if k != "200"),
        "normal_worst_s": round(res["worst_s"], 3),
        "slow_closed": len(lifetimes),
        "slow_max_life_s": round(max(lifetimes, default=0.0), 3),
        "slow_open_oldest_s": round(oldest, 3),
    }))
    for s in list(conns):
        s.close()


if __name__ == "__main__":
    main()
