/* SPDX-License-Identifier: MIT */
/* cfscache: unit tests for the fetch engine: file:// servers, failover, group commit, cancel,
 * 200 concurrent requests for one digest against faultd (one GET), and a dripping body reaching
 * its temp file while it runs. */
#include "config.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/digest.h"
#include "common/handoff.h"
#include "common/name.h"
#include "common/store.h"
#include "common/util.h"
#include "fetcher/fetch.h"

struct fixture {
	char dir[64];
	char src[96], bad[96], dst[96];
	char src_url[128], bad_url[128];
	struct cfs_store *srcstore, *badstore, *store;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	strcpy(f->dir, "/tmp/cfs-test-fetch-XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	snprintf(f->src, sizeof(f->src), "%s/src", f->dir);
	snprintf(f->bad, sizeof(f->bad), "%s/bad", f->dir);
	snprintf(f->dst, sizeof(f->dst), "%s/dst", f->dir);
	snprintf(f->src_url, sizeof(f->src_url), "file://%s", f->src);
	snprintf(f->bad_url, sizeof(f->bad_url), "file://%s/", f->bad);
	if (cfs_store_open(f->src, CFS_STORE_CREATE, &f->srcstore) < 0 ||
	    cfs_store_open(f->bad, CFS_STORE_CREATE, &f->badstore) < 0 ||
	    cfs_store_open(f->dst, CFS_STORE_CREATE, &f->store) < 0)
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	char cmd[160];

	cfs_store_free(f->srcstore);
	cfs_store_free(f->badstore);
	cfs_store_free(f->store);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
	if (system(cmd) != 0)
		return -1;
	free(f);
	return 0;
}

static void fill(uint8_t *buf, size_t len, unsigned seed)
{
	uint32_t x = seed * 2654435761u + 1;

	for (size_t i = 0; i < len; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		buf[i] = (uint8_t)x;
	}
}

/* Puts an object of @len pseudo-random bytes into @s; returns its digest. */
static void add_object(struct cfs_store *s, size_t len, unsigned seed, uint8_t d[CFS_DIGEST_SIZE])
{
	struct cfs_store_writer *w;
	uint8_t *buf = malloc(len + 1);

	fill(buf, len, seed);
	assert_int_equal(cfs_store_writer_new(s, NULL, &w), 0);
	assert_int_equal(cfs_store_writer_write(w, buf, len), 0);
	assert_int_equal(cfs_store_writer_verify(w, d), 0);
	assert_int_equal(cfs_store_commit_one(w, NULL), 0);
	cfs_store_writer_free(w);
	free(buf);
}

/* Writes wrong content under @d's name in store directory @dir. */
static void plant_wrong(const char *dir, const uint8_t d[CFS_DIGEST_SIZE], size_t len)
{
	char rel[CFS_NAME_PATH_LEN + 1], path[256];
	uint8_t *buf = malloc(len);
	int fd;

	cfs_name_format_path(d, rel);
	snprintf(path, sizeof(path), "%s/%.2s", dir, rel);
	mkdir(path, 0755);
	snprintf(path, sizeof(path), "%s/%s", dir, rel);
	fill(buf, len, 777);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(cfs_write_full(fd, buf, len), 0);
	close(fd);
	free(buf);
}

static int count_temp(const char *store)
{
	char cmd[200];
	FILE *p;
	int n = -1;

	snprintf(cmd, sizeof(cmd), "ls -A '%s/" CFS_STORE_TMPDIR "' | wc -l", store);
	p = popen(cmd, "r");
	if (p && fscanf(p, "%d", &n) != 1)
		n = -1;
	if (p)
		pclose(p);
	return n;
}

static struct cfs_fetch *start(struct fixture *f, const char *const *servers, size_t n)
{
	struct cfs_fetch_options o;
	struct cfs_fetch *fetch = NULL;

