/* SPDX-License-Identifier: MIT */
/* cfscache: cfs-serve command line: options, signals, and the server's lifetime (parse, set up,
 * run, tear down). */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/thread.h>

#include "common/log.h"
#include "common/store.h"
#include "common/util.h"
#include "fetcher/fetch-opts.h"
#include "server/server.h"
#include "server/upstream.h"

#define EXIT_MISUSE 2
#define MAX_LISTEN 16
/* The client options of the pull-through fetcher, as --upstream-NAME; --upstream is its server
 * list. */
#define UPSTREAM_OPTS CFS_FETCH_OPT_TLS
#define UPSTREAM_BASE 0x1000

static const char no_shorts[CFS_FETCH_OPT_COUNT];

static void print_help(FILE *f)
{
	fprintf(
	    f,
	    "Usage: cfs-serve --store DIR [--listen ADDR:PORT]... [OPTIONS]\n\n"
	    "Serve an object store over HTTP(S) at /objects/XX/<62hex>.\n\n"
	    "Options:\n"
	    "  -s, --store DIR           the store to serve (required)\n"
	    "  -l, --listen ADDR:PORT    address to listen on, repeatable (default 0.0.0.0:8080)\n"
	    "  -t, --threads N           event loops (default: number of CPUs)\n"
	    "      --max-connections N   answer 503 above N open connections (default 4096)\n"
	    "      --timeout DUR         read/write/idle timeout per connection (default 30s)\n"
	    "      --header-timeout DUR  a whole request head (and TLS handshake) must arrive\n"
	    "                            within DUR (default 10s)\n"
	    "      --shutdown-timeout DUR  time for in-flight requests on SIGTERM (default 10s)\n"
	    "      --max-header-size SIZE  request line + headers limit (default 8k)\n"
	    "      --max-uri N           request-target length limit (default 1024)\n"
	    "      --tls-cert FILE       serve HTTPS with this PEM certificate (chain)\n"
	    "      --tls-key FILE        ... and this PEM private key\n"
	    "      --token-file FILE     require 'Authorization: Bearer <token>'\n"
	    "      --allow-upload        accept PUT of objects (needs --token-file)\n"
	    "      --max-upload SIZE     PUT body limit (default 64M)\n"
	    "      --no-zstd             never send Content-Encoding: zstd\n"
	    "      --zstd-level N        compression level of side files (default 3)\n"
	    "      --zstd-max-size SIZE  never compress objects above SIZE (default 16M)\n"
	    "      --cache-size SIZE     small objects kept in memory, and open files\n"
	    "                            of larger ones (default 8M; 0 = no cache)\n"
	    "      --access-log FILE     one line per request to FILE ('-' = stderr)\n"
	    "      --upstream URL        pull-through: fetch missing objects from this server\n"
	    "                            (repeatable, tried in order), verify, store, serve\n"
	    "      --max-size SIZE       with --upstream: keep the store under SIZE by evicting\n"
	    "                            least recently used objects\n"
	    "      --negative-ttl DUR    with --upstream: remember an upstream 404 for DUR\n"
	    "                            (default 5s; 0 = never)\n"
	    "  with --upstream, TLS and token for talking to the upstreams:\n");
	cfs_fetch_opts_print_help(f, UPSTREAM_OPTS, "upstream-", no_shorts, 28);
	fprintf(f, "  -q, --quiet               print only errors\n"
	           "  -v, --verbose             more log output (repeat for debug)\n"
	           "      --log-level L         err, warning, notice, info or debug\n"
	           "      --syslog              log to syslog instead of stderr\n"
	           "  -h, --help                show this help\n"
	           "  -V, --version             show the version\n\n"
	           "SIGTERM or SIGINT: stop accepting, finish in-flight requests, exit 0.\n"
	           "See cfs-serve(1).\n");
}

static int misuse(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int misuse(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "cfs-serve: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry 'cfs-serve --help'.\n");
	return EXIT_MISUSE;
}

static int parse_uint(const char *s, unsigned long max, unsigned long *v)
{
	char *end;

	errno = 0;
	*v = strtoul(s, &end, 10);
	if (errno || end == s || *end || *v > max || s[0] == '-')
		return -EINVAL;
	return 0;
}

