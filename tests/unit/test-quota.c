/* SPDX-License-Identifier: MIT */
/* cfscache: unit tests of the store quota's index: pins, rescans, LRU eviction. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/quota.h"
#include "common/store.h"
#include "store-fixture.h"

static int setup(void **state)
{
	return store_fixture_setup(state, "quota");
}

/* Stores the string @text as an object; its digest in @d. */
static void insert_bytes(struct cfs_store *s, const char *text, uint8_t d[CFS_DIGEST_SIZE])
{
	struct cfs_store_writer *w;

	assert_int_equal(cfs_store_writer_new(s, NULL, &w), 0);
	assert_int_equal(cfs_store_writer_write(w, text, strlen(text)), 0);
	assert_int_equal(cfs_store_writer_verify(w, d), 0);
	assert_int_equal(cfs_store_commit_one(w, NULL), 0);
	cfs_store_writer_free(w);
}

/* The quota's index over a few hundred objects: pins (present or not) survive removals, a
 * rescan sees what others add, eviction spares the pinned. */
static void test_quota_index(void **state)
{
	enum { N = 300, PINNED = 10 };
	struct fixture *f = *state;
	uint8_t(*d)[CFS_DIGEST_SIZE] = calloc(N + 2, CFS_DIGEST_SIZE);
	uint8_t absent[CFS_DIGEST_SIZE];
	struct cfs_quota *q = NULL;
	struct cfs_quota_stats st;
	struct cfs_quota_refresh res;
	char buf[64];

	assert_non_null(d);
	for (int i = 0; i < N; i++) {
		snprintf(buf, sizeof(buf), "quota object %d", i);
		insert_bytes(f->store, buf, d[i]);
	}
	memset(absent, 0x5a, sizeof(absent));
	assert_int_equal(cfs_quota_new(f->store, 0, 0, &q), 0);
	cfs_quota_get_stats(q, &st);
	assert_int_equal(st.objects, N);
	for (int i = 0; i < PINNED; i++)
		assert_int_equal(cfs_quota_pin(q, d[i * 7]), 0);
	assert_int_equal(cfs_quota_pin(q, absent), 0);
	assert_true(cfs_quota_is_pinned(q, d[7]));
	assert_false(cfs_quota_is_pinned(q, d[1]));
	assert_true(cfs_quota_is_pinned(q, absent));

	assert_int_equal(cfs_quota_remove_unpinned(q), N - PINNED);
	cfs_quota_get_stats(q, &st);
	assert_int_equal(st.objects, PINNED);
	assert_int_equal(st.pinned, PINNED + 1);
	assert_int_equal(st.pinned_present, PINNED);
	for (int i = 0; i < N; i++)
		assert_int_equal(cfs_store_lookup(f->store, d[i], NULL) == 0,
		                 i % 7 == 0 && i < 7 * PINNED);
	assert_true(cfs_quota_is_pinned(q, absent));

	/* One object the quota saw committed through its store, one added by another handle
	 * (another process: found by a rescan), then eviction of all that may go: those two. */
	snprintf(buf, sizeof(buf), "quota object %d", N);
	insert_bytes(f->store, buf, d[N]);
	cfs_quota_get_stats(q, &st);
	assert_int_equal(st.objects, PINNED + 1);
	snprintf(buf, sizeof(buf), "quota object %d", N + 1);
	{
		struct cfs_store *other;

		assert_int_equal(cfs_store_open(f->path, 0, &other), 0);
		insert_bytes(other, buf, d[N + 1]);
		cfs_store_free(other);
	}
	assert_int_equal(cfs_quota_refresh(q, &res), 0);
	assert_int_equal(res.added, 1);
	assert_int_equal(res.removed, 0);
	cfs_quota_get_stats(q, &st);
	assert_int_equal(st.objects, PINNED + 2);
	assert_int_equal(cfs_quota_evict_to(q, 0), 2);
	cfs_quota_get_stats(q, &st);
	assert_int_equal(st.objects, PINNED);
	assert_int_not_equal(cfs_store_lookup(f->store, d[N], NULL), 0);
	assert_int_equal(cfs_store_lookup(f->store, d[0], NULL), 0);
	cfs_quota_free(q);
	free(d);
}

/* What the observer sees: an object counted just before its name (an eviction it starts never
 * takes that one, nor anything without a name), a removal through the store by someone else
 * leaving the index, and no observer left once the quota is freed. */
static void test_quota_observes(void **state)
{
	enum { N = 20 };
	struct fixture *f = *state;
	uint8_t d[N + 1][CFS_DIGEST_SIZE];
	struct cfs_store_writer *w[N];
	struct cfs_quota_stats st;
	struct cfs_store_txn *txn;
	struct cfs_quota *q = NULL;
	char buf[64];

	/* Room for about 10 one-block objects (each counts as a block until the next rescan). */
	assert_int_equal(cfs_quota_new(f->store, 10 * 4096, 5 * 4096, &q), 0);
	assert_true(cfs_store_observed_by(f->store, q));
	assert_int_equal(cfs_store_txn_new(f->store, &txn), 0);
	for (int i = 0; i < N; i++) {
		snprintf(buf, sizeof(buf), "observed object %d", i);
		assert_int_equal(cfs_store_writer_new(f->store, NULL, &w[i]), 0);
		assert_int_equal(cfs_store_writer_write(w[i], buf, strlen(buf)), 0);
		assert_int_equal(cfs_store_writer_verify(w[i], d[i]), 0);
		assert_int_equal(cfs_store_txn_add(txn, w[i], CFS_STORE_TXN_FREE), 0);
	}
	/* Nothing is counted before the commit. */
	cfs_quota_get_stats(q, &st);
	assert_int_equal(st.objects, 0);
	assert_int_equal(cfs_store_txn_commit(txn), 0);
	cfs_store_txn_free(txn);
	cfs_quota_get_stats(q, &st);
	/* Over the quota while committing: evictions took older ones, never the last. */
	assert_true(st.evictions > 0);
	assert_true(st.bytes <= 10 * 4096);
	assert_int_equal(st.objects + st.evictions, N);
	assert_int_equal(cfs_store_lookup(f->store, d[N - 1], NULL), 0);
	/* Whatever the index holds has its name. */
	{
		struct cfs_store_usage u;

		assert_int_equal(cfs_store_usage(f->store, &u), 0);
		assert_int_equal(u.objects, st.objects);
	}
	/* A removal through the store by someone else: the index forgets the object. */
	assert_int_equal(cfs_store_remove(f->store, d[N - 1]), 0);
	{
		struct cfs_quota_stats after;

		cfs_quota_get_stats(q, &after);
		assert_int_equal(after.objects, st.objects - 1);
		assert_int_equal(after.evictions, st.evictions);
	}
	cfs_quota_free(q);
	assert_true(cfs_store_observed_by(f->store, NULL));
	/* No quota any more: a commit tells nobody. */
	insert_bytes(f->store, "after the quota", d[N]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_quota_index, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_quota_observes, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