	cfs_fetch_options_init(&o);
	o.servers = servers;
	o.n_servers = n;
	o.store = f->store;
	o.backoff_ms = 10;
	assert_int_equal(cfs_fetch_new(&o, &fetch), 0);
	return fetch;
}

static void test_options(void **state)
{
	struct fixture *f = *state;
	struct cfs_fetch_options o;
	struct cfs_fetch *fetch = NULL;
	const char *servers[] = {f->src_url};

	cfs_fetch_options_init(&o);
	assert_int_equal(o.max_transfers, 64);
	assert_int_equal(o.max_per_server, 16);
	assert_int_equal(o.retries, 2);
	assert_true(o.accept_zstd);
	assert_int_equal(cfs_fetch_new(&o, &fetch), -EINVAL); /* no servers, no store */
	o.servers = servers;
	o.n_servers = 1;
	assert_int_equal(cfs_fetch_new(&o, &fetch), -EINVAL); /* no store */
	o.store = f->store;
	o.token_file = "/nonexistent/token";
	assert_true(cfs_fetch_new(&o, &fetch) < 0);
	o.token_file = NULL;
	assert_int_equal(cfs_fetch_new(&o, &fetch), 0);
	assert_int_equal(cfs_fetch_server_count(fetch), 1);
	cfs_fetch_free(fetch);
}

static void test_fetch_and_present(void **state)
{
	struct fixture *f = *state;
	const char *servers[] = {f->src_url};
	struct cfs_fetch *fetch = start(f, servers, 1);
	static const size_t sizes[] = {0, 1, 4096, 4097, 300000};
	struct cfs_fetch_result info;
	struct cfs_fetch_stats st;
	struct cfs_fetch_server_stats ss;

	for (size_t i = 0; i < CFS_ARRAY_SIZE(sizes); i++) {
		uint8_t d[CFS_DIGEST_SIZE];
		struct stat sb;

		add_object(f->srcstore, sizes[i], (unsigned)i + 1, d);
		assert_int_equal(cfs_fetch_sync(fetch, d, &info), 0);
		assert_true(info.fetched);
		assert_int_equal(info.size, sizes[i]);
		assert_null(info.reason);
		assert_int_equal(cfs_store_lookup(f->store, d, &sb), 0);
		assert_int_equal(sb.st_size, (off_t)sizes[i]);
		assert_int_equal(sb.st_mode & 07777, 0644);
		/* Present now: answered without a request. */
		assert_int_equal(cfs_fetch_sync(fetch, d, &info), 0);
		assert_false(info.fetched);
	}
	cfs_fetch_get_stats(fetch, &st);
	assert_int_equal(st.fetched, CFS_ARRAY_SIZE(sizes));
	assert_int_equal(st.already_present, CFS_ARRAY_SIZE(sizes));
	assert_int_equal(st.requests, CFS_ARRAY_SIZE(sizes));
	assert_int_equal(st.in_flight, 0);
	assert_int_equal(cfs_fetch_server_stats(fetch, 0, &ss), 0);
	assert_string_equal(ss.url, f->src_url);
	assert_int_equal(ss.state, CFS_FETCH_SERVER_UP);
	assert_int_equal(cfs_fetch_server_stats(fetch, 1, &ss), -ERANGE);
	cfs_fetch_free(fetch);
	assert_int_equal(count_temp(f->dst), 0);
}

static void test_absent(void **state)
{
	struct fixture *f = *state;
	const char *servers[] = {f->bad_url, f->src_url};
	struct cfs_fetch *fetch = start(f, servers, 2);
	struct cfs_fetch_result info;
	struct cfs_fetch_stats st;
	uint8_t d[CFS_DIGEST_SIZE];

	memset(d, 0xab, sizeof(d));
	assert_int_equal(cfs_fetch_sync(fetch, d, &info), -ENOENT);
	assert_non_null(info.reason);
	cfs_fetch_get_stats(fetch, &st);
	assert_int_equal(st.not_found, 1);
	assert_int_equal(st.requests, 2); /* both servers asked */
	cfs_fetch_free(fetch);
	assert_int_equal(count_temp(f->dst), 0);
}

static void test_mismatch_failover(void **state)
{
	struct fixture *f = *state;
	const char *both[] = {f->bad_url, f->src_url};
	const char *bad_only[] = {f->bad_url};
	struct cfs_fetch *fetch;
	struct cfs_fetch_result info;
	struct cfs_fetch_stats st;
	struct cfs_fetch_server_stats ss;
	uint8_t d[CFS_DIGEST_SIZE];

	add_object(f->srcstore, 10000, 42, d);
	plant_wrong(f->bad, d, 10000);

	/* Only the lying server: nothing saved, -EBADMSG, counted. */
	fetch = start(f, bad_only, 1);
	assert_int_equal(cfs_fetch_sync(fetch, d, &info), -EBADMSG);
	assert_non_null(strstr(info.reason, "mismatch"));
	cfs_fetch_get_stats(fetch, &st);
	assert_int_equal(st.verify_failures, 1);
	assert_int_equal(st.requests, 1); /* a mismatch is not retried on that server */
	assert_int_equal(st.failures, 1);
	cfs_fetch_free(fetch);
	assert_int_equal(cfs_store_lookup(f->store, d, NULL), -ENOENT);
	assert_int_equal(count_temp(f->dst), 0);

	/* With a good second server: the right object arrives. */
	fetch = start(f, both, 2);
	assert_int_equal(cfs_fetch_sync(fetch, d, &info), 0);
	assert_string_equal(info.server, f->src_url);
	cfs_fetch_get_stats(fetch, &st);
	assert_int_equal(st.verify_failures, 1);
	assert_int_equal(cfs_fetch_server_stats(fetch, 0, &ss), 0);
	assert_int_equal(ss.verify_failures, 1);
	assert_int_equal(ss.consecutive_failures, 1);
	cfs_fetch_free(fetch);
	assert_int_equal(cfs_store_lookup(f->store, d, NULL), 0);
	assert_int_equal(count_temp(f->dst), 0);
}

struct counter {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int done, ok, other;
	int expect_result;
};

static void count_cb(int result, const uint8_t digest[CFS_DIGEST_SIZE],
                     const struct cfs_fetch_result *info, void *userdata)
{
	struct counter *c = userdata;

	pthread_mutex_lock(&c->lock);
	if (result == c->expect_result)
		c->ok++;
	else
		c->other++;
	c->done++;
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
}

static void wait_count(struct counter *c, int n)
{
	pthread_mutex_lock(&c->lock);
	while (c->done < n)
		pthread_cond_wait(&c->cond, &c->lock);
	pthread_mutex_unlock(&c->lock);
}

static void test_many_group_commit(void **state)
{
	struct fixture *f = *state;
	const char *servers[] = {f->src_url};
	struct counter c = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0, 0};
	enum { N = 600 };
	uint8_t(*d)[CFS_DIGEST_SIZE] = calloc(N, CFS_DIGEST_SIZE);
	struct cfs_fetch *fetch;
	struct cfs_fetch_stats st;

