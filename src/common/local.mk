# SPDX-License-Identifier: MIT
# src/common: digest, names, store, log, util -> libcfscommon.a
noinst_LIBRARIES += libcfscommon.a
libcfscommon_a_SOURCES = \
	src/common/digest.c src/common/digest.h \
	src/common/digestmap.c src/common/digestmap.h \
	src/common/digestset.c src/common/digestset.h \
	src/common/handoff.c src/common/handoff.h \
	src/common/log.c src/common/log.h \
	src/common/name.c src/common/name.h \
	src/common/progress.c src/common/progress.h \
	src/common/quota.c src/common/quota.h \
	src/common/store.c src/common/store.h src/common/store-internal.h \
	src/common/store-txn.c src/common/store-walk.c src/common/store-writer.c \
	src/common/u64map.c src/common/u64map.h \
	src/common/util.c src/common/util.h
libcfscommon_a_CFLAGS = $(AM_CFLAGS) $(CRYPTO_CFLAGS)
CFS_COMMON_LIBS = libcfscommon.a $(CRYPTO_LIBS) -lm