enum {
	O_MAXCONN = 256,
	O_TIMEOUT,
	O_HDRTIMEOUT,
	O_SHUTDOWN,
	O_MAXHDR,
	O_MAXURI,
	O_CERT,
	O_KEY,
	O_TOKEN,
	O_UPLOAD,
	O_MAXUP,
	O_NOZSTD,
	O_ZLEVEL,
	O_ZMAX,
	O_ACCESS,
	O_LOGLEVEL,
	O_SYSLOG,
	O_CACHE,
	O_UPSTREAM,
	O_MAXSIZE,
	O_NEGTTL,
};

/* A cfs-serve run: what the options said, then what it set up. */
struct serve_cmd {
	struct cfs_serve_config cfg;
	const char *listen[MAX_LISTEN], *token_file, *access_log;
	size_t n_listen;
	enum cfs_log_level level;
	struct cfs_fetch_opts upstream; /* --upstream and --upstream-NAME */
	struct cfs_upstream_options upo;
	struct cfs_store *store;
	struct cfs_upstream *up;
	struct cfs_serve *srv;
	char *token;
	sigset_t sigs;
};

static const struct option serve_opts[] = {
    {"store", required_argument, NULL, 's'},
    {"listen", required_argument, NULL, 'l'},
    {"threads", required_argument, NULL, 't'},
    {"max-connections", required_argument, NULL, O_MAXCONN},
    {"timeout", required_argument, NULL, O_TIMEOUT},
    {"header-timeout", required_argument, NULL, O_HDRTIMEOUT},
    {"shutdown-timeout", required_argument, NULL, O_SHUTDOWN},
    {"max-header-size", required_argument, NULL, O_MAXHDR},
    {"max-uri", required_argument, NULL, O_MAXURI},
    {"tls-cert", required_argument, NULL, O_CERT},
    {"tls-key", required_argument, NULL, O_KEY},
    {"token-file", required_argument, NULL, O_TOKEN},
    {"allow-upload", no_argument, NULL, O_UPLOAD},
    {"max-upload", required_argument, NULL, O_MAXUP},
    {"no-zstd", no_argument, NULL, O_NOZSTD},
    {"zstd-level", required_argument, NULL, O_ZLEVEL},
    {"zstd-max-size", required_argument, NULL, O_ZMAX},
    {"access-log", required_argument, NULL, O_ACCESS},
    {"cache-size", required_argument, NULL, O_CACHE},
    {"upstream", required_argument, NULL, O_UPSTREAM},
    {"max-size", required_argument, NULL, O_MAXSIZE},
    {"negative-ttl", required_argument, NULL, O_NEGTTL},
    {"quiet", no_argument, NULL, 'q'},
    {"verbose", no_argument, NULL, 'v'},
    {"log-level", required_argument, NULL, O_LOGLEVEL},
    {"syslog", no_argument, NULL, O_SYSLOG},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, 'V'},
};

static void serve_init(struct serve_cmd *cmd)
{
	memset(cmd, 0, sizeof(*cmd));
	cmd->cfg = (struct cfs_serve_config){
	    .max_connections = 4096,
	    .timeout_ms = 30000,
	    .header_timeout_ms = 10000,
	    .shutdown_timeout_ms = 10000,
	    .max_header_size = 8192,
	    .max_uri = 1024,
	    .max_upload = 64ULL << 20,
	    .zstd = true,
	    .zstd_level = 3,
	    .zstd_max_size = 16ULL << 20,
	    .cache_size = 8 << 20,
	};
	cmd->level = CFS_LOG_NOTICE;
	cmd->upo.negative_ttl_ms = 5000;
	cfs_fetch_opts_init(&cmd->upstream);
}

/* Limits of the connections and requests: 0 when @c was one, -1 when not, else the exit
 * status. */
