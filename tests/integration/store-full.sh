#!/bin/bash
# SPDX-License-Identifier: MIT
# A full disk under the store (a 32 MiB ext4 on a loop device, filled with fallocate): an import,
# a bulk fetch, a miss read through the mount and an upload to cfs-serve each fail with a clear
# error, leave no partial or unverified object and no temp file, keep what the store held, and
# succeed once there is room again; a mount or a pull-through tier with --max-size evicts to
# make room for a miss (a tier without it answers 507); a zstd side file that does not fit
# leaves the object served as it is.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/fetch-lib.sh"
cfs_require_fuse
cfs_require_cmd mkfs.ext4 fallocate curl cmp base64
fetch_need_faultd

img=$CFS_TMP/fs.img disk=$CFS_TMP/disk
truncate -s 32M "$img"
mkfs.ext4 -q -F -m 0 -O ^has_journal "$img" >/dev/null
mkdir -p "$disk"
mount -o loop "$img" "$disk" 2>/dev/null || cfs_skip "cannot mount an ext4 image on a loop device"
cfs_track_mount "$disk"

avail() { df -B1 --output=avail "$disk" | tail -1; }
# leave BYTES: fills the disk so that about BYTES stay free.
leave() {
	rm -f "$disk/filler"
	fallocate -l $(($(avail) - $1)) "$disk/filler"
}
room() { rm -f "$disk/filler"; }
# check_store STORE [N]: only whole, verified objects (N of them if given) and no temp file.
check_store() {
	"$CFS_STORE_BIN" --no-progress verify "$1" >"$CFS_TMP/verify" 2>&1 ||
		cfs_fail "verify of $1: $(tail -3 "$CFS_TMP/verify")"
	grep -q " 0 corrupt, 0 misnamed, 0 stray, 0 temp, 0 unreadable" "$CFS_TMP/verify" ||
		cfs_fail "store $1: $(tail -1 "$CFS_TMP/verify")"
	if [ -n "${2:-}" ]; then
		grep -q "^$2 objects ok" "$CFS_TMP/verify" || cfs_fail "store $1: $(tail -1 "$CFS_TMP/verify"), expected $2"
	fi
	fetch_assert_no_temp "$1"
}
# Objects in the store (whole ones: check_store has passed).
count() { find "$1" -path "$1/.cfs-tmp" -prune -o -type f -print | wc -l; }

