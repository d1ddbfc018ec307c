/* SPDX-License-Identifier: MIT */
/* cfscache: cfs-serve's connections: set-up after accept, lookup, close, end of a request. */
#include "config.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/socket.h>

#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <openssl/ssl.h>

#include "common/u64map.h"
#include "common/util.h"
#include "server/server-internal.h"

/* Connections are kept by the address of their evhttp_connection. */
static uint64_t conn_key(const struct evhttp_connection *evcon)
{
	return (uint64_t)(uintptr_t)evcon;
}

struct srv_conn *cfs_srv_conn_find(struct srv_thread *t, const struct evhttp_connection *evcon)
{
	return cfs_u64map_get(t->conns, conn_key(evcon));
}

void cfs_srv_check_drained(struct srv_thread *t)
{
	if (t->draining && t->busy == 0)
		event_base_loopexit(t->base, NULL);
}

static void srv_conn_closed(struct evhttp_connection *evcon, void *arg)
{
	struct srv_conn *c = arg;
	struct srv_thread *t = c->t;

	cfs_u64map_remove(t->conns, conn_key(evcon));
	if (c->busy)
		t->busy--;
	if (c->miss) {
		/* evhttp frees the request with the connection: the handler's answer is dropped. */
		c->miss->req = NULL;
		c->miss->conn = NULL;
	}
	if (c->put) {
		c->put->req = NULL; /* the upload is still committed */
		c->put->conn = NULL;
	}
	cfs_gate_closed(c);
	atomic_fetch_sub(&t->srv->open_conns, 1);
	free(c);
	cfs_srv_check_drained(t);
}

/* Runs right after the accept callback, before the new socket can be read: evhttp has made
 * the evhttp_connection by now, and it is the cbarg of the bufferevent we handed it. */
void cfs_srv_setup_cb(evutil_socket_t fd, short what, void *arg)
{
	struct srv_thread *t = arg;
	int one = 1;

	for (size_t i = 0; i < t->n_pending; i++) {
		struct srv_conn *c = t->pending[i];
		void *cbarg = NULL;

		bufferevent_getcb(c->bev, NULL, NULL, NULL, &cbarg);
		c->evcon = cbarg;
		if (!c->evcon) {
			cfs_gate_closed(c);
			free(c);
			atomic_fetch_sub(&t->srv->open_conns, 1);
			continue;
		}
		/* Headers and a sendfile body go out as two writes; Nagle would hold the tail
		 * of the body back until the header segment is acknowledged. */
		setsockopt(bufferevent_getfd(c->bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (cfs_u64map_put(t->conns, conn_key(c->evcon), c, NULL) < 0) {
			/* Out of memory: this connection is closed rather than left untracked. */
			evhttp_connection_free(c->evcon);
			cfs_gate_closed(c);
			free(c);
			atomic_fetch_sub(&t->srv->open_conns, 1);
			continue;
		}
		evhttp_connection_set_closecb(c->evcon, srv_conn_closed, c);
		cfs_gate_accepted(c); /* may close older connections, or this one */
	}
	t->n_pending = 0;
}

struct bufferevent *cfs_srv_bevcb(struct event_base *base, void *arg)
{
	struct srv_thread *t = arg;
	struct bufferevent *bev;
	struct srv_conn *c;

	if (t->n_pending == t->cap_pending) {
		size_t cap = t->cap_pending ? t->cap_pending * 2 : 64;
		struct srv_conn **p = realloc(t->pending, cap * sizeof(*p));

		if (!p)
			return NULL;
		t->pending = p;
		t->cap_pending = cap;
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	if (t->srv->ssl) {
		SSL *ssl = SSL_new(t->srv->ssl);

		if (!ssl) {
			free(c);
			return NULL;
		}
		bev = bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING,
		                                     BEV_OPT_CLOSE_ON_FREE);
		if (bev)
			bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	} else {
		bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
	}
	c->t = t;
	c->bev = bev;
	if (!bev || cfs_gate_attach(c) < 0) {
		if (bev)
			bufferevent_free(bev);
		free(c);
		return NULL;
	}
	/* libevent writes at most 16 KiB per call by default: one sendfile per object instead. */
	bufferevent_set_max_single_write(bev, 4u << 20);
	t->pending[t->n_pending++] = c;
	event_active(t->setup_ev, EV_READ, 1);
	atomic_fetch_add(&t->srv->open_conns, 1);
	STAT_ADD(t->stats.connections, 1);
	/* At once, not in the set-up: a burst of accepts must not push the other loops' requests
	 * over the limit meanwhile. */
	cfs_gate_make_room(t, NULL, false);
	return bev;
}

void cfs_srv_req_done(struct evhttp_request *req, void *arg)
{
	struct srv_conn *c = arg;
	struct srv_thread *t = c->t;

	(void)req;
	if (c->head_done_ns) {
		cfs_srv_count_latency(t, (cfs_now_ns() - c->head_done_ns) / 1000);
		c->head_done_ns = 0;
	}
	cfs_gate_next(c);
	if (c->busy) {
		c->busy = false;
		t->busy--;
		cfs_srv_check_drained(t);
	}
}
