#!/bin/bash
# SPDX-License-Identifier: MIT
# cfs-store digest vs `fsverity digest`: a 1 GiB file in the page cache (one thread and both
# cores) and 10 000 small files. Prints a markdown table with time ratios (baseline / ours).
. "$(dirname "$0")/lib.sh"
command -v fsverity >/dev/null || { echo "fsverity not installed"; exit 1; }
S="$CFS_BUILDDIR/cfs-store"
big="$BENCH_TMP/big"
head -c 1G /dev/urandom >"$big"
cat "$big" >/dev/null
small="$BENCH_TMP/small"
mkdir -p "$small"
for i in $(seq 0 99); do
	mkdir -p "$small/$i"
	for j in $(seq 0 99); do head -c $(( (i * 100 + j) % 16384 + 1 )) "$big" >"$small/$i/$j"; done
done
find "$small" -type f | sort >"$BENCH_TMP/list"
cat $(cat "$BENCH_TMP/list") >/dev/null
[ "$("$S" digest "$big" | cut -d' ' -f1)" = "$(fsverity digest "$big" | cut -d' ' -f1)" ] || { echo "digests differ"; exit 1; }

t_fsv=$(bench_time fsverity digest "$big")
t_one=$(bench_time "$S" digest --threads 1 "$big")
t_all=$(bench_time "$S" digest "$big")
t_fsv_small=$(bench_time sh -c "xargs fsverity digest <'$BENCH_TMP/list'")
t_small=$(bench_time sh -c "xargs '$S' digest <'$BENCH_TMP/list'")
gbs() { echo "scale=2; 1.073741824 / $1" | bc -l | sed 's/^\./0./'; }
echo "| case | fsverity digest | cfs-store digest | speed ratio (fsverity time / ours) | target |"
echo "|---|---|---|---|---|"
echo "| 1 GiB, 1 thread | ${t_fsv}s ($(gbs "$t_fsv") GB/s) | ${t_one}s ($(gbs "$t_one") GB/s) | $(bench_ratio "$t_fsv" "$t_one")x | >= 1.15x |"
echo "| 1 GiB, $(nproc) threads | ${t_fsv}s | ${t_all}s ($(gbs "$t_all") GB/s) | $(bench_ratio "$t_fsv" "$t_all")x | >= 2x |"
echo "| 10 000 files 1 B-16 KiB | ${t_fsv_small}s | ${t_small}s | $(bench_ratio "$t_fsv_small" "$t_small")x | >= 1x |"
