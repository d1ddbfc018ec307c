#!/bin/bash
# SPDX-License-Identifier: MIT
# cfs-store gc as a user reads it: --unreferenced --keep counts the kept objects the image uses
# (not every digest it names), --max-size limits disk use (allocated blocks, not file sizes),
# sizes print in IEC units and parse with either base, --dry-run lists and removes nothing.
. "$(dirname "$0")/lib.sh"
cfs_require_root
cfs_require_cmd mkfs.erofs

store="$CFS_TMP/store" src="$CFS_TMP/src" keep="$CFS_TMP/keep"
mkdir -p "$src" "$keep"
for i in $(seq 1 10); do cfs_make_file "$src/f$i" $((i * 3000)) "$i"; done
# The kept image: three of those files and two objects the store does not have.
cp "$src/f1" "$src/f2" "$src/f3" "$keep/"
cfs_make_file "$keep/x1" 5000 101
cfs_make_file "$keep/x2" 6000 102
"$CFS_STORE_BIN" -q import "$src" "$store"
"$CFS_STORE_BIN" -q mkimage --store "$CFS_TMP/other" "$keep" "$CFS_TMP/keep.cfs"
cfs_assert_eq "$(cfs_store_count "$store")" 10 "objects imported"

# disk use of the store's objects, as gc must count it
disk_use() {
	find "$1" -mindepth 2 -maxdepth 2 -type f -path "$1/[0-9a-f][0-9a-f]/*" -printf '%b\n' |
		awk '{ s += $1 * 512 } END { print s + 0 }'
}

# --dry-run: what would go, nothing goes.
"$CFS_STORE_BIN" gc --unreferenced --keep "$CFS_TMP/keep.cfs" --dry-run "$store" >"$CFS_TMP/dry"
cat "$CFS_TMP/dry" >&2
cfs_assert_eq "$(grep -c '^would remove: [0-9a-f][0-9a-f]/[0-9a-f]\{62\} ([0-9.]* [KMG]iB)$' "$CFS_TMP/dry")" 7 \
	"would-remove lines"
grep -q 'dry run: would remove 7 objects (.*iB); would keep 3 objects (.* KiB), 3 of them used by the 1 kept image(s)' "$CFS_TMP/dry" ||
	cfs_fail "dry run summary: $(cat "$CFS_TMP/dry")"
grep -q '^2 objects of the kept images are not in the store$' "$CFS_TMP/dry" || cfs_fail "absent count"
cfs_assert_eq "$(cfs_store_count "$store")" 10 "objects after --dry-run"

# The real run: the counts of a kept set make sense (never more pinned than kept).
"$CFS_STORE_BIN" gc --unreferenced --keep "$CFS_TMP/keep.cfs" "$store" >"$CFS_TMP/gc1"
cat "$CFS_TMP/gc1" >&2
grep -q '^removed 7 objects (.*iB); kept 3 objects (.*iB), 3 of them used by the 1 kept image(s) (sizes are disk use)$' \
	"$CFS_TMP/gc1" || cfs_fail "gc summary: $(cat "$CFS_TMP/gc1")"
cfs_assert_eq "$(cfs_store_count "$store")" 3 "objects after gc --unreferenced"

# --max-size counts disk use: 40 small files of 100 bytes take a block each.
small="$CFS_TMP/small" s2="$CFS_TMP/store2"
mkdir -p "$small"
for i in $(seq 1 40); do cfs_make_file "$small/s$i" 100 $((i + 200)); done
"$CFS_STORE_BIN" -q import "$small" "$s2"
total=$(disk_use "$s2")
[ "$total" -gt 40000 ] || cfs_skip "this filesystem packs small files ($total bytes for 40)"
limit=$((total / 2))
"$CFS_STORE_BIN" gc --max-size "$limit" --dry-run "$s2" >"$CFS_TMP/dry2"
[ "$(grep -c '^would remove:' "$CFS_TMP/dry2")" -ge 19 ] || cfs_fail "dry run by disk use: $(cat "$CFS_TMP/dry2")"
cfs_assert_eq "$(cfs_store_count "$s2")" 40 "objects after --max-size --dry-run"
"$CFS_STORE_BIN" gc --max-size "$limit" "$s2" >"$CFS_TMP/gc2"
cat "$CFS_TMP/gc2" >&2
after=$(disk_use "$s2")
[ "$after" -le "$limit" ] || cfs_fail "disk use $after after gc --max-size $limit"
[ "$(cfs_store_count "$s2")" -ge 19 ] || cfs_fail "gc removed too much: $(cat "$CFS_TMP/gc2")"
grep -q "limit $((limit / 1024))\.[0-9] KiB (sizes are disk use)" "$CFS_TMP/gc2" || cfs_fail "gc2: $(cat "$CFS_TMP/gc2")"
"$CFS_STORE_BIN" stat "$s2" | grep -q "^disk: $after (.* KiB)\$" || cfs_fail "stat disk: $("$CFS_STORE_BIN" stat "$s2")"

# Size units: KiB and K are 1024, KB and kB 1000, and a bad one is misuse naming the option.
n=$(cfs_store_count "$s2")
blk=$((after / n))
"$CFS_STORE_BIN" gc --max-size "$(( (after - 1) / 1000 ))kB" --dry-run "$s2" | grep -q '^would remove:' ||
	cfs_fail "kB not read as 1000 bytes"
"$CFS_STORE_BIN" gc --max-size "$(( after / 1024 + 1 ))KiB" --dry-run "$s2" | grep -q '^would remove:' &&
	cfs_fail "KiB not read as 1024 bytes"
[ "$blk" -gt 0 ] || cfs_fail "no block size"
set +e
"$CFS_STORE_BIN" gc --max-size 10X "$s2" >/dev/null 2>"$CFS_TMP/bad"
rc=$?
set -e
cfs_assert_eq "$rc" 2 "exit code of a bad size"
grep -q -- "--max-size '10X'" "$CFS_TMP/bad" || cfs_fail "bad size message: $(cat "$CFS_TMP/bad")"
cfs_log "gc counts kept and pinned objects, limits disk use, --dry-run removes nothing"
