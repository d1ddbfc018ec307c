#!/bin/bash
# SPDX-License-Identifier: MIT
# What a user of a node is told: a daemonized mount whose server is down says "unreachable"
# (then "up" once it answers) and logs to --log-file; `cfs-cache fetch` without the token says
# HTTP 401 once, with what to do (the mount once a minute); a store removed under the daemon is
# logged once and counted; a zstd body that expands past --max-object-size is cut off at the
# limit (mount and fetch).
. "$(dirname "$0")/lib.sh"
cfs_require_fuse
cfs_require_cmd nginx getfattr zstd

store="$CFS_TMP/store" origin="$CFS_TMP/origin" remote="$CFS_TMP/remote"
mkdir -p "$origin" "$CFS_TMP/tree" "$remote"
for i in $(seq 1 30); do cfs_make_file "$CFS_TMP/tree/f$i" $((1000 + i * 100)) "$i"; done
"$CFS_STORE_BIN" --no-progress -q import "$CFS_TMP/tree" "$origin" >/dev/null
obj=$(cfs_object_of "$CFS_TMP/tree/f1")
for i in $(seq 1 30); do cfs_object_of "$CFS_TMP/tree/f$i"; done >"$CFS_TMP/list"
dport=$(cfs_free_port) # reserved; nothing listens yet
durl="http://127.0.0.1:$dport/objects"

# wait_counter MOUNT NAME PATTERN: until the counter matches (at most ~10 s).
wait_counter() {
	for _ in $(seq 1 100); do
		cfs_counter "$1" "$2" | grep -q -- "$3" && return 0
		sleep 0.1
	done
	cfs_fail "$2 of $1 never matched '$3': $(cfs_counter "$1" "$2")"
}

# 1. Daemonized, server down: rc 0, "unreachable" (not "up"), the log in --log-file.
logf="$CFS_TMP/daemon.log"
rc=0
cfs_bounded 30 "$CFS_CACHE_BIN" --store "$store" --server "$durl" --connect-timeout 2s \
	--log-file "$logf" "$remote" || rc=$?
cfs_track_mount "$remote"
cfs_assert_eq "$rc" 0 "exit of the daemonizing mount"
# The daemon says it serves once its fetcher runs, after the parent has exited.
for _ in $(seq 1 100); do grep -q 'notice: serving' "$logf" 2>/dev/null && break; sleep 0.1; done
pid=$(sed -n 's/.* cfs-cache\[\([0-9]*\)\]: notice: serving.*/\1/p' "$logf" | head -1)
[ -n "$pid" ] || cfs_fail "no 'serving' line in --log-file: $(cat "$logf")"
cfs_track_pid "$pid"
wait_counter "$remote" server.0 "state=unreachable"
grep -q "warning: server $durl is unreachable" "$logf" || cfs_fail "no unreachable line in the log: $(cat "$logf")"
"$CFS_CACHE_BIN" stats "$remote" | grep -q 'state=unreachable' || cfs_fail "stats does not say unreachable"
# The server comes up: the first object fetched from it makes it "up".
cfs_start_nginx "$origin" "$dport"
cfs_bounded 60 stat "$remote/$obj" >/dev/null 2>&1 || true
cfs_settle "$remote"
[ -f "$store/$obj" ] || cfs_fail "object not fetched once the server is up"
wait_counter "$remote" server.0 "state=up"
cfs_umount "$remote"
for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
! kill -0 "$pid" 2>/dev/null || cfs_fail "daemon still runs after umount"
grep -q "notice: unmounting $remote" "$logf" || cfs_fail "no unmount line in the log"
rc=0
"$CFS_CACHE_BIN" --store "$store" --log-file relative.log "$remote" 2>/dev/null || rc=$?
cfs_assert_eq "$rc" 2 "a relative --log-file"

# 2. A token missing or wrong: one line about it for 30 objects, with what to do.
tport=$(cfs_free_port)
cfs_start_nginx "$origin" "$tport" 'if ($http_authorization != "Bearer sekrit") { return 401; }'
turl="http://127.0.0.1:$tport/objects"
rc=0
cfs_bounded 60 "$CFS_CACHE_BIN" fetch --no-progress --retries 0 --store "$CFS_TMP/s2" \
	--server "$turl" --from "$CFS_TMP/list" >/dev/null 2>"$CFS_TMP/fetch.err" || rc=$?
cfs_assert_eq "$rc" 1 "fetch exit without a token"
cfs_assert_eq "$(grep -c 'HTTP 401' "$CFS_TMP/fetch.err")" 1 "HTTP 401 lines for 30 objects"
grep -q 'give --token-file' "$CFS_TMP/fetch.err" || cfs_fail "no advice: $(cat "$CFS_TMP/fetch.err")"
grep -q '30 objects in all were refused that way' "$CFS_TMP/fetch.err" || cfs_fail "no refused count"
[ "$(wc -l <"$CFS_TMP/fetch.err")" -le 3 ] || cfs_fail "stderr of the refused fetch: $(cat "$CFS_TMP/fetch.err")"
echo wrong >"$CFS_TMP/token"
rc=0
cfs_bounded 60 "$CFS_CACHE_BIN" prefetch --help >/dev/null
cfs_bounded 60 "$CFS_CACHE_BIN" fetch --no-progress --retries 0 --store "$CFS_TMP/s2" \
	--server "$turl" --token-file "$CFS_TMP/token" --from "$CFS_TMP/list" >/dev/null \
	2>"$CFS_TMP/fetch.err" || rc=$?
