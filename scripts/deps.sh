#!/bin/sh
# SPDX-License-Identifier: MIT
# Installs, with apt-get, whatever build and test dependencies are missing (Debian 12).
# Waits (bounded) for another apt or dpkg run to let go of its lock, as on a fresh cloud VM where
# unattended-upgrades runs at boot.
set -eu
PKGS="build-essential autoconf automake pkg-config
libfuse3-dev fuse3 libcurl4-openssl-dev libevent-dev libssl-dev libzstd-dev libcmocka-dev
libsystemd-dev erofs-utils fsverity nginx squid curl attr wrk zstd openssl clang
libclang-rt-14-dev util-linux e2fsprogs xz-utils bc ca-certificates python3"
missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "installing:$missing" >&2
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
# apt-get's own lock timeout covers the dpkg frontend lock; the lists lock of `apt-get update`
# is waited for the same way (up to 10 minutes, then apt-get's own error).
lock_wait=${CFS_APT_LOCK_WAIT:-600}
$SUDO apt-get -o DPkg::Lock::Timeout="$lock_wait" update -qq
# shellcheck disable=SC2086
$SUDO apt-get -o DPkg::Lock::Timeout="$lock_wait" install -y -qq --no-install-recommends \
	$missing >/dev/null
