/* SPDX-License-Identifier: MIT */
/* cfscache: cfs-serve internals: the types of a server, its loops and connections, and the calls
 * between its files. */
#ifndef CFS_SERVER_SERVER_INTERNAL_H
#define CFS_SERVER_SERVER_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <openssl/ssl.h>

#include "common/digest.h"
#include "common/u64map.h"
#include "common/util.h"
#include "server/http.h"
#include "server/server.h"

/* The body limit of requests other than an allowed PUT (enough for a short PUT to get its 405). */
#define SRV_SMALL_BODY_LIMIT 65536

#define N_STATUS 22  /* status_codes in metrics.c, plus one slot for any other code */
#define N_LATENCY 15 /* latency histogram buckets, the last one +Inf */

#define STAT_ADD(field, n) atomic_fetch_add_explicit(&(field), (n), memory_order_relaxed)
#define STAT_GET(field) atomic_load_explicit(&(field), memory_order_relaxed)

/* Counters of one loop: written by that loop only, read by /metrics on any loop. */
struct srv_stats {
	atomic_uint_fast64_t requests[M_COUNT][N_STATUS];
	atomic_uint_fast64_t bytes_sent;
	atomic_uint_fast64_t bytes_received;
	atomic_uint_fast64_t errors;
	atomic_uint_fast64_t connections;
	atomic_uint_fast64_t zstd_replies;
	atomic_uint_fast64_t head_timeouts;  /* closed at the request-head deadline */
	atomic_uint_fast64_t head_evictions; /* closed to keep slow heads under their share */
	atomic_uint_fast64_t accept_errors;
	atomic_uint_fast64_t latency[N_LATENCY]; /* per bucket, not cumulative */
	atomic_uint_fast64_t latency_sum_us;
};

/* Where a connection stands with the gate (gate.c). */
enum srv_gate {
	G_HEAD,    /* a request head is being received: not handed to evhttp yet */
	G_PASS,    /* the head was accepted; evhttp reads the body and the loop answers */
	G_REFUSED, /* answered by the gate; what the client still sends is discarded */
};

struct srv_thread;

struct srv_conn {
	struct evhttp_connection *evcon;
	struct bufferevent *bev;
	struct srv_thread *t;
	bool busy;                   /* a request of this connection is being answered */
	struct cfs_serve_miss *miss; /* handed to the miss handler, not answered yet */
	struct srv_put *put;         /* a verified upload waiting for the group commit */
	uint64_t head_done_ns;       /* when the current request's head was accepted */
	/* The gate's part. */
	struct {
		enum srv_gate state;
		struct evbuffer_cb_entry *cbent; /* on the input buffer */
		size_t scanned;                  /* head bytes at the front of the input scanned */
		size_t line;                     /* bytes since the last LF */
		bool line_cr;                    /* ... and they are exactly one CR */
		bool any_lf;
		bool held_back;    /* read watermarks keep evhttp from a partial head */
		bool in_cb;        /* our own changes to the input buffer are not news */
		bool waiting;      /* in the thread's list of incomplete heads */
		uint64_t since_ms; /* when it entered that list */
		TAILQ_ENTRY(srv_conn) link;
		size_t discarded;      /* bytes dropped after a refusal */
		struct evbuffer *held; /* a pipelined next request, set aside while a reply ends */
		struct event *kick_ev;
	} g;
};

TAILQ_HEAD(srv_conn_list, srv_conn);

/* A verified upload: its answer waits for the thread's next group commit (one syncfs for all
 * uploads finished in the same loop iteration, then their renames). */
struct srv_put {
	struct srv_put *next;
	struct srv_conn *conn;
	struct evhttp_request *req; /* NULL once the client has gone */
	struct cfs_store_writer *w;
	char hex[CFS_DIGEST_HEX_SIZE + 1];
};

struct srv_thread {
	struct cfs_serve *srv;
	unsigned idx;
	pthread_t tid;
	bool started;
	struct event_base *base;
	struct evhttp *http;
	int *lfds;
	struct evhttp_bound_socket **bound;
	int stop_fd;
	struct event *stop_ev, *deadline_ev, *setup_ev, *commit_ev;
	struct srv_put *puts, **puts_tail; /* waiting for commit_ev, in order of arrival */
	/* Connections whose bufferevent exists but whose evhttp_connection is not known yet. */
	struct srv_conn **pending;
	size_t n_pending, cap_pending;
	struct cfs_u64map *conns; /* by the address of their evhttp_connection */
	unsigned busy;
	bool draining;
	struct cfs_zcache_ctx *zctx;
	struct cfs_ocache *oc;
	time_t date_time;
	char date[40]; /* the Date header, made once a second */
	/* Incomplete request heads, oldest first: they all have the same deadline, so the first
	 * one's is the next to come and one timer serves them all. */
	struct srv_conn_list waiting;
	unsigned n_waiting;
	struct event *waiting_ev;
	/* Accepting paused after EMFILE/ENFILE. */
	struct event *accept_ev;
	bool accept_paused;
	time_t accept_logged;
	uint64_t accept_suppressed;
	struct srv_stats stats;
};

