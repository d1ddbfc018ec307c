/* SPDX-License-Identifier: MIT */
/* cfscache: cfs-cache mount-image (placeholder until its issue lands). */
#include "config.h"

#include <stdio.h>

#include "fusefs/cmds.h"

int cfs_cache_cmd_mount_image(int argc, char **argv)
{
	fprintf(stderr, "cfs-cache mount-image: not implemented yet\n");
	return 1;
}
