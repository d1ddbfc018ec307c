/* SPDX-License-Identifier: MIT */
/* cfscache: `cfs-store push`: publish a store's (or some images') objects to an upload server. */
#include "config.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/digestset.h"
#include "common/log.h"
#include "common/name.h"
#include "common/progress.h"
#include "common/store.h"
#include "common/util.h"
#include "image/image.h"
#include "tools/cmds.h"

#define PUSH_MAX_JOBS 256
#define PUSH_MAX_IMAGES 64
#define PUSH_MAX_TOKEN 4096
/* Failures logged one by one; the rest are only counted. */
#define PUSH_LOG_FAILURES 20
/* Objects that exhausted their retries in a row before push stops altogether. */
#define PUSH_GIVE_UP 3

enum item_state {
	ST_HEAD,     /* not yet known whether the server has it */
	ST_PUT,      /* missing on the server: upload it */
	ST_PRESENT,  /* the server had it */
	ST_UPLOADED, /* we uploaded it (or a racing writer did: 204) */
	ST_FAILED,
};

/* A record of a struct cfs_digestset while the objects are collected: the digest first. */
struct push_item {
	uint8_t digest[CFS_DIGEST_SIZE];
	uint64_t size;
	uint64_t due_ns; /* retry time while waiting */
	uint8_t state;
	uint8_t attempts; /* failed attempts of the current request kind */
};

struct push;

struct xfer {
	struct push *push;
	CURL *easy;
	size_t item;
	bool busy, is_put;
	int fd;
	uint64_t off; /* body bytes handed to curl */
	char *url;
	char errbuf[CURL_ERROR_SIZE];
};

struct push {
	struct cfs_store *store;
	struct push_item *items;
	size_t n_items;
	const char *base;
	size_t base_len;
	const char *token_file;
	bool dry_run;
	unsigned retries;

	CURLM *multi;
	struct curl_slist *headers;
	struct xfer *xfers;
	unsigned n_xfers, busy;

	/* Work: items in the ready ring (HEAD retries and PUTs) go before fresh HEADs. */
	size_t *ring, ring_head, ring_len;
	size_t next_head;
	size_t *waiting, n_waiting; /* backing off before a retry */

	struct cfs_progress progress;
	uint64_t present, uploaded, uploaded_bytes, missing_bytes, failed, failures_logged;
	unsigned failed_in_a_row; /* objects given up on after retries, since the last success */
	const char *fatal;        /* a reason to stop everything (token, uploads refused, TLS) */
	char fatal_msg[CURL_ERROR_SIZE + 64];
};

/* ---- collecting the objects ---- */

static int iter_add(const struct cfs_store_entry *e, void *userdata)
{
	struct push_item *it;
	int r = cfs_digestset_add(userdata, e->digest, (void **)&it);

	if (r == 0)
		it->size = (uint64_t)e->st.st_size;
	return r;
}

struct in_store_ctx {
	struct cfs_store *store;
	size_t missing;
};

/* Keeps the objects the store has, with their sizes; logs the first missing ones. */
static bool keep_in_store(void *record, void *userdata)
{
	struct in_store_ctx *ctx = userdata;
	struct push_item *it = record;
	char path[CFS_NAME_PATH_LEN + 1];
	struct stat st;
	int r = cfs_store_lookup(ctx->store, it->digest, &st);

	if (r == 0) {
		it->size = (uint64_t)st.st_size;
		return true;
	}
	cfs_name_format_path(it->digest, path);
	if (++ctx->missing <= PUSH_LOG_FAILURES)
		cfs_err("%s: %s", path,
		        r == -ENOENT ? "referenced by the image but missing from the store"
		                     : strerror(-r));
	return false;
}

/* Adds the objects of every image to @set, once each; all must be in the store. Returns 0 or
 * -errno (reported). */
static int collect_image_objects(struct push *p, char **images, size_t n_images,
                                 struct cfs_digestset *set)
{
	struct in_store_ctx ctx = {p->store, 0};
	int r = 0;