	for (int i = 0; i < N; i++)
		add_object(f->srcstore, 1000 + (size_t)i, 1000 + (unsigned)i, d[i]);
	fetch = start(f, servers, 1);
	for (int i = 0; i < N; i++)
		assert_int_equal(
		    cfs_fetch_submit(fetch, d[i], i % 2 ? CFS_FETCH_LOW_PRIORITY : 0, count_cb, &c),
		    0);
	wait_count(&c, N);
	assert_int_equal(c.ok, N);
	cfs_fetch_get_stats(fetch, &st);
	assert_int_equal(st.fetched, N);
	/* Many objects share each flush. */
	assert_true(st.commits >= 1 && st.commits < N / 4);
	cfs_fetch_free(fetch);
	for (int i = 0; i < N; i++)
		assert_int_equal(cfs_store_lookup(f->store, d[i], NULL), 0);
	assert_int_equal(count_temp(f->dst), 0);
	free(d);
}

/* A lone object is committed at once: nothing else running could share its flush, so it does
 * not wait out the group-commit window (a minute here; the bound below is far under it). */
static void test_lone_commit_at_once(void **state)
{
	struct fixture *f = *state;
	const char *servers[] = {f->src_url};
	struct cfs_fetch_options o;
	struct cfs_fetch *fetch = NULL;
	struct cfs_fetch_result info;
	struct cfs_fetch_stats st;
	uint64_t t0;

	cfs_fetch_options_init(&o);
	o.servers = servers;
	o.n_servers = 1;
	o.store = f->store;
	o.commit_delay_ms = 60000;
	assert_int_equal(cfs_fetch_new(&o, &fetch), 0);
	t0 = cfs_now_ns();
	for (unsigned i = 0; i < 3; i++) {
		uint8_t d[CFS_DIGEST_SIZE];

		add_object(f->srcstore, 5000 + i, 50 + i, d);
		assert_int_equal(cfs_fetch_sync(fetch, d, &info), 0);
		assert_true(info.fetched);
		assert_int_equal(cfs_store_lookup(f->store, d, NULL), 0);
	}
	assert_true(cfs_now_ns() - t0 < 30ULL * 1000000000ULL);
	cfs_fetch_get_stats(fetch, &st);
	assert_int_equal(st.commits, 3);
	cfs_fetch_free(fetch);
}

