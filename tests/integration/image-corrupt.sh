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
# A flipped bit in the superblock fails its checksum.
cp "$CFS_TMP/good.img" "$CFS_TMP/flip.img"
printf '\x07' | dd of="$CFS_TMP/flip.img" bs=1 seek=$((1024 + 14)) conv=notrunc status=none
expect_reject "$CFS_TMP/flip.img" "checksum"
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
