# SPDX-License-Identifier: MIT
# src/fetcher: the libcurl-multi fetch engine -> libcfsfetch.a, its tests, man page and benchmark
noinst_LIBRARIES += libcfsfetch.a
libcfsfetch_a_SOURCES = src/fetcher/fetch.h src/fetcher/fetch-internal.h src/fetcher/fetch-api.c \
	src/fetcher/fetch-engine.c src/fetcher/fetch-attempt.c src/fetcher/fetch-stage.c \
	src/fetcher/fetch-commit.c src/fetcher/fetch-table.c src/fetcher/fetch-probe.c \
	src/fetcher/fetch-opts.c src/fetcher/fetch-opts.h \
	src/fetcher/fetch-push.c src/fetcher/fetch-push.h
libcfsfetch_a_CFLAGS = $(AM_CFLAGS) $(CURL_CFLAGS) $(ZSTD_CFLAGS)
CFS_FETCH_LIBS = libcfsfetch.a $(CURL_LIBS) $(ZSTD_LIBS)

check_PROGRAMS += tests/unit/test-fetch
TESTS += tests/unit/test-fetch
tests_unit_test_fetch_SOURCES = tests/unit/test-fetch.c
tests_unit_test_fetch_CFLAGS = $(AM_CFLAGS) $(CMOCKA_CFLAGS) $(CURL_CFLAGS)
tests_unit_test_fetch_LDADD = $(CFS_FETCH_LIBS) $(CFS_COMMON_LIBS) $(CMOCKA_LIBS)
check_PROGRAMS += tests/unit/test-attempt
TESTS += tests/unit/test-attempt
tests_unit_test_attempt_SOURCES = tests/unit/test-attempt.c
tests_unit_test_attempt_CFLAGS = $(AM_CFLAGS) $(CMOCKA_CFLAGS) $(CURL_CFLAGS)
tests_unit_test_attempt_LDADD = $(CFS_FETCH_LIBS) $(CFS_COMMON_LIBS) $(CMOCKA_LIBS)
check_PROGRAMS += tests/unit/test-fetch-push
TESTS += tests/unit/test-fetch-push
tests_unit_test_fetch_push_SOURCES = tests/unit/test-fetch-push.c tests/unit/store-fixture.h
tests_unit_test_fetch_push_CFLAGS = $(AM_CFLAGS) $(CMOCKA_CFLAGS)
tests_unit_test_fetch_push_LDADD = $(CFS_FETCH_LIBS) $(CFS_COMMON_LIBS) $(CMOCKA_LIBS)
check_PROGRAMS += tests/unit/test-fetch-opts
TESTS += tests/unit/test-fetch-opts
tests_unit_test_fetch_opts_SOURCES = tests/unit/test-fetch-opts.c
tests_unit_test_fetch_opts_CFLAGS = $(AM_CFLAGS) $(CMOCKA_CFLAGS)
tests_unit_test_fetch_opts_LDADD = $(CFS_FETCH_LIBS) $(CFS_COMMON_LIBS) $(CMOCKA_LIBS)
# The engine test starts tests/faultd/faultd (a check program too) for its single-flight case.

FETCH_INTEGRATION_TESTS = \
	tests/integration/fetch-basic.sh \
	tests/integration/fetch-crash.sh \
	tests/integration/fetch-faults.sh \
	tests/integration/fetch-resume.sh \
	tests/integration/fetch-servers.sh
TESTS += $(FETCH_INTEGRATION_TESTS)
EXTRA_DIST += $(FETCH_INTEGRATION_TESTS) tests/integration/fetch-lib.sh
EXTRA_DIST += bench/fetch.sh
dist_man_MANS += docs/cfs-cache-fetch.1
