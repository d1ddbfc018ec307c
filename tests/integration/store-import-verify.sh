#!/bin/bash
# SPDX-License-Identifier: MIT
# import of a real tree, then verify passes; corrupting an object makes verify fail and name it.
. "$(dirname "$0")/lib.sh"
cfs_require_cmd fsverity

src=/usr/share/doc
[ -d "$src" ] || cfs_skip "no $src"
store="$CFS_TMP/store"

"$CFS_STORE_BIN" --no-progress import "$src" "$store" >"$CFS_TMP/import.out"
cat "$CFS_TMP/import.out" >&2
grep -Eq '^[0-9]+ files added' "$CFS_TMP/import.out" || cfs_fail "no summary line"

# Every non-empty regular file of the tree is present under its fs-verity digest.
find "$src" -type f -size +0c -print0 | xargs -0 fsverity digest | awk '{print $1}' |
	sed 's/^sha256://' | sort -u >"$CFS_TMP/want"
(cd "$store" && find . -path ./.cfs-tmp -prune -o -type f -print | sed 's|^\./||; s|/||') |
	sort >"$CFS_TMP/have"
diff -u "$CFS_TMP/want" "$CFS_TMP/have" >/dev/null || cfs_fail "store content differs from the tree"
n=$(wc -l <"$CFS_TMP/want")
[ "$n" -gt 100 ] || cfs_skip "tree too small ($n files)"

# Modes as mkcomposefs writes them.
bad=$(find "$store" -path "$store/.cfs-tmp" -prune -o \( -type f ! -perm 0644 -print \) -o \( -type d ! -perm 0755 ! -path "$store/.cfs-tmp" -print \) | head -3)
[ -z "$bad" ] || cfs_fail "wrong modes: $bad"

"$CFS_STORE_BIN" --no-progress verify "$store" >"$CFS_TMP/verify.out" || cfs_fail "verify of a fresh store failed"
grep -q "^$n objects ok, 0 corrupt" "$CFS_TMP/verify.out" || cfs_fail "verify summary: $(tail -1 "$CFS_TMP/verify.out")"

# A second import deduplicates everything.
"$CFS_STORE_BIN" --no-progress import "$src" "$store" >"$CFS_TMP/import2.out"
grep -q '^0 files added' "$CFS_TMP/import2.out" || cfs_fail "re-import added files: $(cat "$CFS_TMP/import2.out")"

# stat agrees on the count.
"$CFS_STORE_BIN" stat "$store" | grep -q "^objects: $n\$" || cfs_fail "stat count"

# Corrupt one object: verify fails (exit 1) and names it; --delete-bad removes it.
victim=$(cd "$store" && find . -path ./.cfs-tmp -prune -o -type f -size +100c -print | head -1 | sed 's|^\./||')
printf 'X' | dd of="$store/$victim" bs=1 seek=10 conv=notrunc status=none
set +e
"$CFS_STORE_BIN" --no-progress verify "$store" >"$CFS_TMP/verify2.out"
rc=$?
set -e
cfs_assert_eq "$rc" 1 "verify exit code on corruption"
grep -q "^corrupt: $victim" "$CFS_TMP/verify2.out" || cfs_fail "verify did not name $victim"
# Stray and temp files are reported too.
touch "$store/stray-file"
: >"$store/.cfs-tmp/tmp.1.2.3"
set +e
"$CFS_STORE_BIN" --no-progress verify --delete-bad "$store" >"$CFS_TMP/verify3.out"
rc=$?
set -e
cfs_assert_eq "$rc" 1 "verify exit code with problems"
grep -q "^stray: stray-file" "$CFS_TMP/verify3.out" || cfs_fail "stray not reported"
grep -q "^deleted: $victim" "$CFS_TMP/verify3.out" || cfs_fail "corrupt object not deleted"
[ ! -e "$store/$victim" ] || cfs_fail "corrupt object still present"
rm -f "$store/stray-file"
"$CFS_STORE_BIN" --no-progress verify "$store" >/dev/null || cfs_fail "store not clean after repair"
