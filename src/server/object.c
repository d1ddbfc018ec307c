/* SPDX-License-Identifier: MIT */
/* cfscache: cfs-serve's object replies: GET/HEAD from store or cache, ranges, zstd, misses. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/http.h>

#include "common/log.h"
#include "common/name.h"
#include "common/store.h"
#include "common/util.h"
#include "server/http.h"
#include "server/ocache.h"
#include "server/server-internal.h"
#include "server/zcache.h"

/* Bodies up to this size are read into the reply (one writev); larger ones use sendfile. */
#define SRV_SMALL_BODY (16 * 1024)

/* Adds @len bytes of @fd at @off to the reply and takes ownership of @fd. */
static int srv_add_body(struct srv_thread *t, struct evbuffer *out, int fd, uint64_t off,
                        uint64_t len)
{
	struct evbuffer_iovec vec;
	ssize_t n;

	if (len == 0) {
		close(fd);
		return 0;
	}
	if (len <= SRV_SMALL_BODY) {
		if (evbuffer_reserve_space(out, (ev_ssize_t)len, &vec, 1) < 1) {
			close(fd);
			return -ENOMEM;
		}
		n = cfs_pread_full(fd, vec.iov_base, (size_t)len, (off_t)off);
		close(fd);
		if (n != (ssize_t)len)
			return n < 0 ? (int)n : -EIO;
		vec.iov_len = (size_t)len;
		return evbuffer_commit_space(out, &vec, 1) == 0 ? 0 : -ENOMEM;
	}
	/* Without TLS the segment is sent with sendfile straight from the page cache. */
	if (!t->srv->ssl)
		evbuffer_set_flags(out, EVBUFFER_FLAG_DRAINS_TO_FD);
	if (evbuffer_add_file(out, fd, (ev_off_t)off, (ev_off_t)len) < 0)
		return -ENOMEM; /* libevent closed fd */
	return 0;
}

/* Sends an object from an open descriptor (@fd, closed here) or from a cache entry (@e). */
static void srv_reply_object(struct srv_thread *t, struct evhttp_request *req, int fd,
                             struct cfs_ocache_entry *e, const struct stat *st,
                             const uint8_t digest[CFS_DIGEST_SIZE], bool head)
{
	struct cfs_serve *srv = t->srv;
	struct evkeyvalq *in = evhttp_request_get_input_headers(req);
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	char hex[CFS_DIGEST_HEX_SIZE + 1], etag[CFS_DIGEST_HEX_SIZE + 8], num[96];
	uint64_t size = (uint64_t)st->st_size, off = 0, len = size;
	const char *range = evhttp_find_header(in, "Range"), *ifr;
	bool zstd = false;
	int code = 200, r;

	cfs_name_format_hex(digest, hex);
	snprintf(etag, sizeof(etag), "\"%s\"", hex);
	evhttp_add_header(h, "Cache-Control", "public, max-age=31536000, immutable");
	evhttp_add_header(h, "Accept-Ranges", "bytes");
	if (srv->zc)
		evhttp_add_header(h, "Vary", "Accept-Encoding");
	ifr = evhttp_find_header(in, "If-Range");
	if (range && ifr && strcmp(ifr, etag) != 0)
		range = NULL;
	r = cfs_http_parse_range(range, size, &off, &len);
	/* The representation comes first: If-None-Match is compared with its own tag. */
	if (r == 0 && fd >= 0 && srv->zc &&
	    cfs_http_accepts_zstd(evhttp_find_header(in, "Accept-Encoding"))) {
		int zfd = -1;
		uint64_t zsize;
		int rz = cfs_zcache_get(srv->zc, t->zctx, fd, st, digest, &zfd, &zsize);

		if (rz == 0) {
			close(fd);
			fd = zfd;
			len = zsize;
			zstd = true;
			snprintf(etag, sizeof(etag), "\"%s-zstd\"", hex);
		} else if (rz != -ENOENT && rz != -EAGAIN) {
			cfs_warn("zstd encoding of %s failed: %s", hex, strerror(-rz));
		}
	}
	if (cfs_http_etag_matches(evhttp_find_header(in, "If-None-Match"), etag)) {
		evhttp_add_header(h, "ETag", etag);
		if (fd >= 0)
			close(fd);
		cfs_srv_send(t, req, 304, "Not Modified", 0);
		return;
	}
	if (r < 0) {
		if (fd >= 0)
			close(fd);
		snprintf(num, sizeof(num), "bytes */%llu", (unsigned long long)size);
		evhttp_add_header(h, "Content-Range", num);
		cfs_srv_error(t, req, 416, "Range Not Satisfiable");
		return;
	}
	evhttp_add_header(h, "Content-Type", "application/octet-stream");
	if (r > 0) {
		code = 206;
		snprintf(num, sizeof(num), "bytes %llu-%llu/%llu", (unsigned long long)off,
		         (unsigned long long)(off + len - 1), (unsigned long long)size);
		evhttp_add_header(h, "Content-Range", num);
	} else if (zstd) {
		evhttp_add_header(h, "Content-Encoding", "zstd");
		STAT_ADD(t->stats.zstd_replies, 1);
	}
	evhttp_add_header(h, "ETag", etag);
	snprintf(num, sizeof(num), "%llu", (unsigned long long)len);
	evhttp_add_header(h, "Content-Length", num);
	if (head) {
		if (fd >= 0)
			close(fd);
		cfs_srv_send(t, req, code, code == 200 ? "OK" : "Partial Content", 0);
		return;
	}
	if (e) {
		struct evbuffer *out = evhttp_request_get_output_buffer(req);

		if (e->seg)
			evbuffer_set_flags(out, EVBUFFER_FLAG_DRAINS_TO_FD);
		r = cfs_ocache_add(e, out, off, len);
	} else {
		r = srv_add_body(t, evhttp_request_get_output_buffer(req), fd, off, len);
	}
	if (r < 0) {
		cfs_err("reading object %s: %s", hex, strerror(-r));
		evhttp_remove_header(h, "Content-Length");
		evhttp_remove_header(h, "Content-Range");
		evhttp_remove_header(h, "Content-Encoding");
		evhttp_remove_header(h, "ETag");
		evbuffer_drain(evhttp_request_get_output_buffer(req), (size_t)-1);
		cfs_srv_error(t, req, 500, "Internal Server Error");
		return;
	}
	cfs_srv_send(t, req, code, code == 200 ? "OK" : "Partial Content", len);
}

