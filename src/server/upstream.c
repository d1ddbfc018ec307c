/* SPDX-License-Identifier: MIT */
/* cfscache: pull-through misses: submit to the fetch engine, then hop back to the request's
 * event loop (event_base_once is thread-safe with evthread locking) to answer from the store. */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "common/log.h"
#include "common/name.h"
#include "common/quota.h"
#include "common/store.h"
#include "fetcher/fetch.h"
#include "server/upstream.h"

struct cfs_upstream {
	struct cfs_store *store;
	struct cfs_quota *quota;
	struct cfs_fetch *fetch;
};

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
	struct timeval now = { 0, 0 };

	p->result = result;
	/* Make room before the object is served, as cfs-cache does. */
	if (result == 0 && p->up->quota && info && info->fetched)
		cfs_quota_added(p->up->quota, digest, info->size);
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

	if (!p) {
		cfs_serve_miss_done(miss, false, 503);
		return;
	}
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
	r = cfs_store_open(o->store_path, CFS_STORE_CREATE, &up->store);
	if (r < 0)
		goto fail;
	if (o->max_size) {
		r = cfs_quota_new(up->store, o->max_size, 0, &up->quota);
		if (r < 0)
			goto fail;
	}
	cfs_fetch_options_init(&fo);
	fo.servers = o->urls;
	fo.n_servers = o->n_urls;
	fo.store = up->store;
	fo.ca_file = o->ca_file;
	fo.client_cert = o->client_cert;
	fo.client_key = o->client_key;
	fo.token_file = o->token_file;
	fo.insecure = o->insecure;
	fo.accept_zstd = o->accept_zstd;
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
	cfs_store_free(up->store);
	free(up);
}
