/* SPDX-License-Identifier: MIT */
/* cfscache: a growable set of digests with optional records, sorted and deduplicated on seal. */
#include "config.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/digestset.h"

static size_t rec_size(const struct cfs_digestset *set)
{
	return set->record_size ? set->record_size : CFS_DIGEST_SIZE;
}

void cfs_digestset_init(struct cfs_digestset *set, size_t record_size)
{
	assert(record_size == 0 || record_size >= CFS_DIGEST_SIZE);
	memset(set, 0, sizeof(*set));
	set->record_size = record_size;
}

int cfs_digestset_add(struct cfs_digestset *set, const uint8_t digest[CFS_DIGEST_SIZE],
                      void **record_ret)
{
	size_t size = rec_size(set);
	uint8_t *rec;

	if (set->n == set->cap) {
		size_t cap = set->cap ? set->cap * 2 : 1024;
		uint8_t *v;

		if (cap > SIZE_MAX / size)
			return -ENOMEM;
		v = realloc(set->v, cap * size);
		if (!v)
			return -ENOMEM;
		set->v = v;
		set->cap = cap;
	}
	rec = set->v + set->n++ * size;
	memcpy(rec, digest, CFS_DIGEST_SIZE);
	memset(rec + CFS_DIGEST_SIZE, 0, size - CFS_DIGEST_SIZE);
	set->sealed = false;
	if (record_ret)
		*record_ret = rec;
	return 0;
}

static int cmp_digest(const void *a, const void *b)
{
	return memcmp(a, b, CFS_DIGEST_SIZE);
}

void cfs_digestset_seal(struct cfs_digestset *set)
{
	size_t size = rec_size(set), out = 0;

	if (set->n > 1)
		qsort(set->v, set->n, size, cmp_digest);
	for (size_t i = 0; i < set->n; i++) {
		const uint8_t *rec = set->v + i * size;

		if (out > 0 && memcmp(set->v + (out - 1) * size, rec, CFS_DIGEST_SIZE) == 0)
			continue;
		if (out != i)
			memcpy(set->v + out * size, rec, size);
		out++;
	}
	set->n = out;
	set->sealed = true;
}

void *cfs_digestset_find(const struct cfs_digestset *set, const uint8_t digest[CFS_DIGEST_SIZE])
{
	assert(set->sealed || set->n == 0);
	if (set->n == 0)
		return NULL;
	return bsearch(digest, set->v, set->n, rec_size(set), cmp_digest);
}

bool cfs_digestset_contains(const struct cfs_digestset *set, const uint8_t digest[CFS_DIGEST_SIZE])
{
	return cfs_digestset_find(set, digest) != NULL;
}

size_t cfs_digestset_count(const struct cfs_digestset *set)
{
	return set->n;
}

void *cfs_digestset_at(const struct cfs_digestset *set, size_t i)
{
	assert(i < set->n);
	return set->v + i * rec_size(set);
}

void cfs_digestset_filter(struct cfs_digestset *set, bool (*keep)(void *record, void *ctx),
                          void *ctx)
{
	size_t size = rec_size(set), out = 0;

	for (size_t i = 0; i < set->n; i++) {
		uint8_t *rec = set->v + i * size;

		if (!keep(rec, ctx))
			continue;
		if (out != i)
			memcpy(set->v + out * size, rec, size);
		out++;
	}
	set->n = out;
}

void *cfs_digestset_steal(struct cfs_digestset *set, size_t *count_ret)
{
	void *v = set->n ? set->v : NULL;
	size_t record_size = set->record_size;

	*count_ret = set->n;
	if (!v)
		free(set->v);
	cfs_digestset_init(set, record_size);
	return v;
}

void cfs_digestset_free(struct cfs_digestset *set)
{
	size_t record_size = set->record_size;

	free(set->v);
	cfs_digestset_init(set, record_size);
}
