/* SPDX-License-Identifier: MIT */
/* cfscache: the fetch engine's private types: jobs, stages, servers and the engine, each field
 * in the sub-struct of the thread or role that owns it; the calls between its files. */
#ifndef CFS_FETCH_INTERNAL_H
#define CFS_FETCH_INTERNAL_H

#include <curl/curl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/digestmap.h"
#include "common/name.h"
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

/* ---- an intrusive doubly linked list ------------------------------------------------------ */

struct list {
	struct list *prev, *next;
};

static inline void list_init(struct list *l)
{
	l->prev = l->next = l;
}

static inline bool list_empty(const struct list *l)
{
	return l->next == l;
}

static inline void list_add_tail(struct list *head, struct list *n)
{
	n->prev = head->prev;
	n->next = head;
	head->prev->next = n;
	head->prev = n;
}

static inline void list_del(struct list *n)
{
	n->prev->next = n->next;
	n->next->prev = n->prev;
	n->prev = n->next = n;
}

/* Moves every entry of @from to the end of @to. */
static inline void list_splice_tail(struct list *to, struct list *from)
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

/* ---- jobs ----------------------------------------------------------------------------------- */

/* One submit: queued for the engine, then a waiter on its job. */
struct waiter {
	struct waiter *next;
	uint8_t digest[CFS_DIGEST_SIZE];
	unsigned flags;
	cfs_fetch_cb cb;
	void *userdata;
};

enum job_state {
	JOB_NONE,       /* not in flight: being created, or finished */
	JOB_IDLE,       /* between two states, while the engine decides */
	JOB_QUEUED,     /* in a server's queue, waiting for a transfer slot */
	JOB_RUNNING,    /* easy handle in the multi handle */
	JOB_WAITING,    /* in the retry heap */
	JOB_STAGING,    /* body received, the stager writes and verifies what is left */
	JOB_VERIFIED,   /* verified, waiting for the next group commit */
	JOB_COMMITTING, /* handed to the committer thread */
	JOB_NOSPACE,    /* out of space while others held some: waits to be tried alone */
};

/* One distinct object being fetched; all submits of its digest wait on it. Engine thread only,
 * but for @body.st while the stager has ops for it and @commit while the committer has it. */
struct job {
	struct cfs_fetch *f;
	struct list link;   /* the list of its state (server queue, pending, ...) */
	uint8_t digest[CFS_DIGEST_SIZE];
	char path[CFS_NAME_PATH_LEN + 1];
	enum job_state state; /* changed by the engine's job_set_state() only */
	bool low;
	struct waiter *waiters, **wtail;
	size_t server;      /* server of the current or next attempt */
	unsigned tries;     /* attempts made on that server */
	uint64_t done_mask; /* servers given up for this object */
	bool any_failure;   /* some server failed in a way other than 404 */
	bool nospace_tried; /* had its try alone after running out of space */
	bool room_made;     /* make_room freed space for it once */
	bool handed_off;    /* linked into the hand-off directory, waiters answered */
	int err;            /* last failure */
	char reason[REASON_LEN];
	uint64_t retry_at; /* JOB_WAITING: when to retry; JOB_NOSPACE: when to stop waiting */
	uint64_t size;     /* the verified object's size */

	/* The body: gathered here, handed to the stager's temp file. */
	struct {
		struct stage *st;  /* owned by the stager thread while ops for it are queued */
		int stage_result;  /* of the final op: 0 verified, -EBADMSG mismatch, other local */
		uint64_t handed;   /* bytes handed to the stager (after the last reset) */
		uint8_t *buf;      /* bytes not handed over yet */
		size_t buf_len, buf_cap;
		uint64_t buf_since; /* when the oldest byte of buf arrived */
	} body;

	/* The current HTTP attempt, written by the curl callbacks. */
	struct {
		CURL *easy;
		uint64_t range_from;
		bool checked, discard, encoded, have_crange, local_err, bad_range;
		long status;
		int abort_err;
		uint64_t crange_start, discarded, bytes;
		char errbuf[CURL_ERROR_SIZE];
	} xfer;

