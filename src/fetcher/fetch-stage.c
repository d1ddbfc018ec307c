/* SPDX-License-Identifier: MIT */
/* cfscache: the fetch engine's stager: temp files created, written, hashed and verified on a
 * thread of their own, fed by the engine in batches of ops. */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/store.h"
#include "fetcher/fetch-internal.h"

/* Applies one op to its stage; returns true when it produced a result for op->job. */
static bool stage_run(struct cfs_fetch *f, struct stage_op *op)
{
	struct stage *st = op->st;
	int r;

	switch (op->kind) {
	case SOP_DATA:
	case SOP_FINAL:
		if (op->len && !atomic_load(&st->err)) {
			r = st->w ? 0 : cfs_store_writer_new(f->store, st->digest, &st->w);
			if (r == 0)
				r = cfs_store_writer_write(st->w, op->data, op->len);
			if (r < 0)
				atomic_store(&st->err, r);
		}
		if (op->kind == SOP_DATA)
			return false;
		r = atomic_load(&st->err);
		if (r == 0 && !st->w)
			r = cfs_store_writer_new(f->store, st->digest, &st->w); /* empty object */
		if (r == 0) {
			r = cfs_store_writer_verify(st->w, NULL);
			if (r == -EBADMSG) {
				/* Never kept: the next server's body starts a new temp file. */
				cfs_store_writer_free(st->w);
				st->w = NULL;
			}
		}
		op->job->body.stage_result = r;
		return true;
	case SOP_RESET:
		if (st->w && !atomic_load(&st->err)) {
			r = cfs_store_writer_reset(st->w);
			if (r < 0)
				atomic_store(&st->err, r);
		}
		return false;
	case SOP_FREE:
		cfs_store_writer_free(st->w);
		free(st);
		return false;
	}
	return false;
}

/* Returns an op's buffer to the spare chunks or frees it, and frees the op (stager lock held). */
static void stage_op_free_locked(struct cfs_fetch *f, struct stage_op *op)
{
	if (op->cap == STAGE_CHUNK && f->stager.nspare < STAGE_SPARE_MAX)
		f->stager.spare[f->stager.nspare++] = op->data;
	else
		free(op->data);
	free(op);
}

void *cfs_fetch_stage_spare(struct cfs_fetch *f)
{
	void *p = NULL;

	pthread_mutex_lock(&f->stager.lock);
	if (f->stager.nspare)
		p = f->stager.spare[--f->stager.nspare];
	pthread_mutex_unlock(&f->stager.lock);
	return p;
}

/* Reports progress to the engine (stager lock held): @bytes of queued data applied, @done jobs
 * with a verdict. Wakeups cost a system call and a switch each: the engine is woken for the
 * first verdict it has not seen yet, and an engine held back by the byte budget once half of
 * it has drained or the queue is empty. */
static void stage_progress_locked(struct cfs_fetch *f, size_t bytes, struct list *done)
{
	bool wake = false;

	f->stager.queue_bytes -= bytes;
	if (!list_empty(done)) {
		wake = list_empty(&f->stager.done);
		list_splice_tail(&f->stager.done, done);
	}
	if (f->stager.waiters && (!f->stager.queue || f->stager.queue_bytes <= STAGE_RESUME_BYTES))
		pthread_cond_broadcast(&f->stager.progress);
	if (wake) {
		pthread_mutex_unlock(&f->stager.lock);
		curl_multi_wakeup(f->multi);
		pthread_mutex_lock(&f->stager.lock);
	}
}

/* Takes everything queued at once and applies it outside the lock, so the engine and the
 * stager meet on the lock about once per loop step rather than twice per op. */
