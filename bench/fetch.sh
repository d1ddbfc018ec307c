#!/bin/bash
# SPDX-License-Identifier: MIT
# Bulk fetch of a real tree's objects into an empty store over loopback from nginx, side by side
# with (a) one tar of the same files with curl (downloaded, and downloaded + extracted) and
# (b) one curl per object with xargs -P 16. Prints a table of times, CPU and ratios. (a+) syncs
# the downloaded tar with `sync -f` (syncfs of its filesystem): the same durability cfs-cache
# gives its objects before they get their names. Rows that split the work into its parts: (c) the
# same per-object GETs by curl's parallel mode with the bodies thrown away (no files, no hashing),
# (d) extracting the tar from a local file (the files, no network), (e) both at once, and (f) (e)
# plus a SHA-256 of the same bytes: the parts a verified per-object fetch cannot skip, without
# the flush, the renames or any hand-over between threads.
. "$(dirname "$0")/lib.sh"
command -v nginx >/dev/null || { echo "(needs nginx)"; exit 1; }
RUNS=${BENCH_RUNS:-3}
TREES=${BENCH_FETCH_TREES:-/usr/include /usr/lib/gcc}
store="$BENCH_TMP/store"
chmod 755 "$BENCH_TMP"
for t in $TREES; do
	"$CFS_BUILDDIR/cfs-store" -q --no-progress import "$t" "$store" >/dev/null
done
(cd "$store" && find . -path ./.cfs-tmp -prune -o -type f -print | sed 's|^\./||' | sort) >"$BENCH_TMP/list"
n=$(wc -l <"$BENCH_TMP/list")
bytes=$(cd "$store" && xargs stat -c %s <"$BENCH_TMP/list" | awk '{s += $1} END {print s}')
tar -C "$store" -cf "$BENCH_TMP/objects.tar" -T "$BENCH_TMP/list"

port=$(bench_free_port)
cat >"$BENCH_TMP/nginx.conf" <<CONF
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
		listen 127.0.0.1:$port;
		location /objects/ { alias $store/; }
		location = /objects.tar { alias $BENCH_TMP/objects.tar; }
	}
}
CONF
nginx -c "$BENCH_TMP/nginx.conf" -p "$BENCH_TMP" &
bench_track_pid $!
bench_wait_port "$port" || { echo "(nginx did not start)"; exit 1; }
base="http://127.0.0.1:$port"
# Warm the page cache on the server side.
cat "$BENCH_TMP/objects.tar" >/dev/null
(cd "$store" && xargs cat <"$BENCH_TMP/list" >/dev/null)

# nginx_ticks: CPU time (clock ticks) the nginx workers have used so far.
nginx_ticks() {
	local s=0 p
	for p in $(pgrep -P "$(cat "$BENCH_TMP/nginx.pid")"); do
		set -- $(cut -d' ' -f14,15 "/proc/$p/stat")
		s=$((s + $1 + $2))
	done
	echo "$s"
}
hz=$(getconf CLK_TCK)

