#!/bin/bash
# SPDX-License-Identifier: MIT
# cfs-cache fetch: input forms, exit codes, skip of present objects, duplicates sharing one GET,
# retry then success on one server, Range resume of a broken large transfer, zstd, token auth.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/fetch-lib.sh"
fetch_need_faultd

src="$CFS_TMP/src"
small=$(fetch_add_object "$src" 5000 1)
mid=$(fetch_add_object "$src" 300000 2)
big=$(fetch_add_object "$src" 3000000 3)
flaky=$(fetch_add_object "$src" 20000 4)
absent=$(printf '%064d' 0 | tr 0 e)
echo secret-token-123 >"$CFS_TMP/token"
fetch_start_faultd srv "$src" --zstd --token-file "$CFS_TMP/token" \
	--fault "$big=truncate:1" --fault "$flaky=500:1"
url=$FAULTD_URL
opts=(--no-progress --token-file "$CFS_TMP/token" --retries 2)

# --help, --version, misuse.
"$CFS_CACHE_BIN" fetch --help | grep -q -- "--server" || cfs_fail "--help"
"$CFS_CACHE_BIN" fetch --version | grep -q cfscache || cfs_fail "--version"
set +e
"$CFS_CACHE_BIN" fetch --store "$CFS_TMP/x" 2>/dev/null; rc1=$?
"$CFS_CACHE_BIN" fetch --store "$CFS_TMP/x" --server "$url" not-a-digest 2>/dev/null; rc2=$?
printf 'zz/bad\n' | "$CFS_CACHE_BIN" fetch --store "$CFS_TMP/x" --server "$url" --from - 2>/dev/null; rc3=$?
"$CFS_CACHE_BIN" fetch --bogus 2>/dev/null; rc4=$?
set -e
cfs_assert_eq "$rc1 $rc2 $rc3 $rc4" "2 2 2 2" "misuse exit codes"

# Mixed forms, comments, duplicates (single flight: one GET each), through stdin.
store="$CFS_TMP/store"
{
	echo "# objects"
	fetch_path "$small"
	echo "$small"
	echo "sha256:$small"
	for _ in $(seq 1 50); do fetch_path "$mid"; done
	echo
	echo "$big"
	echo "$flaky"
} | cfs_bounded 60 "$CFS_CACHE_BIN" fetch "${opts[@]}" --store "$store" --server "$url" \
	--from - --stats >"$CFS_TMP/out" 2>"$CFS_TMP/err" ||
	{ cat "$CFS_TMP/out" "$CFS_TMP/err" >&2; cfs_fail "fetch failed"; }
cat "$CFS_TMP/out" >&2
grep -q "^4 objects: 4 fetched" "$CFS_TMP/out" || cfs_fail "summary: $(head -1 "$CFS_TMP/out")"
for d in $small $mid $big $flaky; do
	[ -f "$store/$(fetch_path "$d")" ] || cfs_fail "$d missing"
done
cfs_assert_eq "$(fetch_gets "$CFS_TMP/srv.log" "$(fetch_path "$small")")" 1 "GETs of a triplicated object"
cfs_assert_eq "$(fetch_gets "$CFS_TMP/srv.log" "$(fetch_path "$mid")")" 1 "GETs of a 50-fold object"
# 500 once, then success on the same server.
cfs_assert_eq "$(fetch_gets "$CFS_TMP/srv.log" "$(fetch_path "$flaky")")" 2 "GETs of the flaky object"
# The broken large transfer was resumed with Range, not restarted.
grep -q "^GET /objects/$(fetch_path "$big") fault=none range=1500000-" "$CFS_TMP/srv.log" ||
	cfs_fail "no Range resume: $(grep "$(fetch_path "$big")" "$CFS_TMP/srv.log")"
grep -q "resumed 1," "$CFS_TMP/out" || cfs_fail "resume not counted"
grep -q "^failed attempts: http 1, network 1, timeout 0, too large 0, local 0" "$CFS_TMP/out" ||
	cfs_fail "failure kinds: $(grep '^failed' "$CFS_TMP/out")"
# zstd was asked for and used.
grep -q "enc=zstd" "$CFS_TMP/srv.log" || cfs_fail "zstd not used"
"$CFS_STORE_BIN" --no-progress verify "$store" >/dev/null || cfs_fail "store does not verify"
fetch_assert_no_temp "$store"

# Present objects cost no request; an absent one fails with exit 1.
: >"$CFS_TMP/srv.log"
cfs_bounded 30 "$CFS_CACHE_BIN" fetch "${opts[@]}" --store "$store" --server "$url" \
	"$small" "$(fetch_path "$mid")" >"$CFS_TMP/out2"
grep -q "^2 objects: 0 fetched (0 B), 2 already present" "$CFS_TMP/out2" || cfs_fail "$(cat "$CFS_TMP/out2")"
[ ! -s "$CFS_TMP/srv.log" ] || cfs_fail "requests for present objects"
set +e
cfs_bounded 30 "$CFS_CACHE_BIN" fetch "${opts[@]}" --store "$store" --server "$url" "$absent" \
	>"$CFS_TMP/out3" 2>"$CFS_TMP/err3"
rc=$?
set -e
cfs_assert_eq "$rc" 1 "exit code for an absent object"
grep -q "not found on any server" "$CFS_TMP/err3" || cfs_fail "absent not reported"

# --no-zstd: identity only. Without the token: refused (401), exit 1, nothing saved.
store2="$CFS_TMP/store2"
: >"$CFS_TMP/srv.log"
cfs_bounded 30 "$CFS_CACHE_BIN" fetch "${opts[@]}" --no-zstd --store "$store2" --server "$url" \
	"$small" "$mid" >/dev/null || cfs_fail "--no-zstd fetch failed"
! grep -q "enc=zstd" "$CFS_TMP/srv.log" || cfs_fail "zstd used despite --no-zstd"
set +e
cfs_bounded 30 "$CFS_CACHE_BIN" fetch --no-progress --store "$CFS_TMP/store3" --server "$url" \
	"$small" >/dev/null 2>"$CFS_TMP/err4"
rc=$?
set -e
cfs_assert_eq "$rc" 1 "exit code without the token"
grep -q "HTTP 401" "$CFS_TMP/err4" || cfs_fail "401 not reported: $(cat "$CFS_TMP/err4")"
[ ! -e "$CFS_TMP/store3/$(fetch_path "$small")" ] || cfs_fail "saved without auth"
fetch_assert_no_sanitizer "$CFS_TMP/err" "$CFS_TMP/err3" "$CFS_TMP/err4"
