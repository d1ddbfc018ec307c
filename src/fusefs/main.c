/* SPDX-License-Identifier: MIT */
/* cfscache: cfs-cache entry point: dispatches to the mount or to a subcommand. */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "common/log.h"
#include "fusefs/cmds.h"

static const struct {
	const char *name;
	int (*run)(int argc, char **argv);
} subcommands[] = {
	{ "fetch", cfs_cache_cmd_fetch },
	{ "prefetch", cfs_cache_cmd_prefetch },
	{ "stats", cfs_cache_cmd_stats },
	{ "doctor", cfs_cache_cmd_doctor },
	{ "mount-image", cfs_cache_cmd_mount_image },
	{ "mount", cfs_cache_cmd_mount },
};

int main(int argc, char **argv)
{
	cfs_log_init("cfs-cache");
	if (argc >= 2) {
		for (size_t i = 0; i < sizeof(subcommands) / sizeof(subcommands[0]); i++)
			if (strcmp(argv[1], subcommands[i].name) == 0)
				return subcommands[i].run(argc - 1, argv + 1);
	}
	/* No subcommand: mount, as mount.fuse3 calls us (cfs-cache SOURCE MOUNTPOINT -o ...). */
	return cfs_cache_cmd_mount(argc, argv);
}