# measure NAME CMD...: one run into a new empty directory (a sync and bench_prime_memory come
# before the clock starts); appends "wall its-CPU nginx-CPU" (seconds) to $BENCH_TMP/m.NAME.
# Nothing is deleted until the end: ext4 scans for a free inode past the ones freed in the last
# minute, so creating files right after removing thousands of them is slower, and that would weigh
# on the rows that create many files (tar -x, cfs-cache) only.
measure() {
	local name=$1 n0 n1 rc=0 TIMEFORMAT='%3R %3U %3S'
	local -a m
	shift
	dst="$BENCH_TMP/dst.$name.$(cat "$BENCH_TMP/m.$name" 2>/dev/null | wc -l)"
	mkdir -p "$dst"
	sync
	bench_prime_memory
	n0=$(nginx_ticks)
	{ time "$@" >/dev/null 2>"$BENCH_TMP/err" || rc=$?; } 2>"$BENCH_TMP/time"
	n1=$(nginx_ticks)
	[ "$rc" = 0 ] || { echo "(run failed: $*: $(tail -2 "$BENCH_TMP/err"))" >&2; return 1; }
	read -r -a m <"$BENCH_TMP/time"
	echo "${m[0]} $(echo "${m[1]} + ${m[2]}" | bc -l) $(echo "($n1 - $n0) / $hz" | bc -l)" \
		>>"$BENCH_TMP/m.$name"
}
# best NAME: the best wall time of NAME's runs. cpu NAME: "its-CPU nginx-CPU", means per run.
best() { sort -n "$BENCH_TMP/m.$1" | head -1 | awk '{printf "%.3f\n", $1}'; }
cpu() { awk '{c += $2; n += $3} END {printf "%.2f %.2f\n", c / NR, n / NR}' "$BENCH_TMP/m.$1"; }
# cfs-cache time / baseline time, three decimals.
ratio() { echo "scale=3; $1 / $2" | bc -l | sed 's/^\./0./'; }
# row LABEL NAME TIME: a table row with NAME's CPU columns.
row() {
	local cpu
	read -r -a cpu <<<"$(cpu "$2")"
	echo "| $1 | $3 | ${cpu[0]} | ${cpu[1]} | $(ratio "$t_cfs" "$3") |"
}
tar_download() { curl -sf -o "$dst/objects.tar" "$base/objects.tar"; }
tar_download_sync() { tar_download && sync -f "$dst/objects.tar"; }
tar_extract() { curl -sf "$base/objects.tar" | tar -x -C "$dst"; }
tar_extract_sync() { tar_extract && sync -f "$dst"; }
tar_extract_local() { tar -xf "$BENCH_TMP/objects.tar" -C "$dst"; }
per_object() {
	(cd "$dst" && xargs -P 16 -n 1 sh -c 'curl -sf --create-dirs -o "$1" "'"$base"'/objects/$1"' _ <"$BENCH_TMP/list")
}
# The same GETs as cfs-cache makes, by curl's own parallel mode (64 at once, connections
# reused), bodies thrown away: what the requests alone cost, without files or hashing.
awk -v b="$base" '{print "url = \"" b "/objects/" $1 "\"\noutput = \"/dev/null\""}' \
	"$BENCH_TMP/list" >"$BENCH_TMP/get-all.cfg"
per_object_discard() { curl -s --parallel --parallel-max 64 -K "$BENCH_TMP/get-all.cfg"; }
# (c) and (d) at once: the GETs and the files with no hashing, no flush and nothing to coordinate,
# sharing the two cores as a client that did both would.
gets_and_files() {
	local pid r=0
	per_object_discard &
	pid=$!
	tar_extract_local || r=$?
	wait "$pid" || r=$?
	return "$r"
}
# (e) and a SHA-256 of the same bytes, all at once: a floor for any verified per-object fetch on
# this machine, since each of its three parts is work such a fetch cannot skip (the hash is the
# cheapest one over the bytes; fs-verity hashes every byte once and a little more), done by
# separate tools with nothing to coordinate and no flush.
floor_work() {
	local pid hpid r=0
	per_object_discard &
	pid=$!
	openssl dgst -sha256 "$BENCH_TMP/objects.tar" >/dev/null &
	hpid=$!
	tar_extract_local || r=$?
	wait "$pid" || r=$?
	wait "$hpid" || r=$?
	return "$r"
}
cfs_fetch() {
	"$CFS_BUILDDIR/cfs-cache" fetch -q --no-progress --store "$dst/store" --server "$base/objects" \
		--from "$BENCH_TMP/list"
}

# Rounds: every method once per round, in turn, so a machine that slows down or speeds up
# during the benchmark weighs on all rows alike. Per-object curl (minutes) runs once.
methods="tar:tar_download tars:tar_download_sync tarx:tar_extract tarxs:tar_extract_sync"
methods="$methods tarxl:tar_extract_local get:per_object_discard both:gets_and_files"
methods="$methods floor:floor_work cfs:cfs_fetch"
for round in $(seq 1 "$RUNS"); do
	for m in $methods; do
		measure "${m%%:*}" "${m#*:}" || exit 1
	done
