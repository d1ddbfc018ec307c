/* SPDX-License-Identifier: MIT */
/* cfscache: one HTTP attempt of the fetch engine: the easy handle's set-up, its header and body
 * callbacks, and the pure classification of how the attempt ended. */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/util.h"
#include "fetcher/fetch-internal.h"

/* ---- classification ------------------------------------------------------------------------- */

bool cfs_fetch_curl_unreachable(CURLcode cc)
{
	return cc == CURLE_COULDNT_CONNECT || cc == CURLE_COULDNT_RESOLVE_HOST ||
	       cc == CURLE_COULDNT_RESOLVE_PROXY || cc == CURLE_OPERATION_TIMEDOUT;
}

bool cfs_fetch_curl_tls_config(CURLcode cc)
{
	return cc == CURLE_PEER_FAILED_VERIFICATION || cc == CURLE_SSL_CERTPROBLEM ||
	       cc == CURLE_SSL_CACERT_BADFILE || cc == CURLE_SSL_CIPHER ||
	       cc == CURLE_SSL_ENGINE_NOTFOUND || cc == CURLE_UNSUPPORTED_PROTOCOL ||
	       cc == CURLE_URL_MALFORMAT;
}

int cfs_fetch_curl_errno(CURLcode cc)
{
	return cc == CURLE_OPERATION_TIMEDOUT    ? -ETIMEDOUT
	       : cc == CURLE_COULDNT_CONNECT      ? -ECONNREFUSED
	       : cfs_fetch_curl_unreachable(cc)   ? -EHOSTUNREACH
	       : cfs_fetch_curl_tls_config(cc)    ? -EPROTO
	                                          : -EIO;
}

