/* SPDX-License-Identifier: MIT */
/* cfscache: pull-through misses: submit to the fetch engine, then hop back to the request's
 * event loop (event_base_once is thread-safe with evthread locking) to answer from the store. */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "common/log.h"
#include "common/name.h"
#include "common/quota.h"
#include "common/store.h"
#include "common/util.h"
#include "fetcher/fetch.h"
#include "server/upstream.h"

/* Upstream 404s remembered for a short while: without it every lookup of an absent object is
 * one more upstream request, which a client can repeat at will. Direct-mapped on the digest
 * (names are hashes): bounded size, a collision only forgets the older entry. */
#define NEG_SLOTS 4096

struct neg_entry {
	uint8_t digest[CFS_DIGEST_SIZE];
	uint64_t expires_ms; /* 0: empty */
};

struct cfs_upstream {
	struct cfs_store *store;
	struct cfs_quota *quota;
	struct cfs_fetch *fetch;
	uint64_t negative_ttl_ms;
	pthread_mutex_t neg_lock; /* the loops look up, the engine's thread inserts */
	struct neg_entry *neg;
	atomic_uint_fast64_t requests, not_found, failures, fetched_bytes, negative_hits;
};

static uint64_t now_ms(void)
{
	return cfs_now_ns() / 1000000;
}

static struct neg_entry *neg_slot(struct cfs_upstream *up, const uint8_t digest[CFS_DIGEST_SIZE])
{
	uint32_t h;

	memcpy(&h, digest, sizeof(h));
	return &up->neg[h % NEG_SLOTS];
}

static bool neg_lookup(struct cfs_upstream *up, const uint8_t digest[CFS_DIGEST_SIZE])
{
	struct neg_entry *e;
	bool hit;

	if (!up->neg)
		return false;
	pthread_mutex_lock(&up->neg_lock);
	e = neg_slot(up, digest);
	hit = e->expires_ms > now_ms() && memcmp(e->digest, digest, CFS_DIGEST_SIZE) == 0;
	pthread_mutex_unlock(&up->neg_lock);
	return hit;
}

static void neg_set(struct cfs_upstream *up, const uint8_t digest[CFS_DIGEST_SIZE], bool absent)
{
	struct neg_entry *e;

	if (!up->neg)
		return;
	pthread_mutex_lock(&up->neg_lock);
	e = neg_slot(up, digest);
	if (absent) {
		memcpy(e->digest, digest, CFS_DIGEST_SIZE);
		e->expires_ms = now_ms() + up->negative_ttl_ms;
	} else if (memcmp(e->digest, digest, CFS_DIGEST_SIZE) == 0) {
		e->expires_ms = 0;
	}
	pthread_mutex_unlock(&up->neg_lock);
}

struct pending_miss {
	struct cfs_upstream *up;
	struct cfs_serve_miss *miss;
	struct event_base *base;
	int result;
};

static void miss_answer(evutil_socket_t fd, short what, void *arg)
{
	struct pending_miss *p = arg;

	/* Absent upstream is a 404 here too; no room for it here is 507; any other failure is the
	 * upstream's: 502. */
	if (p->result == 0)
		cfs_serve_miss_done(p->miss, true, 0);
	else if (p->result == -ENOENT)
		cfs_serve_miss_done(p->miss, false, 0);
	else if (p->result == -ENOSPC || p->result == -EDQUOT)
		cfs_serve_miss_done(p->miss, false, 507);
	else
		cfs_serve_miss_done(p->miss, false, p->result == -ECANCELED ? 503 : 502);
	free(p);
}

static void fetch_done(int result, const uint8_t digest[CFS_DIGEST_SIZE],
                       const struct cfs_fetch_result *info, void *userdata)
{
	struct pending_miss *p = userdata;
	struct timeval now = {0, 0};

	p->result = result;
	if (result == -ENOENT)
		atomic_fetch_add(&p->up->not_found, 1);
	else if (result < 0)
		atomic_fetch_add(&p->up->failures, 1);
	else if (info && info->fetched)
		atomic_fetch_add(&p->up->fetched_bytes, info->size);
	if (result == 0 || result == -ENOENT)
		neg_set(p->up, digest, result == -ENOENT);
	if (result < 0 && result != -ENOENT) {
		char name[CFS_NAME_PATH_LEN + 1];

		cfs_name_format_path(digest, name);
		cfs_warn("upstream fetch of %s failed: %s (last server tried: %s)", name,
		         info && info->reason ? info->reason : strerror(-result),
		         info && info->server ? info->server : "none");
	}
	if (event_base_once(p->base, -1, EV_TIMEOUT, miss_answer, p, &now) < 0) {
		/* The loop is gone (shutting down): nobody can be answered any more. */
		cfs_warn("dropping an upstream answer: its event loop has stopped");
		free(p);
	}
}

