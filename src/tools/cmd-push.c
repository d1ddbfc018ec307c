/* SPDX-License-Identifier: MIT */
/* cfscache: `cfs-store push`: publish a store's (or some images') objects to an upload server,
 * through the fetcher's upload client (fetcher/fetch-push.h). */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/digestset.h"
#include "common/log.h"
#include "common/name.h"
#include "common/progress.h"
#include "common/store.h"
#include "common/util.h"
#include "fetcher/fetch-opts.h"
#include "fetcher/fetch-push.h"
#include "image/image.h"
#include "tools/cmds.h"

#define PUSH_MAX_JOBS 256
#define PUSH_MAX_IMAGES 64
/* Missing objects of an image named one by one; the rest are only counted. */
#define PUSH_LOG_MISSING 20
/* The client options push takes; --token-file is -t, --insecure -k. */
#define PUSH_OPTS (CFS_FETCH_OPT(RETRIES) | CFS_FETCH_OPT_TLS)
#define PUSH_OPT_BASE 0x400

/* A push run: what the options said, then the objects and the outcome. */
struct push {
	struct cfs_fetch_opts client;
	char *images[PUSH_MAX_IMAGES];
	size_t n_images;
	const char *store_path, *url;
	unsigned jobs;
	bool dry_run;
	struct cfs_store *store;
	struct cfs_fetch_push_item *items;
	size_t n_items;
	uint64_t total_bytes;
	struct cfs_progress progress;
	struct cfs_fetch_push_result res;
};

/* ---- collecting the objects ---- */

