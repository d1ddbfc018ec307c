/* SPDX-License-Identifier: MIT */
/* cfscache: a composefs tree's EROFS serialisation, laid out as mkcomposefs 1.0.8 does: the
 * layout (order, shared xattrs, inode places) and the output. Over 800 lines: each put_* writes
 * what the matching layout step sized, and they must change together. */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "common/util.h"
#include "image/writer-internal.h"

/* EROFS on-disk constants (Documentation/filesystems/erofs.rst, include/erofs_fs.h). */
#define BLKSZ 4096u
#define BLKBITS 12
#define SLOT 32u
#define SUPER_OFFSET 1024u
#define SUPER_SIZE 128u
#define INODE_COMPACT 32u
#define INODE_EXTENDED 64u
#define DIRENT_SIZE 12u
#define XATTR_IBODY_HEADER 12u
#define XATTR_ENTRY_HEADER 4u
#define XATTR_MAX_SHARED 128u /* shared ids per inode, as mkcomposefs caps them */
#define XATTR_FILTER_SEED 0x25BBE08Fu
#define CHUNK_BLKBITS_MASK 0x1fu
#define LAYOUT_FLAT_PLAIN 0
#define LAYOUT_FLAT_INLINE 2
#define LAYOUT_CHUNK_BASED 4
#define FEATURE_COMPAT_MTIME 0x2u
#define FEATURE_COMPAT_XATTR_FILTER 0x4u
#define EROFS_MAGIC 0xE0F5E1E2u
#define CFS_HEADER_MAGIC 0xd078629aU
#define CFS_HEADER_VERSION 1u
#define CFS_HEADER_HAS_ACL 0x1u

/* ---- layout ---------------------------------------------------------------------------- */

struct shared_xattr {
	const struct cfs_wxattr *x; /* first holder's copy */
	uint32_t count;
	int64_t offset; /* from the start of the shared area, or -1 */
};

struct layout {
	struct cfs_wnode *first, *last; /* breadth-first order */
	uint64_t ninodes;
	int64_t min_sec;
	uint32_t min_nsec;
	bool has_acl;
	struct shared_xattr *sx; /* sorted (see cmp_shared) */
	size_t nsx;
	uint64_t shared_size, inodes_end, n_data_blocks, data_start;
};

static int cmp_xattr_key(const void *a, const void *b)
{
	return strcmp(((const struct cfs_wxattr *)a)->key, ((const struct cfs_wxattr *)b)->key);
}

/* Breadth-first order, directory link counts, sorted xattrs, inode numbers, oldest mtime. */
static int compute_tree(struct cfs_wnode *root, struct layout *L)
{
	uint64_t index = 0;

	L->first = L->last = root;
	root->next = NULL;
	L->min_sec = root->mtime_sec;
	L->min_nsec = root->mtime_nsec;
	for (struct cfs_wnode *n = root; n; n = n->next, index++) {
		if (!S_ISDIR(n->mode) && n->nchildren)
			return -EINVAL;
		if (S_ISDIR(n->mode)) {
			uint32_t nl = 2;

			for (size_t i = 0; i < n->nchildren; i++)
				if (S_ISDIR(n->children[i]->mode))
					nl++;
			n->nlink = nl;
		}
		if (n->nxattrs)
			qsort(n->xattrs, n->nxattrs, sizeof(*n->xattrs), cmp_xattr_key);
		if (n->mtime_sec < L->min_sec ||
		    (n->mtime_sec == L->min_sec && n->mtime_nsec < L->min_nsec)) {
			L->min_sec = n->mtime_sec;
			L->min_nsec = n->mtime_nsec;
		}
		n->ino = (uint32_t)index;
		if (cfs_wnode_get_xattr(n, "system.posix_acl_access") ||
		    cfs_wnode_get_xattr(n, "system.posix_acl_default"))
			L->has_acl = true;
		for (size_t i = 0; i < n->nchildren; i++) {
			struct cfs_wnode *c = n->children[i];

			if (c->link_to) {
				struct cfs_wnode *t = cfs_wnode_follow(c);

				if ((S_ISDIR(t->mode) && strcmp(c->name, ".") != 0 &&
				     strcmp(c->name, "..") != 0) ||
				    t->link_to)
					return -EINVAL;
				continue;
			}
			c->next = NULL;
			L->last->next = c;
			L->last = c;
		}
	}
	L->ninodes = index;
	return 0;
}

