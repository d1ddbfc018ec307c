/* SPDX-License-Identifier: MIT */
/* cfscache: the fetch engine's containers: jobs by digest (single flight), the retry heap. */
#include "config.h"

#include <errno.h>
#include <stdlib.h>

#include "fetcher/fetch-internal.h"

int cfs_fetch_table_init(struct job_table *t, size_t expected)
{
	return cfs_digestmap_new(expected, &t->map);
}

void cfs_fetch_table_free(struct job_table *t)
{
	cfs_digestmap_free(t->map);
	t->map = NULL;
}

struct job *cfs_fetch_table_find(const struct job_table *t, const uint8_t *digest)
{
	return cfs_digestmap_get(t->map, digest);
}

int cfs_fetch_table_insert(struct job_table *t, struct job *job)
{
	return cfs_digestmap_put(t->map, job->digest, job, NULL);
}

void cfs_fetch_table_remove(struct job_table *t, struct job *job)
{
	cfs_digestmap_remove(t->map, job->digest);
}

bool cfs_fetch_table_next(const struct job_table *t, size_t *pos, struct job **job_ret)
{
	void *v;

	if (!cfs_digestmap_next(t->map, pos, NULL, &v))
		return false;
	*job_ret = v;
	return true;
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
