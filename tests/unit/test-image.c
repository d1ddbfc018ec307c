/* SPDX-License-Identifier: MIT */
/* cfscache: unit tests of the composefs image reader: real mkfs.erofs images, hand-made hostile
 * images, truncations and bit flips. */
#include "config.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/digest.h"
#include "common/name.h"
#include "image/image.h"

#define BLK 4096

/* ---- hand-made images ------------------------------------------------------------------ */

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = v & 0xff;
	p[1] = v >> 8;
}

static void put32(uint8_t *p, uint32_t v)
{
	put16(p, v & 0xffff);
	put16(p + 2, v >> 16);
}

static void put64(uint8_t *p, uint64_t v)
{
	put32(p, v & 0xffffffffu);
	put32(p + 4, v >> 32);
}

/* Superblock: 4 KiB blocks, inodes from block 1, shared xattrs from block 0. */
static void mk_super(uint8_t *img, uint16_t root_nid)
{
	uint8_t *sb = img + 1024;

	put32(sb, 0xE0F5E1E2u);
	sb[12] = 12;
	put16(sb + 14, root_nid);
	put32(sb + 40, 1);
	put32(sb + 44, 0);
}

/* A compact inode at nid; layout 0 = plain, 2 = inline. */
static uint8_t *mk_inode(uint8_t *img, uint64_t nid, uint16_t mode, unsigned layout, uint32_t size,
                         uint32_t u, uint16_t icount)
{
	uint8_t *p = img + BLK + nid * 32;

	put16(p, (uint16_t)(layout << 1));
	put16(p + 2, icount);
	put16(p + 4, mode);
	put16(p + 6, 1);
	put32(p + 8, size);
	put32(p + 16, u);
	return p;
}

struct dent {
	uint64_t nid;
	const char *name;
	uint8_t type;
};

/* Writes a directory block; returns the bytes used (the directory's i_size). */
static size_t mk_dirblock(uint8_t *blk, const struct dent *d, size_t n)
{
	size_t nameoff = n * 12;

	for (size_t i = 0; i < n; i++) {
		put64(blk + i * 12, d[i].nid);
		put16(blk + i * 12 + 8, (uint16_t)nameoff);
		blk[i * 12 + 10] = d[i].type;
		memcpy(blk + nameoff, d[i].name, strlen(d[i].name));
		nameoff += strlen(d[i].name);
	}
	return nameoff;
}

/* An inline xattr entry; returns its aligned size. */
static size_t mk_xattr(uint8_t *p, uint8_t index, const char *name, const void *value, size_t vlen)
{
	size_t nlen = strlen(name);

	p[0] = (uint8_t)nlen;
	p[1] = index;
	put16(p + 2, (uint16_t)vlen);
	memcpy(p + 4, name, nlen);
	memcpy(p + 4 + nlen, value, vlen);
	return (4 + nlen + vlen + 3) & ~(size_t)3;
}

/* Root (nid 0, dir at block 2) with "sub" (nid 2, dir at block 3) and "f" (nid 4, a regular
 * file with the overlay xattrs); "sub" holds "back", whose nid is given. */
static uint8_t *mk_tree(size_t *size_ret, uint64_t back_nid, uint16_t back_mode)
{
	size_t size = 5 * BLK;
	uint8_t *img = calloc(1, size);
	uint8_t *f;
	size_t used, x;
	uint8_t metacopy[36] = {0, 36, 0, 1};
	char redirect[1 + CFS_NAME_PATH_LEN + 1];

	assert_non_null(img);
	mk_super(img, 0);
	used =
	    mk_dirblock(img + 2 * BLK,
	                (struct dent[]){{0, ".", 2}, {0, "..", 2}, {4, "f", 1}, {2, "sub", 2}}, 4);
	mk_inode(img, 0, S_IFDIR | 0755, 0, (uint32_t)used, 2, 0);
	used = mk_dirblock(img + 3 * BLK,
	                   (struct dent[]){{2, ".", 2}, {0, "..", 2}, {back_nid, "back", 2}}, 3);
	mk_inode(img, 2, S_IFDIR | 0755, 0, (uint32_t)used, 3, 0);
	for (int i = 0; i < 32; i++)
		metacopy[4 + i] = (uint8_t)(0xa0 + i);
	redirect[0] = '/';
	cfs_name_format_path(metacopy + 4, redirect + 1);
	/* 12-byte ibody header, then two entries: 4 + 16 + 36 = 56 and 4 + 16 + 66 -> 88. */
	f = mk_inode(img, 4, S_IFREG | 0644, 0, 100000, 0, (56 + 88) / 4 + 1);
	x = 32 + 12;
	x += mk_xattr(f + x, 4, "overlay.metacopy", metacopy, sizeof(metacopy));
	x += mk_xattr(f + x, 4, "overlay.redirect", redirect, strlen(redirect));
	assert_int_equal(x, 32 + 12 + 56 + 88);
	if (back_mode)
		mk_inode(img, back_nid, back_mode, 0, 0, 0, 0);
	*size_ret = size;
	return img;
}

