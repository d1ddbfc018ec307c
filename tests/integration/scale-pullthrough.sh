#!/bin/bash
# SPDX-License-Identifier: MIT
# cfs-serve --upstream on its own: many clients waiting on one missing object cause one upstream
# transfer and all get the right bytes; absent objects are 404; --max-size keeps the tier's
# store within its quota while every object is still served correctly.
. "$(dirname "$0")/lib.sh"
cfs_require_cmd curl
[ -x "$CFS_SERVE_BIN" ] || cfs_skip "cfs-serve not built"

src="$CFS_TMP/src" origin="$CFS_TMP/origin" mid="$CFS_TMP/mid"
mkdir -p "$src"
cfs_make_file "$src/one" $((3 * 1048576 + 5)) 1
for i in $(seq 1 24); do cfs_make_file "$src/f$i" $((200000 + i)) $((10 + i)); done
"$CFS_STORE_BIN" -q --no-progress import "$src" "$origin"
p_origin=$(cfs_free_port) p_mid=$(cfs_free_port)
"$CFS_SERVE_BIN" --store "$origin" --listen "127.0.0.1:$p_origin" --access-log "$CFS_TMP/origin.log" --quiet &
cfs_track_pid $!
quota=$((2 * 1048576))
"$CFS_SERVE_BIN" --store "$mid" --listen "127.0.0.1:$p_mid" --max-size "$quota" --no-zstd \
	--upstream "http://127.0.0.1:$p_origin/objects" --access-log "$CFS_TMP/mid.log" --quiet &
cfs_track_pid $!
cfs_wait_port "$p_origin"
cfs_wait_port "$p_mid"
mid_url="http://127.0.0.1:$p_mid/objects"

# 50 clients at once for one missing object: one upstream GET, 50 correct bodies.
one=$(cfs_object_of "$src/one")
clients=""
for i in $(seq 1 50); do
	curl -sf --max-time 60 -o "$CFS_TMP/one.$i" "$mid_url/$one" &
	clients="$clients $!"
done
for p in $clients; do wait "$p" || true; done
for i in $(seq 1 50); do cmp -s "$src/one" "$CFS_TMP/one.$i" || cfs_fail "client $i got wrong bytes"; done
cfs_assert_eq "$(grep -c "GET /objects/$one" "$CFS_TMP/origin.log")" 1 "upstream GETs for one object"

# Absent upstream: 404 here, and not cached as present.
absent=$(printf '%064d' 7 | sed 's/^\(..\)/\1\//')
code=$(curl -s -o /dev/null -w '%{http_code}' "$mid_url/$absent")
cfs_assert_eq "$code" 404 "absent object"

# The quota holds while every object is served correctly, twice over.
store_bytes() {
	find "$mid" -mindepth 2 -maxdepth 2 -type f -path "$mid/[0-9a-f][0-9a-f]/*" -printf '%s\n' |
		awk '{s += $1} END {print s + 0}'
}
for pass in 1 2; do
	for i in $(seq 1 24); do
		o=$(cfs_object_of "$src/f$i")
		curl -sf --max-time 30 -o "$CFS_TMP/got" "$mid_url/$o" || cfs_fail "pass $pass: f$i not served"
		cmp -s "$src/f$i" "$CFS_TMP/got" || cfs_fail "pass $pass: f$i differs"
		s=$(store_bytes)
		[ "$s" -le $((quota + 200100)) ] || cfs_fail "tier store grew to $s"
	done
done
[ "$(store_bytes)" -le "$quota" ] || cfs_fail "tier store over quota at rest: $(store_bytes)"
"$CFS_STORE_BIN" --no-progress verify "$mid" >/dev/null || cfs_fail "tier store does not verify"
# Misuse: --max-size without --upstream.
set +e
"$CFS_SERVE_BIN" --store "$mid" --max-size 1G --listen 127.0.0.1:1 2>/dev/null
cfs_assert_eq "$?" 2 "--max-size without --upstream"
set -e