	/* Set by the committer. */
	struct {
		int result;
		bool existed;
	} commit;
};

/* Bytes of the body so far: handed over plus gathered. */
static inline uint64_t job_bytes(const struct job *job)
{
	return job->body.handed + job->body.buf_len;
}

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

/* ---- containers of the engine --------------------------------------------------------------- */

/* Jobs by digest (single flight). */
struct job_table {
	struct cfs_digestmap *map;
};

/* Min-heap of jobs waiting to retry, by retry_at. */
struct retry_heap {
	struct job **v;
	size_t len, cap;
};

/* A table for about @expected jobs (it grows). 0 or -ENOMEM. */
int cfs_fetch_table_init(struct job_table *t, size_t expected);
void cfs_fetch_table_free(struct job_table *t);
struct job *cfs_fetch_table_find(const struct job_table *t, const uint8_t *digest);
/* 0 or -ENOMEM (table unchanged). */
int cfs_fetch_table_insert(struct job_table *t, struct job *job);
void cfs_fetch_table_remove(struct job_table *t, struct job *job);
/* Iterates (start with *@pos = 0); the job returned may be removed before the next call. */
bool cfs_fetch_table_next(const struct job_table *t, size_t *pos, struct job **job_ret);
/* 0 or -ENOMEM. */
int cfs_fetch_heap_push(struct retry_heap *h, struct job *job);
struct job *cfs_fetch_heap_pop(struct retry_heap *h);

/* ---- servers and the engine ----------------------------------------------------------------- */

struct server {
	char *url;
	struct list queue[2]; /* engine: [0] demand, [1] low priority */
	/* Under stats.lock (read by the stats calls). */
	unsigned active;
	unsigned consecutive;
	uint64_t backoff_until;
	bool unreachable; /* the last attempt or probe could not connect (or timed out) */
	uint64_t requests, bytes, failures, not_found, verify_failures;
};

static inline bool server_in_backoff(const struct server *s, uint64_t now)
{
	return s->backoff_until > now;
}

struct cfs_fetch {
	/* Set by cfs_fetch_new, read-only after. */
	struct cfs_fetch_options o;
	struct cfs_store *store;
	struct server *servers;
	size_t n_servers;
	CURLM *multi;
	struct curl_slist *headers;
	bool zstd;

	/* Submissions from any thread, taken by the engine all at once. */
	struct {
		pthread_mutex_t lock;
		struct waiter *head, **tail;
		bool stopping;
	} subq;

	/* The engine thread's own. */
	struct {
		pthread_t thread;
		bool started;
		struct job_table jobs;
		struct retry_heap retry;
		struct list pending; /* JOB_VERIFIED, for the next group commit */
		struct list nospace; /* JOB_NOSPACE, oldest first */
		/* Derived from the jobs' states, kept by job_set_state(). */
		unsigned active;    /* JOB_RUNNING */
		size_t staging;     /* JOB_STAGING */
		size_t uncommitted; /* JOB_VERIFIED or JOB_COMMITTING */
		size_t npending;    /* JOB_VERIFIED */
		size_t max_uncommitted;
		uint64_t commit_deadline;
		CURL **pool; /* idle easy handles */
		size_t npool;
		size_t rr; /* the server to look at first for the next transfer */
		uint64_t rng;
		/* Ops gathered during one loop step, handed to the stager together. */
		struct stage_op *ops, **ops_tail;
		bool ran_inline; /* a verdict it made itself waits in stager.done: do not sleep */
	} engine;

	/* The committer thread and its hand-over, under committer.lock. */
	struct {
		pthread_t thread;
		bool started;
		pthread_mutex_t lock;
		pthread_cond_t cond;
		struct list batch, done;
		bool busy, stop;
		_Atomic uint64_t last_flush_ns; /* how long the last group flush took */
	} committer;

