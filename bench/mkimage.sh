#!/bin/bash
# SPDX-License-Identifier: MIT
# cfs-store mkimage (the native writer) of real trees against cfs-store import of the same trees
# (both hash and store every file), and against the mkimage of revision $CFS_BENCH_OLD_REV
# (sparse shadow tree + mkfs.erofs); image sizes beside the tree sizes. Best of $BENCH_RUNS.
. "$(dirname "$0")/lib.sh"
B="$CFS_BUILDDIR"
top=${CFS_SRCDIR:?}
old_rev=${CFS_BENCH_OLD_REV:-2425620451a33d8283d3d311cc5bd865d4a05683}
read -r -a trees <<<"${CFS_BENCH_TREES:-/usr/share/doc /usr/bin}"
[ -n "${CFS_BENCH_ROOTFS:-}" ] && trees=("$CFS_BENCH_ROOTFS" "${trees[@]}")

# The cfs-store of the old revision, built once into the bench output directory.
old="$CFS_BENCH_OUT/old-$old_rev"
if [ ! -x "$old/build/cfs-store" ] && git -C "$top" cat-file -e "$old_rev^{commit}" 2>/dev/null; then
	rm -rf "$old"
	mkdir -p "$old/src" "$old/build"
	git -C "$top" archive "$old_rev" | tar -x -C "$old/src"
	(cd "$old/src" && autoreconf -fi >/dev/null 2>&1)
	(cd "$old/build" && "$old/src/configure" -q CFLAGS="-O2 -g" >/dev/null &&
		make -s -j"$(nproc)" cfs-store >/dev/null 2>&1) || echo "(building $old_rev failed)"
fi
have_old=false
[ -x "$old/build/cfs-store" ] && command -v mkfs.erofs >/dev/null && have_old=true

# run_once CMD...: wall time of CMD with an empty store and no image.
run_once() {
	local t0 t1
	rm -rf "$BENCH_TMP/store" "$BENCH_TMP/image.cfs"
	sync
	t0=$(date +%s.%N)
	"$@" >/dev/null 2>&1
	t1=$(date +%s.%N)
	echo "$t1 - $t0" | bc -l
}
min() { if [ -z "$1" ] || [ "$(echo "$2 < $1" | bc -l)" = 1 ]; then echo "$2"; else echo "$1"; fi; }
mib() { printf '%.1f MiB' "$(echo "$1 / 1048576" | bc -l)"; }

rows=()
for tree in "${trees[@]}"; do
	[ -d "$tree" ] || continue
	files=$(find "$tree" -xdev -type f | wc -l)
	tbytes=$(du -sb --apparent-size "$tree" | cut -f1)
	tdisk=$(du -sB1 "$tree" | cut -f1)
	cat "$tree" >/dev/null 2>&1 || true
	find "$tree" -xdev -type f -print0 | xargs -0 cat >/dev/null 2>&1 || true # warm cache
	# The three side by side in each round (the machine is shared), best of the rounds.
	t_imp="" t_mk="" t_old=""
	for _ in $(seq 1 "${BENCH_RUNS:-3}"); do
		t_imp=$(min "$t_imp" "$(run_once "$B/cfs-store" -q --no-progress import "$tree" "$BENCH_TMP/store")")
		t_mk=$(min "$t_mk" "$(run_once "$B/cfs-store" -q --no-progress mkimage --store \
			"$BENCH_TMP/store" "$tree" "$BENCH_TMP/image.cfs")")
		if $have_old; then
			t_old=$(min "$t_old" "$(run_once "$old/build/cfs-store" -q --no-progress mkimage \
				--store "$BENCH_TMP/store" "$tree" "$BENCH_TMP/image.cfs")")
		fi
	done
	t_imp=$(printf '%.3f' "$t_imp") t_mk=$(printf '%.3f' "$t_mk")
	"$B/cfs-store" -q --no-progress mkimage "$tree" "$BENCH_TMP/new.cfs" >/dev/null
	isize=$(stat -c %s "$BENCH_TMP/new.cfs")
	osize=- r_old=-
	if $have_old; then
		rm -rf "$BENCH_TMP/store"
		"$old/build/cfs-store" -q --no-progress mkimage --store "$BENCH_TMP/store" "$tree" \
			"$BENCH_TMP/old.cfs" >/dev/null 2>&1 || true
		osize=$(mib "$(stat -c %s "$BENCH_TMP/old.cfs" 2>/dev/null || echo 0)")
		t_old=$(printf '%.3f' "$t_old")
		r_old=$(bench_ratio "$t_old" "$t_imp")
	else
		t_old=-
	fi
	rows+=("| $tree | $files | $(mib "$tbytes") ($(mib "$tdisk") on disk) | $(mib "$isize") | $osize | $t_imp s | $t_mk s | **$(bench_ratio "$t_mk" "$t_imp")** | $t_old s | $r_old |")
done

echo "Target: mkimage ≤ 1.1× import (DESIGN.md §7). Old = cfs-store mkimage of ${old_rev:0:7} (shadow tree + mkfs.erofs --chunksize=1048576). Best of ${BENCH_RUNS:-3}, warm page cache, empty store each run."
echo
echo "| tree | files | tree size | image (writer) | image (old) | import | mkimage | mkimage / import | old mkimage | old / import |"
echo "|---|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
