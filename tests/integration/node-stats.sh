#!/bin/bash
# SPDX-License-Identifier: MIT
# cfs-cache stats says what the node knows (store objects and bytes, fetched, misses, hand-offs,
# evictions, each server's state) with no meaningless "hits" under the hand-off layer; --json is
# valid JSON with escaped strings and one object per server; --metrics-file appears, parses as
# Prometheus text, and follows the counters.
. "$(dirname "$0")/lib.sh"
cfs_require_fuse
cfs_require_cmd nginx getfattr python3 groff

store="$CFS_TMP/st\"o\\re" origin="$CFS_TMP/origin" remote="$CFS_TMP/remote"
metrics="$CFS_TMP/prom/cfs.prom"
mkdir -p "$origin" "$CFS_TMP/tree" "$CFS_TMP/prom"
cfs_make_file "$CFS_TMP/tree/a" 6000 1
cfs_make_file "$CFS_TMP/tree/b" 9000 2
"$CFS_STORE_BIN" --no-progress -q import "$CFS_TMP/tree" "$origin" >/dev/null
a=$(cfs_object_of "$CFS_TMP/tree/a") b=$(cfs_object_of "$CFS_TMP/tree/b")
port=$(cfs_free_port)
cfs_start_nginx "$origin" "$port"
url="http://127.0.0.1:$port/objects"
down="http://127.0.0.1:$(cfs_free_port)/objects"

cfs_start_cache "$store" "$remote" --server "$down" --server "$url" --connect-timeout 1s \
	--max-size 1G --metrics-file "$metrics" --metrics-interval 500ms
cfs_bounded 60 stat "$remote/$a" >/dev/null 2>&1 || true
cfs_settle "$remote"
[ -f "$store/$a" ] || cfs_fail "object not fetched"
for _ in $(seq 1 100); do
	cfs_counter "$remote" server.0.state | grep -q unreachable && break
	sleep 0.1
done

# The lines: the store, what was fetched, no "hits" with the hand-off layer.
"$CFS_CACHE_BIN" stats "$remote" >"$CFS_TMP/stats"
field() { awk -v k="$1" '$1 == k {print $2}' "$CFS_TMP/stats"; }
cfs_assert_eq "$(field store_objects)" 1 "store_objects"
cfs_assert_eq "$(field store_bytes)" 8192 "store_bytes (disk use of a 6000-byte object)"
cfs_assert_eq "$(field fetched)" 1 "fetched"
cfs_assert_eq "$(field misses)" 1 "misses"
cfs_assert_eq "$(field bytes_fetched)" 6000 "bytes_fetched"
[ "$(field handoffs)" -ge 1 ] || cfs_fail "handoffs"
cfs_assert_eq "$(field evictions)" 0 "evictions"
[ -n "$(field store_fs_free)" ] || cfs_fail "no store_fs_free"
! grep -q '^hits ' "$CFS_TMP/stats" || cfs_fail "hits shown under the hand-off layer"
grep -q "^server.0 .*$down state=unreachable" "$CFS_TMP/stats" || cfs_fail "server.0 line: $(cat "$CFS_TMP/stats")"
grep -q "^server.1 .*$url state=up requests=1 " "$CFS_TMP/stats" || cfs_fail "server.1 line"
cfs_assert_eq "$(cfs_counter "$remote" server.1.state)" up "server.1.state"
cfs_assert_eq "$(cfs_counter "$remote" server.1.requests)" 1 "server.1.requests"

# JSON: valid, strings escaped (the store's name has a quote and a backslash), servers as objects.
"$CFS_CACHE_BIN" stats --json "$remote" >"$CFS_TMP/stats.json"
python3 -m json.tool "$CFS_TMP/stats.json" >/dev/null || cfs_fail "stats --json is not JSON: $(cat "$CFS_TMP/stats.json")"
python3 - "$CFS_TMP/stats.json" "$store" "$remote" "$down" "$url" <<'EOF' || cfs_fail "stats --json content"
import json, sys
d = json.load(open(sys.argv[1]))
_, _, store, mnt, down, up = sys.argv
assert d["store_dir"] == store, d["store_dir"]
assert d["mount"] == mnt
assert d["fetched"] == 1 and d["store_objects"] == 1 and isinstance(d["bytes_fetched"], int)
assert "hits" not in d and not any(k.startswith("server.") for k in d), d.keys()
s = d["servers"]
assert [x["url"] for x in s] == [down, up], s
assert s[0]["state"] == "unreachable" and s[1]["state"] == "up", s
assert s[1]["requests"] == 1 and s[0]["failures"] >= 1, s
EOF

