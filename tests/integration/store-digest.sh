#!/bin/bash
# SPDX-License-Identifier: MIT
# cfs-store digest prints exactly what `fsverity digest` prints, for edge sizes and random data.
. "$(dirname "$0")/lib.sh"
cfs_require_cmd fsverity openssl

files=""
i=0
for size in 0 1 63 64 65 4095 4096 4097 8191 8192 524288 524289 1048577 \
	$((128 * 4096)) $((128 * 4096 + 1)) $((129 * 4096)) $((8 * 1048576 + 1)) \
	$((128 * 128 * 4096 + 7)); do
	i=$((i + 1))
	cfs_make_file "$CFS_TMP/f$i" "$size" "$i"
	files="$files $CFS_TMP/f$i"
done
printf 'not random' >"$CFS_TMP/plain"
files="$files $CFS_TMP/plain"

# shellcheck disable=SC2086
"$CFS_STORE_BIN" digest $files >"$CFS_TMP/ours"
# shellcheck disable=SC2086
fsverity digest $files >"$CFS_TMP/theirs"
diff -u "$CFS_TMP/theirs" "$CFS_TMP/ours" || cfs_fail "digests differ from fsverity"
cfs_assert_eq "$(wc -l <"$CFS_TMP/ours")" "$(echo $files | wc -w)" "line count"

# Errors: a missing file fails with exit 1 and names it, the others still print.
set +e
"$CFS_STORE_BIN" digest "$CFS_TMP/plain" "$CFS_TMP/missing" >"$CFS_TMP/out" 2>"$CFS_TMP/err"
rc=$?
set -e
cfs_assert_eq "$rc" 1 "exit code for a missing file"
grep -q missing "$CFS_TMP/err" || cfs_fail "error does not name the file"
cfs_assert_eq "$(wc -l <"$CFS_TMP/out")" 1 "good file still printed"
# Misuse exits 2.
set +e
"$CFS_STORE_BIN" digest >/dev/null 2>&1
cfs_assert_eq "$?" 2 "exit code for no file"
"$CFS_STORE_BIN" frobnicate >/dev/null 2>&1
cfs_assert_eq "$?" 2 "exit code for an unknown command"
set -e
"$CFS_STORE_BIN" --help | grep -q digest || cfs_fail "--help does not list commands"
"$CFS_STORE_BIN" --version | grep -q cfscache || cfs_fail "--version"
