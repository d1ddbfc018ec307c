/* SPDX-License-Identifier: MIT */
/* cfscache: cfs-cache fetch (placeholder until its issue lands). */
#include "config.h"

#include <stdio.h>

#include "fusefs/cmds.h"

int cfs_cache_cmd_fetch(int argc, char **argv)
{
	fprintf(stderr, "cfs-cache fetch: not implemented yet\n");
	return 1;
}
