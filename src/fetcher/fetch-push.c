/* SPDX-License-Identifier: MIT */
/* cfscache: the upload client: one multi handle on the caller's thread, a slot (easy handle and
 * its kept-alive connection) per job, HEAD then PUT per object, retries with the engine's
 * backoff, failures classified as the engine's attempts are. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/name.h"
#include "common/util.h"
#include "fetcher/fetch-internal.h"
#include "fetcher/fetch-push.h"

/* Failures logged one by one; the rest are only counted. */
#define LOG_FAILURES 20
/* Objects that exhausted their retries in a row before push stops altogether. */
#define GIVE_UP 3

enum state {
	ST_HEAD,     /* not yet known whether the server has it */
	ST_PUT,      /* missing on the server: upload it */
	ST_PRESENT,  /* the server had it */
	ST_UPLOADED, /* we uploaded it (or a racing writer did: 204) */
	ST_FAILED,
};

/* Where an item stands, beside the caller's item. */
struct entry {
	uint64_t due_ns; /* retry time while waiting */
	uint8_t state;
	uint8_t attempts; /* failed attempts of the current request kind */
};

struct pusher;

/* A transfer slot: one easy handle, busy with one item at a time. */
struct xfer {
	struct pusher *p;
	CURL *easy;
	size_t item;
	bool busy, is_put, read_failed;
	int fd;
	uint64_t off; /* body bytes handed to curl */
	char *url;
	char errbuf[CURL_ERROR_SIZE];
};

struct pusher {
	const struct cfs_fetch_push_options *o;
	const struct cfs_fetch_push_item *items;
	struct entry *st;
	size_t n_items, base_len;
	unsigned retries;
	uint64_t rng;
	struct cfs_progress *progress;
	struct cfs_fetch_push_result *res;

	CURLM *multi;
	struct curl_slist *headers;
	struct xfer *xfers;
	unsigned n_xfers, busy;

	/* Work: items in the ready ring (HEAD retries and PUTs) go before fresh HEADs. */
	size_t *ring, ring_head, ring_len;
	size_t next_head;
	size_t *waiting, n_waiting; /* backing off before a retry */

	uint64_t failures_logged;
	unsigned failed_in_a_row; /* objects given up on after retries, since the last success */
};

/* ---- request bodies ----------------------------------------------------------------------- */

static size_t discard_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	(void)ptr;
	(void)userdata;
	return size * nmemb;
}

static size_t read_body(char *buf, size_t size, size_t nmemb, void *userdata)
{
	struct xfer *x = userdata;
	uint64_t want = x->p->items[x->item].size - x->off;
	ssize_t n;

	if (want > size * nmemb)
		want = size * nmemb;
	if (want == 0)
		return 0;
	n = cfs_pread_full(x->fd, buf, (size_t)want, (off_t)x->off);
	if (n <= 0) { /* a short file would make curl send a short body: abort instead */
		x->read_failed = true;
		return CURL_READFUNC_ABORT;
	}
	x->off += (uint64_t)n;
	cfs_progress_add(x->p->progress, 0, (uint64_t)n);
	return (size_t)n;
}

/* curl rewinds the body when it resends a request (a reused connection that was closed). */
static int seek_body(void *userdata, curl_off_t offset, int origin)
{
	struct xfer *x = userdata;

	if (origin != SEEK_SET || offset < 0 || (uint64_t)offset > x->p->items[x->item].size)
		return CURL_SEEKFUNC_FAIL;
	x->p->progress->bytes -= x->off - (uint64_t)offset;
	x->off = (uint64_t)offset;
	return CURL_SEEKFUNC_OK;
}

/* ---- slots ---------------------------------------------------------------------------------- */

