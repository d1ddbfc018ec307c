#!/bin/bash
# SPDX-License-Identifier: MIT
# Surviving a daemon crash or upgrade without unmounting. 24 readers of objects not fetched yet
# wait on a slow server through a composefs mount; then (1) kill -9 under a service manager
# (tests/integration/svcmgr.py plays systemd: NOTIFY_SOCKET, FDSTORE, LISTEN_FDS), (2) SIGHUP
# (re-exec of the binary), (3) kill -9 of the worker under --supervise. Each time every reader
# gets the right bytes, the FUSE mountpoint has exactly one mount, and a new miss works. READY=1
# comes only once the mount exists; a second cfs-cache on a live mountpoint refuses. (4) On a
# kernel without FUSE_NOTIFY_RESEND (played with CFS_DEVIO_NO_RESEND) the readers waiting at the
# crash get an error at once instead of waiting for ever, and their next try works.
. "$(dirname "$0")/lib.sh"
cfs_require_cmd python3
NREAD=24
add_slow_files() {
	mkdir -p "$src/slow"
	for i in $(seq 1 $((4 * NREAD + 4))); do cfs_make_file "$src/slow/f$i" $((96 * 1024 + i)) $((500 + i)); done
}
cfs_tree_fixture add_slow_files
# The objects arrive slowly (about 2 s each), so readers are still waiting at the crash.
cfs_stop_pid "$CFS_NGINX_PID"
cfs_start_nginx "$origin" "$port" "limit_rate 48k;"
SVC="$CFS_SRCDIR/tests/integration/svcmgr.py"
mkdir -p "$mnt" "$remote"

one_mount() {
	cfs_assert_eq "$(awk -v m="$remote" '$2 == m' /proc/self/mounts | wc -l)" 1 "mounts on $remote ($1)"
}
# start_readers FIRST: $NREAD readers of slow/fFIRST.. through the composefs mount, outputs kept.
start_readers() {
	local first=$1 i
	readers=""
	for i in $(seq "$first" $((first + NREAD - 1))); do
		(cat "$mnt/slow/f$i" >"$CFS_TMP/out.$i" 2>"$CFS_TMP/err.$i" && touch "$CFS_TMP/ok.$i") &
		readers="$readers $!"
	done
	# Every reader waits in a lookup the daemon has read (counted as pending).
	for _ in $(seq 1 200); do
		[ "$(cfs_counter "$remote" pending)" = "$NREAD" ] && return 0
		sleep 0.05
	done
	cfs_fail "readers are not all waiting (pending $(cfs_counter "$remote" pending))"
}
# check_readers FIRST WHAT: every reader ends (bounded) with the right bytes.
check_readers() {
	local first=$1 what=$2 i p t0 longest
	t0=$(date +%s%N)
	for p in $readers; do cfs_bounded 120 tail --pid="$p" -f /dev/null || cfs_fail "$what: a reader hung"; done
	longest=$(( ($(date +%s%N) - t0) / 1000000 ))
	for i in $(seq "$first" $((first + NREAD - 1))); do
		[ -e "$CFS_TMP/ok.$i" ] || cfs_fail "$what: reader of f$i failed: $(cat "$CFS_TMP/err.$i")"
		cmp -s "$src/slow/f$i" "$CFS_TMP/out.$i" || cfs_fail "$what: reader of f$i got wrong bytes"
	done
	cfs_log "$what: $NREAD readers right; the last finished ${longest} ms after the restart"
}
# stop_service PID WHAT: SIGTERM to a service manager or supervisor; it must end, and with it
# the mount.
stop_service() {
	kill -TERM "$1"
	cfs_bounded 40 tail --pid="$1" -f /dev/null || cfs_fail "$2 did not stop"
	cfs_untrack_pid "$1"
	if mountpoint -q "$remote"; then cfs_fail "the mount is still there after stopping $2"; fi
	return 0
}
# first_answer: ms from now until the new daemon answers its first request (a counter read).
wait_answer() {
	local t0=$1
	for _ in $(seq 1 400); do
		if cfs_counter "$remote" lookups >/dev/null; then
			echo $(( ($(date +%s%N) - t0) / 1000000 ))
			return 0
		fi
		sleep 0.025
	done
	cfs_fail "the mount did not answer after the restart"
}

