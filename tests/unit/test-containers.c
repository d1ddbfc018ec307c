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

#include "common/digestmap.h"
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

/* The value a test stores for seed @i: any non-NULL pointer that tells seeds apart. */
static void *value_of(uint32_t i)
{
	return (void *)(uintptr_t)(i * 2 + 2);
}

static void test_digestmap_basics(void **state)
{
	struct cfs_digestmap *map = NULL;
	uint8_t a[CFS_DIGEST_SIZE], b[CFS_DIGEST_SIZE];
	void *old = value_of(99);
	size_t pos = 0;

	(void)state;
	make_digest(a, 1, false);
	make_digest(b, 2, false);
	assert_int_equal(cfs_digestmap_new(0, &map), 0);
	assert_int_equal(cfs_digestmap_count(map), 0);
	assert_null(cfs_digestmap_get(map, a));
	assert_null(cfs_digestmap_remove(map, a));
	assert_false(cfs_digestmap_next(map, &pos, NULL, NULL));
	assert_int_equal(cfs_digestmap_put(map, a, NULL, NULL), -EINVAL);

	assert_int_equal(cfs_digestmap_put(map, a, value_of(1), &old), 0);
	assert_null(old);
	assert_ptr_equal(cfs_digestmap_get(map, a), value_of(1));
	assert_null(cfs_digestmap_get(map, b));
	/* A put of a present key replaces its value and says which it was. */
	assert_int_equal(cfs_digestmap_put(map, a, value_of(3), &old), 0);
	assert_ptr_equal(old, value_of(1));
	assert_int_equal(cfs_digestmap_count(map), 1);
	assert_ptr_equal(cfs_digestmap_remove(map, a), value_of(3));
	assert_null(cfs_digestmap_get(map, a));
	assert_int_equal(cfs_digestmap_count(map), 0);
	assert_null(cfs_digestmap_remove(map, a));
	cfs_digestmap_free(map);
	cfs_digestmap_free(NULL);
}

/* Enough entries for several growths, a third of them sharing their first 8 bytes. */
static void test_digestmap_grows(void **state)
{
	enum { N = 20000 };
	struct cfs_digestmap *map = NULL;
	uint8_t d[CFS_DIGEST_SIZE];
	const uint8_t *key;
	void *value;
	size_t pos = 0, seen = 0;
	uint8_t *visited = calloc(N, 1);

	(void)state;
	assert_non_null(visited);
	assert_int_equal(cfs_digestmap_new(10, &map), 0);
	for (uint32_t i = 0; i < N; i++) {
		make_digest(d, i, i % 3 == 0);
		assert_int_equal(cfs_digestmap_put(map, d, value_of(i), NULL), 0);
	}
	assert_int_equal(cfs_digestmap_count(map), N);
	for (uint32_t i = 0; i < N; i++) {
		make_digest(d, i, i % 3 == 0);
		assert_ptr_equal(cfs_digestmap_get(map, d), value_of(i));
		make_digest(d, i + N, i % 3 == 0);
		assert_null(cfs_digestmap_get(map, d));
	}
	/* Each entry once, with its own digest. */
	while (cfs_digestmap_next(map, &pos, &key, &value)) {
		uint32_t i = (uint32_t)((uintptr_t)value / 2 - 1);

		assert_true(i < N);
		assert_false(visited[i]);
		visited[i] = 1;
		make_digest(d, i, i % 3 == 0);
		assert_memory_equal(key, d, CFS_DIGEST_SIZE);
		seen++;
	}
	assert_int_equal(seen, N);
	free(visited);
	cfs_digestmap_free(map);
}

/* Removing the current entry while iterating: every entry is seen once, the odd ones go. */
static void test_digestmap_remove_while_iterating(void **state)
{
	enum { N = 5000 };
	struct cfs_digestmap *map = NULL;
	uint8_t d[CFS_DIGEST_SIZE];
	const uint8_t *key;
	void *value;
	size_t pos = 0, seen = 0;

	(void)state;
	assert_int_equal(cfs_digestmap_new(N, &map), 0);
	for (uint32_t i = 0; i < N; i++) {
		make_digest(d, i, false);
		assert_int_equal(cfs_digestmap_put(map, d, value_of(i), NULL), 0);
	}
	while (cfs_digestmap_next(map, &pos, &key, &value)) {
		uint32_t i = (uint32_t)((uintptr_t)value / 2 - 1);

		seen++;
		if (i % 2)
			assert_ptr_equal(cfs_digestmap_remove(map, key), value);
	}
	assert_int_equal(seen, N);
	assert_int_equal(cfs_digestmap_count(map), N / 2);
	for (uint32_t i = 0; i < N; i++) {
		make_digest(d, i, false);
		if (i % 2)
			assert_null(cfs_digestmap_get(map, d));
		else
			assert_ptr_equal(cfs_digestmap_get(map, d), value_of(i));
	}
	cfs_digestmap_free(map);
}

/* A map kept at the same size by removals and puts (tombstones swept) stays exact. */
static void test_digestmap_churn(void **state)
{
	enum { LIVE = 1000, ROUNDS = 50000 };
	struct cfs_digestmap *map = NULL;
	uint8_t d[CFS_DIGEST_SIZE];

	(void)state;
	assert_int_equal(cfs_digestmap_new(0, &map), 0);
	assert_int_equal(cfs_digestmap_reserve(map, LIVE), 0);
	for (uint32_t i = 0; i < LIVE; i++) {
		make_digest(d, i, false);
		assert_int_equal(cfs_digestmap_put(map, d, value_of(i), NULL), 0);
	}
	for (uint32_t i = LIVE; i < ROUNDS; i++) {
		make_digest(d, i - LIVE, false);
		assert_ptr_equal(cfs_digestmap_remove(map, d), value_of(i - LIVE));
		make_digest(d, i, false);
		assert_int_equal(cfs_digestmap_put(map, d, value_of(i), NULL), 0);
		assert_int_equal(cfs_digestmap_count(map), LIVE);
	}
	for (uint32_t i = 0; i < ROUNDS; i++) {
		make_digest(d, i, false);
		if (i < ROUNDS - LIVE)
			assert_null(cfs_digestmap_get(map, d));
		else
			assert_ptr_equal(cfs_digestmap_get(map, d), value_of(i));
	}
	cfs_digestmap_free(map);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_digestset_empty),
	    cmocka_unit_test(test_digestset_seal_dedups),
	    cmocka_unit_test(test_digestset_records),
	    cmocka_unit_test(test_digestmap_basics),
	    cmocka_unit_test(test_digestmap_grows),
	    cmocka_unit_test(test_digestmap_remove_while_iterating),
	    cmocka_unit_test(test_digestmap_churn),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
