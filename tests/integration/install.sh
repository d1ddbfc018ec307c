#!/bin/bash
# SPDX-License-Identifier: MIT
# make install into a DESTDIR from the build tree: the binaries, every man page (its footer
# naming the version), the systemd units with the configured bindir (and what systemd needs of
# them), then an fstab line mounting the installed cfs-cache the way mount.fuse3 finds it, and
# make uninstall leaving no file behind.
. "$(dirname "$0")/lib.sh"
cfs_require_cmd make

B=$CFS_BUILDDIR D=$CFS_TMP/dest
# A make of its own, not a job of the make running the tests (no jobserver, no -s/-k of theirs).
unset MAKEFLAGS MFLAGS MAKELEVEL
# The build's own directories, as make expands them.
dirs() {
	make -s --no-print-directory -C "$B" -f Makefile -f - cfs-print-dirs 2>/dev/null <<'MK'
cfs-print-dirs:
	@echo "bindir='$(bindir)' man1dir='$(man1dir)' docdir='$(docdir)'"
	@echo "unitdir='$(systemdsystemunitdir)' version='$(PACKAGE_VERSION)'"
MK
}
eval "$(dirs)"
[ -n "$bindir" ] && [ -n "$man1dir" ] || cfs_fail "directories: $(dirs)"
[ -n "$unitdir" ] || cfs_skip "configured --without-systemdsystemunitdir: no units to check"
cfs_log "bindir=$bindir unitdir=$unitdir"

# A version no source page carries: the footers must come from the build rule.
cfs_bounded 300 make -s --no-print-directory -C "$B" install DESTDIR="$D" \
	PACKAGE_VERSION="$version-inst" >"$CFS_TMP/install.log" 2>&1 ||
	cfs_fail "make install: $(tail -20 "$CFS_TMP/install.log")"

for b in cfs-store cfs-cache cfs-serve; do
	[ -x "$D$bindir/$b" ] || cfs_fail "$b not installed in $bindir"
done
"$D$bindir/cfs-store" --version | grep -qF "$version" || cfs_fail "installed cfs-store --version"
for m in cfs-store cfs-cache cfs-serve cfs-cache-fetch; do
	f=$D$man1dir/$m.1
	[ -f "$f" ] || cfs_fail "man page $m.1 not installed"
	grep -q "^\.TH [^ ]* 1 \"[^\"]*\" \"cfscache $version-inst\" " "$f" ||
		cfs_fail "$m.1 footer: $(grep '^\.TH' "$f")"
done

# The units: in the unit directory, naming the configured bindir, no placeholder left.
for u in cfs-cache.service cfs-serve.service run-cfs-remote.mount; do
	f=$D$unitdir/$u
	[ -f "$f" ] || cfs_fail "$u not installed in $unitdir"
	if grep -n '@[a-zA-Z_]*@' "$f" || grep -v '^#' "$f" | grep '/usr/local/bin' | grep -v "$bindir"; then
		cfs_fail "$u: placeholder or hard-coded path left"
	fi
done
grep -qx "ExecStart=$bindir/cfs-cache .*" "$D$unitdir/cfs-cache.service" || cfs_fail "cfs-cache.service ExecStart"
grep -qx "ExecStart=$bindir/cfs-serve .*" "$D$unitdir/cfs-serve.service" || cfs_fail "cfs-serve.service ExecStart"
# mount(8) runs mount.fuse3, which runs cfs-cache by name, with PATH set to this whoever calls.
helper_path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
m=$D$unitdir/run-cfs-remote.mount
case ":$helper_path:" in
*":$bindir:"*)
	grep -qx 'Type=fuse.cfs-cache' "$m" && grep -qx 'What=http://cfs-server:8080/objects' "$m" ||
		cfs_fail "mount unit for a bindir in mount's PATH: $(grep '^Type\|^What' "$m")" ;;
*)
	grep -qx 'Type=fuse' "$m" && grep -qx "What=$bindir/cfs-cache#http://cfs-server:8080/objects" "$m" ||
		cfs_fail "mount unit for a bindir outside mount's PATH: $(grep '^Type\|^What' "$m")" ;;
esac
for kv in Type=notify NotifyAccess=main FileDescriptorStoreMax=4 Restart=on-failure; do
	grep -qx "$kv" "$D$unitdir/cfs-cache.service" || cfs_fail "cfs-cache.service lacks $kv"
