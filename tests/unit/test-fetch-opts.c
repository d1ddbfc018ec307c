/* SPDX-License-Identifier: MIT */
/* cfscache: unit test of the fetch-client options: good and bad values, limits, the getopt and
 * -o spellings, the help lines and the token and TLS file checks. */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "fetcher/fetch-opts.h"

struct row {
	enum cfs_fetch_opt_id id;
	const char *value;
	int result;
	const char *err; /* a part of the message, for a bad value */
};

static const struct row rows[] = {
    {CFS_FETCH_OPT_RETRIES, "0", 0, NULL},
    {CFS_FETCH_OPT_RETRIES, "100", 0, NULL},
    {CFS_FETCH_OPT_RETRIES, "101", -EINVAL, "bad --retries '101' (0 to 100)"},
    {CFS_FETCH_OPT_RETRIES, "-1", -EINVAL, "--retries"},
    {CFS_FETCH_OPT_RETRIES, "2x", -EINVAL, "'2x'"},
    {CFS_FETCH_OPT_RETRIES, "", -EINVAL, "--retries"},
    {CFS_FETCH_OPT_MAX_TRANSFERS, "1", 0, NULL},
    {CFS_FETCH_OPT_MAX_TRANSFERS, "0", -EINVAL, "(1 to 1000000)"},
    {CFS_FETCH_OPT_MAX_TRANSFERS, "1000001", -EINVAL, "--max-transfers"},
    {CFS_FETCH_OPT_PER_SERVER, "0", -EINVAL, "--per-server"},
    {CFS_FETCH_OPT_CONNECT_TIMEOUT, "500ms", 0, NULL},
    {CFS_FETCH_OPT_CONNECT_TIMEOUT, "0", -EINVAL, "(1ms to 1h)"},
    {CFS_FETCH_OPT_CONNECT_TIMEOUT, "2h", -EINVAL, "--connect-timeout"},
    {CFS_FETCH_OPT_CONNECT_TIMEOUT, "soon", -EINVAL, "'soon'"},
    {CFS_FETCH_OPT_LOW_SPEED_TIME, "1s", 0, NULL},
    {CFS_FETCH_OPT_LOW_SPEED_TIME, "999ms", -EINVAL, "(1s to 1h)"},
    {CFS_FETCH_OPT_COMMIT_DELAY, "0", 0, NULL},
    {CFS_FETCH_OPT_COMMIT_DELAY, "61m", -EINVAL, "--commit-delay"},
    {CFS_FETCH_OPT_MAX_OBJECT_SIZE, "1M", 0, NULL},
    {CFS_FETCH_OPT_MAX_OBJECT_SIZE, "0", -EINVAL, "(at least 1)"},
    {CFS_FETCH_OPT_MAX_OBJECT_SIZE, "lots", -EINVAL, "--max-object-size 'lots'"},
    {CFS_FETCH_OPT_TOKEN_FILE, "/t", 0, NULL},
    {CFS_FETCH_OPT_TOKEN_FILE, NULL, -EINVAL, "--token-file needs a value"},
    {CFS_FETCH_OPT_INSECURE, NULL, 0, NULL},
    {CFS_FETCH_OPT_NO_ZSTD, NULL, 0, NULL},
};

static void test_values(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		const struct row *w = &rows[i];
		struct cfs_fetch_opts fo;
		char err[CFS_FETCH_OPTS_ERR_LEN];
		int r;

		cfs_fetch_opts_init(&fo);
		r = cfs_fetch_opts_set(&fo, w->id, w->value, err);
		if (r != w->result)
			fail_msg("%s=%s: %d, want %d",
			         cfs_fetch_opts_has_arg(w->id) ? "value" : "flag",
			         w->value ? w->value : "(none)", r, w->result);
		if (w->err && !strstr(err, w->err))
			fail_msg("%s: message '%s' lacks '%s'", w->value, err, w->err);
		if (r == 0)
			assert_true(fo.given & (1u << w->id));
		else
			assert_false(fo.given & (1u << w->id));
		cfs_fetch_opts_free(&fo);
	}
}

