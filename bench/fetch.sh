#!/bin/bash
# SPDX-License-Identifier: MIT
# Bulk fetch of a real tree's objects into an empty store over loopback from nginx, side by side
# with (a) one tar of the same files with curl (downloaded, and downloaded + extracted) and
# (b) one curl per object with xargs -P 16. Prints a table of times and ratios. (a+) syncs the
# downloaded tar with `sync -f` (syncfs of its filesystem): the same durability cfs-cache gives
# its objects before they get their names.
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

# best_of CMD...: best wall time of $RUNS runs, each into a new empty directory (a sync happens
# before the clock starts). Nothing is deleted until the end: ext4 scans for a free inode past
# the ones freed in the last minute, so creating files right after removing thousands of them
# is slower, and that would weigh on the rows that create many files (tar -x, cfs-cache) only.
best_of() {
	local best="" t0 t1 t i
	for i in $(seq 1 "$RUNS"); do
		dst="$BENCH_TMP/dst.$1.$i"
		mkdir -p "$dst"
		sync
		t0=$(date +%s.%N)
		"$@" >/dev/null 2>"$BENCH_TMP/err" || { echo "(run failed: $*: $(tail -2 "$BENCH_TMP/err"))" >&2; return 1; }
		t1=$(date +%s.%N)
		t=$(echo "$t1 - $t0" | bc -l)
		if [ -z "$best" ] || [ "$(echo "$t < $best" | bc -l)" = 1 ]; then best=$t; fi
	done
	printf '%.3f\n' "$best"
}
# cfs-cache time / baseline time, three decimals.
ratio() { echo "scale=3; $1 / $2" | bc -l | sed 's/^\./0./'; }
tar_download() { curl -sf -o "$dst/objects.tar" "$base/objects.tar"; }
tar_download_sync() { tar_download && sync -f "$dst/objects.tar"; }
tar_extract() { curl -sf "$base/objects.tar" | tar -x -C "$dst"; }
tar_extract_sync() { tar_extract && sync -f "$dst"; }
per_object() {
	(cd "$dst" && xargs -P 16 -n 1 sh -c 'curl -sf --create-dirs -o "$1" "'"$base"'/objects/$1"' _ <"$BENCH_TMP/list")
}
cfs_fetch() {
	"$CFS_BUILDDIR/cfs-cache" fetch -q --no-progress --store "$dst/store" --server "$base/objects" \
		--from "$BENCH_TMP/list"
}

t_tar=$(best_of tar_download)
t_tars=$(best_of tar_download_sync)
t_tarx=$(best_of tar_extract)
t_tarxs=$(best_of tar_extract_sync)
t_xargs=$(RUNS=1 best_of per_object)
t_cfs=$(best_of cfs_fetch)
# Peak RSS of one more cfs-cache run.
dst="$BENCH_TMP/dst.rss"
mkdir -p "$dst" && sync
rss=$(/usr/bin/time -f %M "$CFS_BUILDDIR/cfs-cache" fetch -q --no-progress --store "$dst/store" \
	--server "$base/objects" --from "$BENCH_TMP/list" 2>&1 >/dev/null | tail -1)
# Everything fetched, and verified.
"$CFS_BUILDDIR/cfs-store" --no-progress verify "$dst/store" | tail -1 >"$BENCH_TMP/verify"
grep -q "^$n objects ok, 0 corrupt" "$BENCH_TMP/verify" || echo "warning: $(cat "$BENCH_TMP/verify")" >&2

echo "Trees: $TREES -> $n objects, $(echo "scale=1; $bytes / 1048576" | bc) MiB; nginx (2 workers, sendfile) over"
echo "loopback; best of $RUNS runs into an empty directory (per-object curl: 1 run); warm server cache."
echo "cfs-cache fetch: defaults (64 transfers, 16 per server), fs-verity verified, group-committed"
echo "with syncfs before the renames. Peak RSS of cfs-cache: $((rss / 1024)) MiB."
echo
echo "| method | time (s) | cfs-cache / method |"
echo "|---|---|---|"
echo "| (a) curl one tar to a file | $t_tar | $(ratio "$t_cfs" "$t_tar") |"
echo "| (a+) curl one tar to a file, then sync -f | $t_tars | $(ratio "$t_cfs" "$t_tars") |"
echo "| (a') curl one tar \| tar -x | $t_tarx | $(ratio "$t_cfs" "$t_tarx") |"
echo "| (a'') curl one tar \| tar -x, then sync | $t_tarxs | $(ratio "$t_cfs" "$t_tarxs") |"
echo "| (b) curl per object, xargs -P 16 | $t_xargs | $(ratio "$t_cfs" "$t_xargs") |"
echo "| cfs-cache fetch | $t_cfs | 1.00 |"
echo
echo "Targets: cfs-cache <= 1.5x (a), < 0.3x (b)."
