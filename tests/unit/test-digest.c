/* SPDX-License-Identifier: MIT */
/* cfscache: unit tests for the fs-verity digest (public vectors, chunking, threads). */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/digest.h"
#include "common/name.h"
#include "common/util.h"

/* The published fsverity-utils vectors: SHA-256, 4096-byte blocks, no salt, over the data
 * pattern (i % 11) + (i % 439) + (i % 1103). */
static const struct {
	size_t size;
	const char *hex;
} vectors[] = {
	{ 1000000, "48df0c462329cd879661bd05b39aa81b05cc16afd27a7196a559da83531d39d9" },
	{ 100000, "f2096a36c5cdca4fa33ee8852833150bb324992e5417a9d571f1bffff73b9efc" },
	{ 4096, "6ac39979016e3ddf3d39fff6cb984f7c118acdf1852919f5c100c4b142c1818e" },
	{ 1, "b803429503d95915829b29fdbc8bbad142f3abfd11b1cadf5526582e685c0551" },
	{ 0, "3d248ca542a24fc62d1c43b916eae5016878e2533c88238480b26128a1f1af95" },
};

static uint8_t *pattern(size_t size)
{
	uint8_t *p = malloc(size ? size : 1);

	assert_non_null(p);
	for (size_t i = 0; i < size; i++)
		p[i] = (uint8_t)((i % 11) + (i % 439) + (i % 1103));
	return p;
}

static void expect_digest(const uint8_t d[32], const char *hex)
{
	char got[65];

	cfs_name_format_hex(d, got);
	assert_string_equal(got, hex);
}

static void test_vectors_oneshot(void **state)
{
	uint8_t *data = pattern(1000000);

	for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
		uint8_t d[32];

		assert_int_equal(cfs_digest_buffer(data, vectors[i].size, d), 0);
		expect_digest(d, vectors[i].hex);
	}
	free(data);
}

/* Feeding in odd-sized pieces must not change the result. */
static void test_vectors_chunked(void **state)
{
	static const size_t chunks[] = { 1, 7, 4095, 4096, 4097, 65536, 100003 };
	uint8_t *data = pattern(1000000);
	struct cfs_digest_ctx *ctx;

	assert_int_equal(cfs_digest_new(&ctx), 0);
	for (size_t c = 0; c < sizeof(chunks) / sizeof(chunks[0]); c++) {
		for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
			uint8_t d[32];
			size_t off = 0;

			cfs_digest_reset(ctx);
			while (off < vectors[i].size) {
				size_t n = chunks[c];
				if (n > vectors[i].size - off)
					n = vectors[i].size - off;
				cfs_digest_update(ctx, data + off, n);
				off += n;
			}
			assert_int_equal(cfs_digest_size(ctx), vectors[i].size);
			cfs_digest_final(ctx, d);
			expect_digest(d, vectors[i].hex);
		}
	}
	cfs_digest_free(ctx);
	free(data);
}

/* The threaded file path and the streaming path agree, around level boundaries too:
 * 128 hashes fill one block, so 128 and 129 data blocks and 128*128 (+1) are edges. */
static void test_fd_threads_agree(void **state)
{
	static const size_t sizes[] = { 0,
					1,
					4096,
					4097,
					128 * 4096,
					128 * 4096 + 1,
					129 * 4096,
					(8u << 20) - 1,
					(8u << 20) + 1,
					128 * 128 * 4096,
					128 * 128 * 4096 + 4096,
					(size_t)(128 * 128 * 4096) + 12345 };
	size_t max = sizes[sizeof(sizes) / sizeof(sizes[0]) - 1];
	uint8_t *data = pattern(max);
	char path[] = "/tmp/cfs-test-digest-XXXXXX";
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	unlink(path);
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		uint8_t a[32], b[32], c[32];
		uint64_t got;

		assert_int_equal(ftruncate(fd, 0), 0);
		assert_int_equal(pwrite(fd, data, sizes[i], 0), (ssize_t)sizes[i]);
		assert_int_equal(cfs_digest_buffer(data, sizes[i], a), 0);
		assert_int_equal(cfs_digest_fd(fd, 1, b, &got), 0);
		assert_int_equal(got, sizes[i]);
		assert_int_equal(cfs_digest_fd(fd, 2, c, NULL), 0);
		assert_memory_equal(a, b, 32);
		assert_memory_equal(a, c, 32);
	}
	close(fd);
	free(data);
}

static void test_different_data_differs(void **state)
{
	uint8_t buf[8192] = { 0 }, a[32], b[32];

	assert_int_equal(cfs_digest_buffer(buf, sizeof(buf), a), 0);
	buf[5000] ^= 1;
	assert_int_equal(cfs_digest_buffer(buf, sizeof(buf), b), 0);
	assert_memory_not_equal(a, b, 32);
	/* Trailing zeros are padding inside the tree but the size is in the descriptor. */
	assert_int_equal(cfs_digest_buffer(buf, 8191, a), 0);
	buf[5000] ^= 1;
	assert_int_equal(cfs_digest_buffer(buf, 8191, b), 0);
	assert_memory_not_equal(a, b, 32);
	assert_int_equal(cfs_digest_buffer(buf, 8192, a), 0);
	assert_memory_not_equal(a, b, 32);
}

/* The hashing thread gives the same results, whenever it starts and whatever the chunking,
 * and a reset in the middle returns the context to a clean state. */
static void test_async_agrees(void **state)
{
	static const size_t sizes[] = { 0, 1, 4096, 4097, 100000, 128 * 4096 + 5, 5000000 };
	static const size_t chunks[] = { 1000, 4096, 65536, 1 << 20 };
	uint8_t *data = pattern(5000000);
	struct cfs_digest_ctx *ctx;

	assert_int_equal(cfs_digest_new(&ctx), 0);
	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
		for (size_t c = 0; c < sizeof(chunks) / sizeof(chunks[0]); c++) {
			uint8_t want[32], got[32];
			size_t off = 0;

			assert_int_equal(cfs_digest_buffer(data, sizes[s], want), 0);
			/* Garbage first, then a reset: nothing of it may survive. */
			assert_int_equal(cfs_digest_start_async(ctx), 0);
			cfs_digest_update(ctx, data + 7, 50000);
			cfs_digest_reset(ctx);
			while (off < sizes[s]) {
				size_t n = CFS_MIN(chunks[c], sizes[s] - off);

				/* Switch to the helper thread part way through. */
				if (off >= sizes[s] / 3)
					assert_int_equal(cfs_digest_start_async(ctx), 0);
				cfs_digest_update(ctx, data + off, n);
				off += n;
			}
			cfs_digest_final(ctx, got);
			assert_memory_equal(want, got, 32);
			cfs_digest_reset(ctx);
		}
	}
	cfs_digest_free(ctx);
	free(data);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vectors_oneshot),
		cmocka_unit_test(test_vectors_chunked),
		cmocka_unit_test(test_fd_threads_agree),
		cmocka_unit_test(test_different_data_differs),
		cmocka_unit_test(test_async_agrees),
	};

	return cmocka_run_group_tests_name("digest", tests, NULL, NULL);
}
