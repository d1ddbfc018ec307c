/* SPDX-License-Identifier: MIT */
/* cfscache: what the image reader's files share: the EROFS facts, the image and inode structs,
 * bounds-checked little-endian reads, and the reader's calls the walk uses. */
#ifndef CFS_IMAGE_INTERNAL_H
#define CFS_IMAGE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "image/image.h"

/* On-disk facts of the EROFS format (all little endian). */
#define EROFS_SUPER_OFFSET 1024
#define EROFS_SUPER_SIZE 128
#define EROFS_MAGIC 0xE0F5E1E2u
#define EROFS_ISLOT_SIZE 32
#define EROFS_INODE_COMPACT_SIZE 32
#define EROFS_INODE_EXTENDED_SIZE 64
#define EROFS_DIRENT_SIZE 12
#define EROFS_NAME_LEN 255
#define EROFS_NULL_ADDR 0xffffffffu
#define EROFS_XATTR_IBODY_HEADER 12
#define EROFS_XATTR_ENTRY_HEADER 4
#define EROFS_XATTR_LONG_PREFIX 0x80
#define EROFS_CHUNK_BLKBITS_MASK 0x1f
#define EROFS_CHUNK_INDEXES 0x20

enum {
	LAYOUT_FLAT_PLAIN = 0,
	LAYOUT_COMPRESSED_FULL = 1,
	LAYOUT_FLAT_INLINE = 2,
	LAYOUT_COMPRESSED_COMPACT = 3,
	LAYOUT_CHUNK_BASED = 4,
};

/* Long xattr name prefixes are rare; a small table is enough. */
#define MAX_LONG_PREFIXES 128

struct long_prefix {
	uint8_t base_index;
	const char *infix;
	size_t infix_len;
};

struct cfs_image {
	uint8_t *data;
	uint64_t size;
	unsigned blkszbits;
	uint64_t blksz;
	uint64_t meta_base;  /* byte offset of nid 0 */
	uint64_t xattr_base; /* byte offset of shared xattr id 0 */
	uint64_t root_nid;
	uint64_t build_time; /* mtime of compact inodes */
	uint32_t build_time_nsec;
	unsigned n_prefixes;
	struct long_prefix prefixes[MAX_LONG_PREFIXES];
	char err[256];

	/* When set, parse_xattr_entry hands every xattr it can name to this callback. */
	cfs_image_xattr_fn xattr_fn;
	void *xattr_userdata;
	int xattr_err;

	/* Walk state. */
	struct cfs_u64map *visited; /* directory nids of this walk (NULL before the first) */
	uint64_t budget;            /* dirents left to process */
	uint64_t inodes;
	cfs_image_walk_fn fn;
	void *userdata;
	char path[CFS_IMAGE_MAX_PATH + 1];
	char symlink[CFS_IMAGE_MAX_PATH + 1];
	char redirect[65535 + 1]; /* an xattr value is at most 64 KiB - 1 */
};

/* A parsed inode header. */
struct inode {
	uint64_t nid;
	uint64_t off; /* byte offset in the image */
	unsigned isize, layout;
	uint64_t xattr_size;
	uint32_t mode, uid, gid, nlink;
	uint64_t size, mtime;
	uint32_t mtime_nsec;
	uint32_t u; /* raw_blkaddr / rdev / chunk format */
};

struct xattr_result {
	const uint8_t *redirect, *metacopy;
	size_t redirect_len, metacopy_len;
	bool have_redirect, have_metacopy;
};

int cfs_image_fail(struct cfs_image *img, int r, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static inline uint16_t le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | (p[1] << 8));
}

static inline uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
	       ((uint32_t)p[3] << 24);
}

static inline uint64_t le64(const uint8_t *p)
{
	return (uint64_t)le32(p) | ((uint64_t)le32(p + 4) << 32);
}

/* True when [off, off + len) lies inside the image, without overflow. */
static inline bool in_image(const struct cfs_image *img, uint64_t off, uint64_t len)
{
	return off <= img->size && len <= img->size - off;
}

/* Reads and checks the inode @nid. Returns 0 or a negative errno (the reason in the image's
 * error). */
int cfs_image_read_inode(struct cfs_image *img, uint64_t nid, struct inode *ino);
/* Where logical block @lblk of @ino lies: *@off_ret, *@len_ret bytes. 0 or a negative errno. */
int cfs_image_map_block(struct cfs_image *img, const struct inode *ino, uint64_t lblk,
                        uint64_t *off_ret, uint64_t *len_ret);
/* The xattrs of @ino that the walk needs (and every one to the image's xattr_fn when set). */
int cfs_image_parse_xattrs(struct cfs_image *img, const struct inode *ino,
                           struct xattr_result *res);

#endif
