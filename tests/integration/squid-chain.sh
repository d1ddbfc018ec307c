#!/bin/bash
# SPDX-License-Identifier: MIT
# squid as a site cache (contrib/squid/cfs-site-cache.conf) in front of an origin (faultd, which
# answers the cold object only after 1.5 s, so that every client asks while the first request
# is in flight): 50 clients asking for it at once cause one origin request (collapsed
# forwarding) and all get its bytes; later requests are hits; an object corrupted at the origin
# passes through squid but is refused by cfs-cache fetch, which stores nothing. Then the same
# chain with cfs-serve as the origin.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/fetch-lib.sh"
cfs_require_cmd squid curl xargs
fetch_need_faultd

origin="$CFS_TMP/origin"
mkdir -p "$CFS_TMP/src" "$CFS_TMP/bad"
cfs_make_file "$CFS_TMP/src/cold" $((4 << 20)) 21
cfs_make_file "$CFS_TMP/src/small" 3000 22
cfs_make_file "$CFS_TMP/bad/obj" 300000 23
"$CFS_STORE_BIN" -q --no-progress import "$CFS_TMP/src" "$origin" >/dev/null
"$CFS_STORE_BIN" -q --no-progress import "$CFS_TMP/bad" "$origin" >/dev/null
pc=$(cfs_object_of "$CFS_TMP/src/cold")
ps=$(cfs_object_of "$CFS_TMP/src/small")
pb=$(cfs_object_of "$CFS_TMP/bad/obj")
# Corrupt one byte of the origin's copy: same name and size, other bytes.
printf 'X' | dd of="$origin/$pb" bs=1 seek=123456 conv=notrunc status=none

