#!/bin/bash
# SPDX-License-Identifier: MIT
# cfs-store push: an image built into a build store is published to an empty cfs-serve origin
# (HEAD, then PUT of what is missing, with the token), a second push uploads nothing, a wrong or
# missing token uploads nothing, corrupt objects are named, and a node then mounts the image
# lazily from the origin and reads the same tree.
. "$(dirname "$0")/lib.sh"
cfs_require_fuse
cfs_require_cmd mkfs.erofs setfattr curl
S=$CFS_STORE_BIN

src=$CFS_TMP/src build=$CFS_TMP/build origin=$CFS_TMP/origin image=$CFS_TMP/image.cfs
cfs_make_tree "$src"
"$S" -q --no-progress mkimage --store "$build" "$src" "$image" >/dev/null
"$S" objects "$image" | sort >"$CFS_TMP/want"
n=$(wc -l <"$CFS_TMP/want")
[ "$n" -gt 40 ] || cfs_fail "image has only $n objects"
want_bytes=$(cd "$build" && xargs stat -c %s <"$CFS_TMP/want" | awk '{s += $1} END {print s}')
# An object of the build store that the image does not use.
mkdir -p "$CFS_TMP/extra"
cfs_make_file "$CFS_TMP/extra/unused" 12345 99
"$S" -q --no-progress import "$CFS_TMP/extra" "$build" >/dev/null
unused=$(cfs_object_of "$CFS_TMP/extra/unused")
printf 'push-token-1\n' >"$CFS_TMP/token"
printf 'not-the-token\n' >"$CFS_TMP/wrong"

# Misuse and help.
"$S" push --help | grep -q -- '--image' || cfs_fail "push --help"
set +e
"$S" push "$build" 2>/dev/null; rc1=$?
"$S" push --jobs 0 "$build" http://127.0.0.1:1/objects 2>/dev/null; rc2=$?
"$S" push "$build" ftp://127.0.0.1/objects 2>/dev/null; rc3=$?
"$S" push --token-file "$CFS_TMP/nonexistent" "$build" http://127.0.0.1:1/objects 2>/dev/null; rc4=$?
set -e
cfs_assert_eq "$rc1" 2 "push without a URL"
cfs_assert_eq "$rc2" 2 "push --jobs 0"
cfs_assert_eq "$rc3" 2 "push to a non-HTTP URL"
cfs_assert_eq "$rc4" 1 "push with an unreadable token file"

# An image whose objects are not all in the store pushes nothing.
cp -a "$build" "$CFS_TMP/partial"
rm "$CFS_TMP/partial/$(head -1 "$CFS_TMP/want")"
rc=0
"$S" push --image "$image" "$CFS_TMP/partial" http://127.0.0.1:1/objects 2>"$CFS_TMP/err" || rc=$?
cfs_assert_eq "$rc" 1 "push of an image with a missing object"
grep -q "$(head -1 "$CFS_TMP/want").*missing from the store" "$CFS_TMP/err" ||
	cfs_fail "missing object not named: $(cat "$CFS_TMP/err")"

# The empty origin.
port=$(cfs_free_port)
url="http://127.0.0.1:$port/objects"
mkdir -p "$origin"
"$CFS_SERVE_BIN" --store "$origin" --listen "127.0.0.1:$port" --threads 2 --allow-upload \
	--token-file "$CFS_TMP/token" --access-log "$CFS_TMP/access.log" 2>"$CFS_TMP/serve.err" &
cfs_track_pid $!
cfs_wait_port "$port"

# A server down: push gives up quickly and says why.
dead=$(cfs_free_port)
rc=0
cfs_bounded 30 "$S" push --token-file "$CFS_TMP/token" --image "$image" "$build" \
	"http://127.0.0.1:$dead/objects" >/dev/null 2>"$CFS_TMP/err" || rc=$?
cfs_assert_eq "$rc" 1 "push to a closed port"
grep -q "giving up.*onnect" "$CFS_TMP/err" || cfs_fail "closed port message: $(cat "$CFS_TMP/err")"

# Wrong token, no token: exit 1, a clear message, nothing uploaded.
rc=0
"$S" push --token-file "$CFS_TMP/wrong" --image "$image" "$build" "$url" >"$CFS_TMP/out" \
	2>"$CFS_TMP/err" || rc=$?
