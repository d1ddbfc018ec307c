/* SPDX-License-Identifier: MIT */
/* cfscache: the mount daemon's options: getopt_long on the command line, the same names in
 * `-o name=value[,...]` (mount.fuse3), FUSE's own -o options passed on. */
#ifndef CFS_FUSEFS_MOUNT_OPTS_H
#define CFS_FUSEFS_MOUNT_OPTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "common/log.h"
#include "fetcher/fetch-opts.h"

#define MOUNT_MAX_PINS 32
/* The client options the mount takes (fetcher/fetch-opts.h parses and checks them). */
#define MOUNT_FETCH_OPTS                                                                           \
	(CFS_FETCH_OPT(SERVER) | CFS_FETCH_OPT_TLS | CFS_FETCH_OPT(NO_ZSTD) |                      \
	 CFS_FETCH_OPT(MAX_TRANSFERS) | CFS_FETCH_OPT(CONNECT_TIMEOUT) |                           \
	 CFS_FETCH_OPT(LOW_SPEED_TIME) | CFS_FETCH_OPT(RETRIES) | CFS_FETCH_OPT(COMMIT_DELAY) |    \
	 CFS_FETCH_OPT(MAX_OBJECT_SIZE))

/* Option values: the client's parsed and checked at once, the mount's own as given (strings
 * owned by the struct), checked later by who uses them. */
struct mount_opts {
	struct cfs_fetch_opts fetch;
	char *store;
	char *trace, *log_level, *log_file, *timeout;
	char *max_size, *low_water, *rescan, *handoff;
	char *negative_timeout, *metrics_file, *metrics_interval;
	char *pins[MOUNT_MAX_PINS];
	size_t n_pins;
	int no_passthrough, passthrough, no_handoff, supervise, use_syslog;
	bool show_help, show_version, foreground, debug, singlethread;
	int verbosity;   /* -v count minus -q count */
	char *fuse_opts; /* "-o" options for FUSE, comma-separated, or NULL */
	char *source;    /* mount.fuse3's SOURCE, or NULL */
	char *mountpoint;
};

/* Parses @argv (argv[0] is the command's name). Misuse prints a message naming the option to
 * stderr and returns -EINVAL (exit 2); -ENOMEM otherwise. Free with cfs_mount_opts_free. */
int cfs_mount_opts_parse(int argc, char **argv, struct mount_opts *mo);
void cfs_mount_opts_free(struct mount_opts *mo);
/* The log level from --log-level, -q and -v: 0 or -EINVAL (message printed). */
int cfs_mount_opts_log_level(const struct mount_opts *mo, enum cfs_log_level *level_ret);
/* The help lines of the client options. */
void cfs_mount_opts_print_fetch_help(FILE *f);

#endif
