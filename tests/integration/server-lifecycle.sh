#!/bin/bash
# SPDX-License-Identifier: MIT
# cfs-serve under load and at shutdown: a bounded wrk run with zero errors, connections
# accounted back to zero, SIGTERM during a large transfer (it completes, exit 0), idle
# keep-alive connections do not hold the exit back.
. "$(dirname "$0")/lib.sh"
cfs_require_cmd curl

store="$CFS_TMP/store"
src="$CFS_TMP/src"
mkdir -p "$src"
cfs_make_file "$src/small" 4096 1
cfs_make_file "$src/medium" 65536 2
cfs_make_file "$src/large" $((64 << 20)) 3
"$CFS_STORE_BIN" -q --no-progress import "$src" "$store" >/dev/null
path_of() {
	d=$("$CFS_STORE_BIN" digest "$1" | awk '{print $1}')
	d=${d#sha256:}
	echo "${d:0:2}/${d:2}"
}
sanitized=""
if nm -D "$CFS_SERVE_BIN" 2>/dev/null | grep -q __asan_init || nm "$CFS_SERVE_BIN" 2>/dev/null | grep -q __asan_init; then
	sanitized=1
fi

start_server() {
	port=$(cfs_free_port)
	"$CFS_SERVE_BIN" --store "$store" --listen "127.0.0.1:$port" --threads 2 "$@" \
		2>>"$CFS_TMP/serve.err" &
	pid=$!
	cfs_track_pid $pid
	cfs_wait_port "$port"
	base="http://127.0.0.1:$port"
}
metric() { curl -s "$base/metrics" | awk -v m="$1" '$1 == m {print $2}'; }

# --- bounded load ---
start_server
if command -v wrk >/dev/null 2>&1; then
	for f in small medium; do
		out=$(cfs_bounded 30 wrk -t2 -c16 -d2s "$base/objects/$(path_of "$src/$f")")
		echo "$out" | grep -E 'Requests/sec' >&2
		! echo "$out" | grep -qE 'Non-2xx|Socket errors' || cfs_fail "wrk errors on $f: $out"
		n=$(echo "$out" | awk '/requests in/ {print $1}')
		[ "${n:-0}" -gt 100 ] || cfs_fail "too few requests on $f: $out"
	done
else
	# Without wrk: 16 parallel curls of 50 requests each over keep-alive.
	u="$base/objects/$(path_of "$src/small")"
	jobs_=""
	for _ in $(seq 1 16); do
		(
			args=()
			for _ in $(seq 1 50); do args+=(-o /dev/null "$u"); done
			cfs_bounded 60 curl -sSf "${args[@]}"
		) &
		jobs_="$jobs_ $!"
	done
	for j in $jobs_; do wait "$j" || cfs_fail "parallel curl load failed"; done
fi
# Parallel downloads of distinct sizes, all byte-identical.
jobs_=""
for f in small medium large; do
	cfs_bounded 60 curl -sSf -o "$CFS_TMP/par.$f" "$base/objects/$(path_of "$src/$f")" &
	jobs_="$jobs_ $!"
done
for j in $jobs_; do wait "$j" || cfs_fail "parallel download failed"; done
for f in small medium large; do cmp -s "$CFS_TMP/par.$f" "$src/$f" || cfs_fail "parallel bytes ($f)"; done
[ "$(metric cfs_serve_errors_total)" = 0 ] || cfs_fail "server errors under load"
# Both event loops took connections (SO_REUSEPORT spreads them).
[ "$(metric cfs_serve_threads)" = 2 ] || cfs_fail "not two loops"
for l in 0 1; do
	n=$(metric "cfs_serve_loop_requests_total{loop=\"$l\"}")
	[ "${n:-0}" -gt 0 ] || cfs_fail "loop $l served nothing"
done
# Every connection is accounted back: only the metrics request's own remains.
ok=""
for _ in $(seq 1 50); do
	if [ "$(metric cfs_serve_open_connections)" = 1 ]; then ok=1; break; fi
	sleep 0.1
done
[ -n "$ok" ] || cfs_fail "open connections did not return to 1: $(metric cfs_serve_open_connections)"
if [ -z "$sanitized" ]; then
	rss=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
	cfs_log "peak RSS after load: ${rss} kB"
	[ "$rss" -lt $((32 * 1024)) ] || cfs_fail "peak RSS ${rss} kB"
fi

# --- SIGTERM during a large transfer ---
p=$(path_of "$src/large")
curl -sSf --limit-rate 16M -o "$CFS_TMP/during" "$base/objects/$p" &
cpid=$!
cfs_track_pid $cpid
# An idle keep-alive connection must not delay the exit.
exec 4<>"/dev/tcp/127.0.0.1/$port"
printf 'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n' >&4
read -r -t 5 line <&4 || cfs_fail "keep-alive connection got no answer"
sleep 1
kill -TERM "$pid"
sleep 0.3
# No new connections once stopping.
! curl -s -m 2 -o /dev/null "$base/healthz" 2>/dev/null || cfs_fail "accepted a connection after SIGTERM"
cfs_bounded 30 tail --pid="$cpid" -f /dev/null || cfs_fail "transfer hung"
wait "$cpid" || cfs_fail "transfer cut by SIGTERM"
cfs_untrack_pid "$cpid"
cmp -s "$CFS_TMP/during" "$src/large" || cfs_fail "bytes of the transfer across SIGTERM"
set +e
cfs_bounded 15 tail --pid="$pid" -f /dev/null
wait "$pid"
rc=$?
set -e
cfs_untrack_pid "$pid"
cfs_assert_eq "$rc" 0 "exit status after SIGTERM"
exec 4<&- 4>&-
grep -q 'stopped' "$CFS_TMP/serve.err" || cfs_fail "no 'stopped' line"

# --- SIGINT with nothing in flight exits at once; a stuck client is cut at the deadline ---
start_server --shutdown-timeout 1s
curl -s -o /dev/null --limit-rate 1k -m 20 "$base/objects/$p" &
cpid=$!
cfs_track_pid $cpid
sleep 0.5
t0=$(date +%s%N)
kill -INT "$pid"
set +e
cfs_bounded 15 tail --pid="$pid" -f /dev/null
wait "$pid"
rc=$?
set -e
cfs_untrack_pid "$pid"
ms=$((($(date +%s%N) - t0) / 1000000))
cfs_assert_eq "$rc" 0 "exit status after SIGINT"
[ "$ms" -lt 5000 ] || cfs_fail "shutdown deadline not kept (${ms} ms)"
grep -q 'shutdown deadline' "$CFS_TMP/serve.err" || cfs_fail "no deadline warning"
cfs_stop_pid "$cpid"
