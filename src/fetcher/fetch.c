/* SPDX-License-Identifier: MIT */
/* cfscache: fetch engine: a curl multi loop on one thread, single flight, failover; temp files
 * written and verified on a stager thread, group commit on a committer thread. */
#include "config.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "common/log.h"
#include "common/name.h"
#include "common/util.h"
#include "fetcher/fetch.h"

#define MAX_SERVERS 64
#define REASON_LEN 200
/* Partial bodies at least this large are kept and resumed with Range. */
#define RESUME_MIN (64 * 1024)
/* Error pages are read and dropped, up to this size. */
#define ERROR_BODY_MAX (1024 * 1024)
#define COMMIT_BATCH_MAX 512
/* Bodies are gathered in memory and handed to the stager thread in chunks of up to this size. */
#define STAGE_CHUNK (256 * 1024)
/* Gathered bytes are handed over early once the oldest of them has waited this long, so slow
 * transfers reach their temp file while they run (a fast body still goes over as one op). */
#define STAGE_FLUSH_NS (20 * 1000000ULL)
/* Bytes handed to the stager and not yet written: the engine waits above this, until they
 * are down to STAGE_RESUME_BYTES (the stager wakes it there, or when its queue is empty). */
#define STAGE_MAX_BYTES (2u << 20)
#define STAGE_RESUME_BYTES (STAGE_MAX_BYTES / 2)
/* A lone miss (nothing else in flight) of at most this many bytes is written, verified and
 * committed by the engine itself: the hand-overs to the stager and the committer and back
 * cost more than the work. */
#define INLINE_MAX_BYTES (64 * 1024)
/* An object out of space waits at most this long for the others to finish before it is tried
 * again anyway (a mount that is never idle must not leave its lookup waiting). */
#define NOSPACE_WAIT_MS 5000
/* Full-size chunk buffers kept for reuse rather than freed and faulted in again. */
#define STAGE_SPARE_MAX 8
/* With a hand-off directory, temp files made ahead for lone misses: refilled to the target by
 * the idle stager once fewer than the low mark are left. */
#define READY_TARGET 8
#define READY_LOW 4
#define RETRY_DELAY_MAX_MS 10000
/* The widest a busy disk makes the group-commit window of handed-off objects. */
#define COMMIT_WINDOW_MAX_NS (5000 * 1000000ULL)

struct list {
	struct list *prev, *next;
};

static void list_init(struct list *l)
{
	l->prev = l->next = l;
}

static bool list_empty(const struct list *l)
{
	return l->next == l;
}

static void list_add_tail(struct list *head, struct list *n)
{
	n->prev = head->prev;
	n->next = head;
	head->prev->next = n;
	head->prev = n;
}

static void list_del(struct list *n)
{
	n->prev->next = n->next;
	n->next->prev = n->prev;
	n->prev = n->next = n;
}

/* Moves every entry of @from to the end of @to. */
static void list_splice_tail(struct list *to, struct list *from)
{
	if (list_empty(from))
		return;
	from->next->prev = to->prev;
	to->prev->next = from->next;
	from->prev->next = to;
	to->prev = from->prev;
	list_init(from);
}

#define job_of(l) ((struct job *)((char *)(l)-offsetof(struct job, link)))

/* One submit: queued for the engine, then a waiter on its job. */
struct waiter {
	struct waiter *next;
	uint8_t digest[CFS_DIGEST_SIZE];
	unsigned flags;
	cfs_fetch_cb cb;
	void *userdata;
};

enum job_state {
	JOB_QUEUED,     /* in a server's queue, waiting for a transfer slot */
	JOB_RUNNING,    /* easy handle in the multi handle */
	JOB_WAITING,    /* in the retry heap */
	JOB_STAGING,    /* body received, the stager writes and verifies what is left */
	JOB_VERIFIED,   /* verified, waiting for the next group commit */
	JOB_COMMITTING, /* handed to the committer thread */
	JOB_NOSPACE,    /* out of space while others held some: waits to be tried alone */
};

/* One distinct object being fetched; all submits of its digest wait on it. */
struct job {
	struct cfs_fetch *f;
	struct job *hnext;
	struct list link;
	uint8_t digest[CFS_DIGEST_SIZE];
	char path[CFS_NAME_PATH_LEN + 1];
	enum job_state state;
	bool low;
	struct waiter *waiters, **wtail;
	size_t server;      /* server of the current or next attempt */
	unsigned attempt;   /* attempts made on that server */
	uint64_t done_mask; /* servers given up for this object */
	bool any_failure;   /* some server failed in a way other than 404 */
	bool nospace_tried; /* had its try alone after running out of space */
	bool room_made;     /* make_room freed space for it once */
	bool handed_off;    /* linked into the hand-off directory, waiters answered */
	int err;            /* last failure */
	char reason[REASON_LEN];
	uint64_t retry_at; /* JOB_WAITING: when to retry; JOB_NOSPACE: when to stop waiting */
	CURL *easy;
	/* The temp file side, owned by the stager thread while ops for it are queued. */
	struct stage *st;
	int stage_result;  /* of the final op: 0 verified, -EBADMSG mismatch, other local */
	uint64_t handed;   /* body bytes handed to the stager (after the last reset) */
	uint8_t *buf;      /* body bytes not handed over yet */
	size_t buf_len, buf_cap;
	uint64_t buf_since; /* when the oldest byte of buf arrived */
	/* Per attempt. */
	uint64_t range_from;
	bool checked, discard, encoded, have_crange, local_err, bad_range;
	long status;
	int abort_err;
	uint64_t crange_start, discarded, attempt_bytes;
	/* Set by the committer. */
	int commit_result;
	bool existed;
	uint64_t size;
	char errbuf[CURL_ERROR_SIZE];
};

/* A job's temp file. Only the stager thread touches @w while ops for it are queued; @err
 * latches its first local failure so the engine can abort the transfer early. */
struct stage {
	struct cfs_store_writer *w;
	uint8_t digest[CFS_DIGEST_SIZE];
	_Atomic int err;
};

enum stage_op_kind {
	SOP_DATA,  /* append @data */
	SOP_FINAL, /* append @data, then verify and report the job back */
	SOP_RESET, /* drop what was written */
	SOP_FREE,  /* remove the temp file (unless committed) and free the stage */
};

struct stage_op {
	struct stage_op *next;
	enum stage_op_kind kind;
	struct stage *st;
	struct job *job; /* SOP_FINAL only */
	uint8_t *data;   /* owned by the op */
	size_t len, cap;
};

struct server {
	char *url;
	struct list queue[2]; /* [0] demand, [1] low priority */
	unsigned active;
	unsigned consecutive;
	uint64_t backoff_until;
	bool unreachable; /* the last attempt or probe could not connect (or timed out) */
	uint64_t requests, bytes, failures, not_found, verify_failures;
};

struct cfs_fetch {
	struct cfs_fetch_options o;
	struct cfs_store *store;
	struct server *servers;
	size_t n_servers;
	CURLM *multi;
	struct curl_slist *headers;
	bool zstd;
	pthread_t thread, committer, stager;
	bool thread_started, committer_started, stager_started;

	/* Submissions from any thread. */
	pthread_mutex_t lock;
	struct waiter *subq, **subq_tail;
	bool stopping;

	/* Engine thread only. */
	struct job **buckets;
	size_t nbuckets, njobs;
	unsigned active;
	struct job **heap;
	size_t heap_len, heap_cap;
	struct list pending;
	struct list nospace; /* JOB_NOSPACE, oldest first */
	size_t npending, uncommitted, max_uncommitted;
	uint64_t commit_deadline;
	CURL **pool;
	size_t npool;
	size_t rr;
	uint64_t rng;

	/* Committer thread hand-over. */
	pthread_mutex_t clock;
	pthread_cond_t ccond;
	struct list cbatch, cdone;
	bool cbusy, cstop;

	/* Stager thread hand-over: temp file creation, writes and hashing off the engine. */
	pthread_mutex_t slock;
	pthread_cond_t scond; /* work for the stager */
	pthread_cond_t sprog; /* progress, for an engine waiting on the stager */
	struct stage_op *sq, **sq_tail;
	size_t sq_bytes;
	struct list sdone;
	bool sbusy, sstop, sidle;
	unsigned swaiters;
	void *spare[STAGE_SPARE_MAX];
	size_t nspare;
	/* Engine only: ops gathered during one loop step, handed over together. */
	struct stage_op *lq, **lq_tail;
	size_t staging; /* engine only: jobs in JOB_STAGING */
	bool ran_inline; /* engine only: a verdict waits in sdone, do not sleep */

