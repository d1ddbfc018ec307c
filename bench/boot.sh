#!/bin/bash
# SPDX-License-Identifier: MIT
# On-demand boot: a Debian minbase rootfs as a composefs image served by cfs-serve; time and bytes
# to run real commands in it via chroot lazily (empty local store, basedir STORE:FUSE:HANDOFF)
# vs fetching every object first (cfs-cache prefetch) and then running the same commands; and the
# lazy boot while another process writes and flushes 1 GiB in a loop on the store's filesystem,
# with the hand-off layer (default) and without it (--no-handoff: each miss waits for a flush).
. "$(dirname "$0")/lib.sh"
B="$CFS_BUILDDIR"
chmod 0755 "$BENCH_TMP"
rootfs=${CFS_BENCH_ROOTFS:-/var/cache/cfscache/rootfs-bookworm-minbase}
if [ ! -x "$rootfs/usr/bin/dpkg" ]; then
	command -v debootstrap >/dev/null || apt-get install -y -qq debootstrap >/dev/null
	mkdir -p "$(dirname "$rootfs")"
	debootstrap --variant=minbase bookworm "$rootfs.tmp" http://deb.debian.org/debian >/dev/null
	mv "$rootfs.tmp" "$rootfs"
fi
origin="$BENCH_TMP/origin" image="$BENCH_TMP/rootfs.cfs"
"$B/cfs-store" -q --no-progress mkimage --store "$origin" "$rootfs" "$image"
port=$(bench_free_port)
"$B/cfs-serve" --store "$origin" --listen "127.0.0.1:$port" --quiet &
bench_track_pid $!
bench_wait_port "$port"
url="http://127.0.0.1:$port/objects"
total_bytes=$(du -sb --exclude=.cfs-tmp "$origin" | cut -f1)
total_objects=$("$B/cfs-store" objects "$image" | wc -l)
workload='set -e; dpkg -l >/dev/null; apt-cache policy >/dev/null; bash -c "ls -l /usr/bin | wc -l" >/dev/null; perl -e 1'

# writer_start / writer_stop: dd writing 1 GiB with a flush at its end, in a loop, beside the
# store (the same filesystem), as a busy host's other tenants do.
writer_start() {
	( while :; do dd if=/dev/zero of="$BENCH_TMP/writer.dat" bs=1M count=1024 conv=fsync \
		status=none 2>/dev/null || break; done ) &
	writer_pid=$!
	bench_track_pid "$writer_pid"
	# Under way: dirty data waiting for its flush.
	for _ in $(seq 1 100); do [ -s "$BENCH_TMP/writer.dat" ] && break; sleep 0.02; done
}
writer_stop() {
	kill "$writer_pid" 2>/dev/null || true
	pkill -f "of=$BENCH_TMP/writer.dat" 2>/dev/null || true
	wait "$writer_pid" 2>/dev/null || true
	rm -f "$BENCH_TMP/writer.dat"
}

run_once() { # mode: lazy | eager | lazy-writer | old-writer ; prints "seconds bytes_fetched"
	local mode=$1 store="$BENCH_TMP/store.$1" remote="$BENCH_TMP/remote.$1" mnt="$BENCH_TMP/mnt.$1"
	local opts=()
	[ "$mode" = old-writer ] && opts=(--no-handoff)
	# BENCH_CACHE_OPTS: extra daemon options, for experiments.
	# shellcheck disable=SC2206
	opts+=(${BENCH_CACHE_OPTS:-})
	rm -rf "$store"
	mkdir -p "$store" "$remote" "$mnt"
	sync
	echo 3 >/proc/sys/vm/drop_caches
	bench_prime_memory
	local t0 t1 fetched
	case $mode in *writer) writer_start ;; esac
	t0=$(date +%s.%N)
	if [ "$mode" = eager ]; then
		"$B/cfs-cache" prefetch --image "$image" --store "$store" --server "$url" -q --no-progress
	fi
	"$B/cfs-cache" --store "$store" --server "$url" -f "${opts[@]}" "$remote" 2>/dev/null &
	local pid=$!
	for _ in $(seq 1 100); do mountpoint -q "$remote" && break; sleep 0.02; done
	"$B/cfs-cache" mount-image "$image" "$mnt" --store "$store" --remote "$remote"
	# What a container runtime provides: scratch space, /dev and /proc.
	mount -t tmpfs tmpfs "$mnt/tmp"
	mount --bind /dev "$mnt/dev"
	mount -t proc proc "$mnt/proc"
	chroot "$mnt" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin /bin/sh -c "$workload"
	t1=$(date +%s.%N)
	case $mode in *writer) writer_stop ;; esac
	# Body bytes received (objects get their store names a moment later, after the flush).
	fetched=$(getfattr --only-values -n user.cfs.bytes_fetched "$remote" 2>/dev/null || echo 0)
	[ "$mode" = eager ] && fetched=$(du -sb --exclude=.cfs-tmp "$store" | cut -f1)
	umount "$mnt/proc" "$mnt/dev" "$mnt/tmp"
	umount "$mnt"
	umount "$remote"
	wait "$pid" 2>/dev/null
	echo "$(echo "$t1 - $t0" | bc -l) $fetched"
}
bench_prime_memory # mounts its tmpfs here: run_once runs in subshells
best_lazy="" best_eager="" best_lw="" best_ow="" lazy_bytes=0
better() { [ -z "$2" ] || [ "$(echo "$1 < $2" | bc -l)" = 1 ]; }
for _ in 1 2 3; do
	read -r t b < <(run_once lazy)
	if better "$t" "$best_lazy"; then best_lazy=$t; lazy_bytes=$b; fi
	read -r t _ < <(run_once eager)
	if better "$t" "$best_eager"; then best_eager=$t; fi
	read -r t _ < <(run_once lazy-writer)
	if better "$t" "$best_lw"; then best_lw=$t; fi
	read -r t _ < <(run_once old-writer)
	if better "$t" "$best_ow"; then best_ow=$t; fi
done
lazy_objects=$(find "$BENCH_TMP/store.lazy" -mindepth 2 -type f -path '*/[0-9a-f][0-9a-f]/*' | wc -l)
echo "Rootfs: $(basename "$rootfs"), $total_objects objects, $total_bytes bytes. Workload: dpkg -l; apt-cache policy; ls -l /usr/bin; perl -e 1"
echo
echo "| mode | time | objects fetched | bytes fetched | % of bytes |"
echo "|---|---|---|---|---|"
printf '| fetch everything, then run | %.2fs | %s | %s | 100%% |\n' "$best_eager" "$total_objects" "$total_bytes"
printf '| lazy (cfs-cache) | %.2fs | %s | %s | %.1f%% |\n' "$best_lazy" "$lazy_objects" "$lazy_bytes" "$(echo "100 * $lazy_bytes / $total_bytes" | bc -l)"
echo
echo "Time ratio lazy / eager: $(bench_ratio "$best_lazy" "$best_eager")x (target <= 0.5x)"
echo
echo "| lazy boot while another process writes and flushes 1 GiB in a loop | time | / the same boot without it | target |"
echo "|---|---|---|---|"
printf '| hand-off layer (default) | %.2fs | %sx | <= 2x |\n' "$best_lw" "$(bench_ratio "$best_lw" "$best_lazy")"
printf '| --no-handoff (a miss waits for the flush) | %.2fs | %sx | |\n' "$best_ow" "$(bench_ratio "$best_ow" "$best_lazy")"