	for (size_t i = 0; i < n_images; i++) {
		struct cfs_image *img = NULL;
		uint8_t *d = NULL;
		size_t cnt = 0;
		char msg[256] = "";

		r = cfs_image_open_msg(images[i], &img, msg, sizeof(msg));
		if (r == 0)
			r = cfs_image_objects(img, &d, &cnt);
		if (r < 0) {
			cfs_err("%s: %s", images[i],
			        img      ? cfs_image_error(img)
			        : msg[0] ? msg
			                 : strerror(-r));
			cfs_image_free(img);
			return r;
		}
		cfs_image_free(img);
		for (size_t k = 0; k < cnt && r == 0; k++)
			r = cfs_digestset_add(set, d + k * CFS_DIGEST_SIZE, NULL);
		free(d);
		if (r < 0)
			return r;
	}
	cfs_digestset_seal(set);
	cfs_digestset_filter(set, keep_in_store, &ctx);
	if (ctx.missing) {
		cfs_err("%zu object(s) of the image(s) missing from store %s; nothing pushed",
		        ctx.missing, cfs_store_path(p->store));
		return -ENOENT;
	}
	return 0;
}

/* The objects to push into p->items: the images' (sorted), or the whole store's (in the store's
 * order). Returns 0 or -errno (reported). */
static int collect_items(struct push *p, char **images, size_t n_images, const char *store_path)
{
	struct cfs_digestset set;
	int r;

	cfs_digestset_init(&set, sizeof(struct push_item));
	if (n_images) {
		r = collect_image_objects(p, images, n_images, &set);
	} else {
		r = cfs_store_iter(p->store, false, iter_add, &set);
		if (r < 0)
			cfs_err("cannot list store %s: %s", store_path, strerror(-r));
	}
	if (r == 0)
		p->items = cfs_digestset_steal(&set, &p->n_items);
	cfs_digestset_free(&set);
	return r;
}

/* ---- transfers ---- */

static size_t discard_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	(void)ptr;
	(void)userdata;
	return size * nmemb;
}

static size_t read_body(char *buf, size_t size, size_t nmemb, void *userdata)
{
	struct xfer *x = userdata;
	uint64_t want = x->push->items[x->item].size - x->off;
	ssize_t n;

	if (want > size * nmemb)
		want = size * nmemb;
	if (want == 0)
		return 0;
	n = cfs_pread_full(x->fd, buf, (size_t)want, (off_t)x->off);
	if (n <= 0) /* a short file would make curl send a short body: abort instead */
		return CURL_READFUNC_ABORT;
	x->off += (uint64_t)n;
	cfs_progress_add(&x->push->progress, 0, (uint64_t)n);
	return (size_t)n;
}

/* curl rewinds the body when it resends a request (a reused connection that was closed). */
static int seek_body(void *userdata, curl_off_t offset, int origin)
{
	struct xfer *x = userdata;

	if (origin != SEEK_SET || offset < 0 || (uint64_t)offset > x->push->items[x->item].size)
		return CURL_SEEKFUNC_FAIL;
	x->push->progress.bytes -= x->off - (uint64_t)offset;
	x->off = (uint64_t)offset;
	return CURL_SEEKFUNC_OK;
}