struct walk_log {
	unsigned entries, files, dirs, objects;
	char last_path[CFS_IMAGE_MAX_PATH + 1];
	uint8_t object[CFS_DIGEST_SIZE];
};

static int log_entry(const struct cfs_image_entry *e, void *userdata)
{
	struct walk_log *l = userdata;

	l->entries++;
	if (S_ISREG(e->mode))
		l->files++;
	if (S_ISDIR(e->mode))
		l->dirs++;
	if (e->has_object) {
		l->objects++;
		memcpy(l->object, e->object, CFS_DIGEST_SIZE);
	}
	snprintf(l->last_path, sizeof(l->last_path), "%s", e->path);
	return 0;
}

static int walk_buffer(const uint8_t *buf, size_t len, struct walk_log *log, char *msg,
                       size_t msglen)
{
	struct cfs_image *img = NULL;
	int r;

	memset(log, 0, sizeof(*log));
	r = cfs_image_open_buffer_msg(buf, len, &img, msg, msglen);
	if (r < 0)
		return r;
	r = cfs_image_walk(img, 0, log_entry, log);
	snprintf(msg, msglen, "%s", cfs_image_error(img));
	cfs_image_free(img);
	return r;
}

static void test_handmade_ok(void **state)
{
	struct walk_log log;
	char msg[256];
	size_t size;
	uint8_t *img = mk_tree(&size, 10, S_IFREG | 0644);

	(void)state;
	assert_int_equal(walk_buffer(img, size, &log, msg, sizeof(msg)), 0);
	assert_int_equal(log.entries, 3);
	assert_int_equal(log.dirs, 1);
	assert_int_equal(log.files, 2);
	assert_int_equal(log.objects, 1);
	assert_string_equal(log.last_path, "/sub/back");
	assert_int_equal(log.object[0], 0xa0);
	assert_int_equal(log.object[31], 0xa0 + 31);
	free(img);
}

/* The overlay xattrs reached through a shared xattr id and through a long name prefix. */
static void test_shared_and_long_prefix_xattrs(void **state)
{
	struct walk_log log;
	char msg[256];
	size_t size, x;
	uint8_t *img = mk_tree(&size, 10, S_IFREG | 0644);
	uint8_t *f = img + BLK + 4 * 32;
	uint8_t metacopy[36] = {0, 36, 0, 1};
	char redirect[1 + CFS_NAME_PATH_LEN + 1];

	(void)state;
	for (int i = 0; i < 32; i++)
		metacopy[4 + i] = (uint8_t)(0x10 + i);
	redirect[0] = '/';
	cfs_name_format_path(metacopy + 4, redirect + 1);
	/* Shared entry at byte 2048 of block 0 (xattr_blkaddr 0): id 512. */
	mk_xattr(img + 2048, 4, "overlay.metacopy", metacopy, sizeof(metacopy));
	/* Long prefix table at byte 3072: "trusted." + "overlay.". */
	img[1024 + 80] = 0x40;
	img[1024 + 91] = 1;
	put32(img + 1024 + 92, 3072 / 4);
	put16(img + 3072, 1 + 8);
	img[3074] = 4;
	memcpy(img + 3075, "overlay.", 8);
	memset(f + 32, 0, 156);
	put16(f + 2, (4 + 80) / 4 + 1); /* header, one shared id, one 80-byte entry */
	f[32 + 4] = 1;
	put32(f + 32 + 12, 512);
	x = mk_xattr(f + 32 + 16, 0x80, "redirect", redirect, strlen(redirect));
	assert_int_equal(x, 4 + 8 + 66 + 2);
	assert_int_equal(walk_buffer(img, size, &log, msg, sizeof(msg)), 0);
	assert_int_equal(log.objects, 1);
	assert_int_equal(log.object[0], 0x10);
	assert_int_equal(log.object[31], 0x10 + 31);
	/* A long prefix index past the table is corrupt. */
	f[32 + 16 + 1] = 0x85;
	assert_int_equal(walk_buffer(img, size, &log, msg, sizeof(msg)), -EUCLEAN);
	/* A shared id past the end of the image too. */
	f[32 + 16 + 1] = 0x80;
	put32(f + 32 + 12, 0x40000000);
	assert_int_equal(walk_buffer(img, size, &log, msg, sizeof(msg)), -EUCLEAN);
	free(img);
}

