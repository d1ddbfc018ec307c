#!/bin/bash
# SPDX-License-Identifier: MIT
# cfs-cache prefetch: fetches an image's missing objects in trace order first, honours a rate
# limit, leaves missing-objects empty, and the composefs mount then reads everything from the
# store alone; a run beside a serving cfs-cache mount on the same store races safely.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/fetch-lib.sh"
cfs_require_root
cfs_require_cmd mkfs.erofs setfattr
fetch_need_faultd
S=$CFS_STORE_BIN C=$CFS_CACHE_BIN

src=$CFS_TMP/src origin=$CFS_TMP/origin image=$CFS_TMP/image.erofs
mkdir -p "$src/a" "$src/b/c"
for i in $(seq 1 30); do cfs_make_file "$src/a/f$i" $((i * 3000 + 65)) "a$i"; done
for i in $(seq 1 10); do cfs_make_file "$src/b/c/g$i" $((i * 7 + 30)) "b$i"; done
cfs_make_file "$src/big" 700000 big
ln -s a/f1 "$src/link"
"$S" -q --no-progress mkimage --store "$origin" "$src" "$image" >/dev/null
"$S" objects "$image" >"$CFS_TMP/all"
nall=$(wc -l <"$CFS_TMP/all")
fetch_start_faultd srv "$origin"
url=$FAULTD_URL

# Misuse.
set +e
"$C" prefetch --image "$image" --store "$CFS_TMP/x" 2>/dev/null; rc1=$?
"$C" prefetch --store "$CFS_TMP/x" --server "$url" 2>/dev/null; rc2=$?
"$C" prefetch --image "$image" --store "$CFS_TMP/x" --server "$url" --rate-limit zz 2>/dev/null; rc3=$?
set -e
cfs_assert_eq "$rc1 $rc2 $rc3" "2 2 2" "misuse exit codes"
"$C" prefetch --help | grep -q -- "--order" || cfs_fail "--help"

# A hostile redirect (the kernel would open /etc/passwd of the store): refused, nothing fetched.
d=$(head -n1 "$CFS_TMP/all" | tr -d /)
printf '/ 4096 40755 2 0 0 0 0.0 - - -\n/f 100 100644 1 0 0 0 0.0 etc/passwd - %s\n' "$d" \
	>"$CFS_TMP/hostile.dump"
"$S" mkimage --from-file "$CFS_TMP/hostile.dump" "$CFS_TMP/hostile.img"
set +e
"$C" prefetch --image "$CFS_TMP/hostile.img" --store "$CFS_TMP/hs" --server "$url" -q \
	--no-progress 2>"$CFS_TMP/err"
rc=$?
set -e
cfs_assert_eq "$rc" 1 "prefetch of a hostile image"
grep -q "is not an object path" "$CFS_TMP/err" || cfs_fail "prefetch message: $(cat "$CFS_TMP/err")"
[ -z "$(find "$CFS_TMP/hs" -type f 2>/dev/null)" ] || cfs_fail "prefetch of a hostile image fetched"

# A partial store: a/ imported already.
store=$CFS_TMP/store
"$S" -q import "$src/a" "$store" >/dev/null
"$S" missing-objects --store "$store" "$image" >"$CFS_TMP/missing0"
nmiss=$(wc -l <"$CFS_TMP/missing0")
[ "$nmiss" -gt 0 ] && [ "$nmiss" -lt "$nall" ] || cfs_fail "partial store: $nmiss of $nall missing"

# Order: a trace naming some missing objects (most important first), junk, and present ones.
first=$(sed -n 3p "$CFS_TMP/missing0") second=$(sed -n 1p "$CFS_TMP/missing0")
present=$(comm -23 "$CFS_TMP/all" "$CFS_TMP/missing0" | head -1)
printf '%s 12.5 read\n# comment\n%s\nnot-an-object\n%s\n%s\n' "$first" "$present" "$second" "$first" \
	>"$CFS_TMP/trace"
"$C" prefetch -n --image "$image" --store "$store" --order "$CFS_TMP/trace" >"$CFS_TMP/plan"
cfs_assert_eq "$(head -2 "$CFS_TMP/plan" | tr '\n' ' ')" "$first $second " "dry-run order"
cfs_assert_eq "$(sort "$CFS_TMP/plan" | tr '\n' ' ')" "$(tr '\n' ' ' <"$CFS_TMP/missing0")" "dry-run set"

