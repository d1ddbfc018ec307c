/* SPDX-License-Identifier: MIT */
/* cfscache: cfs-serve core: per-thread evhttp loops, routing, object replies, metrics. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/bufferevent_struct.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "common/log.h"
#include "common/name.h"
#include "common/store.h"
#include "common/util.h"
#include "server/ocache.h"
#include "server/server-internal.h"
#include "server/server.h"
#include "server/zcache.h"

/* Bodies up to this size are read into the reply (one writev); larger ones use sendfile. */
#define SRV_SMALL_BODY (16 * 1024)
#define SRV_ALL_METHODS                                                                            \
	(EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD | EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | \
	 EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE | EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH)

static const char *const method_names[M_COUNT] = {"GET", "HEAD", "PUT", "other"};
static const int status_codes[] = {200, 201, 204, 206, 304, 400, 401, 403, 404, 405, 413,
                                   414, 416, 417, 422, 431, 500, 501, 502, 503, 507};
_Static_assert(CFS_ARRAY_SIZE(status_codes) + 1 == N_STATUS, "N_STATUS");

/* ---- connection tracking ---- */

static size_t conn_bucket(const struct evhttp_connection *evcon)
{
	uintptr_t p = (uintptr_t)evcon;

	return (size_t)((p >> 4) ^ (p >> 14)) % SRV_CONN_BUCKETS;
}

static struct srv_conn *conn_find(struct srv_thread *t, const struct evhttp_connection *evcon)
{
	for (struct srv_conn *c = t->conns[conn_bucket(evcon)]; c; c = c->next)
		if (c->evcon == evcon)
			return c;
	return NULL;
}

static void srv_check_drained(struct srv_thread *t)
{
	if (t->draining && t->busy == 0)
		event_base_loopexit(t->base, NULL);
}

static void srv_conn_closed(struct evhttp_connection *evcon, void *arg)
{
	struct srv_conn *c = arg, **pp;
	struct srv_thread *t = c->t;

	for (pp = &t->conns[conn_bucket(evcon)]; *pp; pp = &(*pp)->next) {
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	}
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
	srv_check_drained(t);
}

/* Runs right after the accept callback, before the new socket can be read: evhttp has made
 * the evhttp_connection by now, and it is the cbarg of the bufferevent we handed it. */
static void srv_setup_cb(evutil_socket_t fd, short what, void *arg)
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
		c->next = t->conns[conn_bucket(c->evcon)];
		t->conns[conn_bucket(c->evcon)] = c;
		evhttp_connection_set_closecb(c->evcon, srv_conn_closed, c);
		cfs_gate_accepted(c); /* may close older connections, or this one */
	}
	t->n_pending = 0;
}

static struct bufferevent *srv_bevcb(struct event_base *base, void *arg)
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

/* ---- replies ---- */

static enum srv_method method_of(struct evhttp_request *req)
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

static void srv_access_log(struct srv_thread *t, const char *peer, const char *method,
                           const char *u, int code, uint64_t body)
{
	char line[1024], uri[256], tbuf[64];
	struct tm tm;
	time_t now = time(NULL);
	size_t o = 0;

	/* The URI is hostile input: escape anything that is not plain printable ASCII. */
	for (; u && *u && o + 5 < sizeof(uri); u++) {
		unsigned char ch = (unsigned char)*u;

		if (ch < 0x21 || ch >= 0x7f || ch == '"' || ch == '\\')
			o += (size_t)snprintf(uri + o, sizeof(uri) - o, "\\x%02x", ch);
		else
			uri[o++] = (char)ch;
	}
	uri[o] = '\0';
	gmtime_r(&now, &tm);
	strftime(tbuf, sizeof(tbuf), "%d/%b/%Y:%H:%M:%S +0000", &tm);
	snprintf(line, sizeof(line), "%s - - [%s] \"%s %s\" %d %llu\n", peer ? peer : "-", tbuf,
	         method, uri, code, (unsigned long long)body);
	fputs(line, t->srv->cfg.access_log);
}

void cfs_srv_count(struct srv_thread *t, enum srv_method m, const char *method, const char *uri,
                   const char *peer, int code, uint64_t body)
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
static void srv_send(struct srv_thread *t, struct evhttp_request *req, int code, const char *reason,
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

static void srv_error(struct srv_thread *t, struct evhttp_request *req, int code,
                      const char *reason)
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
	srv_send(t, req, code, reason, n < 0 ? 0 : (uint64_t)n);
}

