#!/bin/bash
# SPDX-License-Identifier: MIT
# The hand-off layer (basedir STORE:FUSE:HANDOFF): a real tree read through mount-image over an
# empty store never opens or reads a file through FUSE and fetches each object once; an overlay
# stacked on the composefs mount works with default options; files read survive kill -9 of the
# daemon; a failed fetch fails the open and a later open succeeds once the server is back; gc and
# eviction during reads cause no read error; a crash before the flush leaves no object under its
# store name and no trusted hand-off name.
. "$(dirname "$0")/lib.sh"
cfs_tree_fixture

objects_of_tree() {
	(cd "$src" && find . -type f -size +64c -exec "$CFS_STORE_BIN" digest {} + | cut -d' ' -f1 |
		sort -u | wc -l)
}
want=$(objects_of_tree)

# ---- where the hand-off directory may go: refused with a reason, nothing touched
sroot="$CFS_TMP/sroot"
mkdir -p "$sroot" "$CFS_TMP/r0"
mount -t tmpfs tmpfs "$sroot"
cfs_track_mount "$sroot"
refused() { # WHY ARGS...: cfs-cache must exit 1 naming WHY, and mount nothing
	local why=$1 rc=0
	shift
	"$CFS_CACHE_BIN" --server "$url" -f "$@" "$CFS_TMP/r0" 2>"$CFS_TMP/refused.err" || rc=$?
	cfs_assert_eq "$rc" 1 "exit status ($why)"
	grep -q "$why" "$CFS_TMP/refused.err" || cfs_fail "no '$why' in: $(cat "$CFS_TMP/refused.err")"
	mountpoint -q "$CFS_TMP/r0" && cfs_fail "mounted although refused ($why)"
	return 0
}
# The store is the root of its filesystem: its sibling is elsewhere.
refused "must be on the store's filesystem" --store "$sroot"
refused "keep it one level down" --store "$sroot"
refused "must not be inside the store" --store "$store" --handoff "$store/inside"
[ ! -e "$store/inside" ] || cfs_fail "a refused hand-off directory was left inside the store"
mkdir -p "$CFS_TMP/foreign"
echo precious >"$CFS_TMP/foreign/notes.txt"
refused "not a hand-off directory" --store "$store" --handoff "$CFS_TMP/foreign"
cfs_assert_eq "$(cat "$CFS_TMP/foreign/notes.txt")" precious "a refused directory was touched"
# One level down on that filesystem works.
cfs_start_cache "$sroot/objects" "$CFS_TMP/r0" --server "$url"
cfs_assert_eq "$(cfs_counter "$CFS_TMP/r0" handoff_dir)" "$sroot/objects.handoff" "hand-off one level down"
cfs_stop_cache "$CFS_TMP/r0"
rm -rf "$store" "$store.handoff"

# ---- a real tree over an empty store: zero FUSE opens and reads, every object fetched once
cfs_start_cache "$store" "$remote" --server "$url"
cfs_assert_eq "$(cfs_counter "$remote" handoff)" 1 "hand-off on by default"
handoff=$(cfs_counter "$remote" handoff_dir)
cfs_assert_eq "$handoff" "$(realpath "$store").handoff" "default hand-off directory"
mkdir -p "$mnt"
"$CFS_CACHE_BIN" mount-image "$image" "$mnt" --store "$store" --remote "$remote"
cfs_track_mount "$mnt"
grep " $mnt overlay " /proc/mounts | grep -q "$handoff" ||
	cfs_log "hand-off layer not shown in /proc/mounts options (kernel hides fd layers)"
