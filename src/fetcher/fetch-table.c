/* SPDX-License-Identifier: MIT */
/* cfscache: the fetch engine's containers: jobs by digest (single flight), the retry heap. */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fetcher/fetch-internal.h"

int cfs_fetch_table_init(struct job_table *t, size_t nbuckets)
{
	t->buckets = calloc(nbuckets, sizeof(*t->buckets));
	t->nbuckets = t->buckets ? nbuckets : 0;
	t->njobs = 0;
	return t->buckets ? 0 : -ENOMEM;
}

void cfs_fetch_table_free(struct job_table *t)
{
	free(t->buckets);
	t->buckets = NULL;
	t->nbuckets = t->njobs = 0;
}

static size_t table_slot(const struct job_table *t, const uint8_t *digest)
{
	uint64_t h;

	memcpy(&h, digest, sizeof(h));
	return (size_t)(h & (t->nbuckets - 1));
}

struct job *cfs_fetch_table_find(const struct job_table *t, const uint8_t *digest)
{
	for (struct job *j = t->buckets[table_slot(t, digest)]; j; j = j->hnext)
		if (memcmp(j->digest, digest, CFS_DIGEST_SIZE) == 0)
			return j;
	return NULL;
}

static void table_grow(struct job_table *t)
{
	size_t old_n = t->nbuckets;
	struct job **old = t->buckets;
	struct job **nb = calloc(old_n * 2, sizeof(*nb));

	if (!nb)
		return; /* longer chains, still correct */
	t->buckets = nb;
	t->nbuckets = old_n * 2;
	for (size_t i = 0; i < old_n; i++) {
		struct job *j = old[i], *next;

		for (; j; j = next) {
			size_t s = table_slot(t, j->digest);

			next = j->hnext;
			j->hnext = nb[s];
			nb[s] = j;
		}
	}
	free(old);
}

void cfs_fetch_table_insert(struct job_table *t, struct job *job)
{
	size_t s;

	if (t->njobs >= t->nbuckets)
		table_grow(t);
	s = table_slot(t, job->digest);
	job->hnext = t->buckets[s];
	t->buckets[s] = job;
	t->njobs++;
}

void cfs_fetch_table_remove(struct job_table *t, struct job *job)
{
	struct job **pp = &t->buckets[table_slot(t, job->digest)];

	for (; *pp; pp = &(*pp)->hnext) {
		if (*pp == job) {
			*pp = job->hnext;
			t->njobs--;
			return;
		}
	}
}

int cfs_fetch_heap_push(struct retry_heap *h, struct job *job)
{
	size_t i;

	if (h->len == h->cap) {
		size_t cap = h->cap ? h->cap * 2 : 64;
		struct job **v = realloc(h->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		h->v = v;
		h->cap = cap;
	}
	i = h->len++;
	while (i > 0) {
		size_t parent = (i - 1) / 2;

		if (h->v[parent]->retry_at <= job->retry_at)
			break;
		h->v[i] = h->v[parent];
		i = parent;
	}
	h->v[i] = job;
	return 0;
}

struct job *cfs_fetch_heap_pop(struct retry_heap *h)
{
	struct job *top = h->v[0], *last = h->v[--h->len];
	size_t i = 0, n = h->len;

	for (;;) {
		size_t c = 2 * i + 1;

		if (c >= n)
			break;
		if (c + 1 < n && h->v[c + 1]->retry_at < h->v[c]->retry_at)
			c++;
		if (last->retry_at <= h->v[c]->retry_at)
			break;
		h->v[i] = h->v[c];
		i = c;
	}
	if (n)
		h->v[i] = last;
	return top;
}