/* With a hand-off directory, a fetch is answered as soon as the verified object is linked
 * there, before any flush, and gets its store name at the commit; the name lingers after it,
 * and a lookup asks for more linger time only while the store has the object. */
static void test_handoff(void **state)
{
	struct fixture *f = *state;
	const char *servers[] = {f->src_url};
	char hdir[128], hpath[256], spath[256], rel[CFS_NAME_PATH_LEN + 1];
	struct cfs_fetch_options o;
	struct cfs_fetch *fetch = NULL;
	struct cfs_handoff *h = NULL;
	struct cfs_handoff_stats hs;
	struct cfs_fetch_result info;
	struct stat a, b;
	uint8_t d[CFS_DIGEST_SIZE];
	const char *msg = NULL;

	snprintf(hdir, sizeof(hdir), "%s/dst.handoff", f->dir);
	assert_int_equal(cfs_handoff_open(f->store, NULL, 200, &h, &msg), 0);
	assert_string_equal(cfs_handoff_path(h), hdir);
	cfs_fetch_options_init(&o);
	o.servers = servers;
	o.n_servers = 1;
	o.store = f->store;
	o.handoff = h;
	o.commit_delay_ms = 60000; /* no commit until the engine stops */
	assert_int_equal(cfs_fetch_new(&o, &fetch), 0);
	add_object(f->srcstore, 7000, 91, d);
	assert_int_equal(cfs_fetch_sync(fetch, d, &info), 0);
	assert_true(info.handed_off);
	cfs_name_format_path(d, rel);
	snprintf(hpath, sizeof(hpath), "%s/%s", hdir, rel);
	snprintf(spath, sizeof(spath), "%s/%s", f->dst, rel);
	assert_int_equal(stat(hpath, &a), 0);
	assert_int_equal(a.st_size, 7000);
	/* Not in the store before its flush; a second submit is answered from the hand-off. */
	assert_int_equal(cfs_store_lookup(f->store, d, NULL), -ENOENT);
	assert_int_equal(cfs_fetch_sync(fetch, d, &info), 0);
	assert_true(info.handed_off);
	cfs_fetch_free(fetch); /* commits what is verified */
	assert_int_equal(stat(spath, &b), 0);
	assert_int_equal(stat(hpath, &a), 0);
	assert_int_equal(a.st_ino, b.st_ino); /* one inode, two names */
	/* After the linger time the hand-off name goes. */
	for (int i = 0; i < 200 && stat(hpath, &a) == 0; i++)
		usleep(10000);
	assert_int_not_equal(stat(hpath, &a), 0);
	cfs_handoff_get_stats(h, &hs);
	assert_int_equal(hs.names, 0);
	assert_int_equal(hs.expired, 1);
	/* A lookup of an object in the store links it again; one gone from the store is not. */
	assert_int_equal(cfs_handoff_ensure(h, d), 0);
	assert_int_equal(stat(hpath, &a), 0);
	assert_int_equal(cfs_store_remove(f->store, d), 0);
	assert_int_equal(cfs_handoff_ensure(h, d), -ENOENT);
	cfs_handoff_free(h);
	assert_int_not_equal(stat(hpath, &a), 0);
}

