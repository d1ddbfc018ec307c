/* SPDX-License-Identifier: MIT */
/* cfscache: the inodes of cfs-cache: the node table of objects (inode -> digest, counted by kernel
 * lookups, with the passthrough backing file its open files share), attributes, and the reply to
 * an open. */
#include "config.h"

#include "fusefs/fs-internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/u64map.h"
#include "fusefs/devio.h"

int cfs_fs_node_ref(struct cfs_fs *fs, const uint8_t digest[CFS_DIGEST_SIZE], fuse_ino_t *ino_ret)
{
	fuse_ino_t ino = object_ino(digest);
	struct node *n;
	int r = 0;

	pthread_mutex_lock(&fs->lock);
	n = cfs_u64map_get(fs->nodes, ino);
	if (n) {
		if (memcmp(n->digest, digest, CFS_DIGEST_SIZE) != 0)
			r = -EIO; /* two digests sharing 64 bits: practically never */
		else
			n->nlookup++;
	} else {
		n = calloc(1, sizeof(*n));
		if (!n) {
			r = -ENOMEM;
		} else {
			n->nlookup = 1;
			memcpy(n->digest, digest, CFS_DIGEST_SIZE);
			r = cfs_u64map_put(fs->nodes, ino, n, NULL);
			if (r < 0)
				free(n);
		}
	}
	pthread_mutex_unlock(&fs->lock);
	if (r == 0)
		*ino_ret = ino;
	return r;
}

void cfs_fs_node_unref(struct cfs_fs *fs, fuse_ino_t ino, uint64_t count)
{
	struct node *n, *victim = NULL;

	pthread_mutex_lock(&fs->lock);
	n = cfs_u64map_get(fs->nodes, ino);
	if (n) {
		if (n->nlookup <= count)
			victim = cfs_u64map_remove(fs->nodes, ino);
		else
			n->nlookup -= count;
	}
	pthread_mutex_unlock(&fs->lock);
	free(victim);
}

bool cfs_fs_node_digest(struct cfs_fs *fs, fuse_ino_t ino, uint8_t digest[CFS_DIGEST_SIZE])
{
	struct node *n;

	pthread_mutex_lock(&fs->lock);
	n = cfs_u64map_get(fs->nodes, ino);
	if (n)
		memcpy(digest, n->digest, CFS_DIGEST_SIZE);
	pthread_mutex_unlock(&fs->lock);
	return n != NULL;
}

/* A passthrough backing id for an open of @ino whose store file is @fd (0: none), shared by all
 * open files of the inode. */
uint32_t cfs_fs_node_backing_get(struct cfs_fs *fs, fuse_ino_t ino, int fd)
{
	struct node *n;
	uint32_t id = 0;

	pthread_mutex_lock(&fs->lock);
	n = cfs_u64map_get(fs->nodes, ino);
	if (n) {
		if (!n->backing_id) {
			n->backing_id = cfs_passthrough_attach(fd);
			if (n->backing_id)
				atomic_fetch_add(&fs->backing_files, 1);
		}
		if (n->backing_id) {
			n->backing_users++;
			id = n->backing_id;
		}
	}
	pthread_mutex_unlock(&fs->lock);
	return id;
}

void cfs_fs_node_backing_put(struct cfs_fs *fs, fuse_ino_t ino, uint32_t id)
{
	struct node *n;
	bool last = false;

	if (!id)
		return;
	pthread_mutex_lock(&fs->lock);
	n = cfs_u64map_get(fs->nodes, ino);
	if (n && n->backing_id == id && --n->backing_users == 0) {
		n->backing_id = 0;
		last = true;
	}
	pthread_mutex_unlock(&fs->lock);
	if (last) {
		cfs_passthrough_detach(id);
		atomic_fetch_sub(&fs->backing_files, 1);
	}
}

void cfs_fs_dir_attr(fuse_ino_t ino, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	st->st_mode = S_IFDIR | 0555;
	st->st_nlink = ino == FUSE_ROOT_ID ? 258 : 2;
}

void cfs_fs_object_attr(fuse_ino_t ino, const struct stat *store_st, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	st->st_mode = S_IFREG | 0444;
	st->st_nlink = 1;
	st->st_size = store_st->st_size;
	st->st_blocks = store_st->st_blocks;
	st->st_blksize = 4096;
	st->st_mtim = store_st->st_mtim;
	st->st_ctim = store_st->st_ctim;
	st->st_atim = store_st->st_atim;
}

int cfs_fs_open_object_fd(struct cfs_fs *fs, const uint8_t digest[CFS_DIGEST_SIZE], int *fd_ret)
{
	int r = cfs_store_open_object(fs->store, digest, fd_ret);

	return r == -EUCLEAN ? -EIO : r;
}

/* Answers an open of an object with its store file, bound to it in the kernel where possible. */
void cfs_fs_reply_open_object(struct cfs_fs *fs, fuse_req_t req, fuse_ino_t ino,
                              struct fuse_file_info *fi, int fd)
{
	uint32_t id = cfs_fs_node_backing_get(fs, ino, fd);

	if (id)
		atomic_fetch_add(&fs->passthrough_opens, 1);
	fi->fh = (uint64_t)(uint32_t)fd | (uint64_t)id << 32;
	fi->keep_cache = 1; /* immutable content (ignored for passthrough) */
	if (cfs_passthrough_reply_open(req, fi, id) == -ENOENT) {
		/* The kernel dropped the request meanwhile: no release will come. */
		cfs_fs_node_backing_put(fs, ino, id);
		close(fd);
	}
}
