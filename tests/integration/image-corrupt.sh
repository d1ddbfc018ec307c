#!/bin/bash
# SPDX-License-Identifier: MIT
# Truncated, bit-flipped and foreign images are rejected with a clear message and exit 1.
. "$(dirname "$0")/lib.sh"

cfs_require_cmd mkfs.erofs setfattr
S=$CFS_STORE_BIN
src=$CFS_TMP/src
mkdir -p "$src/d"
for i in $(seq 1 40); do cfs_make_file "$src/d/f$i" $((i * 50)) "$i"; done
ln -s d/f1 "$src/link"
if [ "$(id -u)" = 0 ]; then
	"$S" -q mkimage --store "$CFS_TMP/store" "$src" "$CFS_TMP/good.img" >/dev/null
else
	mkfs.erofs -x2 --quiet "$CFS_TMP/good.img" "$src" >/dev/null
fi
"$S" ls "$CFS_TMP/good.img" >/dev/null || cfs_fail "good image rejected"
size=$(stat -c %s "$CFS_TMP/good.img")

# expect_reject FILE PATTERN: every command exits 1 with PATTERN in its message, in bounded time.
expect_reject() {
	for cmd in objects ls "missing-objects --store $CFS_TMP/store"; do
		set +e
		# shellcheck disable=SC2086
		cfs_bounded 20 "$S" $cmd "$1" >/dev/null 2>"$CFS_TMP/err"
		rc=$?
		set -e
		[ "$rc" = 1 ] || cfs_fail "$cmd on $1: exit $rc (want 1): $(cat "$CFS_TMP/err")"
		grep -q -- "$2" "$CFS_TMP/err" || cfs_fail "$cmd on $1: message '$(cat "$CFS_TMP/err")' lacks '$2'"
	done
}

for cut in 0 100 1100 4096 $((size / 2)) $((size - 1))_; do
	cut=${cut%_}
	head -c "$cut" "$CFS_TMP/good.img" >"$CFS_TMP/cut.img"
	expect_reject "$CFS_TMP/cut.img" "cut.img: "
done
head -c $((size - 1)) "$CFS_TMP/good.img" >"$CFS_TMP/cut.img"
expect_reject "$CFS_TMP/cut.img" "truncated"
head -c 100000 /dev/urandom >"$CFS_TMP/random.img"
expect_reject "$CFS_TMP/random.img" "not an EROFS image"
# A flipped bit in the superblock of an image with a checksum (mkfs.erofs writes one,
# composefs does not) fails it.
mkfs.erofs -x2 --quiet "$CFS_TMP/chk.img" "$src" >/dev/null
cp "$CFS_TMP/chk.img" "$CFS_TMP/flip.img"
printf '\x07' | dd of="$CFS_TMP/flip.img" bs=1 seek=$((1024 + 14)) conv=notrunc status=none
expect_reject "$CFS_TMP/flip.img" "checksum"
# In a composefs image, a root nid that points at no directory.
cp "$CFS_TMP/good.img" "$CFS_TMP/flip.img"
printf '\x07' | dd of="$CFS_TMP/flip.img" bs=1 seek=$((1024 + 14)) conv=notrunc status=none
expect_reject "$CFS_TMP/flip.img" "flip.img: "

# Hostile redirects: overlayfs would resolve them inside the store. Only /XX/<62hex> naming
# the object of the file's own metacopy digest is accepted.
d=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
e=fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210
hostile() { # NAME PAYLOAD DIGEST
	printf '/ 4096 40755 2 0 0 0 0.0 - - -\n/f 100 100644 1 0 0 0 0.0 %s - %s\n' "$2" "$3" \
		>"$CFS_TMP/$1.dump"
	"$S" mkimage --from-file "$CFS_TMP/$1.dump" "$CFS_TMP/$1.img" || cfs_fail "mkimage $1"
}
hostile ok "${d:0:2}/${d:2}" "$d"
"$S" objects "$CFS_TMP/ok.img" >"$CFS_TMP/out" || cfs_fail "a good redirect rejected"
cfs_assert_eq "$(cat "$CFS_TMP/out")" "${d:0:2}/${d:2}" "object of a good redirect"
hostile passwd etc/passwd "$d"
expect_reject "$CFS_TMP/passwd.img" "redirect \"/etc/passwd\" is not an object path"
hostile tmp .cfs-tmp/x "$d"
expect_reject "$CFS_TMP/tmp.img" "is not an object path"
hostile dotdot "${d:0:2}/../${d:5}" "$d"
expect_reject "$CFS_TMP/dotdot.img" "is not an object path"
hostile upper "${d:0:2}/${d:2:60}AB" "$d"
expect_reject "$CFS_TMP/upper.img" "is not an object path"
hostile other "${e:0:2}/${e:2}" "$d"
expect_reject "$CFS_TMP/other.img" "does not match its fs-verity digest"
expect_reject "$CFS_TMP/nonexistent.img" "No such file"

# Random changes in the metadata blocks: exit 0 or 1 with a message, never a crash or a hang.
rejected=0
for i in $(seq 1 80); do
	cp "$CFS_TMP/good.img" "$CFS_TMP/flip.img"
	off=$(( (RANDOM * 32768 + RANDOM) % (size < 16384 ? size : 16384) ))
	printf "\\x$(printf %02x $((RANDOM % 256)))" |
		dd of="$CFS_TMP/flip.img" bs=1 seek="$off" conv=notrunc status=none
	set +e
	cfs_bounded 20 "$S" ls "$CFS_TMP/flip.img" >/dev/null 2>"$CFS_TMP/err"
	rc=$?
	set -e
	case $rc in
	0) ;;
	1) [ -s "$CFS_TMP/err" ] || cfs_fail "flip at $off: exit 1 without a message"
	   rejected=$((rejected + 1)) ;;
	*) cfs_fail "flip at $off: exit $rc: $(cat "$CFS_TMP/err")" ;;
	esac
done
cfs_log "ok: $rejected of 80 random byte changes rejected"

set +e
"$S" objects >/dev/null 2>&1; rc=$?
set -e
cfs_assert_eq "$rc" 2 "objects without an image"
"$S" objects --help | grep -q "Usage: cfs-store objects" || cfs_fail "objects --help"