cfs_assert_eq "$rc" 1 "push with a wrong token"
grep -q "refused the token (HTTP 401)" "$CFS_TMP/err" || cfs_fail "wrong token message: $(cat "$CFS_TMP/err")"
rc=0
"$S" push --image "$image" "$build" "$url" >/dev/null 2>"$CFS_TMP/err" || rc=$?
cfs_assert_eq "$rc" 1 "push without a token"
grep -q "requires a token" "$CFS_TMP/err" || cfs_fail "no token message: $(cat "$CFS_TMP/err")"
cfs_assert_eq "$(cfs_store_count "$origin")" 0 "objects on the origin after refused pushes"
if grep -q '"PUT ' "$CFS_TMP/access.log"; then cfs_fail "a PUT was sent with a bad token"; fi

# Dry run: lists what is missing, uploads nothing.
"$S" push --dry-run --token-file "$CFS_TMP/token" --image "$image" "$build" "$url" >"$CFS_TMP/out"
sed -n 's/^missing: //p' "$CFS_TMP/out" | sort >"$CFS_TMP/dry"
cmp -s "$CFS_TMP/dry" "$CFS_TMP/want" || cfs_fail "dry run lists other objects"
grep -q "^$n objects (.*): $n missing" "$CFS_TMP/out" || cfs_fail "dry run summary: $(tail -1 "$CFS_TMP/out")"
cfs_assert_eq "$(cfs_store_count "$origin")" 0 "objects on the origin after a dry run"

# The push: every object of the image, and only those.
t0=$(date +%s%N)
"$S" push --token-file "$CFS_TMP/token" --image "$image" --jobs 4 "$build" "$url" >"$CFS_TMP/out"
t1=$(date +%s%N)
cfs_log "$(cat "$CFS_TMP/out")"
grep -Eq "^$n objects \(.*\): $n uploaded \(.*\), 0 already present, 0 failed" "$CFS_TMP/out" ||
	cfs_fail "summary: $(cat "$CFS_TMP/out")"
(cd "$origin" && find . -mindepth 2 -maxdepth 2 -type f -path './[0-9a-f][0-9a-f]/*' |
	sed 's|^\./||' | sort) >"$CFS_TMP/got"
cmp -s "$CFS_TMP/got" "$CFS_TMP/want" || cfs_fail "origin holds other objects than the image's"
while read -r o; do cmp -s "$build/$o" "$origin/$o" || cfs_fail "$o differs on the origin"; done <"$CFS_TMP/want"
[ ! -e "$origin/$unused" ] || cfs_fail "an object outside the image was pushed"
cfs_assert_eq "$(grep -c '"PUT /objects/' "$CFS_TMP/access.log")" "$n" "PUT requests"
cfs_assert_eq "$(grep -c '"HEAD /objects/.*" 404 ' "$CFS_TMP/access.log")" "$((2 * n))" \
	"HEAD requests answered 404 (dry run and push)"
cfs_log "pushed $n objects, $want_bytes bytes, in $(((t1 - t0) / 1000000)) ms"

# Again: nothing to upload. Then the whole store: only the unused object and the image itself
# (mkimage --store stores it as an object) are new.
puts=$(grep -c '"PUT ' "$CFS_TMP/access.log")
"$S" push --token-file "$CFS_TMP/token" --image "$image" "$build" "$url/" >"$CFS_TMP/out"
grep -Eq "^$n objects \(.*\): 0 uploaded \(0 B\), $n already present, 0 failed" "$CFS_TMP/out" ||
	cfs_fail "second push: $(cat "$CFS_TMP/out")"
cfs_assert_eq "$(grep -c '"PUT ' "$CFS_TMP/access.log")" "$puts" "PUTs of a second push"
"$S" push --token-file "$CFS_TMP/token" "$build" "$url" >"$CFS_TMP/out"
grep -Eq "^$((n + 2)) objects \(.*\): 2 uploaded \(.*\), $n already present, 0 failed" \
	"$CFS_TMP/out" || cfs_fail "push of the whole store: $(cat "$CFS_TMP/out")"
cmp -s "$origin/$unused" "$CFS_TMP/extra/unused" || cfs_fail "whole-store push"

# A corrupt object in the pushing store: the server refuses it (422) and push names it.
bad=$CFS_TMP/bad
mkdir -p "$bad"
cfs_make_file "$CFS_TMP/extra2" 5000 7
victim=$(cfs_object_of "$CFS_TMP/extra2")
mkdir -p "$bad/${victim%/*}"
cfs_make_file "$bad/$victim" 5000 8
rc=0
"$S" push --token-file "$CFS_TMP/token" "$bad" "$url" >"$CFS_TMP/out" 2>"$CFS_TMP/err" || rc=$?
cfs_assert_eq "$rc" 1 "push of a corrupt object"
grep -q "$victim: the server says the object is corrupt" "$CFS_TMP/err" ||
	cfs_fail "corrupt object message: $(cat "$CFS_TMP/err")"
