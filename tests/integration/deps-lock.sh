#!/bin/bash
# SPDX-License-Identifier: MIT
# scripts/deps.sh on a machine where apt is busy (unattended-upgrades on a fresh VM): it waits
# for dpkg's lock, bounded, and says clearly when it stayed busy, instead of dying at once.
. "$(dirname "$0")/lib.sh"
cfs_require_root
cfs_require_cmd apt-get python3
[ -e /var/lib/dpkg/lock-frontend ] || cfs_skip "no dpkg lock file"
DEPS="$CFS_SRCDIR/scripts/deps.sh"
# hold_lock SECS: another "apt" holding the dpkg frontend lock for SECS seconds.
hold_lock() {
	python3 -c '
import fcntl, os, sys, time
fd = os.open("/var/lib/dpkg/lock-frontend", os.O_RDWR)
fcntl.lockf(fd, fcntl.LOCK_EX)
open(sys.argv[2], "w").close()
time.sleep(float(sys.argv[1]))
' "$1" "$CFS_TMP/held" &
	holder=$!
	cfs_track_pid "$holder"
	for _ in $(seq 1 100); do [ -e "$CFS_TMP/held" ] && return 0; sleep 0.05; done
	cfs_fail "the lock holder did not start"
}
# Apt busy for 3 s, deps.sh may wait 30 s: it waits and goes on.
hold_lock 3
t0=$(date +%s%N)
CFS_APT_LOCK_WAIT=30 cfs_bounded 60 "$DEPS" --wait-lock || cfs_fail "deps.sh did not wait for the lock"
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
[ "$ms" -ge 2000 ] || cfs_fail "deps.sh did not wait for the lock holder (${ms} ms)"
cfs_log "waited ${ms} ms for a 3 s lock holder"
wait "$holder" 2>/dev/null || true
cfs_untrack_pid "$holder"
rm -f "$CFS_TMP/held"
# Apt busy for longer than deps.sh may wait: exit 1 with what to do.
hold_lock 10
rc=0
CFS_APT_LOCK_WAIT=1 cfs_bounded 30 "$DEPS" --wait-lock 2>"$CFS_TMP/err" || rc=$?
cfs_assert_eq "$rc" 1 "exit status with apt busy"
grep -q "apt is busy" "$CFS_TMP/err" || cfs_fail "message: $(cat "$CFS_TMP/err")"
grep -q "CFS_APT_LOCK_WAIT" "$CFS_TMP/err" || cfs_fail "no hint: $(cat "$CFS_TMP/err")"
exit 0