void *cfs_fetch_stager_main(void *arg)
{
	struct cfs_fetch *f = arg;
	struct list done;
	bool prepared = false;

	list_init(&done);
	pthread_mutex_lock(&f->stager.lock);
	for (;;) {
		struct stage_op *batch, *op, *used = NULL;
		size_t bytes = 0;

		while (!f->stager.queue && !f->stager.stop) {
			/* Idle with a hand-off (lookups wait): temp files for the next misses, made
			 * off their path; tried once per wakeup (a full disk must not make it spin). */
			if (f->o.handoff && !prepared && cfs_store_prepared(f->store) < READY_LOW) {
				pthread_mutex_unlock(&f->stager.lock);
				cfs_store_prepare(f->store, READY_TARGET);
				pthread_mutex_lock(&f->stager.lock);
				prepared = true;
				continue;
			}
			f->stager.idle = true;
			pthread_cond_wait(&f->stager.work, &f->stager.lock);
			f->stager.idle = false;
			prepared = false;
		}
		batch = f->stager.queue;
		if (!batch)
			break;
		f->stager.queue = NULL;
		f->stager.queue_tail = &f->stager.queue;
		f->stager.busy = true;
		pthread_mutex_unlock(&f->stager.lock);

		while ((op = batch)) {
			batch = op->next;
			if (stage_run(f, op))
				list_add_tail(&done, &op->job->link);
			bytes += op->len;
			if (op->cap == STAGE_CHUNK) {
				op->next = used; /* for the spare chunks, under the lock */
				used = op;
			} else {
				free(op->data);
				free(op);
			}
			/* A held-back engine gets its budget back as the disk takes the bytes. */
			if (bytes >= STAGE_MAX_BYTES / 4 || !batch) {
				pthread_mutex_lock(&f->stager.lock);
				while ((op = used)) {
					used = op->next;
					stage_op_free_locked(f, op);
				}
				if (!batch)
					f->stager.busy = false;
				stage_progress_locked(f, bytes, &done);
				if (batch)
					pthread_mutex_unlock(&f->stager.lock);
				bytes = 0;
			}
		}
	}
	pthread_mutex_unlock(&f->stager.lock);
	return NULL;
}

int cfs_fetch_stage_post(struct cfs_fetch *f, struct job *job, enum stage_op_kind kind)
{
	struct stage_op *op;

	if (!job->body.st) {
		job->body.st = calloc(1, sizeof(*job->body.st));
		if (!job->body.st)
			return -ENOMEM;
		memcpy(job->body.st->digest, job->digest, CFS_DIGEST_SIZE);
	}
	op = calloc(1, sizeof(*op));
	if (!op)
		return -ENOMEM;
	op->kind = kind;
	op->st = job->body.st;
	if (kind == SOP_DATA || kind == SOP_FINAL) {
		op->data = job->body.buf;
		op->len = job->body.buf_len;
		op->cap = job->body.buf_cap;
		job->body.handed += job->body.buf_len;
		job->body.buf = NULL;
		job->body.buf_len = job->body.buf_cap = 0;
	}
	if (kind == SOP_FINAL)
		op->job = job;
	if (kind == SOP_FREE)
		job->body.st = NULL;
	*f->engine.ops_tail = op;
	f->engine.ops_tail = &op->next;
	if (op->cap == STAGE_CHUNK)
		cfs_fetch_stage_flush(f); /* a large body: keep the disk busy while curl runs on */
	return 0;
}

/* Applies the ops on the engine's thread (stager lock held, and released while they run). */
static void stage_run_inline_locked(struct cfs_fetch *f, struct stage_op *op)
{
	struct stage_op *next;
	struct list done;

	list_init(&done);
	f->stager.busy = true;
	pthread_mutex_unlock(&f->stager.lock);
	for (; op; op = next) {
		next = op->next;
		if (stage_run(f, op))
			list_add_tail(&done, &op->job->link);
		free(op->data);
		free(op);
	}
	pthread_mutex_lock(&f->stager.lock);
	f->stager.busy = false;
	if (!list_empty(&done)) {
		list_splice_tail(&f->stager.done, &done);
		f->engine.ran_inline = true;
	}
	/* The stager makes the next lone miss's temp file while the network works. */
	if (f->o.handoff && f->stager.idle && cfs_store_prepared(f->store) < READY_LOW)
		pthread_cond_signal(&f->stager.work);
}