diff -r --no-dereference "$src" "$mnt" || cfs_fail "tree differs"
cfs_settle "$remote"
cfs_assert_eq "$(cfs_counter "$remote" opens)" 0 "FUSE opens"
cfs_assert_eq "$(cfs_counter "$remote" reads)" 0 "FUSE reads"
cfs_assert_eq "$(cfs_counter "$remote" passthrough_opens)" 0 "passthrough opens"
cfs_assert_eq "$(cfs_counter "$remote" fetched)" "$want" "objects fetched"
cfs_assert_eq "$(cfs_store_count "$store")" "$want" "objects in the store"
[ "$(cfs_counter "$remote" handoffs)" -ge "$want" ] || cfs_fail "hand-offs below $want"
dups=$(awk '$1 == "GET" {print $2}' "$log" | sort | uniq -d | head -3)
[ -z "$dups" ] || cfs_fail "objects fetched twice: $dups"
cfs_assert_eq "$(awk '$1 == "GET"' "$log" | wc -l)" "$want" "GET requests"
# Objects in the hand-off directory are the store's own files (one inode, two names).
some=$(find "$handoff" -type f | head -1)
if [ -n "$some" ]; then
	rel=${some#"$handoff"/}
	cfs_assert_eq "$(stat -c %i "$some")" "$(stat -c %i "$store/$rel")" "hand-off name is a hard link"
fi
"$CFS_STORE_BIN" --no-progress verify "$store" >/dev/null || cfs_fail "store does not verify"
# The names go once their objects are durable in the store and the linger time is over.
# (checked at the crash step below, where they must not survive a restart either)

# ---- an overlay stacked on the composefs mount, as container engines do, default options
up="$CFS_TMP/up" stack="$CFS_TMP/stack"
mkdir -p "$up" "$stack"
mount -t tmpfs tmpfs "$up"
cfs_track_mount "$up"
mkdir -p "$up/upper" "$up/work"
mount -t overlay overlay -o "lowerdir=$mnt,upperdir=$up/upper,workdir=$up/work" "$stack" ||
	cfs_fail "an overlay on the composefs mount was refused"
cfs_track_mount "$stack"
cmp "$src/usr/lib/libbig.so" "$stack/usr/lib/libbig.so" || cfs_fail "stacked read differs"
echo "written in a container" >"$stack/etc/new-file"
cfs_assert_eq "$(cat "$stack/etc/new-file")" "written in a container" "stacked write"
cat "$src/usr/bin/tool" "$src/usr/bin/tool" >"$CFS_TMP/twice"
cat "$src/usr/bin/tool" >>"$stack/usr/bin/tool" # copy-up of a lazily fetched file
cmp "$CFS_TMP/twice" "$stack/usr/bin/tool" || cfs_fail "copy-up of a fetched file"
cfs_umount "$stack"

# ---- kill -9 of the daemon after a full read: every file read still reads back
kill -KILL "$CFS_CACHE_PID"
wait "$CFS_CACHE_PID" 2>/dev/null || true
cfs_untrack_pid "$CFS_CACHE_PID"
diff -r --no-dereference "$src" "$mnt" || cfs_fail "tree differs after kill -9"
sync
echo 3 >/proc/sys/vm/drop_caches
diff -r --no-dereference "$src" "$mnt" || cfs_fail "tree differs after kill -9 and drop_caches"
cfs_umount "$mnt"
cfs_umount "$remote"

# ---- a fetch that fails gives the reader an error; with the server back the next open works
store2="$CFS_TMP/store2" remote2="$CFS_TMP/remote2" mnt2="$CFS_TMP/mnt2"
port2=$(cfs_free_port)
cfs_start_cache "$store2" "$remote2" --server "http://127.0.0.1:$port2/objects" --retries 0 \
	--connect-timeout 1s
mkdir -p "$mnt2"
"$CFS_CACHE_BIN" mount-image "$image" "$mnt2" --store "$store2" --remote "$remote2"
cfs_track_mount "$mnt2"
if cfs_bounded 30 cat "$mnt2/usr/bin/tool" >/dev/null 2>"$CFS_TMP/err"; then
	cfs_fail "read with the server down succeeded"
fi
cfs_log "reader saw: $(cat "$CFS_TMP/err")"
[ "$(cfs_counter "$remote2" failures)" -ge 1 ] || cfs_fail "failure not counted"
grep -q "fetch of .* failed" "$CFS_TMP/cfs-cache.log" || cfs_fail "failure not logged"
cfs_start_nginx "$origin" "$port2"
cfs_bounded 30 cmp "$src/usr/bin/tool" "$mnt2/usr/bin/tool" ||
	cfs_fail "read after the server came back"
cfs_assert_eq "$(cfs_counter "$remote2" opens)" 0 "FUSE opens after the retry"

# ---- gc and eviction during reads through the mount: no read error
diff -r --no-dereference "$src" "$mnt2" >/dev/null || cfs_fail "tree differs (mount 2)"
files=$(cd "$src" && find . -type f -size +64c | sort)
errors=0 rounds=0
(
	end=$((SECONDS + 8))
	while [ $SECONDS -lt $end ]; do
		"$CFS_STORE_BIN" -q --no-progress gc --max-size 1 "$store2" >/dev/null 2>&1 || true
		[ "$(cfs_store_count "$store2")" -lt "$want" ] && touch "$CFS_TMP/gc-took-some"
		echo 2 >/proc/sys/vm/drop_caches
	done
) &
gcpid=$!
cfs_track_pid "$gcpid"
end=$((SECONDS + 8))
while [ $SECONDS -lt $end ] && [ $rounds -lt 400 ]; do
	for f in $files; do
		cmp -s "$src/$f" "$mnt2/$f" || { errors=$((errors + 1)); cfs_log "read error: $f"; }
	done
	rounds=$((rounds + 1))
done
wait "$gcpid" || true
cfs_untrack_pid "$gcpid"
cfs_log "gc/eviction during reads: $rounds rounds, $errors errors"
[ "$rounds" -ge 2 ] || cfs_fail "too few read rounds ($rounds)"
cfs_assert_eq "$errors" 0 "read errors during gc"
# The gc really took objects away under the readers (who then found them in the hand-off
# directory, or had them fetched again).
[ -e "$CFS_TMP/gc-took-some" ] || cfs_fail "gc removed nothing during the reads"
cfs_assert_eq "$(cfs_counter "$remote2" opens)" 0 "FUSE opens during gc"
cfs_umount "$mnt2"
cfs_stop_cache "$remote2"

# ---- crash between the hand-off and the flush: nothing unflushed under a store name
store3="$CFS_TMP/store3" remote3="$CFS_TMP/remote3" mnt3="$CFS_TMP/mnt3"
cfs_start_cache "$store3" "$remote3" --server "$url" --commit-delay 1h
mkdir -p "$mnt3"
"$CFS_CACHE_BIN" mount-image "$image" "$mnt3" --store "$store3" --remote "$remote3"
cfs_track_mount "$mnt3"
cmp "$src/usr/lib/libbig.so" "$mnt3/usr/lib/libbig.so" || cfs_fail "read before the crash"
cmp "$src/usr/bin/tool2" "$mnt3/usr/bin/tool2" || cfs_fail "read before the crash"
cfs_assert_eq "$(cfs_store_count "$store3")" 0 "store names before the flush"
cfs_assert_eq "$(find "$store3.handoff" -type f | wc -l)" 2 "hand-off names before the flush"
kill -KILL "$CFS_CACHE_PID"
wait "$CFS_CACHE_PID" 2>/dev/null || true
cfs_untrack_pid "$CFS_CACHE_PID"
cmp "$src/usr/lib/libbig.so" "$mnt3/usr/lib/libbig.so" || cfs_fail "open file after the crash"
cfs_umount "$mnt3"
cfs_umount "$remote3"
cfs_assert_eq "$(cfs_store_count "$store3")" 0 "store names after the crash"
cfs_start_cache "$store3" "$remote3" --server "$url"
cfs_assert_eq "$(find "$store3.handoff" -type f | wc -l)" 0 "hand-off names trusted after a restart"
"$CFS_STORE_BIN" --no-progress verify "$store3" >"$CFS_TMP/verify3" 2>&1 ||
	cfs_fail "store does not verify after the crash: $(cat "$CFS_TMP/verify3")"
# The crashed daemon's temp files are gone (the new one's own, made ahead, are locked by it).
grep -q "^0 objects ok, 0 corrupt, 0 misnamed, 0 stray, 0 temp" "$CFS_TMP/verify3" ||
	cfs_fail "after the restart: $(cat "$CFS_TMP/verify3")"
"$CFS_CACHE_BIN" mount-image "$image" "$mnt3" --store "$store3" --remote "$remote3"
diff -r --no-dereference "$src" "$mnt3" || cfs_fail "tree differs after the restart"
cfs_settle "$remote3"
cfs_assert_eq "$(cfs_store_count "$store3")" "$want" "objects after the restart"
"$CFS_STORE_BIN" --no-progress verify "$store3" >/dev/null || cfs_fail "store 3 does not verify"
exit 0
