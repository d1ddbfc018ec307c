/* SPDX-License-Identifier: MIT */
/* cfscache: EROFS image parser for composefs images; every read is checked against the size. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/digestset.h"
#include "common/log.h"
#include "common/name.h"
#include "common/u64map.h"
#include "common/util.h"
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

/* Superblock field offsets (relative to EROFS_SUPER_OFFSET). */
#define SB_MAGIC 0
#define SB_FEATURE_COMPAT 8
#define SB_BLKSZBITS 12
#define SB_ROOT_NID 14
#define SB_BUILD_TIME 24
#define SB_BUILD_TIME_NSEC 32
#define SB_BLOCKS 36
#define SB_META_BLKADDR 40
#define SB_XATTR_BLKADDR 44
#define SB_FEATURE_INCOMPAT 80
#define SB_DIRBLKBITS 90
#define SB_XATTR_PREFIX_COUNT 91
#define SB_XATTR_PREFIX_START 92
#define SB_PACKED_NID 96

#define COMPAT_SB_CHKSUM 0x1
#define INCOMPAT_XATTR_PREFIXES 0x40
/* lz4 0-padding, compression configs, chunked files, device table, ztailpacking, fragments,
 * long xattr prefixes: none changes the metadata we read. */
#define INCOMPAT_KNOWN 0x7fu

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

static int fail(struct cfs_image *img, int r, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(struct cfs_image *img, int r, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(img->err, sizeof(img->err), fmt, ap);
	va_end(ap);
	return r;
}

static uint16_t le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
	       ((uint32_t)p[3] << 24);
}

static uint64_t le64(const uint8_t *p)
{
	return (uint64_t)le32(p) | ((uint64_t)le32(p + 4) << 32);
}

/* True when [off, off + len) lies inside the image, without overflow. */
static bool in_image(const struct cfs_image *img, uint64_t off, uint64_t len)
{
	return off <= img->size && len <= img->size - off;
}

static int load_prefixes(struct cfs_image *img, unsigned count, uint64_t start)
{
	uint64_t pos = start * 4;

	if (count > MAX_LONG_PREFIXES)
		return fail(img, -EOPNOTSUPP, "too many long xattr prefixes (%u)", count);
	for (unsigned i = 0; i < count; i++) {
		unsigned len;

		pos = (pos + 3) & ~(uint64_t)3;
		if (!in_image(img, pos, 2))
			return fail(img, -EUCLEAN, "xattr prefix table beyond end of image");
		len = le16(img->data + pos);
		if (len < 1 || !in_image(img, pos + 2, len))
			return fail(img, -EUCLEAN, "bad long xattr prefix %u", i);
		img->prefixes[i].base_index = img->data[pos + 2];
		img->prefixes[i].infix = (const char *)img->data + pos + 3;
		img->prefixes[i].infix_len = len - 1;
		pos += 2 + len;
	}
	img->n_prefixes = count;
	return 0;
}

/* CRC32C (Castagnoli), bitwise: the superblock is its only user and is at most 64 KiB. */
static uint32_t crc32c(uint32_t crc, const uint8_t *p, size_t len)
{
	while (len--) {
		crc ^= *p++;
		for (int k = 0; k < 8; k++)
			crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1)));
	}
	return crc;
}

static bool super_checksum_ok(const struct cfs_image *img)
{
	const uint8_t *sb = img->data + EROFS_SUPER_OFFSET;
	uint64_t len = img->blksz - EROFS_SUPER_OFFSET;
	static const uint8_t zero[4];
	uint32_t crc;

	/* The checksum covers the rest of the first block with its own field zeroed. */
	crc = crc32c(0xffffffffu, sb, 4);
	crc = crc32c(crc, zero, 4);
	crc = crc32c(crc, sb + 8, len - 8);
	return crc == le32(sb + 4);
}

