/* SPDX-License-Identifier: MIT */
/* cfscache: cfs-serve core: evhttp event loops (one per thread) serving a store at /objects. */
#ifndef CFS_SERVER_SERVER_H
#define CFS_SERVER_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common/digest.h"

struct cfs_serve;
struct cfs_serve_miss;
struct event_base;
struct evbuffer;

/* Called on the request's own event-loop thread when an object is absent from the store.
 * The handler takes over the request: it must later call cfs_serve_miss_done exactly once,
 * on that same thread (issue 8: pull-through from an upstream plugs in here). */
typedef void (*cfs_serve_miss_fn)(struct cfs_serve_miss *miss,
                                  const uint8_t digest[CFS_DIGEST_SIZE], void *userdata);

struct cfs_serve_config {
	const char *store_path;
	struct cfs_store *store; /* opened by the caller (with the path above), not owned */
	const char *const *listen; /* "ADDR:PORT" / "[V6]:PORT" strings */
	size_t n_listen;
	unsigned threads;           /* event loops; 0 = online CPUs */
	unsigned max_connections;   /* over it, requests get 503 */
	uint64_t timeout_ms;        /* read/write/idle timeout of a connection */
	uint64_t header_timeout_ms; /* a whole request head (and TLS handshake) must arrive in it */
	uint64_t shutdown_timeout_ms;
	size_t max_header_size; /* request line + headers */
	size_t max_uri;         /* request-target length */
	uint64_t max_upload;    /* PUT body limit */
	bool allow_upload;
	const char *token; /* NULL: no authentication */
	const char *tls_cert, *tls_key;
	bool zstd;
	int zstd_level;
	uint64_t zstd_max_size; /* objects above it are never compressed */
	size_t cache_size;      /* bytes of small objects kept in memory; 0: no object cache */
	FILE *access_log;       /* NULL: none */
	cfs_serve_miss_fn miss_fn;
	void *miss_userdata;
	/* Adds the miss handler's own lines to /metrics (any loop thread); may be NULL. */
	void (*metrics_fn)(struct evbuffer *out, void *miss_userdata);
};

/* Opens the store, loads TLS material and binds every listening socket (one per thread and
 * address, SO_REUSEPORT), so that configuration errors surface before anything runs.
 * Returns 0 or -errno; free with cfs_serve_free. */
int cfs_serve_new(const struct cfs_serve_config *cfg, struct cfs_serve **srv_ret);
/* Starts the event-loop threads. Returns 0 or -errno. */
int cfs_serve_start(struct cfs_serve *srv);
/* Asks every loop to stop accepting, finish in-flight requests (bounded by the shutdown
 * timeout) and return. Safe from any thread except the loops themselves. */
void cfs_serve_stop(struct cfs_serve *srv);
/* Waits for every loop thread to return. Returns 0. */
int cfs_serve_join(struct cfs_serve *srv);
void cfs_serve_free(struct cfs_serve *srv);

/* Completes a miss handed to a cfs_serve_miss_fn: @present true re-reads the store and answers
 * with the object, false answers 404; @status >= 500 answers that error. Frees @miss. If the
 * client went away meanwhile nothing is sent. Call it on the request's loop thread (e.g. from
 * an event on that loop's base); the loop does not wait for pending misses at shutdown. */
void cfs_serve_miss_done(struct cfs_serve_miss *miss, bool present, int status);
/* The event loop that owns @miss: completions from other threads are scheduled on it (which
 * needs evthread_use_pthreads() before cfs_serve_new). */
struct event_base *cfs_serve_miss_base(const struct cfs_serve_miss *miss);
/* Whether the client is still there to be answered. */
bool cfs_serve_miss_alive(const struct cfs_serve_miss *miss);

#endif