# The real run, one transfer at a time so the server sees the order.
cfs_bounded 60 "$C" prefetch --no-progress --jobs 1 --image "$image" --store "$store" \
	--server "$url" --order "$CFS_TMP/trace" >"$CFS_TMP/out" || cfs_fail "prefetch failed"
grep -q "$nmiss missing: $nmiss fetched" "$CFS_TMP/out" || cfs_fail "summary: $(cat "$CFS_TMP/out")"
awk '$1 == "GET" { sub("^/objects/", "", $2); print $2 }' "$CFS_TMP/srv.log" >"$CFS_TMP/gets"
cfs_assert_eq "$(head -2 "$CFS_TMP/gets" | tr '\n' ' ')" "$first $second " "fetch order"
cfs_assert_eq "$(wc -l <"$CFS_TMP/gets")" "$nmiss" "GET count"
cfs_assert_eq "$("$S" missing-objects --store "$store" "$image")" "" "missing after prefetch"
fetch_assert_no_temp "$store"
# Nothing left to do: no request.
"$C" prefetch -q --image "$image" --store "$store" --server "$url" || cfs_fail "second run"
cfs_assert_eq "$(grep -c '^GET' "$CFS_TMP/srv.log")" "$nmiss" "requests of a second run"

# The composefs mount reads everything with no FUSE layer at all.
mnt=$CFS_TMP/mnt
cfs_mount_composefs "$image" "$mnt" "$store"
(cd "$src" && find . -type f -print0 | sort -z | xargs -0 sha256sum) >"$CFS_TMP/sum.src"
(cd "$mnt" && find . -type f -print0 | sort -z | xargs -0 sha256sum) >"$CFS_TMP/sum.mnt"
diff -u "$CFS_TMP/sum.src" "$CFS_TMP/sum.mnt" >&2 || cfs_fail "composefs mount differs"
cfs_umount "$mnt"

# Rate limit: ~2.2 MB at 400 KiB/s takes seconds (the first second is a free burst).
store2=$CFS_TMP/store2
t0=$(date +%s%N)
"$C" prefetch -q --no-progress --rate-limit 400k --image "$image" --store "$store2" \
	--server "$url" || cfs_fail "rate-limited prefetch"
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
total=$(du -sb --apparent-size "$origin" | cut -f1)
cfs_log "rate-limited run: $total bytes in $ms ms"
[ "$ms" -ge 1500 ] || cfs_fail "rate limit not applied ($ms ms)"
cfs_assert_eq "$("$S" missing-objects --store "$store2" "$image")" "" "missing after rate-limited run"

# Beside a serving cfs-cache mount on the same store: readers and prefetch race to insert.
if [ -c /dev/fuse ] && type cfs_start_cache >/dev/null 2>&1; then
	store3=$CFS_TMP/store3 remote=$CFS_TMP/remote mnt3=$CFS_TMP/mnt3
	cfs_start_cache "$store3" "$remote" --server "$url"
	cfs_mount_composefs "$image" "$mnt3" "$store3" "$remote"
	(cd "$mnt3" && find . -type f -print0 | xargs -0 -P 8 -n 4 cat >/dev/null) &
	reader=$!
	cfs_bounded 60 "$C" prefetch -q --no-progress --image "$image" --store "$store3" \
		--server "$url" || cfs_fail "prefetch beside a mount"
	wait "$reader" || cfs_fail "readers beside prefetch"
	cfs_assert_eq "$("$S" missing-objects --store "$store3" "$image")" "" "missing after the race"
	(cd "$mnt3" && find . -type f -print0 | sort -z | xargs -0 sha256sum) >"$CFS_TMP/sum.mnt3"
	diff -u "$CFS_TMP/sum.src" "$CFS_TMP/sum.mnt3" >&2 || cfs_fail "mount differs after the race"
	"$S" -q --no-progress verify "$store3" >/dev/null || cfs_fail "store3 does not verify"
else
	cfs_log "no FUSE: race with a mount not tested"
fi
cfs_log "ok: $nmiss of $nall objects prefetched"