/* The root directory in the chunk-based layout, with 8-byte chunk indexes and with a 4-byte
 * block map; a hole and an extra device are refused. */
static void test_chunked_directory(void **state)
{
	struct walk_log log;
	char msg[256];
	size_t size;
	uint8_t *img;

	(void)state;
	for (int indexes = 0; indexes <= 1; indexes++) {
		img = mk_tree(&size, 10, S_IFREG | 0644);
		put16(img + BLK, 4 << 1);
		put32(img + BLK + 16, indexes ? 0x20 : 0);
		if (indexes)
			put32(img + BLK + 32 + 4, 2);
		else
			put32(img + BLK + 32, 2);
		assert_int_equal(walk_buffer(img, size, &log, msg, sizeof(msg)), 0);
		assert_int_equal(log.entries, 3);
		assert_int_equal(log.objects, 1);
		put32(img + BLK + 32 + (indexes ? 4 : 0), 0xffffffffu);
		assert_int_equal(walk_buffer(img, size, &log, msg, sizeof(msg)), -EUCLEAN);
		assert_non_null(strstr(msg, "hole"));
		if (indexes) {
			put32(img + BLK + 32 + 4, 2);
			put16(img + BLK + 32 + 2, 1);
			assert_int_equal(walk_buffer(img, size, &log, msg, sizeof(msg)),
			                 -EOPNOTSUPP);
		}
		free(img);
	}
}

static void test_directory_loop(void **state)
{
	struct walk_log log;
	char msg[256];
	size_t size;
	uint8_t *img;

	(void)state;
	/* "sub/back" is the root again, then "sub" itself. */
	for (uint64_t nid = 0; nid <= 2; nid += 2) {
		img = mk_tree(&size, nid, 0);
		assert_int_equal(walk_buffer(img, size, &log, msg, sizeof(msg)), -EUCLEAN);
		assert_non_null(strstr(msg, "loop"));
		free(img);
	}
}