static int serve_limit_option(struct serve_cmd *cmd, int c)
{
	struct cfs_serve_config *cfg = &cmd->cfg;
	unsigned long v;
	uint64_t u;

	switch (c) {
	case 't':
		if (parse_uint(optarg, 1024, &v) < 0 || v == 0)
			return misuse("bad --threads '%s'", optarg);
		cfg->threads = (unsigned)v;
		return 0;
	case O_MAXCONN:
		if (parse_uint(optarg, 1000000, &v) < 0 || v == 0)
			return misuse("bad --max-connections '%s'", optarg);
		cfg->max_connections = (unsigned)v;
		return 0;
	case O_TIMEOUT:
		if (cfs_parse_duration_ms(optarg, &cfg->timeout_ms) < 0 || cfg->timeout_ms < 1000)
			return misuse("bad --timeout '%s' (at least 1s)", optarg);
		return 0;
	case O_HDRTIMEOUT:
		if (cfs_parse_duration_ms(optarg, &cfg->header_timeout_ms) < 0 ||
		    cfg->header_timeout_ms < 100)
			return misuse("bad --header-timeout '%s' (at least 100ms)", optarg);
		return 0;
	case O_SHUTDOWN:
		if (cfs_parse_duration_ms(optarg, &cfg->shutdown_timeout_ms) < 0)
			return misuse("bad --shutdown-timeout '%s'", optarg);
		return 0;
	case O_MAXHDR:
		if (cfs_parse_size(optarg, &u) < 0 || u < 512 || u > (1 << 20))
			return misuse("bad --max-header-size '%s' (512..1M)", optarg);
		cfg->max_header_size = (size_t)u;
		return 0;
	case O_MAXURI:
		if (parse_uint(optarg, 1 << 20, &v) < 0 || v < 80)
			return misuse("bad --max-uri '%s' (at least 80)", optarg);
		cfg->max_uri = v;
		return 0;
	case O_MAXUP:
		if (cfs_parse_size(optarg, &u) < 0 || u == 0 || u > (1ULL << 40))
			return misuse("bad --max-upload '%s'", optarg);
		cfg->max_upload = u;
		return 0;
	default:
		return -1;
	}
}

/* What is served and how: 0 when @c was one, -1 when not, else the exit status. */
static int serve_content_option(struct serve_cmd *cmd, int c)
{
	struct cfs_serve_config *cfg = &cmd->cfg;
	unsigned long v;
	uint64_t u;

	switch (c) {
	case O_NOZSTD:
		cfg->zstd = false;
		return 0;
	case O_ZLEVEL:
		if (parse_uint(optarg, 19, &v) < 0 || v == 0)
			return misuse("bad --zstd-level '%s' (1..19)", optarg);
		cfg->zstd_level = (int)v;
		return 0;
	case O_ZMAX:
		if (cfs_parse_size(optarg, &cfg->zstd_max_size) < 0)
			return misuse("bad --zstd-max-size '%s'", optarg);
		return 0;
	case O_CACHE:
		if (cfs_parse_size(optarg, &u) < 0 || u > (1ULL << 34))
			return misuse("bad --cache-size '%s'", optarg);
		cfg->cache_size = (size_t)u;
		return 0;
	case O_MAXSIZE:
		if (cfs_parse_size(optarg, &cmd->upo.max_size) < 0 || cmd->upo.max_size == 0)
			return misuse("bad --max-size '%s'", optarg);
		return 0;
	case O_NEGTTL:
		if (cfs_parse_duration_ms(optarg, &cmd->upo.negative_ttl_ms) < 0 ||
		    cmd->upo.negative_ttl_ms > 3600000)
			return misuse("bad --negative-ttl '%s' (at most 1h)", optarg);
		return 0;
	default:
		return -1;
	}
}

/* The upstreams' client options: 0 when @c was one, -1 when not, else the exit status. */
static int serve_upstream_option(struct serve_cmd *cmd, int c)
{
	char err[CFS_FETCH_OPTS_ERR_LEN];
	int id, r;

	if (c == O_UPSTREAM)
		id = CFS_FETCH_OPT_SERVER;
	else if (c >= UPSTREAM_BASE && c < UPSTREAM_BASE + CFS_FETCH_OPT_COUNT)
		id = c - UPSTREAM_BASE;
	else
		return -1;
	r = cfs_fetch_opts_set(&cmd->upstream, (enum cfs_fetch_opt_id)id, optarg, err);
	if (r == -EINVAL)
		return misuse("%s", err);
	return r < 0 ? 1 : 0;
}

