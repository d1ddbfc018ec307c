#!/bin/bash
# SPDX-License-Identifier: MIT
# Builds cfscache once (optimised, no sanitizers) and runs each benchmark against its baseline
# side by side, printing markdown tables of ratios. Usage: bench/run.sh [NAME...]
# (NAME = digest, serve, fetch, fuse, boot, mkimage ...; default: all bench/*.sh except lib.sh).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
"$top/scripts/deps.sh"
out="$top/bench/out"
build="$out/build"
mkdir -p "$build"
if [ ! -f "$top/configure" ]; then (cd "$top" && autoreconf -fi >/dev/null 2>&1); fi
if [ ! -f "$build/Makefile" ]; then
	(cd "$build" && "$top/configure" -q CFLAGS="-O2 -g")
fi
make -s -C "$build" -j"$(nproc)" >/dev/null
export CFS_BUILDDIR="$build" CFS_SRCDIR="$top" CFS_BENCH_OUT="$out"
names=("$@")
if [ ${#names[@]} -eq 0 ]; then
	for f in "$top"/bench/*.sh; do
		n=$(basename "$f" .sh)
		[ "$n" = lib ] || [ "$n" = run ] || names+=("$n")
	done
fi
echo "# cfscache benchmarks, $(date -u +%Y-%m-%d)"
echo
echo "Machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), kernel $(uname -r)"
echo
status=0
for n in "${names[@]}"; do
	echo "## $n"
	echo
	bash "$top/bench/$n.sh" || { echo "(benchmark $n failed)"; status=1; }
	echo
done
exit $status