# The content: three 6 MB objects and ten of 100 kB (19 MB in all), served by faultd.
src=$CFS_TMP/src origin=$CFS_TMP/origin
mkdir -p "$src"
for i in 1 2 3; do cfs_make_file "$src/big$i" 6000000 "$i"; done
for i in $(seq 1 10); do cfs_make_file "$src/small$i" 100000 "$((10 + i))"; done
"$CFS_STORE_BIN" -q --no-progress import "$src" "$origin" >/dev/null
(cd "$origin" && ls -d [0-9a-f][0-9a-f]/*) >"$CFS_TMP/all"
cfs_assert_eq "$(wc -l <"$CFS_TMP/all")" 13 "objects in the origin"
big=$(cfs_object_of "$src/big1")
small=$(cfs_object_of "$src/small1")

# 1. cfs-store import: stops at the first "no space" with the reason, keeps what it had.
store=$disk/import
mkdir -p "$CFS_TMP/first"
cfs_make_file "$CFS_TMP/first/kept" 50000 99
"$CFS_STORE_BIN" -q --no-progress import "$CFS_TMP/first" "$store" >/dev/null
leave 3000000
rc=0
cfs_bounded 60 "$CFS_STORE_BIN" --no-progress import "$src" "$store" >/dev/null 2>"$CFS_TMP/err" || rc=$?
[ "$rc" != 0 ] || cfs_fail "import into a full store succeeded"
grep -q "No space left on device" "$CFS_TMP/err" || cfs_fail "import error: $(cat "$CFS_TMP/err")"
check_store "$store"
n=$(count "$store")
[ "$n" -ge 1 ] && [ "$n" -lt 14 ] || cfs_fail "import into a full store kept $n objects"
[ -f "$store/$(cfs_object_of "$CFS_TMP/first/kept")" ] || cfs_fail "import lost an object it had"
room
"$CFS_STORE_BIN" -q --no-progress import "$src" "$store" >/dev/null
check_store "$store" 14
rm -rf "$store"

# 2. cfs-cache fetch with 10 MB free: one 6 MB object and the ten small ones fit, two 6 MB ones
# do not. Bodies that ran out of space while others were being written are tried again alone,
# so exactly what fits is stored (whichever large one it is) and exactly two fail, with the
# reason and exit status 1; with room again, a second run fetches the rest.
fetch_start_faultd srv "$origin"
store=$disk/fetch
leave 10000000
rc=0
cfs_bounded 120 "$CFS_CACHE_BIN" fetch --no-progress --store "$store" --server "$FAULTD_URL" \
	--from "$CFS_TMP/all" >"$CFS_TMP/out" 2>"$CFS_TMP/err" || rc=$?
cfs_assert_eq "$rc" 1 "exit status of a fetch into a full store"
cfs_assert_eq "$(grep -c "store: No space left on device" "$CFS_TMP/err")" 2 \
	"objects failed for lack of space ($(cat "$CFS_TMP/err"))"
grep -q " 2 failed" "$CFS_TMP/out" "$CFS_TMP/err" || cfs_fail "summary: $(cat "$CFS_TMP/out")"
check_store "$store" 11
for i in $(seq 1 10); do
	[ -f "$store/$(cfs_object_of "$src/small$i")" ] || cfs_fail "small object $i not stored"
done
room
cfs_bounded 120 "$CFS_CACHE_BIN" fetch -q --no-progress --store "$store" --server "$FAULTD_URL" \
	--from "$CFS_TMP/all" || cfs_fail "fetch with room again"
check_store "$store" 13
rm -rf "$store"

# 3. A miss through the mount that does not fit: the reader gets an error at once, the mount
# stays up, serves what fits and evicts nothing (no --max-size: the two objects the store had
# stay); with room again the same read gives the right bytes.
store=$disk/fuse mnt=$CFS_TMP/mnt
mkdir -p "$store" "$mnt"
for f in small3 small4; do
	o=$(cfs_object_of "$src/$f")
	mkdir -p "$store/${o%/*}"
	cp "$origin/$o" "$store/$o"
done
"$CFS_CACHE_BIN" --store "$store" --server "$FAULTD_URL" --no-handoff -f "$mnt" 2>"$CFS_TMP/fuse.err" &
fpid=$!
cfs_track_pid "$fpid"
cfs_track_mount "$mnt"
cfs_wait_mount "$mnt"
leave 2000000
rc=0
cfs_bounded 30 cat "$mnt/$big" >/dev/null 2>"$CFS_TMP/cat.err" || rc=$?
[ "$rc" != 0 ] && [ "$rc" != 124 ] || cfs_fail "read of an object that does not fit: status $rc"
grep -q "Input/output error" "$CFS_TMP/cat.err" || cfs_fail "reader's error: $(cat "$CFS_TMP/cat.err")"
grep -q "No space left on device" "$CFS_TMP/fuse.err" || cfs_fail "daemon log: $(cat "$CFS_TMP/fuse.err")"
mountpoint -q "$mnt" || cfs_fail "the mount went away"
kill -0 "$fpid" || cfs_fail "cfs-cache exited"
cmp -s "$mnt/$small" "$origin/$small" || cfs_fail "a small object through a full store"
check_store "$store" 3
room
cmp -s "$mnt/$big" "$origin/$big" || cfs_fail "the big object with room again"
check_store "$store" 4
cfs_umount "$mnt"
cfs_stop_pid "$fpid"
rm -rf "$store"

# 3b. A mount that is never idle: a miss out of space does not wait for a slow transfer (20 s
# here) to end before it is tried again and fails.
slow=$(cfs_object_of "$src/small2")
fetch_start_faultd drip "$origin" --fault "${slow/\//}=drip" --drip-bps 5000
store=$disk/busy
mkdir -p "$store"
"$CFS_CACHE_BIN" --store "$store" --server "$FAULTD_URL" --no-handoff -f "$mnt" 2>"$CFS_TMP/busy.err" &
fpid=$!
cfs_track_pid "$fpid"
cfs_wait_mount "$mnt"
cat "$mnt/$slow" >/dev/null 2>&1 &
rpid=$!
cfs_track_pid "$rpid"
cfs_wait_download "$store"
leave 2000000
t0=$(date +%s)
rc=0
cfs_bounded 60 cat "$mnt/$big" >/dev/null 2>"$CFS_TMP/cat.err" || rc=$?
t=$(($(date +%s) - t0))
[ "$rc" != 0 ] && [ "$rc" != 124 ] || cfs_fail "read of an object that does not fit, mount busy: status $rc"
[ "$t" -lt 15 ] || cfs_fail "a miss out of space waited ${t} s for another transfer to end"
kill -0 "$rpid" 2>/dev/null || cfs_fail "the slow read ended first: the mount was not busy"
cfs_umount "$mnt"
cfs_stop_pid "$fpid"
cfs_stop_pid "$rpid"
room
check_store "$store"
rm -rf "$store"

# 3c. With --max-size the store is a cache: a miss that does not fit evicts least recently used
# objects worth its size, and is served (without --max-size, above, nothing is evicted).
store=$disk/cache
mkdir -p "$store"
cp -a "$origin/." "$store/"
rm "$store/$big"
before=$(count "$store")
"$CFS_CACHE_BIN" --store "$store" --server "$FAULTD_URL" --no-handoff --max-size 1G -f "$mnt" \
	2>"$CFS_TMP/cache.err" &
fpid=$!
cfs_track_pid "$fpid"
cfs_wait_mount "$mnt"
leave 2000000
cfs_bounded 60 cmp -s "$mnt/$big" "$origin/$big" || cfs_fail "a miss with a full cache: $(cat "$CFS_TMP/cache.err")"
grep -q "filesystem full: evicted" "$CFS_TMP/cache.err" || cfs_fail "no eviction: $(cat "$CFS_TMP/cache.err")"
cfs_umount "$mnt"
cfs_stop_pid "$fpid"
check_store "$store"
after=$(count "$store")
[ -f "$store/$big" ] && [ "$after" -lt "$before" ] || cfs_fail "cache: $before objects before, $after after"
room
rm -rf "$store"

# 4. cfs-serve on a full store: an upload is refused with 507 and nothing is kept (with room,
# 201); a zstd side file that does not fit is dropped and the object is served as it is (with
# room, compressed).
store=$disk/serve
mkdir -p "$store" "$CFS_TMP/text"
cfs_make_file "$CFS_TMP/rand" 600000 7
base64 <"$CFS_TMP/rand" | head -c 800000 >"$CFS_TMP/text/t"
"$CFS_STORE_BIN" -q --no-progress import "$CFS_TMP/text" "$store" >/dev/null
text=$(cfs_object_of "$CFS_TMP/text/t")
printf 'upload-token\n' >"$CFS_TMP/token"
port=$(cfs_free_port)
"$CFS_SERVE_BIN" --store "$store" --listen "127.0.0.1:$port" --allow-upload \
	--token-file "$CFS_TMP/token" 2>"$CFS_TMP/serve.err" &
cfs_track_pid $!
cfs_wait_port "$port"
put() {
	curl -s -o /dev/null -w '%{http_code}' -X PUT -H "Authorization: Bearer upload-token" \
		--data-binary "@$origin/$big" "http://127.0.0.1:$port/objects/$big"
}
# get_zstd: GET of the text object asking for zstd; prints the Content-Encoding (or "identity")
# and leaves the decoded body in $CFS_TMP/got.
get_zstd() {
	curl -sf --compressed -H "Accept-Encoding: zstd" -H "Authorization: Bearer upload-token" \
		-D "$CFS_TMP/headers" -o "$CFS_TMP/got" "http://127.0.0.1:$port/objects/$text" ||
		cfs_fail "GET of the text object: $(head -1 "$CFS_TMP/headers" 2>/dev/null)"
	enc=$(tr -d '\r' <"$CFS_TMP/headers" | sed -n 's/^[Cc]ontent-[Ee]ncoding: *//p')
	echo "${enc:-identity}"
}
leave 2000000
cfs_assert_eq "$(put)" 507 "upload into a full store"
grep -q "No space left on device" "$CFS_TMP/serve.err" || cfs_fail "server log: $(cat "$CFS_TMP/serve.err")"
check_store "$store" 1
leave 100000
cfs_assert_eq "$(get_zstd)" identity "encoding with no room for the side file"
cmp -s "$CFS_TMP/got" "$store/$text" || cfs_fail "identity body with a full disk"
left=$(find "$store/.cfs-zstd" -type f | wc -l)
cfs_assert_eq "$left" 0 "side files or their temp files on a full disk"
room
cfs_assert_eq "$(put)" 201 "upload with room again"
check_store "$store" 2
cmp -s "$store/$big" "$origin/$big" || cfs_fail "uploaded bytes"
cfs_assert_eq "$(get_zstd)" zstd "encoding with room again"
cmp -s "$CFS_TMP/got" "$store/$text" || cfs_fail "zstd body with room again"

