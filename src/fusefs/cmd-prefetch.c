/* SPDX-License-Identifier: MIT */
/* cfscache: cfs-cache prefetch: fetch the objects of composefs images missing from a store. */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "common/digestset.h"
#include "common/log.h"
#include "common/name.h"
#include "common/progress.h"
#include "common/store.h"
#include "common/util.h"
#include "fetcher/fetch.h"
#include "fusefs/cmds.h"
#include "fusefs/fetch-cli.h"
#include "image/image.h"

/* A record of a struct cfs_digestset: the digest first. */
struct object {
	uint8_t digest[CFS_DIGEST_SIZE];
	uint64_t size;
	bool queued;
};

static void print_help(FILE *f)
{
	fprintf(
	    f,
	    "Usage: cfs-cache prefetch --image IMAGE [--image IMAGE]... --store DIR\n"
	    "                          --server URL [--server URL]... [OPTIONS]\n\n"
	    "Fetch the objects that composefs images point at and that a local store lacks,\n"
	    "verifying each against its fs-verity digest. Safe to run while a cfs-cache mount\n"
	    "serves the same store.\n\n"
	    "Options:\n"
	    "  -i, --image IMAGE          composefs (EROFS) image, or its digest (sha256:HEX):\n"
	    "                             taken from the store or fetched first; repeatable\n"
	    "  -s, --store DIR            local object store (created if missing)\n"
	    "  -S, --server URL           base URL of a server; repeat for fallbacks, in order\n"
	    "  -o, --order TRACE          fetch the objects named at the start of TRACE's lines\n"
	    "                             first, in that order (most important first)\n"
	    "  -r, --rate-limit SIZE      average download rate cap in bytes/s (e.g. 10M)\n"
	    "  -j, --jobs N               concurrent transfers (default 64)\n"
	    "      --retries N            extra attempts per server (default 2)\n"
	    "      --connect-timeout DURATION  e.g. 5s, 500ms (default 5s)\n"
	    "      --max-object-size SIZE abort a body (decoded) larger than this (default 4G)\n"
	    "      --token-file FILE      send \"Authorization: Bearer <contents>\"\n"
	    "      --ca-file FILE         CA certificates for HTTPS\n"
	    "      --cert FILE            client certificate (PEM)\n"
	    "      --key FILE             client private key (PEM)\n"
	    "  -k, --insecure             do not verify the server's TLS certificate\n"
	    "      --no-zstd              do not ask for zstd-compressed bodies\n"
	    "  -n, --dry-run              print the missing objects in fetch order and stop\n"
	    "      --no-progress          never draw a progress bar\n"
	    "  -q, --quiet                print only errors\n"
	    "  -v, --verbose              more log output (repeat for debug)\n"
	    "  -h, --help                 show this help\n"
	    "  -V, --version              show the version\n\n"
	    "Exit status: 0 when every object of the images is in the store, 1 otherwise,\n"
	    "2 on misuse. See cfs-cache-prefetch(1).\n");
}

static int usage_error(const char *what, const char *arg)
{
	fprintf(stderr, "cfs-cache prefetch: %s%s%s%s\nTry 'cfs-cache prefetch --help'.\n", what,
	        arg ? " '" : "", arg ? arg : "", arg ? "'" : "");
	return CFS_EXIT_MISUSE;
}

static int collect(const struct cfs_image_entry *e, void *userdata)
{
	struct object *o;
	int r;

	if (!e->has_object)
		return 0;
	r = cfs_digestset_add(userdata, e->object, (void **)&o);
	if (r == 0)
		o->size = e->size;
	return r;
}

/* An --image that is no file but a digest (sha256:HEX or 64 hex) names an image object: taken
 * from the store, or fetched into it first (verified like any object). Its path replaces the
 * digest in @images; @owned keeps the strings to free. Returns 0 or -errno after saying why. */
static int resolve_image_digests(char **images, size_t n, char **owned, const char *store_path,
                                 struct fetch_cli *cli)
{
	struct cfs_store *store = NULL;
	struct cfs_fetch *fetch = NULL;
	int r = 0;