	/* The stager thread and its hand-over, under stager.lock: temp file creation, writes and
	 * hashing off the engine. */
	struct {
		pthread_t thread;
		bool started;
		pthread_mutex_t lock;
		pthread_cond_t work;     /* work for the stager */
		pthread_cond_t progress; /* progress, for an engine waiting on the stager */
		struct stage_op *queue, **queue_tail;
		size_t queue_bytes;
		struct list done; /* jobs with a verdict */
		bool busy, stop, idle;
		unsigned waiters;
		void *spare[STAGE_SPARE_MAX];
		size_t nspare;
	} stager;

	/* Counters read by any thread; the servers' counters are under the same lock. */
	struct {
		pthread_mutex_t lock;
		struct cfs_fetch_stats c;
	} stats;
};

#define STAT_ADD(f, field, n)                                                                      \
	do {                                                                                       \
		pthread_mutex_lock(&(f)->stats.lock);                                              \
		(f)->stats.c.field += (n);                                                         \
		pthread_mutex_unlock(&(f)->stats.lock);                                            \
	} while (0)

/* ---- fetch-stage.c: the stager thread ------------------------------------------------------- */

void *cfs_fetch_stager_main(void *arg);
/* Queues the job's gathered bytes as an op of @kind (engine thread); handed over by the next
 * cfs_fetch_stage_flush. Returns 0 or -ENOMEM. */
int cfs_fetch_stage_post(struct cfs_fetch *f, struct job *job, enum stage_op_kind kind);
void cfs_fetch_stage_flush(struct cfs_fetch *f);
/* Drops the body so far (a new full body follows). 0 or -ENOMEM. */
int cfs_fetch_stage_reset_body(struct cfs_fetch *f, struct job *job);
/* Frees the job's body and its stage (through the stager, after the ops still queued). */
void cfs_fetch_stage_release(struct cfs_fetch *f, struct job *job);
/* A spare STAGE_CHUNK buffer, or NULL. */
void *cfs_fetch_stage_spare(struct cfs_fetch *f);
/* Waits until the stager has applied every queued op. */
void cfs_fetch_stager_quiesce(struct cfs_fetch *f);
void cfs_fetch_stager_stop(struct cfs_fetch *f);

/* ---- fetch-commit.c: the group commit ------------------------------------------------------- */

void *cfs_fetch_committer_main(void *arg);
/* One flush for the whole @batch, then each job's rename; results in job->commit. */
void cfs_fetch_commit_batch(struct cfs_fetch *f, struct list *batch);
/* A commit of its own, with its own flush (the committer is gone). */
void cfs_fetch_commit_one(struct cfs_fetch *f, struct job *job);
uint64_t cfs_fetch_commit_window_ns(struct cfs_fetch *f);
/* Whether the committer has nothing to do; only the engine gives it work. */
bool cfs_fetch_committer_idle(struct cfs_fetch *f);
/* Whether it is writing a batch now. */
bool cfs_fetch_committer_busy(struct cfs_fetch *f);
/* Hands @batch (emptied) to the committer. */
void cfs_fetch_committer_give(struct cfs_fetch *f, struct list *batch);
/* Waits until the committer is idle; false when it is not running. */
bool cfs_fetch_committer_wait_idle(struct cfs_fetch *f);
void cfs_fetch_committer_stop(struct cfs_fetch *f);
/* Links the job's verified temp file into the hand-off directory: 0 or -errno (logged). */
int cfs_fetch_handoff_add(struct cfs_fetch *f, struct job *job);
/* After its commit: the hand-off name goes (committed) or the object goes (not committed). */
void cfs_fetch_handoff_done(struct cfs_fetch *f, struct job *job);

/* ---- fetch-attempt.c: one HTTP attempt ------------------------------------------------------ */