static void test_hostile_fields(void **state)
{
	struct walk_log log;
	char msg[256];
	size_t size;
	uint8_t *img;

	(void)state;
	/* nid far beyond the image. */
	img = mk_tree(&size, 0xffffffffffffull, 0);
	assert_int_equal(walk_buffer(img, size, &log, msg, sizeof(msg)), -EUCLEAN);
	assert_non_null(strstr(msg, "beyond"));
	free(img);
	/* Huge xattr count. */
	img = mk_tree(&size, 10, S_IFREG | 0644);
	put16(img + BLK + 4 * 32 + 2, 0xffff);
	assert_int_equal(walk_buffer(img, size, &log, msg, sizeof(msg)), -EUCLEAN);
	free(img);
	/* Shared xattr count larger than the area. */
	img = mk_tree(&size, 10, S_IFREG | 0644);
	img[BLK + 4 * 32 + 32 + 4] = 200;
	assert_int_equal(walk_buffer(img, size, &log, msg, sizeof(msg)), -EUCLEAN);
	free(img);
	/* Directory size beyond the image and a block address beyond it. */
	img = mk_tree(&size, 10, S_IFREG | 0644);
	put32(img + BLK + 2 * 32 + 8, 0xffffffffu);
	assert_int_equal(walk_buffer(img, size, &log, msg, sizeof(msg)), -EUCLEAN);
	free(img);
	img = mk_tree(&size, 10, S_IFREG | 0644);
	put32(img + BLK + 2 * 32 + 16, 0x7fffffffu);
	assert_int_equal(walk_buffer(img, size, &log, msg, sizeof(msg)), -EUCLEAN);
	free(img);
	/* Name offsets out of order, and a name with a slash. */
	img = mk_tree(&size, 10, S_IFREG | 0644);
	put16(img + 3 * BLK + 12 + 8, 0xfff);
	assert_int_equal(walk_buffer(img, size, &log, msg, sizeof(msg)), -EUCLEAN);
	free(img);
	img = mk_tree(&size, 10, S_IFREG | 0644);
	memcpy(img + 3 * BLK + 36 + 3, "b/c", 3);
	assert_int_equal(walk_buffer(img, size, &log, msg, sizeof(msg)), -EUCLEAN);
	free(img);
	/* Root that is not a directory; bad magic; compressed directory. */
	img = mk_tree(&size, 10, S_IFREG | 0644);
	put16(img + BLK + 4, S_IFREG | 0644);
	assert_int_equal(walk_buffer(img, size, &log, msg, sizeof(msg)), -EUCLEAN);
	free(img);
	img = mk_tree(&size, 10, S_IFREG | 0644);
	img[1024] ^= 1;
	assert_int_equal(walk_buffer(img, size, &log, msg, sizeof(msg)), -EUCLEAN);
	assert_non_null(strstr(msg, "magic"));
	free(img);
	img = mk_tree(&size, 10, S_IFREG | 0644);
	put16(img + BLK + 2 * 32, 1 << 1);
	assert_int_equal(walk_buffer(img, size, &log, msg, sizeof(msg)), -EUCLEAN);
	free(img);
}

/* Many directories whose chunks all map to one block of many entries: a tiny image that would
 * list ~90k paths. The entry budget (bounded by the image size) stops it. */
static void test_shared_blocks_bounded(void **state)
{
	struct walk_log log;
	char msg[256];
	size_t size = 64 * BLK;
	uint8_t *img = calloc(1, size);
	struct dent d[250];
	char names[250][8];
	size_t used_root, used_child;

	(void)state;
	assert_non_null(img);
	mk_super(img, 0);
	d[0] = (struct dent){0, ".", 2};
	d[1] = (struct dent){0, "..", 2};
	for (int i = 2; i < 250; i++) {
		snprintf(names[i], sizeof(names[i]), "d%03d", i);
		d[i] = (struct dent){(uint64_t)(i - 1) * 4, names[i], 2};
	}
	used_root = mk_dirblock(img + 40 * BLK, d, 250);
	for (int i = 2; i < 250; i++) {
		names[i][0] = 'f';
		d[i] = (struct dent){2000, names[i], 1};
	}
	used_child = mk_dirblock(img + 41 * BLK, d, 250);
	assert_true(used_root <= BLK && used_child <= BLK);
	mk_inode(img, 0, S_IFDIR | 0755, 0, (uint32_t)used_root, 40, 0);
	/* Child directories in 1 GiB chunks: one 4-byte block address each, all block 41. */
	for (int i = 1; i < 250; i++) {
		uint8_t *p =
		    mk_inode(img, (uint64_t)i * 4, S_IFDIR | 0755, 4, (uint32_t)used_child, 18, 0);

		put32(p + 32, 41);
	}
	mk_inode(img, 2000, S_IFREG | 0644, 0, 0, 0, 0);
	assert_int_equal(walk_buffer(img, size, &log, msg, sizeof(msg)), -EUCLEAN);
	assert_non_null(strstr(msg, "more directory entries"));
	assert_true(log.entries < size / 12 + 100);
	free(img);
}