	pthread_mutex_t stats_lock;
	struct cfs_fetch_stats stats;
	_Atomic uint64_t last_flush_ns; /* how long the last group flush took */
};

void cfs_fetch_options_init(struct cfs_fetch_options *o)
{
	memset(o, 0, sizeof(*o));
	o->max_transfers = 64;
	o->max_per_server = 16;
	o->max_object_size = 64ULL << 30;
	o->connect_timeout_ms = 5000;
	o->low_speed_bytes = 1024;
	o->low_speed_secs = 10;
	o->retries = 2;
	o->backoff_ms = 100;
	o->server_backoff_ms = 5000;
	o->server_fail_threshold = 3;
	o->commit_delay_ms = 2;
	o->accept_zstd = true;
}

/* ---- small helpers ----------------------------------------------------------------------- */

static uint64_t rng_next(struct cfs_fetch *f)
{
	/* xorshift64: jitter only, not security. */
	f->rng ^= f->rng << 13;
	f->rng ^= f->rng >> 7;
	f->rng ^= f->rng << 17;
	return f->rng;
}

static size_t hash_slot(const struct cfs_fetch *f, const uint8_t *digest)
{
	uint64_t h;

	memcpy(&h, digest, sizeof(h));
	return (size_t)(h & (f->nbuckets - 1));
}

static struct job *hash_find(struct cfs_fetch *f, const uint8_t *digest)
{
	for (struct job *j = f->buckets[hash_slot(f, digest)]; j; j = j->hnext)
		if (memcmp(j->digest, digest, CFS_DIGEST_SIZE) == 0)
			return j;
	return NULL;
}

static void hash_grow(struct cfs_fetch *f)
{
	size_t old_n = f->nbuckets;
	struct job **old = f->buckets;
	struct job **nb = calloc(old_n * 2, sizeof(*nb));

	if (!nb)
		return; /* longer chains, still correct */
	f->buckets = nb;
	f->nbuckets = old_n * 2;
	for (size_t i = 0; i < old_n; i++) {
		struct job *j = old[i], *next;

		for (; j; j = next) {
			size_t s = hash_slot(f, j->digest);

			next = j->hnext;
			j->hnext = nb[s];
			nb[s] = j;
		}
	}
	free(old);
}

static void hash_insert(struct cfs_fetch *f, struct job *job)
{
	size_t s;

	if (f->njobs >= f->nbuckets)
		hash_grow(f);
	s = hash_slot(f, job->digest);
	job->hnext = f->buckets[s];
	f->buckets[s] = job;
	f->njobs++;
}

static void hash_remove(struct cfs_fetch *f, struct job *job)
{
	struct job **pp = &f->buckets[hash_slot(f, job->digest)];

	for (; *pp; pp = &(*pp)->hnext) {
		if (*pp == job) {
			*pp = job->hnext;
			f->njobs--;
			return;
		}
	}
}

/* Min-heap of jobs waiting to retry, by retry_at. */
static int heap_push(struct cfs_fetch *f, struct job *job)
{
	size_t i;

	if (f->heap_len == f->heap_cap) {
		size_t cap = f->heap_cap ? f->heap_cap * 2 : 64;
		struct job **h = realloc(f->heap, cap * sizeof(*h));

		if (!h)
			return -ENOMEM;
		f->heap = h;
		f->heap_cap = cap;
	}
	i = f->heap_len++;
	while (i > 0) {
		size_t parent = (i - 1) / 2;

		if (f->heap[parent]->retry_at <= job->retry_at)
			break;
		f->heap[i] = f->heap[parent];
		i = parent;
	}
	f->heap[i] = job;
	return 0;
}

static struct job *heap_pop(struct cfs_fetch *f)
{
	struct job *top = f->heap[0], *last = f->heap[--f->heap_len];
	size_t i = 0, n = f->heap_len;

	for (;;) {
		size_t c = 2 * i + 1;

		if (c >= n)
			break;
		if (c + 1 < n && f->heap[c + 1]->retry_at < f->heap[c]->retry_at)
			c++;
		if (last->retry_at <= f->heap[c]->retry_at)
			break;
		f->heap[i] = f->heap[c];
		i = c;
	}
	if (n)
		f->heap[i] = last;
	return top;
}

static bool server_in_backoff(const struct server *s, uint64_t now)
{
	return s->backoff_until > now;
}

static void server_success(struct cfs_fetch *f, struct server *s)
{
	pthread_mutex_lock(&f->stats_lock);
	s->consecutive = 0;
	s->backoff_until = 0;
	s->unreachable = false;
	pthread_mutex_unlock(&f->stats_lock);
}

/* Connection refused, unresolvable or timed out: nothing is known to answer there. */
static bool curl_code_is_unreachable(CURLcode cc)
{
	return cc == CURLE_COULDNT_CONNECT || cc == CURLE_COULDNT_RESOLVE_HOST ||
	       cc == CURLE_COULDNT_RESOLVE_PROXY || cc == CURLE_OPERATION_TIMEDOUT;
}

static void server_set_unreachable(struct cfs_fetch *f, struct server *s)
{
	pthread_mutex_lock(&f->stats_lock);
	s->unreachable = true;
	pthread_mutex_unlock(&f->stats_lock);
}

static void server_failure(struct cfs_fetch *f, struct server *s)
{
	bool entered = false;

	pthread_mutex_lock(&f->stats_lock);
	s->failures++;
	s->consecutive++;
	if (s->consecutive >= f->o.server_fail_threshold) {
		entered = !server_in_backoff(s, cfs_now_ns());
		s->backoff_until = cfs_now_ns() + (uint64_t)f->o.server_backoff_ms * 1000000ULL;
	}
	pthread_mutex_unlock(&f->stats_lock);
	if (entered)
		cfs_notice("server %s: %u consecutive failures, skipping it for %u ms", s->url,
		           s->consecutive, f->o.server_backoff_ms);
}

#define STAT_ADD(f, field, n)                                                                      \
	do {                                                                                       \
		pthread_mutex_lock(&(f)->stats_lock);                                              \
		(f)->stats.field += (n);                                                           \
		pthread_mutex_unlock(&(f)->stats_lock);                                            \
	} while (0)

/* ---- stager ------------------------------------------------------------------------------ */

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
		op->job->stage_result = r;
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
	if (op->cap == STAGE_CHUNK && f->nspare < STAGE_SPARE_MAX)
		f->spare[f->nspare++] = op->data;
	else
		free(op->data);
	free(op);
}

/* Reports progress to the engine (stager lock held): @bytes of queued data applied, @done jobs
 * with a verdict. Wakeups cost a system call and a switch each: the engine is woken for the
 * first verdict it has not seen yet, and an engine held back by the byte budget once half of
 * it has drained or the queue is empty. */
static void stage_progress_locked(struct cfs_fetch *f, size_t bytes, struct list *done)
{
	bool wake = false;

	f->sq_bytes -= bytes;
	if (!list_empty(done)) {
		wake = list_empty(&f->sdone);
		list_splice_tail(&f->sdone, done);
	}
	if (f->swaiters && (!f->sq || f->sq_bytes <= STAGE_RESUME_BYTES))
		pthread_cond_broadcast(&f->sprog);
	if (wake) {
		pthread_mutex_unlock(&f->slock);
		curl_multi_wakeup(f->multi);
		pthread_mutex_lock(&f->slock);
	}
}

/* Takes everything queued at once and applies it outside the lock, so the engine and the
 * stager meet on the lock about once per loop step rather than twice per op. */
