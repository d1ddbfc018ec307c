/* SPDX-License-Identifier: MIT */
/* cfscache: unit test of cfs-serve's per-loop object cache (src/server/ocache.c): hits, byte
 * ranges, what is not cached, LRU eviction by bytes and by open files, replacement. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/buffer.h>

#include "common/util.h"
#include "server/ocache.h"

#define LARGE (CFS_OCACHE_SMALL + 5000)

static void digest_of(unsigned n, uint8_t d[CFS_DIGEST_SIZE])
{
	/* Digests that share everything but their last bytes, as an image may name them. */
	memset(d, 0x5a, CFS_DIGEST_SIZE);
	d[CFS_DIGEST_SIZE - 2] = (uint8_t)(n >> 8);
	d[CFS_DIGEST_SIZE - 1] = (uint8_t)n;
}

static void fill(unsigned n, uint8_t *buf, size_t size)
{
	for (size_t i = 0; i < size; i++)
		buf[i] = (uint8_t)(n * 31 + i * 7);
}

/* A file of @size bytes of pattern @n, and its stat. */
static int object_fd(unsigned n, size_t size, struct stat *st)
{
	uint8_t *buf = malloc(size ? size : 1);
	int fd = memfd_create("ocache-test", MFD_CLOEXEC);

	assert_non_null(buf);
	assert_true(fd >= 0);
	fill(n, buf, size);
	assert_int_equal(cfs_write_full(fd, buf, size), 0);
	assert_int_equal(fstat(fd, st), 0);
	free(buf);
	return fd;
}

static bool fd_open(int fd)
{
	return fcntl(fd, F_GETFD) >= 0;
}

/* Checks that the entry hands out bytes [@off, @off+@len) of pattern @n. */
static void check_range(struct cfs_ocache_entry *e, unsigned n, uint64_t off, uint64_t len)
{
	struct evbuffer *out = evbuffer_new();
	uint8_t *want = malloc(off + len + 1), *got = malloc(len + 1);

	assert_non_null(out);
	assert_non_null(want);
	assert_non_null(got);
	fill(n, want, off + len);
	assert_int_equal(cfs_ocache_add(e, out, off, len), 0);
	assert_int_equal(evbuffer_get_length(out), len);
	assert_int_equal(evbuffer_copyout(out, got, len), (ev_ssize_t)len);
	assert_memory_equal(got, want + off, len);
	evbuffer_free(out);
	free(want);
	free(got);
}

static struct cfs_ocache_entry *insert(struct cfs_ocache *oc, unsigned n, size_t size,
                                       bool sendfile_ok, int *fd_ret)
{
	uint8_t d[CFS_DIGEST_SIZE];
	struct stat st;
	int fd = object_fd(n, size, &st);
	struct cfs_ocache_entry *e;

	digest_of(n, d);
	e = cfs_ocache_insert(oc, d, fd, &st, sendfile_ok);
	if (fd_ret)
		*fd_ret = fd;
	else if (!e)
		close(fd);
	return e;
}

static struct cfs_ocache_entry *find(struct cfs_ocache *oc, unsigned n)
{
	uint8_t d[CFS_DIGEST_SIZE];

	digest_of(n, d);
	return cfs_ocache_find(oc, d);
}

static void test_small_and_large(void **state)
{
	struct cfs_ocache *oc;
	struct cfs_ocache_entry *e;
	uint8_t d[CFS_DIGEST_SIZE];
	struct stat st;
	int fd;

	assert_int_equal(cfs_ocache_new(1 << 20, 8, &oc), 0);
	assert_null(find(oc, 1));

	/* A small object is read into memory and its descriptor closed. */
	fd = object_fd(1, 1000, &st);
	digest_of(1, d);
	e = cfs_ocache_insert(oc, d, fd, &st, true);
	assert_non_null(e);
	assert_false(fd_open(fd));
	assert_memory_equal(e->digest, d, CFS_DIGEST_SIZE);
	assert_int_equal(e->size, 1000);
	assert_int_equal(e->dev, st.st_dev);
	assert_int_equal(e->ino, st.st_ino);
	assert_non_null(e->data);
	assert_null(e->seg);
	assert_ptr_equal(find(oc, 1), e);
	check_range(e, 1, 0, 1000);
	check_range(e, 1, 10, 1);
	check_range(e, 1, 999, 1);
	check_range(e, 1, 0, 0);

	/* A large one is kept as an open file segment. */
	e = insert(oc, 2, LARGE, true, &fd);
	assert_non_null(e);
	assert_non_null(e->seg);
	assert_null(e->data);
	assert_int_equal(e->size, LARGE);
	check_range(e, 2, 0, LARGE);
	check_range(e, 2, LARGE - 100, 100);
	assert_ptr_equal(find(oc, 2), e);
	assert_non_null(find(oc, 1));

	/* An empty object is cached too. */
	e = insert(oc, 3, 0, true, NULL);
	assert_non_null(e);
	assert_int_equal(e->size, 0);
	check_range(e, 3, 0, 0);

	cfs_ocache_drop(oc, find(oc, 2));
	assert_null(find(oc, 2));
	assert_non_null(find(oc, 1));
	cfs_ocache_free(oc);
	cfs_ocache_free(NULL);
}

