/* SPDX-License-Identifier: MIT */
/* cfscache: unit tests of the composefs image writer: dump parsing, layout rules, round trips
 * through the reader, format versions, hostile payloads. */
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

#include "image/image.h"
#include "image/writer-internal.h"

static struct cfs_tree *tree_of(const char *text, int *r_ret, size_t *line_ret)
{
	FILE *f = fmemopen((void *)text, strlen(text), "r");
	struct cfs_tree *tree = NULL;

	assert_non_null(f);
	*r_ret = cfs_tree_from_dump(f, &tree, line_ret);
	fclose(f);
	return tree;
}

/* Dump text -> image -> dump text. */
static char *round_trip(const char *text, const struct cfs_write_options *opts, uint8_t **img_ret,
                        size_t *len_ret)
{
	struct cfs_tree *tree;
	uint8_t *img = NULL;
	size_t len = 0, outlen = 0;
	char *out = NULL, msg[256];
	FILE *f;
	int r;

	tree = tree_of(text, &r, NULL);
	assert_int_equal(r, 0);
	assert_int_equal(cfs_tree_write(tree, opts, &img, &len), 0);
	cfs_tree_free(tree);
	assert_int_equal(len % 4096, 0);
	f = open_memstream(&out, &outlen);
	assert_non_null(f);
	assert_int_equal(cfs_image_dump(img, len, f, msg, sizeof(msg)), 0);
	fclose(f);
	if (img_ret) {
		*img_ret = img;
		*len_ret = len;
	} else {
		free(img);
	}
	return out;
}

static void test_xxh32(void **state)
{
	static const char spam[] = "Nobody inspects the spammish repetition";

	(void)state;
	assert_int_equal(cfs_xxh32("", 0, 0), 0x02CC5D05u);
	assert_int_equal(cfs_xxh32("abc", 3, 0), 0x32D153FFu);
	assert_int_equal(cfs_xxh32(spam, strlen(spam), 0), 0xE2293B2Fu);
}

static const char every_type[] =
    "/ 4096 40755 3 0 0 0 100.5 - - - user.root=r\n"
    "/d 0 40700 2 10 20 0 200.0 - - - user.a=1 user.b=x\\x3dy\n"
    "/d/big 100000 100644 1 0 0 0 300.0 "
    "ab/cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd - "
    "abcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd user.a=1\n"
    "/d/chr 0 20600 1 0 0 259 100.5 - - -\n"
    "/d/fifo 0 10644 1 0 0 0 100.5 - - -\n"
    "/d/inline 6 100600 1 70000 5 0 100.5 - a\\x20b\\n\\\\\\t - user.a=1\n"
    "/d/link 4 120777 1 0 0 0 100.5 /d/x - -\n"
    "/d/sock 0 140755 1 0 0 0 100.5 - - -\n"
    "/e 0 40755 2 0 0 0 100.5 - - -\n"
    "/e/hard 6 @100600 2 70000 5 0 100.5 /d/inline a\\x20b\\n\\\\\\t - user.a=1\n";

static void test_round_trip(void **state)
{
	char *out;

	(void)state;
	out = round_trip(every_type, NULL, NULL, NULL);
	/* Directory sizes and link counts are the image's own; xattrs come inline ones first,
	 * then shared ones (user.a=1 is used four times), as composefs reads them back. */
	assert_string_equal(
	    out, "/ 4096 40755 4 0 0 0 100.5 - - - user.root=r\n"
	         "/d 123 40700 2 10 20 0 200.0 - - - user.b=x\\x3dy user.a=1\n"
	         "/d/big 100000 100644 1 0 0 0 300.0 "
	         "ab/cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd - "
	         "abcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd user.a=1\n"
	         "/d/chr 0 20600 1 0 0 259 100.5 - - -\n"
	         "/d/fifo 0 10644 1 0 0 0 100.5 - - -\n"
	         "/d/inline 6 100600 2 70000 5 0 100.5 - a\\x20b\\n\\\\\\t - user.a=1\n"
	         "/d/link 4 120777 1 0 0 0 100.5 /d/x - -\n"
	         "/d/sock 0 140755 1 0 0 0 100.5 - - -\n"
	         "/e 43 40755 2 0 0 0 100.5 - - -\n"
	         "/e/hard 6 @100600 2 70000 5 0 100.5 /d/inline a\\x20b\\n\\\\\\t - user.a=1\n");
	free(out);
}