static void srv_empty(struct srv_thread *t, struct evhttp_request *req, int code,
                      const char *reason)
{
	if (code != 204)
		evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Length", "0");
	srv_send(t, req, code, reason, 0);
}

/* Upper bounds of the latency histogram's buckets, in microseconds (the last is +Inf). */
static const uint64_t latency_us[N_LATENCY - 1] = {250,    500,     1000,    2500,    5000,
                                                   10000,  25000,   50000,   100000,  250000,
                                                   500000, 1000000, 2500000, 10000000};

static void srv_req_done(struct evhttp_request *req, void *arg)
{
	struct srv_conn *c = arg;
	struct srv_thread *t = c->t;

	(void)req;
	if (c->head_done_ns) {
		uint64_t us = (cfs_now_ns() - c->head_done_ns) / 1000;
		size_t b = 0;

		while (b < N_LATENCY - 1 && us > latency_us[b])
			b++;
		STAT_ADD(t->stats.latency[b], 1);
		STAT_ADD(t->stats.latency_sum_us, us);
		c->head_done_ns = 0;
	}
	cfs_gate_next(c);
	if (c->busy) {
		c->busy = false;
		t->busy--;
		srv_check_drained(t);
	}
}

/* ---- request parsing ---- */

/* Classifies the raw request target (@len bytes). No decoding happens anywhere: an object
 * path is only ever rebuilt from the parsed digest. */
enum srv_route cfs_srv_route(const char *uri, size_t len, size_t max_uri,
                             uint8_t digest[CFS_DIGEST_SIZE])
{
	const char *q;
	size_t plen;

	if (len > max_uri)
		return R_TOO_LONG;
	q = memchr(uri, '?', len);
	plen = q ? (size_t)(q - uri) : len;
	if (plen == 0 || uri[0] != '/')
		return R_BAD;
	for (size_t i = 0; i < plen; i++) {
		unsigned char ch = (unsigned char)uri[i];

		if (ch <= 0x20 || ch >= 0x7f || ch == '%' || ch == '\\' || ch == '#')
			return R_BAD;
		if (ch == '/' && i + 1 < plen && (uri[i + 1] == '/' || uri[i + 1] == '.'))
			return R_BAD;
	}
	if (plen == 8 && memcmp(uri, "/healthz", 8) == 0)
		return R_HEALTH;
	if (plen == 8 && memcmp(uri, "/metrics", 8) == 0)
		return R_METRICS;
	if (plen > 9 && memcmp(uri, "/objects/", 9) == 0)
		return cfs_name_parse_path(uri + 9, plen - 9, digest) == 0 ? R_OBJECT : R_BAD;
	return R_NOT_FOUND;
}

/* Whether an Authorization value (@len bytes, NULL if absent) carries the token. */
bool cfs_srv_token_ok(const struct cfs_serve *srv, const char *h, size_t len)
{
	if (!srv->cfg.token)
		return true;
	if (!h || len < 7 || strncasecmp(h, "Bearer ", 7) != 0)
		return false;
	h += 7;
	len -= 7;
	while (len && *h == ' ')
		h++, len--;
	return cfs_const_time_eq(h, len, srv->cfg.token, srv->token_len);
}

static bool srv_authorized(struct cfs_serve *srv, struct evhttp_request *req)
{
	const char *h = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");

	return cfs_srv_token_ok(srv, h, h ? strlen(h) : 0);
}

static bool accepts_zstd(const char *h)
{
	while (h && *h) {
		const char *end = strchr(h, ','), *semi;
		size_t n = end ? (size_t)(end - h) : strlen(h), name;

		while (n && (*h == ' ' || *h == '\t'))
			h++, n--;
		semi = memchr(h, ';', n);
		name = semi ? (size_t)(semi - h) : n;
		while (name && (h[name - 1] == ' ' || h[name - 1] == '\t'))
			name--;
		if (name == 4 && strncasecmp(h, "zstd", 4) == 0) {
			const char *qp = semi ? strstr(semi, "q=") : NULL;

			if (!qp || (end && qp > end))
				return true;
			return strtod(qp + 2, NULL) > 0;
		}
		h = end ? end + 1 : NULL;
	}
	return false;
}

/* true when one of the listed entity tags is @etag (quoted; weak comparison) or "*". Only the
 * representation about to be sent counts: the zstd tag does not match a plain answer. */
