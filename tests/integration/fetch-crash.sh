#!/bin/bash
# SPDX-License-Identifier: MIT
# kill -9 of cfs-cache fetch in the middle of transfers leaves no object under its final name,
# only temp files that the next run removes; the next run then completes and verifies.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/fetch-lib.sh"
fetch_need_faultd

src="$CFS_TMP/src"
: >"$CFS_TMP/list"
for i in 1 2 3 4; do
	d=$(fetch_add_object "$src" 400000 "$i")
	fetch_path "$d" >>"$CFS_TMP/list"
done
# Every first request drips; later ones are healthy.
fetch_start_faultd srv "$src" --fault '*=drip:4' --drip-bps 20000 --stall-secs 20
store="$CFS_TMP/store"
"$CFS_CACHE_BIN" fetch --no-progress --store "$store" --server "$FAULTD_URL" \
	--from "$CFS_TMP/list" >/dev/null 2>"$CFS_TMP/err1" &
pid=$!
cfs_track_pid "$pid"
# Wait until all four transfers are under way and have written something.
for _ in $(seq 1 50); do
	[ "$(grep -c '^GET ' "$CFS_TMP/srv.log")" -ge 4 ] && break
	sleep 0.1
done
cfs_wait_download "$store"
n=$(find "$store/.cfs-tmp" -type f | wc -l)
[ "$n" -ge 1 ] || cfs_fail "no temp files while transfers run"
kill -KILL "$pid"
wait "$pid" 2>/dev/null || true
cfs_untrack_pid "$pid"
objs=$(find "$store" -path "$store/.cfs-tmp" -prune -o -type f -print | wc -l)
cfs_assert_eq "$objs" 0 "objects present after kill -9 mid-transfer"
# The next run cleans the dead temp files and finishes the job.
cfs_bounded 60 "$CFS_CACHE_BIN" fetch --no-progress --store "$store" --server "$FAULTD_URL" \
	--from "$CFS_TMP/list" >"$CFS_TMP/out2" 2>"$CFS_TMP/err2" ||
	{ cat "$CFS_TMP/err2" >&2; cfs_fail "second run failed"; }
grep -q "^4 objects: 4 fetched" "$CFS_TMP/out2" || cfs_fail "$(cat "$CFS_TMP/out2")"
"$CFS_STORE_BIN" --no-progress verify "$store" >/dev/null || cfs_fail "store does not verify"
fetch_assert_no_temp "$store"
fetch_assert_no_sanitizer "$CFS_TMP/err2"
