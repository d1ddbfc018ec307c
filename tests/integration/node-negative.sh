#!/bin/bash
# SPDX-License-Identifier: MIT
# The negative cache: an object absent on every server is answered ENOENT without another
# request for --negative-timeout, and found once that passes after the server gets it (never
# hidden for long); --negative-timeout 0 asks the server every time.
. "$(dirname "$0")/lib.sh"
cfs_require_fuse
cfs_require_cmd nginx getfattr

store="$CFS_TMP/store" origin="$CFS_TMP/origin" staging="$CFS_TMP/staging" remote="$CFS_TMP/remote"
mkdir -p "$origin" "$CFS_TMP/tree"
cfs_make_file "$CFS_TMP/tree/late" 7000 1
cfs_make_file "$CFS_TMP/tree/never" 7001 2
"$CFS_STORE_BIN" --no-progress -q import "$CFS_TMP/tree" "$staging" >/dev/null
late=$(cfs_object_of "$CFS_TMP/tree/late") never=$(cfs_object_of "$CFS_TMP/tree/never")
port=$(cfs_free_port)
cfs_start_nginx "$origin" "$port"
url="http://127.0.0.1:$port/objects"
log="$CFS_TMP/nginx-$port/access.log"

cfs_start_cache "$store" "$remote" --server "$url" --no-handoff --negative-timeout 3s
t0=$(date +%s%N)
! stat "$remote/$late" >/dev/null 2>&1 || cfs_fail "absent object found"
! stat "$remote/$late" >/dev/null 2>&1 || cfs_fail "absent object found the second time"
cfs_assert_eq "$(cfs_nginx_gets "$log" "$late")" 1 "GETs of an absent object looked up twice"
cfs_assert_eq "$(cfs_counter "$remote" negative_hits)" 1 "negative_hits"
cfs_assert_eq "$(cfs_counter "$remote" not_found)" 1 "not_found"

# The server gets the object: hidden at most the timeout, then found.
mkdir -p "$origin/${late%%/*}"
cp "$staging/$late" "$origin/$late"
found=
for _ in $(seq 1 100); do
	if stat "$remote/$late" >/dev/null 2>&1; then found=1; break; fi
	sleep 0.1
done
t1=$(date +%s%N)
[ -n "$found" ] || cfs_fail "object never found after it reached the server"
hidden_ms=$(( (t1 - t0) / 1000000 ))
cfs_log "hidden for ${hidden_ms} ms with --negative-timeout 3s"
[ "$hidden_ms" -ge 2500 ] || cfs_fail "found after $hidden_ms ms: the absence was not cached"
[ "$hidden_ms" -le 5000 ] || cfs_fail "hidden for $hidden_ms ms, longer than the timeout"
cfs_assert_eq "$(cfs_nginx_gets "$log" "$late")" 2 "GETs of the object once found"
cmp "$remote/$late" "$CFS_TMP/tree/late" || cfs_fail "content"
cfs_stop_cache "$remote"

# Off: every lookup asks the server.
cfs_start_cache "$store" "$remote" --server "$url" --no-handoff --negative-timeout 0
for _ in 1 2 3; do ! stat "$remote/$never" >/dev/null 2>&1 || cfs_fail "absent object found"; done
cfs_assert_eq "$(cfs_nginx_gets "$log" "$never")" 3 "GETs with --negative-timeout 0"
cfs_assert_eq "$(cfs_counter "$remote" negative_hits)" 0 "negative_hits when off"
cfs_stop_cache "$remote"
rc=0
"$CFS_CACHE_BIN" --store "$store" --negative-timeout soon "$remote" 2>/dev/null || rc=$?
cfs_assert_eq "$rc" 2 "a bad --negative-timeout"
