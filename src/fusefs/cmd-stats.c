/* SPDX-License-Identifier: MIT */
/* cfscache: cfs-cache stats (placeholder until its issue lands). */
#include "config.h"

#include <stdio.h>

#include "fusefs/cmds.h"

int cfs_cache_cmd_stats(int argc, char **argv)
{
	fprintf(stderr, "cfs-cache stats: not implemented yet\n");
	return 1;
}