done
# The TLS drop-in is an example (in the unit directory it would be in force at once).
[ -f "$D$docdir/examples/cfs-serve.service.d/tls-token.conf" ] || cfs_fail "tls-token.conf example"
[ ! -e "$D$unitdir/cfs-serve.service.d" ] || cfs_fail "a drop-in installed in the unit directory"
grep -q "^ExecStart=$bindir/cfs-serve " "$D$docdir/examples/cfs-serve.service.d/tls-token.conf" ||
	cfs_fail "tls-token.conf ExecStart"
if command -v systemd-analyze >/dev/null 2>&1; then
	# verify wants the binaries where the units say: point them at the DESTDIR copies.
	mkdir -p "$CFS_TMP/units"
	for u in cfs-cache.service cfs-serve.service run-cfs-remote.mount; do
		sed "s|$bindir/|$D$bindir/|g" "$D$unitdir/$u" >"$CFS_TMP/units/$u"
	done
	systemd-analyze verify --man=no "$CFS_TMP/units"/* >"$CFS_TMP/verify.log" 2>&1 ||
		cfs_fail "systemd-analyze verify: $(cat "$CFS_TMP/verify.log")"
fi

# The mount unit's (and fstab's) form mounts the installed cfs-cache. For a bindir in mount's
# PATH, the DESTDIR copy is bound over it in a private mount namespace (the host sees nothing).
if [ "$(id -u)" = 0 ] && [ -c /dev/fuse ] && command -v mount.fuse3 unshare >/dev/null 2>&1; then
	mnt=$CFS_TMP/mnt
	mkdir -p "$mnt" "$CFS_TMP/store"
	what=$(sed -n 's/^What=//p' "$m" | sed "s|http://cfs-server:8080/objects|http://127.0.0.1:9/objects|; s|^$bindir/|$D$bindir/|")
	type=$(sed -n 's/^Type=//p' "$m")
	printf '%s %s %s store=%s,_netdev,nofail 0 0\n' "$what" "$mnt" "$type" "$CFS_TMP/store" >"$CFS_TMP/fstab"
	bind=
	case $type in fuse.cfs-cache) [ -d "$bindir" ] || cfs_skip "no $bindir here"; bind="mount --bind $D$bindir $bindir &&" ;; esac
	cfs_bounded 60 unshare -m --propagation private sh -c "$bind
		mount -T '$CFS_TMP/fstab' '$mnt' && mountpoint -q '$mnt' &&
		grep ' $mnt fuse' /proc/self/mounts && umount '$mnt'" >"$CFS_TMP/mount.log" 2>&1 ||
		cfs_fail "the mount unit's line ($(cat "$CFS_TMP/fstab")) with the installed cfs-cache: $(cat "$CFS_TMP/mount.log")"
	# The source form naming the binary works whatever the bindir.
	printf '%s#http://127.0.0.1:9/objects %s fuse store=%s,nofail 0 0\n' \
		"$D$bindir/cfs-cache" "$mnt" "$CFS_TMP/store" >"$CFS_TMP/fstab2"
	cfs_track_mount "$mnt"
	cfs_bounded 30 mount -T "$CFS_TMP/fstab2" "$mnt" || cfs_fail "mount of the BINDIR/cfs-cache#URL form"
	mountpoint -q "$mnt" || cfs_fail "BINDIR/cfs-cache#URL: not mounted"
	umount "$mnt"
	# The daemons end with their mounts (before uninstall removes their binary).
	for _ in $(seq 1 100); do
		pgrep -f "cfs-cache.* $mnt -o" >/dev/null || break
		sleep 0.1
	done
	pgrep -f "cfs-cache.* $mnt -o" >/dev/null && cfs_fail "cfs-cache still running after umount"
else
	cfs_log "no root, /dev/fuse, mount.fuse3 or unshare: the fstab lines are not mounted"
fi

cfs_bounded 300 make -s --no-print-directory -C "$B" uninstall DESTDIR="$D" >"$CFS_TMP/uninstall.log" 2>&1 ||
	cfs_fail "make uninstall: $(tail -20 "$CFS_TMP/uninstall.log")"
left=$(find "$D" ! -type d)
[ -z "$left" ] || cfs_fail "left after uninstall: $left"
cfs_log "installed, units name $bindir, fstab line mounts, uninstall leaves no file"
