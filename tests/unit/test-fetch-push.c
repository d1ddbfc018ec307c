/* SPDX-License-Identifier: MIT */
/* cfscache: unit test of the upload client against a scripted HTTP server on a thread: present
 * and missing objects, 204, retries of 5xx, giving up, refused tokens, 413, dry runs, a size
 * mismatch, a closed port, and parallel uploads with their bodies checked. */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/log.h"
#include "common/name.h"
#include "fetcher/fetch-opts.h"
#include "fetcher/fetch-push.h"
#include "store-fixture.h"

#define MAX_OBJECTS 32
#define MAX_CONNS 32

/* What the server answers to the @nth (0, 1, ...) request of @method for object @obj. */
typedef int (*answer_fn)(bool put, int obj, int nth);

struct server {
	int lfd, port;
	answer_fn answer;
	const char *token; /* required "Authorization: Bearer" value, or NULL */
	uint64_t sizes[MAX_OBJECTS];
	pthread_t accept_thread, conn_threads[MAX_CONNS];
	int n_conns;
	pthread_mutex_t lock;
	int heads[MAX_OBJECTS], puts[MAX_OBJECTS];
	bool body_ok[MAX_OBJECTS]; /* the last PUT's body was the object's bytes */
	int unauthorized;          /* requests without the token */
};

static struct server srv;

/* The object's bytes: its index, then a counter. */
static uint8_t object_byte(int obj, uint64_t off)
{
	return (uint8_t)(obj * 31 + off);
}

static bool read_line(int fd, char *buf, size_t cap)
{
	size_t n = 0;

	while (n + 1 < cap) {
		ssize_t r = read(fd, buf + n, 1);

		if (r <= 0)
			return false;
		if (buf[n] == '\n') {
			buf[n] = '\0';
			if (n && buf[n - 1] == '\r')
				buf[n - 1] = '\0';
			return true;
		}
		n++;
	}
	return false;
}

/* Reads a PUT body of @len bytes and compares it with object @obj. */
static bool read_body(int fd, int obj, uint64_t len)
{
	bool ok = obj >= 0 && len == srv.sizes[obj];

	for (uint64_t off = 0; off < len; off++) {
		uint8_t c;

		if (read(fd, &c, 1) != 1)
			return false;
		ok = ok && c == object_byte(obj, off);
	}
	return ok;
}

/* One request on @fd: false when the client closed the connection. */
static bool serve_request(int fd)
{
	char line[512], method[16] = "", path[256] = "", reply[160];
	unsigned long long len = 0;
	bool authorized = false, put, body_ok = true;
	int obj = -1, nth, status;
	unsigned x;

	if (!read_line(fd, line, sizeof(line)) || sscanf(line, "%15s %255s", method, path) != 2)
		return false;
	while (read_line(fd, line, sizeof(line)) && line[0]) {
		if (strncasecmp(line, "Content-Length:", 15) == 0)
			len = strtoull(line + 15, NULL, 10);
		if (srv.token && strncmp(line, "Authorization: Bearer ", 22) == 0)
			authorized = strcmp(line + 22, srv.token) == 0;
	}
	if (sscanf(path, "/objects/%2x/", &x) == 1 && x < MAX_OBJECTS)
		obj = (int)x;
	put = strcmp(method, "PUT") == 0;
	if (put)
		body_ok = read_body(fd, obj, len);
	pthread_mutex_lock(&srv.lock);
	nth = obj < 0 ? 0 : put ? srv.puts[obj]++ : srv.heads[obj]++;
	if (put && obj >= 0)
		srv.body_ok[obj] = body_ok;
	if (srv.token && !authorized)
		srv.unauthorized++;
	pthread_mutex_unlock(&srv.lock);
	status = srv.token && !authorized ? 401 : obj < 0 ? 400 : srv.answer(put, obj, nth);
	/* A HEAD that finds the object says its size; -status says a wrong one. */
	snprintf(reply, sizeof(reply), "HTTP/1.1 %d X\r\nContent-Length: %llu\r\n\r\n",
	         status < 0 ? -status : status,
	         !put && status == 200    ? (unsigned long long)srv.sizes[obj]
	         : !put && status == -200 ? (unsigned long long)srv.sizes[obj] + 1
	                                  : 0ULL);
	return write(fd, reply, strlen(reply)) == (ssize_t)strlen(reply);
}

static void *conn_main(void *arg)
{
	int fd = (int)(intptr_t)arg;

	while (serve_request(fd)) {
	}
	close(fd);
	return NULL;
}

static void *accept_main(void *arg)
{
	(void)arg;
	for (;;) {
		int fd = accept(srv.lfd, NULL, NULL);

		if (fd < 0)
			return NULL;
		/* cmocka's checks belong to the test's thread: too many connections are refused. */
		if (srv.n_conns == MAX_CONNS ||
		    pthread_create(&srv.conn_threads[srv.n_conns], NULL, conn_main,
		                   (void *)(intptr_t)fd) != 0)
			close(fd);
		else
			srv.n_conns++;
	}
}

