#!/bin/bash
# SPDX-License-Identifier: MIT
# Faults through a real composefs mount: a corrupt server fails the open and leaves a clean store;
# a dead server fails it quickly and a read succeeds once it is back, without remounting; with two
# servers one dead reads succeed; kill -9 mid-fetch leaves a store that verifies after restart.
. "$(dirname "$0")/lib.sh"
add_slow() { cfs_make_file "$src/usr/lib/slow.bin" $((24 * 1048576)) 77; }
cfs_tree_fixture add_slow

mount_all() {
	cfs_start_cache "$store" "$remote" --connect-timeout 2 --low-speed-time 3 --retries 1 "$@"
	mkdir -p "$mnt"
	"$CFS_CACHE_BIN" mount-image "$image" "$mnt" --store "$store" --remote "$remote"
	cfs_track_mount "$mnt"
}
unmount_all() {
	cfs_umount "$mnt"
	cfs_stop_cache "$remote"
}

# 1. Corrupt object on the server: the open fails, nothing saved, store verifies. Through the
# hand-off layer the reader sees ENOENT: overlayfs reports the last data layer's answer
# (cfs-cache(1), "What a reader sees").
mount_all --server "$url"
victim="usr/lib/deep/er/still/data"
obj=$(cfs_object_of "$src/$victim")
cp "$origin/$obj" "$CFS_TMP/good-object"
printf 'X' | dd of="$origin/$obj" bs=1 seek=1000 conv=notrunc status=none
if out=$(cfs_bounded 60 cat "$mnt/$victim" 2>&1 >/dev/null); then
	cfs_fail "read of a corrupt object succeeded"
fi
echo "$out" | grep -q "No such file or directory" || cfs_fail "expected ENOENT, got: $out"
[ ! -e "$store/$obj" ] || cfs_fail "corrupt object saved"
[ "$(cfs_counter "$remote" verify_failures)" -ge 1 ] || cfs_fail "verify failure not counted"
"$CFS_STORE_BIN" --no-progress verify "$store" >/dev/null || cfs_fail "store not clean after corruption"
grep -q "$obj" "$CFS_TMP/cfs-cache.log" || cfs_fail "no log line names the object"
cp "$CFS_TMP/good-object" "$origin/$obj"

# 2. Server down: an error within the timeout; server back: the read succeeds without remount.
cfs_stop_pid "$CFS_NGINX_PID"
start=$(date +%s)
if cfs_bounded 60 cat "$mnt/usr/bin/tool" >/dev/null 2>&1; then
	cfs_fail "read succeeded with the server down"
fi
elapsed=$(( $(date +%s) - start ))
[ "$elapsed" -le 30 ] || cfs_fail "the error took ${elapsed}s"
cfs_start_nginx "$origin" "$port"
ok=""
for _ in $(seq 1 40); do
	if cmp -s "$src/usr/bin/tool" "$mnt/usr/bin/tool"; then ok=1; break; fi
	sleep 0.5
done
[ -n "$ok" ] || cfs_fail "read did not recover once the server came back"
cmp "$src/$victim" "$mnt/$victim" || cfs_fail "$victim differs once the server is good"
unmount_all

# 3. Two servers, the first dead: reads succeed.
dead=$(cfs_free_port)
mount_all --server "http://127.0.0.1:$dead/objects" --server "$url"
cmp "$src/usr/bin/tool2" "$mnt/usr/bin/tool2" || cfs_fail "failover read"
cmp "$src/etc/sixtyfive" "$mnt/etc/sixtyfive" || cfs_fail "failover read 2"
unmount_all

# 4. kill -9 of the daemon mid-fetch: restart finds a store that verifies, and the read works.
cfs_stop_pid "$CFS_NGINX_PID"
cfs_start_nginx "$origin" "$port" "limit_rate 4m;"
mount_all --server "$url"
slow=$(cfs_object_of "$src/usr/lib/slow.bin")
(cat "$mnt/usr/lib/slow.bin" >/dev/null 2>&1 || true) &
reader=$!
cfs_wait_download "$store" 2000000 # well under way: 2 of 24 MiB
kill -9 "$CFS_CACHE_PID"
wait "$reader" 2>/dev/null || true
cfs_umount "$mnt"
cfs_umount "$remote"
cfs_untrack_pid "$CFS_CACHE_PID"
[ ! -e "$store/$slow" ] || cfs_fail "partial object under its final name"
cfs_stop_pid "$CFS_NGINX_PID"
cfs_start_nginx "$origin" "$port"
mount_all --server "$url"
"$CFS_STORE_BIN" --no-progress verify "$store" >"$CFS_TMP/verify.out" ||
	cfs_fail "store after kill -9 and restart: $(cat "$CFS_TMP/verify.out")"
cmp "$src/usr/lib/slow.bin" "$mnt/usr/lib/slow.bin" || cfs_fail "read after restart"
unmount_all
