#!/bin/bash
# SPDX-License-Identifier: MIT
# A short libFuzzer run of the image reader and dump (the `make fuzz` target, bounded to ~20 s).
. "$(dirname "$0")/lib.sh"

cfs_require_cmd clang mkfs.erofs
fuzz_time=${CFS_FUZZ_TIME:-20}
echo 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n) { return 0; }' \
	>"$CFS_TMP/probe.c"
clang -fsanitize=fuzzer,address,undefined -o "$CFS_TMP/probe" "$CFS_TMP/probe.c" \
	>/dev/null 2>&1 || cfs_skip "clang cannot build libFuzzer targets (libclang-rt-dev missing?)"

bin=$CFS_TMP/fuzz-image
clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	-I"$CFS_SRCDIR/src" -I"$CFS_BUILDDIR" -D_GNU_SOURCE -o "$bin" \
	"$CFS_SRCDIR/tests/fuzz/fuzz-image.c" "$CFS_SRCDIR/src/image/image.c" \
	"$CFS_SRCDIR/src/image/image-walk.c" \
	"$CFS_SRCDIR/src/image/dump.c" "$CFS_SRCDIR/src/image/writer.c" \
	"$CFS_SRCDIR/src/image/wnode.c" "$CFS_SRCDIR/src/image/overlay.c" \
	"$CFS_SRCDIR/src/common/name.c" "$CFS_SRCDIR/src/common/util.c" \
	"$CFS_SRCDIR/src/common/log.c" "$CFS_SRCDIR/src/common/digestset.c" \
	"$CFS_SRCDIR/src/common/digestmap.c" "$CFS_SRCDIR/src/common/u64map.c" -lm ||
	cfs_fail "cannot build the fuzzer"
sh "$CFS_SRCDIR/tests/fuzz/make-corpus.sh" "$CFS_TMP/seed" || cfs_fail "cannot make the corpus"
mkdir -p "$CFS_TMP/corpus"
cd "$CFS_TMP"
# libFuzzer exits non-zero on a crash, a sanitizer report, a 10 s input or 2 GiB of memory.
cfs_bounded $((fuzz_time + 60)) "$bin" -max_total_time="$fuzz_time" -timeout=10 \
	-rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
	"$CFS_TMP/corpus" "$CFS_TMP/seed" >"$CFS_TMP/fuzz.log" 2>&1 || {
	tail -40 "$CFS_TMP/fuzz.log" >&2
	cfs_fail "the fuzzer found a problem"
}
cfs_log "$(grep -E 'number_of_executed_units|new_units_added' "$CFS_TMP/fuzz.log" | tr '\n' ' ')"
