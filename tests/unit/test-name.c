/* SPDX-License-Identifier: MIT */
/* cfscache: unit tests for object name parsing: every hostile form is rejected. */
#include "config.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "common/name.h"

#define HEX64 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define PATH65 "01/23456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static void test_roundtrip(void **state)
{
	uint8_t d[32], e[32];
	char path[66], hex[65];

	assert_int_equal(cfs_name_parse_hex(HEX64, 64, d), 0);
	cfs_name_format_path(d, path);
	assert_string_equal(path, PATH65);
	cfs_name_format_hex(d, hex);
	assert_string_equal(hex, HEX64);
	assert_int_equal(cfs_name_parse_path(PATH65, 65, e), 0);
	assert_memory_equal(d, e, 32);
	assert_int_equal(cfs_name_parse_any("sha256:" HEX64, 71, e), 0);
	assert_memory_equal(d, e, 32);
	assert_int_equal(cfs_name_parse_any(PATH65, 65, e), 0);
	assert_memory_equal(d, e, 32);
	assert_int_equal(cfs_name_parse_rest(0x01, PATH65 + 3, 62, e), 0);
	assert_memory_equal(d, e, 32);
}

static void test_hostile_paths(void **state)
{
	static const char *const bad[] = {
		"",
		"01",
		"01/",
		"../23456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
		"01/23456789abcdef0123456789abcdef0123456789abcdef0123456789abcde",
		"01/23456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0",
		"01/23456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef",
		"0A/23456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
		"01/2345678/abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
		"01/23456789abcdef0123456789abcdef0123456789abcdef0123456789abcde.",
		"01//3456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
		"/01/3456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
		"01/23456789abcdef0123456789abcdef0123456789abcdef0123456789abcdeg",
		"01\\23456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
		"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
		"01/23456789abcdef0123456789abcdef0123456789abcdef0123456789abcd f",
		"%2e/23456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
	};
	uint8_t d[32];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(cfs_name_parse_path(bad[i], strlen(bad[i]), d), -EINVAL);
	/* An embedded NUL inside the claimed length. */
	{
		char buf[66];
		memcpy(buf, PATH65, 66);
		buf[30] = '\0';
		assert_int_equal(cfs_name_parse_path(buf, 65, d), -EINVAL);
	}
	assert_int_equal(cfs_name_parse_path(NULL, 65, d), -EINVAL);
}

static void test_hostile_hex_and_rest(void **state)
{
	uint8_t d[32];
	unsigned p;

	assert_int_equal(cfs_name_parse_hex(HEX64, 63, d), -EINVAL);
	assert_int_equal(cfs_name_parse_hex(HEX64 "0", 65, d), -EINVAL);
	assert_int_equal(cfs_name_parse_hex("0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef", 64, d), -EINVAL);
	assert_int_equal(cfs_name_parse_any("sha512:" HEX64, 71, d), -EINVAL);
	assert_int_equal(cfs_name_parse_rest(0x100, PATH65 + 3, 62, d), -EINVAL);
	assert_int_equal(cfs_name_parse_rest(0, "..", 2, d), -EINVAL);
	assert_int_equal(cfs_name_parse_prefix("ff", 2, &p), 0);
	assert_int_equal(p, 255);
	assert_int_equal(cfs_name_parse_prefix("FF", 2, &p), -EINVAL);
	assert_int_equal(cfs_name_parse_prefix("..", 2, &p), -EINVAL);
	assert_int_equal(cfs_name_parse_prefix("0", 1, &p), -EINVAL);
	assert_int_equal(cfs_name_parse_prefix("000", 3, &p), -EINVAL);
	/* A failed parse leaves the output untouched. */
	memset(d, 0xaa, sizeof(d));
	assert_int_equal(cfs_name_parse_hex("g123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", 64, d), -EINVAL);
	for (int i = 0; i < 32; i++)
		assert_int_equal(d[i], 0xaa);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_hostile_paths),
		cmocka_unit_test(test_hostile_hex_and_rest),
	};

	return cmocka_run_group_tests_name("name", tests, NULL, NULL);
}
