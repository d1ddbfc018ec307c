/* SPDX-License-Identifier: MIT */
/* cfscache: unit test of the fetch engine's pure classification of an HTTP attempt's outcome:
 * status, CURLcode and flags -> success, not found, retry here, next server or give up. */
#include "config.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "fetcher/fetch-internal.h"

#define S "http://s"
#define BIG (1024 * 1024)

struct row {
	const char *name;
	struct cfs_fetch_facts a; /* server, retries, max_object_size filled in by the test */
	enum cfs_fetch_outcome outcome;
	int err;
	enum cfs_fetch_fail_kind kind;
	bool unreachable, keep_partial;
	const char *reason; /* the whole reason, or NULL for none */
};

static const struct row rows[] = {
    {"200", {.cc = CURLE_OK, .status = 200, .tries = 1}, CFS_FETCH_SUCCESS, 0, CFS_FETCH_FAIL_NONE},
    {"206 resumed", {.cc = CURLE_OK, .status = 206, .tries = 1, .body_bytes = BIG},
     CFS_FETCH_SUCCESS, 0, CFS_FETCH_FAIL_NONE},
    {"file:// read", {.cc = CURLE_OK, .status = 0, .tries = 1}, CFS_FETCH_SUCCESS, 0,
     CFS_FETCH_FAIL_NONE},
    {"404", {.cc = CURLE_OK, .status = 404, .discard = true, .tries = 1}, CFS_FETCH_NOT_FOUND, 0,
     CFS_FETCH_FAIL_NONE},
    {"410", {.cc = CURLE_OK, .status = 410, .discard = true, .tries = 3}, CFS_FETCH_NOT_FOUND, 0,
     CFS_FETCH_FAIL_NONE},
    {"file:// absent", {.cc = CURLE_FILE_COULDNT_READ_FILE, .tries = 1}, CFS_FETCH_NOT_FOUND, 0,
     CFS_FETCH_FAIL_NONE},
    {"remote file not found", {.cc = CURLE_REMOTE_FILE_NOT_FOUND, .tries = 1},
     CFS_FETCH_NOT_FOUND, 0, CFS_FETCH_FAIL_NONE},
    {"store full", {.cc = CURLE_WRITE_ERROR, .status = 200, .abort_err = -ENOSPC,
                    .local_err = true, .tries = 1, .body_bytes = BIG},
     CFS_FETCH_GIVE_UP, -ENOSPC, CFS_FETCH_FAIL_LOCAL, false, false,
     "store: No space left on device"},
    {"local error beats 404", {.cc = CURLE_WRITE_ERROR, .status = 404, .abort_err = -EIO,
                               .local_err = true, .tries = 1},
     CFS_FETCH_GIVE_UP, -EIO, CFS_FETCH_FAIL_LOCAL, false, false, "store: Input/output error"},
    {"503 first try", {.cc = CURLE_OK, .status = 503, .discard = true, .tries = 1},
     CFS_FETCH_RETRY, -EIO, CFS_FETCH_FAIL_HTTP, false, false, S ": HTTP 503"},
    {"503 last retry", {.cc = CURLE_OK, .status = 503, .discard = true, .tries = 2},
     CFS_FETCH_RETRY, -EIO, CFS_FETCH_FAIL_HTTP, false, false, S ": HTTP 503"},
    {"503 retries used up", {.cc = CURLE_OK, .status = 503, .discard = true, .tries = 3},
     CFS_FETCH_NEXT_SERVER, -EIO, CFS_FETCH_FAIL_HTTP, false, false, S ": HTTP 503"},
    {"500", {.cc = CURLE_OK, .status = 500, .discard = true, .tries = 1}, CFS_FETCH_RETRY, -EIO,
     CFS_FETCH_FAIL_HTTP, false, false, S ": HTTP 500"},
    {"408", {.cc = CURLE_OK, .status = 408, .discard = true, .tries = 1}, CFS_FETCH_RETRY, -EIO,
     CFS_FETCH_FAIL_HTTP, false, false, S ": HTTP 408"},
    {"429", {.cc = CURLE_OK, .status = 429, .discard = true, .tries = 1}, CFS_FETCH_RETRY, -EIO,
     CFS_FETCH_FAIL_HTTP, false, false, S ": HTTP 429"},
    {"416", {.cc = CURLE_OK, .status = 416, .discard = true, .tries = 1}, CFS_FETCH_RETRY, -EIO,
     CFS_FETCH_FAIL_HTTP, false, false, S ": HTTP 416"},
    {"401", {.cc = CURLE_OK, .status = 401, .discard = true, .tries = 1}, CFS_FETCH_NEXT_SERVER,
     -EIO, CFS_FETCH_FAIL_HTTP, false, false, S ": HTTP 401"},
    {"403", {.cc = CURLE_OK, .status = 403, .discard = true, .tries = 1}, CFS_FETCH_NEXT_SERVER,
     -EIO, CFS_FETCH_FAIL_HTTP, false, false, S ": HTTP 403"},
    {"302 not followed", {.cc = CURLE_OK, .status = 302, .discard = true, .tries = 1},
     CFS_FETCH_NEXT_SERVER, -EIO, CFS_FETCH_FAIL_HTTP, false, false, S ": HTTP 302"},
    {"error page too long", {.cc = CURLE_WRITE_ERROR, .status = 500, .discard = true, .tries = 1},
     CFS_FETCH_RETRY, -EIO, CFS_FETCH_FAIL_HTTP, false, false, S ": HTTP 500"},
    {"body over the limit", {.cc = CURLE_WRITE_ERROR, .status = 200, .abort_err = -EFBIG,
                             .tries = 1, .body_bytes = BIG},
     CFS_FETCH_NEXT_SERVER, -EFBIG, CFS_FETCH_FAIL_TOO_LARGE, false, false,
     S " sent more than 4096 bytes"},
    {"Content-Length over the limit", {.cc = CURLE_FILESIZE_EXCEEDED, .status = 200, .tries = 1},
     CFS_FETCH_NEXT_SERVER, -EFBIG, CFS_FETCH_FAIL_TOO_LARGE, false, false,
     S " sent more than 4096 bytes"},
    {"range answer elsewhere", {.cc = CURLE_WRITE_ERROR, .status = 206, .abort_err = -EIO,
                                .bad_range = true, .tries = 1, .body_bytes = BIG,
                                .range_from = BIG},
     CFS_FETCH_RETRY, -EIO, CFS_FETCH_FAIL_NETWORK, false, false,
     S ": range answer does not start at 1048576"},
    {"connect timeout", {.cc = CURLE_OPERATION_TIMEDOUT, .tries = 1,
                         .errbuf = "Connection timed out after 5001 milliseconds"},
     CFS_FETCH_RETRY, -ETIMEDOUT, CFS_FETCH_FAIL_TIMEOUT, true, false,
     S ": Connection timed out after 5001 milliseconds"},
    {"low speed, large partial", {.cc = CURLE_OPERATION_TIMEDOUT, .status = 200, .tries = 1,
                                  .body_bytes = BIG, .errbuf = "too slow"},
     CFS_FETCH_RETRY, -ETIMEDOUT, CFS_FETCH_FAIL_TIMEOUT, false, true, S ": too slow"},
    {"low speed, small partial", {.cc = CURLE_OPERATION_TIMEDOUT, .status = 200, .tries = 1,
                                  .body_bytes = RESUME_MIN - 1, .errbuf = "too slow"},
     CFS_FETCH_RETRY, -ETIMEDOUT, CFS_FETCH_FAIL_TIMEOUT, false, false, S ": too slow"},
    {"reset, partial at the mark", {.cc = CURLE_RECV_ERROR, .status = 206, .tries = 2,
                                    .body_bytes = RESUME_MIN, .errbuf = "reset"},
     CFS_FETCH_RETRY, -EIO, CFS_FETCH_FAIL_NETWORK, false, true, S ": reset"},
    {"short zstd body", {.cc = CURLE_PARTIAL_FILE, .status = 200, .encoded = true, .tries = 1,
                         .body_bytes = BIG, .errbuf = "short"},
     CFS_FETCH_RETRY, -EIO, CFS_FETCH_FAIL_NETWORK, false, false, S ": short"},
    {"refused", {.cc = CURLE_COULDNT_CONNECT, .tries = 1}, CFS_FETCH_RETRY, -EIO,
     CFS_FETCH_FAIL_NETWORK, true, false, S ": Couldn't connect to server"},
    {"refused, retries used up", {.cc = CURLE_COULDNT_CONNECT, .tries = 3, .errbuf = ""},
     CFS_FETCH_NEXT_SERVER, -EIO, CFS_FETCH_FAIL_NETWORK, true, false,
     S ": Couldn't connect to server"},
    {"unresolvable", {.cc = CURLE_COULDNT_RESOLVE_HOST, .tries = 1, .errbuf = "no host"},
     CFS_FETCH_RETRY, -EIO, CFS_FETCH_FAIL_NETWORK, true, false, S ": no host"},
    {"bad certificate", {.cc = CURLE_PEER_FAILED_VERIFICATION, .tries = 1, .errbuf = "cert"},
     CFS_FETCH_NEXT_SERVER, -EIO, CFS_FETCH_FAIL_NETWORK, false, false, S ": cert"},
    {"malformed URL", {.cc = CURLE_URL_MALFORMAT, .tries = 1, .errbuf = "url"},
     CFS_FETCH_NEXT_SERVER, -EIO, CFS_FETCH_FAIL_NETWORK, false, false, S ": url"},
};

