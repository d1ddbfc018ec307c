/* SPDX-License-Identifier: MIT */
/* cfscache: `cfs-cache [OPTIONS] MOUNTPOINT`: option checks (mount-opts.c parses them), daemon
 * start-up order, and shutdown of the FUSE session and fetch engine. */
#include "config.h"

#define FUSE_USE_VERSION 312

#include <errno.h>
#include <fuse_lowlevel.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/mount.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/quota.h"
#include "common/store.h"
#include "common/util.h"
#include "fetcher/fetch.h"
#include "fusefs/cmds.h"
#include "fusefs/fs.h"
#include "fusefs/devio.h"
#include "fusefs/handover.h"
#include "fusefs/mount-opts.h"
#include "image/image.h"

#define HANDOFF_COMMIT_DELAY_MS 1000
#define DEFAULT_NEGATIVE_TIMEOUT_MS 5000

static void usage(FILE *f)
{
	fprintf(
	    f,
	    "Usage: cfs-cache --store DIR --server URL [--server URL]... [OPTIONS] MOUNTPOINT\n"
	    "       cfs-cache SOURCE MOUNTPOINT -o store=DIR,server=URL[,...]   (mount.fuse3)\n"
	    "       cfs-cache fetch|prefetch|stats|doctor|mount-image ...\n\n"
	    "Mounts a FUSE filesystem showing a composefs object store (XX/<62 hex>). Objects\n"
	    "missing from the local store are fetched from the servers, verified against their\n"
	    "fs-verity digest while they stream, and saved into the store before they appear.\n\n"
	    "DURATION is a number of seconds or 500ms, 30s, 5m, 2h; SIZE takes K, M, G, T (1024)\n"
	    "or KB, MB, GB (1000).\n\n"
	    "Options (also as -o name=value):\n"
	    "  --store DIR             local object store (created if missing)\n");
	cfs_mount_opts_print_fetch_help(f);
	fprintf(
	    f,
	    "  --handoff DIR           hand-off directory: verified objects are linked here and\n"
	    "                          the lookup answered ENOENT, so overlayfs (basedir\n"
	    "                          STORE:MOUNTPOINT:DIR) opens the real file; on the store's\n"
	    "                          filesystem, outside it (default: STORE.handoff)\n"
	    "  --no-handoff            answer objects as FUSE files instead (direct reads and\n"
	    "                          two-layer basedirs; no verity=on, no stacked overlays)\n"
	    "  --no-passthrough        the default; accepted for old command lines\n"
	    "  --passthrough           with --no-handoff: let the kernel read open objects from\n"
	    "                          the store file (FUSE passthrough; deepens the fs stack)\n"
	    "  --timeout DURATION      kernel cache time for names and attributes (default "
	    "86400s)\n"
	    "  --trace FILE            append 'XX/<62hex> SIZE SECONDS' for each object fetched\n"
	    "  --max-size SIZE         keep the local store under SIZE (e.g. 20G): least recently\n"
	    "                          used objects are evicted down to the low-water mark\n"
	    "  --low-water SIZE        where eviction stops (default 90%% of --max-size)\n"
	    "  --pin IMAGE             never evict the objects of this composefs image "
	    "(repeatable)\n"
	    "  --rescan DURATION       with --max-size or --pin: re-read the store this often to\n"
	    "                          count objects other processes add or remove (default 60s,\n"
	    "                          0 = never)\n"
	    "  --supervise             keep a small parent holding the FUSE connection that\n"
	    "                          restarts the daemon if it dies (no systemd needed)\n"
	    "  --negative-timeout DURATION  answer an object absent on every server ENOENT\n"
	    "                          without asking again for this long (default 5s, at\n"
	    "                          most 4096 objects remembered; 0 = off)\n"
	    "  --metrics-file FILE     write the counters to FILE (absolute path) in the\n"
	    "                          Prometheus text format (node_exporter's textfile\n"
	    "                          collector), replaced atomically\n"
	    "  --metrics-interval DURATION  how often (default 15s)\n"
	    "  --log-file FILE         append the log to FILE (absolute path) instead of stderr\n"
	    "                          (-f) or syslog (once daemonized)\n"
	    "  --log-level LEVEL       err, warning, notice (default), info, debug\n"
	    "  -q, -v                  errors only; one level more (repeatable)\n"
	    "  --syslog                log to syslog (the default once daemonized)\n"
	    "  -f                      stay in the foreground\n"
	    "  -d                      FUSE debug output (implies -f)\n"
	    "  -s                      single-threaded\n"
	    "  -o OPT[,OPT...]         any option above as name=value or name ('_' or '-'), and "
	    "FUSE\n"
	    "                          mount options (allow_other, ...)\n"
	    "  -h, --help              this help;  -V, --version  the version\n\n"
	    "Signals: TERM/INT unmount; HUP re-executes the installed binary on the same\n"
	    "connection (upgrade). Under systemd the connection goes to the fd store, and a\n"
	    "restarted daemon adopts it (LISTEN_FDS) instead of mounting again.\n\n"
	    "Counters: getfattr -d -m user.cfs MOUNTPOINT, or cfs-cache stats MOUNTPOINT.\n"
	    "See cfs-cache(1).\n");
}