struct cfs_serve {
	struct cfs_serve_config cfg;
	struct cfs_store *store;
	int store_fd;
	struct cfs_zcache *zc;
	SSL_CTX *ssl;
	size_t token_len;
	unsigned nthreads;
	struct srv_thread *threads;
	atomic_uint open_conns;
	atomic_uint waiting_conns; /* of them, incomplete heads (in the loops' waiting lists) */
};

struct cfs_serve_miss {
	struct srv_thread *t;
	struct srv_conn *conn;
	struct evhttp_request *req; /* NULL once the client has gone */
	uint8_t digest[CFS_DIGEST_SIZE];
	bool head;
};

/* The calls between the files, from the top down: each file calls only those declared below it. */

/* serve.c: lifecycle. request.c: the request handler, evhttp's general callback. */
void cfs_srv_handle(struct evhttp_request *req, void *arg);

/* object.c: GET and HEAD of an object; @may_miss hands an absent one to the miss handler. */
void cfs_srv_object_get(struct srv_thread *t, struct evhttp_request *req,
                        const uint8_t digest[CFS_DIGEST_SIZE], bool head, bool may_miss);

/* upload.c: a PUT; its answer waits for the loop's next group commit (commit_ev). */
void cfs_srv_object_put(struct srv_thread *t, struct evhttp_request *req,
                        const uint8_t digest[CFS_DIGEST_SIZE]);
void cfs_srv_commit_cb(evutil_socket_t fd, short what, void *arg);
/* Drops the uploads a stopped loop never committed (their temp files go). */
void cfs_srv_puts_free(struct srv_thread *t);

/* listen.c: binds listen address @li on every loop's socket. Returns 0 or -errno (logged). */
int cfs_srv_bind_all(struct cfs_serve *srv, size_t li);
/* Its pure parts (tests/unit/test-listen.c). Splits "ADDR:PORT", "[V6]:PORT", ":PORT" or
 * "PORT" (host "": any address). Returns 0 or -EINVAL (malformed, or a part too long). */
int cfs_srv_parse_listen(const char *s, char *host, size_t hostlen, char *port, size_t portlen);
/* @sa's address as /proc/net/tcp{,6} prints it (hex, 32-bit words in host order) and its port. */
void cfs_srv_proc_addr_format(const struct sockaddr *sa, char *out, size_t outlen, unsigned *port);
/* Whether a row of /proc/net/tcp{,6} is a LISTEN socket on @port whose address overlaps @want
 * (the same, or either a wildcard); then its inode in *@inode_ret. */
bool cfs_srv_proc_listener(const char *line, const char *want, unsigned port,
                           unsigned long *inode_ret);

/* conn.c: connection tracking. */
struct srv_conn *cfs_srv_conn_find(struct srv_thread *t, const struct evhttp_connection *evcon);
/* A draining loop exits once no request is being answered. */
void cfs_srv_check_drained(struct srv_thread *t);
/* evhttp's bufferevent callback (a new connection) and the set-up right after it. */
struct bufferevent *cfs_srv_bevcb(struct event_base *base, void *arg);
void cfs_srv_setup_cb(evutil_socket_t fd, short what, void *arg);
/* A request's reply is sent: its latency counted, the next head starts. */
void cfs_srv_req_done(struct evhttp_request *req, void *arg);

/* gate.c: every request head passes it before evhttp sees it (header deadline, the slow
 * heads' share of the connections, and the checks a request body must not be read before). */
int cfs_gate_attach(struct srv_conn *c);
/* Closes this loop's oldest incomplete heads (never @keep) while the server is over
 * --max-connections; for a new connection rather than a request, only heads that have waited
 * a moment. Returns whether it is within the limit now. */
bool cfs_gate_make_room(struct srv_thread *t, const struct srv_conn *keep, bool for_request);
/* The connection's evhttp_connection is known: it joins the incomplete heads. */
void cfs_gate_accepted(struct srv_conn *c);
/* A reply has been sent: the next request head starts. */
void cfs_gate_next(struct srv_conn *c);
void cfs_gate_closed(struct srv_conn *c);
void cfs_gate_waiting_cb(evutil_socket_t fd, short what, void *arg);

/* reply.c: answers, each counted and logged. */
const char *cfs_srv_date(struct srv_thread *t);
/* Sends what the output buffer holds; @body is the byte count for metrics and the log. */
void cfs_srv_send(struct srv_thread *t, struct evhttp_request *req, int code, const char *reason,
                  uint64_t body);
/* A short text body "CODE REASON" (none for HEAD), not to be cached. */
void cfs_srv_error(struct srv_thread *t, struct evhttp_request *req, int code, const char *reason);
void cfs_srv_empty(struct srv_thread *t, struct evhttp_request *req, int code, const char *reason);

/* metrics.c: counts an answer in the loop's metrics and writes its access-log line. */
void cfs_srv_count(struct srv_thread *t, enum cfs_http_method m, const char *method,
                   const char *uri, const char *peer, int code, uint64_t body);
void cfs_srv_count_latency(struct srv_thread *t, uint64_t us);
/* Writes every counter of the server to @out in the Prometheus text format. */
void cfs_srv_metrics_write(struct cfs_serve *srv, struct evbuffer *out);

#endif
