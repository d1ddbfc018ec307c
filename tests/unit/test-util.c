/* SPDX-License-Identifier: MIT */
/* cfscache: unit tests for size/duration parsing, constant-time compare and the progress line. */
#include "config.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "common/log.h"
#include "common/progress.h"
#include "common/util.h"

static void test_parse_size(void **state)
{
	static const struct {
		const char *s;
		uint64_t v;
	} good[] = {
		{ "0", 0 },	       { "123", 123 },	       { "4k", 4096 },
		{ "4K", 4096 },	       { "1M", 1 << 20 },      { "20G", 20ULL << 30 },
		{ "1.5M", 3 << 19 },   { "2GiB", 2ULL << 30 }, { "1T", 1ULL << 40 },
		{ "64KiB", 64 << 10 }, { "64Ki", 64 << 10 },   { "64KB", 64000 },
		{ "64kB", 64000 },     { "1MB", 1000000 },     { "2GB", 2000000000ULL },
		{ "1TB", 1000000000000ULL }, { "512B", 512 },  { "1.5GiB", 3ULL << 29 },
		{ "3mib", 3 << 20 },
	};
	static const char *const bad[] = { "", "-1", "k", "12x", "1Gx", "1..2", "1 G", "1KiBB",
					   "1BB", "1iB", "1.", "K1", NULL };
	uint64_t v;

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		assert_int_equal(cfs_parse_size(good[i].s, &v), 0);
		assert_int_equal(v, good[i].v);
	}
	for (size_t i = 0; bad[i]; i++)
		assert_int_equal(cfs_parse_size(bad[i], &v), -EINVAL);
	assert_int_equal(cfs_parse_size(NULL, &v), -EINVAL);
}

static void test_parse_duration(void **state)
{
	uint64_t ms;

	assert_int_equal(cfs_parse_duration_ms("2", &ms), 0);
	assert_int_equal(ms, 2000);
	assert_int_equal(cfs_parse_duration_ms("250ms", &ms), 0);
	assert_int_equal(ms, 250);
	assert_int_equal(cfs_parse_duration_ms("1.5s", &ms), 0);
	assert_int_equal(ms, 1500);
	assert_int_equal(cfs_parse_duration_ms("2m", &ms), 0);
	assert_int_equal(ms, 120000);
	assert_int_equal(cfs_parse_duration_ms("x", &ms), -EINVAL);
	assert_int_equal(cfs_parse_duration_ms("5q", &ms), -EINVAL);
}

/* A deadline carries nanoseconds over into seconds and lands ms after now. */
static void test_deadline(void **state)
{
	struct timespec now, ts;
	int64_t diff_ms;

	(void)state;
	for (uint64_t ms = 0; ms < 3000; ms += 333) {
		clock_gettime(CLOCK_REALTIME, &now);
		cfs_deadline_ms(&ts, ms);
		assert_true(ts.tv_nsec >= 0 && ts.tv_nsec < 1000000000L);
		diff_ms = (int64_t)(ts.tv_sec - now.tv_sec) * 1000 + (ts.tv_nsec - now.tv_nsec) / 1000000;
		assert_true(diff_ms >= (int64_t)ms && diff_ms <= (int64_t)ms + 1000);
	}
}

static void test_const_time_eq(void **state)
{
	assert_true(cfs_const_time_eq("secret", 6, "secret", 6));
	assert_false(cfs_const_time_eq("secret", 6, "secreT", 6));
	assert_false(cfs_const_time_eq("secret", 6, "secret2", 7));
	assert_false(cfs_const_time_eq("", 0, "a", 1));
	assert_true(cfs_const_time_eq("", 0, "", 0));
}

static void test_format_size(void **state)
{
	char buf[32];

	assert_string_equal(cfs_format_size(512, buf, sizeof(buf)), "512 B");
	assert_string_equal(cfs_format_size(1536, buf, sizeof(buf)), "1.5 KiB");
	assert_string_equal(cfs_format_size(3ULL << 30, buf, sizeof(buf)), "3.0 GiB");
}

/* The progress line fits every width down to 20 columns and says the most it can. */
static void test_progress_format(void **state)
{
	struct cfs_progress p = {
		.label = "verify",
		.total_items = 300,
		.total_bytes = 3ULL << 30,
		.items = 120,
		.bytes = 1ULL << 30,
		.start_ns = 0,
	};
	uint64_t now = 10ULL * 1000000000ULL; /* 10 s in: 1 GiB done of 3 */
	char buf[512];
	int n;

	for (int w = 1; w <= 300; w++) {
		n = cfs_progress_format(&p, now, w, buf, sizeof(buf));
		assert_int_equal(n, (int)strlen(buf));
		assert_true(n <= (w > 1 ? w - 1 : 0));
		if (w >= 20) {
			assert_non_null(strstr(buf, "verify"));
			assert_non_null(strstr(buf, " 33%"));
		}
	}
	n = cfs_progress_format(&p, now, 200, buf, sizeof(buf));
	assert_non_null(strstr(buf, "1.0 GiB/3.0 GiB"));
	assert_non_null(strstr(buf, "102.4 MiB/s"));
	assert_non_null(strstr(buf, "ETA 20s"));
	assert_non_null(strstr(buf, "120/300 objects"));
	assert_non_null(strstr(buf, "[#"));
	/* 40 columns: the bar goes before the numbers do. */
	n = cfs_progress_format(&p, now, 40, buf, sizeof(buf));
	assert_null(strchr(buf, '['));
	assert_non_null(strstr(buf, "1.0 GiB/3.0 GiB"));
	/* Unknown totals: no percentage, no ETA, a bar of dashes. */
	p.total_items = p.total_bytes = 0;
	cfs_progress_format(&p, now, 120, buf, sizeof(buf));
	assert_null(strchr(buf, '%'));
	assert_null(strstr(buf, "ETA"));
	assert_non_null(strstr(buf, "[---"));
	assert_non_null(strstr(buf, "120 objects"));
}

static void test_log_levels(void **state)
{
	enum cfs_log_level l;

	assert_int_equal(cfs_log_parse_level("debug", &l), 0);
	assert_int_equal(l, CFS_LOG_DEBUG);
	assert_int_equal(cfs_log_parse_level("4", &l), 0);
	assert_int_equal(l, CFS_LOG_WARNING);
	assert_int_equal(cfs_log_parse_level("loud", &l), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_size),    cmocka_unit_test(test_parse_duration),
		cmocka_unit_test(test_const_time_eq), cmocka_unit_test(test_format_size),
		cmocka_unit_test(test_progress_format),
		cmocka_unit_test(test_log_levels),    cmocka_unit_test(test_deadline),
	};

	return cmocka_run_group_tests_name("util", tests, NULL, NULL);
}
