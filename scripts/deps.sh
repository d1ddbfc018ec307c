#!/bin/sh
# SPDX-License-Identifier: MIT
# Installs, with apt-get, whatever build and test dependencies are missing (Debian 12).
# Waits (bounded: CFS_APT_LOCK_WAIT seconds, default 600) for another apt or dpkg run to let go
# of its lock, as on a fresh cloud VM where unattended-upgrades runs at boot.
# `deps.sh --wait-lock` only waits for the lock (exit 0 when apt is free, 1 when it stayed busy).
set -eu
PKGS="build-essential autoconf automake pkg-config
libfuse3-dev fuse3 libcurl4-openssl-dev libevent-dev libssl-dev libzstd-dev libcmocka-dev
libsystemd-dev erofs-utils fsverity nginx squid curl attr wrk zstd openssl clang
clang-format libclang-rt-14-dev util-linux e2fsprogs xz-utils bc ca-certificates python3"
lock_wait=${CFS_APT_LOCK_WAIT:-600}
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo

# Waits for dpkg's locks (apt-get check takes them, honouring DPkg::Lock::Timeout).
wait_for_apt() {
	if ! $SUDO apt-get -o DPkg::Lock::Timeout="$lock_wait" check >/dev/null 2>&1; then
		echo "deps.sh: apt is busy (another apt or dpkg holds its lock) after waiting" \
			"${lock_wait}s; try again later, or set CFS_APT_LOCK_WAIT" >&2
		return 1
	fi
}
if [ "${1:-}" = --wait-lock ]; then
	wait_for_apt
	exit $?
fi

missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "installing:$missing" >&2
export DEBIAN_FRONTEND=noninteractive
wait_for_apt
$SUDO apt-get -o DPkg::Lock::Timeout="$lock_wait" update -qq
# shellcheck disable=SC2086
$SUDO apt-get -o DPkg::Lock::Timeout="$lock_wait" install -y -qq --no-install-recommends \
	$missing >/dev/null
