/* SPDX-License-Identifier: MIT */
/* cfscache: the fetch engine's group commit: one flush for a batch of verified temp files, then
 * their renames, on the committer thread; the hand-off directory's links around it. */
#include "config.h"

#include <string.h>

#include "common/handoff.h"
#include "common/log.h"
#include "common/store.h"
#include "common/util.h"
#include "fetcher/fetch-internal.h"

/* One transaction for the batch: one flush, then each job's rename (the store's observer, a
 * quota, counts each object just before). */
void cfs_fetch_commit_batch(struct cfs_fetch *f, struct list *batch)
{
	struct cfs_store_txn_stats ts = { 0 };
	struct cfs_store_txn *txn = NULL;
	int r = cfs_store_txn_new(f->store, &txn);

	for (struct list *l = batch->next; r == 0 && l != batch; l = l->next)
		r = cfs_store_txn_add(txn, job_of(l)->body.st->w, 0);
	if (r == 0) {
		cfs_store_txn_commit(txn);
		cfs_store_txn_get_stats(txn, &ts);
	}
	/* The flush alone: what the disk's load costs (the window widens with it). */
	atomic_store(&f->committer.last_flush_ns, ts.last_flush_ns);
	for (struct list *l = batch->next; l != batch; l = l->next) {
		struct job *job = job_of(l);

		job->commit.result =
		    r < 0 ? r : cfs_store_writer_result(job->body.st->w, &job->commit.existed);
	}
	cfs_store_txn_free(txn);
	STAT_ADD(f, commits, 1);
}

void cfs_fetch_commit_one(struct cfs_fetch *f, struct job *job)
{
	(void)f;
	job->commit.result = cfs_store_commit_one(job->body.st->w, NULL);
}

void *cfs_fetch_committer_main(void *arg)
{
	struct cfs_fetch *f = arg;
	struct list batch;

	list_init(&batch);
	pthread_mutex_lock(&f->committer.lock);
	for (;;) {
		while (list_empty(&f->committer.batch) && !f->committer.stop)
			pthread_cond_wait(&f->committer.cond, &f->committer.lock);
		if (list_empty(&f->committer.batch))
			break;
		list_splice_tail(&batch, &f->committer.batch);
		f->committer.busy = true;
		pthread_mutex_unlock(&f->committer.lock);

		cfs_fetch_commit_batch(f, &batch);

		pthread_mutex_lock(&f->committer.lock);
		list_splice_tail(&f->committer.done, &batch);
		f->committer.busy = false;
		pthread_cond_broadcast(&f->committer.cond);
		curl_multi_wakeup(f->multi);
	}
	pthread_mutex_unlock(&f->committer.lock);
	return NULL;
}

/* The group-commit window. With a hand-off directory nobody waits for a commit, so a flush
 * that took long (a disk busy with other writers: syncfs writes their data too) widens the next
 * window to several times its length, rather than adding flush after flush to that load. */
uint64_t cfs_fetch_commit_window_ns(struct cfs_fetch *f)
{
	uint64_t w = (uint64_t)f->o.commit_delay_ms * 1000000ULL;

	if (f->o.handoff)
		w = CFS_MAX(w, CFS_MIN(4 * atomic_load(&f->committer.last_flush_ns),
		                       COMMIT_WINDOW_MAX_NS));
	return w;
}

bool cfs_fetch_committer_idle(struct cfs_fetch *f)
{
	bool idle;

	pthread_mutex_lock(&f->committer.lock);
	idle = !f->committer.busy && list_empty(&f->committer.batch);
	pthread_mutex_unlock(&f->committer.lock);
	return idle;
}

bool cfs_fetch_committer_busy(struct cfs_fetch *f)
{
	bool busy;

	pthread_mutex_lock(&f->committer.lock);
	busy = f->committer.busy;
	pthread_mutex_unlock(&f->committer.lock);
	return busy;
}

void cfs_fetch_committer_give(struct cfs_fetch *f, struct list *batch)
{
	pthread_mutex_lock(&f->committer.lock);
	list_splice_tail(&f->committer.batch, batch);
	pthread_cond_broadcast(&f->committer.cond);
	pthread_mutex_unlock(&f->committer.lock);
}

bool cfs_fetch_committer_wait_idle(struct cfs_fetch *f)
{
	bool running;

	pthread_mutex_lock(&f->committer.lock);
	while (f->committer.started && (f->committer.busy || !list_empty(&f->committer.batch)))
		pthread_cond_wait(&f->committer.cond, &f->committer.lock);
	running = f->committer.started;
	pthread_mutex_unlock(&f->committer.lock);
	return running;
}

void cfs_fetch_committer_stop(struct cfs_fetch *f)
{
	pthread_mutex_lock(&f->committer.lock);
	f->committer.stop = true;
	pthread_cond_broadcast(&f->committer.cond);
	pthread_mutex_unlock(&f->committer.lock);
	if (f->committer.started)
		pthread_join(f->committer.thread, NULL);
	f->committer.started = false;
}

int cfs_fetch_handoff_add(struct cfs_fetch *f, struct job *job)
{
	int r = cfs_handoff_add_writer(f->o.handoff, job->body.st->w, job->digest);

	if (r < 0)
		cfs_warn("cannot hand %s over through %s: %s (answered after its commit)", job->path,
		         cfs_handoff_path(f->o.handoff), strerror(-r));
	return r;
}

void cfs_fetch_handoff_done(struct cfs_fetch *f, struct job *job)
{
	/* Durable now: its hand-off name may go; or it never made it, and goes now. */
	if (job->commit.result < 0)
		cfs_handoff_drop(f->o.handoff, job->digest);
	else
		cfs_handoff_release(f->o.handoff, job->digest);
}