static int check_super(struct cfs_image *img)
{
	const uint8_t *sb;
	uint32_t incompat;
	uint64_t meta_blkaddr, xattr_blkaddr;

	if (img->size < EROFS_SUPER_OFFSET + EROFS_SUPER_SIZE)
		return fail(img, -EUCLEAN, "too small for an EROFS image (%llu bytes)",
		            (unsigned long long)img->size);
	sb = img->data + EROFS_SUPER_OFFSET;
	if (le32(sb + SB_MAGIC) != EROFS_MAGIC)
		return fail(img, -EUCLEAN, "not an EROFS image (bad magic 0x%08x)",
		            le32(sb + SB_MAGIC));
	img->blkszbits = sb[SB_BLKSZBITS];
	if (img->blkszbits < 9 || img->blkszbits > 16)
		return fail(img, -EUCLEAN, "bad block size 2^%u", img->blkszbits);
	img->blksz = 1ULL << img->blkszbits;
	if (img->blksz < EROFS_SUPER_OFFSET + EROFS_SUPER_SIZE || img->size < img->blksz)
		return fail(img, -EUCLEAN, "image smaller than its first block");
	if ((le32(sb + SB_FEATURE_COMPAT) & COMPAT_SB_CHKSUM) && !super_checksum_ok(img))
		return fail(img, -EUCLEAN, "superblock checksum mismatch");
	/* Regular file data is never read here, so this is what catches a cut-off tail. */
	if (((uint64_t)le32(sb + SB_BLOCKS) << img->blkszbits) > img->size)
		return fail(img, -EUCLEAN, "image truncated: %llu of %llu bytes",
		            (unsigned long long)img->size,
		            (unsigned long long)le32(sb + SB_BLOCKS) << img->blkszbits);
	incompat = le32(sb + SB_FEATURE_INCOMPAT);
	if (incompat & ~INCOMPAT_KNOWN)
		return fail(img, -EOPNOTSUPP, "unsupported EROFS features 0x%x",
		            incompat & ~INCOMPAT_KNOWN);
	if (sb[SB_DIRBLKBITS] != 0)
		return fail(img, -EOPNOTSUPP, "unsupported directory block size");
	meta_blkaddr = le32(sb + SB_META_BLKADDR);
	xattr_blkaddr = le32(sb + SB_XATTR_BLKADDR);
	img->meta_base = meta_blkaddr << img->blkszbits;
	img->xattr_base = xattr_blkaddr << img->blkszbits;
	if (img->meta_base >= img->size)
		return fail(img, -EUCLEAN, "metadata area beyond end of image");
	img->root_nid = le16(sb + SB_ROOT_NID);
	img->build_time = le64(sb + SB_BUILD_TIME);
	img->build_time_nsec = le32(sb + SB_BUILD_TIME_NSEC);
	if (incompat & INCOMPAT_XATTR_PREFIXES) {
		/* With a packed inode the prefix table is that inode's data: not handled. */
		if (le64(sb + SB_PACKED_NID) != 0)
			return fail(img, -EOPNOTSUPP, "long xattr prefixes in a packed inode");
		return load_prefixes(img, sb[SB_XATTR_PREFIX_COUNT],
		                     le32(sb + SB_XATTR_PREFIX_START));
	}
	return 0;
}

static int open_owned(uint8_t *data, uint64_t size, struct cfs_image **image_ret, char *msg,
                      size_t msglen)
{
	struct cfs_image *img;
	int r;

	img = calloc(1, sizeof(*img));
	if (!img) {
		free(data);
		if (msg && msglen)
			snprintf(msg, msglen, "out of memory");
		return -ENOMEM;
	}
	img->data = data;
	img->size = size;
	r = check_super(img);
	if (r < 0) {
		if (msg && msglen)
			snprintf(msg, msglen, "%s", img->err);
		cfs_image_free(img);
		return r;
	}
	*image_ret = img;
	return 0;
}

int cfs_image_open_buffer_msg(const void *data, size_t len, struct cfs_image **image_ret, char *msg,
                              size_t msglen)
{
	uint8_t *copy;

	if (len > CFS_IMAGE_MAX_SIZE) {
		if (msg && msglen)
			snprintf(msg, msglen, "image too large");
		return -EFBIG;
	}
	copy = malloc(len ? len : 1);
	if (!copy)
		return -ENOMEM;
	if (len)
		memcpy(copy, data, len);
	return open_owned(copy, len, image_ret, msg, msglen);
}

int cfs_image_open_buffer(const void *data, size_t len, struct cfs_image **image_ret)
{
	return cfs_image_open_buffer_msg(data, len, image_ret, NULL, 0);
}

