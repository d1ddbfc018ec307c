#!/bin/bash
# SPDX-License-Identifier: MIT
# A real composefs mount (EROFS + overlayfs) over an empty local store, cfs-cache and its hand-off
# directory: the tree
# reads back identical, `ls -lR` fetches nothing, one read fetches exactly one object, and after
# a remount reads are local-store hits that never reach FUSE.
. "$(dirname "$0")/lib.sh"
cfs_tree_fixture

cfs_start_cache "$store" "$remote" --server "http://127.0.0.1:$port/objects"
mkdir -p "$mnt"
"$CFS_CACHE_BIN" mount-image "$image" "$mnt" --store "$store" --remote "$remote"
cfs_track_mount "$mnt"

# The FUSE mount itself: 256 prefix dirs, malformed names refused without I/O.
cfs_assert_eq "$(ls "$remote" | wc -l)" 256 "prefix directories"
for bad in zz 0 000 AB; do
	[ ! -e "$remote/$bad" ] || cfs_fail "$bad exists"
done
[ ! -e "$remote/ab/CDEF" ] || cfs_fail "malformed object name exists"
[ ! -e "$remote/ab/$(printf '%062d' 0 | tr 0 A)" ] || cfs_fail "upper-case name exists"
[ "$(cfs_counter "$remote" rejected)" -ge 6 ] || cfs_fail "rejected counter"
cfs_assert_eq "$(cfs_counter "$remote" requests)" 0 "requests for malformed names"

# Laziness: listing and stat of everything fetches nothing.
ls -lR "$mnt" >/dev/null
find "$mnt" -type f -exec stat -c %s {} + >/dev/null
cfs_assert_eq "$(cfs_store_count "$store")" 0 "objects after ls -lR"
cfs_assert_eq "$(cfs_counter "$remote" misses)" 0 "misses after ls -lR"
cfs_assert_eq "$(grep -c '^GET ' "$log" || true)" 0 "requests after ls -lR"

# One read fetches exactly that object.
cmp "$src/usr/lib/libbig.so" "$mnt/usr/lib/libbig.so" || cfs_fail "libbig.so differs"
obj=$(cfs_object_of "$src/usr/lib/libbig.so")
cfs_settle "$remote"
cfs_assert_eq "$(cfs_store_count "$store")" 1 "objects after one read"
[ -f "$store/$obj" ] || cfs_fail "fetched object is not the one read"
cfs_assert_eq "$(cfs_nginx_gets "$log" "$obj")" 1 "GETs of the object"
cfs_assert_eq "$(cfs_counter "$remote" misses)" 1 "misses after one read"

# Everything reads back identical (inline, empty, hard links, symlinks included).
diff -r --no-dereference "$src" "$mnt" || cfs_fail "tree differs"
want=$(cd "$src" && find . -type f -size +64c -exec "$CFS_STORE_BIN" digest {} + | cut -d' ' -f1 | sort -u | wc -l)
cfs_settle "$remote"
cfs_assert_eq "$(cfs_store_count "$store")" "$want" "objects after diff -r"
# Each object crossed the network once.
dups=$(awk '$1 == "GET" {print $2}' "$log" | sort | uniq -d | head -3)
[ -z "$dups" ] || cfs_fail "objects fetched twice: $dups"
"$CFS_STORE_BIN" --no-progress verify "$store" >/dev/null || cfs_fail "store does not verify"
"$CFS_CACHE_BIN" stats "$remote" | grep -q '^fetched ' || cfs_fail "stats command"

# Remount everything with a fresh daemon: reads are local-store hits that never reach FUSE.
cfs_umount "$mnt"
cfs_stop_cache "$remote"
sync
echo 3 >/proc/sys/vm/drop_caches
requests_before=$(grep -c '^GET ' "$log")
cfs_start_cache "$store" "$remote" --server "http://127.0.0.1:$port/objects"
"$CFS_CACHE_BIN" mount-image "$image" "$mnt" --store "$store" --remote "$remote"
diff -r --no-dereference "$src" "$mnt" || cfs_fail "tree differs after remount"
cfs_assert_eq "$(cfs_counter "$remote" lookups)" 0 "FUSE object lookups after remount"
cfs_assert_eq "$(grep -c '^GET ' "$log")" "$requests_before" "requests after remount"