# ---- 1. under a service manager: readiness, fd store, kill -9, restart with LISTEN_FDS
events="$CFS_TMP/events"
python3 "$SVC" "$events" "$remote" -- "$CFS_CACHE_BIN" --store "$store" --server "$url" -f \
	"$remote" 2>>"$CFS_TMP/cfs-cache.log" &
mgr=$!
cfs_track_pid "$mgr"
cfs_track_mount "$remote"
for _ in $(seq 1 200); do grep -q '^READY' "$events" 2>/dev/null && break; sleep 0.05; done
grep -q '^READY pid=[0-9]* mounted=1' "$events" || cfs_fail "READY=1 before the mount, or none: $(cat "$events")"
grep -q '^FDSTORE .*name=cfs-fuse' "$events" || cfs_fail "connection not in the fd store: $(cat "$events")"
grep -q '^FDSTORE .*name=cfs-init' "$events" || cfs_fail "INIT state not in the fd store"
first_pid=$(sed -n 's/^START pid=\([0-9]*\).*/\1/p' "$events" | head -1)
"$CFS_CACHE_BIN" mount-image "$image" "$mnt" --store "$store" --remote "$remote"
cfs_track_mount "$mnt"
one_mount "started"

# A second cfs-cache on the live mountpoint refuses, and says what to do.
rc=0
"$CFS_CACHE_BIN" --store "$store" --server "$url" -f "$remote" 2>"$CFS_TMP/second.err" || rc=$?
[ "$rc" != 0 ] || cfs_fail "a second cfs-cache on a live mountpoint started"
grep -q "already served by a live cfs-cache" "$CFS_TMP/second.err" ||
	cfs_fail "second daemon: $(cat "$CFS_TMP/second.err")"
one_mount "after a refused second daemon"

start_readers 1
t0=$(date +%s%N)
kill -KILL "$first_pid"
for _ in $(seq 1 200); do [ "$(grep -c '^READY' "$events")" -ge 2 ] && break; sleep 0.05; done
[ "$(grep -c '^READY' "$events")" -ge 2 ] || cfs_fail "no restart: $(cat "$events")"
grep -q '^START pid=[0-9]* fds=cfs-fuse,cfs-init' "$events" || cfs_fail "restart without the stored fds"
cfs_log "crash to first answer: $(wait_answer "$t0") ms"
check_readers 1 "kill -9 under a service manager"
grep -q "the kernel resends what was in flight" "$CFS_TMP/cfs-cache.log" ||
	cfs_fail "the new daemon did not ask for a resend"
one_mount "after the restart"
cmp "$src/slow/f$((4 * NREAD + 1))" "$mnt/slow/f$((4 * NREAD + 1))" || cfs_fail "a new miss after the restart"
diff -r --no-dereference "$src/etc" "$mnt/etc" || cfs_fail "tree after the restart"
cfs_umount "$mnt"
stop_service "$mgr" "the service manager"
"$CFS_STORE_BIN" --no-progress verify "$store" >/dev/null || cfs_fail "store after the crash"

# ---- 2. upgrade: SIGHUP re-executes the binary on the same connection
cfs_start_cache "$store" "$remote" --server "$url"
"$CFS_CACHE_BIN" mount-image "$image" "$mnt" --store "$store" --remote "$remote"
start_readers $((NREAD + 1))
t0=$(date +%s%N)
kill -HUP "$CFS_CACHE_PID"
cfs_log "upgrade to first answer: $(wait_answer "$t0") ms"
check_readers $((NREAD + 1)) "SIGHUP upgrade"
kill -0 "$CFS_CACHE_PID" || cfs_fail "the daemon is gone after SIGHUP"
grep -q "re-executing" "$CFS_TMP/cfs-cache.log" || cfs_fail "no re-exec logged"
one_mount "after the upgrade"
cmp "$src/slow/f$((4 * NREAD + 2))" "$mnt/slow/f$((4 * NREAD + 2))" || cfs_fail "a new miss after the upgrade"
cfs_umount "$mnt"
cfs_stop_cache "$remote"
mountpoint -q "$remote" && cfs_fail "the mount is still there after stopping the upgraded daemon"

