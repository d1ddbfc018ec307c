/* SPDX-License-Identifier: MIT */
/* cfscache: store quota: a digest-keyed index of sizes and last use, LRU eviction that
 * re-checks each victim's atime before removing it, and pins that are never evicted. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "common/digestmap.h"
#include "common/digestset.h"
#include "common/log.h"
#include "common/name.h"
#include "common/quota.h"
#include "common/util.h"

struct entry {
	uint8_t digest[CFS_DIGEST_SIZE];
	uint8_t pinned;
	uint8_t present;
	uint8_t seen; /* the refresh mark of the last scan that found it */
	uint64_t size;
	int64_t last_use; /* seconds since the epoch */
};

struct cfs_quota {
	struct cfs_store *store;
	uint64_t max_bytes, low_water;
	pthread_mutex_t lock;
	struct cfs_digestmap *index; /* digest -> struct entry (allocated) */
	uint64_t bytes, objects, pinned, pinned_present;
	uint64_t evictions, bytes_evicted;
	uint8_t mark;     /* flips with each refresh */
	uint64_t blksize; /* what a new object of n bytes takes is estimated as n rounded up */
	/* Offline users (gc): told of each victim; with dry_run the file stays (the index forgets
	 * it all the same, so the counts come out as a real run's). */
	cfs_quota_victim_fn victim_fn;
	void *victim_ctx;
	bool dry_run;
};

/* Returns the entry for @digest, creating an empty one if needed; NULL on ENOMEM. */
static struct entry *get_entry(struct cfs_quota *q, const uint8_t digest[CFS_DIGEST_SIZE])
{
	struct entry *e = cfs_digestmap_get(q->index, digest);

	if (e)
		return e;
	e = calloc(1, sizeof(*e));
	if (!e)
		return NULL;
	memcpy(e->digest, digest, CFS_DIGEST_SIZE);
	if (cfs_digestmap_put(q->index, digest, e, NULL) < 0) {
		free(e);
		return NULL;
	}
	return e;
}

/* Marks @e present with @size bytes of disk use, keeping the counters. */
static void set_present(struct cfs_quota *q, struct entry *e, uint64_t size)
{
	if (e->present) {
		q->bytes -= e->size;
	} else {
		e->present = 1;
		q->objects++;
		if (e->pinned)
			q->pinned_present++;
	}
	e->size = size;
	q->bytes += size;
}

static void drop_entry(struct cfs_quota *q, struct entry *e)
{
	if (e->present) {
		q->objects--;
		q->bytes -= e->size;
		e->present = 0;
		if (e->pinned)
			q->pinned_present--;
	}
	if (e->pinned)
		return; /* pins outlive presence */
	cfs_digestmap_remove(q->index, e->digest);
	free(e);
}

/* Disk use of a file as the walk measures it: allocated blocks. */
static uint64_t disk_use(const struct stat *st)
{
	return (uint64_t)st->st_blocks * 512;
}

/* The quota whose eviction is removing an object on this thread: the store's word of that
 * removal is not news to it (and its lock is held). */
static _Thread_local const struct cfs_quota *removing;

/* Removes a victim (or, in a dry run, only tells of it). 0, -ENOENT or -errno. */
static int remove_victim(struct cfs_quota *q, const struct entry *e)
{
	int r = 0;

	if (!q->dry_run) {
		removing = q;
		r = cfs_store_remove(q->store, e->digest);
		removing = NULL;
	}

	if (r == 0 && q->victim_fn)
		q->victim_fn(e->digest, e->size, q->victim_ctx);
	return r;
}

void cfs_quota_set_victim_fn(struct cfs_quota *q, bool dry_run, cfs_quota_victim_fn fn, void *ctx)
{
	pthread_mutex_lock(&q->lock);
	q->dry_run = dry_run;
	q->victim_fn = fn;
	q->victim_ctx = ctx;
	pthread_mutex_unlock(&q->lock);
}

static int64_t now_s(void)
{
	return (int64_t)time(NULL);
}

static void quota_added(void *ctx, const uint8_t digest[CFS_DIGEST_SIZE], uint64_t size);
static void quota_removed(void *ctx, const uint8_t digest[CFS_DIGEST_SIZE]);

