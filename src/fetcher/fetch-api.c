/* SPDX-License-Identifier: MIT */
/* cfscache: the fetch engine's public API: options and their defaults, start and stop, submit,
 * sync, stats. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "common/log.h"
#include "common/util.h"
#include "fetcher/fetch-internal.h"

/* The defaults, here only (fetch.h documents them). */
static const struct cfs_fetch_options defaults = {
	.max_transfers = 64,
	.max_per_server = 16,
	.max_object_size = 4ULL << 30,
	.connect_timeout_ms = 5000,
	.low_speed_bytes = 1024,
	.low_speed_secs = 10,
	.retries = 2,
	.backoff_ms = 100,
	.server_backoff_ms = 5000,
	.server_fail_threshold = 3,
	.commit_delay_ms = 2,
	.accept_zstd = true,
};

void cfs_fetch_options_init(struct cfs_fetch_options *o)
{
	*o = defaults;
}

/* Limits that cannot be 0 take their default when given 0 (a stalled transfer must always
 * end, a server must be able to fail). */
static void options_fill_zeros(struct cfs_fetch_options *o)
{
#define FILL(field) (o->field = o->field ? o->field : defaults.field)
	FILL(max_transfers);
	FILL(max_per_server);
	FILL(max_object_size);
	FILL(connect_timeout_ms);
	FILL(low_speed_bytes);
	FILL(low_speed_secs);
	FILL(server_fail_threshold);
#undef FILL
}

static int copy_str(const char *in, const char **out)
{
	*out = NULL;
	if (!in)
		return 0;
	*out = strdup(in);
	return *out ? 0 : -ENOMEM;
}

static int servers_new(struct cfs_fetch *f, const struct cfs_fetch_options *o)
{
	f->servers = calloc(o->n_servers, sizeof(*f->servers));
	if (!f->servers)
		return -ENOMEM;
	f->n_servers = o->n_servers;
	for (size_t i = 0; i < o->n_servers; i++) {
		struct server *s = &f->servers[i];
		size_t len;

		list_init(&s->queue[0]);
		list_init(&s->queue[1]);
		if (!o->servers[i] || !o->servers[i][0])
			return -EINVAL;
		s->url = strdup(o->servers[i]);
		if (!s->url)
			return -ENOMEM;
		len = strlen(s->url);
		while (len > 0 && s->url[len - 1] == '/')
			s->url[--len] = '\0';
	}
	return 0;
}

/* Verified objects hold a descriptor until their commit: bound them. */
static size_t max_uncommitted(void)
{
	struct rlimit rl;
	size_t n = 1024;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
		n = CFS_MAX((size_t)rl.rlim_cur / 4, 32);
	return CFS_MIN(n, 4096);
}

static void init_sync(struct cfs_fetch *f)
{
	pthread_mutex_init(&f->subq.lock, NULL);
	pthread_mutex_init(&f->committer.lock, NULL);
	pthread_mutex_init(&f->stats.lock, NULL);
	pthread_cond_init(&f->committer.cond, NULL);
	pthread_mutex_init(&f->stager.lock, NULL);
	pthread_cond_init(&f->stager.work, NULL);
	pthread_cond_init(&f->stager.progress, NULL);
	f->subq.tail = &f->subq.head;
	f->stager.queue_tail = &f->stager.queue;
	f->engine.ops_tail = &f->engine.ops;
	list_init(&f->stager.done);
	list_init(&f->engine.pending);
	list_init(&f->engine.nospace);
	list_init(&f->committer.batch);
	list_init(&f->committer.done);
}

static int start_threads(struct cfs_fetch *f)
{
	int r;

	r = -pthread_create(&f->committer.thread, NULL, cfs_fetch_committer_main, f);
	if (r < 0)
		return r;
	f->committer.started = true;
	r = -pthread_create(&f->stager.thread, NULL, cfs_fetch_stager_main, f);
	if (r < 0)
		return r;
	f->stager.started = true;
	r = -pthread_create(&f->engine.thread, NULL, cfs_fetch_engine_main, f);
	if (r < 0)
		return r;
	f->engine.started = true;
	return 0;
}