/* A front end's own spelling of an option names it in the message. */
static void test_alias(void **state)
{
	struct cfs_fetch_opts fo;
	char err[CFS_FETCH_OPTS_ERR_LEN];

	(void)state;
	cfs_fetch_opts_init(&fo);
	assert_int_equal(
	    cfs_fetch_opts_set_as(&fo, CFS_FETCH_OPT_MAX_TRANSFERS, "0", "--jobs", err), -EINVAL);
	assert_string_equal(err, "bad --jobs '0' (1 to 1000000)");
	assert_int_equal(cfs_fetch_opts_set_as(&fo, CFS_FETCH_OPT_TOKEN_FILE, NULL, "-t", err),
	                 -EINVAL);
	assert_string_equal(err, "-t needs a value");
	assert_int_equal(
	    cfs_fetch_opts_set_as(&fo, CFS_FETCH_OPT_MAX_TRANSFERS, "8", "--jobs", err), 0);
	assert_int_equal(fo.o.max_transfers, 8);
	cfs_fetch_opts_free(&fo);
}

static void test_applied(void **state)
{
	struct cfs_fetch_opts fo;
	char err[CFS_FETCH_OPTS_ERR_LEN];

	(void)state;
	cfs_fetch_opts_init(&fo);
	/* The client defaults: the engine's, objects up to 4 GiB. */
	assert_int_equal(fo.o.retries, 2);
	assert_int_equal(fo.o.max_transfers, 64);
	assert_int_equal(fo.o.connect_timeout_ms, 5000);
	assert_true(fo.o.max_object_size == 4ULL << 30);
	assert_true(fo.o.accept_zstd);
	assert_int_equal(fo.given, 0);

	assert_int_equal(cfs_fetch_opts_set(&fo, CFS_FETCH_OPT_RETRIES, "7", err), 0);
	assert_int_equal(cfs_fetch_opts_set(&fo, CFS_FETCH_OPT_CONNECT_TIMEOUT, "1500ms", err), 0);
	assert_int_equal(cfs_fetch_opts_set(&fo, CFS_FETCH_OPT_LOW_SPEED_TIME, "2m", err), 0);
	assert_int_equal(cfs_fetch_opts_set(&fo, CFS_FETCH_OPT_MAX_OBJECT_SIZE, "16k", err), 0);
	assert_int_equal(cfs_fetch_opts_set(&fo, CFS_FETCH_OPT_COMMIT_DELAY, "20ms", err), 0);
	assert_int_equal(cfs_fetch_opts_set(&fo, CFS_FETCH_OPT_INSECURE, NULL, err), 0);
	assert_int_equal(cfs_fetch_opts_set(&fo, CFS_FETCH_OPT_NO_ZSTD, NULL, err), 0);
	assert_int_equal(cfs_fetch_opts_set(&fo, CFS_FETCH_OPT_CA_FILE, "/a", err), 0);
	assert_int_equal(cfs_fetch_opts_set(&fo, CFS_FETCH_OPT_CA_FILE, "/b", err), 0);
	assert_int_equal(cfs_fetch_opts_set(&fo, CFS_FETCH_OPT_CERT, "/c", err), 0);
	assert_int_equal(cfs_fetch_opts_set(&fo, CFS_FETCH_OPT_KEY, "/k", err), 0);
	assert_int_equal(fo.o.retries, 7);
	assert_int_equal(fo.o.connect_timeout_ms, 1500);
	assert_int_equal(fo.o.low_speed_secs, 120);
	assert_true(fo.o.max_object_size == 16384);
	assert_int_equal(fo.o.commit_delay_ms, 20);
	assert_true(fo.o.insecure);
	assert_false(fo.o.accept_zstd);
	assert_string_equal(fo.o.ca_file, "/b");
	assert_string_equal(fo.o.client_cert, "/c");
	assert_string_equal(fo.o.client_key, "/k");
	assert_null(fo.o.token_file);
	cfs_fetch_opts_free(&fo);
}