static int iter_add(const struct cfs_store_entry *e, void *userdata)
{
	struct cfs_fetch_push_item *it;
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
	struct cfs_fetch_push_item *it = record;
	char path[CFS_NAME_PATH_LEN + 1];
	struct stat st;
	int r = cfs_store_lookup(ctx->store, it->digest, &st);

	if (r == 0) {
		it->size = (uint64_t)st.st_size;
		return true;
	}
	cfs_name_format_path(it->digest, path);
	if (++ctx->missing <= PUSH_LOG_MISSING)
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

	cfs_digestset_init(&set, sizeof(struct cfs_fetch_push_item));
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

/* ---- the command ---- */

static const char push_shorts[CFS_FETCH_OPT_COUNT] = {
    [CFS_FETCH_OPT_TOKEN_FILE] = 't',
    [CFS_FETCH_OPT_INSECURE] = 'k',
};

static void print_push_help(void)
{
	printf("Usage: cfs-store push [OPTIONS] STORE URL\n\n"
	       "Publishes objects to a server that accepts uploads (cfs-serve --allow-upload):\n"
	       "asks with HEAD which ones it lacks and PUTs those, several at a time. URL is the\n"
	       "objects base, e.g. https://origin:8443/objects.\n\n"
	       "  -i, --image IMAGE     only the objects this composefs image refers to\n"
	       "                        (repeatable); all must be in STORE\n"
	       "  -j, --jobs N          concurrent requests (1 to %d, default 8)\n",
	       PUSH_MAX_JOBS);
	cfs_fetch_opts_print_help(stdout, PUSH_OPTS, NULL, push_shorts, 24);
	printf(
	    "  -n, --dry-run         only ask; list the missing objects\n"
	    "  -h, --help            this help\n\n"
	    "--retries counts extra attempts per object after a 5xx or network error.\n"
	    "The global options (-q, -v, --log-level, --no-progress) go before or after the\n"
	    "command. Exit status 0 when every object is on the server afterwards, 1 otherwise.\n");
}

/* One option: 0 done, -1 help printed (exit 0), else the exit status. */
static int push_option(struct push *p, int c)
{
	char err[CFS_FETCH_OPTS_ERR_LEN], *end;
	unsigned long v;
	int r, id = c == 't'   ? CFS_FETCH_OPT_TOKEN_FILE
	            : c == 'k' ? CFS_FETCH_OPT_INSECURE
	                       : c - PUSH_OPT_BASE;

	if (id >= 0 && id < CFS_FETCH_OPT_COUNT && (PUSH_OPTS & (1u << id))) {
		r = cfs_fetch_opts_set(&p->client, (enum cfs_fetch_opt_id)id, optarg, err);
		if (r == -EINVAL)
			return cfs_tool_usage_error("push", "%s", err);
		return r < 0 ? 1 : 0;
	}
	switch (c) {
	case 'h':
		print_push_help();
		return -1;
	case 'i':
		if (p->n_images == PUSH_MAX_IMAGES)
			return cfs_tool_usage_error("push", "at most %d --image", PUSH_MAX_IMAGES);
		p->images[p->n_images++] = optarg;
		return 0;
	case 'j':
		v = strtoul(optarg, &end, 10);
		if (*end || end == optarg || optarg[0] == '-' || v < 1 || v > PUSH_MAX_JOBS)
			return cfs_tool_usage_error("push", "invalid --jobs '%s' (1..%d)", optarg,
			                            PUSH_MAX_JOBS);
		p->jobs = (unsigned)v;
		return 0;
	case 'n':
		p->dry_run = true;
		return 0;
	default:
		return cfs_tool_usage_error("push", "unknown option");
	}
}

/* -1 to go on, else the exit status. */
static int push_parse(struct push *p, int argc, char **argv)
{
	static const struct option own[] = {
	    {"help", no_argument, NULL, 'h'},
	    {"image", required_argument, NULL, 'i'},
	    {"jobs", required_argument, NULL, 'j'},
	    {"dry-run", no_argument, NULL, 'n'},
	};
	struct option opts[CFS_ARRAY_SIZE(own) + CFS_FETCH_OPT_COUNT + 1];
	struct cfs_fetch_opts_getopt g;
	int c, r;

	memcpy(opts, own, sizeof(own));
	cfs_fetch_opts_getopt(&g, PUSH_OPTS, NULL, PUSH_OPT_BASE);
	cfs_fetch_opts_getopt_append(&g, opts, CFS_ARRAY_SIZE(own));
	while ((c = getopt_long(argc, argv, "hi:t:j:kn", opts, NULL)) != -1) {
		r = push_option(p, c);
		if (r != 0)
			return r < 0 ? 0 : r;
	}
	if (argc - optind != 2)
		return cfs_tool_usage_error("push", "need a store and a URL");
	p->store_path = argv[optind];
	p->url = argv[optind + 1];
	if (strncmp(p->url, "http://", 7) != 0 && strncmp(p->url, "https://", 8) != 0)
		return cfs_tool_usage_error("push", "URL must start with http:// or https://");
	return -1;
}

/* The token and TLS files, the store and the objects to push: 0 or -errno (said). */
static int push_setup(struct push *p)
{
	char err[512];
	int r = cfs_fetch_opts_check_files(&p->client.o, err, sizeof(err));

	if (r < 0) {
		cfs_err("%s", err);
		return r;
	}
	r = cfs_store_open(p->store_path, CFS_STORE_NO_CLEAN, &p->store);
	if (r < 0) {
		cfs_err("cannot open store %s: %s", p->store_path, strerror(-r));
		return r;
	}
	r = collect_items(p, p->images, p->n_images, p->store_path);
	for (size_t i = 0; r == 0 && i < p->n_items; i++)
		p->total_bytes += p->items[i].size;
	return r;
}

static void print_missing(const uint8_t digest[CFS_DIGEST_SIZE], void *ctx)
{
	char path[CFS_NAME_PATH_LEN + 1];

	(void)ctx;
	cfs_name_format_path(digest, path);
	printf("missing: %s\n", path);
}

/* The uploads: 0 or -errno (said). */
static int push_run(struct push *p)
{
	struct cfs_fetch_push_options po = {
	    .url = p->url,
	    .client = &p->client.o,
	    .store = p->store,
	    .jobs = p->jobs,
	    .dry_run = p->dry_run,
	    .progress = &p->progress,
	    .missing = print_missing,
	};
	int r;

	cfs_progress_init(&p->progress, p->dry_run ? "checking" : "pushing", p->n_items, 0,
	                  cfs_tool_no_progress || cfs_tool_quiet);
	r = cfs_fetch_push(&po, p->items, p->n_items, &p->res);
	if (r == -EIO)
		cfs_err("libcurl multi interface failed");
	else if (r < 0)
		cfs_err("cannot set up the uploads: %s", strerror(-r));
	cfs_progress_done(&p->progress);
	return r;
}

/* The summary: the exit status. */
static int push_report(struct push *p)
{
	struct cfs_fetch_push_result *res = &p->res;
	double secs = cfs_progress_elapsed(&p->progress);
	char b1[32], b2[32];

	if (res->fatal[0]) {
		cfs_err("%s: %s", p->url, res->fatal);
		res->failed = p->n_items - res->present - res->uploaded;
	} else if (res->unlogged) {
		cfs_err("... and %llu more failures", (unsigned long long)res->unlogged);
	}
	if (!cfs_tool_quiet || res->failed) {
		printf("%zu objects (%s): %llu %s (%s), %llu already present, %llu failed; "
		       "%.2f s\n",
		       p->n_items, cfs_format_size(p->total_bytes, b1, sizeof(b1)),
		       (unsigned long long)res->uploaded, p->dry_run ? "missing" : "uploaded",
		       cfs_format_size(res->uploaded_bytes, b2, sizeof(b2)),
		       (unsigned long long)res->present, (unsigned long long)res->failed, secs);
	}
	if (fflush(stdout) != 0)
		return 1;
	return res->failed || res->fatal[0] ? 1 : 0;
}

int cfs_cmd_push(int argc, char **argv)
{
	struct push p = {.jobs = 8};
	int ret;

	cfs_fetch_opts_init(&p.client);
	/* Uploads are few and large next to fetches: more patience before a retry or an abort. */
	p.client.o.connect_timeout_ms = 10000;
	p.client.o.low_speed_secs = 30;
	p.client.o.backoff_ms = 250;
	p.client.o.user_agent = "cfs-store-push/" PACKAGE_VERSION;
	ret = push_parse(&p, argc, argv);
	if (ret < 0 && (push_setup(&p) < 0 || push_run(&p) < 0))
		ret = 1;
	if (ret < 0)
		ret = push_report(&p);
	free(p.items);
	cfs_store_free(p.store);
	cfs_fetch_opts_free(&p.client);
	return ret;
}
