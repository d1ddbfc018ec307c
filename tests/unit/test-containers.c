/* SPDX-License-Identifier: MIT */
/* cfscache: unit tests of the shared containers: the digest set, the digest map, the u64 map. */
#include "config.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "common/digestmap.h"
#include "common/digestset.h"
#include "common/u64map.h"

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

/* Clearing a tombstone must not lose an entry whose probe run passes it: entries removed in
 * several orders, every other one checked after each removal. */
static void test_digestmap_remove_in_runs(void **state)
{
	enum { N = 41 }; /* prime: every stride visits every entry */
	struct cfs_digestmap *map = NULL;
	uint8_t d[CFS_DIGEST_SIZE];

	(void)state;
	for (uint32_t stride = 1; stride < N; stride += 3) {
		bool gone[N] = {false};

		assert_int_equal(cfs_digestmap_new(0, &map), 0);
		for (uint32_t i = 0; i < N; i++) {
			make_digest(d, i, i % 2);
			assert_int_equal(cfs_digestmap_put(map, d, value_of(i), NULL), 0);
		}
		for (uint32_t k = 0; k < N; k++) {
			uint32_t victim = k * stride % N;

			make_digest(d, victim, victim % 2);
			assert_ptr_equal(cfs_digestmap_remove(map, d), value_of(victim));
			gone[victim] = true;
			for (uint32_t i = 0; i < N; i++) {
				make_digest(d, i, i % 2);
				if (gone[i])
					assert_null(cfs_digestmap_get(map, d));
				else
					assert_ptr_equal(cfs_digestmap_get(map, d), value_of(i));
			}
			assert_int_equal(cfs_digestmap_count(map), N - 1 - k);
		}
		cfs_digestmap_free(map);
	}
}

/* The shape the fetcher's job table had before it used the map: chained buckets on the first
 * 8 bytes of the digest, called out of line as the engine called fetch-table.c. The
 * micro-check below compares the map with it. */
struct chained {
	struct chained *next;
	uint8_t digest[CFS_DIGEST_SIZE];
};

__attribute__((noinline)) static struct chained *chained_find(struct chained **b, size_t mask,
                                                              const uint8_t *d)
{
	uint64_t h;

	memcpy(&h, d, sizeof(h));
	for (struct chained *c = b[h & mask]; c; c = c->next)
		if (memcmp(c->digest, d, CFS_DIGEST_SIZE) == 0)
			return c;
	return NULL;
}

__attribute__((noinline)) static void chained_insert(struct chained **b, size_t mask,
                                                     struct chained *c)
{
	uint64_t h;

	memcpy(&h, c->digest, sizeof(h));
	c->next = b[h & mask];
	b[h & mask] = c;
}

__attribute__((noinline)) static void chained_remove(struct chained **b, size_t mask,
                                                     struct chained *c)
{
	struct chained **pp;
	uint64_t h;

