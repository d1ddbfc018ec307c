#!/bin/bash
# SPDX-License-Identifier: MIT
# cfs-serve over loopback: CLI, bytes of many objects (0 B..100 MiB), HEAD headers, ranges,
# 304, zstd negotiation, methods, /healthz, /metrics and the access log.
. "$(dirname "$0")/lib.sh"
cfs_require_cmd curl zstd

# --- command line ---
"$CFS_SERVE_BIN" --help | grep -q -- '--store DIR' || cfs_fail "--help"
"$CFS_SERVE_BIN" --version | grep -q '^cfs-serve (cfscache) ' || cfs_fail "--version"
set +e
"$CFS_SERVE_BIN" --listen 127.0.0.1:1 2>/dev/null
rc1=$?
"$CFS_SERVE_BIN" --store /nonexistent/x --bogus 2>/dev/null
rc2=$?
"$CFS_SERVE_BIN" --store "$CFS_TMP" --allow-upload 2>/dev/null
rc3=$?
"$CFS_SERVE_BIN" --store /nonexistent/dir/store --listen 127.0.0.1:1 2>/dev/null
rc4=$?
set -e
cfs_assert_eq "$rc1" 2 "exit code without --store"
cfs_assert_eq "$rc2" 2 "exit code for an unknown option"
cfs_assert_eq "$rc3" 2 "exit code for --allow-upload without a token"
cfs_assert_eq "$rc4" 1 "exit code for an unusable store"

store="$CFS_TMP/store"
src="$CFS_TMP/src"
mkdir -p "$src"
sizes="1 100 4095 4096 4097 16383 16384 16385 65536 65537 1048576 3000001"
i=0
for s in $sizes; do
	i=$((i + 1))
	cfs_make_file "$src/f$s" "$s" "$i"