static int open_fd_msg(int fd, struct cfs_image **image_ret, char *msg, size_t msglen)
{
	struct stat st;
	uint8_t *data;
	ssize_t n;

	if (fstat(fd, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
		if (msg && msglen)
			snprintf(msg, msglen, "not a regular file");
		return -EINVAL;
	}
	if ((uint64_t)st.st_size > CFS_IMAGE_MAX_SIZE) {
		if (msg && msglen)
			snprintf(msg, msglen, "image too large");
		return -EFBIG;
	}
	/* A private copy: a file truncated or rewritten under us cannot fault the walk. */
	data = malloc(st.st_size ? (size_t)st.st_size : 1);
	if (!data)
		return -ENOMEM;
	n = cfs_pread_full(fd, data, (size_t)st.st_size, 0);
	if (n < 0) {
		free(data);
		return (int)n;
	}
	return open_owned(data, (uint64_t)n, image_ret, msg, msglen);
}

int cfs_image_open_fd(int fd, struct cfs_image **image_ret)
{
	return open_fd_msg(fd, image_ret, NULL, 0);
}

int cfs_image_open_msg(const char *path, struct cfs_image **image_ret, char *msg, size_t msglen)
{
	int fd, r;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	r = open_fd_msg(fd, image_ret, msg, msglen);
	close(fd);
	return r;
}

int cfs_image_open(const char *path, struct cfs_image **image_ret)
{
	return cfs_image_open_msg(path, image_ret, NULL, 0);
}

void cfs_image_free(struct cfs_image *image)
{
	if (!image)
		return;
	free(image->data);
	cfs_u64map_free(image->visited);
	free(image);
}

const char *cfs_image_error(const struct cfs_image *image)
{
	return image->err;
}

uint64_t cfs_image_inodes_visited(const struct cfs_image *image)
{
	return image->inodes;
}

/* ---- inodes ---------------------------------------------------------------------------- */

static int read_inode(struct cfs_image *img, uint64_t nid, struct inode *ino)
{
	const uint8_t *p;
	unsigned format, icount;

	/* nid * 32 must not overflow; the image size bounds any valid nid far below this. */
	if (nid > img->size / EROFS_ISLOT_SIZE ||
	    !in_image(img, img->meta_base + nid * EROFS_ISLOT_SIZE, EROFS_INODE_COMPACT_SIZE))
		return fail(img, -EUCLEAN, "inode %llu beyond end of image",
		            (unsigned long long)nid);
	memset(ino, 0, sizeof(*ino));
	ino->nid = nid;
	ino->off = img->meta_base + nid * EROFS_ISLOT_SIZE;
	p = img->data + ino->off;
	format = le16(p);
	ino->layout = (format >> 1) & 0x7;
	icount = le16(p + 2);
	ino->xattr_size = icount ? EROFS_XATTR_IBODY_HEADER + (uint64_t)(icount - 1) * 4 : 0;
	ino->mode = le16(p + 4);
	if (format & 1) {
		ino->isize = EROFS_INODE_EXTENDED_SIZE;
		if (!in_image(img, ino->off, EROFS_INODE_EXTENDED_SIZE))
			return fail(img, -EUCLEAN, "inode %llu beyond end of image",
			            (unsigned long long)nid);
		ino->size = le64(p + 8);
		ino->u = le32(p + 16);
		ino->uid = le32(p + 24);
		ino->gid = le32(p + 28);
		ino->mtime = le64(p + 32);
		ino->mtime_nsec = le32(p + 40);
		ino->nlink = le32(p + 44);
	} else {
		ino->isize = EROFS_INODE_COMPACT_SIZE;
		ino->nlink = le16(p + 6);
		ino->size = le32(p + 8);
		ino->u = le32(p + 16);
		ino->uid = le16(p + 24);
		ino->gid = le16(p + 26);
		ino->mtime = img->build_time;
		ino->mtime_nsec = img->build_time_nsec;
	}
	if (!in_image(img, ino->off + ino->isize, ino->xattr_size))
		return fail(img, -EUCLEAN, "inode %llu: xattrs beyond end of image",
		            (unsigned long long)nid);
	switch (ino->mode & S_IFMT) {
	case S_IFREG:
	case S_IFDIR:
	case S_IFLNK:
	case S_IFCHR:
	case S_IFBLK:
	case S_IFIFO:
	case S_IFSOCK:
		break;
	default:
		return fail(img, -EUCLEAN, "inode %llu: bad file type 0%o", (unsigned long long)nid,
		            ino->mode & S_IFMT);
	}
	if (ino->layout > LAYOUT_CHUNK_BASED)
		return fail(img, -EUCLEAN, "inode %llu: unknown data layout %u",
		            (unsigned long long)nid, ino->layout);
	img->inodes++;
	return 0;
}

/* Maps the @lblk-th block of an uncompressed inode's data to a byte range of the image.
 * *len_ret is the valid length in that block (the last one may be partial). */
static int map_block(struct cfs_image *img, const struct inode *ino, uint64_t lblk,
                     uint64_t *off_ret, uint64_t *len_ret)
{
	uint64_t nblocks = (ino->size + img->blksz - 1) >> img->blkszbits;
	uint64_t pos = lblk << img->blkszbits;
	uint64_t len, off;

	if (lblk >= nblocks)
		return fail(img, -EUCLEAN, "inode %llu: block %llu out of range",
		            (unsigned long long)ino->nid, (unsigned long long)lblk);
	len = CFS_MIN(img->blksz, ino->size - pos);
	switch (ino->layout) {
	case LAYOUT_FLAT_PLAIN:
	case LAYOUT_FLAT_INLINE:
		if (ino->layout == LAYOUT_FLAT_INLINE && lblk == nblocks - 1) {
			/* The tail sits right after the inode and must not cross a block. */
			off = ino->off + ino->isize + ino->xattr_size;
			if ((off & (img->blksz - 1)) + len > img->blksz)
				return fail(img, -EUCLEAN,
				            "inode %llu: inline data crosses a block",
				            (unsigned long long)ino->nid);
		} else {
			off = ((uint64_t)ino->u + lblk) << img->blkszbits;
		}
		break;
	case LAYOUT_CHUNK_BASED: {
		unsigned fmt = ino->u & 0xffff, chunkbits, unit;
		uint64_t chunk, ipos, blkaddr;

		if (fmt & ~(EROFS_CHUNK_BLKBITS_MASK | EROFS_CHUNK_INDEXES))
			return fail(img, -EUCLEAN, "inode %llu: bad chunk format 0x%x",
			            (unsigned long long)ino->nid, fmt);
		chunkbits = fmt & EROFS_CHUNK_BLKBITS_MASK; /* in blocks */
		unit = (fmt & EROFS_CHUNK_INDEXES) ? 8 : 4;
		chunk = lblk >> chunkbits;
		ipos = ino->off + ino->isize + ino->xattr_size;
		ipos = (ipos + unit - 1) & ~(uint64_t)(unit - 1);
		ipos += chunk * unit;
		if (!in_image(img, ipos, unit))
			return fail(img, -EUCLEAN, "inode %llu: chunk index beyond end of image",
			            (unsigned long long)ino->nid);
		if (unit == 8) {
			if (le16(img->data + ipos + 2) != 0)
				return fail(img, -EOPNOTSUPP, "inode %llu: data on an extra device",
				            (unsigned long long)ino->nid);
			blkaddr = le32(img->data + ipos + 4);
		} else {
			blkaddr = le32(img->data + ipos);
		}
		if (blkaddr == EROFS_NULL_ADDR)
			return fail(img, -EUCLEAN, "inode %llu: hole in metadata",
			            (unsigned long long)ino->nid);
		off = (blkaddr + (lblk & ((1ULL << chunkbits) - 1))) << img->blkszbits;
		break;
	}
	default:
		return fail(img, -EUCLEAN, "inode %llu: compressed directory or symlink",
		            (unsigned long long)ino->nid);
	}
	if (!in_image(img, off, len))
		return fail(img, -EUCLEAN, "inode %llu: data beyond end of image",
		            (unsigned long long)ino->nid);
	*off_ret = off;
	*len_ret = len;
	return 0;
}

/* ---- xattrs ---------------------------------------------------------------------------- */

struct xattr_result {
	const uint8_t *redirect, *metacopy;
	size_t redirect_len, metacopy_len;
	bool have_redirect, have_metacopy;
};

static const char *const xattr_prefix_names[] = {
    [1] = "user.",
    [2] = "system.posix_acl_access",
    [3] = "system.posix_acl_default",
    [4] = "trusted.",
    [6] = "security.",
};

/* Looks at one xattr entry at @off (header + name + value), returns its aligned size. */
static int parse_xattr_entry(struct cfs_image *img, const struct inode *ino, uint64_t off,
                             uint64_t limit, struct xattr_result *res, uint64_t *size_ret)
{
	const uint8_t *p = img->data + off;
	unsigned name_len, index, value_len;
	uint64_t total;
	const char *prefix = "", *infix = "", *name;
	size_t prefix_len = 0, infix_len = 0;
	char full[EROFS_NAME_LEN + 64];

	if (limit < EROFS_XATTR_ENTRY_HEADER || !in_image(img, off, EROFS_XATTR_ENTRY_HEADER))
		return fail(img, -EUCLEAN, "inode %llu: truncated xattr entry",
		            (unsigned long long)ino->nid);
	name_len = p[0];
	index = p[1];
	value_len = le16(p + 2);
	total = (EROFS_XATTR_ENTRY_HEADER + (uint64_t)name_len + value_len + 3) & ~(uint64_t)3;
	if (total > limit || !in_image(img, off, total))
		return fail(img, -EUCLEAN, "inode %llu: xattr entry beyond its area",
		            (unsigned long long)ino->nid);
	*size_ret = total;
	if (index & EROFS_XATTR_LONG_PREFIX) {
		const struct long_prefix *lp;

		if ((index & 0x7f) >= img->n_prefixes)
			return fail(img, -EUCLEAN, "inode %llu: bad long xattr prefix %u",
			            (unsigned long long)ino->nid, index & 0x7f);
		lp = &img->prefixes[index & 0x7f];
		index = lp->base_index;
		infix = lp->infix;
		infix_len = CFS_MIN(lp->infix_len, 32);
		if (lp->infix_len > 32)
			return 0; /* longer than any name we look for */
	}
	if (index < CFS_ARRAY_SIZE(xattr_prefix_names) && xattr_prefix_names[index]) {
		prefix = xattr_prefix_names[index];
		prefix_len = strlen(prefix);
	} else {
		return 0; /* a namespace we have no use for */
	}
	name = (const char *)p + EROFS_XATTR_ENTRY_HEADER;
	memcpy(full, prefix, prefix_len);
	memcpy(full + prefix_len, infix, infix_len);
	memcpy(full + prefix_len + infix_len, name, name_len);
	full[prefix_len + infix_len + name_len] = '\0';
	if (strlen(full) != prefix_len + infix_len + name_len)
		return 0; /* a NUL inside the name: never one of ours */
	if (img->xattr_fn) {
		int r = img->xattr_fn(full, p + EROFS_XATTR_ENTRY_HEADER + name_len, value_len,
		                      img->xattr_userdata);

		if (r) {
			img->xattr_err = r;
			return r;
		}
	}
	if (strcmp(full, "trusted.overlay.redirect") == 0) {
		res->redirect = p + EROFS_XATTR_ENTRY_HEADER + name_len;
		res->redirect_len = value_len;
		res->have_redirect = true;
	} else if (strcmp(full, "trusted.overlay.metacopy") == 0) {
		res->metacopy = p + EROFS_XATTR_ENTRY_HEADER + name_len;
		res->metacopy_len = value_len;
		res->have_metacopy = true;
	}
	return 0;
}

static int parse_xattrs(struct cfs_image *img, const struct inode *ino, struct xattr_result *res)
{
	uint64_t base = ino->off + ino->isize, pos, end, size;
	unsigned shared;
	int r;

	memset(res, 0, sizeof(*res));
	if (ino->xattr_size == 0)
		return 0;
	shared = img->data[base + 4];
	if (EROFS_XATTR_IBODY_HEADER + (uint64_t)shared * 4 > ino->xattr_size)
		return fail(img, -EUCLEAN, "inode %llu: too many shared xattrs",
		            (unsigned long long)ino->nid);
	/* Inline entries first, then shared ones: the order composefs reads them in. */
	pos = base + EROFS_XATTR_IBODY_HEADER + (uint64_t)shared * 4;
	end = base + ino->xattr_size;
	/* Each entry is at least 4 bytes, so this loop ends within xattr_size / 4 rounds. */
	while (end - pos >= EROFS_XATTR_ENTRY_HEADER) {
		r = parse_xattr_entry(img, ino, pos, end - pos, res, &size);
		if (r)
			return r;
		pos += size;
	}
	for (unsigned i = 0; i < shared; i++) {
		uint64_t id = le32(img->data + base + EROFS_XATTR_IBODY_HEADER + i * 4);
		uint64_t off = img->xattr_base + id * 4;

		if (!in_image(img, off, EROFS_XATTR_ENTRY_HEADER))
			return fail(img, -EUCLEAN,
			            "inode %llu: shared xattr %llu beyond end of image",
			            (unsigned long long)ino->nid, (unsigned long long)id);
		r = parse_xattr_entry(img, ino, off, img->size - off, res, &size);
		if (r)
			return r;
	}
	return 0;
}

int cfs_image_xattrs(struct cfs_image *image, uint64_t nid, cfs_image_xattr_fn fn, void *userdata)
{
	struct xattr_result xr;
	struct inode ino;
	int r;

	r = read_inode(image, nid, &ino);
	if (r < 0)
		return r;
	image->xattr_fn = fn;
	image->xattr_userdata = userdata;
	image->xattr_err = 0;
	r = parse_xattrs(image, &ino, &xr);
	image->xattr_fn = NULL;
	image->xattr_userdata = NULL;
	return image->xattr_err ? image->xattr_err : r;
}

ssize_t cfs_image_read_data(struct cfs_image *image, uint64_t nid, void *buf, size_t len)
{
	struct inode ino;
	uint64_t done = 0, want;
	int r;

	r = read_inode(image, nid, &ino);
	if (r < 0)
		return r;
	want = CFS_MIN((uint64_t)len, ino.size);
	for (uint64_t b = 0; done < want; b++) {
		uint64_t off, blen;

		r = map_block(image, &ino, b, &off, &blen);
		if (r < 0)
			return r;
		blen = CFS_MIN(blen, want - done);
		memcpy((uint8_t *)buf + done, image->data + off, blen);
		done += blen;
	}
	return (ssize_t)done;
}

/* ---- walk ------------------------------------------------------------------------------ */

/* Adds a directory nid to the visited set; -EEXIST when it was there already. */
static int visit_dir(struct cfs_image *img, uint64_t nid)
{
	void *old;
	int r;

	if (!img->visited) {
		r = cfs_u64map_new(0, &img->visited);
		if (r < 0)
			return r;
	}
	/* The value only says "visited": any non-NULL pointer does. */
	r = cfs_u64map_put(img->visited, nid, img, &old);
	if (r < 0)
		return r;
	return old ? -EEXIST : 0;
}

static int read_symlink(struct cfs_image *img, const struct inode *ino, char *buf, size_t bufsize)
{
	uint64_t done = 0;
	int r;

	if (ino->size == 0 || ino->size >= bufsize)
		return fail(img, -EUCLEAN, "inode %llu: bad symlink length %llu",
		            (unsigned long long)ino->nid, (unsigned long long)ino->size);
	for (uint64_t b = 0; done < ino->size; b++) {
		uint64_t off, len;

		r = map_block(img, ino, b, &off, &len);
		if (r < 0)
			return r;
		memcpy(buf + done, img->data + off, len);
		done += len;
	}
	buf[done] = '\0';
	return 0;
}

/* Fills the overlay fields of @e. A redirect is where overlayfs goes looking for the data in
 * every data-only layer, so the only one accepted is an object path "/XX/<62hex>" on a
 * regular file, naming the object its metacopy digest (when it has one) names: anything else
 * (/etc/passwd, /.cfs-tmp/x) would have the kernel open other files of the store. */
static int fill_object(struct cfs_image *img, struct cfs_image_entry *e,
                       const struct xattr_result *xr, char *redirect)
{
	/* struct ovl_metacopy: version 0, length, flags 0, digest algorithm (1 = SHA-256). */
	if (xr->have_metacopy) {
		const uint8_t *m = xr->metacopy;

		if (xr->metacopy_len == 0) {
			e->metacopy = true;
		} else if (xr->metacopy_len >= 4 && m[0] == 0 && m[1] == xr->metacopy_len &&
		           m[2] == 0) {
			e->metacopy = true;
			if (xr->metacopy_len == 4 + CFS_DIGEST_SIZE && m[3] == 1) {
				e->has_digest = true;
				memcpy(e->digest, m + 4, CFS_DIGEST_SIZE);
			}
		}
	}
	if (xr->have_redirect) {
		uint8_t named[CFS_DIGEST_SIZE];

		memcpy(redirect, xr->redirect, xr->redirect_len);
		redirect[xr->redirect_len] = '\0';
		e->redirect = redirect;
		e->redirect_len = xr->redirect_len;
		if (!S_ISREG(e->mode))
			return fail(img, -EUCLEAN,
			            "inode %llu: overlay redirect on a non-regular file",
			            (unsigned long long)e->nid);
		if (e->redirect_len != CFS_NAME_PATH_LEN + 1 || e->redirect[0] != '/' ||
		    cfs_name_parse_path(e->redirect + 1, CFS_NAME_PATH_LEN, named) < 0)
			return fail(img, -EUCLEAN,
			            "inode %llu: overlay redirect \"%.80s\" is not an object path",
			            (unsigned long long)e->nid, redirect);
		if (e->has_digest && memcmp(named, e->digest, CFS_DIGEST_SIZE) != 0)
			return fail(
			    img, -EUCLEAN,
			    "inode %llu: overlay redirect %s does not match its fs-verity digest",
			    (unsigned long long)e->nid, redirect);
		memcpy(e->object, named, CFS_DIGEST_SIZE);
		e->has_object = true;
	} else if (S_ISREG(e->mode) && e->has_digest) {
		memcpy(e->object, e->digest, CFS_DIGEST_SIZE);
		e->has_object = true;
	}
	return 0;
}

static int walk_dir(struct cfs_image *img, const struct inode *dir, size_t plen, unsigned depth);

static int visit_inode(struct cfs_image *img, uint64_t nid, size_t plen, struct inode *ino)
{
	struct cfs_image_entry e = {0};
	struct xattr_result xr;
	int r;

	r = read_inode(img, nid, ino);
	if (r < 0)
		return r;
	r = parse_xattrs(img, ino, &xr);
	if (r < 0)
		return r;
	e.path = plen ? img->path : "/";
	e.path_len = plen ? plen : 1;
	e.nid = nid;
	e.mode = ino->mode;
	e.uid = ino->uid;
	e.gid = ino->gid;
	e.nlink = ino->nlink;
	e.size = ino->size;
	e.mtime = ino->mtime;
	e.mtime_nsec = ino->mtime_nsec;
	e.flat = ino->layout == LAYOUT_FLAT_PLAIN || ino->layout == LAYOUT_FLAT_INLINE;
	if (S_ISCHR(ino->mode) || S_ISBLK(ino->mode))
		e.rdev = ino->u;
	if (S_ISLNK(ino->mode)) {
		r = read_symlink(img, ino, img->symlink, sizeof(img->symlink));
		if (r < 0)
			return r;
		e.symlink = img->symlink;
	}
	r = fill_object(img, &e, &xr, img->redirect);
	if (r < 0)
		return r;
	return img->fn ? img->fn(&e, img->userdata) : 0;
}

static int walk_block(struct cfs_image *img, const struct inode *dir, const uint8_t *blk,
                      uint64_t len, size_t plen, unsigned depth)
{
	unsigned nameoff0, ndirents;
	int r;

	if (len < EROFS_DIRENT_SIZE)
		return fail(img, -EUCLEAN, "directory %llu: block too small",
		            (unsigned long long)dir->nid);
	nameoff0 = le16(blk + 8);
	if (nameoff0 < EROFS_DIRENT_SIZE || nameoff0 > len || nameoff0 % EROFS_DIRENT_SIZE)
		return fail(img, -EUCLEAN, "directory %llu: bad dirent table",
		            (unsigned long long)dir->nid);
	ndirents = nameoff0 / EROFS_DIRENT_SIZE;
	for (unsigned i = 0; i < ndirents; i++) {
		const uint8_t *d = blk + i * EROFS_DIRENT_SIZE;
		uint64_t nid = le64(d);
		unsigned off = le16(d + 8), end;
		size_t nlen;
		const char *name;
		struct inode child;

		end = i + 1 < ndirents ? le16(d + EROFS_DIRENT_SIZE + 8) : (unsigned)len;
		if (off < nameoff0 || off >= end || end > len)
			return fail(img, -EUCLEAN, "directory %llu: bad name offset",
			            (unsigned long long)dir->nid);
		name = (const char *)blk + off;
		nlen = end - off;
		if (i + 1 == ndirents)
			nlen = strnlen(name, nlen); /* the last name may be NUL-padded */
		if (nlen == 0 || nlen > EROFS_NAME_LEN || memchr(name, '/', nlen) ||
		    memchr(name, '\0', nlen))
			return fail(img, -EUCLEAN, "directory %llu: bad file name",
			            (unsigned long long)dir->nid);
		if ((nlen == 1 && name[0] == '.') ||
		    (nlen == 2 && name[0] == '.' && name[1] == '.'))
			continue;
		if (img->budget == 0)
			return fail(img, -EUCLEAN,
			            "more directory entries than the image can hold");
		img->budget--;
		if (plen + 1 + nlen > CFS_IMAGE_MAX_PATH)
			return fail(img, -ENAMETOOLONG, "path too long under %s", img->path);
		img->path[plen] = '/';
		memcpy(img->path + plen + 1, name, nlen);
		img->path[plen + 1 + nlen] = '\0';
		r = visit_inode(img, nid, plen + 1 + nlen, &child);
		if (r != 0) {
			if (r < 0 && img->err[0] && !strstr(img->err, " at /"))
				snprintf(img->err + strlen(img->err),
				         sizeof(img->err) - strlen(img->err), " at %.*s",
				         (int)CFS_MIN(plen + 1 + nlen, 120), img->path);
			return r;
		}
		if (S_ISDIR(child.mode)) {
			r = walk_dir(img, &child, plen + 1 + nlen, depth + 1);
			if (r != 0)
				return r;
		}
		img->path[plen] = '\0';
	}
	return 0;
}

static int walk_dir(struct cfs_image *img, const struct inode *dir, size_t plen, unsigned depth)
{
	uint64_t nblocks;
	int r;

	if (depth > CFS_IMAGE_MAX_DEPTH)
		return fail(img, -ENAMETOOLONG, "directories nested too deep at %.120s", img->path);
	r = visit_dir(img, dir->nid);
	if (r == -EEXIST)
		return fail(img, -EUCLEAN, "directory loop: inode %llu reached twice at %.120s",
		            (unsigned long long)dir->nid, plen ? img->path : "/");
	if (r < 0)
		return r;
	if (dir->size > img->size)
		return fail(img, -EUCLEAN, "directory %llu larger than the image",
		            (unsigned long long)dir->nid);
	nblocks = (dir->size + img->blksz - 1) >> img->blkszbits;
	for (uint64_t b = 0; b < nblocks; b++) {
		uint64_t off, len;

		r = map_block(img, dir, b, &off, &len);
		if (r < 0)
			return r;
		r = walk_block(img, dir, img->data + off, len, plen, depth);
		if (r != 0)
			return r;
		img->path[plen] = '\0';
	}
	return 0;
}

int cfs_image_walk(struct cfs_image *image, unsigned flags, cfs_image_walk_fn fn, void *userdata)
{
	struct cfs_image *img = image;
	struct inode root;
	int r;

	img->err[0] = '\0';
	img->inodes = 0;
	cfs_u64map_free(img->visited);
	img->visited = NULL;
	/* A valid image stores every dirent (12 bytes) once: this bounds hostile sharing. */
	img->budget = img->size / EROFS_DIRENT_SIZE + 16;
	img->path[0] = '\0';
	img->fn = (flags & CFS_IMAGE_WALK_ROOT) ? fn : NULL;
	img->userdata = userdata;
	r = visit_inode(img, img->root_nid, 0, &root);
	if (r != 0)
		return r;
	if (!S_ISDIR(root.mode))
		return fail(img, -EUCLEAN, "root inode %llu is not a directory",
		            (unsigned long long)root.nid);
	img->fn = fn;
	return walk_dir(img, &root, 0, 0);
}

/* ---- objects --------------------------------------------------------------------------- */

static int collect_object(const struct cfs_image_entry *e, void *userdata)
{
	return e->has_object ? cfs_digestset_add(userdata, e->object, NULL) : 0;
}

/* Adds the objects of @image's regular files to @set (unsealed). */
static int add_objects(struct cfs_image *image, struct cfs_digestset *set)
{
	int r = cfs_image_walk(image, 0, collect_object, set);

	if (r == -ENOMEM && !image->err[0])
		fail(image, r, "out of memory");
	return r;
}

int cfs_image_objects(struct cfs_image *image, uint8_t **digests_ret, size_t *count_ret)
{
	struct cfs_digestset set = CFS_DIGESTSET_INIT;
	int r;

	r = add_objects(image, &set);
	if (r != 0) {
		cfs_digestset_free(&set);
		return r;
	}
	cfs_digestset_seal(&set);
	*digests_ret = cfs_digestset_steal(&set, count_ret);
	return 0;
}

int cfs_image_objects_of_files(char *const *images, size_t n, uint8_t **digests_ret,
                               size_t *count_ret)
{
	struct cfs_digestset set = CFS_DIGESTSET_INIT;

	for (size_t i = 0; i < n; i++) {
		struct cfs_image *img = NULL;
		char msg[256] = "";
		int r;

		r = cfs_image_open_msg(images[i], &img, msg, sizeof(msg));
		if (r < 0) {
			cfs_err("%s: %s", images[i], msg[0] ? msg : strerror(-r));
			cfs_digestset_free(&set);
			return r;
		}
		r = add_objects(img, &set);
		if (r < 0) {
			cfs_err("%s: %s", images[i],
			        cfs_image_error(img)[0] ? cfs_image_error(img) : strerror(-r));
			cfs_image_free(img);
			cfs_digestset_free(&set);
			return r;
		}
		cfs_image_free(img);
	}
	cfs_digestset_seal(&set);
	*digests_ret = cfs_digestset_steal(&set, count_ret);
	return 0;
}

int cfs_image_check(const char *path, char *msg, size_t msglen)
{
	struct cfs_image *img = NULL;
	int r;

	if (msg && msglen)
		msg[0] = '\0';
	r = cfs_image_open_msg(path, &img, msg, msglen);
	if (r < 0) {
		if (msg && msglen && !msg[0])
			snprintf(msg, msglen, "%s", strerror(-r));
		return r;
	}
	r = cfs_image_walk(img, CFS_IMAGE_WALK_ROOT, NULL, NULL);
	if (r < 0 && msg && msglen)
		snprintf(msg, msglen, "%s", cfs_image_error(img));
	cfs_image_free(img);
	return r;
}
