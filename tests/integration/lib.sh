# SPDX-License-Identifier: MIT
# cfscache: shared helpers for integration tests: binaries, temp dirs, cleanup traps, ports,
# composefs-style images. Source it; every process and mount registered here is cleaned up on
# exit, whether the test passes or fails.

set -eu

CFS_BUILDDIR=${CFS_BUILDDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
CFS_SRCDIR=${CFS_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
CFS_STORE_BIN="$CFS_BUILDDIR/cfs-store"
CFS_SERVE_BIN="$CFS_BUILDDIR/cfs-serve"
CFS_CACHE_BIN="$CFS_BUILDDIR/cfs-cache"
CFS_FAULTD_BIN="$CFS_BUILDDIR/tests/faultd"
CFS_TEST_NAME=$(basename "$0" .sh)

_cfs_pids=""
_cfs_mounts=""

cfs_log() { printf '# %s: %s\n' "$CFS_TEST_NAME" "$*" >&2; }
cfs_fail() { printf 'FAIL: %s: %s\n' "$CFS_TEST_NAME" "$*" >&2; exit 1; }
# A missing capability is a visible skip (exit 77), never a silent pass.
cfs_skip() { printf 'SKIP: %s: %s\n' "$CFS_TEST_NAME" "$*" >&2; exit 77; }

cfs_require_root() { [ "$(id -u)" = 0 ] || cfs_skip "needs root"; }
cfs_require_cmd() {
	for c in "$@"; do command -v "$c" >/dev/null 2>&1 || cfs_skip "needs $c"; done
}
cfs_require_fuse() {
	cfs_require_root
	[ -c /dev/fuse ] || cfs_skip "needs /dev/fuse"
}

cfs_track_pid() { _cfs_pids="$1 $_cfs_pids"; }
cfs_track_mount() { _cfs_mounts="$1 $_cfs_mounts"; }
cfs_untrack_pid() { _cfs_pids=$(echo " $_cfs_pids " | sed "s/ $1 / /"); }

# Stops a registered process by PID: TERM, then KILL after a grace period.
cfs_stop_pid() {
	pid=$1
	kill -TERM "$pid" 2>/dev/null || return 0
	for _ in $(seq 1 50); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	cfs_untrack_pid "$pid"
}

cfs_umount() {
	mp=$1
	mountpoint -q "$mp" 2>/dev/null || return 0
	umount "$mp" 2>/dev/null || umount -l "$mp" 2>/dev/null || true
}

_cfs_cleanup() {
	rc=$?
	set +e
	for m in $_cfs_mounts; do cfs_umount "$m"; done
	for p in $_cfs_pids; do
		kill -TERM "$p" 2>/dev/null
	done
	for p in $_cfs_pids; do
		for _ in $(seq 1 30); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
	# Mounts again: a killed FUSE daemon leaves its mountpoint behind.
	for m in $_cfs_mounts; do cfs_umount "$m"; done
	if [ -n "${CFS_TMP:-}" ] && [ -d "$CFS_TMP" ]; then
		if [ "$rc" != 0 ] && [ "$rc" != 77 ] && [ -n "${CFS_KEEP_TMP:-}" ]; then
			echo "# kept $CFS_TMP" >&2
		else
			rm -rf "$CFS_TMP"
		fi
	fi
	exit "$rc"
}
trap _cfs_cleanup EXIT
trap 'exit 130' INT TERM

CFS_TMP=$(mktemp -d "${TMPDIR:-/tmp}/cfs-$CFS_TEST_NAME.XXXXXX")

# Picks a free TCP port on 127.0.0.1.
cfs_free_port() {
	for _ in $(seq 1 50); do
		p=$(( (RANDOM % 20000) + 20000 ))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return 0
		fi
	done
	cfs_fail "no free port"
}

# Waits until something accepts on 127.0.0.1:PORT (at most ~10 s).
cfs_wait_port() {
	for _ in $(seq 1 100); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		sleep 0.1
	done
	cfs_fail "nothing listens on port $1"
}

# Waits until PATH is a mountpoint (at most ~10 s).
cfs_wait_mount() {
	for _ in $(seq 1 100); do
		mountpoint -q "$1" && return 0
		sleep 0.1
	done
	cfs_fail "$1 did not get mounted"
}

cfs_assert_eq() {
	[ "$1" = "$2" ] || cfs_fail "${3:-values differ}: expected '$2', got '$1'"
}

# Runs a command with a time bound; fails the test if it hangs.
cfs_bounded() {
	secs=$1
	shift
	timeout -k 5 "$secs" "$@"
}

# Writes a file of SIZE bytes of deterministic pseudo-random data seeded by SEED.
cfs_make_file() {
	path=$1 size=$2 seed=${3:-1}
	if [ "$size" -eq 0 ]; then
		: >"$path"
		return
	fi
	openssl enc -aes-128-ctr -pass "pass:cfs$seed" -nosalt -pbkdf2 -iter 1 \
		</dev/zero 2>/dev/null | head -c "$size" >"$path"
}

# cfs_mkimage SRC STORE IMAGE: imports SRC's files into STORE and writes a composefs-style
# EROFS image: regular files over 64 bytes become sparse files of their real size carrying
# trusted.overlay.metacopy and trusted.overlay.redirect; smaller files stay inline.
cfs_mkimage() {
	src=$1 store=$2 image=$3
	shadow="$CFS_TMP/shadow.$$.$RANDOM"
	xattrs="$CFS_TMP/xattrs.$$.$RANDOM"
	"$CFS_STORE_BIN" --no-progress -q import "$src" "$store" >/dev/null
	cp -a "$src" "$shadow"
	: >"$xattrs"
	(cd "$src" && find . -type f -size +64c -print0) |
		(cd "$src" && xargs -0 -r "$CFS_STORE_BIN" digest) |
		while read -r d path; do
			hex=${d#sha256:}
			size=$(stat -c %s "$src/$path")
			truncate -s 0 "$shadow/$path"
			truncate -s "$size" "$shadow/$path"
			printf '# file: %s\ntrusted.overlay.metacopy=0x00240001%s\ntrusted.overlay.redirect="/%s/%s"\n\n' \
				"$shadow/$path" "$hex" "${hex%"${hex#??}"}" "${hex#??}" >>"$xattrs"
		done
	setfattr --restore="$xattrs"
	mkfs.erofs -x2 --chunksize=1048576 --quiet "$image" "$shadow" >/dev/null 2>&1 ||
		mkfs.erofs -x2 --chunksize=1048576 "$image" "$shadow" >/dev/null
	rm -rf "$shadow" "$xattrs"
}

# cfs_mount_composefs IMAGE MOUNTPOINT BASEDIR...: EROFS + overlayfs the way mount.composefs
# does, with each BASEDIR as a data-only lower layer, tried in order.
cfs_mount_composefs() {
	image=$1 mnt=$2
	shift 2
	meta="$CFS_TMP/erofs.$RANDOM"
	mkdir -p "$meta" "$mnt"
	mount -t erofs -o ro,loop "$image" "$meta"
	cfs_track_mount "$meta"
	lower="$meta"
	for d in "$@"; do lower="$lower::$d"; done
	mount -t overlay overlay -o "ro,metacopy=on,redirect_dir=on,lowerdir=$lower" "$mnt"
	cfs_track_mount "$mnt"
}
