# SPDX-License-Identifier: MIT
# src/fetcher: the libcurl-multi fetch engine -> libcfsfetch.a
noinst_LIBRARIES += libcfsfetch.a
libcfsfetch_a_SOURCES = src/fetcher/fetch.h src/fetcher/fetch.c
libcfsfetch_a_CFLAGS = $(AM_CFLAGS) $(CURL_CFLAGS) $(ZSTD_CFLAGS)
CFS_FETCH_LIBS = libcfsfetch.a $(CURL_LIBS) $(ZSTD_LIBS)
