#!/bin/bash
# SPDX-License-Identifier: MIT
# Cache lifecycle through a real composefs mount: the store stays within --max-size (plus one
# in-flight object) while an image twice that size reads back correctly (evicted objects are
# refetched), --pin objects survive, gc keeps exactly the referenced set, and a --trace recorded
# in one run replays in the same order with prefetch --order. With --rescan, objects that other
# processes add or remove are counted, and the store is brought back under its quota.
. "$(dirname "$0")/lib.sh"
cfs_require_fuse
cfs_require_cmd nginx mkfs.erofs setfattr getfattr

big="$CFS_TMP/big" pinned="$CFS_TMP/pinned" origin="$CFS_TMP/origin"
store="$CFS_TMP/store" remote="$CFS_TMP/remote" mnt="$CFS_TMP/mnt" pmnt="$CFS_TMP/pmnt"
mkdir -p "$mnt" "$pmnt"
mkdir -p "$big/d" "$pinned"
# 48 objects of 256 KiB + i: 12 MiB, twice the 6 MiB quota.
for i in $(seq 1 48); do cfs_make_file "$big/d/f$i" $((262144 + i)) $((300 + i)); done
for i in $(seq 1 6); do cfs_make_file "$pinned/p$i" $((131072 + i)) $((400 + i)); done
cfs_mkimage "$big" "$origin" "$CFS_TMP/big.cfs"
cfs_mkimage "$pinned" "$origin" "$CFS_TMP/pinned.cfs"
quota=$((6 * 1048576))
largest=$((262144 + 48))
port=$(cfs_free_port)
cfs_start_nginx "$origin" "$port"
log="$CFS_TMP/nginx-$port/access.log"
url="http://127.0.0.1:$port/objects"

store_bytes() {
	find "$store" -mindepth 2 -maxdepth 2 -type f -path "$store/[0-9a-f][0-9a-f]/*" -printf '%s\n' |
		awk '{s += $1} END {print s + 0}'
}

cfs_start_cache "$store" "$remote" --server "$url" --max-size "$quota" \
	--pin "$CFS_TMP/pinned.cfs" --trace "$CFS_TMP/trace"
"$CFS_CACHE_BIN" mount-image "$CFS_TMP/big.cfs" "$mnt" --store "$store" --remote "$remote"
cfs_track_mount "$mnt"
"$CFS_CACHE_BIN" mount-image "$CFS_TMP/pinned.cfs" "$pmnt" --store "$store" --remote "$remote"
cfs_track_mount "$pmnt"
diff -r "$pinned" "$pmnt" || cfs_fail "pinned image differs"

# Sample the store size while reading the whole big image, twice.
(
	max=0
	for _ in $(seq 1 2000); do
		[ -e "$CFS_TMP/stop-sampler" ] && break
		s=$(store_bytes)
		[ "$s" -gt "$max" ] && max=$s
		echo "$max" >"$CFS_TMP/max-sampled"
		sleep 0.02
	done
) &
sampler=$!
cfs_track_pid "$sampler"
for pass in 1 2; do
	# overlayfs keeps the data file of an inode it has looked up (an evicted object stays
	# readable from its unlinked inode); dropping its inodes makes pass 2 look them up again.
	# Objects count for the quota once they have their store names: wait for the commits.
	if [ "$pass" = 2 ]; then
		cfs_settle "$remote"
		echo 2 >/proc/sys/vm/drop_caches
	fi
	for i in $(seq 1 48); do
		cmp "$big/d/f$i" "$mnt/d/f$i" || cfs_fail "pass $pass: d/f$i differs"
	done
