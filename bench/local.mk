# SPDX-License-Identifier: MIT
# bench: benchmarks against baselines, run by bench/run.sh (not part of make check)
EXTRA_DIST += bench/run.sh bench/lib.sh bench/digest.sh bench/fuse.sh bench/boot.sh bench/memory.sh \
	bench/mkimage.sh
bench: all
	$(top_srcdir)/bench/run.sh
.PHONY: bench
