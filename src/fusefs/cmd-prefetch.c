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

static void print_help(const struct fetch_cli *cli, FILE *f)
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
	    "  -o, --order TRACE          fetch the objects named at the start of TRACE's lines\n"
	    "                             first, in that order (most important first)\n"
	    "  -r, --rate-limit SIZE      average download rate cap in bytes/s (e.g. 10M)\n"
	    "  -j, --jobs N               concurrent transfers (default 64)\n");
	cfs_cli_print_help(cli, f);
	fprintf(f,
	        "  -n, --dry-run              print the missing objects in fetch order and stop\n"
	        "      --no-progress          never draw a progress bar\n"
	        "  -q, --quiet                print only errors\n"
	        "  -v, --verbose              more log output (repeat for debug)\n"
	        "  -h, --help                 show this help\n"
	        "  -V, --version              show the version\n\n"
	        "Exit status: 0 when every object of the images is in the store, 1 otherwise,\n"
	        "2 on misuse. See cfs-cache-prefetch(1).\n");
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
				cli->fo.o.store = store;
				r = cli->fo.n_servers ? cfs_fetch_new(&cli->fo.o, &fetch) : -ENOENT;
				if (r < 0) {
					cfs_err("image %s: not in the store%s", images[i],
					        cli->fo.n_servers
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
	int r = cfs_image_walk_files(images, n, collect, l);

	if (r == 0)
		cfs_digestset_seal(l);
	return r;
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
	OPT_NO_PROGRESS = 256,
};

#define PREFETCH_OPTS                                                                              \
	(CFS_FETCH_OPT(SERVER) | CFS_FETCH_OPT(RETRIES) | CFS_FETCH_OPT(CONNECT_TIMEOUT) |         \
	 CFS_FETCH_OPT(MAX_OBJECT_SIZE) | CFS_FETCH_OPT_TLS | CFS_FETCH_OPT(NO_ZSTD))

/* A prefetch run: what the options said, then the objects and what fetches them. */
struct prefetch_cmd {
	struct fetch_cli cli;
	char **images, **owned; /* owned: paths of the images given as digests */
	size_t n_images;
	const char *store_path, *order_path;
	bool no_progress, dry_run;
	uint64_t rate;

	struct cfs_digestset all; /* of struct object: the images' objects, then the missing */
	size_t in_image, n_missing, n_order;
	uint64_t missing_bytes;
	struct object **order; /* the missing objects in fetch order */
	struct cfs_store *store;
	struct cfs_fetch *fetch;
	struct fetch_tally run;
	struct cfs_progress progress;
};

/* One option of the command's own: 1 handled, 0 not its own, or the exit status + 2 (so that
 * 0 and 1 stay free). */
static int prefetch_own_option(struct prefetch_cmd *cmd, int c)
{
	switch (c) {
	case 'i': {
		char **ni = realloc(cmd->images, (cmd->n_images + 1) * sizeof(*ni));

		if (!ni)
			return 2 + 1;
		cmd->images = ni;
		cmd->images[cmd->n_images++] = optarg;
		return 1;
	}
	case 's':
		cmd->store_path = optarg;
		return 1;
	case 'o':
		cmd->order_path = optarg;
		return 1;
	case 'r':
		if (cfs_parse_size(optarg, &cmd->rate) < 0 || cmd->rate == 0)
			return 2 + cfs_cli_usage_error("prefetch", "bad rate", optarg);
		return 1;
	case 'j':
		if (cfs_cli_set(&cmd->cli, CFS_FETCH_OPT_MAX_TRANSFERS, optarg, "--jobs",
		                "prefetch") < 0)
			return 2 + CFS_EXIT_MISUSE;
		if (cmd->cli.fo.o.max_per_server > cmd->cli.fo.o.max_transfers)
			cmd->cli.fo.o.max_per_server = cmd->cli.fo.o.max_transfers;
		return 1;
	case 'n':
		cmd->dry_run = true;
		return 1;
	case OPT_NO_PROGRESS:
		cmd->no_progress = true;
		return 1;
	default:
		return 0;
	}
}

/* -1 to go on, else the exit status. */
static int prefetch_parse(struct prefetch_cmd *cmd, int argc, char **argv)
{
	static const struct option own[] = {
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
	};
	const struct option *opts = cfs_cli_longopts(&cmd->cli, own, CFS_ARRAY_SIZE(own));
	int c, r;

	optind = 0;
	while ((c = getopt_long(argc, argv, "i:s:S:o:r:j:knqvhV", opts, NULL)) != -1) {
		if (c == 'h') {
			print_help(&cmd->cli, stdout);
			return 0;
		}
		r = prefetch_own_option(cmd, c);
		if (r >= 2)
			return r - 2;
		if (r == 1)
			continue;
		r = cfs_cli_option(&cmd->cli, c, optarg, "prefetch");
		if (r == 1)
			continue;
		if (r == FETCH_CLI_DONE)
			return 0;
		if (r == 0)
			fprintf(stderr, "Try 'cfs-cache prefetch --help'.\n");
		return r == -ENOMEM ? 1 : CFS_EXIT_MISUSE;
	}
	cfs_log_set_level(cmd->cli.level);
	cmd->run.token_file = cmd->cli.fo.o.token_file;
	if (optind < argc)
		return cfs_cli_usage_error("prefetch", "unexpected argument", argv[optind]);
	if (cmd->n_images == 0 || !cmd->store_path || (cmd->cli.fo.n_servers == 0 && !cmd->dry_run))
		return cfs_cli_usage_error("prefetch", "--image, --store and --server are required",
		                           NULL);
	return -1;
}

/* The images' objects the store lacks, in fetch order: -1 to go on, else the exit status. */
static int prefetch_plan(struct prefetch_cmd *cmd)
{
	struct missing_ctx missing = {NULL, 0};
	int r;

	if (!cmd->dry_run && cfs_cli_check_files(&cmd->cli) < 0)
		return 1;
	cmd->owned = calloc(cmd->n_images, sizeof(*cmd->owned));
	if (!cmd->owned ||
	    resolve_image_digests(cmd->images, cmd->n_images, cmd->owned, cmd->store_path,
	                          &cmd->cli) < 0 ||
	    load_images(cmd->images, cmd->n_images, &cmd->all) < 0)
		return 1;
	cmd->in_image = cfs_digestset_count(&cmd->all);
	r = cfs_store_open(cmd->store_path, cmd->dry_run ? CFS_STORE_NO_CLEAN : CFS_STORE_CREATE,
	                   &cmd->store);
	if (r < 0) {
		cfs_err("cannot open store %s: %s", cmd->store_path, strerror(-r));
		return 1;
	}
	/* Drop what the store has. */
	missing.store = cmd->store;
	cfs_digestset_filter(&cmd->all, keep_missing, &missing);
	cmd->n_missing = cfs_digestset_count(&cmd->all);
	cmd->missing_bytes = missing.bytes;
	cmd->order = calloc(cmd->n_missing ? cmd->n_missing : 1, sizeof(*cmd->order));
	if (!cmd->order)
		return 1;
	if (cmd->order_path) {
		r = read_order(cmd->order_path, &cmd->all, cmd->order, &cmd->n_order);
		if (r)
			return r;
	}
	for (size_t i = 0; i < cmd->n_missing; i++) {
		struct object *o = cfs_digestset_at(&cmd->all, i);

		if (!o->queued)
			cmd->order[cmd->n_order++] = o;
	}
	return -1;
}

/* Waits (run.lock held) until object @i may start: a free place in the window, and within the
 * rate. */
static void prefetch_wait_turn(struct prefetch_cmd *cmd, size_t i, uint64_t start_ns,
                               uint64_t submitted_bytes)
{
	size_t max = cmd->cli.fo.o.max_transfers;

	/* A bounded window keeps the priority order meaningful: the engine sees the next objects
	 * only as slots free up. */
	for (;;) {
		bool window_full = i - cmd->run.done >= 2 * max;
		bool over_rate = false;

		if (cmd->rate) {
			/* A one-second token bucket: the next object starts when the bytes started
			 * so far, its own included, fit in the time elapsed. */
			double allowed =
			    (double)cmd->rate * ((double)(cfs_now_ns() - start_ns) / 1e9 + 1.0);

			over_rate = (double)(submitted_bytes + cmd->order[i]->size) > allowed;
		}
		if (!window_full && !over_rate)
			return;
		/* A full window is woken once half of it is free. */
		cfs_tally_wait(&cmd->run, &cmd->progress,
		               window_full && !over_rate ? i - max : SIZE_MAX,
		               over_rate ? 20 : 100);
	}
}

/* Starts the engine and fetches the missing objects in order: 0 or -errno (said). */
static int prefetch_run(struct prefetch_cmd *cmd)
{
	struct fetch_tally *run = &cmd->run;
	uint64_t submitted_bytes = 0, start_ns;
	int r;

	cfs_raise_nofile();
	cmd->cli.fo.o.store = cmd->store;
	r = cfs_fetch_new(&cmd->cli.fo.o, &cmd->fetch);
	if (r < 0) {
		cfs_err("cannot start the fetcher: %s", strerror(-r));
		return r;
	}
	cfs_progress_init(&cmd->progress, "prefetch", cmd->n_missing, cmd->missing_bytes,
	                  cmd->cli.quiet || cmd->no_progress);
	start_ns = cfs_now_ns();
	pthread_mutex_lock(&run->lock);
	for (size_t i = 0; i < cmd->n_order; i++) {
		prefetch_wait_turn(cmd, i, start_ns, submitted_bytes);
		pthread_mutex_unlock(&run->lock);
		cfs_tally_submit(run, cmd->fetch, cmd->order[i]->digest);
		pthread_mutex_lock(&run->lock);
		submitted_bytes += cmd->order[i]->size;
	}
	pthread_mutex_unlock(&run->lock);
	cfs_tally_finish(run, &cmd->progress, cmd->n_order);
	return 0;
}

/* The summary line: the exit status. */
static int prefetch_report(struct prefetch_cmd *cmd)
{
	const struct fetch_tally *run = &cmd->run;

	if (!cmd->cli.quiet) {
		char sz[32], rt[32];
		double secs;

		cfs_tally_format(run, &cmd->progress, sz, rt, &secs);
		printf("%zu objects in the images, %zu missing: %llu fetched (%s), "
		       "%llu present meanwhile, %llu not found, %llu failed in %.2fs (%s/s)\n",
		       cmd->in_image, cmd->n_missing, (unsigned long long)run->fetched, sz,
		       (unsigned long long)run->present, (unsigned long long)run->missing,
		       (unsigned long long)run->failed, secs, rt);
	}
	cfs_tally_report(&cmd->run, "prefetch");
	return run->missing || run->failed ? 1 : 0;
}

static void prefetch_print_order(const struct prefetch_cmd *cmd)
{
	for (size_t i = 0; i < cmd->n_order; i++) {
		char path[CFS_NAME_PATH_LEN + 1];

		cfs_name_format_path(cmd->order[i]->digest, path);
		puts(path);
	}
}

static void prefetch_free(struct prefetch_cmd *cmd)
{
	cfs_fetch_free(cmd->fetch);
	cfs_store_free(cmd->store);
	free(cmd->order);
	cfs_digestset_free(&cmd->all);
	for (size_t i = 0; cmd->owned && i < cmd->n_images; i++)
		free(cmd->owned[i]);
	free(cmd->owned);
	free(cmd->images);
	cfs_cli_free(&cmd->cli);
}

int cfs_cache_cmd_prefetch(int argc, char **argv)
{
	struct prefetch_cmd cmd = {.run = FETCH_TALLY_INIT};
	int ret;

	cfs_digestset_init(&cmd.all, sizeof(struct object));
	cfs_cli_init(&cmd.cli, PREFETCH_OPTS);
	ret = prefetch_parse(&cmd, argc, argv);
	if (ret < 0)
		ret = prefetch_plan(&cmd);
	if (ret < 0 && cmd.dry_run) {
		prefetch_print_order(&cmd);
		ret = 0;
	}
	if (ret < 0)
		ret = prefetch_run(&cmd) < 0 ? 1 : prefetch_report(&cmd);
	prefetch_free(&cmd);
	if (fflush(stdout) != 0 && ret == 0)
		ret = 1;
	return ret;
}
