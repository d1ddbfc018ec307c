#!/bin/bash
# SPDX-License-Identifier: MIT
# cfs-serve against hostile input: a table of malformed and escaping paths, symlinks and
# non-regular files planted in the store, oversized requests, slow clients, connection limit.
. "$(dirname "$0")/lib.sh"
cfs_require_cmd curl

store="$CFS_TMP/store"
mkdir -p "$store" "$CFS_TMP/outside"
echo "TOP SECRET" >"$CFS_TMP/secret"
cfs_make_file "$CFS_TMP/obj" 5000 7
"$CFS_STORE_BIN" -q --no-progress import "$CFS_TMP/obj" "$store" >/dev/null 2>&1 ||
	{ mkdir -p "$CFS_TMP/objsrc" && cp "$CFS_TMP/obj" "$CFS_TMP/objsrc/" &&
		"$CFS_STORE_BIN" -q --no-progress import "$CFS_TMP/objsrc" "$store" >/dev/null; }
d=$("$CFS_STORE_BIN" digest "$CFS_TMP/obj" | awk '{print $1}')
hex=${d#sha256:}
good="${hex:0:2}/${hex:2}"
rest=${hex:2}
upper=$(echo "$good" | tr a-f A-F)

# Things planted in the store under valid object names.
h62() { printf '%s' "$1"; printf "$1%.0s" $(seq 1 61); }
link_name="ab/$(h62 1)"      # a symlink to a file outside the store
mkdir -p "$store/ab"
ln -s "$CFS_TMP/secret" "$store/$link_name"
ln -s "$CFS_TMP/outside" "$store/cd" # a prefix directory that is a symlink
cp "$CFS_TMP/secret" "$CFS_TMP/outside/$(h62 2)"
dirlink="cd/$(h62 2)"
fifo_name="ab/$(h62 3)"     # a FIFO: opening it must not hang the server
mkfifo "$store/$fifo_name"
dir_name="ab/$(h62 4)"      # a directory
mkdir "$store/$dir_name"

port=$(cfs_free_port)
"$CFS_SERVE_BIN" --store "$store" --listen "127.0.0.1:$port" --threads 2 --timeout 1s \
	--max-header-size 4k --max-uri 512 2>"$CFS_TMP/serve.err" &
pid=$!
cfs_track_pid $pid
cfs_wait_port "$port"
base="http://127.0.0.1:$port"

c=$(curl -s -o "$CFS_TMP/body" -w '%{http_code}' "$base/objects/$good")
cfs_assert_eq "$c" 200 "the real object"
c=$(curl -s -o /dev/null -w '%{http_code}' "$base/objects/$good?x=1")
cfs_assert_eq "$c" 200 "query strings are ignored"

# Sends a raw request, prints the status code of the answer (or "none").
raw() {
	exec 3<>"/dev/tcp/127.0.0.1/$port"
	# The server may close early: a subshell takes the SIGPIPE.
	(printf '%b' "$1" >&3) 2>/dev/null || true
	line=$(timeout 5 head -1 <&3 | tr -d '\r') || true
	echo "$line" >"$CFS_TMP/raw.out"
	exec 3<&- 3>&-
	code=$(echo "$line" | awk '{print $2}')
	echo "${code:-none}"
}
refused() { # DESCRIPTION CODE
	case $2 in
	400 | 404 | 405 | 413 | 414 | 431 | 501 | none) ;;
	*) cfs_fail "$1: got $2" ;;
	esac
	! grep -q 'TOP SECRET' "$CFS_TMP/raw.out" 2>/dev/null || cfs_fail "$1: leaked the secret"
}

