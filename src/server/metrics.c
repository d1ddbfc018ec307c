/* SPDX-License-Identifier: MIT */
/* cfscache: cfs-serve's counters: each answer counted (and logged), and /metrics. */
#include "config.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>

#include "common/util.h"
#include "server/http.h"
#include "server/server-internal.h"

static const char *const method_names[M_COUNT] = {"GET", "HEAD", "PUT", "other"};
static const int status_codes[] = {200, 201, 204, 206, 304, 400, 401, 403, 404, 405, 413,
                                   414, 416, 417, 422, 431, 500, 501, 502, 503, 507};
_Static_assert(CFS_ARRAY_SIZE(status_codes) + 1 == N_STATUS, "N_STATUS");

/* Upper bounds of the latency histogram's buckets, in microseconds (the last is +Inf). */
static const uint64_t latency_us[N_LATENCY - 1] = {250,    500,     1000,    2500,    5000,
                                                   10000,  25000,   50000,   100000,  250000,
                                                   500000, 1000000, 2500000, 10000000};

static void srv_access_log(struct srv_thread *t, const char *peer, const char *method,
                           const char *u, int code, uint64_t body)
{
	char line[1024], uri[256], tbuf[64];
	struct tm tm;
	time_t now = time(NULL);

	/* The URI is hostile input: escape anything that is not plain printable ASCII. */
	cfs_http_escape(u, uri, sizeof(uri));
	gmtime_r(&now, &tm);
	strftime(tbuf, sizeof(tbuf), "%d/%b/%Y:%H:%M:%S +0000", &tm);
	snprintf(line, sizeof(line), "%s - - [%s] \"%s %s\" %d %llu\n", peer ? peer : "-", tbuf,
	         method, uri, code, (unsigned long long)body);
	fputs(line, t->srv->cfg.access_log);
}

void cfs_srv_count(struct srv_thread *t, enum cfs_http_method m, const char *method,
                   const char *uri, const char *peer, int code, uint64_t body)
{
	size_t s = N_STATUS - 1;

	for (size_t i = 0; i < CFS_ARRAY_SIZE(status_codes); i++) {
		if (status_codes[i] == code) {
			s = i;
			break;
		}
	}
	STAT_ADD(t->stats.requests[m][s], 1);
	STAT_ADD(t->stats.bytes_sent, body);
	if (code >= 500)
		STAT_ADD(t->stats.errors, 1);
	if (t->srv->cfg.access_log)
		srv_access_log(t, peer, method, uri, code, body);
}

void cfs_srv_count_latency(struct srv_thread *t, uint64_t us)
{
	size_t b = 0;

	while (b < N_LATENCY - 1 && us > latency_us[b])
		b++;
	STAT_ADD(t->stats.latency[b], 1);
	STAT_ADD(t->stats.latency_sum_us, us);
}

#define SUM_STAT(field)                                                                            \
	({                                                                                         \
		uint64_t sum_ = 0;                                                                 \
		for (unsigned i_ = 0; i_ < srv->nthreads; i_++)                                    \
			sum_ += STAT_GET(srv->threads[i_].stats.field);                            \
		sum_;                                                                              \
	})

/* The counters of issue 17: what the gate closed, what was received, latency, build. */
static void srv_metrics_more(struct cfs_serve *srv, struct evbuffer *out)
{
	uint64_t cum = 0;

	evbuffer_add_printf(
	    out,
	    "# HELP cfs_serve_received_bytes_total Bytes received from clients (heads and "
	    "bodies).\n"
	    "# TYPE cfs_serve_received_bytes_total counter\n"
	    "cfs_serve_received_bytes_total %llu\n"
	    "# HELP cfs_serve_head_timeouts_total Connections closed at the request-head "
	    "deadline.\n"
	    "# TYPE cfs_serve_head_timeouts_total counter\n"
	    "cfs_serve_head_timeouts_total %llu\n"
	    "# HELP cfs_serve_head_evictions_total Incomplete heads closed to make room for a new "
	    "connection.\n"
	    "# TYPE cfs_serve_head_evictions_total counter\n"
	    "cfs_serve_head_evictions_total %llu\n"
	    "# HELP cfs_serve_accept_errors_total Failed accept() calls (out of descriptors...).\n"
	    "# TYPE cfs_serve_accept_errors_total counter\n"
	    "cfs_serve_accept_errors_total %llu\n"
	    "# HELP cfs_serve_request_duration_seconds From a request's accepted head to its last "
	    "byte handed to the kernel.\n"
	    "# TYPE cfs_serve_request_duration_seconds histogram\n",
	    (unsigned long long)SUM_STAT(bytes_received),
	    (unsigned long long)SUM_STAT(head_timeouts),
	    (unsigned long long)SUM_STAT(head_evictions),
	    (unsigned long long)SUM_STAT(accept_errors));
	for (size_t b = 0; b < N_LATENCY; b++) {
		cum += SUM_STAT(latency[b]);
		if (b < N_LATENCY - 1)
			evbuffer_add_printf(
			    out, "cfs_serve_request_duration_seconds_bucket{le=\"%g\"} %llu\n",
			    (double)latency_us[b] / 1e6, (unsigned long long)cum);
		else
			evbuffer_add_printf(
			    out, "cfs_serve_request_duration_seconds_bucket{le=\"+Inf\"} %llu\n",
			    (unsigned long long)cum);
	}
	evbuffer_add_printf(out,
	                    "cfs_serve_request_duration_seconds_sum %.6f\n"
	                    "cfs_serve_request_duration_seconds_count %llu\n"
	                    "# HELP cfs_serve_build_info The running cfs-serve.\n"
	                    "# TYPE cfs_serve_build_info gauge\n"
	                    "cfs_serve_build_info{version=\"%s\",tls=\"%s\",zstd=\"%s\","
	                    "upload=\"%s\",pull_through=\"%s\"} 1\n",
	                    (double)SUM_STAT(latency_sum_us) / 1e6, (unsigned long long)cum,
	                    PACKAGE_VERSION, srv->ssl ? "yes" : "no", srv->zc ? "yes" : "no",
	                    srv->cfg.allow_upload ? "yes" : "no", srv->cfg.miss_fn ? "yes" : "no");
	if (srv->cfg.metrics_fn)
		srv->cfg.metrics_fn(out, srv->cfg.miss_userdata);
}