static void server_start(answer_fn answer, const char *token)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t alen = sizeof(a);
	uint64_t sizes[MAX_OBJECTS];

	memcpy(sizes, srv.sizes, sizeof(sizes));
	memset(&srv, 0, sizeof(srv));
	memcpy(srv.sizes, sizes, sizeof(sizes));
	pthread_mutex_init(&srv.lock, NULL);
	srv.answer = answer;
	srv.token = token;
	srv.lfd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(srv.lfd >= 0);
	assert_int_equal(bind(srv.lfd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(srv.lfd, 64), 0);
	assert_int_equal(getsockname(srv.lfd, (struct sockaddr *)&a, &alen), 0);
	srv.port = ntohs(a.sin_port);
	assert_int_equal(pthread_create(&srv.accept_thread, NULL, accept_main, NULL), 0);
}

/* After the push: its connections are closed, so every thread ends. */
static void server_stop(void)
{
	shutdown(srv.lfd, SHUT_RDWR);
	pthread_join(srv.accept_thread, NULL);
	close(srv.lfd);
	for (int i = 0; i < srv.n_conns; i++)
		pthread_join(srv.conn_threads[i], NULL);
	pthread_mutex_destroy(&srv.lock);
}

/* ---- the store and the push ---- */

struct run {
	struct cfs_fetch_push_item items[MAX_OBJECTS];
	size_t n;
	int missing[MAX_OBJECTS]; /* dry-run callbacks per object */
	struct cfs_fetch_push_result res;
	int r;
};

/* Object @i of @n: digest XX = i, in the store with 100 + 1000 * i bytes. */
static void make_objects(struct fixture *f, struct run *run, size_t n)
{
	run->n = n;
	for (size_t i = 0; i < n; i++) {
		struct cfs_fetch_push_item *it = &run->items[i];
		char rel[CFS_NAME_PATH_LEN + 1], path[256];
		FILE *fp;

		memset(it->digest, 0xab, CFS_DIGEST_SIZE);
		it->digest[0] = (uint8_t)i;
		it->size = 100 + 1000 * i;
		srv.sizes[i] = it->size;
		cfs_name_format_path(it->digest, rel);
		snprintf(path, sizeof(path), "%s/%.2s", f->path, rel);
		mkdir(path, 0755);
		snprintf(path, sizeof(path), "%s/%s", f->path, rel);
		fp = fopen(path, "w");
		assert_non_null(fp);
		for (uint64_t off = 0; off < it->size; off++)
			fputc(object_byte((int)i, off), fp);
		assert_int_equal(fclose(fp), 0);
	}
}

static void on_missing(const uint8_t digest[CFS_DIGEST_SIZE], void *ctx)
{
	struct run *run = ctx;

	run->missing[digest[0]]++;
}

static void push(struct fixture *f, struct run *run, unsigned jobs, unsigned retries,
                 const char *token_file, bool dry_run, int port)
{
	struct cfs_fetch_opts client;
	struct cfs_progress progress;
	char url[64], err[CFS_FETCH_OPTS_ERR_LEN];

	cfs_fetch_opts_init(&client);
	client.o.retries = retries;
	client.o.backoff_ms = 1;
	if (token_file)
		assert_int_equal(
		    cfs_fetch_opts_set(&client, CFS_FETCH_OPT_TOKEN_FILE, token_file, err), 0);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/objects/", port);
	cfs_progress_init(&progress, "test", run->n, 0, true);
	run->r = cfs_fetch_push(&(struct cfs_fetch_push_options){.url = url,
	                                                         .client = &client.o,
	                                                         .store = f->store,
	                                                         .jobs = jobs,
	                                                         .dry_run = dry_run,
	                                                         .progress = &progress,
	                                                         .missing = on_missing,
	                                                         .ctx = run},
	                        run->items, run->n, &run->res);
	cfs_fetch_opts_free(&client);
}

/* ---- cases ---- */

static int answer_mixed(bool put, int obj, int nth)
{
	(void)nth;
	if (!put)
		return obj == 0 ? 200 : 404;
	return obj == 1 ? 201 : obj == 2 ? 204 : obj == 3 ? 413 : 500;
}

static void test_present_missing(void **state)
{
	struct fixture *f = *state;
	struct run run = {0};

	make_objects(f, &run, 4);
	server_start(answer_mixed, NULL);
	push(f, &run, 1, 2, NULL, false, srv.port);
	server_stop();
	assert_int_equal(run.r, 0);
	assert_string_equal(run.res.fatal, "");
	assert_int_equal(run.res.present, 2); /* 200 on HEAD, 204 on PUT */
	assert_int_equal(run.res.uploaded, 1);
	assert_int_equal(run.res.uploaded_bytes, run.items[1].size);
	assert_int_equal(run.res.failed, 1); /* 413: said at once, not retried */
	assert_int_equal(srv.heads[0], 1);
	assert_int_equal(srv.puts[0], 0);
	assert_int_equal(srv.puts[1], 1);
	assert_true(srv.body_ok[1]);
	assert_int_equal(srv.puts[3], 1);
}

