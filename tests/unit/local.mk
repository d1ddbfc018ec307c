# SPDX-License-Identifier: MIT
# tests/unit: one cmocka program per module, linked against the same internal libraries
COMMON_UNIT_TESTS = tests/unit/test-containers tests/unit/test-digest tests/unit/test-name \
	tests/unit/test-quota tests/unit/test-store tests/unit/test-util
check_PROGRAMS += $(COMMON_UNIT_TESTS)
TESTS += $(COMMON_UNIT_TESTS)
# Every unit test program, the ones the modules' local.mk build too: `make distcheck
# TESTS='$(UNIT_TESTS)'` runs them (each skips with 77 when what it needs is absent), and
# check-unit-tests fails when a tests/unit/test-*.c is not listed here.
UNIT_TESTS = $(COMMON_UNIT_TESTS) tests/unit/test-fetch tests/unit/test-attempt \
	tests/unit/test-fetch-opts tests/unit/test-fetch-push tests/unit/test-image \
	tests/unit/test-image-writer tests/unit/test-http tests/unit/test-listen tests/unit/test-ocache
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
tests_unit_test_quota_SOURCES = tests/unit/test-quota.c tests/unit/store-fixture.h
tests_unit_test_quota_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_quota_LDADD = $(UNIT_LIBS)
tests_unit_test_store_SOURCES = tests/unit/test-store.c tests/unit/store-fixture.h
tests_unit_test_store_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_store_LDADD = $(UNIT_LIBS)
tests_unit_test_util_SOURCES = tests/unit/test-util.c
tests_unit_test_util_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_util_LDADD = $(UNIT_LIBS)
