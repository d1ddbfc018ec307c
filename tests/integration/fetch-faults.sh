#!/bin/bash
# SPDX-License-Identifier: MIT
# Every faultd fault mode: the fetch fails with the right outcome, saves nothing partial or wrong,
# ends in bounded time, and succeeds through failover when a healthy second server exists.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/fetch-lib.sh"
fetch_need_faultd

src="$CFS_TMP/src"
modes="corrupt truncate stall drip 500 404 reset oversize huge lie-length"
rules=()
: >"$CFS_TMP/all"
seed=1
for m in $modes none; do
	d=$(fetch_add_object "$src" 300000 "$seed")
	seed=$((seed + 1))
	echo "$m $d" >>"$CFS_TMP/modes"
	fetch_path "$d" >>"$CFS_TMP/all"
	[ "$m" = none ] || rules+=(--fault "$d=$m")
done
# The empty object too: corrupt sends one byte for it.
: >"$CFS_TMP/empty" # (digest refuses devices such as /dev/null)
d0=$("$CFS_STORE_BIN" digest "$CFS_TMP/empty" | sed 's/^sha256:\([0-9a-f]*\) .*/\1/')
mkdir -p "$src/${d0%"${d0#??}"}"
: >"$src/$(fetch_path "$d0")"
echo "corrupt $d0" >>"$CFS_TMP/modes"
fetch_path "$d0" >>"$CFS_TMP/all"
rules+=(--fault "$d0=corrupt")

fetch_start_faultd bad "$src" --stall-secs 20 --drip-bps 200 "${rules[@]}"
bad=$FAULTD_URL
fetch_start_faultd good "$src"
good=$FAULTD_URL
opts=(--no-progress --retries 1 --low-speed-time 2s --connect-timeout 2s --max-object-size 1M)

# 1. The faulty server alone: only the healthy object arrives.
store="$CFS_TMP/store1"
set +e
start=$(date +%s)
cfs_bounded 60 "$CFS_CACHE_BIN" fetch "${opts[@]}" --store "$store" --server "$bad" \
	--from "$CFS_TMP/all" --stats >"$CFS_TMP/out1" 2>"$CFS_TMP/err1"
rc=$?
set -e
took=$(($(date +%s) - start))
cat "$CFS_TMP/out1" "$CFS_TMP/err1" >&2
cfs_assert_eq "$rc" 1 "exit code with a faulty server"
[ "$took" -le 30 ] || cfs_fail "faulty fetch took ${took}s"
while read -r m d; do
	p=$(fetch_path "$d")
	if [ "$m" = none ]; then
		[ -f "$store/$p" ] || cfs_fail "healthy object missing"
		continue
	fi
	[ ! -e "$store/$p" ] || cfs_fail "$m: object saved from a faulty server"
	line=$(grep "$p" "$CFS_TMP/err1" || true)
	[ -n "$line" ] || cfs_fail "$m: no error line for $p"
	case $m in
	404) echo "$line" | grep -q "not found on any server" || cfs_fail "$m: $line" ;;
	corrupt | oversize | lie-length) echo "$line" | grep -q "digest mismatch" || cfs_fail "$m: $line" ;;
	huge) echo "$line" | grep -q "more than" || cfs_fail "$m: $line" ;;
	stall | drip) echo "$line" | grep -Eqi "timed out|timeout|too slow|slower" || cfs_fail "$m: $line" ;;
	500) echo "$line" | grep -q "HTTP 500" || cfs_fail "$m: $line" ;;
	esac
	# Retried modes hit the server twice (--retries 1); verify failures and 404s once.
	n=$(fetch_gets "$CFS_TMP/bad.log" "$p")
	case $m in
	corrupt | oversize | lie-length | 404 | huge) want=1 ;;
	*) want=2 ;;
	esac
	# libcurl itself repeats a request (a few times at most) when a reused connection turns
	# out dead before answering.
	if [ "$m" = reset ]; then
		[ "$n" -ge 2 ] && [ "$n" -le 12 ] || cfs_fail "reset: $n GETs"
	else
		cfs_assert_eq "$n" "$want" "$m: GET count"
	fi
done <"$CFS_TMP/modes"
fetch_assert_no_temp "$store"
fetch_assert_no_sanitizer "$CFS_TMP/err1"
grep -q "verify failures 4," "$CFS_TMP/out1" || cfs_fail "verify failures not counted: $(grep requests "$CFS_TMP/out1")"
grep -q "^12 objects: 1 fetched" "$CFS_TMP/out1" || cfs_fail "summary: $(head -1 "$CFS_TMP/out1")"

# 2. Faulty server first, healthy second: everything arrives, verified.
store="$CFS_TMP/store2"
cfs_bounded 60 "$CFS_CACHE_BIN" fetch "${opts[@]}" --store "$store" --server "$bad" \
	--server "$good" --from "$CFS_TMP/all" --stats >"$CFS_TMP/out2" 2>"$CFS_TMP/err2" ||
	{ cat "$CFS_TMP/out2" "$CFS_TMP/err2" >&2; cfs_fail "failover fetch failed"; }
cat "$CFS_TMP/out2" >&2
grep -q "^12 objects: 12 fetched" "$CFS_TMP/out2" || cfs_fail "summary: $(head -1 "$CFS_TMP/out2")"
"$CFS_STORE_BIN" --no-progress verify "$store" >"$CFS_TMP/verify" || cfs_fail "verify: $(cat "$CFS_TMP/verify")"
grep -q "^12 objects ok" "$CFS_TMP/verify" || cfs_fail "verify: $(cat "$CFS_TMP/verify")"
fetch_assert_no_temp "$store"
fetch_assert_no_sanitizer "$CFS_TMP/err2"