static int answer_flaky(bool put, int obj, int nth)
{
	(void)obj;
	if (!put)
		return nth < 2 ? 503 : 404;
	return nth < 1 ? 500 : 201;
}

static void test_retries(void **state)
{
	struct fixture *f = *state;
	struct run run = {0};

	make_objects(f, &run, 2);
	server_start(answer_flaky, NULL);
	push(f, &run, 2, 2, NULL, false, srv.port);
	server_stop();
	assert_int_equal(run.res.uploaded, 2);
	assert_int_equal(run.res.failed, 0);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(srv.heads[i], 3);
		assert_int_equal(srv.puts[i], 2);
		assert_true(srv.body_ok[i]);
	}
}

static int answer_down(bool put, int obj, int nth)
{
	(void)put;
	(void)obj;
	(void)nth;
	return 503;
}

static void test_give_up(void **state)
{
	struct fixture *f = *state;
	struct run run = {0};

	make_objects(f, &run, 6);
	server_start(answer_down, NULL);
	push(f, &run, 1, 1, NULL, false, srv.port);
	server_stop();
	/* Three objects fail after their retry; then push stops. */
	assert_int_equal(run.res.failed, 3);
	assert_non_null(strstr(run.res.fatal, "giving up after 3 objects failed in a row"));
	assert_non_null(strstr(run.res.fatal, "HEAD: HTTP 503"));
}

static int answer_missing(bool put, int obj, int nth)
{
	(void)obj;
	(void)nth;
	return put ? 201 : 404;
}

static void test_token(void **state)
{
	struct fixture *f = *state;
	char tok[128], wrong[128];
	struct run run = {0};
	FILE *fp;

	snprintf(tok, sizeof(tok), "%s/token", f->dir);
	snprintf(wrong, sizeof(wrong), "%s/wrong", f->dir);
	fp = fopen(tok, "w");
	fputs("s3cret\n", fp);
	fclose(fp);
	fp = fopen(wrong, "w");
	fputs("guess\n", fp);
	fclose(fp);
	make_objects(f, &run, 3);

	server_start(answer_missing, "s3cret");
	push(f, &run, 1, 2, NULL, false, srv.port);
	server_stop();
	assert_non_null(strstr(run.res.fatal, "requires a token"));
	assert_int_equal(run.res.uploaded, 0);

	server_start(answer_missing, "s3cret");
	push(f, &run, 1, 2, wrong, false, srv.port);
	server_stop();
	assert_non_null(strstr(run.res.fatal, "refused the token (HTTP 401)"));

	server_start(answer_missing, "s3cret");
	push(f, &run, 2, 2, tok, false, srv.port);
	server_stop();
	assert_string_equal(run.res.fatal, "");
	assert_int_equal(run.res.uploaded, 3);
	assert_int_equal(srv.unauthorized, 0);
}

static void test_dry_run(void **state)
{
	struct fixture *f = *state;
	struct run run = {0};

	make_objects(f, &run, 3);
	server_start(answer_missing, NULL);
	push(f, &run, 3, 2, NULL, true, srv.port);
	server_stop();
	assert_int_equal(run.res.uploaded, 3); /* counted as to be uploaded */
	for (int i = 0; i < 3; i++) {
		assert_int_equal(run.missing[i], 1);
		assert_int_equal(srv.puts[i], 0);
	}
}

static int answer_wrong_size(bool put, int obj, int nth)
{
	(void)put;
	(void)obj;
	(void)nth;
	return -200;
}

static void test_size_mismatch(void **state)
{
	struct fixture *f = *state;
	struct run run = {0};

	make_objects(f, &run, 1);
	server_start(answer_wrong_size, NULL);
	push(f, &run, 1, 2, NULL, false, srv.port);
	server_stop();
	assert_int_equal(run.res.failed, 1);
	assert_int_equal(srv.puts[0], 0);
}

static void test_closed_port(void **state)
{
	struct fixture *f = *state;
	struct run run = {0};
	int port;

	/* A port nothing listens on any more. */
	server_start(answer_down, NULL);
	port = srv.port;
	server_stop();
	make_objects(f, &run, 4);
	push(f, &run, 1, 0, NULL, false, port);
	assert_int_equal(run.res.failed, 3);
	assert_non_null(strstr(run.res.fatal, "giving up"));
}

static void test_parallel(void **state)
{
	struct fixture *f = *state;
	struct run run = {0};

	make_objects(f, &run, 24);
	server_start(answer_missing, NULL);
	push(f, &run, 6, 2, NULL, false, srv.port);
	server_stop();
	assert_int_equal(run.res.uploaded, 24);
	assert_int_equal(run.res.failed, 0);
	assert_true(srv.n_conns <= 6);
	for (int i = 0; i < 24; i++) {
		assert_int_equal(srv.puts[i], 1);
		assert_true(srv.body_ok[i]);
	}
}

static int setup(void **state)
{
	return store_fixture_setup(state, "push");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_present_missing, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_retries, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_give_up, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_token, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_dry_run, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_size_mismatch, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_closed_port, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_parallel, setup, teardown),
	};

	cfs_log_init("test-fetch-push");
	cfs_log_set_level(CFS_LOG_ERR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
