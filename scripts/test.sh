#!/bin/bash
# SPDX-License-Identifier: MIT
# Installs what is missing, builds with ASan/UBSan and runs the whole test suite (unit tests and
# integration tests with real servers and mounts), then `make distcheck` on the unit tests.
# Ends with one line: "tests: N passed, N failed, N skipped".
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
scripts/deps.sh
jobs=$(nproc)
autoreconf -fi >/dev/null 2>&1 || autoreconf -fi
build="$top/build-test"
rm -rf "$build"
mkdir -p "$build"
cd "$build"
"$top/configure" -q --enable-werror --enable-sanitizers
make -s -j"$jobs"
status=0
make -j"$jobs" check ${CFS_TESTS:+TESTS="$CFS_TESTS"} || status=$?
# Show the logs of what failed, so CI output tells why.
for log in $(find . -name '*.log' ! -name test-suite.log ! -name config.log); do
	if grep -qE '^:test-result: (FAIL|ERROR)' "${log%.log}.trs" 2>/dev/null; then
		echo "---- $log"
		tail -n 60 "$log"
	fi
done
count() { grep -E "^# $1: " test-suite.log | awk '{print $3}'; }
pass=$(count PASS) fail=$(( $(count FAIL) + $(count ERROR) + $(count XPASS) )) skip=$(count SKIP)
if [ "$status" = 0 ] && [ -z "${CFS_TESTS:-}" ] && [ -z "${CFS_NO_DISTCHECK:-}" ]; then
	# The tarball builds and passes its unit tests out of tree.
	if make -s distcheck TESTS="\$(UNIT_TESTS)" >distcheck.log 2>&1; then
		pass=$((pass + 1))
		echo "PASS: distcheck"
	else
		tail -n 40 distcheck.log
		fail=$((fail + 1))
		echo "FAIL: distcheck"
		status=1
	fi
fi
echo "tests: $pass passed, $fail failed, $skip skipped"
exit "$status"
