# SPDX-License-Identifier: MIT
# docs: man pages and guides
dist_man_MANS += docs/cfs-store.1 docs/cfs-cache.1
EXTRA_DIST += docs/architecture.md docs/benchmarks.md
