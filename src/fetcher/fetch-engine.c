/* SPDX-License-Identifier: MIT */
/* cfscache: the fetch engine's thread: submissions, single flight, server choice, retries and
 * failover, out-of-space parking, the loop; every job transition goes through job_set_state(). */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/log.h"
#include "common/store.h"
#include "common/util.h"
#include "fetcher/fetch-internal.h"

/* ---- the state machine ---------------------------------------------------------------------- */

static void count(size_t *n, bool was, bool is)
{
	if (was && !is)
		(*n)--;
	else if (is && !was)
		(*n)++;
}

/* The one place a job's state changes; keeps the counters derived from it: the engine's
 * active, staging, uncommitted and npending, the stats' in_flight and queued, and the
 * server's active transfers. */
static void job_set_state(struct cfs_fetch *f, struct job *job, enum job_state to)
{
	enum job_state from = job->state;
	bool run_was = from == JOB_RUNNING, run_is = to == JOB_RUNNING;
	bool fly_was = from != JOB_NONE, fly_is = to != JOB_NONE;
	bool q_was = from == JOB_QUEUED, q_is = to == JOB_QUEUED;

	if (from == to)
		return;
	job->state = to;
	if (run_is && !run_was)
		f->engine.active++;
	else if (run_was && !run_is)
		f->engine.active--;
	count(&f->engine.staging, from == JOB_STAGING, to == JOB_STAGING);
	count(&f->engine.npending, from == JOB_VERIFIED, to == JOB_VERIFIED);
	count(&f->engine.uncommitted, from == JOB_VERIFIED || from == JOB_COMMITTING,
	      to == JOB_VERIFIED || to == JOB_COMMITTING);
	if (run_was == run_is && fly_was == fly_is && q_was == q_is)
		return;
	pthread_mutex_lock(&f->stats.lock);
	if (run_was != run_is)
		f->servers[job->server].active += run_is ? 1 : -1;
	if (fly_was != fly_is)
		f->stats.c.in_flight += fly_is ? 1 : -1;
	if (q_was != q_is)
		f->stats.c.queued += q_is ? 1 : -1;
	pthread_mutex_unlock(&f->stats.lock);
}

/* ---- servers -------------------------------------------------------------------------------- */

static void server_success(struct cfs_fetch *f, struct server *s)
{
	pthread_mutex_lock(&f->stats.lock);
	s->consecutive = 0;
	s->backoff_until = 0;
	s->unreachable = false;
	pthread_mutex_unlock(&f->stats.lock);
}

static void server_failure(struct cfs_fetch *f, struct server *s, bool unreachable)
{
	bool entered = false;

	pthread_mutex_lock(&f->stats.lock);
	s->failures++;
	s->consecutive++;
	if (s->consecutive >= f->o.server_fail_threshold) {
		entered = !server_in_backoff(s, cfs_now_ns());
		s->backoff_until = cfs_now_ns() + (uint64_t)f->o.server_backoff_ms * 1000000ULL;
	}
	if (unreachable)
		s->unreachable = true;
	pthread_mutex_unlock(&f->stats.lock);
	if (entered)
		cfs_notice("server %s: %u consecutive failures, skipping it for %u ms", s->url,
		           s->consecutive, f->o.server_backoff_ms);
}

/* Picks the first server not given up yet, preferring those not in backoff. */
static int pick_server(struct cfs_fetch *f, struct job *job, size_t *idx_ret)
{
	uint64_t now = cfs_now_ns();
	size_t fallback = SIZE_MAX;

	for (size_t i = 0; i < f->n_servers; i++) {
		if (job->done_mask & (1ULL << i))
			continue;
		if (!server_in_backoff(&f->servers[i], now)) {
			*idx_ret = i;
			return 0;
		}
		if (fallback == SIZE_MAX)
			fallback = i;
	}
	if (fallback == SIZE_MAX)
		return -ENOENT;
	*idx_ret = fallback;
	return 0;
}

/* ---- answers -------------------------------------------------------------------------------- */

/* Runs the callbacks of every waiter so far and takes them off the job. */
static void job_answer(struct job *job, int result, const struct cfs_fetch_result *info)
{
	struct waiter *w, *next;

	for (w = job->waiters; w; w = next) {
		next = w->next;
		w->cb(result, job->digest, info, w->userdata);
		free(w);
	}
	job->waiters = NULL;
	job->wtail = &job->waiters;
}