fetch_start_faultd origin "$origin" --delay-ms 1500 --fault "${pc:0:8}=delay"
po=${FAULTD_URL#http://127.0.0.1:}
po=${po%/objects}

# start_squid ORIGIN_PORT: squid in the foreground on a new port, tracked; sets base, squid_pid.
start_squid() {
	sq="$CFS_TMP/squid.$1"
	mkdir -p "$sq"
	chmod 0777 "$sq"
	sp=$(cfs_free_port)
	cat >"$sq/squid.conf" <<CONF
http_port 127.0.0.1:$sp accel defaultsite=cfs-origin no-vhost
cache_peer 127.0.0.1 parent $1 0 no-query originserver name=cfs_origin no-digest
cache_dir ufs $sq/cache 200 16 64
include $CFS_SRCDIR/contrib/squid/cfs-site-cache.conf
pid_filename $sq/squid.pid
cache_log $sq/cache.log
access_log stdio:$sq/access.log
coredump_dir $sq
visible_hostname cfs-test-cache
shutdown_lifetime 1 seconds
CONF
	if [ "$(id -u)" = 0 ]; then echo "cache_effective_user proxy" >>"$sq/squid.conf"; fi
	squid -k parse -f "$sq/squid.conf" >"$sq/parse.log" 2>&1 ||
		cfs_fail "squid rejects the config: $(grep -i 'error\|fatal' "$sq/parse.log" | head -3)"
	! grep -qi 'warning\|unrecognized\|obsolete' "$sq/parse.log" ||
		cfs_fail "squid warns about the config: $(grep -i 'warning\|unrecognized\|obsolete' "$sq/parse.log" | head -3)"
	# The disk cache (large objects) is made first, in the foreground.
	cfs_bounded 60 squid -z -N -f "$sq/squid.conf" >"$sq/z.log" 2>&1 || cfs_fail "squid -z: $(tail -3 "$sq/z.log")"
	squid -N -f "$sq/squid.conf" 2>"$sq/stderr" &
	squid_pid=$!
	cfs_track_pid $squid_pid
	cfs_wait_port "$sp"
	base="http://127.0.0.1:$sp/objects"
}
start_squid "$po"
origin_gets() { fetch_gets "$CFS_TMP/origin.log" "$1"; }

# 50 clients at once, one cold object.
mkdir -p "$CFS_TMP/got"
seq 1 50 | cfs_bounded 60 xargs -P 50 -I{} \
	curl -s -o "$CFS_TMP/got/{}" -w '%{http_code}\n' "$base/$pc" >"$CFS_TMP/codes"
[ "$(grep -c '^200$' "$CFS_TMP/codes")" = 50 ] || cfs_fail "answers: $(sort "$CFS_TMP/codes" | uniq -c | tr '\n' ' ')"
for f in "$CFS_TMP"/got/*; do
	cmp -s "$f" "$CFS_TMP/src/cold" || cfs_fail "client $(basename "$f") got other bytes"
done
cfs_assert_eq "$(origin_gets "$pc")" 1 "origin requests for 50 simultaneous clients"
# And later requests, small object included, are hits.
for _ in 1 2 3; do
	curl -sf -o /dev/null "$base/$pc" || cfs_fail "repeat request"
	curl -sf -o /dev/null "$base/$ps" || cfs_fail "small object"
done
cfs_assert_eq "$(origin_gets "$pc")" 1 "origin requests after three more"
cfs_assert_eq "$(origin_gets "$ps")" 1 "origin requests for the small object"
# Only object paths pass: anything else is refused at the cache, not sent to the origin.
c=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$sp/metrics")
cfs_assert_eq "$c" 403 "a non-object path through squid"
! grep -q '^GET /metrics' "$CFS_TMP/origin.log" || cfs_fail "squid forwarded /metrics"

# The corrupted object: squid hands it on (it cannot know), the client refuses it.
local_store="$CFS_TMP/local"
rc=0
cfs_bounded 60 "$CFS_CACHE_BIN" fetch --store "$local_store" --server "$base" "$pb" \
	>"$CFS_TMP/fetch.out" 2>"$CFS_TMP/fetch.err" || rc=$?
[ "$rc" != 0 ] || cfs_fail "fetch of a corrupted object succeeded"
[ ! -e "$local_store/$pb" ] || cfs_fail "the corrupted object was stored"
[ -z "$(ls -A "$local_store/.cfs-tmp" 2>/dev/null)" ] || cfs_fail "temp file left: $(ls "$local_store/.cfs-tmp")"
cfs_log "fetch of the corrupted object: exit $rc: $(head -2 "$CFS_TMP/fetch.err" | tr '\n' ' ')"
# The good one through the same chain is stored (a hit, verified).
cfs_bounded 60 "$CFS_CACHE_BIN" fetch --store "$local_store" --server "$base" "$pc" 2>>"$CFS_TMP/fetch.err" ||
	cfs_fail "fetch of a good object through squid: $(tail -2 "$CFS_TMP/fetch.err")"
cmp -s "$local_store/$pc" "$CFS_TMP/src/cold" || cfs_fail "the fetched object"
cfs_assert_eq "$(origin_gets "$pc")" 1 "origin requests after the fetch"
cfs_stop_pid $squid_pid

# cfs-serve as the origin: the same chain, and what its Vary: Accept-Encoding means.
ps2=$(cfs_free_port)
"$CFS_SERVE_BIN" --store "$origin" --listen "127.0.0.1:$ps2" --threads 2 \
	--access-log "$CFS_TMP/serve.log" 2>"$CFS_TMP/serve.err" &
serve_pid=$!
cfs_track_pid $serve_pid
cfs_wait_port "$ps2"
start_squid "$ps2"
serve_gets() { grep -c "\"GET /objects/$1\" 200" "$CFS_TMP/serve.log" || true; }
seq 1 20 | cfs_bounded 60 xargs -P 20 -I{} \
	curl -s -o /dev/null -w '%{http_code}\n' "$base/$ps" >"$CFS_TMP/codes"
[ "$(grep -c '^200$' "$CFS_TMP/codes")" = 20 ] || cfs_fail "answers from the cfs-serve chain"
cfs_assert_eq "$(serve_gets "$ps")" 1 "cfs-serve origin requests for 20 clients"
# cfs-cache asks with Accept-Encoding: zstd, and cfs-serve answers with Vary: Accept-Encoding,
# so squid keeps that variant apart: one more origin request, then hits for every node.
for n in 3 4; do
	cfs_bounded 60 "$CFS_CACHE_BIN" fetch --store "$CFS_TMP/local$n" --server "$base" "$ps" \
		2>>"$CFS_TMP/fetch.err" || cfs_fail "node $n's fetch through squid"
	cmp -s "$CFS_TMP/local$n/$ps" "$CFS_TMP/src/small" || cfs_fail "node $n's object"
done
cfs_assert_eq "$(serve_gets "$ps")" 2 "cfs-serve origin requests after two nodes' fetches"
rc=0
cfs_bounded 60 "$CFS_CACHE_BIN" fetch --store "$CFS_TMP/local5" --server "$base" "$pb" \
	2>>"$CFS_TMP/fetch.err" || rc=$?
[ "$rc" != 0 ] && [ ! -e "$CFS_TMP/local5/$pb" ] || cfs_fail "corrupted object through cfs-serve and squid"
cfs_stop_pid $squid_pid
cfs_stop_pid $serve_pid
# Every server stopped: none of them had a sanitizer (or leak) report.
! grep -q "Sanitizer\|runtime error:" "$CFS_TMP"/*.err 2>/dev/null ||
	cfs_fail "sanitizer report: $(grep -h -m1 "Sanitizer\|runtime error:" "$CFS_TMP"/*.err)"
