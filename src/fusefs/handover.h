/* SPDX-License-Identifier: MIT */
/* cfscache: keeping a FUSE connection across daemon processes (crash, restart, upgrade).
 *
 * The connection (/dev/fuse descriptor, fd name "cfs-fuse") and a memfd holding the kernel's
 * FUSE_INIT ("cfs-init", see devio.h) are what a new process needs to go on serving a mount. They
 * reach it the way systemd passes stored descriptors to a restarted service: LISTEN_FDS,
 * LISTEN_PID and LISTEN_FDNAMES, fds from 3. The first daemon gives them to the service manager
 * (FDSTORE=1); `--supervise` keeps them in a small parent that restarts the worker; SIGHUP makes
 * the daemon re-execute its binary with them. */
#ifndef CFS_FUSEFS_HANDOVER_H
#define CFS_FUSEFS_HANDOVER_H

#include <stdbool.h>

struct cfs_handover {
	int fuse_fd; /* the connection */
	int init_fd; /* memfd with the kernel's FUSE_INIT */
	bool adopted; /* inherited from a previous process */
};

/* Takes an inherited connection from LISTEN_FDS (and clears those variables). Returns 1 with
 * both fds set, 0 when there is none, or -errno. */
int cfs_handover_from_env(struct cfs_handover *h);
/* Refuses, with a message on stderr, a mountpoint that a live cfs-cache serves, or whose
 * connection another process holds; removes a dead one (its daemon gone, its connection closed).
 * 0 or -EBUSY. */
int cfs_handover_check_mountpoint(const char *mountpoint);
/* For a new mount: keeps @fuse_fd and makes the INIT memfd. 0 or -errno. */
int cfs_handover_start(struct cfs_handover *h, int fuse_fd);
/* Under a service manager (NOTIFY_SOCKET): stores the fds (new mounts) and says READY=1. */
void cfs_handover_notify(const struct cfs_handover *h, const char *mountpoint);
/* Re-executes @exe with @argv and the connection. Returns only on failure (-errno). */
int cfs_handover_exec(const struct cfs_handover *h, const char *exe, char **argv);
/* The supervising parent: runs @exe @argv as a worker serving the connection, again whenever it
 * dies, until it exits 0 (a clean unmount) or a stop signal comes (forwarded; SIGHUP is passed
 * on for an upgrade). Returns the exit status, or -errno. */
int cfs_handover_supervise(const struct cfs_handover *h, const char *exe, char **argv);

#endif
