# SPDX-License-Identifier: MIT
# src/tools: cfs-store, the offline store tool
bin_PROGRAMS += cfs-store
cfs_store_SOURCES = \
	src/tools/cfs-store.c src/tools/cmds.h \
	src/tools/cmd-basic.c \
	src/tools/cmd-image.c \
	src/tools/cmd-gc.c \
	src/tools/cmd-push.c
cfs_store_CFLAGS = $(AM_CFLAGS)
cfs_store_LDADD = libcfsimage.a $(CFS_FETCH_LIBS) $(CFS_COMMON_LIBS)

# the node tools as a user meets them
STORE_TOOLS_TESTS = \
	tests/integration/store-strays.sh \
	tests/integration/store-special.sh \
	tests/integration/store-global-opts.sh \
	tests/integration/store-gc.sh \
	tests/integration/install.sh \
	tests/integration/store-progress.sh
TESTS += $(STORE_TOOLS_TESTS)
EXTRA_DIST += $(STORE_TOOLS_TESTS)

# push and deployment (contrib/)
PUSH_DEPLOY_TESTS = \
	tests/integration/push.sh \
	tests/integration/deploy-configs.sh
TESTS += $(PUSH_DEPLOY_TESTS)
EXTRA_DIST += $(PUSH_DEPLOY_TESTS) \
	docs/deployment.md \
	contrib/fstab.example \
	contrib/nginx/cfs-objects.conf \
	contrib/nginx/cfs-proxy-cache.conf
