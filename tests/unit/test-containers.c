/* SPDX-License-Identifier: MIT */
/* cfscache: unit tests of the shared containers: the digest set and the digest map. */
#include "config.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/digestset.h"

/* A digest made of @seed: distinct seeds give distinct digests, sharing their first 8 bytes
 * when @shared_prefix. */
static void make_digest(uint8_t d[CFS_DIGEST_SIZE], uint32_t seed, bool shared_prefix)
{
	uint64_t x = seed * 0x9E3779B97F4A7C15ULL + 1;

	for (size_t i = 0; i < CFS_DIGEST_SIZE; i++) {
		x ^= x >> 29;
		x *= 0xBF58476D1CE4E5B9ULL;
		d[i] = (uint8_t)(x >> 56);
	}
	if (shared_prefix)
		memset(d, 0xab, 8);
	memcpy(d + CFS_DIGEST_SIZE - sizeof(seed), &seed, sizeof(seed));
}

static void test_digestset_empty(void **state)
{
	struct cfs_digestset set = CFS_DIGESTSET_INIT;
	uint8_t d[CFS_DIGEST_SIZE];
	size_t n = 99;

	(void)state;
	make_digest(d, 1, false);
	assert_int_equal(cfs_digestset_count(&set), 0);
	assert_false(cfs_digestset_contains(&set, d));
	cfs_digestset_seal(&set);
	assert_false(cfs_digestset_contains(&set, d));
	assert_null(cfs_digestset_steal(&set, &n));
	assert_int_equal(n, 0);
	cfs_digestset_free(&set);
}

/* Many digests, each added three times in a scrambled order, past several growths. */
static void test_digestset_seal_dedups(void **state)
{
	enum { N = 5000 };
	struct cfs_digestset set = CFS_DIGESTSET_INIT;
	uint8_t d[CFS_DIGEST_SIZE], *all;
	size_t n;

	(void)state;
	for (uint32_t round = 0; round < 3; round++)
		for (uint32_t i = 0; i < N; i++) {
			uint32_t seed = (i * 7919 + round * 13) % N;

			make_digest(d, seed, seed % 3 == 0);
			assert_int_equal(cfs_digestset_add(&set, d, NULL), 0);
		}
	assert_int_equal(cfs_digestset_count(&set), 3 * N);
	cfs_digestset_seal(&set);
	assert_int_equal(cfs_digestset_count(&set), N);
	for (size_t i = 1; i < N; i++)
		assert_true(memcmp(cfs_digestset_at(&set, i - 1), cfs_digestset_at(&set, i),
		                   CFS_DIGEST_SIZE) < 0);
	for (uint32_t i = 0; i < N; i++) {
		make_digest(d, i, i % 3 == 0);
		assert_true(cfs_digestset_contains(&set, d));
		make_digest(d, i + N, false);
		assert_false(cfs_digestset_contains(&set, d));
	}
	/* Sealing again changes nothing; adding unseals, and a new seal takes the newcomer in. */
	cfs_digestset_seal(&set);
	assert_int_equal(cfs_digestset_count(&set), N);
	make_digest(d, N, false);
	assert_int_equal(cfs_digestset_add(&set, d, NULL), 0);
	cfs_digestset_seal(&set);
	assert_int_equal(cfs_digestset_count(&set), N + 1);
	assert_true(cfs_digestset_contains(&set, d));

	all = cfs_digestset_steal(&set, &n);
	assert_non_null(all);
	assert_int_equal(n, N + 1);
	assert_int_equal(cfs_digestset_count(&set), 0);
	assert_false(cfs_digestset_contains(&set, d));
	free(all);
	cfs_digestset_free(&set);
}

struct rec {
	uint8_t digest[CFS_DIGEST_SIZE];
	uint64_t value;
	bool flag;
};

static bool keep_odd(void *record, void *ctx)
{
	struct rec *r = record;

	(*(size_t *)ctx)++;
	return r->value % 2 == 1;
}

/* Records ride along with their digests through seal, find and filter. */
static void test_digestset_records(void **state)
{
	enum { N = 3000 };
	struct cfs_digestset set;
	uint8_t d[CFS_DIGEST_SIZE];
	size_t calls = 0;

	(void)state;
	cfs_digestset_init(&set, sizeof(struct rec));
	for (uint32_t i = 0; i < N; i++) {
		struct rec *r = NULL;

		make_digest(d, N - 1 - i, false);
		assert_int_equal(cfs_digestset_add(&set, d, (void **)&r), 0);
		assert_non_null(r);
		assert_memory_equal(r->digest, d, CFS_DIGEST_SIZE);
		assert_int_equal(r->value, 0);
		assert_false(r->flag);
		r->value = N - 1 - i;
	}
	cfs_digestset_seal(&set);
	assert_int_equal(cfs_digestset_count(&set), N);
	for (uint32_t i = 0; i < N; i++) {
		struct rec *r;

		make_digest(d, i, false);
		r = cfs_digestset_find(&set, d);
		assert_non_null(r);
		assert_int_equal(r->value, i);
	}
	cfs_digestset_filter(&set, keep_odd, &calls);
	assert_int_equal(calls, N);
	assert_int_equal(cfs_digestset_count(&set), N / 2);
	for (uint32_t i = 0; i < N; i++) {
		struct rec *r;

		make_digest(d, i, false);
		r = cfs_digestset_find(&set, d);
		if (i % 2 == 0) {
			assert_null(r);
		} else {
			assert_non_null(r);
			assert_int_equal(r->value, i);
		}
	}
	cfs_digestset_free(&set);
	/* A freed set is empty and takes records of the same size again. */
	assert_int_equal(cfs_digestset_count(&set), 0);
	make_digest(d, 1, false);
	assert_int_equal(cfs_digestset_add(&set, d, NULL), 0);
	cfs_digestset_seal(&set);
	assert_int_equal(((struct rec *)cfs_digestset_find(&set, d))->value, 0);
	cfs_digestset_free(&set);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_digestset_empty),
	    cmocka_unit_test(test_digestset_seal_dedups),
	    cmocka_unit_test(test_digestset_records),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