/* Runs the callbacks of every waiter and frees the job. */
static void job_finish(struct cfs_fetch *f, struct job *job, int result)
{
	struct cfs_fetch_result info = {
	    .size = job->size,
	    .fetched = result == 0,
	    .reason = result == 0 ? NULL : job->reason,
	    .server = f->servers[job->server < f->n_servers ? job->server : 0].url,
	    .http_status = result < 0 && job->xfer.status >= 400 ? job->xfer.status : 0,
	};

	cfs_fetch_table_remove(&f->engine.jobs, job);
	job_set_state(f, job, JOB_NONE);
	if (result == 0)
		STAT_ADD(f, fetched, 1);
	else if (result == -ENOENT)
		STAT_ADD(f, not_found, 1);
	else if (result != -ECANCELED)
		STAT_ADD(f, failures, 1);
	if (result != 0 && result != -ECANCELED)
		cfs_debug("fetch %s: %s", job->path, job->reason);
	cfs_fetch_stage_release(f, job);
	cfs_fetch_attempt_put_easy(f, job);
	job_answer(job, result, &info);
	free(job);
}

static void job_set_reason(struct job *job, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void job_set_reason(struct job *job, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(job->reason, sizeof(job->reason), fmt, ap);
	va_end(ap);
}

/* ---- queues --------------------------------------------------------------------------------- */

static void job_enqueue(struct cfs_fetch *f, struct job *job)
{
	job_set_state(f, job, JOB_QUEUED);
	list_add_tail(&f->servers[job->server].queue[job->low ? 1 : 0], &job->link);
}

/* The current server is done with this object: try the next one or finish. */
static void job_next_server(struct cfs_fetch *f, struct job *job)
{
	size_t idx;

	job->done_mask |= 1ULL << job->server;
	if (pick_server(f, job, &idx) < 0) {
		if (!job->any_failure)
			job_set_reason(job, "absent on %zu server(s)", f->n_servers);
		job_finish(f, job, job->any_failure ? job->err : -ENOENT);
		return;
	}
	cfs_debug("fetch %s: trying %s next", job->path, f->servers[idx].url);
	job->server = idx;
	job->tries = 0;
	job_enqueue(f, job);
}

/* ---- out of space --------------------------------------------------------------------------- */

/* Whether other objects hold space in the store: bodies being received or written, verified
 * ones not yet committed. */
static bool others_hold_space(const struct cfs_fetch *f)
{
	return f->engine.active || f->engine.staging || f->engine.uncommitted;
}

/* Out of space while other objects hold some (their temp files, or verified ones not yet
 * committed): the space may be theirs only for a while, and several large bodies can fill a
 * disk together where each alone would fit. Such an object drops what it has written and waits
 * to be fetched again alone (retry_nospace). Out of space alone, it fails, unless the store's
 * owner makes room (make_room, once per object). */
static bool job_park_nospace(struct cfs_fetch *f, struct job *job, int err)
{
	bool others = others_hold_space(f) || !list_empty(&f->engine.nospace);

	if (err != -ENOSPC && err != -EDQUOT)
		return false;
	if (others && !job->nospace_tried) {
		cfs_debug("fetch %s: out of space with other objects in flight, will retry alone",
		          job->path);
	} else if (!others && !job->room_made && f->o.make_room &&
	           f->o.make_room(f->o.make_room_ctx, cfs_fetch_attempt_space_needed(job)) > 0) {
		job->room_made = true;
	} else {
		return false;
	}
	cfs_fetch_stage_release(f, job);
	job->body.handed = 0;
	cfs_fetch_attempt_put_easy(f, job);
	job_set_state(f, job, JOB_NOSPACE);
	job->retry_at = cfs_now_ns() + NOSPACE_WAIT_MS * 1000000ULL;
	list_add_tail(&f->engine.nospace, &job->link);
	return true;
}

/* Starts the oldest object waiting for space once nothing else is in flight, or once it has
 * waited NOSPACE_WAIT_MS. */
static void retry_nospace(struct cfs_fetch *f)
{
	struct job *job;

	if (list_empty(&f->engine.nospace))
		return;
	job = job_of(f->engine.nospace.next);
	if (others_hold_space(f) && cfs_now_ns() < job->retry_at)
		return;
	cfs_fetch_stager_quiesce(f); /* the temp files of the dropped bodies are gone */
	list_del(&job->link);
	job->nospace_tried = true;
	job_enqueue(f, job);
}

static void job_fail_local(struct cfs_fetch *f, struct job *job, int err, const char *what)
{
	if (job_park_nospace(f, job, err))
		return;
	STAT_ADD(f, fail_local, 1);
	job_set_reason(job, "%s: %s", what, strerror(-err));
	job_finish(f, job, err);
}

/* ---- transfers ------------------------------------------------------------------------------ */

static void job_start(struct cfs_fetch *f, struct job *job)
{
	struct server *s = &f->servers[job->server];

	if (cfs_fetch_attempt_start(f, job) < 0) {
		job_fail_local(f, job, -ENOMEM, "curl");
		return;
	}
	job->tries++;
	job_set_state(f, job, JOB_RUNNING);
	pthread_mutex_lock(&f->stats.lock);
	f->stats.c.requests++;
	s->requests++;
	pthread_mutex_unlock(&f->stats.lock);
}

static void start_transfers(struct cfs_fetch *f)
{
	retry_nospace(f);
	while (f->engine.active < f->o.max_transfers &&
	       f->engine.uncommitted + f->engine.staging < f->engine.max_uncommitted) {
		bool started = false;

		for (int prio = 0; prio < 2 && !started; prio++) {
			for (size_t k = 0; k < f->n_servers; k++) {
				size_t i = (f->engine.rr + k) % f->n_servers;
				struct server *s = &f->servers[i];
				struct job *job;

				if (s->active >= f->o.max_per_server || list_empty(&s->queue[prio]))
					continue;
				job = job_of(s->queue[prio].next);
				list_del(&job->link);
				job_set_state(f, job, JOB_IDLE);
				f->engine.rr = i + 1;
				job_start(f, job);
				started = true;
				break;
			}
		}
		if (!started)
			break;
	}
}

/* A failure of this server for this attempt: retry later, next server (or give up there). */
static void on_attempt_failed(struct cfs_fetch *f, struct job *job,
                              const struct cfs_fetch_verdict *v)
{
	struct server *s = &f->servers[job->server];
	int r;

	switch (v->kind) {
	case CFS_FETCH_FAIL_HTTP:
		STAT_ADD(f, fail_http, 1);
		break;
	case CFS_FETCH_FAIL_TIMEOUT:
		STAT_ADD(f, fail_timeout, 1);
		break;
	case CFS_FETCH_FAIL_TOO_LARGE:
		STAT_ADD(f, fail_too_large, 1);
		break;
	default:
		STAT_ADD(f, fail_network, 1);
		break;
	}
	memcpy(job->reason, v->reason, sizeof(job->reason));
	cfs_debug("fetch %s: attempt %u on %s failed: %s", job->path, job->tries, s->url,
	          job->reason);
	server_failure(f, s, v->unreachable);
	job->any_failure = true;
	job->err = v->err;
	/* Kept bytes go to the temp file now; the resumed body continues after them. */
	r = v->keep_partial ? (job->body.buf_len ? cfs_fetch_stage_post(f, job, SOP_DATA) : 0)
	                    : cfs_fetch_stage_reset_body(f, job);
	if (r < 0) {
		job_fail_local(f, job, r, "store");
		return;
	}
	if (v->outcome == CFS_FETCH_RETRY) {
		uint64_t delay = cfs_fetch_backoff_ms(&f->engine.rng, f->o.backoff_ms, job->tries);

		job_set_state(f, job, JOB_WAITING);
		job->retry_at = cfs_now_ns() + delay * 1000000ULL;
		STAT_ADD(f, retries, 1);
		if (cfs_fetch_heap_push(&f->engine.retry, job) < 0)
			job_fail_local(f, job, -ENOMEM, "retry");
		return;
	}
	job_next_server(f, job);
}

static void on_transfer_done(struct cfs_fetch *f, struct job *job, CURLcode cc)
{
	struct server *s = &f->servers[job->server];
	struct cfs_fetch_verdict v;
	int r;

	cfs_fetch_attempt_end(f, job, cc, &v);
	job_set_state(f, job, JOB_IDLE);
	pthread_mutex_lock(&f->stats.lock);
	f->stats.c.bytes += job->xfer.bytes;
	s->bytes += job->xfer.bytes;
	pthread_mutex_unlock(&f->stats.lock);

	switch (v.outcome) {
	case CFS_FETCH_GIVE_UP:
		job_fail_local(f, job, v.err, "store");
		return;
	case CFS_FETCH_SUCCESS:
		/* The stager writes the rest, verifies and reports back (on_staged). */
		r = cfs_fetch_stage_post(f, job, SOP_FINAL);
		if (r < 0) {
			job_fail_local(f, job, r, "store");
			return;
		}
		job_set_state(f, job, JOB_STAGING);
		return;
	case CFS_FETCH_NOT_FOUND:
		server_success(f, s);
		pthread_mutex_lock(&f->stats.lock);
		s->not_found++;
		pthread_mutex_unlock(&f->stats.lock);
		job_next_server(f, job);
		return;
	case CFS_FETCH_RETRY:
	case CFS_FETCH_NEXT_SERVER:
		on_attempt_failed(f, job, &v);
		return;
	}
}

static void drain_curl(struct cfs_fetch *f)
{
	CURLMsg *msg;
	int left;

	while ((msg = curl_multi_info_read(f->multi, &left))) {
		struct job *job = NULL;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&job);
		if (job)
			on_transfer_done(f, job, msg->data.result);
	}
}