/* One HEAD per server at start, off the serving path: a server that cannot be reached shows as
 * "unreachable" in the counters before any lookup needs it. */
struct prober {
	pthread_t thread;
	bool started;
};

static void *prober_main(void *arg)
{
	cfs_fetch_probe_servers(arg);
	return NULL;
}

static void prober_start(struct prober *p, struct cfs_fetch *fetch)
{
	p->started = pthread_create(&p->thread, NULL, prober_main, fetch) == 0;
}

static void prober_stop(struct prober *p)
{
	if (p->started)
		pthread_join(p->thread, NULL);
	p->started = false;
}

/* A thread that runs @tick every @interval_ms (first after one interval, or at once with
 * @at_start) until stopped. */
struct ticker {
	void (*tick)(void *ctx);
	void *ctx;
	uint64_t interval_ms;
	bool at_start;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool stop, started;
};

static void *ticker_main(void *arg)
{
	struct ticker *t = arg;
	bool first = true;

	pthread_mutex_lock(&t->lock);
	while (!t->stop) {
		struct timespec ts;

		if (!(first && t->at_start)) {
			cfs_deadline_ms(&ts, t->interval_ms);
			while (!t->stop && pthread_cond_timedwait(&t->cond, &t->lock, &ts) == 0)
				;
			if (t->stop)
				break;
		}
		first = false;
		pthread_mutex_unlock(&t->lock);
		t->tick(t->ctx);
		pthread_mutex_lock(&t->lock);
	}
	pthread_mutex_unlock(&t->lock);
	return NULL;
}

static void ticker_start(struct ticker *t, const char *what)
{
	int r;

	pthread_mutex_init(&t->lock, NULL);
	pthread_cond_init(&t->cond, NULL);
	r = pthread_create(&t->thread, NULL, ticker_main, t);
	if (r != 0)
		cfs_warn("cannot start the %s thread: %s", what, strerror(r));
	t->started = r == 0;
}

static void ticker_stop(struct ticker *t)
{
	if (!t->started)
		return;
	pthread_mutex_lock(&t->lock);
	t->stop = true;
	pthread_cond_signal(&t->cond);
	pthread_mutex_unlock(&t->lock);
	pthread_join(t->thread, NULL);
	pthread_cond_destroy(&t->cond);
	pthread_mutex_destroy(&t->lock);
	t->started = false;
}

/* Keeps the quota's index in step with objects other processes (prefetch, gc) add or remove. */
static void rescan_tick(void *ctx)
{
	struct cfs_quota_refresh res;
	int r = cfs_quota_refresh(ctx, &res);

	if (r < 0)
		cfs_warn("rescan of the store failed: %s", strerror(-r));
	else if (res.added || res.removed || res.evicted)
		cfs_info("store rescan: %llu new, %llu gone, %llu evicted",
		         (unsigned long long)res.added, (unsigned long long)res.removed,
		         (unsigned long long)res.evicted);
}

/* --metrics-file: the counters in node_exporter's textfile format, replaced atomically. */
struct metrics {
	struct cfs_fs *fs;
	const char *path, *mountpoint;
	bool failing; /* the last write failed (said once until one works again) */
};