/* A server that accepts connections and never answers. */
static int silent_server(char *url, size_t len)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t salen = sizeof(sa);
	int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_true(s >= 0);
	assert_int_equal(bind(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(s, 64), 0);
	assert_int_equal(getsockname(s, (struct sockaddr *)&sa, &salen), 0);
	snprintf(url, len, "http://127.0.0.1:%d/objects", ntohs(sa.sin_port));
	return s;
}

static void test_cancel_on_free(void **state)
{
	struct fixture *f = *state;
	char url[64];
	int s = silent_server(url, sizeof(url));
	const char *servers[] = {url};
	struct counter c = {
	    PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0, -ECANCELED};
	struct cfs_fetch *fetch = start(f, servers, 1);
	struct cfs_fetch_stats st;
	uint64_t t0;

	for (int i = 0; i < 20; i++) {
		uint8_t d[CFS_DIGEST_SIZE];

		memset(d, i + 1, sizeof(d));
		assert_int_equal(cfs_fetch_submit(fetch, d, 0, count_cb, &c), 0);
		if (i == 0) /* a second waiter on one transfer */
			assert_int_equal(cfs_fetch_submit(fetch, d, 0, count_cb, &c), 0);
	}
	usleep(200 * 1000);
	cfs_fetch_get_stats(fetch, &st);
	assert_int_equal(st.in_flight, 20);
	assert_true(st.requests >= 1);
	t0 = cfs_now_ns();
	cfs_fetch_free(fetch);
	assert_true(cfs_now_ns() - t0 < 2000000000ULL);
	assert_int_equal(c.done, 21);
	assert_int_equal(c.ok, 21);
	assert_int_equal(count_temp(f->dst), 0);
	close(s);
}

/* A port that refuses connections. */
static void refused_url(char *url, size_t len)
{
	char tmp[64];
	int s = silent_server(tmp, sizeof(tmp));

	close(s);
	snprintf(url, len, "%s", tmp);
}

static void test_server_backoff(void **state)
{
	struct fixture *f = *state;
	char dead[64];
	const char *servers[] = {dead, f->src_url};
	struct cfs_fetch_options o;
	struct cfs_fetch *fetch = NULL;
	struct cfs_fetch_server_stats ss;
	struct cfs_fetch_result info;
	uint8_t d[3][CFS_DIGEST_SIZE];

	refused_url(dead, sizeof(dead));
	for (int i = 0; i < 3; i++)
		add_object(f->srcstore, 5000, 50 + (unsigned)i, d[i]);
	cfs_fetch_options_init(&o);
	o.servers = servers;
	o.n_servers = 2;
	o.store = f->store;
	o.retries = 0;
	o.server_fail_threshold = 2;
	o.server_backoff_ms = 400;
	assert_int_equal(cfs_fetch_new(&o, &fetch), 0);
	/* Two failures put the dead server in backoff... */
	for (int i = 0; i < 2; i++) {
		assert_int_equal(cfs_fetch_sync(fetch, d[i], &info), 0);
		assert_string_equal(info.server, f->src_url);
	}
	assert_int_equal(cfs_fetch_server_stats(fetch, 0, &ss), 0);
	assert_int_equal(ss.state, CFS_FETCH_SERVER_BACKOFF);
	assert_int_equal(ss.consecutive_failures, 2);
	assert_int_equal(ss.requests, 2);
	/* ...so the next object goes straight to the healthy one. */
	assert_int_equal(cfs_fetch_sync(fetch, d[2], &info), 0);
	assert_int_equal(cfs_fetch_server_stats(fetch, 0, &ss), 0);
	assert_int_equal(ss.requests, 2);
	assert_int_equal(cfs_fetch_server_stats(fetch, 1, &ss), 0);
	assert_int_equal(ss.requests, 3);
	assert_int_equal(ss.state, CFS_FETCH_SERVER_UP);
	/* The backoff ends by itself; a server that refused connections is "unreachable" until
	 * a request there succeeds. */
	usleep(500 * 1000);
	assert_int_equal(cfs_fetch_server_stats(fetch, 0, &ss), 0);
	assert_int_equal(ss.state, CFS_FETCH_SERVER_UNREACHABLE);
	assert_string_equal(cfs_fetch_server_state_name(ss.state), "unreachable");
	cfs_fetch_free(fetch);
}

