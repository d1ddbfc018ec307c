/* SPDX-License-Identifier: MIT */
/* cfscache: unit test of cfs-serve's pure HTTP helpers (src/server/http.c): routes, Range,
 * If-None-Match, Accept-Encoding, tokens and request heads, as tables. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "server/http.h"

#define CFS_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#define HEX62 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd"
#define OBJ "/objects/ab/" HEX62

static void test_route(void **state)
{
	static const struct {
		const char *uri;
		enum cfs_http_route want;
	} rows[] = {
	    {OBJ, R_OBJECT},
	    {OBJ "?x=1", R_OBJECT},
	    {OBJ "?", R_OBJECT},
	    {"/healthz", R_HEALTH},
	    {"/healthz?probe", R_HEALTH},
	    {"/metrics", R_METRICS},
	    {"/", R_NOT_FOUND},
	    {"/objects", R_NOT_FOUND},
	    {"/objects/", R_NOT_FOUND},
	    {"/metricsx", R_NOT_FOUND},
	    {"/healthz/", R_NOT_FOUND},
	    {"", R_BAD},
	    {"?a", R_BAD},
	    {"objects/ab/" HEX62, R_BAD},
	    {"http://host" OBJ, R_BAD},
	    {"/objects/AB/" HEX62, R_BAD},     /* upper-case hex is not a name */
	    {"/objects/ab/" HEX62 "e", R_BAD}, /* one hex digit too many */
	    {"/objects/ab" HEX62 "e", R_BAD},  /* no slash after the prefix */
	    {"/objects/ab/" HEX62 "/", R_BAD},
	    {"/objects//ab/" HEX62, R_BAD},
	    {"/objects/./ab/" HEX62, R_BAD},
	    {"/objects/../objects/ab/" HEX62, R_BAD},
	    {"/objects/%61b/" HEX62, R_BAD},
	    {"/objects/ab\\" HEX62, R_BAD},
	    {"/objects/ab/" HEX62 "#f", R_BAD},
	    {"/a b", R_BAD},
	    {"/a\x7f", R_BAD},
	    {"/\x80", R_BAD},
	    {"//metrics", R_BAD},
	    {"/.hidden", R_BAD},
	    {"/x.y", R_NOT_FOUND}, /* a dot inside a segment is fine */
	};

	for (size_t i = 0; i < CFS_ARRAY_LEN(rows); i++) {
		uint8_t d[CFS_DIGEST_SIZE];
		enum cfs_http_route r = cfs_http_route(rows[i].uri, strlen(rows[i].uri), 1024, d);

		if (r != rows[i].want)
			print_message("route \"%s\": %d, want %d\n", rows[i].uri, r, rows[i].want);
		assert_int_equal(r, rows[i].want);
		if (r == R_OBJECT) {
			assert_int_equal(d[0], 0xab);
			assert_int_equal(d[1], 0x01);
			assert_int_equal(d[CFS_DIGEST_SIZE - 1], 0xcd);
		}
	}
}

static void test_route_length(void **state)
{
	char uri[2048];
	uint8_t d[CFS_DIGEST_SIZE];
	size_t n = strlen(OBJ);

	memcpy(uri, OBJ, n);
	/* The limit counts the whole target, query included; the length given is what counts,
	 * not a NUL (the gate passes a target inside the input buffer). */
	assert_int_equal(cfs_http_route(uri, n, n, d), R_OBJECT);
	assert_int_equal(cfs_http_route(uri, n, n - 1, d), R_TOO_LONG);
	memcpy(uri + n, "?q", 3);
	assert_int_equal(cfs_http_route(uri, n + 2, n + 1, d), R_TOO_LONG);
	assert_int_equal(cfs_http_route(uri, n + 2, n + 2, d), R_OBJECT);
	memcpy(uri, "/metrics HTTP/1.1", 18);
	assert_int_equal(cfs_http_route(uri, 8, 1024, d), R_METRICS);
	memset(uri, 'a', sizeof(uri));
	uri[0] = '/';
	assert_int_equal(cfs_http_route(uri, sizeof(uri), sizeof(uri) - 1, d), R_TOO_LONG);
	assert_int_equal(cfs_http_route(uri, sizeof(uri), sizeof(uri), d), R_NOT_FOUND);
}

