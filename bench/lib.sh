# SPDX-License-Identifier: MIT
# cfscache: helpers for benchmarks: timing, ratios, cleanup of processes and mounts.
set -euo pipefail
CFS_BUILDDIR=${CFS_BUILDDIR:?run through bench/run.sh}
CFS_BENCH_OUT=${CFS_BENCH_OUT:-/tmp/cfs-bench}
BENCH_TMP=$(mktemp -d "${TMPDIR:-/tmp}/cfs-bench.XXXXXX")
_bench_pids=""
_bench_mounts=""
bench_track_pid() { _bench_pids="$1 $_bench_pids"; }
bench_track_mount() { _bench_mounts="$1 $_bench_mounts"; }
_bench_cleanup() {
	set +e
	for m in $_bench_mounts; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null; done
	for p in $_bench_pids; do kill "$p" 2>/dev/null; done
	for p in $_bench_pids; do
		for _ in $(seq 1 30); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
	for m in $_bench_mounts; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null; done
	rm -rf "$BENCH_TMP"
}
trap _bench_cleanup EXIT

# bench_prime_memory: this machine is a VM whose balloon reports free guest pages back to the
# host; the first write to such a page then costs a host page fault, which makes writing into the
# page cache up to 8x slower (300 MB with dd: 0.11 s, or 0.9-1.3 s) depending on which pages a
# run happens to get. Writing and freeing 1 GiB of tmpfs just before a run hands it pages the
# host still backs, so side-by-side rows compare the software rather than the host.
bench_prime_memory() {
	if ! mountpoint -q "$BENCH_TMP/prime"; then
		mkdir -p "$BENCH_TMP/prime"
		mount -t tmpfs -o size=1100m tmpfs "$BENCH_TMP/prime"
		bench_track_mount "$BENCH_TMP/prime"
	fi
	head -c 1G /dev/zero >"$BENCH_TMP/prime/fill"
	rm -f "$BENCH_TMP/prime/fill"
}

# Prints the wall time of a command in seconds (best of N runs, N=$BENCH_RUNS or 3).
bench_time() {
	local best="" t0 t1 t
	for _ in $(seq 1 "${BENCH_RUNS:-3}"); do
		t0=$(date +%s.%N)
		"$@" >/dev/null 2>&1
		t1=$(date +%s.%N)
		t=$(echo "$t1 - $t0" | bc -l)
		if [ -z "$best" ] || [ "$(echo "$t < $best" | bc -l)" = 1 ]; then best=$t; fi
	done
	printf '%.3f\n' "$best"
}

# ratio A B -> A/B with two decimals
bench_ratio() { printf '%.3f\n' "$(echo "$1 / $2" | bc -l)"; }

bench_free_port() {
	local p
	for _ in $(seq 1 50); do
		p=$(( (RANDOM % 20000) + 10000 )) # below the ephemeral port range
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return 0; fi
	done
	return 1
}
bench_wait_port() {
	for _ in $(seq 1 100); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		sleep 0.1
	done
	return 1
}

# bench_start_nginx DOCROOT PORT [LOCATION_DIRECTIVES]: nginx (2 workers, sendfile, no access log)
# serving DOCROOT at http://127.0.0.1:PORT/objects/, tracked for cleanup; waits until it listens.
bench_start_nginx() {
	local docroot=$1 port=$2 extra=${3:-} dir="$BENCH_TMP/nginx-$2"
	mkdir -p "$dir"
	cat >"$dir/nginx.conf" <<NGINX
worker_processes 2;
pid $dir/nginx.pid;
error_log $dir/error.log;
events { worker_connections 4096; }
http {
	access_log off;
	sendfile on;
	client_body_temp_path $dir/body;
	proxy_temp_path $dir/proxy;
	fastcgi_temp_path $dir/fcgi;
	uwsgi_temp_path $dir/uwsgi;
	scgi_temp_path $dir/scgi;
	server { listen 127.0.0.1:$port; location /objects/ { alias $docroot/; $extra } }
}
NGINX
	nginx -c "$dir/nginx.conf" -g 'daemon off;' &
	bench_track_pid $!
	bench_wait_port "$port"
}
