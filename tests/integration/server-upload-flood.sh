#!/bin/bash
# SPDX-License-Identifier: MIT
# cfs-serve --allow-upload against uploaders that may not upload: 40 tokenless connections each
# declaring and pushing 9 MiB get 401 at once and the server's memory stays under 64 MiB; a
# declared size over --max-upload gets 413 at once (no 100 Continue, no body read); an
# authorized upload with Expect: 100-continue still works. And clients that pile "pipelined"
# bytes behind a large download they never read are not buffered either.
. "$(dirname "$0")/lib.sh"
cfs_require_cmd curl python3

store="$CFS_TMP/store"
mkdir -p "$store"
printf 'up-token\n' >"$CFS_TMP/token"
cfs_make_file "$CFS_TMP/big" $((3 << 20)) 9
p=$(cfs_object_of "$CFS_TMP/big")
load="$CFS_SRCDIR/tests/integration/load/upload_flood.py"
field() { echo "$1" | python3 -c "import json,sys; print(json.load(sys.stdin)[\"$2\"])"; }

port=$(cfs_free_port)
# Under AddressSanitizer freed memory sits in a quarantine (256 MiB by default), and RSS would
# measure that rather than what the server holds: a small one here (no effect without ASan).
ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=4" \
	"$CFS_SERVE_BIN" --store "$store" --listen "127.0.0.1:$port" --threads 2 --allow-upload \
		--token-file "$CFS_TMP/token" --max-upload 16M 2>"$CFS_TMP/serve.err" &
pid=$!
cfs_track_pid $pid
cfs_wait_port "$port"
rss() { awk '/^VmHWM/ {print int($2 / 1024)}' "/proc/$pid/status"; }
cfs_log "peak RSS before: $(rss) MiB"

out=$(cfs_bounded 60 python3 "$load" --port "$port" --path "/objects/$p" --conns 40 \
	--declared $((9 << 20)) --push $((9 << 20)) --seconds 15)
peak=$(rss)
cfs_log "tokenless flood: $out; peak RSS $peak MiB"
codes=$(field "$out" codes)
[ "$codes" = "{'401': 40}" ] || cfs_fail "tokenless uploads: $codes"
python3 -c "import sys; sys.exit(not $(field "$out" worst_answer_s) < 1.0)" ||
	cfs_fail "401 not at once: $out"
[ "$peak" -lt 64 ] || cfs_fail "peak RSS $peak MiB under the tokenless flood"
[ ! -e "$store/$p" ] || cfs_fail "a tokenless upload was stored"

# The answer does not wait for the body: clients that send only the headers get it too.
out=$(cfs_bounded 30 python3 "$load" --port "$port" --path "/objects/$p" --conns 10 \
	--declared $((9 << 20)) --push 0 --seconds 5)
cfs_log "tokenless, headers only: $out"
[ "$(field "$out" codes)" = "{'401': 10}" ] || cfs_fail "tokenless uploads without a body: $out"

# Over --max-upload: 413 at once, whether the client waits for 100 Continue or not.
for e in --expect ""; do
	# shellcheck disable=SC2086 # $e is an option or nothing
	out=$(cfs_bounded 30 python3 "$load" --port "$port" --path "/objects/$p" --conns 4 \
		--declared $((10 << 30)) --push $((1 << 20)) --token up-token $e --seconds 10)
	cfs_log "oversized ${e:-(pushing)}: $out"
	[ "$(field "$out" codes)" = "{'413': 4}" ] || cfs_fail "oversized upload $e: $out"
	python3 -c "import sys; sys.exit(not $(field "$out" worst_answer_s) < 1.0)" ||
		cfs_fail "413 not at once: $out"
done
cfs_make_file "$CFS_TMP/huge" $((17 << 20)) 10
t0=$(date +%s%N)
c=$(curl -s -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer up-token' -T "$CFS_TMP/huge" \
	"http://127.0.0.1:$port/objects/$(cfs_object_of "$CFS_TMP/huge")")
ms=$((($(date +%s%N) - t0) / 1000000))
cfs_assert_eq "$c" 413 "curl upload over --max-upload"
[ "$ms" -lt 900 ] || cfs_fail "curl's oversized upload took $ms ms (waited for the body?)"

# The right token, a body above curl's Expect threshold: 100 Continue, then 201.
t0=$(date +%s%N)
c=$(curl -s -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer up-token' -T "$CFS_TMP/big" \
	"http://127.0.0.1:$port/objects/$p")
ms=$((($(date +%s%N) - t0) / 1000000))
cfs_assert_eq "$c" 201 "authorized upload"
[ "$ms" -lt 900 ] || cfs_fail "authorized upload took $ms ms (no 100 Continue?)"
cmp -s "$store/$p" "$CFS_TMP/big" || cfs_fail "uploaded bytes"
# Still a 401 for the wrong token, and the requests were counted.
c=$(curl -s -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer nope' -T "$CFS_TMP/huge" \
	"http://127.0.0.1:$port/objects/$(cfs_object_of "$CFS_TMP/huge")")
cfs_assert_eq "$c" 401 "wrong token"
m=$(curl -s -H 'Authorization: Bearer up-token' "http://127.0.0.1:$port/metrics")
echo "$m" | grep -q '^cfs_serve_requests_total{method="PUT",code="401"} 51$' ||
	cfs_fail "401s not counted: $(echo "$m" | grep PUT)"

# Four clients each asking for a 24 MiB object without reading it, pushing bytes behind it.
mkdir -p "$CFS_TMP/large"
cfs_make_file "$CFS_TMP/large/obj" $((24 << 20)) 13
"$CFS_STORE_BIN" -q --no-progress import "$CFS_TMP/large" "$store" >/dev/null
pl=$(cfs_object_of "$CFS_TMP/large/obj")
before=$(rss)
out=$(cfs_bounded 30 python3 "$CFS_SRCDIR/tests/integration/load/pipeline_flood.py" --port "$port" \
	--path "/objects/$pl" --conns 4 --seconds 3 --token up-token)
peak=$(rss)
cfs_log "pipelined flood behind unread downloads: $out; peak RSS $before -> $peak MiB"
[ "$(field "$out" accepted_bytes)" -lt $((64 << 20)) ] || cfs_fail "the server took $out"
[ "$peak" -lt $((before + 16)) ] || cfs_fail "peak RSS $before -> $peak MiB under the pipelined flood"
# Pushing behind a refused request: dropped, and cut off after a bounded amount.
out=$(cfs_bounded 30 python3 "$CFS_SRCDIR/tests/integration/load/pipeline_flood.py" --port "$port" \
	--path "/objects/$pl" --conns 4 --seconds 3)
cfs_log "pushing behind a 401: $out"
[ "$(field "$out" accepted_bytes)" -lt $((64 << 20)) ] || cfs_fail "the server took $out after a 401"
cfs_stop_pid $pid
# Every server stopped: none of them had a sanitizer (or leak) report.
! grep -q "Sanitizer\|runtime error:" "$CFS_TMP"/*.err 2>/dev/null ||
	cfs_fail "sanitizer report: $(grep -h -m1 "Sanitizer\|runtime error:" "$CFS_TMP"/*.err)"