static int xfer_init(struct push *p, struct xfer *x, const char *ca_file, bool insecure)
{
	x->push = p;
	x->fd = -1;
	x->url = malloc(p->base_len + CFS_NAME_PATH_LEN + 2);
	x->easy = curl_easy_init();
	if (!x->url || !x->easy)
		return -ENOMEM;
	memcpy(x->url, p->base, p->base_len);
	x->url[p->base_len] = '/';
	curl_easy_setopt(x->easy, CURLOPT_PRIVATE, x);
	curl_easy_setopt(x->easy, CURLOPT_ERRORBUFFER, x->errbuf);
	curl_easy_setopt(x->easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(x->easy, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(x->easy, CURLOPT_HTTPHEADER, p->headers);
	curl_easy_setopt(x->easy, CURLOPT_USERAGENT, "cfs-store-push/" PACKAGE_VERSION);
	curl_easy_setopt(x->easy, CURLOPT_WRITEFUNCTION, discard_body);
	curl_easy_setopt(x->easy, CURLOPT_READFUNCTION, read_body);
	curl_easy_setopt(x->easy, CURLOPT_READDATA, x);
	curl_easy_setopt(x->easy, CURLOPT_SEEKFUNCTION, seek_body);
	curl_easy_setopt(x->easy, CURLOPT_SEEKDATA, x);
	curl_easy_setopt(x->easy, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(x->easy, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
	/* A stalled server: abort below 1 KiB/s for 30 s, then retry. */
	curl_easy_setopt(x->easy, CURLOPT_LOW_SPEED_LIMIT, 1024L);
	curl_easy_setopt(x->easy, CURLOPT_LOW_SPEED_TIME, 30L);
	curl_easy_setopt(x->easy, CURLOPT_UPLOAD_BUFFERSIZE, 256L * 1024);
	if (ca_file)
		curl_easy_setopt(x->easy, CURLOPT_CAINFO, ca_file);
	if (insecure) {
		curl_easy_setopt(x->easy, CURLOPT_SSL_VERIFYPEER, 0L);
		curl_easy_setopt(x->easy, CURLOPT_SSL_VERIFYHOST, 0L);
	}
	return 0;
}

static void xfer_release(struct xfer *x)
{
	if (x->busy) {
		curl_multi_remove_handle(x->push->multi, x->easy);
		x->busy = false;
		x->push->busy--;
	}
	if (x->fd >= 0)
		close(x->fd);
	x->fd = -1;
}

static int xfer_start(struct push *p, struct xfer *x, size_t idx)
{
	struct push_item *it = &p->items[idx];
	CURLMcode mc;
	int r;

	x->item = idx;
	x->is_put = it->state == ST_PUT;
	x->off = 0;
	x->errbuf[0] = '\0';
	cfs_name_format_path(it->digest, x->url + p->base_len + 1);
	curl_easy_setopt(x->easy, CURLOPT_URL, x->url);
	if (x->is_put) {
		r = cfs_store_open_object(p->store, it->digest, &x->fd);
		if (r < 0)
			return r;
		curl_easy_setopt(x->easy, CURLOPT_NOBODY, 0L);
		curl_easy_setopt(x->easy, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(x->easy, CURLOPT_INFILESIZE_LARGE, (curl_off_t)it->size);
	} else {
		curl_easy_setopt(x->easy, CURLOPT_UPLOAD, 0L);
		curl_easy_setopt(x->easy, CURLOPT_NOBODY, 1L);
	}
	mc = curl_multi_add_handle(p->multi, x->easy);
	if (mc != CURLM_OK) {
		if (x->fd >= 0)
			close(x->fd);
		x->fd = -1;
		return -ENOMEM;
	}
	x->busy = true;
	p->busy++;
	return 0;
}

static void log_line(struct push *p, enum cfs_log_level level, const char *path, const char *what)
{
	cfs_progress_done(&p->progress);
	cfs_log(level, "%s: %s", path, what);
}

static void item_failed(struct push *p, size_t idx, const char *why, bool always_log)
{
	char path[CFS_NAME_PATH_LEN + 1];

	p->items[idx].state = ST_FAILED;
	p->failed++;
	cfs_progress_add(&p->progress, 1, 0);
	if (!always_log && ++p->failures_logged > PUSH_LOG_FAILURES)
		return;
	cfs_name_format_path(p->items[idx].digest, path);
	log_line(p, CFS_LOG_ERR, path, why);
}

static void ring_push(struct push *p, size_t idx)
{
	p->ring[(p->ring_head + p->ring_len) % p->n_items] = idx;
	p->ring_len++;
}

static void retry_or_fail(struct push *p, size_t idx, const char *why)
{
	struct push_item *it = &p->items[idx];
	uint64_t delay_ms;

	if (it->attempts >= p->retries) {
		item_failed(p, idx, why, false);
		/* A server that is down fails every object the same way: stop asking. */
		if (++p->failed_in_a_row >= PUSH_GIVE_UP && !p->fatal) {
			snprintf(p->fatal_msg, sizeof(p->fatal_msg),
			         "giving up after %d objects failed in a row (last: %s)",
			         PUSH_GIVE_UP, why);
			p->fatal = p->fatal_msg;
		}
		return;
	}
	it->attempts++;
	/* 250 ms, 500 ms, 1 s...: enough for a restarting server, with a little jitter. */
	delay_ms = (250ULL << (it->attempts - 1)) + (uint64_t)(rand() % 100);
	it->due_ns = cfs_now_ns() + delay_ms * 1000000ULL;
	p->waiting[p->n_waiting++] = idx;
	cfs_debug("retrying in %llu ms: %s", (unsigned long long)delay_ms, why);
}

static bool transient_curl_error(CURLcode rc)
{
	switch (rc) {
	case CURLE_COULDNT_CONNECT:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_SEND_FAIL_REWIND:
		return true;
	default:
		return false;
	}
}

static bool fatal_curl_error(CURLcode rc)
{
	switch (rc) {
	case CURLE_UNSUPPORTED_PROTOCOL:
	case CURLE_URL_MALFORMAT:
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_CERTPROBLEM:
		return true;
	default:
		return false;
	}
}

static void set_fatal(struct push *p, const char *why)
{
	if (!p->fatal)
		p->fatal = why;
}

static void xfer_done(struct push *p, struct xfer *x, CURLcode rc)
{
	size_t idx = x->item;
	struct push_item *it = &p->items[idx];
	bool was_put = x->is_put;
	long code = 0;
	char why[CURL_ERROR_SIZE + 64], path[CFS_NAME_PATH_LEN + 1];
	curl_off_t len = -1;

	curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &code);
	curl_easy_getinfo(x->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &len);
	if (rc != CURLE_OK) {
		snprintf(why, sizeof(why), "%s: %s", was_put ? "upload" : "HEAD",
		         x->errbuf[0] ? x->errbuf : curl_easy_strerror(rc));
		p->progress.bytes -= x->off;
	}
	xfer_release(x);
	if (rc != CURLE_OK) {
		if (fatal_curl_error(rc)) {
			if (!p->fatal) {
				snprintf(p->fatal_msg, sizeof(p->fatal_msg), "%s", why);
				p->fatal = p->fatal_msg;
			}
		} else if (transient_curl_error(rc)) {
			retry_or_fail(p, idx, why);
		} else {
			item_failed(p, idx, why, false);
		}
		return;
	}
	if (code == 401 || code == 403) {
		p->progress.bytes -= x->off;
		if (!p->token_file)
			set_fatal(p, "the server requires a token: give --token-file FILE");
		else if (code == 401)
			set_fatal(p, "the server refused the token (HTTP 401): check --token-file");
		else
			set_fatal(p,
			          "the server forbids this (HTTP 403): the token may lack upload "
			          "rights");
		return;
	}
	if (code >= 500 || code == 408 || code == 429) {
		p->progress.bytes -= x->off;
		snprintf(why, sizeof(why), "%s: HTTP %ld", was_put ? "upload" : "HEAD", code);
		retry_or_fail(p, idx, why);
		return;
	}
	p->failed_in_a_row = 0;
	if (!was_put) {
		if (code == 200) {
			if (len >= 0 && (uint64_t)len != it->size) {
				snprintf(
				    why, sizeof(why),
				    "the server has %lld bytes under this name, the store %llu",
				    (long long)len, (unsigned long long)it->size);
				item_failed(p, idx, why, true);
				return;
			}
			it->state = ST_PRESENT;
			p->present++;
			cfs_progress_add(&p->progress, 1, 0);
		} else if (code == 404 || code == 410) {
			it->attempts = 0;
			p->missing_bytes += it->size;
			if (p->dry_run) {
				cfs_name_format_path(it->digest, path);
				cfs_progress_done(&p->progress);
				printf("missing: %s\n", path);
				it->state = ST_UPLOADED; /* counted as to be uploaded */
				p->uploaded++;
				p->uploaded_bytes += it->size;
				cfs_progress_add(&p->progress, 1, 0);
			} else {
				it->state = ST_PUT;
				ring_push(p, idx);
			}
		} else {
			snprintf(why, sizeof(why), "HEAD: unexpected HTTP %ld", code);
			item_failed(p, idx, why, false);
		}
		return;
	}
	switch (code) {
	case 200:
	case 201:
		it->state = ST_UPLOADED;
		p->uploaded++;
		p->uploaded_bytes += it->size;
		cfs_progress_add(&p->progress, 1, 0);
		return;
	case 204: /* someone else uploaded it meanwhile */
		p->progress.bytes -= x->off;
		it->state = ST_PRESENT;
		p->present++;
		cfs_progress_add(&p->progress, 1, 0);
		return;
	case 405:
	case 501:
		p->progress.bytes -= x->off;
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

/* Starts transfers on idle slots: due retries, then PUTs and HEAD retries, then new HEADs. */
static void schedule(struct push *p)
{
	uint64_t now = cfs_now_ns();

	for (size_t i = 0; i < p->n_waiting;) {
		if (p->items[p->waiting[i]].due_ns <= now) {
			ring_push(p, p->waiting[i]);
			p->waiting[i] = p->waiting[--p->n_waiting];
		} else {
			i++;
		}
	}
	for (unsigned s = 0; s < p->n_xfers && !p->fatal && p->busy < p->n_xfers; s++) {
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

static uint64_t next_due_ms(const struct push *p)
{
	uint64_t now = cfs_now_ns(), best = 1000;

	for (size_t i = 0; i < p->n_waiting; i++) {
		uint64_t due = p->items[p->waiting[i]].due_ns;
		uint64_t ms = due > now ? (due - now) / 1000000ULL + 1 : 0;

		if (ms < best)
			best = ms;
	}
	return best;
}

static int run_transfers(struct push *p)
{
	int running = 0;

	for (;;) {
		CURLMsg *msg;
		int left;

		schedule(p);
		if (p->busy == 0 && (p->fatal || (p->ring_len == 0 && p->n_waiting == 0 &&
		                                  p->next_head >= p->n_items)))
			break;
		if (curl_multi_perform(p->multi, &running) != CURLM_OK)
			return -EIO;
		while ((msg = curl_multi_info_read(p->multi, &left))) {
			char *priv = NULL;

			if (msg->msg != CURLMSG_DONE)
				continue;
			curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
			xfer_done(p, (struct xfer *)priv, msg->data.result);
		}
		if (p->fatal) {
			for (unsigned s = 0; s < p->n_xfers; s++)
				xfer_release(&p->xfers[s]);
			continue;
		}
		if (running > 0 || p->n_waiting > 0)
			curl_multi_poll(p->multi, NULL, 0, running > 0 ? 1000 : (int)next_due_ms(p),
			                NULL);
	}
	return 0;
}

/* ---- the command ---- */

static void print_push_help(void)
{
	printf(
	    "Usage: cfs-store push [OPTIONS] STORE URL\n\n"
	    "Publishes objects to a server that accepts uploads (cfs-serve --allow-upload):\n"
	    "asks with HEAD which ones it lacks and PUTs those, several at a time. URL is the\n"
	    "objects base, e.g. https://origin:8443/objects.\n\n"
	    "  -i, --image IMAGE     only the objects this composefs image refers to\n"
	    "                        (repeatable); all must be in STORE\n"
	    "  -t, --token-file F    send 'Authorization: Bearer <contents of F>'\n"
	    "  -j, --jobs N          concurrent requests (default 8)\n"
	    "      --retries N       extra attempts after a 5xx or network error (default 2)\n"
	    "      --ca-file F       CA certificates for an HTTPS server\n"
	    "  -k, --insecure        do not verify the server's certificate (testing only)\n"
	    "  -n, --dry-run         only ask; list the missing objects\n"
	    "  -h, --help            this help\n\n"
	    "The global options (-q, -v, --log-level, --no-progress) go before or after the\n"
	    "command. Exit status 0 when every object is on the server afterwards, 1 otherwise.\n");
}

int cfs_cmd_push(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"help", no_argument, NULL, 'h'},
	    {"image", required_argument, NULL, 'i'},
	    {"token-file", required_argument, NULL, 't'},
	    {"jobs", required_argument, NULL, 'j'},
	    {"retries", required_argument, NULL, 'r'},
	    {"ca-file", required_argument, NULL, 'C'},
	    {"insecure", no_argument, NULL, 'k'},
	    {"dry-run", no_argument, NULL, 'n'},
	    {NULL, 0, NULL, 0},
	};
	char *images[PUSH_MAX_IMAGES];
	size_t n_images = 0;
	const char *ca_file = NULL, *store_path, *url;
	unsigned long jobs = 8, retries = 2;
	bool insecure = false, curl_inited = false;
	struct push p = {0};
	char *token = NULL, *auth = NULL, b1[32], b2[32];
	uint64_t total_bytes = 0;
	double secs;
	int c, r, ret = 1;

	while ((c = getopt_long(argc, argv, "hi:t:j:kn", opts, NULL)) != -1) {
		char *end;

		switch (c) {
		case 'h':
			print_push_help();
			return 0;
		case 'i':
			if (n_images == PUSH_MAX_IMAGES)
				return cfs_tool_usage_error("push", "at most %d --image",
				                            PUSH_MAX_IMAGES);
			images[n_images++] = optarg;
			break;
		case 't':
			p.token_file = optarg;
			break;
		case 'j':
			jobs = strtoul(optarg, &end, 10);
			if (*end || end == optarg || jobs < 1 || jobs > PUSH_MAX_JOBS)
				return cfs_tool_usage_error("push", "invalid --jobs '%s' (1..%d)",
				                            optarg, PUSH_MAX_JOBS);
			break;
		case 'r':
			retries = strtoul(optarg, &end, 10);
			if (*end || end == optarg || retries > 10)
				return cfs_tool_usage_error(
				    "push", "invalid --retries '%s' (0..10)", optarg);
			break;
		case 'C':
			ca_file = optarg;
			break;
		case 'k':
			insecure = true;
			break;
		case 'n':
			p.dry_run = true;
			break;
		default:
			return cfs_tool_usage_error("push", "unknown option");
		}
	}
	if (argc - optind != 2)
		return cfs_tool_usage_error("push", "need a store and a URL");
	store_path = argv[optind];
	url = argv[optind + 1];
	if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0)
		return cfs_tool_usage_error("push", "URL must start with http:// or https://");
	p.base = url;
	p.base_len = strlen(url);
	while (p.base_len > 8 && url[p.base_len - 1] == '/')
		p.base_len--;
	p.retries = (unsigned)retries;

	if (p.token_file) {
		r = cfs_read_small_file(p.token_file, PUSH_MAX_TOKEN, &token);
		if (r < 0) {
			cfs_err("cannot read token file %s: %s", p.token_file, strerror(-r));
			goto out;
		}
		if (!token[0] || strpbrk(token, "\r\n")) {
			cfs_err("token file %s must hold one non-empty line", p.token_file);
			goto out;
		}
	}
	r = cfs_store_open(store_path, CFS_STORE_NO_CLEAN, &p.store);
	if (r < 0) {
		cfs_err("cannot open store %s: %s", store_path, strerror(-r));
		goto out;
	}
	r = collect_items(&p, images, n_images, store_path);
	if (r < 0)
		goto out;
	for (size_t i = 0; i < p.n_items; i++)
		total_bytes += p.items[i].size;

	if (p.n_items) {
		p.ring = calloc(p.n_items, sizeof(*p.ring));
		p.waiting = calloc(p.n_items, sizeof(*p.waiting));
		p.n_xfers = (unsigned)CFS_MIN((size_t)jobs, p.n_items);
		p.xfers = calloc(p.n_xfers, sizeof(*p.xfers));
		if (!p.ring || !p.waiting || !p.xfers) {
			cfs_err("out of memory");
			goto out;
		}
		for (unsigned s = 0; s < p.n_xfers; s++)
			p.xfers[s].fd = -1;
		if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
			cfs_err("cannot initialise libcurl");
			goto out;
		}
		curl_inited = true;
		p.multi = curl_multi_init();
		/* No "Expect: 100-continue" round trip: objects are usually small. */
		p.headers = curl_slist_append(NULL, "Expect:");
		if (p.headers)
			p.headers =
			    curl_slist_append(p.headers, "Content-Type: application/octet-stream");
		if (token) {
			if (asprintf(&auth, "Authorization: Bearer %s", token) < 0)
				auth = NULL;
			if (auth && p.headers)
				p.headers = curl_slist_append(p.headers, auth);
		}
		if (!p.multi || !p.headers || (token && !auth)) {
			cfs_err("out of memory");
			goto out;
		}
		/* Keep-alive: each slot keeps its connection; never more than --jobs. */
		curl_multi_setopt(p.multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)p.n_xfers);
		curl_multi_setopt(p.multi, CURLMOPT_MAXCONNECTS, (long)p.n_xfers);
		for (unsigned s = 0; s < p.n_xfers; s++) {
			if (xfer_init(&p, &p.xfers[s], ca_file, insecure) < 0) {
				cfs_err("out of memory");
				goto out;
			}
		}
	}

	cfs_progress_init(&p.progress, p.dry_run ? "checking" : "pushing", p.n_items, 0,
	                  cfs_tool_no_progress || cfs_tool_quiet);
	if (p.n_items && run_transfers(&p) < 0) {
		cfs_err("libcurl multi interface failed");
		goto out;
	}
	cfs_progress_done(&p.progress);
	secs = cfs_progress_elapsed(&p.progress);
	if (p.fatal) {
		cfs_err("%s: %s", url, p.fatal);
		p.failed = p.n_items - p.present - p.uploaded;
	} else if (p.failures_logged > PUSH_LOG_FAILURES) {
		cfs_err("... and %llu more failures",
		        (unsigned long long)(p.failures_logged - PUSH_LOG_FAILURES));
	}
	if (!cfs_tool_quiet || p.failed) {
		printf("%zu objects (%s): %llu %s (%s), %llu already present, %llu failed; "
		       "%.2f s\n",
		       p.n_items, cfs_format_size(total_bytes, b1, sizeof(b1)),
		       (unsigned long long)p.uploaded, p.dry_run ? "missing" : "uploaded",
		       cfs_format_size(p.uploaded_bytes, b2, sizeof(b2)),
		       (unsigned long long)p.present, (unsigned long long)p.failed, secs);
	}
	if (fflush(stdout) != 0)
		goto out;
	ret = p.failed || p.fatal ? 1 : 0;
out:
	for (unsigned s = 0; p.xfers && s < p.n_xfers; s++) {
		xfer_release(&p.xfers[s]);
		if (p.xfers[s].easy)
			curl_easy_cleanup(p.xfers[s].easy);
		free(p.xfers[s].url);
	}
	free(p.xfers);
	if (p.multi)
		curl_multi_cleanup(p.multi);
	curl_slist_free_all(p.headers);
	if (curl_inited)
		curl_global_cleanup();
	if (auth) {
		explicit_bzero(auth, strlen(auth));
		free(auth);
	}
	if (token) {
		explicit_bzero(token, strlen(token));
		free(token);
	}
	free(p.ring);
	free(p.waiting);
	free(p.items);
	cfs_store_free(p.store);
	return ret;
}