static void test_dump_errors(void **state)
{
	static const struct {
		const char *text;
		size_t line;
	} bad[] = {
	    {"/a 0 100644 1 0 0 0 0.0 - - -\n", 1}, /* no root yet */
	    {"/ 0 40755 1 0 0 0 0.0 - - -\n/a/b 0 100644 1 0 0 0 0.0 - - -\n", 2},
	    {"/ 0 40755 1 0 0 0 0.0 - - -\n/a 0 100644 1 0 0 0 0.0 - - -\n"
	     "/a 0 100644 1 0 0 0 0.0 - - -\n",
	     3}, /* twice */
	    {"/ 0 40755 1 0 0 0 0.0 - - -\n/a 0 190644 1 0 0 0 0.0 - - -\n", 2},
	    {"/ 0 40755 1 0 0 0 0.0 - - -\n/a 0 100644 1 0 0 0 0.x - - -\n", 2},
	    {"/ 0 40755 1 0 0 0 0.0 - - -\n/a\\q 0 100644 1 0 0 0 0.0 - - -\n", 2},
	    {"/ 0 40755 1 0 0 0 0.0 - - -\n/a 0 100644 1 0 0 0 0.0 - - \n", 2},
	    {"/ 0 40755 1 0 0 0 0.0 - - -\n/a 0 120777 1 0 0 0 0.0 - - -\n", 2}, /* no target */
	    {"/ 0 40755 1 0 0 0 0.0 - - -\n/d 0 40755 1 0 0 0 0.0 - - -\n"
	     "/h 0 @100644 1 0 0 0 0.0 /d - -\n",
	     3}, /* link to a directory */
	    {"/ 0 40755 1 0 0 0 0.0 - - -\n/h 0 @100644 1 0 0 0 0.0 /nope - -\n", 2},
	    {"/ 0 40755 1 0 0 0 0.0 - - -\n/a 0 100644 1 0 0 0 0.0 - - 12 \n", 2},
	    {"/ 0 40755 1 0 0 0 0.0 - - - novalue\n", 1},
	    {"", 0},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		size_t line = 99;
		int r;
		struct cfs_tree *t = tree_of(bad[i].text, &r, &line);

		assert_null(t);
		assert_int_equal(r, -EINVAL);
		assert_int_equal(line, bad[i].line);
	}
}

struct count {
	size_t entries, bad_redirect;
};

static int count_entry(const struct cfs_image_entry *e, void *userdata)
{
	struct count *c = userdata;

	(void)e;
	c->entries++;
	return 0;
}

/* A directory bigger than a block: full blocks out of line, a tail of at most half a block. */
static void test_large_directory(void **state)
{
	char *text = NULL, *out;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	struct cfs_image *img;
	struct count c = {0};
	uint8_t *data;
	size_t dlen;

	(void)state;
	fputs("/ 0 40755 2 0 0 0 7.0 - - -\n", f);
	for (int i = 0; i < 2000; i++)
		fprintf(f, "/entry-%04d 0 100644 1 0 0 0 7.0 - - -\n", i);
	fclose(f);
	out = round_trip(text, NULL, &data, &dlen);
	assert_non_null(strstr(out, "\n/entry-1999 0 100644 1 0 0 0 7.0 - - -\n"));
	assert_int_equal(cfs_image_open_buffer(data, dlen, &img), 0);
	assert_int_equal(cfs_image_walk(img, 0, count_entry, &c), 0);
	assert_int_equal(c.entries, 2000 + 256); /* and the root's whiteouts 00..ff */
	cfs_image_free(img);
	free(data);
	free(out);
	free(text);
}

/* Content over half a block is not tail-packed: it goes to a data block. */
static void test_block_content(void **state)
{
	char *text, *out, *p;
	size_t n = 3000;

	(void)state;
	text = malloc(100 + n);
	p = text + sprintf(text, "/ 0 40755 2 0 0 0 7.0 - - -\n/f %zu 100644 1 0 0 0 7.0 - ", n);
	memset(p, 'q', n);
	strcpy(p + n, " -\n");
	out = round_trip(text, NULL, NULL, NULL);
	assert_string_equal(out + strlen("/ 4096 40755 2 0 0 0 7.0 - - -\n"),
	                    text + strlen("/ 0 40755 2 0 0 0 7.0 - - -\n"));
	free(out);
	free(text);
}

