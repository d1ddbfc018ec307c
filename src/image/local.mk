# SPDX-License-Identifier: MIT
# src/image: composefs (EROFS) image reader and writer, dump format -> libcfsimage.a
noinst_LIBRARIES += libcfsimage.a
libcfsimage_a_SOURCES = src/image/image.c src/image/image.h src/image/image-internal.h \
	src/image/image-walk.c src/image/image-pin.c \
	src/image/writer.c src/image/writer.h src/image/writer-internal.h \
	src/image/wnode.c src/image/overlay.c \
	src/image/dump.c src/image/tree.c
CFS_IMAGE_LIBS = libcfsimage.a

check_PROGRAMS += tests/unit/test-image
TESTS += tests/unit/test-image
tests_unit_test_image_SOURCES = tests/unit/test-image.c
tests_unit_test_image_CFLAGS = $(AM_CFLAGS) $(CMOCKA_CFLAGS)
tests_unit_test_image_LDADD = libcfsimage.a $(CFS_COMMON_LIBS) $(CMOCKA_LIBS)

check_PROGRAMS += tests/unit/test-image-writer
TESTS += tests/unit/test-image-writer
tests_unit_test_image_writer_SOURCES = tests/unit/test-image-writer.c
tests_unit_test_image_writer_CFLAGS = $(AM_CFLAGS) $(CMOCKA_CFLAGS)
tests_unit_test_image_writer_LDADD = libcfsimage.a $(CFS_COMMON_LIBS) $(CMOCKA_LIBS)

IMAGE_INTEGRATION_TESTS = \
	tests/integration/image-objects.sh \
	tests/integration/image-corrupt.sh \
	tests/integration/image-fuzz.sh \
	tests/integration/image-prefetch.sh \
	tests/integration/image-vectors.sh \
	tests/integration/image-whiteouts.sh
TESTS += $(IMAGE_INTEGRATION_TESTS)
EXTRA_DIST += $(IMAGE_INTEGRATION_TESTS)

# Fuzzing the parsers: built with clang's libFuzzer directly (CC may be gcc); `make fuzz` (images
# made by mkfs.erofs and by the writer) and `make fuzz-dump` (dump text). FUZZ_TIME=300 for longer.
FUZZ_CC = clang
FUZZ_CFLAGS = -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
FUZZ_TIME = 30
FUZZ_LIB_SRCS = \
	$(top_srcdir)/src/image/image.c $(top_srcdir)/src/image/image-walk.c \
	$(top_srcdir)/src/image/dump.c $(top_srcdir)/src/image/writer.c \
	$(top_srcdir)/src/image/wnode.c $(top_srcdir)/src/image/overlay.c \
	$(top_srcdir)/src/common/name.c $(top_srcdir)/src/common/util.c \
	$(top_srcdir)/src/common/log.c $(top_srcdir)/src/common/digestset.c \
	$(top_srcdir)/src/common/digestmap.c $(top_srcdir)/src/common/u64map.c
FUZZ_IMAGE_SRCS = $(top_srcdir)/tests/fuzz/fuzz-image.c $(FUZZ_LIB_SRCS)
FUZZ_DUMP_SRCS = $(top_srcdir)/tests/fuzz/fuzz-dump.c $(FUZZ_LIB_SRCS)
EXTRA_DIST += tests/fuzz/fuzz-image.c tests/fuzz/fuzz-dump.c tests/fuzz/make-corpus.sh
tests/fuzz/fuzz-image: $(FUZZ_IMAGE_SRCS) $(top_srcdir)/src/image/image.h \
		$(top_srcdir)/src/image/image-internal.h \
		$(top_srcdir)/src/image/writer.h $(top_srcdir)/src/image/writer-internal.h
	@mkdir -p tests/fuzz
	$(FUZZ_CC) $(FUZZ_CFLAGS) -I$(top_srcdir)/src -I$(top_builddir) -D_GNU_SOURCE \
		-o $@ $(FUZZ_IMAGE_SRCS) -lm
tests/fuzz/fuzz-dump: $(FUZZ_DUMP_SRCS) $(top_srcdir)/src/image/image.h \
		$(top_srcdir)/src/image/image-internal.h \
		$(top_srcdir)/src/image/writer.h $(top_srcdir)/src/image/writer-internal.h
	@mkdir -p tests/fuzz
	$(FUZZ_CC) $(FUZZ_CFLAGS) -I$(top_srcdir)/src -I$(top_builddir) -D_GNU_SOURCE \
		-o $@ $(FUZZ_DUMP_SRCS) -lm
tests/fuzz/corpus-seed:
	$(SHELL) $(top_srcdir)/tests/fuzz/make-corpus.sh $@
fuzz: tests/fuzz/fuzz-image tests/fuzz/corpus-seed
	@mkdir -p tests/fuzz/corpus
	./tests/fuzz/fuzz-image -max_total_time=$(FUZZ_TIME) -timeout=10 -rss_limit_mb=2048 \
		-max_len=65536 -print_final_stats=1 tests/fuzz/corpus tests/fuzz/corpus-seed
# The dump parser and the writer, seeded with the reference dumps when they are there.
fuzz-dump: tests/fuzz/fuzz-dump
	@mkdir -p tests/fuzz/corpus-dump
	-cp $(top_srcdir)/../shared/vectors/composefs-1.0.8/features.dump tests/fuzz/corpus-dump/ 2>/dev/null
	./tests/fuzz/fuzz-dump -max_total_time=$(FUZZ_TIME) -timeout=10 -rss_limit_mb=2048 \
		-max_len=65536 -print_final_stats=1 tests/fuzz/corpus-dump
clean-local: clean-fuzz
clean-fuzz:
	rm -rf tests/fuzz/fuzz-image tests/fuzz/fuzz-dump tests/fuzz/corpus tests/fuzz/corpus-dump \
		tests/fuzz/corpus-seed crash-* leak-* timeout-* oom-*
.PHONY: fuzz fuzz-dump clean-fuzz