grep -q "1 objects (.*): 0 uploaded (0 B), 0 already present, 1 failed" "$CFS_TMP/out" ||
	cfs_fail "corrupt push summary: $(cat "$CFS_TMP/out")"
[ ! -e "$origin/$victim" ] || cfs_fail "the corrupt object reached the origin"

# Transient failures are retried: a server that answers each object's first HEAD with 503 and
# drops the connection on each first PUT still gets every object, once.
if command -v python3 >/dev/null 2>&1; then
	flaky=$CFS_TMP/flaky
	mkdir -p "$flaky"
	cat >"$CFS_TMP/flaky.py" <<'PY'
import http.server, os, sys, threading
root, port = sys.argv[1], int(sys.argv[2])
seen, lock = {}, threading.Lock()
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a):
        pass
    def first(self):
        with lock:
            n = seen.get((self.command, self.path), 0)
            seen[(self.command, self.path)] = n + 1
        return n == 0
    def reply(self, code):
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def do_HEAD(self):
        if self.first():
            return self.reply(503)
        path = os.path.join(root, self.path[len("/objects/"):])
        self.reply(200 if os.path.exists(path) else 404)
    def do_PUT(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.first():
            self.close_connection = True
            return
        path = os.path.join(root, self.path[len("/objects/"):])
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(body)
        with lock:
            print(self.path, file=sys.stderr, flush=True)
        self.reply(201)
http.server.ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
PY
	fport=$(cfs_free_port)
	python3 "$CFS_TMP/flaky.py" "$flaky" "$fport" 2>"$CFS_TMP/flaky.log" &
	cfs_track_pid $!
	cfs_wait_port "$fport"
	cfs_bounded 60 "$S" push --image "$image" "$build" "http://127.0.0.1:$fport/objects" \
		>"$CFS_TMP/out" 2>"$CFS_TMP/err" || cfs_fail "push to a flaky server: $(cat "$CFS_TMP/err")"
	grep -Eq "^$n objects \(.*\): $n uploaded \(.*\), 0 already present, 0 failed" "$CFS_TMP/out" ||
		cfs_fail "flaky server summary: $(cat "$CFS_TMP/out")"
	while read -r o; do cmp -s "$build/$o" "$flaky/$o" || cfs_fail "$o differs on the flaky server"; done <"$CFS_TMP/want"
	cfs_assert_eq "$(grep -c . "$CFS_TMP/flaky.log")" "$n" "objects stored by the flaky server"
else
	cfs_log "no python3: retry test skipped"
fi

# Many small objects: throughput of HEAD + PUT over kept-alive connections.
many=$CFS_TMP/many
mkdir -p "$many/src"
for i in $(seq 1 500); do printf 'small object %d\n%0900d\n' "$i" "$i" >"$many/src/f$i"; done
"$S" -q --no-progress import "$many/src" "$many/store" >/dev/null
conns() {
	curl -sf -H 'Authorization: Bearer push-token-1' "http://127.0.0.1:$port/metrics" |
		sed -n 's/^cfs_serve_connections_total //p'
}
c0=$(conns)
t0=$(date +%s%N)
"$S" push --token-file "$CFS_TMP/token" --jobs 8 "$many/store" "$url" >"$CFS_TMP/out"
t1=$(date +%s%N)
c1=$(conns)
# Kept-alive connections: 1000 requests over about --jobs connections (and the metrics one).
[ $((c1 - c0)) -le 12 ] || cfs_fail "push opened $((c1 - c0)) connections for 1000 requests"
grep -q "^500 objects (.*): 500 uploaded" "$CFS_TMP/out" || cfs_fail "small objects: $(cat "$CFS_TMP/out")"
cfs_log "500 small objects pushed in $(((t1 - t0) / 1000000)) ms over $((c1 - c0 - 1)) connections"

# A node mounts the image lazily from the origin: nothing is local before it is read.
node=$CFS_TMP/node remote=$CFS_TMP/remote mnt=$CFS_TMP/mnt
cfs_start_cache "$node" "$remote" --server "$url" --token-file "$CFS_TMP/token"
mkdir -p "$mnt"
"$CFS_CACHE_BIN" mount-image "$image" "$mnt" --store "$node" --remote "$remote"
cfs_track_mount "$mnt"
ls -lR "$mnt" >/dev/null
cfs_assert_eq "$(cfs_store_count "$node")" 0 "objects fetched by ls -lR"
cfs_bounded 60 diff -r --no-dereference "$src" "$mnt" || cfs_fail "tree differs through the mount"
cfs_settle "$remote"
cfs_assert_eq "$(cfs_store_count "$node")" "$n" "objects fetched by reading everything"
cfs_umount "$mnt"
cfs_stop_cache "$remote"
