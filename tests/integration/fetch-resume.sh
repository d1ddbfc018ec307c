#!/bin/bash
# SPDX-License-Identifier: MIT
# Bodies cut off half way are resumed with Range whether the partial bytes were still gathered
# in memory or already in the temp file; a resumed body that turns out wrong is never saved,
# and nothing partial ever sits under an object's final name.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/fetch-lib.sh"
fetch_need_faultd

src="$CFS_TMP/src"
rules=()
: >"$CFS_TMP/list"
# 100 000: half is below the resume threshold (64 KiB), fetched again whole.
# 200 000: half is still in memory when the connection drops.
# 1 000 000: half spans a handed-over chunk and gathered bytes.
for size in 100000 200000 1000000; do
	d=$(fetch_add_object "$src" "$size" "$size")
	echo "$size $d" >>"$CFS_TMP/objects"
	fetch_path "$d" >>"$CFS_TMP/list"
	rules+=(--fault "$d=truncate:1")
done
fetch_start_faultd srv "$src" "${rules[@]}"
good=$FAULTD_URL
store="$CFS_TMP/store"
cfs_bounded 60 "$CFS_CACHE_BIN" fetch --no-progress --store "$store" --server "$good" \
	--from "$CFS_TMP/list" --stats >"$CFS_TMP/out" 2>"$CFS_TMP/err" ||
	{ cat "$CFS_TMP/out" "$CFS_TMP/err" >&2; cfs_fail "fetch with truncated first answers failed"; }
grep -q "^3 objects: 3 fetched" "$CFS_TMP/out" || cfs_fail "summary: $(head -1 "$CFS_TMP/out")"
grep -q "resumed 2," "$CFS_TMP/out" || cfs_fail "resumes: $(grep requests "$CFS_TMP/out")"
while read -r size d; do
	p=$(fetch_path "$d")
	half=$((size / 2))
	if [ "$size" -lt 131072 ]; then
		grep -q "^GET /objects/$p fault=none$" "$CFS_TMP/srv.log" ||
			cfs_fail "$size: not fetched again whole: $(grep "$p" "$CFS_TMP/srv.log")"
	else
		grep -q "^GET /objects/$p fault=none range=$half-$" "$CFS_TMP/srv.log" ||
			cfs_fail "$size: not resumed at $half: $(grep "$p" "$CFS_TMP/srv.log")"
	fi
done <"$CFS_TMP/objects"
"$CFS_STORE_BIN" --no-progress verify "$store" >"$CFS_TMP/verify" || cfs_fail "verify: $(cat "$CFS_TMP/verify")"
grep -q "^3 objects ok, 0 corrupt" "$CFS_TMP/verify" || cfs_fail "verify: $(cat "$CFS_TMP/verify")"
fetch_assert_no_temp "$store"
fetch_assert_no_sanitizer "$CFS_TMP/err"

# A server that cuts the body and then sends wrong bytes for the rest: the resumed object fails
# verification and nothing is saved under its name; the healthy server then supplies it.
bad="$CFS_TMP/bad"
while read -r size d; do
	p=$(fetch_path "$d")
	mkdir -p "$bad/${p%/*}"
	head -c "$((size / 2))" "$src/$p" >"$bad/$p"
	head -c "$((size - size / 2))" /dev/zero >>"$bad/$p"
done <"$CFS_TMP/objects"
fetch_start_faultd badsrv "$bad" "${rules[@]}"
badurl=$FAULTD_URL
store2="$CFS_TMP/store2"
set +e
cfs_bounded 60 "$CFS_CACHE_BIN" fetch --no-progress --retries 1 --store "$store2" \
	--server "$badurl" --from "$CFS_TMP/list" >"$CFS_TMP/out2" 2>"$CFS_TMP/err2"
rc=$?
set -e
cfs_assert_eq "$rc" 1 "exit code with wrong resumed bodies"
objs=$(find "$store2" -path "$store2/.cfs-tmp" -prune -o -type f -print | wc -l)
cfs_assert_eq "$objs" 0 "objects saved from wrong resumed bodies"
[ "$(grep -c "digest mismatch" "$CFS_TMP/err2")" -ge 3 ] || cfs_fail "mismatches: $(cat "$CFS_TMP/err2")"
fetch_assert_no_temp "$store2"
fetch_assert_no_sanitizer "$CFS_TMP/err2"
cfs_bounded 60 "$CFS_CACHE_BIN" fetch --no-progress --store "$store2" --server "$badurl" \
	--server "$good" --from "$CFS_TMP/list" >"$CFS_TMP/out3" 2>"$CFS_TMP/err3" ||
	{ cat "$CFS_TMP/out3" "$CFS_TMP/err3" >&2; cfs_fail "failover after wrong bodies failed"; }
"$CFS_STORE_BIN" --no-progress verify "$store2" >"$CFS_TMP/verify2" || cfs_fail "verify2: $(cat "$CFS_TMP/verify2")"
grep -q "^3 objects ok, 0 corrupt" "$CFS_TMP/verify2" || cfs_fail "verify2: $(cat "$CFS_TMP/verify2")"
fetch_assert_no_temp "$store2"