static void test_deep_nesting(void **state)
{
	struct walk_log log;
	char msg[256];
	const unsigned n = 1100;
	size_t size = BLK + (size_t)n * 128 + BLK;
	uint8_t *img = calloc(1, size);

	(void)state;
	assert_non_null(img);
	mk_super(img, 0);
	/* Directory i at nid 4i, its entries inline right after the inode. */
	for (unsigned i = 0; i < n; i++) {
		struct dent d[3] = {
		    {i * 4, ".", 2}, {i ? (i - 1) * 4 : 0, "..", 2}, {(i + 1) * 4, "a", 2}};
		uint8_t *p = img + BLK + (size_t)i * 128;
		size_t used = mk_dirblock(p + 32, d, i + 1 < n ? 3 : 2);

		mk_inode(img, i * 4, S_IFDIR | 0755, 2, (uint32_t)used, 0, 0);
	}
	assert_int_equal(walk_buffer(img, size, &log, msg, sizeof(msg)), -ENAMETOOLONG);
	assert_non_null(strstr(msg, "deep"));
	free(img);
}

/* ---- real images ----------------------------------------------------------------------- */

static char tmpdir[256];

static int run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int run(const char *fmt, ...)
{
	char cmd[4096];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	return system(cmd);
}

static uint8_t *load(const char *path, size_t *len_ret)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf;
	long len;

	assert_non_null(f);
	fseek(f, 0, SEEK_END);
	len = ftell(f);
	rewind(f);
	buf = malloc((size_t)len);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)len, f), (size_t)len);
	fclose(f);
	*len_ret = (size_t)len;
	return buf;
}

/* Tests that need the real images skip without them, and the program then exits 77: a SKIP in
 * the test log, not a pass. */
static bool skipped;
#define skip_real()                                                                                \
	do {                                                                                       \
		fprintf(stderr, "# skipped: no mkfs.erofs or setfattr\n");                         \
		skipped = true;                                                                    \
		skip();                                                                            \
	} while (0)

/* Builds a tree with the overlay xattrs, as cfs-store mkimage would, and two images of it. */
static int setup_real(void **state)
{
	(void)state;
	if (run("command -v mkfs.erofs >/dev/null && command -v setfattr >/dev/null") != 0)
		return 0;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/cfs-test-image.XXXXXX");
	if (!mkdtemp(tmpdir))
		return -1;
	if (run("set -e; cd %s; mkdir -p t/a/b t/c; printf x > t/a/small;"
	        "head -c 64 /dev/zero > t/a/b/s64; : > t/empty; ln -s a/small t/ln;"
	        "for i in $(seq 1 40); do f=t/c/file$i; truncate -s $((i * 100)) $f;"
	        " setfattr -n trusted.overlay.metacopy -v 0x00240001$(printf '%%02x%%062x' $i $i) "
	        "$f;"
	        " setfattr -n trusted.overlay.redirect -v /$(printf '%%02x/%%062x' $i $i) $f;"
	        " setfattr -n user.shared -v same $f; done;"
	        "ln t/c/file1 t/hard; mknod t/dev c 1 3 2>/dev/null || true;"
	        "mkfs.erofs -x2 --chunksize=1048576 --quiet chunked.img t >/dev/null;"
	        "mkfs.erofs -x2 --quiet plain.img t >/dev/null",
	        tmpdir) != 0) {
		run("rm -rf %s", tmpdir);
		tmpdir[0] = '\0';
	}
	return 0;
}

static int teardown_real(void **state)
{
	(void)state;
	if (tmpdir[0])
		run("rm -rf %s", tmpdir);
	return 0;
}

static void check_real(const char *name)
{
	char path[512], msg[256];
	struct cfs_image *img = NULL;
	struct walk_log log = {0};
	uint8_t *digests = NULL;
	size_t n = 0;

	if (!tmpdir[0])
		skip_real();
	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	assert_int_equal(cfs_image_open_msg(path, &img, msg, sizeof(msg)), 0);
	assert_int_equal(cfs_image_walk(img, 0, log_entry, &log), 0);
	/* a a/b a/small a/b/s64 c c/file1..40 dev empty hard ln */
	assert_int_equal(log.dirs, 3);
	assert_int_equal(log.files, 2 + 40 + 2);
	assert_int_equal(log.objects, 41);
	assert_int_equal(cfs_image_objects(img, &digests, &n), 0);
	assert_int_equal(n, 40);
	for (size_t i = 0; i < n; i++) {
		uint8_t expect[CFS_DIGEST_SIZE] = {0};

		/* Redirect /ii/<62 hex of i> parses to digest i<<248 | i. */
		expect[0] = (uint8_t)(i + 1);
		expect[31] = (uint8_t)(i + 1);
		assert_memory_equal(digests + i * CFS_DIGEST_SIZE, expect, CFS_DIGEST_SIZE);
	}
	free(digests);
	cfs_image_free(img);
}

