/* SPDX-License-Identifier: MIT */
/* cfscache: cfs-cache prefetch (placeholder until its issue lands). */
#include "config.h"

#include <stdio.h>

#include "fusefs/cmds.h"

int cfs_cache_cmd_prefetch(int argc, char **argv)
{
	fprintf(stderr, "cfs-cache prefetch: not implemented yet\n");
	return 1;
}
