/* SPDX-License-Identifier: MIT */
/* cfscache: the fetch engine: verified, single-flight, multi-server object downloads driven by
 * one thread that owns a libcurl multi handle. Any thread may submit; callbacks run on the
 * engine's thread. */
#ifndef CFS_FETCH_H
#define CFS_FETCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/digest.h"
#include "common/handoff.h"
#include "common/store.h"

struct cfs_fetch;

struct cfs_fetch_options {
	/* Base URLs tried in order; object URL = base + "/XX/<62hex>". At least one. */
	const char *const *servers;
	size_t n_servers;
	/* Store that receives verified objects; not owned. */
	struct cfs_store *store;
	unsigned max_transfers;         /* concurrent transfers in all (default 64) */
	unsigned max_per_server;        /* concurrent transfers per server (default 16) */
	uint64_t max_object_size;       /* larger (decoded) bodies abort the transfer at once
	                                 * (default 4 GiB) */
	unsigned connect_timeout_ms;    /* default 5000 */
	unsigned low_speed_bytes;       /* abort below this rate... (default 1024 B/s) */
	unsigned low_speed_secs;        /* ...sustained this long (default 10 s) */
	unsigned retries;               /* extra attempts per server on failure (default 2) */
	unsigned backoff_ms;            /* first retry delay, doubled with jitter (default 100) */
	unsigned server_backoff_ms;     /* how long a failing server is skipped (default 5000) */
	unsigned server_fail_threshold; /* consecutive failures before that (default 3) */
	unsigned commit_delay_ms;       /* group-commit window for the shared flush (default 2) */
	bool accept_zstd;               /* send Accept-Encoding: zstd (default true) */
	bool insecure;                  /* skip TLS peer verification (tests only) */
	const char *ca_file;            /* optional */
	const char *client_cert;        /* optional, PEM */
	const char *client_key;         /* optional, PEM */
	const char *token_file;         /* optional: "Authorization: Bearer <contents>" */
	const char *user_agent;         /* optional */
	/* Optional: called on the engine's thread when an object does not fit in the store and
	 * nothing else is being written; frees about @bytes (a cache evicts objects) and returns
	 * how many objects it removed. More than 0: the object is tried once more. */
	int (*make_room)(void *ctx, uint64_t bytes);
	void *make_room_ctx;
	/* Optional, not owned: a verified object is linked here and its callbacks run at once; it
	 * gets its name in the store after the next group commit, off the caller's path. */
	struct cfs_handoff *handoff;
};

/* Fills @o with the defaults above (servers and store left empty). */
void cfs_fetch_options_init(struct cfs_fetch_options *o);
/* Reads a token file (token_file above): one non-empty line, a final newline dropped, at most
 * 8 KiB. Returns 0 with *token_ret (explicit_bzero and free it) or -errno; -EINVAL when it is
 * not one line. */
int cfs_fetch_token_read(const char *path, char **token_ret);

/* What a callback learns besides the result code. */
struct cfs_fetch_result {
	uint64_t size;      /* object size when present */
	bool fetched;       /* false when it was in the store already */
	const char *reason; /* human-readable cause of a failure, NULL on success */
	const char *server; /* server that delivered it, or the last one tried */
	bool handed_off;    /* in the hand-off directory; in the store after its commit */
	long http_status;   /* a failure's last HTTP error status (401, 503, ...), else 0 */
};

/* Called exactly once per successful submit, on the engine's thread. @result is 0 (object now
 * in the store, or with a hand-off directory, there: see info->handed_off), -ENOENT (absent on every server), or a failure: -EIO (network/server),
 * -EBADMSG (digest mismatch everywhere), -ETIMEDOUT, -EFBIG (too large), -ENOSPC,
 * -ECANCELED (engine shut down). Must not block for long. */
typedef void (*cfs_fetch_cb)(int result, const uint8_t digest[CFS_DIGEST_SIZE],
                             const struct cfs_fetch_result *info, void *userdata);

/* Starts the engine and its thread. Copies what it needs from @o. Returns 0 or -errno. */
int cfs_fetch_new(const struct cfs_fetch_options *o, struct cfs_fetch **fetch_ret);
/* Stops the thread; transfers in flight are abandoned (their temp files removed) and their
 * callbacks get -ECANCELED before this returns. Objects already verified are committed first
 * (their callbacks get 0). Must not be called from a callback. */