done
cfs_settle "$remote"
touch "$CFS_TMP/stop-sampler"
wait "$sampler" || true
max_sampled=$(cat "$CFS_TMP/max-sampled")
pinned_bytes=$(find "$pinned" -type f -printf '%s\n' | awk '{s += $1} END {print s}')
cfs_log "largest store size sampled: $max_sampled (quota $quota, pinned $pinned_bytes)"
[ "$max_sampled" -le $((quota + largest)) ] || cfs_fail "store grew to $max_sampled > quota + one object"
[ "$(store_bytes)" -le "$quota" ] || cfs_fail "store over quota at rest: $(store_bytes)"
evictions=$(cfs_counter "$remote" evictions)
[ "$evictions" -gt 0 ] || cfs_fail "nothing was evicted"
# Evicted objects were fetched again in pass 2.
refetched=$(awk '$1 == "GET" {print $2}' "$log" | sort | uniq -d | wc -l)
[ "$refetched" -gt 0 ] || cfs_fail "no object was refetched after eviction"
# Pinned objects survived all of it.
for f in "$pinned"/*; do
	[ -f "$store/$(cfs_object_of "$f")" ] || cfs_fail "pinned object of $(basename "$f") evicted"
done
cfs_assert_eq "$(cfs_counter "$remote" pinned)" 6 "pinned counter"
"$CFS_STORE_BIN" --no-progress verify "$store" >/dev/null || cfs_fail "store does not verify"
cfs_umount "$pmnt"
cfs_umount "$mnt"
cfs_stop_cache "$remote"

# gc --unreferenced keeps exactly the objects of the kept image.
gcstore="$CFS_TMP/gcstore"
cp -a "$origin" "$gcstore"
# zstd side files as cfs-serve leaves them: of a kept object, of one gc removes, of one already
# gone, and unfinished ones of a crashed server, old and fresh.
keep_obj=$("$CFS_STORE_BIN" objects "$CFS_TMP/pinned.cfs" | head -1)
drop_obj=$(cd "$gcstore" && find . -mindepth 2 -type f -path './[0-9a-f][0-9a-f]/*' | sed 's|^\./||' |
	grep -vxF -f <("$CFS_STORE_BIN" objects "$CFS_TMP/pinned.cfs") | head -1)
gone_obj=ff/$(printf '%062d' 0)
[ -n "$keep_obj" ] && [ -n "$drop_obj" ] || cfs_fail "no objects to test side files with"
for o in "$keep_obj" "$drop_obj" "$gone_obj"; do
	mkdir -p "$gcstore/.cfs-zstd/${o%%/*}"
	echo side >"$gcstore/.cfs-zstd/$o.zst"
done
echo raw >"$gcstore/.cfs-zstd/$gone_obj.raw"
echo old >"$gcstore/.cfs-zstd/ff/.tmp-old-1-1"
touch -d '2 hours ago' "$gcstore/.cfs-zstd/ff/.tmp-old-1-1"
echo new >"$gcstore/.cfs-zstd/ff/.tmp-new-1-2"
"$CFS_STORE_BIN" gc --keep "$CFS_TMP/pinned.cfs" --unreferenced "$gcstore" >"$CFS_TMP/gc.out"
cat "$CFS_TMP/gc.out" >&2
[ -f "$gcstore/.cfs-zstd/$keep_obj.zst" ] || cfs_fail "gc removed the side file of a kept object"
[ ! -e "$gcstore/.cfs-zstd/$drop_obj.zst" ] || cfs_fail "gc left the side file of a removed object"
[ ! -e "$gcstore/.cfs-zstd/$gone_obj.zst" ] || cfs_fail "gc left the side file of an absent object"
[ ! -e "$gcstore/.cfs-zstd/$gone_obj.raw" ] || cfs_fail "gc left the marker of an absent object"
[ ! -e "$gcstore/.cfs-zstd/ff/.tmp-old-1-1" ] || cfs_fail "gc left an old unfinished side file"
[ -f "$gcstore/.cfs-zstd/ff/.tmp-new-1-2" ] || cfs_fail "gc removed a fresh unfinished side file"
grep -q 'removed 3 zstd side files of absent objects' "$CFS_TMP/gc.out" ||
	cfs_fail "gc did not report the side files it removed"
(cd "$gcstore" && find . -mindepth 2 -type f -path './[0-9a-f][0-9a-f]/*' | sed 's|^\./||' | sort) >"$CFS_TMP/after-gc"
"$CFS_STORE_BIN" objects "$CFS_TMP/pinned.cfs" | sort >"$CFS_TMP/want-gc"
diff -u "$CFS_TMP/want-gc" "$CFS_TMP/after-gc" || cfs_fail "gc kept the wrong set"
# gc --max-size with a kept image: unpinned objects go first, down to the size.
cp -a "$origin" "$CFS_TMP/gc2"
"$CFS_STORE_BIN" -q gc --max-size 2M --keep "$CFS_TMP/pinned.cfs" "$CFS_TMP/gc2"
total=$(find "$CFS_TMP/gc2" -mindepth 2 -type f -path "$CFS_TMP/gc2/[0-9a-f][0-9a-f]/*" -printf '%s\n' | awk '{s += $1} END {print s}')
[ "$total" -le $((2 * 1048576)) ] || cfs_fail "gc --max-size left $total bytes"
for f in "$pinned"/*; do
	[ -f "$CFS_TMP/gc2/$(cfs_object_of "$f")" ] || cfs_fail "gc --max-size removed a kept object"
done
# Misuse: --unreferenced without --keep would delete everything.
set +e
"$CFS_STORE_BIN" gc --unreferenced "$CFS_TMP/gc2" 2>/dev/null
cfs_assert_eq "$?" 2 "gc --unreferenced without --keep"
set -e

# The trace of a run replays in the same order.
rm -rf "$store"
: >"$CFS_TMP/trace"
cfs_start_cache "$store" "$remote" --server "$url" --trace "$CFS_TMP/trace"
"$CFS_CACHE_BIN" mount-image "$CFS_TMP/big.cfs" "$mnt" --store "$store" --remote "$remote"
for i in 17 3 29 41 8 22; do cat "$mnt/d/f$i" >/dev/null; done
cfs_umount "$mnt"
cfs_stop_cache "$remote"
cfs_assert_eq "$(wc -l <"$CFS_TMP/trace")" 6 "trace lines"
for i in 17 3 29 41 8 22; do cfs_object_of "$big/d/f$i"; done >"$CFS_TMP/want-order"
cut -d' ' -f1 "$CFS_TMP/trace" >"$CFS_TMP/trace-order"
diff -u "$CFS_TMP/want-order" "$CFS_TMP/trace-order" || cfs_fail "trace order"
# nginx appends to its access log (O_APPEND): the truncated file gets the next lines, without a
# reopen to wait for.
: >"$log"
"$CFS_CACHE_BIN" prefetch --image "$CFS_TMP/big.cfs" --order "$CFS_TMP/trace" --jobs 1 \
	--store "$CFS_TMP/replay" --server "$url" --no-progress -q
awk '$1 == "GET" {sub("^/objects/", "", $2); print $2}' "$log" | head -6 >"$CFS_TMP/replay-order"
diff -u "$CFS_TMP/want-order" "$CFS_TMP/replay-order" || cfs_fail "replay order differs"
"$CFS_STORE_BIN" missing-objects --store "$CFS_TMP/replay" "$CFS_TMP/big.cfs" >"$CFS_TMP/missing"
[ ! -s "$CFS_TMP/missing" ] || cfs_fail "prefetch left objects missing"

# Objects another process adds to a mounted store's directory (prefetch) are counted at the next
# rescan and the store is brought back under --max-size; objects it removes stop counting.
rm -rf "$store"
cfs_start_cache "$store" "$remote" --server "$url" --max-size "$quota" --rescan 1 \
	--pin "$CFS_TMP/pinned.cfs" --log-level info
"$CFS_CACHE_BIN" prefetch --image "$CFS_TMP/pinned.cfs" --store "$store" --server "$url" \
	--no-progress -q
pinned_objects=$(cfs_store_count "$store")
for _ in $(seq 1 50); do
	[ "$(cfs_counter "$remote" store_objects)" = "$pinned_objects" ] && break
	sleep 0.1
done
cfs_assert_eq "$(cfs_counter "$remote" store_objects)" "$pinned_objects" "objects counted after a prefetch by another process"
"$CFS_CACHE_BIN" prefetch --image "$CFS_TMP/big.cfs" --store "$store" --server "$url" \
	--no-progress -q
[ "$(store_bytes)" -gt "$quota" ] || cfs_fail "the prefetch did not overfill the store (test setup)"
for _ in $(seq 1 50); do
	[ "$(store_bytes)" -le "$quota" ] && break
	sleep 0.1
done
[ "$(store_bytes)" -le "$quota" ] || cfs_fail "store still over quota after rescans: $(store_bytes)"
cfs_assert_eq "$(cfs_counter "$remote" store_objects)" "$(cfs_store_count "$store")" "objects counted after eviction"
[ "$(cfs_counter "$remote" store_bytes)" -le "$quota" ] || cfs_fail "store_bytes counter over quota"
for f in "$pinned"/*; do
	[ -f "$store/$(cfs_object_of "$f")" ] || cfs_fail "rescan evicted pinned object of $(basename "$f")"
done
# Removed by another process (gc): no longer counted.
"$CFS_STORE_BIN" -q gc --keep "$CFS_TMP/pinned.cfs" --unreferenced "$store" >/dev/null
for _ in $(seq 1 50); do
	[ "$(cfs_counter "$remote" store_objects)" = "$pinned_objects" ] && break
	sleep 0.1
done
cfs_assert_eq "$(cfs_counter "$remote" store_objects)" "$pinned_objects" "objects counted after gc by another process"
grep -q "store rescan:" "$CFS_TMP/cfs-cache.log" || cfs_fail "no rescan log line"
cfs_stop_cache "$remote"
echo "PASS: cache-lifecycle"