static const struct {
	const char *prefix;
	uint8_t index;
} xattr_prefixes[] = {
    {"user.", 1},
    {"system.posix_acl_access", 2},
    {"system.posix_acl_default", 3},
    {"trusted.", 4},
    {"security.", 6},
};

static uint8_t xattr_index(const char *key, const char **rest)
{
	for (size_t i = 0; i < CFS_ARRAY_SIZE(xattr_prefixes); i++) {
		size_t l = strlen(xattr_prefixes[i].prefix);

		if (strncmp(key, xattr_prefixes[i].prefix, l) == 0) {
			*rest = key + l;
			return xattr_prefixes[i].index;
		}
	}
	*rest = key;
	return 0;
}

static size_t xattr_entry_size(const struct cfs_wxattr *x)
{
	const char *rest;

	xattr_index(x->key, &rest);
	return (XATTR_ENTRY_HEADER + strlen(rest) + x->len + 3) & ~(size_t)3;
}

/* Canonical order of the shared area: descending by key, then by value length, then bytes. */
static int cmp_shared(const void *a, const void *b)
{
	const struct cfs_wxattr *x = ((const struct shared_xattr *)a)->x;
	const struct cfs_wxattr *y = ((const struct shared_xattr *)b)->x;
	int r = strcmp(y->key, x->key);

	if (r)
		return r;
	if (x->len != y->len)
		return (int)y->len - (int)x->len;
	return memcmp(y->value, x->value, x->len);
}

static int cmp_shared_ident(const struct cfs_wxattr *x, const struct cfs_wxattr *y)
{
	int r = strcmp(x->key, y->key);

	if (r)
		return r;
	if (x->len != y->len)
		return x->len < y->len ? -1 : 1;
	return memcmp(x->value, y->value, x->len);
}

static int cmp_shared_ident_q(const void *a, const void *b)
{
	return cmp_shared_ident(((const struct shared_xattr *)a)->x,
	                        ((const struct shared_xattr *)b)->x);
}

static struct shared_xattr *lookup_shared(struct shared_xattr *arr, size_t n,
                                          const struct cfs_wxattr *x)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = cmp_shared_ident(x, arr[mid].x);

		if (c == 0)
			return &arr[mid];
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

/* Xattrs (key and value) used by more than one inode go to the shared area. */
static int compute_shared_xattrs(struct layout *L)
{
	struct shared_xattr *all = NULL, *by_ident = NULL;
	size_t n = 0, cap = 0, nu = 0;
	uint64_t off = 0;
	int r = -ENOMEM;

	for (struct cfs_wnode *node = L->first; node; node = node->next)
		for (size_t i = 0; i < node->nxattrs; i++) {
			if (n == cap) {
				size_t ncap = cap ? cap * 2 : 256;
				struct shared_xattr *a = reallocarray(all, ncap, sizeof(*a));

				if (!a)
					goto out;
				all = a;
				cap = ncap;
			}
			all[n].x = &node->xattrs[i];
			all[n].count = 1;
			all[n].offset = -1;
			n++;
		}
	/* Unique (key, value) pairs with their use counts. */
	if (n)
		qsort(all, n, sizeof(*all), cmp_shared_ident_q);
	for (size_t i = 0; i < n; i++) {
		if (nu && cmp_shared_ident(all[nu - 1].x, all[i].x) == 0) {
			all[nu - 1].count++;
			continue;
		}
		all[nu++] = all[i];
	}
	/* Offsets in canonical order; a lookup table in identity order. */
	L->sx = malloc((nu ? nu : 1) * sizeof(*L->sx));
	by_ident = all;
	all = NULL;
	if (!L->sx)
		goto out;
	memcpy(L->sx, by_ident, nu * sizeof(*L->sx));
	if (nu)
		qsort(L->sx, nu, sizeof(*L->sx), cmp_shared);
	L->nsx = 0;
	for (size_t i = 0; i < nu; i++) {
		struct shared_xattr *id;

		if (L->sx[i].count < 2)
			continue;
		id = lookup_shared(by_ident, nu, L->sx[i].x);
		id->offset = (int64_t)off;
		L->sx[L->nsx++] = L->sx[i];
		off += xattr_entry_size(L->sx[i].x);
	}
	L->shared_size = off;
	for (struct cfs_wnode *node = L->first; node; node = node->next) {
		unsigned nshared = 0;

		if (!node->nxattrs)
			continue;
		node->shared_idx = malloc(node->nxattrs * sizeof(*node->shared_idx));
		if (!node->shared_idx)
			goto out;
		for (size_t i = 0; i < node->nxattrs; i++) {
			struct shared_xattr *id = lookup_shared(by_ident, nu, &node->xattrs[i]);

			if (id->offset >= 0 && nshared < XATTR_MAX_SHARED) {
				node->shared_idx[i] = id->offset;
				nshared++;
			} else {
				node->shared_idx[i] = -1;
			}
		}
	}
	r = 0;
out:
	free(all);
	free(by_ident);
	return r;
}