/* The quota observes its store: every object a transaction names, every removal. */
static const struct cfs_store_observer quota_observer = {
    .added = quota_added,
    .removed = quota_removed,
};

int cfs_quota_new(struct cfs_store *store, uint64_t max_bytes, uint64_t low_water,
                  struct cfs_quota **quota_ret)
{
	struct cfs_quota *q = calloc(1, sizeof(*q));
	int r;

	if (!q)
		return -ENOMEM;
	q->store = store;
	q->max_bytes = max_bytes;
	q->low_water = low_water ? low_water : max_bytes / 10 * 9;
	if (q->low_water > max_bytes)
		q->low_water = max_bytes;
	r = cfs_digestmap_new(1024, &q->index);
	{
		struct stat st;

		q->blksize = fstat(cfs_store_dirfd(store), &st) == 0 && st.st_blksize > 0
		                 ? (uint64_t)st.st_blksize
		                 : 4096;
	}
	pthread_mutex_init(&q->lock, NULL);
	if (r < 0) {
		cfs_quota_free(q);
		return r;
	}
	r = cfs_quota_rescan(q);
	if (r < 0) {
		cfs_quota_free(q);
		return r;
	}
	cfs_store_set_observer(store, &quota_observer, q);
	*quota_ret = q;
	return 0;
}

void cfs_quota_free(struct cfs_quota *q)
{
	if (!q)
		return;
	if (cfs_store_observed_by(q->store, q))
		cfs_store_set_observer(q->store, NULL, NULL);
	pthread_mutex_destroy(&q->lock);
	if (q->index) {
		void *e;

		for (size_t pos = 0; cfs_digestmap_next(q->index, &pos, NULL, &e);)
			free(e);
		cfs_digestmap_free(q->index);
	}
	free(q);
}

int cfs_quota_pin(struct cfs_quota *q, const uint8_t digest[CFS_DIGEST_SIZE])
{
	struct entry *e;
	int r = 0;

	pthread_mutex_lock(&q->lock);
	e = get_entry(q, digest);
	if (!e)
		r = -ENOMEM;
	else if (!e->pinned) {
		e->pinned = 1;
		q->pinned++;
		if (e->present)
			q->pinned_present++;
	}
	pthread_mutex_unlock(&q->lock);
	return r;
}

int cfs_quota_pin_many(struct cfs_quota *q, const uint8_t *digests, size_t n)
{
	int r = 0;

	for (size_t i = 0; r == 0 && i < n; i++)
		r = cfs_quota_pin(q, digests + i * CFS_DIGEST_SIZE);
	return r;
}

bool cfs_quota_is_pinned(struct cfs_quota *q, const uint8_t digest[CFS_DIGEST_SIZE])
{
	struct entry *e;
	bool pinned;

	pthread_mutex_lock(&q->lock);
	e = cfs_digestmap_get(q->index, digest);
	pinned = e && e->pinned;
	pthread_mutex_unlock(&q->lock);
	return pinned;
}

void cfs_quota_touch(struct cfs_quota *q, const uint8_t digest[CFS_DIGEST_SIZE])
{
	struct entry *e;

	pthread_mutex_lock(&q->lock);
	e = cfs_digestmap_get(q->index, digest);
	if (e)
		e->last_use = now_s();
	pthread_mutex_unlock(&q->lock);
}

struct victim {
	int64_t last_use;
	uint8_t digest[CFS_DIGEST_SIZE];
};

static int cmp_victim(const void *a, const void *b)
{
	const struct victim *x = a, *y = b;

	return (x->last_use > y->last_use) - (x->last_use < y->last_use);
}

/* One LRU pass over the unpinned objects; with @honor_atime, a victim whose atime shows a use
 * since we last recorded one gets that time and is spared this pass. Lock held. */
