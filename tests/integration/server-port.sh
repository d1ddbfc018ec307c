#!/bin/bash
# SPDX-License-Identifier: MIT
# cfs-serve on a taken address: a second server (another store) fails at start with "address in
# use" instead of sharing the port through SO_REUSEPORT; one server's loops still share it.
. "$(dirname "$0")/lib.sh"
cfs_require_cmd curl

a="$CFS_TMP/a" b="$CFS_TMP/b"
mkdir -p "$a" "$b"
mkdir -p "$CFS_TMP/src"
cfs_make_file "$CFS_TMP/src/obj" 3000 1
"$CFS_STORE_BIN" -q --no-progress import "$CFS_TMP/src" "$a" >/dev/null
p=$(cfs_object_of "$CFS_TMP/src/obj")

port=$(cfs_free_port)
"$CFS_SERVE_BIN" --store "$a" --listen "127.0.0.1:$port" --threads 2 2>"$CFS_TMP/a.err" &
pid=$!
cfs_track_pid $pid
cfs_wait_port "$port"

# The same address, the wildcard, and a second --listen that is taken: each refused at start.
for l in "127.0.0.1:$port" "0.0.0.0:$port" "127.0.0.1:$(cfs_free_port) --listen 127.0.0.1:$port"; do
	# shellcheck disable=SC2086 # $l may hold a second option on purpose
	rc=0
	cfs_bounded 20 "$CFS_SERVE_BIN" --store "$b" --listen $l --threads 2 2>"$CFS_TMP/b.err" || rc=$?
	cfs_assert_eq "$rc" 1 "second server on $l: exit status"
	grep -q 'address in use' "$CFS_TMP/b.err" || cfs_fail "no clear error for $l: $(cat "$CFS_TMP/b.err")"
	! grep -q "listening on http://127.0.0.1:$port" "$CFS_TMP/b.err" || cfs_fail "second server claimed $port"
done

# Every answer comes from the first server: no 404 from an empty store behind the same port.
codes=""
for _ in $(seq 1 20); do
	codes="$codes $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/objects/$p")"
done
[ "$(echo "$codes" | tr ' ' '\n' | grep -c 200)" = 20 ] || cfs_fail "answers: $codes"
# ... and both of its loops took connections (20 new ones; the kernel spreads them).
m=$(curl -s "http://127.0.0.1:$port/metrics")
for l in 0 1; do
	n=$(echo "$m" | awk -v l="$l" '$1 == "cfs_serve_loop_requests_total{loop=\"" l "\"}" {print $2}')
	[ "${n:-0}" -gt 0 ] || cfs_fail "loop $l served nothing: $(echo "$m" | grep loop_requests)"
done
# The request histogram and the other counters of the exposition.
metric() { echo "$m" | awk -v k="$1" '$1 == k {print $2}'; }
n=$(metric cfs_serve_request_duration_seconds_count)
[ "${n:-0}" -ge 20 ] || cfs_fail "request histogram count: $n"
cfs_assert_eq "$(metric 'cfs_serve_request_duration_seconds_bucket{le="+Inf"}')" "$n" "+Inf bucket"
[ "$(metric cfs_serve_received_bytes_total)" -gt $((20 * 50)) ] || cfs_fail "received bytes"
echo "$m" | grep -q '^cfs_serve_build_info{version="[^"]*",tls="no",zstd="yes",upload="no",pull_through="no"} 1$' ||
	cfs_fail "build info: $(echo "$m" | grep build_info)"
cfs_stop_pid $pid

# Once the first server is gone the address is free again (no stale refusal).
"$CFS_SERVE_BIN" --store "$b" --listen "127.0.0.1:$port" --threads 2 2>"$CFS_TMP/b.err" &
pid=$!
cfs_track_pid $pid
cfs_wait_port "$port"
cfs_assert_eq "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/objects/$p")" 404 \
	"the new server's own store"
cfs_stop_pid $pid
# Every server stopped: none of them had a sanitizer (or leak) report.
! grep -q "Sanitizer\|runtime error:" "$CFS_TMP"/*.err 2>/dev/null ||
	cfs_fail "sanitizer report: $(grep -h -m1 "Sanitizer\|runtime error:" "$CFS_TMP"/*.err)"
