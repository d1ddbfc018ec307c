#!/bin/bash
# SPDX-License-Identifier: MIT
# cfs-cache doctor's verdicts against facts this test probes itself: the kernel's version and
# filesystems, fs-verity on the store, a server down (FAIL, exit 1) and up (ok, exit 0), a
# token refused, an object absent, a hand-off directory beside the store (ok) and on a tmpfs
# (FAIL), a live mount, and --json that parses.
. "$(dirname "$0")/lib.sh"
cfs_require_fuse
cfs_require_cmd nginx python3 mkfs.erofs setfattr

store="$CFS_TMP/store" origin="$CFS_TMP/origin"
mkdir -p "$store" "$origin"
mkdir -p "$CFS_TMP/tree"
cfs_make_file "$CFS_TMP/tree/blob" 10000 1
"$CFS_STORE_BIN" --no-progress -q import "$CFS_TMP/tree" "$origin" >/dev/null
obj=$(cfs_object_of "$CFS_TMP/tree/blob")
absent=00/$(printf '%062d' 7)
port=$(cfs_free_port)
cfs_start_nginx "$origin" "$port"
url="http://127.0.0.1:$port/objects"
down="http://127.0.0.1:$(cfs_free_port)/objects" # reserved, nothing listens

doctor() { cfs_bounded 60 "$CFS_CACHE_BIN" doctor "$@"; }
# doctor_fails WHAT PATTERN ARGS...: doctor exits 1 with a line matching PATTERN; $out keeps
# what it printed.
doctor_fails() {
	local what=$1 pattern=$2 rc
	shift 2
	set +e
	out=$(doctor "$@")
	rc=$?
	set -e
	cfs_assert_eq "$rc" 1 "exit with $what"
	grep -q -- "$pattern" <<<"$out" || cfs_fail "$what: $out"
}
# line OUT CHECK: the first verdict line of that check
line() { grep -E "^(ok|warn|FAIL) +$2 " <<<"$1" | head -1; }
verdict() { line "$1" "$2" | awk '{print $1}'; }

# Everything up: exit 0, and each line says what this machine really has.
out=$(doctor --store "$store" --server "$url" --object "$obj") || cfs_fail "doctor exit $? with all up: $out"
echo "$out" >&2
cfs_assert_eq "$(line "$out" kernel | awk '{print $4}')" "$(uname -r)" "kernel line"
cfs_assert_eq "$(verdict "$out" fuse)" ok "/dev/fuse"
IFS=. read -r kmaj kmin _ <<<"$(uname -r)"
kv=$((kmaj * 100 + kmin))
if grep -qw overlay /proc/filesystems || modprobe -n overlay 2>/dev/null; then
	if [ "$kv" -ge 608 ]; then want='lowerdir\+/datadir\+'; elif [ "$kv" -ge 605 ]; then want='lowerdir=A::B'; else want=''; fi
	if [ -n "$want" ]; then
		line "$out" overlay | grep -Eq "^ok .*$want" || cfs_fail "overlay line: $(line "$out" overlay)"
	else
		cfs_assert_eq "$(verdict "$out" overlay)" FAIL "overlay before 6.5"
	fi
fi
if [ "$kv" -ge 612 ] && grep -qw erofs /proc/filesystems; then
	line "$out" erofs | grep -q '^ok .*file-backed' || cfs_fail "erofs line: $(line "$out" erofs)"
fi
# fs-verity: what the fsverity tool makes of a file on the store's filesystem.
cfs_make_file "$store/.cfs-test-verity" 4096 2
if command -v fsverity >/dev/null && fsverity enable "$store/.cfs-test-verity" 2>/dev/null; then
	cfs_assert_eq "$(verdict "$out" fs-verity)" ok "fs-verity (fsverity enable works)"
else
	cfs_assert_eq "$(verdict "$out" fs-verity)" warn "fs-verity (fsverity enable fails)"
	line "$out" fs-verity | grep -q 'verified by hash only' || cfs_fail "fs-verity wording"
fi
rm -f "$store/.cfs-test-verity"
cfs_assert_eq "$(verdict "$out" store)" ok "store"
cfs_assert_eq "$(verdict "$out" hand-off)" ok "default hand-off beside the store"
line "$out" server | grep -q "^ok .*$url: reachable, $obj answers HTTP 200" || cfs_fail "server line: $(line "$out" server)"
[ -z "$(find "$store" "$store.handoff" -name '.cfs-doctor*' 2>/dev/null)" ] || cfs_fail "doctor left scratch files"

# Reachability alone: a 404 for a made-up name counts.
out=$(doctor --store "$store" --server "$url") || cfs_fail "doctor without --object: exit $?"
line "$out" server | grep -q '^ok .*HTTP 404 for a made-up name' || cfs_fail "made-up name: $out"

