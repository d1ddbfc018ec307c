/* SPDX-License-Identifier: MIT */
/* cfscache: cfs-cache fetch: download objects missing from a store, all in flight at once. */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "common/digestset.h"
#include "common/log.h"
#include "common/name.h"
#include "common/progress.h"
#include "common/store.h"
#include "common/util.h"
#include "fetcher/fetch.h"
#include "fusefs/cmds.h"
#include "fusefs/fetch-cli.h"

static void print_help(const struct fetch_cli *cli, FILE *f)
{
	fprintf(f,
	        "Usage: cfs-cache fetch --store DIR --server URL [--server URL]... [DIGEST...]\n"
	        "                       [--from FILE|-] [OPTIONS]\n\n"
	        "Fetch objects that are not yet in a local store, verifying each against its\n"
	        "fs-verity digest. DIGEST is XX/<62hex> (as `composefs-info objects` prints),\n"
	        "64 hex digits, or sha256:<64hex>.\n\n"
	        "Options:\n"
	        "  -s, --store DIR            local object store (created if missing)\n"
	        "  -f, --from FILE|-          read digests from FILE (one per line; - is stdin)\n"
	        "  -j, --jobs N               same as --max-transfers\n");
	cfs_cli_print_help(cli, f);
	fprintf(
	    f,
	    "      --no-progress          never draw a progress bar\n"
	    "      --stats                print the engine's counters at the end\n"
	    "  -q, --quiet                print only errors\n"
	    "  -v, --verbose              more log output (repeat for debug)\n"
	    "  -h, --help                 show this help\n"
	    "  -V, --version              show the version\n\n"
	    "Exit status: 0 when every object is present and verified, 1 otherwise, 2 on misuse.\n"
	    "See cfs-cache-fetch(1).\n");
}

/* Reads one digest per line; blank lines and '#' comments are skipped. */
static int read_list(const char *path, struct cfs_digestset *l)
{
	FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
	char *line = NULL;
	size_t cap = 0, lineno = 0;
	ssize_t n;
	int r = 0;

	if (!f) {
		fprintf(stderr, "cfs-cache fetch: %s: %s\n", path, strerror(errno));
		return CFS_EXIT_MISUSE;
	}
	while ((n = getline(&line, &cap, f)) >= 0) {
		uint8_t d[CFS_DIGEST_SIZE];
		char *s = line;

		lineno++;
		while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' ' ||
		                 s[n - 1] == '\t'))
			s[--n] = '\0';
		while (*s == ' ' || *s == '\t')
			s++, n--;
		if (n <= 0 || *s == '#')
			continue;
		if (cfs_name_parse_any(s, (size_t)n, d) < 0) {
			fprintf(stderr, "cfs-cache fetch: %s:%zu: not an object name: %.80s\n",
			        path, lineno, s);
			r = CFS_EXIT_MISUSE;
			break;
		}
		if (cfs_digestset_add(l, d, NULL) < 0) {
			r = 1;
			break;
		}
	}
	if (r == 0 && ferror(f)) {
		fprintf(stderr, "cfs-cache fetch: %s: read error\n", path);
		r = 1;
	}
	free(line);
	if (f != stdin)
		fclose(f);
	return r;
}

static void print_stats(struct cfs_fetch *fetch)
{
	struct cfs_fetch_stats st;

	cfs_fetch_get_stats(fetch, &st);
	printf(
	    "requests %llu, bytes %llu, fetched %llu, already present %llu, joined %llu, "
	    "not found %llu, failures %llu, verify failures %llu, retries %llu, resumed %llu, "
	    "commits %llu\n"
	    "failed attempts: http %llu, network %llu, timeout %llu, too large %llu, local %llu\n",
	    (unsigned long long)st.requests, (unsigned long long)st.bytes,
	    (unsigned long long)st.fetched, (unsigned long long)st.already_present,
	    (unsigned long long)st.joined, (unsigned long long)st.not_found,
	    (unsigned long long)st.failures, (unsigned long long)st.verify_failures,
	    (unsigned long long)st.retries, (unsigned long long)st.resumed,
	    (unsigned long long)st.commits, (unsigned long long)st.fail_http,
	    (unsigned long long)st.fail_network, (unsigned long long)st.fail_timeout,
	    (unsigned long long)st.fail_too_large, (unsigned long long)st.fail_local);
	for (size_t i = 0; i < cfs_fetch_server_count(fetch); i++) {
		struct cfs_fetch_server_stats ss;

		if (cfs_fetch_server_stats(fetch, i, &ss) < 0)
			continue;
		printf("server %s: %s, requests %llu, bytes %llu, failures %llu, not found %llu, "
		       "verify failures %llu\n",
		       ss.url, ss.state == CFS_FETCH_SERVER_UP ? "up" : "backoff",
		       (unsigned long long)ss.requests, (unsigned long long)ss.bytes,
		       (unsigned long long)ss.failures, (unsigned long long)ss.not_found,
		       (unsigned long long)ss.verify_failures);
	}
}

