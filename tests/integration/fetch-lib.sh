# SPDX-License-Identifier: MIT
# cfscache: helpers shared by the fetch-*.sh tests: faultd servers, test stores, store checks.
# Sourced after lib.sh.

FAULTD_BIN="$CFS_BUILDDIR/tests/faultd/faultd"

fetch_need_faultd() {
	[ -x "$FAULTD_BIN" ] || cfs_skip "faultd not built ($FAULTD_BIN; make check builds it)"
	[ -x "$CFS_CACHE_BIN" ] || cfs_skip "cfs-cache not built"
}

# fetch_start_faultd NAME ROOT [FAULTD ARGS...]: starts a faultd serving ROOT at /objects,
# logging one line per request to $CFS_TMP/NAME.log; sets FAULTD_URL. Not in a subshell:
# the PID must reach the cleanup trap.
fetch_start_faultd() {
	_name=$1 _root=$2
	shift 2
	rm -f "$CFS_TMP/$_name.port"
	: >"$CFS_TMP/$_name.log"
	"$FAULTD_BIN" --root "$_root" --port 0 --port-file "$CFS_TMP/$_name.port" \
		--log "$CFS_TMP/$_name.log" "$@" 2>>"$CFS_TMP/$_name.err" &
	cfs_track_pid $!
	for _ in $(seq 1 100); do
		[ -s "$CFS_TMP/$_name.port" ] && break
		sleep 0.05
	done
	[ -s "$CFS_TMP/$_name.port" ] || cfs_fail "faultd $_name did not start"
	FAULTD_URL="http://127.0.0.1:$(cat "$CFS_TMP/$_name.port")/objects"
}

# fetch_make_store STORE NAME SIZE SEED: makes a file, imports it, prints its 64-hex digest.
fetch_add_object() {
	_store=$1 _size=$2 _seed=$3
	mkdir -p "$CFS_TMP/src.$_seed"
	cfs_make_file "$CFS_TMP/src.$_seed/f" "$_size" "$_seed"
	"$CFS_STORE_BIN" --no-progress -q import "$CFS_TMP/src.$_seed" "$_store" >/dev/null
	"$CFS_STORE_BIN" digest "$CFS_TMP/src.$_seed/f" | sed 's/^sha256:\([0-9a-f]*\) .*/\1/'
	rm -rf "$CFS_TMP/src.$_seed"
}

# XX/<62hex> of a 64-hex digest.
fetch_path() { printf '%s/%s\n' "${1%"${1#??}"}" "${1#??}"; }

# Fails unless the store's temp directory is empty.
fetch_assert_no_temp() {
	_n=$(find "$1/.cfs-tmp" -mindepth 1 2>/dev/null | wc -l)
	[ "$_n" = 0 ] || cfs_fail "temporary files left in $1: $(ls -A "$1/.cfs-tmp" | head -3)"
}

# Counts GET requests for an object path in a faultd log.
fetch_gets() { grep -c "^GET /objects/$2 " "$1" || true; }

# Fails if a sanitizer complained in a captured stderr file (exit codes alone can hide it
# where the test expects a failure).
fetch_assert_no_sanitizer() {
	for _f in "$@"; do
		! grep -q "Sanitizer" "$_f" || cfs_fail "sanitizer report in $_f: $(grep -m1 Sanitizer "$_f")"
	done
}