	memcpy(&h, c->digest, sizeof(h));
	for (pp = &b[h & mask]; *pp != c; pp = &(*pp)->next)
		;
	*pp = c->next;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

enum { HOT_LIVE = 64, HOT_ROUNDS = 200000 };

/* A fetch miss: find (absent), insert, and later remove, with HOT_LIVE objects in flight. The
 * loops count what went wrong instead of asserting, so that only the tables are timed. */
static uint64_t time_map(struct chained *items, unsigned *wrong)
{
	struct cfs_digestmap *map = NULL;
	uint64_t t0;

	assert_int_equal(cfs_digestmap_new(256, &map), 0);
	t0 = now_ns();
	for (uint32_t i = 0; i < HOT_ROUNDS; i++) {
		struct chained *c = &items[i % (2 * HOT_LIVE)];

		if (i >= HOT_LIVE) {
			struct chained *old = &items[(i - HOT_LIVE) % (2 * HOT_LIVE)];

			*wrong += cfs_digestmap_remove(map, old->digest) != old;
		}
		*wrong += cfs_digestmap_get(map, c->digest) != NULL;
		*wrong += cfs_digestmap_put(map, c->digest, c, NULL) != 0;
	}
	t0 = now_ns() - t0;
	cfs_digestmap_free(map);
	return t0;
}

static uint64_t time_chained(struct chained *items, unsigned *wrong)
{
	struct chained **b = calloc(256, sizeof(*b));
	uint64_t t0;

	assert_non_null(b);
	t0 = now_ns();
	for (uint32_t i = 0; i < HOT_ROUNDS; i++) {
		struct chained *c = &items[i % (2 * HOT_LIVE)];

		if (i >= HOT_LIVE)
			chained_remove(b, 255, &items[(i - HOT_LIVE) % (2 * HOT_LIVE)]);
		*wrong += chained_find(b, 255, c->digest) != NULL;
		chained_insert(b, 255, c);
	}
	t0 = now_ns() - t0;
	free(b);
	return t0;
}

static void best_times(bool shared_prefix, uint64_t *map_ret, uint64_t *chained_ret)
{
	struct chained items[2 * HOT_LIVE];

	for (uint32_t i = 0; i < 2 * HOT_LIVE; i++)
		make_digest(items[i].digest, i, shared_prefix);
	*map_ret = *chained_ret = UINT64_MAX;
	for (int run = 0; run < 5; run++) {
		unsigned wrong = 0;
		uint64_t m = time_map(items, &wrong), c = time_chained(items, &wrong);

		assert_int_equal(wrong, 0);
		*map_ret = m < *map_ret ? m : *map_ret;
		*chained_ret = c < *chained_ret ? c : *chained_ret;
	}
	print_message("hot path%s: map %.1f ns, chained on 8 bytes %.1f ns per miss\n",
	              shared_prefix ? " (shared prefix)" : "", (double)*map_ret / HOT_ROUNDS,
	              (double)*chained_ret / HOT_ROUNDS);
}

/* The fetcher's hot path, best of five runs each (the machine is shared): names that share
 * their first 8 bytes cost the map no more than random ones (they cost the old table a chain
 * walk each), and there the map beats the old table. */
static void test_digestmap_hot_path(void **state)
{
	uint64_t map_random, chained_random, map_shared, chained_shared;

	(void)state;
	best_times(false, &map_random, &chained_random);
	best_times(true, &map_shared, &chained_shared);
	assert_true(map_shared <= 2 * map_random);
	assert_true(map_shared < chained_shared);
}

/* Keys that are small sequential numbers (node ids), inodes with the top bit set, and their
 * neighbours: every one found, replaced, iterated once and removed. */
static void test_u64map(void **state)
{
	enum { N = 5000 };
	struct cfs_u64map *map = NULL;
	uint8_t *seen = calloc(3 * N, 1);
	void *old, *v;
	size_t pos = 0, n = 0;
	uint64_t key;

	(void)state;
	assert_non_null(seen);
	assert_int_equal(cfs_u64map_new(0, &map), 0);
	assert_null(cfs_u64map_get(map, 0));
	assert_null(cfs_u64map_remove(map, 0));
	assert_int_equal(cfs_u64map_put(map, 1, NULL, NULL), -EINVAL);
	for (uint32_t i = 0; i < N; i++) {
		assert_int_equal(cfs_u64map_put(map, i, value_of(i), NULL), 0);
		assert_int_equal(cfs_u64map_put(map, i | 1ULL << 63, value_of(N + i), NULL), 0);
		assert_int_equal(cfs_u64map_put(map, (uint64_t)i << 40, value_of(2 * N + i), &old),
		                 0);
		/* Key 0 is both i and i << 40 for i = 0: replaced, not added. */
		if (i)
			assert_null(old);
		else
			assert_ptr_equal(old, value_of(0));
	}
	assert_int_equal(cfs_u64map_count(map), 3 * N - 1);
	assert_ptr_equal(cfs_u64map_get(map, 0), value_of(2 * N));
	for (uint32_t i = 1; i < N; i++) {
		assert_ptr_equal(cfs_u64map_get(map, i), value_of(i));
		assert_ptr_equal(cfs_u64map_get(map, i | 1ULL << 63), value_of(N + i));
		assert_ptr_equal(cfs_u64map_get(map, (uint64_t)i << 40), value_of(2 * N + i));
	}
	assert_null(cfs_u64map_get(map, N));
	while (cfs_u64map_next(map, &pos, &key, &v)) {
		size_t which = (size_t)((uintptr_t)v - 2) / 2;

		assert_true(which < 3 * N);
		assert_int_equal(seen[which]++, 0);
		if (which < N)
			assert_int_equal(key, which);
		else if (which < 2 * N)
			assert_int_equal(key, (which - N) | 1ULL << 63);
		else
			assert_int_equal(key, (uint64_t)(which - 2 * N) << 40);
		assert_ptr_equal(cfs_u64map_remove(map, key), v);
		n++;
	}
	assert_int_equal(n, 3 * N - 1);
	assert_int_equal(cfs_u64map_count(map), 0);
	cfs_u64map_free(map);
	cfs_u64map_free(NULL);
	free(seen);
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
	    cmocka_unit_test(test_digestmap_remove_in_runs),
	    cmocka_unit_test(test_digestmap_hot_path),
	    cmocka_unit_test(test_u64map),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
