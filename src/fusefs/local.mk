# SPDX-License-Identifier: MIT
# src/fusefs: cfs-cache, the FUSE lazy basedir, and its subcommands
bin_PROGRAMS += cfs-cache
cfs_cache_SOURCES = \
	src/fusefs/main.c src/fusefs/cmds.h \
	src/fusefs/fs-ops.c src/fusefs/fs.h src/fusefs/fs-internal.h \
	src/fusefs/fs-lookup.c src/fusefs/fs-nodes.c src/fusefs/fs-stats.c \
	src/fusefs/devio.c src/fusefs/devio.h \
	src/fusefs/handover.c src/fusefs/handover.h \
	src/fusefs/mount.c src/fusefs/mount-opts.c src/fusefs/mount-opts.h \
	src/fusefs/cmd-fetch.c \
	src/fusefs/fetch-cli.c src/fusefs/fetch-cli.h \
	src/fusefs/cmd-prefetch.c \
	src/fusefs/cmd-stats.c \
	src/fusefs/cmd-doctor.c \
	src/fusefs/cmd-mount-image.c
dist_man_MANS += docs/cfs-cache-prefetch.1
cfs_cache_CFLAGS = $(AM_CFLAGS) $(FUSE3_CFLAGS) $(CURL_CFLAGS) $(SYSTEMD_CFLAGS)
cfs_cache_LDADD = $(CFS_FETCH_LIBS) $(CFS_IMAGE_LIBS) $(CFS_COMMON_LIBS) $(FUSE3_LIBS) \
	$(SYSTEMD_LIBS)
