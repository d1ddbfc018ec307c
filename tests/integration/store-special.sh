#!/bin/bash
# SPDX-License-Identifier: MIT
# cfs-store digest refuses what is not a regular file (a FIFO, /dev/zero, a directory) at once,
# naming it, and still digests the others; import skips FIFOs in a tree without waiting on them.
. "$(dirname "$0")/lib.sh"

mkfifo "$CFS_TMP/fifo"
cfs_make_file "$CFS_TMP/plain" 5000 1
set +e
cfs_bounded 20 "$CFS_STORE_BIN" digest "$CFS_TMP/fifo" /dev/zero "$CFS_TMP" "$CFS_TMP/plain" \
	>"$CFS_TMP/out" 2>"$CFS_TMP/err"
rc=$?
set -e
[ "$rc" != 124 ] && [ "$rc" != 137 ] || cfs_fail "digest hung on a FIFO or a device"
cfs_assert_eq "$rc" 1 "digest exit code with non-regular files"
for f in "$CFS_TMP/fifo" /dev/zero "$CFS_TMP"; do
	grep -qF "$f: not a regular file" "$CFS_TMP/err" || cfs_fail "$f not refused: $(cat "$CFS_TMP/err")"
done
grep -q "^sha256:[0-9a-f]\{64\} $CFS_TMP/plain\$" "$CFS_TMP/out" || cfs_fail "regular file not digested"
cfs_assert_eq "$(wc -l <"$CFS_TMP/out")" 1 "digest lines"

# import of a tree with a FIFO, a socket and a symlink: the regular files only.
src="$CFS_TMP/src"
mkdir -p "$src/sub"
cfs_make_file "$src/a" 3000 2
cfs_make_file "$src/sub/b" 7000 3
mkfifo "$src/sub/fifo"
ln -s a "$src/link"
python3 -c 'import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])' "$src/sock" 2>/dev/null || true
set +e
cfs_bounded 20 "$CFS_STORE_BIN" --no-progress import "$src" "$CFS_TMP/store" >"$CFS_TMP/imp" 2>&1
rc=$?
set -e
[ "$rc" != 124 ] && [ "$rc" != 137 ] || cfs_fail "import hung on a FIFO"
cfs_assert_eq "$rc" 0 "import exit code: $(cat "$CFS_TMP/imp")"
grep -q '^2 files added' "$CFS_TMP/imp" || cfs_fail "import: $(cat "$CFS_TMP/imp")"
grep -Eq ' [12] not regular \(FIFO, socket, device\) skipped' "$CFS_TMP/imp" || cfs_fail "import: $(cat "$CFS_TMP/imp")"
cfs_assert_eq "$(cfs_store_count "$CFS_TMP/store")" 2 "objects stored"
cfs_log "FIFO, device and directory refused by digest; FIFO skipped by import"