/* Hands the ops gathered by cfs_fetch_stage_post to the stager: one lock and at most one wakeup
 * for all transfers that made progress in a loop step. Without a stager thread they run here. */
void cfs_fetch_stage_flush(struct cfs_fetch *f)
{
	struct stage_op *op = f->engine.ops;
	size_t bytes = 0;

	if (!op)
		return;
	f->engine.ops = NULL;
	f->engine.ops_tail = &f->engine.ops;
	for (struct stage_op *o = op; o; o = o->next)
		bytes += o->len;
	pthread_mutex_lock(&f->stager.lock);
	/* Without a stager thread, or for a lone small body while the stager has nothing queued
	 * (so no op of the same stage can be pending), the engine applies the ops itself. */
	if (!f->stager.started || (f->engine.active == 0 && bytes <= INLINE_MAX_BYTES &&
	                           !f->stager.queue && !f->stager.busy)) {
		stage_run_inline_locked(f, op);
		pthread_mutex_unlock(&f->stager.lock);
		return;
	}
	*f->stager.queue_tail = op;
	for (; op; op = op->next)
		f->stager.queue_tail = &op->next;
	f->stager.queue_bytes += bytes;
	if (f->stager.idle)
		pthread_cond_signal(&f->stager.work);
	/* Back-pressure: the network must not outrun the disk by more than the budget. Once over
	 * it, wait until half has drained rather than trading one wakeup per op with the stager. */
	if (f->stager.queue_bytes > STAGE_MAX_BYTES) {
		f->stager.waiters++;
		while (f->stager.queue_bytes > STAGE_RESUME_BYTES && f->stager.started)
			pthread_cond_wait(&f->stager.progress, &f->stager.lock);
		f->stager.waiters--;
	}
	pthread_mutex_unlock(&f->stager.lock);
}

void cfs_fetch_stager_quiesce(struct cfs_fetch *f)
{
	cfs_fetch_stage_flush(f);
	pthread_mutex_lock(&f->stager.lock);
	f->stager.waiters++;
	while (f->stager.started && (f->stager.queue || f->stager.busy))
		pthread_cond_wait(&f->stager.progress, &f->stager.lock);
	f->stager.waiters--;
	pthread_mutex_unlock(&f->stager.lock);
}

void cfs_fetch_stage_release(struct cfs_fetch *f, struct job *job)
{
	free(job->body.buf);
	job->body.buf = NULL;
	job->body.buf_len = job->body.buf_cap = 0;
	if (!job->body.st)
		return;
	if (cfs_fetch_stage_post(f, job, SOP_FREE) < 0) {
		/* No memory for the op: drain the stager, then free it here. */
		cfs_fetch_stager_quiesce(f);
		cfs_store_writer_free(job->body.st->w);
		free(job->body.st);
		job->body.st = NULL;
	}
}

int cfs_fetch_stage_reset_body(struct cfs_fetch *f, struct job *job)
{
	job->body.buf_len = 0;
	if (job->body.handed == 0)
		return 0;
	job->body.handed = 0;
	return cfs_fetch_stage_post(f, job, SOP_RESET);
}

void cfs_fetch_stager_stop(struct cfs_fetch *f)
{
	cfs_fetch_stage_flush(f);
	pthread_mutex_lock(&f->stager.lock);
	f->stager.stop = true;
	pthread_cond_broadcast(&f->stager.work);
	pthread_mutex_unlock(&f->stager.lock);
	if (f->stager.started)
		pthread_join(f->stager.thread, NULL);
	pthread_mutex_lock(&f->stager.lock);
	f->stager.started = false;
	pthread_mutex_unlock(&f->stager.lock);
}
