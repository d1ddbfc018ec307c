#!/bin/bash
# SPDX-License-Identifier: MIT
# cfs-serve against nginx (sendfile on, 2 workers) on one store: wrk req/s for 4 KiB and 64 KiB
# objects, single-stream MB/s for a 100 MiB object, and cfs-serve's peak RSS with 256 connections
# streaming the large object (a fresh server, target < 32 MiB).
. "$(dirname "$0")/lib.sh"
command -v wrk >/dev/null || { echo "(needs wrk)"; exit 1; }
command -v nginx >/dev/null || { echo "(needs nginx)"; exit 1; }
DUR=${BENCH_WRK_SECONDS:-5}
CONNS=${BENCH_WRK_CONNECTIONS:-64}
store="$BENCH_TMP/store"
src="$BENCH_TMP/src"
mkdir -p "$src"
mk() { (set +o pipefail; openssl enc -aes-128-ctr -pass "pass:$2" -nosalt -pbkdf2 -iter 1 </dev/zero 2>/dev/null | head -c "$1" >"$3"); }
mk 4096 small "$src/small"
mk 65536 medium "$src/medium"
mk $((100 << 20)) large "$src/large"
"$CFS_BUILDDIR/cfs-store" -q --no-progress import "$src" "$store" >/dev/null
path_of() { local d; d=$("$CFS_BUILDDIR/cfs-store" digest "$1" | awk '{print $1}'); d=${d#sha256:}; echo "${d:0:2}/${d:2}"; }
p_small=$(path_of "$src/small")
p_medium=$(path_of "$src/medium")
p_large=$(path_of "$src/large")
chmod 755 "$BENCH_TMP"

nport=$(bench_free_port)
cat >"$BENCH_TMP/nginx.conf" <<EOF
user root;
worker_processes 2;
pid $BENCH_TMP/nginx.pid;
error_log $BENCH_TMP/nginx.err;
daemon off;
events { worker_connections 4096; }
http {
	access_log off;
	sendfile on;
	tcp_nopush on;
	keepalive_requests 1000000;
	default_type application/octet-stream;
	server {
		listen 127.0.0.1:$nport;
		location /objects/ { alias $store/; }
	}
}
EOF
nginx -c "$BENCH_TMP/nginx.conf" -p "$BENCH_TMP" &
bench_track_pid $!
sport=$(bench_free_port)
"$CFS_BUILDDIR/cfs-serve" --store "$store" --listen "127.0.0.1:$sport" --threads 2 -q &
spid=$!
bench_track_pid $spid
bench_wait_port "$nport" || { echo "(nginx did not start)"; exit 1; }
bench_wait_port "$sport" || { echo "(cfs-serve did not start)"; exit 1; }

# wrk's requests/s and error count ("errors" = non-2xx + socket errors).
wrk_rate() {
	local out
	out=$(wrk -t2 -c"$CONNS" -d"${DUR}s" "$1")
	local errs
	errs=$(echo "$out" | awk '/Non-2xx|Socket errors/ {n++} END {print n+0}')
	[ "$errs" = 0 ] || echo "warning: errors in wrk run for $1" >&2
	echo "$out" | awk '/Requests\/sec/ {printf "%.0f\n", $2}'
}
# One single-stream download, in MB/s.
stream_rate() {
	local s
	s=$(curl -s -o /dev/null -w '%{speed_download}' "$1")
	echo "scale=0; $s / 1000000" | bc -l
}

# Warm the page cache and both servers.
for p in "$p_small" "$p_medium" "$p_large"; do
	curl -s -o /dev/null "http://127.0.0.1:$nport/objects/$p"
	curl -s -o /dev/null "http://127.0.0.1:$sport/objects/$p"
done

echo "wrk -t2 -c$CONNS -d${DUR}s on the same cores, best of ${BENCH_ROUNDS:-3} alternating runs; nginx 2 workers, sendfile on; cfs-serve --threads 2."
echo
echo "| case | nginx | cfs-serve | ratio |"
echo "|---|---|---|---|"
# Runs alternate between the two servers; each keeps its best of $ROUNDS (the machine may be
# shared, and the best run is the least disturbed one).
ROUNDS=${BENCH_ROUNDS:-3}
max() { if [ "$1" -gt "$2" ]; then echo "$1"; else echo "$2"; fi; }
for c in small medium; do
	p=$p_small
	label="4 KiB objects, req/s"
	if [ "$c" = medium ]; then p=$p_medium; label="64 KiB objects, req/s"; fi
	n=0 s=0
	for _ in $(seq 1 "$ROUNDS"); do
		n=$(max "$n" "$(wrk_rate "http://127.0.0.1:$nport/objects/$p")")
		s=$(max "$s" "$(wrk_rate "http://127.0.0.1:$sport/objects/$p")")
	done
	echo "| $label | $n | $s | $(bench_ratio "$s" "$n") |"
done
n=0 s=0
for _ in $(seq 1 $((ROUNDS + 2))); do
	n=$(max "$n" "$(stream_rate "http://127.0.0.1:$nport/objects/$p_large")")
	s=$(max "$s" "$(stream_rate "http://127.0.0.1:$sport/objects/$p_large")")
done
echo "| 100 MiB object, one stream, MB/s | $n | $s | $(bench_ratio "$s" "$n") |"
# Memory with 256 connections streaming the large object at once, on a fresh cfs-serve so that
# nothing of the runs above (object cache, buffers) counts: peak RSS, target < 32 MiB.
kill "$spid"
for _ in $(seq 1 50); do kill -0 "$spid" 2>/dev/null || break; sleep 0.1; done
sport=$(bench_free_port)
"$CFS_BUILDDIR/cfs-serve" --store "$store" --listen "127.0.0.1:$sport" --threads 2 -q &
spid=$!
bench_track_pid $spid
bench_wait_port "$sport" || { echo "(cfs-serve did not restart)"; exit 1; }
rss0=$(awk '/VmRSS/ {print $2}' "/proc/$spid/status")
wout=$(wrk -t2 -c256 -d"${DUR}s" "http://127.0.0.1:$sport/objects/$p_large" 2>&1 || true)
rss=$(awk '/VmHWM/ {print $2}' "/proc/$spid/status")
mbs=$(echo "$wout" | awk '/Transfer\/sec/ {print $2}')
nrss=0
for w in $(pgrep -P "$(cat "$BENCH_TMP/nginx.pid")" 2>/dev/null); do
	r=$(awk '/VmHWM/ {print $2}' "/proc/$w/status" 2>/dev/null || echo 0)
	nrss=$((nrss + r))
done
echo
echo "| memory | value | target |"
echo "|---|---|---|"
echo "| cfs-serve RSS at start | $((rss0 / 1024)) MiB | |"
echo "| cfs-serve peak RSS, 256 connections streaming the 100 MiB object for ${DUR} s ($mbs/s) | $((rss / 1024)) MiB | < 32 MiB |"
echo "| nginx workers' peak RSS summed (the runs above) | $((nrss / 1024)) MiB | |"
