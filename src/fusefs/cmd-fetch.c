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

static void print_help(FILE *f)
{
	fprintf(
	    f,
	    "Usage: cfs-cache fetch --store DIR --server URL [--server URL]... [DIGEST...]\n"
	    "                       [--from FILE|-] [OPTIONS]\n\n"
	    "Fetch objects that are not yet in a local store, verifying each against its\n"
	    "fs-verity digest. DIGEST is XX/<62hex> (as `composefs-info objects` prints),\n"
	    "64 hex digits, or sha256:<64hex>.\n\n"
	    "Options:\n"
	    "  -s, --store DIR            local object store (created if missing)\n"
	    "  -S, --server URL           base URL of a server; repeat for fallbacks, in order\n"
	    "  -f, --from FILE|-          read digests from FILE (one per line; - is stdin)\n"
	    "  -j, --jobs N               concurrent transfers (default 64)\n"
	    "      --max-transfers N      same as --jobs\n"
	    "      --per-server N         concurrent transfers per server (default 16)\n"
	    "      --retries N            extra attempts per server (default 2)\n"
	    "      --connect-timeout DURATION  e.g. 5s, 500ms (default 5s)\n"
	    "      --low-speed-time DURATION  abort a transfer slower than 1 KiB/s this long "
	    "(10s)\n"
	    "      --max-object-size SIZE abort a body (decoded) larger than this (default 4G)\n"
	    "      --token-file FILE      send \"Authorization: Bearer <contents>\"\n"
	    "      --ca-file FILE         CA certificates for HTTPS\n"
	    "      --cert FILE            client certificate (PEM)\n"
	    "      --key FILE             client private key (PEM)\n"
	    "  -k, --insecure             do not verify the server's TLS certificate\n"
	    "      --no-zstd              do not ask for zstd-compressed bodies\n"
	    "      --no-progress          never draw a progress bar\n"
	    "      --stats                print the engine's counters at the end\n"
	    "  -q, --quiet                print only errors\n"
	    "  -v, --verbose              more log output (repeat for debug)\n"
	    "  -h, --help                 show this help\n"
	    "  -V, --version              show the version\n\n"
	    "Exit status: 0 when every object is present and verified, 1 otherwise, 2 on misuse.\n"
	    "See cfs-cache-fetch(1).\n");
}

static int usage_error(const char *what, const char *arg)
{
	fprintf(stderr, "cfs-cache fetch: %s%s%s%s\nTry 'cfs-cache fetch --help'.\n", what,
	        arg ? " '" : "", arg ? arg : "", arg ? "'" : "");
	return CFS_EXIT_MISUSE;
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
	OPT_MAX_TRANSFERS = 256,
	OPT_PER_SERVER,

	OPT_LOW_SPEED_TIME,

	OPT_NO_PROGRESS,
	OPT_STATS,
};