static void metrics_tick(void *ctx)
{
	struct metrics *m = ctx;
	char tmp[PATH_MAX + 16];
	FILE *f;
	int r;

	snprintf(tmp, sizeof(tmp), "%s.tmp", m->path);
	f = fopen(tmp, "we");
	r = f ? cfs_fs_write_metrics(m->fs, f, m->mountpoint) : -errno;
	if (f && fclose(f) != 0 && r == 0)
		r = -errno;
	if (r == 0 && rename(tmp, m->path) < 0)
		r = -errno;
	if (r < 0 && f)
		unlink(tmp);
	if (r < 0 && !m->failing)
		cfs_warn("cannot write --metrics-file %s: %s", m->path, strerror(-r));
	else if (r == 0 && m->failing)
		cfs_notice("--metrics-file %s written again", m->path);
	m->failing = r < 0;
}

static int setup_quota(const struct mount_opts *mo, struct cfs_store *store,
                       struct cfs_quota **quota_ret)
{
	uint64_t max = 0, low = 0;
	int r;

	if (mo->max_size && (cfs_parse_size(mo->max_size, &max) < 0 || max == 0)) {
		fprintf(stderr, "cfs-cache: invalid --max-size '%s'\n", mo->max_size);
		return -EINVAL;
	}
	if (mo->low_water && (cfs_parse_size(mo->low_water, &low) < 0 || low > max)) {
		fprintf(stderr,
		        "cfs-cache: invalid --low-water '%s' (must not exceed --max-size)\n",
		        mo->low_water);
		return -EINVAL;
	}
	r = cfs_quota_new(store, max, low, quota_ret);
	if (r < 0) {
		fprintf(stderr, "cfs-cache: cannot index the store: %s\n", strerror(-r));
		return r;
	}
	if (mo->n_pins) {
		r = cfs_image_pin_files(*quota_ret, mo->pins, mo->n_pins);
		if (r < 0)
			return r;
		cfs_notice("pinned %d object(s) of %zu image(s)", r, mo->n_pins);
	}
	/* A store already over its quota is brought down before serving. */
	if (max) {
		struct cfs_quota_stats st;

		cfs_quota_get_stats(*quota_ret, &st);
		if (st.bytes > max)
			cfs_quota_evict_to(*quota_ret, st.low_water);
	}
	return 0;
}

/* A mount's run: the options, then what is set up, in start-up order. */
struct mount_cmd {
	struct mount_opts mo;
	struct fuse_args args;
	struct fuse_cmdline_opts fopts;
	struct cfs_fs_options fso;
	uint64_t metrics_ms, rescan_ms;
	struct cfs_store *store;
	struct cfs_handoff *handoff;
	struct cfs_quota *quota;
	struct cfs_fs *fs;
	struct cfs_handover ho;
	char exe[PATH_MAX];
	char **exec_argv; /* what a re-executed or supervised daemon runs with */
	bool supervisor;
	struct fuse_session *se;
	bool signals, mounted; /* the session's signal handlers are set; it is mounted */
	struct fuse_loop_config *loop_cfg;
	struct cfs_fetch *fetch;
	struct prober prober;
	struct ticker rf, mt;
	struct metrics metrics;
};

/* Says what is wrong with the command line: the misuse exit status. */
static int __attribute__((format(printf, 1, 2))) misuse_exit(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "cfs-cache: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return CFS_EXIT_MISUSE;
}

