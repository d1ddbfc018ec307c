# SPDX-License-Identifier: MIT
# tests/integration: shell tests with real servers and mounts (exit 77 = visible skip)
INTEGRATION_TESTS = \
	tests/integration/store-digest.sh \
	tests/integration/store-import-verify.sh
TESTS += $(INTEGRATION_TESTS)
EXTRA_DIST += $(INTEGRATION_TESTS) tests/integration/lib.sh