	for (size_t i = 0; i < n && r == 0; i++) {
		uint8_t d[CFS_DIGEST_SIZE];
		char rel[CFS_NAME_PATH_LEN + 1];
		struct cfs_fetch_result info;

		if (access(images[i], F_OK) == 0 ||
		    cfs_name_parse_any(images[i], strlen(images[i]), d) < 0)
			continue;
		if (!store && (r = cfs_store_open(store_path, CFS_STORE_CREATE, &store)) < 0) {
			cfs_err("cannot open store %s: %s", store_path, strerror(-r));
			break;
		}
		if (cfs_store_lookup(store, d, NULL) != 0) {
			if (!fetch) {
				cli->o.servers = cli->servers;
				cli->o.n_servers = cli->n_servers;
				cli->o.store = store;
				r = cli->n_servers ? cfs_fetch_new(&cli->o, &fetch) : -ENOENT;
				if (r < 0) {
					cfs_err("image %s: not in the store%s", images[i],
					        cli->n_servers
					            ? ""
					            : ", and no --server to fetch it from");
					break;
				}
			}
			r = cfs_fetch_sync(fetch, d, &info);
			if (r < 0) {
				cfs_err("image %s: %s", images[i],
				        r == -ENOENT  ? "absent on every server"
				        : info.reason ? info.reason
				                      : strerror(-r));
				break;
			}
		}
		cfs_name_format_path(d, rel);
		if (asprintf(&owned[i], "%s/%s", store_path, rel) < 0) {
			owned[i] = NULL;
			r = -ENOMEM;
			break;
		}
		images[i] = owned[i];
	}
	cfs_fetch_free(fetch);
	cfs_store_free(store);
	return r;
}

struct missing_ctx {
	struct cfs_store *store;
	uint64_t bytes;
};

/* Keeps the objects the store lacks, counting their bytes. */
static bool keep_missing(void *record, void *userdata)
{
	struct missing_ctx *ctx = userdata;
	struct object *o = record;

	if (cfs_store_lookup(ctx->store, o->digest, NULL) == 0)
		return false;
	ctx->bytes += o->size;
	return true;
}

static int load_images(char **images, size_t n, struct cfs_digestset *l)
{
	for (size_t i = 0; i < n; i++) {
		struct cfs_image *img = NULL;
		char msg[256] = "";
		int r;

		r = cfs_image_open_msg(images[i], &img, msg, sizeof(msg));
		if (r < 0) {
			cfs_err("%s: %s", images[i], msg[0] ? msg : strerror(-r));
			return r;
		}
		r = cfs_image_walk(img, 0, collect, l);
		if (r < 0)
			cfs_err("%s: %s", images[i],
			        cfs_image_error(img)[0] ? cfs_image_error(img) : strerror(-r));
		cfs_image_free(img);
		if (r < 0)
			return r;
	}
	cfs_digestset_seal(l);
	return 0;
}

/* Appends to @order the objects of @all named at the start of TRACE's lines, in trace order,
 * each once. Lines that do not start with an object name are skipped. */
static int read_order(const char *path, struct cfs_digestset *all, struct object **order,
                      size_t *n_order)
{
	FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
	char *line = NULL;
	size_t cap = 0, skipped = 0;
	ssize_t len;

	if (!f) {
		fprintf(stderr, "cfs-cache prefetch: %s: %s\n", path, strerror(errno));
		return CFS_EXIT_MISUSE;
	}
	while ((len = getline(&line, &cap, f)) >= 0) {
		uint8_t digest[CFS_DIGEST_SIZE];
		struct object *o;
		size_t tok = strcspn(line, " \t\r\n");

		if (cfs_name_parse_any(line, tok, digest) < 0) {
			skipped++;
			continue;
		}
		o = cfs_digestset_find(all, digest);
		if (!o || o->queued)
			continue;
		o->queued = true;
		order[(*n_order)++] = o;
	}
	free(line);
	if (f != stdin)
		fclose(f);
	if (skipped)
		cfs_debug("%s: %zu lines without an object name skipped", path, skipped);
	return 0;
}

enum {

	OPT_NO_PROGRESS,
};