static void *stager_main(void *arg)
{
	struct cfs_fetch *f = arg;
	struct list done;
	bool prepared = false;

	list_init(&done);
	pthread_mutex_lock(&f->slock);
	for (;;) {
		struct stage_op *batch, *op, *used = NULL;
		size_t bytes = 0;

		while (!f->sq && !f->sstop) {
			/* Idle with a hand-off (lookups wait): temp files for the next misses, made
			 * off their path; tried once per wakeup (a full disk must not make it spin). */
			if (f->o.handoff && !prepared && cfs_store_prepared(f->store) < READY_LOW) {
				pthread_mutex_unlock(&f->slock);
				cfs_store_prepare(f->store, READY_TARGET);
				pthread_mutex_lock(&f->slock);
				prepared = true;
				continue;
			}
			f->sidle = true;
			pthread_cond_wait(&f->scond, &f->slock);
			f->sidle = false;
			prepared = false;
		}
		batch = f->sq;
		if (!batch)
			break;
		f->sq = NULL;
		f->sq_tail = &f->sq;
		f->sbusy = true;
		pthread_mutex_unlock(&f->slock);

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
				pthread_mutex_lock(&f->slock);
				while ((op = used)) {
					used = op->next;
					stage_op_free_locked(f, op);
				}
				if (!batch)
					f->sbusy = false;
				stage_progress_locked(f, bytes, &done);
				if (batch)
					pthread_mutex_unlock(&f->slock);
				bytes = 0;
			}
		}
	}
	pthread_mutex_unlock(&f->slock);
	return NULL;
}

static void stage_flush(struct cfs_fetch *f);

/* Queues the job's gathered bytes for the stager as an op of @kind (engine thread only); the
 * op is handed over by the next stage_flush. Returns 0 or -ENOMEM. */
static int stage_post(struct cfs_fetch *f, struct job *job, enum stage_op_kind kind)
{
	struct stage_op *op;

	if (!job->st) {
		job->st = calloc(1, sizeof(*job->st));
		if (!job->st)
			return -ENOMEM;
		memcpy(job->st->digest, job->digest, CFS_DIGEST_SIZE);
	}
	op = calloc(1, sizeof(*op));
	if (!op)
		return -ENOMEM;
	op->kind = kind;
	op->st = job->st;
	if (kind == SOP_DATA || kind == SOP_FINAL) {
		op->data = job->buf;
		op->len = job->buf_len;
		op->cap = job->buf_cap;
		job->handed += job->buf_len;
		job->buf = NULL;
		job->buf_len = job->buf_cap = 0;
	}
	if (kind == SOP_FINAL)
		op->job = job;
	if (kind == SOP_FREE)
		job->st = NULL;
	*f->lq_tail = op;
	f->lq_tail = &op->next;
	if (op->cap == STAGE_CHUNK)
		stage_flush(f); /* a large body: keep the disk busy while curl runs on */
	return 0;
}

/* Hands the ops gathered by stage_post to the stager: one lock and at most one wakeup for all
 * transfers that made progress in a loop step. Without a stager thread they run here. */
static void stage_flush(struct cfs_fetch *f)
{
	struct stage_op *op = f->lq, *next;
	size_t bytes = 0;

	if (!op)
		return;
	f->lq = NULL;
	f->lq_tail = &f->lq;
	for (struct stage_op *o = op; o; o = o->next)
		bytes += o->len;
	pthread_mutex_lock(&f->slock);
	/* Without a stager thread, or for a lone small body while the stager has nothing queued
	 * (so no op of the same stage can be pending), the engine applies the ops itself. */
	if (!f->stager_started ||
	    (f->active == 0 && bytes <= INLINE_MAX_BYTES && !f->sq && !f->sbusy)) {
		struct list done;

		list_init(&done);
		f->sbusy = true;
		pthread_mutex_unlock(&f->slock);
		for (; op; op = next) {
			next = op->next;
			if (stage_run(f, op))
				list_add_tail(&done, &op->job->link);
			free(op->data);
			free(op);
		}
		pthread_mutex_lock(&f->slock);
		f->sbusy = false;
		if (!list_empty(&done)) {
			list_splice_tail(&f->sdone, &done);
			f->ran_inline = true;
		}
		/* The stager makes the next lone miss's temp file while the network works. */
		if (f->o.handoff && f->sidle && cfs_store_prepared(f->store) < READY_LOW)
			pthread_cond_signal(&f->scond);
		pthread_mutex_unlock(&f->slock);
		return;
	}
	*f->sq_tail = op;
	for (; op; op = op->next)
		f->sq_tail = &op->next;
	f->sq_bytes += bytes;
	if (f->sidle)
		pthread_cond_signal(&f->scond);
	/* Back-pressure: the network must not outrun the disk by more than the budget. Once over
	 * it, wait until half has drained rather than trading one wakeup per op with the stager. */
	if (f->sq_bytes > STAGE_MAX_BYTES) {
		f->swaiters++;
		while (f->sq_bytes > STAGE_RESUME_BYTES && f->stager_started)
			pthread_cond_wait(&f->sprog, &f->slock);
		f->swaiters--;
	}
	pthread_mutex_unlock(&f->slock);
}

/* Waits until the stager has applied every queued op. */
static void stager_quiesce(struct cfs_fetch *f)
{
	stage_flush(f);
	pthread_mutex_lock(&f->slock);
	f->swaiters++;
	while (f->stager_started && (f->sq || f->sbusy))
		pthread_cond_wait(&f->sprog, &f->slock);
	f->swaiters--;
	pthread_mutex_unlock(&f->slock);
}

/* Frees the job's stage through the stager, after the ops still queued for it. */
static void stage_release(struct cfs_fetch *f, struct job *job)
{
	free(job->buf);
	job->buf = NULL;
	job->buf_len = job->buf_cap = 0;
	if (!job->st)
		return;
	if (stage_post(f, job, SOP_FREE) < 0) {
		/* No memory for the op: drain the stager, then free it here. */
		stager_quiesce(f);
		cfs_store_writer_free(job->st->w);
		free(job->st);
		job->st = NULL;
	}
}

static void stager_stop(struct cfs_fetch *f)
{
	stage_flush(f);
	pthread_mutex_lock(&f->slock);
	f->sstop = true;
	pthread_cond_broadcast(&f->scond);
	pthread_mutex_unlock(&f->slock);
	if (f->stager_started)
		pthread_join(f->stager, NULL);
	pthread_mutex_lock(&f->slock);
	f->stager_started = false;
	pthread_mutex_unlock(&f->slock);
}

/* Bytes of the body so far: handed over plus gathered. */
static uint64_t job_bytes(const struct job *job)
{
	return job->handed + job->buf_len;
}

/* Drops the body so far (a new full body follows). 0 or -ENOMEM. */
static int job_body_reset(struct cfs_fetch *f, struct job *job)
{
	job->buf_len = 0;
	if (job->handed == 0)
		return 0;
	job->handed = 0;
	return stage_post(f, job, SOP_RESET);
}

/* ---- job completion ---------------------------------------------------------------------- */

static void pool_put(struct cfs_fetch *f, CURL *easy)
{
	if (!easy)
		return;
	if (f->npool < f->o.max_transfers) {
		f->pool[f->npool++] = easy;
		return;
	}
	curl_easy_cleanup(easy);
}

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
	    .http_status = result < 0 && job->status >= 400 ? job->status : 0,
	};

	hash_remove(f, job);
	pthread_mutex_lock(&f->stats_lock);
	f->stats.in_flight--;
	if (result == 0)
		f->stats.fetched++;
	else if (result == -ENOENT)
		f->stats.not_found++;
	else if (result != -ECANCELED)
		f->stats.failures++;
	pthread_mutex_unlock(&f->stats_lock);
	if (result != 0 && result != -ECANCELED)
		cfs_debug("fetch %s: %s", job->path, job->reason);
	stage_release(f, job);
	pool_put(f, job->easy);
	job->easy = NULL;
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

static void job_enqueue(struct cfs_fetch *f, struct job *job)
{
	job->state = JOB_QUEUED;
	list_add_tail(&f->servers[job->server].queue[job->low ? 1 : 0], &job->link);
	STAT_ADD(f, queued, 1);
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
	job->attempt = 0;
	job_enqueue(f, job);
}

/* ---- transfers --------------------------------------------------------------------------- */

