/* SPDX-License-Identifier: MIT */
/* cfscache: cfs-serve's lifecycle: store, TLS, one event loop per thread; start, stop, free. */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "common/log.h"
#include "common/store.h"
#include "common/u64map.h"
#include "server/ocache.h"
#include "server/server-internal.h"
#include "server/server.h"
#include "server/zcache.h"

#define SRV_ALL_METHODS                                                                            \
	(EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD | EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | \
	 EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE | EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH)

static void srv_stop_cb(evutil_socket_t fd, short what, void *arg)
{
	struct srv_thread *t = arg;
	struct timeval tv;
	uint64_t v;

	if (read(fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		cfs_debug("stop eventfd: %s", strerror(errno));
	if (t->draining)
		return;
	t->draining = true;
	for (size_t i = 0; i < t->srv->cfg.n_listen; i++) {
		if (t->bound[i]) {
			evhttp_del_accept_socket(t->http, t->bound[i]);
			t->bound[i] = NULL;
			t->lfds[i] = -1;
		}
	}
	tv.tv_sec = (time_t)(t->srv->cfg.shutdown_timeout_ms / 1000);
	tv.tv_usec = (suseconds_t)(t->srv->cfg.shutdown_timeout_ms % 1000) * 1000;
	event_add(t->deadline_ev, &tv);
	cfs_srv_check_drained(t);
}

static void srv_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct srv_thread *t = arg;

	cfs_warn("thread %u: %u request(s) still in flight at the shutdown deadline", t->idx,
	         t->busy);
	event_base_loopexit(t->base, NULL);
}

/* The loop running on this thread: libevent hands the listener's error callback evhttp's
 * pointer, not ours. */
static __thread struct srv_thread *srv_current;

#define SRV_ACCEPT_PAUSE_MS 250
#define SRV_ACCEPT_LOG_SECONDS 10

static void srv_accept_pause(struct srv_thread *t, bool pause)
{
	for (size_t i = 0; i < t->srv->cfg.n_listen; i++) {
		struct evconnlistener *l =
		    t->bound[i] ? evhttp_bound_socket_get_listener(t->bound[i]) : NULL;

		if (l && pause)
			evconnlistener_disable(l);
		else if (l)
			evconnlistener_enable(l);
	}
	t->accept_paused = pause;
}

static void srv_accept_resume_cb(evutil_socket_t fd, short what, void *arg)
{
	struct srv_thread *t = arg;

	(void)fd;
	(void)what;
	if (!t->draining)
		srv_accept_pause(t, false);
}

/* accept() failed for want of descriptors or memory: the pending connection stays in the
 * backlog and the listener would spin on it. Pause accepting for a moment instead, keep
 * serving the connections we have, and say so once per interval. */
static void srv_accept_error_cb(struct evconnlistener *l, void *arg)
{
	struct srv_thread *t = srv_current;
	int e = EVUTIL_SOCKET_ERROR();
	time_t now = time(NULL);
	struct timeval tv = {0, SRV_ACCEPT_PAUSE_MS * 1000};

	(void)l;
	(void)arg;
	if (!t)
		return;
	STAT_ADD(t->stats.accept_errors, 1);
	if (now - t->accept_logged >= SRV_ACCEPT_LOG_SECONDS) {
		if (t->accept_suppressed)
			cfs_warn("accept: %s; pausing new connections for %d ms (%llu more such "
			         "errors on loop %u since the last message)",
			         strerror(e), SRV_ACCEPT_PAUSE_MS,
			         (unsigned long long)t->accept_suppressed, t->idx);
		else
			cfs_warn("accept: %s; pausing new connections for %d ms", strerror(e),
			         SRV_ACCEPT_PAUSE_MS);
		t->accept_logged = now;
		t->accept_suppressed = 0;
	} else {
		t->accept_suppressed++;
	}
	if (!t->accept_paused) {
		srv_accept_pause(t, true);
		evtimer_add(t->accept_ev, &tv);
	}
}

static void *srv_thread_main(void *arg)
{
	struct srv_thread *t = arg;

	srv_current = t;

	event_base_dispatch(t->base);
	/* Idle keep-alive connections are closed here, with the server. */
	evhttp_free(t->http);
	t->http = NULL;
	return NULL;
}

static int srv_tls_init(struct cfs_serve *srv)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

	if (!ctx)
		return -ENOMEM;
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION);
	if (SSL_CTX_use_certificate_chain_file(ctx, srv->cfg.tls_cert) != 1 ||
	    SSL_CTX_use_PrivateKey_file(ctx, srv->cfg.tls_key, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1) {
		char buf[256];

		ERR_error_string_n(ERR_get_error(), buf, sizeof(buf));
		cfs_err("TLS certificate/key: %s", buf);
		SSL_CTX_free(ctx);
		return -EINVAL;
	}
	srv->ssl = ctx;
	return 0;
}