static unsigned ilog2_u64(uint64_t v)
{
	return v ? 63u - (unsigned)__builtin_clzll(v) : 0;
}

/* The chunk size of an external file: one chunk when it can be, but never below a block. */
static unsigned chunk_bits(uint64_t size)
{
	unsigned bits = ilog2_u64(size - 1) + 1;

	if (bits < BLKBITS)
		bits = BLKBITS;
	if (bits - BLKBITS > CHUNK_BLKBITS_MASK)
		bits = CHUNK_BLKBITS_MASK + BLKBITS;
	return bits;
}

static uint64_t chunk_count(uint64_t size)
{
	uint64_t cs = 1ULL << chunk_bits(size);

	return (size + cs - 1) / cs;
}

static void dir_size(struct cfs_wnode *n)
{
	uint32_t blocks = 0;
	size_t used = 0;

	for (size_t i = 0; i < n->nchildren; i++) {
		size_t len = DIRENT_SIZE + n->children[i]->name_len;

		if (used + len > BLKSZ) {
			blocks++;
			used = 0;
		}
		used += len;
	}
	/* Never more than half a block inline. */
	if (used > BLKSZ / 2) {
		blocks++;
		used = 0;
	}
	n->n_blocks = blocks;
	n->tailsize = used;
}

static void inode_data_size(struct cfs_wnode *n)
{
	n->n_blocks = 0;
	n->tailsize = 0;
	if (S_ISDIR(n->mode)) {
		dir_size(n);
	} else if (S_ISLNK(n->mode)) {
		n->tailsize = n->payload ? strlen(n->payload) : 0;
	} else if (S_ISREG(n->mode) && n->size > 0) {
		if (n->content) {
			n->n_blocks = n->size / BLKSZ;
			n->tailsize = n->size % BLKSZ;
			if (n->tailsize > BLKSZ / 2) {
				n->n_blocks++;
				n->tailsize = 0;
			}
		} else {
			n->tailsize = chunk_count(n->size) * 4;
		}
	}
}

static bool fits_compact(const struct layout *L, const struct cfs_wnode *n)
{
	uint64_t size;

	if (n->mtime_sec != L->min_sec || n->mtime_nsec != L->min_nsec)
		return false;
	if (n->nlink > UINT16_MAX || n->uid > UINT16_MAX || n->gid > UINT16_MAX)
		return false;
	size = S_ISDIR(n->mode) ? (uint64_t)n->n_blocks * BLKSZ + n->tailsize : n->size;
	return size <= UINT32_MAX;
}

