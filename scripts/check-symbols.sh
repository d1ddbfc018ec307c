#!/bin/sh
# SPDX-License-Identifier: MIT
# Checks that every exported symbol of the internal libraries carries its module's prefix.
status=0
for lib in "$@"; do
	case "$lib" in
	libcfscommon.a) prefix='cfs_(digest|digestmap|digestset|name|store|log|progress|image|quota|handoff)_|cfs_(sha256|read_full|pread_full|write_full|parse_size|format_size|parse_duration_ms|now_ns|deadline_ms|hex_encode|read_small_file|const_time_eq|log)$' ;;
	libcfsfetch.a) prefix='cfs_fetch' ;;
	*) prefix='cfs_' ;;
	esac
	bad=$(nm -g --defined-only "$lib" 2>/dev/null | awk 'NF==3 && $2 ~ /[TDBR]/ {print $3}' |
		grep -Ev "^($prefix)" | grep -Ev '^(__odr_asan|__asan|__ubsan|_init|_fini)')
	if [ -n "$bad" ]; then
		echo "$lib: symbols without the module prefix:" >&2
		echo "$bad" | sed 's/^/  /' >&2
		status=1
	fi
done
exit $status
