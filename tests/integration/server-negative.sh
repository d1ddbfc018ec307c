#!/bin/bash
# SPDX-License-Identifier: MIT
# cfs-serve --upstream remembers upstream 404s for --negative-ttl: twenty lookups of an absent
# object cost one upstream request; an object that appears upstream is served once the entry
# expires; one uploaded to the tier is served at once; /metrics counts all of it.
. "$(dirname "$0")/lib.sh"
cfs_require_cmd curl

origin="$CFS_TMP/origin" tier="$CFS_TMP/tier"
mkdir -p "$origin" "$tier" "$CFS_TMP/a" "$CFS_TMP/b"
cfs_make_file "$CFS_TMP/a/obj" 7000 11
cfs_make_file "$CFS_TMP/b/obj" 9000 12
pa=$(cfs_object_of "$CFS_TMP/a/obj")
pb=$(cfs_object_of "$CFS_TMP/b/obj")
printf 'tier-token\n' >"$CFS_TMP/token"
auth=(-H 'Authorization: Bearer tier-token')

po=$(cfs_free_port)
"$CFS_SERVE_BIN" --store "$origin" --listen "127.0.0.1:$po" --threads 1 \
	--access-log "$CFS_TMP/origin.log" 2>"$CFS_TMP/origin.err" &
origin_pid=$!
cfs_track_pid $origin_pid
pt=$(cfs_free_port)
"$CFS_SERVE_BIN" --store "$tier" --listen "127.0.0.1:$pt" --threads 2 --negative-ttl 2s \
	--upstream "http://127.0.0.1:$po/objects" --allow-upload --token-file "$CFS_TMP/token" \
	2>"$CFS_TMP/tier.err" &
tier_pid=$!
cfs_track_pid $tier_pid
cfs_wait_port "$po"
cfs_wait_port "$pt"
get() { curl -s -o /dev/null -w '%{http_code}' "${auth[@]}" "http://127.0.0.1:$pt/objects/$1"; }
origin_gets() { grep -c "\"GET /objects/$1\"" "$CFS_TMP/origin.log" || true; }

for _ in $(seq 1 20); do
	cfs_assert_eq "$(get "$pa")" 404 "absent object through the tier"
done
cfs_assert_eq "$(origin_gets "$pa")" 1 "upstream requests for 20 lookups of an absent object"

# It appears upstream: hidden at most --negative-ttl (2 s), then served.
"$CFS_STORE_BIN" -q --no-progress import "$CFS_TMP/a" "$origin" >/dev/null
t0=$(date +%s%N)
c=404
for _ in $(seq 1 50); do
	c=$(get "$pa")
	[ "$c" = 200 ] && break
	sleep 0.1
done
ms=$((($(date +%s%N) - t0) / 1000000))
cfs_assert_eq "$c" 200 "the object once it is upstream"
[ "$ms" -lt 3000 ] || cfs_fail "an upstream object stayed hidden for $ms ms"
cfs_log "hidden for $ms ms after appearing upstream"

# An upload to the tier is never hidden by the negative entry.
cfs_assert_eq "$(get "$pb")" 404 "absent, and now remembered"
c=$(curl -s -o /dev/null -w '%{http_code}' "${auth[@]}" -T "$CFS_TMP/b/obj" "http://127.0.0.1:$pt/objects/$pb")
cfs_assert_eq "$c" 201 "upload to the tier"
cfs_assert_eq "$(get "$pb")" 200 "the upload, right away"

m=$(curl -s "${auth[@]}" "http://127.0.0.1:$pt/metrics")
metric() { echo "$m" | awk -v k="$1" '$1 == k {print $2}'; }
cfs_log "$(echo "$m" | grep '^cfs_serve_upstream')"
[ "$(metric cfs_serve_upstream_negative_hits_total)" -ge 19 ] || cfs_fail "negative hits not counted"
[ "$(metric cfs_serve_upstream_not_found_total)" -ge 2 ] || cfs_fail "upstream 404s not counted"
[ "$(metric cfs_serve_upstream_fetched_bytes_total)" = 7000 ] || cfs_fail "fetched bytes"
[ "$(metric cfs_serve_upstream_failures_total)" = 0 ] || cfs_fail "failures counted"
echo "$m" | grep -q '^cfs_serve_build_info{.*pull_through="yes"} 1$' || cfs_fail "build info"
cfs_stop_pid $tier_pid

# --negative-ttl 0: every lookup goes upstream, as before.
pt=$(cfs_free_port)
"$CFS_SERVE_BIN" --store "$tier" --listen "127.0.0.1:$pt" --negative-ttl 0 \
	--upstream "http://127.0.0.1:$po/objects" 2>>"$CFS_TMP/tier.err" &
tier_pid=$!
cfs_track_pid $tier_pid
cfs_wait_port "$pt"
pc="ab/$(printf 'c%.0s' $(seq 1 62))"
for _ in 1 2 3; do
	cfs_assert_eq "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$pt/objects/$pc")" 404 "absent"
done
cfs_assert_eq "$(origin_gets "$pc")" 3 "upstream requests without a negative cache"
cfs_stop_pid $tier_pid
cfs_stop_pid $origin_pid
# Every server stopped: none of them had a sanitizer (or leak) report.
! grep -q "Sanitizer\|runtime error:" "$CFS_TMP"/*.err 2>/dev/null ||
	cfs_fail "sanitizer report: $(grep -h -m1 "Sanitizer\|runtime error:" "$CFS_TMP"/*.err)"
