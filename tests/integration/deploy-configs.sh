#!/bin/bash
# SPDX-License-Identifier: MIT
# Every deployment configuration in contrib/, for real: the nginx object server (nginx -t, bytes,
# headers, hostile names), the nginx caching proxy in front of cfs-serve (one origin request per
# object under concurrent nodes, HIT on re-reads, 404 not kept), the systemd units (verified
# with systemd-analyze when present; their command lines run in the foreground), and the fstab
# and .mount forms through mount.fuse3.
. "$(dirname "$0")/lib.sh"
cfs_require_fuse
cfs_require_cmd nginx curl mkfs.erofs setfattr mount.fuse3
S=$CFS_STORE_BIN
C=$CFS_SRCDIR/contrib

src=$CFS_TMP/src store=$CFS_TMP/store image=$CFS_TMP/image.cfs
cfs_make_tree "$src"
cfs_make_file "$src/usr/lib/big.bin" $((16 << 20)) 77
"$S" -q --no-progress mkimage --store "$store" "$src" "$image" >/dev/null
"$S" objects "$image" >"$CFS_TMP/objects"
n=$(wc -l <"$CFS_TMP/objects")
big=$(cfs_object_of "$src/usr/lib/big.bin")
tool=$(cfs_object_of "$src/usr/bin/tool")
hex() { echo "${1%%/*}${1#*/}"; }

# nginx_site NAME CONF SED_SCRIPT: writes $CFS_TMP/NAME/nginx.conf, an nginx main config that
# includes CONF with its placeholders replaced, checks it with nginx -t and starts nginx.
nginx_site() {
	local name=$1 conf=$2 script=$3 dir=$CFS_TMP/$1
	mkdir -p "$dir"
	sed -e "$script" "$conf" >"$dir/site.conf"
	if grep -n '@[A-Z_]*@' "$dir/site.conf"; then cfs_fail "$conf: placeholder left"; fi
	cat >"$dir/nginx.conf" <<NGINX
worker_processes 2;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 1024; }
http {
	log_format cfs '\$request_method \$uri \$status \$body_bytes_sent';
	access_log $dir/access.log cfs;
	client_body_temp_path $dir/body;
	proxy_temp_path $dir/proxy;
	fastcgi_temp_path $dir/fastcgi;
	uwsgi_temp_path $dir/uwsgi;
	scgi_temp_path $dir/scgi;
	include $dir/site.conf;
}
NGINX
	nginx -t -q -e "$dir/error.log" -c "$dir/nginx.conf" || cfs_fail "nginx -t rejects $conf"
	nginx -e "$dir/error.log" -c "$dir/nginx.conf" -g 'daemon off;' &
	cfs_track_pid $!
}

code() { curl -s --path-as-is -o "$CFS_TMP/body" -w '%{http_code}' "$@"; }

# ---- contrib/nginx/cfs-objects.conf: nginx serving the store ----
sport=$(cfs_free_port)
nginx_site static "$C/nginx/cfs-objects.conf" "s|@LISTEN@|127.0.0.1:$sport|; s|@STORE@|$store|"
cfs_wait_port "$sport"
surl="http://127.0.0.1:$sport/objects"
while read -r o; do
	curl -sf -o "$CFS_TMP/got" "$surl/$o" || cfs_fail "GET $o from nginx"
	cmp -s "$CFS_TMP/got" "$store/$o" || cfs_fail "nginx served other bytes for $o"
done <"$CFS_TMP/objects"
curl -sfI "$surl/$tool" | tr -d '\r' >"$CFS_TMP/h"
for h in 'Cache-Control: public, max-age=31536000, immutable' "ETag: \"$(hex "$tool")\"" \
	'Content-Length: 4096' 'Content-Type: application/octet-stream' 'Accept-Ranges: bytes'; do
	grep -qix "$h" "$CFS_TMP/h" || cfs_fail "nginx header '$h' missing: $(cat "$CFS_TMP/h")"