static void test_versions(void **state)
{
	static const char whiteout[] =
	    "/ 0 40755 2 0 0 0 7.0 - - -\n/w 0 20000 1 0 0 0 7.0 - - -\n";
	struct cfs_write_options v0 = {.min_version = 0, .max_version = 0};
	struct cfs_write_options bad = {.min_version = 2, .max_version = 2};
	struct cfs_tree *t;
	uint8_t *img;
	size_t len;
	char *out;
	int r;

	(void)state;
	/* A whiteout raises the format to version 1 unless the maximum is 0; either way it is
	 * escaped, and reads back as a whiteout. */
	out = round_trip(whiteout, NULL, &img, &len);
	assert_int_equal(img[12], 1);
	assert_non_null(memmem(img, len, "overlay.opaque", 14));
	assert_null(memmem(img, len, "overlay.whiteouts", 17));
	assert_string_equal(out, "/ 4096 40755 2 0 0 0 7.0 - - -\n/w 0 20000 1 0 0 0 7.0 - - -\n");
	free(img);
	free(out);
	out = round_trip(whiteout, &v0, &img, &len);
	assert_int_equal(img[12], 0);
	assert_non_null(memmem(img, len, "overlay.whiteouts", 17));
	assert_string_equal(out, "/ 4096 40755 2 0 0 0 7.0 - - -\n/w 0 20000 1 0 0 0 7.0 - - -\n");
	free(img);
	free(out);
	t = tree_of(whiteout, &r, NULL);
	assert_int_equal(cfs_tree_write(t, &bad, &img, &len), -EINVAL);
	cfs_tree_free(t);
}

/* The writer writes what a dump asks for; the reader is what refuses a bad redirect. */
static void test_hostile_redirect(void **state)
{
	static const char passwd[] =
	    "/ 0 40755 2 0 0 0 7.0 - - -\n/f 100 100644 1 0 0 0 7.0 etc/passwd - -\n";
	struct cfs_tree *t;
	struct cfs_image *img;
	uint8_t *data;
	size_t len;
	int r;

	(void)state;
	t = tree_of(passwd, &r, NULL);
	assert_int_equal(r, 0);
	assert_int_equal(cfs_tree_write(t, NULL, &data, &len), 0);
	cfs_tree_free(t);
	assert_int_equal(cfs_image_open_buffer(data, len, &img), 0);
	assert_int_equal(cfs_image_walk(img, 0, NULL, NULL), -EUCLEAN);
	assert_non_null(strstr(cfs_image_error(img), "not an object path"));
	cfs_image_free(img);
	free(data);
}

/* A symlink target the kernel could not read (it must sit in its inode's block) is refused. */
static void test_long_symlink(void **state)
{
	char *text = malloc(8192), *p;
	struct cfs_tree *t;
	uint8_t *img = NULL;
	size_t len;
	int r;

	(void)state;
	for (size_t n = 4000; n <= 4095; n += 95) {
		p = text +
		    sprintf(text, "/ 0 40755 2 0 0 0 1.0 - - -\n/l %zu 120777 1 0 0 0 1.0 ", n);
		memset(p, 'y', n);
		strcpy(p + n, " - -\n");
		t = tree_of(text, &r, NULL);
		assert_int_equal(r, 0);
		r = cfs_tree_write(t, NULL, &img, &len);
		cfs_tree_free(t);
		if (n == 4000) {
			struct cfs_image *image;

			assert_int_equal(r, 0);
			assert_int_equal(cfs_image_open_buffer(img, len, &image), 0);
			assert_int_equal(cfs_image_walk(image, 0, NULL, NULL), 0);
			cfs_image_free(image);
			free(img);
		} else {
			assert_int_equal(r, -ENAMETOOLONG);
		}
	}
	free(text);
}

