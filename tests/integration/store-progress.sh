#!/bin/bash
# SPDX-License-Identifier: MIT
# The progress bar on a terminal fits its width (down to 20 columns, never wrapping) and shows
# bytes done of the total and the rate; without a terminal nothing is drawn.
. "$(dirname "$0")/lib.sh"
cfs_require_cmd script stty

store="$CFS_TMP/store" src="$CFS_TMP/src"
mkdir -p "$src"
for i in $(seq 1 30); do cfs_make_file "$src/f$i" $((i * 40000)) "$i"; done
"$CFS_STORE_BIN" -q import "$src" "$store"

# on_tty COLS OUT CMD...: runs CMD on a pseudo-terminal COLS columns wide, its output in OUT.
on_tty() {
	local cols=$1 out=$2
	shift 2
	cfs_bounded 60 script -qec "stty cols $cols rows 24; $*" "$out" </dev/null >/dev/null ||
		cfs_fail "under script: $* ($(tr '\r' '\n' <"$out" | tail -3))"
}
# The redrawn lines: every piece between carriage returns and newlines.
pieces() { tr '\r' '\n' <"$1" | grep -v '^Script \(started\|done\)' | grep -v '^ *$' || true; }

for cols in 20 30 50 100; do
	on_tty "$cols" "$CFS_TMP/tty.$cols" "$CFS_STORE_BIN" verify "$store"
	pieces "$CFS_TMP/tty.$cols" >"$CFS_TMP/lines.$cols"
	grep -q '^verify' "$CFS_TMP/lines.$cols" || cfs_fail "no bar drawn at $cols columns: $(cat "$CFS_TMP/lines.$cols")"
	# The bar's lines (the summary on stdout is the terminal's to wrap).
	while IFS= read -r l; do
		[ "${#l}" -lt "$cols" ] || cfs_fail "a bar of ${#l} characters on $cols columns: '$l'"
	done < <(grep -v ' objects ok, ' "$CFS_TMP/lines.$cols")
	cfs_log "$cols columns: $(grep '^verify' "$CFS_TMP/lines.$cols" | tail -1)"
done
# Wide enough: bytes done of the total, the rate, a bar.
grep '^verify' "$CFS_TMP/lines.100" | grep -q '\[.*\] *[0-9]*% [0-9.]* [KMG]\?i\?B/[0-9.]* [KMG]iB [0-9.]* [KMG]\?i\?B/s' ||
	cfs_fail "100 columns: $(grep '^verify' "$CFS_TMP/lines.100")"
# 30 columns: no bar, but the bytes done of the total, shorter.
grep '^verify' "$CFS_TMP/lines.30" | grep -q '% [0-9.]*[BKMG]/[0-9.]*[KMG]$' ||
	cfs_fail "30 columns: $(grep '^verify' "$CFS_TMP/lines.30")"
# The summary line is still whole after the bar was cleared.
grep -q '^30 objects ok, 0 corrupt' "$CFS_TMP/lines.100" || cfs_fail "summary after the bar: $(cat "$CFS_TMP/lines.100")"

# No terminal, or --no-progress (before or after the command): nothing drawn.
"$CFS_STORE_BIN" verify "$store" >/dev/null 2>"$CFS_TMP/err"
[ ! -s "$CFS_TMP/err" ] || cfs_fail "drawn without a terminal: $(cat -A "$CFS_TMP/err" | head -3)"
on_tty 100 "$CFS_TMP/tty.np" "$CFS_STORE_BIN" verify "$store" --no-progress
pieces "$CFS_TMP/tty.np" | grep -q '^verify' && cfs_fail "drawn with --no-progress"
cfs_log "the bar fits 20 to 100 columns, shows bytes of the total and the rate, only on a terminal"