# Metrics: there, Prometheus text, atomically replaced, following the counters.
for _ in $(seq 1 100); do [ -s "$metrics" ] && break; sleep 0.1; done
[ -s "$metrics" ] || cfs_fail "no --metrics-file"
check_prom() {
	python3 - "$1" <<'EOF'
import re, sys
name = r'[a-zA-Z_:][a-zA-Z0-9_:]*'
label = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
sample = re.compile(r'^(%s)\{%s(?:,%s)*\} -?[0-9]+(?:\.[0-9]+)?$' % (name, label, label))
typed = re.compile(r'^# TYPE (%s) (counter|gauge)$' % name)
types, n = {}, 0
for line in open(sys.argv[1]).read().splitlines():
    m = typed.match(line)
    if m:
        assert m.group(1) not in types, "TYPE twice: " + line
        types[m.group(1)] = m.group(2)
        continue
    m = sample.match(line)
    assert m, "not Prometheus text: %r" % line
    assert m.group(1) in types, "no TYPE before " + line
    n += 1
assert n > 20, n
EOF
}
check_prom "$metrics" || cfs_fail "metrics file: $(head -5 "$metrics")"
grep -q '^cfs_cache_fetched_total{mount="'"$remote"'"} 1$' "$metrics" || cfs_fail "fetched_total in the metrics"
grep -q 'store_dir' "$metrics" && cfs_fail "a string counter in the metrics"
grep -qF "cfs_cache_server_state{mount=\"$remote\",server=\"$down\",state=\"unreachable\"} 1" "$metrics" ||
	cfs_fail "server state in the metrics: $(grep server_state "$metrics")"
cfs_bounded 60 stat "$remote/$b" >/dev/null 2>&1 || true
for _ in $(seq 1 100); do
	grep -q '^cfs_cache_fetched_total{.*} 2$' "$metrics" && break
	sleep 0.1
done
grep -q '^cfs_cache_fetched_total{.*} 2$' "$metrics" || cfs_fail "metrics file not updated"
check_prom "$metrics" || cfs_fail "updated metrics file"
cfs_assert_eq "$(ls "$CFS_TMP/prom")" cfs.prom "files beside the metrics file"

# cfs-cache(1)'s COUNTERS section names every counter the mount has (and no other section does
# the job): server.0.x is documented as server.N.x.
man_counters() {
	groff -man -Tascii -P-cbou -rLL=300n -rHY=0 "$CFS_SRCDIR/docs/cfs-cache.1" 2>/dev/null |
		sed -n '/^COUNTERS/,/^CACHE SIZE/p'
}
man_counters >"$CFS_TMP/counters.txt"
check_documented() {
	local name names
	names=$(getfattr --absolute-names -d -m '^user\.cfs\.' "$1" |
		sed -n 's/^user\.cfs\.\([^=]*\)=.*/\1/p' | sed 's/^server\.[0-9]*/server.N/' | sort -u)
	[ "$(echo "$names" | wc -l)" -gt 20 ] || cfs_fail "too few counters: $names"
	for name in $names; do
		grep -qE "(^|[^a-z_.])${name//./\\.}([^a-z_]|$)" "$CFS_TMP/counters.txt" ||
			cfs_fail "counter $name is not in cfs-cache(1) COUNTERS"
	done
}
check_documented "$remote"
cfs_stop_cache "$remote"

# Without the hand-off layer "hits" means something and is shown.
cfs_start_cache "$store" "$remote" --server "$url" --no-handoff
cat "$remote/$a" >/dev/null
"$CFS_CACHE_BIN" stats "$remote" | grep -q '^hits  *1$' || cfs_fail "hits with --no-handoff"
check_documented "$remote"
cfs_stop_cache "$remote"
rc=0
"$CFS_CACHE_BIN" --store "$store" --metrics-file rel.prom "$remote" 2>/dev/null || rc=$?
cfs_assert_eq "$rc" 2 "a relative --metrics-file"
