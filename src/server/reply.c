/* SPDX-License-Identifier: MIT */
/* cfscache: cfs-serve's replies: the Date header, sending and counting an answer, error bodies. */
#include "config.h"

#include <stdio.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_struct.h>
#include <event2/event.h>
#include <event2/http.h>

#include "server/server-internal.h"

static enum cfs_http_method method_of(struct evhttp_request *req)
{
	switch (evhttp_request_get_command(req)) {
	case EVHTTP_REQ_GET:
		return M_GET;
	case EVHTTP_REQ_HEAD:
		return M_HEAD;
	case EVHTTP_REQ_PUT:
		return M_PUT;
	default:
		return M_OTHER;
	}
}

static const char *method_str(struct evhttp_request *req)
{
	switch (evhttp_request_get_command(req)) {
	case EVHTTP_REQ_GET:
		return "GET";
	case EVHTTP_REQ_HEAD:
		return "HEAD";
	case EVHTTP_REQ_PUT:
		return "PUT";
	case EVHTTP_REQ_POST:
		return "POST";
	case EVHTTP_REQ_DELETE:
		return "DELETE";
	case EVHTTP_REQ_OPTIONS:
		return "OPTIONS";
	case EVHTTP_REQ_TRACE:
		return "TRACE";
	case EVHTTP_REQ_CONNECT:
		return "CONNECT";
	case EVHTTP_REQ_PATCH:
		return "PATCH";
	default:
		return "?";
	}
}

static void srv_count(struct srv_thread *t, struct evhttp_request *req, int code, uint64_t body)
{
	struct evhttp_connection *evcon = evhttp_request_get_connection(req);
	char *peer = NULL;
	ev_uint16_t port = 0;

	if (evcon && t->srv->cfg.access_log)
		evhttp_connection_get_peer(evcon, &peer, &port);
	cfs_srv_count(t, method_of(req), method_str(req), evhttp_request_get_uri(req), peer, code,
	              body);
}

const char *cfs_srv_date(struct srv_thread *t)
{
	time_t now = time(NULL);

	if (now != t->date_time) {
		struct tm tm;

		gmtime_r(&now, &tm);
		strftime(t->date, sizeof(t->date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
		t->date_time = now;
	}
	return t->date;
}

/* Sends what the output buffer holds; @body is the byte count for metrics and the log. */
void cfs_srv_send(struct srv_thread *t, struct evhttp_request *req, int code, const char *reason,
                  uint64_t body)
{
	struct evhttp_connection *evcon = evhttp_request_get_connection(req);
	struct bufferevent *bev = evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;

	evhttp_add_header(evhttp_request_get_output_headers(req), "Date", cfs_srv_date(t));
	if (t->draining)
		evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
	srv_count(t, req, code, body);
	evhttp_send_reply(req, code, reason, NULL);
	/* Write now rather than after the next epoll_wait: the reply usually goes out at once,
	 * evhttp turns back to reading in this same loop iteration, and the changelist then
	 * has no epoll_ctl left to make. (Plain sockets only; TLS keeps its own pace.) */
	if (bev && !t->srv->ssl)
		event_active(&bev->ev_write, EV_WRITE, 1);
}

void cfs_srv_error(struct srv_thread *t, struct evhttp_request *req, int code, const char *reason)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	struct evbuffer *out = evhttp_request_get_output_buffer(req);
	char len[24];
	int n;

	evhttp_add_header(h, "Content-Type", "text/plain; charset=utf-8");
	evhttp_add_header(h, "Cache-Control", "no-store");
	n = evbuffer_add_printf(out, "%d %s\n", code, reason);
	snprintf(len, sizeof(len), "%d", n < 0 ? 0 : n);
	evhttp_add_header(h, "Content-Length", len);
	if (evhttp_request_get_command(req) == EVHTTP_REQ_HEAD)
		evbuffer_drain(out, evbuffer_get_length(out));
	cfs_srv_send(t, req, code, reason, n < 0 ? 0 : (uint64_t)n);
}

void cfs_srv_empty(struct srv_thread *t, struct evhttp_request *req, int code, const char *reason)
{
	if (code != 204)
		evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Length", "0");
	cfs_srv_send(t, req, code, reason, 0);
}