static size_t on_header(char *buf, size_t size, size_t n, void *userdata)
{
	struct job *job = userdata;
	size_t len = size * n;
	const char *v;

	if (len >= 5 && strncmp(buf, "HTTP/", 5) == 0) {
		/* A new response (after a redirect or 100-continue): forget the previous one. */
		job->have_crange = false;
		job->encoded = false;
		return len;
	}
	if (len > 14 && strncasecmp(buf, "Content-Range:", 14) == 0) {
		unsigned long long start;
		char tmp[128];

		snprintf(tmp, sizeof(tmp), "%.*s", (int)CFS_MIN(len - 14, sizeof(tmp) - 1),
		         buf + 14);
		if (sscanf(tmp, " bytes %llu-", &start) == 1) {
			job->have_crange = true;
			job->crange_start = start;
		}
	} else if (len > 17 && strncasecmp(buf, "Content-Encoding:", 17) == 0) {
		v = buf + 17;
		while (v < buf + len && (*v == ' ' || *v == '\t'))
			v++;
		job->encoded = !(buf + len - v >= 8 && strncasecmp(v, "identity", 8) == 0);
	}
	return len;
}

/* Makes room for @want more gathered bytes (the buffer never exceeds STAGE_CHUNK). */
static int job_buf_reserve(struct cfs_fetch *f, struct job *job, size_t want)
{
	size_t cap = job->buf_cap ? job->buf_cap : 16 * 1024;
	curl_off_t cl = -1;
	uint8_t *nb;

	if (job->buf_len + want <= job->buf_cap)
		return 0;
	if (!job->buf_cap && job->buf_len == 0 &&
	    curl_easy_getinfo(job->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl) == CURLE_OK &&
	    cl > 0)
		cap = (size_t)CFS_MIN((uint64_t)cl, (uint64_t)STAGE_CHUNK);
	while (cap < job->buf_len + want)
		cap *= 2;
	cap = CFS_MIN(cap, (size_t)STAGE_CHUNK);
	nb = NULL;
	if (cap == STAGE_CHUNK) {
		pthread_mutex_lock(&f->slock);
		if (f->nspare)
			nb = f->spare[--f->nspare];
		pthread_mutex_unlock(&f->slock);
		if (nb) {
			if (job->buf_len)
				memcpy(nb, job->buf, job->buf_len);
			free(job->buf);
		}
	}
	if (!nb)
		nb = realloc(job->buf, cap);
	if (!nb)
		return -ENOMEM;
	job->buf = nb;
	job->buf_cap = cap;
	return 0;
}

static size_t on_body(char *buf, size_t size, size_t n, void *userdata)
{
	struct job *job = userdata;
	struct cfs_fetch *f = job->f;
	size_t len = size * n, left = len;
	uint64_t now;
	int r;

	if (!job->checked) {
		job->checked = true;
		curl_easy_getinfo(job->easy, CURLINFO_RESPONSE_CODE, &job->status);
		if (job->status == 206) {
			if (!job->have_crange || job->crange_start != job_bytes(job)) {
				job->abort_err = -EIO;
				job->bad_range = true;
				return 0;
			}
			STAT_ADD(f, resumed, 1);
		} else if (job->status == 200 || job->status == 0) {
			r = job_body_reset(f, job);
			if (r < 0) {
				job->abort_err = r;
				job->local_err = true;
				return 0;
			}
		} else {
			job->discard = true;
		}
	}
	if (job->discard) {
		job->discarded += len;
		return job->discarded > ERROR_BODY_MAX ? 0 : len;
	}
	if (job_bytes(job) + len > f->o.max_object_size) {
		job->abort_err = -EFBIG;
		return 0;
	}
	/* A write error of the stager ends the transfer as the writer's own error would. */
	r = job->st ? atomic_load(&job->st->err) : 0;
	now = cfs_now_ns();
	if (job->buf_len == 0)
		job->buf_since = now;
	while (r == 0 && left) {
		size_t k;

		r = job_buf_reserve(f, job, CFS_MIN(left, (size_t)STAGE_CHUNK - job->buf_len));
		if (r < 0)
			break;
		k = CFS_MIN(left, job->buf_cap - job->buf_len);
		memcpy(job->buf + job->buf_len, buf + (len - left), k);
		job->buf_len += k;
		left -= k;
		if (job->buf_len == STAGE_CHUNK) {
			r = stage_post(f, job, SOP_DATA);
			job->buf_since = now;
		}
	}
	if (r == 0 && job->buf_len && now - job->buf_since >= STAGE_FLUSH_NS)
		r = stage_post(f, job, SOP_DATA);
	if (r < 0) {
		job->abort_err = r;
		job->local_err = true;
		return 0;
	}
	job->attempt_bytes += len;
	return len;
}

static CURL *easy_new(struct cfs_fetch *f)
{
	const struct cfs_fetch_options *o = &f->o;
	CURL *e = curl_easy_init();

	if (!e)
		return NULL;
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)o->connect_timeout_ms);
	curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, (long)o->low_speed_bytes);
	curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, (long)o->low_speed_secs);
	curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)o->max_object_size);
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L);
	curl_easy_setopt(e, CURLOPT_MAXREDIRS, 5L);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https,file");
	curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(e, CURLOPT_BUFFERSIZE, 256L * 1024);
	curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
	if (f->headers)
		curl_easy_setopt(e, CURLOPT_HTTPHEADER, f->headers);
	curl_easy_setopt(e, CURLOPT_USERAGENT,
	                 o->user_agent ? o->user_agent : "cfscache/" PACKAGE_VERSION);
	if (o->ca_file)
		curl_easy_setopt(e, CURLOPT_CAINFO, o->ca_file);
	if (o->client_cert)
		curl_easy_setopt(e, CURLOPT_SSLCERT, o->client_cert);
	if (o->client_key)
		curl_easy_setopt(e, CURLOPT_SSLKEY, o->client_key);
	if (o->insecure) {
		curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
		curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
	}
	return e;
}

/* Bytes the object needs in the store, as far as it is known, with room for its directory. */
static uint64_t job_space_needed(struct job *job)
{
	curl_off_t cl = -1;
	uint64_t need = job_bytes(job);

	if (job->easy &&
	    curl_easy_getinfo(job->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl) == CURLE_OK &&
	    cl > 0 && !job->encoded)
		need = CFS_MAX(need, job->range_from + (uint64_t)cl);
	return need + (1u << 20);
}

/* Whether other objects hold space in the store: bodies being received or written, verified
 * ones not yet committed. */
static bool others_hold_space(const struct cfs_fetch *f)
{
	return f->active || f->staging || f->uncommitted;
}

/* Out of space while other objects hold some (their temp files, or verified ones not yet
 * committed): the space may be theirs only for a while, and several large bodies can fill a
 * disk together where each alone would fit. Such an object drops what it has written and waits
 * to be fetched again alone (retry_nospace). Out of space alone, it fails, unless the store's
 * owner makes room (make_room, once per object). */
static bool job_park_nospace(struct cfs_fetch *f, struct job *job, int err)
{
	bool others = others_hold_space(f) || !list_empty(&f->nospace);

	if (err != -ENOSPC && err != -EDQUOT)
		return false;
	if (others && !job->nospace_tried) {
		cfs_debug("fetch %s: out of space with other objects in flight, will retry alone",
		          job->path);
	} else if (!others && !job->room_made && f->o.make_room &&
	           f->o.make_room(f->o.make_room_ctx, job_space_needed(job)) > 0) {
		job->room_made = true;
	} else {
		return false;
	}
	stage_release(f, job);
	job->handed = 0;
	pool_put(f, job->easy);
	job->easy = NULL;
	job->state = JOB_NOSPACE;
	job->retry_at = cfs_now_ns() + NOSPACE_WAIT_MS * 1000000ULL;
	list_add_tail(&f->nospace, &job->link);
	return true;
}

/* Starts the oldest object waiting for space once nothing else is in flight, or once it has
 * waited NOSPACE_WAIT_MS. */
