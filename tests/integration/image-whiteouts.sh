#!/bin/bash
# SPDX-License-Identifier: MIT
# Whiteouts of a tree in a writer-made image: escaped, so that an overlay stacked on the
# composefs mount (as container engines stack layers) hides what they cover in a lower layer;
# the composefs mount itself shows them as overlay "xwhiteouts" (empty files carrying
# trusted.overlay.whiteout); the root's 00..ff whiteouts do not show.
. "$(dirname "$0")/lib.sh"
cfs_require_root
cfs_require_cmd getfattr
S=$CFS_STORE_BIN

layer=$CFS_TMP/layer base=$CFS_TMP/base store=$CFS_TMP/store
mkdir -p "$layer/d" "$base/d"
mknod "$layer/gone" c 0 0
mknod "$layer/d/x" c 0 0
cfs_make_file "$layer/new" 5000 new
cfs_make_file "$layer/d/y" 100 y
for f in gone keep d/x d/z; do cfs_make_file "$base/$f" 300 "$f"; done
"$S" -q --no-progress mkimage --store "$store" "$layer" "$CFS_TMP/layer.cfs" >/dev/null
cfs_assert_eq "$(od -An -tu4 -j12 -N4 "$CFS_TMP/layer.cfs" | tr -d ' ')" 1 "format version"
"$S" -q mkimage --max-version 0 "$layer" "$CFS_TMP/layer0.cfs"
cfs_assert_eq "$(od -An -tu4 -j12 -N4 "$CFS_TMP/layer0.cfs" | tr -d ' ')" 0 "--max-version 0"

mnt=$CFS_TMP/mnt
cfs_mount_composefs "$CFS_TMP/layer.cfs" "$mnt" "$store" ||
	cfs_skip "cannot mount composefs (EROFS + overlayfs data-only layers)"
cfs_assert_eq "$(stat -c '%F' "$mnt/gone")" "regular empty file" "xwhiteout in the mount"
getfattr -h -n trusted.overlay.whiteout "$mnt/gone" >/dev/null 2>&1 ||
	cfs_fail "the xwhiteout lacks trusted.overlay.whiteout"
cfs_assert_eq "$(getfattr -h --only-values -n trusted.overlay.opaque "$mnt/d" 2>/dev/null)" x \
	"its directory is marked opaque=x"
cfs_assert_eq "$(cat "$mnt/new" | sha256sum)" "$(sha256sum <"$layer/new")" "content of new"
[ ! -e "$mnt/00" ] && [ ! -e "$mnt/ff" ] || cfs_fail "the root's 00..ff whiteouts show"

# The stacked overlay: the image's layer above the base layer.
top=$CFS_TMP/top
mkdir -p "$top"
mount -t overlay overlay -o "ro,lowerdir=$mnt:$base" "$top" ||
	cfs_skip "kernel cannot stack an overlay on the composefs mount"
cfs_track_mount "$top"
cfs_assert_eq "$(cd "$top" && find . -mindepth 1 | sort | tr '\n' ' ')" \
	"./d ./d/y ./d/z ./keep ./new " "stacked overlay"
cfs_umount "$top"
cfs_umount "$mnt"
cfs_log "ok: whiteouts hide the lower layer's files through the composefs mount"