int cfs_cache_cmd_fetch(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"store", required_argument, NULL, 's'},
	    {"from", required_argument, NULL, 'f'},
	    {"jobs", required_argument, NULL, 'j'},
	    {"max-transfers", required_argument, NULL, OPT_MAX_TRANSFERS},
	    {"per-server", required_argument, NULL, OPT_PER_SERVER},
	    {"low-speed-time", required_argument, NULL, OPT_LOW_SPEED_TIME},
	    {"no-progress", no_argument, NULL, OPT_NO_PROGRESS},
	    {"stats", no_argument, NULL, OPT_STATS},
	    {"quiet", no_argument, NULL, 'q'},
	    {"verbose", no_argument, NULL, 'v'},
	    {"help", no_argument, NULL, 'h'},
	    {"version", no_argument, NULL, 'V'},
	    FETCH_CLI_LONG_OPTIONS,
	    {NULL, 0, NULL, 0},
	};
	struct fetch_tally run = FETCH_TALLY_INIT;
	struct fetch_cli cli;
	struct cfs_digestset list = CFS_DIGESTSET_INIT;
	struct cfs_store *store = NULL;
	struct cfs_fetch *fetch = NULL;
	struct cfs_progress progress;
	size_t submitted = 0, n = 0;
	const char *store_path = NULL, *from = NULL;
	bool no_progress = false, want_stats = false;
	uint64_t v;
	int c, r, ret = 1;

	cfs_cli_init(&cli);
	optind = 0;
	while ((c = getopt_long(argc, argv, "s:S:f:j:kqvhV", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			store_path = optarg;
			break;
		case 'f':
			from = optarg;
			break;
		case 'j':
		case OPT_MAX_TRANSFERS:
			if (cfs_cli_parse_count(optarg, &cli.o.max_transfers) < 0 ||
			    cli.o.max_transfers == 0) {
				ret = usage_error("bad transfer count", optarg);
				goto out;
			}
			break;
		case OPT_PER_SERVER:
			if (cfs_cli_parse_count(optarg, &cli.o.max_per_server) < 0 ||
			    cli.o.max_per_server == 0) {
				ret = usage_error("bad per-server count", optarg);
				goto out;
			}
			break;
		case OPT_LOW_SPEED_TIME:
			if (cfs_parse_duration_ms(optarg, &v) < 0 || v < 1000 || v > 3600000) {
				ret = usage_error("bad duration (at least 1s)", optarg);
				goto out;
			}
			cli.o.low_speed_secs = (unsigned)(v / 1000);
			break;
		case OPT_NO_PROGRESS:
			no_progress = true;
			break;
		case OPT_STATS:
			want_stats = true;
			break;
		case 'h':
			print_help(stdout);
			ret = 0;
			goto out;
		default:
			r = cfs_cli_option(&cli, c, optarg, "fetch");
			if (r == 1)
				break;
			if (r == FETCH_CLI_DONE) {
				ret = 0;
				goto out;
			}
			if (r == 0)
				fprintf(stderr, "Try 'cfs-cache fetch --help'.\n");
			ret = r == -ENOMEM ? 1 : CFS_EXIT_MISUSE;
			goto out;
		}
	}
	cfs_log_set_level(cli.level);
	run.token_file = cli.o.token_file;
	if (!store_path) {
		ret = usage_error("--store is required", NULL);
		goto out;
	}
	if (cli.n_servers == 0) {
		ret = usage_error("at least one --server is required", NULL);
		goto out;
	}
	for (int i = optind; i < argc; i++) {
		uint8_t d[CFS_DIGEST_SIZE];

		if (cfs_name_parse_any(argv[i], strlen(argv[i]), d) < 0) {
			ret = usage_error("not an object name:", argv[i]);
			goto out;
		}
		if (cfs_digestset_add(&list, d, NULL) < 0)
			goto out;
	}
	if (from) {
		r = read_list(from, &list);
		if (r) {
			ret = r;
			goto out;
		}
	}
	if (!from && optind >= argc) {
		ret = usage_error("no digests given (arguments or --from)", NULL);
		goto out;
	}

	/* Counts are of distinct objects. */
	cfs_digestset_seal(&list);
	n = cfs_digestset_count(&list);
	/* Objects wait for their group commit with a descriptor open. */
	cfs_cli_raise_nofile();
	r = cfs_store_open(store_path, CFS_STORE_CREATE, &store);
	if (r < 0) {
		cfs_err("cannot open store %s: %s", store_path, strerror(-r));
		goto out;
	}
	cli.o.servers = cli.servers;
	cli.o.n_servers = cli.n_servers;
	cli.o.store = store;
	r = cfs_fetch_new(&cli.o, &fetch);
	if (r < 0) {
		cfs_err("cannot start the fetcher: %s", strerror(-r));
		goto out;
	}
	cfs_progress_init(&progress, "fetch", n, 0, cli.quiet || no_progress);
	for (size_t i = 0; i < n; i++) {
		r = cfs_fetch_submit(fetch, cfs_digestset_at(&list, i), 0, cfs_tally_cb, &run);
		if (r < 0) {
			cfs_err("cannot submit: %s", strerror(-r));
			pthread_mutex_lock(&run.lock);
			run.failed++;
			run.done++;
			pthread_mutex_unlock(&run.lock);
			continue;
		}
		submitted++;
	}
	pthread_mutex_lock(&run.lock);
	while (run.done < n)
		cfs_tally_wait(&run, &progress, n, 100);
	pthread_mutex_unlock(&run.lock);
	cfs_progress_done(&progress);
	if (!cli.quiet) {
		char sz[32], rate[32];
		double secs = cfs_progress_elapsed(&progress);

		cfs_format_size(run.fetched_bytes, sz, sizeof(sz));
		cfs_format_size(secs > 0 ? (uint64_t)((double)run.fetched_bytes / secs) : 0, rate,
		                sizeof(rate));
		printf("%zu objects: %llu fetched (%s), %llu already present, %llu not found, "
		       "%llu failed in %.2fs (%s/s)\n",
		       n, (unsigned long long)run.fetched, sz, (unsigned long long)run.present,
		       (unsigned long long)run.missing, (unsigned long long)run.failed, secs, rate);
	}
	if (want_stats)
		print_stats(fetch);
	cfs_tally_report(&run, "fetch");
	ret = run.missing || run.failed ? 1 : 0;
out:
	cfs_fetch_free(fetch);
	cfs_store_free(store);
	cfs_digestset_free(&list);
	cfs_cli_free(&cli);
	if (fflush(stdout) != 0 && ret == 0)
		ret = 1;
	return ret;
}
