#!/bin/sh
# SPDX-License-Identifier: MIT
# Writes a seed corpus of small real EROFS images (made by mkfs.erofs, and by cfs-store mkimage
# when ./cfs-store or $CFS_STORE_BIN is there) into DIR for fuzz-image.
set -eu
out=$1
command -v mkfs.erofs >/dev/null || { echo "make-corpus: needs mkfs.erofs" >&2; exit 1; }
mkdir -p "$out"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/cfs-corpus.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
t=$tmp/t
mkdir -p "$t/a/b/c" "$t/many"
printf 'tiny' >"$t/a/tiny"
head -c 64 /dev/zero | tr '\0' x >"$t/a/b/s64"
head -c 65 /dev/zero | tr '\0' y >"$t/a/b/c/s65"
: >"$t/empty"
ln -s a/tiny "$t/link"
ln -s "$(printf 'x%.0s' $(seq 1 300))" "$t/longlink"
ln "$t/a/tiny" "$t/hard"
mkfifo "$t/fifo" 2>/dev/null || true
mknod "$t/dev" c 1 3 2>/dev/null || true
# Enough entries for a directory of several blocks.
i=0
while [ $i -lt 300 ]; do
	: >"$t/many/entry-with-a-longish-name-$i"
	i=$((i + 1))
done
# The overlay xattrs of a composefs image (root only) and a shared user xattr.
i=0
for f in "$t"/a/b/c/s65 "$t"/a/b/s64; do
	i=$((i + 1))
	setfattr -n trusted.overlay.metacopy -v "0x00240001$(printf '%02x%062x' $i $i)" "$f" 2>/dev/null || true
	setfattr -n trusted.overlay.redirect -v "/$(printf '%02x/%062x' $i $i)" "$f" 2>/dev/null || true
done
for f in "$t"/many/entry-with-a-longish-name-1*; do
	setfattr -n user.shared -v same "$f" 2>/dev/null || true
done
mkfs.erofs -x2 --quiet "$out/full.img" "$t" >/dev/null
# The composefs writer's layout (tail packing, shared xattrs, chunk indexes, whiteouts).
store_bin=${CFS_STORE_BIN:-./cfs-store}
if [ -x "$store_bin" ]; then
	"$store_bin" -q mkimage --skip-xattrs "$t" "$out/writer.img" >/dev/null 2>&1 || true
	printf '%s\n' '/ 0 40755 2 0 0 0 1.0 - - - user.a=1' '/f 5 100644 1 0 0 0 1.0 - abcde - user.a=1' \
		'/g 9000 100644 1 0 0 0 2.0 ab/'"$(printf 'cd%.0s' $(seq 1 31))"' - - trusted.x=y' \
		'/h 5 @100644 1 0 0 0 1.0 /f - -' '/w 0 20000 1 0 0 0 1.0 - - -' >"$tmp/seed.dump"
	"$store_bin" mkimage --from-file "$tmp/seed.dump" "$out/writer-dump.img" >/dev/null 2>&1 || true
fi
mkfs.erofs -x2 --chunksize=4096 --quiet "$out/chunked.img" "$t" >/dev/null
rm -rf "$t/many"
mkfs.erofs -x2 --quiet "$out/small.img" "$t" >/dev/null
mkfs.erofs -x2 --chunksize=1048576 --quiet "$out/small-chunked.img" "$t" >/dev/null
mkdir "$tmp/e"
mkfs.erofs --quiet "$out/empty-root.img" "$tmp/e" >/dev/null
