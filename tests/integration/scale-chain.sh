#!/bin/bash
# SPDX-License-Identifier: MIT
# Three tiers on loopback: cfs-cache -> nginx proxy_cache (contrib/nginx/cfs-proxy-cache.conf)
# -> cfs-serve --upstream (pull-through) -> origin cfs-serve. A composefs mount reads the tree
# correctly and each object crosses each hop once; a corrupt origin object is refused by the
# pull-through tier and by the client; with the middle tier killed the client fails over to
# its second server.
. "$(dirname "$0")/lib.sh"
cfs_require_fuse
cfs_require_cmd nginx mkfs.erofs setfattr getfattr
[ -x "$CFS_SERVE_BIN" ] || cfs_skip "cfs-serve not built"

src="$CFS_TMP/src" origin="$CFS_TMP/origin" mid="$CFS_TMP/mid" image="$CFS_TMP/image.cfs"
store="$CFS_TMP/store" remote="$CFS_TMP/remote" mnt="$CFS_TMP/mnt"
cfs_make_tree "$src"
mkdir -p "$src/late" "$mnt"
for i in 1 2 3 4; do cfs_make_file "$src/late/l$i" $((70000 + i)) $((900 + i)); done
cfs_make_file "$src/late/bad" 123456 999
cfs_mkimage "$src" "$origin" "$image"

p_origin=$(cfs_free_port) p_mid=$(cfs_free_port) p_proxy=$(cfs_free_port)
"$CFS_SERVE_BIN" --store "$origin" --listen "127.0.0.1:$p_origin" --threads 2 \
	--access-log "$CFS_TMP/origin.log" --quiet &
cfs_track_pid $!
"$CFS_SERVE_BIN" --store "$mid" --listen "127.0.0.1:$p_mid" --threads 2 \
	--upstream "http://127.0.0.1:$p_origin/objects" --access-log "$CFS_TMP/mid.log" --quiet &
mid_pid=$!
cfs_track_pid "$mid_pid"
mkdir -p "$CFS_TMP/proxy/cache"
sed -e "s|@LISTEN@|127.0.0.1:$p_proxy|" -e "s|@ORIGIN@|127.0.0.1:$p_mid|" \
	-e "s|@CACHE_DIR@|$CFS_TMP/proxy/cache|" -e "s|@CACHE_SIZE@|1g|" \
	"$CFS_SRCDIR/contrib/nginx/cfs-proxy-cache.conf" >"$CFS_TMP/proxy/site.conf"
cat >"$CFS_TMP/proxy/nginx.conf" <<NGINX
worker_processes 2;
pid $CFS_TMP/proxy/nginx.pid;
error_log $CFS_TMP/proxy/error.log warn;
events { worker_connections 1024; }
http {
	log_format cfs '\$request_method \$uri \$status \$upstream_cache_status';
	access_log $CFS_TMP/proxy/access.log cfs;
	client_body_temp_path $CFS_TMP/proxy/body;
	proxy_temp_path $CFS_TMP/proxy/tmp;
	fastcgi_temp_path $CFS_TMP/proxy/fastcgi;
	uwsgi_temp_path $CFS_TMP/proxy/uwsgi;
	scgi_temp_path $CFS_TMP/proxy/scgi;
	include $CFS_TMP/proxy/site.conf;
}
NGINX
nginx -t -q -c "$CFS_TMP/proxy/nginx.conf" || cfs_fail "proxy configuration rejected"
nginx -c "$CFS_TMP/proxy/nginx.conf" -g 'daemon off;' &
cfs_track_pid $!
for p in "$p_origin" "$p_mid" "$p_proxy"; do cfs_wait_port "$p"; done

# Corrupt one origin object before anyone asks for it.
bad=$(cfs_object_of "$src/late/bad")
printf 'X' | dd of="$origin/$bad" bs=1 seek=5 conv=notrunc status=none

cfs_start_cache "$store" "$remote" --retries 0 --connect-timeout 2 \
	--server "http://127.0.0.1:$p_proxy/objects" --server "http://127.0.0.1:$p_origin/objects"
"$CFS_CACHE_BIN" mount-image "$image" "$mnt" --store "$store" --remote "$remote"
cfs_track_mount "$mnt"

# Everything but late/ reads back identical, twice, with concurrent readers.
for d in etc usr; do diff -r --no-dereference "$src/$d" "$mnt/$d" || cfs_fail "$d differs"; done
find "$mnt/usr" -type f -print0 | xargs -0 -P 8 -n 4 cat >/dev/null

# Each object crossed each hop once.
gets() { awk '$1 == "GET" {print $2}' "$1" | grep -c "^/objects/$2\$" || true; }
for f in usr/lib/libbig.so usr/bin/tool etc/sixtyfive usr/lib/f7; do
	o=$(cfs_object_of "$src/$f")
	cfs_assert_eq "$(awk '$1 == "GET" && $2 == "/objects/'"$o"'"' "$CFS_TMP/proxy/access.log" | wc -l)" 1 "client->proxy GETs of $f"
done
for log in "$CFS_TMP/mid.log" "$CFS_TMP/origin.log"; do
	dups=$(grep -Eo '/objects/[0-9a-f]{2}/[0-9a-f]{62}' "$log" | sort | uniq -d | head -3)
	[ -z "$dups" ] || cfs_fail "objects crossed $(basename "$log" .log) twice: $dups"
	[ "$(grep -Ec '/objects/[0-9a-f]{2}/[0-9a-f]{62}' "$log")" -gt 10 ] || cfs_fail "$(basename "$log" .log) saw no traffic"
done
cfs_assert_eq "$(cfs_counter "$remote" verify_failures)" 0 "client verify failures"

# The corrupt object: the pull-through tier refuses it, the client (via the origin) too.
if cfs_bounded 60 cat "$mnt/late/bad" >/dev/null 2>&1; then cfs_fail "corrupt object was read"; fi
[ ! -e "$mid/$bad" ] || cfs_fail "pull-through tier stored a corrupt object"
[ ! -e "$store/$bad" ] || cfs_fail "client stored a corrupt object"
[ "$(cfs_counter "$remote" verify_failures)" -ge 1 ] || cfs_fail "client did not see the bad bytes"
grep -q "/objects/$bad" "$CFS_TMP/mid.log" || cfs_fail "the middle tier was not asked for the bad object"

# Kill the middle tier: objects not yet cached come from the second server.
kill -KILL "$mid_pid"
wait "$mid_pid" 2>/dev/null || true
cfs_untrack_pid "$mid_pid"
for i in 1 2 3 4; do
	cfs_bounded 60 cmp "$src/late/l$i" "$mnt/late/l$i" || cfs_fail "failover read of late/l$i"
done
# Handed-off objects get their store names after the group commit.
cfs_settle "$remote"
"$CFS_STORE_BIN" --no-progress verify "$store" >/dev/null || cfs_fail "client store does not verify"
"$CFS_STORE_BIN" --no-progress verify "$mid" >/dev/null || cfs_fail "middle store does not verify"