/* ---- verification and commit ---------------------------------------------------------------- */

/* Links a verified object into the hand-off directory and answers its waiters: the object is
 * readable there now, its commit follows. On failure the waiters wait for the commit. */
static void job_hand_off(struct cfs_fetch *f, struct job *job)
{
	struct cfs_fetch_result info = {
	    .size = job->size,
	    .fetched = true,
	    .server = f->servers[job->server].url,
	    .handed_off = true,
	};

	if (cfs_fetch_handoff_add(f, job) < 0)
		return;
	job->handed_off = true;
	STAT_ADD(f, handoffs, 1);
	job_answer(job, 0, &info);
}

static void job_to_commit(struct cfs_fetch *f, struct job *job)
{
	job_set_state(f, job, JOB_VERIFIED);
	job->size = job->body.handed;
	if (f->o.handoff)
		job_hand_off(f, job);
	if (f->engine.npending == 1) /* the first of a batch opens its window */
		f->engine.commit_deadline = cfs_now_ns() + cfs_fetch_commit_window_ns(f);
	list_add_tail(&f->engine.pending, &job->link);
}

/* The stager's verdict on a complete body. */
static void on_staged(struct cfs_fetch *f, struct job *job)
{
	struct server *s = &f->servers[job->server];
	int r = job->body.stage_result;

	job_set_state(f, job, JOB_IDLE);
	if (r == 0) {
		server_success(f, s);
		job_to_commit(f, job);
		return;
	}
	job->body.handed = 0;
	if (r != -EBADMSG) {
		job_fail_local(f, job, r, "store");
		return;
	}
	cfs_warn("digest mismatch for %s from %s (not saved)", job->path, s->url);
	pthread_mutex_lock(&f->stats.lock);
	f->stats.c.verify_failures++;
	s->verify_failures++;
	pthread_mutex_unlock(&f->stats.lock);
	server_failure(f, s, false);
	job->any_failure = true;
	job->err = -EBADMSG;
	job_set_reason(job, "digest mismatch from %s", s->url);
	/* That server is bad for this object: no retry there. */
	job_next_server(f, job);
}

