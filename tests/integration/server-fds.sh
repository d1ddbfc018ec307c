#!/bin/bash
# SPDX-License-Identifier: MIT
# cfs-serve out of file descriptors (hard limit below --max-connections, connections beyond it):
# the open connections keep being answered, accepting backs off instead of spinning, and the
# "Too many open files" message is logged a bounded number of times.
. "$(dirname "$0")/lib.sh"
cfs_require_cmd curl python3

store="$CFS_TMP/store"
mkdir -p "$CFS_TMP/src"
cfs_make_file "$CFS_TMP/src/obj" 4000 3
"$CFS_STORE_BIN" -q --no-progress import "$CFS_TMP/src" "$store" >/dev/null
p=$(cfs_object_of "$CFS_TMP/src/obj")

port=$(cfs_free_port)
# A subshell: the limit (soft and hard) is the server's only.
(ulimit -n 64 && exec "$CFS_SERVE_BIN" --store "$store" --listen "127.0.0.1:$port" --threads 2 \
	--max-connections 1000 --header-timeout 2s) 2>"$CFS_TMP/serve.err" &
pid=$!
cfs_track_pid $pid
cfs_wait_port "$port"

ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
t0=$(ticks)
s0=$(date +%s%N)
out=$(cfs_bounded 60 python3 "$CFS_SRCDIR/tests/integration/load/fd_flood.py" --port "$port" \
	--path "/objects/$p" --conns 300 --seconds 6)
t1=$(ticks)
s1=$(date +%s%N)
cfs_log "$out"
kill -0 $pid 2>/dev/null || cfs_fail "the server died: $(tail -3 "$CFS_TMP/serve.err")"
ok=$(echo "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["keepalive_ok"])')
bad=$(echo "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["keepalive_fail"])')
fresh=$(echo "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["fresh_after_s"])')
cfs_assert_eq "$bad" 0 "keep-alive requests that failed during the flood"
[ "$ok" -ge 50 ] || cfs_fail "only $ok keep-alive requests answered in 6 s"
[ "$fresh" != None ] || cfs_fail "no new connection served after the flood"
# The flood really ran the server out of descriptors ...
grep -q 'accept: Too many open files' "$CFS_TMP/serve.err" || cfs_fail "no EMFILE seen: $(tail -3 "$CFS_TMP/serve.err")"
# ... which it said a bounded number of times (once per 10 s per loop) ...
n=$(grep -c 'accept:' "$CFS_TMP/serve.err" || true)
[ "$n" -le 6 ] || cfs_fail "$n accept error lines in ~8 s"
# ... without spinning: under a third of one core over the flood (clock ticks of 10 ms).
hz=$(getconf CLK_TCK)
pct=$(( (t1 - t0) * 100 * 1000000000 / hz / (s1 - s0) ))
cfs_log "cfs-serve CPU during the flood: ${pct}% of one core, $n accept error line(s)"
[ "$pct" -lt 34 ] || cfs_fail "cfs-serve used ${pct}% of a core while out of descriptors"
curl -s "http://127.0.0.1:$port/metrics" | grep -q '^cfs_serve_accept_errors_total [1-9]' ||
	cfs_fail "accept errors not counted"
cfs_stop_pid $pid
# Every server stopped: none of them had a sanitizer (or leak) report.
! grep -q "Sanitizer\|runtime error:" "$CFS_TMP"/*.err 2>/dev/null ||
	cfs_fail "sanitizer report: $(grep -h -m1 "Sanitizer\|runtime error:" "$CFS_TMP"/*.err)"