static void verdict_fail(struct cfs_fetch_verdict *v, int err, enum cfs_fetch_fail_kind kind,
                         bool retryable, const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void verdict_fail(struct cfs_fetch_verdict *v, int err, enum cfs_fetch_fail_kind kind,
                         bool retryable, const char *fmt, ...)
{
	va_list ap;

	v->outcome = retryable ? CFS_FETCH_RETRY : CFS_FETCH_NEXT_SERVER;
	v->err = err;
	v->kind = kind;
	va_start(ap, fmt);
	vsnprintf(v->reason, sizeof(v->reason), fmt, ap);
	va_end(ap);
}

void cfs_fetch_classify(const struct cfs_fetch_facts *a, struct cfs_fetch_verdict *v)
{
	CURLcode cc = a->cc;
	const char *msg = a->errbuf && a->errbuf[0] ? a->errbuf : curl_easy_strerror(cc);

	memset(v, 0, sizeof(*v));
	if (a->local_err) {
		v->outcome = CFS_FETCH_GIVE_UP;
		v->err = a->abort_err;
		v->kind = CFS_FETCH_FAIL_LOCAL;
		snprintf(v->reason, sizeof(v->reason), "store: %s", strerror(-a->abort_err));
		return;
	}
	if (cc == CURLE_OK && !a->discard && (a->status == 200 || a->status == 206 || a->status == 0)) {
		v->outcome = CFS_FETCH_SUCCESS;
		return;
	}
	if (a->status == 404 || a->status == 410 || cc == CURLE_FILE_COULDNT_READ_FILE ||
	    cc == CURLE_REMOTE_FILE_NOT_FOUND) {
		v->outcome = CFS_FETCH_NOT_FOUND;
		return;
	}
	if (a->abort_err == -EFBIG || cc == CURLE_FILESIZE_EXCEEDED)
		verdict_fail(v, -EFBIG, CFS_FETCH_FAIL_TOO_LARGE, false, "%s sent more than %llu bytes",
		             a->server, (unsigned long long)a->max_object_size);
	else if (a->bad_range)
		verdict_fail(v, -EIO, CFS_FETCH_FAIL_NETWORK, true,
		             "%s: range answer does not start at %llu", a->server,
		             (unsigned long long)a->range_from);
	else if (a->abort_err)
		verdict_fail(v, a->abort_err, CFS_FETCH_FAIL_NETWORK, true, "%s: %s", a->server,
		             strerror(-a->abort_err));
	else if (a->status >= 300)
		verdict_fail(v, -EIO, CFS_FETCH_FAIL_HTTP,
		             a->status >= 500 || a->status == 408 || a->status == 429 ||
		                 a->status == 416,
		             "%s: HTTP %ld", a->server, a->status);
	else if (cc == CURLE_OPERATION_TIMEDOUT)
		verdict_fail(v, -ETIMEDOUT, CFS_FETCH_FAIL_TIMEOUT, true, "%s: %s", a->server, msg);
	else
		verdict_fail(v, -EIO, CFS_FETCH_FAIL_NETWORK, !cfs_fetch_curl_tls_config(cc), "%s: %s",
		             a->server, msg);
	v->unreachable = !a->abort_err && a->status == 0 && cfs_fetch_curl_unreachable(cc);
	/* A large identity-encoded partial body is kept, to resume it with Range. */
	v->keep_partial = !a->encoded && !a->discard && !a->bad_range && v->err != -EFBIG &&
	                  (a->status == 200 || a->status == 206) && a->body_bytes >= RESUME_MIN;
	if (v->outcome == CFS_FETCH_RETRY && a->tries > a->retries)
		v->outcome = CFS_FETCH_NEXT_SERVER;
}

uint64_t cfs_fetch_backoff_ms(uint64_t *rng, unsigned base_ms, unsigned attempt)
{
	uint64_t d = base_ms;

	for (unsigned i = 1; i < attempt && d < RETRY_DELAY_MAX_MS; i++)
		d *= 2;
	d = CFS_MIN(d, RETRY_DELAY_MAX_MS);
	/* xorshift64: jitter only, not security. */
	*rng ^= *rng << 13;
	*rng ^= *rng >> 7;
	*rng ^= *rng << 17;
	/* Full jitter on the upper half spreads retries of many objects. */
	return d / 2 + (d ? *rng % (d / 2 + 1) : 0);
}

/* ---- curl callbacks ------------------------------------------------------------------------- */

static size_t on_header(char *buf, size_t size, size_t n, void *userdata)
{
	struct job *job = userdata;
	size_t len = size * n;
	const char *v;

	if (len >= 5 && strncmp(buf, "HTTP/", 5) == 0) {
		/* A new response (after a redirect or 100-continue): forget the previous one. */
		job->xfer.have_crange = false;
		job->xfer.encoded = false;
		return len;
	}
	if (len > 14 && strncasecmp(buf, "Content-Range:", 14) == 0) {
		unsigned long long start;
		char tmp[128];

		snprintf(tmp, sizeof(tmp), "%.*s", (int)CFS_MIN(len - 14, sizeof(tmp) - 1),
		         buf + 14);
		if (sscanf(tmp, " bytes %llu-", &start) == 1) {
			job->xfer.have_crange = true;
			job->xfer.crange_start = start;
		}
	} else if (len > 17 && strncasecmp(buf, "Content-Encoding:", 17) == 0) {
		v = buf + 17;
		while (v < buf + len && (*v == ' ' || *v == '\t'))
			v++;
		job->xfer.encoded = !(buf + len - v >= 8 && strncasecmp(v, "identity", 8) == 0);
	}
	return len;
}

/* Makes room for @want more gathered bytes (the buffer never exceeds STAGE_CHUNK). */
static int body_reserve(struct cfs_fetch *f, struct job *job, size_t want)
{
	size_t cap = job->body.buf_cap ? job->body.buf_cap : 16 * 1024;
	curl_off_t cl = -1;
	uint8_t *nb;

	if (job->body.buf_len + want <= job->body.buf_cap)
		return 0;
	if (!job->body.buf_cap && job->body.buf_len == 0 &&
	    curl_easy_getinfo(job->xfer.easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl) ==
	        CURLE_OK &&
	    cl > 0)
		cap = (size_t)CFS_MIN((uint64_t)cl, (uint64_t)STAGE_CHUNK);
	while (cap < job->body.buf_len + want)
		cap *= 2;
	cap = CFS_MIN(cap, (size_t)STAGE_CHUNK);
	nb = NULL;
	if (cap == STAGE_CHUNK) {
		nb = cfs_fetch_stage_spare(f);
		if (nb) {
			if (job->body.buf_len)
				memcpy(nb, job->body.buf, job->body.buf_len);
			free(job->body.buf);
		}
	}
	if (!nb)
		nb = realloc(job->body.buf, cap);
	if (!nb)
		return -ENOMEM;
	job->body.buf = nb;
	job->body.buf_cap = cap;
	return 0;
}

/* The first body bytes: what kind of answer this is. 0, or -errno to abort. */
static int body_check(struct cfs_fetch *f, struct job *job)
{
	int r;

	job->xfer.checked = true;
	curl_easy_getinfo(job->xfer.easy, CURLINFO_RESPONSE_CODE, &job->xfer.status);
	if (job->xfer.status == 206) {
		if (!job->xfer.have_crange || job->xfer.crange_start != job_bytes(job)) {
			job->xfer.bad_range = true;
			return -EIO;
		}
		STAT_ADD(f, resumed, 1);
	} else if (job->xfer.status == 200 || job->xfer.status == 0) {
		r = cfs_fetch_stage_reset_body(f, job);
		if (r < 0) {
			job->xfer.local_err = true;
			return r;
		}
	} else {
		job->xfer.discard = true;
	}
	return 0;
}

static size_t on_body(char *buf, size_t size, size_t n, void *userdata)
{
	struct job *job = userdata;
	struct cfs_fetch *f = job->f;
	size_t len = size * n, left = len;
	uint64_t now;
	int r;

	if (!job->xfer.checked) {
		r = body_check(f, job);
		if (r < 0) {
			job->xfer.abort_err = r;
			return 0;
		}
	}
	if (job->xfer.discard) {
		job->xfer.discarded += len;
		return job->xfer.discarded > ERROR_BODY_MAX ? 0 : len;
	}
	if (job_bytes(job) + len > f->o.max_object_size) {
		job->xfer.abort_err = -EFBIG;
		return 0;
	}
	/* A write error of the stager ends the transfer as the writer's own error would. */
	r = job->body.st ? atomic_load(&job->body.st->err) : 0;
	now = cfs_now_ns();
	if (job->body.buf_len == 0)
		job->body.buf_since = now;
	while (r == 0 && left) {
		size_t k;

		r = body_reserve(f, job, CFS_MIN(left, (size_t)STAGE_CHUNK - job->body.buf_len));
		if (r < 0)
			break;
		k = CFS_MIN(left, job->body.buf_cap - job->body.buf_len);
		memcpy(job->body.buf + job->body.buf_len, buf + (len - left), k);
		job->body.buf_len += k;
		left -= k;
		if (job->body.buf_len == STAGE_CHUNK) {
			r = cfs_fetch_stage_post(f, job, SOP_DATA);
			job->body.buf_since = now;
		}
	}
	if (r == 0 && job->body.buf_len && now - job->body.buf_since >= STAGE_FLUSH_NS)
		r = cfs_fetch_stage_post(f, job, SOP_DATA);
	if (r < 0) {
		job->xfer.abort_err = r;
		job->xfer.local_err = true;
		return 0;
	}
	job->xfer.bytes += len;
	return len;
}

/* ---- handles -------------------------------------------------------------------------------- */

void cfs_fetch_easy_setup(CURL *e, const struct cfs_fetch_options *o, struct curl_slist *headers)
{
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)o->connect_timeout_ms);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https,file");
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L);
	curl_easy_setopt(e, CURLOPT_MAXREDIRS, 5L);
	curl_easy_setopt(e, CURLOPT_USERAGENT,
	                 o->user_agent ? o->user_agent : "cfscache/" PACKAGE_VERSION);
	if (headers)
		curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers);
	if (o->ca_file)
		curl_easy_setopt(e, CURLOPT_CAINFO, o->ca_file);
	if (o->client_cert)
		curl_easy_setopt(e, CURLOPT_SSLCERT, o->client_cert);
	if (o->client_key)
		curl_easy_setopt(e, CURLOPT_SSLKEY, o->client_key);
	if (o->insecure) {
		curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
		curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
	}
}