static void test_range(void **state)
{
	static const struct {
		const char *h;
		uint64_t size;
		int want;
		uint64_t off, len;
	} rows[] = {
	    {NULL, 100, 0},
	    {"", 100, 0},
	    {"bytes=0-9", 100, 1, 0, 10},
	    {"bytes=10-19", 100, 1, 10, 10},
	    {"bytes=99-99", 100, 1, 99, 1},
	    {"bytes=0-0", 1, 1, 0, 1},
	    {"bytes=90-200", 100, 1, 90, 10}, /* the end is clamped */
	    {"bytes=50-", 100, 1, 50, 50},    /* open-ended */
	    {"bytes=0-", 100, 1, 0, 100},
	    {"bytes=-10", 100, 1, 90, 10}, /* a suffix */
	    {"bytes=-100", 100, 1, 0, 100},
	    {"bytes=-1000", 100, 1, 0, 100}, /* a suffix longer than the object */
	    {"BYTES=1-2", 100, 1, 1, 2},     /* the unit is case-insensitive */
	    {"bytes = 1-2", 100, 1, 1, 2},
	    {"bytes= 1-2 ", 100, 1, 1, 2},
	    {"bytes=-5 ", 100, 1, 95, 5},
	    {"bytes=0-18446744073709551615", 100, 1, 0, 100}, /* UINT64_MAX itself parses */
	    {"bytes=18446744073709551615-", 100, -1},
	    {"bytes=100-", 100, -1}, /* beyond the size: 416 */
	    {"bytes=100-200", 100, -1},
	    {"bytes=1000-2000", 100, -1},
	    {"bytes=-0", 100, -1}, /* an empty suffix */
	    {"bytes=0-", 0, -1},   /* nothing to send of an empty object */
	    {"bytes=-1", 0, -1},
	    {"bytes=0-1,5-6", 100, 0}, /* several ranges: the whole object */
	    {"bytes=0-1, 200-300", 100, 0},
	    {"bytes=0-18446744073709551616", 100, 0}, /* overflow: ignored */
	    {"bytes=18446744073709551616-", 100, 0},
	    {"bytes=-18446744073709551616", 100, 0},
	    {"bytes=99999999999999999999999-1", 100, 0},
	    {"bytes=5-1", 100, 0}, /* last before first */
	    {"bytes=-", 100, 0},
	    {"bytes=", 100, 0},
	    {"bytes", 100, 0},
	    {"bytes0-1", 100, 0},
	    {"bytesx=0-1", 100, 0},
	    {"items=0-1", 100, 0},
	    {"bytes=a-b", 100, 0},
	    {"bytes=1-2x", 100, 0},
	    {"bytes=1x-2", 100, 0},
	    {"bytes=+1-2", 100, 0},
	    {"bytes=-1-2", 100, 0},
	    {"bytes=1 -2", 100, 0},
	};

	for (size_t i = 0; i < CFS_ARRAY_LEN(rows); i++) {
		uint64_t off = 777, len = 777;
		int r = cfs_http_parse_range(rows[i].h, rows[i].size, &off, &len);

		if (r != rows[i].want || (r == 1 && (off != rows[i].off || len != rows[i].len)))
			print_message("range \"%s\" of %llu: %d %llu+%llu\n",
			              rows[i].h ? rows[i].h : "(null)",
			              (unsigned long long)rows[i].size, r, (unsigned long long)off,
			              (unsigned long long)len);
		assert_int_equal(r, rows[i].want);
		if (r == 1) {
			assert_int_equal(off, rows[i].off);
			assert_int_equal(len, rows[i].len);
		} else {
			assert_int_equal(off, 777); /* untouched */
			assert_int_equal(len, 777);
		}
	}
}

/* A header value and whether the predicate holds for it. */
struct bool_row {
	const char *h;
	bool want;
};

static void check_bools(const char *header, bool (*pred)(const char *h),
                        const struct bool_row *rows, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		bool r = pred(rows[i].h);

		if (r != rows[i].want)
			print_message("%s \"%s\": %d\n", header, rows[i].h ? rows[i].h : "(null)",
			              r);
		assert_int_equal(r, rows[i].want);
	}
}

static bool etag_is_ours(const char *h)
{
	return cfs_http_etag_matches(h, "\"" HEX62 "ab\"");
}