cfs_assert_eq "$rc" 1 "fetch exit with a wrong token"
cfs_assert_eq "$(grep -c 'HTTP 401' "$CFS_TMP/fetch.err")" 1 "HTTP 401 lines with a wrong token"
grep -q 'the token is not accepted: check --token-file' "$CFS_TMP/fetch.err" || cfs_fail "wrong-token advice"

# The mount: the start-up probe warns, and lookups refused alike are said once, counted each.
cfs_start_cache "$CFS_TMP/s2m" "$remote" --server "$turl" --retries 0
for i in 4 5 6 7 8; do ! cfs_bounded 30 stat "$remote/$(sed -n ${i}p "$CFS_TMP/list")" >/dev/null 2>&1 || true; done
cfs_assert_eq "$(cfs_counter "$remote" failures)" 5 "failures of refused lookups"
cfs_assert_eq "$(grep -c 'refused the request (HTTP 401): check --token-file' "$CFS_TMP/cfs-cache.log")" 1 \
	"log lines for 5 refused lookups"
grep -q "server $turl answers HTTP 401: check --token-file" "$CFS_TMP/cfs-cache.log" || cfs_fail "no start-up warning about the token"
cfs_stop_cache "$remote"

# 3. The store removed under a running daemon: EIO, one log line, a counter.
url="http://127.0.0.1:$dport/objects"
cfs_start_cache "$CFS_TMP/s3" "$remote" --server "$url"
obj2=$(sed -n 2p "$CFS_TMP/list") obj3=$(sed -n 3p "$CFS_TMP/list")
rm -rf "$CFS_TMP/s3"
! cfs_bounded 30 stat "$remote/$obj2" >/dev/null 2>&1 || true
! cfs_bounded 30 stat "$remote/$obj3" >/dev/null 2>&1 || true
[ "$(cfs_counter "$remote" store_gone)" -ge 2 ] || cfs_fail "store_gone counter: $(cfs_counter "$remote" store_gone)"
cfs_assert_eq "$(grep -c 'was removed under the running daemon' "$CFS_TMP/cfs-cache.log")" 1 "log lines about the removed store"
cfs_stop_cache "$remote"

# 4. A zstd body that expands past --max-object-size: cut off at the limit.
bomb="$CFS_TMP/bombroot"
mkdir -p "$bomb/${obj%%/*}"
head -c $((256 << 20)) /dev/zero | zstd -q -19 -c >"$bomb/$obj"
[ "$(stat -c %s "$bomb/$obj")" -lt 100000 ] || cfs_fail "the bomb is not small"
bport=$(cfs_free_port)
cfs_start_nginx "$bomb" "$bport" 'add_header Content-Encoding zstd;'
burl="http://127.0.0.1:$bport/objects"
cfs_start_cache "$CFS_TMP/s4" "$remote" --server "$burl" --retries 0 --max-object-size 8M
! cfs_bounded 60 stat "$remote/$obj" >/dev/null 2>&1 || true
grep -q "sent more than 8388608 bytes" "$CFS_TMP/cfs-cache.log" || cfs_fail "no too-large line: $(tail -3 "$CFS_TMP/cfs-cache.log")"
got=$(cfs_counter "$remote" bytes_fetched)
[ "$got" -le $((8 << 20)) ] || cfs_fail "decoded $got bytes past an 8 MiB limit"
cfs_assert_eq "$(cfs_store_count "$CFS_TMP/s4")" 0 "objects after the bomb"
# The bomb's temp file goes right after the reader's answer (the mount keeps a few empty ones
# made ahead for the next misses).
bomb_temp() { find "$CFS_TMP/s4/.cfs-tmp" -type f -size +0 2>/dev/null | wc -l; }
for _ in $(seq 1 50); do [ "$(bomb_temp)" = 0 ] && break; sleep 0.1; done
cfs_assert_eq "$(bomb_temp)" 0 "temp files with bytes after the bomb"
cfs_stop_cache "$remote"
rc=0
cfs_bounded 60 "$CFS_CACHE_BIN" fetch --no-progress --retries 0 --store "$CFS_TMP/s5" \
	--server "$burl" --max-object-size 8M "$obj" >/dev/null 2>"$CFS_TMP/fetch.err" || rc=$?
cfs_assert_eq "$rc" 1 "fetch exit for the bomb"
grep -q "sent more than 8388608 bytes" "$CFS_TMP/fetch.err" || cfs_fail "fetch: $(cat "$CFS_TMP/fetch.err")"
"$CFS_CACHE_BIN" fetch --help | grep -q -- '--max-object-size SIZE.*default 4G' || cfs_fail "fetch --help default"
"$CFS_CACHE_BIN" prefetch --help | grep -q -- '--max-object-size SIZE.*default 4G' || cfs_fail "prefetch --help default"
