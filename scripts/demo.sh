#!/bin/bash
# SPDX-License-Identifier: MIT
# The main job end to end on an embedded default: builds cfscache, turns a Debian rootfs
# (debootstrap --variant=minbase, cached; or --rootfs DIR) into a composefs image and a content
# store, serves the store with cfs-serve, mounts cfs-cache over an empty local store, mounts the
# image lazily, runs commands inside it with chroot, and shows what was fetched.
# Usage: scripts/demo.sh [--rootfs DIR] [--keep]
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
rootfs="" keep=""
while [ $# -gt 0 ]; do
	case "$1" in
	--rootfs) rootfs=$2; shift 2 ;;
	--keep) keep=1; shift ;;
	-h|--help) sed -n '3,8p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "demo: unknown argument $1" >&2; exit 2 ;;
	esac
done
[ "$(id -u)" = 0 ] || { echo "demo: needs root (FUSE, overlayfs and EROFS mounts)" >&2; exit 1; }
cd "$top"
scripts/deps.sh
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "building cfscache"
if [ ! -f configure ]; then autoreconf -fi >/dev/null 2>&1; fi
mkdir -p build
if [ ! -f build/Makefile ]; then (cd build && "$top/configure" -q); fi
make -s -C build -j"$(nproc)" >/dev/null
B="$top/build"

if [ -z "$rootfs" ]; then
	rootfs=/var/cache/cfscache/rootfs-bookworm-minbase
	if [ ! -x "$rootfs/usr/bin/dpkg" ]; then
		say "making a Debian 12 minbase rootfs with debootstrap (once; cached in $rootfs)"
		command -v debootstrap >/dev/null || apt-get install -y -qq debootstrap >/dev/null
		rm -rf "$rootfs.tmp"
		mkdir -p "$(dirname "$rootfs")"
		debootstrap --variant=minbase bookworm "$rootfs.tmp" http://deb.debian.org/debian >/dev/null
		mv "$rootfs.tmp" "$rootfs"
	fi
fi

work=$(mktemp -d /tmp/cfs-demo.XXXXXX)
chmod 0755 "$work"
serve_pid="" cache_pid=""
cleanup() {
	set +e
	mountpoint -q "$work/mnt/tmp" && umount "$work/mnt/tmp"
	mountpoint -q "$work/mnt" && umount "$work/mnt"
	mountpoint -q "$work/remote" && umount "$work/remote"
	[ -n "$cache_pid" ] && { kill "$cache_pid" 2>/dev/null; wait "$cache_pid" 2>/dev/null; }
	[ -n "$serve_pid" ] && { kill "$serve_pid" 2>/dev/null; wait "$serve_pid" 2>/dev/null; }
	if [ -n "$keep" ]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

say "building a composefs image of $rootfs and a content store (the server side)"
"$B/cfs-store" mkimage --store "$work/origin" "$rootfs" "$work/rootfs.cfs"
"$B/cfs-store" stat "$work/origin"

port=$(( (RANDOM % 20000) + 10000 )) # below the ephemeral port range
say "serving the store with cfs-serve on 127.0.0.1:$port"
"$B/cfs-serve" --store "$work/origin" --listen "127.0.0.1:$port" --quiet &
serve_pid=$!
for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done

say "mounting cfs-cache (empty local store) and the image: basedir = local store : FUSE : hand-off"
mkdir -p "$work/store" "$work/remote" "$work/mnt"
"$B/cfs-cache" --store "$work/store" --server "http://127.0.0.1:$port/objects" \
	--trace "$work/trace" -f "$work/remote" 2>"$work/cfs-cache.log" &
cache_pid=$!
for _ in $(seq 1 100); do mountpoint -q "$work/remote" && break; sleep 0.1; done
"$B/cfs-cache" mount-image "$work/rootfs.cfs" "$work/mnt" --store "$work/store" --remote "$work/remote"
echo "mounted: $(findmnt -n -o FSTYPE,OPTIONS "$work/mnt" | cut -c1-120)..."

say "listing the whole tree fetches nothing"
files=$(find "$work/mnt" -xdev | wc -l)
echo "$files entries listed; objects fetched so far: $(getfattr --absolute-names --only-values -n user.cfs.fetched "$work/remote")"

say "running commands inside the image (chroot): fetched on demand, verified, saved"
# The image is read-only; programs that need scratch space get a tmpfs.
mount -t tmpfs -o size=64m tmpfs "$work/mnt/tmp"
start=$(date +%s.%N)
chroot "$work/mnt" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin /bin/bash -c '
	echo "Debian $(cat /etc/debian_version), $(dpkg -l | grep -c ^ii) packages installed"
	apt-cache policy dpkg | head -3
	ls /usr/bin | wc -l | sed "s/$/ programs in \/usr\/bin/"'
end=$(date +%s.%N)

# Objects get their store names after a group flush, a moment after they were read.
for _ in $(seq 1 100); do
	[ "$(getfattr --absolute-names --only-values -n user.cfs.in_flight "$work/remote")" = 0 ] && break
	sleep 0.1
done
say "what was fetched"
total_objects=$("$B/cfs-store" objects "$work/rootfs.cfs" | wc -l)
total_bytes=$(du -sb --exclude=.cfs-tmp "$work/origin" | cut -f1)
got_objects=$(getfattr --absolute-names --only-values -n user.cfs.fetched "$work/remote")
got_bytes=$(getfattr --absolute-names --only-values -n user.cfs.bytes_fetched "$work/remote")
printf 'fetched %s of %s objects, %s of %s bytes (%.1f%%) in %.2fs\n' "$got_objects" \
	"$total_objects" "$got_bytes" "$total_bytes" \
	"$(echo "100 * $got_bytes / $total_bytes" | bc -l)" "$(echo "$end - $start" | bc -l)"
echo "first files read (from the --trace file, mapped to paths with cfs-store ls):"
"$B/cfs-store" ls "$work/rootfs.cfs" | awk -F'\t@ ' 'NF == 2 {print $2 "\t" $1}' | sort >"$work/paths"
head -n 12 "$work/trace" | while read -r obj size secs; do
	printf '  %8s bytes  %6ss  %s\n' "$size" "$secs" "$(grep -m1 "^$obj" "$work/paths" | cut -f2)"
done
echo "reads through FUSE: $(getfattr --absolute-names --only-values -n user.cfs.opens "$work/remote") opens, $(getfattr --absolute-names --only-values -n user.cfs.reads "$work/remote") reads (every object was handed to the kernel as a real file of the store's filesystem)"
echo "counters (cfs-cache stats):"
"$B/cfs-cache" stats "$work/remote" | sed 's/^/  /' | grep -Ev ' 0$'
"$B/cfs-store" --no-progress verify "$work/store" | tail -1 | sed 's/^/local store verify: /'