/* One option: 0 done, -1 to exit 0 (help, version), else the exit status. */
static int serve_option(struct serve_cmd *cmd, int c)
{
	int r = serve_limit_option(cmd, c);

	if (r < 0)
		r = serve_content_option(cmd, c);
	if (r < 0)
		r = serve_upstream_option(cmd, c);
	if (r >= 0)
		return r;
	switch (c) {
	case 's':
		cmd->cfg.store_path = optarg;
		return 0;
	case 'l':
		if (cmd->n_listen == MAX_LISTEN)
			return misuse("at most %d --listen addresses", MAX_LISTEN);
		cmd->listen[cmd->n_listen++] = optarg;
		return 0;
	case O_CERT:
		cmd->cfg.tls_cert = optarg;
		return 0;
	case O_KEY:
		cmd->cfg.tls_key = optarg;
		return 0;
	case O_TOKEN:
		cmd->token_file = optarg;
		return 0;
	case O_UPLOAD:
		cmd->cfg.allow_upload = true;
		return 0;
	case O_ACCESS:
		cmd->access_log = optarg;
		return 0;
	case 'q':
		cmd->level = CFS_LOG_ERR;
		return 0;
	case 'v':
		if (cmd->level < CFS_LOG_DEBUG)
			cmd->level++;
		return 0;
	case O_LOGLEVEL:
		if (cfs_log_parse_level(optarg, &cmd->level) < 0)
			return misuse("unknown log level '%s'", optarg);
		return 0;
	case O_SYSLOG:
		cfs_log_use_syslog(true);
		return 0;
	case 'h':
		print_help(stdout);
		return -1;
	case 'V':
		printf("cfs-serve (cfscache) %s\n", PACKAGE_VERSION);
		return -1;
	default:
		fprintf(stderr, "Try 'cfs-serve --help'.\n");
		return EXIT_MISUSE;
	}
}

/* The command line: -1 to go on, else the exit status. */
static int serve_parse(struct serve_cmd *cmd, int argc, char **argv)
{
	struct option opts[CFS_ARRAY_SIZE(serve_opts) + CFS_FETCH_OPT_COUNT + 1];
	struct cfs_fetch_opts_getopt g;
	int c, r;

	memcpy(opts, serve_opts, sizeof(serve_opts));
	cfs_fetch_opts_getopt(&g, UPSTREAM_OPTS, "upstream-", UPSTREAM_BASE);
	cfs_fetch_opts_getopt_append(&g, opts, CFS_ARRAY_SIZE(serve_opts));
	while ((c = getopt_long(argc, argv, "s:l:t:qvhV", opts, NULL)) != -1) {
		r = serve_option(cmd, c);
		if (r != 0)
			return r < 0 ? 0 : r;
	}
	cfs_log_set_level(cmd->level);
	if (optind < argc)
		return misuse("unexpected argument '%s'", argv[optind]);
	if (!cmd->cfg.store_path)
		return misuse("%s", "missing --store DIR");
	if (!cmd->cfg.tls_cert != !cmd->cfg.tls_key)
		return misuse("%s", "--tls-cert and --tls-key go together");
	if (cmd->cfg.allow_upload && !cmd->token_file)
		return misuse("%s", "--allow-upload needs --token-file");
	if (cmd->upo.max_size && !cmd->upstream.n_servers)
		return misuse("%s",
		              "--max-size needs --upstream (a plain server never adds objects)");
	if (cmd->n_listen == 0)
		cmd->listen[cmd->n_listen++] = "0.0.0.0:8080";
	cmd->cfg.listen = cmd->listen;
	cmd->cfg.n_listen = cmd->n_listen;
	return -1;
}

/* The token, the access log and the store: 0 or -errno (said). */
static int serve_open_files(struct serve_cmd *cmd)
{
	struct cfs_serve_config *cfg = &cmd->cfg;
	/* A pull-through cache adds objects, and creates its store; uploads clean it too. */
	unsigned flags = cmd->upstream.n_servers ? CFS_STORE_CREATE
	                 : cfg->allow_upload     ? 0
	                                         : CFS_STORE_NO_CLEAN;
	int r;

	if (cmd->token_file) {
		r = cfs_read_small_file(cmd->token_file, 4096, &cmd->token);
		if (r < 0) {
			cfs_err("cannot read token file %s: %s", cmd->token_file, strerror(-r));
			return r;
		}
		if (!cmd->token[0]) {
			cfs_err("token file %s is empty", cmd->token_file);
			return -EINVAL;
		}
		cfg->token = cmd->token;
	}
	if (cmd->access_log) {
		cfg->access_log =
		    strcmp(cmd->access_log, "-") == 0 ? stderr : fopen(cmd->access_log, "ae");
		if (!cfg->access_log) {
			r = -errno;
			cfs_err("cannot open access log %s: %s", cmd->access_log, strerror(errno));
			return r;
		}
		setvbuf(cfg->access_log, NULL, _IOLBF, 0);
	}
	r = cfs_store_open(cfg->store_path, flags, &cmd->store);
	if (r < 0) {
		cfs_err("cannot open store %s: %s", cfg->store_path, strerror(-r));
		return r;
	}
	cfg->store = cmd->store;
	return 0;
}