# 5. A pull-through cfs-serve tier on a full disk: a miss that does not fit is 507 (not the
# upstream's 502) and nothing is kept; with --max-size the tier evicts least recently used
# objects to make room and serves it.
store=$disk/tier
mkdir -p "$store"
tport=$(cfs_free_port)
"$CFS_SERVE_BIN" --store "$store" --listen "127.0.0.1:$tport" --upstream "$FAULTD_URL" \
	2>"$CFS_TMP/tier.err" &
tpid=$!
cfs_track_pid "$tpid"
cfs_wait_port "$tport"
leave 2000000
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$tport/objects/$big")
cfs_assert_eq "$code" 507 "pull-through miss into a full store"
grep -q "No space left on device" "$CFS_TMP/tier.err" || cfs_fail "tier log: $(cat "$CFS_TMP/tier.err")"
check_store "$store" 0
cfs_stop_pid "$tpid"
room
cp -a "$origin/." "$store/"
rm "$store/$big"
before=$(count "$store")
tport=$(cfs_free_port)
"$CFS_SERVE_BIN" --store "$store" --listen "127.0.0.1:$tport" --upstream "$FAULTD_URL" \
	--max-size 1G 2>"$CFS_TMP/tier2.err" &
tpid=$!
cfs_track_pid "$tpid"
cfs_wait_port "$tport"
leave 2000000
curl -sf -o "$CFS_TMP/got" "http://127.0.0.1:$tport/objects/$big" ||
	cfs_fail "pull-through miss with --max-size: $(cat "$CFS_TMP/tier2.err")"
cmp -s "$CFS_TMP/got" "$origin/$big" || cfs_fail "bytes served by the tier"
grep -q "filesystem full: evicted" "$CFS_TMP/tier2.err" || cfs_fail "no eviction: $(cat "$CFS_TMP/tier2.err")"
cfs_stop_pid "$tpid"
check_store "$store"
after=$(count "$store")
[ -f "$store/$big" ] && [ "$after" -lt "$before" ] || cfs_fail "tier: $before objects before, $after after"
room