static bool etag_matches(const char *h, const char *etag)
{
	size_t elen = strlen(etag);

	while (h && *h) {
		const char *end = strchr(h, ',');
		size_t n = end ? (size_t)(end - h) : strlen(h);

		while (n && (*h == ' ' || *h == '\t'))
			h++, n--;
		while (n && (h[n - 1] == ' ' || h[n - 1] == '\t'))
			n--;
		if (n == 1 && h[0] == '*')
			return true;
		if (n >= 2 && h[0] == 'W' && h[1] == '/')
			h += 2, n -= 2;
		if (n == elen && memcmp(h, etag, n) == 0)
			return true;
		h = end ? end + 1 : NULL;
	}
	return false;
}

static bool parse_u64(const char **p, uint64_t *v)
{
	const char *s = *p;
	uint64_t x = 0;

	if (*s < '0' || *s > '9')
		return false;
	for (; *s >= '0' && *s <= '9'; s++) {
		if (x > (UINT64_MAX - 9) / 10)
			return false;
		x = x * 10 + (uint64_t)(*s - '0');
	}
	*p = s;
	*v = x;
	return true;
}

/* 1: a satisfiable single range; 0: ignore the header and send everything (absent,
 * malformed or several ranges); -1: unsatisfiable (416). */
static int parse_range(const char *h, uint64_t size, uint64_t *off, uint64_t *len)
{
	uint64_t a, b;

	if (!h || strncasecmp(h, "bytes", 5) != 0)
		return 0;
	h += 5;
	while (*h == ' ')
		h++;
	if (*h++ != '=')
		return 0;
	while (*h == ' ')
		h++;
	if (strchr(h, ','))
		return 0;
	if (*h == '-') {
		h++;
		if (!parse_u64(&h, &b))
			return 0;
		while (*h == ' ')
			h++;
		if (*h)
			return 0;
		if (b == 0 || size == 0)
			return -1;
		b = CFS_MIN(b, size);
		*off = size - b;
		*len = b;
		return 1;
	}
	if (!parse_u64(&h, &a) || *h++ != '-')
		return 0;
	if (*h >= '0' && *h <= '9') {
		if (!parse_u64(&h, &b) || b < a)
			return 0;
	} else {
		b = UINT64_MAX;
	}
	while (*h == ' ')
		h++;
	if (*h)
		return 0;
	if (a >= size)
		return -1;
	*off = a;
	*len = CFS_MIN(b, size - 1) - a + 1;
	return 1;
}

