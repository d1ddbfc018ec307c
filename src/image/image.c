/* SPDX-License-Identifier: MIT */
/* cfscache: EROFS image parser for composefs images: the superblock, inodes, blocks and xattrs;
 * every read is checked against the size. The walk of the tree is in image-walk.c. */
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
#include "image/image-internal.h"

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

int cfs_image_fail(struct cfs_image *img, int r, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(img->err, sizeof(img->err), fmt, ap);
	va_end(ap);
	return r;
}

static int load_prefixes(struct cfs_image *img, unsigned count, uint64_t start)
{
	uint64_t pos = start * 4;

	if (count > MAX_LONG_PREFIXES)
		return cfs_image_fail(img, -EOPNOTSUPP, "too many long xattr prefixes (%u)", count);
	for (unsigned i = 0; i < count; i++) {
		unsigned len;

		pos = (pos + 3) & ~(uint64_t)3;
		if (!in_image(img, pos, 2))
			return cfs_image_fail(img, -EUCLEAN,
			                      "xattr prefix table beyond end of image");
		len = le16(img->data + pos);
		if (len < 1 || !in_image(img, pos + 2, len))
			return cfs_image_fail(img, -EUCLEAN, "bad long xattr prefix %u", i);
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
		return cfs_image_fail(img, -EUCLEAN, "too small for an EROFS image (%llu bytes)",
		                      (unsigned long long)img->size);
	sb = img->data + EROFS_SUPER_OFFSET;
	if (le32(sb + SB_MAGIC) != EROFS_MAGIC)
		return cfs_image_fail(img, -EUCLEAN, "not an EROFS image (bad magic 0x%08x)",
		                      le32(sb + SB_MAGIC));
	img->blkszbits = sb[SB_BLKSZBITS];
	if (img->blkszbits < 9 || img->blkszbits > 16)
		return cfs_image_fail(img, -EUCLEAN, "bad block size 2^%u", img->blkszbits);
	img->blksz = 1ULL << img->blkszbits;
	if (img->blksz < EROFS_SUPER_OFFSET + EROFS_SUPER_SIZE || img->size < img->blksz)
		return cfs_image_fail(img, -EUCLEAN, "image smaller than its first block");
	if ((le32(sb + SB_FEATURE_COMPAT) & COMPAT_SB_CHKSUM) && !super_checksum_ok(img))
		return cfs_image_fail(img, -EUCLEAN, "superblock checksum mismatch");
	/* Regular file data is never read here, so this is what catches a cut-off tail. */
	if (((uint64_t)le32(sb + SB_BLOCKS) << img->blkszbits) > img->size)
		return cfs_image_fail(img, -EUCLEAN, "image truncated: %llu of %llu bytes",
		                      (unsigned long long)img->size,
		                      (unsigned long long)le32(sb + SB_BLOCKS) << img->blkszbits);
	incompat = le32(sb + SB_FEATURE_INCOMPAT);
	if (incompat & ~INCOMPAT_KNOWN)
		return cfs_image_fail(img, -EOPNOTSUPP, "unsupported EROFS features 0x%x",
		                      incompat & ~INCOMPAT_KNOWN);
	if (sb[SB_DIRBLKBITS] != 0)
		return cfs_image_fail(img, -EOPNOTSUPP, "unsupported directory block size");
	meta_blkaddr = le32(sb + SB_META_BLKADDR);
	xattr_blkaddr = le32(sb + SB_XATTR_BLKADDR);
	img->meta_base = meta_blkaddr << img->blkszbits;
	img->xattr_base = xattr_blkaddr << img->blkszbits;
	if (img->meta_base >= img->size)
		return cfs_image_fail(img, -EUCLEAN, "metadata area beyond end of image");
	img->root_nid = le16(sb + SB_ROOT_NID);
	img->build_time = le64(sb + SB_BUILD_TIME);
	img->build_time_nsec = le32(sb + SB_BUILD_TIME_NSEC);
	if (incompat & INCOMPAT_XATTR_PREFIXES) {
		/* With a packed inode the prefix table is that inode's data: not handled. */
		if (le64(sb + SB_PACKED_NID) != 0)
			return cfs_image_fail(img, -EOPNOTSUPP,
			                      "long xattr prefixes in a packed inode");
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

int cfs_image_read_inode(struct cfs_image *img, uint64_t nid, struct inode *ino)
{
	const uint8_t *p;
	unsigned format, icount;

	/* nid * 32 must not overflow; the image size bounds any valid nid far below this. */
	if (nid > img->size / EROFS_ISLOT_SIZE ||
	    !in_image(img, img->meta_base + nid * EROFS_ISLOT_SIZE, EROFS_INODE_COMPACT_SIZE))
		return cfs_image_fail(img, -EUCLEAN, "inode %llu beyond end of image",
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
			return cfs_image_fail(img, -EUCLEAN, "inode %llu beyond end of image",
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
		return cfs_image_fail(img, -EUCLEAN, "inode %llu: xattrs beyond end of image",
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
		return cfs_image_fail(img, -EUCLEAN, "inode %llu: bad file type 0%o",
		                      (unsigned long long)nid, ino->mode & S_IFMT);
	}
	if (ino->layout > LAYOUT_CHUNK_BASED)
		return cfs_image_fail(img, -EUCLEAN, "inode %llu: unknown data layout %u",
		                      (unsigned long long)nid, ino->layout);
	img->inodes++;
	return 0;
}

/* Maps the @lblk-th block of an uncompressed inode's data to a byte range of the image.
 * *len_ret is the valid length in that block (the last one may be partial). */
int cfs_image_map_block(struct cfs_image *img, const struct inode *ino, uint64_t lblk,
                        uint64_t *off_ret, uint64_t *len_ret)
{
	uint64_t nblocks = (ino->size + img->blksz - 1) >> img->blkszbits;
	uint64_t pos = lblk << img->blkszbits;
	uint64_t len, off;

	if (lblk >= nblocks)
		return cfs_image_fail(img, -EUCLEAN, "inode %llu: block %llu out of range",
		                      (unsigned long long)ino->nid, (unsigned long long)lblk);
	len = CFS_MIN(img->blksz, ino->size - pos);
	switch (ino->layout) {
	case LAYOUT_FLAT_PLAIN:
	case LAYOUT_FLAT_INLINE:
		if (ino->layout == LAYOUT_FLAT_INLINE && lblk == nblocks - 1) {
			/* The tail sits right after the inode and must not cross a block. */
			off = ino->off + ino->isize + ino->xattr_size;
			if ((off & (img->blksz - 1)) + len > img->blksz)
				return cfs_image_fail(img, -EUCLEAN,
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
			return cfs_image_fail(img, -EUCLEAN, "inode %llu: bad chunk format 0x%x",
			                      (unsigned long long)ino->nid, fmt);
		chunkbits = fmt & EROFS_CHUNK_BLKBITS_MASK; /* in blocks */
		unit = (fmt & EROFS_CHUNK_INDEXES) ? 8 : 4;
		chunk = lblk >> chunkbits;
		ipos = ino->off + ino->isize + ino->xattr_size;
		ipos = (ipos + unit - 1) & ~(uint64_t)(unit - 1);
		ipos += chunk * unit;
		if (!in_image(img, ipos, unit))
			return cfs_image_fail(img, -EUCLEAN,
			                      "inode %llu: chunk index beyond end of image",
			                      (unsigned long long)ino->nid);
		if (unit == 8) {
			if (le16(img->data + ipos + 2) != 0)
				return cfs_image_fail(img, -EOPNOTSUPP,
				                      "inode %llu: data on an extra device",
				                      (unsigned long long)ino->nid);
			blkaddr = le32(img->data + ipos + 4);
		} else {
			blkaddr = le32(img->data + ipos);
		}
		if (blkaddr == EROFS_NULL_ADDR)
			return cfs_image_fail(img, -EUCLEAN, "inode %llu: hole in metadata",
			                      (unsigned long long)ino->nid);
		off = (blkaddr + (lblk & ((1ULL << chunkbits) - 1))) << img->blkszbits;
		break;
	}
	default:
		return cfs_image_fail(img, -EUCLEAN, "inode %llu: compressed directory or symlink",
		                      (unsigned long long)ino->nid);
	}
	if (!in_image(img, off, len))
		return cfs_image_fail(img, -EUCLEAN, "inode %llu: data beyond end of image",
		                      (unsigned long long)ino->nid);
	*off_ret = off;
	*len_ret = len;
	return 0;
}

/* ---- xattrs ---------------------------------------------------------------------------- */

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
		return cfs_image_fail(img, -EUCLEAN, "inode %llu: truncated xattr entry",
		                      (unsigned long long)ino->nid);
	name_len = p[0];
	index = p[1];
	value_len = le16(p + 2);
	total = (EROFS_XATTR_ENTRY_HEADER + (uint64_t)name_len + value_len + 3) & ~(uint64_t)3;
	if (total > limit || !in_image(img, off, total))
		return cfs_image_fail(img, -EUCLEAN, "inode %llu: xattr entry beyond its area",
		                      (unsigned long long)ino->nid);
	*size_ret = total;
	if (index & EROFS_XATTR_LONG_PREFIX) {
		const struct long_prefix *lp;

		if ((index & 0x7f) >= img->n_prefixes)
			return cfs_image_fail(img, -EUCLEAN, "inode %llu: bad long xattr prefix %u",
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

int cfs_image_parse_xattrs(struct cfs_image *img, const struct inode *ino, struct xattr_result *res)
{
	uint64_t base = ino->off + ino->isize, pos, end, size;
	unsigned shared;
	int r;

	memset(res, 0, sizeof(*res));
	if (ino->xattr_size == 0)
		return 0;
	shared = img->data[base + 4];
	if (EROFS_XATTR_IBODY_HEADER + (uint64_t)shared * 4 > ino->xattr_size)
		return cfs_image_fail(img, -EUCLEAN, "inode %llu: too many shared xattrs",
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
			return cfs_image_fail(img, -EUCLEAN,
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

	r = cfs_image_read_inode(image, nid, &ino);
	if (r < 0)
		return r;
	image->xattr_fn = fn;
	image->xattr_userdata = userdata;
	image->xattr_err = 0;
	r = cfs_image_parse_xattrs(image, &ino, &xr);
	image->xattr_fn = NULL;
	image->xattr_userdata = NULL;
	return image->xattr_err ? image->xattr_err : r;
}

ssize_t cfs_image_read_data(struct cfs_image *image, uint64_t nid, void *buf, size_t len)
{
	struct inode ino;
	uint64_t done = 0, want;
	int r;

	r = cfs_image_read_inode(image, nid, &ino);
	if (r < 0)
		return r;
	want = CFS_MIN((uint64_t)len, ino.size);
	for (uint64_t b = 0; done < want; b++) {
		uint64_t off, blen;

		r = cfs_image_map_block(image, &ino, b, &off, &blen);
		if (r < 0)
			return r;
		blen = CFS_MIN(blen, want - done);
		memcpy((uint8_t *)buf + done, image->data + off, blen);
		done += blen;
	}
	return (ssize_t)done;
}
