/* SPDX-License-Identifier: MIT */
/* cfscache: cfs-serve pull-through: store misses are fetched from upstream servers through the
 * fetch engine (verified, single flight) and then served like any other object. */
#ifndef CFS_SERVER_UPSTREAM_H
#define CFS_SERVER_UPSTREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/digest.h"
#include "fetcher/fetch.h"
#include "server/server.h"

struct cfs_upstream;

struct cfs_upstream_options {
	/* The client options (servers = the upstream URLs, TLS, token), as fetcher/fetch-opts.h
	 * parsed them; the store and quota hooks are filled in here. */
	const struct cfs_fetch_options *fetch;
	struct cfs_store *store;  /* the store cfs-serve serves; not owned */
	uint64_t max_size;        /* 0: no quota; else LRU eviction as in cfs-cache */
	uint64_t negative_ttl_ms; /* how long an upstream 404 is remembered; 0: not at all */
};

/* Indexes the store when a quota is set, and starts the fetch engine. The event
 * bases that will call cfs_upstream_miss must have been created after evthread_use_pthreads().
 * Returns 0 or -errno. */
int cfs_upstream_new(const struct cfs_upstream_options *o, struct cfs_upstream **up_ret);
/* Stops the fetch engine; misses still pending are answered 503 if their loop still runs. */
void cfs_upstream_free(struct cfs_upstream *up);
struct evbuffer;
/* The cfs_serve_config metrics_fn: the upstream counters; userdata is the cfs_upstream. */
void cfs_upstream_metrics(struct evbuffer *out, void *userdata);
/* The cfs_serve_miss_fn: userdata is the cfs_upstream. Absent objects remembered from an
 * earlier upstream 404 are answered 404 at once. */
void cfs_upstream_miss(struct cfs_serve_miss *miss, const uint8_t digest[CFS_DIGEST_SIZE],
                       void *userdata);

#endif