static void retry_nospace(struct cfs_fetch *f)
{
	struct job *job;

	if (list_empty(&f->nospace))
		return;
	job = job_of(f->nospace.next);
	if (others_hold_space(f) && cfs_now_ns() < job->retry_at)
		return;
	stager_quiesce(f); /* the temp files of the dropped bodies are gone */
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

static void job_start(struct cfs_fetch *f, struct job *job)
{
	struct server *s = &f->servers[job->server];
	char url[4096];
	char range[32];

	if (!job->easy) {
		job->easy = f->npool ? f->pool[--f->npool] : easy_new(f);
		if (!job->easy) {
			job_fail_local(f, job, -ENOMEM, "curl");
			return;
		}
	}
	snprintf(url, sizeof(url), "%s/%s", s->url, job->path);
	job->range_from = job_bytes(job);
	job->checked = job->discard = job->encoded = job->have_crange = job->local_err = false;
	job->bad_range = false;
	job->status = 0;
	job->abort_err = 0;
	job->discarded = job->attempt_bytes = 0;
	job->errbuf[0] = '\0';
	curl_easy_setopt(job->easy, CURLOPT_URL, url);
	/* Over TLS, wait for a connection that may turn out to be HTTP/2 and multiplex on it. Not
	 * over plain HTTP: HTTP/1.1 connections would then be used one transfer at a time. */
	curl_easy_setopt(job->easy, CURLOPT_PIPEWAIT, strncmp(s->url, "https:", 6) == 0 ? 1L : 0L);
	curl_easy_setopt(job->easy, CURLOPT_PRIVATE, job);
	curl_easy_setopt(job->easy, CURLOPT_WRITEDATA, job);
	curl_easy_setopt(job->easy, CURLOPT_HEADERDATA, job);
	curl_easy_setopt(job->easy, CURLOPT_ERRORBUFFER, job->errbuf);
	if (job->range_from > 0) {
		/* Byte ranges are only meaningful on the identity encoding. */
		snprintf(range, sizeof(range), "%llu-", (unsigned long long)job->range_from);
		curl_easy_setopt(job->easy, CURLOPT_RANGE, range);
		curl_easy_setopt(job->easy, CURLOPT_ACCEPT_ENCODING, NULL);
	} else {
		curl_easy_setopt(job->easy, CURLOPT_RANGE, NULL);
		curl_easy_setopt(job->easy, CURLOPT_ACCEPT_ENCODING, f->zstd ? "zstd" : NULL);
	}
	if (curl_multi_add_handle(f->multi, job->easy) != CURLM_OK) {
		job_fail_local(f, job, -ENOMEM, "curl");
		return;
	}
	job->state = JOB_RUNNING;
	job->attempt++;
	f->active++;
	pthread_mutex_lock(&f->stats_lock);
	s->active++;
	f->stats.requests++;
	s->requests++;
	pthread_mutex_unlock(&f->stats_lock);
}

static void start_transfers(struct cfs_fetch *f)
{
	retry_nospace(f);
	while (f->active < f->o.max_transfers &&
	       f->uncommitted + f->staging < f->max_uncommitted) {
		bool started = false;

		for (int prio = 0; prio < 2 && !started; prio++) {
			for (size_t k = 0; k < f->n_servers; k++) {
				size_t i = (f->rr + k) % f->n_servers;
				struct server *s = &f->servers[i];
				struct job *job;

				if (s->active >= f->o.max_per_server || list_empty(&s->queue[prio]))
					continue;
				job = job_of(s->queue[prio].next);
				list_del(&job->link);
				STAT_ADD(f, queued, -1);
				f->rr = i + 1;
				job_start(f, job);
				started = true;
				break;
			}
		}
		if (!started)
			break;
	}
}

static uint64_t retry_delay_ms(struct cfs_fetch *f, unsigned attempt)
{
	uint64_t d = f->o.backoff_ms;

	for (unsigned i = 1; i < attempt && d < RETRY_DELAY_MAX_MS; i++)
		d *= 2;
	d = CFS_MIN(d, RETRY_DELAY_MAX_MS);
	/* Full jitter on the upper half spreads retries of many objects. */
	return d / 2 + (d ? rng_next(f) % (d / 2 + 1) : 0);
}

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
	int r = cfs_handoff_add_writer(f->o.handoff, job->st->w, job->digest);

	if (r < 0) {
		cfs_warn("cannot hand %s over through %s: %s (answered after its commit)", job->path,
		         cfs_handoff_path(f->o.handoff), strerror(-r));
		return;
	}
	job->handed_off = true;
	STAT_ADD(f, handoffs, 1);
	job_answer(job, 0, &info);
}

/* The group-commit window. With a hand-off directory nobody waits for a commit, so a flush
 * that took long (a disk busy with other writers: syncfs writes their data too) widens the next
 * window to several times its length, rather than adding flush after flush to that load. */
static uint64_t commit_window_ns(struct cfs_fetch *f)
{
	uint64_t w = (uint64_t)f->o.commit_delay_ms * 1000000ULL;

	if (f->o.handoff)
		w = CFS_MAX(w, CFS_MIN(4 * atomic_load(&f->last_flush_ns), COMMIT_WINDOW_MAX_NS));
	return w;
}

static void job_to_commit(struct cfs_fetch *f, struct job *job)
{
	job->state = JOB_VERIFIED;
	job->size = job->handed;
	if (f->o.handoff)
		job_hand_off(f, job);
	if (f->npending == 0)
		f->commit_deadline = cfs_now_ns() + commit_window_ns(f);
	list_add_tail(&f->pending, &job->link);
	f->npending++;
	f->uncommitted++;
}

static bool curl_code_is_tls_config(CURLcode cc)
{
	return cc == CURLE_PEER_FAILED_VERIFICATION || cc == CURLE_SSL_CERTPROBLEM ||
	       cc == CURLE_SSL_CACERT_BADFILE || cc == CURLE_SSL_CIPHER ||
	       cc == CURLE_SSL_ENGINE_NOTFOUND || cc == CURLE_UNSUPPORTED_PROTOCOL ||
	       cc == CURLE_URL_MALFORMAT;
}

static void on_attempt_failed(struct cfs_fetch *f, struct job *job, CURLcode cc);

static void on_transfer_done(struct cfs_fetch *f, struct job *job, CURLcode cc)
{
	struct server *s = &f->servers[job->server];
	int r;

	curl_multi_remove_handle(f->multi, job->easy);
	f->active--;
	if (!job->checked)
		curl_easy_getinfo(job->easy, CURLINFO_RESPONSE_CODE, &job->status);
	pthread_mutex_lock(&f->stats_lock);
	s->active--;
	f->stats.bytes += job->attempt_bytes;
	s->bytes += job->attempt_bytes;
	pthread_mutex_unlock(&f->stats_lock);

	if (job->local_err) {
		job_fail_local(f, job, job->abort_err, "store");
		return;
	}
	if (cc == CURLE_OK && !job->discard &&
	    (job->status == 200 || job->status == 206 || job->status == 0)) {
		/* The stager writes the rest, verifies and reports back (on_staged). */
		r = stage_post(f, job, SOP_FINAL);
		if (r < 0) {
			job_fail_local(f, job, r, "store");
			return;
		}
		job->state = JOB_STAGING;
		f->staging++;
		return;
	}
	if (job->status == 404 || job->status == 410 || cc == CURLE_FILE_COULDNT_READ_FILE ||
	    cc == CURLE_REMOTE_FILE_NOT_FOUND) {
		server_success(f, s);
		pthread_mutex_lock(&f->stats_lock);
		s->not_found++;
		pthread_mutex_unlock(&f->stats_lock);
		job_next_server(f, job);
		return;
	}
	on_attempt_failed(f, job, cc);
}

