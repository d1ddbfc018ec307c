/* SPDX-License-Identifier: MIT */
/* cfscache: what the files of cfs-cache's filesystem share: struct cfs_fs, inode numbers, the
 * node table's calls, and the operations one file implements for the ops table of another. */
#ifndef CFS_FUSEFS_FS_INTERNAL_H
#define CFS_FUSEFS_FS_INTERNAL_H

#define FUSE_USE_VERSION 312

#include <fuse_lowlevel.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/stat.h>

#include "common/digest.h"
#include "fusefs/fs.h"

#define PREFIX_INO_BASE 2 /* prefix directory p has inode 2 + p */
#define OBJECT_INO_FLAG (1ULL << 63)
#define XATTR_PREFIX "user.cfs."

/* An object inode the kernel knows, in the node table by its inode. */
struct node {
	uint64_t nlookup;
	/* The kernel allows one backing file per inode: open files share it. */
	uint32_t backing_id, backing_users;
	uint8_t digest[CFS_DIGEST_SIZE];
};

struct cfs_fs {
	struct cfs_store *store;
	struct cfs_quota *quota;
	struct cfs_handoff *handoff;
	_Atomic(struct cfs_fetch *) fetch;
	double timeout;
	uint64_t start_ns;

	pthread_mutex_t lock;     /* guards the node table and the trace file */
	struct cfs_u64map *nodes; /* inode -> struct node */
	FILE *trace;

	atomic_uint_fast64_t lookups, hits, misses, handoffs, not_found, failures, rejected, opens,
	    passthrough_opens, backing_files, reads, read_bytes, pending, store_gone;
	/* When the last line about a removed store, or about a server refusing requests, was
	 * logged: those are said once a minute, not once per lookup. */
	atomic_uint_fast64_t store_gone_said_ns, refused_said_ns;

	/* Objects absent on every server, answered ENOENT without a request until they expire:
	 * direct-mapped, so bounded, and a newer absence replaces an older one. */
	pthread_mutex_t neg_lock;
	struct neg_entry *neg; /* NEG_SLOTS entries; NULL when off */
	uint64_t neg_timeout_ns;
	atomic_uint_fast64_t negative_hits;
};

#define NEG_SLOTS 4096

struct neg_entry {
	uint8_t digest[CFS_DIGEST_SIZE];
	uint64_t expires_ns; /* 0: empty */
};

/* An object's inode: the first 64 bits of its digest with the top bit set. */
static inline fuse_ino_t object_ino(const uint8_t digest[CFS_DIGEST_SIZE])
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = v << 8 | digest[i];
	return (fuse_ino_t)(v | OBJECT_INO_FLAG);
}

static inline bool is_prefix_ino(fuse_ino_t ino)
{
	return ino >= PREFIX_INO_BASE && ino < PREFIX_INO_BASE + 256;
}

/* An open object's file handle: the store file's descriptor, and in the high half the kernel's
 * backing id when the open is a passthrough one. */
static inline int fh_fd(uint64_t fh)
{
	return (int)(uint32_t)fh;
}

static inline uint32_t fh_backing_id(uint64_t fh)
{
	return (uint32_t)(fh >> 32);
}

/* ---- fs-nodes.c ---- */

/* Takes one kernel reference on the object's node. Returns 0, -ENOMEM or -EIO (collision). */
int cfs_fs_node_ref(struct cfs_fs *fs, const uint8_t digest[CFS_DIGEST_SIZE], fuse_ino_t *ino_ret);
/* Drops @count kernel references; the node goes with the last. */
void cfs_fs_node_unref(struct cfs_fs *fs, fuse_ino_t ino, uint64_t count);
/* The digest of a known inode; false when the kernel forgot it. */
bool cfs_fs_node_digest(struct cfs_fs *fs, fuse_ino_t ino, uint8_t digest[CFS_DIGEST_SIZE]);
uint32_t cfs_fs_node_backing_get(struct cfs_fs *fs, fuse_ino_t ino, int fd);
void cfs_fs_node_backing_put(struct cfs_fs *fs, fuse_ino_t ino, uint32_t id);
void cfs_fs_dir_attr(fuse_ino_t ino, struct stat *st);
void cfs_fs_object_attr(fuse_ino_t ino, const struct stat *store_st, struct stat *st);
/* The object's store file, opened read-only into *@fd_ret: 0, -ENOENT or another -errno. */
int cfs_fs_open_object_fd(struct cfs_fs *fs, const uint8_t digest[CFS_DIGEST_SIZE], int *fd_ret);
/* Answers an open of @ino with @fd (owned from here on). */
void cfs_fs_reply_open_object(struct cfs_fs *fs, fuse_req_t req, fuse_ino_t ino,
                              struct fuse_file_info *fi, int fd);

/* ---- fs-lookup.c ---- */

enum pending_kind { PENDING_LOOKUP, PENDING_OPEN };

/* Parks @req (a lookup, or an open of @ino with @fi) until the object is fetched; the fetch
 * completion replies. */
void cfs_fs_start_fetch(struct cfs_fs *fs, fuse_req_t req, enum pending_kind kind,
                        const uint8_t digest[CFS_DIGEST_SIZE], fuse_ino_t ino,
                        const struct fuse_file_info *fi);
void cfs_fs_op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name);

/* ---- fs-stats.c ---- */

void cfs_fs_op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size);
void cfs_fs_op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size);

#endif
