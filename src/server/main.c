/* SPDX-License-Identifier: MIT */
/* cfscache: cfs-serve command line: options, signals, and the server's lifetime. */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <event2/thread.h>

#include "common/log.h"
#include "common/util.h"
#include "server/server.h"
#include "server/upstream.h"

#define EXIT_MISUSE 2
#define MAX_LISTEN 16
#define MAX_UPSTREAMS 16

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
	    "      --upstream-ca-file F, --upstream-cert F, --upstream-key F,\n"
	    "      --upstream-token-file F, --upstream-insecure\n"
	    "                            TLS and token for talking to the upstreams\n"
	    "  -q, --quiet               print only errors\n"
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

static void raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

int main(int argc, char **argv)
{
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
		O_UP_CA,
		O_UP_CERT,
		O_UP_KEY,
		O_UP_TOKEN,
		O_UP_INSECURE,
		O_NEGTTL,
	};
	static const struct option opts[] = {
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
	    {"upstream-ca-file", required_argument, NULL, O_UP_CA},
	    {"upstream-cert", required_argument, NULL, O_UP_CERT},
	    {"upstream-key", required_argument, NULL, O_UP_KEY},
	    {"upstream-token-file", required_argument, NULL, O_UP_TOKEN},
	    {"upstream-insecure", no_argument, NULL, O_UP_INSECURE},
	    {"negative-ttl", required_argument, NULL, O_NEGTTL},
	    {"quiet", no_argument, NULL, 'q'},
	    {"verbose", no_argument, NULL, 'v'},
	    {"log-level", required_argument, NULL, O_LOGLEVEL},
	    {"syslog", no_argument, NULL, O_SYSLOG},
	    {"help", no_argument, NULL, 'h'},
	    {"version", no_argument, NULL, 'V'},
	    {NULL, 0, NULL, 0},
	};
	struct cfs_serve_config cfg = {
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
	const char *listen[MAX_LISTEN], *token_file = NULL, *access_log = NULL;
	enum cfs_log_level level = CFS_LOG_NOTICE;
	struct cfs_serve *srv = NULL;
	const char *upstreams[MAX_UPSTREAMS];
	struct cfs_upstream_options upo = { .accept_zstd = true, .negative_ttl_ms = 5000 };
	struct cfs_upstream *up = NULL;
	char *token = NULL;
	size_t n_listen = 0;
	unsigned long v;
	uint64_t u;
	sigset_t sigs;
	int c, r, sig, ret = 1;

	cfs_log_init("cfs-serve");
	while ((c = getopt_long(argc, argv, "s:l:t:qvhV", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			cfg.store_path = optarg;
			break;
		case 'l':
			if (n_listen == MAX_LISTEN)
				return misuse("at most %d --listen addresses", MAX_LISTEN);
			listen[n_listen++] = optarg;
			break;
		case 't':
			if (parse_uint(optarg, 1024, &v) < 0 || v == 0)
				return misuse("bad --threads '%s'", optarg);
			cfg.threads = (unsigned)v;
			break;
		case O_MAXCONN:
			if (parse_uint(optarg, 1000000, &v) < 0 || v == 0)
				return misuse("bad --max-connections '%s'", optarg);
			cfg.max_connections = (unsigned)v;
			break;
		case O_TIMEOUT:
			if (cfs_parse_duration_ms(optarg, &cfg.timeout_ms) < 0 ||
			    cfg.timeout_ms < 1000)
				return misuse("bad --timeout '%s' (at least 1s)", optarg);
			break;
		case O_HDRTIMEOUT:
			if (cfs_parse_duration_ms(optarg, &cfg.header_timeout_ms) < 0 ||
			    cfg.header_timeout_ms < 100)
				return misuse("bad --header-timeout '%s' (at least 100ms)", optarg);
			break;
		case O_SHUTDOWN:
			if (cfs_parse_duration_ms(optarg, &cfg.shutdown_timeout_ms) < 0)
				return misuse("bad --shutdown-timeout '%s'", optarg);
			break;
		case O_MAXHDR:
			if (cfs_parse_size(optarg, &u) < 0 || u < 512 || u > (1 << 20))
				return misuse("bad --max-header-size '%s' (512..1M)", optarg);
			cfg.max_header_size = (size_t)u;
			break;
		case O_MAXURI:
			if (parse_uint(optarg, 1 << 20, &v) < 0 || v < 80)
				return misuse("bad --max-uri '%s' (at least 80)", optarg);
			cfg.max_uri = v;
			break;
		case O_CERT:
			cfg.tls_cert = optarg;
			break;
		case O_KEY:
			cfg.tls_key = optarg;
			break;
		case O_TOKEN:
			token_file = optarg;
			break;
		case O_UPLOAD:
			cfg.allow_upload = true;
			break;
		case O_MAXUP:
			if (cfs_parse_size(optarg, &u) < 0 || u == 0 || u > (1ULL << 40))
				return misuse("bad --max-upload '%s'", optarg);
			cfg.max_upload = u;
			break;
		case O_NOZSTD:
			cfg.zstd = false;
			break;
		case O_ZLEVEL:
			if (parse_uint(optarg, 19, &v) < 0 || v == 0)
				return misuse("bad --zstd-level '%s' (1..19)", optarg);
			cfg.zstd_level = (int)v;
			break;
		case O_ZMAX:
			if (cfs_parse_size(optarg, &cfg.zstd_max_size) < 0)
				return misuse("bad --zstd-max-size '%s'", optarg);
			break;
		case O_ACCESS:
			access_log = optarg;
			break;
		case O_CACHE:
			if (cfs_parse_size(optarg, &u) < 0 || u > (1ULL << 34))
				return misuse("bad --cache-size '%s'", optarg);
			cfg.cache_size = (size_t)u;
			break;
		case O_UPSTREAM:
			if (upo.n_urls == MAX_UPSTREAMS)
				return misuse("at most %d --upstream servers", MAX_UPSTREAMS);
			upstreams[upo.n_urls++] = optarg;
			break;
		case O_MAXSIZE:
			if (cfs_parse_size(optarg, &upo.max_size) < 0 || upo.max_size == 0)
				return misuse("bad --max-size '%s'", optarg);
			break;
		case O_UP_CA:
			upo.ca_file = optarg;
			break;
		case O_UP_CERT:
			upo.client_cert = optarg;
			break;
		case O_UP_KEY:
			upo.client_key = optarg;
			break;
		case O_UP_TOKEN:
			upo.token_file = optarg;
			break;
		case O_UP_INSECURE:
			upo.insecure = true;
			break;
		case O_NEGTTL:
			if (cfs_parse_duration_ms(optarg, &upo.negative_ttl_ms) < 0 ||
			    upo.negative_ttl_ms > 3600000)
				return misuse("bad --negative-ttl '%s' (at most 1h)", optarg);
			break;
		case 'q':
			level = CFS_LOG_ERR;
			break;
		case 'v':
			if (level < CFS_LOG_DEBUG)
				level++;
			break;
		case O_LOGLEVEL:
			if (cfs_log_parse_level(optarg, &level) < 0)
				return misuse("unknown log level '%s'", optarg);
			break;
		case O_SYSLOG:
			cfs_log_use_syslog(true);
			break;
		case 'h':
			print_help(stdout);
			return 0;
		case 'V':
			printf("cfs-serve (cfscache) %s\n", PACKAGE_VERSION);
			return 0;
		default:
			fprintf(stderr, "Try 'cfs-serve --help'.\n");
			return EXIT_MISUSE;
		}
	}
	cfs_log_set_level(level);
	if (optind < argc)
		return misuse("unexpected argument '%s'", argv[optind]);
	if (!cfg.store_path)
		return misuse("%s", "missing --store DIR");
	if (!cfg.tls_cert != !cfg.tls_key)
		return misuse("%s", "--tls-cert and --tls-key go together");
	if (cfg.allow_upload && !token_file)
		return misuse("%s", "--allow-upload needs --token-file");
	if (upo.max_size && !upo.n_urls)
		return misuse("%s", "--max-size needs --upstream (a plain server never adds objects)");
	if (n_listen == 0)
		listen[n_listen++] = "0.0.0.0:8080";
	cfg.listen = listen;
	cfg.n_listen = n_listen;

	if (token_file) {
		r = cfs_read_small_file(token_file, 4096, &token);
		if (r < 0) {
			cfs_err("cannot read token file %s: %s", token_file, strerror(-r));
			return 1;
		}
		if (!token[0]) {
			cfs_err("token file %s is empty", token_file);
			goto out;
		}
		cfg.token = token;
	}
	if (access_log) {
		cfg.access_log = strcmp(access_log, "-") == 0 ? stderr : fopen(access_log, "ae");
		if (!cfg.access_log) {
			cfs_err("cannot open access log %s: %s", access_log, strerror(errno));
			goto out;
		}
		setvbuf(cfg.access_log, NULL, _IOLBF, 0);
	}

	signal(SIGPIPE, SIG_IGN);
	raise_nofile();
	/* Block the stop signals everywhere; this thread waits for them below. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);

	if (upo.n_urls) {
		/* Fetch completions wake the loops from another thread: locked event bases. */
		if (evthread_use_pthreads() < 0) {
			cfs_err("libevent has no thread support");
			goto out;
		}
		upo.urls = upstreams;
		upo.store_path = cfg.store_path;
		r = cfs_upstream_new(&upo, &up);
		if (r < 0) {
			cfs_err("cannot start the pull-through fetcher: %s", strerror(-r));
			goto out;
		}
		cfg.miss_fn = cfs_upstream_miss;
		cfg.miss_userdata = up;
		cfg.metrics_fn = cfs_upstream_metrics;
		cfs_notice("pull-through from %zu upstream server(s)%s", upo.n_urls,
			   upo.max_size ? " with a size quota" : "");
	}
	r = cfs_serve_new(&cfg, &srv);
	if (r < 0)
		goto out;
	r = cfs_serve_start(srv);
	if (r < 0) {
		cfs_err("cannot start threads: %s", strerror(-r));
		goto out;
	}
	do {
		r = sigwait(&sigs, &sig);
	} while (r != 0);
	cfs_notice("%s: finishing in-flight requests", sig == SIGTERM ? "SIGTERM" : "SIGINT");
	cfs_serve_stop(srv);
	cfs_serve_join(srv);
	cfs_notice("stopped");
	ret = 0;
out:
	/* The fetcher goes first: its last callbacks may still post to the loops' bases. */
	cfs_upstream_free(up);
	cfs_serve_free(srv);
	if (cfg.access_log && cfg.access_log != stderr)
		fclose(cfg.access_log);
	free(token);
	return ret;
}