# A server down: its own FAIL line with what to do, and exit 1.
doctor_fails "a server down" "^FAIL  server .*$down: unreachable" --store "$store" --server "$url" --server "$down"
grep -q -- '-> check the URL, that the server runs' <<<"$out" || cfs_fail "no advice for the down server"
grep -q "^ok    server .*$url: reachable" <<<"$out" || cfs_fail "the up server lost its ok line"

# --image: the image's first object must answer.
cfs_mkimage "$CFS_TMP/tree" "$origin" "$CFS_TMP/image.erofs"
out=$(doctor --store "$store" --server "$url" --image "$CFS_TMP/image.erofs") || cfs_fail "doctor --image: exit $?: $out"
line "$out" server | grep -q "^ok .*$url: reachable, $obj answers HTTP 200" || cfs_fail "--image line: $(line "$out" server)"

# An object the server lacks.
doctor_fails "the object absent" "^FAIL  server .*$absent is absent (HTTP 404)" --store "$store" --server "$url" --object "$absent"

# A server that wants a token: missing, wrong, right.
tport=$(cfs_free_port)
cfs_start_nginx "$origin" "$tport" 'if ($http_authorization != "Bearer sekrit") { return 401; }'
turl="http://127.0.0.1:$tport/objects"
echo wrong >"$CFS_TMP/bad-token"
echo sekrit >"$CFS_TMP/token"
doctor_fails "no token" "^FAIL  server .*HTTP 401 (token missing)" --store "$store" --server "$turl" --object "$obj"
grep -q -- "-> the server wants a token: give --token-file" <<<"$out" || cfs_fail "token advice"
doctor_fails "a wrong token" "^FAIL  server .*HTTP 401 (token refused)" --store "$store" --server "$turl" --object "$obj" --token-file "$CFS_TMP/bad-token"
out=$(doctor --store "$store" --server "$turl" --object "$obj" --token-file "$CFS_TMP/token") ||
	cfs_fail "exit with the right token: $out"
grep -q "^ok    server .*token accepted" <<<"$out" || cfs_fail "token accepted: $out"

# A hand-off directory on another filesystem (a tmpfs) cannot take hard links: FAIL.
mkdir -p "$CFS_TMP/tmpfs"
mount -t tmpfs -o size=1m tmpfs "$CFS_TMP/tmpfs"
cfs_track_mount "$CFS_TMP/tmpfs"
doctor_fails "the hand-off on a tmpfs" "^FAIL  hand-off .*on another filesystem than the store" --store "$store" --server "$url" --handoff "$CFS_TMP/tmpfs/handoff"
# Nested in the store: FAIL too.
doctor_fails "the hand-off inside the store" "^FAIL  hand-off .*nested" --store "$store" --server "$url" --handoff "$store/handoff"

# --max-size larger than the filesystem.
doctor_fails "--max-size 1P" "^FAIL  max-size" --store "$store" --server "$url" --max-size 1P

# A live mount: the daemon answers, hand-off on, each server's state from its counters.
remote="$CFS_TMP/remote"
cfs_start_cache "$store" "$remote" --server "$url"
out=$(doctor --store "$store" --server "$url" --mount "$remote") || cfs_fail "doctor --mount: exit $?: $out"
grep -q "^ok    mount .*answers" <<<"$out" || cfs_fail "mount line: $out"
grep -q "^ok    mount hand-off .*$store.handoff" <<<"$out" || cfs_fail "mount hand-off line: $out"
grep -q "^ok    mount server .*state=up" <<<"$out" || cfs_fail "mount server line: $out"
cfs_stop_cache "$remote"
doctor_fails "no daemon on --mount" "^FAIL  mount .*no cfs-cache daemon answers" --store "$store" --server "$url" --mount "$remote"

# --json: valid, one object per check, the verdicts as in the lines.
set +e
doctor --json --store "$store" --server "$url" --server "$down" >"$CFS_TMP/doctor.json"; rc=$?
set -e
cfs_assert_eq "$rc" 1 "--json exit with a server down"
python3 -m json.tool "$CFS_TMP/doctor.json" >/dev/null || cfs_fail "--json is not JSON"
python3 - "$CFS_TMP/doctor.json" "$down" <<'EOF' || cfs_fail "--json content"
import json, sys
d = json.load(open(sys.argv[1]))
bad = [c for c in d["checks"] if c["verdict"] == "fail"]
assert d["ok"] is False and d["failures"] == len(bad) == 1, d
assert sys.argv[2] in bad[0]["detail"] and bad[0]["fix"], bad
EOF

# Misuse: exit 2 naming the option.
set +e
err=$("$CFS_CACHE_BIN" doctor --store "$store" --bogus 2>&1 >/dev/null); rc=$?
set -e
cfs_assert_eq "$rc" 2 "exit for an unknown option"
grep -q -- "--bogus" <<<"$err" || cfs_fail "misuse does not name the option: $err"
"$CFS_CACHE_BIN" doctor --help | grep -q '^Usage: cfs-cache doctor' || cfs_fail "--help"
