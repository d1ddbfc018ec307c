# SPDX-License-Identifier: MIT
# tests/unit: one cmocka program per module, linked against the same internal libraries
UNIT_TESTS = tests/unit/test-containers tests/unit/test-digest tests/unit/test-name \
	tests/unit/test-store tests/unit/test-util
check_PROGRAMS += $(UNIT_TESTS)
TESTS += $(UNIT_TESTS)
UNIT_CFLAGS = $(AM_CFLAGS) $(CMOCKA_CFLAGS)
UNIT_LIBS = $(CFS_COMMON_LIBS) $(CMOCKA_LIBS)
tests_unit_test_containers_SOURCES = tests/unit/test-containers.c
tests_unit_test_containers_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_containers_LDADD = $(UNIT_LIBS)
tests_unit_test_digest_SOURCES = tests/unit/test-digest.c
tests_unit_test_digest_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_digest_LDADD = $(UNIT_LIBS)
tests_unit_test_name_SOURCES = tests/unit/test-name.c
tests_unit_test_name_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_name_LDADD = $(UNIT_LIBS)
tests_unit_test_store_SOURCES = tests/unit/test-store.c
tests_unit_test_store_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_store_LDADD = $(UNIT_LIBS)
tests_unit_test_util_SOURCES = tests/unit/test-util.c
tests_unit_test_util_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_util_LDADD = $(UNIT_LIBS)