/* ---- single flight against faultd ---------------------------------------------------------- */

struct sf_arg {
	struct cfs_fetch *fetch;
	const uint8_t *digest;
	pthread_barrier_t *barrier;
	int result;
};

static void *sf_thread(void *p)
{
	struct sf_arg *a = p;

	pthread_barrier_wait(a->barrier);
	a->result = cfs_fetch_sync(a->fetch, a->digest, NULL);
	return NULL;
}

static int count_lines(const char *path, const char *needle)
{
	char line[512];
	FILE *fp = fopen(path, "r");
	int n = 0;

	if (!fp)
		return -1;
	while (fgets(line, sizeof(line), fp))
		if (strncmp(line, needle, strlen(needle)) == 0)
			n++;
	fclose(fp);
	return n;
}

/* Set when a test skipped for want of faultd: the program then exits 77 (a visible SKIP). */
static bool faultd_missing;

/* Starts faultd over the source store with @extra arguments (NULL-terminated) and writes its
 * objects URL to @url; skips the test when faultd was not built. */
static pid_t faultd_start(struct fixture *f, const char *const *extra, char *url, size_t len)
{
	const char *builddir = getenv("CFS_BUILDDIR");
	char faultd[512], portfile[160], logfile[160];
	const char *argv[32];
	size_t n = 0;
	pid_t pid;
	int port = 0;

	snprintf(faultd, sizeof(faultd), "%s/tests/faultd/faultd", builddir ? builddir : ".");
	if (access(faultd, X_OK) != 0) {
		fprintf(stderr, "# skipped: no %s\n", faultd);
		faultd_missing = true;
		skip();
	}
	snprintf(portfile, sizeof(portfile), "%s/port", f->dir);
	snprintf(logfile, sizeof(logfile), "%s/faultd.log", f->dir);
	argv[n++] = faultd;
	argv[n++] = "--root";
	argv[n++] = f->src;
	argv[n++] = "--port";
	argv[n++] = "0";
	argv[n++] = "--port-file";
	argv[n++] = portfile;
	argv[n++] = "--log";
	argv[n++] = logfile;
	while (*extra && n < sizeof(argv) / sizeof(argv[0]) - 1)
		argv[n++] = *extra++;
	argv[n] = NULL;
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		execv(faultd, (char *const *)argv);
		_exit(127);
	}
	for (int i = 0; i < 100 && port == 0; i++) {
		FILE *pf = fopen(portfile, "r");

		if (pf) {
			if (fscanf(pf, "%d", &port) != 1)
				port = 0;
			fclose(pf);
		}
		if (!port)
			usleep(50 * 1000);
	}
	if (!port) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		fail_msg("faultd did not start");
	}
	snprintf(url, len, "http://127.0.0.1:%d/objects", port);
	return pid;
}

static void faultd_stop(pid_t pid)
{
	kill(pid, SIGTERM);
	waitpid(pid, NULL, 0);
}

