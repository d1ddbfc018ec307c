/* SPDX-License-Identifier: MIT */
/* cfscache: cfs-serve's uploads: a PUT verified into a temp file, then the loop's group commit. */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>

#include "common/log.h"
#include "common/name.h"
#include "common/store.h"
#include "server/server-internal.h"

static void srv_put_failed(struct srv_thread *t, struct evhttp_request *req, const char *hex, int r)
{
	cfs_err("upload of %s failed: %s", hex, strerror(-r));
	if (!req)
		return;
	if (r == -ENOSPC || r == -EDQUOT)
		cfs_srv_error(t, req, 507, "Insufficient Storage");
	else
		cfs_srv_error(t, req, 500, "Internal Server Error");
}

void cfs_srv_object_put(struct srv_thread *t, struct evhttp_request *req,
                        const uint8_t digest[CFS_DIGEST_SIZE])
{
	struct cfs_serve *srv = t->srv;
	struct evbuffer *body = evhttp_request_get_input_buffer(req);
	struct cfs_store_writer *w = NULL;
	struct srv_put *p;
	uint8_t got[CFS_DIGEST_SIZE];
	char hex[CFS_DIGEST_HEX_SIZE + 1];
	struct stat st;
	size_t n;
	int r;

	cfs_name_format_hex(digest, hex);
	r = cfs_store_lookup(srv->store, digest, &st);
	if (r == 0) {
		cfs_srv_empty(t, req, 204, "No Content");
		return;
	}
	r = cfs_store_writer_new(srv->store, digest, &w);
	if (r < 0)
		goto fail;
	while ((n = evbuffer_get_contiguous_space(body)) > 0) {
		r = cfs_store_writer_write(w, evbuffer_pullup(body, (ev_ssize_t)n), n);
		if (r < 0)
			goto fail;
		evbuffer_drain(body, n);
	}
	r = cfs_store_writer_verify(w, got);
	if (r == -EBADMSG) {
		char ghex[CFS_DIGEST_HEX_SIZE + 1];

		cfs_name_format_hex(got, ghex);
		cfs_notice("upload of %s refused: body has digest %s", hex, ghex);
		cfs_store_writer_free(w);
		cfs_srv_error(t, req, 422, "Digest Mismatch");
		return;
	}
	if (r < 0)
		goto fail;
	p = calloc(1, sizeof(*p));
	if (!p) {
		r = -ENOMEM;
		goto fail;
	}
	p->req = req;
	p->w = w;
	memcpy(p->hex, hex, sizeof(p->hex));
	p->conn = cfs_srv_conn_find(t, evhttp_request_get_connection(req));
	if (p->conn)
		p->conn->put = p;
	if (!t->puts)
		t->puts_tail = &t->puts;
	*t->puts_tail = p;
	t->puts_tail = &p->next;
	/* A zero timeout runs after the requests this loop iteration has ready: they share it. */
	if (!evtimer_pending(t->commit_ev, NULL)) {
		static const struct timeval now = {0, 0};

		evtimer_add(t->commit_ev, &now);
	}
	return;
fail:
	cfs_store_writer_free(w);
	srv_put_failed(t, req, hex, r);
}

/* The uploads this loop iteration verified, in one store transaction: one flush, then each
 * answered by what its own rename found. */
void cfs_srv_commit_cb(evutil_socket_t fd, short what, void *arg)
{
	struct srv_thread *t = arg;
	struct srv_put *p = t->puts;
	struct cfs_store_txn *txn = NULL;
	int rs;

	(void)fd;
	(void)what;
	t->puts = NULL;
	rs = p ? cfs_store_txn_new(t->srv->store, &txn) : 0;
	for (struct srv_put *q = p; rs == 0 && q; q = q->next)
		rs = cfs_store_txn_add(txn, q->w, 0);
	if (rs == 0 && txn)
		cfs_store_txn_commit(txn);
	cfs_store_txn_free(txn);
	while (p) {
		struct srv_put *next = p->next;
		bool existed = false;
		int r = rs < 0 ? rs : cfs_store_writer_result(p->w, &existed);

		if (p->conn)
			p->conn->put = NULL;
		if (r < 0) {
			srv_put_failed(t, p->req, p->hex, r);
		} else {
			cfs_info("stored %s (%llu bytes)%s", p->hex,
			         (unsigned long long)cfs_store_writer_size(p->w),
			         existed ? ", already present" : "");
			if (p->req)
				cfs_srv_empty(t, p->req, existed ? 204 : 201,
				              existed ? "No Content" : "Created");
		}
		cfs_store_writer_free(p->w);
		free(p);
		p = next;
	}
}

void cfs_srv_puts_free(struct srv_thread *t)
{
	while (t->puts) {
		struct srv_put *p = t->puts;

		t->puts = p->next;
		cfs_store_writer_free(p->w);
		free(p);
	}
}