static void test_etag(void **state)
{
	static const struct bool_row rows[] = {
	    {NULL, false},
	    {"", false},
	    {"*", true},
	    {" * ", true},
	    {"\"" HEX62 "ab\"", true},
	    {"W/\"" HEX62 "ab\"", true}, /* weak comparison */
	    {"\"x\", \"" HEX62 "ab\"", true},
	    {"\"x\",\t\"" HEX62 "ab\" ,\"y\"", true},
	    {"\"x\", *", true},
	    {"\"" HEX62 "ab-zstd\"", false}, /* another representation */
	    {HEX62 "ab", false},             /* unquoted */
	    {"\"" HEX62 "a\"", false},
	    {"\"x\", \"y\"", false},
	    {"**", false},
	    {"w/\"" HEX62 "ab\"", false}, /* W/ is case-sensitive */
	    {",,,", false},
	};

	check_bools("If-None-Match", etag_is_ours, rows, CFS_ARRAY_LEN(rows));
	assert_true(cfs_http_etag_matches("\"" HEX62 "ab-zstd\"", "\"" HEX62 "ab-zstd\""));
}

static void test_zstd(void **state)
{
	static const struct bool_row rows[] = {
	    {NULL, false},
	    {"", false},
	    {"zstd", true},
	    {"ZSTD", true},
	    {"gzip, zstd", true},
	    {" gzip ,\tzstd ", true},
	    {"zstd;q=1", true},
	    {"zstd; q=0.5", true},
	    {"zstd ;q=0.001", true},
	    {"zstd;q=0", false},
	    {"zstd; q=0.0", false},
	    {"zstd;Q=0", false}, /* parameter names are case-insensitive */
	    {"zstd;q=0, gzip", false},
	    {"gzip;q=1, zstd;q=0", false},
	    {"zstd, gzip;q=0", true}, /* another element's q */
	    {"zstd;level=3, br;q=0", true},
	    {"gzip", false},
	    {"gzip, br", false},
	    {"zstdx", false},
	    {"xzstd", false},
	    {"*", false}, /* a wildcard is not taken as zstd */
	    {"zst", false},
	};

	check_bools("Accept-Encoding", cfs_http_accepts_zstd, rows, CFS_ARRAY_LEN(rows));
}

static bool token_ok(const char *h)
{
	return cfs_http_token_ok("s3cret", 6, h, h ? strlen(h) : 0);
}

static void test_token(void **state)
{
	static const struct bool_row rows[] = {
	    {"Bearer s3cret", true},
	    {"bearer s3cret", true},
	    {"BEARER   s3cret", true},
	    {"Bearer s3cre", false},   /* too short */
	    {"Bearer s3cret1", false}, /* too long */
	    {"Bearer s3creT", false},
	    {"Bearer s3cret ", false},
	    {"Bearer ", false},
	    {"Bearer", false},
	    {"Basic s3cret", false},
	    {"s3cret", false},
	    {"", false},
	    {NULL, false},
	};

	check_bools("Authorization", token_ok, rows, CFS_ARRAY_LEN(rows));
	/* The length given counts, not a NUL. */
	assert_true(cfs_http_token_ok("s3cret", 6, "Bearer s3cretXX", 13));
	/* No token configured: everything passes. */
	assert_true(cfs_http_token_ok(NULL, 0, NULL, 0));
	assert_true(cfs_http_token_ok(NULL, 0, "Basic x", 7));
}

static void test_length(void **state)
{
	static const struct {
		const char *v;
		bool ok;
		uint64_t want;
	} rows[] = {
	    {"0", true, 0},
	    {"42", true, 42},
	    {"007", true, 7},
	    {"18446744073709551615", true, UINT64_MAX},
	    {"18446744073709551616", false},
	    {"99999999999999999999", false},
	    {"", false},
	    {"-1", false},
	    {"+1", false},
	    {"1 ", false},
	    {"1,2", false},
	    {"0x10", false},
	};

	for (size_t i = 0; i < CFS_ARRAY_LEN(rows); i++) {
		uint64_t x = 1234;
		bool ok = cfs_http_parse_length(rows[i].v, strlen(rows[i].v), &x);

		if (ok != rows[i].ok)
			print_message("Content-Length \"%s\": %d\n", rows[i].v, ok);
		assert_int_equal(ok, rows[i].ok);
		assert_int_equal(x, ok ? rows[i].want : 1234);
	}
}