static void test_not_cached(void **state)
{
	struct cfs_ocache *oc;
	int fd;

	/* Without sendfile (TLS), large objects are not cached; the descriptor stays ours. */
	assert_int_equal(cfs_ocache_new(1 << 20, 8, &oc), 0);
	assert_null(insert(oc, 1, LARGE, false, &fd));
	assert_true(fd_open(fd));
	close(fd);
	assert_null(find(oc, 1));
	/* A small object over the byte budget. */
	cfs_ocache_free(oc);
	assert_int_equal(cfs_ocache_new(500, 8, &oc), 0);
	assert_null(insert(oc, 2, 501, true, &fd));
	assert_true(fd_open(fd));
	close(fd);
	assert_non_null(insert(oc, 3, 500, true, NULL));
	cfs_ocache_free(oc);
	/* No budget at all. */
	assert_int_equal(cfs_ocache_new(0, 0, &oc), 0);
	assert_null(insert(oc, 4, 10, true, NULL));
	assert_null(insert(oc, 5, LARGE, true, NULL));
	assert_null(find(oc, 4));
	cfs_ocache_free(oc);
}

static void test_evict_bytes(void **state)
{
	struct cfs_ocache *oc;

	assert_int_equal(cfs_ocache_new(3000, 8, &oc), 0);
	assert_non_null(insert(oc, 1, 1000, true, NULL));
	assert_non_null(insert(oc, 2, 1000, true, NULL));
	assert_non_null(insert(oc, 3, 1000, true, NULL));
	/* A hit makes 1 the most recently used: 2 goes first. */
	assert_non_null(find(oc, 1));
	assert_non_null(insert(oc, 4, 1000, true, NULL));
	assert_null(find(oc, 2));
	assert_non_null(find(oc, 3));
	assert_non_null(find(oc, 1));
	assert_non_null(find(oc, 4));
	/* One object the size of the whole budget evicts everything else, never itself. */
	assert_non_null(insert(oc, 5, 3000, true, NULL));
	assert_null(find(oc, 1));
	assert_null(find(oc, 3));
	assert_null(find(oc, 4));
	check_range(find(oc, 5), 5, 0, 3000);
	cfs_ocache_free(oc);
}

static void test_evict_files(void **state)
{
	struct cfs_ocache *oc;
	struct cfs_ocache_entry *e;

	assert_int_equal(cfs_ocache_new(1 << 20, 2, &oc), 0);
	assert_non_null(insert(oc, 1, LARGE, true, NULL));
	assert_non_null(insert(oc, 2, LARGE, true, NULL));
	assert_non_null(insert(oc, 10, 100, true, NULL)); /* small ones hold no descriptor */
	assert_non_null(insert(oc, 3, LARGE, true, NULL));
	assert_null(find(oc, 1));
	assert_non_null(find(oc, 2));
	assert_non_null(find(oc, 10));
	e = find(oc, 3);
	assert_non_null(e);
	check_range(e, 3, 5, 1000);
	cfs_ocache_free(oc);
}

static void test_replace(void **state)
{
	struct cfs_ocache *oc;
	struct cfs_ocache_entry *e;

	/* The same digest inserted again (the file under that name changed): the new one wins and
	 * the old one's bytes leave the budget. */
	assert_int_equal(cfs_ocache_new(1500, 8, &oc), 0);
	assert_non_null(insert(oc, 1, 1000, true, NULL));
	e = insert(oc, 1, 1200, true, NULL);
	assert_non_null(e);
	assert_int_equal(e->size, 1200);
	assert_ptr_equal(find(oc, 1), e);
	assert_non_null(insert(oc, 2, 300, true, NULL));
	assert_non_null(find(oc, 1));
	assert_non_null(find(oc, 2));
	cfs_ocache_free(oc);
}

static void test_many(void **state)
{
	struct cfs_ocache *oc;
	const unsigned n = 5000;

	/* Far more entries than the map's first guess: it grows, and eviction keeps a window. */
	assert_int_equal(cfs_ocache_new(n * 10, 4, &oc), 0);
	for (unsigned i = 0; i < n; i++)
		assert_non_null(insert(oc, i, 10, true, NULL));
	for (unsigned i = 0; i < n; i++) {
		struct cfs_ocache_entry *e = find(oc, i);

		assert_non_null(e);
		assert_int_equal(e->size, 10);
	}
	for (unsigned i = n; i < n + n / 2; i++)
		assert_non_null(insert(oc, i, 10, true, NULL));
	for (unsigned i = 0; i < n / 2; i++)
		assert_null(find(oc, i));
	for (unsigned i = n / 2; i < n + n / 2; i++)
		assert_non_null(find(oc, i));
	/* Dropping everything one by one leaves nothing behind. */
	for (unsigned i = n / 2; i < n + n / 2; i++)
		cfs_ocache_drop(oc, find(oc, i));
	for (unsigned i = 0; i < n + n / 2; i++)
		assert_null(find(oc, i));
	cfs_ocache_free(oc);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_small_and_large), cmocka_unit_test(test_not_cached),
	    cmocka_unit_test(test_evict_bytes),     cmocka_unit_test(test_evict_files),
	    cmocka_unit_test(test_replace),         cmocka_unit_test(test_many),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
