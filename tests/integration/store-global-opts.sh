#!/bin/bash
# SPDX-License-Identifier: MIT
# cfs-store's global options (-q, -v, --log-level, --no-progress) work after the command as well
# as before it, for every command; a bad --log-level is misuse (exit 2) naming the option.
. "$(dirname "$0")/lib.sh"

store="$CFS_TMP/store" src="$CFS_TMP/src"
mkdir -p "$src"
for i in 1 2 3; do cfs_make_file "$src/f$i" $((i * 3000)) "$i"; done

# Every command takes them after its name (with --help it prints its usage and exits 0).
for cmd in digest import verify stat objects missing-objects ls mkimage gc push; do
	"$CFS_STORE_BIN" "$cmd" -q -v --verbose -vv --log-level info --log-level=debug --no-progress \
		--help >"$CFS_TMP/help" 2>"$CFS_TMP/help.err" ||
		cfs_fail "$cmd with global options after it: $(cat "$CFS_TMP/help.err")"
	grep -q "^Usage: cfs-store $cmd" "$CFS_TMP/help" || cfs_fail "$cmd --help: $(cat "$CFS_TMP/help")"
done

# -q after the command: nothing on stdout, for real runs.
out=$("$CFS_STORE_BIN" import "$src" "$store" -q) || cfs_fail "import ... -q failed"
cfs_assert_eq "$out" "" "import -q output"
out=$("$CFS_STORE_BIN" verify -q "$store") || cfs_fail "verify -q failed"
cfs_assert_eq "$out" "" "verify -q output"
out=$("$CFS_STORE_BIN" gc --quiet --max-size 1G "$store") || cfs_fail "gc --quiet failed"
cfs_assert_eq "$out" "" "gc --quiet output"
# ... and before it, as ever.
out=$("$CFS_STORE_BIN" -q verify "$store") || cfs_fail "-q verify failed"
cfs_assert_eq "$out" "" "-q verify output"
# Without -q the summary is there.
"$CFS_STORE_BIN" verify "$store" --no-progress | grep -q '^3 objects ok' || cfs_fail "verify summary"

# -v after the command turns on info messages (a FIFO skipped by import says so at info).
mkfifo "$src/fifo"
"$CFS_STORE_BIN" import "$src" "$store" -v --no-progress >/dev/null 2>"$CFS_TMP/v.err"
grep -q 'fifo: not a regular file, skipped' "$CFS_TMP/v.err" || cfs_fail "-v after import: $(cat "$CFS_TMP/v.err")"
"$CFS_STORE_BIN" import "$src" "$store" --no-progress >/dev/null 2>"$CFS_TMP/nov.err"
grep -q 'fifo' "$CFS_TMP/nov.err" && cfs_fail "info message without -v"
"$CFS_STORE_BIN" import "$src" "$store" --log-level info >/dev/null 2>"$CFS_TMP/ll.err"
grep -q 'fifo: not a regular file' "$CFS_TMP/ll.err" || cfs_fail "--log-level info after import"

# A command's own option values are not taken for global options.
"$CFS_STORE_BIN" digest --threads 1 "$src/f1" -q | grep -q "^sha256:[0-9a-f]\{64\} $src/f1\$" ||
	cfs_fail "digest --threads 1 FILE -q"
# After "--" nothing is an option.
set +e
"$CFS_STORE_BIN" digest -- -q >/dev/null 2>"$CFS_TMP/dd.err"
rc=$?
set -e
cfs_assert_eq "$rc" 1 "digest -- -q exit code"
grep -q -- '-q: No such file' "$CFS_TMP/dd.err" || cfs_fail "digest -- -q: $(cat "$CFS_TMP/dd.err")"

# Misuse: exit 2 naming the option.
for args in "verify --log-level bogus $store" "verify $store --log-level"; do
	set +e
	# shellcheck disable=SC2086
	"$CFS_STORE_BIN" $args >/dev/null 2>"$CFS_TMP/bad.err"
	rc=$?
	set -e
	cfs_assert_eq "$rc" 2 "exit code of '$args'"
	grep -q -- '--log-level' "$CFS_TMP/bad.err" || cfs_fail "'$args': $(cat "$CFS_TMP/bad.err")"
done
cfs_log "global options accepted after every command"