/* The command line, and what goes on to libfuse: -1 to go on, else the exit status. */
static int mount_parse(struct mount_cmd *cmd, int argc, char **argv)
{
	struct mount_opts *mo = &cmd->mo;
	int r = cfs_mount_opts_parse(argc, argv, mo);

	if (r < 0)
		return r == -EINVAL ? CFS_EXIT_MISUSE : 1;
	if (mo->show_help) {
		usage(stdout);
		return 0;
	}
	if (mo->show_version) {
		printf("cfs-cache (cfscache) %s, libfuse %s\n", PACKAGE_VERSION, fuse_pkgversion());
		return 0;
	}
	/* mount.fuse3 passes SOURCE MOUNTPOINT; an http(s) SOURCE doubles as a server. */
	if (mo->source &&
	    (strncmp(mo->source, "http://", 7) == 0 || strncmp(mo->source, "https://", 8) == 0)) {
		char err[CFS_FETCH_OPTS_ERR_LEN];

		r = cfs_fetch_opts_set(&mo->fetch, CFS_FETCH_OPT_SERVER, mo->source, err);
		if (r < 0) {
			fprintf(stderr, "cfs-cache: %s\n", r == -EINVAL ? err : strerror(-r));
			return r == -EINVAL ? CFS_EXIT_MISUSE : 1;
		}
	}
	/* What libfuse parses itself: -f, -d, -s, its -o options and the mountpoint. */
	if (fuse_opt_add_arg(&cmd->args, argv[0]) < 0 ||
	    (mo->foreground && fuse_opt_add_arg(&cmd->args, "-f") < 0) ||
	    (mo->debug && fuse_opt_add_arg(&cmd->args, "-d") < 0) ||
	    (mo->singlethread && fuse_opt_add_arg(&cmd->args, "-s") < 0) ||
	    (mo->fuse_opts && (fuse_opt_add_arg(&cmd->args, "-o") < 0 ||
	                       fuse_opt_add_arg(&cmd->args, mo->fuse_opts) < 0)) ||
	    fuse_opt_add_arg(&cmd->args, mo->mountpoint) < 0)
		return 1;
	if (!mo->store)
		return misuse_exit("%s", "--store is required\nTry 'cfs-cache --help'.");
	if (mo->fetch.n_servers == 0)
		fprintf(stderr, "cfs-cache: warning: no --server: only the local store is shown\n");
	return -1;
}

/* The log, the client's files and libfuse's options: -1 to go on, else the exit status. */
static int mount_check(struct mount_cmd *cmd)
{
	struct mount_opts *mo = &cmd->mo;
	enum cfs_log_level level = CFS_LOG_NOTICE;
	int r;

	if (cfs_mount_opts_log_level(mo, &level) < 0)
		return CFS_EXIT_MISUSE;
	cfs_log_set_level(level);
	/* Absolute: the daemon's directory is / and a re-executed one opens it again. */
	if (mo->log_file && mo->log_file[0] != '/')
		return misuse_exit("%s", "--log-file must be an absolute path");
	if (mo->log_file && (r = cfs_log_use_file(mo->log_file)) < 0) {
		fprintf(stderr, "cfs-cache: cannot open --log-file %s: %s\n", mo->log_file,
		        strerror(-r));
		return 1;
	}
	/* Checked before the daemon detaches: a bad token file is said on the terminal. */
	if (mo->fetch.n_servers) {
		char err[512];

		r = cfs_fetch_opts_check_files(&mo->fetch.o, err, sizeof(err));
		if (r < 0) {
			fprintf(stderr, "cfs-cache: %s\n", err);
			return 1;
		}
	}
	if (fuse_parse_cmdline(&cmd->args, &cmd->fopts) != 0)
		return CFS_EXIT_MISUSE;
	return -1;
}

/* The filesystem's and the tickers' durations: -1 to go on, else the exit status. */
static int mount_parse_durations(struct mount_cmd *cmd)
{
	struct mount_opts *mo = &cmd->mo;
	struct cfs_fs_options *fso = &cmd->fso;

	fso->entry_timeout = 86400.0;
	fso->negative_timeout_ms = DEFAULT_NEGATIVE_TIMEOUT_MS;
	if (mo->negative_timeout &&
	    (cfs_parse_duration_ms(mo->negative_timeout, &fso->negative_timeout_ms) < 0 ||
	     fso->negative_timeout_ms > 3600000))
		return misuse_exit("invalid --negative-timeout '%s' (at most 1h)",
		                   mo->negative_timeout);
	if (mo->timeout) {
		uint64_t ms;

		if (cfs_parse_duration_ms(mo->timeout, &ms) < 0)
			return misuse_exit("invalid --timeout '%s'", mo->timeout);
		fso->entry_timeout = (double)ms / 1000.0;
	}
	if (mo->metrics_file && mo->metrics_file[0] != '/')
		return misuse_exit("%s", "--metrics-file must be an absolute path");
	if (mo->metrics_interval &&
	    (cfs_parse_duration_ms(mo->metrics_interval, &cmd->metrics_ms) < 0 ||
	     cmd->metrics_ms < 100 || cmd->metrics_ms > 86400000))
		return misuse_exit("invalid --metrics-interval '%s' (100ms to 1 day)",
		                   mo->metrics_interval);
	if (mo->rescan && cfs_parse_duration_ms(mo->rescan, &cmd->rescan_ms) < 0)
		return misuse_exit("invalid --rescan '%s'", mo->rescan);
	return -1;
}

