# SPDX-License-Identifier: MIT
# src/server: cfs-serve, the HTTP(S) object server
bin_PROGRAMS += cfs-serve
cfs_serve_SOURCES = \
	src/server/main.c \
	src/server/serve.c src/server/server.h src/server/server-internal.h \
	src/server/listen.c \
	src/server/request.c \
	src/server/object.c \
	src/server/upload.c \
	src/server/conn.c \
	src/server/gate.c \
	src/server/reply.c \
	src/server/metrics.c \
	src/server/http.c src/server/http.h \
	src/server/ocache.c src/server/ocache.h \
	src/server/upstream.c src/server/upstream.h \
	src/server/zcache.c src/server/zcache.h
cfs_serve_CFLAGS = $(AM_CFLAGS) $(LIBEVENT_CFLAGS) $(LIBEVENT_OPENSSL_CFLAGS) $(SSL_CFLAGS) \
	$(ZSTD_CFLAGS)
cfs_serve_LDADD = $(CFS_FETCH_LIBS) $(CFS_COMMON_LIBS) $(LIBEVENT_LIBS) $(LIBEVENT_OPENSSL_LIBS) $(SSL_LIBS) \
	$(ZSTD_LIBS)
dist_man_MANS += docs/cfs-serve.1

# Unit tests of cfs-serve's parts link the server's own objects they test.
check_PROGRAMS += tests/unit/test-http
TESTS += tests/unit/test-http
tests_unit_test_http_SOURCES = tests/unit/test-http.c src/server/http.c src/server/http.h
tests_unit_test_http_CFLAGS = $(AM_CFLAGS) $(CMOCKA_CFLAGS)
tests_unit_test_http_LDADD = $(CFS_COMMON_LIBS) $(CMOCKA_LIBS)
check_PROGRAMS += tests/unit/test-ocache
TESTS += tests/unit/test-ocache
tests_unit_test_ocache_SOURCES = tests/unit/test-ocache.c src/server/ocache.c src/server/ocache.h
tests_unit_test_ocache_CFLAGS = $(AM_CFLAGS) $(CMOCKA_CFLAGS) $(LIBEVENT_CFLAGS)
tests_unit_test_ocache_LDADD = $(CFS_COMMON_LIBS) $(LIBEVENT_LIBS) $(CMOCKA_LIBS)
check_PROGRAMS += tests/unit/test-listen
TESTS += tests/unit/test-listen
tests_unit_test_listen_SOURCES = tests/unit/test-listen.c src/server/listen.c
tests_unit_test_listen_CFLAGS = $(AM_CFLAGS) $(CMOCKA_CFLAGS) $(LIBEVENT_CFLAGS) $(SSL_CFLAGS)
tests_unit_test_listen_LDADD = $(CFS_COMMON_LIBS) $(CMOCKA_LIBS)
EXTRA_DIST += bench/serve.sh contrib/squid/cfs-site-cache.conf

SERVER_TESTS = \
	tests/integration/server-objects.sh \
	tests/integration/server-hostile.sh \
	tests/integration/server-port.sh \
	tests/integration/server-fds.sh \
	tests/integration/server-slowloris.sh \
	tests/integration/server-upload-flood.sh \
	tests/integration/server-negative.sh \
	tests/integration/squid-chain.sh \
	tests/integration/server-tls-upload.sh \
	tests/integration/server-lifecycle.sh \
	tests/integration/scale-chain.sh \
	tests/integration/scale-pullthrough.sh
TESTS += $(SERVER_TESTS)
EXTRA_DIST += $(SERVER_TESTS) tests/integration/load/fd_flood.py \
	tests/integration/load/slowloris.py tests/integration/load/upload_flood.py \
	tests/integration/load/pipeline_flood.py
