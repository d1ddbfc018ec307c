# SPDX-License-Identifier: MIT
# src/image: read-only composefs (EROFS) image reader -> libcfsimage.a
noinst_LIBRARIES += libcfsimage.a
libcfsimage_a_SOURCES = src/image/image.c src/image/image.h
CFS_IMAGE_LIBS = libcfsimage.a

check_PROGRAMS += tests/unit/test-image
TESTS += tests/unit/test-image
tests_unit_test_image_SOURCES = tests/unit/test-image.c
tests_unit_test_image_CFLAGS = $(AM_CFLAGS) $(CMOCKA_CFLAGS)
tests_unit_test_image_LDADD = libcfsimage.a $(CFS_COMMON_LIBS) $(CMOCKA_LIBS)

IMAGE_INTEGRATION_TESTS = \
	tests/integration/image-objects.sh \
	tests/integration/image-corrupt.sh
TESTS += $(IMAGE_INTEGRATION_TESTS)
EXTRA_DIST += $(IMAGE_INTEGRATION_TESTS)
