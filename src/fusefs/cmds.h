/* SPDX-License-Identifier: MIT */
/* cfscache: cfs-cache subcommands; each takes argv from its own name on and returns 0/1/2. */
#ifndef CFS_FUSEFS_CMDS_H
#define CFS_FUSEFS_CMDS_H

#define CFS_EXIT_MISUSE 2

/* cfs-cache fetch: fetch objects into a store (src/fusefs/cmd-fetch.c). */
int cfs_cache_cmd_fetch(int argc, char **argv);
/* cfs-cache prefetch: fetch an image's missing objects (src/fusefs/cmd-prefetch.c). */
int cfs_cache_cmd_prefetch(int argc, char **argv);
/* cfs-cache stats: print a mount's counters (src/fusefs/cmd-stats.c). */
int cfs_cache_cmd_stats(int argc, char **argv);
/* Prints @s to stdout as a JSON string (quotes, backslashes, control characters escaped); for
 * the --json output of stats and doctor. */
void cfs_cache_print_json_string(const char *s);
/* cfs-cache doctor: checks what a node needs (src/fusefs/cmd-doctor.c). */
int cfs_cache_cmd_doctor(int argc, char **argv);
/* cfs-cache mount-image: EROFS + overlayfs composefs mount (src/fusefs/cmd-mount-image.c). */
int cfs_cache_cmd_mount_image(int argc, char **argv);
/* cfs-cache [mount]: the FUSE lazy basedir (src/fusefs/fs.c). */
int cfs_cache_cmd_mount(int argc, char **argv);

#endif