/* The store, the hand-off directory, the quota and the filesystem: -1 to go on, else the exit
 * status. */
static int mount_open_store(struct mount_cmd *cmd)
{
	struct mount_opts *mo = &cmd->mo;
	int r = cfs_store_open(mo->store, CFS_STORE_CREATE, &cmd->store);

	if (r < 0) {
		fprintf(stderr, "cfs-cache: cannot open store %s: %s\n", mo->store, strerror(-r));
		return 1;
	}
	cmd->fso.store = cmd->store;
	cmd->fso.trace_path = mo->trace;
	if (!mo->no_handoff) {
		const char *msg = NULL;

		r = cfs_handoff_open(cmd->store, mo->handoff, 0, &cmd->handoff, &msg);
		if (r < 0) {
			fprintf(stderr, "cfs-cache: hand-off directory of %s: %s%s%s\n", mo->store,
			        msg ? msg : "", msg ? ": " : "", strerror(-r));
			return 1;
		}
		cmd->fso.handoff = cmd->handoff;
	}
	if (mo->max_size || mo->n_pins) {
		r = setup_quota(mo, cmd->store, &cmd->quota);
		if (r < 0)
			return r == -EINVAL ? CFS_EXIT_MISUSE : 1;
		cmd->fso.quota = cmd->quota;
	}
	r = cfs_fs_new(&cmd->fso, &cmd->fs);
	if (r < 0) {
		fprintf(stderr, "cfs-cache: %s\n", strerror(-r));
		return 1;
	}
	return -1;
}

/* The FUSE session, mounted (or adopted from a previous process): 0 or -1. */
static int mount_session(struct mount_cmd *cmd, int argc, char **argv)
{
	struct cfs_handover *ho = &cmd->ho;
	char fdpath[32];
	int r;

	/* A connection a previous process left (service manager, supervisor, re-exec) is served
	 * as it is; otherwise the mountpoint must not have a cfs-cache mount already. */
	if (cfs_handover_from_env(ho) < 0)
		return -1;
	if (!ho->adopted && cfs_handover_check_mountpoint(cmd->fopts.mountpoint) < 0)
		return -1;
	r = (int)readlink("/proc/self/exe", cmd->exe, sizeof(cmd->exe) - 1);
	cmd->exe[r > 0 ? r : 0] = '\0';
	cmd->exec_argv = calloc((size_t)argc + 1, sizeof(*cmd->exec_argv));
	if (!cmd->exec_argv)
		return -1;
	cmd->exec_argv[0] = (char *)"cfs-cache";
	for (int i = 1; i < argc; i++)
		cmd->exec_argv[i] = argv[i];
	cmd->supervisor = cmd->mo.supervise && !ho->adopted && !getenv("CFS_CACHE_SUPERVISED");
	if (ho->adopted)
		cmd->fopts.foreground = 1; /* detached already */
	if (fuse_opt_add_arg(&cmd->args, "-osubtype=cfs-cache,fsname=cfs-cache,ro") < 0)
		return -1;
	cmd->se =
	    fuse_session_new(&cmd->args, cfs_fs_ops(), sizeof(struct fuse_lowlevel_ops), cmd->fs);
	if (!cmd->se || fuse_set_signal_handlers(cmd->se) != 0)
		return -1;
	cmd->signals = true;
	snprintf(fdpath, sizeof(fdpath), "/dev/fd/%d", ho->fuse_fd);
	if (fuse_session_mount(cmd->se, ho->adopted ? fdpath : cmd->fopts.mountpoint) != 0)
		return -1;
	cmd->mounted = true;
	return 0;
}

/* The supervisor's life: it holds the connection; workers serve it, one at a time. Returns
 * the exit status. */
static int mount_supervise(struct mount_cmd *cmd)
{
	int r;

	if (cfs_handover_start(&cmd->ho, fuse_session_fd(cmd->se)) < 0 ||
	    fuse_daemonize(cmd->fopts.foreground) != 0)
		return 1;
	fuse_remove_signal_handlers(cmd->se);
	cmd->signals = false;
	r = cfs_handover_supervise(&cmd->ho, cmd->exe, cmd->exec_argv);
	return r < 0 ? 1 : r;
}