/* The pull-through fetcher, on the same store handle: 0 or -errno (said). */
static int serve_start_upstream(struct serve_cmd *cmd)
{
	int r;

	/* Fetch completions wake the loops from another thread: locked event bases. */
	if (evthread_use_pthreads() < 0) {
		cfs_err("libevent has no thread support");
		return -ENOSYS;
	}
	cmd->upo.fetch = &cmd->upstream.o;
	cmd->upo.store = cmd->store;
	r = cfs_upstream_new(&cmd->upo, &cmd->up);
	if (r < 0) {
		cfs_err("cannot start the pull-through fetcher: %s", strerror(-r));
		return r;
	}
	cmd->cfg.miss_fn = cfs_upstream_miss;
	cmd->cfg.miss_userdata = cmd->up;
	cmd->cfg.metrics_fn = cfs_upstream_metrics;
	cfs_notice("pull-through from %zu upstream server(s)%s", cmd->upstream.n_servers,
	           cmd->upo.max_size ? " with a size quota" : "");
	return 0;
}

/* Opens everything and starts the loops: 0 or -errno (said). */
static int serve_setup(struct serve_cmd *cmd)
{
	char err[512];
	int r = cfs_fetch_opts_check_files(&cmd->upstream.o, err, sizeof(err));

	if (r < 0) {
		cfs_err("%s", err);
		return r;
	}
	r = serve_open_files(cmd);
	if (r < 0)
		return r;
	signal(SIGPIPE, SIG_IGN);
	cfs_raise_nofile();
	/* Block the stop signals everywhere; this thread waits for them in serve_run. */
	sigemptyset(&cmd->sigs);
	sigaddset(&cmd->sigs, SIGTERM);
	sigaddset(&cmd->sigs, SIGINT);
	pthread_sigmask(SIG_BLOCK, &cmd->sigs, NULL);
	if (cmd->upstream.n_servers && (r = serve_start_upstream(cmd)) < 0)
		return r;
	r = cfs_serve_new(&cmd->cfg, &cmd->srv);
	if (r < 0)
		return r;
	r = cfs_serve_start(cmd->srv);
	if (r < 0)
		cfs_err("cannot start threads: %s", strerror(-r));
	return r;
}

/* Serves until SIGTERM or SIGINT, then lets in-flight requests finish. */
static void serve_run(struct serve_cmd *cmd)
{
	int sig;

	while (sigwait(&cmd->sigs, &sig) != 0) {
	}
	cfs_notice("%s: finishing in-flight requests", sig == SIGTERM ? "SIGTERM" : "SIGINT");
	cfs_serve_stop(cmd->srv);
	cfs_serve_join(cmd->srv);
	cfs_notice("stopped");
}

static void serve_teardown(struct serve_cmd *cmd)
{
	/* The fetcher goes first: its last callbacks may still post to the loops' bases. */
	cfs_upstream_free(cmd->up);
	cfs_serve_free(cmd->srv);
	cfs_store_free(cmd->store);
	if (cmd->cfg.access_log && cmd->cfg.access_log != stderr)
		fclose(cmd->cfg.access_log);
	free(cmd->token);
	cfs_fetch_opts_free(&cmd->upstream);
}

int main(int argc, char **argv)
{
	struct serve_cmd cmd;
	int ret;

	cfs_log_init("cfs-serve");
	serve_init(&cmd);
	ret = serve_parse(&cmd, argc, argv);
	if (ret < 0 && serve_setup(&cmd) < 0)
		ret = 1;
	if (ret < 0) {
		serve_run(&cmd);
		ret = 0;
	}
	serve_teardown(&cmd);
	return ret;
}