/* The committer's verdict: the object is in the store under its name, or the flush or rename
 * failed. */
static void on_committed(struct cfs_fetch *f, struct job *job)
{
	job_set_state(f, job, JOB_IDLE);
	if (job->handed_off) {
		cfs_fetch_handoff_done(f, job);
		job->handed_off = false;
	}
	if (job->commit.result < 0)
		job_fail_local(f, job, job->commit.result, "store commit");
	else
		job_finish(f, job, 0);
}

/* Takes each job off @jobs and hands it to @handle. */
static void handle_each(struct cfs_fetch *f, struct list *jobs,
                        void (*handle)(struct cfs_fetch *, struct job *))
{
	while (!list_empty(jobs)) {
		struct job *job = job_of(jobs->next);

		list_del(&job->link);
		handle(f, job);
	}
}

/* Takes the jobs another thread left on @from (under @lock) and hands each to @handle. */
static void drain_jobs(struct cfs_fetch *f, pthread_mutex_t *lock, struct list *from,
                       void (*handle)(struct cfs_fetch *, struct job *))
{
	struct list done;

	list_init(&done);
	pthread_mutex_lock(lock);
	list_splice_tail(&done, from);
	pthread_mutex_unlock(lock);
	handle_each(f, &done, handle);
}

/* Moves the pending batch to @to, as committing. */
static void take_pending(struct cfs_fetch *f, struct list *to)
{
	for (struct list *l = f->engine.pending.next; l != &f->engine.pending; l = l->next)
		job_set_state(f, job_of(l), JOB_COMMITTING);
	list_splice_tail(to, &f->engine.pending);
}