enum {
	OPT_NO_PROGRESS = 256,
	OPT_STATS,
};

#define FETCH_OPTS                                                                                 \
	(CFS_FETCH_OPT(SERVER) | CFS_FETCH_OPT(MAX_TRANSFERS) | CFS_FETCH_OPT(PER_SERVER) |        \
	 CFS_FETCH_OPT(RETRIES) | CFS_FETCH_OPT(CONNECT_TIMEOUT) | CFS_FETCH_OPT(LOW_SPEED_TIME) | \
	 CFS_FETCH_OPT(MAX_OBJECT_SIZE) | CFS_FETCH_OPT_TLS | CFS_FETCH_OPT(NO_ZSTD))

/* A fetch run: what the options said, then what it set up. */
struct fetch_cmd {
	struct fetch_cli cli;
	const char *store_path, *from;
	bool no_progress, want_stats;
	struct cfs_digestset list;
	struct cfs_store *store;
	struct cfs_fetch *fetch;
	struct fetch_tally run;
	struct cfs_progress progress;
};

/* Options: -1 to go on, else the exit status. */
static int fetch_parse_options(struct fetch_cmd *cmd, int argc, char **argv)
{
	static const struct option own[] = {
	    {"store", required_argument, NULL, 's'},
	    {"from", required_argument, NULL, 'f'},
	    {"jobs", required_argument, NULL, 'j'},
	    {"no-progress", no_argument, NULL, OPT_NO_PROGRESS},
	    {"stats", no_argument, NULL, OPT_STATS},
	    {"quiet", no_argument, NULL, 'q'},
	    {"verbose", no_argument, NULL, 'v'},
	    {"help", no_argument, NULL, 'h'},
	    {"version", no_argument, NULL, 'V'},
	};
	const struct option *opts = cfs_cli_longopts(&cmd->cli, own, CFS_ARRAY_SIZE(own));
	int c, r;

	optind = 0;
	while ((c = getopt_long(argc, argv, "s:S:f:j:kqvhV", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			cmd->store_path = optarg;
			break;
		case 'f':
			cmd->from = optarg;
			break;
		case 'j':
			r = cfs_cli_set(&cmd->cli, CFS_FETCH_OPT_MAX_TRANSFERS, optarg, "--jobs",
			                "fetch");
			if (r < 0)
				return r == -ENOMEM ? 1 : CFS_EXIT_MISUSE;
			break;
		case OPT_NO_PROGRESS:
			cmd->no_progress = true;
			break;
		case OPT_STATS:
			cmd->want_stats = true;
			break;
		case 'h':
			print_help(&cmd->cli, stdout);
			return 0;
		default:
			r = cfs_cli_option(&cmd->cli, c, optarg, "fetch");
			if (r == 1)
				break;
			if (r == FETCH_CLI_DONE)
				return 0;
			if (r == 0)
				fprintf(stderr, "Try 'cfs-cache fetch --help'.\n");
			return r == -ENOMEM ? 1 : CFS_EXIT_MISUSE;
		}
	}
	return -1;
}

/* The options, then the digests of the arguments and of --from: -1 to go on, else the exit
 * status. */
static int fetch_parse(struct fetch_cmd *cmd, int argc, char **argv)
{
	int r = fetch_parse_options(cmd, argc, argv);

	if (r >= 0)
		return r;
	cfs_log_set_level(cmd->cli.level);
	cmd->run.token_file = cmd->cli.fo.o.token_file;
	if (!cmd->store_path)
		return cfs_cli_usage_error("fetch", "--store is required", NULL);
	if (cmd->cli.fo.n_servers == 0)
		return cfs_cli_usage_error("fetch", "at least one --server is required", NULL);
	for (int i = optind; i < argc; i++) {
		uint8_t d[CFS_DIGEST_SIZE];

		if (cfs_name_parse_any(argv[i], strlen(argv[i]), d) < 0)
			return cfs_cli_usage_error("fetch", "not an object name:", argv[i]);
		if (cfs_digestset_add(&cmd->list, d, NULL) < 0)
			return 1;
	}
	if (cmd->from) {
		r = read_list(cmd->from, &cmd->list);
		if (r)
			return r;
	}
	if (!cmd->from && optind >= argc)
		return cfs_cli_usage_error("fetch", "no digests given (arguments or --from)", NULL);
	/* Counts are of distinct objects. */
	cfs_digestset_seal(&cmd->list);
	return -1;
}

/* Opens the store and starts the engine: 0 or -errno (said). */
static int fetch_setup(struct fetch_cmd *cmd)
{
	int r = cfs_cli_check_files(&cmd->cli);

	if (r < 0)
		return r;
	/* Objects wait for their group commit with a descriptor open. */
	cfs_raise_nofile();
	r = cfs_store_open(cmd->store_path, CFS_STORE_CREATE, &cmd->store);
	if (r < 0) {
		cfs_err("cannot open store %s: %s", cmd->store_path, strerror(-r));
		return r;
	}
	cmd->cli.fo.o.store = cmd->store;
	r = cfs_fetch_new(&cmd->cli.fo.o, &cmd->fetch);
	if (r < 0)
		cfs_err("cannot start the fetcher: %s", strerror(-r));
	return r;
}

/* Submits every object and waits for all of them. */
static void fetch_run(struct fetch_cmd *cmd)
{
	struct fetch_tally *run = &cmd->run;
	size_t n = cfs_digestset_count(&cmd->list);

	cfs_progress_init(&cmd->progress, "fetch", n, 0, cmd->cli.quiet || cmd->no_progress);
	for (size_t i = 0; i < n; i++)
		cfs_tally_submit(run, cmd->fetch, cfs_digestset_at(&cmd->list, i));
	cfs_tally_finish(run, &cmd->progress, n);
}

/* The summary line and counters: the exit status. */
static int fetch_report(struct fetch_cmd *cmd)
{
	const struct fetch_tally *run = &cmd->run;

	if (!cmd->cli.quiet) {
		char sz[32], rate[32];
		double secs;

		cfs_tally_format(run, &cmd->progress, sz, rate, &secs);
		printf("%zu objects: %llu fetched (%s), %llu already present, %llu not found, "
		       "%llu failed in %.2fs (%s/s)\n",
		       cfs_digestset_count(&cmd->list), (unsigned long long)run->fetched, sz,
		       (unsigned long long)run->present, (unsigned long long)run->missing,
		       (unsigned long long)run->failed, secs, rate);
	}
	if (cmd->want_stats)
		print_stats(cmd->fetch);
	cfs_tally_report(&cmd->run, "fetch");
	return run->missing || run->failed ? 1 : 0;
}

int cfs_cache_cmd_fetch(int argc, char **argv)
{
	struct fetch_cmd cmd = {.list = CFS_DIGESTSET_INIT, .run = FETCH_TALLY_INIT};
	int ret;

	cfs_cli_init(&cmd.cli, FETCH_OPTS);
	ret = fetch_parse(&cmd, argc, argv);
	if (ret < 0 && fetch_setup(&cmd) < 0)
		ret = 1;
	if (ret < 0) {
		fetch_run(&cmd);
		ret = fetch_report(&cmd);
	}
	cfs_fetch_free(cmd.fetch);
	cfs_store_free(cmd.store);
	cfs_digestset_free(&cmd.list);
	cfs_cli_free(&cmd.cli);
	if (fflush(stdout) != 0 && ret == 0)
		ret = 1;
	return ret;
}
