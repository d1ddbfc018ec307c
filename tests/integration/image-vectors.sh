#!/bin/bash
# SPDX-License-Identifier: MIT
# cfs-store mkimage and dump against the composefs 1.0.8 reference images: every vector byte
# for byte, from its dump and (as root) from the tree its script builds; dump text round trips.
. "$(dirname "$0")/lib.sh"

V=${CFS_VECTORS:-$CFS_SRCDIR/../shared/vectors/composefs-1.0.8}
[ -f "$V/DIGESTS" ] || cfs_skip "no reference vectors at $V"
S=$CFS_STORE_BIN

e=fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210
# vector_digest NAME: the fs-verity digest DIGESTS lists for NAME.cfs.
vector_digest() { awk -v n="$1.cfs" '$1 == n { sub("sha256:", "", $3); print $3 }' "$V/DIGESTS"; }

# same IMAGE VECTOR: byte for byte, or the first differing offsets.
same() {
	cmp -s "$1" "$2" && return 0
	cmp -l "$1" "$2" | head -5 >&2 || true
	cfs_fail "$1 differs from $2 ($(stat -c %s "$1") vs $(stat -c %s "$2") bytes)"
}

for v in features rootfs doc; do
	"$S" mkimage --from-file "$V/$v.dump" "$CFS_TMP/$v.cfs" || cfs_fail "mkimage --from-file $v"
	same "$CFS_TMP/$v.cfs" "$V/$v.cfs"
	"$S" dump "$V/$v.cfs" >"$CFS_TMP/$v.dump" || cfs_fail "dump $v"
	cmp -s "$CFS_TMP/$v.dump" "$V/$v.dump" || { diff "$V/$v.dump" "$CFS_TMP/$v.dump" | head >&2;
		cfs_fail "dump of $v.cfs differs from $v.dump"; }
	dig=$("$S" mkimage --print-digest-only --from-file "$V/$v.dump")
	cfs_assert_eq "$dig" "$(vector_digest "$v")" "digest of $v"
done
"$S" mkimage --min-version=1 --from-file "$V/features.dump" "$CFS_TMP/v1.cfs"
same "$CFS_TMP/v1.cfs" "$V/features-v1.cfs"
"$S" mkimage --min-version 1 --print-digest --from-file - "$CFS_TMP/v1b.cfs" \
	<"$V/features.dump" >"$CFS_TMP/out"
cfs_assert_eq "$(cat "$CFS_TMP/out")" "$(vector_digest features-v1)" "--print-digest, dump on stdin"
same "$CFS_TMP/v1b.cfs" "$V/features-v1.cfs"

# Misuse exits 2.
for args in "--min-version=2 x y" "--max-version=0 --min-version=1 x y" \
	"--skip-xattrs --user-xattrs x y" "--print-digest-only x y" "x"; do
	set +e
	# shellcheck disable=SC2086
	"$S" mkimage $args >/dev/null 2>&1
	rc=$?
	set -e
	cfs_assert_eq "$rc" 2 "mkimage $args"
done
printf '/ 4096 40755 2 0 0 0 0.0 - - -\n/a/b 0 100644 1 0 0 0 0.0 - - -\n' >"$CFS_TMP/bad.dump"
set +e
"$S" mkimage --from-file "$CFS_TMP/bad.dump" "$CFS_TMP/bad.cfs" 2>"$CFS_TMP/err"
rc=$?
set -e
cfs_assert_eq "$rc" 1 "mkimage of a dump with a missing parent"
grep -q "bad.dump:2:" "$CFS_TMP/err" || cfs_fail "dump error names no line: $(cat "$CFS_TMP/err")"

[ "$(id -u)" = 0 ] || cfs_skip "the feature tree needs root (trusted xattrs, devices)"
cfs_require_cmd python3 setfattr

tree=$CFS_TMP/tree
bash "$V/make-features-tree.sh" "$tree" >/dev/null
"$S" -q mkimage "$tree" "$CFS_TMP/ft.cfs"
same "$CFS_TMP/ft.cfs" "$V/features.cfs"
"$S" -q mkimage --use-epoch --threads 2 "$tree" "$CFS_TMP/fte.cfs"
same "$CFS_TMP/fte.cfs" "$V/features-epoch.cfs"
# With a store: the same bytes, every object and the image itself in it, the digest printed.
store=$CFS_TMP/store
"$S" -q --no-progress mkimage --store "$store" "$tree" "$CFS_TMP/fts.cfs" >"$CFS_TMP/out"
same "$CFS_TMP/fts.cfs" "$V/features.cfs"
cfs_assert_eq "$(cat "$CFS_TMP/out")" "$(vector_digest features)" "mkimage --store output"
d=$(vector_digest features)
cmp -s "$store/${d:0:2}/${d:2}" "$V/features.cfs" || cfs_fail "image not in the store"
out=$("$S" missing-objects --store "$store" "$CFS_TMP/fts.cfs")
cfs_assert_eq "$out" "" "objects missing after mkimage --store"
# missing-objects takes the image by its digest too, looked up in the store.
mega=a6/a3e32c13110f01b4eed7f55d13fdd1bffa6d98301f967eb8e497a7d95aed90
rm "$store/$mega"
for name in "$d" "sha256:$d" "${d:0:2}/${d:2}"; do
	out=$("$S" missing-objects --store "$store" "$name") || cfs_fail "missing-objects $name"
	cfs_assert_eq "$out" "$mega" "missing-objects by digest $name"
