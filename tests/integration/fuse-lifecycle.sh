#!/bin/bash
# SPDX-License-Identifier: MIT
# cfs-cache as a program: help/version/misuse exit codes, mounting through mount.fuse3 with -o
# options (the fstab form), SIGTERM during a download (clean exit, no temp files left, the next
# start serves the object), unmount ending the daemon, and a killed reader not waiting for its
# download.
. "$(dirname "$0")/lib.sh"
cfs_require_fuse
cfs_require_cmd nginx getfattr mount.fuse3

"$CFS_CACHE_BIN" --help | grep -q -- '--server' || cfs_fail "--help"
"$CFS_CACHE_BIN" --version | grep -q cfscache || cfs_fail "--version"
set +e
"$CFS_CACHE_BIN" "$CFS_TMP/nowhere" 2>/dev/null
cfs_assert_eq "$?" 2 "exit code without --store"
"$CFS_CACHE_BIN" --store "$CFS_TMP/s" --max-size bogus "$CFS_TMP/nowhere" 2>/dev/null
cfs_assert_eq "$?" 2 "exit code for a bad --max-size"
"$CFS_CACHE_BIN" stats "$CFS_TMP" 2>/dev/null
cfs_assert_eq "$?" 1 "stats of a directory that is not a mount"
set -e

src="$CFS_TMP/src" origin="$CFS_TMP/origin" store="$CFS_TMP/store" remote="$CFS_TMP/remote"
mkdir -p "$src" "$remote"
cfs_make_file "$src/small" 100000 1
cfs_make_file "$src/large" $((32 * 1048576)) 2
"$CFS_STORE_BIN" -q --no-progress import "$src" "$origin"
small=$(cfs_object_of "$src/small") large=$(cfs_object_of "$src/large")
port=$(cfs_free_port)
cfs_start_nginx "$origin" "$port" "limit_rate 2m;"
url="http://127.0.0.1:$port/objects"

# fstab form: mount.fuse3 runs "cfs-cache SOURCE MOUNTPOINT -o ...", daemonized.
mount -t fuse "$CFS_CACHE_BIN#$url" "$remote" -o "store=$store,allow_other,max_transfers=8,no_handoff"
cfs_track_mount "$remote"
cmp "$src/small" "$remote/$small" || cfs_fail "read through the fstab-style mount"
getfattr --absolute-names --only-values -n user.cfs.server.0 "$remote" | grep -q "^$url state=up" ||
	cfs_fail "server from the mount source"
daemon=$(pgrep -f "cfs-cache $url $remote" | head -1)
[ -n "$daemon" ] || cfs_fail "no daemon process"
umount "$remote"
for _ in $(seq 1 50); do kill -0 "$daemon" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$daemon" 2>/dev/null; then cfs_fail "daemon still running after umount"; fi

# SIGTERM during a download: the daemon exits 0, unmounts, leaves no temp file.
"$CFS_CACHE_BIN" --store "$store" --server "$url" --no-handoff -f "$remote" 2>"$CFS_TMP/term.log" &
pid=$!
cfs_track_pid "$pid"
cfs_wait_mount "$remote"
(cat "$remote/$large" >/dev/null 2>&1 || true) &
reader=$!
cfs_wait_download "$store"
kill -TERM "$pid"
rc=0
cfs_bounded 20 tail --pid="$pid" -f /dev/null || cfs_fail "daemon did not exit on SIGTERM"
wait "$pid" || rc=$?
cfs_untrack_pid "$pid"
cfs_assert_eq "$rc" 0 "exit status after SIGTERM"
wait "$reader" 2>/dev/null || true
mountpoint -q "$remote" && cfs_fail "still mounted after SIGTERM"
cfs_assert_eq "$(ls -A "$store/.cfs-tmp" | wc -l)" 0 "temp files after SIGTERM"
[ ! -e "$store/$large" ] || cfs_fail "a partial object was saved"
# The next start serves it.
cfs_start_cache "$store" "$remote" --server "$url" --no-handoff
cfs_bounded 60 cmp "$src/large" "$remote/$large" || cfs_fail "read after restart"
cfs_stop_cache "$remote"

# A reader killed while its object downloads ends at once (the interrupt is answered with
# EINTR); the download goes on and the object lands in the store for the next reader.
rm -f "$store/$large"
cfs_start_cache "$store" "$remote" --server "$url" --no-handoff
cat "$remote/$large" >/dev/null 2>&1 &
reader=$!
cfs_wait_download "$store"
t0=$(date +%s%N)
kill -TERM "$reader"
cfs_bounded 10 tail --pid="$reader" -f /dev/null || cfs_fail "killed reader still waits"
ms=$((($(date +%s%N) - t0) / 1000000))
[ "$ms" -lt 3000 ] || cfs_fail "killed reader took ${ms} ms to end (the download takes ~16 s)"
[ ! -e "$store/$large" ] || cfs_fail "object complete before the reader ended: test too fast"
for _ in $(seq 1 300); do [ -e "$store/$large" ] && break; sleep 0.1; done
[ -e "$store/$large" ] || cfs_fail "the download did not finish after the reader left"
cmp "$src/large" "$remote/$large" || cfs_fail "read after an interrupted wait"
cfs_assert_eq "$(cfs_counter "$remote" requests)" 1 "GETs for the interrupted object"
cfs_stop_cache "$remote"
echo "PASS: fuse-lifecycle"
