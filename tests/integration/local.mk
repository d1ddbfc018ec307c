# SPDX-License-Identifier: MIT
# tests/integration: shell tests with real servers and mounts (exit 77 = visible skip)
INTEGRATION_TESTS = \
	tests/integration/store-digest.sh \
	tests/integration/store-import-verify.sh \
	tests/integration/fuse-basic.sh \
	tests/integration/handoff.sh \
	tests/integration/restart.sh \
	tests/integration/image-digest.sh \
	tests/integration/deps-lock.sh \
	tests/integration/fuse-faults.sh \
	tests/integration/fuse-concurrent.sh \
	tests/integration/fuse-lifecycle.sh \
	tests/integration/fuse-passthrough.sh \
	tests/integration/cache-lifecycle.sh \
	tests/integration/store-full.sh \
	tests/integration/node-doctor.sh \
	tests/integration/node-options.sh \
	tests/integration/node-honest.sh \
	tests/integration/node-negative.sh \
	tests/integration/node-stats.sh
TESTS += $(INTEGRATION_TESTS)
EXTRA_DIST += $(INTEGRATION_TESTS) tests/integration/lib.sh tests/integration/svcmgr.py
