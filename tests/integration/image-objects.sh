#!/bin/bash
# SPDX-License-Identifier: MIT
# cfs-store objects / missing-objects / ls / mkimage against images built by the writer and by
# mkfs.erofs from a tree with many directories, long names, links, devices, inline-size files,
# shared xattrs.
. "$(dirname "$0")/lib.sh"

cfs_require_root
cfs_require_cmd mkfs.erofs setfattr getfattr openssl
S=$CFS_STORE_BIN
src=$CFS_TMP/src
mkdir -p "$src"

# Many directories, each with a few files of distinct content and one shared xattr value.
for d in $(seq 1 25); do
	mkdir -p "$src/dir$d/sub"
	for f in 1 2 3; do
		cfs_make_file "$src/dir$d/f$f" $((d * 97 + f)) "$d.$f"
		setfattr -n user.tag -v shared-value "$src/dir$d/f$f"
	done
	cfs_make_file "$src/dir$d/sub/deep" 200 "deep$d"
done
# Sizes around the 64-byte inline limit and block/chunk boundaries.
for s in 0 1 63 64 65 4095 4096 4097 1048577; do cfs_make_file "$src/size-$s" "$s" "s$s"; done
truncate -s 3M "$src/sparse"
cfs_make_file "$src/dup-a" 1000 dup
cfs_make_file "$src/dup-b" 1000 dup
# mkfs.erofs 1.5 (image 3 below) fails on 255-byte names; 254 is the longest it writes.
long=$(printf 'n%.0s' $(seq 1 254))
cfs_make_file "$src/dir1/$long" 300 long
ln "$src/dir2/f1" "$src/hardlink"
ln -s dir1/f1 "$src/symlink"
ln -s "/absolute/target with space" "$src/symlink2"
mknod "$src/chardev" c 1 3
mknod "$src/blockdev" b 7 200
mkfifo "$src/fifo"
chmod 4755 "$src/size-65"
chown 1234:5678 "$src/dir3/f1"
setfattr -n user.only -v one "$src/dir4"

expect=$CFS_TMP/expect
(cd "$src" && find . -type f -size +64c -print0 | xargs -0 "$S" digest) |
	awk '{ h = substr($1, 8); print substr(h, 1, 2) "/" substr(h, 3) }' | sort -u >"$expect"
nexp=$(wc -l <"$expect")
cfs_log "$nexp distinct objects expected"

# Image 1: the lib.sh helper. Image 2: cfs-store mkimage, which prints the image's digest and
# stores the image itself under it.
store=$CFS_TMP/store
cfs_mkimage "$src" "$store" "$CFS_TMP/a.img"
store2=$CFS_TMP/store2
"$S" --no-progress mkimage --store "$store2" "$src" "$CFS_TMP/b.img" >"$CFS_TMP/mk.out" \
	2>"$CFS_TMP/mk.err" || cfs_fail "mkimage failed: $(cat "$CFS_TMP/mk.err")"
grep -q "objects ($nexp added" "$CFS_TMP/mk.err" || cfs_fail "mkimage summary: $(cat "$CFS_TMP/mk.err")"
idig=$(cat "$CFS_TMP/mk.out")
cfs_assert_eq "sha256:$idig" "$("$S" digest "$CFS_TMP/b.img" | awk '{print $1}')" "printed image digest"
cmp -s "$CFS_TMP/b.img" "$store2/${idig:0:2}/${idig:2}" || cfs_fail "image not stored under its digest"
ls -A "$CFS_TMP" | grep -q '\.tmp\.' && cfs_fail "mkimage left a temporary file behind"
# Without a store: a notice says the objects are kept nowhere (and -q silences it).
"$S" --no-progress mkimage "$src" "$CFS_TMP/nostore.img" >/dev/null 2>"$CFS_TMP/err"
grep -q "not saved anywhere" "$CFS_TMP/err" || cfs_fail "no notice without --store: $(cat "$CFS_TMP/err")"
"$S" -q mkimage "$src" "$CFS_TMP/nostore.img" >/dev/null 2>"$CFS_TMP/err"
cfs_assert_eq "$(cat "$CFS_TMP/err")" "" "mkimage -q without --store"
cmp -s "$CFS_TMP/b.img" "$CFS_TMP/nostore.img" || cfs_fail "image differs without --store"
# Image 3: the same metadata without chunks, made from the mounted first image.
meta=$CFS_TMP/meta
mkdir -p "$meta"
mount -t erofs -o ro,loop "$CFS_TMP/a.img" "$meta" || cfs_skip "cannot mount erofs"
cfs_track_mount "$meta"
mkfs.erofs -x2 --quiet "$CFS_TMP/c.img" "$meta" >/dev/null
cfs_umount "$meta"

for img in a b c; do
	"$S" objects "$CFS_TMP/$img.img" >"$CFS_TMP/$img.objects" || cfs_fail "objects $img failed"
	diff -u "$expect" "$CFS_TMP/$img.objects" >&2 || cfs_fail "objects of $img.img differ from the tree"
done
# Several images: the union, still sorted and unique.
"$S" objects "$CFS_TMP/a.img" "$CFS_TMP/b.img" "$CFS_TMP/c.img" | cmp -s - "$expect" ||
	cfs_fail "objects of three images"