/* ---- objects ---- */

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
	r = parse_range(range, size, &off, &len);
	/* The representation comes first: If-None-Match is compared with its own tag. */
	if (r == 0 && fd >= 0 && srv->zc &&
	    accepts_zstd(evhttp_find_header(in, "Accept-Encoding"))) {
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
	if (etag_matches(evhttp_find_header(in, "If-None-Match"), etag)) {
		evhttp_add_header(h, "ETag", etag);
		if (fd >= 0)
			close(fd);
		srv_send(t, req, 304, "Not Modified", 0);
		return;
	}
	if (r < 0) {
		if (fd >= 0)
			close(fd);
		snprintf(num, sizeof(num), "bytes */%llu", (unsigned long long)size);
		evhttp_add_header(h, "Content-Range", num);
		srv_error(t, req, 416, "Range Not Satisfiable");
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
		srv_send(t, req, code, code == 200 ? "OK" : "Partial Content", 0);
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
		srv_error(t, req, 500, "Internal Server Error");
		return;
	}
	srv_send(t, req, code, code == 200 ? "OK" : "Partial Content", len);
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

static void srv_object_get(struct srv_thread *t, struct evhttp_request *req,
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
	                       accepts_zstd(evhttp_find_header(in, "Accept-Encoding")));
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
				m->conn = conn_find(t, evhttp_request_get_connection(req));
				if (m->conn)
					m->conn->miss = m;
				m->head = head;
				memcpy(m->digest, digest, CFS_DIGEST_SIZE);
				srv->cfg.miss_fn(m, m->digest, srv->cfg.miss_userdata);
				return;
			}
		}
		srv_error(t, req, 404, "Not Found");
		return;
	}
	if (r == -EUCLEAN) {
		char path[CFS_NAME_PATH_LEN + 1];

		cfs_name_format_path(digest, path);
		cfs_warn("refusing %s: not a regular file (or reached through a symlink)", path);
		srv_error(t, req, 404, "Not Found");
		return;
	}
	if (r < 0) {
		cfs_err("opening object: %s", strerror(-r));
		srv_error(t, req, r == -EMFILE || r == -ENFILE ? 503 : 500,
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
		srv_error(m->t, m->req, status, "Insufficient Storage");
	else if (status >= 500)
		srv_error(m->t, m->req, status, "Upstream Error");
	else if (present)
		srv_object_get(m->t, m->req, m->digest, m->head, false);
	else
		srv_error(m->t, m->req, 404, "Not Found");
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

static void srv_put_failed(struct srv_thread *t, struct evhttp_request *req, const char *hex, int r)
{
	cfs_err("upload of %s failed: %s", hex, strerror(-r));
	if (!req)
		return;
	if (r == -ENOSPC || r == -EDQUOT)
		srv_error(t, req, 507, "Insufficient Storage");
	else
		srv_error(t, req, 500, "Internal Server Error");
}

static void srv_commit_cb(evutil_socket_t fd, short what, void *arg);

static void srv_object_put(struct srv_thread *t, struct evhttp_request *req,
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
		srv_empty(t, req, 204, "No Content");
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
		srv_error(t, req, 422, "Digest Mismatch");
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
	p->conn = conn_find(t, evhttp_request_get_connection(req));
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

static void srv_commit_cb(evutil_socket_t fd, short what, void *arg)
{
	struct srv_thread *t = arg;
	struct srv_put *p = t->puts;
	int rs;

	(void)fd;
	(void)what;
	t->puts = NULL;
	rs = p ? cfs_store_sync(t->srv->store) : 0;
	while (p) {
		struct srv_put *next = p->next;
		bool existed = false;
		int r = rs;

		if (r == 0)
			r = cfs_store_writer_commit(p->w, CFS_STORE_NOSYNC, &existed);
		if (p->conn)
			p->conn->put = NULL;
		if (r < 0) {
			srv_put_failed(t, p->req, p->hex, r);
		} else {
			cfs_info("stored %s (%llu bytes)%s", p->hex,
			         (unsigned long long)cfs_store_writer_size(p->w),
			         existed ? ", already present" : "");
			if (p->req)
				srv_empty(t, p->req, existed ? 204 : 201,
				          existed ? "No Content" : "Created");
		}
		cfs_store_writer_free(p->w);
		free(p);
		p = next;
	}
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

static void srv_metrics(struct srv_thread *t, struct evhttp_request *req)
{
	struct cfs_serve *srv = t->srv;
	struct evbuffer *out = evhttp_request_get_output_buffer(req);
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	uint64_t bytes = 0, errors = 0, conns = 0, zstd = 0;
	char len[24];

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
	evhttp_add_header(h, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
	evhttp_add_header(h, "Cache-Control", "no-store");
	snprintf(len, sizeof(len), "%zu", evbuffer_get_length(out));
	evhttp_add_header(h, "Content-Length", len);
	if (evhttp_request_get_command(req) == EVHTTP_REQ_HEAD)
		evbuffer_drain(out, evbuffer_get_length(out));
	srv_send(t, req, 200, "OK", evbuffer_get_length(out));
}

static void srv_method_not_allowed(struct srv_thread *t, struct evhttp_request *req,
                                   const char *allow)
{
	evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", allow);
	srv_error(t, req, 405, "Method Not Allowed");
}

static void srv_handle(struct evhttp_request *req, void *arg)
{
	struct srv_thread *t = arg;
	struct cfs_serve *srv = t->srv;
	struct srv_conn *c = conn_find(t, evhttp_request_get_connection(req));
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
	uint8_t digest[CFS_DIGEST_SIZE];
	enum srv_route route;
	const char *uri;

	if (c) {
		if (!c->busy) {
			c->busy = true;
			t->busy++;
		}
		evhttp_request_set_on_complete_cb(req, srv_req_done, c);
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
		srv_error(t, req, 503, "Service Unavailable");
		return;
	}
	uri = evhttp_request_get_uri(req);
	route = cfs_srv_route(uri, strlen(uri), srv->cfg.max_uri, digest);
	if (route == R_HEALTH) {
		if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD)
			return srv_method_not_allowed(t, req, "GET, HEAD");
		return srv_error(t, req, 200, t->draining ? "Draining" : "OK");
	}
	if (!srv_authorized(srv, req)) {
		evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate",
		                  "Bearer realm=\"cfs-serve\"");
		return srv_error(t, req, 401, "Unauthorized");
	}
	switch (route) {
	case R_TOO_LONG:
		return srv_error(t, req, 414, "URI Too Long");
	case R_BAD:
		return srv_error(t, req, 400, "Bad Request");
	case R_NOT_FOUND:
		return srv_error(t, req, 404, "Not Found");
	case R_METRICS:
		if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD)
			return srv_method_not_allowed(t, req, "GET, HEAD");
		return srv_metrics(t, req);
	case R_OBJECT:
		if (cmd == EVHTTP_REQ_GET || cmd == EVHTTP_REQ_HEAD)
			return srv_object_get(t, req, digest, cmd == EVHTTP_REQ_HEAD, true);
		if (cmd == EVHTTP_REQ_PUT && srv->cfg.allow_upload)
			return srv_object_put(t, req, digest);
		return srv_method_not_allowed(
		    t, req, srv->cfg.allow_upload ? "GET, HEAD, PUT" : "GET, HEAD");
	default:
		return srv_error(t, req, 500, "Internal Server Error");
	}
}

/* ---- threads and lifecycle ---- */

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
	srv_check_drained(t);
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

/* Splits "ADDR:PORT", "[V6]:PORT", ":PORT" or "PORT". */
static int parse_listen(const char *s, char *host, size_t hostlen, char *port, size_t portlen)
{
	const char *colon;
	size_t hl;

	if (s[0] == '[') {
		const char *end = strchr(s, ']');

		if (!end || end[1] != ':')
			return -EINVAL;
		hl = (size_t)(end - s - 1);
		s++;
		colon = end + 1;
	} else {
		colon = strrchr(s, ':');
		if (!colon) {
			/* A bare port. */
			if (!s[0] || strlen(s) >= portlen)
				return -EINVAL;
			host[0] = '\0';
			strcpy(port, s);
			return 0;
		}
		hl = (size_t)(colon - s);
	}
	if (hl >= hostlen || strlen(colon + 1) >= portlen || !colon[1])
		return -EINVAL;
	memcpy(host, s, hl);
	host[hl] = '\0';
	strcpy(port, colon + 1);
	return 0;
}

static bool proc_addr_is_wildcard(const char *hex)
{
	return strspn(hex, "0") == strlen(hex);
}

static void proc_addr_format(const struct sockaddr *sa, char *out, size_t outlen, unsigned *port)
{
	const uint8_t *b;
	size_t n, o = 0;

	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;

		b = s6->sin6_addr.s6_addr;
		n = 16;
		*port = ntohs(s6->sin6_port);
	} else {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;

		b = (const uint8_t *)&s4->sin_addr.s_addr;
		n = 4;
		*port = ntohs(s4->sin_port);
	}
	/* The kernel prints each 32-bit word as a host-order integer. */
	for (size_t w = 0; w < n; w += 4) {
		uint32_t v;

		memcpy(&v, b + w, 4);
		o += (size_t)snprintf(out + o, outlen - o, "%08X", v);
	}
}

/* SO_REUSEPORT lets another process of the same user bind the same port, and the kernel would
 * then spread connections over both servers: after listening, any LISTEN socket on an
 * overlapping address whose inode is not one of ours means the address is in use. */
static int srv_check_sole_listener(struct cfs_serve *srv, size_t li, const struct sockaddr *sa)
{
	static const char *const tables[] = {"/proc/net/tcp", "/proc/net/tcp6"};
	char want[40], line[512];
	unsigned port;

	proc_addr_format(sa, want, sizeof(want), &port);
	for (size_t ti = 0; ti < CFS_ARRAY_SIZE(tables); ti++) {
		FILE *f = fopen(tables[ti], "re");

		if (!f)
			continue; /* no /proc (or no IPv6): nothing to check against */
		while (fgets(line, sizeof(line), f)) {
			char addr[40];
			unsigned lport, state;
			unsigned long inode;
			bool ours = false;

			if (sscanf(line, " %*u: %39[0-9A-Fa-f]:%x %*s %x %*s %*s %*s %*s %*s %lu",
			           addr, &lport, &state, &inode) != 4 ||
			    state != 0x0A || lport != port)
				continue;
			/* Overlapping: the same address, or either side a wildcard. */
			if (!proc_addr_is_wildcard(addr) && !proc_addr_is_wildcard(want) &&
			    strcmp(addr, want) != 0)
				continue;
			for (unsigned i = 0; i < srv->nthreads && !ours; i++) {
				struct stat st;

				ours = fstat(srv->threads[i].lfds[li], &st) == 0 &&
				       (unsigned long)st.st_ino == inode;
			}
			if (!ours) {
				fclose(f);
				cfs_err("cannot listen on %s: address in use by another server "
				        "(socket inode %lu)",
				        srv->cfg.listen[li], inode);
				return -EADDRINUSE;
			}
		}
		fclose(f);
	}
	return 0;
}

static int srv_bind_all(struct cfs_serve *srv, size_t li)
{
	char host[256], port[32], shown[300] = "?";
	struct addrinfo hints = {.ai_flags = AI_PASSIVE | AI_NUMERICSERV,
	                         .ai_socktype = SOCK_STREAM};
	struct addrinfo *ai = NULL;
	int r, one = 1;

	r = parse_listen(srv->cfg.listen[li], host, sizeof(host), port, sizeof(port));
	if (r < 0) {
		cfs_err("bad listen address '%s' (want ADDR:PORT)", srv->cfg.listen[li]);
		return r;
	}
	r = getaddrinfo(host[0] ? host : NULL, port, &hints, &ai);
	if (r != 0) {
		cfs_err("listen address '%s': %s", srv->cfg.listen[li], gai_strerror(r));
		return -EINVAL;
	}
	for (unsigned i = 0; i < srv->nthreads; i++) {
		int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

		if (fd < 0) {
			r = -errno;
			goto out;
		}
		srv->threads[i].lfds[li] = fd;
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		/* One listening socket per loop; the kernel spreads connections across them. */
		if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 ||
		    bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 1024) < 0) {
			r = -errno;
			cfs_err("cannot listen on %s: %s", srv->cfg.listen[li], strerror(-r));
			goto out;
		}
		if (i == 0) {
			/* Port 0: every other loop binds the port the first one got. */
			struct sockaddr_storage ss;
			socklen_t sl = sizeof(ss);
			char h[NI_MAXHOST], p[NI_MAXSERV];

			if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0 &&
			    getnameinfo((struct sockaddr *)&ss, sl, h, sizeof(h), p, sizeof(p),
			                NI_NUMERICHOST | NI_NUMERICSERV) == 0) {
				memcpy(ai->ai_addr, &ss, ai->ai_addrlen);
				snprintf(shown, sizeof(shown),
				         ss.ss_family == AF_INET6 ? "[%s]:%s" : "%s:%s", h, p);
			}
		}
	}
	r = srv_check_sole_listener(srv, li, ai->ai_addr);
	if (r == 0)
		cfs_notice("listening on %s%s", srv->cfg.tls_cert ? "https://" : "http://", shown);