/* Opens an object by digest only, without following any symlink inside the store. */
static int srv_open_object(struct cfs_serve *srv, const uint8_t digest[CFS_DIGEST_SIZE],
                           int *fd_ret, struct stat *st)
{
	char rel[CFS_NAME_PATH_LEN + 1];
	int fd;

	cfs_name_format_path(digest, rel);
	fd = cfs_store_openat_beneath(srv->store_fd, rel, O_RDONLY | O_NONBLOCK);
	if (fd < 0)
		return fd == -ELOOP || fd == -EXDEV || fd == -ENXIO ? -EUCLEAN : fd;
	if (fstat(fd, st) < 0 || !S_ISREG(st->st_mode)) {
		close(fd);
		return -EUCLEAN;
	}
	*fd_ret = fd;
	return 0;
}

void cfs_srv_object_get(struct srv_thread *t, struct evhttp_request *req,
                        const uint8_t digest[CFS_DIGEST_SIZE], bool head, bool may_miss)
{
	struct cfs_serve *srv = t->srv;
	struct evkeyvalq *in = evhttp_request_get_input_headers(req);
	struct cfs_ocache_entry *e = NULL;
	struct stat st;
	bool cacheable;
	int fd = -1, r;

	/* zstd answers come from side files; everything else may come from the cache. */
	cacheable = t->oc && !(srv->zc && !evhttp_find_header(in, "Range") &&
	                       cfs_http_accepts_zstd(evhttp_find_header(in, "Accept-Encoding")));
	if (cacheable && (e = cfs_ocache_find(t->oc, digest))) {
		char rel[CFS_NAME_PATH_LEN + 1];
		time_t now = time(NULL);

		/* Checked this second already: the store's changes show within a second. */
		if (e->checked == (int64_t)now) {
			memset(&st, 0, sizeof(st));
			st.st_size = (off_t)e->size;
			srv_reply_object(t, req, -1, e, &st, digest, head);
			return;
		}
		/* Still the same file under that name? One fstatat instead of open+fstat+close. */
		cfs_name_format_path(digest, rel);
		if (fstatat(srv->store_fd, rel, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
		    S_ISREG(st.st_mode) && st.st_dev == e->dev && st.st_ino == e->ino &&
		    (uint64_t)st.st_size == e->size) {
			e->checked = (int64_t)now;
			srv_reply_object(t, req, -1, e, &st, digest, head);
			return;
		}
		cfs_ocache_drop(t->oc, e);
		e = NULL;
	}
	r = srv_open_object(srv, digest, &fd, &st);
	if (r == -ENOENT || r == -ENOTDIR) {
		if (may_miss && srv->cfg.miss_fn) {
			struct cfs_serve_miss *m = calloc(1, sizeof(*m));

			if (m) {
				m->t = t;
				m->req = req;
				m->conn = cfs_srv_conn_find(t, evhttp_request_get_connection(req));
				if (m->conn)
					m->conn->miss = m;
				m->head = head;
				memcpy(m->digest, digest, CFS_DIGEST_SIZE);
				srv->cfg.miss_fn(m, m->digest, srv->cfg.miss_userdata);
				return;
			}
		}
		cfs_srv_error(t, req, 404, "Not Found");
		return;
	}
	if (r == -EUCLEAN) {
		char path[CFS_NAME_PATH_LEN + 1];

		cfs_name_format_path(digest, path);
		cfs_warn("refusing %s: not a regular file (or reached through a symlink)", path);
		cfs_srv_error(t, req, 404, "Not Found");
		return;
	}
	if (r < 0) {
		cfs_err("opening object: %s", strerror(-r));
		cfs_srv_error(t, req, r == -EMFILE || r == -ENFILE ? 503 : 500,
		              r == -EMFILE || r == -ENFILE ? "Service Unavailable"
		                                           : "Internal Server Error");
		return;
	}
	if (cacheable) {
		e = cfs_ocache_insert(t->oc, digest, fd, &st, !srv->ssl);
		if (e) {
			fd = -1;
			e->checked = (int64_t)time(NULL);
		}
	}
	srv_reply_object(t, req, fd, e, &st, digest, head);
}

void cfs_serve_miss_done(struct cfs_serve_miss *m, bool present, int status)
{
	if (m->conn)
		m->conn->miss = NULL;
	if (!m->req)
		; /* the connection closed while the handler worked */
	else if (status == 507)
		cfs_srv_error(m->t, m->req, status, "Insufficient Storage");
	else if (status >= 500)
		cfs_srv_error(m->t, m->req, status, "Upstream Error");
	else if (present)
		cfs_srv_object_get(m->t, m->req, m->digest, m->head, false);
	else
		cfs_srv_error(m->t, m->req, 404, "Not Found");
	free(m);
}

struct event_base *cfs_serve_miss_base(const struct cfs_serve_miss *m)
{
	return m->t->base;
}

bool cfs_serve_miss_alive(const struct cfs_serve_miss *m)
{
	return m->req != NULL;
}