static void test_classify(void **state)
{
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		const struct row *t = &rows[i];
		struct cfs_fetch_facts a = t->a;
		struct cfs_fetch_verdict v;

		a.server = S;
		a.retries = 2;
		a.max_object_size = 4096;
		cfs_fetch_classify(&a, &v);
		if (v.outcome != t->outcome || v.err != t->err || v.kind != t->kind ||
		    v.unreachable != t->unreachable || v.keep_partial != t->keep_partial ||
		    strcmp(v.reason, t->reason ? t->reason : "") != 0)
			print_message("row \"%s\": %d %d %d %d %d \"%s\"\n", t->name, v.outcome,
			              v.err, v.kind, v.unreachable, v.keep_partial, v.reason);
		assert_int_equal(v.outcome, t->outcome);
		assert_int_equal(v.err, t->err);
		assert_int_equal(v.kind, t->kind);
		assert_int_equal(v.unreachable, t->unreachable);
		assert_int_equal(v.keep_partial, t->keep_partial);
		assert_string_equal(v.reason, t->reason ? t->reason : "");
	}
}

static void test_curl_errno(void **state)
{
	static const struct {
		CURLcode cc;
		int err;
	} rows2[] = {
	    {CURLE_OPERATION_TIMEDOUT, -ETIMEDOUT},   {CURLE_COULDNT_CONNECT, -ECONNREFUSED},
	    {CURLE_COULDNT_RESOLVE_HOST, -EHOSTUNREACH}, {CURLE_COULDNT_RESOLVE_PROXY, -EHOSTUNREACH},
	    {CURLE_SSL_CACERT_BADFILE, -EPROTO},      {CURLE_PEER_FAILED_VERIFICATION, -EPROTO},
	    {CURLE_RECV_ERROR, -EIO},                 {CURLE_GOT_NOTHING, -EIO},
	};

	for (size_t i = 0; i < sizeof(rows2) / sizeof(rows2[0]); i++)
		assert_int_equal(cfs_fetch_curl_errno(rows2[i].cc), rows2[i].err);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_classify),
	    cmocka_unit_test(test_curl_errno),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
