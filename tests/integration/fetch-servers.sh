#!/bin/bash
# SPDX-License-Identifier: MIT
# cfs-cache fetch of a real tree from nginx serving a store (HTTP/1.1, and HTTPS with HTTP/2
# and a private CA), and from cfs-serve with and without zstd when cfs-serve is built.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/fetch-lib.sh"
cfs_require_root
cfs_require_cmd nginx openssl
[ -x "$CFS_CACHE_BIN" ] || cfs_skip "cfs-cache not built"

tree=/usr/share/doc
[ -d "$tree" ] || cfs_skip "no $tree"
store="$CFS_TMP/served"
"$CFS_STORE_BIN" --no-progress -q import "$tree" "$store" >/dev/null
# A slice of the tree keeps the test short on slow disks.
(cd "$store" && find . -path ./.cfs-tmp -prune -o -type f -print | sed 's|^\./||') |
	head -n 1500 >"$CFS_TMP/list"
n=$(wc -l <"$CFS_TMP/list")
[ "$n" -ge 200 ] || cfs_skip "tree too small ($n objects)"

# fetch_check NAME ARGS...: fetches the list into a fresh store and verifies it.
fetch_check() {
	name=$1
	shift
	dst="$CFS_TMP/dst.$name"
	cfs_bounded 120 "$CFS_CACHE_BIN" fetch --no-progress --store "$dst" --from "$CFS_TMP/list" \
		--stats "$@" >"$CFS_TMP/out.$name" 2>"$CFS_TMP/err.$name" ||
		{ cat "$CFS_TMP/out.$name" "$CFS_TMP/err.$name" >&2; cfs_fail "$name: fetch failed"; }
	head -1 "$CFS_TMP/out.$name" | sed "s/^/# $name: /" >&2
	grep -q "^$n objects: $n fetched" "$CFS_TMP/out.$name" || cfs_fail "$name: $(head -1 "$CFS_TMP/out.$name")"
	"$CFS_STORE_BIN" --no-progress verify "$dst" >"$CFS_TMP/verify.$name" ||
		cfs_fail "$name: verify: $(tail -1 "$CFS_TMP/verify.$name")"
	grep -q "^$n objects ok, 0 corrupt" "$CFS_TMP/verify.$name" || cfs_fail "$name: $(cat "$CFS_TMP/verify.$name")"
	fetch_assert_no_temp "$dst"
	fetch_assert_no_sanitizer "$CFS_TMP/err.$name"
}

# A private CA and a server certificate for 127.0.0.1.
ngx="$CFS_TMP/nginx"
mkdir -p "$ngx/tmp"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=cfs test CA" \
	-keyout "$ngx/ca.key" -out "$ngx/ca.pem" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout "$ngx/srv.key" \
	-out "$ngx/srv.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\n' >"$ngx/ext"
openssl x509 -req -in "$ngx/srv.csr" -CA "$ngx/ca.pem" -CAkey "$ngx/ca.key" -CAcreateserial \
	-days 2 -extfile "$ngx/ext" -out "$ngx/srv.pem" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=cfs client" -keyout "$ngx/client.key" \
	-out "$ngx/client.csr" 2>/dev/null
openssl x509 -req -in "$ngx/client.csr" -CA "$ngx/ca.pem" -CAkey "$ngx/ca.key" -CAcreateserial \
	-days 2 -out "$ngx/client.pem" 2>/dev/null
# Ports are picked, not reserved: start again on fresh ones if nginx cannot bind.
for attempt in 1 2 3; do
http_port=$(cfs_free_port)
https_port=$(cfs_free_port)
mtls_port=$(cfs_free_port)
[ "$http_port" != "$https_port" ] && [ "$http_port" != "$mtls_port" ] &&
	[ "$https_port" != "$mtls_port" ] || continue