void cfs_upstream_miss(struct cfs_serve_miss *miss, const uint8_t digest[CFS_DIGEST_SIZE],
                       void *userdata)
{
	struct cfs_upstream *up = userdata;
	struct pending_miss *p = calloc(1, sizeof(*p));
	int r;

	if (neg_lookup(up, digest)) {
		free(p);
		atomic_fetch_add(&up->negative_hits, 1);
		cfs_serve_miss_done(miss, false, 0);
		return;
	}
	if (!p) {
		cfs_serve_miss_done(miss, false, 503);
		return;
	}
	atomic_fetch_add(&up->requests, 1);
	p->up = up;
	p->miss = miss;
	p->base = cfs_serve_miss_base(miss);
	r = cfs_fetch_submit(up->fetch, digest, 0, fetch_done, p);
	if (r < 0) {
		free(p);
		cfs_serve_miss_done(miss, false, 503);
	}
}

int cfs_upstream_new(const struct cfs_upstream_options *o, struct cfs_upstream **up_ret)
{
	struct cfs_upstream *up = calloc(1, sizeof(*up));
	struct cfs_fetch_options fo;
	int r;

	if (!up)
		return -ENOMEM;
	pthread_mutex_init(&up->neg_lock, NULL);
	up->negative_ttl_ms = o->negative_ttl_ms;
	if (o->negative_ttl_ms) {
		up->neg = calloc(NEG_SLOTS, sizeof(*up->neg));
		if (!up->neg) {
			free(up);
			return -ENOMEM;
		}
	}
	up->store = o->store;
	/* The quota observes the store: it makes room for a fetched object before the commit
	 * names it, so before it is served, as in cfs-cache. */
	if (o->max_size) {
		r = cfs_quota_new(up->store, o->max_size, 0, &up->quota);
		if (r < 0)
			goto fail;
	}
	fo = *o->fetch;
	fo.store = up->store;
	fo.user_agent = "cfs-serve (pull-through)";
	if (up->quota) {
		fo.make_room = cfs_quota_make_room;
		fo.make_room_ctx = up->quota;
	}
	r = cfs_fetch_new(&fo, &up->fetch);
	if (r < 0)
		goto fail;
	*up_ret = up;
	return 0;
fail:
	cfs_upstream_free(up);
	return r;
}

void cfs_upstream_free(struct cfs_upstream *up)
{
	if (!up)
		return;
	cfs_fetch_free(up->fetch);
	cfs_quota_free(up->quota);
	pthread_mutex_destroy(&up->neg_lock);
	free(up->neg);
	free(up);
}

void cfs_upstream_metrics(struct evbuffer *out, void *userdata)
{
	struct cfs_upstream *up = userdata;

	evbuffer_add_printf(
	    out,
	    "# HELP cfs_serve_upstream_requests_total Misses handed to the upstream fetcher.\n"
	    "# TYPE cfs_serve_upstream_requests_total counter\n"
	    "cfs_serve_upstream_requests_total %llu\n"
	    "# HELP cfs_serve_upstream_not_found_total Misses absent on every upstream.\n"
	    "# TYPE cfs_serve_upstream_not_found_total counter\n"
	    "cfs_serve_upstream_not_found_total %llu\n"
	    "# HELP cfs_serve_upstream_failures_total Failed misses (network, digest, space).\n"
	    "# TYPE cfs_serve_upstream_failures_total counter\n"
	    "cfs_serve_upstream_failures_total %llu\n"
	    "# HELP cfs_serve_upstream_fetched_bytes_total Object bytes fetched from upstream.\n"
	    "# TYPE cfs_serve_upstream_fetched_bytes_total counter\n"
	    "cfs_serve_upstream_fetched_bytes_total %llu\n"
	    "# HELP cfs_serve_upstream_negative_hits_total Misses answered 404 from the negative "
	    "cache.\n"
	    "# TYPE cfs_serve_upstream_negative_hits_total counter\n"
	    "cfs_serve_upstream_negative_hits_total %llu\n",
	    (unsigned long long)atomic_load(&up->requests),
	    (unsigned long long)atomic_load(&up->not_found),
	    (unsigned long long)atomic_load(&up->failures),
	    (unsigned long long)atomic_load(&up->fetched_bytes),
	    (unsigned long long)atomic_load(&up->negative_hits));
}