# ---- 3. outside systemd: --supervise restarts a worker killed with -9
"$CFS_CACHE_BIN" --store "$store" --server "$url" --supervise -f "$remote" 2>>"$CFS_TMP/cfs-cache.log" &
sup=$!
cfs_track_pid "$sup"
cfs_wait_mount "$remote"
for _ in $(seq 1 100); do cfs_counter "$remote" lookups >/dev/null && break; sleep 0.05; done
"$CFS_CACHE_BIN" mount-image "$image" "$mnt" --store "$store" --remote "$remote"
start_readers $((2 * NREAD + 1))
worker=$(pgrep -P "$sup" | head -1)
[ -n "$worker" ] || cfs_fail "no worker under the supervisor"
t0=$(date +%s%N)
kill -KILL "$worker"
cfs_log "worker crash to first answer: $(wait_answer "$t0") ms"
check_readers $((2 * NREAD + 1)) "kill -9 of a supervised worker"
one_mount "after the worker restart"
[ "$(pgrep -P "$sup" | head -1)" != "$worker" ] || cfs_fail "the same worker?"
cmp "$src/slow/f$((4 * NREAD + 3))" "$mnt/slow/f$((4 * NREAD + 3))" || cfs_fail "a new miss after the worker restart"
cfs_umount "$mnt"
stop_service "$sup" "the supervisor"
"$CFS_STORE_BIN" --no-progress verify "$store" >/dev/null || cfs_fail "store after the supervised crash"
# ---- 4. a kernel that cannot resend: the waiting readers get an error, not a hang
rm -f "$events"
CFS_DEVIO_NO_RESEND=1 python3 "$SVC" "$events" "$remote" -- "$CFS_CACHE_BIN" --store "$store" \
	--server "$url" -f "$remote" 2>>"$CFS_TMP/cfs-cache.log" &
mgr=$!
cfs_track_pid "$mgr"
for _ in $(seq 1 200); do grep -q '^READY' "$events" 2>/dev/null && break; sleep 0.05; done
first_pid=$(sed -n 's/^START pid=\([0-9]*\).*/\1/p' "$events" | head -1)
"$CFS_CACHE_BIN" mount-image "$image" "$mnt" --store "$store" --remote "$remote"
start_readers $((3 * NREAD + 1))
kill -KILL "$first_pid"
t0=$(date +%s%N)
for p in $readers; do cfs_bounded 30 tail --pid="$p" -f /dev/null || cfs_fail "no resend: a reader hung"; done
cfs_log "no resend: every waiting reader ended $(( ($(date +%s%N) - t0) / 1000000 )) ms after the crash"
grep -q "answered with EIO" "$CFS_TMP/cfs-cache.log" || cfs_fail "the fallback was not logged"
failed=0
for i in $(seq $((3 * NREAD + 1)) $((4 * NREAD))); do
	if [ -e "$CFS_TMP/ok.$i" ]; then
		cmp -s "$src/slow/f$i" "$CFS_TMP/out.$i" || cfs_fail "no resend: wrong bytes for f$i"
	else
		failed=$((failed + 1))
	fi
done
[ "$failed" -gt 0 ] || cfs_fail "no reader saw the lost requests (the fallback did nothing?)"
for i in $(seq $((3 * NREAD + 1)) $((4 * NREAD))); do
	cfs_bounded 60 cmp "$src/slow/f$i" "$mnt/slow/f$i" || cfs_fail "no resend: retry of f$i"
done
cfs_log "no resend: $failed readers got an error, every retry read the right bytes"
one_mount "after a restart without resend"
cfs_umount "$mnt"
stop_service "$mgr" "the service manager"
exit 0