/* Hands the pending batch to the committer when it is idle and the batch is due: full, past
 * its window, or with nothing left running that could join it (a lone miss does not wait; one
 * small enough to have been staged here is committed here too). */
static void maybe_commit(struct cfs_fetch *f)
{
	/* Nobody waits for the commit of a handed-off object: it keeps its window. */
	bool lone = !f->o.handoff && !f->engine.active && !f->engine.staging, inline_commit;
	struct list batch;

	if (f->engine.npending == 0)
		return;
	if (f->engine.npending < COMMIT_BATCH_MAX && !lone && cfs_now_ns() < f->engine.commit_deadline)
		return;
	/* Only the engine gives the committer work: idle now, it stays idle until then. */
	if (!cfs_fetch_committer_idle(f))
		return;
	list_init(&batch);
	inline_commit = lone && f->engine.npending == 1 &&
	                job_of(f->engine.pending.next)->size <= INLINE_MAX_BYTES;
	take_pending(f, &batch);
	if (!inline_commit) {
		cfs_fetch_committer_give(f, &batch);
		return;
	}
	cfs_fetch_commit_batch(f, &batch);
	handle_each(f, &batch, on_committed);
}

/* ---- submissions ---------------------------------------------------------------------------- */

static void call_waiter(struct waiter *w, int result, uint64_t size, const char *reason)
{
	struct cfs_fetch_result info = {.size = size, .reason = reason};

	w->cb(result, w->digest, &info, w->userdata);
	free(w);
}

/* A submit of an object already in flight: one more waiter, or the answer at once. */
static void job_join(struct cfs_fetch *f, struct job *job, struct waiter *w)
{
	STAT_ADD(f, joined, 1);
	if (job->handed_off) {
		struct cfs_fetch_result info = {.size = job->size, .handed_off = true};

		w->cb(0, w->digest, &info, w->userdata);
		free(w);
		return;
	}
	*job->wtail = w;
	job->wtail = &w->next;
	if (!(w->flags & CFS_FETCH_LOW_PRIORITY) && job->low) {
		job->low = false;
		if (job->state == JOB_QUEUED) {
			list_del(&job->link);
			list_add_tail(&f->servers[job->server].queue[0], &job->link);
		}
	}
}

static void handle_submit(struct cfs_fetch *f, struct waiter *w)
{
	struct job *job = cfs_fetch_table_find(&f->engine.jobs, w->digest);
	struct stat st;
	size_t idx;

	w->next = NULL;
	if (job) {
		job_join(f, job, w);
		return;
	}
	if (cfs_store_lookup(f->store, w->digest, &st) == 0) {
		STAT_ADD(f, already_present, 1);
		call_waiter(w, 0, (uint64_t)st.st_size, NULL);
		return;
	}
	job = calloc(1, sizeof(*job));
	if (!job) {
		call_waiter(w, -ENOMEM, 0, "out of memory");
		return;
	}
	job->f = f;
	memcpy(job->digest, w->digest, CFS_DIGEST_SIZE);
	cfs_name_format_path(job->digest, job->path);
	job->low = w->flags & CFS_FETCH_LOW_PRIORITY;
	job->waiters = w;
	job->wtail = &w->next;
	list_init(&job->link);
	if (cfs_fetch_table_insert(&f->engine.jobs, job) < 0) {
		free(job);
		call_waiter(w, -ENOMEM, 0, "out of memory");
		return;
	}
	pick_server(f, job, &idx);
	job->server = idx;
	job_enqueue(f, job);
}

