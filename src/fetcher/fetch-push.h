/* SPDX-License-Identifier: MIT */
/* cfscache: the upload client: publishes store objects to a server that accepts PUT (cfs-serve
 * --allow-upload). HEAD finds what the server lacks, PUT sends it, several at a time over one
 * libcurl multi handle on the caller's thread, with the fetch engine's handle set-up, backoff and
 * classification of failures. */
#ifndef CFS_FETCH_PUSH_H
#define CFS_FETCH_PUSH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/digest.h"
#include "common/progress.h"
#include "common/store.h"
#include "fetcher/fetch.h"

/* One object to publish (a record of a struct cfs_digestset: the digest first). */
struct cfs_fetch_push_item {
	uint8_t digest[CFS_DIGEST_SIZE];
	uint64_t size; /* its size in the store */
};

struct cfs_fetch_push_options {
	const char *url; /* the objects base: http(s)://host/objects */
	/* TLS files, token file, connect timeout, retries (per object), backoff_ms, user agent. */
	const struct cfs_fetch_options *client;
	struct cfs_store *store;       /* where the objects are read; not owned */
	unsigned jobs;                 /* requests at a time */
	bool dry_run;                  /* HEAD only: the missing objects go to @missing */
	struct cfs_progress *progress; /* counts objects and bytes sent; required */
	void (*missing)(const uint8_t digest[CFS_DIGEST_SIZE], void *ctx);
	void *ctx;
};

struct cfs_fetch_push_result {
	uint64_t present;        /* on the server already (or uploaded by someone else: 204) */
	uint64_t uploaded;       /* sent (missing, with dry_run) */
	uint64_t uploaded_bytes; /* their bytes */
	uint64_t failed;         /* objects that failed (not counting those a fatal stop skipped) */
	uint64_t unlogged;       /* failures counted but not logged one by one */
	char fatal[384];         /* why everything stopped (token, uploads refused, TLS), or "" */
};

/* Pushes @items (@n). Failures are logged (the first ones one by one) and counted in @res.
 * Returns 0, or -errno when libcurl or the token could not be set up (-EIO: its multi interface
 * failed). */
int cfs_fetch_push(const struct cfs_fetch_push_options *o, const struct cfs_fetch_push_item *items,
                   size_t n, struct cfs_fetch_push_result *res);

#endif