/* cfs_image_check: what mount-image calls before mounting. */
static void test_image_check(void **state)
{
	static const char text[] = "/ 0 40755 2 0 0 0 7.0 - - -\n/f 3 100644 1 0 0 0 7.0 - abc -\n";
	char path[] = "/tmp/cfs-test-check.XXXXXX", msg[256];
	struct cfs_tree *t;
	uint8_t *data;
	size_t len;
	FILE *f;
	int fd, r;

	(void)state;
	t = tree_of(text, &r, NULL);
	assert_int_equal(cfs_tree_write(t, NULL, &data, &len), 0);
	cfs_tree_free(t);
	fd = mkstemp(path);
	assert_true(fd >= 0);
	f = fdopen(fd, "w");
	assert_int_equal(fwrite(data, 1, len, f), len);
	fclose(f);
	assert_int_equal(cfs_image_check(path, msg, sizeof(msg)), 0);
	assert_int_equal(truncate(path, (off_t)len - 1), 0);
	assert_int_equal(cfs_image_check(path, msg, sizeof(msg)), -EUCLEAN);
	assert_non_null(strstr(msg, "truncated"));
	assert_int_equal(truncate(path, 100), 0);
	assert_int_equal(cfs_image_check(path, msg, sizeof(msg)), -EUCLEAN);
	assert_non_null(strstr(msg, "too small"));
	unlink(path);
	assert_int_equal(cfs_image_check(path, msg, sizeof(msg)), -ENOENT);
	free(data);
}

static int digest_file(int fd, const char *path, const struct stat *st,
                       uint8_t digest[CFS_DIGEST_SIZE], void *userdata)
{
	size_t *calls = userdata;

	(void)path;
	(void)st;
	(*calls)++;
	return cfs_digest_fd(fd, 1, digest, NULL);
}

/* A directory read as mkcomposefs reads one (no root needed: user xattrs, no devices). */
static void test_tree_from_dir(void **state)
{
	char dir[] = "/tmp/cfs-test-tree.XXXXXX", cmd[1024], *failed = NULL, *out = NULL;
	struct cfs_tree *tree = NULL;
	size_t calls = 0, outlen = 0, len;
	uint8_t *img;
	FILE *f;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(cmd, sizeof(cmd),
	         "set -e; cd %s; mkdir -p d/e; printf hi > d/small; head -c 100 /dev/zero > d/big;"
	         " : > empty; ln -s d/small link; mkfifo fifo; ln d/big d/e/hard;"
	         " (setfattr -n user.k -v v d/small 2>/dev/null || true);"
	         " touch -h -d @1000000000.5 d/small d/big empty link fifo d/e/hard d/e d .",
	         dir);
	assert_int_equal(system(cmd), 0);
	assert_int_equal(cfs_tree_from_dir(dir, 0, digest_file, &calls, &tree, &failed), 0);
	assert_null(failed);
	/* Files over 64 bytes are hashed, once per name: hard links of a tree stay two inodes. */
	assert_int_equal(calls, 2);
	assert_int_equal(cfs_tree_write(tree, NULL, &img, &len), 0);
	cfs_tree_free(tree);
	f = open_memstream(&out, &outlen);
	assert_int_equal(cfs_image_dump(img, len, f, NULL, 0), 0);
	fclose(f);
	assert_non_null(strstr(out, "\n/d/small 2 100644 1 "));
	assert_non_null(strstr(out, " 1000000000.500000000 - hi -"));
	assert_non_null(strstr(out, "\n/link 7 120777 1 "));
	assert_non_null(strstr(out, " d/small - -\n"));
	assert_non_null(strstr(out, "\n/d/e/hard 100 100644 1 "));
	assert_non_null(strstr(out, "\n/fifo 0 10644 1 "));
	assert_null(strstr(out, "\n/d/e/hard 100 @"));
	free(out);
	free(img);
	/* A tree that cannot be read names what failed. */
	assert_int_equal(
	    cfs_tree_from_dir("/nonexistent/cfs", 0, digest_file, &calls, &tree, &failed), -ENOENT);
	assert_non_null(failed);
	free(failed);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_xxh32),
	    cmocka_unit_test(test_round_trip),
	    cmocka_unit_test(test_dump_errors),
	    cmocka_unit_test(test_large_directory),
	    cmocka_unit_test(test_block_content),
	    cmocka_unit_test(test_versions),
	    cmocka_unit_test(test_hostile_redirect),
	    cmocka_unit_test(test_long_symlink),
	    cmocka_unit_test(test_image_check),
	    cmocka_unit_test(test_tree_from_dir),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