static void test_servers(void **state)
{
	struct cfs_fetch_opts fo;
	char err[CFS_FETCH_OPTS_ERR_LEN], url[32];

	(void)state;
	cfs_fetch_opts_init(&fo);
	for (int i = 0; i < CFS_FETCH_OPTS_MAX_SERVERS; i++) {
		snprintf(url, sizeof(url), "http://s%d", i);
		assert_int_equal(cfs_fetch_opts_set(&fo, CFS_FETCH_OPT_SERVER, url, err), 0);
	}
	assert_int_equal(cfs_fetch_opts_set(&fo, CFS_FETCH_OPT_SERVER, "http://x", err), -EINVAL);
	assert_non_null(strstr(err, "at most 64 servers"));
	/* In order, and where the engine reads them. */
	assert_int_equal(fo.o.n_servers, CFS_FETCH_OPTS_MAX_SERVERS);
	assert_string_equal(fo.o.servers[0], "http://s0");
	assert_string_equal(fo.o.servers[63], "http://s63");
	cfs_fetch_opts_free(&fo);
}

static void test_lookup(void **state)
{
	unsigned all = ~0u, some = CFS_FETCH_OPT(RETRIES) | CFS_FETCH_OPT_TLS;

	(void)state;
	assert_int_equal(cfs_fetch_opts_lookup(all, "token-file", 10), CFS_FETCH_OPT_TOKEN_FILE);
	assert_int_equal(cfs_fetch_opts_lookup(all, "token_file", 10), CFS_FETCH_OPT_TOKEN_FILE);
	assert_int_equal(cfs_fetch_opts_lookup(all, "no_zstd=1", 7), CFS_FETCH_OPT_NO_ZSTD);
	assert_int_equal(cfs_fetch_opts_lookup(all, "retrie", 6), -ENOENT);
	assert_int_equal(cfs_fetch_opts_lookup(all, "retriess", 8), -ENOENT);
	assert_int_equal(cfs_fetch_opts_lookup(some, "insecure", 8), CFS_FETCH_OPT_INSECURE);
	assert_int_equal(cfs_fetch_opts_lookup(some, "max-transfers", 13), -ENOENT);
	assert_true(cfs_fetch_opts_has_arg(CFS_FETCH_OPT_SERVER));
	assert_false(cfs_fetch_opts_has_arg(CFS_FETCH_OPT_INSECURE));
}

/* getopt_long over the generated entries, with a prefix, as cfs-serve uses them. */
static void test_getopt(void **state)
{
	struct cfs_fetch_opts_getopt g;
	struct option opts[CFS_FETCH_OPT_COUNT + 2] = {{"store", required_argument, NULL, 's'}};
	char *argv[] = {"x",   "--up-ca-file", "/ca", "--up-insecure",      "-s",
	                "/st", "--up-retries", "3",   "--up-token-file=/t", NULL};
	struct cfs_fetch_opts fo;
	char err[CFS_FETCH_OPTS_ERR_LEN];
	const char *store = NULL;
	int c, n = 0;

	(void)state;
	cfs_fetch_opts_getopt(&g, CFS_FETCH_OPT_TLS | CFS_FETCH_OPT(RETRIES), "up-", 0x1000);
	assert_int_equal(g.n, 6);
	assert_int_equal(cfs_fetch_opts_getopt_append(&g, opts, 1), 7);
	assert_null(opts[7].name);
	cfs_fetch_opts_init(&fo);
	optind = 0;
	opterr = 0;
	while ((c = getopt_long(9, argv, "s:", opts, NULL)) != -1) {
		if (c == 's') {
			store = optarg;
			continue;
		}
		assert_true(c >= 0x1000 && c < 0x1000 + CFS_FETCH_OPT_COUNT);
		assert_int_equal(cfs_fetch_opts_set(&fo, c - 0x1000, optarg, err), 0);
		n++;
	}
	assert_int_equal(n, 4);
	assert_string_equal(store, "/st");
	assert_string_equal(fo.o.ca_file, "/ca");
	assert_string_equal(fo.o.token_file, "/t");
	assert_true(fo.o.insecure);
	assert_int_equal(fo.o.retries, 3);
	cfs_fetch_opts_free(&fo);
}

