/* SPDX-License-Identifier: MIT */
/* cfscache: the cmocka fixture of the unit tests that need a fresh store in a temp directory. */
#ifndef CFS_TESTS_STORE_FIXTURE_H
#define CFS_TESTS_STORE_FIXTURE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/store.h"

struct fixture {
	char dir[64];
	char path[96];
	struct cfs_store *store;
};

/* A store at /tmp/cfs-test-@name-XXXXXX/store. */
static inline int store_fixture_setup(void **state, const char *name)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "/tmp/cfs-test-%s-XXXXXX", name);
	if (!mkdtemp(f->dir))
		return -1;
	snprintf(f->path, sizeof(f->path), "%s/store", f->dir);
	if (cfs_store_open(f->path, CFS_STORE_CREATE, &f->store) < 0)
		return -1;
	*state = f;
	return 0;
}

static inline int teardown(void **state)
{
	struct fixture *f = *state;
	char cmd[160];

	cfs_store_free(f->store);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
	if (system(cmd) != 0)
		return -1;
	free(f);
	return 0;
}

#endif