done
set +e
"$S" missing-objects --store "$store" "$e" >/dev/null 2>"$CFS_TMP/err"
rc=$?
set -e
cfs_assert_eq "$rc" 1 "missing-objects of a digest not in the store"
grep -q "not in the store" "$CFS_TMP/err" || cfs_fail "message: $(cat "$CFS_TMP/err")"

# The options that change the tree, checked through the dump of what they write.
"$S" -q mkimage --skip-devices "$tree" "$CFS_TMP/nodev.cfs"
"$S" dump "$CFS_TMP/nodev.cfs" >"$CFS_TMP/nodev.dump"
grep -v -e '^/a/chr ' -e '^/a/blk ' -e '^/a ' "$V/features.dump" |
	cmp -s - <(grep -v '^/a ' "$CFS_TMP/nodev.dump") || cfs_fail "--skip-devices"
"$S" -q mkimage --user-xattrs "$tree" "$CFS_TMP/user.cfs"
"$S" dump "$CFS_TMP/user.cfs" | grep -q 'trusted\.thing' && cfs_fail "--user-xattrs kept trusted.thing"
"$S" dump "$CFS_TMP/user.cfs" | grep -q 'user\.foo=bar' || cfs_fail "--user-xattrs dropped user.foo"
"$S" -q mkimage --skip-xattrs "$tree" "$CFS_TMP/nox.cfs"
"$S" dump "$CFS_TMP/nox.cfs" | grep -q '=' && cfs_fail "--skip-xattrs kept an xattr"

# Trees of our own: the dump of the writer's image gives the same image again, and the image
# mounts with the tree's metadata.
own=$CFS_TMP/own
mkdir -p "$own/deep/er/est" "$own/many"
for i in $(seq 1 1500); do : >"$own/many/entry-with-a-long-name-to-fill-blocks-$i"; done
for s in 1 63 64 65 2048 2049 4095 4096 4097 8193; do cfs_make_file "$own/deep/s$s" "$s" "o$s"; done
printf 'a=b\\c\td\n' >"$own/weird name=x"
setfattr -n user.eq -v 'k=v with space' "$own/weird name=x"
setfattr -n trusted.overlay.origin -v 'escaped' "$own/deep"
setfattr -n security.selinux -v 'system_u:object_r:etc_t:s0' "$own"
mknod "$own/deep/whiteout" c 0 0
ln -s "$(printf 'y%.0s' $(seq 1 3000))" "$own/deep/er/longlink"
touch -d '1999-12-31 23:59:59.5' "$own/deep/er/est"
chown 70000:70001 "$own/deep/s65"
"$S" -q mkimage "$own" "$CFS_TMP/own.cfs"
"$S" dump "$CFS_TMP/own.cfs" >"$CFS_TMP/own.dump"
"$S" mkimage --from-file "$CFS_TMP/own.dump" "$CFS_TMP/own2.cfs"
same "$CFS_TMP/own2.cfs" "$CFS_TMP/own.cfs"
"$S" dump "$CFS_TMP/own2.cfs" | cmp -s - "$CFS_TMP/own.dump" || cfs_fail "dump round trip of own tree"
grep -q '^/deep/whiteout 0 20644 .* - - -$' "$CFS_TMP/own.dump" || cfs_fail "whiteout in the dump"
grep -q 'trusted.overlay.origin=escaped' "$CFS_TMP/own.dump" || cfs_fail "escaped overlay xattr"
grep -qF '/weird\x20name=x 8 ' "$CFS_TMP/own.dump" || cfs_fail "name escaping"
grep -qF 'user.eq=k\x3dv\x20with\x20space' "$CFS_TMP/own.dump" || cfs_fail "xattr escaping"
# Hard links only come from a dump: one inode, two names, nlink 2.
printf '%s\n' '/ 4096 40755 2 0 0 0 5.0 - - -' \
	'/f 5 100644 1 0 0 0 5.0 - hello -' '/g 5 @100644 1 0 0 0 5.0 /f - -' >"$CFS_TMP/hl.dump"
"$S" mkimage --from-file "$CFS_TMP/hl.dump" "$CFS_TMP/hl.cfs"
"$S" dump "$CFS_TMP/hl.cfs" >"$CFS_TMP/hl.out"
grep -qx '/g 5 @100644 2 0 0 0 5.0 /f hello -' "$CFS_TMP/hl.out" || cfs_fail "hard link: $(cat "$CFS_TMP/hl.out")"
"$S" mkimage --from-file "$CFS_TMP/hl.out" "$CFS_TMP/hl2.cfs"
same "$CFS_TMP/hl2.cfs" "$CFS_TMP/hl.cfs"

mnt=$CFS_TMP/mnt
mkdir -p "$mnt"
mount -t erofs -o ro,loop "$CFS_TMP/own.cfs" "$mnt" 2>/dev/null || cfs_skip "cannot mount erofs"
cfs_track_mount "$mnt"
cfs_assert_eq "$(ls "$mnt/many" | wc -l)" 1500 "entries of a large directory"
target=$(readlink "$mnt/deep/er/longlink")
cfs_assert_eq "${#target}" 3000 "long symlink"
cfs_assert_eq "$(cat "$mnt/weird name=x")" "$(cat "$own/weird name=x")" "inline content"
cfs_assert_eq "$(stat -c '%u:%g %s' "$mnt/deep/s65")" "70000:70001 65" "extended inode"
cfs_assert_eq "$(stat -c %y "$mnt/deep/er/est")" "$(stat -c %y "$own/deep/er/est")" "mtime"
cfs_assert_eq "$(getfattr --only-values -n user.eq "$mnt/weird name=x")" 'k=v with space' "xattr"
cfs_umount "$mnt"
cfs_log "ok: 5 vectors byte for byte, dumps round trip"
