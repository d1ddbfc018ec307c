/* SPDX-License-Identifier: MIT */
/* cfscache: the image writer's tree nodes, shared by the writer, the dump parser and tests. */
#ifndef CFS_WRITER_INTERNAL_H
#define CFS_WRITER_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "image/writer.h"

#define CFS_ALIGN_UP(x, a) (((x) + (a)-1) / (a) * (a))
#define CFS_WRITER_NAME_MAX 255
/* Largest inline content a dump may give (mkcomposefs's limit). */
#define CFS_WRITER_CONTENT_MAX 5000

struct cfs_wxattr {
	char *key;
	uint8_t *value;
	size_t len;
};

/* One inode of the tree, or (link_to set) one more name of another inode. */
struct cfs_wnode {
	/* What the source says. */
	char *name; /* in the parent; NULL for the root */
	size_t name_len;
	struct cfs_wnode *parent;
	struct cfs_wnode **children; /* sorted by strcmp of the names */
	size_t nchildren, children_cap;
	struct cfs_wnode *link_to; /* hard link: the inode this name is for */
	uint32_t mode, uid, gid, nlink;
	uint64_t rdev, size;
	int64_t mtime_sec;
	uint32_t mtime_nsec;
	char *payload;    /* symlink target, or a regular file's object path */
	uint8_t *content; /* inline content of a regular file (size bytes) */
	bool has_digest;
	uint8_t digest[CFS_DIGEST_SIZE];
	struct cfs_wxattr *xattrs;
	size_t nxattrs;

	/* Layout, filled by cfs_tree_write. */
	struct cfs_wnode *next; /* breadth-first order */
	int64_t *shared_idx;    /* per xattr: offset in the shared area, or -1 */
	uint32_t ino, n_blocks, tailsize, ipad;
	uint64_t nid;
	size_t isize;
	bool compact;
};

struct cfs_tree {
	struct cfs_wnode *root;
};

int cfs_wnode_new(struct cfs_wnode **node_ret);
/* Frees @n and everything below it (not what links point at). */
void cfs_wnode_free(struct cfs_wnode *n);
/* Adds @child under @dir (which takes ownership on success). Returns 0, -EEXIST, -ENOTDIR,
 * -EINVAL (empty name), -ENAMETOOLONG or -ENOMEM. */
int cfs_wnode_add_child(struct cfs_wnode *dir, struct cfs_wnode *child, const char *name);
struct cfs_wnode *cfs_wnode_lookup(const struct cfs_wnode *dir, const char *name);
/* Sets (or replaces) an xattr. Returns 0, -ERANGE (bad name), -EINVAL (value > 64 KiB) or
 * -ENOMEM. */
int cfs_wnode_set_xattr(struct cfs_wnode *n, const char *key, const void *value, size_t len);
const struct cfs_wxattr *cfs_wnode_get_xattr(const struct cfs_wnode *n, const char *key);
int cfs_wnode_set_payload(struct cfs_wnode *n, const char *payload);
/* Sets inline content, and the size to its length. */
int cfs_wnode_set_content(struct cfs_wnode *n, const void *data, size_t len);
void cfs_wnode_make_hardlink(struct cfs_wnode *link, struct cfs_wnode *target);
struct cfs_wnode *cfs_wnode_follow(struct cfs_wnode *n);

/* Rewrites the tree below @root the way a composefs mount shows it through overlayfs (see
 * overlay.c), raising *@version to at most @max when a whiteout needs it. Returns 0, -ELOOP
 * (too deep) or -ENOMEM. */
int cfs_tree_rewrite_overlay(struct cfs_wnode *root, unsigned *version, unsigned max);

/* xxHash32 (as EROFS uses it for the xattr name filter). */
uint32_t cfs_xxh32(const void *data, size_t len, uint32_t seed);

#endif