done
cfs_assert_eq "$(code -H 'Range: bytes=100-199' "$surl/$big")" 206 "nginx range"
tail -c +101 "$store/$big" | head -c 100 | cmp -s - "$CFS_TMP/body" || cfs_fail "nginx range bytes"
cfs_assert_eq "$(code "http://127.0.0.1:$sport/healthz")" 200 "nginx healthz"
cfs_assert_eq "$(code -X PUT --data-binary @"$src/etc/motd" "$surl/$tool")" 405 "PUT to nginx"
cfs_assert_eq "$(code -X POST -d x "$surl/$tool")" 405 "POST to nginx"
absent=0000000000000000000000000000000000000000000000000000000000000000
cfs_assert_eq "$(code "$surl/${absent:0:2}/${absent:2}")" 404 "absent object"
# Hostile and non-object names: never a file, never a listing.
mkdir -p "$store/ab" "$store/cd/${absent:2}"
ln -sf /etc/passwd "$store/ab/${absent:2}"
ttt=${tool#*/}
for p in /objects/ /objects/${tool%%/*}/ /objects/${tool%%/*} "/objects/${tool^^}" \
	"/objects/$tool.tmp" "/objects/$tool/" "/objects/${tool%%/*}/${ttt:1}" \
	"/objects/${tool%%/*}//$ttt" "/objects/%2e%2e/%2e%2e/etc/passwd" /objects/../../etc/passwd \
	"/objects/../$tool" /objects/.cfs-tmp/ /.cfs-tmp/ "/$tool" "/objects/%61b/${absent:2}" \
	"/objects/ab/${absent:2}" "/objects/cd/${absent:2}" "/objects/${tool%%/*}%2f$ttt" \
	/objects/..%2f..%2fetc%2fpasswd /etc/passwd /; do
	c=$(code "http://127.0.0.1:$sport$p")
	case $c in
	400 | 403 | 404 | 301) ;;
	*) cfs_fail "nginx answered $c for $p" ;;
	esac
	if grep -q 'root:' "$CFS_TMP/body" || grep -qi '<title>Index of' "$CFS_TMP/body"; then
		cfs_fail "nginx leaked a file or a listing for $p"
	fi
done
rm -rf "$store/ab/${absent:2}" "$store/cd/${absent:2}"
cfs_log "cfs-objects.conf: $n objects byte-identical, headers, hostile names refused"

# ---- contrib/nginx/cfs-proxy-cache.conf in front of a cfs-serve origin ----
oport=$(cfs_free_port)
"$CFS_SERVE_BIN" --store "$store" --listen "127.0.0.1:$oport" --threads 2 \
	--access-log "$CFS_TMP/origin.log" 2>"$CFS_TMP/origin.err" &
cfs_track_pid $!
cfs_wait_port "$oport"
pport=$(cfs_free_port)
nginx_site proxy "$C/nginx/cfs-proxy-cache.conf" "s|@LISTEN@|127.0.0.1:$pport|; \
	s|@ORIGIN@|127.0.0.1:$oport|; s|@CACHE_DIR@|$CFS_TMP/proxy-cache|; s|@CACHE_SIZE@|1g|"
cfs_wait_port "$pport"
purl="http://127.0.0.1:$pport/objects"
origin_gets() { grep -c "\"GET /objects/$1\" 200 " "$CFS_TMP/origin.log" || true; }

curl -sf -D "$CFS_TMP/h1" -o "$CFS_TMP/got" "$purl/$tool" || cfs_fail "GET through the proxy"
cmp -s "$CFS_TMP/got" "$store/$tool" || cfs_fail "proxy bytes"
curl -sf -D "$CFS_TMP/h2" -o "$CFS_TMP/got" -H 'Accept-Encoding: zstd' "$purl/$tool"
cmp -s "$CFS_TMP/got" "$store/$tool" || cfs_fail "proxy bytes on a hit"
grep -qix 'X-Cache-Status: MISS' <(tr -d '\r' <"$CFS_TMP/h1") || cfs_fail "first request: $(cat "$CFS_TMP/h1")"
grep -qix 'X-Cache-Status: HIT' <(tr -d '\r' <"$CFS_TMP/h2") || cfs_fail "second request: $(cat "$CFS_TMP/h2")"
grep -qix "ETag: \"$(hex "$tool")\"" <(tr -d '\r' <"$CFS_TMP/h2") || cfs_fail "ETag through the proxy"
cfs_assert_eq "$(origin_gets "$tool")" 1 "origin requests for a cached object"
# Concurrent misses for one large object: one origin request.
pids=""
for i in $(seq 1 12); do
	cfs_bounded 60 curl -sf -o "$CFS_TMP/c.$i" "$purl/$big" &
	pids="$pids $!"
done
for p in $pids; do wait "$p" || cfs_fail "concurrent GET through the proxy"; done
for i in $(seq 1 12); do cmp -s "$CFS_TMP/c.$i" "$store/$big" || cfs_fail "concurrent copy $i"; done
cfs_assert_eq "$(origin_gets "$big")" 1 "origin requests for 12 concurrent misses"
# Absence is not kept: the object appears on the origin and the proxy serves it at once.
mkdir -p "$CFS_TMP/late"
cfs_make_file "$CFS_TMP/late/f" 30000 55
late=$(cfs_object_of "$CFS_TMP/late/f")
cfs_assert_eq "$(code "$purl/$late")" 404 "absent through the proxy"
"$S" -q --no-progress import "$CFS_TMP/late" "$store" >/dev/null
cfs_assert_eq "$(code "$purl/$late")" 200 "object added after a 404"
cfs_assert_eq "$(code "http://127.0.0.1:$pport/objects/../etc/passwd")" 404 "non-object through the proxy"

# The same proxy in front of an origin that wants a token: the proxy holds it.
printf 'origin-token\n' >"$CFS_TMP/origin-token"
o2port=$(cfs_free_port)
"$CFS_SERVE_BIN" --store "$store" --listen "127.0.0.1:$o2port" --threads 1 \
	--token-file "$CFS_TMP/origin-token" 2>>"$CFS_TMP/origin.err" &
cfs_track_pid $!
cfs_wait_port "$o2port"
p2port=$(cfs_free_port)
nginx_site proxy2 "$C/nginx/cfs-proxy-cache.conf" "s|@LISTEN@|127.0.0.1:$p2port|; \
	s|@ORIGIN@|127.0.0.1:$o2port|; s|@CACHE_DIR@|$CFS_TMP/proxy2-cache|; s|@CACHE_SIZE@|1g|; \
	s|#proxy_set_header Authorization \"Bearer <token>\";|proxy_set_header Authorization \"Bearer origin-token\";|"
grep -q '^[[:space:]]*proxy_set_header Authorization "Bearer origin-token";' "$CFS_TMP/proxy2/site.conf" ||
	cfs_fail "the Authorization line was not enabled"
cfs_wait_port "$p2port"
cfs_assert_eq "$(code "http://127.0.0.1:$o2port/objects/$tool")" 401 "token origin without a token"
cfs_assert_eq "$(code "http://127.0.0.1:$p2port/objects/$tool")" 200 "token origin through the proxy"
cmp -s "$CFS_TMP/body" "$store/$tool" || cfs_fail "bytes through the token proxy"

# Two nodes mount the image through the proxy and read it concurrently, twice.
for k in 1 2; do
	cfs_start_cache "$CFS_TMP/node$k" "$CFS_TMP/remote$k" --server "$purl"
	mkdir -p "$CFS_TMP/mnt$k"
	"$CFS_CACHE_BIN" mount-image "$image" "$CFS_TMP/mnt$k" --store "$CFS_TMP/node$k" \
		--remote "$CFS_TMP/remote$k"
	cfs_track_mount "$CFS_TMP/mnt$k"
done
cfs_bounded 120 diff -r --no-dereference "$src" "$CFS_TMP/mnt1" >"$CFS_TMP/d1" 2>&1 &
d1=$!
cfs_bounded 120 diff -r --no-dereference "$src" "$CFS_TMP/mnt2" >"$CFS_TMP/d2" 2>&1 &
d2=$!
wait "$d1" || cfs_fail "node 1 reads another tree: $(head "$CFS_TMP/d1")"
wait "$d2" || cfs_fail "node 2 reads another tree: $(head "$CFS_TMP/d2")"
diff -r --no-dereference "$src" "$CFS_TMP/mnt1" || cfs_fail "node 1 re-read"
while read -r o; do
	cfs_assert_eq "$(origin_gets "$o")" 1 "origin requests for $o"
done <"$CFS_TMP/objects"
hits=$(grep -c ' 200 ' "$CFS_TMP/proxy/access.log")
for k in 1 2; do
	cfs_umount "$CFS_TMP/mnt$k"
	cfs_umount "$CFS_TMP/remote$k"
done
cfs_log "cfs-proxy-cache.conf: $n objects, 2 nodes: 1 origin request each ($hits proxy answers)"

# ---- contrib/systemd: systemd-analyze verify, then the command lines for real ----
units=$CFS_TMP/units
mkdir -p "$units/cfs-serve.service.d"
# The .in templates as make fills them in, with the build tree's binaries (install.sh checks
# the installed units).
for f in "$C"/systemd/*.service.in "$C"/systemd/*.mount.in "$C"/systemd/*.d/*.conf.in; do
	u=${f#"$C"/systemd/}
	sed -e "s|@bindir@/|$CFS_BUILDDIR/|g; s|@docdir@|/usr/share/doc/cfscache|g" \
		-e "s|@MOUNT_TYPE@|fuse.cfs-cache|g; s|@MOUNT_SOURCE_PREFIX@||g" "$f" >"$units/${u%.in}"
	if grep -n '@[a-zA-Z_]*@' "$units/${u%.in}"; then cfs_fail "$u: placeholder left"; fi
done
dropin=$units/cfs-serve.service.d/tls-token.conf
if command -v systemd-analyze >/dev/null 2>&1; then
	# Drop-ins beside a unit are read too (a broken one fails the check).
	systemd-analyze verify --man=no "$units"/*.service "$units"/*.mount ||
		cfs_fail "systemd-analyze verify"
	cfs_log "systemd-analyze verify: $(cd "$units" && echo *.service *.mount */*.conf)"
else
	cfs_log "no systemd-analyze: units not verified (their commands still run below)"
fi
# unit_run UNIT KEY ENVFILE [DROPIN]: runs the KEY= command lines of DROPIN (else UNIT) with
# the Environment= of UNIT and DROPIN overridden by ENVFILE (as EnvironmentFile= does); a
# leading '-' ignores failure, an empty KEY= is a reset. ExecStart runs in the background
# (CFS_UNIT_PID).
unit_run() {
	local unit=$1 key=$2 envf=$3 dropin=${4:-} line env
	env=$(sed -n 's/^Environment=//p' "$unit" $dropin)
	while IFS= read -r line; do
		local ignore=false
		[ -n "$line" ] || continue
		case $line in -*) ignore=true line=${line#-} ;; esac
		if [ "$key" = ExecStart ]; then
			(
				set -a
				eval "$env"
				. "$envf"
				eval "exec $line"
			) 2>>"$CFS_TMP/unit.err" &
			CFS_UNIT_PID=$!
			cfs_track_pid "$CFS_UNIT_PID"
		elif ! (
			set -a
			eval "$env"
			. "$envf"
			eval "$line"
		) 2>>"$CFS_TMP/unit.err" && ! $ignore; then
			cfs_fail "$unit: $key=$line failed"
		fi
	done < <(sed -n "s/^$key=//p" "${dropin:-$unit}")
}
# unit_wait_port PID PORT: like cfs_wait_port, with more patience (sanitizer builds on a busy
# machine) and the unit's stderr when it died instead.
unit_wait_port() {
	for _ in $(seq 1 300); do
		(exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null && return 0
		kill -0 "$1" 2>/dev/null || cfs_fail "the unit's command exited: $(tail -5 "$CFS_TMP/unit.err")"
		sleep 0.1
	done
	cfs_fail "nothing listens on port $2: $(tail -5 "$CFS_TMP/unit.err")"
}
# unit_stop PID: what systemd's KillSignal=SIGTERM does; the exit status must be 0.
unit_stop() {
	local rc=0
	kill -TERM "$1"
	cfs_bounded 30 tail --pid="$1" -f /dev/null || cfs_fail "no exit after SIGTERM"
	wait "$1" || rc=$?
	cfs_untrack_pid "$1"
	cfs_assert_eq "$rc" 0 "exit status after SIGTERM"
}

# cfs-serve.service
uport=$(cfs_free_port)
cat >"$CFS_TMP/default-cfs-serve" <<EOF
CFS_SERVE_STORE=$store
CFS_SERVE_LISTEN=127.0.0.1:$uport
CFS_SERVE_OPTS="--threads 2 --max-connections 512"
EOF
unit_run "$units/cfs-serve.service" ExecStart "$CFS_TMP/default-cfs-serve"
unit_wait_port "$CFS_UNIT_PID" "$uport"
curl -sf -o "$CFS_TMP/got" "http://127.0.0.1:$uport/objects/$big" || cfs_fail "cfs-serve.service GET"
cmp -s "$CFS_TMP/got" "$store/$big" || cfs_fail "cfs-serve.service bytes"
unit_stop "$CFS_UNIT_PID"

# cfs-serve.service.d/tls-token.conf: HTTPS, token, uploads; credentials as systemd hands them
# over. An image is pushed to its empty store, and cfs-cache.service reads it from there.
creds=$CFS_TMP/credentials
mkdir -p "$creds" "$CFS_TMP/tls-store"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
	-subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
	-keyout "$creds/key" -out "$creds/cert" 2>/dev/null || cfs_fail "openssl req"
printf 'deploy-token\n' >"$creds/token"
tport=$(cfs_free_port)
cat >"$CFS_TMP/default-cfs-serve-tls" <<EOF
CFS_SERVE_STORE=$CFS_TMP/tls-store
CFS_SERVE_LISTEN=127.0.0.1:$tport
CFS_SERVE_OPTS="--threads 2"
CREDENTIALS_DIRECTORY=$creds
EOF
unit_run "$units/cfs-serve.service" ExecStart "$CFS_TMP/default-cfs-serve-tls" "$dropin"
tls_pid=$CFS_UNIT_PID
unit_wait_port "$tls_pid" "$tport"
turl="https://127.0.0.1:$tport/objects"
"$S" push --ca-file "$creds/cert" --token-file "$creds/token" --image "$image" "$store" \
	"$turl" >"$CFS_TMP/out" || cfs_fail "push over HTTPS: $(cat "$CFS_TMP/out")"
grep -q "^$n objects (.*): $n uploaded" "$CFS_TMP/out" || cfs_fail "push summary: $(cat "$CFS_TMP/out")"
rc=0
"$S" push --token-file "$creds/token" --image "$image" "$store" "$turl" >/dev/null 2>&1 || rc=$?
cfs_assert_eq "$rc" 1 "push to an untrusted certificate"

# cfs-cache.service, from the HTTPS server with its CA and token
rmnt=$CFS_TMP/run/cfs/remote
cat >"$CFS_TMP/default-cfs-cache" <<EOF
CFS_CACHE_STORE=$CFS_TMP/node3
CFS_CACHE_SERVER=$turl
CFS_CACHE_MOUNT=$rmnt
CFS_CACHE_OPTS="--ca-file $creds/cert --token-file $creds/token --max-transfers 8"
EOF
cfs_track_mount "$rmnt"
unit_run "$units/cfs-cache.service" ExecStartPre "$CFS_TMP/default-cfs-cache"
unit_run "$units/cfs-cache.service" ExecStart "$CFS_TMP/default-cfs-cache"
cfs_wait_mount "$rmnt"
cfs_bounded 60 cmp "$store/$big" "$(cfs_object_via "$rmnt" "$big")" || cfs_fail "cfs-cache.service read"
mkdir -p "$CFS_TMP/mnt3"
"$CFS_CACHE_BIN" mount-image "$image" "$CFS_TMP/mnt3" --store "$CFS_TMP/node3" --remote "$rmnt"
cfs_track_mount "$CFS_TMP/mnt3"
cfs_bounded 60 diff -r --no-dereference "$src/usr/lib" "$CFS_TMP/mnt3/usr/lib" ||
	cfs_fail "composefs mount over cfs-cache.service"
cfs_umount "$CFS_TMP/mnt3"
unit_stop "$CFS_UNIT_PID"
if mountpoint -q "$rmnt"; then cfs_fail "cfs-cache.service left its mount after SIGTERM"; fi
unit_run "$units/cfs-cache.service" ExecStopPost "$CFS_TMP/default-cfs-cache"
# After a crash with nothing holding the connection (SIGKILL leaves a dead mount behind), the
# unit's next start clears it and mounts again. (With the fd store the mount is adopted instead:
# tests/integration/restart.sh.)
unit_run "$units/cfs-cache.service" ExecStart "$CFS_TMP/default-cfs-cache"
cfs_wait_mount "$rmnt"
kill -KILL "$CFS_UNIT_PID"
wait "$CFS_UNIT_PID" 2>/dev/null || true
cfs_untrack_pid "$CFS_UNIT_PID"
# (A live mount answers ENOENT too, with the hand-off layer: what counts is the dead connection.)
stat "$rmnt/$tool" >"$CFS_TMP/stat.out" 2>&1 && cfs_fail "the mount still answers after SIGKILL"
grep -q "not connected" "$CFS_TMP/stat.out" || cfs_fail "after SIGKILL: $(cat "$CFS_TMP/stat.out")"
grep -q " $rmnt fuse" /proc/self/mounts || cfs_fail "no dead mount left to clear after SIGKILL"
unit_run "$units/cfs-cache.service" ExecStartPre "$CFS_TMP/default-cfs-cache"
unit_run "$units/cfs-cache.service" ExecStart "$CFS_TMP/default-cfs-cache"
cfs_wait_cache "$rmnt"
cfs_bounded 60 cmp "$store/$tool" "$(cfs_object_via "$rmnt" "$tool")" ||
	cfs_fail "cfs-cache.service read after a crash"
unit_stop "$CFS_UNIT_PID"
unit_run "$units/cfs-cache.service" ExecStopPost "$CFS_TMP/default-cfs-cache"
unit_stop "$tls_pid"

# mount_fuse WHAT WHERE TYPE OPTIONS: the fstab / .mount form. mount.fuse3 would run cfs-cache
# by name from mount's helper PATH; the build tree's binary is named in the source instead
# ("fuse" type).
mount_fuse() {
	local what=$1 where=$2 type=$3 opts=$4 fstab=$CFS_TMP/fstab.$RANDOM
	cfs_assert_eq "$type" fuse.cfs-cache "file system type"
	mkdir -p "$where"
	cfs_track_mount "$where"
	printf '%s %s fuse %s 0 0\n' "$CFS_CACHE_BIN#$what" "$where" "$opts" >"$fstab"
	cfs_bounded 30 mount -T "$fstab" "$where" || cfs_fail "mount -T $fstab: $(cat "$fstab")"
	cfs_bounded 60 cmp "$store/$tool" "$(cfs_object_via "$where" "$tool")" ||
		cfs_fail "read through $what on $where"
	umount "$where"
}
subst() {
	sed -e "s|http://cfs-server:8080/objects|$surl|g; s|/var/lib/cfs/objects|$CFS_TMP/node4|g" \
		-e "s|/run/cfs/remote|$rmnt|g"
}
# contrib/systemd/run-cfs-remote.mount
m=$units/run-cfs-remote.mount
mount_fuse "$(sed -n 's/^What=//p' "$m" | subst)" "$(sed -n 's/^Where=//p' "$m" | subst)" \
	"$(sed -n 's/^Type=//p' "$m")" "$(sed -n 's/^Options=//p' "$m" | subst)"
# contrib/fstab.example
read -r what where type opts _ < <(grep -v '^#' "$C/fstab.example" | grep . | subst)
mount_fuse "$what" "$where" "$type" "$opts"
cfs_log "systemd units and fstab line: served, mounted, read, stopped"
