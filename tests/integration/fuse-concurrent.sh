#!/bin/bash
# SPDX-License-Identifier: MIT
# 200 concurrent readers of one missing 50 MiB object through the composefs mount: one GET
# reaches the server and every reader gets the right bytes; misses for distinct objects overlap.
. "$(dirname "$0")/lib.sh"
cfs_require_fuse
cfs_require_cmd nginx mkfs.erofs setfattr getfattr

src="$CFS_TMP/src" origin="$CFS_TMP/origin" image="$CFS_TMP/image.erofs"
store="$CFS_TMP/store" remote="$CFS_TMP/remote" mnt="$CFS_TMP/mnt"
mkdir -p "$src/big" "$src/many"
cfs_make_file "$src/big/object.bin" $((50 * 1048576)) 50
for i in $(seq 1 64); do cfs_make_file "$src/many/f$i" $((65536 + i)) $((1000 + i)); done
cfs_mkimage "$src" "$origin" "$image"
port=$(cfs_free_port)
# A modest rate keeps the transfer open while all readers arrive.
cfs_start_nginx "$origin" "$port" "limit_rate 100m;"
log="$CFS_TMP/nginx-$port/access.log"
cfs_start_cache "$store" "$remote" --server "http://127.0.0.1:$port/objects"
mkdir -p "$mnt"
"$CFS_CACHE_BIN" mount-image "$image" "$mnt" --store "$store" --remote "$remote"
cfs_track_mount "$mnt"

want=$(sha256sum <"$src/big/object.bin" | cut -d' ' -f1)
pids=""
for i in $(seq 1 200); do
	(sha256sum <"$mnt/big/object.bin" | cut -d' ' -f1 >"$CFS_TMP/sum.$i") &
	pids="$pids $!"
done
for p in $pids; do
	cfs_bounded 120 tail --pid="$p" -f /dev/null || cfs_fail "a reader hung"
done
for i in $(seq 1 200); do
	cfs_assert_eq "$(cat "$CFS_TMP/sum.$i")" "$want" "reader $i"
done
obj=$(cfs_object_of "$src/big/object.bin")
cfs_assert_eq "$(cfs_nginx_gets "$log" "$obj")" 1 "GETs for the shared object"

# Distinct misses in parallel: all correct, each fetched once.
pids=""
for i in $(seq 1 64); do
	(cmp -s "$src/many/f$i" "$mnt/many/f$i" && touch "$CFS_TMP/ok.$i") &
	pids="$pids $!"
done
for p in $pids; do wait "$p" || true; done
for i in $(seq 1 64); do [ -e "$CFS_TMP/ok.$i" ] || cfs_fail "many/f$i differs"; done
dups=$(awk '$1 == "GET" {print $2}' "$log" | sort | uniq -d | head -3)
[ -z "$dups" ] || cfs_fail "objects fetched twice: $dups"

# Misses for different objects of one prefix directory are pending together: the kernel must
# not serialize lookups per directory (FUSE_PARALLEL_DIROPS, which libfuse 3.14 forgets to send).
cfs_umount "$mnt"
cfs_stop_cache "$remote"
slow="$CFS_TMP/slow" slow_origin="$CFS_TMP/slow-origin"
mkdir -p "$slow"
for i in $(seq 1 600); do cfs_make_file "$slow/s$i" 16384 $((5000 + i)); done
"$CFS_STORE_BIN" --no-progress -q import "$slow" "$slow_origin" >/dev/null
dir=$(cd "$slow_origin" && for d in [0-9a-f][0-9a-f]; do echo "$(ls "$d" | wc -l) $d"; done | sort -rn | head -1 | cut -d' ' -f2)
n=$(ls "$slow_origin/$dir" | wc -l)
[ "$n" -ge 4 ] || cfs_fail "expected a prefix directory with 4 or more of 600 objects, got $n"
slow_port=$(cfs_free_port)
# 16 KiB at 2 KiB/s (above the low-speed limit): each transfer takes about 8 s, so the
# lookups all wait at once.
cfs_start_nginx "$slow_origin" "$slow_port" "limit_rate 2k;"
cfs_start_cache "$CFS_TMP/store2" "$remote" --server "http://127.0.0.1:$slow_port/objects" --no-handoff
pids=""
for o in $(ls "$slow_origin/$dir"); do
	cfs_bounded 60 cat "$remote/$dir/$o" >"$CFS_TMP/slow.$o" &
	pids="$pids $!"
done
peak=0
for _ in $(seq 1 50); do
	p=$(cfs_counter "$remote" pending)
	[ "$p" -gt "$peak" ] && peak=$p
	[ "$peak" -ge "$n" ] && break
	sleep 0.1
done
cfs_assert_eq "$peak" "$n" "lookups pending at once in one prefix directory"
for p in $pids; do wait "$p" || cfs_fail "a reader in $dir failed"; done
for o in $(ls "$slow_origin/$dir"); do
	cmp -s "$slow_origin/$dir/$o" "$CFS_TMP/slow.$o" || cfs_fail "$dir/$o differs"
done
echo "PASS: fuse-concurrent"
