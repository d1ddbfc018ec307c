# SPDX-License-Identifier: MIT
# src/tools: cfs-store, the offline store tool
bin_PROGRAMS += cfs-store
cfs_store_SOURCES = \
	src/tools/cfs-store.c src/tools/cmds.h \
	src/tools/cmd-basic.c \
	src/tools/cmd-image.c \
	src/tools/cmd-gc.c
cfs_store_LDADD = libcfsimage.a $(CFS_COMMON_LIBS)