static void test_real_chunked(void **state)
{
	(void)state;
	check_real("chunked.img");
}

static void test_real_plain(void **state)
{
	(void)state;
	check_real("plain.img");
}

static bool clean_result(int r, const char *msg)
{
	if (r == 0)
		return true;
	if (r != -EUCLEAN && r != -EOPNOTSUPP && r != -ENAMETOOLONG)
		return false;
	return msg[0] != '\0';
}

static void test_truncated(void **state)
{
	char path[512], msg[256];
	struct walk_log log;
	size_t len, rejected = 0, tries = 0;
	uint8_t *buf;

	(void)state;
	if (!tmpdir[0])
		skip_real();
	snprintf(path, sizeof(path), "%s/chunked.img", tmpdir);
	buf = load(path, &len);
	for (size_t cut = 0; cut < len; cut += (cut < 2048 ? 61 : 509)) {
		int r = walk_buffer(buf, cut, &log, msg, sizeof(msg));

		tries++;
		assert_true(clean_result(r, msg));
		if (r < 0)
			rejected++;
	}
	/* Everything short of the last metadata block loses something. */
	print_message("%zu of %zu truncations of %zu bytes rejected\n", rejected, tries, len);
	assert_true(rejected * 10 >= tries * 9);
	/* Again without the block count and checksum, so the walk's own checks meet the cut. */
	buf[1024 + 8] &= (uint8_t)~1;
	put32(buf + 1024 + 36, 0);
	rejected = tries = 0;
	for (size_t cut = 0; cut < len; cut += (cut < 2048 ? 61 : 127)) {
		int r = walk_buffer(buf, cut, &log, msg, sizeof(msg));

		tries++;
		assert_true(clean_result(r, msg));
		if (r < 0)
			rejected++;
	}
	print_message("%zu of %zu deep truncations rejected\n", rejected, tries);
	assert_true(rejected > 0);
	free(buf);
}

static void test_bitflips(void **state)
{
	char path[512], msg[256];
	struct walk_log log;
	size_t len, rejected = 0;
	uint64_t seed = 0x12345678;
	uint8_t *buf;

	(void)state;
	if (!tmpdir[0])
		skip_real();
	snprintf(path, sizeof(path), "%s/plain.img", tmpdir);
	buf = load(path, &len);
	for (int i = 0; i < 4000; i++) {
		size_t off;
		unsigned bit;
		int r;

		seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
		off = (size_t)(seed >> 33) % len;
		bit = (unsigned)(seed >> 20) & 7;
		buf[off] ^= (uint8_t)(1u << bit);
		r = walk_buffer(buf, len, &log, msg, sizeof(msg));
		assert_true(clean_result(r, msg));
		if (r < 0)
			rejected++;
		buf[off] ^= (uint8_t)(1u << bit);
	}
	print_message("%zu of 4000 bit flips rejected\n", rejected);
	/* Flips in the superblock are caught by its checksum. */
	for (size_t off = 1024; off < 1024 + 128; off++) {
		buf[off] ^= 0x80;
		assert_int_not_equal(walk_buffer(buf, len, &log, msg, sizeof(msg)), 0);
		buf[off] ^= 0x80;
	}
	assert_true(rejected > 0);
	free(buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_handmade_ok),
	    cmocka_unit_test(test_shared_and_long_prefix_xattrs),
	    cmocka_unit_test(test_chunked_directory),
	    cmocka_unit_test(test_directory_loop),
	    cmocka_unit_test(test_hostile_fields),
	    cmocka_unit_test(test_shared_blocks_bounded),
	    cmocka_unit_test(test_deep_nesting),
	    cmocka_unit_test(test_real_chunked),
	    cmocka_unit_test(test_real_plain),
	    cmocka_unit_test(test_truncated),
	    cmocka_unit_test(test_bitflips),
	};

	int failed = cmocka_run_group_tests(tests, setup_real, teardown_real);

	return failed ? failed : skipped ? 77 : 0;
}
