#!/bin/bash
# SPDX-License-Identifier: MIT
# The mount daemon's options follow the other commands' conventions: misuse (a typo, an unknown
# -o name, a missing value) exits 2 naming the option; --help goes to stdout with DURATIONs;
# -q/-v; every long option also works as -o with '_' or '-', in mount.fuse3's SOURCE MOUNTPOINT
# -o form too; -s is single-threaded; a daemon started with -o options re-executes on SIGHUP.
. "$(dirname "$0")/lib.sh"
cfs_require_fuse
cfs_require_cmd nginx getfattr

store="$CFS_TMP/store" origin="$CFS_TMP/origin" remote="$CFS_TMP/remote"
mkdir -p "$origin" "$CFS_TMP/tree" "$remote"
cfs_make_file "$CFS_TMP/tree/a" 5000 1
"$CFS_STORE_BIN" --no-progress -q import "$CFS_TMP/tree" "$origin" >/dev/null
obj=$(cfs_object_of "$CFS_TMP/tree/a")
port=$(cfs_free_port)
cfs_start_nginx "$origin" "$port"
url="http://127.0.0.1:$port/objects"

# misuse ARGS... EXPECTED-WORD: exit 2, a message naming the option, no mount.
misuse() {
	local want=$1 rc=0
	shift
	cfs_bounded 20 "$CFS_CACHE_BIN" "$@" >"$CFS_TMP/out" 2>"$CFS_TMP/err" || rc=$?
	cfs_assert_eq "$rc" 2 "exit of cfs-cache $*"
	grep -qF -- "$want" "$CFS_TMP/err" || cfs_fail "cfs-cache $*: stderr does not name '$want': $(cat "$CFS_TMP/err")"
	! mountpoint -q "$remote" || cfs_fail "cfs-cache $* mounted"
}
misuse '--sever' --store "$store" --sever "$url" "$remote"
misuse 'bogus' --store "$store" -o bogus "$remote"
misuse 'srever=' src "$remote" -o "store=$store,srever=$url"
misuse 'token_file' --store "$store" -o token_file "$remote"
misuse 'no_handoff=1' --store "$store" -o no_handoff=1 "$remote"
misuse '--store' --store
misuse 'MOUNTPOINT' -q --store "$store"
misuse 'unexpected argument' --store "$store" a b c
misuse '--log-level' --store "$store" --log-level loud "$remote"
misuse '--max-size' --store "$store" --max-size lots "$remote"

# --help: stdout, exit 0, DURATION (never SECS), -q/-v, every -o form said.
"$CFS_CACHE_BIN" --help >"$CFS_TMP/help" 2>"$CFS_TMP/err" || cfs_fail "--help exit $?"
[ ! -s "$CFS_TMP/err" ] || cfs_fail "--help wrote to stderr"
grep -q 'DURATION' "$CFS_TMP/help" || cfs_fail "--help has no DURATION"
! grep -qw 'SECS' "$CFS_TMP/help" || cfs_fail "--help still says SECS"
grep -q -- '-q, -v' "$CFS_TMP/help" || cfs_fail "--help lacks -q/-v"
"$CFS_CACHE_BIN" --version | grep -q cfscache || cfs_fail "--version"

# mount.fuse3's form: SOURCE MOUNTPOINT -o ..., '_' and '-' spellings, FUSE options passed on,
# mount(8)'s own ignored; -v accepted.
"$CFS_CACHE_BIN" "$url" "$remote" -f -v \
	-o "store=$store,handoff=$CFS_TMP/ho,commit_delay=20ms,no_passthrough,log-level=info" \
	-o "max_transfers=8,connect-timeout=2s,retries=1,timeout=60,rescan=0,low_speed_time=5s" \
	-o "default_permissions,_netdev,nofail,x-systemd.requires=network.target" \
	2>>"$CFS_TMP/cfs-cache.log" &
CFS_CACHE_PID=$!
cfs_track_pid "$CFS_CACHE_PID"
cfs_track_mount "$remote"
cfs_wait_cache "$remote"
cfs_assert_eq "$(cfs_counter "$remote" handoff_dir)" "$CFS_TMP/ho" "-o handoff="
cfs_assert_eq "$(cfs_counter "$remote" server.0 | cut -d' ' -f1)" "$url" "SOURCE as the first server"
cfs_bounded 30 stat "$remote/$obj" >/dev/null 2>&1 || true
[ -f "$CFS_TMP/ho/$obj" ] || cfs_fail "object not handed off through -o handoff="
grep -q 'default_permissions' /proc/self/mountinfo || cfs_fail "FUSE option not passed on"
# SIGHUP re-executes the daemon with the same argv: it parses again and serves on.
kill -HUP "$CFS_CACHE_PID"
for _ in $(seq 1 100); do
	[ "$(cfs_counter "$remote" lookups 2>/dev/null)" = 0 ] && break
	sleep 0.1
done
cfs_assert_eq "$(cfs_counter "$remote" lookups)" 0 "counters of the re-executed daemon"
cfs_assert_eq "$(cfs_counter "$remote" handoff_dir)" "$CFS_TMP/ho" "-o handoff= after SIGHUP"
cfs_stop_cache "$remote"

# Long options, -s single-threaded, --no-handoff as -o no-handoff.
cfs_start_cache "$store" "$remote" --server "$url" -s -q -o no-handoff
cfs_assert_eq "$(cfs_counter "$remote" handoff)" 0 "-o no-handoff"
cmp "$remote/$obj" "$CFS_TMP/tree/a" || cfs_fail "read through a -s mount"
cfs_stop_cache "$remote"