long=$(printf 'a%.0s' $(seq 1 9000))
targets=(
	"/objects/../../etc/passwd"
	"/objects/%2e%2e/%2e%2e/etc/passwd"
	"/objects/%2E%2E/secret"
	"/objects/ab/..%2f..%2fsecret"
	"/objects/${hex:0:2}%2f$rest"
	"/objects/${hex:0:2}%2F$rest"
	"//objects/$good"
	"/objects//$good"
	"/objects/./$good"
	"/objects/${hex:0:2}/./$rest"
	"/objects/$upper"
	"/objects/${hex:0:2}/${rest:0:61}"
	"/objects/${hex:0:2}/${rest}0"
	"/objects/${hex:0:3}/${rest:1}"
	"/objects/$good/"
	"/objects/$good/.."
	"/objects/$good%00"
	"/objects/$good%00.txt"
	"/objects\\\\${hex:0:2}/$rest"
	"/objects/${hex:0:2}\\\\$rest"
	"/objects/$hex"
	"/objects/sha256:$hex"
	"/objects/"
	"/objects"
	"/Objects/$good"
	"/objects/$long"
	"http://127.0.0.1/objects/$good"
	"*"
	"/objects/$link_name"
	"/objects/$dirlink"
	"/objects/$fifo_name"
	"/objects/$dir_name"
)
for t in "${targets[@]}"; do
	refused "GET ${t:0:80}" "$(raw "GET $t HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")"
	# The same through curl, which must not normalise the path.
	case $t in /*) ;; *) continue ;; esac
	c=$(curl -s --path-as-is -o "$CFS_TMP/raw.out" -w '%{http_code}' "$base$t" 2>/dev/null) || true
	case $c in 000 | "") c=none ;; esac
	refused "curl ${t:0:80}" "$c"
done
# Raw bytes curl cannot send: NUL, control characters, a space inside the target.
refused "NUL" "$(raw "GET /objects/$good\0/../x HTTP/1.1\r\nHost: x\r\n\r\n")"
refused "NUL 2" "$(raw "GET /objects/ab/\0$rest HTTP/1.1\r\nHost: x\r\n\r\n")"
refused "tab" "$(raw "GET /objects/$good\t HTTP/1.1\r\nHost: x\r\n\r\n")"
refused "ctl" "$(raw "GET /objects/${hex:0:2}/\x01$rest HTTP/1.1\r\nHost: x\r\n\r\n")"
refused "garbage" "$(raw "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n")"
refused "huge header" "$(raw "GET /objects/$good HTTP/1.1\r\nHost: x\r\nX-Big: $long\r\n\r\n")"
refused "many headers" "$(raw "GET /objects/$good HTTP/1.1\r\n$(for i in $(seq 1 400); do printf 'X-H%d: yyyyyyyy\\r\\n' "$i"; done)\r\n")"
refused "bad method" "$(raw "BREW /objects/$good HTTP/1.1\r\nHost: x\r\n\r\n")"
refused "bad version" "$(raw "GET /objects/$good HTTP/9.9x\r\nHost: x\r\n\r\n")"
refused "body on GET too big" "$(raw "GET /objects/$good HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n")"

# Framing a proxy in front could read differently: refused with 400, before any body is read.
cfs_assert_eq "$(raw "GET /objects/$good HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab")" 400 "differing Content-Length"
cfs_assert_eq "$(raw "GET /objects/$good HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")" 200 "repeated equal Content-Length"
cfs_assert_eq "$(raw "GET /objects/$good HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")" 400 "Content-Length and Transfer-Encoding"
cfs_assert_eq "$(raw "GET /objects/$good HTTP/1.1\r\nHost: x\r\nContent-Length : 3\r\n\r\nabc")" 400 "space before the colon"
cfs_assert_eq "$(raw "GET /objects/$good HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n Content-Length: 3\r\n\r\nabc")" 400 "folded header line"
cfs_assert_eq "$(raw "GET /objects/$good HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\nabc")" 400 "signed Content-Length"
cfs_assert_eq "$(raw "GET /objects/$good HTTP/1.1\r\nHost: x\r\nX-Big: $long\r\n\r\n")" 431 "head over --max-header-size"
# Pipelined requests in one write: each is answered, in order, through the same checks.
exec 3<>"/dev/tcp/127.0.0.1/$port"
printf 'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nHEAD /objects/%s HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n' "$good" >&3
codes=$(timeout 5 cat <&3 | tr -d '\r' | awk '/^HTTP\/1.1/ {printf "%s ", $2}') || true
exec 3<&- 3>&-
cfs_assert_eq "$codes" "200 200 400 " "pipelined answers"

# Planted files: refused with 404, and the server says why.
for n in "$link_name" "$dirlink" "$fifo_name" "$dir_name"; do
	c=$(curl -s -o "$CFS_TMP/raw.out" -w '%{http_code}' "$base/objects/$n")
	cfs_assert_eq "$c" 404 "planted $n"
	! grep -q 'TOP SECRET' "$CFS_TMP/raw.out" || cfs_fail "secret leaked through $n"
done
grep -q 'refusing' "$CFS_TMP/serve.err" || cfs_fail "no warning about planted files"

# The server is still fine after all that.
c=$(curl -s -o "$CFS_TMP/body" -w '%{http_code}' "$base/objects/$good")
cfs_assert_eq "$c" 200 "real object after the hostile table"
cmp -s "$CFS_TMP/body" "$CFS_TMP/obj" || cfs_fail "bytes after the hostile table"

# Slow clients: a request line that never ends, and an idle connection, are closed after
# the timeout (1 s here).
for partial in 'GET /objects/' ''; do
	t0=$(date +%s%N)
	exec 3<>"/dev/tcp/127.0.0.1/$port"
	printf '%s' "$partial" >&3
	timeout 10 cat <&3 >/dev/null || cfs_fail "slow client not disconnected"
	exec 3<&- 3>&-
	ms=$((($(date +%s%N) - t0) / 1000000))
	[ "$ms" -lt 6000 ] || cfs_fail "slow client held ${ms} ms"
done
cfs_stop_pid $pid

# Connection limit: with two connections open, a third gets 503; after they close, 200.
port=$(cfs_free_port)
"$CFS_SERVE_BIN" --store "$store" --listen "127.0.0.1:$port" --max-connections 2 \
	2>>"$CFS_TMP/serve.err" &
pid=$!
cfs_track_pid $pid
cfs_wait_port "$port"
base="http://127.0.0.1:$port"
sleep 0.3 # cfs_wait_port's probe connection must be gone
exec 4<>"/dev/tcp/127.0.0.1/$port" 5<>"/dev/tcp/127.0.0.1/$port"
for fd in 4 5; do
	printf 'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n' >&"$fd"
	read -r -t 5 line <&"$fd" || cfs_fail "held connection $fd got no answer"
	case $line in "HTTP/1.1 200"*) ;; *) cfs_fail "held connection $fd: $line" ;; esac
done
c=$(curl -s -o /dev/null -w '%{http_code}' "$base/objects/$good")
cfs_assert_eq "$c" 503 "third connection over --max-connections 2"
exec 4<&- 4>&- 5<&- 5>&-
ok=""
for _ in $(seq 1 50); do
	c=$(curl -s -o /dev/null -w '%{http_code}' "$base/objects/$good")
	if [ "$c" = 200 ]; then ok=1; break; fi
	sleep 0.1
done
[ -n "$ok" ] || cfs_fail "still refusing after the held connections closed"
curl -s "$base/metrics" | grep -q '^cfs_serve_requests_total{method="GET",code="503"} 1$' ||
	cfs_fail "503 not counted"
cfs_stop_pid $pid