out:
	freeaddrinfo(ai);
	return r;
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
	evhttp_set_allowed_methods(t->http, SRV_ALL_METHODS);
	evhttp_set_default_content_type(t->http, NULL);
	evhttp_set_max_headers_size(t->http, (ev_ssize_t)srv->cfg.max_header_size);
	/* Without uploads a small limit still lets a short PUT reach us for its 405. */
	evhttp_set_max_body_size(
	    t->http,
	    (ev_ssize_t)(srv->cfg.allow_upload ? srv->cfg.max_upload : SRV_SMALL_BODY_LIMIT));
	evhttp_set_timeout_tv(t->http, &tv);
	evhttp_set_flags(t->http, EVHTTP_SERVER_LINGERING_CLOSE);
	evhttp_set_gencb(t->http, srv_handle, t);
	evhttp_set_bevcb(t->http, srv_bevcb, t);
	t->stop_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (t->stop_fd < 0)
		return -errno;
	t->stop_ev = event_new(t->base, t->stop_fd, EV_READ | EV_PERSIST, srv_stop_cb, t);
	t->deadline_ev = evtimer_new(t->base, srv_deadline_cb, t);
	t->setup_ev = event_new(t->base, -1, 0, srv_setup_cb, t);
	t->commit_ev = evtimer_new(t->base, srv_commit_cb, t);
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
		r = srv_bind_all(srv, l);
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
		while (t->puts) {
			struct srv_put *p = t->puts;

			t->puts = p->next;
			cfs_store_writer_free(p->w);
			free(p);
		}
		if (t->base)
			event_base_free(t->base);
		if (t->stop_fd >= 0)
			close(t->stop_fd);
		for (size_t b = 0; b < SRV_CONN_BUCKETS; b++) {
			while (t->conns[b]) {
				struct srv_conn *c = t->conns[b];

				t->conns[b] = c->next;
				free(c);
			}
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