static void test_head(void **state)
{
	static const struct {
		const char *head;
		int want;
		enum cfs_http_method m;
		const char *target, *auth;
		bool have_cl, have_te, chunked;
		uint64_t cl;
	} rows[] = {
	    {"GET / HTTP/1.1\r\n\r\n", 0, M_GET, "/"},
	    {"GET / HTTP/1.1\n\n", 0, M_GET, "/"},
	    {"head /x HTTP/1.0\r\nHost: a\r\n\r\n", 0, M_HEAD, "/x"},
	    {"PUT " OBJ " HTTP/1.1\r\nContent-Length: 5\r\nAuthorization: Bearer t \r\n\r\n", 0,
	     M_PUT, OBJ, "Bearer t", true, false, false, 5},
	    {"PUT /u HTTP/1.1\r\ncontent-length:  7\t\r\ncontent-length: 7\r\n\r\n", 0, M_PUT, "/u",
	     NULL, true, false, false, 7},
	    {"PUT /u HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n", 0, M_PUT, "/u", NULL, false,
	     true, true},
	    {"DELETE /u HTTP/1.1\r\nAuthorization: a\r\nAuthorization: b\r\n\r\n", 0, M_OTHER, "/u",
	     "a"},
	    {"GET /\r\n\r\n", 400, M_OTHER}, /* no version */
	    {"GET / FTP/1.1\r\n\r\n", 400, M_OTHER},
	    {"GET  / HTTP/1.1\r\n\r\n", 400, M_OTHER}, /* an empty target */
	    {" GET / HTTP/1.1\r\n\r\n", 400, M_OTHER}, /* an empty method */
	    {"GET\r\n\r\n", 400, M_OTHER},
	    {"GET / HTTP/1.1", 400, M_OTHER}, /* no line end at all */
	    {"GET / HTTP/1.1\r\nX: 1\r\n folded\r\n\r\n", 400, M_GET, "/"},
	    {"GET / HTTP/1.1\r\nX 1\r\n\r\n", 400, M_GET, "/"},
	    {"GET / HTTP/1.1\r\n: 1\r\n\r\n", 400, M_GET, "/"},
	    {"GET / HTTP/1.1\r\nContent-Length : 1\r\n\r\n", 400, M_GET, "/"},
	    {"GET / HTTP/1.1\r\nContent(Length: 1\r\n\r\n", 400, M_GET, "/"},
	    {"PUT /u HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400, M_PUT, "/u"},
	    {"PUT /u HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400, M_PUT, "/u"},
	    {"PUT /u HTTP/1.1\r\nContent-Length: 1 2\r\n\r\n", 400, M_PUT, "/u"},
	    {"PUT /u HTTP/1.1\r\nContent-Length: \r\n\r\n", 400, M_PUT, "/u"},
	    {"PUT /u HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n", 400, M_PUT, "/u"},
	    {"PUT /u HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400,
	     M_PUT, "/u"},
	    {"PUT /u HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
	     400, M_PUT, "/u"},
	    {"PUT /u HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 501, M_PUT, "/u"},
	    {"PUT /u HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501, M_PUT, "/u"},
	};

	for (size_t i = 0; i < CFS_ARRAY_LEN(rows); i++) {
		struct cfs_http_head h;
		int r = cfs_http_parse_head(rows[i].head, strlen(rows[i].head), &h);

		if (r != rows[i].want)
			print_message("head \"%s\": %d\n", rows[i].head, r);
		assert_int_equal(r, rows[i].want);
		assert_int_equal(h.m, rows[i].m);
		if (rows[i].target) {
			assert_non_null(h.target);
			assert_int_equal(h.target_len, strlen(rows[i].target));
			assert_memory_equal(h.target, rows[i].target, h.target_len);
		}
		if (r)
			continue;
		if (rows[i].auth) {
			assert_non_null(h.auth);
			assert_int_equal(h.auth_len, strlen(rows[i].auth));
			assert_memory_equal(h.auth, rows[i].auth, h.auth_len);
		} else {
			assert_null(h.auth);
		}
		assert_int_equal(h.have_cl, rows[i].have_cl);
		assert_int_equal(h.have_te, rows[i].have_te);
		assert_int_equal(h.chunked, rows[i].chunked);
		assert_int_equal(h.cl, rows[i].cl);
	}
}

static void test_escape(void **state)
{
	char out[16];

	cfs_http_escape("/a b\"\\\x01\xff", out, sizeof(out));
	assert_string_equal(out, "/a\\x20b\\x22");
	cfs_http_escape(NULL, out, sizeof(out));
	assert_string_equal(out, "");
	cfs_http_escape("/objects/abcdefghijk", out, sizeof(out));
	assert_string_equal(out, "/objects/ab"); /* cut with room for one escape to spare */
	assert_string_equal(cfs_http_reason(431), "Request Header Fields Too Large");
	assert_string_equal(cfs_http_reason(299), "Error");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_route),  cmocka_unit_test(test_route_length),
	    cmocka_unit_test(test_range),  cmocka_unit_test(test_etag),
	    cmocka_unit_test(test_zstd),   cmocka_unit_test(test_token),
	    cmocka_unit_test(test_length), cmocka_unit_test(test_head),
	    cmocka_unit_test(test_escape),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