int cfs_cache_cmd_prefetch(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"image", required_argument, NULL, 'i'},
	    {"store", required_argument, NULL, 's'},
	    {"order", required_argument, NULL, 'o'},
	    {"rate-limit", required_argument, NULL, 'r'},
	    {"jobs", required_argument, NULL, 'j'},
	    {"dry-run", no_argument, NULL, 'n'},
	    {"no-progress", no_argument, NULL, OPT_NO_PROGRESS},
	    {"quiet", no_argument, NULL, 'q'},
	    {"verbose", no_argument, NULL, 'v'},
	    {"help", no_argument, NULL, 'h'},
	    {"version", no_argument, NULL, 'V'},
	    FETCH_CLI_LONG_OPTIONS,
	    {NULL, 0, NULL, 0},
	};
	struct fetch_tally run = FETCH_TALLY_INIT;
	struct fetch_cli cli;
	struct cfs_digestset all;
	struct missing_ctx missing = {NULL, 0};
	struct object **order = NULL;
	struct cfs_store *store = NULL;
	struct cfs_fetch *fetch = NULL;
	struct cfs_progress progress;
	char **images = NULL, **owned = NULL;
	size_t n_images = 0, n_order = 0, n_missing = 0, in_image;
	const char *store_path = NULL, *order_path = NULL;
	bool no_progress = false, dry_run = false;
	uint64_t rate = 0, missing_bytes = 0, submitted_bytes = 0, start_ns;
	int c, r, ret = 1;

	cfs_digestset_init(&all, sizeof(struct object));
	cfs_cli_init(&cli);
	optind = 0;
	while ((c = getopt_long(argc, argv, "i:s:S:o:r:j:knqvhV", opts, NULL)) != -1) {
		switch (c) {
		case 'i': {
			char **ni = realloc(images, (n_images + 1) * sizeof(*ni));

			if (!ni)
				goto out;
			images = ni;
			images[n_images++] = optarg;
			break;
		}
		case 's':
			store_path = optarg;
			break;
		case 'o':
			order_path = optarg;
			break;
		case 'r':
			if (cfs_parse_size(optarg, &rate) < 0 || rate == 0) {
				ret = usage_error("bad rate", optarg);
				goto out;
			}
			break;
		case 'j':
			if (cfs_cli_parse_count(optarg, &cli.o.max_transfers) < 0 ||
			    cli.o.max_transfers == 0) {
				ret = usage_error("bad transfer count", optarg);
				goto out;
			}
			if (cli.o.max_per_server > cli.o.max_transfers)
				cli.o.max_per_server = cli.o.max_transfers;
			break;
		case 'n':
			dry_run = true;
			break;
		case OPT_NO_PROGRESS:
			no_progress = true;
			break;
		case 'h':
			print_help(stdout);
			ret = 0;
			goto out;
		default:
			r = cfs_cli_option(&cli, c, optarg, "prefetch");
			if (r == 1)
				break;
			if (r == FETCH_CLI_DONE) {
				ret = 0;
				goto out;
			}
			if (r == 0)
				fprintf(stderr, "Try 'cfs-cache prefetch --help'.\n");
			ret = r == -ENOMEM ? 1 : CFS_EXIT_MISUSE;
			goto out;
		}
	}
	cfs_log_set_level(cli.level);
	run.token_file = cli.o.token_file;
	if (optind < argc) {
		ret = usage_error("unexpected argument", argv[optind]);
		goto out;
	}
	if (n_images == 0 || !store_path || (cli.n_servers == 0 && !dry_run)) {
		ret = usage_error("--image, --store and --server are required", NULL);
		goto out;
	}
	owned = calloc(n_images, sizeof(*owned));
	if (!owned || resolve_image_digests(images, n_images, owned, store_path, &cli) < 0 ||
	    load_images(images, n_images, &all) < 0)
		goto out;
	in_image = cfs_digestset_count(&all);
	r = cfs_store_open(store_path, dry_run ? CFS_STORE_NO_CLEAN : CFS_STORE_CREATE, &store);
	if (r < 0) {
		cfs_err("cannot open store %s: %s", store_path, strerror(-r));
		goto out;
	}
	/* Drop what the store has. */
	missing.store = store;
	cfs_digestset_filter(&all, keep_missing, &missing);
	n_missing = cfs_digestset_count(&all);
	missing_bytes = missing.bytes;
	order = calloc(n_missing ? n_missing : 1, sizeof(*order));
	if (!order)
		goto out;
	if (order_path) {
		r = read_order(order_path, &all, order, &n_order);
		if (r) {
			ret = r;
			goto out;
		}
	}
	for (size_t i = 0; i < n_missing; i++) {
		struct object *o = cfs_digestset_at(&all, i);

		if (!o->queued)
			order[n_order++] = o;
	}
	if (dry_run) {
		for (size_t i = 0; i < n_order; i++) {
			char path[CFS_NAME_PATH_LEN + 1];

			cfs_name_format_path(order[i]->digest, path);
			puts(path);
		}
		ret = 0;
		goto out;
	}
	cfs_cli_raise_nofile();
	cli.o.servers = cli.servers;
	cli.o.n_servers = cli.n_servers;
	cli.o.store = store;
	r = cfs_fetch_new(&cli.o, &fetch);
	if (r < 0) {
		cfs_err("cannot start the fetcher: %s", strerror(-r));
		goto out;
	}
	cfs_progress_init(&progress, "prefetch", n_missing, missing_bytes,
	                  cli.quiet || no_progress);
	start_ns = cfs_now_ns();
	pthread_mutex_lock(&run.lock);
	for (size_t i = 0; i < n_order; i++) {
		/* A bounded window keeps the priority order meaningful: the engine sees the next
		 * objects only as slots free up. */
		for (;;) {
			size_t in_flight = i - run.done;
			bool window_full = in_flight >= 2 * (size_t)cli.o.max_transfers;
			bool over_rate = false;

			if (rate) {
				/* A one-second token bucket: the next object starts when the bytes
				 * started so far, its own included, fit in the time elapsed. */
				double allowed =
				    (double)rate * ((double)(cfs_now_ns() - start_ns) / 1e9 + 1.0);

				over_rate = (double)(submitted_bytes + order[i]->size) > allowed;
			}
			if (!window_full && !over_rate)
				break;
			/* A full window is woken once half of it is free. */
			cfs_tally_wait(&run, &progress,
			                 window_full && !over_rate ? i - cli.o.max_transfers
			                                           : SIZE_MAX,
			                 over_rate ? 20 : 100);
		}
		pthread_mutex_unlock(&run.lock);
		r = cfs_fetch_submit(fetch, order[i]->digest, 0, cfs_tally_cb, &run);
		pthread_mutex_lock(&run.lock);
		if (r < 0) {
			cfs_err("cannot submit: %s", strerror(-r));
			run.failed++;
			run.done++;
		}
		submitted_bytes += order[i]->size;
	}
	while (run.done < n_order)
		cfs_tally_wait(&run, &progress, n_order, 100);
	pthread_mutex_unlock(&run.lock);
	cfs_progress_done(&progress);
	if (!cli.quiet) {
		char sz[32], rt[32];
		double secs = cfs_progress_elapsed(&progress);

		cfs_format_size(run.fetched_bytes, sz, sizeof(sz));
		cfs_format_size(secs > 0 ? (uint64_t)((double)run.fetched_bytes / secs) : 0, rt,
		                sizeof(rt));
		printf("%zu objects in the images, %zu missing: %llu fetched (%s), "
		       "%llu present meanwhile, %llu not found, %llu failed in %.2fs (%s/s)\n",
		       in_image, n_missing, (unsigned long long)run.fetched, sz,
		       (unsigned long long)run.present, (unsigned long long)run.missing,
		       (unsigned long long)run.failed, secs, rt);
	}
	cfs_tally_report(&run, "prefetch");
	ret = run.missing || run.failed ? 1 : 0;
out:
	cfs_fetch_free(fetch);
	cfs_store_free(store);
	free(order);
	cfs_digestset_free(&all);
	for (size_t i = 0; owned && i < n_images; i++)
		free(owned[i]);
	free(owned);
	free(images);
	cfs_cli_free(&cli);
	if (fflush(stdout) != 0 && ret == 0)
		ret = 1;
	return ret;
}