static CURL *easy_new(struct cfs_fetch *f)
{
	const struct cfs_fetch_options *o = &f->o;
	CURL *e = curl_easy_init();

	if (!e)
		return NULL;
	cfs_fetch_easy_setup(e, o, f->headers);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, (long)o->low_speed_bytes);
	curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, (long)o->low_speed_secs);
	curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)o->max_object_size);
	curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(e, CURLOPT_BUFFERSIZE, 256L * 1024);
	curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
	return e;
}

void cfs_fetch_attempt_put_easy(struct cfs_fetch *f, struct job *job)
{
	CURL *easy = job->xfer.easy;

	job->xfer.easy = NULL;
	if (!easy)
		return;
	if (f->engine.npool < f->o.max_transfers) {
		f->engine.pool[f->engine.npool++] = easy;
		return;
	}
	curl_easy_cleanup(easy);
}

int cfs_fetch_attempt_start(struct cfs_fetch *f, struct job *job)
{
	const struct server *s = &f->servers[job->server];
	char url[4096];
	char range[32];
	CURL *e = job->xfer.easy;

	if (!e) {
		e = f->engine.npool ? f->engine.pool[--f->engine.npool] : easy_new(f);
		if (!e)
			return -ENOMEM;
		job->xfer.easy = e;
	}
	snprintf(url, sizeof(url), "%s/%s", s->url, job->path);
	job->xfer.range_from = job_bytes(job);
	job->xfer.checked = job->xfer.discard = job->xfer.encoded = false;
	job->xfer.have_crange = job->xfer.local_err = job->xfer.bad_range = false;
	job->xfer.status = 0;
	job->xfer.abort_err = 0;
	job->xfer.discarded = job->xfer.bytes = 0;
	job->xfer.errbuf[0] = '\0';
	curl_easy_setopt(e, CURLOPT_URL, url);
	/* Over TLS, wait for a connection that may turn out to be HTTP/2 and multiplex on it. Not
	 * over plain HTTP: HTTP/1.1 connections would then be used one transfer at a time. */
	curl_easy_setopt(e, CURLOPT_PIPEWAIT, strncmp(s->url, "https:", 6) == 0 ? 1L : 0L);
	curl_easy_setopt(e, CURLOPT_PRIVATE, job);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, job);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, job);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, job->xfer.errbuf);
	if (job->xfer.range_from > 0) {
		/* Byte ranges are only meaningful on the identity encoding. */
		snprintf(range, sizeof(range), "%llu-", (unsigned long long)job->xfer.range_from);
		curl_easy_setopt(e, CURLOPT_RANGE, range);
		curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, NULL);
	} else {
		curl_easy_setopt(e, CURLOPT_RANGE, NULL);
		curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, f->zstd ? "zstd" : NULL);
	}
	return curl_multi_add_handle(f->multi, e) == CURLM_OK ? 0 : -ENOMEM;
}