# ls: every path once, objects for files over 64 bytes, link targets, directories.
"$S" ls "$CFS_TMP/b.img" >"$CFS_TMP/ls" || cfs_fail "ls failed"
nls=$(wc -l <"$CFS_TMP/ls")
nsrc=$(cd "$src" && find . -mindepth 1 | wc -l)
cfs_assert_eq "$nls" "$nsrc" "ls line count"
d65=$("$S" digest "$src/size-65" | awk '{ h = substr($1, 8); print substr(h, 1, 2) "/" substr(h, 3) }')
grep -qxF "/size-65	@ $d65" "$CFS_TMP/ls" || cfs_fail "ls: size-65 line"
grep -qxF "/size-64" "$CFS_TMP/ls" || cfs_fail "ls: inline file has an object"
grep -qxF "/size-0" "$CFS_TMP/ls" || cfs_fail "ls: empty file has an object"
grep -qxF "/dir7/	" "$CFS_TMP/ls" || cfs_fail "ls: directory line"
grep -qxF "/symlink	-> dir1/f1" "$CFS_TMP/ls" || cfs_fail "ls: symlink line"
grep -qxF '/symlink2	-> /absolute/target\x20with\x20space' "$CFS_TMP/ls" || cfs_fail "ls: escaping"
grep -q "^/dir1/$long	@ " "$CFS_TMP/ls" || cfs_fail "ls: long name"
grep -q "^/hardlink	@ " "$CFS_TMP/ls" || cfs_fail "ls: hard link"

# missing-objects after a partial import.
part=$CFS_TMP/partial
"$S" -q import "$src/dir1" "$src/dir2" "$part" >/dev/null
(cd "$src/dir1" && find . -type f -size +0c -print0 | xargs -0 "$S" digest) >"$CFS_TMP/have"
(cd "$src/dir2" && find . -type f -size +0c -print0 | xargs -0 "$S" digest) >>"$CFS_TMP/have"
awk '{ h = substr($1, 8); print substr(h, 1, 2) "/" substr(h, 3) }' "$CFS_TMP/have" | sort -u |
	comm -23 "$expect" - >"$CFS_TMP/want-missing"
"$S" missing-objects --store "$part" "$CFS_TMP/a.img" >"$CFS_TMP/missing" || cfs_fail "missing-objects failed"
diff -u "$CFS_TMP/want-missing" "$CFS_TMP/missing" >&2 || cfs_fail "missing-objects after partial import"
[ "$(wc -l <"$CFS_TMP/missing")" -lt "$nexp" ] || cfs_fail "partial import imported nothing"
out=$("$S" missing-objects --store "$store2" "$CFS_TMP/a.img" "$CFS_TMP/b.img")
cfs_assert_eq "$out" "" "missing-objects with the full store"
set +e
"$S" missing-objects "$CFS_TMP/a.img" >/dev/null 2>&1; rc=$?
set -e
cfs_assert_eq "$rc" 2 "missing-objects without --store"

# An image written inside its own source tree, twice: the old image is part of the new tree (as
# with mkcomposefs), and no temporary file is.
self=$CFS_TMP/self
mkdir -p "$self/d"
cfs_make_file "$self/d/f" 100 self
"$S" -q mkimage "$self" "$self/self.img" >/dev/null || cfs_fail "mkimage into its source"
"$S" -q mkimage "$self" "$self/self.img" >/dev/null || cfs_fail "mkimage into its source, again"
cfs_assert_eq "$("$S" ls "$self/self.img" | cut -f1 | tr '\n' ' ')" "/d/ /d/f /self.img " "self-contained image"
cfs_assert_eq "$(ls -A "$self" | tr '\n' ' ')" "d self.img " "mkimage leftovers"

# The mkimage image mounts as composefs and reads back the whole tree.
mnt=$CFS_TMP/mnt
cfs_mount_composefs "$CFS_TMP/b.img" "$mnt" "$store2"
listing() {
	(cd "$1" && find . -printf '%p %y %m %U %G %s %l %n\n' | sort &&
		find . -type f -print0 | sort -z | xargs -0 sha256sum &&
		find . -type b -o -type c | sort | xargs stat -c '%n %t:%T' &&
		getfattr -R -h -d -m '^user\.' . 2>/dev/null | grep -v '^$' | sort)
}
listing "$src" >"$CFS_TMP/src.list"
listing "$mnt" >"$CFS_TMP/mnt.list"
[ "$(wc -l <"$CFS_TMP/src.list")" -gt $((nls * 2)) ] || cfs_fail "listing of the tree is short"
# Directory sizes differ between filesystems. Hard links of a tree become separate inodes of
# the same object, as mkcomposefs 1.0.8 makes them: the link count of files is left out.
sed -E -e 's/^(.* d [0-7]+ [0-9]+ [0-9]+) [0-9]+/\1/' -e 's/^(.* f [0-7]+ [0-9]+ [0-9]+ [0-9]+  )[0-9]+$/\1/' \
	-i "$CFS_TMP/src.list" "$CFS_TMP/mnt.list"
diff -u "$CFS_TMP/src.list" "$CFS_TMP/mnt.list" >&2 || cfs_fail "composefs mount differs from the tree"
cfs_log "ok: $nexp objects, $nls paths"
