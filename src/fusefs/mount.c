/* SPDX-License-Identifier: MIT */
/* cfscache: `cfs-cache [OPTIONS] MOUNTPOINT`: option parsing (command line and mount.fuse3 -o
 * form), daemon start-up order, and shutdown of the FUSE session and fetch engine. */
#include "config.h"

#define FUSE_USE_VERSION 312

#include <errno.h>
#include <fuse_lowlevel.h>
#include <limits.h>
#include <signal.h>
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
	fprintf(f,
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
	fprintf(f,
		"  --handoff DIR           hand-off directory: verified objects are linked here and\n"
		"                          the lookup answered ENOENT, so overlayfs (basedir\n"
		"                          STORE:MOUNTPOINT:DIR) opens the real file; on the store's\n"
		"                          filesystem, outside it (default: STORE.handoff)\n"
		"  --no-handoff            answer objects as FUSE files instead (direct reads and\n"
		"                          two-layer basedirs; no verity=on, no stacked overlays)\n"
		"  --no-passthrough        the default; accepted for old command lines\n"
		"  --passthrough           with --no-handoff: let the kernel read open objects from\n"
		"                          the store file (FUSE passthrough; deepens the fs stack)\n"
		"  --timeout DURATION      kernel cache time for names and attributes (default 86400s)\n"
		"  --trace FILE            append 'XX/<62hex> SIZE SECONDS' for each object fetched\n"
		"  --max-size SIZE         keep the local store under SIZE (e.g. 20G): least recently\n"
		"                          used objects are evicted down to the low-water mark\n"
		"  --low-water SIZE        where eviction stops (default 90%% of --max-size)\n"
		"  --pin IMAGE             never evict the objects of this composefs image (repeatable)\n"
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
		"  -o OPT[,OPT...]         any option above as name=value or name ('_' or '-'), and FUSE\n"
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

/* The fetcher's word that an object is getting its store name: the quota counts it and makes
 * room first. */
static void quota_stored(void *ctx, const uint8_t digest[CFS_DIGEST_SIZE], uint64_t size)
{
	cfs_quota_added(ctx, digest, size);
}

/* Pins every object of the images. Returns the number pinned or -errno. */
static int pin_images(struct cfs_quota *quota, char *const *images, size_t n)
{
	uint8_t *digests = NULL;
	size_t count = 0;
	int r = cfs_image_objects_of_files(images, n, &digests, &count);

	if (r == 0)
		r = cfs_quota_pin_many(quota, digests, count);
	free(digests);
	return r < 0 ? r : (int)count;
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
		fprintf(stderr, "cfs-cache: invalid --low-water '%s' (must not exceed --max-size)\n",
			mo->low_water);
		return -EINVAL;
	}
	r = cfs_quota_new(store, max, low, quota_ret);
	if (r < 0) {
		fprintf(stderr, "cfs-cache: cannot index the store: %s\n", strerror(-r));
		return r;
	}
	if (mo->n_pins) {
		r = pin_images(*quota_ret, mo->pins, mo->n_pins);
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

int cfs_cache_cmd_mount(int argc, char **argv)
{
	struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
	struct mount_opts mo = { 0 };
	struct fuse_cmdline_opts fopts = { 0 };
	struct fuse_loop_config *loop_cfg = NULL;
	struct fuse_session *se = NULL;
	struct cfs_store *store = NULL;
	struct cfs_fetch *fetch = NULL;
	struct cfs_fs *fs = NULL;
	struct cfs_quota *quota = NULL;
	struct cfs_handoff *handoff = NULL;
	struct cfs_fetch_options fo;
	struct cfs_fs_options fso = { 0 };
	struct ticker rf = { .tick = rescan_tick };
	struct metrics metrics = { 0 };
	struct ticker mt = { .tick = metrics_tick, .ctx = &metrics, .at_start = true };
	uint64_t metrics_ms = 15000;
	struct prober prober = { 0 };
	struct cfs_handover ho = { .fuse_fd = -1, .init_fd = -1 };
	char exe[PATH_MAX], fdpath[32];
	char **exec_argv = NULL;
	bool supervisor = false;
	uint64_t rescan_ms = 60000;
	enum cfs_log_level level = CFS_LOG_NOTICE;
	int ret = 1, r;

	r = cfs_mount_opts_parse(argc, argv, &mo);
	if (r < 0) {
		ret = r == -EINVAL ? CFS_EXIT_MISUSE : 1;
		goto out;
	}
	if (mo.show_help) {
		usage(stdout);
		ret = 0;
		goto out;
	}
	if (mo.show_version) {
		printf("cfs-cache (cfscache) %s, libfuse %s\n", PACKAGE_VERSION, fuse_pkgversion());
		ret = 0;
		goto out;
	}
	/* mount.fuse3 passes SOURCE MOUNTPOINT; an http(s) SOURCE doubles as a server. */
	if (mo.source && (strncmp(mo.source, "http://", 7) == 0 ||
			  strncmp(mo.source, "https://", 8) == 0)) {
		char err[CFS_FETCH_OPTS_ERR_LEN];

		r = cfs_fetch_opts_set(&mo.fetch, CFS_FETCH_OPT_SERVER, mo.source, err);
		if (r < 0) {
			fprintf(stderr, "cfs-cache: %s\n", r == -EINVAL ? err : strerror(-r));
			ret = r == -EINVAL ? CFS_EXIT_MISUSE : 1;
			goto out;
		}
	}
	/* What libfuse parses itself: -f, -d, -s, its -o options and the mountpoint. */
	if (fuse_opt_add_arg(&args, argv[0]) < 0 ||
	    (mo.foreground && fuse_opt_add_arg(&args, "-f") < 0) ||
	    (mo.debug && fuse_opt_add_arg(&args, "-d") < 0) ||
	    (mo.singlethread && fuse_opt_add_arg(&args, "-s") < 0) ||
	    (mo.fuse_opts && (fuse_opt_add_arg(&args, "-o") < 0 ||
			      fuse_opt_add_arg(&args, mo.fuse_opts) < 0)) ||
	    fuse_opt_add_arg(&args, mo.mountpoint) < 0)
		goto out;
	if (!mo.store) {
		fprintf(stderr, "cfs-cache: --store is required\nTry 'cfs-cache --help'.\n");
		ret = CFS_EXIT_MISUSE;
		goto out;
	}
	if (mo.fetch.n_servers == 0)
		fprintf(stderr, "cfs-cache: warning: no --server: only the local store is shown\n");
	if (cfs_mount_opts_log_level(&mo, &level) < 0) {
		ret = CFS_EXIT_MISUSE;
		goto out;
	}
	cfs_log_set_level(level);
	/* Absolute: the daemon's directory is / and a re-executed one opens it again. */
	if (mo.log_file && mo.log_file[0] != '/') {
		fprintf(stderr, "cfs-cache: --log-file must be an absolute path\n");
		ret = CFS_EXIT_MISUSE;
		goto out;
	}
	if (mo.log_file && (r = cfs_log_use_file(mo.log_file)) < 0) {
		fprintf(stderr, "cfs-cache: cannot open --log-file %s: %s\n", mo.log_file,
			strerror(-r));
		goto out;
	}
	/* Checked before the daemon detaches: a bad token file is said on the terminal. */
	if (mo.fetch.n_servers) {
		char err[512];

		r = cfs_fetch_opts_check_files(&mo.fetch.o, err, sizeof(err));
		if (r < 0) {
			fprintf(stderr, "cfs-cache: %s\n", err);
			goto out;
		}
	}
	if (fuse_parse_cmdline(&args, &fopts) != 0) {
		ret = CFS_EXIT_MISUSE;
		goto out;
	}
	fso.entry_timeout = 86400.0;
	fso.negative_timeout_ms = DEFAULT_NEGATIVE_TIMEOUT_MS;
	if (mo.negative_timeout &&
	    (cfs_parse_duration_ms(mo.negative_timeout, &fso.negative_timeout_ms) < 0 ||
	     fso.negative_timeout_ms > 3600000)) {
		fprintf(stderr, "cfs-cache: invalid --negative-timeout '%s' (at most 1h)\n",
			mo.negative_timeout);
		ret = CFS_EXIT_MISUSE;
		goto out;
	}
	if (mo.timeout) {
		uint64_t ms;

		if (cfs_parse_duration_ms(mo.timeout, &ms) < 0) {
			fprintf(stderr, "cfs-cache: invalid --timeout\n");
			ret = CFS_EXIT_MISUSE;
			goto out;
		}
		fso.entry_timeout = (double)ms / 1000.0;
	}
	if (mo.metrics_file && mo.metrics_file[0] != '/') {
		fprintf(stderr, "cfs-cache: --metrics-file must be an absolute path\n");
		ret = CFS_EXIT_MISUSE;
		goto out;
	}
	if (mo.metrics_interval && (cfs_parse_duration_ms(mo.metrics_interval, &metrics_ms) < 0 ||
				    metrics_ms < 100 || metrics_ms > 86400000)) {
		fprintf(stderr, "cfs-cache: invalid --metrics-interval '%s' (100ms to 1 day)\n",
			mo.metrics_interval);
		ret = CFS_EXIT_MISUSE;
		goto out;
	}
	if (mo.rescan && cfs_parse_duration_ms(mo.rescan, &rescan_ms) < 0) {
		fprintf(stderr, "cfs-cache: invalid --rescan '%s'\n", mo.rescan);
		ret = CFS_EXIT_MISUSE;
		goto out;
	}
	r = cfs_store_open(mo.store, CFS_STORE_CREATE, &store);
	if (r < 0) {
		fprintf(stderr, "cfs-cache: cannot open store %s: %s\n", mo.store, strerror(-r));
		goto out;
	}
	fso.store = store;
	fso.trace_path = mo.trace;
	if (!mo.no_handoff) {
		const char *msg = NULL;

		r = cfs_handoff_open(store, mo.handoff, 0, &handoff, &msg);
		if (r < 0) {
			fprintf(stderr, "cfs-cache: hand-off directory of %s: %s%s%s\n", mo.store,
				msg ? msg : "", msg ? ": " : "", strerror(-r));
			goto out;
		}
		fso.handoff = handoff;
	}
	if (mo.max_size || mo.n_pins) {
		r = setup_quota(&mo, store, &quota);
		if (r < 0) {
			ret = r == -EINVAL ? CFS_EXIT_MISUSE : 1;
			goto out;
		}
		fso.quota = quota;
	}
	r = cfs_fs_new(&fso, &fs);
	if (r < 0) {
		fprintf(stderr, "cfs-cache: %s\n", strerror(-r));
		goto out;
	}
	/* A connection a previous process left (service manager, supervisor, re-exec) is served
	 * as it is; otherwise the mountpoint must not have a cfs-cache mount already. */
	if (cfs_handover_from_env(&ho) < 0)
		goto out;
	if (!ho.adopted && cfs_handover_check_mountpoint(fopts.mountpoint) < 0)
		goto out;
	r = (int)readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	exe[r > 0 ? r : 0] = '\0';
	exec_argv = calloc((size_t)argc + 1, sizeof(*exec_argv));
	if (!exec_argv)
		goto out;
	exec_argv[0] = (char *)"cfs-cache";
	for (int i = 1; i < argc; i++)
		exec_argv[i] = argv[i];
	supervisor = mo.supervise && !ho.adopted && !getenv("CFS_CACHE_SUPERVISED");
	if (ho.adopted)
		fopts.foreground = 1; /* detached already */
	if (fuse_opt_add_arg(&args, "-osubtype=cfs-cache,fsname=cfs-cache,ro") < 0)
		goto out;
	se = fuse_session_new(&args, cfs_fs_ops(), sizeof(struct fuse_lowlevel_ops), fs);
	if (!se)
		goto out;
	if (fuse_set_signal_handlers(se) != 0)
		goto out;
	snprintf(fdpath, sizeof(fdpath), "/dev/fd/%d", ho.fuse_fd);
	if (fuse_session_mount(se, ho.adopted ? fdpath : fopts.mountpoint) != 0)
		goto out_signals;
	if (supervisor) {
		/* The parent holds the connection; workers serve it, one at a time. */
		if (cfs_handover_start(&ho, fuse_session_fd(se)) < 0 ||
		    fuse_daemonize(fopts.foreground) != 0)
			goto out_unmount;
		fuse_remove_signal_handlers(se);
		r = cfs_handover_supervise(&ho, exe, exec_argv);
		ret = r < 0 ? 1 : r;
		goto out_unmount;
	}
	/* Passthrough makes the FUSE mount one level deep, and a composefs mount over it could
	 * then carry no overlay of its own: only asked for, and only without hand-off. */
	r = cfs_devio_install(se, mo.passthrough && !handoff);
	if (r == 0 && ho.adopted)
		r = cfs_devio_adopt(se, ho.init_fd);
	else if (r == 0)
		r = cfs_handover_start(&ho, fuse_session_fd(se));
	if (r < 0) {
		fprintf(stderr, "cfs-cache: cannot set up FUSE device I/O: %s\n", strerror(-r));
		goto out_unmount;
	}
	if (!ho.adopted)
		cfs_devio_keep_init(ho.init_fd);
	/* Threads do not survive the fork: the fetch engine starts after daemonizing. */
	if (fuse_daemonize(fopts.foreground) != 0)
		goto out_unmount;
	if ((!fopts.foreground || mo.use_syslog) && !mo.log_file)
		cfs_log_use_syslog(true);
	if (mo.fetch.n_servers) {
		fo = mo.fetch.o;
		fo.store = store;
		fo.handoff = handoff;
		/* No reader waits for a handed-off object's commit: a wider window shares each flush
		 * among more objects (a lone miss no longer has a flush of its own). */
		if (handoff && !(mo.fetch.given & CFS_FETCH_OPT(COMMIT_DELAY)))
			fo.commit_delay_ms = HANDOFF_COMMIT_DELAY_MS;
		/* With --max-size the store is a cache whose objects may go to make room for a miss
		 * when its filesystem is full. */
		if (quota) {
			fo.stored = quota_stored;
			fo.stored_ctx = quota;
		}
		if (quota && mo.max_size) {
			fo.make_room = cfs_quota_make_room;
			fo.make_room_ctx = quota;
		}
		r = cfs_fetch_new(&fo, &fetch);
		if (r < 0) {
			cfs_err("cannot start the fetch engine: %s", strerror(-r));
			goto out_unmount;
		}
		cfs_fs_set_fetch(fs, fetch);
		prober_start(&prober, fetch);
	}
	if (quota && rescan_ms) {
		rf.ctx = quota;
		rf.interval_ms = rescan_ms;
		ticker_start(&rf, "store rescan");
	}
	if (mo.metrics_file) {
		metrics = (struct metrics){ .fs = fs, .path = mo.metrics_file,
					    .mountpoint = fopts.mountpoint };
		mt.interval_ms = metrics_ms;
		ticker_start(&mt, "metrics");
	}
	cfs_handover_notify(&ho, fopts.mountpoint);
	cfs_notice("serving %s on %s with %zu server(s)%s%s", mo.store, fopts.mountpoint,
		   mo.fetch.n_servers, handoff ? ", hand-off through " : "",
		   handoff ? cfs_handoff_path(handoff) : "");
	for (;;) {
		if (fopts.singlethread) {
			r = fuse_session_loop(se);
		} else {
			if (!loop_cfg)
				loop_cfg = fuse_loop_cfg_create();
			fuse_loop_cfg_set_clone_fd(loop_cfg, (unsigned)fopts.clone_fd);
			fuse_loop_cfg_set_max_threads(
			    loop_cfg, fopts.max_threads && fopts.max_threads <= 100000
					      ? fopts.max_threads
					      : 16);
			fuse_loop_cfg_set_idle_threads(
			    loop_cfg, fopts.max_idle_threads && fopts.max_idle_threads <= 100000
					      ? fopts.max_idle_threads
					      : 8);
			r = fuse_session_loop_mt(se, loop_cfg);
		}
		if (r != SIGHUP)
			break;
		/* Upgrade: the installed binary goes on with this connection. Requests waiting for
		 * a fetch stay unanswered; the new process has the kernel send them again. */
		r = cfs_handover_exec(&ho, exe, exec_argv);
		cfs_err("cannot re-execute %s: %s; serving on", exe, strerror(-r));
		fuse_session_reset(se);
	}
	/* A positive value is the signal that ended the loop: a clean shutdown. */
	ret = r < 0 ? 1 : 0;
	/* Requests still waiting for a fetch get their reply (EINTR) before the session goes. */
	ticker_stop(&mt); /* it reads the fetcher's counters */
	prober_stop(&prober);
	cfs_fs_set_fetch(fs, NULL);
	cfs_fetch_free(fetch);
	fetch = NULL;
	cfs_notice("unmounting %s", fopts.mountpoint);
out_unmount:
	fuse_session_unmount(se);
	/* libfuse unmounts only what it mounted; an adopted connection's mount is ours to undo. */
	if (ho.adopted && umount2(fopts.mountpoint, MNT_DETACH) < 0)
		cfs_warn("cannot unmount %s: %s", fopts.mountpoint, strerror(errno));
out_signals:
	fuse_remove_signal_handlers(se);
out:
	ticker_stop(&mt);
	prober_stop(&prober);
	if (fetch) {
		cfs_fs_set_fetch(fs, NULL);
		cfs_fetch_free(fetch);
	}
	if (se)
		fuse_session_destroy(se);
	fuse_loop_cfg_destroy(loop_cfg);
	ticker_stop(&rf);
	cfs_handoff_free(handoff);
	cfs_fs_free(fs);
	cfs_quota_free(quota);
	cfs_store_free(store);
	free(fopts.mountpoint);
	free(exec_argv);
	fuse_opt_free_args(&args);
	cfs_mount_opts_free(&mo);
	return ret;
}