void cfs_fetch_attempt_end(struct cfs_fetch *f, struct job *job, CURLcode cc,
                           struct cfs_fetch_verdict *v)
{
	struct cfs_fetch_facts a;

	curl_multi_remove_handle(f->multi, job->xfer.easy);
	if (!job->xfer.checked)
		curl_easy_getinfo(job->xfer.easy, CURLINFO_RESPONSE_CODE, &job->xfer.status);
	a = (struct cfs_fetch_facts){
	    .cc = cc,
	    .status = job->xfer.status,
	    .abort_err = job->xfer.abort_err,
	    .local_err = job->xfer.local_err,
	    .bad_range = job->xfer.bad_range,
	    .discard = job->xfer.discard,
	    .encoded = job->xfer.encoded,
	    .body_bytes = job_bytes(job),
	    .range_from = job->xfer.range_from,
	    .tries = job->tries,
	    .retries = f->o.retries,
	    .max_object_size = f->o.max_object_size,
	    .server = f->servers[job->server].url,
	    .errbuf = job->xfer.errbuf,
	};
	cfs_fetch_classify(&a, v);
}

uint64_t cfs_fetch_attempt_space_needed(const struct job *job)
{
	curl_off_t cl = -1;
	uint64_t need = job_bytes(job);

	if (job->xfer.easy &&
	    curl_easy_getinfo(job->xfer.easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl) == CURLE_OK &&
	    cl > 0 && !job->xfer.encoded)
		need = CFS_MAX(need, job->xfer.range_from + (uint64_t)cl);
	return need + (1u << 20);
}

int cfs_fetch_token_read(const char *path, char **token_ret)
{
	char *token = NULL;
	int r = cfs_read_small_file(path, 8192, &token);

	if (r < 0)
		return r;
	if (!token[0] || strpbrk(token, "\r\n")) {
		explicit_bzero(token, strlen(token));
		free(token);
		return -EINVAL;
	}
	*token_ret = token;
	return 0;
}

int cfs_fetch_token_header(const char *path, struct curl_slist **list)
{
	char *token = NULL, *header = NULL;
	struct curl_slist *nl;
	int r;

	r = cfs_fetch_token_read(path, &token);
	if (r < 0)
		return r;
	if (asprintf(&header, "Authorization: Bearer %s", token) < 0) {
		header = NULL;
		r = -ENOMEM;
		goto out;
	}
	nl = curl_slist_append(*list, header);
	if (!nl) {
		r = -ENOMEM;
		goto out;
	}
	*list = nl;
	r = 0;
out:
	explicit_bzero(token, strlen(token));
	if (header)
		explicit_bzero(header, strlen(header));
	free(token);
	free(header);
	return r;
}
