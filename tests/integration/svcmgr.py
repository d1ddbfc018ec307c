#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# cfscache: plays systemd's part for one Type=notify service with a file descriptor store, as the
# tests need it (systemd does not run here). It owns NOTIFY_SOCKET, keeps the descriptors a
# service sends with FDSTORE=1 (by FDNAME), and when the service dies other than by a clean exit
# it starts it again with them in LISTEN_FDS / LISTEN_PID / LISTEN_FDNAMES, fds from 3, as
# systemd does with Restart=on-failure and FileDescriptorStoreMax=. Every event goes to the
# event file, one line each:
#   START pid=N fds=NAME,NAME   READY pid=N mounted=0|1   FDSTORE pid=N name=NAME
#   EXIT pid=N code=N|signal=N  STOP
# Usage: svcmgr.py EVENTS MOUNTPOINT [--max-restarts N] -- COMMAND ARGS...
# SIGTERM stops the service (SIGTERM to it) and then the manager.
import array
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time


def main():
    args = sys.argv[1:]
    if "--" not in args or len(args) < 4:
        sys.stderr.write(__doc__ or "usage: svcmgr.py EVENTS MOUNTPOINT -- COMMAND...\n")
        return 2
    sep = args.index("--")
    events_path, mountpoint = args[0], args[1]
    max_restarts = 5
    if "--max-restarts" in args[:sep]:
        max_restarts = int(args[args.index("--max-restarts") + 1])
    command = args[sep + 1:]

    events = open(events_path, "a", buffering=1)
    sockdir = tempfile.mkdtemp(prefix="svcmgr.")
    sockpath = os.path.join(sockdir, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(sockpath)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    store = {}  # FDNAME -> fd
    stopping = False

    def on_term(signum, frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)

    def start():
        names = list(store.keys())
        fds = [store[n] for n in names]
        env = dict(os.environ, NOTIFY_SOCKET=sockpath)
        env.pop("LISTEN_FDS", None)
        env.pop("LISTEN_PID", None)
        env.pop("LISTEN_FDNAMES", None)
        argv = command
        if fds:
            env["LISTEN_FDS"] = str(len(fds))
            env["LISTEN_FDNAMES"] = ":".join(names)
            # LISTEN_PID is the service's own pid: set by a shell that then becomes it.
            argv = ["/bin/sh", "-c", 'LISTEN_PID=$$; export LISTEN_PID; exec "$@"', "sh"] + command

        def place_fds():
            # Dup above the target range first so that no dup2 clobbers a later source.
            high = [os.dup(fd) for fd in fds]
            for i, fd in enumerate(high):
                os.dup2(fd, 3 + i, inheritable=True)
                os.close(fd)

        p = subprocess.Popen(argv, env=env, preexec_fn=place_fds, close_fds=False)
        events.write("START pid=%d fds=%s\n" % (p.pid, ",".join(names)))
        return p

    def receive(pid_filter):
        try:
            msg, anc, _flags, _addr = sock.recvmsg(4096, socket.CMSG_SPACE(16 * 4) + socket.CMSG_SPACE(12))
        except BlockingIOError:
            return
        fds = []
        sender = None
        for level, typ, data in anc:
            if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
                a = array.array("i")
                a.frombytes(data[: len(data) - (len(data) % a.itemsize)])
                fds.extend(a)
            elif level == socket.SOL_SOCKET and typ == socket.SCM_CREDENTIALS:
                sender = int.from_bytes(data[0:4], sys.byteorder)
        fields = {}
        for line in msg.decode(errors="replace").splitlines():
            if "=" in line:
                k, v = line.split("=", 1)
                fields[k] = v
        pid = sender if sender is not None else -1
        if fields.get("FDSTORE") == "1" and fds:
            name = fields.get("FDNAME", "stored")
            if name in store:
                os.close(store[name])
            store[name] = fds[0]
            for extra in fds[1:]:
                os.close(extra)
            events.write("FDSTORE pid=%d name=%s\n" % (pid, name))
        else:
            for fd in fds:
                os.close(fd)
        if fields.get("READY") == "1":
            mounted = 1 if os.path.ismount(mountpoint) else 0
            events.write("READY pid=%d mounted=%d\n" % (pid, mounted))

    sock.setblocking(False)
    proc = start()
    restarts = 0
    while True:
        receive(proc.pid)
        code = proc.poll()
        if code is None:
            if stopping:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                receive(proc.pid)
                events.write("EXIT pid=%d code=%d\n" % (proc.pid, proc.returncode))
                break
            time.sleep(0.01)
            continue
        # Drain what it said before it went.
        for _ in range(10):
            receive(proc.pid)
        if code < 0:
            events.write("EXIT pid=%d signal=%d\n" % (proc.pid, -code))
        else:
            events.write("EXIT pid=%d code=%d\n" % (proc.pid, code))
        if code == 0 or stopping or restarts >= max_restarts:
            break
        restarts += 1
        time.sleep(0.1)  # RestartSec=100ms
        proc = start()
    events.write("STOP\n")
    for fd in store.values():
        os.close(fd)
    sock.close()
    os.unlink(sockpath)
    os.rmdir(sockdir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