/* Writes every counter of the server to @out in the Prometheus text format. */
void cfs_srv_metrics_write(struct cfs_serve *srv, struct evbuffer *out)
{
	uint64_t bytes = 0, errors = 0, conns = 0, zstd = 0;

	evbuffer_add_printf(out, "# HELP cfs_serve_requests_total HTTP requests answered.\n"
	                         "# TYPE cfs_serve_requests_total counter\n");
	for (int m = 0; m < M_COUNT; m++) {
		for (size_t s = 0; s < N_STATUS; s++) {
			uint64_t v = 0;

			for (unsigned i = 0; i < srv->nthreads; i++)
				v += STAT_GET(srv->threads[i].stats.requests[m][s]);
			if (!v)
				continue;
			if (s < CFS_ARRAY_SIZE(status_codes))
				evbuffer_add_printf(
				    out,
				    "cfs_serve_requests_total{method=\"%s\",code=\"%d\"} %llu\n",
				    method_names[m], status_codes[s], (unsigned long long)v);
			else
				evbuffer_add_printf(
				    out,
				    "cfs_serve_requests_total{method=\"%s\",code=\"other\"} %llu\n",
				    method_names[m], (unsigned long long)v);
		}
	}
	for (unsigned i = 0; i < srv->nthreads; i++) {
		bytes += STAT_GET(srv->threads[i].stats.bytes_sent);
		errors += STAT_GET(srv->threads[i].stats.errors);
		conns += STAT_GET(srv->threads[i].stats.connections);
		zstd += STAT_GET(srv->threads[i].stats.zstd_replies);
	}
	evbuffer_add_printf(out,
	                    "# HELP cfs_serve_sent_bytes_total Body bytes sent.\n"
	                    "# TYPE cfs_serve_sent_bytes_total counter\n"
	                    "cfs_serve_sent_bytes_total %llu\n"
	                    "# HELP cfs_serve_open_connections Client connections open now.\n"
	                    "# TYPE cfs_serve_open_connections gauge\n"
	                    "cfs_serve_open_connections %u\n"
	                    "# HELP cfs_serve_connections_total Client connections accepted.\n"
	                    "# TYPE cfs_serve_connections_total counter\n"
	                    "cfs_serve_connections_total %llu\n"
	                    "# HELP cfs_serve_errors_total Requests answered with a server error.\n"
	                    "# TYPE cfs_serve_errors_total counter\n"
	                    "cfs_serve_errors_total %llu\n"
	                    "# HELP cfs_serve_zstd_replies_total Replies sent zstd-encoded.\n"
	                    "# TYPE cfs_serve_zstd_replies_total counter\n"
	                    "cfs_serve_zstd_replies_total %llu\n"
	                    "# HELP cfs_serve_threads Event-loop threads.\n"
	                    "# TYPE cfs_serve_threads gauge\n"
	                    "cfs_serve_threads %u\n",
	                    (unsigned long long)bytes, atomic_load(&srv->open_conns),
	                    (unsigned long long)conns, (unsigned long long)errors,
	                    (unsigned long long)zstd, srv->nthreads);
	srv_metrics_more(srv, out);
	evbuffer_add_printf(
	    out, "# HELP cfs_serve_loop_requests_total Requests answered by each event loop.\n"
	         "# TYPE cfs_serve_loop_requests_total counter\n");
	for (unsigned i = 0; i < srv->nthreads; i++) {
		uint64_t v = 0;

		for (int m = 0; m < M_COUNT; m++)
			for (size_t st = 0; st < N_STATUS; st++)
				v += STAT_GET(srv->threads[i].stats.requests[m][st]);
		evbuffer_add_printf(out, "cfs_serve_loop_requests_total{loop=\"%u\"} %llu\n", i,
		                    (unsigned long long)v);
	}
}
