/* SPDX-License-Identifier: MIT */
/* cfscache: diagnostics of the fetch engine: one blocking HEAD of a URL, and of every server at
 * start (an unreachable one is said so before the first miss). */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/log.h"
#include "fetcher/fetch-internal.h"

static size_t probe_discard(char *buf, size_t size, size_t n, void *userdata)
{
	(void)buf;
	(void)userdata;
	return size * n;
}

/* The HEAD of cfs_fetch_probe with the request headers given. */
static int probe_url(const struct cfs_fetch_options *o, struct curl_slist *headers,
                     const char *url, long *status_ret, char *reason, size_t reason_len)
{
	char errbuf[CURL_ERROR_SIZE] = "";
	CURLcode cc;
	CURL *e;
	int r;

	if (reason_len)
		reason[0] = '\0';
	*status_ret = 0;
	e = curl_easy_init();
	if (!e)
		return -ENOMEM;
	cfs_fetch_easy_setup(e, o, headers);
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, probe_discard);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)o->connect_timeout_ms * 2);
	cc = curl_easy_perform(e);
	if (cc == CURLE_OK) {
		curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, status_ret);
		r = 0;
	} else if (cc == CURLE_FILE_COULDNT_READ_FILE || cc == CURLE_REMOTE_FILE_NOT_FOUND) {
		*status_ret = 404; /* file:// answers absence this way */
		r = 0;
	} else {
		r = cfs_fetch_curl_errno(cc);
		snprintf(reason, reason_len, "%s", errbuf[0] ? errbuf : curl_easy_strerror(cc));
	}
	curl_easy_cleanup(e);
	return r;
}

int cfs_fetch_probe(const struct cfs_fetch_options *o, const char *url, long *status_ret,
                    char *reason, size_t reason_len)
{
	struct curl_slist *headers = NULL;
	int r;

	*status_ret = 0;
	if (o->token_file) {
		r = cfs_fetch_token_header(o->token_file, &headers);
		if (r < 0) {
			snprintf(reason, reason_len, "cannot use token file %s: %s", o->token_file,
			         strerror(-r));
			return r;
		}
	}
	r = probe_url(o, headers, url, status_ret, reason, reason_len);
	curl_slist_free_all(headers);
	return r;
}

void cfs_fetch_probe_servers(struct cfs_fetch *f)
{
	for (size_t i = 0; i < f->n_servers; i++) {
		struct server *s = &f->servers[i];
		char url[4096], reason[256];
		long status;
		int r;

		/* The base URL itself, not an object name: a pull-through tier does not pass it
		 * upstream, and any answer (404 or 403 for a directory) says the server is there. */
		snprintf(url, sizeof(url), "%s/", s->url);
		r = probe_url(&f->o, f->headers, url, &status, reason, sizeof(reason));
		if (r == 0) {
			/* 403 is what a static server says for a directory: only 401 is about us. */
			if (status == 401)
				cfs_warn("server %s answers HTTP 401: check --token-file", s->url);
			continue;
		}
		pthread_mutex_lock(&f->stats.lock);
		/* A transfer may have got through meanwhile: it knows better. */
		if (s->requests == 0)
			s->unreachable = true;
		pthread_mutex_unlock(&f->stats.lock);
		cfs_warn("server %s is unreachable: %s", s->url, reason);
	}
}