/* The stager's verdict on a complete body. */
static void on_staged(struct cfs_fetch *f, struct job *job)
{
	struct server *s = &f->servers[job->server];
	int r = job->stage_result;

	f->staging--;
	if (r == 0) {
		server_success(f, s);
		job_to_commit(f, job);
		return;
	}
	job->handed = 0;
	if (r != -EBADMSG) {
		job_fail_local(f, job, r, "store");
		return;
	}
	cfs_warn("digest mismatch for %s from %s (not saved)", job->path, s->url);
	pthread_mutex_lock(&f->stats_lock);
	f->stats.verify_failures++;
	s->verify_failures++;
	pthread_mutex_unlock(&f->stats_lock);
	server_failure(f, s);
	job->any_failure = true;
	job->err = -EBADMSG;
	job_set_reason(job, "digest mismatch from %s", s->url);
	/* That server is bad for this object: no retry there. */
	job_next_server(f, job);
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

/* A failure of this server for this attempt: retry later, next server, or give up. */
static void on_attempt_failed(struct cfs_fetch *f, struct job *job, CURLcode cc)
{
	struct server *s = &f->servers[job->server];
	bool retryable = true, keep_partial;
	int err, r;

	if (job->abort_err == -EFBIG || cc == CURLE_FILESIZE_EXCEEDED) {
		err = -EFBIG;
		retryable = false;
		STAT_ADD(f, fail_too_large, 1);
		job_set_reason(job, "%s sent more than %llu bytes", s->url,
		               (unsigned long long)f->o.max_object_size);
	} else if (job->bad_range) {
		err = -EIO;
		STAT_ADD(f, fail_network, 1);
		job_set_reason(job, "%s: range answer does not start at %llu", s->url,
		               (unsigned long long)job->range_from);
	} else if (job->abort_err) {
		err = job->abort_err;
		STAT_ADD(f, fail_network, 1);
		job_set_reason(job, "%s: %s", s->url, strerror(-err));
	} else if (job->status >= 300) {
		err = -EIO;
		retryable = job->status >= 500 || job->status == 408 || job->status == 429 ||
		            job->status == 416;
		STAT_ADD(f, fail_http, 1);
		job_set_reason(job, "%s: HTTP %ld", s->url, job->status);
	} else if (cc == CURLE_OPERATION_TIMEDOUT) {
		err = -ETIMEDOUT;
		STAT_ADD(f, fail_timeout, 1);
		job_set_reason(job, "%s: %s", s->url,
		               job->errbuf[0] ? job->errbuf : curl_easy_strerror(cc));
	} else {
		err = -EIO;
		retryable = !curl_code_is_tls_config(cc);
		STAT_ADD(f, fail_network, 1);
		job_set_reason(job, "%s: %s", s->url,
		               job->errbuf[0] ? job->errbuf : curl_easy_strerror(cc));
	}
	cfs_debug("fetch %s: attempt %u on %s failed: %s", job->path, job->attempt, s->url,
	          job->reason);
	server_failure(f, s);
	if (!job->abort_err && job->status == 0 && curl_code_is_unreachable(cc))
		server_set_unreachable(f, s);
	job->any_failure = true;
	job->err = err;

	/* Keep a large identity-encoded partial body to resume it with Range. */
	keep_partial = !job->encoded && !job->discard && !job->bad_range && err != -EFBIG &&
	               (job->status == 200 || job->status == 206) && job_bytes(job) >= RESUME_MIN;
	/* Kept bytes go to the temp file now; the resumed body continues after them. */
	r = keep_partial ? (job->buf_len ? stage_post(f, job, SOP_DATA) : 0)
	                 : job_body_reset(f, job);
	if (r < 0) {
		job_fail_local(f, job, r, "store");
		return;
	}
	if (retryable && job->attempt <= f->o.retries) {
		uint64_t delay = retry_delay_ms(f, job->attempt);

		job->state = JOB_WAITING;
		job->retry_at = cfs_now_ns() + delay * 1000000ULL;
		STAT_ADD(f, retries, 1);
		if (heap_push(f, job) < 0)
			job_fail_local(f, job, -ENOMEM, "retry");
		return;
	}
	job_next_server(f, job);
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

/* ---- group commit ------------------------------------------------------------------------ */

/* One flush makes every temp file of @batch durable before any rename; then each gets its
 * name, and its result in commit_result. */
static void commit_batch(struct cfs_fetch *f, struct list *batch)
{
	uint64_t t0 = cfs_now_ns();
	int r = cfs_store_sync(f->store);

	atomic_store(&f->last_flush_ns, cfs_now_ns() - t0);
	for (struct list *l = batch->next; l != batch; l = l->next) {
		struct job *job = job_of(l);

		/* The store's owner counts it (and makes room) before it gets its name, so a batch
		 * never takes the store over its quota by more than one object. */
		if (r == 0 && f->o.stored)
			f->o.stored(f->o.stored_ctx, job->digest, job->size);
		job->commit_result =
		    r < 0 ? r
		          : cfs_store_writer_commit(job->st->w, CFS_STORE_NOSYNC, &job->existed);
	}
	STAT_ADD(f, commits, 1);
}

static void *committer_main(void *arg)
{
	struct cfs_fetch *f = arg;
	struct list batch;

	list_init(&batch);
	pthread_mutex_lock(&f->clock);
	for (;;) {
		while (list_empty(&f->cbatch) && !f->cstop)
			pthread_cond_wait(&f->ccond, &f->clock);
		if (list_empty(&f->cbatch))
			break;
		list_splice_tail(&batch, &f->cbatch);
		f->cbusy = true;
		pthread_mutex_unlock(&f->clock);

		commit_batch(f, &batch);

		pthread_mutex_lock(&f->clock);
		list_splice_tail(&f->cdone, &batch);
		f->cbusy = false;
		pthread_cond_broadcast(&f->ccond);
		curl_multi_wakeup(f->multi);
	}
	pthread_mutex_unlock(&f->clock);
	return NULL;
}

/* Moves the pending batch to @to, as committing. */
static void take_pending(struct cfs_fetch *f, struct list *to)
{
	for (struct list *l = f->pending.next; l != &f->pending; l = l->next)
		job_of(l)->state = JOB_COMMITTING;
	list_splice_tail(to, &f->pending);
	f->npending = 0;
}

static void on_committed(struct cfs_fetch *f, struct job *job);

/* Hands the pending batch to the committer when it is idle and the batch is due: full, past
 * its window, or with nothing left running that could join it (a lone miss does not wait; one
 * small enough to have been staged here is committed here too). */
static void maybe_commit(struct cfs_fetch *f)
{
	/* Nobody waits for the commit of a handed-off object: it keeps its window. */
	bool lone = !f->o.handoff && !f->active && !f->staging, inline_commit = false;
	struct list batch;

	if (f->npending == 0)
		return;
	if (f->npending < COMMIT_BATCH_MAX && !lone && cfs_now_ns() < f->commit_deadline)
		return;
	list_init(&batch);
	pthread_mutex_lock(&f->clock);
	if (!f->cbusy && list_empty(&f->cbatch)) {
		inline_commit = lone && f->npending == 1 &&
		                job_of(f->pending.next)->size <= INLINE_MAX_BYTES;
		take_pending(f, inline_commit ? &batch : &f->cbatch);
		if (!inline_commit)
			pthread_cond_broadcast(&f->ccond);
	}
	pthread_mutex_unlock(&f->clock);
	if (!inline_commit)
		return;
	commit_batch(f, &batch);
	handle_each(f, &batch, on_committed);
}

/* The committer's verdict: the object is in the store under its name, or the flush or rename
 * failed. */
static void on_committed(struct cfs_fetch *f, struct job *job)
{
	f->uncommitted--;
	if (job->handed_off) {
		/* Durable now: its hand-off name may go; or it never made it, and goes now. */
		if (job->commit_result < 0)
			cfs_handoff_drop(f->o.handoff, job->digest);
		else
			cfs_handoff_release(f->o.handoff, job->digest);
		job->handed_off = false;
	}
	if (job->commit_result < 0)
		job_fail_local(f, job, job->commit_result, "store commit");
	else
		job_finish(f, job, 0);
}

/* ---- submissions ------------------------------------------------------------------------- */

static void call_waiter(struct waiter *w, int result, uint64_t size, const char *reason)
{
	struct cfs_fetch_result info = {.size = size, .reason = reason};

	w->cb(result, w->digest, &info, w->userdata);
	free(w);
}

static void handle_submit(struct cfs_fetch *f, struct waiter *w)
{
	struct job *job = hash_find(f, w->digest);
	struct stat st;
	size_t idx;

	w->next = NULL;
	if (job && job->handed_off) {
		struct cfs_fetch_result info = {.size = job->size, .handed_off = true};

		STAT_ADD(f, joined, 1);
		w->cb(0, w->digest, &info, w->userdata);
		free(w);
		return;
	}
	if (job) {
		*job->wtail = w;
		job->wtail = &w->next;
		STAT_ADD(f, joined, 1);
		if (!(w->flags & CFS_FETCH_LOW_PRIORITY) && job->low) {
			job->low = false;
			if (job->state == JOB_QUEUED) {
				list_del(&job->link);
				list_add_tail(&f->servers[job->server].queue[0], &job->link);
			}
		}
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
	hash_insert(f, job);
	STAT_ADD(f, in_flight, 1);
	pick_server(f, job, &idx);
	job->server = idx;
	job_enqueue(f, job);
}

static bool drain_submissions(struct cfs_fetch *f)
{
	struct waiter *w, *next;
	bool stopping;

	pthread_mutex_lock(&f->lock);
	w = f->subq;
	f->subq = NULL;
	f->subq_tail = &f->subq;
	stopping = f->stopping;
	pthread_mutex_unlock(&f->lock);
	for (; w; w = next) {
		next = w->next;
		if (stopping)
			call_waiter(w, -ECANCELED, 0, "fetch engine shut down");
		else
			handle_submit(f, w);
	}
	return stopping;
}

/* ---- engine thread ----------------------------------------------------------------------- */

static void run_timers(struct cfs_fetch *f)
{
	uint64_t now = cfs_now_ns();

	while (f->heap_len && f->heap[0]->retry_at <= now) {
		struct job *job = heap_pop(f);

		job_enqueue(f, job);
	}
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
	if (f->heap_len)
		ms = CFS_MIN(ms, ms_until(f->heap[0]->retry_at, now));
	if (!list_empty(&f->nospace))
		ms = CFS_MIN(ms, ms_until(job_of(f->nospace.next)->retry_at, now));
	if (f->npending) {
		/* A busy committer wakes us when it is done. */
		pthread_mutex_lock(&f->clock);
		if (!f->cbusy)
			ms = CFS_MIN(ms, ms_until(f->commit_deadline, now));
		pthread_mutex_unlock(&f->clock);
	}
	return ms;
}

static void shutdown_engine(struct cfs_fetch *f)
{
	/* Complete bodies still being written are finished and verified first. */
	stager_quiesce(f);
	drain_jobs(f, &f->slock, &f->sdone, on_staged);
	/* Verified objects are complete: commit them rather than throw them away. */
	pthread_mutex_lock(&f->clock);
	while (f->committer_started) {
		if (!f->cbusy && list_empty(&f->cbatch)) {
			if (f->npending == 0)
				break;
			take_pending(f, &f->cbatch);
			pthread_cond_broadcast(&f->ccond);
		}
		pthread_cond_wait(&f->ccond, &f->clock);
	}
	f->cstop = true;
	pthread_cond_broadcast(&f->ccond);
	pthread_mutex_unlock(&f->clock);
	if (f->committer_started)
		pthread_join(f->committer, NULL);
	f->committer_started = false;
	drain_jobs(f, &f->clock, &f->cdone, on_committed);
	/* Anything still pending (committer gone) is committed here, with its own flush. */
	while (!list_empty(&f->pending)) {
		struct job *job = job_of(f->pending.next);

		list_del(&job->link);
		f->npending--;
		if (f->o.stored)
			f->o.stored(f->o.stored_ctx, job->digest, job->size);
		job->commit_result = cfs_store_writer_commit(job->st->w, 0, NULL);
		on_committed(f, job);
	}
	/* Everything else is abandoned. */
	for (size_t b = 0; b < f->nbuckets; b++) {
		while (f->buckets[b]) {
			struct job *job = f->buckets[b];

			if (job->state == JOB_RUNNING) {
				curl_multi_remove_handle(f->multi, job->easy);
				pthread_mutex_lock(&f->stats_lock);
				f->servers[job->server].active--;
				pthread_mutex_unlock(&f->stats_lock);
				f->active--;
			} else if (job->state == JOB_QUEUED) {
				list_del(&job->link);
				STAT_ADD(f, queued, -1);
			} else if (job->state == JOB_NOSPACE) {
				list_del(&job->link);
			}
			job_set_reason(job, "fetch engine shut down");
			job_finish(f, job, -ECANCELED);
		}
	}
	f->heap_len = 0;
	/* The stager applies the last frees before it ends. */
	stager_stop(f);
	drain_submissions(f);
}

static void *engine_main(void *arg)
{
	struct cfs_fetch *f = arg;
	int running;

	for (;;) {
		if (drain_submissions(f))
			break;
		f->ran_inline = false;
		drain_jobs(f, &f->slock, &f->sdone, on_staged);
		drain_jobs(f, &f->clock, &f->cdone, on_committed);
		run_timers(f);
		start_transfers(f);
		curl_multi_perform(f->multi, &running);
		drain_curl(f);
		stage_flush(f);
		maybe_commit(f);
		start_transfers(f);
		/* Not while a verdict the engine made itself waits (nobody would wake it). */
		if (!f->ran_inline)
			curl_multi_poll(f->multi, NULL, 0, poll_timeout_ms(f), NULL);
		curl_multi_perform(f->multi, &running);
		drain_curl(f);
		stage_flush(f);
	}
	shutdown_engine(f);
	return NULL;
}

/* ---- public API -------------------------------------------------------------------------- */

static int read_token_header(const char *path, struct curl_slist **list)
{
	char *token = NULL, *header = NULL;
	struct curl_slist *nl;
	int r;

	r = cfs_read_small_file(path, 8192, &token);
	if (r < 0)
		return r;
	if (!token[0] || strpbrk(token, "\r\n")) {
		r = -EINVAL;
		goto out;
	}
	if (asprintf(&header, "Authorization: Bearer %s", token) < 0) {
		header = NULL;
		r = -ENOMEM;
		goto out;
	}
	nl = curl_slist_append(*list, header);
	if (!nl) {
		r = -ENOMEM;
		goto out;
	}
	*list = nl;
	r = 0;
out:
	if (token)
		explicit_bzero(token, strlen(token));
	if (header)
		explicit_bzero(header, strlen(header));
	free(token);
	free(header);
	return r;
}

static int copy_str(const char *in, const char **out)
{
	*out = NULL;
	if (!in)
		return 0;
	*out = strdup(in);
	return *out ? 0 : -ENOMEM;
}

int cfs_fetch_new(const struct cfs_fetch_options *o, struct cfs_fetch **fetch_ret)
{
	const curl_version_info_data *vi;
	struct cfs_fetch *f = NULL;
	struct rlimit rl;
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
	pthread_mutex_init(&f->lock, NULL);
	pthread_mutex_init(&f->clock, NULL);
	pthread_mutex_init(&f->stats_lock, NULL);
	pthread_cond_init(&f->ccond, NULL);
	pthread_mutex_init(&f->slock, NULL);
	pthread_cond_init(&f->scond, NULL);
	pthread_cond_init(&f->sprog, NULL);
	f->sq_tail = &f->sq;
	f->lq_tail = &f->lq;
	list_init(&f->sdone);
	list_init(&f->pending);
	list_init(&f->nospace);
	list_init(&f->cbatch);
	list_init(&f->cdone);
	f->subq_tail = &f->subq;
	f->rng = cfs_now_ns() | 1;

	if (!f->o.max_transfers)
		f->o.max_transfers = 64;
	if (!f->o.max_per_server)
		f->o.max_per_server = 16;
	if (!f->o.max_object_size)
		f->o.max_object_size = 64ULL << 30;
	if (!f->o.connect_timeout_ms)
		f->o.connect_timeout_ms = 5000;
	if (!f->o.low_speed_bytes)
		f->o.low_speed_bytes = 1024;
	/* Never zero: a stalled transfer must always end. */
	if (!f->o.low_speed_secs)
		f->o.low_speed_secs = 10;
	if (!f->o.server_fail_threshold)
		f->o.server_fail_threshold = 3;

	r = -ENOMEM;
	if (copy_str(o->ca_file, &f->o.ca_file) < 0 ||
	    copy_str(o->client_cert, &f->o.client_cert) < 0 ||
	    copy_str(o->client_key, &f->o.client_key) < 0 ||
	    copy_str(o->user_agent, &f->o.user_agent) < 0)
		goto fail;
	f->servers = calloc(o->n_servers, sizeof(*f->servers));
	if (!f->servers)
		goto fail;
	f->n_servers = o->n_servers;
	for (size_t i = 0; i < o->n_servers; i++) {
		struct server *s = &f->servers[i];
		size_t len;

		list_init(&s->queue[0]);
		list_init(&s->queue[1]);
		if (!o->servers[i] || !o->servers[i][0]) {
			r = -EINVAL;
			goto fail;
		}
		s->url = strdup(o->servers[i]);
		if (!s->url)
			goto fail;
		len = strlen(s->url);
		while (len > 0 && s->url[len - 1] == '/')
			s->url[--len] = '\0';
	}
	if (o->token_file) {
		r = read_token_header(o->token_file, &f->headers);
		if (r < 0) {
			cfs_err("cannot use token file %s: %s", o->token_file, strerror(-r));
			goto fail;
		}
	}
	vi = curl_version_info(CURLVERSION_NOW);
	f->zstd = o->accept_zstd && (vi->features & CURL_VERSION_ZSTD);
	if (o->accept_zstd && !f->zstd)
		cfs_info("libcurl lacks zstd: fetching without Accept-Encoding: zstd");

	f->nbuckets = 256;
	f->buckets = calloc(f->nbuckets, sizeof(*f->buckets));
	f->pool = calloc(f->o.max_transfers, sizeof(*f->pool));
	if (!f->buckets || !f->pool) {
		r = -ENOMEM;
		goto fail;
	}
	/* Verified objects hold a descriptor until their commit: bound them. */
	f->max_uncommitted = 1024;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
		f->max_uncommitted = CFS_MAX((size_t)rl.rlim_cur / 4, 32);
	f->max_uncommitted = CFS_MIN(f->max_uncommitted, 4096);

	f->multi = curl_multi_init();
	if (!f->multi) {
		r = -ENOMEM;
		goto fail;
	}
	curl_multi_setopt(f->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
	curl_multi_setopt(f->multi, CURLMOPT_MAXCONNECTS, (long)f->o.max_transfers);

	r = -pthread_create(&f->committer, NULL, committer_main, f);
	if (r < 0)
		goto fail;
	f->committer_started = true;
	r = -pthread_create(&f->stager, NULL, stager_main, f);
	if (r < 0)
		goto fail;
	f->stager_started = true;
	r = -pthread_create(&f->thread, NULL, engine_main, f);
	if (r < 0)
		goto fail;
	f->thread_started = true;
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
	if (f->thread_started && pthread_equal(pthread_self(), f->thread)) {
		/* Joining ourselves would hang: refuse loudly and leak instead. */
		cfs_err("cfs_fetch_free called from a fetch callback; ignored");
		return;
	}
	pthread_mutex_lock(&f->lock);
	f->stopping = true;
	pthread_mutex_unlock(&f->lock);
	if (f->thread_started) {
		curl_multi_wakeup(f->multi);
		pthread_join(f->thread, NULL);
	} else {
		if (f->committer_started) {
			pthread_mutex_lock(&f->clock);
			f->cstop = true;
			pthread_cond_broadcast(&f->ccond);
			pthread_mutex_unlock(&f->clock);
			pthread_join(f->committer, NULL);
		}
		stager_stop(f);
	}
	for (size_t i = 0; i < f->npool; i++)
		curl_easy_cleanup(f->pool[i]);
	if (f->multi)
		curl_multi_cleanup(f->multi);
	curl_slist_free_all(f->headers);
	for (size_t i = 0; f->servers && i < f->n_servers; i++)
		free(f->servers[i].url);
	free(f->servers);
	free(f->buckets);
	free(f->heap);
	free(f->pool);
	free((char *)f->o.ca_file);
	free((char *)f->o.client_cert);
	free((char *)f->o.client_key);
	free((char *)f->o.user_agent);
	pthread_mutex_destroy(&f->lock);
	pthread_mutex_destroy(&f->clock);
	pthread_mutex_destroy(&f->stats_lock);
	pthread_cond_destroy(&f->ccond);
	for (size_t i = 0; i < f->nspare; i++)
		free(f->spare[i]);
	pthread_mutex_destroy(&f->slock);
	pthread_cond_destroy(&f->scond);
	pthread_cond_destroy(&f->sprog);
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
	pthread_mutex_lock(&f->lock);
	if (f->stopping) {
		pthread_mutex_unlock(&f->lock);
		free(w);
		return -ECANCELED;
	}
	/* The engine takes the whole queue at once: only the first entry of a queue needs to
	 * wake it, the others are taken along (a bulk submission costs one wakeup, not one each). */
	first = !f->subq;
	*f->subq_tail = w;
	f->subq_tail = &w->next;
	pthread_mutex_unlock(&f->lock);
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

	if (f && f->thread_started && pthread_equal(pthread_self(), f->thread))
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
	pthread_mutex_lock(&f->stats_lock);
	*stats_ret = f->stats;
	pthread_mutex_unlock(&f->stats_lock);
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
	pthread_mutex_lock(&f->stats_lock);
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
	pthread_mutex_unlock(&f->stats_lock);
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

static size_t probe_discard(char *buf, size_t size, size_t n, void *userdata)
{
	(void)buf;
	(void)userdata;
	return size * n;
}

/* The HEAD of cfs_fetch_probe with the request headers given. */
static int probe_url(const struct cfs_fetch_options *o, struct curl_slist *headers,
                     const char *url, long *status_ret, char *reason, size_t reason_len)
{
	char errbuf[CURL_ERROR_SIZE] = "";
	CURLcode cc;
	CURL *e;
	int r;

	if (reason_len)
		reason[0] = '\0';
	*status_ret = 0;
	e = curl_easy_init();
	if (!e)
		return -ENOMEM;
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, probe_discard);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)o->connect_timeout_ms);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)o->connect_timeout_ms * 2);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https,file");
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L);
	curl_easy_setopt(e, CURLOPT_MAXREDIRS, 5L);
	curl_easy_setopt(e, CURLOPT_USERAGENT,
	                 o->user_agent ? o->user_agent : "cfscache/" PACKAGE_VERSION);
	if (headers)
		curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers);
	if (o->ca_file)
		curl_easy_setopt(e, CURLOPT_CAINFO, o->ca_file);
	if (o->client_cert)
		curl_easy_setopt(e, CURLOPT_SSLCERT, o->client_cert);
	if (o->client_key)
		curl_easy_setopt(e, CURLOPT_SSLKEY, o->client_key);
	if (o->insecure) {
		curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
		curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
	}
	cc = curl_easy_perform(e);
	if (cc == CURLE_OK) {
		curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, status_ret);
		r = 0;
	} else if (cc == CURLE_FILE_COULDNT_READ_FILE || cc == CURLE_REMOTE_FILE_NOT_FOUND) {
		*status_ret = 404; /* file:// answers absence this way */
		r = 0;
	} else {
		r = cc == CURLE_OPERATION_TIMEDOUT   ? -ETIMEDOUT
		    : cc == CURLE_COULDNT_CONNECT     ? -ECONNREFUSED
		    : curl_code_is_unreachable(cc)    ? -EHOSTUNREACH
		    : curl_code_is_tls_config(cc)     ? -EPROTO
		                                      : -EIO;
		snprintf(reason, reason_len, "%s", errbuf[0] ? errbuf : curl_easy_strerror(cc));
	}
	curl_easy_cleanup(e);
	return r;
}

