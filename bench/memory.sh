#!/bin/bash
# SPDX-License-Identifier: MIT
# cfs-cache memory: peak RSS with 100 000 objects in the local store (indexed by --max-size) and
# 1 000 misses in flight against a deliberately slow nginx. Target: < 64 MiB.
. "$(dirname "$0")/lib.sh"
B="$CFS_BUILDDIR"
chmod 0755 "$BENCH_TMP"
store="$BENCH_TMP/store" origin="$BENCH_TMP/origin" mnt="$BENCH_TMP/mnt"
mkdir -p "$BENCH_TMP/local" "$BENCH_TMP/remote" "$mnt"
# 100 000 distinct 1000-byte files, then 1 000 of 64 KiB that only the server has.
head -c 100000000 /dev/urandom | (cd "$BENCH_TMP/local" && split -b 1000 -a 5 - f)
"$B/cfs-store" -q --no-progress import "$BENCH_TMP/local" "$store"
rm -rf "$BENCH_TMP/local"
head -c 65536000 /dev/urandom | (cd "$BENCH_TMP/remote" && split -b 65536 -a 3 - r)
"$B/cfs-store" -q --no-progress import "$BENCH_TMP/remote" "$origin"
rm -rf "$BENCH_TMP/remote"
port=$(bench_free_port)
bench_start_nginx "$origin" "$port" "limit_rate 8k;"
"$B/cfs-cache" --store "$store" --server "http://127.0.0.1:$port/objects" --max-size 100G \
	--max-transfers 1000 -f "$mnt" 2>/dev/null &
cache=$!
bench_track_pid "$cache"
bench_track_mount "$mnt"
for _ in $(seq 1 300); do mountpoint -q "$mnt" && break; sleep 0.1; done
rss_start=$(awk '/VmRSS/ {print $2}' "/proc/$cache/status")
readers=""
t_spawn0=$(date +%s.%N)
for o in $(cd "$origin" && ls -d [0-9a-f][0-9a-f]/* | head -1000); do
	timeout 60 cat "$mnt/$o" >/dev/null 2>&1 &
	readers="$readers $!"
done
t_spawn=$(echo "$(date +%s.%N) - $t_spawn0" | bc -l)
peak_pending=0
for _ in $(seq 1 40); do
	p=$(getfattr --absolute-names --only-values -n user.cfs.pending "$mnt" 2>/dev/null || echo 0)
	[ "$p" -gt "$peak_pending" ] && peak_pending=$p
	sleep 0.25
done
hwm=$(awk '/VmHWM/ {print $2}' "/proc/$cache/status")
objects=$(getfattr --absolute-names --only-values -n user.cfs.store_objects "$mnt")
# Stopping the daemon answers the lookups still waiting (EINTR), so the readers end now rather
# than when their slow downloads would.
kill "$cache"
for _ in $(seq 1 100); do kill -0 "$cache" 2>/dev/null || break; sleep 0.1; done
for r in $readers; do kill "$r" 2>/dev/null || true; done
for r in $readers; do wait "$r" 2>/dev/null || true; done
echo "| case | value | target |"
echo "|---|---|---|"
echo "| objects indexed (--max-size) | $objects | 100 000 |"
echo "| misses in flight (peak of user.cfs.pending) | $peak_pending | 1 000 |"
echo "| time to start the 1 000 readers | $(printf '%.1f' "$t_spawn") s | |"
echo "| RSS after mount and index | $((rss_start / 1024)) MiB | |"
echo "| peak RSS (VmHWM) | $((hwm / 1024)) MiB | < 64 MiB |"

# cfs-serve: peak RSS with 256 connections streaming large objects, then under 40 tokenless
# uploaders declaring and pushing 9 MiB each (the bodies must never be buffered). Target < 32 MiB.
sstore="$BENCH_TMP/sstore"
mkdir -p "$BENCH_TMP/large"
for i in 1 2 3 4; do head -c $((64 << 20)) /dev/urandom >"$BENCH_TMP/large/l$i"; done
"$B/cfs-store" -q --no-progress import "$BENCH_TMP/large" "$sstore"
printf 'bench-token\n' >"$BENCH_TMP/token"
sport=$(bench_free_port)
"$B/cfs-serve" --store "$sstore" --listen "127.0.0.1:$sport" --threads 2 -q --allow-upload \
	--token-file "$BENCH_TMP/token" --max-upload 16M &
spid=$!
bench_track_pid $spid
bench_wait_port "$sport"
srss0=$(awk '/VmRSS/ {print $2}' "/proc/$spid/status")
# 256 connections, 64 on each of the four objects, each reading its whole 64 MiB.
readers=""
for f in "$BENCH_TMP"/large/l*; do
	d=$("$B/cfs-store" digest "$f" | awk '{print $1}')
	d=${d#sha256:}
	for _ in $(seq 1 64); do
		timeout 120 curl -s -o /dev/null -H 'Authorization: Bearer bench-token' \
			--limit-rate 20M "http://127.0.0.1:$sport/objects/${d:0:2}/${d:2}" &
		readers="$readers $!"
	done
done
sleep 6 # the streams run (64 MiB at 20 MB/s: about 3 s each, staggered by their start)
for r in $readers; do kill "$r" 2>/dev/null || true; done
for r in $readers; do wait "$r" 2>/dev/null || true; done
stream_hwm=$(awk '/VmHWM/ {print $2}' "/proc/$spid/status")
python3 "$CFS_SRCDIR/tests/integration/load/upload_flood.py" --port "$sport" \
	--path "/objects/$(cd "$sstore" && ls -d [0-9a-f][0-9a-f]/* | head -1)" --conns 40 \
	--declared $((9 << 20)) --push $((9 << 20)) --seconds 15 >"$BENCH_TMP/flood.json"
flood_hwm=$(awk '/VmHWM/ {print $2}' "/proc/$spid/status")
echo
echo "| cfs-serve | value | target |"
echo "|---|---|---|"
echo "| RSS at start | $((srss0 / 1024)) MiB | |"
echo "| peak RSS, 256 connections streaming 64 MiB objects (curl, 20 MB/s each) | $((stream_hwm / 1024)) MiB | < 32 MiB |"
echo "| peak RSS after 40 tokenless uploaders pushing 9 MiB each ($(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["codes"])' "$BENCH_TMP/flood.json")) | $((flood_hwm / 1024)) MiB | < 64 MiB |"
