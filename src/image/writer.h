/* SPDX-License-Identifier: MIT */
/* cfscache: composefs image writer: an in-memory tree (from a directory or a composefs-dump(5)
 * file) serialised as the EROFS image upstream mkcomposefs 1.0.8 writes, byte for byte. */
#ifndef CFS_WRITER_H
#define CFS_WRITER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/stat.h>

#include "common/digest.h"

/* Files up to this size are stored inline in the image (mkcomposefs's rule). */
#define CFS_WRITER_INLINE_MAX 64
/* Highest composefs format version this writer knows. */
#define CFS_WRITER_VERSION_MAX 1

struct cfs_tree;

/* Options of cfs_tree_from_dir, as mkcomposefs has them. */
enum cfs_tree_flags {
	CFS_TREE_USE_EPOCH = 1 << 0,    /* every mtime is 0 */
	CFS_TREE_SKIP_DEVICES = 1 << 1, /* leave block and character devices out */
	CFS_TREE_SKIP_XATTRS = 1 << 2,  /* no xattrs at all */
	CFS_TREE_USER_XATTRS = 1 << 3,  /* only user.* xattrs */
};

/* Called for every regular file larger than CFS_WRITER_INLINE_MAX: read @fd (open, at offset
 * 0) and put its fs-verity digest in @digest (and, typically, store the content). Returns 0
 * or -errno, which stops the build. */
typedef int (*cfs_tree_file_fn)(int fd, const char *path, const struct stat *st,
                                uint8_t digest[CFS_DIGEST_SIZE], void *userdata);

/* Reads the directory @path recursively into a new tree. Returns 0 or -errno; on failure
 * *failed_ret (when given) gets a malloc'ed path of what failed (caller frees). Free the tree
 * with cfs_tree_free. */
int cfs_tree_from_dir(const char *path, unsigned flags, cfs_tree_file_fn fn, void *userdata,
                      struct cfs_tree **tree_ret, char **failed_ret);

/* Parses composefs-dump(5) text from @f into a new tree. Returns 0, -EINVAL for a malformed
 * line (*line_ret, when given, gets its number), -ENOMEM or -errno of the read. */
int cfs_tree_from_dump(FILE *f, struct cfs_tree **tree_ret, size_t *line_ret);

void cfs_tree_free(struct cfs_tree *tree);

/* Called for every regular file of the tree that has a fs-verity digest and no inline
 * content, in depth-first order; a non-zero return stops and is returned. */
typedef int (*cfs_tree_object_fn)(const uint8_t digest[CFS_DIGEST_SIZE], uint64_t size,
                                  void *userdata);
int cfs_tree_foreach_object(struct cfs_tree *tree, cfs_tree_object_fn fn, void *userdata);

struct cfs_write_options {
	unsigned min_version; /* format version to write at least (0 = mkcomposefs default) */
	unsigned max_version; /* highest version it may be raised to (default 1) */
};

/* Serialises @tree into a malloc'ed buffer (*data_ret, *len_ret; caller frees). The tree is
 * rewritten on the way (overlay xattrs, "." and "..", the root's whiteouts): write a tree
 * once, then free it. Returns 0, -EINVAL (bad options, a hard link to a directory or out
 * of the tree), -ENAMETOOLONG (a symlink target that does not fit in a block with its
 * inode), -EFBIG or -ENOMEM. */
int cfs_tree_write(struct cfs_tree *tree, const struct cfs_write_options *opts, uint8_t **data_ret,
                   size_t *len_ret);

/* ---- dump output ----------------------------------------------------------------------- */

/* Writes @img_data (a composefs image) as composefs-dump(5) text to @out, the same text as
 * upstream `composefs-info dump`. Returns 0, -EUCLEAN for an image it cannot follow (with a
 * message in @msg), -ENOMEM or -EIO (write error). */
int cfs_image_dump(const uint8_t *img_data, size_t img_len, FILE *out, char *msg, size_t msglen);

#endif