cat >"$ngx/nginx.conf" <<CONF
user root;
worker_processes 2;
daemon off;
pid $ngx/nginx.pid;
error_log $ngx/error.log;
events { worker_connections 1024; }
http {
	access_log $ngx/access.log proto;
	log_format proto '\$server_protocol \$status \$request_uri';
	client_body_temp_path $ngx/tmp/body;
	proxy_temp_path $ngx/tmp/proxy;
	fastcgi_temp_path $ngx/tmp/fastcgi;
	uwsgi_temp_path $ngx/tmp/uwsgi;
	scgi_temp_path $ngx/tmp/scgi;
	sendfile on;
	keepalive_requests 100000;
	server {
		listen 127.0.0.1:$http_port;
		listen 127.0.0.1:$https_port ssl http2;
		ssl_certificate $ngx/srv.pem;
		ssl_certificate_key $ngx/srv.key;
		location /objects/ { alias $store/; }
	}
	server {
		listen 127.0.0.1:$mtls_port ssl;
		ssl_certificate $ngx/srv.pem;
		ssl_certificate_key $ngx/srv.key;
		ssl_client_certificate $ngx/ca.pem;
		ssl_verify_client on;
		location /objects/ { alias $store/; }
	}
}
CONF
# log_format must precede its use.
sed -i '/access_log/{h;d};/log_format/{G}' "$ngx/nginx.conf"
nginx -e "$ngx/error.log" -c "$ngx/nginx.conf" &
ngx_pid=$!
cfs_track_pid "$ngx_pid"
up=0
for _ in $(seq 1 50); do
	kill -0 "$ngx_pid" 2>/dev/null || break
	if (exec 3<>"/dev/tcp/127.0.0.1/$http_port") 2>/dev/null &&
		(exec 3<>"/dev/tcp/127.0.0.1/$https_port") 2>/dev/null &&
		(exec 3<>"/dev/tcp/127.0.0.1/$mtls_port") 2>/dev/null; then
		up=1
		break
	fi
	sleep 0.1
done
[ "$up" = 1 ] && break
cfs_stop_pid "$ngx_pid"
done
[ "$up" = 1 ] || cfs_fail "nginx did not start: $(tail -2 "$ngx/error.log")"

fetch_check nginx-http --server "http://127.0.0.1:$http_port/objects"
fetch_check nginx-https --server "https://127.0.0.1:$https_port/objects" --ca-file "$ngx/ca.pem"
grep -q '^HTTP/2.0 200 ' "$ngx/access.log" || cfs_fail "no HTTP/2 request reached nginx over TLS"

# Without the CA the certificate is refused: exit 1, quickly, nothing saved.
first=$(head -1 "$CFS_TMP/list")
set +e
cfs_bounded 30 "$CFS_CACHE_BIN" fetch --no-progress --store "$CFS_TMP/dst.noca" \
	--server "https://127.0.0.1:$https_port/objects" "$first" >/dev/null 2>"$CFS_TMP/err.noca"
rc=$?
set -e
cfs_assert_eq "$rc" 1 "exit code with an untrusted certificate"
grep -qi "certificate" "$CFS_TMP/err.noca" || cfs_fail "no certificate error: $(cat "$CFS_TMP/err.noca")"
fetch_assert_no_sanitizer "$CFS_TMP/err.noca"
[ ! -e "$CFS_TMP/dst.noca/$first" ] || cfs_fail "object saved over an untrusted connection"

# A server that wants a client certificate: --cert/--key pass, nothing else does.
head -20 "$CFS_TMP/list" >"$CFS_TMP/list20"
cfs_bounded 30 "$CFS_CACHE_BIN" fetch --no-progress --store "$CFS_TMP/dst.mtls" \
	--server "https://127.0.0.1:$mtls_port/objects" --ca-file "$ngx/ca.pem" \
	--cert "$ngx/client.pem" --key "$ngx/client.key" --from "$CFS_TMP/list20" >/dev/null \
	2>"$CFS_TMP/err.mtls" || cfs_fail "client certificate: $(cat "$CFS_TMP/err.mtls")"
set +e
cfs_bounded 30 "$CFS_CACHE_BIN" fetch --no-progress --store "$CFS_TMP/dst.nocert" \
	--server "https://127.0.0.1:$mtls_port/objects" --ca-file "$ngx/ca.pem" "$first" \
	>/dev/null 2>"$CFS_TMP/err.nocert"
rc=$?
set -e
cfs_assert_eq "$rc" 1 "exit code without a client certificate"
fetch_assert_no_sanitizer "$CFS_TMP/err.mtls" "$CFS_TMP/err.nocert"

if [ -x "$CFS_SERVE_BIN" ]; then
	port=$(cfs_free_port)
	"$CFS_SERVE_BIN" --store "$store" --listen "127.0.0.1:$port" 2>"$CFS_TMP/serve.err" &
	cfs_track_pid $!
	cfs_wait_port "$port"
	fetch_check serve-zstd --server "http://127.0.0.1:$port/objects"
	fetch_check serve-identity --no-zstd --server "http://127.0.0.1:$port/objects"
else
	cfs_log "cfs-serve not built: skipping that part"
fi
