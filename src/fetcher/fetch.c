/* SPDX-License-Identifier: MIT */
/* cfscache: fetch engine (placeholder until the fetcher issue lands). */
#include "config.h"

#include <errno.h>
#include <string.h>

#include "fetcher/fetch.h"

void cfs_fetch_options_init(struct cfs_fetch_options *o)
{
	memset(o, 0, sizeof(*o));
}

int cfs_fetch_new(const struct cfs_fetch_options *o, struct cfs_fetch **fetch_ret)
{
	return -ENOSYS;
}

void cfs_fetch_free(struct cfs_fetch *fetch)
{
}