/* Device I/O, the hand-over channel, and the daemon detached: 0 or -1. */
static int mount_attach(struct mount_cmd *cmd)
{
	struct cfs_handover *ho = &cmd->ho;
	/* Passthrough makes the FUSE mount one level deep, and a composefs mount over it could
	 * then carry no overlay of its own: only asked for, and only without hand-off. */
	int r = cfs_devio_install(cmd->se, cmd->mo.passthrough && !cmd->handoff);

	if (r == 0 && ho->adopted)
		r = cfs_devio_adopt(cmd->se, ho->init_fd);
	else if (r == 0)
		r = cfs_handover_start(ho, fuse_session_fd(cmd->se));
	if (r < 0) {
		fprintf(stderr, "cfs-cache: cannot set up FUSE device I/O: %s\n", strerror(-r));
		return -1;
	}
	if (!ho->adopted)
		cfs_devio_keep_init(ho->init_fd);
	/* Threads do not survive the fork: the fetch engine starts after daemonizing. */
	if (fuse_daemonize(cmd->fopts.foreground) != 0)
		return -1;
	if ((!cmd->fopts.foreground || cmd->mo.use_syslog) && !cmd->mo.log_file)
		cfs_log_use_syslog(true);
	return 0;
}

/* The fetch engine and its first probe of the servers: 0 or -1. */
static int mount_start_fetch(struct mount_cmd *cmd)
{
	struct cfs_handoff *handoff = cmd->handoff;
	struct cfs_quota *quota = cmd->quota;
	struct cfs_fetch_options fo = cmd->mo.fetch.o;
	int r;

	fo.store = cmd->store;
	fo.handoff = handoff;
	/* No reader waits for a handed-off object's commit: a wider window shares each flush
	 * among more objects (a lone miss no longer has a flush of its own). */
	if (handoff && !(cmd->mo.fetch.given & CFS_FETCH_OPT(COMMIT_DELAY)))
		fo.commit_delay_ms = HANDOFF_COMMIT_DELAY_MS;
	/* With --max-size the store is a cache whose objects may go to make room for a miss
	 * when its filesystem is full. (The quota observes the store: it counts each object
	 * just before the fetcher's commit names it.) */
	if (quota && cmd->mo.max_size) {
		fo.make_room = cfs_quota_make_room;
		fo.make_room_ctx = quota;
	}
	r = cfs_fetch_new(&fo, &cmd->fetch);
	if (r < 0) {
		cfs_err("cannot start the fetch engine: %s", strerror(-r));
		return -1;
	}
	cfs_fs_set_fetch(cmd->fs, cmd->fetch);
	prober_start(&cmd->prober, cmd->fetch);
	return 0;
}

static void mount_start_tickers(struct mount_cmd *cmd)
{
	if (cmd->quota && cmd->rescan_ms) {
		cmd->rf.ctx = cmd->quota;
		cmd->rf.interval_ms = cmd->rescan_ms;
		ticker_start(&cmd->rf, "store rescan");
	}
	if (cmd->mo.metrics_file) {
		cmd->metrics = (struct metrics){.fs = cmd->fs,
		                                .path = cmd->mo.metrics_file,
		                                .mountpoint = cmd->fopts.mountpoint};
		cmd->mt.interval_ms = cmd->metrics_ms;
		ticker_start(&cmd->mt, "metrics");
	}
}

/* Serves until a signal other than SIGHUP; SIGHUP re-executes the installed binary on the same
 * connection. Returns the exit status. */
static int mount_loop(struct mount_cmd *cmd)
{
	const struct fuse_cmdline_opts *fopts = &cmd->fopts;
	int r;

	for (;;) {
		if (fopts->singlethread) {
			r = fuse_session_loop(cmd->se);
		} else {
			if (!cmd->loop_cfg)
				cmd->loop_cfg = fuse_loop_cfg_create();
			fuse_loop_cfg_set_clone_fd(cmd->loop_cfg, (unsigned)fopts->clone_fd);
			fuse_loop_cfg_set_max_threads(
			    cmd->loop_cfg, fopts->max_threads && fopts->max_threads <= 100000
			                       ? fopts->max_threads
			                       : 16);
			fuse_loop_cfg_set_idle_threads(cmd->loop_cfg,
			                               fopts->max_idle_threads &&
			                                       fopts->max_idle_threads <= 100000
			                                   ? fopts->max_idle_threads
			                                   : 8);
			r = fuse_session_loop_mt(cmd->se, cmd->loop_cfg);
		}
		if (r != SIGHUP)
			break;
		/* Upgrade: the installed binary goes on with this connection. Requests waiting for
		 * a fetch stay unanswered; the new process has the kernel send them again. */
		r = cfs_handover_exec(&cmd->ho, cmd->exe, cmd->exec_argv);
		cfs_err("cannot re-execute %s: %s; serving on", cmd->exe, strerror(-r));
		fuse_session_reset(cmd->se);
	}
	/* A positive value is the signal that ended the loop: a clean shutdown. */
	return r < 0 ? 1 : 0;
}