int cfs_fetch_new(const struct cfs_fetch_options *o, struct cfs_fetch **fetch_ret)
{
	const curl_version_info_data *vi;
	struct cfs_fetch *f = NULL;
	int r;

	if (!o || !o->store || !o->servers || o->n_servers == 0 || o->n_servers > MAX_SERVERS)
		return -EINVAL;
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		return -ENOMEM;
	f = calloc(1, sizeof(*f));
	if (!f) {
		curl_global_cleanup();
		return -ENOMEM;
	}
	f->o = *o;
	f->o.servers = NULL;
	f->o.ca_file = f->o.client_cert = f->o.client_key = f->o.token_file = f->o.user_agent =
	    NULL;
	f->store = o->store;
	init_sync(f);
	f->engine.rng = cfs_now_ns() | 1;
	options_fill_zeros(&f->o);

	r = -ENOMEM;
	if (copy_str(o->ca_file, &f->o.ca_file) < 0 ||
	    copy_str(o->client_cert, &f->o.client_cert) < 0 ||
	    copy_str(o->client_key, &f->o.client_key) < 0 ||
	    copy_str(o->user_agent, &f->o.user_agent) < 0)
		goto fail;
	r = servers_new(f, o);
	if (r < 0)
		goto fail;
	if (o->token_file) {
		r = cfs_fetch_token_header(o->token_file, &f->headers);
		if (r < 0) {
			cfs_err("cannot use token file %s: %s", o->token_file, strerror(-r));
			goto fail;
		}
	}
	vi = curl_version_info(CURLVERSION_NOW);
	f->zstd = o->accept_zstd && (vi->features & CURL_VERSION_ZSTD);
	if (o->accept_zstd && !f->zstd)
		cfs_info("libcurl lacks zstd: fetching without Accept-Encoding: zstd");

	r = cfs_fetch_table_init(&f->engine.jobs, 256);
	f->engine.pool = calloc(f->o.max_transfers, sizeof(*f->engine.pool));
	if (r < 0 || !f->engine.pool) {
		r = -ENOMEM;
		goto fail;
	}
	f->engine.max_uncommitted = max_uncommitted();

	f->multi = curl_multi_init();
	if (!f->multi) {
		r = -ENOMEM;
		goto fail;
	}
	curl_multi_setopt(f->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
	curl_multi_setopt(f->multi, CURLMOPT_MAXCONNECTS, (long)f->o.max_transfers);

	r = start_threads(f);
	if (r < 0)
		goto fail;
	*fetch_ret = f;
	return 0;
fail:
	cfs_fetch_free(f);
	return r;
}

void cfs_fetch_free(struct cfs_fetch *f)
{
	if (!f)
		return;
	if (f->engine.started && pthread_equal(pthread_self(), f->engine.thread)) {
		/* Joining ourselves would hang: refuse loudly and leak instead. */
		cfs_err("cfs_fetch_free called from a fetch callback; ignored");
		return;
	}
	pthread_mutex_lock(&f->subq.lock);
	f->subq.stopping = true;
	pthread_mutex_unlock(&f->subq.lock);
	if (f->engine.started) {
		curl_multi_wakeup(f->multi);
		pthread_join(f->engine.thread, NULL);
	} else {
		if (f->committer.started)
			cfs_fetch_committer_stop(f);
		cfs_fetch_stager_stop(f);
	}
	for (size_t i = 0; i < f->engine.npool; i++)
		curl_easy_cleanup(f->engine.pool[i]);
	if (f->multi)
		curl_multi_cleanup(f->multi);
	curl_slist_free_all(f->headers);
	for (size_t i = 0; f->servers && i < f->n_servers; i++)
		free(f->servers[i].url);
	free(f->servers);
	cfs_fetch_table_free(&f->engine.jobs);
	free(f->engine.retry.v);
	free(f->engine.pool);
	free((char *)f->o.ca_file);
	free((char *)f->o.client_cert);
	free((char *)f->o.client_key);
	free((char *)f->o.user_agent);
	pthread_mutex_destroy(&f->subq.lock);
	pthread_mutex_destroy(&f->committer.lock);
	pthread_mutex_destroy(&f->stats.lock);
	pthread_cond_destroy(&f->committer.cond);
	for (size_t i = 0; i < f->stager.nspare; i++)
		free(f->stager.spare[i]);
	pthread_mutex_destroy(&f->stager.lock);
	pthread_cond_destroy(&f->stager.work);
	pthread_cond_destroy(&f->stager.progress);
	free(f);
	curl_global_cleanup();
}

int cfs_fetch_submit(struct cfs_fetch *f, const uint8_t digest[CFS_DIGEST_SIZE], unsigned flags,
                     cfs_fetch_cb cb, void *userdata)
{
	struct waiter *w;
	bool first;

	if (!f || !digest || !cb)
		return -EINVAL;
	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	memcpy(w->digest, digest, CFS_DIGEST_SIZE);
	w->flags = flags;
	w->cb = cb;
	w->userdata = userdata;
	pthread_mutex_lock(&f->subq.lock);
	if (f->subq.stopping) {
		pthread_mutex_unlock(&f->subq.lock);
		free(w);
		return -ECANCELED;
	}
	/* The engine takes the whole queue at once: only the first entry of a queue needs to
	 * wake it, the others are taken along (a bulk submission costs one wakeup, not one each). */
	first = !f->subq.head;
	*f->subq.tail = w;
	f->subq.tail = &w->next;
	pthread_mutex_unlock(&f->subq.lock);
	STAT_ADD(f, submitted, 1);
	if (first)
		curl_multi_wakeup(f->multi);
	return 0;
}

struct sync_wait {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool done;
	int result;
	struct cfs_fetch_result info;
	char reason[REASON_LEN];
};

static __thread char sync_reason[REASON_LEN];

static void sync_cb(int result, const uint8_t digest[CFS_DIGEST_SIZE],
                    const struct cfs_fetch_result *info, void *userdata)
{
	struct sync_wait *sw = userdata;

	pthread_mutex_lock(&sw->lock);
	sw->result = result;
	sw->info = *info;
	if (info->reason)
		snprintf(sw->reason, sizeof(sw->reason), "%s", info->reason);
	sw->done = true;
	pthread_cond_signal(&sw->cond);
	pthread_mutex_unlock(&sw->lock);
}

int cfs_fetch_sync(struct cfs_fetch *f, const uint8_t digest[CFS_DIGEST_SIZE],
                   struct cfs_fetch_result *info_ret)
{
	struct sync_wait sw = {.done = false};
	int r;

	if (f && f->engine.started && pthread_equal(pthread_self(), f->engine.thread))
		return -EDEADLK;
	pthread_mutex_init(&sw.lock, NULL);
	pthread_cond_init(&sw.cond, NULL);
	r = cfs_fetch_submit(f, digest, 0, sync_cb, &sw);
	if (r == 0) {
		pthread_mutex_lock(&sw.lock);
		while (!sw.done)
			pthread_cond_wait(&sw.cond, &sw.lock);
		pthread_mutex_unlock(&sw.lock);
		r = sw.result;
		if (info_ret) {
			*info_ret = sw.info;
			if (sw.info.reason) {
				snprintf(sync_reason, sizeof(sync_reason), "%s", sw.reason);
				info_ret->reason = sync_reason;
			}
		}
	}
	pthread_mutex_destroy(&sw.lock);
	pthread_cond_destroy(&sw.cond);
	return r;
}

void cfs_fetch_get_stats(struct cfs_fetch *f, struct cfs_fetch_stats *stats_ret)
{
	pthread_mutex_lock(&f->stats.lock);
	*stats_ret = f->stats.c;
	pthread_mutex_unlock(&f->stats.lock);
}

size_t cfs_fetch_server_count(struct cfs_fetch *f)
{
	return f->n_servers;
}

int cfs_fetch_server_stats(struct cfs_fetch *f, size_t index, struct cfs_fetch_server_stats *st)
{
	const struct server *s;

	if (index >= f->n_servers)
		return -ERANGE;
	s = &f->servers[index];
	pthread_mutex_lock(&f->stats.lock);
	*st = (struct cfs_fetch_server_stats){
	    .url = s->url,
	    .state = server_in_backoff(s, cfs_now_ns()) ? CFS_FETCH_SERVER_BACKOFF
	             : s->unreachable                    ? CFS_FETCH_SERVER_UNREACHABLE
	                                                 : CFS_FETCH_SERVER_UP,
	    .requests = s->requests,
	    .bytes = s->bytes,
	    .failures = s->failures,
	    .not_found = s->not_found,
	    .verify_failures = s->verify_failures,
	    .consecutive_failures = s->consecutive,
	    .active = s->active,
	};
	pthread_mutex_unlock(&f->stats.lock);
	return 0;
}

const char *cfs_fetch_server_state_name(enum cfs_fetch_server_state state)
{
	switch (state) {
	case CFS_FETCH_SERVER_UP:
		return "up";
	case CFS_FETCH_SERVER_BACKOFF:
		return "backoff";
	case CFS_FETCH_SERVER_UNREACHABLE:
		return "unreachable";
	}
	return "unknown";
}