static void test_single_flight_200(void **state)
{
	struct fixture *f = *state;
	enum { N = 200 };
	/* Every request waits 300 ms, so all 200 submits overlap the transfer. */
	const char *const extra[] = {"--fault", "*=delay", "--delay-ms", "300", NULL};
	char url[128], logfile[160], needle[128];
	char rel[CFS_NAME_PATH_LEN + 1];
	const char *servers[] = {url};
	struct sf_arg args[N];
	pthread_t th[N];
	pthread_barrier_t barrier;
	struct cfs_fetch_stats st;
	struct cfs_fetch *fetch;
	uint8_t d[CFS_DIGEST_SIZE];
	pid_t pid;

	add_object(f->srcstore, 100000, 7, d);
	pid = faultd_start(f, extra, url, sizeof(url));
	fetch = start(f, servers, 1);
	pthread_barrier_init(&barrier, NULL, N);
	for (int i = 0; i < N; i++) {
		args[i] = (struct sf_arg){fetch, d, &barrier, -1};
		assert_int_equal(pthread_create(&th[i], NULL, sf_thread, &args[i]), 0);
	}
	for (int i = 0; i < N; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(args[i].result, 0);
	}
	pthread_barrier_destroy(&barrier);
	cfs_fetch_get_stats(fetch, &st);
	cfs_fetch_free(fetch);
	faultd_stop(pid);
	assert_int_equal(st.requests, 1);
	assert_int_equal(st.submitted, N);
	assert_int_equal(st.joined + st.already_present, N - 1);
	cfs_name_format_path(d, rel);
	snprintf(needle, sizeof(needle), "GET /objects/%s ", rel);
	snprintf(logfile, sizeof(logfile), "%s/faultd.log", f->dir);
	assert_int_equal(count_lines(logfile, needle), 1);
	assert_int_equal(cfs_store_lookup(f->store, d, NULL), 0);
}

/* Size of the largest temp file in @store, or -1 if there is none. */
static long long largest_temp(const char *store)
{
	char path[200];
	struct dirent *de;
	long long max = -1;
	DIR *dir;

	snprintf(path, sizeof(path), "%s/" CFS_STORE_TMPDIR, store);
	dir = opendir(path);
	if (!dir)
		return -1;
	while ((de = readdir(dir))) {
		struct stat st;

		if (de->d_name[0] != '.' && fstatat(dirfd(dir), de->d_name, &st, 0) == 0 &&
		    st.st_size > max)
			max = st.st_size;
	}
	closedir(dir);
	return max;
}

/* A body that drips in is written to its temp file as it comes, not held in memory until it
 * ends: 2 000 bytes arrive every 100 ms (a 100 000-byte object takes 5 s), and several of those
 * pieces must be on disk within 2 s, while the transfer still runs. */
static void test_slow_body_reaches_temp_file(void **state)
{
	struct fixture *f = *state;
	const char *const extra[] = {"--fault", "*=drip", "--drip-bps", "20000", NULL};
	struct counter c = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0, 0};
	char url[128];
	const char *servers[] = {url};
	struct cfs_fetch *fetch;
	uint8_t d[CFS_DIGEST_SIZE];
	long long on_disk = -1;
	uint64_t t0;
	pid_t pid;
	int done;

	add_object(f->srcstore, 100000, 11, d);
	pid = faultd_start(f, extra, url, sizeof(url));
	fetch = start(f, servers, 1);
	t0 = cfs_now_ns();
	assert_int_equal(cfs_fetch_submit(fetch, d, 0, count_cb, &c), 0);
	while (cfs_now_ns() - t0 < 2000000000ULL && on_disk < 6000) {
		usleep(50 * 1000);
		on_disk = largest_temp(f->dst);
	}
	pthread_mutex_lock(&c.lock);
	done = c.done;
	pthread_mutex_unlock(&c.lock);
	cfs_fetch_free(fetch);
	faultd_stop(pid);
	assert_int_equal(done, 0);
	assert_true(on_disk >= 6000);
	assert_int_equal(count_temp(f->dst), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_options, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_fetch_and_present, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_absent, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_mismatch_failover, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_many_group_commit, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_lone_commit_at_once, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_handoff, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_cancel_on_free, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_server_backoff, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_single_flight_200, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_slow_body_reaches_temp_file, setup, teardown),
	};

	signal(SIGPIPE, SIG_IGN);
	int failed = cmocka_run_group_tests(tests, NULL, NULL);

	return failed ? failed : faultd_missing ? 77 : 0;
}