int cfs_fetch_probe(const struct cfs_fetch_options *o, const char *url, long *status_ret,
                    char *reason, size_t reason_len)
{
	struct curl_slist *headers = NULL;
	int r;

	*status_ret = 0;
	if (o->token_file) {
		r = read_token_header(o->token_file, &headers);
		if (r < 0) {
			snprintf(reason, reason_len, "cannot use token file %s: %s", o->token_file,
			         strerror(-r));
			return r;
		}
	}
	r = probe_url(o, headers, url, status_ret, reason, reason_len);
	curl_slist_free_all(headers);
	return r;
}

void cfs_fetch_probe_servers(struct cfs_fetch *f)
{
	for (size_t i = 0; i < f->n_servers; i++) {
		struct server *s = &f->servers[i];
		char url[4096], reason[256];
		long status;
		int r;

		/* The base URL itself, not an object name: a pull-through tier does not pass it
		 * upstream, and any answer (404 or 403 for a directory) says the server is there. */
		snprintf(url, sizeof(url), "%s/", s->url);
		r = probe_url(&f->o, f->headers, url, &status, reason, sizeof(reason));
		if (r == 0) {
			/* 403 is what a static server says for a directory: only 401 is about us. */
			if (status == 401)
				cfs_warn("server %s answers HTTP 401: check --token-file", s->url);
			continue;
		}
		pthread_mutex_lock(&f->stats_lock);
		/* A transfer may have got through meanwhile: it knows better. */
		if (s->requests == 0)
			s->unreachable = true;
		pthread_mutex_unlock(&f->stats_lock);
		cfs_warn("server %s is unreachable: %s", s->url, reason);
	}
}
