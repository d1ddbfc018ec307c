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
CFS_FAULTD_BIN="$CFS_BUILDDIR/tests/faultd/faultd"
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
	local pid=$1
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
	local mp=$1
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
	for d in "$CFS_PORT_DIR"/*; do
		[ "$(cat "$d/owner" 2>/dev/null)" = "$$" ] && rm -rf "$d"
	done
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
# Servers running as an unprivileged user (nginx workers) must reach the stores inside.
chmod 0755 "$CFS_TMP"

# Picks a free TCP port on 127.0.0.1, below the kernel's ephemeral range (outgoing connections
# take ports from there and would collide with a listener), and reserves it for this test run:
# tests running in parallel never get the same port.
CFS_PORT_DIR=${TMPDIR:-/tmp}/cfs-test-ports
# Called in $(...) subshells: the reservation names its owner ($$ is the test's shell there too).
cfs_free_port() {
	local p lo owner
	lo=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
	[ "$lo" -gt 12000 ] || lo=32768
	mkdir -p "$CFS_PORT_DIR"
	for _ in $(seq 1 100); do
		p=$(( (RANDOM % (lo - 11000)) + 10000 ))
		(exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && continue
		if ! mkdir "$CFS_PORT_DIR/$p" 2>/dev/null; then
			# Taken, unless its owner is dead (a test killed before its cleanup).
			owner=$(cat "$CFS_PORT_DIR/$p/owner" 2>/dev/null || true)
			# No owner yet: being taken right now.
			{ [ -z "$owner" ] || kill -0 "$owner" 2>/dev/null; } && continue
			rm -rf "$CFS_PORT_DIR/$p"
			mkdir "$CFS_PORT_DIR/$p" 2>/dev/null || continue
		fi
		echo $$ >"$CFS_PORT_DIR/$p/owner"
		echo "$p"
		return 0
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
	local secs=$1
	shift
	timeout -k 5 "$secs" "$@"
}

# Writes a file of SIZE bytes of deterministic pseudo-random data seeded by SEED.
cfs_make_file() {
	local path=$1 size=$2 seed=${3:-1}
	if [ "$size" -eq 0 ]; then
		: >"$path"
		return
	fi
	openssl enc -aes-128-ctr -pass "pass:cfs$seed" -nosalt -pbkdf2 -iter 1 \
		</dev/zero 2>/dev/null | head -c "$size" >"$path"
}

# cfs_mkimage SRC STORE IMAGE: imports SRC's files into STORE and writes its composefs image
# (cfs-store mkimage: the project's writer, byte-identical to mkcomposefs).
cfs_mkimage() {
	"$CFS_STORE_BIN" -q --no-progress mkimage --store "$2" "$1" "$3" >/dev/null
}

# cfs_mount_composefs IMAGE MOUNTPOINT BASEDIR...: EROFS + overlayfs the way mount.composefs
# does, with each BASEDIR as a data-only lower layer, tried in order.
cfs_mount_composefs() {
	local image=$1 mnt=$2 d lower
	shift 2
	local meta="$CFS_TMP/erofs.$RANDOM"
	mkdir -p "$meta" "$mnt"
	mount -t erofs -o ro,loop "$image" "$meta"
	cfs_track_mount "$meta"
	lower="$meta"
	for d in "$@"; do
		lower="$lower::$d"
		# A cfs-cache mount is followed by its hand-off directory, as mount-image does.
		if [ "$(cfs_counter "$d" handoff)" = 1 ]; then lower="$lower::$(cfs_counter "$d" handoff_dir)"; fi
	done
	mount -t overlay overlay -o "ro,metacopy=on,redirect_dir=on,lowerdir=$lower" "$mnt"
	cfs_track_mount "$mnt"
}

# cfs_start_nginx DOCROOT PORT [EXTRA_LOCATION_DIRECTIVES]: serves DOCROOT (a store) at
# http://127.0.0.1:PORT/objects/ with Debian's nginx in the foreground, tracked by PID.
# The access log is $CFS_TMP/nginx-PORT/access.log ("METHOD URI STATUS BYTES" per line).
cfs_start_nginx() {
	local docroot=$1 port=$2 extra=${3:-}
	local dir="$CFS_TMP/nginx-$port"
	mkdir -p "$dir"
	cat >"$dir/nginx.conf" <<NGINX
worker_processes 2;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 1024; }
http {
	log_format cfs '\$request_method \$uri \$status \$body_bytes_sent';
	access_log $dir/access.log cfs;
	client_body_temp_path $dir/body;
	proxy_temp_path $dir/proxy;
	fastcgi_temp_path $dir/fastcgi;
	uwsgi_temp_path $dir/uwsgi;
	scgi_temp_path $dir/scgi;
	sendfile on;
	tcp_nopush on;
	keepalive_requests 100000;
	server {
		listen 127.0.0.1:$port;
		location /objects/ {
			alias $docroot/;
			$extra
		}
	}
}
NGINX
	nginx -c "$dir/nginx.conf" -g 'daemon off;' &
	cfs_track_pid $!
	CFS_NGINX_PID=$!
	cfs_wait_port "$port"
}

# Counts GET requests for one object path (XX/62hex) in an nginx access log.
cfs_nginx_gets() {
	grep -c "^GET /objects/$2 " "$1" 2>/dev/null || true
}

# cfs_start_cache STORE MOUNTPOINT ARGS...: runs cfs-cache in the foreground (background job),
# tracked by PID and mountpoint; sets CFS_CACHE_PID.
cfs_start_cache() {
	local store=$1 mnt=$2
	shift 2
	mkdir -p "$mnt"
	"$CFS_CACHE_BIN" --store "$store" -f "$@" "$mnt" 2>>"$CFS_TMP/cfs-cache.log" &
	CFS_CACHE_PID=$!
	cfs_track_pid "$CFS_CACHE_PID"
	cfs_track_mount "$mnt"
	cfs_wait_mount "$mnt"
}

# cfs_stop_cache MOUNTPOINT: unmounts, which ends the daemon; waits for it.
cfs_stop_cache() {
	cfs_umount "$1"
	if [ -n "${CFS_CACHE_PID:-}" ]; then
		for _ in $(seq 1 50); do kill -0 "$CFS_CACHE_PID" 2>/dev/null || break; sleep 0.1; done
		cfs_stop_pid "$CFS_CACHE_PID"
	fi
}

# cfs_tree_fixture [HOOK]: the set-up of the FUSE tests: the test tree in $src (HOOK, a command,
# may add to it), made into a composefs image $image over the object store $origin, which nginx
# serves at $url (port $port, access log $log). $store, $remote and $mnt name the local store,
# the FUSE mount and the composefs mount, none of them made yet.
cfs_tree_fixture() {
	cfs_require_fuse
	cfs_require_cmd nginx mkfs.erofs setfattr getfattr
	src="$CFS_TMP/src" origin="$CFS_TMP/origin" image="$CFS_TMP/image.erofs"
	store="$CFS_TMP/store" remote="$CFS_TMP/remote" mnt="$CFS_TMP/mnt"
	cfs_make_tree "$src"
	if [ $# -gt 0 ]; then "$@"; fi
	cfs_mkimage "$src" "$origin" "$image"
	port=$(cfs_free_port)
	cfs_start_nginx "$origin" "$port"
	url="http://127.0.0.1:$port/objects"
	log="$CFS_TMP/nginx-$port/access.log"
}

# cfs_wait_download STORE [BYTES]: waits (up to 10 s) until a download into STORE has more than
# BYTES (default 0) in a temp file.
cfs_wait_download() {
	for _ in $(seq 1 100); do
		# Bytes in a temp file (a mount keeps a few empty ones made ahead).
		[ -n "$(find "$1/.cfs-tmp" -type f -size +"${2:-0}"c 2>/dev/null | head -1)" ] && return 0
		sleep 0.1
	done
	cfs_fail "no download into $1 in progress${2:+ past $2 bytes}"
}

# Reads one counter of a cfs-cache mount.
cfs_counter() { getfattr --only-values -n "user.cfs.$2" "$1" 2>/dev/null; }

# cfs_object_via MOUNT XX/62HEX: asks a cfs-cache mount for an object the way overlayfs does
# and prints the path to read it from. With the hand-off layer the lookup fetches the object,
# links it into the hand-off directory and answers ENOENT; without it the mount's file is read.
cfs_object_via() {
	if [ "$(cfs_counter "$1" handoff)" = 1 ]; then
		cfs_bounded 120 stat "$1/$2" >/dev/null 2>&1 || true
		echo "$(cfs_counter "$1" handoff_dir)/$2"
	else
		echo "$1/$2"
	fi
}

# cfs_wait_cache MOUNT: waits (up to 10 s) until a cfs-cache daemon answers on MOUNT (a dead
# mount left there counts as a mountpoint, so cfs_wait_mount is not enough after a crash).
cfs_wait_cache() {
	for _ in $(seq 1 100); do
		cfs_counter "$1" lookups >/dev/null && return 0
		sleep 0.1
	done
	cfs_fail "no cfs-cache answers on $1"
}

# cfs_settle MOUNT: waits (up to 10 s) until the daemon has nothing in flight: every object it
# handed off has its name in the store.
cfs_settle() {
	for _ in $(seq 1 100); do
		[ "$(cfs_counter "$1" in_flight)" = 0 ] && [ "$(cfs_counter "$1" queued)" = 0 ] && return 0
		sleep 0.1
	done
	cfs_fail "$1 still has objects in flight"
}

# Number of objects in a store.
cfs_store_count() {
	find "$1" -mindepth 2 -maxdepth 2 -type f -path "$1/[0-9a-f][0-9a-f]/*" | wc -l
}

# Digest path XX/62hex of a file's content.
cfs_object_of() {
	local d
	d=$("$CFS_STORE_BIN" digest "$1" | cut -d' ' -f1)
	d=${d#sha256:}
	echo "${d%"${d#??}"}/${d#??}"
}

# Builds a test tree under $1: nested dirs, sizes around the inline limit and block edges,
# symlinks, a hard link, an empty file.
cfs_make_tree() {
	local t=$1 i
	mkdir -p "$t/etc" "$t/usr/bin" "$t/usr/lib/deep/er/still" "$t/var/empty"
	cfs_make_file "$t/etc/empty" 0 1
	cfs_make_file "$t/etc/tiny" 10 2
	cfs_make_file "$t/etc/sixtyfour" 64 3
	cfs_make_file "$t/etc/sixtyfive" 65 4
	cfs_make_file "$t/usr/bin/tool" 4096 5
	cfs_make_file "$t/usr/bin/tool2" 4097 6
	cfs_make_file "$t/usr/lib/libbig.so" $((3 * 1048576 + 17)) 7
	cfs_make_file "$t/usr/lib/deep/er/still/data" 200000 8
	cfs_make_file "$t/usr/lib/same-as-tool" 4096 5
	printf 'hello from a lazily fetched file\n' >"$t/etc/motd"
	ln -s ../usr/bin/tool "$t/etc/link"
	ln "$t/usr/bin/tool2" "$t/usr/bin/tool2-hardlink"
	for i in $(seq 1 40); do cfs_make_file "$t/usr/lib/f$i" $((i * 997)) $((100 + i)); done
}
