#!/bin/bash
# SPDX-License-Identifier: MIT
# Images by their digest: mount-image --digest takes the image object from the local store or
# fetches it through the cfs-cache mount (verified like any object), mounts it lazily, and
# refuses an image whose digest differs, a digest nobody has, and a file that is no image.
. "$(dirname "$0")/lib.sh"
cfs_tree_fixture
# The image is an object too: publish it into the origin store.
mkdir -p "$CFS_TMP/img"
cp "$image" "$CFS_TMP/img/rootfs.cfs"
"$CFS_STORE_BIN" -q --no-progress import "$CFS_TMP/img" "$origin" >/dev/null
digest=$("$CFS_STORE_BIN" digest "$image" | cut -d' ' -f1)
hex=${digest#sha256:}
[ -f "$origin/${hex:0:2}/${hex:2}" ] || cfs_fail "the image is not an object of the origin"

cfs_start_cache "$store" "$remote" --server "$url"
mkdir -p "$mnt"
# By digest alone: fetched through the mount, checked, mounted; the tree reads back.
"$CFS_CACHE_BIN" mount-image --digest "$digest" "$mnt" --store "$store" --remote "$remote" ||
	cfs_fail "mount-image --digest"
cfs_track_mount "$mnt"
diff -r --no-dereference "$src" "$mnt" || cfs_fail "tree differs (image by digest)"
cfs_umount "$mnt"
cfs_settle "$remote"
[ -f "$store/${hex:0:2}/${hex:2}" ] || cfs_fail "the image object did not land in the store"
# From the local store now, bare 64-hex form.
requests=$(cfs_counter "$remote" requests)
"$CFS_CACHE_BIN" mount-image --digest "$hex" "$mnt" --store "$store" --remote "$remote" ||
	cfs_fail "mount-image --digest from the store"
cfs_assert_eq "$(cfs_counter "$remote" requests)" "$requests" "requests for an image in the store"
cmp "$src/usr/bin/tool" "$mnt/usr/bin/tool" || cfs_fail "read through the image from the store"
cfs_umount "$mnt"
# IMAGE and a digest that is not its own: refused, nothing mounted.
other=$(printf 'sha256:%064d' 7)
rc=0
"$CFS_CACHE_BIN" mount-image "$image" "$mnt" --digest "$other" --store "$store" --remote "$remote" \
	2>"$CFS_TMP/err" || rc=$?
cfs_assert_eq "$rc" 1 "exit status of a wrong digest"
grep -q "has digest $digest, not the $other" "$CFS_TMP/err" || cfs_fail "wrong digest: $(cat "$CFS_TMP/err")"
mountpoint -q "$mnt" && cfs_fail "mounted an image with the wrong digest"
# A digest nobody has: a clear error.
rc=0
"$CFS_CACHE_BIN" mount-image --digest "$other" "$mnt" --store "$store" --remote "$remote" \
	2>"$CFS_TMP/err" || rc=$?
cfs_assert_eq "$rc" 1 "exit status of an absent image"
grep -q "not in the store nor on the servers" "$CFS_TMP/err" || cfs_fail "absent image: $(cat "$CFS_TMP/err")"
# A store object that was changed under its name is refused by its digest.
cp "$store/${hex:0:2}/${hex:2}" "$CFS_TMP/saved"
chmod u+w "$store/${hex:0:2}/${hex:2}"
printf 'X' | dd of="$store/${hex:0:2}/${hex:2}" bs=1 seek=2000 conv=notrunc status=none
rc=0
"$CFS_CACHE_BIN" mount-image --digest "$digest" "$mnt" --store "$store" 2>"$CFS_TMP/err" || rc=$?
cfs_assert_eq "$rc" 1 "exit status of a corrupted image object"
grep -q "not the $digest asked for: refused" "$CFS_TMP/err" || cfs_fail "corrupted image: $(cat "$CFS_TMP/err")"
# prefetch of an image named by its digest: the image object is fetched first, then its objects.
pstore="$CFS_TMP/pstore"
"$CFS_CACHE_BIN" prefetch -q --no-progress --image "$digest" --store "$pstore" --server "$url" ||
	cfs_fail "prefetch --image DIGEST"
[ -f "$pstore/${hex:0:2}/${hex:2}" ] || cfs_fail "prefetch did not fetch the image object"
cfs_assert_eq "$("$CFS_STORE_BIN" missing-objects --store "$pstore" "$image")" "" "missing after prefetch by digest"
rc=0
"$CFS_CACHE_BIN" prefetch -q --no-progress --image "$other" --store "$pstore" --server "$url" \
	2>"$CFS_TMP/err" || rc=$?
cfs_assert_eq "$rc" 1 "prefetch of an absent image"
grep -q "absent on every server" "$CFS_TMP/err" || cfs_fail "prefetch absent image: $(cat "$CFS_TMP/err")"
# Not an image at all: the real reason, not the loop fallback's "Permission denied".
head -c 100000 /dev/urandom >"$CFS_TMP/garbage.cfs"
rc=0
"$CFS_CACHE_BIN" mount-image "$CFS_TMP/garbage.cfs" "$mnt" --store "$store" 2>"$CFS_TMP/err" || rc=$?
cfs_assert_eq "$rc" 1 "exit status of a garbage image"
grep -qE "not (a valid|an) EROFS image" "$CFS_TMP/err" || cfs_fail "garbage image: $(cat "$CFS_TMP/err")"
grep -q "Permission denied" "$CFS_TMP/err" && cfs_fail "garbage image blamed on permissions"
mountpoint -q "$mnt" && cfs_fail "mounted a garbage image"
# A truncated image mounts in the kernel but cannot be read: refused, with the reason.
head -c $(( $(stat -c %s "$image") / 2 )) "$image" >"$CFS_TMP/half.cfs"
rc=0
"$CFS_CACHE_BIN" mount-image "$CFS_TMP/half.cfs" "$mnt" --store "$store" 2>"$CFS_TMP/err" || rc=$?
cfs_assert_eq "$rc" 1 "exit status of a truncated image"
grep -q "truncated" "$CFS_TMP/err" || cfs_fail "truncated image: $(cat "$CFS_TMP/err")"
mountpoint -q "$mnt" && cfs_fail "mounted a truncated image"
# A --remote that is a plain directory, not a live cfs-cache mount: refused.
mkdir -p "$CFS_TMP/plain"
rc=0
"$CFS_CACHE_BIN" mount-image "$image" "$mnt" --store "$store" --remote "$CFS_TMP/plain" \
	2>"$CFS_TMP/err" || rc=$?
cfs_assert_eq "$rc" 1 "exit status of a plain --remote"
grep -q "is not a live cfs-cache mount" "$CFS_TMP/err" || cfs_fail "plain --remote: $(cat "$CFS_TMP/err")"
mountpoint -q "$mnt" && cfs_fail "mounted over a plain --remote"
# Misuse: a digest that is not one.
rc=0
"$CFS_CACHE_BIN" mount-image --digest nonsense "$mnt" --store "$store" 2>/dev/null || rc=$?
cfs_assert_eq "$rc" 2 "exit status of a malformed digest"
exit 0