static bool drain_submissions(struct cfs_fetch *f)
{
	struct waiter *w, *next;
	bool stopping;

	pthread_mutex_lock(&f->subq.lock);
	w = f->subq.head;
	f->subq.head = NULL;
	f->subq.tail = &f->subq.head;
	stopping = f->subq.stopping;
	pthread_mutex_unlock(&f->subq.lock);
	for (; w; w = next) {
		next = w->next;
		if (stopping)
			call_waiter(w, -ECANCELED, 0, "fetch engine shut down");
		else
			handle_submit(f, w);
	}
	return stopping;
}

/* ---- the loop ------------------------------------------------------------------------------- */

static void run_timers(struct cfs_fetch *f)
{
	uint64_t now = cfs_now_ns();

	while (f->engine.retry.len && f->engine.retry.v[0]->retry_at <= now)
		job_enqueue(f, cfs_fetch_heap_pop(&f->engine.retry));
}

/* Milliseconds from @now until @at (0 if past), at most 1000. */
static int ms_until(uint64_t at, uint64_t now)
{
	return at <= now ? 0 : (int)CFS_MIN((at - now) / 1000000 + 1, 1000);
}

static int poll_timeout_ms(struct cfs_fetch *f)
{
	uint64_t now = cfs_now_ns();
	long t = -1;
	int ms = 1000;

	if (curl_multi_timeout(f->multi, &t) == CURLM_OK && t >= 0 && t < ms)
		ms = (int)t;
	if (f->engine.retry.len)
		ms = CFS_MIN(ms, ms_until(f->engine.retry.v[0]->retry_at, now));
	if (!list_empty(&f->engine.nospace))
		ms = CFS_MIN(ms, ms_until(job_of(f->engine.nospace.next)->retry_at, now));
	/* A busy committer wakes us when it is done. */
	if (f->engine.npending && !cfs_fetch_committer_busy(f))
		ms = CFS_MIN(ms, ms_until(f->engine.commit_deadline, now));
	return ms;
}

static void shutdown_engine(struct cfs_fetch *f)
{
	struct job_table *t = &f->engine.jobs;
	struct list batch;
	struct job *left;

	/* Complete bodies still being written are finished and verified first. */
	cfs_fetch_stager_quiesce(f);
	drain_jobs(f, &f->stager.lock, &f->stager.done, on_staged);
	/* Verified objects are complete: commit them rather than throw them away. */
	list_init(&batch);
	while (cfs_fetch_committer_wait_idle(f) && f->engine.npending) {
		take_pending(f, &batch);
		cfs_fetch_committer_give(f, &batch);
	}
	cfs_fetch_committer_stop(f);
	drain_jobs(f, &f->committer.lock, &f->committer.done, on_committed);
	/* Anything still pending (committer gone) is committed here, with its own flush. */
	while (!list_empty(&f->engine.pending)) {
		struct job *job = job_of(f->engine.pending.next);

		list_del(&job->link);
		cfs_fetch_commit_one(f, job);
		on_committed(f, job);
	}
	/* Everything else is abandoned. */
	for (size_t pos = 0; cfs_fetch_table_next(t, &pos, &left);) {
		if (left->state == JOB_RUNNING)
			curl_multi_remove_handle(f->multi, left->xfer.easy);
		else if (left->state == JOB_QUEUED || left->state == JOB_NOSPACE)
			list_del(&left->link);
		job_set_reason(left, "fetch engine shut down");
		job_finish(f, left, -ECANCELED);
	}
	f->engine.retry.len = 0;
	/* The stager applies the last frees before it ends. */
	cfs_fetch_stager_stop(f);
	drain_submissions(f);
}

void *cfs_fetch_engine_main(void *arg)
{
	struct cfs_fetch *f = arg;
	int running;

	for (;;) {
		if (drain_submissions(f))
			break;
		f->engine.ran_inline = false;
		drain_jobs(f, &f->stager.lock, &f->stager.done, on_staged);
		drain_jobs(f, &f->committer.lock, &f->committer.done, on_committed);
		run_timers(f);
		start_transfers(f);
		curl_multi_perform(f->multi, &running);
		drain_curl(f);
		cfs_fetch_stage_flush(f);
		maybe_commit(f);
		start_transfers(f);
		/* Not while a verdict the engine made itself waits (nobody would wake it). */
		if (!f->engine.ran_inline)
			curl_multi_poll(f->multi, NULL, 0, poll_timeout_ms(f), NULL);
		curl_multi_perform(f->multi, &running);
		drain_curl(f);
		cfs_fetch_stage_flush(f);
	}
	shutdown_engine(f);
	return NULL;
}
