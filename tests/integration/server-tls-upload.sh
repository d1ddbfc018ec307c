#!/bin/bash
# SPDX-License-Identifier: MIT
# cfs-serve with HTTPS (a self-signed certificate made here), bearer-token authentication, and
# PUT uploads: verified against the name while streaming into the store, 422 on mismatch.
. "$(dirname "$0")/lib.sh"
cfs_require_cmd curl openssl zstd

store="$CFS_TMP/store"
src="$CFS_TMP/src"
mkdir -p "$src"
cfs_make_file "$src/small" 5000 1
cfs_make_file "$src/large" $((20 << 20)) 2
yes 'tls text line, compressible' | head -c 200000 >"$src/text"
"$CFS_STORE_BIN" -q --no-progress import "$src" "$store" >/dev/null
path_of() {
	d=$("$CFS_STORE_BIN" digest "$1" | awk '{print $1}')
	d=${d#sha256:}
	echo "${d:0:2}/${d:2}"
}

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
	-subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
	-keyout "$CFS_TMP/key.pem" -out "$CFS_TMP/cert.pem" 2>/dev/null || cfs_skip "openssl req failed"
printf 's3cret-token\n' >"$CFS_TMP/token"

# Misconfiguration is refused up front.
set +e
"$CFS_SERVE_BIN" --store "$store" --tls-cert "$CFS_TMP/cert.pem" 2>/dev/null
rc1=$?
"$CFS_SERVE_BIN" --store "$store" --listen 127.0.0.1:1 --tls-cert "$CFS_TMP/key.pem" \
	--tls-key "$CFS_TMP/key.pem" 2>/dev/null
rc2=$?
set -e
cfs_assert_eq "$rc1" 2 "--tls-cert without --tls-key"
cfs_assert_eq "$rc2" 1 "a key given as the certificate"

port=$(cfs_free_port)
"$CFS_SERVE_BIN" --store "$store" --listen "127.0.0.1:$port" --threads 2 \
	--tls-cert "$CFS_TMP/cert.pem" --tls-key "$CFS_TMP/key.pem" \
	--token-file "$CFS_TMP/token" --allow-upload --max-upload 1M 2>"$CFS_TMP/serve.err" &
pid=$!
cfs_track_pid $pid
cfs_wait_port "$port"
base="https://127.0.0.1:$port"
auth=(-H 'Authorization: Bearer s3cret-token')
tcurl() { curl -s --path-as-is --cacert "$CFS_TMP/cert.pem" "$@"; }
code() { rm -f "$CFS_TMP/body"; tcurl -o "$CFS_TMP/body" -w '%{http_code}' "$@"; }

# --- TLS: bytes, HEAD, range, zstd ---
for f in small large text; do
	p=$(path_of "$src/$f")
	cfs_bounded 60 curl -s --cacert "$CFS_TMP/cert.pem" -f "${auth[@]}" -o "$CFS_TMP/got" "$base/objects/$p" || cfs_fail "HTTPS GET $f"
	cmp -s "$CFS_TMP/got" "$src/$f" || cfs_fail "HTTPS bytes differ for $f"
done
p=$(path_of "$src/large")
tcurl -fI "${auth[@]}" "$base/objects/$p" | tr -d '\r' | grep -qx "Content-Length: $((20 << 20))" ||
	cfs_fail "HTTPS HEAD"
c=$(code "${auth[@]}" -H 'Range: bytes=1000000-1000999' "$base/objects/$p")
cfs_assert_eq "$c" 206 "HTTPS range"
tail -c +1000001 "$src/large" | head -c 1000 | cmp -s - "$CFS_TMP/body" || cfs_fail "HTTPS range bytes"
p=$(path_of "$src/text")
tcurl -f "${auth[@]}" -H 'Accept-Encoding: zstd' -D "$CFS_TMP/h" -o "$CFS_TMP/z" "$base/objects/$p"
tr -d '\r' <"$CFS_TMP/h" | grep -qx 'Content-Encoding: zstd' || cfs_fail "HTTPS zstd"
zstd -q -d -c "$CFS_TMP/z" | cmp -s - "$src/text" || cfs_fail "HTTPS zstd bytes"
# Plain HTTP on the TLS port gets nothing useful.
c=$(curl -s -o /dev/null -w '%{http_code}' -m 5 "http://127.0.0.1:$port/healthz") || true
[ "$c" != 200 ] || cfs_fail "plain HTTP answered on the TLS port"
# An untrusted certificate is refused by a verifying client (it really is TLS).
! curl -sf -m 5 "$base/healthz" >/dev/null 2>&1 || cfs_fail "curl trusted a self-signed certificate"

# --- token ---
p=$(path_of "$src/small")
cfs_assert_eq "$(code "$base/objects/$p")" 401 "no token"
grep -q 'Unauthorized' "$CFS_TMP/body" || cfs_fail "401 body"
tcurl -D - -o /dev/null "$base/objects/$p" | tr -d '\r' | grep -q '^WWW-Authenticate: Bearer' ||
	cfs_fail "WWW-Authenticate"
for h in 'Authorization: Bearer wrong' 'Authorization: Bearer s3cret-token2' \
	'Authorization: Bearer s3cret-toke' 'Authorization: Basic czNjcmV0LXRva2Vu' \
	'Authorization: s3cret-token' 'Authorization: Bearer'; do
	cfs_assert_eq "$(code -H "$h" "$base/objects/$p")" 401 "$h"
done
cfs_assert_eq "$(code "${auth[@]}" "$base/objects/$p")" 200 "right token"
cfs_assert_eq "$(code -H 'authorization: bearer s3cret-token' "$base/objects/$p")" 200 "case of the scheme"
cfs_assert_eq "$(code "$base/metrics")" 401 "metrics need the token"
cfs_assert_eq "$(code "$base/healthz")" 200 "healthz is open"
cfs_assert_eq "$(code "$base/objects/../x")" 401 "hostile path without token"

# --- upload ---
up() { # FILE NAME -> status
	rm -f "$CFS_TMP/body"
	tcurl -o "$CFS_TMP/body" -w '%{http_code}' "${auth[@]}" -X PUT --data-binary "@$1" "$base/objects/$2"
}
cfs_make_file "$CFS_TMP/new" 300000 42
np=$(path_of "$CFS_TMP/new")
cfs_assert_eq "$(up "$CFS_TMP/new" "$np")" 201 "upload"
cmp -s "$store/$np" "$CFS_TMP/new" || cfs_fail "uploaded object differs"
[ "$(stat -c %a "$store/$np")" = 644 ] || cfs_fail "uploaded object mode"
cfs_assert_eq "$(code "${auth[@]}" "$base/objects/$np")" 200 "GET the upload"
cmp -s "$CFS_TMP/body" "$CFS_TMP/new" || cfs_fail "uploaded bytes served"
cfs_assert_eq "$(up "$CFS_TMP/new" "$np")" 204 "upload of a present object"
# The empty object.
: >"$CFS_TMP/empty"
cfs_assert_eq "$(up "$CFS_TMP/empty" "$(path_of "$CFS_TMP/empty")")" 201 "upload of the empty object"
# Mismatch: 422, nothing saved, no temporary file left behind.
cfs_make_file "$CFS_TMP/other" 300000 43
op=$(path_of "$CFS_TMP/other")
cfs_make_file "$CFS_TMP/liar" 300000 44
cfs_assert_eq "$(up "$CFS_TMP/liar" "$op")" 422 "upload with a wrong body"
[ ! -e "$store/$op" ] || cfs_fail "mismatching upload was saved"
[ -z "$(ls -A "$store/.cfs-tmp" 2>/dev/null)" ] || cfs_fail "temporary file left: $(ls "$store/.cfs-tmp")"
cfs_assert_eq "$(code "${auth[@]}" "$base/objects/$op")" 404 "mismatching upload absent"
# Truncated body under the right name.
head -c 299999 "$CFS_TMP/other" >"$CFS_TMP/short"
cfs_assert_eq "$(up "$CFS_TMP/short" "$op")" 422 "truncated upload"
# Without the token, malformed names, oversized bodies.
c=$(tcurl -o /dev/null -w '%{http_code}' -X PUT --data-binary "@$CFS_TMP/other" "$base/objects/$op")
cfs_assert_eq "$c" 401 "upload without token"
cfs_assert_eq "$(up "$CFS_TMP/other" "${op^^}")" 400 "upload to an upper-case name"
cfs_assert_eq "$(up "$CFS_TMP/other" "../$op")" 400 "upload to an escaping name"
cfs_make_file "$CFS_TMP/huge" $((2 << 20)) 45
c=$(up "$CFS_TMP/huge" "$(path_of "$CFS_TMP/huge")") || true
[ "$c" = 413 ] || [ "$c" = 000 ] || cfs_fail "oversized upload: $c"
[ ! -e "$store/$(path_of "$CFS_TMP/huge")" ] || cfs_fail "oversized upload saved"
cfs_assert_eq "$(up "$CFS_TMP/other" "$op")" 201 "the right body after all"
cfs_stop_pid $pid

# Without --allow-upload, PUT is 405 even with the token.
port=$(cfs_free_port)
"$CFS_SERVE_BIN" --store "$store" --listen "127.0.0.1:$port" --token-file "$CFS_TMP/token" \
	2>>"$CFS_TMP/serve.err" &
pid=$!
cfs_track_pid $pid
cfs_wait_port "$port"
cfs_make_file "$CFS_TMP/n2" 1000 46
c=$(curl -s -o /dev/null -w '%{http_code}' "${auth[@]}" -X PUT --data-binary "@$CFS_TMP/n2" \
	"http://127.0.0.1:$port/objects/$(path_of "$CFS_TMP/n2")")
cfs_assert_eq "$c" 405 "PUT without --allow-upload"
cfs_stop_pid $pid
