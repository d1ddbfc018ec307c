#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# cfscache: load script: many uploaders at once, each declaring a large body and pushing it
# without waiting (or, with --expect, waiting for 100 Continue as curl does); prints each
# connection's answer and how long it took, as JSON.
import argparse
import json
import selectors
import socket
import sys
import time


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--path", required=True, help="the object path to PUT to")
    ap.add_argument("--conns", type=int, default=40)
    ap.add_argument("--declared", type=int, default=9 << 20, help="Content-Length sent")
    ap.add_argument("--push", type=int, default=9 << 20, help="body bytes to push at most")
    ap.add_argument("--token", default=None)
    ap.add_argument("--expect", action="store_true", help="send Expect: 100-continue, then wait")
    ap.add_argument("--seconds", type=float, default=10.0)
    a = ap.parse_args()
    if a.conns > 1000 or a.seconds > 60:
        sys.exit("bounded load only: at most 1000 connections and 60 s")

    head = f"PUT {a.path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {a.declared}\r\n"
    if a.token:
        head += f"Authorization: Bearer {a.token}\r\n"
    if a.expect:
        head += "Expect: 100-continue\r\n"
    head = (head + "\r\n").encode()
    chunk = b"x" * 65536
    sel = selectors.DefaultSelector()
    st = {}
    t0 = time.monotonic()
    for _ in range(a.conns):
        s = socket.create_connection(("127.0.0.1", a.port), timeout=5)
        s.sendall(head)
        s.setblocking(False)
        st[s] = {"sent": 0, "got": b"", "t": time.monotonic(), "answer_s": None, "done": False,
                 "read_done": False}
        sel.register(s, selectors.EVENT_READ | (0 if a.expect else selectors.EVENT_WRITE))
    def finish(s, v):
        v["done"] = True
        sel.unregister(s)

    while time.monotonic() - t0 < a.seconds and not all(v["done"] for v in st.values()):
        for key, ev in sel.select(0.2):
            s, v = key.fileobj, st[key.fileobj]
            if ev & selectors.EVENT_READ:
                try:
                    d = s.recv(65536)
                except OSError:
                    d = b""
                if d and v["answer_s"] is None:
                    v["answer_s"] = time.monotonic() - v["t"]
                v["got"] += d
                answered = b"\r\n\r\n" in v["got"] and not v["got"].startswith(b"HTTP/1.1 100")
                if not d or answered:
                    v["read_done"] = True
                # An answered client goes on pushing what it declared, as an attacker would,
                # until the server cuts it off.
                if v["read_done"] and (a.expect or v["sent"] >= a.push):
                    finish(s, v)
                    continue
                if v["read_done"]:
                    sel.modify(s, selectors.EVENT_WRITE)
                    continue
            if ev & selectors.EVENT_WRITE and v["sent"] < a.push:
                try:
                    v["sent"] += s.send(chunk[:min(len(chunk), a.push - v["sent"])])
                except BlockingIOError:
                    pass
                except OSError:
                    if v["read_done"]:
                        finish(s, v)
                    else:
                        sel.modify(s, selectors.EVENT_READ)
            elif ev & selectors.EVENT_WRITE:
                if v["read_done"]:
                    finish(s, v)
                else:
                    sel.modify(s, selectors.EVENT_READ)
    codes = {}
    worst = 0.0
    for v in st.values():
        line = v["got"].split(b"\r\n", 1)[0].decode(errors="replace")
        if line.startswith("HTTP/1.1 100"):
            line = v["got"].split(b"\r\n\r\n", 1)[-1].split(b"\r\n", 1)[0].decode(errors="replace")
        code = line.split(" ")[1] if line.startswith("HTTP/") else "none"
        codes[code] = codes.get(code, 0) + 1
        worst = max(worst, v["answer_s"] if v["answer_s"] is not None else 99.0)
    print(json.dumps({"codes": codes, "worst_answer_s": round(worst, 3),
                      "pushed_bytes": sum(v["sent"] for v in st.values())}))
    for s in st:
        s.close()


if __name__ == "__main__":
    main()