done
measure xargs per_object || exit 1
t_tar=$(best tar) t_tars=$(best tars) t_tarx=$(best tarx) t_tarxs=$(best tarxs)
t_tarxl=$(best tarxl) t_get=$(best get) t_both=$(best both) t_floor=$(best floor)
t_xargs=$(best xargs) t_cfs=$(best cfs)
# cfs-cache / (a) and (e) / (a) within each round, for the spread.
per_round() {
	paste -d' ' "$BENCH_TMP/m.$1" "$BENCH_TMP/m.tar" | awk '{printf "%s%.2fx", (NR > 1 ? ", " : ""), $1 / $4}'
}
# Peak RSS of one more cfs-cache run.
dst="$BENCH_TMP/dst.rss"
mkdir -p "$dst" && sync
rss=$(/usr/bin/time -f %M "$CFS_BUILDDIR/cfs-cache" fetch -q --no-progress --store "$dst/store" \
	--server "$base/objects" --from "$BENCH_TMP/list" 2>&1 >/dev/null | tail -1)
# Everything fetched, and verified.
"$CFS_BUILDDIR/cfs-store" --no-progress verify "$dst/store" | tail -1 >"$BENCH_TMP/verify"
grep -q "^$n objects ok, 0 corrupt" "$BENCH_TMP/verify" || echo "warning: $(cat "$BENCH_TMP/verify")" >&2

echo "Trees: $TREES -> $n objects, $(echo "scale=1; $bytes / 1048576" | bc) MiB; nginx (2 workers, sendfile) over"
echo "loopback; best of $RUNS rounds (every method once per round, memory primed before each run;"
echo "per-object curl: 1 run), each run into an empty directory; warm server cache."
echo "cfs-cache fetch: defaults (64 transfers, 16 per server), fs-verity verified, group-committed"
echo "with syncfs before the renames. Peak RSS of cfs-cache: $((rss / 1024)) MiB."
echo
echo "| method | time (s) | its CPU (s) | nginx CPU (s) | cfs-cache / method |"
echo "|---|---|---|---|---|"
row "(a) curl one tar to a file" tar "$t_tar"
row "(a+) curl one tar to a file, then sync -f" tars "$t_tars"
row "(a') curl one tar \| tar -x" tarx "$t_tarx"
row "(a'') curl one tar \| tar -x, then sync" tarxs "$t_tarxs"
row "(d) tar -x of the local tar (no network)" tarxl "$t_tarxl"
row "(c) curl --parallel per object (64), bodies discarded" get "$t_get"
row "(e) (c) and (d) at once" both "$t_both"
row "(f) (e) and openssl dgst -sha256 of the tar, at once" floor "$t_floor"
row "(b) curl per object, xargs -P 16" xargs "$t_xargs"
row "cfs-cache fetch" cfs "$t_cfs"
echo
echo "CPU columns: mean per run, user + system time of the command (all processes of a pipeline)"
echo "and of the nginx workers. With two cores, no method can take less wall time than"
echo "(its CPU + nginx CPU) / 2."
echo
echo "Within each round, cfs-cache / (a): $(per_round cfs); (e) / (a): $(per_round both);"
echo "(f) / (a): $(per_round floor)."
echo "Targets: cfs-cache <= 1.5x (a) = $(echo "scale=3; 1.5 * $t_tar" | bc -l | sed 's/^\./0./') s, < 0.3x (b)."
# The two-core bound of a run, (its CPU + nginx CPU) / 2, lowest over NAME's runs.
bound() { awk '{b = ($2 + $3) / 2; if (NR == 1 || b < m) m = b} END {printf "%.3f\n", m}' "$BENCH_TMP/m.$1"; }
echo "Floor: (f) / (a) = $(ratio "$t_floor" "$t_tar")x best against best. Lowest two-core bound of a run,"
echo "(its CPU + nginx CPU) / 2: (f) $(bound floor) s, cfs-cache $(bound cfs) s, (a) $(bound tar) s."