static void xattr_counts(const struct cfs_wnode *n, size_t *nshared_ret, size_t *unshared_ret)
{
	size_t ns = 0, us = 0;

	for (size_t i = 0; i < n->nxattrs; i++) {
		if (n->shared_idx[i] >= 0)
			ns++;
		else
			us += xattr_entry_size(&n->xattrs[i]);
	}
	*nshared_ret = ns;
	*unshared_ret = us;
}

static size_t xattr_area_size(const struct cfs_wnode *n)
{
	size_t ns, us;

	if (!n->nxattrs)
		return 0;
	xattr_counts(n, &ns, &us);
	return (XATTR_IBODY_HEADER + ns * 4 + us + 3) & ~(size_t)3;
}

/* Padding before an inode so its inline tail does not cross a block; may give up inlining. */
static uint64_t tail_padding(struct cfs_wnode *n, uint64_t pos, size_t isize, size_t xsize)
{
	size_t head = isize + xsize, total = head + n->tailsize;
	uint64_t rem, pad;

	if (S_ISLNK(n->mode)) {
		/* The kernel wants a symlink's inode and its target in one block. */
		if (pos / BLKSZ != (pos + total - 1) / BLKSZ)
			return CFS_ALIGN_UP(pos, BLKSZ) - pos;
		return 0;
	}
	rem = BLKSZ - ((pos + head) % BLKSZ);
	if (rem >= n->tailsize)
		return 0;
	pad = CFS_ALIGN_UP(rem, SLOT);
	rem = BLKSZ - ((pos + head + pad) % BLKSZ);
	if (n->tailsize <= rem)
		return pad;
	n->n_blocks++;
	n->tailsize = 0;
	return 0;
}

static int compute_inodes(struct layout *L)
{
	uint64_t pos = SUPER_OFFSET + SUPER_SIZE, meta_start = pos / BLKSZ * BLKSZ;

	for (struct cfs_wnode *n = L->first; n; n = n->next) {
		size_t isize, xsize;
		uint64_t p0, pad;

		inode_data_size(n);
		n->compact = fits_compact(L, n);
		isize = n->compact ? INODE_COMPACT : INODE_EXTENDED;
		xsize = xattr_area_size(n);
		/* The kernel reads a symlink's target from its inode's block: it must fit there. */
		if (S_ISLNK(n->mode) && isize + xsize + n->tailsize > BLKSZ)
			return -ENAMETOOLONG;
		p0 = pos;
		pos = CFS_ALIGN_UP(pos, SLOT);
		n->ipad = pos - p0;
		pad = tail_padding(n, pos, isize, xsize);
		n->ipad += pad;
		pos += pad;
		n->isize = isize + xsize + n->tailsize;
		L->n_data_blocks += n->n_blocks;
		n->nid = (pos - meta_start) / SLOT;
		pos += n->isize;
	}
	L->inodes_end = CFS_ALIGN_UP(pos, SLOT);
	return 0;
}

/* ---- output ---------------------------------------------------------------------------- */

struct out {
	uint8_t *buf;
	size_t len, cap;
	int err;
};

static void put(struct out *o, const void *p, size_t n)
{
	if (o->err || n == 0)
		return;
	if (o->len + n > o->cap) {
		size_t ncap = o->cap ? o->cap : 65536;
		uint8_t *b;

		while (ncap < o->len + n)
			ncap *= 2;
		b = realloc(o->buf, ncap);
		if (!b) {
			o->err = -ENOMEM;
			return;
		}
		memset(b + o->cap, 0, ncap - o->cap);
		o->buf = b;
		o->cap = ncap;
	}
	memcpy(o->buf + o->len, p, n);
	o->len += n;
}

static void pad(struct out *o, size_t n)
{
	static const uint8_t zeros[256];

	while (n > 0) {
		size_t k = CFS_MIN(n, sizeof(zeros));

		put(o, zeros, k);
		n -= k;
	}
}