/* What an attempt left behind, as the classification sees it. */
struct cfs_fetch_facts {
	CURLcode cc;
	long status;      /* HTTP status; 0 for file:// */
	int abort_err;    /* why a callback ended the transfer, or 0 */
	bool local_err;   /* abort_err is the local store's */
	bool bad_range;   /* a 206 that does not start where the body stopped */
	bool discard;     /* the body was an error page, read and dropped */
	bool encoded;     /* Content-Encoding other than identity */
	uint64_t body_bytes; /* body bytes kept so far */
	uint64_t range_from; /* where this attempt's Range started */
	unsigned tries;   /* attempts made on this server, this one included */
	unsigned retries; /* extra attempts allowed per server */
	uint64_t max_object_size;
	const char *server; /* its base URL, for the reason */
	const char *errbuf; /* curl's error text, or "" */
};

enum cfs_fetch_outcome {
	CFS_FETCH_SUCCESS,     /* a complete body: verify and commit it */
	CFS_FETCH_NOT_FOUND,   /* absent on this server: the next one */
	CFS_FETCH_RETRY,       /* a failure of this server: again there after a delay */
	CFS_FETCH_NEXT_SERVER, /* a failure of this server: no retry there */
	CFS_FETCH_GIVE_UP,     /* a local failure: no server can help */
};

/* Which failure counter an attempt adds to. */
enum cfs_fetch_fail_kind {
	CFS_FETCH_FAIL_NONE,
	CFS_FETCH_FAIL_HTTP,
	CFS_FETCH_FAIL_NETWORK,
	CFS_FETCH_FAIL_TIMEOUT,
	CFS_FETCH_FAIL_TOO_LARGE,
	CFS_FETCH_FAIL_LOCAL,
};

struct cfs_fetch_verdict {
	enum cfs_fetch_outcome outcome;
	int err; /* a failure's -errno, else 0 */
	enum cfs_fetch_fail_kind kind;
	bool unreachable;  /* nothing answered: mark the server unreachable */
	bool keep_partial; /* keep the body so far and resume it with Range */
	char reason[REASON_LEN];
};

/* Pure: what an attempt's outcome means and what to do next. */
void cfs_fetch_classify(const struct cfs_fetch_facts *a, struct cfs_fetch_verdict *v);
/* The delay before retry @attempt (1, 2, ...): @base_ms doubled per attempt up to
 * RETRY_DELAY_MAX_MS, jittered over its upper half with the xorshift state @rng (not 0). */
uint64_t cfs_fetch_backoff_ms(uint64_t *rng, unsigned base_ms, unsigned attempt);
/* Refused, unresolvable or timed out: nothing is known to answer there. */
bool cfs_fetch_curl_unreachable(CURLcode cc);
/* A failure no retry can mend (TLS set-up, bad URL). */
bool cfs_fetch_curl_tls_config(CURLcode cc);
/* -ETIMEDOUT, -ECONNREFUSED, -EHOSTUNREACH, -EPROTO (TLS) or -EIO for a failed request. */
int cfs_fetch_curl_errno(CURLcode cc);

/* The options every handle of @o has: timeouts, protocols, redirects, TLS files, headers. */
void cfs_fetch_easy_setup(CURL *e, const struct cfs_fetch_options *o, struct curl_slist *headers);
/* Appends "Authorization: Bearer <token>" from @path to @list: 0 or -errno. */
int cfs_fetch_token_header(const char *path, struct curl_slist **list);
/* Puts the job's easy handle into the multi handle for its next attempt: 0 or -ENOMEM. */
int cfs_fetch_attempt_start(struct cfs_fetch *f, struct job *job);
/* Takes the finished attempt out of the multi handle and classifies it. */
void cfs_fetch_attempt_end(struct cfs_fetch *f, struct job *job, CURLcode cc,
                           struct cfs_fetch_verdict *v);
/* Keeps the job's easy handle for reuse (or frees it). */
void cfs_fetch_attempt_put_easy(struct cfs_fetch *f, struct job *job);
/* Bytes the object needs in the store, as far as it is known, with room for its directory. */
uint64_t cfs_fetch_attempt_space_needed(const struct job *job);

/* ---- fetch-table.c, fetch-engine.c ---------------------------------------------------------- */

void *cfs_fetch_engine_main(void *arg);

#endif
