/* SPDX-License-Identifier: MIT */
/* cfscache: the FUSE lazy basedir (placeholder). */
#include "config.h"

#include <stdio.h>

#include "fusefs/cmds.h"

int cfs_cache_cmd_mount(int argc, char **argv)
{
	fprintf(stderr, "cfs-cache: mount not implemented yet\n");
	return 1;
}
