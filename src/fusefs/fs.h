/* SPDX-License-Identifier: MIT */
/* cfscache: the cfs-cache FUSE filesystem: XX/<62hex> objects over a local store and fetcher. */
#ifndef CFS_FUSEFS_FS_H
#define CFS_FUSEFS_FS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "common/handoff.h"
#include "common/quota.h"
#include "common/store.h"
#include "fetcher/fetch.h"

struct cfs_fs;
struct fuse_lowlevel_ops;

struct cfs_fs_options {
	struct cfs_store *store;  /* not owned */
	struct cfs_fetch *fetch;  /* not owned; NULL = local store only */
	double entry_timeout;     /* seconds the kernel may cache names and attributes */
	const char *trace_path;   /* optional: append first fetches here */
	struct cfs_quota *quota;  /* optional, not owned: use records and eviction */
	/* Optional, not owned: objects are answered through this hand-off directory (lookups get
	 * ENOENT once the object is linked there); NULL: as FUSE inodes, read through FUSE. */
	struct cfs_handoff *handoff;
	/* Objects absent on every server are answered ENOENT without a request for this long
	 * (at most 4096 remembered); 0 = ask the servers every time. */
	uint64_t negative_timeout_ms;
};

/* Counters of the filesystem layer (the fetcher keeps its own). */
struct cfs_fs_stats {
	uint64_t lookups;    /* object lookups */
	uint64_t hits;       /* answered from the local store */
	uint64_t misses;     /* needed a fetch */
	uint64_t handoffs;   /* lookups answered through the hand-off directory */
	uint64_t not_found;  /* absent on every server */
	uint64_t failures;   /* fetch failures answered with EIO */
	uint64_t rejected;   /* malformed names, answered ENOENT without I/O */
	uint64_t opens;
	uint64_t passthrough_opens; /* opens bound to the store file in the kernel */
	uint64_t backing_files;     /* store files registered with the kernel now (one per inode) */
	uint64_t reads;             /* reads that reached cfs-cache (not passthrough ones) */
	uint64_t read_bytes;
	uint64_t pending;    /* requests waiting for a fetch now */
	uint64_t store_gone; /* misses answered EIO because the store directory was removed */
	uint64_t negative_hits; /* lookups answered ENOENT from the negative cache */
};

int cfs_fs_new(const struct cfs_fs_options *o, struct cfs_fs **fs_ret);
void cfs_fs_free(struct cfs_fs *fs);
/* The low-level operations table; userdata for fuse_session_new is the cfs_fs. */
const struct fuse_lowlevel_ops *cfs_fs_ops(void);
void cfs_fs_get_stats(struct cfs_fs *fs, struct cfs_fs_stats *stats_ret);
/* Writes every numeric counter (and each server's state) to @f in the Prometheus text format
 * (node_exporter's textfile collector), labelled mount=@mountpoint. Returns 0 or -errno. */
int cfs_fs_write_metrics(struct cfs_fs *fs, FILE *f, const char *mountpoint);
/* Sets the fetcher once it is running (it starts after daemonizing). */
void cfs_fs_set_fetch(struct cfs_fs *fs, struct cfs_fetch *fetch);

#endif
