#!/bin/sh
# SPDX-License-Identifier: MIT
# Installs, with apt-get, whatever build and test dependencies are missing (Debian 12).
set -eu
PKGS="build-essential autoconf automake pkg-config
libfuse3-dev fuse3 libcurl4-openssl-dev libevent-dev libssl-dev libzstd-dev libcmocka-dev
erofs-utils fsverity nginx curl attr wrk zstd openssl clang libclang-rt-14-dev util-linux
e2fsprogs xz-utils bc ca-certificates"
missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "installing:$missing" >&2
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