static int srv_thread_init(struct cfs_serve *srv, struct srv_thread *t)
{
	struct timeval tv = {
	    .tv_sec = (time_t)(srv->cfg.timeout_ms / 1000),
	    .tv_usec = (suseconds_t)(srv->cfg.timeout_ms % 1000) * 1000,
	};
	int r;

	struct event_config *ecfg = event_config_new();

	if (!ecfg)
		return -ENOMEM;
	/* evhttp flips read/write interest several times per request; the changelist folds
	 * those flips into at most one epoll_ctl per loop iteration. */
	event_config_set_flag(ecfg, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
	t->base = event_base_new_with_config(ecfg);
	event_config_free(ecfg);
	if (!t->base)
		return -ENOMEM;
	t->http = evhttp_new(t->base);
	if (!t->http)
		return -ENOMEM;
	r = cfs_u64map_new(0, &t->conns);
	if (r < 0)
		return r;
	evhttp_set_allowed_methods(t->http, SRV_ALL_METHODS);
	evhttp_set_default_content_type(t->http, NULL);
	evhttp_set_max_headers_size(t->http, (ev_ssize_t)srv->cfg.max_header_size);
	/* Without uploads a small limit still lets a short PUT reach us for its 405. */
	evhttp_set_max_body_size(
	    t->http,
	    (ev_ssize_t)(srv->cfg.allow_upload ? srv->cfg.max_upload : SRV_SMALL_BODY_LIMIT));
	evhttp_set_timeout_tv(t->http, &tv);
	evhttp_set_flags(t->http, EVHTTP_SERVER_LINGERING_CLOSE);
	evhttp_set_gencb(t->http, cfs_srv_handle, t);
	evhttp_set_bevcb(t->http, cfs_srv_bevcb, t);
	t->stop_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (t->stop_fd < 0)
		return -errno;
	t->stop_ev = event_new(t->base, t->stop_fd, EV_READ | EV_PERSIST, srv_stop_cb, t);
	t->deadline_ev = evtimer_new(t->base, srv_deadline_cb, t);
	t->setup_ev = event_new(t->base, -1, 0, cfs_srv_setup_cb, t);
	t->commit_ev = evtimer_new(t->base, cfs_srv_commit_cb, t);
	TAILQ_INIT(&t->waiting);
	t->waiting_ev = evtimer_new(t->base, cfs_gate_waiting_cb, t);
	if (!t->stop_ev || !t->deadline_ev || !t->setup_ev || !t->commit_ev || !t->waiting_ev ||
	    event_add(t->stop_ev, NULL) < 0)
		return -ENOMEM;
	if (srv->cfg.cache_size) {
		r = cfs_ocache_new(srv->cfg.cache_size / srv->nthreads, 512, &t->oc);
		if (r < 0)
			return r;
	}
	if (srv->zc) {
		r = cfs_zcache_ctx_new(&t->zctx);
		if (r < 0)
			return r;
	}
	t->accept_ev = evtimer_new(t->base, srv_accept_resume_cb, t);
	if (!t->accept_ev)
		return -ENOMEM;
	for (size_t i = 0; i < srv->cfg.n_listen; i++) {
		t->bound[i] = evhttp_accept_socket_with_handle(t->http, t->lfds[i]);
		if (!t->bound[i])
			return -ENOMEM;
		evconnlistener_set_error_cb(evhttp_bound_socket_get_listener(t->bound[i]),
		                            srv_accept_error_cb);
	}
	return 0;
}

int cfs_serve_new(const struct cfs_serve_config *cfg, struct cfs_serve **srv_ret)
{
	struct cfs_serve *srv;
	long ncpu;
	int r;

	srv = calloc(1, sizeof(*srv));
	if (!srv)
		return -ENOMEM;
	srv->cfg = *cfg;
	srv->store_fd = -1;
	srv->token_len = cfg->token ? strlen(cfg->token) : 0;
	ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	srv->nthreads = cfg->threads ? cfg->threads : (unsigned)(ncpu > 0 ? ncpu : 1);
	srv->store = cfg->store;
	srv->store_fd = cfs_store_dirfd(srv->store);
	if (cfg->zstd) {
		r = cfs_zcache_new(srv->store_fd, cfg->zstd_level, cfg->zstd_max_size, &srv->zc);
		if (r < 0) {
			cfs_warn("zstd side files disabled: %s/%s: %s", cfg->store_path,
			         CFS_ZCACHE_DIR, strerror(-r));
			srv->zc = NULL;
		}
	}
	if (cfg->tls_cert) {
		r = srv_tls_init(srv);
		if (r < 0)
			goto fail;
	}
	srv->threads = calloc(srv->nthreads, sizeof(*srv->threads));
	if (!srv->threads) {
		r = -ENOMEM;
		goto fail;
	}
	for (unsigned i = 0; i < srv->nthreads; i++) {
		struct srv_thread *t = &srv->threads[i];

		t->srv = srv;
		t->idx = i;
		t->stop_fd = -1;
		t->lfds = malloc(cfg->n_listen * sizeof(*t->lfds));
		t->bound = calloc(cfg->n_listen, sizeof(*t->bound));
		if (!t->lfds || !t->bound) {
			r = -ENOMEM;
			goto fail;
		}
		for (size_t l = 0; l < cfg->n_listen; l++)
			t->lfds[l] = -1;
	}
	for (size_t l = 0; l < cfg->n_listen; l++) {
		r = cfs_srv_bind_all(srv, l);
		if (r < 0)
			goto fail;
	}
	for (unsigned i = 0; i < srv->nthreads; i++) {
		r = srv_thread_init(srv, &srv->threads[i]);
		if (r < 0)
			goto fail;
	}
	*srv_ret = srv;
	return 0;
fail:
	cfs_serve_free(srv);
	return r;
}

int cfs_serve_start(struct cfs_serve *srv)
{
	for (unsigned i = 0; i < srv->nthreads; i++) {
		int r =
		    pthread_create(&srv->threads[i].tid, NULL, srv_thread_main, &srv->threads[i]);

		if (r != 0) {
			cfs_serve_stop(srv);
			cfs_serve_join(srv);
			return -r;
		}
		srv->threads[i].started = true;
	}
	return 0;
}

void cfs_serve_stop(struct cfs_serve *srv)
{
	uint64_t one = 1;

	for (unsigned i = 0; i < srv->nthreads; i++)
		if (srv->threads[i].stop_fd >= 0 &&
		    write(srv->threads[i].stop_fd, &one, sizeof(one)) < 0)
			cfs_warn("waking loop %u: %s", i, strerror(errno));
}

int cfs_serve_join(struct cfs_serve *srv)
{
	for (unsigned i = 0; i < srv->nthreads; i++) {
		if (srv->threads[i].started)
			pthread_join(srv->threads[i].tid, NULL);
		srv->threads[i].started = false;
	}
	return 0;
}

void cfs_serve_free(struct cfs_serve *srv)
{
	if (!srv)
		return;
	for (unsigned i = 0; srv->threads && i < srv->nthreads; i++) {
		struct srv_thread *t = &srv->threads[i];

		for (size_t l = 0; t->lfds && t->bound && l < srv->cfg.n_listen; l++)
			if (t->lfds[l] >= 0 && !t->bound[l])
				close(t->lfds[l]);
		if (t->http)
			evhttp_free(t->http); /* closes the bound listening sockets */
		if (t->stop_ev)
			event_free(t->stop_ev);
		if (t->deadline_ev)
			event_free(t->deadline_ev);
		if (t->setup_ev)
			event_free(t->setup_ev);
		if (t->commit_ev)
			event_free(t->commit_ev);
		if (t->waiting_ev)
			event_free(t->waiting_ev);
		if (t->accept_ev)
			event_free(t->accept_ev);
		/* Uploads never committed (the loop ended first): their temp files go. */
		cfs_srv_puts_free(t);
		if (t->base)
			event_base_free(t->base);
		if (t->stop_fd >= 0)
			close(t->stop_fd);
		if (t->conns) {
			void *c;

			for (size_t pos = 0; cfs_u64map_next(t->conns, &pos, NULL, &c);)
				free(c);
			cfs_u64map_free(t->conns);
		}
		cfs_zcache_ctx_free(t->zctx);
		cfs_ocache_free(t->oc);
		free(t->pending);
		free(t->lfds);
		free(t->bound);
	}
	free(srv->threads);
	if (srv->ssl)
		SSL_CTX_free(srv->ssl);
	cfs_zcache_free(srv->zc);
	free(srv);
}
