# SPDX-License-Identifier: MIT
# tests/faultd: fault-injecting HTTP test server (built for make check only). The binary is
# tests/faultd/faultd: "tests/faultd" itself is the directory holding its objects.
check_PROGRAMS += tests/faultd/faultd
tests_faultd_faultd_SOURCES = tests/faultd/faultd.c
tests_faultd_faultd_CFLAGS = $(AM_CFLAGS) $(ZSTD_CFLAGS)
tests_faultd_faultd_LDADD = $(ZSTD_LIBS)