static int evict_pass(struct cfs_quota *q, uint64_t target, bool honor_atime, const uint8_t *keep)
{
	struct victim *v;
	struct entry *e;
	size_t n = 0;
	int removed = 0;

	v = malloc((q->objects ? q->objects : 1) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	for (size_t pos = 0;
	     n < q->objects && cfs_digestmap_next(q->index, &pos, NULL, (void **)&e);) {
		if (e->present && !e->pinned &&
		    !(keep && memcmp(e->digest, keep, CFS_DIGEST_SIZE) == 0)) {
			v[n].last_use = e->last_use;
			memcpy(v[n].digest, e->digest, CFS_DIGEST_SIZE);
			n++;
		}
	}
	qsort(v, n, sizeof(*v), cmp_victim);
	for (size_t i = 0; i < n && q->bytes > target; i++) {
		struct stat st;
		int r;

		e = cfs_digestmap_get(q->index, v[i].digest);
		if (!e || !e->present || e->pinned)
			continue;
		/* Reads through overlayfs never reach us: the file's atime tells of them. */
		r = cfs_store_lookup(q->store, e->digest, &st);
		if (r == 0)
			set_present(q, e, disk_use(&st)); /* an estimate until now */
		if (r == 0 && honor_atime && (int64_t)st.st_atime > e->last_use + 1) {
			e->last_use = (int64_t)st.st_atime;
			continue;
		}
		if (r == 0)
			r = remove_victim(q, e);
		if (r < 0 && r != -ENOENT)
			continue;
		if (r == 0) {
			q->evictions++;
			q->bytes_evicted += e->size;
			removed++;
		}
		drop_entry(q, e);
	}
	free(v);
	return removed;
}

static int evict_locked(struct cfs_quota *q, uint64_t target, const uint8_t *keep)
{
	int a, b;

	if (q->bytes <= target)
		return 0;
	a = evict_pass(q, target, true, keep);
	if (a < 0 || q->bytes <= target)
		return a;
	/* Everything left was used lately: plain LRU on the refreshed times. */
	b = evict_pass(q, target, false, keep);
	return b < 0 ? b : a + b;
}

/* An object is about to get its name (the committing thread): counted, and room made for it
 * now, so a batch never takes the store over its quota by more than one object. */
static void quota_added(void *ctx, const uint8_t digest[CFS_DIGEST_SIZE], uint64_t size)
{
	struct cfs_quota *q = ctx;
	struct entry *e;
	int r;

	pthread_mutex_lock(&q->lock);
	e = get_entry(q, digest);
	if (e) {
		/* Its blocks, estimated (a stat here would cost the miss path); the next rescan
		 * reads them. */
		set_present(q, e, (size + q->blksize - 1) / q->blksize * q->blksize);
		e->last_use = now_s();
	}
	if (q->max_bytes && q->bytes > q->max_bytes) {
		/* Never the one just added: it has no name yet. */
		r = evict_locked(q, q->low_water, digest);
		if (r < 0)
			cfs_warn("eviction failed: %s", strerror(-r));
		else if (r > 0)
			cfs_info("evicted %d object(s); store now %llu bytes", r,
			         (unsigned long long)q->bytes);
	}
	pthread_mutex_unlock(&q->lock);
}

/* Someone else removed an object through the store (the quota's own evictions drop their
 * entries themselves). */
static void quota_removed(void *ctx, const uint8_t digest[CFS_DIGEST_SIZE])
{
	struct cfs_quota *q = ctx;
	struct entry *e;

	if (removing == q)
		return;
	pthread_mutex_lock(&q->lock);
	e = cfs_digestmap_get(q->index, digest);
	if (e && e->present)
		drop_entry(q, e);
	pthread_mutex_unlock(&q->lock);
}

/* An object the walk found: a record of a struct cfs_digestset (the digest first). */
struct found {
	uint8_t digest[CFS_DIGEST_SIZE];
	uint64_t size;
	int64_t atime;
};

static int collect_cb(const struct cfs_store_entry *se, void *userdata)
{
	struct found *f;
	int r = cfs_digestset_add(userdata, se->digest, (void **)&f);

	if (r == 0) {
		f->size = disk_use(&se->st);
		f->atime = (int64_t)se->st.st_atime;
	}
	return r;
}

/* Merges a walk of the store that began at @start into the index (lock held): objects found are
 * present with their size and at least their atime; present ones not found are gone, unless
 * recorded since the walk began (added while it ran). */
static int merge_locked(struct cfs_quota *q, const struct cfs_digestset *found, int64_t start,
                        struct cfs_quota_refresh *res)
{
	struct entry *e;

	q->mark ^= 1;
	for (size_t i = 0; i < cfs_digestset_count(found); i++) {
		const struct found *f = cfs_digestset_at(found, i);

		e = get_entry(q, f->digest);
		if (!e)
			return -ENOMEM;
		if (!e->present)
			res->added++;
		set_present(q, e, f->size);
		if (f->atime > e->last_use)
			e->last_use = f->atime;
		e->seen = q->mark;
	}
	for (size_t pos = 0; cfs_digestmap_next(q->index, &pos, NULL, (void **)&e);) {
		if (e->present && e->seen != q->mark && e->last_use < start) {
			drop_entry(q, e);
			res->removed++;
		}
	}
	return 0;
}

/* Walks the store without holding the index (lookups and fetches go on meanwhile), merges the
 * result, and with @evict brings the store back under its quota. */
static int refresh(struct cfs_quota *q, bool evict, struct cfs_quota_refresh *res_ret)
{
	struct cfs_quota_refresh res = {0};
	struct cfs_digestset found;
	int64_t start = now_s();
	int r;

	cfs_digestset_init(&found, sizeof(struct found));
	r = cfs_store_iter(q->store, false, collect_cb, &found);
	if (r < 0) {
		cfs_digestset_free(&found);
		return r;
	}
	pthread_mutex_lock(&q->lock);
	r = merge_locked(q, &found, start, &res);
	if (r == 0 && evict && q->max_bytes && q->bytes > q->max_bytes) {
		r = evict_locked(q, q->low_water, NULL);
		if (r > 0) {
			res.evicted = (uint64_t)r;
			r = 0;
		}
	}
	pthread_mutex_unlock(&q->lock);
	cfs_digestset_free(&found);
	if (r == 0 && res_ret)
		*res_ret = res;
	return r;
}

int cfs_quota_refresh(struct cfs_quota *q, struct cfs_quota_refresh *res_ret)
{
	return refresh(q, true, res_ret);
}

int cfs_quota_rescan(struct cfs_quota *q)
{
	return refresh(q, false, NULL);
}

int cfs_quota_evict_to(struct cfs_quota *q, uint64_t target)
{
	int r;

	pthread_mutex_lock(&q->lock);
	r = evict_locked(q, target, NULL);
	pthread_mutex_unlock(&q->lock);
	return r;
}

int cfs_quota_make_room(void *ctx, uint64_t bytes)
{
	struct cfs_quota *q = ctx;
	struct cfs_quota_stats st;
	int r;

	cfs_quota_get_stats(q, &st);
	r = cfs_quota_evict_to(q, st.bytes > bytes ? st.bytes - bytes : 0);
	if (r > 0)
		cfs_notice(
		    "store's filesystem full: evicted %d object(s) to make room for %llu bytes", r,
		    (unsigned long long)bytes);
	return r;
}

int cfs_quota_remove_unpinned(struct cfs_quota *q)
{
	struct entry *e;
	int removed = 0;

	pthread_mutex_lock(&q->lock);
	for (size_t pos = 0; cfs_digestmap_next(q->index, &pos, NULL, (void **)&e);) {
		if (!e->present || e->pinned)
			continue;
		if (remove_victim(q, e) == 0) {
			q->evictions++;
			q->bytes_evicted += e->size;
			removed++;
		}
		drop_entry(q, e);
	}
	pthread_mutex_unlock(&q->lock);
	return removed;
}

void cfs_quota_get_stats(struct cfs_quota *q, struct cfs_quota_stats *s)
{
	pthread_mutex_lock(&q->lock);
	s->objects = q->objects;
	s->bytes = q->bytes;
	s->max_bytes = q->max_bytes;
	s->low_water = q->low_water;
	s->evictions = q->evictions;
	s->bytes_evicted = q->bytes_evicted;
	s->pinned = q->pinned;
	s->pinned_present = q->pinned_present;
	pthread_mutex_unlock(&q->lock);
}