void cfs_fetch_free(struct cfs_fetch *fetch);

enum cfs_fetch_flags {
	CFS_FETCH_LOW_PRIORITY = 1 << 0, /* prefetch: demand fetches go first */
};

/* Queues a fetch of @digest; returns at once. Concurrent submits of one digest share one
 * transfer. Returns 0 (callback will run) or -errno (it will not). Thread-safe. */
int cfs_fetch_submit(struct cfs_fetch *fetch, const uint8_t digest[CFS_DIGEST_SIZE], unsigned flags,
                     cfs_fetch_cb cb, void *userdata);

/* Blocking convenience for tools: submits and waits. Returns the callback's result;
 * info_ret->reason stays valid until the next call on this thread. -EDEADLK from a callback. */
int cfs_fetch_sync(struct cfs_fetch *fetch, const uint8_t digest[CFS_DIGEST_SIZE],
                   struct cfs_fetch_result *info_ret);

struct cfs_fetch_stats {
	uint64_t submitted;       /* submit calls */
	uint64_t joined;          /* submits that joined a transfer already under way */
	uint64_t already_present; /* answered from the store without a request */
	uint64_t requests;        /* HTTP requests sent */
	uint64_t fetched;         /* objects fetched and committed */
	uint64_t bytes;           /* body bytes received */
	uint64_t not_found;       /* objects absent on every server */
	uint64_t failures;        /* objects that failed */
	uint64_t verify_failures; /* digest mismatches (never saved) */
	uint64_t retries;         /* repeated attempts */
	uint64_t resumed;         /* transfers resumed with Range */
	uint64_t in_flight;       /* distinct objects being fetched now */
	uint64_t queued;          /* waiting for a transfer slot */
	uint64_t commits;         /* shared flushes (group commits) */
	uint64_t handoffs;        /* verified objects linked into the hand-off directory */
	/* Failed attempts by kind (an object may fail several attempts and still arrive). */
	uint64_t fail_http;      /* HTTP error status other than 404/410 (5xx, 401, ...) */
	uint64_t fail_network;   /* refused, reset, short body, TLS, protocol errors */
	uint64_t fail_timeout;   /* connect timeout or low-speed limit */
	uint64_t fail_too_large; /* body beyond max_object_size */
	uint64_t fail_local;     /* objects failed by the local store (ENOSPC, EIO, ...) */
};
void cfs_fetch_get_stats(struct cfs_fetch *fetch, struct cfs_fetch_stats *stats_ret);

enum cfs_fetch_server_state {
	CFS_FETCH_SERVER_UP,
	CFS_FETCH_SERVER_BACKOFF, /* skipped after consecutive failures until a deadline */
	CFS_FETCH_SERVER_UNREACHABLE, /* the last attempt or probe could not connect: refused,
	                               * unresolvable or timed out (until a success) */
};
/* "up", "backoff", "unreachable". */
const char *cfs_fetch_server_state_name(enum cfs_fetch_server_state state);

struct cfs_fetch_server_stats {
	const char *url; /* valid while the engine lives */
	enum cfs_fetch_server_state state;
	uint64_t requests, bytes, failures, not_found, verify_failures;
	unsigned consecutive_failures;
	unsigned active; /* transfers now */
};
size_t cfs_fetch_server_count(struct cfs_fetch *fetch);
/* Returns 0 or -ERANGE. */
int cfs_fetch_server_stats(struct cfs_fetch *fetch, size_t index,
                           struct cfs_fetch_server_stats *stats_ret);

/* One blocking HEAD of @url with @o's TLS files, token and connect timeout (no engine needed):
 * for diagnostics. Returns 0 with the HTTP status in *status_ret (file:// absence is 404), or
 * -ECONNREFUSED, -ETIMEDOUT, -EHOSTUNREACH, -EPROTO (TLS), -EIO with a reason written to
 * @reason (@reason_len bytes). */
int cfs_fetch_probe(const struct cfs_fetch_options *o, const char *url, long *status_ret,
                    char *reason, size_t reason_len);
/* HEADs every server's base URL once (any HTTP answer = reachable) and marks the ones
 * that cannot be reached "unreachable" until a transfer succeeds there. Blocks for at most about
 * twice the connect timeout per server: run it on a thread of your own. */
void cfs_fetch_probe_servers(struct cfs_fetch *f);

#endif
