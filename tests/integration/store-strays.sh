#!/bin/bash
# SPDX-License-Identifier: MIT
# Strays in a store (files, symlinks and directories at the top or inside a prefix directory):
# verify, stat, gc and the cfs-cache quota walk report or skip them and go on, never follow a
# symlink out of the store, and verify --delete-bad removes them.
. "$(dirname "$0")/lib.sh"

store="$CFS_TMP/store" src="$CFS_TMP/src" outside="$CFS_TMP/outside"
mkdir -p "$src" "$outside"
for i in 1 2 3; do cfs_make_file "$src/f$i" $((i * 5000)) "$i"; done
"$CFS_STORE_BIN" -q import "$src" "$store"
obj=$(cd "$store" && find [0-9a-f][0-9a-f] -type f | head -1)
pfx=${obj%/*}
# A symlinked prefix directory pointing outside, holding an "object" that must not be seen.
cp "$src/f1" "$outside/$(basename "$obj")"
cfs_make_file "$outside/keep-me" 100 9

touch "$store/ab"                                   # a file under a prefix name
ln -s "$outside" "$store/ff"                        # a symlink under a prefix name
ln -s /etc "$store/ee"
mkdir "$store/not-a-prefix"                         # a directory with another name
touch "$store/not-a-prefix/inner"
ln -s "$outside/keep-me" "$store/$pfx/$(printf '%062d' 0)" # a symlink with an object name
mkdir "$store/$pfx/subdir"                          # a directory inside a prefix dir
touch "$store/$pfx/subdir/x"
touch "$store/$pfx/not-an-object"                   # a misnamed file
mkdir "$store/lost+found"                           # a filesystem root's: not a stray

# stat: counts the three objects, nothing outside, no error.
"$CFS_STORE_BIN" stat "$store" >"$CFS_TMP/stat" 2>"$CFS_TMP/stat.err" ||
	cfs_fail "stat failed: $(cat "$CFS_TMP/stat.err")"
grep -q '^objects: 3$' "$CFS_TMP/stat" || cfs_fail "stat: $(cat "$CFS_TMP/stat")"

# verify: names each stray and goes on to check every object.
set +e
"$CFS_STORE_BIN" --no-progress verify "$store" >"$CFS_TMP/v1" 2>"$CFS_TMP/v1.err"
rc=$?
set -e
cfs_assert_eq "$rc" 1 "verify exit code with strays"
grep -q 'cannot walk' "$CFS_TMP/v1.err" && cfs_fail "verify aborted: $(cat "$CFS_TMP/v1.err")"
for s in ab ff ee not-a-prefix "$pfx/$(printf '%062d' 0)" "$pfx/subdir"; do
	grep -q "^stray: $s (" "$CFS_TMP/v1" || cfs_fail "stray $s not reported: $(cat "$CFS_TMP/v1")"
done
grep -q '^stray: ff (symlink, not followed)' "$CFS_TMP/v1" || cfs_fail "symlink kind not said"
grep -q "^misnamed: $pfx/not-an-object" "$CFS_TMP/v1" || cfs_fail "misnamed file not reported"
grep -q 'lost+found' "$CFS_TMP/v1" && cfs_fail "lost+found reported"
grep -q '^3 objects ok, 0 corrupt, 1 misnamed, 6 stray' "$CFS_TMP/v1" ||
	cfs_fail "verify summary: $(tail -1 "$CFS_TMP/v1")"

# gc --max-size (the quota walk cfs-cache uses too) goes on past them.
"$CFS_STORE_BIN" gc --max-size 1G "$store" >"$CFS_TMP/gc" 2>"$CFS_TMP/gc.err" ||
	cfs_fail "gc failed: $(cat "$CFS_TMP/gc.err")"
grep -q 'kept 3 objects' "$CFS_TMP/gc" || cfs_fail "gc: $(cat "$CFS_TMP/gc")"

# cfs-cache --max-size indexes the store at start: it mounts.
if [ "$(id -u)" = 0 ] && [ -c /dev/fuse ]; then
	cfs_start_cache "$store" "$CFS_TMP/mnt" --max-size 1G --server http://127.0.0.1:9/objects
	grep -q 'cannot' "$CFS_TMP/cfs-cache.log" && cfs_fail "cfs-cache: $(cat "$CFS_TMP/cfs-cache.log")"
	cfs_stop_cache "$CFS_TMP/mnt"
else
	cfs_log "no FUSE here: the cfs-cache part is not run"
fi

# --delete-bad removes every stray and the misnamed file, follows no symlink, keeps objects.
set +e
"$CFS_STORE_BIN" --no-progress verify --delete-bad "$store" >"$CFS_TMP/v2" 2>"$CFS_TMP/v2.err"
rc=$?
set -e
cfs_assert_eq "$rc" 1 "verify --delete-bad exit code"
for s in ab ff ee not-a-prefix "$pfx/subdir" "$pfx/not-an-object"; do
	grep -q "^deleted: $s\$" "$CFS_TMP/v2" || cfs_fail "$s not deleted: $(cat "$CFS_TMP/v2" "$CFS_TMP/v2.err")"
	[ ! -e "$store/$s" ] && [ ! -L "$store/$s" ] || cfs_fail "$s still there"
done
[ -f "$outside/keep-me" ] && [ -f "$outside/$(basename "$obj")" ] || cfs_fail "followed a symlink out"
[ -f /etc/passwd ] || cfs_fail "followed a symlink to /etc"
[ -d "$store/lost+found" ] || cfs_fail "lost+found removed"
"$CFS_STORE_BIN" --no-progress verify "$store" >"$CFS_TMP/v3" || cfs_fail "not clean: $(cat "$CFS_TMP/v3")"
grep -q '^3 objects ok, 0 corrupt, 0 misnamed, 0 stray' "$CFS_TMP/v3" || cfs_fail "after repair: $(cat "$CFS_TMP/v3")"
cfs_log "strays reported, walked past and removed; nothing outside touched"
