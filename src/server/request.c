/* SPDX-License-Identifier: MIT */
/* cfscache: cfs-serve's request handler: connection limit, route, token, then the answer. */
#include "config.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/http.h>

#include "server/http.h"
#include "server/server-internal.h"

static bool srv_authorized(struct cfs_serve *srv, struct evhttp_request *req)
{
	const char *h = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");

	return cfs_http_token_ok(srv->cfg.token, srv->token_len, h, h ? strlen(h) : 0);
}

static void srv_metrics(struct srv_thread *t, struct evhttp_request *req)
{
	struct evbuffer *out = evhttp_request_get_output_buffer(req);
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	char len[24];

	cfs_srv_metrics_write(t->srv, out);
	evhttp_add_header(h, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
	evhttp_add_header(h, "Cache-Control", "no-store");
	snprintf(len, sizeof(len), "%zu", evbuffer_get_length(out));
	evhttp_add_header(h, "Content-Length", len);
	if (evhttp_request_get_command(req) == EVHTTP_REQ_HEAD)
		evbuffer_drain(out, evbuffer_get_length(out));
	cfs_srv_send(t, req, 200, "OK", evbuffer_get_length(out));
}

static void srv_method_not_allowed(struct srv_thread *t, struct evhttp_request *req,
                                   const char *allow)
{
	evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", allow);
	cfs_srv_error(t, req, 405, "Method Not Allowed");
}

void cfs_srv_handle(struct evhttp_request *req, void *arg)
{
	struct srv_thread *t = arg;
	struct cfs_serve *srv = t->srv;
	struct srv_conn *c = cfs_srv_conn_find(t, evhttp_request_get_connection(req));
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
	uint8_t digest[CFS_DIGEST_SIZE];
	enum cfs_http_route route;
	const char *uri;

	if (c) {
		if (!c->busy) {
			c->busy = true;
			t->busy++;
		}
		evhttp_request_set_on_complete_cb(req, cfs_srv_req_done, c);
	}
	/* Over the limit: this loop's oldest incomplete head makes room; if the excess is only
	 * incomplete heads of the other loops (their own accepts and deadlines close them), the
	 * request is served anyway. */
	if (srv->cfg.max_connections && !cfs_gate_make_room(t, c, true) &&
	    atomic_load(&srv->open_conns) - atomic_load(&srv->waiting_conns) >
	        srv->cfg.max_connections) {
		struct evkeyvalq *h = evhttp_request_get_output_headers(req);

		evhttp_add_header(h, "Retry-After", "1");
		evhttp_add_header(h, "Connection", "close");
		cfs_srv_error(t, req, 503, "Service Unavailable");
		return;
	}
	uri = evhttp_request_get_uri(req);
	route = cfs_http_route(uri, strlen(uri), srv->cfg.max_uri, digest);
	if (route == R_HEALTH) {
		if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD)
			return srv_method_not_allowed(t, req, "GET, HEAD");
		return cfs_srv_error(t, req, 200, t->draining ? "Draining" : "OK");
	}
	if (!srv_authorized(srv, req)) {
		evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate",
		                  "Bearer realm=\"cfs-serve\"");
		return cfs_srv_error(t, req, 401, "Unauthorized");
	}
	switch (route) {
	case R_TOO_LONG:
		return cfs_srv_error(t, req, 414, "URI Too Long");
	case R_BAD:
		return cfs_srv_error(t, req, 400, "Bad Request");
	case R_NOT_FOUND:
		return cfs_srv_error(t, req, 404, "Not Found");
	case R_METRICS:
		if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD)
			return srv_method_not_allowed(t, req, "GET, HEAD");
		return srv_metrics(t, req);
	case R_OBJECT:
		if (cmd == EVHTTP_REQ_GET || cmd == EVHTTP_REQ_HEAD)
			return cfs_srv_object_get(t, req, digest, cmd == EVHTTP_REQ_HEAD, true);
		if (cmd == EVHTTP_REQ_PUT && srv->cfg.allow_upload)
			return cfs_srv_object_put(t, req, digest);
		return srv_method_not_allowed(
		    t, req, srv->cfg.allow_upload ? "GET, HEAD, PUT" : "GET, HEAD");
	default:
		return cfs_srv_error(t, req, 500, "Internal Server Error");
	}
}