static void test_help(void **state)
{
	static const char shorts[CFS_FETCH_OPT_COUNT] = {[CFS_FETCH_OPT_SERVER] = 'S'};
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	(void)state;
	assert_non_null(f);
	cfs_fetch_opts_print_help(f,
	                          CFS_FETCH_OPT(SERVER) | CFS_FETCH_OPT(RETRIES) |
	                              CFS_FETCH_OPT(CONNECT_TIMEOUT) |
	                              CFS_FETCH_OPT(MAX_OBJECT_SIZE) | CFS_FETCH_OPT(COMMIT_DELAY) |
	                              CFS_FETCH_OPT(INSECURE),
	                          NULL, shorts, 24);
	fclose(f);
	assert_non_null(strstr(buf, "  -S, --server URL      base URL"));
	assert_non_null(
	    strstr(buf, "      --retries N       extra attempts per server (default 2)\n"));
	assert_non_null(strstr(buf, "(default 5s)\n"));
	assert_non_null(strstr(buf, "(default 4G)\n"));
	/* A head as long as the column puts the text on the next line. */
	assert_non_null(strstr(buf, "--connect-timeout DURATION\n                        per "));
	/* Continuation lines of a text start at the column too. */
	assert_non_null(strstr(buf, "\n                        (default 1s with hand-off"));
	assert_non_null(strstr(buf, "      --insecure        do not verify"));
	assert_null(strstr(buf, "max-transfers"));
	free(buf);
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void test_files(void **state)
{
	char dir[] = "/tmp/test-fetch-opts.XXXXXX", tok[64], two[64], empty[64];
	struct cfs_fetch_options o = {0};
	char err[256], *token = NULL;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(tok, sizeof(tok), "%s/tok", dir);
	snprintf(two, sizeof(two), "%s/two", dir);
	snprintf(empty, sizeof(empty), "%s/empty", dir);
	write_file(tok, "secret\n");
	write_file(two, "a\nb\n");
	write_file(empty, "");

	assert_int_equal(cfs_fetch_token_read(tok, &token), 0);
	assert_string_equal(token, "secret");
	free(token);
	assert_int_equal(cfs_fetch_token_read(two, &token), -EINVAL);
	assert_int_equal(cfs_fetch_token_read(empty, &token), -EINVAL);

	assert_int_equal(cfs_fetch_opts_check_files(&o, err, sizeof(err)), 0);
	o.token_file = tok;
	o.ca_file = tok;
	assert_int_equal(cfs_fetch_opts_check_files(&o, err, sizeof(err)), 0);
	o.token_file = two;
	assert_int_equal(cfs_fetch_opts_check_files(&o, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "must hold one non-empty line"));
	o.token_file = "/nonexistent/token";
	assert_int_equal(cfs_fetch_opts_check_files(&o, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "cannot read token file /nonexistent/token"));
	o.token_file = NULL;
	o.client_key = "/nonexistent/key";
	assert_int_equal(cfs_fetch_opts_check_files(&o, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "cannot read --key /nonexistent/key"));

	unlink(tok);
	unlink(two);
	unlink(empty);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_values),  cmocka_unit_test(test_alias),
	    cmocka_unit_test(test_applied), cmocka_unit_test(test_servers),
	    cmocka_unit_test(test_lookup),  cmocka_unit_test(test_getopt),
	    cmocka_unit_test(test_help),    cmocka_unit_test(test_files),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
