# SPDX-License-Identifier: MIT
# src/image: read-only composefs (EROFS) image reader -> libcfsimage.a
noinst_LIBRARIES += libcfsimage.a
libcfsimage_a_SOURCES = src/image/image.c src/image/image.h
CFS_IMAGE_LIBS = libcfsimage.a
