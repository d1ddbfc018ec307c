#!/bin/bash
# SPDX-License-Identifier: MIT
# FUSE passthrough: where the kernel has it, reads of open objects go to the store file in the
# kernel and never reach cfs-cache (through the bare mount and through a composefs mount), with
# the right bytes at any offset and under concurrent opens of one inode. With --no-passthrough,
# and with a store on a stacked filesystem (the kernel refuses it), reads fall back to the
# daemon and still return the right bytes.
. "$(dirname "$0")/lib.sh"
cfs_tree_fixture
big=$(cfs_object_of "$src/usr/lib/libbig.so")

# Does this kernel have FUSE passthrough? (Linux 6.9+, CONFIG_FUSE_PASSTHROUGH.)
kernel_pt=unknown
kconfig=$({ zcat /proc/config.gz || cat "/boot/config-$(uname -r)"; } 2>/dev/null || true)
if [ -n "$kconfig" ]; then
	if grep -q '^CONFIG_FUSE_PASSTHROUGH=y' <<<"$kconfig"; then kernel_pt=yes; else kernel_pt=no; fi
fi
cfs_log "kernel FUSE passthrough: $kernel_pt"

# counter_becomes NAME VALUE: waits (up to 5 s) for a counter; releases reach cfs-cache
# asynchronously after the last close.
counter_becomes() {
	for _ in $(seq 1 100); do
		[ "$(cfs_counter "$remote" "$1")" = "$2" ] && return 0
		sleep 0.05
	done
	cfs_fail "counter $1 is $(cfs_counter "$remote" "$1"), expected $2"
}

# check_offsets WANT GOT: bytes at a few offsets, compared.
check_offsets() {
	local want=$1 got=$2 off
	for off in 0 1 4095 4096 65537 1048576 $((3 * 1048576)); do
		cmp -s <(tail -c +$((off + 1)) "$want" | head -c 8192) \
			<(tail -c +$((off + 1)) "$got" | head -c 8192) ||
			cfs_fail "bytes at offset $off of $got differ"
	done
}

# 1. Default mount.
cfs_start_cache "$store" "$remote" --server "$url" --no-handoff --passthrough
cmp "$origin/$big" "$remote/$big" || cfs_fail "first read (fetch) through the mount differs"
reads0=$(cfs_counter "$remote" reads)
for _ in 1 2 3; do cmp "$origin/$big" "$remote/$big" || cfs_fail "re-read differs"; done
check_offsets "$origin/$big" "$remote/$big"
# Many concurrent opens of one inode share one backing file; opens of others interleave.
pids=""
for i in $(seq 1 40); do
	(cmp -s "$origin/$big" "$remote/$big" && touch "$CFS_TMP/ok.$i") &
	pids="$pids $!"
done
for p in $pids; do cfs_bounded 60 tail --pid="$p" -f /dev/null || cfs_fail "a reader hung"; done
for i in $(seq 1 40); do [ -e "$CFS_TMP/ok.$i" ] || cfs_fail "concurrent reader $i got wrong bytes"; done
opens=$(cfs_counter "$remote" opens)
pt_opens=$(cfs_counter "$remote" passthrough_opens)
# Every backing file went back to the kernel with the last close of its object.
counter_becomes backing_files 0
if [ "$(cfs_counter "$remote" passthrough)" = 1 ]; then
	cfs_assert_eq "$pt_opens" "$opens" "passthrough opens"
	cfs_assert_eq "$(cfs_counter "$remote" reads)" "$reads0" "reads that reached cfs-cache"
	[ "$reads0" = 0 ] || cfs_fail "even the first read reached cfs-cache ($reads0 reads)"
else
	[ "$kernel_pt" != yes ] || cfs_fail "the kernel has FUSE passthrough but cfs-cache did not use it"
	cfs_log "passthrough not available here: checked the fallback only"
fi

# Through a composefs mount (overlayfs over cfs-cache): same bytes, and no reads reach FUSE.
mkdir -p "$mnt" "$CFS_TMP/empty-first"
"$CFS_CACHE_BIN" mount-image "$image" "$mnt" --store "$CFS_TMP/empty-first" --remote "$remote"
cfs_track_mount "$mnt"
diff -r --no-dereference "$src" "$mnt" || cfs_fail "composefs tree differs"
check_offsets "$src/usr/lib/libbig.so" "$mnt/usr/lib/libbig.so"
if [ "$(cfs_counter "$remote" passthrough)" = 1 ]; then
	cfs_assert_eq "$(cfs_counter "$remote" reads)" "$reads0" "reads through composefs that reached cfs-cache"
fi
# While a file is open its object holds one backing file, whatever the number of opens.
exec 7<"$mnt/usr/lib/libbig.so" 8<"$mnt/usr/lib/libbig.so" 9<"$remote/$big"
if [ "$(cfs_counter "$remote" passthrough)" = 1 ]; then
	counter_becomes backing_files 1
fi
exec 7<&- 8<&- 9<&-
cfs_umount "$mnt"
counter_becomes backing_files 0
cfs_stop_cache "$remote"
"$CFS_STORE_BIN" --no-progress verify "$store" >/dev/null || cfs_fail "store does not verify"

# 2. --no-passthrough: reads are served by cfs-cache (splice from the store file).
cfs_start_cache "$store" "$remote" --server "$url" --no-handoff --no-passthrough
cmp "$origin/$big" "$remote/$big" || cfs_fail "read without passthrough differs"
check_offsets "$origin/$big" "$remote/$big"
cfs_assert_eq "$(cfs_counter "$remote" passthrough)" 0 "passthrough with --no-passthrough"
cfs_assert_eq "$(cfs_counter "$remote" passthrough_opens)" 0 "passthrough opens with --no-passthrough"
[ "$(cfs_counter "$remote" reads)" -gt 0 ] || cfs_fail "no reads reached cfs-cache without passthrough"
cfs_stop_cache "$remote"

# 3. A store on overlayfs (stack depth 1): the kernel refuses it as a backing file; cfs-cache
# says so once and serves reads itself.
ovl="$CFS_TMP/ovl"
mkdir -p "$ovl/lower" "$ovl/upper" "$ovl/work" "$ovl/merged"
mount -t overlay overlay -o "lowerdir=$ovl/lower,upperdir=$ovl/upper,workdir=$ovl/work" "$ovl/merged"
cfs_track_mount "$ovl/merged"
: >"$CFS_TMP/cfs-cache.log"
cfs_start_cache "$ovl/merged/store" "$remote" --server "$url" --no-handoff --passthrough
cmp "$origin/$big" "$remote/$big" || cfs_fail "read with a stacked store differs"
check_offsets "$origin/$big" "$remote/$big"
cfs_assert_eq "$(cfs_counter "$remote" passthrough_opens)" 0 "passthrough opens on a stacked store"
[ "$(cfs_counter "$remote" reads)" -gt 0 ] || cfs_fail "no reads reached cfs-cache on a stacked store"
if [ "$kernel_pt" = yes ]; then
	grep -q "passthrough refused" "$CFS_TMP/cfs-cache.log" ||
		cfs_fail "no log line about the refused passthrough"
	cfs_assert_eq "$(cfs_counter "$remote" passthrough)" 0 "passthrough state after refusal"
fi
cfs_stop_cache "$remote"
cfs_umount "$ovl/merged"
echo "PASS: fuse-passthrough"
