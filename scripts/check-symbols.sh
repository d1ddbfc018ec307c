#!/bin/sh
# SPDX-License-Identifier: MIT
# Checks that every exported symbol carries its module's prefix: the internal libraries
# (check-symbols.sh LIB...) and the objects of each program
# (check-symbols.sh --program NAME OBJECT...), so that a reader knows where a name lives.
status=0

check() { # what prefix-regex file...
	what=$1 prefix=$2
	shift 2
	bad=$(nm -g --defined-only "$@" 2>/dev/null | awk 'NF==3 && $2 ~ /[TDBR]/ {print $3}' |
		grep -Ev "^($prefix)" | grep -Ev '^(__odr_asan|__asan|__ubsan|_init|_fini|main$)')
	if [ -n "$bad" ]; then
		echo "$what: symbols without the module prefix:" >&2
		echo "$bad" | sort -u | sed 's/^/  /' >&2
		status=1
	fi
}

if [ "$1" = --program ]; then
	prog=$2
	shift 2
	case "$prog" in
	cfs-cache) prefix='cfs_(cache|cli|devio|fs|handover|mount_opts|passthrough|tally)_' ;;
	cfs-serve) prefix='cfs_(gate|http|ocache|serve|srv|upstream|zcache)_' ;;
	cfs-store) prefix='cfs_(cmd|tool)_' ;;
	*) prefix='cfs_' ;;
	esac
	check "$prog" "$prefix" "$@"
	exit $status
fi

for lib in "$@"; do
	case "$lib" in
	libcfscommon.a) prefix='cfs_(digest|digestmap|digestset|name|store|log|progress|image|quota|handoff|u64map)_|cfs_(sha256|read_full|pread_full|write_full|parse_size|format_size|parse_duration_ms|now_ns|deadline_ms|hex_encode|read_small_file|const_time_eq|raise_nofile|log)$' ;;
	libcfsfetch.a) prefix='cfs_fetch' ;;
	*) prefix='cfs_' ;;
	esac
	check "$lib" "$prefix" "$lib"
done
exit $status