/* Mounts and serves: the exit status. */
static int mount_serve(struct mount_cmd *cmd, int argc, char **argv)
{
	int ret;

	if (mount_session(cmd, argc, argv) < 0)
		return 1;
	if (cmd->supervisor)
		return mount_supervise(cmd);
	if (mount_attach(cmd) < 0 || (cmd->mo.fetch.n_servers && mount_start_fetch(cmd) < 0))
		return 1;
	mount_start_tickers(cmd);
	cfs_handover_notify(&cmd->ho, cmd->fopts.mountpoint);
	cfs_notice("serving %s on %s with %zu server(s)%s%s", cmd->mo.store, cmd->fopts.mountpoint,
	           cmd->mo.fetch.n_servers, cmd->handoff ? ", hand-off through " : "",
	           cmd->handoff ? cfs_handoff_path(cmd->handoff) : "");
	ret = mount_loop(cmd);
	/* Requests still waiting for a fetch get their reply (EINTR) before the session goes. */
	ticker_stop(&cmd->mt); /* it reads the fetcher's counters */
	prober_stop(&cmd->prober);
	cfs_fs_set_fetch(cmd->fs, NULL);
	cfs_fetch_free(cmd->fetch);
	cmd->fetch = NULL;
	cfs_notice("unmounting %s", cmd->fopts.mountpoint);
	return ret;
}

static void mount_teardown(struct mount_cmd *cmd)
{
	if (cmd->mounted) {
		fuse_session_unmount(cmd->se);
		/* libfuse unmounts only what it mounted; an adopted connection's mount is ours to
		 * undo. */
		if (cmd->ho.adopted && umount2(cmd->fopts.mountpoint, MNT_DETACH) < 0)
			cfs_warn("cannot unmount %s: %s", cmd->fopts.mountpoint, strerror(errno));
	}
	if (cmd->signals)
		fuse_remove_signal_handlers(cmd->se);
	ticker_stop(&cmd->mt);
	prober_stop(&cmd->prober);
	if (cmd->fetch) {
		cfs_fs_set_fetch(cmd->fs, NULL);
		cfs_fetch_free(cmd->fetch);
	}
	if (cmd->se)
		fuse_session_destroy(cmd->se);
	fuse_loop_cfg_destroy(cmd->loop_cfg);
	ticker_stop(&cmd->rf);
	cfs_handoff_free(cmd->handoff);
	cfs_fs_free(cmd->fs);
	cfs_quota_free(cmd->quota);
	cfs_store_free(cmd->store);
	free(cmd->fopts.mountpoint);
	free(cmd->exec_argv);
	fuse_opt_free_args(&cmd->args);
	cfs_mount_opts_free(&cmd->mo);
}

int cfs_cache_cmd_mount(int argc, char **argv)
{
	struct mount_cmd *cmd = calloc(1, sizeof(*cmd));
	int ret;

	if (!cmd)
		return 1;
	cmd->args = (struct fuse_args)FUSE_ARGS_INIT(0, NULL);
	cmd->ho = (struct cfs_handover){.fuse_fd = -1, .init_fd = -1};
	cmd->rf.tick = rescan_tick;
	cmd->mt = (struct ticker){.tick = metrics_tick, .ctx = &cmd->metrics, .at_start = true};
	cmd->metrics_ms = 15000;
	cmd->rescan_ms = 60000;
	ret = mount_parse(cmd, argc, argv);
	if (ret < 0)
		ret = mount_check(cmd);
	if (ret < 0)
		ret = mount_parse_durations(cmd);
	if (ret < 0)
		ret = mount_open_store(cmd);
	if (ret < 0)
		ret = mount_serve(cmd, argc, argv);
	mount_teardown(cmd);
	free(cmd);
	return ret;
}
