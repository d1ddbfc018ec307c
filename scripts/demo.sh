#!/bin/bash
# SPDX-License-Identifier: MIT
# The main job end to end on an embedded default: build, make a content store from a real tree,
# serve it, mount cfs-cache over it with an empty local store, mount a composefs image whose
# basedir is local-store:FUSE, run something from it lazily and show what was fetched.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
scripts/deps.sh
if [ ! -x build/cfs-store ] || [ ! -x build/cfs-cache ]; then
	autoreconf -fi >/dev/null 2>&1
	mkdir -p build
	(cd build && "$top/configure" -q && make -s -j"$(nproc)")
fi
B="$top/build"
work=$(mktemp -d /tmp/cfs-demo.XXXXXX)
trap 'rm -rf "$work"' EXIT

echo "== import /usr/share/doc into a content store"
"$B/cfs-store" import /usr/share/doc "$work/origin"
echo "== verify it"
"$B/cfs-store" verify "$work/origin" | tail -1
"$B/cfs-store" stat "$work/origin"