done
cfs_make_file "$src/big" $((100 << 20)) 99
yes 'compressible line of text for zstd' | head -c 300000 >"$src/text"
yes 'a larger compressible text, compressed in the background' | head -c 3000000 >"$src/bigtext"
yes 'a text damaged on disk, then repaired' | head -c 200000 >"$src/dmgtext"
yes 'a text damaged on disk, then deleted by verify' | head -c 200000 >"$src/gonetext"
"$CFS_STORE_BIN" -q --no-progress import "$src" "$store" >/dev/null
# The empty object (import skips empty files).
empty=3d248ca542a24fc62d1c43b916eae5016878e2533c88238480b26128a1f1af95
mkdir -p "$store/3d"
: >"$store/3d/${empty#3d}"
path_of() {
	d=$("$CFS_STORE_BIN" digest "$1" | awk '{print $1}')
	d=${d#sha256:}
	echo "${d:0:2}/${d:2}"
}

port=$(cfs_free_port)
"$CFS_SERVE_BIN" --store "$store" --listen "127.0.0.1:$port" --threads 2 \
	--access-log "$CFS_TMP/access.log" 2>"$CFS_TMP/serve.err" &
pid=$!
cfs_track_pid $pid
cfs_wait_port "$port"
base="http://127.0.0.1:$port"

# --- bytes identical, sizes 0..100 MiB ---
for f in $(cd "$src" && ls); do
	p=$(path_of "$src/$f")
	cfs_bounded 60 curl -sSf -o "$CFS_TMP/got" "$base/objects/$p" || cfs_fail "GET $f"
	cmp -s "$CFS_TMP/got" "$src/$f" || cfs_fail "bytes differ for $f"
done
curl -sSf -o "$CFS_TMP/got" "$base/objects/3d/${empty#3d}" || cfs_fail "GET empty"
[ ! -s "$CFS_TMP/got" ] || cfs_fail "empty object not empty"
# Many objects over one keep-alive connection.
urls=()
for s in $sizes; do urls+=(-o "$CFS_TMP/ka.$s" "$base/objects/$(path_of "$src/f$s")"); done
curl -sSf "${urls[@]}" || cfs_fail "keep-alive GETs"
for s in $sizes; do cmp -s "$CFS_TMP/ka.$s" "$src/f$s" || cfs_fail "keep-alive bytes differ ($s)"; done

# --- HEAD headers ---
p=$(path_of "$src/f65536")
hex=${p/\//}
curl -sSfI "$base/objects/$p" | tr -d '\r' >"$CFS_TMP/head"
grep -qx 'HTTP/1.1 200 OK' "$CFS_TMP/head" || cfs_fail "HEAD status"
grep -qx "ETag: \"$hex\"" "$CFS_TMP/head" || cfs_fail "ETag"
grep -qx 'Cache-Control: public, max-age=31536000, immutable' "$CFS_TMP/head" || cfs_fail "Cache-Control"
grep -qx 'Content-Type: application/octet-stream' "$CFS_TMP/head" || cfs_fail "Content-Type"
grep -qx 'Content-Length: 65536' "$CFS_TMP/head" || cfs_fail "Content-Length"
grep -qx 'Accept-Ranges: bytes' "$CFS_TMP/head" || cfs_fail "Accept-Ranges"
[ "$(curl -s -X HEAD -o "$CFS_TMP/hb" -w '%{size_download}' -m 5 "$base/objects/$p" || true)" = 0 ] ||
	cfs_fail "HEAD sent a body"

# --- ranges ---
code() { rm -f "$CFS_TMP/body"; curl -s -o "$CFS_TMP/body" -w '%{http_code}' "$@"; }
p=$(path_of "$src/f4097")
f="$src/f4097"
check_range() { # RANGE STATUS FIRST LEN
	c=$(code -H "Range: $1" "$base/objects/$p")
	cfs_assert_eq "$c" "$2" "status for Range: $1"
	if [ "$2" = 206 ]; then
		tail -c +$(($3 + 1)) "$f" | head -c "$4" | cmp -s - "$CFS_TMP/body" || cfs_fail "body for Range: $1"
	fi
}
check_range "bytes=0-0" 206 0 1
check_range "bytes=0-99" 206 0 100
check_range "bytes=4000-" 206 4000 97
check_range "bytes=4096-4096" 206 4096 1
check_range "bytes=4000-999999" 206 4000 97
check_range "bytes=-10" 206 4087 10
check_range "bytes=-99999" 206 0 4097
check_range "bytes=4097-" 416
check_range "bytes=99999-100000" 416
check_range "bytes=-0" 416
check_range "bytes=5-1" 200
check_range "bytes=0-1,5-6" 200
check_range "items=0-1" 200
check_range "bytes=abc" 200
curl -s -D - -o /dev/null -H 'Range: bytes=10-19' "$base/objects/$p" | tr -d '\r' |
	grep -qx 'Content-Range: bytes 10-19/4097' || cfs_fail "Content-Range header"
curl -s -D - -o /dev/null -H 'Range: bytes=5000-' "$base/objects/$p" | tr -d '\r' |
	grep -qx 'Content-Range: bytes \*/4097' || cfs_fail "416 Content-Range header"
c=$(code -H 'Range: bytes=0-0' "$base/objects/3d/${empty#3d}")
cfs_assert_eq "$c" 416 "range of the empty object"
# A range of the large object served from the middle.
p=$(path_of "$src/big")
c=$(code -H 'Range: bytes=52428800-52494335' "$base/objects/$p")
cfs_assert_eq "$c" 206 "range of the big object"
tail -c +52428801 "$src/big" | head -c 65536 | cmp -s - "$CFS_TMP/body" || cfs_fail "big range bytes"
# If-Range with another validator: the whole object.
p=$(path_of "$src/f4097")
c=$(code -H 'Range: bytes=0-0' -H 'If-Range: "nope"' "$base/objects/$p")
cfs_assert_eq "$c" 200 "If-Range mismatch"

# --- conditional requests ---
hex=${p/\//}
for inm in "\"$hex\"" "W/\"$hex\"" "\"x\", \"$hex\"" '*'; do
	c=$(code -H "If-None-Match: $inm" "$base/objects/$p")
	cfs_assert_eq "$c" 304 "If-None-Match: $inm"
	[ ! -s "$CFS_TMP/body" ] || cfs_fail "304 with a body"
done
c=$(code -H 'If-None-Match: "0000"' "$base/objects/$p")
cfs_assert_eq "$c" 200 "If-None-Match of another tag"

# --- zstd ---
p=$(path_of "$src/text")
curl -sSf -D "$CFS_TMP/zh" -H 'Accept-Encoding: zstd' -o "$CFS_TMP/z.zst" "$base/objects/$p"
tr -d '\r' <"$CFS_TMP/zh" | grep -qx 'Content-Encoding: zstd' || cfs_fail "no zstd for compressible text"
zsize=$(stat -c %s "$CFS_TMP/z.zst")
[ "$zsize" -lt 100000 ] || cfs_fail "zstd body not smaller ($zsize)"
zstd -q -d -c "$CFS_TMP/z.zst" | cmp -s - "$src/text" || cfs_fail "zstd -d bytes differ"
curl -sSf --compressed -o "$CFS_TMP/z.dec" "$base/objects/$p"
cmp -s "$CFS_TMP/z.dec" "$src/text" || cfs_fail "curl --compressed bytes differ"
# Second time from the side file, same bytes.
curl -sSf -H 'Accept-Encoding: gzip, zstd;q=0.5' -o "$CFS_TMP/z2.zst" "$base/objects/$p"
cmp -s "$CFS_TMP/z.zst" "$CFS_TMP/z2.zst" || cfs_fail "side file differs from first encoding"
# Each representation's tag validates that representation only.
zhex=${p/\//}
cfs_assert_eq "$(code -H "If-None-Match: \"$zhex-zstd\"" "$base/objects/$p")" 200 \
	"the zstd tag on a plain request"
cfs_assert_eq "$(code -H "If-None-Match: \"$zhex-zstd\"" -H 'Accept-Encoding: zstd' \
	"$base/objects/$p")" 304 "the zstd tag on a zstd request"
cfs_assert_eq "$(code -H "If-None-Match: \"$zhex\"" -H 'Accept-Encoding: zstd' \
	"$base/objects/$p")" 200 "the plain tag on a zstd request"
# Above 1 MiB the encoding is made in the background: identity first, zstd soon after.
p=$(path_of "$src/bigtext")
got=""
for _ in $(seq 1 50); do
	curl -sSf -D "$CFS_TMP/zh" -H 'Accept-Encoding: zstd' -o "$CFS_TMP/zb" "$base/objects/$p"
	if tr -d '\r' <"$CFS_TMP/zh" | grep -qx 'Content-Encoding: zstd'; then got=1; break; fi
	cmp -s "$CFS_TMP/zb" "$src/bigtext" || cfs_fail "identity bytes of bigtext"
	sleep 0.1
done
[ -n "$got" ] || cfs_fail "no zstd for a large compressible object"
zstd -q -d -c "$CFS_TMP/zb" | cmp -s - "$src/bigtext" || cfs_fail "large zstd bytes differ"
p=$(path_of "$src/text")
# Side files are kept outside the object namespace.
[ -d "$store/.cfs-zstd" ] || cfs_fail "no side-file directory"
# Not offered, refused (q=0), a range, or incompressible: identity.
for h in 'Accept-Encoding: gzip' 'Accept-Encoding: zstd;q=0'; do
	curl -sSf -D "$CFS_TMP/zh" -H "$h" -o "$CFS_TMP/zi" "$base/objects/$p"
	! tr -d '\r' <"$CFS_TMP/zh" | grep -qi '^Content-Encoding' || cfs_fail "encoded despite '$h'"
	cmp -s "$CFS_TMP/zi" "$src/text" || cfs_fail "identity bytes differ ($h)"
done
curl -sSf -D "$CFS_TMP/zh" -H 'Accept-Encoding: zstd' -H 'Range: bytes=0-9' -o "$CFS_TMP/zi" "$base/objects/$p"
! tr -d '\r' <"$CFS_TMP/zh" | grep -qi '^Content-Encoding' || cfs_fail "encoded range"
p=$(path_of "$src/f65536")
curl -sSf -D "$CFS_TMP/zh" -H 'Accept-Encoding: zstd' -o "$CFS_TMP/zi" "$base/objects/$p"
! tr -d '\r' <"$CFS_TMP/zh" | grep -qi '^Content-Encoding' || cfs_fail "random data encoded"
cmp -s "$CFS_TMP/zi" "$src/f65536" || cfs_fail "incompressible bytes differ"
# Every size decodes to exactly the object.
for s in $sizes; do
	curl -sSf --compressed -o "$CFS_TMP/zd" "$base/objects/$(path_of "$src/f$s")"
	cmp -s "$CFS_TMP/zd" "$src/f$s" || cfs_fail "decoded bytes differ ($s)"
done

# A damaged object is served as it is (clients verify), but no encoding is kept of it: once it
# is repaired, the zstd answer decodes to the repaired bytes.
p=$(path_of "$src/dmgtext")
cp "$store/$p" "$CFS_TMP/dmg.good"
printf 'X' | dd of="$store/$p" bs=1 seek=1000 conv=notrunc status=none
curl -sSf -D "$CFS_TMP/zh" -H 'Accept-Encoding: zstd' -o "$CFS_TMP/zd" "$base/objects/$p"
! tr -d '\r' <"$CFS_TMP/zh" | grep -qi '^Content-Encoding' || cfs_fail "a damaged object was encoded"
[ ! -e "$store/.cfs-zstd/$p.zst" ] || cfs_fail "a side file was kept of a damaged object"
grep -q "does not match its name" "$CFS_TMP/serve.err" || cfs_fail "no warning for a damaged object"
cp "$CFS_TMP/dmg.good" "$store/$p"
curl -sSf -D "$CFS_TMP/zh" -H 'Accept-Encoding: zstd' -o "$CFS_TMP/zd" "$base/objects/$p"
tr -d '\r' <"$CFS_TMP/zh" | grep -qx 'Content-Encoding: zstd' || cfs_fail "no zstd after the repair"
zstd -q -d -c "$CFS_TMP/zd" | cmp -s - "$src/dmgtext" || cfs_fail "zstd bytes after the repair"
# cfs-store verify --delete-bad removes an object's side file with the object.
p=$(path_of "$src/gonetext")
curl -sSf -H 'Accept-Encoding: zstd' -o /dev/null "$base/objects/$p"
# The background thread flushes and names it.
for _ in $(seq 1 50); do [ -s "$store/.cfs-zstd/$p.zst" ] && break; sleep 0.1; done
[ -s "$store/.cfs-zstd/$p.zst" ] || cfs_fail "no side file for gonetext"
[ -z "$(ls -A "$store/.cfs-zstd/${p%%/*}" | grep '^\.tmp-')" ] || cfs_fail "an unnamed side file is left"
printf 'X' | dd of="$store/$p" bs=1 seek=10 conv=notrunc status=none
"$CFS_STORE_BIN" --no-progress verify --delete-bad "$store" >"$CFS_TMP/verify.out" || true
grep -qx "deleted: $p" "$CFS_TMP/verify.out" || cfs_fail "verify did not delete the damaged object"
[ ! -e "$store/.cfs-zstd/$p.zst" ] || cfs_fail "a side file outlived its deleted object"

# --- methods, 404, health, metrics ---
p=$(path_of "$src/f100")
for m in POST DELETE OPTIONS PATCH PUT; do
	c=$(code -X "$m" "$base/objects/$p")
	cfs_assert_eq "$c" 405 "$m"
done
c=$(code "$base/objects/00/$(printf '0%.0s' $(seq 1 62))")
cfs_assert_eq "$c" 404 "absent object"
c=$(code "$base/nothing-here")
cfs_assert_eq "$c" 404 "unknown path"
c=$(code "$base/healthz")
cfs_assert_eq "$c" 200 "healthz"
c=$(code -X POST "$base/healthz")
cfs_assert_eq "$c" 405 "POST healthz"
curl -sSf "$base/metrics" >"$CFS_TMP/metrics"
grep -q '^cfs_serve_requests_total{method="GET",code="200"} [1-9]' "$CFS_TMP/metrics" || cfs_fail "metrics GET 200"
grep -q '^cfs_serve_requests_total{method="GET",code="416"} [1-9]' "$CFS_TMP/metrics" || cfs_fail "metrics 416"
grep -q '^cfs_serve_requests_total{method="POST",code="405"}\|^cfs_serve_requests_total{method="other",code="405"} [1-9]' "$CFS_TMP/metrics" ||
	cfs_fail "metrics 405"
grep -q '^cfs_serve_sent_bytes_total [1-9][0-9]\{8,\}' "$CFS_TMP/metrics" || cfs_fail "metrics bytes"
grep -q '^cfs_serve_open_connections [0-9]' "$CFS_TMP/metrics" || cfs_fail "metrics connections"
grep -q '^cfs_serve_errors_total 0$' "$CFS_TMP/metrics" || cfs_fail "metrics errors"
grep -q '^# TYPE cfs_serve_requests_total counter' "$CFS_TMP/metrics" || cfs_fail "metrics TYPE"
grep -q "\"GET /objects/$p\" 200 100\$" "$CFS_TMP/access.log" || cfs_fail "access log line"

# --- the open-object cache follows the store: removed objects go 404, restored ones 200 ---
for f in f100 f65537; do
	p=$(path_of "$src/$f")
	cp "$store/$p" "$CFS_TMP/saved"
	for _ in 1 2 3; do curl -sSf -o /dev/null "$base/objects/$p"; done
	rm "$store/$p"
	# Each loop's cache rechecks the store at most once a second.
	sleep 1.1
	for _ in 1 2 3; do cfs_assert_eq "$(code "$base/objects/$p")" 404 "removed $f"; done
	cp "$CFS_TMP/saved" "$store/$p"
	cfs_assert_eq "$(code "$base/objects/$p")" 200 "restored $f"
	cmp -s "$CFS_TMP/body" "$src/$f" || cfs_fail "restored $f bytes"
	# Replaced by a symlink to the same bytes outside the store: refused.
	rm "$store/$p"
	ln -s "$CFS_TMP/saved" "$store/$p"
	sleep 1.1
	for _ in 1 2 3; do cfs_assert_eq "$(code "$base/objects/$p")" 404 "symlink swapped in for $f"; done
	rm "$store/$p"
	cp "$CFS_TMP/saved" "$store/$p"
done

cfs_stop_pid $pid
grep -q 'stopped' "$CFS_TMP/serve.err" || cfs_fail "no clean stop"