static void align(struct out *o, size_t a)
{
	pad(o, CFS_ALIGN_UP(o->len, a) - o->len);
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* xxHash32, which EROFS uses for its xattr name bloom filter. */
static uint32_t rotl32(uint32_t x, int r)
{
	return (x << r) | (x >> (32 - r));
}

static uint32_t rd32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

uint32_t cfs_xxh32(const void *data, size_t len, uint32_t seed)
{
	const uint32_t P1 = 2654435761U, P2 = 2246822519U, P3 = 3266489917U, P4 = 668265263U,
	               P5 = 374761393U;
	const uint8_t *p = data, *end = p + len;
	uint32_t h;

	if (len >= 16) {
		uint32_t v[4] = {seed + P1 + P2, seed + P2, seed, seed - P1};

		for (; p + 16 <= end; p += 16)
			for (int i = 0; i < 4; i++)
				v[i] = rotl32(v[i] + rd32(p + 4 * i) * P2, 13) * P1;
		h = rotl32(v[0], 1) + rotl32(v[1], 7) + rotl32(v[2], 12) + rotl32(v[3], 18);
	} else {
		h = seed + P5;
	}
	h += (uint32_t)len;
	for (; p + 4 <= end; p += 4)
		h = rotl32(h + rd32(p) * P3, 17) * P4;
	for (; p < end; p++)
		h = rotl32(h + *p * P5, 11) * P1;
	h ^= h >> 15;
	h *= P2;
	h ^= h >> 13;
	h *= P3;
	h ^= h >> 16;
	return h;
}

static uint32_t xattr_filter(const struct cfs_wnode *n)
{
	uint32_t bits = 0;

	for (size_t i = 0; i < n->nxattrs; i++) {
		const char *rest;
		uint8_t idx = xattr_index(n->xattrs[i].key, &rest);

		bits |= 1u << (cfs_xxh32(rest, strlen(rest), XATTR_FILTER_SEED + idx) & 31);
	}
	return ~bits;
}

static void put_xattr(struct out *o, const struct cfs_wxattr *x)
{
	const char *rest;
	uint8_t h[XATTR_ENTRY_HEADER];

	h[1] = xattr_index(x->key, &rest);
	h[0] = (uint8_t)strlen(rest);
	put16(h + 2, (uint16_t)x->len);
	put(o, h, sizeof(h));
	put(o, rest, strlen(rest));
	put(o, x->value, x->len);
	align(o, 4);
}

static int file_type(const struct cfs_wnode *n)
{
	switch (n->mode & S_IFMT) {
	case S_IFREG:
		return 1;
	case S_IFDIR:
		return 2;
	case S_IFCHR:
		return 3;
	case S_IFBLK:
		return 4;
	case S_IFIFO:
		return 5;
	case S_IFSOCK:
		return 6;
	case S_IFLNK:
		return 7;
	default:
		return 0;
	}
}

static void put_dirents(struct out *o, struct cfs_wnode *dir, size_t first, size_t count,
                        size_t alignment)
{
	uint16_t nameoff = (uint16_t)(count * DIRENT_SIZE);

	for (size_t i = first; i < first + count; i++) {
		struct cfs_wnode *c = dir->children[i], *t = cfs_wnode_follow(c);
		uint8_t d[DIRENT_SIZE] = {0};

		put64(d, t->nid);
		put16(d + 8, nameoff);
		d[10] = (uint8_t)file_type(t);
		nameoff += (uint16_t)c->name_len;
		put(o, d, sizeof(d));
	}
	for (size_t i = first; i < first + count; i++)
		put(o, dir->children[i]->name, dir->children[i]->name_len);
	align(o, alignment);
}

/* Directory entries: the full blocks (@blocks) or the inline tail (@tail). */
static void put_dir(struct out *o, struct cfs_wnode *dir, bool blocks, bool tail)
{
	size_t used = 0, written = 0, first = 0;

	for (size_t i = 0; i < dir->nchildren; i++) {
		size_t len = DIRENT_SIZE + dir->children[i]->name_len;

		if (used + len > BLKSZ) {
			if (blocks)
				put_dirents(o, dir, first, i - first, BLKSZ);
			written++;
			used = 0;
			first = i;
		}
		used += len;
	}
	if (written < dir->n_blocks) {
		if (blocks)
			put_dirents(o, dir, first, dir->nchildren - first, BLKSZ);
		used = 0;
		first = dir->nchildren;
	}
	if (tail && used > 0)
		put_dirents(o, dir, first, dir->nchildren - first, 1);
}

static void put_inode(struct out *o, struct layout *L, struct cfs_wnode *n, uint64_t *data_end)
{
	size_t ns, us, xsize = xattr_area_size(n);
	uint16_t layout = n->tailsize > 0 ? LAYOUT_FLAT_INLINE : LAYOUT_FLAT_PLAIN;
	uint64_t size = 0, nchunks = 0;
	uint32_t u = 0;
	uint8_t ib[INODE_EXTENDED] = {0};

	pad(o, n->ipad);
	if (n->nxattrs)
		xattr_counts(n, &ns, &us);
	else
		ns = us = 0;
	if (S_ISDIR(n->mode) || S_ISLNK(n->mode)) {
		size = (uint64_t)n->n_blocks * BLKSZ + n->tailsize;
	} else if (S_ISREG(n->mode)) {
		size = n->size;
		if (size > 0 && !n->content) {
			unsigned bits = chunk_bits(size);

			layout = LAYOUT_CHUNK_BASED;
			nchunks = chunk_count(size);
			u = bits - BLKBITS; /* chunk format, low 16 bits of i_u */
		}
	}
	if ((S_ISDIR(n->mode) || S_ISREG(n->mode)) && n->n_blocks > 0) {
		u = (uint32_t)(*data_end / BLKSZ);
		*data_end += (uint64_t)BLKSZ * n->n_blocks;
	} else if (S_ISCHR(n->mode) || S_ISBLK(n->mode)) {
		u = (uint32_t)n->rdev;
	}
	put16(ib + 0, (uint16_t)(layout << 1 | (n->compact ? 0 : 1)));
	put16(ib + 2, (uint16_t)(xsize ? (xsize - XATTR_IBODY_HEADER) / 4 + 1 : 0));
	put16(ib + 4, (uint16_t)n->mode);
	if (n->compact) {
		put16(ib + 6, (uint16_t)n->nlink);
		put32(ib + 8, (uint32_t)size);
		put32(ib + 16, u);
		put32(ib + 20, n->ino);
		put16(ib + 24, (uint16_t)n->uid);
		put16(ib + 26, (uint16_t)n->gid);
		put(o, ib, INODE_COMPACT);
	} else {
		put64(ib + 8, size);
		put32(ib + 16, u);
		put32(ib + 20, n->ino);
		put32(ib + 24, n->uid);
		put32(ib + 28, n->gid);
		put64(ib + 32, (uint64_t)n->mtime_sec);
		put32(ib + 40, n->mtime_nsec);
		put32(ib + 44, n->nlink);
		put(o, ib, INODE_EXTENDED);
	}
	if (xsize) {
		uint8_t h[XATTR_IBODY_HEADER] = {0};

		put32(h, xattr_filter(n));
		h[4] = (uint8_t)ns;
		put(o, h, sizeof(h));
		for (size_t i = 0; i < n->nxattrs; i++) {
			uint8_t id[4];

			if (n->shared_idx[i] < 0)
				continue;
			put32(id,
			      (uint32_t)((L->inodes_end % BLKSZ + (uint64_t)n->shared_idx[i]) / 4));
			put(o, id, 4);
		}
		for (size_t i = 0; i < n->nxattrs; i++)
			if (n->shared_idx[i] < 0)
				put_xattr(o, &n->xattrs[i]);
	}
	if (S_ISDIR(n->mode)) {
		put_dir(o, n, false, true);
	} else if (S_ISLNK(n->mode)) {
		put(o, n->payload, n->tailsize);
	} else if (S_ISREG(n->mode)) {
		if (n->content) {
			put(o, n->content + n->size - n->tailsize, n->tailsize);
		} else {
			static const uint8_t null_chunk[4] = {0xff, 0xff, 0xff, 0xff};

			for (uint64_t i = 0; i < nchunks; i++)
				put(o, null_chunk, 4);
		}
	}
}

static void put_super(struct out *o, const struct layout *L, const struct cfs_wnode *root,
                      unsigned version)
{
	uint8_t h[32] = {0}, sb[SUPER_SIZE] = {0};

	put32(h, CFS_HEADER_MAGIC);
	put32(h + 4, CFS_HEADER_VERSION);
	put32(h + 8, L->has_acl ? CFS_HEADER_HAS_ACL : 0);
	put32(h + 12, version);
	put(o, h, sizeof(h));
	pad(o, SUPER_OFFSET - sizeof(h));
	put32(sb + 0, EROFS_MAGIC);
	put32(sb + 8, FEATURE_COMPAT_MTIME | FEATURE_COMPAT_XATTR_FILTER);
	sb[12] = BLKBITS;
	put16(sb + 14, (uint16_t)root->nid);
	put64(sb + 16, L->ninodes);
	put64(sb + 24, (uint64_t)L->min_sec);
	put32(sb + 32, L->min_nsec);
	put32(sb + 36, (uint32_t)(L->data_start / BLKSZ + L->n_data_blocks));
	put32(sb + 40, (SUPER_OFFSET + SUPER_SIZE) / BLKSZ);
	put32(sb + 44, (uint32_t)(L->inodes_end / BLKSZ));
	put(o, sb, sizeof(sb));
}

int cfs_tree_write(struct cfs_tree *tree, const struct cfs_write_options *opts, uint8_t **data_ret,
                   size_t *len_ret)
{
	struct cfs_write_options defaults = {.min_version = 0, .max_version = 1};
	struct layout L = {0};
	struct out o = {0};
	struct cfs_wnode *root = tree->root;
	unsigned version, max;
	uint64_t data_end;
	int r;

	if (!opts)
		opts = &defaults;
	version = opts->min_version;
	max = CFS_MAX(opts->max_version, version);
	if (version > CFS_WRITER_VERSION_MAX || max > CFS_WRITER_VERSION_MAX)
		return -EINVAL;
	if (!root || !S_ISDIR(root->mode))
		return -EINVAL;
	r = cfs_tree_rewrite_overlay(root, &version, max);
	if (r < 0)
		goto out;
	r = compute_tree(root, &L);
	if (r < 0)
		goto out;
	r = compute_shared_xattrs(&L);
	if (r < 0)
		goto out;
	r = compute_inodes(&L);
	if (r < 0)
		goto out;
	if (root->nid >= UINT16_MAX || L.ninodes > UINT32_MAX) {
		r = -EFBIG;
		goto out;
	}
	L.data_start = CFS_ALIGN_UP(L.inodes_end + L.shared_size, BLKSZ);
	if (L.data_start / BLKSZ + L.n_data_blocks > UINT32_MAX) {
		r = -EFBIG;
		goto out;
	}
	put_super(&o, &L, root, version);
	data_end = L.data_start;
	for (struct cfs_wnode *n = L.first; n; n = n->next)
		put_inode(&o, &L, n, &data_end);
	align(&o, SLOT);
	for (size_t i = 0; i < L.nsx; i++)
		put_xattr(&o, L.sx[i].x);
	align(&o, BLKSZ);
	for (struct cfs_wnode *n = L.first; n; n = n->next) {
		put_dir(&o, n, true, false);
		if (S_ISREG(n->mode) && n->n_blocks > 0) {
			put(&o, n->content, n->size - n->tailsize);
			align(&o, BLKSZ);
		}
	}
	r = o.err;
	if (r < 0)
		goto out;
	if (o.len != L.data_start + L.n_data_blocks * BLKSZ) {
		r = -EIO; /* a layout bug: never write a wrong image */
		goto out;
	}
	*data_ret = cfs_steal_pointer(&o.buf);
	*len_ret = o.len;
	r = 0;
out:
	free(o.buf);
	free(L.sx);
	return r;
}