static int xfer_init(struct pusher *p, struct xfer *x)
{
	const struct cfs_fetch_options *c = p->o->client;

	x->p = p;
	x->fd = -1;
	x->url = malloc(p->base_len + CFS_NAME_PATH_LEN + 2);
	x->easy = curl_easy_init();
	if (!x->url || !x->easy)
		return -ENOMEM;
	memcpy(x->url, p->o->url, p->base_len);
	x->url[p->base_len] = '/';
	cfs_fetch_easy_setup(x->easy, c, p->headers);
	/* An upload goes where it was told, over HTTP(S) only. */
	curl_easy_setopt(x->easy, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(x->easy, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(x->easy, CURLOPT_PRIVATE, x);
	curl_easy_setopt(x->easy, CURLOPT_ERRORBUFFER, x->errbuf);
	curl_easy_setopt(x->easy, CURLOPT_WRITEFUNCTION, discard_body);
	curl_easy_setopt(x->easy, CURLOPT_READFUNCTION, read_body);
	curl_easy_setopt(x->easy, CURLOPT_READDATA, x);
	curl_easy_setopt(x->easy, CURLOPT_SEEKFUNCTION, seek_body);
	curl_easy_setopt(x->easy, CURLOPT_SEEKDATA, x);
	curl_easy_setopt(x->easy, CURLOPT_TCP_KEEPALIVE, 1L);
	/* A stalled server: abort below the low-speed limit, then retry. */
	curl_easy_setopt(x->easy, CURLOPT_LOW_SPEED_LIMIT, (long)c->low_speed_bytes);
	curl_easy_setopt(x->easy, CURLOPT_LOW_SPEED_TIME, (long)c->low_speed_secs);
	curl_easy_setopt(x->easy, CURLOPT_UPLOAD_BUFFERSIZE, 256L * 1024);
	return 0;
}

static void xfer_release(struct xfer *x)
{
	if (x->busy) {
		curl_multi_remove_handle(x->p->multi, x->easy);
		x->busy = false;
		x->p->busy--;
	}
	if (x->fd >= 0)
		close(x->fd);
	x->fd = -1;
}

static int xfer_start(struct pusher *p, struct xfer *x, size_t idx)
{
	const struct cfs_fetch_push_item *it = &p->items[idx];
	int r;

	x->item = idx;
	x->is_put = p->st[idx].state == ST_PUT;
	x->read_failed = false;
	x->off = 0;
	x->errbuf[0] = '\0';
	cfs_name_format_path(it->digest, x->url + p->base_len + 1);
	curl_easy_setopt(x->easy, CURLOPT_URL, x->url);
	if (x->is_put) {
		r = cfs_store_open_object(p->o->store, it->digest, &x->fd);
		if (r < 0)
			return r;
		curl_easy_setopt(x->easy, CURLOPT_NOBODY, 0L);
		curl_easy_setopt(x->easy, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(x->easy, CURLOPT_INFILESIZE_LARGE, (curl_off_t)it->size);
	} else {
		curl_easy_setopt(x->easy, CURLOPT_UPLOAD, 0L);
		curl_easy_setopt(x->easy, CURLOPT_NOBODY, 1L);
	}
	if (curl_multi_add_handle(p->multi, x->easy) != CURLM_OK) {
		if (x->fd >= 0)
			close(x->fd);
		x->fd = -1;
		return -ENOMEM;
	}
	x->busy = true;
	p->busy++;
	return 0;
}

/* ---- outcomes ------------------------------------------------------------------------------- */

static void set_fatal(struct pusher *p, const char *why)
{
	if (!p->res->fatal[0])
		snprintf(p->res->fatal, sizeof(p->res->fatal), "%s", why);
}

static void item_failed(struct pusher *p, size_t idx, const char *why, bool always_log)
{
	char path[CFS_NAME_PATH_LEN + 1];

	p->st[idx].state = ST_FAILED;
	p->res->failed++;
	cfs_progress_add(p->progress, 1, 0);
	if (!always_log && ++p->failures_logged > LOG_FAILURES) {
		p->res->unlogged++;
		return;
	}
	cfs_name_format_path(p->items[idx].digest, path);
	cfs_progress_done(p->progress);
	cfs_err("%s: %s", path, why);
}

static void ring_push(struct pusher *p, size_t idx)
{
	p->ring[(p->ring_head + p->ring_len) % p->n_items] = idx;
	p->ring_len++;
}

static void retry_or_fail(struct pusher *p, size_t idx, const char *why)
{
	struct entry *e = &p->st[idx];
	uint64_t delay_ms;

	if (e->attempts >= p->retries) {
		item_failed(p, idx, why, false);
		/* A server that is down fails every object the same way: stop asking. */
		if (++p->failed_in_a_row >= GIVE_UP && !p->res->fatal[0])
			snprintf(p->res->fatal, sizeof(p->res->fatal),
			         "giving up after %d objects failed in a row (last: %s)", GIVE_UP,
			         why);
		return;
	}
	e->attempts++;
	delay_ms = cfs_fetch_backoff_ms(&p->rng, p->o->client->backoff_ms, e->attempts);
	e->due_ns = cfs_now_ns() + delay_ms * 1000000ULL;
	p->waiting[p->n_waiting++] = idx;
	cfs_debug("retrying in %llu ms: %s", (unsigned long long)delay_ms, why);
}

/* The engine's classification of a failed request (retryable or not, and why), for one
 * attempt with one retry left. */
static void classify(const struct xfer *x, CURLcode cc, long code, struct cfs_fetch_verdict *v)
{
	struct cfs_fetch_facts a = {
	    .cc = cc,
	    .status = cc == CURLE_OK ? code : 0,
	    .discard = true,
	    .local_err = x->read_failed,
	    .abort_err = x->read_failed ? -EIO : 0,
	    .tries = 1,
	    .retries = 1,
	    .server = x->is_put ? "upload" : "HEAD",
	    .errbuf = x->errbuf,
	};

	cfs_fetch_classify(&a, v);
}

/* A request that got no HTTP answer. */
static void transport_failed(struct pusher *p, const struct xfer *x, size_t idx, CURLcode cc)
{
	struct cfs_fetch_verdict v;

	classify(x, cc, 0, &v);
	/* A wrong URL or TLS set-up fails every object: stop at once. */
	if (cfs_fetch_curl_tls_config(cc) || cc == CURLE_COULDNT_RESOLVE_HOST ||
	    cc == CURLE_COULDNT_RESOLVE_PROXY)
		set_fatal(p, v.reason);
	else if (v.outcome == CFS_FETCH_RETRY)
		retry_or_fail(p, idx, v.reason);
	else
		item_failed(p, idx, v.reason, false);
}

static void refused(struct pusher *p, long code)
{
	if (!p->o->client->token_file)
		set_fatal(p, "the server requires a token: give --token-file FILE");
	else if (code == 401)
		set_fatal(p, "the server refused the token (HTTP 401): check --token-file");
	else
		set_fatal(p,
		          "the server forbids this (HTTP 403): the token may lack upload rights");
}

static void counted(struct pusher *p, size_t idx, enum state state)
{
	p->st[idx].state = state;
	if (state == ST_PRESENT) {
		p->res->present++;
	} else {
		p->res->uploaded++;
		p->res->uploaded_bytes += p->items[idx].size;
	}
	cfs_progress_add(p->progress, 1, 0);
}

static void head_done(struct pusher *p, size_t idx, long code, curl_off_t len)
{
	const struct cfs_fetch_push_item *it = &p->items[idx];
	char why[160];

	if (code == 200 && len >= 0 && (uint64_t)len != it->size) {
		snprintf(why, sizeof(why),
		         "the server has %lld bytes under this name, the store %llu",
		         (long long)len, (unsigned long long)it->size);
		item_failed(p, idx, why, true);
	} else if (code == 200) {
		counted(p, idx, ST_PRESENT);
	} else if (code == 404 || code == 410) {
		p->st[idx].attempts = 0;
		if (p->o->dry_run) {
			cfs_progress_done(p->progress);
			p->o->missing(it->digest, p->o->ctx);
			counted(p, idx, ST_UPLOADED); /* counted as to be uploaded */
		} else {
			p->st[idx].state = ST_PUT;
			ring_push(p, idx);
		}
	} else {
		snprintf(why, sizeof(why), "HEAD: unexpected HTTP %ld", code);
		item_failed(p, idx, why, false);
	}
}

static void put_done(struct pusher *p, const struct xfer *x, size_t idx, long code)
{
	char why[64];

	switch (code) {
	case 200:
	case 201:
		counted(p, idx, ST_UPLOADED);
		return;
	case 204: /* someone else uploaded it meanwhile */
		p->progress->bytes -= x->off;
		counted(p, idx, ST_PRESENT);
		return;
	case 405:
	case 501:
		p->progress->bytes -= x->off;
		set_fatal(p, "the server does not accept uploads (HTTP 405): run cfs-serve with "
		             "--allow-upload");
		return;
	case 413:
		item_failed(p, idx, "too large for the server (HTTP 413): raise its --max-upload",
		            true);
		return;
	case 422:
		item_failed(p, idx,
		            "the server says the object is corrupt (HTTP 422: its content does not "
		            "match its name); check the store with cfs-store verify",
		            true);
		return;
	default:
		snprintf(why, sizeof(why), "upload: unexpected HTTP %ld", code);
		item_failed(p, idx, why, false);
	}
}

static void xfer_done(struct pusher *p, struct xfer *x, CURLcode cc)
{
	size_t idx = x->item;
	struct cfs_fetch_verdict v;
	curl_off_t len = -1;
	long code = 0;

	curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &code);
	curl_easy_getinfo(x->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &len);
	xfer_release(x);
	if (cc != CURLE_OK) {
		p->progress->bytes -= x->off;
		transport_failed(p, x, idx, cc);
		return;
	}
	if (code == 401 || code == 403) {
		p->progress->bytes -= x->off;
		refused(p, code);
		return;
	}
	classify(x, cc, code, &v);
	if (code >= 300 && v.outcome == CFS_FETCH_RETRY) {
		p->progress->bytes -= x->off;
		retry_or_fail(p, idx, v.reason);
		return;
	}
	p->failed_in_a_row = 0;
	if (x->is_put)
		put_done(p, x, idx, code);
	else
		head_done(p, idx, code, len);
}

/* ---- the loop ------------------------------------------------------------------------------- */

/* Starts transfers on idle slots: due retries, then PUTs and HEAD retries, then new HEADs. */
static void schedule(struct pusher *p)
{
	uint64_t now = cfs_now_ns();

	for (size_t i = 0; i < p->n_waiting;) {
		if (p->st[p->waiting[i]].due_ns <= now) {
			ring_push(p, p->waiting[i]);
			p->waiting[i] = p->waiting[--p->n_waiting];
		} else {
			i++;
		}
	}
	for (unsigned s = 0; s < p->n_xfers && !p->res->fatal[0] && p->busy < p->n_xfers; s++) {
		struct xfer *x = &p->xfers[s];
		size_t idx;
		int r;

		if (x->busy)
			continue;
		if (p->ring_len) {
			idx = p->ring[p->ring_head];
			p->ring_head = (p->ring_head + 1) % p->n_items;
			p->ring_len--;
		} else if (p->next_head < p->n_items) {
			idx = p->next_head++;
		} else {
			break;
		}
		r = xfer_start(p, x, idx);
		if (r < 0)
			item_failed(p, idx, strerror(-r), true);
	}
}

static uint64_t next_due_ms(const struct pusher *p)
{
	uint64_t now = cfs_now_ns(), best = 1000;

	for (size_t i = 0; i < p->n_waiting; i++) {
		uint64_t due = p->st[p->waiting[i]].due_ns;
		uint64_t ms = due > now ? (due - now) / 1000000ULL + 1 : 0;

		if (ms < best)
			best = ms;
	}
	return best;
}

static int run_transfers(struct pusher *p)
{
	int running = 0;

	for (;;) {
		CURLMsg *msg;
		int left;

		schedule(p);
		if (p->busy == 0 && (p->res->fatal[0] || (p->ring_len == 0 && p->n_waiting == 0 &&
		                                          p->next_head >= p->n_items)))
			return 0;
		if (curl_multi_perform(p->multi, &running) != CURLM_OK)
			return -EIO;
		while ((msg = curl_multi_info_read(p->multi, &left))) {
			char *priv = NULL;

			if (msg->msg != CURLMSG_DONE)
				continue;
			curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
			xfer_done(p, (struct xfer *)priv, msg->data.result);
		}
		if (p->res->fatal[0]) {
			for (unsigned s = 0; s < p->n_xfers; s++)
				xfer_release(&p->xfers[s]);
			continue;
		}
		if (running > 0 || p->n_waiting > 0)
			curl_multi_poll(p->multi, NULL, 0, running > 0 ? 1000 : (int)next_due_ms(p),
			                NULL);
	}
}

/* ---- set-up --------------------------------------------------------------------------------- */

static int pusher_setup(struct pusher *p)
{
	int r;

	p->st = calloc(p->n_items, sizeof(*p->st));
	p->ring = calloc(p->n_items, sizeof(*p->ring));
	p->waiting = calloc(p->n_items, sizeof(*p->waiting));
	p->xfers = calloc(p->n_xfers, sizeof(*p->xfers));
	if (!p->st || !p->ring || !p->waiting || !p->xfers)
		return -ENOMEM;
	for (unsigned s = 0; s < p->n_xfers; s++)
		p->xfers[s].fd = -1;
	p->multi = curl_multi_init();
	/* No "Expect: 100-continue" round trip: objects are usually small. */
	p->headers = curl_slist_append(NULL, "Expect:");
	if (p->headers)
		p->headers =
		    curl_slist_append(p->headers, "Content-Type: application/octet-stream");
	if (!p->multi || !p->headers)
		return -ENOMEM;
	if (p->o->client->token_file) {
		r = cfs_fetch_token_header(p->o->client->token_file, &p->headers);
		if (r < 0)
			return r;
	}
	/* Keep-alive: each slot keeps its connection; never more than the jobs. */
	curl_multi_setopt(p->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)p->n_xfers);
	curl_multi_setopt(p->multi, CURLMOPT_MAXCONNECTS, (long)p->n_xfers);
	for (unsigned s = 0; s < p->n_xfers; s++) {
		r = xfer_init(p, &p->xfers[s]);
		if (r < 0)
			return r;
	}
	return 0;
}

static void pusher_free(struct pusher *p)
{
	for (unsigned s = 0; p->xfers && s < p->n_xfers; s++) {
		xfer_release(&p->xfers[s]);
		if (p->xfers[s].easy)
			curl_easy_cleanup(p->xfers[s].easy);
		free(p->xfers[s].url);
	}
	free(p->xfers);
	if (p->multi)
		curl_multi_cleanup(p->multi);
	/* One of the headers carries the token. */
	for (struct curl_slist *l = p->headers; l; l = l->next)
		explicit_bzero(l->data, strlen(l->data));
	curl_slist_free_all(p->headers);
	free(p->ring);
	free(p->waiting);
	free(p->st);
}

int cfs_fetch_push(const struct cfs_fetch_push_options *o, const struct cfs_fetch_push_item *items,
                   size_t n, struct cfs_fetch_push_result *res)
{
	struct pusher p = {
	    .o = o,
	    .items = items,
	    .n_items = n,
	    .retries = o->client->retries,
	    .rng = cfs_now_ns() | 1,
	    .progress = o->progress,
	    .res = res,
	};
	int r;

	memset(res, 0, sizeof(*res));
	if (n == 0)
		return 0;
	p.base_len = strlen(o->url);
	while (p.base_len > 8 && o->url[p.base_len - 1] == '/')
		p.base_len--;
	p.n_xfers = (unsigned)CFS_MIN((size_t)(o->jobs ? o->jobs : 1), n);
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		return -ENOMEM;
	r = pusher_setup(&p);
	if (r == 0)
		r = run_transfers(&p);
	pusher_free(&p);
	curl_global_cleanup();
	return r;
}
