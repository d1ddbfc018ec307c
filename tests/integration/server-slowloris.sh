#!/bin/bash
# SPDX-License-Identifier: MIT
# cfs-serve under slowloris: twice --max-connections connections drip a request head (then a TLS
# ClientHello) one byte a second and reconnect when closed, while a normal client keeps asking
# for an object over new connections. Every normal request gets its 200; no slow connection
# lives much past --header-timeout.
. "$(dirname "$0")/lib.sh"
cfs_require_cmd curl python3 openssl

store="$CFS_TMP/store"
mkdir -p "$CFS_TMP/src"
cfs_make_file "$CFS_TMP/src/obj" 6000 5
"$CFS_STORE_BIN" -q --no-progress import "$CFS_TMP/src" "$store" >/dev/null
p=$(cfs_object_of "$CFS_TMP/src/obj")
load="$CFS_SRCDIR/tests/integration/load/slowloris.py"
field() { echo "$1" | python3 -c "import json,sys; print(json.load(sys.stdin)[\"$2\"])"; }

check() { # NAME JSON: the assertions shared by the plain and the TLS run
	local name=$1 out=$2
	cfs_log "$name: $out"
	[ "$(field "$out" normal_fail)" = 0 ] || cfs_fail "$name: normal requests failed: $out"
	[ "$(field "$out" normal_ok)" -ge 40 ] || cfs_fail "$name: too few normal requests: $out"
	[ "$(field "$out" slow_closed)" -ge 100 ] || cfs_fail "$name: slow connections not closed: $out"
	# --header-timeout 2s, one timer tick and the client's 1 s drip period of slack.
	python3 -c "import sys; sys.exit(not ($(field "$out" slow_max_life_s) < 3.5 and $(field "$out" slow_open_oldest_s) < 3.5))" ||
		cfs_fail "$name: a slow connection outlived the head deadline: $out"
}

port=$(cfs_free_port)
"$CFS_SERVE_BIN" --store "$store" --listen "127.0.0.1:$port" --threads 2 --timeout 2s \
	--header-timeout 2s --max-connections 50 2>"$CFS_TMP/serve.err" &
pid=$!
cfs_track_pid $pid
cfs_wait_port "$port"
out=$(cfs_bounded 60 python3 "$load" --port "$port" --path "/objects/$p" --slow 100 --seconds 10)
check plain "$out"
m=$(curl -s "http://127.0.0.1:$port/metrics")
t=$(echo "$m" | awk '$1 == "cfs_serve_head_timeouts_total" {print $2}')
e=$(echo "$m" | awk '$1 == "cfs_serve_head_evictions_total" {print $2}')
cfs_log "head timeouts $t, evictions $e"
[ "$((t + e))" -gt 0 ] || cfs_fail "closed slow heads not counted"
cfs_stop_pid $pid

# The same against HTTPS: a ClientHello that never ends is bounded by the same deadline.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
	-subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
	-keyout "$CFS_TMP/key.pem" -out "$CFS_TMP/cert.pem" 2>/dev/null || cfs_skip "openssl req failed"
port=$(cfs_free_port)
"$CFS_SERVE_BIN" --store "$store" --listen "127.0.0.1:$port" --threads 2 --timeout 2s \
	--header-timeout 2s --max-connections 50 --tls-cert "$CFS_TMP/cert.pem" \
	--tls-key "$CFS_TMP/key.pem" 2>>"$CFS_TMP/serve.err" &
pid=$!
cfs_track_pid $pid
cfs_wait_port "$port"
out=$(cfs_bounded 60 python3 "$load" --port "$port" --path "/objects/$p" --slow 100 --seconds 10 --tls)
check tls "$out"
cfs_stop_pid $pid
# Every server stopped: none of them had a sanitizer (or leak) report.
! grep -q "Sanitizer\|runtime error:" "$CFS_TMP"/*.err 2>/dev/null ||
	cfs_fail "sanitizer report: $(grep -h -m1 "Sanitizer\|runtime error:" "$CFS_TMP"/*.err)"
